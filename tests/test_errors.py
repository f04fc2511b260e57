"""Bad inputs get one clear message, before any work: what was received, what was expected and
what to do.

Python API: ``convert``, ``convert_c``, ``emulate``, ``run_c`` and the checks they share
(``micro_targets.validate``, ``converters.lowering.check_inputs``). The ``rnnedge`` command:
``cli.main([...])`` in-process, exit code 2 and one line ``rnnedge: error: ...`` on stderr, no
traceback and no partial output.
"""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest

from keras_rnnedge import cli
from keras_rnnedge._compat import keras
from keras_rnnedge.cells import FastGRNNCell, FastRNNCell
from keras_rnnedge.converters import ConversionError, convert, convert_c, load_result, lower
from keras_rnnedge.converters.c.cgen import generate_c
from keras_rnnedge.converters.c.intmodel import quantize_model
from keras_rnnedge.converters.carray import RESERVED_NAMES, c_identifier, identifier_note
from keras_rnnedge.micro_targets import audit as audit_module
from keras_rnnedge.micro_targets import emulate as emulate_module
from keras_rnnedge.micro_targets.audit import UnsupportedOpError
from keras_rnnedge.micro_targets.crun import CModelSources, run_c
from keras_rnnedge.micro_targets.emulate import emulate
from keras_rnnedge.micro_targets.validate import (
    check_flatbuffer,
    check_labels,
    check_positive_int,
    check_sequences,
)
from tests import reference

T, F, H = 6, 3, 4
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (the host C build)")


def make_model(timesteps: int | None = T, name: str = "demo") -> keras.Model:
    return keras.Sequential([keras.Input((timesteps, F)), keras.layers.RNN(FastGRNNCell(H),
                                                                           name="rnn"),
                             keras.layers.Dense(2, name="dense")], name=name)


