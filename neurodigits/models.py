"""Model builders: small functions of their hyperparameters. The character models take the flat (S*S,)
float input in [0, 1], the line model (H, W) lines; every model returns logits (softmax is applied separately)."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from neurodigits import NeuroDigitsError
from neurodigits.params import ModelParams, TrainParams


def build_mlp(input_size: int, num_classes: int, hidden_units: list[int], activation: str = "relu",
              augmentation: keras.layers.Layer | None = None) -> keras.Model:
    """The reference MLP (400-25-15-10 by default): Dense ReLU layers, a linear output."""
    inputs = keras.Input(shape=(input_size,), name="pixels")
    x = inputs
    if augmentation is not None:
        side = math.isqrt(input_size)
        x = layers.Flatten()(augmentation(layers.Reshape((side, side, 1))(x)))
    for i, units in enumerate(hidden_units, start=1):
        x = layers.Dense(units, activation=activation, name=f"hidden_{i}")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="mlp")


def bilinear_sample(images, rows, cols):
    """images (N, H, W) read at float coordinates rows, cols (N, H', W'), bilinearly, zero outside the image:
    the same values as `ops.image.map_coordinates(order=1, fill_mode="constant")`, with four flat gathers
    instead of its eight."""
    batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
    rows, cols = ops.clip(rows, -1.0, float(height)), ops.clip(cols, -1.0, float(width))  # beyond: all zeros
    stride = width + 3
    padded = ops.reshape(ops.pad(images, [[0, 0], [1, 2], [1, 2]]), (-1,))  # one zero row/col before, two after
    top, left = ops.floor(rows), ops.floor(cols)
    down, right = rows - top, cols - left
    corner = (ops.arange(batch)[:, None, None] * ((height + 3) * stride)
              + (ops.cast(top, "int32") + 1) * stride + ops.cast(left, "int32") + 1)

    def pixel(offset):  # the pixel `offset` places after each top-left neighbour in the flat padded batch
        return ops.take(padded, corner + offset)

    return ((1 - down) * ((1 - right) * pixel(0) + right * pixel(1))
            + down * ((1 - right) * pixel(stride) + right * pixel(stride + 1)))


def gaussian_taps(sigma: float) -> list[float]:
    """A normalised 1-D Gaussian kernel, 3 sigma each side."""
    radius = max(1, math.ceil(3 * sigma))
    taps = [math.exp(-(i * i) / (2 * sigma * sigma)) for i in range(-radius, radius + 1)]
    return [t / sum(taps) for t in taps]


def _separable_kernels(taps: list[float], channels: int) -> tuple:
    """Depthwise row and column kernels of a 1-D filter, for `channels` channels."""
    rows = ops.reshape(ops.convert_to_tensor([[t] * channels for t in taps]), (len(taps), 1, channels, 1))
    return rows, ops.reshape(rows, (1, len(taps), channels, 1))


@keras.saving.register_keras_serializable(package="neurodigits")
class RandomWarp(layers.Layer):
    """Random rotation, zoom, shift and elastic distortion (Simard et al., 2003) of (N, H, W, 1) images, in
    training only, composed into one coordinate map and resampled once. Ranges are symmetric: `rotation` in
    turns, `zoom` and `shift` as fractions of the image size. The elastic field is per-pixel noise smoothed
    by a Gaussian `sigma` pixels wide, `elastic` pixels RMS per axis. (Keras's RandomRotation,
    RandomTranslation and RandomZoom resample once each; four bilinear passes blur a 20x20 digit.)

    Then, each off at 0, the look of other pens, scanners and cameras, a random amount per image: strokes
    grown or thinned by up to `stroke` of a 3x3 grey dilation or erosion; blended up to fully with the
    image shrunk by a factor of 1 + `resolution` and enlarged back; blended with a Gaussian blur of
    `blur` pixels; and ink strength scaled down by up to `contrast` with a gamma in 1 +- `contrast`."""

    def __init__(self, rotation: float, shift: float, zoom: float, elastic: float, sigma: float,
                 seed: int | None = None, stroke: float = 0.0, blur: float = 0.0, contrast: float = 0.0,
                 resolution: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.shift, self.zoom, self.elastic, self.sigma, self.seed = (
            rotation, shift, zoom, elastic, sigma, seed)
        self.stroke, self.blur, self.contrast, self.resolution = stroke, blur, contrast, resolution
        self.seed_generator = keras.random.SeedGenerator(seed)
        taps = gaussian_taps(sigma)
        # uniform(-1, 1) noise has std 1/sqrt(3); each 1-D blur pass scales the std by sqrt(sum(taps**2))
        self.gain = elastic * math.sqrt(3) / sum(t * t for t in taps)
        self.blur_rows, self.blur_cols = _separable_kernels(taps, 2)
        if blur:
            self.camera_rows, self.camera_cols = _separable_kernels(gaussian_taps(blur), 1)

    def call(self, images, training=None):
        if not training:
            return images
        batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]

        def uniform(limit, low=None):  # one value per image, in [-limit, limit] (or [low, limit])
            return keras.random.uniform((batch, 1, 1), -limit if low is None else low, limit,
                                        seed=self.seed_generator)

        angle, scale = uniform(self.rotation) * 2 * math.pi, 1 + uniform(self.zoom)
        shift_rows, shift_cols = uniform(self.shift) * height, uniform(self.shift) * width
        noise = keras.random.uniform((batch, height, width, 2), -1.0, 1.0, seed=self.seed_generator)
        field = ops.depthwise_conv(ops.depthwise_conv(noise, self.blur_rows, padding="same"),
                                   self.blur_cols, padding="same") * self.gain
        y = ops.arange(height, dtype="float32")[None, :, None] - (height - 1) / 2  # from the image centre
        x = ops.arange(width, dtype="float32")[None, None, :] - (width - 1) / 2
        cos, sin = ops.cos(angle) * scale, ops.sin(angle) * scale
        rows = cos * y - sin * x + (height - 1) / 2 + shift_rows + field[..., 0]
        cols = sin * y + cos * x + (width - 1) / 2 + shift_cols + field[..., 1]
        out = bilinear_sample(images[..., 0], rows, cols)[..., None]
        if self.stroke:
            change = uniform(self.stroke)[..., None]
            grown, thinned = ops.max_pool(out, 3, 1, "same"), -ops.max_pool(-out, 3, 1, "same")
            out = out + ops.maximum(change, 0) * (grown - out) + ops.maximum(-change, 0) * (thinned - out)
        if self.resolution:
            low = (max(2, round(height / (1 + self.resolution))), max(2, round(width / (1 + self.resolution))))
            coarse = ops.image.resize(ops.image.resize(out, low, antialias=True), (height, width))
            out = out + uniform(1.0, 0.0)[..., None] * (coarse - out)
        if self.blur:
            blurred = ops.depthwise_conv(ops.depthwise_conv(out, self.camera_rows, padding="same"),
                                         self.camera_cols, padding="same")
            out = out + uniform(1.0, 0.0)[..., None] * (blurred - out)
        if self.contrast:
            gamma = ops.exp(uniform(math.log1p(self.contrast)))[..., None]
            out = (1 - uniform(self.contrast, 0.0)[..., None]) * ops.power(ops.clip(out, 0.0, 1.0), gamma)
        return out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "rotation": self.rotation, "shift": self.shift, "zoom": self.zoom,
                "elastic": self.elastic, "sigma": self.sigma, "seed": self.seed, "stroke": self.stroke,
                "blur": self.blur, "contrast": self.contrast, "resolution": self.resolution}


def build_augmentation(rotation: float, shift: float, zoom: float, elastic: float, image_size: int,
                       seed: int, stroke: float = 0.0, blur: float = 0.0, contrast: float = 0.0,
                       resolution: float = 0.0) -> RandomWarp:
    """The training-only augmentation layer. `elastic` (the RMS displacement) is a fraction of the image
    size, like `shift`; the elastic field is smoothed over a tenth of it. `blur` is in pixels of the
    model input; `stroke`, `contrast` and `resolution` are as in RandomWarp."""
    return RandomWarp(rotation, shift, zoom, elastic * image_size, sigma=0.1 * image_size, seed=seed,
                      stroke=stroke, blur=blur, contrast=contrast, resolution=resolution, name="augment")


def conv_block(x: keras.KerasTensor, filters: int, kernel_size: int, convs: int, batch_norm: bool | str,
               pool: tuple[int, int] = (2, 2)) -> keras.KerasTensor:
    """One block of the CNN and the CRNN: `convs` conv(-batchnorm)-ReLU layers, then max-pooling by `pool`;
    with batch_norm "pooled", the last convolution is pooled first, then normalised and rectified: max-pooling
    commutes with ReLU (and with batch norm's scaling where it is positive), so it is nearly the same model,
    normalising a quarter of the values."""
    for i in range(convs):
        after_pool = batch_norm == "pooled" and i == convs - 1
        normalised = batch_norm is True or after_pool
        x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=not normalised)(x)
        if after_pool:
            x = layers.MaxPooling2D(pool)(x)
        if normalised:
            x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    return x if batch_norm == "pooled" else layers.MaxPooling2D(pool)(x)


def build_cnn(image_size: int, num_classes: int, conv_filters: list[int], kernel_size: int = 3,
              convs_per_block: int = 2, batch_norm: bool | str = False, dense_units: int = 128, dropout: float = 0.0,
              augmentation: keras.layers.Layer | None = None) -> keras.Model:
    """A VGG-style CNN: per entry of `conv_filters`, `convs_per_block` conv(-batchnorm)-ReLU layers, then
    2x2 max-pooling; dropout around a ReLU dense layer; a linear output."""
    inputs = keras.Input(shape=(image_size * image_size,), name="pixels")
    x = layers.Reshape((image_size, image_size, 1))(inputs)
    if augmentation is not None:
        x = augmentation(x)
    for filters in conv_filters:
        x = conv_block(x, filters, kernel_size, convs_per_block, batch_norm)
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="cnn")


def build_crnn(height: int, num_characters: int, conv_filters: list[int], kernel_size: int = 3,
               convs_per_block: int = 2, batch_norm: bool | str = False, dense_units: int = 128, dropout: float = 0.0,
               rnn_units: int = 128, rnn_layers: int = 2, downsample: int = 4,
               steps_per_column: int = 1) -> keras.Model:
    """A line recognizer (CRNN, Shi et al. 2015; the keras-io handwriting example's shape): conv blocks as in
    the CNN, the first ones halving height and width until the width is divided by `downsample`, later ones
    height only, so each of W/downsample columns sees a slice of the line; a dense projection; bidirectional
    LSTMs across the width; each column's output split by a linear layer into `steps_per_column` steps; per-step
    logits over the characters plus the CTC blank (index 0).
    Input: (N, height, W) in [0, 1], any width W divisible by `downsample`."""
    inputs = keras.Input(shape=(height, None), name="line")
    x = layers.Reshape((height, -1, 1))(inputs)
    for block, filters in enumerate(conv_filters):
        pool = (2, 2) if 2 ** block < downsample else (2, 1)  # halve the width until it is divided by downsample
        x = conv_block(x, filters, kernel_size, convs_per_block, batch_norm, pool)
    x = layers.Permute((2, 1, 3))(x)  # (N, W/downsample, height', filters): one step per column group
    x = layers.Reshape((-1, x.shape[2] * x.shape[3]))(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    for _ in range(rnn_layers):
        x = layers.Bidirectional(layers.LSTM(rnn_units, return_sequences=True, dropout=dropout / 2))(x)
    if steps_per_column > 1:  # more CTC steps for dense writing, at the cost of a dense layer, not of the convs
        features = x.shape[-1]
        x = layers.Reshape((-1, features), name="split_columns")(layers.Dense(steps_per_column * features)(x))
    outputs = layers.Dense(num_characters + 1, name="logits")(x)
    return keras.Model(inputs, outputs, name="crnn")


def build_model(model: ModelParams, train: TrainParams, image_size: int, num_classes: int) -> keras.Model:
    """The model params.yaml asks for (`image_size` is the line height for a crnn, `num_classes` the
    number of characters)."""
    if model.kind == "crnn":
        return build_crnn(image_size, num_classes, model.conv_filters, model.kernel_size, model.convs_per_block,
                          model.batch_norm, model.dense_units, model.dropout, model.rnn_units, model.rnn_layers,
                          model.downsample, model.steps_per_column)
    augmentation = (build_augmentation(train.augment_rotation, train.augment_shift, train.augment_zoom,
                                       train.augment_elastic, image_size, train.seed, train.augment_stroke,
                                       train.augment_blur, train.augment_contrast, train.augment_resolution)
                    if train.augment else None)
    if model.kind == "mlp":
        return build_mlp(image_size * image_size, num_classes, model.hidden_units, model.activation, augmentation)
    return build_cnn(image_size, num_classes, model.conv_filters, model.kernel_size, model.convs_per_block,
                     model.batch_norm, model.dense_units, model.dropout, augmentation)


def inference_model(trained: keras.Model, model: ModelParams, train: TrainParams, image_size: int,
                    num_classes: int) -> keras.Model:
    """`trained` rebuilt without the training-only augmentation block: what gets exported (its random
    ops would otherwise stay in the SavedModel graph, and TFLite cannot convert them)."""
    if not train.augment:
        return trained
    stripped = build_model(model, train.model_copy(update={"augment": False}), image_size, num_classes)
    stripped.set_weights(trained.get_weights())  # augmentation has no weights: same order, same values
    return stripped


def load_model(path: str | Path) -> keras.Model:
    """A model saved by the train stage, for inference or as a parent (importing this module registers its
    custom layers). Not compiled: training compiles its own, with the loss and schedule its params ask for."""
    return keras.saving.load_model(path, compile=False)


def load_parent(path: str | Path) -> keras.Model:
    """A parent's logits network from a .keras file: the train stage's model, an export's, or a registered
    model (whose softmax wrapper, see `export.probability_model`, is taken off)."""
    model = load_model(path)
    if isinstance(model, keras.Sequential) and model.layers[-1].name == "probabilities":
        return model.layers[0]
    return model


def transfer_weights(parent: keras.Model, model: keras.Model, parent_classes: list[str], classes: list[str]) -> int:
    """Copy `parent`'s weights into `model` (the same architecture, maybe other classes). The output layer is
    copied class by class: a class both know keeps the parent's kernel column and bias, a new class keeps its
    fresh initialisation. Returns how many classes were kept."""
    source, target = parent.get_weights(), model.get_weights()
    if [w.shape for w in source[:-2]] != [w.shape for w in target[:-2]]:
        raise NeuroDigitsError(f"train.init_from: the parent's layers ({parent.name}) do not match the model "
                               "built from its params; give a parent exported by this version of the pipeline")
    kernel, bias = np.array(target[-2]), np.array(target[-1])
    index = {name: i for i, name in enumerate(parent_classes)}
    shared = [(j, index[name]) for j, name in enumerate(classes) if name in index]
    for j, i in shared:
        kernel[:, j], bias[j] = source[-2][:, i], source[-1][i]
    model.set_weights([*source[:-2], kernel, bias])
    return len(shared)


def freeze(model: keras.Model, part: str) -> None:
    """Make `part` of the model untrainable: none, conv (the convolutional blocks) or all-but-head."""
    if part == "none":
        return
    frozen = ([layer for layer in model.layers if isinstance(layer, (layers.Conv2D, layers.BatchNormalization))]
              if part == "conv" else [layer for layer in model.layers if layer.name != "logits"])
    if not frozen:
        raise NeuroDigitsError(f"train.freeze {part!r}: the parent ({model.name}) has no convolutional blocks; "
                               "use all-but-head or none")
    for layer in frozen:
        layer.trainable = False


def build_from_parent(parent: keras.Model, parent_classes: list[str], model: ModelParams, train: TrainParams,
                      image_size: int, classes: list[str]) -> keras.Model:
    """The parent's architecture (`model`: its model params) for `classes`, initialised from its weights,
    with `train.freeze` applied."""
    if parent.name == "crnn":
        if parent.input_shape[1] != image_size:
            raise NeuroDigitsError(f"train.init_from: the parent reads lines {parent.input_shape[1]} px high but "
                                   f"data.line_height is {image_size}; set data.line_height={parent.input_shape[1]}")
    elif math.isqrt(parent.input_shape[-1]) != image_size:
        side = math.isqrt(parent.input_shape[-1])
        raise NeuroDigitsError(f"train.init_from: the parent takes {side}x{side} images but data.image_size is "
                               f"{image_size}; set data.image_size={side}")
    child = build_model(model, train, image_size, len(classes))
    transfer_weights(parent, child, parent_classes, classes)
    freeze(child, train.freeze)
    return child
