"""Model builders: small functions of their hyperparameters. Every model takes the flat
(S*S,) float input in [0, 1] and returns logits; softmax is applied separately."""

from __future__ import annotations

import math

import keras
from keras import layers

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


def build_augmentation(rotation: float, shift: float, zoom: float, seed: int) -> keras.Sequential:
    """Random rotations, shifts and zooms; Keras applies them in training only."""
    return keras.Sequential([
        layers.RandomRotation(rotation, fill_mode="constant", seed=seed),
        layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed + 1),
        layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 2),
    ], name="augment")


def build_cnn(image_size: int, num_classes: int, conv_filters: list[int], kernel_size: int = 3,
              convs_per_block: int = 2, dense_units: int = 128, dropout: float = 0.0,
              augmentation: keras.Sequential | None = None) -> keras.Model:
    """A VGG-style CNN: per entry of `conv_filters`, `convs_per_block` conv-batchnorm-ReLU layers, then
    2x2 max-pooling; dropout around a ReLU dense layer; a linear output."""
    inputs = keras.Input(shape=(image_size * image_size,), name="pixels")
    x = layers.Reshape((image_size, image_size, 1))(inputs)
    if augmentation is not None:
        x = augmentation(x)
    for filters in conv_filters:
        for _ in range(convs_per_block):
            x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=False)(x)
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
    augmentation = (build_augmentation(train.augment_rotation, train.augment_shift, train.augment_zoom, train.seed)
                    if train.augment else None)
    if model.kind == "mlp":
        return build_mlp(image_size * image_size, num_classes, model.hidden_units, model.activation, augmentation)
    return build_cnn(image_size, num_classes, model.conv_filters, model.kernel_size, model.convs_per_block,
                     model.dense_units, model.dropout, augmentation)



def inference_model(trained: keras.Model, model: ModelParams, train: TrainParams, image_size: int,
                    num_classes: int) -> keras.Model:
    """`trained` rebuilt without the training-only augmentation block: what gets exported (its random
    ops would otherwise stay in the SavedModel graph, and TFLite cannot convert them)."""
    if not train.augment:
        return trained
    stripped = build_model(model, train.model_copy(update={"augment": False}), image_size, num_classes)
    stripped.set_weights(trained.get_weights())  # augmentation has no weights: same order, same values
    return stripped
