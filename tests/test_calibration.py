"""Calibration that does not depend on how the representative data were sliced, range
estimators, and the deployment check shared by convert() and convert_c()."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from keras_rnnedge._compat import keras
from keras_rnnedge.cells import FastGRNNCell
from keras_rnnedge.converters import ConversionError, convert
from keras_rnnedge.converters.c.cexport import convert_c
from keras_rnnedge.converters.c.intmodel import quantize_model
from keras_rnnedge.converters.quality import (
    CalibrationWarning,
    DeploymentCheck,
    DeploymentQualityError,
    DeploymentQualityWarning,
    StageCheckError,
    calibration_sample,
    choose_range,
    coverage,
)
from tests import tolerances

T, F, CLASSES = 10, 3, 4


def _task(n: int, seed: int):
    """A task whose classes differ in the level of channel 0 (0, 1.5, 3, 4.5) under noise: a
    slice of one class sees channel 0 only near 0, so ranges set on it clip the others."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(CLASSES), n // CLASSES)
    x = rng.normal(0.0, 0.3, (len(y), T, F)).astype("float32")
    x[:, :, 0] += 1.5 * y[:, None]
    return x, y.astype("int32")


@pytest.fixture(scope="module")
def ordered():
    """A small FastGRNN trained on the task; the training set is ordered by class (as many
    data sets are stored), the test set is drawn separately."""
    x_train, y_train = _task(320, seed=0)  # ordered: 80 windows of class 0, then class 1, ...
    x_test, y_test = _task(200, seed=1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((T, F)),
                              keras.layers.RNN(FastGRNNCell(8, u_rank=4), name="rnn"),
                              keras.layers.Dense(CLASSES)], name="ordered_fastgrnn")
    model.compile(keras.optimizers.Adam(0.03),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=12, batch_size=32, verbose=0, shuffle=True)
    float_acc = float(np.mean(np.argmax(model.predict(x_test, verbose=0), -1) == y_test))
    assert float_acc >= 0.9, f"the fixture model did not learn the task ({float_acc:.2f})"
    return model, x_train, y_train, x_test, y_test


# -- the pieces -----------------------------------------------------------------------------------

