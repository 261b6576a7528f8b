"""Model builders: small functions of their hyperparameters. Every model takes the flat
(S*S,) float input in [0, 1] and returns logits; softmax is applied separately."""

from __future__ import annotations

import math
from pathlib import Path

import keras
from keras import layers, ops

from neurodigits.params import ModelParams, TrainParams


def build_mlp(input_size: int, num_classes: int, hidden_units: list[int], activation: str = "relu",
              augmentation: keras.Sequential | None = None) -> keras.Model:
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


@keras.saving.register_keras_serializable(package="neurodigits")
class RandomElasticDistortion(layers.Layer):
    """Elastic distortion (Simard et al., 2003) of (N, H, W, 1) images, in training only: a per-pixel random
    displacement field, smoothed by a Gaussian `sigma` pixels wide, scaled to `magnitude` pixels RMS per axis,
    resampled bilinearly. Keras's RandomElasticTransform warps x and y alike and needs a static batch size."""

    def __init__(self, magnitude: float, sigma: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.magnitude, self.sigma, self.seed = magnitude, sigma, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        radius = max(1, math.ceil(3 * sigma))
        taps = [math.exp(-(i * i) / (2 * sigma * sigma)) for i in range(-radius, radius + 1)]
        taps = [t / sum(taps) for t in taps]
        # uniform(-1, 1) noise has std 1/sqrt(3); each 1-D blur pass scales the std by sqrt(sum(taps**2))
        self.gain = magnitude * math.sqrt(3) / sum(t * t for t in taps)
        self.blur_rows = ops.reshape(ops.convert_to_tensor([[t, t] for t in taps]), (len(taps), 1, 2, 1))
        self.blur_cols = ops.reshape(self.blur_rows, (1, len(taps), 2, 1))

    def call(self, images, training=None):
        if not training or self.magnitude == 0:
            return images
        batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
        noise = keras.random.uniform((batch, height, width, 2), -1.0, 1.0, seed=self.seed_generator)
        field = ops.depthwise_conv(ops.depthwise_conv(noise, self.blur_rows, padding="same"),
                                   self.blur_cols, padding="same") * self.gain
        rows = ops.arange(height, dtype="float32")[None, :, None] + field[..., 0]
        cols = ops.arange(width, dtype="float32")[None, None, :] + field[..., 1]
        index = ops.broadcast_to(ops.cast(ops.arange(batch), "float32")[:, None, None], ops.shape(rows))
        warped = ops.image.map_coordinates(images[..., 0], [index, rows, cols], order=1, fill_mode="constant")
        return warped[..., None]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "magnitude": self.magnitude, "sigma": self.sigma, "seed": self.seed}


def build_augmentation(rotation: float, shift: float, zoom: float, elastic: float, image_size: int,
                       seed: int) -> keras.Sequential:
    """Random elastic distortions, rotations, shifts and zooms; all act in training only. `elastic` is the
    RMS displacement as a fraction of the image size, smoothed over a tenth of it."""
    return keras.Sequential([
        RandomElasticDistortion(elastic * image_size, sigma=0.1 * image_size, seed=seed + 3),
        layers.RandomRotation(rotation, fill_mode="constant", seed=seed),
        layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed + 1),
        layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 2),
    ], name="augment")


def build_cnn(image_size: int, num_classes: int, conv_filters: list[int], kernel_size: int = 3,
              convs_per_block: int = 2, batch_norm: bool = False, dense_units: int = 128, dropout: float = 0.0,
              augmentation: keras.Sequential | None = None) -> keras.Model:
    """A VGG-style CNN: per entry of `conv_filters`, `convs_per_block` conv(-batchnorm)-ReLU layers, then
    2x2 max-pooling; dropout around a ReLU dense layer; a linear output."""
    inputs = keras.Input(shape=(image_size * image_size,), name="pixels")
    x = layers.Reshape((image_size, image_size, 1))(inputs)
    if augmentation is not None:
        x = augmentation(x)
    for filters in conv_filters:
        for _ in range(convs_per_block):
            x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=not batch_norm)(x)
            if batch_norm:
                x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="cnn")


def build_model(model: ModelParams, train: TrainParams, image_size: int, num_classes: int) -> keras.Model:
    """The model params.yaml asks for."""
    augmentation = (build_augmentation(train.augment_rotation, train.augment_shift, train.augment_zoom,
                                       train.augment_elastic, image_size, train.seed)
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
    """A model saved by the train stage (importing this module registers its custom layers)."""
    return keras.saving.load_model(path)
