"""Seeded, deterministic training with per-epoch progress and history."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter  # keras is pinned: see batches()
from PIL import Image
from rapidfuzz.distance import Levenshtein
from scipy import ndimage

from neurodigits import interrupts
from neurodigits.data.dataset import DOWNSAMPLE
from neurodigits.decoding import ctc_kept
from neurodigits.params import TrainParams
from neurodigits.preprocess import LINE_WIDTH_STEP, line_steps, line_widths, pad_lines

TRACKED_LINES = 256  # a line model's error rate per epoch is read on a seeded sample of at most this many lines


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


def ctc_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """keras.losses.CTC's loss per line (label rows padded with the blank, 0; every step of the logits counted),
    by TensorFlow's C++ CTC kernel on sparse labels instead of its step-by-step dense implementation, which
    Keras calls on dense labels: the same values, several times faster on CPU."""
    labels = tf.sparse.from_dense(tf.cast(y_true, tf.int32))
    steps = tf.fill(tf.shape(y_pred)[:1], tf.shape(y_pred)[1])
    return tf.nn.ctc_loss(labels, y_pred, None, steps, logits_time_major=False, blank_index=0)


@keras.saving.register_keras_serializable(package="neurodigits")
class SmoothedCrossentropy(keras.losses.Loss):
    """Keras's CategoricalCrossentropy(from_logits=True, label_smoothing=...) on integer labels."""

    def __init__(self, label_smoothing: float, **kwargs) -> None:
        super().__init__(name="smoothed_crossentropy", **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        one_hot = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), tf.shape(y_pred)[-1])
        return keras.losses.categorical_crossentropy(one_hot, y_pred, from_logits=True,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self) -> dict:
        return {"label_smoothing": self.label_smoothing}


def compile_model(model: keras.Model, params: TrainParams, steps_per_epoch: int) -> None:
    """Adam on SparseCategoricalCrossentropy(from_logits=True), as in the reference (with `train.label_smoothing`,
    on smoothed targets); a line model (crnn) on the CTC loss, one batch per call (its batches differ in width)."""
    lines = model.name == "crnn"
    if lines:
        loss = ctc_loss
    elif params.label_smoothing:
        loss = SmoothedCrossentropy(params.label_smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate(params, steps_per_epoch)),
        loss=loss,
        metrics=None if lines else ["accuracy"],
        steps_per_execution=1 if lines else params.steps_per_execution,
    )


def ctc_steps(label: np.ndarray) -> int:
    """The model steps a CTC label row needs: one per character, one more between repeated characters."""
    label = label[label > 0]
    return len(label) + int((label[1:] == label[:-1]).sum())


def warp_line(line: np.ndarray, rng: np.random.Generator, params: TrainParams, min_width: int = 4) -> np.ndarray:
    """A text line as another hand might write it, for training: slanted by up to `augment_rotation` of a turn,
    stretched or squeezed in width by up to `augment_zoom` (never under `min_width`), moved up or down by up to
    `augment_shift` of its height, strokes grown or thinned by up to `augment_stroke` of a 3x3 dilation."""
    height, width = line.shape
    new_width = max(min_width, round(width * (1 + rng.uniform(-params.augment_zoom, params.augment_zoom))))
    shear = math.tan(rng.uniform(-1, 1) * params.augment_rotation * 2 * math.pi)
    extra = math.ceil(abs(shear) * height)
    scale = width / new_width  # output pixel (x, y) reads input (scale * (x - extra/2 + shear * (y - h/2)), y + dy)
    coefficients = (scale, scale * shear, -scale * (extra / 2 + shear * height / 2),
                    0, 1, rng.uniform(-1, 1) * params.augment_shift * height)
    out = np.asarray(Image.fromarray(line).transform((new_width + extra, height), Image.Transform.AFFINE,
                                                     coefficients, Image.Resampling.BILINEAR), dtype=np.float32)
    if params.augment_stroke:
        change = rng.uniform(-params.augment_stroke, params.augment_stroke)
        other = (ndimage.grey_dilation if change > 0 else ndimage.grey_erosion)(out, size=(3, 3))
        out += abs(change) * (other - out)
    return np.clip(out, 0, 255).astype(np.uint8)