def test_sample_is_drawn_across_the_whole_array_and_seeded():
    data = np.arange(1000, dtype=np.float32).reshape(1000, 1, 1)
    a = calibration_sample(data, 100, seed=3)
    b = calibration_sample(data, 100, seed=3)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 100 and len(np.unique(a)) == 100
    assert np.all(np.diff(a[:, 0, 0]) > 0)  # kept in the array's order
    # drawn from the whole array: every tenth of it holds some of the sample
    counts = np.bincount((a[:, 0, 0] // 100).astype(int), minlength=10)
    assert np.all(counts > 0), counts
    assert not np.array_equal(a, calibration_sample(data, 100, seed=4))
    assert calibration_sample(data, 5000) is data  # no more than there are


def test_small_calibration_warns():
    with pytest.warns(CalibrationWarning, match="only 8 sequences"):
        calibration_sample(np.zeros((8, 2, 1), np.float32), 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        calibration_sample(np.zeros((64, 2, 1), np.float32), 64)
    with pytest.raises(ConversionError, match="calibration_size.*got 0"):
        calibration_sample(np.zeros((64, 2, 1), np.float32), 0)


def _brute_force_error(values, lo, hi, bits):
    """Mean squared error of a uniform quantizer on [lo, hi], element by element."""
    step = (hi - lo) / (2**bits - 1)
    total = 0.0
    for v in values:
        c = min(max(v, lo), hi)
        q = lo + round((c - lo) / step) * step
        total += (v - q) ** 2
    return total / len(values)


def test_choose_range_picks_the_smallest_error():
    rng = np.random.default_rng(0)
    uniform = rng.uniform(-1.0, 1.0, 5000)
    lo, hi, how = choose_range(uniform)
    assert how == "minmax" and lo == pytest.approx(uniform.min()) and hi == pytest.approx(
        uniform.max())
    # a heavy tail at 4 bits: clipping it costs less than the resolution min/max would lose
    heavy = rng.laplace(0.0, 1.0, 4000)
    lo, hi, how = choose_range(heavy, bits=4)
    assert how in ("percentile", "mse") and hi < 0.8 * heavy.max()
    chosen = _brute_force_error(heavy, lo, hi, 4)
    minmax = _brute_force_error(heavy, min(heavy.min(), 0.0), max(heavy.max(), 0.0), 4)
    assert chosen < 0.8 * minmax
    lo, hi, _ = choose_range(np.array([0.5, 2.0]))
    assert lo == 0.0  # zero stays representable
    lo, _, _ = choose_range(np.array([0.5, 2.0]), bits=16, include_zero=False)
    assert lo == 0.5


def test_coverage_names_uncovered_ranges_and_classes():
    cal = np.zeros((4, 3, 2), np.float32)
    cal[..., 1] = 1.0
    x = cal[:2].copy()
    x[0, :, 0] = 5.0  # outside the range of feature 0
    cov = coverage(cal, x, np.array([0, 0]), np.array([0, 2]))
    assert not cov.ok
    assert cov.worst_feature[0] == 0 and cov.outside == pytest.approx(3 / 12)
    assert cov.missing_classes == (2,)
    assert coverage(cal, cal[:2]).ok


def test_deployment_check_options_are_validated():
    with pytest.raises(ConversionError, match="checks to be one of 'raise', 'warn', but got "
                                              "'off'"):
        DeploymentCheck(checks="off")
    with pytest.raises(ConversionError, match="max_accuracy_drop.*got -1"):
        DeploymentCheck(max_accuracy_drop=-1)
    with pytest.raises(ConversionError, match="min_agreement.*got 1.5"):
        DeploymentCheck(min_agreement=1.5)


# -- the standalone C --------------------------------------------------------------------------

def test_c_ranges_from_a_class_slice_fail_and_the_check_raises(ordered):
    model, x_train, _, x_test, y_test = ordered
    # min/max on the first windows of an ordered training set: one class only
    with pytest.raises(DeploymentQualityError, match="calibration coverage") as err:
        with pytest.warns(CalibrationWarning, match="do not cover"):
            convert_c(model, target="host", representative_data=x_train[:64],
                      validation_data=(x_test, y_test))
    assert "representative_data=x_train" in str(err.value)
    # the opt-out converts, and records what was lost
    with pytest.warns(DeploymentQualityWarning, match="loses too much"):
        r = convert_c(model, target="host", representative_data=x_train[:64],
                      validation_data=(x_test, y_test), checks="warn")
    assert r.quality is not None and not r.quality.passed
    assert r.quality.accuracy_drop > 10.0  # the broken calibration really is broken
    assert r.manifest()["quality"]["passed"] is False


def test_c_robust_default_stays_within_one_point(ordered):
    model, x_train, _, x_test, y_test = ordered
    r = convert_c(model, target="host", representative_data=x_train,
                  validation_data=(x_test, y_test))
    q = r.quality
    assert q.source == "validation data" and q.windows == len(y_test)
    assert q.accuracy_drop <= tolerances.CALIBRATED_MAX_DROP_POINTS
    # the report is the oracle's accuracy, measured independently here
    im = r.int_model
    ours = float(np.mean(np.argmax(im.run(x_test), -1) == y_test))
    assert q.deployed_accuracy == pytest.approx(ours)
    assert "quality" in r.report() and json.dumps(r.manifest())
    # without labels only the agreement is checked
    r2 = convert_c(model, target="host", representative_data=x_train, validation_data=(x_test,))
    assert r2.quality.float_accuracy is None and r2.quality.agreement >= 0.9


def test_quantize_model_input_ranges_use_all_the_data(ordered):
    model, x_train, _, _, _ = ordered
    im = quantize_model(model, x_train, calibration_size=16)
    top = x_train[..., 0].max()
    # channel 0's range reaches the last class although only 16 windows were sampled
    assert im.input_offset[0] + 2**15 / im.input_scale[0] == pytest.approx(top, rel=1e-3)
    assert len(im.input_estimators) == F


def test_exploding_relu_rnn_is_caught_by_the_c_check():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((40, 2)),
                              keras.layers.SimpleRNN(6, activation="relu", name="rnn"),
                              keras.layers.Dense(3)], name="exploding")
    rnn = model.get_layer("rnn")
    kernel, _, bias = rnn.get_weights()
    rnn.set_weights([kernel, 1.6 * np.eye(6, dtype=np.float32), bias + 0.5])
    x = np.abs(np.random.default_rng(0).normal(0, 1, (64, 40, 2))).astype("float32")
    with pytest.raises(DeploymentQualityError, match="agreement"):
        convert_c(model, target="host", representative_data=x)
    with pytest.warns(DeploymentQualityWarning):
        r = convert_c(model, target="host", representative_data=x, checks="warn")
    assert r.quality.agreement < 0.9 and "int vs float argmax agreement" in r.checks


# -- TFLite ----------------------------------------------------------------------------------------

def test_nan_representative_data_is_refused_in_every_mode(ordered):
    model, x_train, *_ = ordered
    bad = x_train[:40].copy()
    bad[3, 2, 1] = np.nan
    for quantization in ("float32", "dynamic"):
        with pytest.raises(ConversionError, match="NaN"):
            convert(model, target="host", quantization=quantization, representative_data=bad)


def test_huge_calibration_data_does_not_convert_silently(ordered):
    model, x_train, _, x_test, y_test = ordered
    with pytest.raises(DeploymentQualityError, match="span only .* of the calibrated range"):
        with pytest.warns(CalibrationWarning):
            convert(model, target="host", quantization="int8",
                    representative_data=x_train * np.float32(1e30),
                    validation_data=(x_test[:40], y_test[:40]))


def test_stage_check_that_gives_nan_raises(ordered, monkeypatch):
    from keras_rnnedge.converters.tflite import pipeline

    model, x_train, *_ = ordered
    monkeypatch.setattr(pipeline, "_run_lowered", lambda lowered, x: np.full((len(x), CLASSES),
                                                                             np.nan))
    with pytest.raises(StageCheckError, match="'lowered vs keras' gives nan"):
        convert(model, target="host", quantization="float32", representative_data=x_train)
    with pytest.warns(DeploymentQualityWarning, match="gives nan"):
        r = convert(model, target="host", quantization="float32", representative_data=x_train,
                    checks="warn")
    assert np.isnan(r.checks["lowered vs keras"])


@pytest.mark.slow
def test_tflite_class_slice_raises_and_robust_default_holds(ordered):
    model, x_train, _, x_test, y_test = ordered
    with pytest.raises(DeploymentQualityError, match="calibration coverage"):
        with pytest.warns(CalibrationWarning):
            convert(model, target="host", quantization="int8", representative_data=x_train[:64],
                    validation_data=(x_test, y_test))
    r = convert(model, target="host", quantization="int8", representative_data=x_train,
                validation_data=(x_test, y_test))
    assert r.quality.accuracy_drop <= tolerances.CALIBRATED_MAX_DROP_POINTS
    # each state input shares its range with the state output: nothing is re-quantized
    state_in, state_out = r.tflite.input("state_0"), r.tflite.output("state_0_out")
    assert (state_in.scale, state_in.zero_point) == (state_out.scale, state_out.zero_point)
    assert r.tflite.calibration["state_0"]["range"] == r.tflite.calibration["state_0_out"]["range"]
    assert r.manifest()["quality"]["deployed"] == "TFLite Micro int8"
    assert "quality" in r.report()


def test_cli_checks_the_conversion_against_the_data(ordered, tmp_path, capsys):
    from keras_rnnedge import cli

    model, x_train, y_train, x_test, y_test = ordered
    model_path = tmp_path / "m.keras"
    model.save(model_path)
    data = tmp_path / "sliced.npz"  # calibration: one class; check: the test windows
    np.savez(data, x_train=x_train[:64], y_train=y_train[:64], x_test=x_test, y_test=y_test)
    args = ["convert", str(model_path), "--target", "host", "--format", "c", "--data", str(data)]
    assert cli.main(args + ["--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "loses too much on 200 validation data windows" in err
    assert "calibration coverage" in err
    with pytest.warns(DeploymentQualityWarning):
        assert cli.main(args + ["--out", str(tmp_path / "b"), "--checks", "warn"]) == 0
    saved = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert saved["quality"]["passed"] is False and saved["quality"]["windows"] == 200
    # a looser threshold is the user's to set
    assert cli.main(args + ["--out", str(tmp_path / "c"), "--max-accuracy-drop", "100",
                            "--min-agreement", "0"]) == 0


def test_qat_ranges_are_kept(ordered):
    from keras_rnnedge.converters.tflite.flatbuffer import qat_ranges
    from keras_rnnedge.optimize import quantize_model as qat_model

    model, x_train, *_ = ordered
    qat = qat_model(model)
    qat(x_train[:2])
    for layer in qat.layers:
        for var in layer.weights:
            if var.name.endswith("quantize_layer_min:0"):
                var.assign(-2.5)
            elif var.name.endswith("quantize_layer_max:0"):
                var.assign(7.0)
            elif var.name.endswith("post_activation_min:0"):
                var.assign(-20.0)
            elif var.name.endswith("post_activation_max:0"):
                var.assign(21.0)
    assert qat_ranges(qat) == {"x": (-2.5, 7.0), "y": (-20.0, 21.0)}
    assert qat_ranges(model) == {}
    # checks="warn": the ranges were set by hand here, not trained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeploymentQualityWarning)
        r = convert(qat, target="host", quantization="int8", representative_data=x_train,
                    checks="warn")
    assert r.tflite.calibration["x"] == {"range": [-2.5, 7.0], "estimator": "qat"}
    x = r.tflite.input("x")
    assert x.scale == pytest.approx(9.5 / 255, rel=1e-3)
    assert r.tflite.calibration["state_0"]["estimator"] in ("minmax", "percentile")
