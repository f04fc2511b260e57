"""convert(): options, the result object, saving all-or-nothing, and the CLI around it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_rnnedge import cli
from keras_rnnedge._compat import keras
from keras_rnnedge.cells import FastGRNNCell
from keras_rnnedge.converters import (
    ConversionError,
    OutputExistsError,
    convert,
    load_result,
)
from keras_rnnedge.micro_targets.audit import TargetFitError
from keras_rnnedge.micro_targets.emulate import emulate
from keras_rnnedge.optimize import HardThresholding
from tests import tolerances

T, F = 8, 3


@pytest.fixture(scope="module")
def trained():
    """A small FastGRNN trained a little on a separable toy task, and its data."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96)
    x = rng.normal(0, 0.3, (96, T, F)).astype("float32")
    x[np.arange(96), :, y] += 1.0  # the class is the channel with the offset
    model = keras.Sequential([keras.Input((T, F)),
                              keras.layers.RNN(FastGRNNCell(8, u_rank=4), name="rnn"),
                              keras.layers.Dense(3)], name="toy-fastgrnn")
    model.compile(keras.optimizers.Adam(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=6, batch_size=16, verbose=0,
              callbacks=[HardThresholding(0.5, dense_epochs=2, iht_epochs=2)])
    return model, x, y


@pytest.fixture(scope="module")
def int8_result(trained):
    model, x, _ = trained
    return convert(model, target="nano33ble", quantization="int8", mode="step",
                   representative_data=x[:32], class_names=["a", "b", "c"])


@pytest.mark.slow
def test_int8_step_conversion_for_a_board(trained, int8_result):
    model, x, y = trained
    r = int8_result
    assert r.name == "toy_fastgrnn"
    assert r.audit is not None and r.audit.fits
    assert r.checks["lowered vs keras"] <= 1e-4
    assert {"model.tflite", "c/toy_fastgrnn_model_data.h", "c/toy_fastgrnn_model_data.cc",
            "arduino/toy_fastgrnn/toy_fastgrnn.ino", "platformio/platformio.ini"} <= set(r.files)
    keras_pred = model.predict(x, verbose=0).argmax(-1)
    tflm = emulate(r, x, runtime="tflm")
    # int8 rounding may flip a prediction on a sample near the decision boundary
    assert np.mean(tflm.predictions() == keras_pred) >= tolerances.INT8_AGREEMENT
    assert tflm.arena_bytes == r.audit.arena_bytes
    text = r.report()
    assert "Nano 33 BLE" in text and "arena" in text.lower()


@pytest.mark.slow
def test_float_conversion_checks_each_stage(trained):
    model, x, _ = trained
    r = convert(model, target="host", quantization="float32", representative_data=x[:4])
    assert r.audit is None
    assert r.checks["tflite float32 vs lowered"] <= tolerances.FLOAT_TFLITE_ATOL
    assert set(r.files) == {"model.tflite", "c/toy_fastgrnn_model_data.h",
                            "c/toy_fastgrnn_model_data.cc"}


@pytest.mark.slow
def test_save_load_and_refuse_overwrite(int8_result, trained, tmp_path):
    out = int8_result.save(tmp_path / "out")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "step" and manifest["quantization"] == "int8"
    assert (out / "model.tflite").read_bytes() == int8_result.flatbuffer
    loaded = load_result(out)
    _, x, _ = trained
    a = emulate(loaded, x[:4], runtime="litert").raw_outputs
    b = emulate(int8_result, x[:4], runtime="litert").raw_outputs
    np.testing.assert_array_equal(a, b)
    with pytest.raises(OutputExistsError, match="exists; pass force=True"):
        int8_result.save(out)
    (out / "stale.txt").write_text("old")
    int8_result.save(out, force=True)
    assert not (out / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging leftovers


def test_unwritable_output(int8_result_light, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a file where a directory is needed: even root cannot mkdir there
    with pytest.raises(ConversionError, match="Cannot write"):
        int8_result_light.save(blocker / "out")


def test_save_failure_leaves_nothing(int8_result_light, tmp_path, monkeypatch):
    """An error while writing leaves neither the output nor a staging directory."""
    result = int8_result_light

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(result.source_model), "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        result.save(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def int8_result_light(trained):
    model, x, _ = trained
    return convert(model, target="host", quantization="float32")


def test_option_errors(trained):
    model, x, _ = trained
    with pytest.raises(ConversionError, match='Expected target to be one of .*got "nano"'):
        convert(model, target="nano", quantization="int8", representative_data=x)
    with pytest.raises(ConversionError, match="needs representative_data"):
        convert(model, target="nano33ble", quantization="int8")
    with pytest.raises(ConversionError, match="Expected mode"):
        convert(model, target="host", quantization="float32", mode="rolled")
    with pytest.raises(TypeError):
        convert(model, "nano33ble", "int8")  # options are keyword-only


@pytest.mark.slow
def test_model_too_big_for_the_board():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((T, F)), keras.layers.LSTM(160),
                              keras.layers.Dense(2)])
    with pytest.raises(TargetFitError, match=r"Arduino MKR Zero.*\n.*B of flash.*has 262,144 B"):
        convert(model, target="mkrzero", quantization="float32")


def test_uno_cannot_run_tflite_micro(trained):
    model, x, _ = trained
    with pytest.raises(ValueError, match="Uno"):
        convert(model, target="uno", quantization="float32")


# -- CLI -------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.e2e
def test_cli_convert_and_emulate(trained, tmp_path, capsys):
    model, x, y = trained
    model_path = tmp_path / "m.keras"
    model.save(model_path)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=x[:32], x_test=x[32:48], y_test=y[32:48])
    out = tmp_path / "conv"
    argv = ["convert", str(model_path), "--target", "nano33ble", "--quantize", "int8",
            "--mode", "step", "--data", str(data), "--out", str(out)]
    assert cli.main(argv) == 0
    assert "arena" in capsys.readouterr().out.lower()
    assert cli.main(argv) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert cli.main(["emulate", str(out), "--data", str(data)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "agreement" in printed and "time per step" in printed


def test_cli_convert_errors(tmp_path, capsys):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    assert cli.main(["convert", str(bad), "--target", "host", "--out", str(tmp_path / "o")]) == 2
    assert "cannot load model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_emulate_corrupt_directory(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "model.tflite").write_bytes(b"\0" * 16)
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((2, T, F), "float32"))
    assert cli.main(["emulate", str(tmp_path), "--data", str(data)]) == 2
    assert "corrupt" in capsys.readouterr().err


@pytest.mark.slow
def test_pruned_and_qat_models_convert(trained):
    from keras_rnnedge.optimize import (
        UpdatePruningStep,
        prune_low_magnitude,
        quantize_model,
        strip_pruning,
    )

    model, x, y = trained
    pruned = prune_low_magnitude(model, {"kernel": 0.5, "recurrent_kernel": 0.5})
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[UpdatePruningStep()])
    r = convert(pruned, target="host", quantization="float32", representative_data=x[:2])
    assert r.checks["lowered vs keras"] <= 1e-4

    qat = quantize_model(strip_pruning(pruned))
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, epochs=1, batch_size=32, verbose=0)
    r = convert(qat, target="nano33ble", quantization="int8", representative_data=x[:16])
    want = qat.predict(x, verbose=0).argmax(-1)
    got = emulate(r, x, runtime="tflm").predictions()
    assert np.mean(got == want) >= tolerances.INT8_AGREEMENT


