"""Flexible RNNs (keras_rnnedge.flexible): a cell's width switched by a level at every step,
in Keras, the integer oracle and the generated C (host, and one model on QEMU and simavr)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from keras_rnnedge import keras, tf
from keras_rnnedge.cells import (
    FastGRNNCell,
    LowRankGRUCell,
    LowRankLSTMCell,
    ProjectionLSTMCell,
)
from keras_rnnedge.converters import convert_c, lower
from keras_rnnedge.converters.c.intmodel import quantize_model
from keras_rnnedge.flexible import (
    FlexibleRNN,
    ScheduleSequence,
    SwitchingCell,
    WithLevel,
    level_macs,
    random_schedules,
    switch_schedule,
)
from keras_rnnedge.micro_targets.crun import run_c
from tests.cell_examples import cases, make
from tests.tolerances import REORDER_ATOL

T, F = 10, 3

#: the tiny data sets here are the whole data, on purpose
pytestmark = pytest.mark.filterwarnings("ignore:Calibration on only")


def flexible_model(cell, *, head: int | None = 2, name: str = "flex") -> keras.Model:
    x = keras.Input((T, F))
    level = keras.Input((T,))
    h = FlexibleRNN(cell)(WithLevel()([x, level]))
    y = keras.layers.Dense(head)(h) if head else h
    return keras.Model([x, level], y, name=name)


def data(n: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, T, F)).astype(np.float32)


# -- arguments --------------------------------------------------------------------------------

@pytest.mark.parametrize("levels, match", [
    ((2, 5), "ending with units=6"),
    ((3, 3, 6), "strictly increasing"),
    ((0, 6), "in \\[1, 6\\]"),
    ((2.5, 6), "levels"),
    ("abc", "levels"),
    ((), "levels"),
])
def test_bad_levels_are_refused_with_what_was_expected(levels, match):
    with pytest.raises(ValueError, match=match):
        FastGRNNCell(6, levels=levels)


def test_flexible_rnn_refuses_a_cell_without_levels():
    with pytest.raises(ValueError, match="levels=None"):
        FlexibleRNN(FastGRNNCell(6))
    with pytest.raises(ValueError, match="expected a keras_rnnedge cell"):
        FlexibleRNN(keras.layers.LSTMCell(6))


def test_schedules():
    s = switch_schedule(3, 8, 5, 0, 2)
    assert s.shape == (3, 8) and (s[:, :5] == 0).all() and (s[:, 5:] == 2).all()
    assert (switch_schedule(1, 8, 0, 0, 2) == 2).all()
    assert (switch_schedule(1, 8, 8, 0, 2) == 0).all()
    r = random_schedules(400, 20, 3, seed=1)
    assert r.dtype == np.int32 and set(np.unique(r)) == {0, 1, 2}
    switched = (r != r[:, :1]).any(axis=1)
    assert 0.2 < switched.mean() < 0.5  # half switch, to another level 2/3 of the time
    for row in r:  # at most one switch per sequence
        assert np.count_nonzero(np.diff(row)) <= 1
    with pytest.raises(ValueError, match="switch step"):
        switch_schedule(1, 8, 9, 0, 1)


# -- Keras ------------------------------------------------------------------------------------

def test_a_level_is_the_smaller_cell_with_the_leading_weights():
    """Independent oracle: an LSTM at a constant level k is keras.layers.LSTM(k) with the rows
    and gate columns of its first k units."""
    units, k = 7, 3
    cell = LowRankLSTMCell(units, levels=(k, units))
    model = flexible_model(cell, head=None)
    x = data(8)
    kernel, recurrent, bias = (cell.kernel.numpy(), cell.recurrent_kernel.numpy(),
                               cell.bias.numpy())
    cols = np.concatenate([np.arange(g * units, g * units + k) for g in range(4)])
    small = keras.layers.LSTM(k)
    small(x)
    small.set_weights([kernel[:, cols], recurrent[:k][:, cols], bias[cols]])
    got = model([x, switch_schedule(8, T, 0, 0, 0)]).numpy()
    np.testing.assert_allclose(got[:, :k], small(x).numpy(), atol=REORDER_ATOL)
    assert not got[:, k:].any()
    top = model([x, switch_schedule(8, T, 0, 1, 1)]).numpy()
    plain = keras.layers.RNN(LowRankLSTMCell.from_config(
        {**cell.get_config(), "levels": None}))
    plain(x)
    plain.set_weights(model.layers[3].get_weights())
    np.testing.assert_allclose(top, plain(x).numpy(), atol=REORDER_ATOL)


def test_a_switch_carries_the_state_of_the_active_units():
    """From level a to b at step t: the first t steps are those of level a alone, then the
    state carries on with the units beyond b zeroed (checked step by step against the cell run
    at a constant level from the carried state)."""
    cell = FastGRNNCell(6, levels=(2, 4, 6), u_rank=3)
    model = flexible_model(cell, head=None)
    x = data(4)
    for a, b in ((2, 0), (0, 2), (1, 2)):
        t = 6
        got = model([x, switch_schedule(4, T, t, a, b)]).numpy()
        h = np.zeros((4, 6), np.float32)
        for step in range(T):
            level = a if step < t else b
            out, _ = cell(np.concatenate([x[:, step], np.full((4, 1), level, np.float32)], -1),
                          [h])
            k = cell.levels[level]
            assert not np.asarray(out)[:, k:].any()
            h = np.asarray(out)
        np.testing.assert_allclose(got, h, atol=REORDER_ATOL)


def test_saved_model_keeps_its_levels_and_trains_with_schedules(tmp_path):
    cell = LowRankGRUCell(6, levels=(2, 6), recurrent_rank=3)
    model = flexible_model(cell)
    x, y = data(16), np.random.default_rng(1).integers(0, 2, 16)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(ScheduleSequence(x, y, num_levels=2, batch_size=8), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    path = str(tmp_path / "flex.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    s = random_schedules(16, T, 2, seed=3)
    np.testing.assert_array_equal(loaded([x, s]).numpy(), model([x, s]).numpy())
    assert loaded.layers[3].cell.levels == (2, 6)


def test_level_macs_count_the_active_rows_and_columns():
    cell = LowRankLSTMCell(8, levels=(2, 8), recurrent_rank=3)
    flexible_model(cell)
    # kernel dense 3 x 32: 3 x 4k; recurrent rank 3: 3 (k + 4k)
    assert level_macs(cell, 0) == 3 * 8 + 3 * (2 + 8)
    assert level_macs(cell, 1) == cell.compression_stats().macs_per_step == 3 * 32 + 3 * 40
    with pytest.raises(ValueError, match="level in \\[0, 1\\]"):
        level_macs(cell, 2)


# -- the integer oracle, every cell x family ----------------------------------------------------

def _flexible_config(config: dict) -> dict:
    units = config["units"]
    return {**config, "levels": (max(1, units // 2), units)}


@pytest.mark.parametrize("case_id, name, config", cases(), ids=[c[0] for c in cases()])
def test_integer_oracle_follows_the_levels_of_every_cell_and_family(case_id, name, config):
    """Keras (float) against the int16-weight integer oracle on switching schedules; the levels
    change the output by much more than the quantization error, so ignoring them fails."""
    cell = make(name, _flexible_config(config))
    model = flexible_model(cell)
    x = data(48)
    im = quantize_model(model, x, weight_bits=16)
    s = random_schedules(48, T, 2, seed=2, switch_fraction=1.0)
    want = model([x, s]).numpy()
    got = im.dequantize(im.run(x, levels=s))
    err = np.abs(got - want).max()
    top = im.dequantize(im.run(x))
    assert err < 0.02 + 0.01 * np.abs(want).max(), err
    assert np.abs(top - want).max() > 3 * err, "the levels changed nothing"


def test_the_model_converts_without_its_level_input_at_the_top_level():
    cell = FastGRNNCell(6, levels=(3, 6))
    model = flexible_model(cell)
    x = data(4)
    lowered = lower(model, "step")
    assert lowered.inputs[0] == "x"
    seq = lower(model, "unrolled").model
    np.testing.assert_allclose(seq.predict(x[:1], verbose=0),
                               model([x[:1], switch_schedule(1, T, 0, 1, 1)]).numpy(),
                               atol=REORDER_ATOL)


def test_oracle_refuses_levels_it_cannot_run():
    model = flexible_model(FastGRNNCell(6, levels=(3, 6)))
    im = quantize_model(model, data(8))
    with pytest.raises(ValueError, match="levels in \\[0, 1\\]"):
        im.run(data(2), levels=np.full((2, T), 2))
    with pytest.raises(ValueError, match="one level per step"):
        im.run(data(2), levels=np.zeros(T + 1, int))
    plain = keras.Sequential([keras.Input((T, F)), keras.layers.RNN(FastGRNNCell(6)),
                              keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not flexible"):
        quantize_model(plain, data(8)).run(data(2), levels=np.zeros(T, int))


# -- the generated C ----------------------------------------------------------------------------

KINDS = {
    "fastgrnn_lowrank": lambda: FastGRNNCell(8, levels=(2, 5, 8), u_rank=3),
    "lstm": lambda: LowRankLSTMCell(8, levels=(2, 8)),
    "gru_reset_before": lambda: LowRankGRUCell(6, levels=(3, 6), reset_after=False),
    "lstmp": lambda: ProjectionLSTMCell(8, projection_units=4, levels=(4, 8)),
}


def _converted(kind: str):
    model = flexible_model(KINDS[kind]())
    x = data(32)
    return convert_c(model, target="host", representative_data=x, checks="warn",
                     progress=False), x


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_c_step_level_is_bit_exact_with_the_oracle_on_the_host(kind):
    c, x = _converted(kind)
    im = c.int_model
    s = random_schedules(len(x), T, im.num_levels, seed=4, switch_fraction=1.0)
    header = c.c_sources[f"{c.name}.h"]
    assert f"#define FLEX_NUM_LEVELS {im.num_levels}" in header
    assert "flex_step_level(flex_state_t *state" in header
    r = run_c(c, c.quantize_input(x), target="host", levels=s, progress=False)
    np.testing.assert_array_equal(r.scores, im.run(x, levels=s))
    top = run_c(c, c.quantize_input(x), target="host", progress=False)
    np.testing.assert_array_equal(top.scores, im.run(x))
    assert not np.array_equal(r.scores, top.scores)


def test_run_c_refuses_levels_of_a_model_that_is_not_flexible():
    plain = keras.Sequential([keras.Input((T, F)), keras.layers.RNN(FastGRNNCell(4)),
                              keras.layers.Dense(2)], name="plain")
    c = convert_c(plain, target="host", representative_data=data(16), checks="warn",
                  progress=False)
    with pytest.raises(ValueError, match="not flexible"):
        run_c(c, c.quantize_input(data(2)), target="host", levels=np.zeros(T, int),
              progress=False)


@pytest.mark.parametrize("target", ["cortex-m4", "uno"])
def test_c_step_level_on_emulated_targets_costs_less_at_lower_levels(target):
    """One representative (low-rank FastGRNN) on QEMU and simavr: bit-exact on a switching
    schedule, and the step's instructions/cycles grow with the level."""
    c, x = _converted("fastgrnn_lowrank")
    im = c.int_model
    x = x[:6]
    s = random_schedules(len(x), T, im.num_levels, seed=5, switch_fraction=1.0)
    r = run_c(c, c.quantize_input(x), target=target, levels=s, progress=False)
    np.testing.assert_array_equal(r.scores, im.run(x, levels=s))
    costs = [run_c(c, c.quantize_input(x[:1]), target=target, progress=False,
                   levels=np.full(T, level)).per_step for level in range(im.num_levels)]
    assert costs[0] < costs[1] < costs[2], costs


