"""Model builders, augmentation and training options, on real Keras with tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import copy_project, run

from neurodigits import interrupts
from neurodigits.models import (
    RandomWarp,
    bilinear_sample,
    build_augmentation,
    build_cnn,
    build_mlp,
    build_model,
    inference_model,
)
from neurodigits.params import ModelParams, TrainParams
from neurodigits.training import (
    SmoothedCrossentropy,
    batches,
    class_weights,
    compile_model,
    fit,
    learning_rate,
    set_determinism,
    weights_sha256,
)


def test_mlp_has_the_reference_shapes():
    model = build_mlp(400, 10, [25, 15])
    assert [w.shape for w in model.get_weights()] == [(400, 25), (25,), (25, 15), (15,), (15, 10), (10,)]
    assert model.layers[-1].activation.__name__ == "linear"


def test_cnn_follows_its_params():
    model = build_model(ModelParams(kind="cnn", conv_filters=[8, 16, 24], kernel_size=5, dense_units=40),
                        TrainParams(), image_size=20, num_classes=7)
    kernels = [w.shape for w in model.get_weights() if w.ndim == 4]
    assert kernels == [(5, 5, 1, 8), (5, 5, 8, 8), (5, 5, 8, 16), (5, 5, 16, 16), (5, 5, 16, 24), (5, 5, 24, 24)]
    assert model.output_shape == (None, 7)
    assert [w.shape for w in model.get_weights()][-4:] == [(24 * 2 * 2, 40), (40,), (40, 7), (7,)]
    assert not any(layer.name.startswith("batch_norm") for layer in model.layers)
    normalized = build_model(ModelParams(kind="cnn", conv_filters=[8], batch_norm=True), TrainParams(), 20, 10)
    assert sum(layer.name.startswith("batch_norm") for layer in normalized.layers) == 2
    pooled = build_model(ModelParams(kind="cnn", conv_filters=[8, 16], batch_norm="pooled"), TrainParams(), 20, 10)
    kinds = [type(layer).__name__ for layer in pooled.layers if not isinstance(layer, (keras.layers.InputLayer,
                                                                                           keras.layers.Reshape))]
    block = ["Conv2D", "ReLU", "Conv2D", "MaxPooling2D", "BatchNormalization", "ReLU"]  # once per block, pooled
    assert kinds[:12] == block * 2
    assert [layer.use_bias for layer in pooled.layers if isinstance(layer, keras.layers.Conv2D)] == [True, False] * 2
    with pytest.raises(ValueError, match="batch_norm"):
        ModelParams(kind="cnn", batch_norm="after")


def test_augmentation_acts_in_training_only():
    set_determinism(0)
    augmented = build_cnn(20, 10, [4], augmentation=build_augmentation(0.1, 0.2, 0.2, 0.05, 20, seed=0))
    plain = build_cnn(20, 10, [4])
    plain.set_weights(augmented.get_weights())  # augmentation layers have no weights
    x = np.random.default_rng(0).random((8, 400), dtype=np.float32)
    np.testing.assert_array_equal(augmented(x, training=False), plain(x, training=False))
    model, train = ModelParams(kind="cnn", conv_filters=[4]), TrainParams(augment=True)
    stripped = inference_model(augmented, model, train, 20, 10)
    assert "augment" not in [layer.name for layer in stripped.layers]
    np.testing.assert_array_equal(stripped(x), plain(x))
    assert not np.allclose(augmented(x, training=True), plain(x, training=True))


def test_bilinear_sample_matches_keras_map_coordinates():
    rng = np.random.default_rng(0)
    images = rng.random((3, 20, 20), dtype=np.float32)
    rows, cols = rng.uniform(-3, 23, (2, 3, 20, 20)).astype(np.float32)  # inside, on the edge and beyond
    batch = np.broadcast_to(np.arange(3, dtype=np.float32)[:, None, None], rows.shape)
    expected = keras.ops.image.map_coordinates(images, [batch, rows, cols], order=1, fill_mode="constant")
    np.testing.assert_allclose(bilinear_sample(images, rows, cols), expected, atol=1e-6)


def warp_sources(**ranges: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where RandomWarp reads the central 16x16 pixels of eight 32x32 images, centred: (8, 16, 16) source
    rows and cols, and the (16, 16, 2) output positions. A warped ramp is its own source coordinate."""
    rows, cols = np.meshgrid(np.arange(32, dtype=np.float32), np.arange(32, dtype=np.float32), indexing="ij")
    ranges = {"rotation": 0.0, "shift": 0.0, "zoom": 0.0, "elastic": 0.0, **ranges}

    def read(ramp: np.ndarray) -> np.ndarray:  # a fresh layer with the same seed: the same eight warps
        images = np.broadcast_to(ramp[None, :, :, None], (8, 32, 32, 1))
        return np.asarray(RandomWarp(**ranges, sigma=3.0, seed=0)(images, training=True))[:, 8:-8, 8:-8, 0]

    return read(rows) - 15.5, read(cols) - 15.5, np.stack([rows, cols], -1)[8:-8, 8:-8] - 15.5