def windows(n: int = 40, steps: int = T, features: int = F, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, steps, features)).astype("float32")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """Saved conversions of one model: a float32 step model and an unrolled one (TFLite), the
    standalone C (int16 weights), and the data files."""
    keras.utils.set_random_seed(3)
    root = tmp_path_factory.mktemp("converted")
    model = make_model()
    x = windows()
    y = np.random.default_rng(1).integers(0, 2, len(x))
    out = {"root": root, "x": x, "y": y}
    out["step"] = convert(model, target="host", quantization="float32",
                          representative_data=x).save(root / "step")
    out["unrolled"] = convert(model, target="host", quantization="float32", mode="unrolled",
                              representative_data=x).save(root / "unrolled")
    if shutil.which("gcc") is not None:
        out["c"] = convert_c(model, target="host", representative_data=x,
                             precision="int16").save(root / "c")
    np.savez(root / "data.npz", x=x, y=y)
    return out


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(code: int, out: str, err: str, *fragments: str) -> None:
    """Exit code 2, nothing on stdout, one error line naming every fragment."""
    assert code == 2, err
    assert out == ""
    lines = [ln for ln in err.splitlines() if ln.startswith("rnnedge: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def copy_dir(dirs, kind: str, tmp_path):
    dest = tmp_path / kind
    shutil.copytree(dirs[kind], dest)
    return dest


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if emulation or the C build starts (the checks come first)."""
    def boom(*args, **kwargs):
        raise AssertionError("work started before the inputs were checked")

    monkeypatch.setattr(emulate_module, "emulate", boom)
    monkeypatch.setattr("keras_rnnedge.micro_targets.crun.run_c", boom)


# -- the flatbuffer --------------------------------------------------------------------------------

def _corrupt(data: bytes) -> bytes:
    """Bytes changed all through the flatbuffer (identifier and root offset kept)."""
    b = bytearray(data)
    rng = np.random.default_rng(1)
    for i in range(40, len(b), 97):
        b[i] = int(rng.integers(256))
    return bytes(b)


def test_check_flatbuffer_accepts_a_real_model(dirs):
    data = (dirs["step"] / "model.tflite").read_bytes()
    assert check_flatbuffer(data) == data


@pytest.mark.parametrize("damage, fragment", [
    (lambda b: b"", "has 0 bytes"),
    (lambda b: b[:6], "has 6 bytes"),
    (lambda b: b[:4] + b"XXXX" + b[8:], "bytes 4..8 are b'XXXX', expected b'TFL3'"),
    (lambda b: struct.pack("<I", len(b) + 100) + b[4:], "truncated"),
    (lambda b: b[:len(b) // 2], "LiteRT refused it"),
    (_corrupt, "LiteRT refused it"),
], ids=["empty", "short", "identifier", "root", "truncated", "corrupt"])
def test_check_flatbuffer_refuses_damaged_bytes(dirs, damage, fragment):
    data = damage((dirs["step"] / "model.tflite").read_bytes())
    with pytest.raises(ValueError, match="model.tflite") as info:
        check_flatbuffer(data, "'out/model.tflite'")
    assert fragment in str(info.value) and "convert the model again" in str(info.value)


@pytest.mark.parametrize("runtime", ["tflm", "litert"])
def test_emulate_refuses_a_truncated_flatbuffer_naming_the_file(dirs, tmp_path, runtime):
    """Before: TFLite Micro's loader failed with struct.error / 'bad number -149 for type
    uint32'."""
    path = copy_dir(dirs, "step", tmp_path)
    data = (path / "model.tflite").read_bytes()
    (path / "model.tflite").write_bytes(data[:len(data) // 2])
    converted = load_result(path)  # the identifier is intact: loading passes
    with pytest.raises(ValueError, match=r"model\.tflite.*not a valid TFLite model"):
        emulate(converted, dirs["x"][:2], runtime=runtime)


@pytest.mark.parametrize("damage", [lambda b: b[:len(b) // 2], _corrupt],
                         ids=["truncated", "corrupt"])
def test_cli_emulate_tflm_refuses_a_damaged_flatbuffer(dirs, tmp_path, capsys, monkeypatch,
                                                       damage):
    def boom(*args, **kwargs):
        raise AssertionError("TFLite Micro received the damaged flatbuffer")

    monkeypatch.setattr(emulate_module, "_TFLM", boom)
    monkeypatch.setattr(emulate_module, "measure_arena", boom)
    path = copy_dir(dirs, "step", tmp_path)
    (path / "model.tflite").write_bytes(damage((path / "model.tflite").read_bytes()))
    result = run_cli(capsys, "emulate", path, "--data", dirs["root"] / "data.npz", "--runtime",
                     "tflm")
    assert_refused(*result, str(path / "model.tflite"), "not a valid TFLite model",
                   "truncated or corrupt", "convert the model again")


# -- the trained model saved beside a conversion ---------------------------------------------------

@pytest.mark.parametrize("kind, command", [("step", ["emulate"]),
                                           ("c", ["run", "--target", "host"])])
def test_cli_refuses_a_corrupt_model_keras(dirs, tmp_path, capsys, no_work, kind, command):
    if kind not in dirs:
        pytest.skip("needs gcc (the standalone C conversion)")
    path = copy_dir(dirs, kind, tmp_path)
    keras_file = path / "model.keras"
    keras_file.write_bytes(keras_file.read_bytes()[:300])
    result = run_cli(capsys, command[0], path, *command[1:], "--data",
                     dirs["root"] / "data.npz")
    assert_refused(*result, str(keras_file), "not a zip archive", "convert again")


# -- the data file ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, command", [("step", ["emulate"]),
                                           ("c", ["run", "--target", "host"])])
def test_cli_refuses_npy(dirs, tmp_path, capsys, no_work, kind, command):
    if kind not in dirs:
        pytest.skip("needs gcc (the standalone C conversion)")
    data = tmp_path / "data.npy"
    np.save(data, dirs["x"])
    result = run_cli(capsys, command[0], dirs[kind], *command[1:], "--data", data)
    assert_refused(*result, "'" + str(data) + "' is a .npy file", "expected an .npz",
                   "np.savez(")


def test_cli_names_the_arrays_expected_and_found(dirs, tmp_path, capsys, no_work):
    data = tmp_path / "keys.npz"
    np.savez(data, a=dirs["x"], b=dirs["y"])
    result = run_cli(capsys, "emulate", dirs["step"], "--data", data)
    assert_refused(*result, "has arrays ['a', 'b']", "x_test (with y_test)", "x (with y)",
                   "x_train (with y_train)", "np.savez(path, x=x, y=y)")


@pytest.mark.parametrize("kind, command", [("step", ["emulate"]),
                                           ("c", ["run", "--target", "host"])])
def test_cli_refuses_y_shorter_than_x_before_any_output(dirs, tmp_path, capsys, no_work, kind,
                                                        command):
    """Before: a traceback after the first lines of the report."""
    if kind not in dirs:
        pytest.skip("needs gcc (the standalone C conversion)")
    data = tmp_path / "short_y.npz"
    np.savez(data, x=dirs["x"], y=dirs["y"][:5])
    result = run_cli(capsys, command[0], dirs[kind], *command[1:], "--data", data)
    assert_refused(*result, "y of data", "shape (5,) for 40 windows", "shape (40,)",
                   "same split")


def test_check_labels():
    assert check_labels(np.array([[1], [0]]), 2).tolist() == [1, 0]
    assert check_labels(np.array([1.0, 0.0]), 2).dtype == np.int64
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*argmax\(-1\)"):
        check_labels(np.eye(3)[:2], 2)
    with pytest.raises(ValueError, match="non-integer"):
        check_labels(np.array([0.5, 1.0]), 2)


# -- sequence length and features ------------------------------------------------------------------

@pytest.mark.parametrize("kind, command, steps, fragment", [
    ("step", ["emulate"], 4, "cut the windows to 6 steps"),
    ("unrolled", ["emulate"], 9, "built for one length"),
    ("c", ["run", "--target", "host"], 9, "cut the windows to 6 steps"),
])
def test_cli_refuses_another_length(dirs, tmp_path, capsys, no_work, kind, command, steps,
                                    fragment):
    """Before: the step and C commands dumped a Keras traceback after running every window."""
    if kind not in dirs:
        pytest.skip("needs gcc (the standalone C conversion)")
    data = tmp_path / "other.npz"
    np.savez(data, x=windows(8, steps), y=np.zeros(8, int))
    result = run_cli(capsys, command[0], dirs[kind], *command[1:], "--data", data)
    assert_refused(*result, f"{steps} time steps per window", "takes exactly 6", fragment)


@pytest.mark.parametrize("kind, command", [("step", ["emulate"]),
                                           ("c", ["run", "--target", "host"])])
def test_cli_refuses_other_features(dirs, tmp_path, capsys, no_work, kind, command):
    if kind not in dirs:
        pytest.skip("needs gcc (the standalone C conversion)")
    data = tmp_path / "other.npz"
    np.savez(data, x=windows(8, T, F + 1))
    result = run_cli(capsys, command[0], dirs[kind], *command[1:], "--data", data)
    assert_refused(*result, "4 features per time step", "the model takes 3")


@pytest.mark.parametrize("mode, quantization", [("step", "int8"), ("unrolled", "float32"),
                                                ("fused", "float32")])
def test_convert_refuses_another_length(mode, quantization):
    """An unrolled float32 model used to truncate longer windows silently; a step model dumped
    a Keras traceback."""
    model = keras.Sequential([keras.Input((T, F)), keras.layers.LSTM(H), keras.layers.Dense(2)])
    with pytest.raises(ConversionError, match=r"9 time steps per window.*exactly 6.*"
                       r"keras.Input\(\(6, 3\)\)"):
        convert(model, target="host", quantization=quantization, mode=mode,
                representative_data=windows(8, 9))


def test_convert_c_refuses_another_length_and_other_features():
    model = make_model()
    with pytest.raises(ConversionError, match=r"9 time steps per window.*exactly 6.*"
                       r"keras.Input\(\(None, 3\)\)"):
        convert_c(model, target="host", representative_data=windows(8, 9))
    with pytest.raises(ConversionError, match="4 features per time step.*takes 3"):
        convert_c(model, target="host", representative_data=windows(8, T, 4))


def test_timesteps_must_match_a_fixed_model():
    with pytest.raises(ConversionError, match=r"timesteps=8, but model 'demo' takes windows of "
                       "6 steps"):
        convert(make_model(), target="host", quantization="float32", mode="unrolled",
                timesteps=8)
    with pytest.raises(ConversionError, match=r"timesteps=0; expected a positive integer"):
        convert_c(make_model(), target="host", representative_data=windows(8), timesteps=0)


def test_unrolled_model_of_a_variable_length_model_takes_its_timesteps():
    model = make_model(timesteps=None)
    with pytest.raises(ConversionError, match=r"7 time steps per window.*exactly 5.*"
                       "timesteps=5 sets the length"):
        convert(model, target="host", quantization="float32", mode="unrolled", timesteps=5,
                representative_data=windows(8, 7))


@needs_gcc
def test_model_without_a_time_dimension_takes_any_length_in_c():
    """Step semantics: a model built with keras.Input((None, F)) converts with windows of any
    length, and the C runs windows of another length than the calibration's."""
    model = make_model(timesteps=None)
    result = convert_c(model, target="host", representative_data=windows(40, 9),
                       precision="int16")
    x = windows(3, 5, seed=4)
    scores = run_c(result, result.quantize_input(x), target="host").scores
    np.testing.assert_array_equal(scores, result.int_model.run(x))


def test_check_sequences_messages():
    with pytest.raises(ValueError, match=r"shape \(6, 3\) \(2 dimensions\).*x\[None\]"):
        check_sequences(np.zeros((6, 3)), features=3)
    with pytest.raises(ValueError, match=r"shape \(0, 6, 3\); expected at least one window"):
        check_sequences(np.zeros((0, 6, 3)), features=3)
    with pytest.raises(ValueError, match="1 NaN or Inf values"):
        check_sequences(np.array([[[np.nan]]]), features=1, finite=True)
    with pytest.raises(ValueError, match="dtype <U1"):
        check_sequences(np.array([[["a"]]]), features=1)
    with pytest.raises(ValueError, match=r"limit=-3; expected a positive integer"):
        check_positive_int(-3, "limit")


# -- C names ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, ident", [("main", "main_model"), ("Math", "math_model"),
                                         ("stdint", "stdint_model"), ("startup", "startup_model"),
                                         ("rnnedge_target", "rnnedge_target_model"),
                                         ("Arduino", "arduino_model"), ("mainly", "mainly")])
def test_reserved_names_are_mangled_with_a_reason(name, ident):
    assert c_identifier(name) == ident
    note = identifier_note(name)
    if ident == "mainly":
        assert note is None
    else:
        assert f"{ident!r} instead" in note and repr(name) in note


@needs_gcc
@pytest.mark.parametrize("name", ["main", "stdint", "math", "time", "stdio"])
def test_generated_c_with_a_reserved_name_builds_and_runs(dirs, name):
    """Before: ``--name main`` failed to link (the harness's main.c replaced the model's)."""
    converted = load_result(dirs["c"])
    model = cli.load_model(dirs["c"] / "model.keras")
    im = quantize_model(model, dirs["x"], weight_bits=16)
    sources = generate_c(im, name)
    ident = c_identifier(name)
    assert set(sources) == {f"{ident}.c", f"{ident}.h"}
    c_model = CModelSources(ident, sources, converted.features, converted.num_outputs)
    x = dirs["x"][:3]
    scores = run_c(c_model, im.quantize_input(x), target="host").scores
    np.testing.assert_array_equal(scores, im.run(x))


def test_run_c_refuses_files_named_like_the_harness():
    sources = {"main.c": "int main(void) { return 0; }\n", "main.h": ""}
    with pytest.raises(ValueError, match=r"main\.c.*another name"):
        run_c(CModelSources("main", sources, F, 2), np.zeros((1, T, F), np.int64),
              target="host")


def test_every_reserved_name_is_mangled():
    for name in RESERVED_NAMES:
        assert c_identifier(name) == f"{name}_model"


@needs_gcc
def test_cli_convert_with_a_reserved_name_notes_it(tmp_path, capsys):
    model_path = tmp_path / "demo.keras"
    make_model().save(model_path)
    np.savez(tmp_path / "data.npz", x_train=windows(40))
    code = cli.main(["convert", str(model_path), "--target", "host", "--format", "c",
                     "--quantize", "int16", "--data", str(tmp_path / "data.npz"), "--name",
                     "main", "--checks", "warn", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "rnnedge: note: the name 'main' gives the C identifier 'main'" in err
    assert "'main_model' instead" in err
    assert sorted(p.name for p in (tmp_path / "out" / "c").iterdir()) == ["main_model.c",
                                                                          "main_model.h"]


# -- layers ----------------------------------------------------------------------------------------

def _embedding_model():
    return keras.Sequential([keras.Input((T,), dtype="int32"), keras.layers.Embedding(20, F),
                             keras.layers.RNN(FastGRNNCell(H)), keras.layers.Dense(2)])


@pytest.mark.parametrize("run", [
    lambda m, x: convert(m, target="host", quantization="int8", representative_data=x),
    lambda m, x: convert(m, target="host", quantization="float32"),
    lambda m, x: convert_c(m, target="host", representative_data=x),
], ids=["convert_int8", "convert_float32", "convert_c"])
def test_embedding_front_end_is_named(run):
    """Before: the message was about representative_data or the input shape."""
    ids = np.random.default_rng(0).integers(0, 20, (8, T))
    with pytest.raises(ConversionError) as info:
        run(_embedding_model(), ids)
    message = str(info.value)
    assert "layer 'embedding' (Embedding)" in message and "token ids" in message
    assert "Supported layers: RNN(FastGRNNCell)" in message and "representative" not in message


def test_step_model_without_a_head_is_refused_clearly():
    """Before: 'The outputs positions [1, 1] are not 0..1' from the sketch."""
    model = keras.Sequential([keras.Input((T, F)), keras.layers.RNN(FastGRNNCell(H), name="rnn")],
                             name="nohead")
    with pytest.raises(ConversionError, match=r"'nohead' ends with recurrent layer 'rnn' \(no "
                       r"Dense head\).*mode='unrolled'.*convert_c"):
        convert(model, target="nano33ble", quantization="int8", representative_data=windows(8))
    assert lower(model, "unrolled").outputs == ("y",)  # the advice is a real way out


def test_unsupported_op_advice_suggests_a_mode_only_for_loop_ops():
    gelu = audit_module._ops_refusal(("GELU",), ("FULLY_CONNECTED", "GELU"))
    assert "mode=" not in gelu and "'gelu' activation" in gelu
    assert "Another conversion mode keeps these ops" in gelu
    loop = audit_module._ops_refusal(("FlexTensorListReserve",),
                                     ("WHILE", "FlexTensorListReserve"))
    assert 'mode="step"' in loop and "come from a recurrent loop" in loop


def test_emulate_tflm_refuses_ops_tflm_lacks(dirs):
    """A GELU head converted for the host: TFLite Micro used to fail to allocate; now the
    op is named with advice that does not suggest another mode."""
    model = keras.Sequential([keras.Input((T, F)), keras.layers.RNN(FastGRNNCell(H)),
                              keras.layers.Dense(2, activation="gelu")])
    result = convert(model, target="host", quantization="float32")
    with pytest.raises(UnsupportedOpError, match="no kernel for GELU") as info:
        emulate(result, dirs["x"][:2], runtime="tflm")
    assert "mode=" not in str(info.value)
    assert emulate(result, dirs["x"][:2], runtime="litert").outputs.shape == (2, 2)


# -- FastRNN / FastGRNN relu in the integer and float C --------------------------------------------

def _relu_model(cell, bias: float, scale: float = 0.5):
    """Random weights of standard deviation ``scale``; the candidate's bias set to ``bias``."""
    model = keras.Sequential([keras.Input((T, F)), keras.layers.RNN(cell, name="rnn"),
                              keras.layers.Dense(2, name="dense")], name="relu_rnn")
    rng = np.random.default_rng(5)
    for var in model.layers[0].cell.weights:
        short = var.name.split("/")[-1].split(":")[0]
        value = rng.normal(scale=scale if "kernel" in short else 0.5, size=var.shape)
        if short in ("bias", "update_bias"):
            value = np.full(var.shape, bias)
        var.assign(value.astype("float32"))
    return model


def _clipped_relu_states(model, x):
    """The float FastRNN of tests/reference.py with relu clipped at 1, and with plain relu."""
    w = {v.name.split("/")[-1].split(":")[0]: v.numpy().astype(np.float64)
         for v in model.layers[0].cell.weights}
    config = {"activation": "relu", "units": model.layers[0].cell.units}
    plain = reference.fastrnn(w, config, x.astype(np.float64))
    saved = reference.ACTIVATIONS["relu"]
    reference.ACTIVATIONS["relu"] = lambda v: np.clip(v, 0.0, 1.0)
    try:
        clipped = reference.fastrnn(w, config, x.astype(np.float64))
    finally:
        reference.ACTIVATIONS["relu"] = saved
    return clipped, plain


def test_fastrnn_relu_integer_model_clips_the_candidate_at_one():
    """relu in Q15 is max(v, 0) clipped at 1: the integer state follows the float FastRNN with
    the clipped candidate (tests/reference.py), not the unclipped one, and the clip is listed."""
    model = _relu_model(FastRNNCell(H, activation="relu"), bias=1.5)
    x = windows(32)
    im = quantize_model(model, x, weight_bits=16)
    layer = im.recurrent[0]
    assert [layer.act_name(n) for n in layer.graph.nodes if n.op == "act"] == ["saturating_relu"]
    assert any("rnn/activation: relu -> clip(x, 0, 1)" in a for a in im.approximations)
    clipped, plain = _clipped_relu_states(model, x)
    state = im.initial_state((len(x),))
    x_q = im.quantize_input(x)
    for t in range(T):
        state = im.step(state, x_q[:, t])
    h = state[0] * 2.0 ** -im.recurrent[0].formats["h"]
    err_clipped = np.max(np.abs(h - clipped[:, -1]))
    err_plain = np.max(np.abs(h - plain[:, -1]))
    assert err_clipped * 20 < err_plain, (err_clipped, err_plain)


def test_relu_below_one_is_exact_and_not_listed():
    model = _relu_model(FastRNNCell(H, activation="relu"), bias=-0.5, scale=0.05)
    im = quantize_model(model, windows(32), weight_bits=16)
    assert not any("relu" in a for a in im.approximations)


@needs_gcc
@pytest.mark.parametrize("cell", [lambda: FastRNNCell(H, activation="relu"),
                                  lambda: FastGRNNCell(H, activation="relu", u_rank=2)],
                         ids=["fastrnn", "fastgrnn"])
@pytest.mark.parametrize("precision", ["int16", "float32"])
def test_relu_cells_convert_to_c(cell, precision):
    """Before: 'activation relu has no integer implementation' although the cells accept it.
    convert_c checks the host C against its oracle (the integer model, bit for bit; the Keras
    model for the float build)."""
    model = _relu_model(cell(), bias=1.5)
    result = convert_c(model, target="host", representative_data=windows(40),
                       precision=precision, checks="warn")
    if precision == "float32":
        assert result.checks["float C vs keras max |diff|"] <= 1e-4  # FLOAT_ATOL of convert_c
    else:
        assert result.checks["host C vs oracle max |diff|"] == 0
        assert "relu -> clip(x, 0, 1)" in result.report()


def test_unsupported_cell_activation_names_the_supported_ones():
    model = _relu_model(FastGRNNCell(H, recurrent_activation="relu"), bias=0.0)
    with pytest.raises(ConversionError, match=r"recurrent_activation 'relu'.*supported: tanh"):
        convert_c(model, target="host", representative_data=windows(40))


# -- emulate() options -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"runtime": "tflm", "arena_bytes": 0}, r"arena_bytes=0; expected a positive integer"),
    ({"runtime": "cpu"}, "Expected runtime to be one of"),
])
def test_emulate_options_are_checked(dirs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        emulate(load_result(dirs["step"]), dirs["x"][:1], **kwargs)


def test_emulate_refuses_nan_and_other_lengths_of_an_unrolled_model(dirs):
    converted = load_result(dirs["unrolled"])
    x = dirs["x"][:2].copy()
    with pytest.raises(ValueError, match=r"9 time steps per window.*built for one length"):
        emulate(converted, windows(2, 9))
    x[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN or Inf values"):
        emulate(converted, x)
    step = load_result(dirs["step"])  # a step model runs any length
    assert emulate(step, windows(1, 9), runtime="litert").outputs.shape == (1, 2)


@pytest.mark.toolchain
def test_run_c_refuses_a_step_that_overflows_the_uno_ram():
    """A tensor-train LSTM whose step keeps 4-5 KB of intermediates on the stack: convert_c
    refuses it for the Uno, and run_c on the emulated Uno (which would hang or compute garbage
    once the stack runs into the data) refuses it too, before building."""
    from tests.test_targets_emulated import _toolchain

    _toolchain("avr")
    from keras_rnnedge.cells import LowRankLSTMCell
    from keras_rnnedge.micro_targets.crun import _state_bytes

    tt = {"family": "tensor_train", "ranks": 9, "in_modes": [5, 2, 8], "out_modes": [10, 4, 8]}
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 9)),
                              keras.layers.RNN(LowRankLSTMCell(80, recurrent_structure=tt)),
                              keras.layers.Dense(3)])
    x = np.random.default_rng(0).normal(size=(8, 4, 9)).astype("float32")
    im = quantize_model(model, x)
    files = generate_c(im, "big_tt")
    assert _state_bytes(files["big_tt.h"]) == 2 * 2 * 80  # h and c, int16
    sources = CModelSources("big_tt", files, 9, 3, "int")
    with pytest.raises(ValueError, match=r"needs [\d,]+ B of RAM on the ATmega328P .*step's "
                                         r"stack [\d,]+ B.*Run on the host or cortex-m4"):
        run_c(sources, im.quantize_input(x[:1]), target="uno")