def test_corrupt_tflite_in_a_saved_directory(int8_result_light, tmp_path, capsys):
    out = int8_result_light.save(tmp_path / "out")
    (out / "model.tflite").write_bytes(b"garbage" * 4)
    with pytest.raises(ConversionError, match="not a TFLite flatbuffer"):
        load_result(out)
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((2, T, F), "float32"))
    assert cli.main(["emulate", str(out), "--data", str(data)]) == 2
    assert "not a TFLite flatbuffer" in capsys.readouterr().err


def _weight_scale_counts(flatbuffer: bytes) -> list[int]:
    """Number of scales of each int8 weight operand of a FULLY_CONNECTED (read from the
    flatbuffer itself)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    fc = [i for i, code in enumerate(model.operatorCodes)
          if max(code.builtinCode, code.deprecatedBuiltinCode)
          == schema.BuiltinOperator.FULLY_CONNECTED]
    sg = model.subgraphs[0]
    counts = []
    for op in sg.operators:
        if op.opcodeIndex in fc:
            weight = sg.tensors[op.inputs[1]]
            if weight.type == schema.TensorType.INT8:
                counts.append(len(weight.quantization.scale))
    return counts


def test_per_tensor_weight_scales_shrink_flatbuffer_and_arena(trained):
    """weight_scales='per-tensor': one scale per weight matrix in the flatbuffer (read back
    from it), fewer bytes of flatbuffer and of TFLite Micro arena, and the deployed model still
    agrees with the float model (checked by convert() on the calibration windows and here)."""
    from keras_rnnedge.micro_targets.emulate import measure_arena

    model, x, _ = trained
    results = {scales: convert(model, target="host", quantization="int8",
                               representative_data=x[:32], weight_scales=scales, progress=False)
               for scales in ("per-channel", "per-tensor")}
    counts = {k: _weight_scale_counts(r.flatbuffer) for k, r in results.items()}
    assert counts["per-tensor"] and set(counts["per-tensor"]) == {1}
    assert max(counts["per-channel"]) > 1
    channel, tensor = results["per-channel"], results["per-tensor"]
    assert len(tensor.flatbuffer) < len(channel.flatbuffer)
    assert measure_arena(tensor.flatbuffer) < measure_arena(channel.flatbuffer)
    assert tensor.tflite.weight_scales == "per-tensor"
    assert "int8, per-tensor scales" in tensor.report()
    want = np.argmax(model.predict(x, verbose=0), -1)
    got = np.argmax(emulate(tensor, x, runtime="tflm").outputs, -1)
    assert np.mean(got == want) >= tolerances.INT8_AGREEMENT


def test_weight_scales_are_checked(trained):
    model, x, _ = trained
    with pytest.raises(ConversionError, match="per-tensor.*float32.*keeps float weights"):
        convert(model, target="host", quantization="float32", representative_data=x[:8],
                weight_scales="per-tensor", progress=False)
    with pytest.raises(ConversionError, match="weight_scales to be one of"):
        convert(model, target="host", quantization="int8", representative_data=x[:8],
                weight_scales="per-row", progress=False)


def test_strip_strings_keeps_the_model_and_drops_its_names(trained):
    """strip_strings=True: no tensor names, description or converter metadata in the
    flatbuffer, fewer bytes; the inputs and outputs (signature) unchanged, and TFLite Micro
    computes the same outputs, bit for bit, as from the unstripped flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    from keras_rnnedge.converters.tflite.flatbuffer import io_map

    model, x, _ = trained
    plain, stripped = (convert(model, target="host", quantization="int8",
                               representative_data=x[:32], strip_strings=flag, progress=False)
                       for flag in (False, True))
    assert len(stripped.flatbuffer) < len(plain.flatbuffer) - 200
    tree = schema.ModelT.InitFromPackedBuf(bytearray(stripped.flatbuffer), 0)
    assert not any(t.name for sg in tree.subgraphs for t in sg.tensors)
    assert not tree.description
    assert not any(m.name in (b"CONVERSION_METADATA", b"min_runtime_version")
                   for m in tree.metadata or [])
    assert io_map(stripped.flatbuffer) == io_map(plain.flatbuffer)
    np.testing.assert_array_equal(emulate(stripped, x[:8], runtime="tflm").raw_outputs,
                                  emulate(plain, x[:8], runtime="tflm").raw_outputs)