class LineBatches:
    """Batches of text lines (uint8 (N, H, W), right-padded) and their CTC label rows, each cropped to its
    widest line and longest text: little padding to compute. With a seed, lines of similar width are
    batched together from a fresh seeded shuffle every epoch; without, in order of width (for prediction)."""

    def __init__(self, x: np.ndarray, y: np.ndarray | None, batch_size: int, seed: int | None = None,
                 augment: TrainParams | None = None) -> None:
        self.x, self.y, self.batch_size, self.augment = x, y, batch_size, augment
        self.widths = line_widths(x)
        self.rng = None if seed is None else np.random.default_rng(seed)
        self.shuffle()

    def shuffle(self) -> None:
        if self.rng is None:
            order = np.argsort(self.widths, kind="stable")
        else:  # sort by width within random pools of 16 batches, then shuffle the batches
            order = self.rng.permutation(len(self.x))
            pool = 16 * self.batch_size
            order = np.concatenate([chunk[np.argsort(self.widths[chunk], kind="stable")]
                                    for chunk in np.split(order, range(pool, len(order), pool))])
        self.batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.rng is not None:
            self.batches = [self.batches[i] for i in self.rng.permutation(len(self.batches))]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        rows = self.batches[i]
        lines = [self.x[row, :, :self.widths[row]] for row in rows]
        if self.augment is not None:
            lines = [warp_line(line, self.rng, self.augment, min_width=DOWNSAMPLE * ctc_steps(self.y[row]))
                     for line, row in zip(lines, rows)]
        width = -(-max(line.shape[1] for line in lines) // LINE_WIDTH_STEP) * LINE_WIDTH_STEP
        x = pad_lines(lines, width).astype(np.float32) / 255.0
        if self.y is None:
            return (x,)
        length = max(1, int((self.y[rows] > 0).sum(axis=1).max()))
        return x, self.y[rows, :length]

    def dataset(self) -> tf.data.Dataset:
        """The batches as a tf.data pipeline for `fit`: each pass (epoch) in a new seeded order."""
        def epoch():
            for i in range(len(self)):
                yield self[i]
            self.shuffle()

        height = self.x.shape[1]
        signature = (tf.TensorSpec((None, height, None), tf.float32), tf.TensorSpec((None, None), tf.int64))
        return untuned(tf.data.Dataset.from_generator(epoch, output_signature=signature).apply(
            tf.data.experimental.assert_cardinality(len(self))))


def predict_lines(model: keras.Model, x: np.ndarray, batch_size: int = 64) -> list[np.ndarray]:
    """Per-column logits of each line (its own columns, padding dropped), in input order."""
    batches = LineBatches(x, None, batch_size)
    out: list[np.ndarray] = [None] * len(x)
    for i in range(len(batches)):
        lines = batches[i][0]
        logits = model.predict_on_batch(lines)  # a compiled call, traced for any width
        for row, line_logits in zip(batches.batches[i], logits):
            out[row] = line_steps(line_logits, lines.shape[2], int(batches.widths[row]))
    return out


def line_error_rate(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """The character error rate of a line model's greedy reading of lines `x` against their CTC label rows `y`."""
    errors = 0
    for logits, row in zip(predict_lines(model, x), y):
        symbols = logits.argmax(-1)
        errors += Levenshtein.distance(symbols[ctc_kept(symbols)].tolist(), row[row > 0].tolist())
    return errors / max(1, int((y > 0).sum()))


class LineErrorRate(keras.callbacks.Callback):
    """Puts a line model's character error rate on seeded samples of its training lines (`cer`, read without
    augmentation) and validation lines (`val_cer`) into each epoch's logs: the learning curve in the unit the
    evaluation reports, next to the CTC loss."""

    def __init__(self, seed: int, train: tuple[np.ndarray, np.ndarray],
                 validation: tuple[np.ndarray, np.ndarray] | None) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        self.samples = {}
        for name, (x, y) in ({"cer": train} | ({"val_cer": validation} if validation else {})).items():
            rows = np.sort(rng.choice(len(x), min(len(x), TRACKED_LINES), replace=False))
            self.samples[name] = (x[rows], y[rows])

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for name, (x, y) in self.samples.items():
            logs[name] = line_error_rate(self.model, x, y)


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Per-class loss weights that make every class count as much as the others (scikit-learn's "balanced":
    n_samples / (n_classes * count)): a small source (4,000 digits) then holds its own against a large one
    (66,880 letters) on shapes they share, such as 0 and O."""
    from sklearn.utils.class_weight import compute_class_weight  # noqa: PLC0415

    classes = np.unique(y)
    return dict(zip(classes.tolist(), compute_class_weight("balanced", classes=classes, y=y).tolist()))


class StopWhenInterrupted(keras.callbacks.Callback):
    """Raise KeyboardInterrupt at the next batch once Ctrl-C or SIGTERM arrived (`interrupts.received`): the one
    the signal handler raised can be lost inside TensorFlow or Keras, and training would go on. Safe for Keras's
    asynchronous batch callbacks: their errors reach the training loop."""

    async_safe = True

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if interrupts.received.is_set():
            raise KeyboardInterrupt


def untuned(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` without tf.data's autotuning thread. `fit` makes a new iterator each epoch, and deleting the old one
    waits for that thread to wake from a timed sleep that lengthens as training goes on (TF 2.21): up to 15 s of an
    idle machine per epoch, measured on the letters."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool = False,
            class_weight: dict[int, float] | None = None) -> tf.data.Dataset:
    """The batches `fit` makes of NumPy arrays (Keras's own adapter: the same shuffle, bit for bit), `untuned`."""
    adapter = ArrayDataAdapter(x, y, batch_size=batch_size, shuffle=shuffle, class_weight=class_weight)
    return untuned(adapter.get_tf_dataset()).apply(tf.data.experimental.assert_cardinality(adapter.num_batches))


def _fit_phase(model: keras.Model, x: np.ndarray, y: np.ndarray, params: TrainParams,
               validation: tuple[np.ndarray, np.ndarray] | None, callbacks: Sequence[keras.callbacks.Callback],
               verbose: int | str, initial_epoch: int) -> pd.DataFrame:
    steps_per_epoch = -(-len(x) // params.batch_size)
    compile_model(model, params, steps_per_epoch)
    callbacks = [StopWhenInterrupted(), *callbacks]
    if params.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss" if validation is not None else "loss",
            patience=params.early_stopping_patience, restore_best_weights=True))
    if model.name == "crnn":  # lines: batches of similar width; validation as such batches too; CER per epoch
        callbacks.insert(0, LineErrorRate(params.seed, (x, y), validation))
        data = LineBatches(x, y, params.batch_size, params.seed, params if params.augment else None).dataset()
        validation = validation and LineBatches(*validation, params.batch_size).dataset()
    else:
        data = batches(x, y, params.batch_size, shuffle=True,
                       class_weight=class_weights(y) if params.class_weight == "balanced" else None)
        validation = validation and batches(*validation, params.batch_size)
    history = model.fit(data, epochs=initial_epoch + params.epochs, initial_epoch=initial_epoch,
                        validation_data=validation, shuffle=False,  # the batches are shuffled already
                        callbacks=callbacks, verbose=verbose)
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
