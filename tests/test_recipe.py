"""The training recipe (keras_rnnedge.recipe) and ``rnnedge train``: phases, best-weights
restore, the thresholding ramp, the budget, distillation, QAT, and the deployed model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from keras_rnnedge import cli
from keras_rnnedge._compat import keras
from keras_rnnedge.cells.constraints import SupportMask
from keras_rnnedge.datasets import load_har
from keras_rnnedge.optimize import HardThresholding
from keras_rnnedge.recipe import (
    Recipe,
    build_classifier,
    density_for_budget,
    int8_bytes_at,
    make_cell,
    train,
)
from keras_rnnedge.summary import summary

T = 32  # HAR windows cut to 32 steps: the tests check the recipe, not accuracy


@pytest.fixture(scope="module")
def data():
    full = load_har(6, validation_split=0.1, seed=0)
    rng = np.random.default_rng(0)

    def pick(x, y, n):
        index = np.sort(rng.permutation(len(y))[:n])
        return x[index, :T], y[index]

    x_train, y_train = pick(full.x_train, full.y_train, 192)
    x_val, y_val = pick(full.x_val, full.y_val, 96)
    x_test, y_test = pick(full.x_test, full.y_test, 96)
    return dataclasses.replace(full, x_train=x_train, y_train=y_train, x_val=x_val,
                               y_val=y_val, x_test=x_test, y_test=y_test)


def _model(data, units=12, **cell_args):
    keras.utils.set_random_seed(1)
    cell = make_cell("fastgrnn", units, kernel_rank=3, recurrent_rank=6, **cell_args)
    return build_classifier(cell, data.x_train, data.num_classes)


QUICK = Recipe(dense_epochs=2, threshold_epochs=2, sparse_epochs=2, batch_size=32)


def test_recipe_checks_its_settings():
    with pytest.raises(ValueError, match="ramp_epochs=3 > threshold_epochs=2"):
        Recipe(threshold_epochs=2, ramp_epochs=3)
    with pytest.raises(ValueError, match="alpha"):
        Recipe(alpha=1.5)
    with pytest.raises(ValueError, match="learning_rate"):
        Recipe(learning_rate=0)
    assert Recipe(threshold_epochs=5).ramp == 3 and Recipe(threshold_epochs=4).ramp == 2


def test_cli_cell_choices_are_the_recipe_kinds():
    from keras_rnnedge.recipe import CELL_KINDS

    assert cli.TRAIN_CELLS == tuple(CELL_KINDS)


def test_make_cell_names_the_known_kinds():
    with pytest.raises(ValueError, match="fastgrnn.*hlstm"):
        make_cell("transformer", 8)
    cell = make_cell("lstm", 8, kernel_rank=2)
    assert type(cell).__name__ == "LowRankLSTMCell"
    assert cell.structures["kernel"].family == "low_rank"


def test_build_classifier_standardises_with_training_statistics(data):
    model = _model(data)
    norm = model.get_layer("standardize")
    mean = data.x_train.mean(axis=(0, 1), dtype=np.float64)
    np.testing.assert_allclose(np.ravel(norm.mean.numpy()), mean, rtol=1e-5, atol=1e-6)
    out = keras.Model(model.inputs, norm.output).predict(data.x_train, verbose=0)
    np.testing.assert_allclose(out.mean(axis=(0, 1)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1)), 1, atol=1e-3)


def test_build_classifier_leaves_a_constant_feature_unscaled(data):
    x = data.x_train.copy()
    x[..., 0] = 3.0
    model = build_classifier(make_cell("fastgrnn", 4), x, 6)
    norm = model.get_layer("standardize")
    assert float(np.ravel(norm.variance.numpy())[0]) == 1.0
    with pytest.raises(ValueError, match="NaN"):
        build_classifier(make_cell("fastgrnn", 4), np.full((2, 3, 1), np.nan), 2)


def test_density_for_budget_fits_and_refuses_the_impossible(data):
    model = _model(data)
    dense = summary(model).totals.bytes_int8
    budget = (dense + int8_bytes_at(model, 0.2)) // 2
    density = density_for_budget(model, budget)
    assert 0 < density < 1
    assert int8_bytes_at(model, density) <= budget < int8_bytes_at(model, density + 0.02)
    assert density_for_budget(model, dense) is None
    with pytest.raises(ValueError, match="Use fewer hidden units"):
        density_for_budget(model, 50)


def test_ramp_moves_into_thresholding_along_the_cubic(data):
    model = _model(data)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    iht = HardThresholding(0.2, dense_epochs=0, iht_epochs=2, ramp_epochs=2)
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            t = iht.targets[0]
            seen.append((iht.ramp_fraction(), float(np.mean(t.variable.numpy() != 0))))

    model.fit(data.x_train, data.y_train, batch_size=32, epochs=2, verbose=0,
              callbacks=[iht, Watch()])
    fractions = np.array([f for f, _ in seen])
    kept = np.array([k for _, k in seen])
    expected = 0.2 + 0.8 * (1 - fractions) ** 3
    size = iht.targets[0].variable.numpy().size
    np.testing.assert_allclose(kept, np.round(expected * size) / size, atol=1.01 / size)
    assert kept[0] > 0.5 and kept[-1] == pytest.approx(0.2, abs=1 / size)
    with pytest.raises(ValueError, match="ramp_epochs <= iht_epochs"):
        HardThresholding(0.2, dense_epochs=0, iht_epochs=1, ramp_epochs=2)


def test_train_runs_the_phases_restores_the_best_and_keeps_the_support(data, tmp_path):
    model = _model(data)
    budget = (summary(model).totals.bytes_int8 + int8_bytes_at(model, 0.3)) // 2
    lines = []
    result = train(model, data, QUICK, budget_bytes=budget, log=lines.append, progress=False)
    assert [p.phase for p in result.phases] == ["dense", "threshold", "sparse"]
    assert summary(result.model).totals.bytes_int8 <= budget
    # each phase ends on its best validation epoch: the returned model is the sparse phase's best
    sparse_rows = [r for r in result.history if r["phase"] == "sparse"]
    best = max(r["val_accuracy"] for r in sparse_rows)
    assert result.val_accuracy == pytest.approx(best, abs=1e-6)
    assert result.phases[-1].val_accuracy == pytest.approx(best, abs=1e-6)
    assert any("restored epoch" in line for line in lines)
    assert sum(line.startswith("dense") and "epoch" in line for line in lines) >= 2
    # the support is frozen in the model and saved with it
    cell = result.model.get_layer("rnn").cell
    assert isinstance(cell.recurrent_constraint, SupportMask)
    kept = np.mean(cell.recurrent_kernel_u.numpy() != 0)
    assert kept == pytest.approx(result.density, abs=0.02)
    path = tmp_path / "m.keras"
    result.model.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(again.predict(data.x_test, verbose=0),
                               result.model.predict(data.x_test, verbose=0), atol=1e-5)


def test_best_weights_are_restored_when_a_phase_degrades(data):
    """A learning rate that wrecks the dense phase: the restored model is its best epoch's."""
    model = _model(data)
    recipe = Recipe(dense_epochs=4, threshold_epochs=0, sparse_epochs=0, learning_rate=3.0,
                    clipnorm=None, batch_size=32)
    result = train(model, data, recipe, log=None, progress=False)
    rows = [r["val_accuracy"] for r in result.history]
    assert result.phases[0].val_accuracy == pytest.approx(max(rows), abs=1e-6)
    assert result.val_accuracy == pytest.approx(max(rows), abs=1e-6)