def test_warp_is_a_rotation_zoom_and_shift_within_its_ranges():
    source_rows, source_cols, output = warp_sources(rotation=0.05, zoom=0.1, shift=0.1)
    design = np.concatenate([output.reshape(-1, 2), np.ones((256, 1), np.float32)], axis=1)
    angles = []
    for image in range(8):
        source = np.stack([source_rows[image], source_cols[image]], -1).reshape(-1, 2)
        affine = np.linalg.lstsq(design, source, rcond=None)[0]  # source = [row, col, 1] @ affine
        np.testing.assert_allclose(design @ affine, source, atol=1e-3)
        (cos, sin), (minus_sin, also_cos), shift = affine  # times the zoom
        assert also_cos == pytest.approx(cos, abs=1e-4) and minus_sin == pytest.approx(-sin, abs=1e-4)
        angles.append(np.arctan2(sin, cos))
        assert abs(np.hypot(cos, sin) - 1) <= 0.1 + 1e-4
        assert np.all(np.abs(shift) <= 0.1 * 32 + 1e-3)
    assert np.all(np.abs(angles) <= 0.05 * 2 * np.pi + 1e-4) and np.std(angles) > 0.05


def test_elastic_distortion_moves_pixels_by_its_magnitude():
    source_rows, source_cols, output = warp_sources(elastic=1.5)
    displacement = np.stack([source_rows, source_cols], -1) - output
    assert np.sqrt(np.mean(displacement**2)) == pytest.approx(1.5, rel=0.25)
    again = warp_sources(elastic=1.5)
    assert np.array_equal(source_rows, again[0])  # seeded: the same distortions every run
    ramps = np.arange(2 * 32 * 32, dtype=np.float32).reshape(2, 32, 32, 1)
    assert np.array_equal(RandomWarp(0.1, 0.1, 0.1, 1.5, sigma=3.0)(ramps, training=False), ramps)


def test_appearance_augmentation_is_seeded_and_changes_only_what_it_names():
    """Stroke width, resolution, blur and contrast: off at 0 (the warp alone, bit for bit), seeded, and each
    one moving the images the way it says."""
    from neurodigits.synth import held_out_digits  # noqa: PLC0415

    digits = held_out_digits(20)[0][:16, ..., None].astype("float32") / 255.0
    still = dict(rotation=0.0, shift=0.0, zoom=0.0, elastic=0.0, sigma=1.0, seed=3)

    def augment(**looks):
        return np.asarray(RandomWarp(**still, **looks)(digits, training=True))

    plain = augment()
    assert np.allclose(plain, digits, atol=1e-5)  # no warp, no looks: the digits as they are
    assert np.array_equal(augment(stroke=0.0, blur=0.0, contrast=0.0, resolution=0.0), plain)
    stroke = augment(stroke=1.0)
    assert np.array_equal(stroke, augment(stroke=1.0))  # seeded
    inked = (stroke > 0.5).sum(axis=(1, 2, 3)) - (plain > 0.5).sum(axis=(1, 2, 3))
    assert (inked > 0).any() and (inked < 0).any()  # some grown, some thinned
    for looks in ({"blur": 1.5}, {"resolution": 1.0}):  # softer edges: less energy in pixel-to-pixel steps
        assert np.abs(np.diff(augment(**looks), axis=2)).sum() < np.abs(np.diff(plain, axis=2)).sum()
    faint = augment(contrast=0.5)
    assert faint.max() <= 1.0 and faint.sum() < plain.sum()


