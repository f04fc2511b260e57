"""Standalone C conversion end to end: convert_c → files → run_c on host, QEMU and simavr → CLI.

Oracles: the integer model's NumPy methods (``IntModel.run``) for the scores, bit for bit; the
Keras model for the float agreement; the host build for the emulated targets (same scores).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest

from keras_rnnedge import cli
from keras_rnnedge._compat import keras
from keras_rnnedge.cells import FastGRNNCell
from keras_rnnedge.converters import (
    ConversionError,
    SavedC,
    convert,
    convert_c,
    load_result,
)
from keras_rnnedge.micro_targets.audit import TargetFitError
from keras_rnnedge.micro_targets.crun import measure_c, run_c, run_target
from keras_rnnedge.micro_targets.harness import TOOLCHAIN_PACKAGES, ToolchainMissingError
from tests.test_targets_emulated import _toolchain

T, F, H, C = 12, 3, 8, 3


@pytest.fixture(scope="module")
def toy():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((T, F)),
                              keras.layers.RNN(FastGRNNCell(H, w_rank=2), name="rnn"),
                              keras.layers.Dense(C, activation="softmax", name="head")],
                             name="Toy-Model")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, T, F)).astype(np.float32) * np.array([1.0, 5.0, 0.2], np.float32)
    y = rng.integers(0, C, size=48)
    return model, x, y


@pytest.fixture(scope="module")
def uno_result(toy):
    model, x, _ = toy
    return convert_c(model, target="uno", representative_data=x[:32],
                     class_names=["walk", "sit", "stand"])


def test_convert_c_for_the_uno(uno_result):
    r = uno_result
    assert r.name == "toy_model" and r.target.key == "uno" and r.precision == "int8"
    assert sorted(r.c_sources) == ["toy_model.c", "toy_model.h"]
    assert {"arduino/toy_model/toy_model.ino", "arduino/toy_model/toy_model.c",
            "arduino/toy_model/toy_model.h", "arduino/toy_model/README.md"} <= set(r.files)
    assert not any(k.startswith("cortex-m/") for k in r.files)  # an AVR board
    # measured with avr-gcc: the model's constants are at least its weights as stored
    assert r.fit.measured and r.fit.fits
    assert r.fit.flash_needed > r.int_model.weight_bytes()
    assert r.fit.ram_needed >= 2 * H
    assert r.checks["host C vs oracle max |diff|"] == 0
    assert 0.0 <= r.checks["int vs float argmax agreement"] <= 1.0
    text = r.report()
    assert "of 32,768 B" in text and "of 2,048 B" in text and "avr-gcc -Os" in text


def test_run_c_is_bit_exact_with_the_oracle_on_the_host(toy, uno_result):
    _, x, _ = toy
    im = uno_result.int_model
    out = run_c(uno_result, uno_result.quantize_input(x[:6]), target="host")
    assert np.array_equal(out.scores, np.stack([im.run(s) for s in x[:6]]))
    assert out.unit == "seconds" and out.per_step > 0
    assert out.predictions().shape == (6,)


@pytest.mark.parametrize("target", ["uno", "cortex-m4", "cortex-m0"])
def test_run_c_on_emulated_targets_equals_the_host(toy, uno_result, target):
    _toolchain({"uno": "avr", "cortex-m4": "cortex_m4", "cortex-m0": "cortex_m0"}[target])
    _, x, _ = toy
    x_q = uno_result.quantize_input(x[:5])
    host = run_c(uno_result, x_q, target="host")
    out = run_c(uno_result, x_q, target=target)
    assert np.array_equal(out.scores, host.scores)
    assert out.unit == ("cycles" if target == "uno" else "instructions")
    assert out.per_step > 0 and out.flash_bytes > out.model_flash_bytes > 0
    if target == "uno":
        # cycles are exact: the same windows cost the same on every run
        again = run_c(uno_result, x_q[:2], target=target)
        assert out.clock_hz == 16_000_000
        assert out.seconds_per_step() == pytest.approx(out.per_step / 16e6)
        assert again.scores.tolist() == out.scores[:2].tolist()


def test_run_c_batches_windows_into_several_builds(toy, uno_result, monkeypatch):
    _toolchain("avr")
    from keras_rnnedge.micro_targets import crun

    _, x, _ = toy
    monkeypatch.setitem(crun._BATCH_BYTES, "avr", T * F * 2 * 2)  # two windows per build
    x_q = uno_result.quantize_input(x[:5])
    out = run_c(uno_result, x_q, target="uno")
    assert out.builds == 3
    assert np.array_equal(out.scores, run_c(uno_result, x_q, target="host").scores)
    # no room left in the 32 KB for even one window: said before building
    monkeypatch.setattr(crun, "_AVR_PROGRAM_BYTES", 31 * 1024)
    with pytest.raises(ValueError, match=r"no room for one 12-step window \(72 B\) in flash"):
        run_c(uno_result, x_q, target="uno")


def test_save_and_load_round_trip(uno_result, toy, tmp_path):
    _, x, _ = toy
    path = uno_result.save(tmp_path / "uno")
    for rel in uno_result.files:
        assert (path / rel).read_text() == uno_result.files[rel]
    assert (path / "model.keras").is_file() and (path / "REPORT.txt").is_file()
    saved = load_result(path)
    assert isinstance(saved, SavedC)
    assert saved.c_sources == uno_result.c_sources
    assert np.array_equal(saved.quantize_input(x[:3]), uno_result.quantize_input(x[:3]))
    assert saved.class_names == ("walk", "sit", "stand") and saved.timesteps == T
    with pytest.raises(FileExistsError, match="exists"):
        uno_result.save(path)
    # a corrupt manifest and a missing source are named
    (path / "c" / "toy_model.c").unlink()
    with pytest.raises(ConversionError, match=r"toy_model\.c.*missing"):
        load_result(path)
    (path / "manifest.json").write_text('{"format": "c", "name": "toy_model"')
    with pytest.raises(ConversionError, match="corrupt"):
        load_result(path)


def test_model_too_big_for_the_uno():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 9)), keras.layers.LSTM(96),
                              keras.layers.Dense(2)])
    x = np.random.default_rng(0).normal(size=(8, 4, 9)).astype(np.float32)
    with pytest.raises(TargetFitError, match=r"(?s)Arduino Uno.*B of flash and the ATmega328P "
                                               r"has 32,768 B") as info:
        convert_c(model, target="uno", representative_data=x)
    assert info.value.report.flash_needed > 32768
    # it fits a bigger board
    assert convert_c(model, target="nano33ble", representative_data=x).fit.fits


def test_unsupported_layer_is_named():
    model = keras.Sequential([keras.Input((6, 3)),
                              keras.layers.Bidirectional(keras.layers.GRU(4), name="bi"),
                              keras.layers.Dense(2)])
    x = np.zeros((4, 6, 3), np.float32)
    with pytest.raises(ConversionError, match="bi"):
        convert_c(model, target="uno", representative_data=x)


def test_unrepresentable_weight_is_named(toy):
    model, x, _ = toy
    big = keras.models.clone_model(model)
    big.set_weights(model.get_weights())
    kernel, bias = big.get_layer("head").get_weights()
    kernel[0, 0] = 300.0
    big.get_layer("head").set_weights([kernel, bias])
    with pytest.raises(ConversionError, match=r"head/kernel.*300.*weight_bits=16"):
        convert_c(big, target="uno", representative_data=x)
    # int16 weights hold it
    assert convert_c(big, target="uno", representative_data=x, precision="int16").fit.fits


def test_option_errors(toy):
    model, x, _ = toy
    with pytest.raises(ConversionError, match="precision.*'int4'"):
        convert_c(model, target="uno", representative_data=x, precision="int4")
    with pytest.raises(ConversionError, match="representative_data"):
        convert_c(model, target="uno", representative_data=None)
    with pytest.raises(ConversionError, match="NaN or Inf"):
        convert_c(model, target="uno", representative_data=np.full((2, T, F), np.nan))
    with pytest.raises(ConversionError, match="uno3"):
        convert_c(model, target="uno3", representative_data=x)
    with pytest.raises(ValueError, match="'host', 'cortex-m4', 'cortex-m0', 'uno'.*'pic'"):
        run_target("pic")
    assert run_target("ATmega328P") == "uno" and run_target("cortex_m4") == "cortex-m4"


def test_missing_toolchain(toy, uno_result, monkeypatch):
    model, x, _ = toy
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolchainMissingError, match=" ".join(TOOLCHAIN_PACKAGES["avr"])):
        run_c(uno_result, uno_result.quantize_input(x[:1]), target="uno")
    with pytest.raises(ToolchainMissingError, match="qemu-system-arm"):
        measure_c(uno_result.c_sources, "toy_model", "arm")
    # conversion still works: the fit is estimated, and says why
    r = convert_c(model, target="uno", representative_data=x[:8])
    assert not r.fit.measured and "estimated" in r.fit.how and "gcc-avr" in r.fit.how
    assert "host C vs oracle max |diff|" not in r.checks  # no gcc on PATH either


def test_cortex_m_project_builds_and_runs_in_qemu(toy, tmp_path):
    _toolchain("cortex_m4")
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    model, x, _ = toy
    r = convert_c(model, target="nano33ble", representative_data=x[:32])
    assert {"cortex-m/main.c", "cortex-m/Makefile", "cortex-m/startup.c", "cortex-m/link.ld",
            "cortex-m/toy_model.c", "arduino/toy_model/toy_model.ino"} <= set(r.files)
    r.save(tmp_path / "m4")
    project = tmp_path / "m4" / "cortex-m"
    run = subprocess.run(["make", "run"], cwd=project, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    want = r.int_model.run(x[0])
    assert f"scores {' '.join(str(int(v)) for v in want)}" in run.stdout
    assert "scores equal the oracle's" in run.stdout
    assert f"class {int(np.argmax(want))}" in run.stdout


FAKE_ARDUINO = r"""
#ifndef FAKE_ARDUINO_H_
#define FAKE_ARDUINO_H_
// Host stand-in for the Arduino core: Serial reads stdin and writes stdout.
#include <stdint.h>
#include <stdio.h>
#define F(s) (s)
class FakeSerial {
 public:
  void begin(long) {}
  explicit operator bool() const { return true; }
  int available();
  int read();
  void print(const char* s) { printf("%s", s); }
  void print(char c) { printf("%c", c); }
  void print(int v) { printf("%d", v); }
  void print(unsigned long v) { printf("%lu", v); }
  void print(double v, int digits) { printf("%.*f", digits, v); }
  template <typename T> void println(T v) { print(v); printf("\r\n"); }
  template <typename T> void println(T v, int d) { print(v, d); printf("\r\n"); }
};
extern FakeSerial Serial;
#endif
"""

SKETCH_MAIN = r"""
#include <Arduino.h>
#include <string>
void setup();
void loop();
FakeSerial Serial;
static std::string g_in;
static size_t g_pos = 0;
int FakeSerial::available() { return static_cast<int>(g_in.size() - g_pos); }
int FakeSerial::read() {
  return g_pos < g_in.size() ? static_cast<unsigned char>(g_in[g_pos++]) : -1;
}
int main() {
  for (int c = getchar(); c != EOF; c = getchar()) g_in.push_back(static_cast<char>(c));
  setup();
  while (Serial.available() > 0) loop();
  return 0;
}
"""


def test_c_sketch_streams_and_matches_the_oracle(toy, uno_result, tmp_path):
    """The .ino with the model's C, compiled for the host against a stand-in Arduino core:
    samples as text lines in, one class per window out, equal to the oracle's argmax."""
    if shutil.which("g++") is None or shutil.which("gcc") is None:
        pytest.fail("gcc/g++ are needed to build the sketch on the host")
    _, x, _ = toy
    folder = tmp_path / "sketch"
    for rel, text in uno_result.files.items():
        if rel.startswith("arduino/toy_model/"):
            (folder / os.path.basename(rel)).parent.mkdir(parents=True, exist_ok=True)
            (folder / os.path.basename(rel)).write_text(text)
    (folder / "Arduino.h").write_text(FAKE_ARDUINO)
    (folder / "main.cpp").write_text(SKETCH_MAIN)
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-c", "toy_model.c"],
                   cwd=folder, check=True)
    build = subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-I", ".",
                            "-x", "c++", "toy_model.ino", "-x", "none", "main.cpp",
                            "toy_model.o", "-o", "sketch"], cwd=folder, capture_output=True,
                           text=True)
    assert build.returncode == 0, build.stderr
    windows = x[:4]
    lines = ["", "1,2", "  "]  # noise the reader must skip or reject, then the samples
    lines += [",".join(repr(float(v)) for v in step) for w in windows for step in w]
    run = subprocess.run(["./sketch"], cwd=folder, input="\n".join(lines) + "\n",
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    names = ("walk", "sit", "stand")
    im = uno_result.int_model
    want = [names[int(np.argmax(im.run(w)))] for w in windows]
    got = [line.split(": ")[1].split()[0] for line in run.stdout.splitlines()
           if line.startswith("window ")]
    assert got == want
    assert "Ignored a line: expected 3 comma-separated numbers." in run.stdout


def test_c_sketch_compiles_for_the_avr(uno_result, tmp_path):
    """avr-g++/avr-gcc build the sketch's own code (PROGMEM constants, pgm_read_float) with
    the model for the ATmega328P, against the same stand-in core."""
    _toolchain("avr")
    folder = tmp_path / "avr"
    folder.mkdir()
    for rel, text in uno_result.files.items():
        if rel.startswith("arduino/toy_model/"):
            (folder / os.path.basename(rel)).write_text(text)
    (folder / "Arduino.h").write_text(FAKE_ARDUINO.replace("#include <stdio.h>",
                                                           "#include <stdio.h>\n#include "
                                                           "<stdlib.h>"))
    for cmd in (["avr-gcc", "-std=c99", "-mmcu=atmega328p", "-Os", "-Wall", "-Wextra",
                 "-Werror", "-c", "toy_model.c"],
                ["avr-g++", "-std=gnu++11", "-mmcu=atmega328p", "-Os", "-Wall", "-Wextra",
                 "-Werror", "-I", ".", "-x", "c++", "-c", "toy_model.ino", "-o", "ino.o"]):
        out = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr


# -- CLI ---------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_cli_convert_c_and_run(toy, tmp_path, capsys):
    model, x, y = toy
    model_path = tmp_path / "toy.keras"
    model.save(model_path)
    data = tmp_path / "data.npz"
    np.savez(data, x_train=x[:32], x_test=x[32:], y_test=y[32:])
    out = tmp_path / "uno"
    # the Uno has no TFLite Micro: the standalone C is the default there
    assert cli.main(["convert", str(model_path), "--target", "uno", "--data", str(data),
                     "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "standalone C" in text and "of 32,768 B" in text
    assert (out / "arduino" / "toy_model" / "toy_model.ino").is_file()
    assert cli.main(["run", str(out), "--target", "host", "--data", str(data)]) == 0
    text = capsys.readouterr().out
    assert "windows          16 of 12 steps" in text and "accuracy" in text
    _toolchain("avr")
    assert cli.main(["run", str(out), "--target", "uno", "--data", str(data),
                     "--limit", "2"]) == 0
    text = capsys.readouterr().out
    assert "bit-exact        yes" in text and "cycles" in text and "at 16 MHz" in text


def test_cli_errors(toy, tmp_path, capsys):
    model, x, y = toy
    model_path = tmp_path / "toy.keras"
    model.save(model_path)
    data = tmp_path / "data.npz"
    np.savez(data, x_train=x[:16], x_test=x[16:20], y_test=y[16:20])
    assert cli.main(["convert", str(model_path), "--target", "uno", "--quantize", "float16",
                     "--data", str(data), "--out", str(tmp_path / "a")]) == 2
    assert "--quantize 'float16' is not available with --format c" in capsys.readouterr().err
    assert cli.main(["convert", str(model_path), "--target", "uno", "--out",
                     str(tmp_path / "a")]) == 2
    assert "--format c needs --data" in capsys.readouterr().err
    # a TFLite directory is not standalone C, and the other way round
    tfl = convert(model, target="host", quantization="float32")
    tfl.save(tmp_path / "tfl")
    assert cli.main(["run", str(tmp_path / "tfl"), "--target", "host", "--data",
                     str(data)]) == 2
    assert "holds a TFLite model" in capsys.readouterr().err
    # the toy model is untrained (random labels, 4 test windows): its deployment check is noise
    assert cli.main(["convert", str(model_path), "--target", "host", "--format", "c", "--data",
                     str(data), "--out", str(tmp_path / "c"), "--checks", "warn"]) == 0
    capsys.readouterr()
    assert cli.main(["emulate", str(tmp_path / "c"), "--data", str(data)]) == 2
    assert "holds standalone C" in capsys.readouterr().err
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x_test=np.zeros((2, T, F + 1), np.float32))
    assert cli.main(["run", str(tmp_path / "c"), "--target", "host", "--data",
                     str(wrong)]) == 2
    err = capsys.readouterr().err
    assert "4 features per time step" in err and "the model takes 3" in err


# -- the float build ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def float_result(toy):
    model, x, _ = toy
    return convert_c(model, target="nano33ble", representative_data=x[:32],
                     precision="float32")


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_float_build_matches_keras_everywhere(toy, float_result):
    model, x, _ = toy
    r = float_result
    assert r.int_model is None and r.frac_bits is None and r.fit.measured
    assert r.checks["float C vs keras max |diff|"] <= 1e-4
    want = model.predict(x[:3], verbose=0)
    windows = r.quantize_input(x[:3])
    assert windows.dtype == np.float32
    host = run_c(r, windows, target="host")
    # float32 sums in another order than TensorFlow's, libm against Eigen: a few ulp of
    # outputs of order 1 (as in tests/test_cgen_float.py)
    np.testing.assert_allclose(_softmax(host.scores), want, atol=2e-5)
    for target, tool in (("cortex-m4", "cortex_m4"), ("cortex-m0", "cortex_m0"), ("uno", "avr")):
        _toolchain(tool)
        out = run_c(r, windows, target=target)
        # the emulated targets print micro-units (1e-6, rounded) and their libm differs from
        # glibc's by a few ulp; avr-gcc's float is IEEE single precision too
        np.testing.assert_allclose(out.scores, host.scores, atol=2e-5)
    assert "float" in r.report() and "cortex-m/main.c" in r.files


def test_float_cortex_m_project_runs_in_qemu(float_result, tmp_path):
    _toolchain("cortex_m4")
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    float_result.save(tmp_path / "f")
    run = subprocess.run(["make", "run"], cwd=tmp_path / "f" / "cortex-m", capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "scores equal the Keras model's (to 1e-4)" in run.stdout


def test_float_sketch_streams_on_the_host(toy, float_result, tmp_path):
    _, x, _ = toy
    folder = tmp_path / "sketch"
    folder.mkdir()
    for rel, text in float_result.files.items():
        if rel.startswith("arduino/toy_model/"):
            (folder / os.path.basename(rel)).write_text(text)
    (folder / "Arduino.h").write_text(FAKE_ARDUINO)
    (folder / "main.cpp").write_text(SKETCH_MAIN)
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-c", "toy_model.c"],
                   cwd=folder, check=True)
    subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-I", ".", "-x", "c++",
                    "toy_model.ino", "-x", "none", "main.cpp", "toy_model.o", "-lm", "-o",
                    "sketch"], cwd=folder, check=True)
    lines = [",".join(repr(float(v)) for v in step) for w in x[:3] for step in w]
    run = subprocess.run(["./sketch"], cwd=folder, input="\n".join(lines) + "\n",
                         capture_output=True, text=True, timeout=60)
    got = [int(line.split(": ")[1].split()[0]) for line in run.stdout.splitlines()
           if line.startswith("window ")]
    assert got == list(np.argmax(float_result.source_model.predict(x[:3], verbose=0), axis=1))


def test_pruned_and_qat_models_convert(toy):
    """Wrappers are stripped: the pruned weights (zeros) and the QAT model's own (fake-quantized)
    weights are what the C computes with, checked against the oracle and Keras as usual."""
    from keras_rnnedge.optimize import prune_low_magnitude, quantize_model

    model, x, _ = toy
    pruned = prune_low_magnitude(model, {"kernel": 0.5})
    r = convert_c(pruned, target="uno", representative_data=x[:16])
    assert r.checks["host C vs oracle max |diff|"] == 0
    qat = quantize_model(model)
    assert convert_c(qat, target="uno", representative_data=x[:16]).fit.fits
    f = convert_c(qat, target="nano33ble", representative_data=x[:16], precision="float32")
    assert f.checks["float C vs keras max |diff|"] <= 1e-4