def test_train_refuses_data_without_validation_split(data):
    with pytest.raises(ValueError, match="validation split"):
        train(_model(data), dataclasses.replace(data, x_val=None, y_val=None), QUICK, log=None)
    with pytest.raises(ValueError, match="both density and budget_bytes"):
        train(_model(data), data, QUICK, density=0.5, budget_bytes=100, log=None)


def test_train_distils_from_a_teacher(data):
    keras.utils.set_random_seed(2)
    teacher = keras.Sequential([keras.Input((T, 9)), keras.layers.GRU(8),
                                keras.layers.Dense(6)])
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(data.x_train, data.y_train, epochs=1, verbose=0)
    model = _model(data)
    result = train(model, data, Recipe(dense_epochs=1, threshold_epochs=1, sparse_epochs=1,
                                       batch_size=32),
                   density=0.5, teacher=teacher, log=None, progress=False)
    assert result.model is model  # the student, not the distiller
    assert len(result.phases) == 3


def test_qat_phase_keeps_the_support_and_converts(data):
    from keras_rnnedge.converters import convert_c
    from keras_rnnedge.converters.lowering import is_qat
    from keras_rnnedge.micro_targets.crun import run_c

    model = _model(data)
    recipe = Recipe(dense_epochs=1, threshold_epochs=1, sparse_epochs=1, qat_epochs=1,
                    batch_size=32)
    result = train(model, data, recipe, density=0.4, log=None, progress=False)
    assert is_qat(result.model) and [p.phase for p in result.phases][-1] == "qat"
    kernels = [w.numpy() for w in result.model.weights if "recurrent_kernel_u" in w.name
               and not w.name.endswith(("_min:0", "_max:0"))]
    assert kernels and np.mean(kernels[0] != 0) == pytest.approx(0.4, abs=0.02)
    conversion = convert_c(result.model, target="uno", representative_data=data.x_train)
    x_q = conversion.quantize_input(data.x_test)
    host = run_c(conversion, x_q, target="host", progress=False)
    np.testing.assert_array_equal(host.scores, conversion.int_model.run(data.x_test))