def test_early_stopping_restores_the_best_weights():
    set_determinism(1)
    rng = np.random.default_rng(1)
    x, y = rng.random((256, 16), dtype=np.float32), rng.integers(0, 2, 256)
    validation = (rng.random((64, 16), dtype=np.float32), rng.integers(0, 2, 64))  # noise: val loss rises
    model = build_mlp(16, 2, [64])
    params = TrainParams(epochs=60, batch_size=16, learning_rate=0.01, early_stopping_patience=2)
    history = fit(model, x, y, params, validation=validation, verbose=0)
    assert len(history) < 60
    best = history["val_loss"].min()
    assert history["val_loss"].iloc[-1] > best
    restored = model.evaluate(*validation, verbose=0, return_dict=True)["loss"]
    assert abs(restored - best) < 1e-4


def test_balanced_class_weights_lift_a_rare_class():
    """train.class_weight balanced: each class weighs 1 / its share, so a rare class that shares its look with
    a common one (0 beside O) is no longer swallowed by it."""
    assert class_weights(np.array([0] * 90 + [1] * 10)) == pytest.approx({0: 100 / 180, 1: 100 / 20})
    rng = np.random.default_rng(0)
    x = rng.random((400, 8), dtype=np.float32)
    y = (rng.random(400) < 0.1).astype(np.int64)  # 10% class 1, and x says nothing about it
    predicted = {}
    for weighting in ("none", "balanced"):
        set_determinism(0)
        model = build_mlp(8, 2, [16])
        fit(model, x, y, TrainParams(epochs=20, batch_size=32, learning_rate=0.01, class_weight=weighting), verbose=0)
        predicted[weighting] = (model.predict(x, verbose=0).argmax(1) == 1).mean()
    assert predicted["none"] < 0.05 and predicted["balanced"] > 0.3


def test_training_batches_are_kerass_own_bit_for_bit():
    """fit feeds Keras `training.batches` (its own adapter of NumPy arrays, without tf.data's autotuning thread):
    the trained weights are those of Keras's fit on the arrays, with class weights and validation data too."""
    rng = np.random.default_rng(0)
    x, y = rng.random((300, 16), dtype=np.float32), rng.integers(0, 3, 300)
    params = TrainParams(epochs=3, batch_size=32, class_weight="balanced")
    hashes = []
    for keras_arrays in (True, False):
        set_determinism(0)
        model = build_mlp(16, 3, [8])
        if keras_arrays:
            compile_model(model, params, steps_per_epoch=10)
            model.fit(x, y, epochs=3, batch_size=32, shuffle=True, validation_data=(x[:50], y[:50]),
                      class_weight=class_weights(y), verbose=0)
        else:
            fit(model, x, y, params, validation=(x[:50], y[:50]), verbose=0)
        hashes.append(weights_sha256(model))
    assert hashes[0] == hashes[1]
    assert not batches(x, y, 32).options().autotune.enabled