def test_c_sketch_switches_levels_over_serial(tmp_path):
    """The standalone C sketch of a flexible model, built on the host against a stand-in
    Arduino core: lines "L<n>" switch the level mid-window; each window's class is the oracle's
    under the same schedule."""
    import os
    import shutil
    import subprocess

    from tests.test_cexport import FAKE_ARDUINO, SKETCH_MAIN

    if shutil.which("g++") is None or shutil.which("gcc") is None:
        pytest.fail("gcc/g++ are needed to build the sketch on the host")
    model = flexible_model(FastGRNNCell(8, levels=(2, 5, 8), u_rank=3), head=3, name="flexs")
    x = data(32, seed=7)
    result = convert_c(model, target="uno", representative_data=x, checks="warn",
                       progress=False, class_names=["a", "b", "c"])
    folder = tmp_path / "sketch"
    folder.mkdir()
    for rel, text in result.files.items():
        if rel.startswith("arduino/flexs/"):
            (folder / os.path.basename(rel)).write_text(text)
    assert "Send a line `L<n>`".lower() in (folder / "README.md").read_text().lower()
    (folder / "Arduino.h").write_text(FAKE_ARDUINO)
    (folder / "main.cpp").write_text(SKETCH_MAIN)
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-c", "flexs.c"],
                   cwd=folder, check=True)
    build = subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-I", ".",
                            "-x", "c++", "flexs.ino", "-x", "none", "main.cpp", "flexs.o",
                            "-o", "sketch"], cwd=folder, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    windows = x[:3]
    switches = {(0, 4): 0, (1, 0): 1, (1, 7): 2, (2, 2): 0, (2, 3): 9}  # (window, step): level
    lines, schedule, level = ["L7"], np.zeros((3, T), int), 2  # L7: out of range, ignored
    for k, w in enumerate(windows):
        for t, step in enumerate(w):
            if (k, t) in switches:
                lines.append(f"L{switches[(k, t)]}")
                if switches[(k, t)] < 3:
                    level = switches[(k, t)]
            schedule[k, t] = level
            lines.append(",".join(repr(float(v)) for v in step))
    run = subprocess.run(["./sketch"], cwd=folder, input="\n".join(lines) + "\n",
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    im = result.int_model
    want = [["a", "b", "c"][int(np.argmax(im.run(w, levels=s)))]
            for w, s in zip(windows, schedule)]
    got = [line.split(": ")[1].split()[0] for line in run.stdout.splitlines()
           if line.startswith("window ")]
    assert got == want
    assert run.stdout.count("Ignored a level: expected L0 to L2") == 2
    assert "level 0" in run.stdout and "level 1" in run.stdout
    scores = [float(line.split()[-1]) for line in run.stdout.splitlines()
              if line.startswith("window ")]
    want_scores = [im.dequantize(im.run(w, levels=s)).max() for w, s in zip(windows, schedule)]
    top_scores = [im.dequantize(im.run(w)).max() for w in windows]
    np.testing.assert_allclose(scores, want_scores, atol=1e-4)  # printed with 4 decimals
    assert np.abs(np.subtract(top_scores, want_scores)).max() > 1e-3  # the schedule mattered


# -- TFLite --------------------------------------------------------------------------------------

@pytest.mark.parametrize("quantization, atol", [("float32", 1e-5), ("int8", None)])
def test_tflite_step_model_takes_the_level_of_every_step(quantization, atol, tmp_path):
    """The step model's int32 input ``level`` (LiteRT and TFLite Micro) against Keras on
    switching schedules; without levels it runs the top level; the sketch drives the level."""
    from keras_rnnedge.converters import convert
    from keras_rnnedge.micro_targets.emulate import emulate

    model = flexible_model(FastGRNNCell(8, levels=(2, 5, 8), u_rank=3), head=3, name="flext")
    x = data(48, seed=8)
    s = random_schedules(48, T, 3, seed=9, switch_fraction=1.0)
    want = model([x, s]).numpy()
    result = convert(model, target="nano33ble", quantization=quantization, mode="step",
                     representative_data=x, checks="warn", progress=False)
    level = next(t for t in result.inputs if t.name == "level")
    assert level.dtype == "int32" and level.shape == (1, 1)
    y = next(t for t in result.outputs if t.name == "y")
    tol = atol if atol is not None else 4 * y.scale  # a few output LSB (int8 states, 10 steps)
    for runtime in ("litert", "tflm"):
        got = emulate(result, x, levels=s, runtime=runtime, progress=False).outputs
        np.testing.assert_allclose(got, want, atol=tol)
    top = emulate(result, x, progress=False).outputs
    np.testing.assert_allclose(top, model([x, np.full((48, T), 2)]).numpy(), atol=tol)
    assert np.abs(top - want).max() > 5 * tol
    io_h = next(text for rel, text in result.files.items() if rel.endswith("_model_io.h"))
    assert "constexpr bool kFlexible = true;" in io_h
    ino = next(text for rel, text in result.files.items() if rel.endswith(".ino"))
    assert "level_input->data.i32[0] = level;" in ino
    result.save(tmp_path / "flext")
    plain = convert(keras.Sequential([keras.Input((T, F)), keras.layers.RNN(FastGRNNCell(4)),
                                      keras.layers.Dense(2)]),
                    target="host", mode="step", quantization="float32", representative_data=x,
                    checks="warn", progress=False)
    with pytest.raises(ValueError, match="no level input"):
        emulate(plain, x, levels=s, progress=False)


# -- method 2: SwitchingCell ---------------------------------------------------------------------

def switching_model(name: str = "switch") -> keras.Model:
    cell = SwitchingCell([FastGRNNCell(4, u_rank=2), LowRankLSTMCell(8, recurrent_rank=3),
                          LowRankGRUCell(6, reset_after=False)])
    return flexible_model(cell, head=3, name=name)


def test_switching_cell_runs_one_cell_per_step_and_maps_the_state_at_a_switch():
    """Independent check in NumPy of the Keras layer: a constant level is that cell alone with
    its block of the head; a switch feeds the next cell s_p M + b (the maps read back)."""
    model = switching_model()
    cell = model.layers[3].cell
    x = data(6)
    kernel, bias = model.layers[-1].get_weights()
    blocks = np.cumsum([0] + [int(c.output_size) for c in cell.cells])
    for level, sub in enumerate(cell.cells):
        alone = keras.layers.RNN(sub)(x).numpy()
        want = alone @ kernel[blocks[level]:blocks[level + 1]] + bias
        got = model([x, switch_schedule(6, T, 0, level, level)]).numpy()
        np.testing.assert_allclose(got, want, atol=REORDER_ATOL)
    # from level 0 (FastGRNN, state h) to level 1 (LSTM, states h, c) at step 4
    first = keras.layers.RNN(cell.cells[0])(x[:, :4]).numpy()
    m, b = cell.map_weights()[(0, 1)]
    start = first @ m + b
    rnn = keras.layers.RNN(cell.cells[1])
    after = rnn(tf.constant(x[:, 4:]), initial_state=[tf.constant(start[:, :8]),
                                                      tf.constant(start[:, 8:])]).numpy()
    got = model([x, switch_schedule(6, T, 4, 0, 1)]).numpy()
    np.testing.assert_allclose(got, after @ kernel[blocks[1]:blocks[2]] + bias, atol=1e-4)
    assert level_macs(cell, 0) == cell.cells[0].compression_stats().macs_per_step


def test_switching_cell_saves_trains_and_refuses_what_it_cannot_run(tmp_path):
    model = switching_model()
    x, y = data(16), np.random.default_rng(2).integers(0, 3, 16)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(ScheduleSequence(x, y, num_levels=3, batch_size=8), epochs=1, verbose=0)
    path = str(tmp_path / "switch.keras")
    model.save(path)
    s = random_schedules(16, T, 3, seed=3, switch_fraction=1.0)
    np.testing.assert_array_equal(keras.models.load_model(path)([x, s]).numpy(),
                                  model([x, s]).numpy())
    with pytest.raises(ValueError, match="two or more keras_rnnedge cells without levels"):
        SwitchingCell([FastGRNNCell(4)])
    with pytest.raises(ValueError, match="two or more"):
        SwitchingCell([FastGRNNCell(4, levels=(2, 4)), FastGRNNCell(8)])
    from keras_rnnedge.converters import ConversionError
    with pytest.raises(ConversionError, match="standalone C only"):
        lower(model, "step")
    with pytest.raises(ConversionError, match="integer only"):
        convert_c(model, target="host", representative_data=x, precision="float32",
                  progress=False)


def test_switching_oracle_follows_keras_on_switching_schedules():
    model = switching_model()
    x = data(48)
    im = quantize_model(model, x, weight_bits=16)
    assert im.num_levels == 3 and len(im.maps) == 6
    s = random_schedules(48, T, 3, seed=6, switch_fraction=1.0)
    want = model([x, s]).numpy()
    err = np.abs(im.dequantize(im.run(x, levels=s)) - want).max()
    assert err < 0.02 + 0.01 * np.abs(want).max(), err
    assert np.abs(im.dequantize(im.run(x)) - want).max() > 3 * err


@pytest.mark.parametrize("target", ["host", "cortex-m4", "uno"])
def test_switching_c_is_bit_exact_with_its_oracle(target):
    model = switching_model()
    x = data(32)
    c = convert_c(model, target="uno", representative_data=x, checks="warn", progress=False)
    im = c.int_model
    n = 32 if target == "host" else 6
    s = random_schedules(n, T, 3, seed=7, switch_fraction=1.0)
    r = run_c(c, c.quantize_input(x[:n]), target=target, levels=s, progress=False)
    np.testing.assert_array_equal(r.scores, im.run(x[:n], levels=s))
    assert sorted(n for n in c.c_sources if n.endswith(".c")) == [
        f"{c.name}.c", *(f"{c.name}_m{k}.c" for k in range(3))]


def test_flexible_model_prunes_and_trains_quantization_aware():
    """tfmot pruning and QAT on a flexible model trained on level schedules, then the C with
    its levels (the oracle of the stripped model, bit for bit)."""
    import tensorflow_model_optimization as tfmot

    from keras_rnnedge.optimize import prune_low_magnitude, quantize_model, strip_pruning

    x, y = data(32), np.random.default_rng(4).integers(0, 2, 32)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    s = random_schedules(8, T, 3, seed=8, switch_fraction=1.0)
    pruned = prune_low_magnitude(flexible_model(FastGRNNCell(8, levels=(2, 5, 8), u_rank=3)),
                                 sparsity=0.5)
    pruned.compile("adam", loss)
    pruned.fit(ScheduleSequence(x, y, num_levels=3, batch_size=8), epochs=1, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    qat = quantize_model(flexible_model(LowRankGRUCell(6, levels=(3, 6))))
    qat.compile("adam", loss)
    qat.fit(ScheduleSequence(x, y, num_levels=2, batch_size=8), epochs=1, verbose=0)
    for model, levels in ((strip_pruning(pruned), s), (qat, np.minimum(s, 1))):
        c = convert_c(model, target="host", representative_data=x, checks="warn",
                      progress=False)
        r = run_c(c, c.quantize_input(x[:8]), target="host", levels=levels, progress=False)
        np.testing.assert_array_equal(r.scores, c.int_model.run(x[:8], levels=levels))
    kernel = strip_pruning(pruned).layers[3].cell.recurrent_kernel_u.numpy()
    assert np.mean(kernel == 0) >= 0.4


def test_cli_converts_a_flexible_model_and_runs_it_at_a_level(tmp_path, capsys):
    """`rnnedge convert` of a saved flexible model, then `rnnedge run --level` / `rnnedge
    emulate --level`: the C's predictions at level 0 are the oracle's at level 0."""
    from keras_rnnedge import cli

    model = flexible_model(FastGRNNCell(8, levels=(2, 5, 8), u_rank=3), head=3, name="flexcli")
    path = tmp_path / "flexcli.keras"
    model.save(path)
    x = data(40, seed=11)
    y = np.random.default_rng(0).integers(0, 3, 40)
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=x, y_train=y, x_test=x[:12], y_test=y[:12])
    out = tmp_path / "c"
    assert cli.main(["convert", str(path), "--target", "uno", "--format", "c", "--data",
                     str(npz), "--out", str(out), "--checks", "warn"]) == 0
    capsys.readouterr()
    assert cli.main(["run", str(out), "--target", "host", "--data", str(npz), "--level",
                     "0"]) == 0
    text = capsys.readouterr().out
    import re

    assert "level 0" in text
    assert float(re.search(r"agreement\s+([\d.]+) %", text).group(1)) >= 75  # vs Keras at 0
    tfl = tmp_path / "t"
    assert cli.main(["convert", str(path), "--target", "nano33ble", "--data", str(npz),
                     "--out", str(tfl), "--checks", "warn"]) == 0
    capsys.readouterr()
    assert cli.main(["emulate", str(tfl), "--data", str(npz), "--level", "1"]) == 0
    assert "level 1" in capsys.readouterr().out


def test_deployment_check_covers_every_level(monkeypatch):
    """convert_c measures the deployed model against the float one at every level: a level
    that the integer model gets wrong is refused, by name."""
    from keras_rnnedge.converters import DeploymentQualityError
    from keras_rnnedge.converters.c.intmodel import IntModel

    model = flexible_model(FastGRNNCell(8, levels=(2, 5, 8), u_rank=3), head=3)
    x = data(64, seed=12)
    y = np.argmax(model([x, np.full((64, T), 2)]).numpy(), -1)
    convert_c(model, target="host", representative_data=x, validation_data=(x, y),
              progress=False)  # passes at every level
    run = IntModel.run

    def wrong_at_level_1(self, x, batch_size=1024, levels=None):
        scores = run(self, x, batch_size, levels)
        if levels is not None and np.all(np.asarray(levels) == 1):
            return np.roll(scores, 1, axis=-1)  # another class
        return scores

    monkeypatch.setattr(IntModel, "run", wrong_at_level_1)
    with pytest.raises(DeploymentQualityError, match="at level 1"):
        convert_c(model, target="host", representative_data=x, validation_data=(x, y),
                  progress=False)


def test_tflite_deployment_check_covers_every_level(monkeypatch):
    """convert() measures TFLite Micro against the float model at every level: a level the
    int8 model gets wrong is refused, by name."""
    from keras_rnnedge.converters import DeploymentQualityError, convert
    from keras_rnnedge.micro_targets import emulate as emulation

    model = flexible_model(FastGRNNCell(8, levels=(2, 5, 8), u_rank=3), head=3)
    x = data(48, seed=13)
    y = np.argmax(model([x, np.full((48, T), 2)]).numpy(), -1)
    options = dict(target="nano33ble", quantization="float32", mode="step",
                   representative_data=x, validation_data=(x, y), progress=False)
    assert convert(model, **options).quality.passed
    run = emulation.emulate

    def wrong_at_level_0(converted, x, **kwargs):
        result = run(converted, x, **kwargs)
        levels = kwargs.get("levels")
        if levels is not None and np.all(np.asarray(levels) == 0):
            return dataclasses.replace(result, outputs=np.roll(result.outputs, 1, axis=-1))
        return result

    monkeypatch.setattr(emulation, "emulate", wrong_at_level_0)
    with pytest.raises(DeploymentQualityError, match="at level 0"):
        convert(model, **options)
