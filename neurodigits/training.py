"""Seeded, deterministic training with per-epoch progress and history."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from neurodigits.params import TrainParams


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic: same inputs, same weights."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def learning_rate(params: TrainParams, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    total_steps = params.epochs * steps_per_epoch
    if params.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(params.learning_rate, decay_steps=total_steps)
    if params.lr_schedule == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            params.learning_rate, decay_steps=steps_per_epoch, decay_rate=0.9)
    return params.learning_rate


def compile_model(model: keras.Model, params: TrainParams, steps_per_epoch: int) -> None:
    """Adam on SparseCategoricalCrossentropy(from_logits=True), as in the reference."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate(params, steps_per_epoch)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=params.steps_per_execution,
    )


def _fit_phase(model: keras.Model, x: np.ndarray, y: np.ndarray, params: TrainParams,
               validation: tuple[np.ndarray, np.ndarray] | None, callbacks: Sequence[keras.callbacks.Callback],
               verbose: int | str, initial_epoch: int) -> pd.DataFrame:
    steps_per_epoch = -(-len(x) // params.batch_size)
    compile_model(model, params, steps_per_epoch)
    callbacks = list(callbacks)
    if params.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss" if validation is not None else "loss",
            patience=params.early_stopping_patience, restore_best_weights=True))
    history = model.fit(x, y, epochs=initial_epoch + params.epochs, initial_epoch=initial_epoch,
                        batch_size=params.batch_size, validation_data=validation, shuffle=True, callbacks=callbacks,
                        verbose=verbose)
    frame = pd.DataFrame(history.history)
    frame.insert(0, "epoch", np.arange(initial_epoch + 1, initial_epoch + len(frame) + 1))
    return frame


def fit(model: keras.Model, x: np.ndarray, y: np.ndarray, params: TrainParams,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
        callbacks: Sequence[keras.callbacks.Callback] = (), verbose: int | str = 2) -> pd.DataFrame:
    """Compile and train; return the per-epoch history (epoch from 1) as a DataFrame. With
    `train.fine_tune_epochs`, a second phase then trains every layer (frozen ones too) at the fine-tune
    learning rate."""
    history = _fit_phase(model, x, y, params, validation, callbacks, verbose, initial_epoch=0)
    if params.fine_tune_epochs:
        for layer in model.layers:
            layer.trainable = True
        phase = params.model_copy(update={"epochs": params.fine_tune_epochs, "learning_rate": params.fine_tune_lr})
        history = pd.concat([history, _fit_phase(model, x, y, phase, validation, callbacks, verbose,
                                                 initial_epoch=len(history))], ignore_index=True)
    return history


def weights_sha256(model: keras.Model) -> str:
    """A hash of every weight array (shape, dtype and bytes): equal iff the trained weights are equal."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(f"{weight.shape}{weight.dtype}".encode())
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()