def _npz(data, path, **skip):
    arrays = {f"{a}_{s}": getattr(data, f"{a}_{s}") for s in ("train", "val", "test")
              for a in ("x", "y") if s not in skip}
    np.savez(path, class_names=np.array(data.class_names), **arrays)
    return path


def test_cli_train_trains_saves_converts_and_reports(data, tmp_path, capsys):
    npz = _npz(data, tmp_path / "d.npz", val=True)  # no x_val: 10 % of x_train split off
    out = tmp_path / "run"
    code = cli.main(["train", "--data", str(npz), "--units", "24", "--kernel-rank", "3",
                     "--budget-kb", "0.8", "--epochs", "3", "--batch-size", "32",
                     "--target", "uno", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "threshold epoch" in text and "deployed accuracy" in text and "RAM" in text
    record = json.loads((out / "training.json").read_text())
    assert record["bytes_int8"] <= 0.8 * 1024
    assert record["deployed"]["format"] == "c" and record["deployed"]["windows"] == 96
    model = cli.load_model(out / "model.keras")
    assert summary(model).totals.bytes_int8 == record["bytes_int8"]
    assert (out / "uno" / "c").is_dir()
    # the deployed accuracy is the integer C's on the test windows
    from keras_rnnedge.converters import convert_c
    from keras_rnnedge.micro_targets.crun import run_c

    conversion = convert_c(model, target="uno", representative_data=np.load(npz)["x_train"])
    host = run_c(conversion, conversion.quantize_input(data.x_test), target="host",
                 progress=False)
    assert record["deployed"]["accuracy"] == pytest.approx(
        np.mean(host.predictions() == data.y_test), abs=0.05)


def test_cli_train_errors_name_the_problem(data, tmp_path, capsys):
    npz = _npz(data, tmp_path / "d.npz")
    code = cli.main(["train", "--data", str(npz), "--units", "64", "--budget-kb", "0.05",
                     "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "budget" in err and "fewer hidden units" in err
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=data.x_train)
    assert cli.main(["train", "--data", str(bad), "--out", str(tmp_path / "p")]) == 2
    assert "y_train" in capsys.readouterr().err