def test_label_smoothing_aims_at_a_softened_target():
    """train.label_smoothing s: the loss is the cross-entropy against 1 - s + s/K on the true class and s/K on
    each other one; its minimum is there, not at certainty."""
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0]], dtype=np.float32)
    labels = np.array([0, 2])
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    target = np.full((2, 3), 0.1 / 3) + 0.9 * np.eye(3)[labels]
    assert float(SmoothedCrossentropy(0.1)(labels, logits)) == pytest.approx(-(target * log_p).sum(1).mean(), 1e-6)
    rng = np.random.default_rng(0)
    x = rng.random((200, 8), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    x[:, 0] += np.where(y, 0.5, -0.5)  # far apart: without smoothing, the model grows ever more certain
    confidence = {}
    for smoothing in (0.0, 0.2):
        set_determinism(0)
        model = build_mlp(8, 2, [16])
        fit(model, x, y, TrainParams(epochs=60, batch_size=32, learning_rate=0.01, label_smoothing=smoothing),
            verbose=0)
        probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(model.predict(x, verbose=0)))
        confidence[smoothing] = float(probabilities.max(1).mean())
    assert confidence[0.0] > 0.97 and 0.8 < confidence[0.2] < 0.95  # the smoothed optimum: 1 - 0.2 + 0.1 = 0.9


def test_an_interrupt_that_a_library_swallowed_still_stops_training():
    """The signal handler's KeyboardInterrupt can be lost inside TensorFlow or Keras; interrupts.received is not,
    and training stops at the next batch, epochs before the end."""
    set_determinism(0)
    x, y = np.random.default_rng(0).random((256, 16), dtype=np.float32), np.arange(256) % 4
    model = build_mlp(16, 4, [8])
    stops = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: interrupts.received.set())
    interrupts.received.clear()
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(model, x, y, TrainParams(epochs=50, batch_size=8, steps_per_execution=1), callbacks=[stops], verbose=0)
    finally:
        interrupts.received.clear()
    assert model.optimizer.iterations.numpy() < 2 * 256 // 8  # the second epoch at most began


def test_lr_schedules_start_at_the_learning_rate_and_decay():
    params, steps_per_epoch = TrainParams(epochs=5, learning_rate=0.01), 10
    assert learning_rate(params, steps_per_epoch) == 0.01
    for schedule in ("cosine", "exponential"):
        lr = learning_rate(params.model_copy(update={"lr_schedule": schedule}), steps_per_epoch)
        assert float(lr(0)) == pytest.approx(0.01) and float(lr(49)) < 0.01 * 0.7


def test_short_cnn_run_through_the_pipeline_beats_chance(tmp_path: Path):
    project = copy_project(tmp_path, data={"limit": 1000},
                           train={"epochs": 4, "batch_size": 16, "learning_rate": 0.003, "augment": True},
                           model={"kind": "cnn", "conv_filters": [8, 16], "dense_units": 32, "dropout": 0.0,
                                  "batch_norm": "pooled"})  # exported with batch norm after a max-pool, too
    run(["dvc", "repro"], project)
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.5  # chance is 0.1
    metadata = json.loads((project / "models/export/metadata.json").read_text())
    assert metadata["model_kind"] == "cnn" and max(metadata["parity"].values()) <= 1e-4


def test_export_parity_tolerance_is_relative_to_the_largest_logit():
    from neurodigits import NeuroDigitsError  # noqa: PLC0415
    from neurodigits.export import check_parity  # noqa: PLC0415

    large = np.array([[30.0, -5.0], [-2.0, 12.0]])
    assert check_parity(large, {"tflite": large + 2e-3}, 1e-4) == {"tflite_max_logit_diff": pytest.approx(2e-3)}
    with pytest.raises(NeuroDigitsError, match=r"max logit diff 4\.00e-03 > export.logits_tolerance 0.0001 x"):
        check_parity(large, {"tflite": large + 4e-3}, 1e-4)
    small = np.array([[0.5, -0.2]])  # logits under 1: the tolerance is absolute
    with pytest.raises(NeuroDigitsError, match="max logit diff 2.00e-04"):
        check_parity(small, {"saved_model": small + 2e-4}, 1e-4)
    with pytest.raises(NeuroDigitsError, match="1 different predictions"):
        check_parity(small, {"keras": small[:, ::-1]}, 1e-4)
