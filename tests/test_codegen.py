"""Generated C/C++: the model C array, ``<id>_model_io.h``, the Arduino sketch and the PlatformIO
project.

Everything generated is compiled with the host ``g++ -Wall -Wextra -Werror``. The sketch is also
*run* on the host: small stand-ins for the Arduino core and TFLite Micro (headers written by
these tests, with the real API's names and signatures) feed it serial lines, record what every
``Invoke`` receives and answer with a toy model. The same toy model driven by the emulator's own
step loop (``micro_targets.emulate._run_steps``) is the oracle, so the C++ caller is checked
against the Python caller value for value.

Snapshots live in ``tests/snapshots/``; regenerate them with ``RNNEDGE_UPDATE_SNAPSHOTS=1``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import types
from pathlib import Path

import numpy as np
import pytest

from keras_rnnedge.converters import lowering
from keras_rnnedge.converters.carray import BYTES_PER_LINE, c_array, c_identifier
from keras_rnnedge.converters.tflite import sketch
from keras_rnnedge.converters.tflite.flatbuffer import TensorInfo
from keras_rnnedge.converters.tflite.sketch import (
    IOTensor,
    SketchSpec,
    arduino_sketch,
    model_io_header,
    platformio_project,
)
from keras_rnnedge.micro_targets.emulate import _run_steps

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE_SNAPSHOTS = os.environ.get("RNNEDGE_UPDATE_SNAPSHOTS") == "1"
GXX = shutil.which("g++")
needs_gxx = pytest.mark.skipif(GXX is None, reason="g++ not found: the generated C++ is compiled "
                               "with the host compiler (apt-get install g++)")
CXXFLAGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror"]

# Printed scores have 4 decimals: a printed score is within half a unit of the 4th decimal.
PRINTED_SCORE_ATOL = 5e-5


def compile_and_run(tmp_path: Path, sources: list[Path], *, include: list[Path] = (),
                    flags: list[str] = (), args: list[str] = (), stdin: str = ""
                    ) -> subprocess.CompletedProcess:
    exe = tmp_path / "prog"
    cmd = [GXX, *CXXFLAGS, *flags, *[f"-I{d}" for d in include], *map(str, sources), "-o",
           str(exe)]
    built = subprocess.run(cmd, capture_output=True, text=True)
    assert built.returncode == 0, f"{' '.join(cmd)}\n{built.stderr}"
    run = subprocess.run([str(exe), *args], input=stdin, capture_output=True, text=True,
                         timeout=20)
    assert run.returncode == 0, run.stderr
    return run


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# -- c_identifier ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("my-model 2", "my_model_2"),
    ("2fast", "model_2fast"),
    ("int", "int_model"),
    ("class", "class_model"),
    ("", "model"),
    ("---", "model"),
    ("HAR FastGRNN", "har_fastgrnn"),
    ("__x__y__", "x_y"),
    ("Café Ñandú", "cafe_nandu"),
    ("模型", "model"),
    ("模型 v2", "v2"),
    ("Δt-net", "t_net"),
])
def test_c_identifier(name, expected):
    assert c_identifier(name) == expected


@pytest.mark.parametrize("name", ["my-model 2", "2fast", "int", "", "模型", "a" * 200,
                                  "9" * 80, "_Bool", "x\n\t\"y"])
def test_c_identifier_is_always_a_safe_identifier(name):
    ident = c_identifier(name)
    # A C identifier, lowercase, no reserved "__" or leading "_", short enough for a sketch name.
    assert re.fullmatch(r"[a-z][a-z0-9_]*", ident), ident
    assert "__" not in ident and not ident.endswith("_") and len(ident) <= 63
    assert c_identifier(ident) == ident


# -- the C array -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dense_flatbuffer() -> bytes:
    """A real (tiny) TFLite flatbuffer: one Dense layer."""
    from keras_rnnedge import keras, tf

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


DUMP_MAIN = r"""
#include <stdint.h>
#include <stdio.h>
#include "NAME_model_data.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  if (reinterpret_cast<uintptr_t>(g_NAME_model_data) % 16 != 0) return 3;
  FILE* out = fopen(argv[1], "wb");
  if (out == nullptr) return 4;
  fwrite(g_NAME_model_data, 1, g_NAME_model_data_len, out);
  fclose(out);
  return 0;
}
"""


def roundtrip(tmp_path: Path, data: bytes, name: str, *, progmem: bool = False,
              flags: list[str] = (), include: list[Path] = ()) -> bytes:
    files = c_array(data, name, progmem=progmem, quantization="float32")
    write_files(tmp_path, files)
    ident = c_identifier(name)
    main = tmp_path / "main.cc"
    main.write_text(DUMP_MAIN.replace("NAME", ident))
    out = tmp_path / "out.bin"
    compile_and_run(tmp_path, [main, tmp_path / f"{ident}_model_data.cc"],
                    include=[tmp_path, *include], flags=flags, args=[str(out)])
    return out.read_bytes()


def test_c_array_files_and_layout():
    data = bytes(range(25))
    files = c_array(data, "My Model", model_name="My Model", quantization="int8")
    assert sorted(files) == ["my_model_model_data.cc", "my_model_model_data.h"]
    header, source = files["my_model_model_data.h"], files["my_model_model_data.cc"]
    assert "#ifndef MY_MODEL_MODEL_DATA_H_\n#define MY_MODEL_MODEL_DATA_H_" in header
    assert "extern const unsigned char g_my_model_model_data[];" in header
    assert "extern const unsigned int g_my_model_model_data_len;" in header
    assert '// Model "My Model": 25 bytes, int8 quantization.' in header
    assert '#include "my_model_model_data.h"' in source
    assert "alignas(16) const unsigned char g_my_model_model_data[] = {" in source
    assert "const unsigned int g_my_model_model_data_len = 25;" in source
    rows = re.findall(r"^    (0x.*?),?$", source, flags=re.M)
    assert [len(r.split(", ")) for r in rows] == [BYTES_PER_LINE, BYTES_PER_LINE, 1]
    assert "PROGMEM" not in source


@needs_gxx
def test_c_array_roundtrip_real_flatbuffer(tmp_path, dense_flatbuffer):
    assert dense_flatbuffer[4:8] == b"TFL3"
    assert roundtrip(tmp_path, dense_flatbuffer, "dense net") == dense_flatbuffer


@needs_gxx
@pytest.mark.parametrize("size", [1, 12, 13, 1000])
def test_c_array_roundtrip_any_bytes(tmp_path, size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert roundtrip(tmp_path, data, "2fast") == data


@needs_gxx
def test_c_array_progmem_compiles_on_the_host(tmp_path, dense_flatbuffer):
    files = c_array(dense_flatbuffer, "uno model", progmem=True)
    source = files["uno_model_model_data.cc"]
    assert "#ifdef __AVR__\n#include <avr/pgmspace.h>\n#elif !defined(PROGMEM)\n#define PROGMEM" \
        in source
    assert "g_uno_model_model_data[] PROGMEM = {" in source
    assert roundtrip(tmp_path, dense_flatbuffer, "uno model", progmem=True) == dense_flatbuffer


@needs_gxx
def test_c_array_progmem_avr_branch(tmp_path, dense_flatbuffer):
    """The __AVR__ branch, with a host stand-in for <avr/pgmspace.h> (a named data section)."""
    fake = tmp_path / "fake_avr"
    (fake / "avr").mkdir(parents=True)
    (fake / "avr" / "pgmspace.h").write_text(
        '#define PROGMEM __attribute__((section(".progmem.data")))\n')
    got = roundtrip(tmp_path, dense_flatbuffer, "uno", progmem=True, flags=["-D__AVR__"],
                    include=[fake])
    assert got == dense_flatbuffer


def test_c_array_rejects_bad_input():
    with pytest.raises(ValueError, match="empty flatbuffer"):
        c_array(b"", "m")
    with pytest.raises(TypeError, match="got str"):
        c_array("not bytes", "m")
    with pytest.raises(ValueError, match="32,767 bytes"):
        c_array(bytes(40000), "m", progmem=True)


# -- specs used below ------------------------------------------------------------------------------

METHODS = ("AddFullyConnected", "AddTanh", "AddLogistic", "AddMul", "AddAdd", "AddSoftmax")


def step_spec(**changes) -> SketchSpec:
    """Step mode, int8, two states: state_0_out has state_0's quantization (copied), state_1_out
    has another scale and zero point (re-quantized). Positions deliberately not in name order."""
    spec = dict(
        name="har_fastgrnn", flatbuffer=b"\x1c\x00\x00\x00TFL3" + bytes(24), quantization="int8",
        mode="step", features=3, timesteps=5, state_sizes=(4, 2),
        inputs=(TensorInfo("state_1", 0, (1, 2), "int8", 0.0171, 3),
                TensorInfo("x", 1, (1, 3), "int8", 0.05, -2),
                TensorInfo("state_0", 2, (1, 4), "int8", 0.0123, -5)),
        outputs=(TensorInfo("y", 0, (1, 3), "int8", 1 / 256, -128),
                 TensorInfo("state_0_out", 1, (1, 4), "int8", 0.0123, -5),
                 TensorInfo("state_1_out", 2, (1, 2), "int8", 0.0123, 1)),
        resolver_methods=METHODS + ("AddTanh",), arena_bytes=6144,
        class_names=("rest", "walk", "run"), board_name="Arduino Nano 33 BLE",
        fqbn="arduino:mbed_nano:nano33ble", platformio_board="nano33ble",
        platformio_platform="nordicnrf52")
    spec.update(changes)
    return SketchSpec(**spec)


def fused_spec(**changes) -> SketchSpec:
    spec = dict(
        name="kws_lstm", flatbuffer=bytes(range(64)), quantization="int8", mode="fused",
        features=2, timesteps=4,
        inputs=(TensorInfo("x", 0, (1, 4, 2), "int8", 0.02, 7),),
        outputs=(TensorInfo("y", 0, (1, 2), "int8", 1 / 256, -128),),
        resolver_methods=("AddUnidirectionalSequenceLSTM", "AddFullyConnected", "AddSoftmax"),
        arena_bytes=4096, class_names=("no", "yes"), board_name="Arduino Nano 33 BLE",
        fqbn="arduino:mbed_nano:nano33ble", platformio_board="nano33ble",
        platformio_platform="nordicnrf52")
    spec.update(changes)
    return SketchSpec(**spec)


def unrolled_float_spec(**changes) -> SketchSpec:
    spec = dict(
        name="tiny_rnn", flatbuffer=bytes(range(48)), quantization="float32", mode="unrolled",
        features=2, timesteps=3,
        inputs=(TensorInfo("x", 0, (1, 3, 2), "float32", 0.0, 0),),
        outputs=(TensorInfo("y", 0, (1, 2), "float32", 0.0, 0),),
        resolver_methods=("AddFullyConnected", "AddTanh", "AddAdd"), arena_bytes=2048,
        board_name="Raspberry Pi Pico", fqbn="arduino:mbed_rp2040:pico",
        platformio_board="pico", platformio_platform="raspberrypi")
    spec.update(changes)
    return SketchSpec(**spec)


def step_int16_spec(**changes) -> SketchSpec:
    """int16x8: int16 activations with zero point 0; state_0 copied, state_1 re-quantized."""
    spec = dict(
        quantization="int16x8",
        inputs=(TensorInfo("x", 0, (1, 3), "int16", 0.001, 0),
                TensorInfo("state_0", 1, (1, 4), "int16", 3.1e-5, 0),
                TensorInfo("state_1", 2, (1, 2), "int16", 2.9e-5, 0)),
        outputs=(TensorInfo("y", 0, (1, 3), "int16", 3.0517578125e-05, 0),
                 TensorInfo("state_0_out", 1, (1, 4), "int16", 3.1e-5, 0),
                 TensorInfo("state_1_out", 2, (1, 2), "int16", 3.7e-5, 0)))
    spec.update(changes)
    return step_spec(**spec)


#: Per-feature standardisation of the standardised-input spec: offsets and scales far apart, so
#: a sketch that skipped or mixed them up would quantize other values.
STD_OFFSET = (0.5, -30.0, 200.0)
STD_SCALE = (4.0, 0.25, 0.01)


def step_std_spec(**changes) -> SketchSpec:
    """An int8 step model that takes standardised features: the sketch standardises each raw
    feature with the constants the flatbuffer records before quantizing it."""
    std = lowering.Standardization(offset=STD_OFFSET, scale=STD_SCALE)
    inputs = tuple(dataclasses.replace(tensor_info(t), standardization=std) if t.name == "x"
                   else t for t in step_spec().inputs)
    return step_spec(**{"inputs": inputs, **changes})


def step_decode_spec(**changes) -> SketchSpec:
    """A step model whose weights are stored compressed: TFLM_DECODE (AddDecode) first."""
    return step_spec(**{"resolver_methods": ("AddDecode",) + METHODS, **changes})


def step_flexible_spec(**changes) -> SketchSpec:
    """The step model of a flexible RNN: an int32 ``level`` input (position 3)."""
    inputs = step_spec().inputs + (TensorInfo("level", 3, (1, 1), "int32", 0.0, 0),)
    return step_spec(**{"inputs": inputs, **changes})


SPECS = {"step_int8": step_spec, "step_int16": step_int16_spec, "fused_int8": fused_spec,
         "unrolled_float32": unrolled_float_spec, "step_int8_decode": step_decode_spec,
         "step_int8_standardized": step_std_spec, "step_int8_flexible": step_flexible_spec}


# -- the spec --------------------------------------------------------------------------------------

def test_spec_normalizes_its_inputs():
    spec = step_spec()
    assert all(isinstance(t, IOTensor) for t in spec.inputs + spec.outputs)
    assert spec.resolver_methods == METHODS  # the repeated AddTanh is dropped
    assert spec.num_classes == 3
    assert spec.input("state_1").scale == float(np.float32(0.0171))
    assert unrolled_float_spec().class_names == ("class_0", "class_1")
    dataclasses.replace(spec)  # frozen and re-validatable


def test_spec_modes_are_the_lowering_modes():
    assert sketch._MODES == lowering.MODES


@pytest.mark.parametrize("changes, message", [
    (dict(name="har-fastgrnn"), "C identifier.*'har_fastgrnn'"),
    (dict(mode="loop"), "mode.*'loop'"),
    (dict(timesteps=None), "timesteps.*window length.*None"),
    (dict(state_sizes=(4,)), "Expected inputs named"),
    (dict(class_names=("a", "b")), "2 class_names"),
    (dict(resolver_methods=("FullyConnected",)), "AddFullyConnected"),
    (dict(arena_bytes=0), "arena_bytes.*0"),
    (dict(flatbuffer=b""), "empty flatbuffer"),
])
def test_spec_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        step_spec(**changes)


def test_spec_rejects_unsupported_tensors():
    with pytest.raises(ValueError, match="dtype 'uint8'"):
        fused_spec(inputs=(TensorInfo("x", 0, (1, 4, 2), "uint8", 0.02, 7),))
    with pytest.raises(ValueError, match="scale 0.0"):
        fused_spec(inputs=(TensorInfo("x", 0, (1, 4, 2), "int8", 0.0, 7),))
    with pytest.raises(ValueError, match="windows of 4 samples, but timesteps=5"):
        fused_spec(timesteps=5)


def test_spec_from_converted():
    base = step_spec()
    converted = types.SimpleNamespace(
        name="HAR FastGRNN", flatbuffer=base.flatbuffer, quantization="int8", mode="step",
        state_sizes=(4, 2), inputs=base.inputs, outputs=base.outputs)
    spec = SketchSpec.from_converted(converted, resolver_methods=METHODS, arena_bytes=6144,
                                     timesteps=5, class_names=("rest", "walk", "run"))
    assert spec.name == "har_fastgrnn" and spec.features == 3 and spec.num_classes == 3
    fused = fused_spec()
    converted = types.SimpleNamespace(flatbuffer=fused.flatbuffer, quantization="int8",
                                      mode="fused", inputs=fused.inputs, outputs=fused.outputs)
    spec = SketchSpec.from_converted(converted, resolver_methods=fused.resolver_methods,
                                     arena_bytes=4096)
    assert spec.timesteps == 4 and spec.state_sizes == () and spec.name == "model"


# -- <id>_model_io.h -------------------------------------------------------------------------------

def io_dump_main(spec: SketchSpec) -> str:
    lines = ["#include <stdio.h>", f'#include "{spec.name}_model_io.h"',
             f"namespace io = {spec.name}_model_io;", "int main() {"]
    ints = ["kArenaSize", "kFeatures", "kTimesteps", "kInputPosition", "kInputZeroPoint",
            "kOutputPosition", "kOutputZeroPoint", "kNumClasses", "kNumStates"]
    lines += [f'  printf("{k}=%d\\n", io::{k});' for k in ints]
    lines += [f'  printf("{k}=%.9g\\n", static_cast<double>(io::{k}));'
              for k in ("kInputScale", "kOutputScale")]
    lines += [f'  printf("{k}=%s\\n", io::{k});' for k in ("kModelName", "kQuantization", "kMode")]
    lines.append('  printf("kStepMode=%d\\n", io::kStepMode ? 1 : 0);')
    lines.append('  printf("kStandardizedInput=%d\\n", io::kStandardizedInput ? 1 : 0);')
    if spec.input("x").offset:
        for k in ("kInputOffset", "kInputStandardScale"):
            lines.append(f'  for (int i = 0; i < io::kFeatures; ++i) '
                         f'printf("{k}[%d]=%.9g\\n", i, static_cast<double>(io::{k}[i]));')
    lines.append('  for (int i = 0; i < io::kNumClasses; ++i) '
                 'printf("kClassNames[%d]=%s\\n", i, io::kClassNames[i]);')
    if spec.state_sizes:
        for k in ("kStateSizes", "kStateInputPositions", "kStateInputZeroPoints",
                  "kStateOutputPositions", "kStateOutputZeroPoints"):
            lines.append(f'  for (int i = 0; i < io::kNumStates; ++i) '
                         f'printf("{k}[%d]=%d\\n", i, io::{k}[i]);')
        for k in ("kStateInputScales", "kStateOutputScales"):
            lines.append(f'  for (int i = 0; i < io::kNumStates; ++i) '
                         f'printf("{k}[%d]=%.9g\\n", i, static_cast<double>(io::{k}[i]));')
    return "\n".join(lines + ["  return 0;", "}", ""])


def expected_io(spec: SketchSpec) -> dict[str, str]:
    x, y = spec.input("x"), spec.output("y")
    f32 = lambda v: float(np.float32(v))  # noqa: E731 - the header's constants are float32
    exp = dict(kArenaSize=spec.arena_bytes, kFeatures=spec.features, kTimesteps=spec.timesteps,
               kInputPosition=x.position, kInputZeroPoint=x.zero_point, kInputScale=f32(x.scale),
               kOutputPosition=y.position, kOutputZeroPoint=y.zero_point,
               kOutputScale=f32(y.scale), kNumClasses=spec.num_classes,
               kNumStates=len(spec.state_sizes), kModelName=spec.name,
               kQuantization=spec.quantization, kMode=spec.mode,
               kStepMode=int(spec.mode == "step"), kStandardizedInput=int(bool(x.offset)))
    for k, values in (("kInputOffset", x.offset), ("kInputStandardScale", x.standard_scale)):
        exp.update({f"{k}[{i}]": f32(v) for i, v in enumerate(values)})
    exp.update({f"kClassNames[{i}]": n for i, n in enumerate(spec.class_names)})
    for i, size in enumerate(spec.state_sizes):
        tin, tout = spec.input(f"state_{i}"), spec.output(f"state_{i}_out")
        exp.update({f"kStateSizes[{i}]": size, f"kStateInputPositions[{i}]": tin.position,
                    f"kStateInputZeroPoints[{i}]": tin.zero_point,
                    f"kStateOutputPositions[{i}]": tout.position,
                    f"kStateOutputZeroPoints[{i}]": tout.zero_point,
                    f"kStateInputScales[{i}]": f32(tin.scale),
                    f"kStateOutputScales[{i}]": f32(tout.scale)})
    return exp


def parse_dump(text: str) -> dict[str, object]:
    out = {}
    for line in text.splitlines():
        key, value = line.split("=", 1)
        if "Scale" in key or "Offset" in key:
            out[key] = float(np.float32(float(value)))  # %.9g round-trips a float32
        else:
            try:
                out[key] = int(value)
            except ValueError:
                out[key] = value
    return out


@needs_gxx
@pytest.mark.parametrize("std", ["c++11", "c++17"])
@pytest.mark.parametrize("kind", ["step_int8", "fused_int8", "unrolled_float32", "odd_names",
                                  "step_int8_standardized"])
def test_model_io_header_compiles_standalone_and_matches_the_spec(tmp_path, kind, std):
    if kind == "odd_names":
        spec = fused_spec(class_names=('say "yes"?', "café\\ñ"))
    else:
        spec = SPECS[kind]()
    (tmp_path / f"{spec.name}_model_io.h").write_text(model_io_header(spec))
    main = tmp_path / "main.cc"
    main.write_text(io_dump_main(spec))
    run = compile_and_run(tmp_path, [main], include=[tmp_path], flags=[f"-std={std}"])
    assert parse_dump(run.stdout) == expected_io(spec)


# -- sketch contents, snapshots --------------------------------------------------------------------

def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if UPDATE_SNAPSHOTS:
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"No snapshot {path}; create it with RNNEDGE_UPDATE_SNAPSHOTS=1."
    assert text == path.read_text(), (
        f"{name} differs from its snapshot. If the change is intended, regenerate with "
        "RNNEDGE_UPDATE_SNAPSHOTS=1 and review the diff.")


@pytest.mark.parametrize("kind", ["step_int8", "fused_int8"])
def test_sketch_snapshot(kind):
    spec = SPECS[kind]()
    files = arduino_sketch(spec)
    check_snapshot(f"{kind}.ino", files[f"{spec.name}/{spec.name}.ino"])
    check_snapshot(f"{kind}_model_io.h", files[f"{spec.name}/{spec.name}_model_io.h"])


@pytest.mark.parametrize("kind", list(SPECS))
def test_sketch_files(kind):
    spec = SPECS[kind]()
    files = arduino_sketch(spec)
    n = spec.name
    assert sorted(files) == sorted(f"{n}/{f}" for f in (
        f"{n}.ino", f"{n}_model_data.h", f"{n}_model_data.cpp", f"{n}_model_io.h", "README.md"))
    ino = files[f"{n}/{n}.ino"]
    for include in ("#include <TensorFlowLite.h>",
                    '#include "tensorflow/lite/micro/micro_interpreter.h"',
                    '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
                    '#include "tensorflow/lite/schema/schema_generated.h"',
                    f'#include "{n}_model_data.h"', f'#include "{n}_model_io.h"'):
        assert include in ino
    assert f"tflite::GetModel(g_{n}_model_data)" in ino
    assert "model->version() != TFLITE_SCHEMA_VERSION" in ino
    assert "alignas(16) static uint8_t tensor_arena[io::kArenaSize];" in ino
    assert "AllocateTensors() != kTfLiteOk" in ino and "static bool read_sample(float* x)" in ino
    assert "#include <Arduino.h>" not in ino
    assert files[f"{n}/{n}_model_data.cpp"] == c_array(
        spec.flatbuffer, n, quantization=spec.quantization)[f"{n}_model_data.cc"]
    assert "PROGMEM" not in files[f"{n}/{n}_model_data.cpp"]
    readme = files[f"{n}/README.md"]
    for needle in ("Arduino_TensorFlowLite", "tflite-micro-arduino-examples", spec.fqbn,
                   f"{spec.arena_bytes:,} bytes", "recording allocator", "margin",
                   "read_sample()", "Expected output", f"{spec.features} comma-separated"):
        assert needle in readme, needle


@pytest.mark.parametrize("kind", list(SPECS))
def test_resolver_has_exactly_the_model_ops(kind):
    spec = SPECS[kind]()
    ino = arduino_sketch(spec)[f"{spec.name}/{spec.name}.ino"]
    sizes = re.findall(r"static tflite::MicroMutableOpResolver<(\d+)> resolver;", ino)
    added = re.findall(r"^  resolver\.(Add\w+)\(\);$", ino, flags=re.M)
    assert sizes == [str(len(spec.resolver_methods))]
    assert added == list(spec.resolver_methods)
    assert len(set(added)) == len(added)
    assert "AllOpsResolver" not in ino


@pytest.mark.parametrize("kind", list(SPECS))
def test_compressed_weights_are_explained(kind):
    """A model with TFLM_DECODE says, by its AddDecode() and in the README, that it needs a
    TFLite Micro with the DECODE kernel (the Arduino library predates it); others say nothing."""
    spec = SPECS[kind]()
    files = arduino_sketch(spec)
    ino, readme = files[f"{spec.name}/{spec.name}.ino"], files[f"{spec.name}/README.md"]
    decode = "AddDecode" in spec.resolver_methods
    assert ("// TFLM_DECODE decodes the weights stored compressed" in ino) == decode
    assert ("## Compressed weights (TFLM_DECODE)" in readme) == decode
    assert ("no member named 'AddDecode'" in readme) == decode
    pio = platformio_project(spec)["README.md"]
    assert ("## Compressed weights (TFLM_DECODE)" in pio) == decode


def test_state_handling_matches_the_scales():
    ino = arduino_sketch(step_spec())["har_fastgrnn/har_fastgrnn.ino"]
    assert "memcpy(state_0, state_0_output->data.int8, sizeof(state_0));" in ino
    assert "state_1[i] = quantize_int8(value, io::kStateInputScales[1]" in ino
    same = step_spec(outputs=(TensorInfo("y", 0, (1, 3), "int8", 1 / 256, -128),
                              TensorInfo("state_0_out", 1, (1, 4), "int8", 0.0123, -5),
                              TensorInfo("state_1_out", 2, (1, 2), "int8", 0.0171, 3)))
    ino = arduino_sketch(same)["har_fastgrnn/har_fastgrnn.ino"]
    assert "dequantize(state_" not in ino
    assert "memcpy(state_1, state_1_output->data.int8, sizeof(state_1));" in ino
    fused = arduino_sketch(fused_spec())["kws_lstm/kws_lstm.ino"]
    assert "interpreter->Reset();" in fused and "state_" not in fused
    flt = arduino_sketch(unrolled_float_spec())["tiny_rnn/tiny_rnn.ino"]
    assert "quantize" not in flt.lower() and "<math.h>" not in flt and "Reset()" not in flt


def test_platformio_project():
    spec = step_spec()
    files = platformio_project(spec)
    assert sorted(files) == sorted([
        "platformio.ini", "src/main.cpp", "src/har_fastgrnn_model_data.cc",
        "include/har_fastgrnn_model_data.h", "include/har_fastgrnn_model_io.h", "README.md"])
    ini = files["platformio.ini"]
    assert "[env:nano33ble]" in ini and "board = nano33ble" in ini
    assert "platform = nordicnrf52" in ini and "framework = arduino" in ini
    assert re.search(r"lib_deps =\n +https://github.com/tensorflow/tflite-micro-arduino-examples",
                     ini)
    main = files["src/main.cpp"]
    ino = arduino_sketch(spec)["har_fastgrnn/har_fastgrnn.ino"]
    assert main.replace("#include <Arduino.h>\n", "", 1) == ino
    assert main.index("#include <Arduino.h>") < main.index("#include <TensorFlowLite.h>")
    assert "pio run -t upload" in files["README.md"]


def test_projects_refuse_boards_without_tflm():
    with pytest.raises(ValueError, match="PROGMEM.*does not run on 8-bit AVR"):
        arduino_sketch(step_spec(progmem=True, board_name="Arduino Uno"))
    with pytest.raises(ValueError, match="PROGMEM"):
        platformio_project(step_spec(progmem=True))
    with pytest.raises(ValueError, match="no PlatformIO board"):
        platformio_project(step_spec(platformio_board=None))


# -- running the sketch on the host ----------------------------------------------------------------

FAKE_HEADERS = {
    "Arduino.h": r"""
#ifndef FAKE_ARDUINO_H_
#define FAKE_ARDUINO_H_
// Host stand-in for the Arduino core: Serial reads stdin and writes stdout.
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

class FakeSerial {
 public:
  void begin(long baud) { (void)baud; }
  explicit operator bool() const { return true; }
  int available();
  int read();
  size_t print(const char* s) { return static_cast<size_t>(printf("%s", s)); }
  size_t print(char c) { return static_cast<size_t>(printf("%c", c)); }
  size_t print(int v, int base = 10) { (void)base; return static_cast<size_t>(printf("%d", v)); }
  size_t print(unsigned int v, int base = 10) {
    (void)base;
    return static_cast<size_t>(printf("%u", v));
  }
  size_t print(long v, int base = 10) { (void)base; return static_cast<size_t>(printf("%ld", v)); }
  size_t print(unsigned long v, int base = 10) {
    (void)base;
    return static_cast<size_t>(printf("%lu", v));
  }
  size_t print(double v, int digits = 2) { return static_cast<size_t>(printf("%.*f", digits, v)); }
  size_t println() { return static_cast<size_t>(printf("\r\n")); }
  template <typename T>
  size_t println(T v) { return print(v) + println(); }
  template <typename T>
  size_t println(T v, int extra) { return print(v, extra) + println(); }
};
extern FakeSerial Serial;
unsigned long millis();
#endif
""",
    "TensorFlowLite.h": "// Host stand-in: the real library header only sets up include paths.\n",
    "tensorflow/lite/c/common.h": r"""
#ifndef FAKE_COMMON_H_
#define FAKE_COMMON_H_
#include <stddef.h>
#include <stdint.h>
// The fields of TfLiteTensor the sketch uses, with TFLite's names and enum values.
typedef enum TfLiteStatus { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
typedef enum {
  kTfLiteNoType = 0, kTfLiteFloat32 = 1, kTfLiteInt32 = 2, kTfLiteInt16 = 7, kTfLiteInt8 = 9
} TfLiteType;
typedef union TfLitePtrUnion {
  float* f; int8_t* int8; int16_t* i16; int32_t* i32; void* data;
} TfLitePtrUnion;
typedef struct TfLiteQuantizationParams {
  float scale;
  int32_t zero_point;
} TfLiteQuantizationParams;
typedef struct TfLiteTensor {
  TfLiteType type;
  TfLitePtrUnion data;
  void* dims;
  TfLiteQuantizationParams params;
  size_t bytes;
} TfLiteTensor;
#endif
""",
    "tensorflow/lite/schema/schema_generated.h": r"""
#ifndef FAKE_SCHEMA_H_
#define FAKE_SCHEMA_H_
#include <stdint.h>
namespace tflite {
struct Model {
  uint32_t version() const { return 3; }
};
const Model* GetModel(const void* buf);
}  // namespace tflite
#endif
""",
    "tensorflow/lite/micro/system_setup.h": r"""
#ifndef FAKE_SYSTEM_SETUP_H_
#define FAKE_SYSTEM_SETUP_H_
namespace tflite {
void InitializeTarget();
}  // namespace tflite
#endif
""",
    "tensorflow/lite/micro/micro_mutable_op_resolver.h": r"""
#ifndef FAKE_RESOLVER_H_
#define FAKE_RESOLVER_H_
#include "tensorflow/lite/c/common.h"
void fake_register(const char* name, unsigned int capacity);
namespace tflite {
class MicroOpResolver {
 public:
  virtual ~MicroOpResolver() {}
};
// Like the real one: tOpCount slots, and adding one more (or an op twice) is an error.
template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
 public:
#define FAKE_OP(NAME) \
  TfLiteStatus Add##NAME() { return Register(#NAME); }
  FAKE_OP(Add) FAKE_OP(Sub) FAKE_OP(Mul) FAKE_OP(FullyConnected) FAKE_OP(Tanh)
  FAKE_OP(Logistic) FAKE_OP(Softmax) FAKE_OP(Quantize) FAKE_OP(Dequantize) FAKE_OP(Reshape)
  FAKE_OP(UnidirectionalSequenceLSTM) FAKE_OP(StridedSlice) FAKE_OP(Concatenation)
  FAKE_OP(Decode)
#undef FAKE_OP
 private:
  TfLiteStatus Register(const char* name) {
    for (unsigned int i = 0; i < count_; ++i) {
      if (names_[i] == name) return kTfLiteError;
    }
    if (count_ >= tOpCount) return kTfLiteError;
    names_[count_++] = name;
    fake_register(name, tOpCount);
    return kTfLiteOk;
  }
  const char* names_[tOpCount] = {};
  unsigned int count_ = 0;
};
}  // namespace tflite
#endif
""",
    "tensorflow/lite/micro/micro_interpreter.h": r"""
#ifndef FAKE_INTERPRETER_H_
#define FAKE_INTERPRETER_H_
#include <stddef.h>
#include <stdint.h>
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#define TFLITE_SCHEMA_VERSION (3)
namespace tflite {
class MicroResourceVariables;
class MicroProfiler;
class MicroInterpreter {
 public:
  MicroInterpreter(const Model* model, const MicroOpResolver& op_resolver, uint8_t* tensor_arena,
                   size_t tensor_arena_size, MicroResourceVariables* resource_variables = nullptr,
                   MicroProfiler* profiler = nullptr);
  TfLiteStatus AllocateTensors();
  TfLiteStatus Invoke();
  TfLiteTensor* input(size_t index);
  TfLiteTensor* output(size_t index);
  TfLiteStatus Reset();

 private:
  uint8_t* arena_;
  size_t arena_size_;
};
}  // namespace tflite
#endif
""",
}

# The toy model, in raw (quantized) values, identical in C++ (HARNESS) and Python (ToyRunner):
#   state_i_out[j] = saturate(state_i[j] + x[j % F])
#   k = floor(sum(x) + sum(state_0_out) + counter) mod C;  y[c] = HIGH if c == k else LOW
# where counter counts Invokes since the last Reset() and stands for the variable tensors of a
# fused LSTM (only in fused mode). After each Invoke every input tensor is overwritten with junk,
# as TFLite Micro may reuse input memory for intermediate tensors.
HIGH_LOW = {"int8": (100, -100), "int16": (20000, -20000), "float32": (0.875, 0.0625)}
TF_TYPES = {"float32": "kTfLiteFloat32", "int8": "kTfLiteInt8", "int16": "kTfLiteInt16",
            "int32": "kTfLiteInt32"}
C_TYPES = {"float32": "float", "int8": "int8_t", "int16": "int16_t", "int32": "int32_t"}

HARNESS = r"""
#include <Arduino.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <string>
#include <vector>
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/system_setup.h"

void setup();
void loop();

FakeSerial Serial;
static std::string g_stdin;
static size_t g_read = 0;
static bool g_loaded = false;
static void load() {
  if (g_loaded) return;
  for (int c = getchar(); c != EOF; c = getchar()) g_stdin.push_back(static_cast<char>(c));
  g_loaded = true;
}
int FakeSerial::available() { load(); return static_cast<int>(g_stdin.size() - g_read); }
int FakeSerial::read() {
  load();
  return g_read < g_stdin.size() ? static_cast<unsigned char>(g_stdin[g_read++]) : -1;
}
unsigned long millis() { return 0; }

static std::vector<std::string> g_ops;
static unsigned int g_capacity = 0;
void fake_register(const char* name, unsigned int capacity) {
  g_ops.push_back(name);
  g_capacity = capacity;
}

namespace tflite {
void InitializeTarget() {}
static const Model g_model = {};
const Model* GetModel(const void* buf) { return buf == nullptr ? nullptr : &g_model; }
}  // namespace tflite

struct Desc { TfLiteType type; float scale; int32_t zero_point; int count; };
//@TABLES@

static TfLiteTensor g_inputs[kNumIn];
static TfLiteTensor g_outputs[kNumOut];
static long g_counter = 0;
static bool g_allocated = false;

static int elem_size(TfLiteType t) {
  return t == kTfLiteFloat32 || t == kTfLiteInt32 ? 4 : (t == kTfLiteInt16 ? 2 : 1);
}
static double get(const TfLiteTensor& t, int i) {
  if (t.type == kTfLiteFloat32) return t.data.f[i];
  if (t.type == kTfLiteInt32) return t.data.i32[i];
  if (t.type == kTfLiteInt16) return t.data.i16[i];
  return t.data.int8[i];
}
static void put(TfLiteTensor& t, int i, double v) {
  if (t.type == kTfLiteFloat32) { t.data.f[i] = static_cast<float>(v); return; }
  if (t.type == kTfLiteInt32) { t.data.i32[i] = static_cast<int32_t>(v); return; }
  const double lo = t.type == kTfLiteInt16 ? -32768 : -128;
  const double hi = t.type == kTfLiteInt16 ? 32767 : 127;
  v = v < lo ? lo : (v > hi ? hi : v);
  if (t.type == kTfLiteInt16) t.data.i16[i] = static_cast<int16_t>(v);
  else t.data.int8[i] = static_cast<int8_t>(v);
}
static void trace(const TfLiteTensor& t, int count) {
  for (int i = 0; i < count; ++i) {
    if (t.type == kTfLiteFloat32) fprintf(stderr, "%s%.9g", i ? "," : "", get(t, i));
    else fprintf(stderr, "%s%d", i ? "," : "", static_cast<int>(get(t, i)));
  }
}

namespace tflite {
MicroInterpreter::MicroInterpreter(const Model* model, const MicroOpResolver& op_resolver,
                                   uint8_t* tensor_arena, size_t tensor_arena_size,
                                   MicroResourceVariables* resource_variables,
                                   MicroProfiler* profiler)
    : arena_(tensor_arena), arena_size_(tensor_arena_size) {
  (void)model; (void)op_resolver; (void)resource_variables; (void)profiler;
}
TfLiteStatus MicroInterpreter::AllocateTensors() {
  if (reinterpret_cast<uintptr_t>(arena_) % 16 != 0) return kTfLiteError;
  size_t used = 0;
  for (int k = 0; k < kNumIn + kNumOut; ++k) {
    const Desc& d = k < kNumIn ? kIn[k] : kOut[k - kNumIn];
    TfLiteTensor& t = k < kNumIn ? g_inputs[k] : g_outputs[k - kNumIn];
    t.type = d.type;
    t.params.scale = d.scale;
    t.params.zero_point = d.zero_point;
    t.bytes = static_cast<size_t>(d.count * elem_size(d.type));
    t.data.data = arena_ + used;
    used += (t.bytes + 15) / 16 * 16;
  }
  if (used > arena_size_) return kTfLiteError;
  g_allocated = true;
  return kTfLiteOk;
}
TfLiteTensor* MicroInterpreter::input(size_t i) {
  return g_allocated && i < kNumIn ? &g_inputs[i] : nullptr;
}
TfLiteTensor* MicroInterpreter::output(size_t i) {
  return g_allocated && i < kNumOut ? &g_outputs[i] : nullptr;
}
TfLiteStatus MicroInterpreter::Reset() { g_counter = 0; return kTfLiteOk; }
TfLiteStatus MicroInterpreter::Invoke() {
  fprintf(stderr, "invoke");
  for (int p = 0; p < kNumIn; ++p) {
    fprintf(stderr, " in%d=", p);
    trace(g_inputs[p], kIn[p].count);
  }
  fprintf(stderr, "\n");
  const TfLiteTensor& x = g_inputs[kX];
  double sum = 0;
  for (int i = 0; i < kIn[kX].count; ++i) sum += get(x, i);
  for (int s = 0; s < kNumStates; ++s) {
    TfLiteTensor& out = g_outputs[kStateOut[s]];
    for (int j = 0; j < kOut[kStateOut[s]].count; ++j) {
      put(out, j, get(g_inputs[kStateIn[s]], j) + get(x, j % kFeatures));
    }
  }
  if (kNumStates > 0) {
    for (int j = 0; j < kOut[kStateOut[0]].count; ++j) sum += get(g_outputs[kStateOut[0]], j);
  }
  sum += static_cast<double>(g_counter);
  if (kHasVariables) ++g_counter;
  const long k = ((static_cast<long>(floor(sum)) % kClasses) + kClasses) % kClasses;
  for (int c = 0; c < kClasses; ++c) put(g_outputs[kY], c, c == k ? kHigh : kLow);
  for (int p = 0; p < kNumIn; ++p) memset(g_inputs[p].data.data, 0x5a, g_inputs[p].bytes);
  return kTfLiteOk;
}
}  // namespace tflite

int main() {
  setup();
  // Run loop() while it consumes input (a sketch whose setup failed reads nothing).
  for (size_t before = g_read + 1; Serial.available() > 0 && g_read != before;) {
    before = g_read;
    loop();
  }
  loop();
  printf("ops:");
  for (const std::string& op : g_ops) printf(" %s", op.c_str());
  printf(" capacity=%u\n", g_capacity);
  return 0;
}
"""


def harness(spec: SketchSpec, *, tensor_spec: SketchSpec | None = None) -> str:
    """The harness C++ for ``spec``; ``tensor_spec`` gives the interpreter's tensors when they
    should differ from what the sketch expects."""
    model = tensor_spec or spec
    step = model.mode == "step"

    def desc(t: IOTensor, count: int) -> str:
        return f"{{{TF_TYPES[t.dtype]}, {float(np.float32(t.scale))!r}f, {t.zero_point}, {count}}}"

    def count(t: IOTensor) -> int:
        if t.name == "x":
            return model.features * (1 if step else model.timesteps)
        if t.name == "y":
            return model.num_classes
        if t.name == "level":
            return 1
        return model.state_sizes[int(t.name.split("_")[1])]

    n_states = len(model.state_sizes)
    ins = sorted(model.inputs, key=lambda t: t.position)
    outs = sorted(model.outputs, key=lambda t: t.position)
    high, low = HIGH_LOW[model.output("y").dtype]
    state_in = [model.input(f"state_{i}").position for i in range(n_states)] or [0]
    state_out = [model.output(f"state_{i}_out").position for i in range(n_states)] or [0]
    tables = "\n".join([
        f"constexpr int kNumIn = {len(ins)};",
        f"constexpr int kNumOut = {len(outs)};",
        f"static const Desc kIn[kNumIn] = {{{', '.join(desc(t, count(t)) for t in ins)}}};",
        f"static const Desc kOut[kNumOut] = {{{', '.join(desc(t, count(t)) for t in outs)}}};",
        f"constexpr int kX = {model.input('x').position};",
        f"constexpr int kY = {model.output('y').position};",
        f"constexpr int kFeatures = {model.features};",
        f"constexpr int kClasses = {model.num_classes};",
        f"constexpr int kNumStates = {n_states};",
        f"static const int kStateIn[] = {{{', '.join(map(str, state_in))}}};",
        f"static const int kStateOut[] = {{{', '.join(map(str, state_out))}}};",
        f"constexpr bool kHasVariables = {'true' if model.mode == 'fused' else 'false'};",
        f"constexpr double kHigh = {high!r}, kLow = {low!r};",
    ])
    return HARNESS.replace("//@TABLES@", tables)


class ToyRunner:
    """The toy model of the harness, with the runner interface of ``micro_targets.emulate``."""

    def __init__(self, spec: SketchSpec):
        self.spec = spec
        self.inputs: dict[int, np.ndarray] = {}
        self.outputs: dict[int, np.ndarray] = {}
        self.counter = 0
        self.trace: list[list[np.ndarray]] = []

    def set(self, position: int, value: np.ndarray) -> None:
        self.inputs[position] = np.array(value).reshape(-1)

    def reset(self) -> None:
        self.counter = 0

    def get(self, position: int) -> np.ndarray:
        return self.outputs[position]

    @staticmethod
    def _saturate(values: np.ndarray, dtype: str) -> np.ndarray:
        if dtype == "float32":
            return values.astype(np.float32)
        info = np.iinfo(dtype)
        return np.clip(values, info.min, info.max).astype(dtype)

    def invoke(self) -> None:
        spec = self.spec
        self.trace.append([self.inputs[p].copy() for p in range(len(spec.inputs))])
        x = self.inputs[spec.input("x").position].astype(np.float64)
        total = float(np.sum(x))
        for i in range(len(spec.state_sizes)):
            s_in = self.inputs[spec.input(f"state_{i}").position].astype(np.float64)
            out = spec.output(f"state_{i}_out")
            value = s_in + x[np.arange(s_in.size) % spec.features]
            self.outputs[out.position] = self._saturate(value, out.dtype)
            if i == 0:
                total += float(np.sum(self.outputs[out.position].astype(np.float64)))
        total += self.counter
        if spec.mode == "fused":
            self.counter += 1
        y = spec.output("y")
        k = int(np.floor(total)) % spec.num_classes
        high, low = HIGH_LOW[y.dtype]
        scores = np.where(np.arange(spec.num_classes) == k, high, low)
        self.outputs[y.position] = self._saturate(scores.astype(np.float64), y.dtype)


def tensor_info(t: IOTensor) -> TensorInfo:
    std = lowering.Standardization(offset=t.offset, scale=t.standard_scale) if t.offset else None
    return TensorInfo(t.name, t.position, t.shape or (), t.dtype, t.scale, t.zero_point, std)


def oracle(spec: SketchSpec, windows: np.ndarray):
    """What the sketch must print and pass to each Invoke, from the emulator's caller code."""
    converted = types.SimpleNamespace(
        mode=spec.mode, state_sizes=spec.state_sizes,
        inputs=tuple(tensor_info(t) for t in spec.inputs),
        outputs=tuple(tensor_info(t) for t in spec.outputs))
    x_info = next(t for t in converted.inputs if t.name == "x")
    y_info = next(t for t in converted.outputs if t.name == "y")
    runner = ToyRunner(spec)
    printed = []
    for n, seq in enumerate(windows, start=1):
        runner.reset()
        if spec.mode == "step":
            y, _ = _run_steps(converted, runner, seq, x_info)
        else:  # as emulate() runs an unrolled/fused model
            runner.set(x_info.position, x_info.quantize(seq[None]))
            runner.invoke()
            y = runner.get(y_info.position)
        scores = y_info.dequantize(y.reshape(-1))
        best = int(np.argmax(scores))
        printed.append((n, spec.class_names[best], float(scores[best])))
    return printed, runner.trace


def sample_windows(spec: SketchSpec, n_windows: int) -> np.ndarray:
    """Samples that quantize far from rounding ties (k + 0.25 steps), a few saturating, or
    exact eighths for a float model (sums then have no rounding error)."""
    rng = np.random.default_rng(7)
    shape = (n_windows, spec.timesteps, spec.features)
    x = spec.input("x")
    if not x.quantized:
        return (rng.integers(-24, 25, shape) / 8).astype(np.float32)
    values = (rng.integers(-40, 40, shape) + 0.25) * x.scale
    if x.offset:  # raw values that standardise to the values above
        values = values / np.array(x.standard_scale) + np.array(x.offset)
    values[0, 1, 0], values[-1, -1, -1] = 1e6, -1e6  # saturate to the int8 limits
    return values.astype(np.float32)


def serial_text(windows: np.ndarray) -> tuple[str, np.ndarray]:
    """Serial input for the windows with junk lines in between; also the values as parsed."""
    lines = []
    for w, window in enumerate(windows):
        for t, sample in enumerate(window):
            text = [f"{v:.9g}" for v in sample]
            if t == 1:
                lines.append("1,2,3,4,5,6,7,8,9,10")  # too many values: ignored
                lines.append("")  # empty: skipped
            if t == 2 and w == 0:
                lines.append(" , ".join(text) + " \r")  # spaces and CR are accepted
            else:
                lines.append(",".join(text))
    parsed = np.array([[float(v) for v in line.split(",")] for line in
                       (",".join(f"{v:.9g}" for v in s) for s in windows.reshape(
                           -1, windows.shape[-1]))], np.float32).reshape(windows.shape)
    return "\n".join(lines) + "\n", parsed


def run_sketch(tmp_path: Path, spec: SketchSpec, stdin: str, *,
               tensor_spec: SketchSpec | None = None) -> subprocess.CompletedProcess:
    fake = tmp_path / "fake"
    write_files(fake, FAKE_HEADERS)
    project = tmp_path / "project"
    write_files(project, platformio_project(spec))
    (tmp_path / "harness.cc").write_text(harness(spec, tensor_spec=tensor_spec))
    return compile_and_run(
        tmp_path, [project / "src/main.cpp", project / f"src/{spec.name}_model_data.cc",
                   tmp_path / "harness.cc"],
        include=[fake, project / "include"], stdin=stdin)


def parse_trace(stderr: str, spec: SketchSpec) -> list[list[np.ndarray]]:
    invokes = []
    for line in stderr.splitlines():
        if not line.startswith("invoke"):
            continue
        fields = dict(f.split("=", 1) for f in line.split()[1:])
        tensors = []
        for p in range(len(spec.inputs)):
            dtype = next(t.dtype for t in spec.inputs if t.position == p)
            tensors.append(np.array([float(v) for v in fields[f"in{p}"].split(",")]
                                    ).astype(dtype))
        invokes.append(tensors)
    return invokes


@needs_gxx
@pytest.mark.parametrize("kind", list(SPECS))
def test_sketch_runs_like_the_emulator(tmp_path, kind):
    spec = SPECS[kind]()
    windows = sample_windows(spec, 3)
    stdin, parsed = serial_text(windows)
    stdin += ",".join(["0.5"] * spec.features) + "\n"  # an unfinished window: no prediction
    run = run_sketch(tmp_path, spec, stdin)
    out = run.stdout.splitlines()
    assert out[0].startswith(f"{spec.name} ready: send {spec.features} comma-separated values")
    expected, expected_trace = oracle(spec, parsed)
    predictions = [re.fullmatch(r"window (\d+): (.+) (-?\d+\.\d{4})\r?", line) for line in out]
    predictions = [(int(m[1]), m[2], float(m[3])) for m in predictions if m]
    assert [p[:2] for p in predictions] == [e[:2] for e in expected]
    np.testing.assert_allclose([p[2] for p in predictions], [e[2] for e in expected],
                               atol=PRINTED_SCORE_ATOL)
    # Every Invoke got exactly what the emulator's caller gives it (quantized input, state fed
    # back and re-quantized, zero state at each window start), LSB for LSB.
    trace = parse_trace(run.stderr, spec)
    # A step model also ran the one sample of the unfinished window.
    assert len(trace) == len(expected_trace) + (spec.mode == "step")
    for got, want in zip(trace, expected_trace):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w.reshape(-1))
    ignored = [line for line in out if line.startswith("Ignored a line")]
    assert len(ignored) == 3 and "expected " + str(spec.features) in ignored[0]
    assert out[-1] == f"ops: {' '.join(m[3:] for m in spec.resolver_methods)} " \
                      f"capacity={len(spec.resolver_methods)}"


@needs_gxx
def test_sketch_reports_a_small_arena(tmp_path):
    spec = step_spec(arena_bytes=32)
    run = run_sketch(tmp_path, spec, "0,0,0\n" * 5)
    assert "AllocateTensors() failed: raise kArenaSize (32 bytes) in har_fastgrnn_model_io.h." \
        in run.stdout
    assert "invoke" not in run.stderr and "window" not in run.stdout


@needs_gxx
def test_sketch_refuses_a_model_that_does_not_match_its_header(tmp_path):
    spec = step_spec()
    other = step_spec(outputs=(TensorInfo("y", 0, (1, 3), "int8", 1 / 256, -128),
                               TensorInfo("state_0_out", 1, (1, 4), "int8", 0.0123, -5),
                               TensorInfo("state_1_out", 2, (1, 2), "int8", 0.02, 1)))
    run = run_sketch(tmp_path, spec, "0,0,0\n" * 5, tensor_spec=other)
    assert "Tensor state_1_out does not match har_fastgrnn_model_io.h" in run.stdout
    assert "invoke" not in run.stderr


# -- the integer model's C (converters.c.cgen): row kernels and runtime helpers --------------------
# Synthetic integer models (IntModel built directly, no Keras) reach every kernel path with
# chosen storage and sizes: dense/CSR, int8/int16 values, 8/16-bit CSR columns, short rows (the
# inlined kernel), rows of 4k + 1..3 terms (the unrolled loops' tails), rows whose bound needs
# the saturating kernel next to rows that do not (the per-row bit mask), factored matrices, and
# every cell kind. The NumPy oracle (IntModel.step/predict) is the reference, bit for bit.

def _syn_matrix(rng, name: str, rows: int, cols: int, bits: int, density: float,
                big_rows: int = 0):
    from keras_rnnedge.converters.c.intmodel import IntMatrix

    lim = 127 if bits == 8 else 32767
    values = rng.integers(-lim, lim + 1, size=(rows, cols))
    if bits == 16:
        values //= 64  # rows that fit int32 ...
    values[rng.random((rows, cols)) >= density] = 0
    values[:big_rows] = rng.choice([-lim, lim], size=(big_rows, cols))  # ... and rows that don't
    frac = 7 if bits == 8 else 14
    return IntMatrix(name=name, values=values.astype(np.int64), frac=frac, bits=bits,
                     float_range=(-1.0, 1.0))


def _syn_compact(rng, name: str, rows: int, cols: int, bits: int, family: str, big: bool):
    """A matrix in a family's compact form (``rows`` outputs × ``cols`` inputs, transposed):
    random integer parameters, the values their expansion."""
    from keras_rnnedge.converters.c.intmodel import IntMatrix
    from keras_rnnedge.matrices import get_structure

    s = get_structure(family).resolve(cols, rows, "syn")
    shapes = s.weight_shapes("w", cols, rows)
    compact = s.stages([np.zeros(shape) for shape in shapes.values()])[0].compact
    lim = 127 if bits == 8 else 32767
    params = rng.integers(-lim, lim + 1, size=np.size(compact.params))
    if bits == 16 and not big:
        params //= 64
    compact = compact.with_params(params.astype(np.int64))
    return IntMatrix(name=name, values=compact.expand().T.astype(np.int64),
                     frac=7 if bits == 8 else 14, bits=bits, float_range=(-1.0, 1.0),
                     compact=compact)


def _syn_linear(rng, name, rows, cols, bits, density, rank=None, big_rows=0, family=None):
    from keras_rnnedge.converters.c.intmodel import IntLinear

    if family is not None:
        return IntLinear(_syn_compact(rng, name, rows, cols, bits, family, big_rows > 0))
    if rank is None:
        return IntLinear(_syn_matrix(rng, name, rows, cols, bits, density, big_rows))
    return IntLinear(_syn_matrix(rng, f"{name}_u", rank, cols, bits, density, big_rows),
                     _syn_matrix(rng, f"{name}_v", rows, rank, bits, density), mid_frac=12)


def synthetic_model(kind: str, *, features: int, units: int, bits: int = 8,
                    w_density: float = 1.0, u_density: float = 1.0, w_rank=None, u_rank=None,
                    big_rows: int = 0, reset_after: bool = False, activation: str = "tanh",
                    recurrent_activation: str = "sigmoid", scalars=(26000, 16929), seed: int = 0,
                    w_family=None, u_family=None):
    """A one-layer integer model with a Dense head, all weights random (see above)."""
    from keras_rnnedge.cells.step import FastGRNNStep, FastRNNStep, GRUStep, LSTMStep, SimpleRNNStep
    from keras_rnnedge.converters.c.intmodel import IntDense, IntLinear, IntModel, IntRecurrent

    rng = np.random.default_rng(seed)
    width = {"lstm": 4, "gru": 3}.get(kind, 1) * units
    kernel = _syn_linear(rng, "syn/kernel", width, features, bits, w_density, w_rank, big_rows,
                         family=w_family)
    recurrent = _syn_linear(rng, "syn/recurrent_kernel", width, units, bits, u_density, u_rank,
                            family=u_family, big_rows=big_rows if u_family else 0)

    def bias(n):
        return rng.integers(-40000, 40000, size=n).astype(np.int64)

    biases = {"fastgrnn": {"gate_bias": bias(units), "update_bias": bias(units)},
              "gru": ({"input_bias": bias(width), "recurrent_bias": bias(width)} if reset_after
                      else {"bias": bias(width)})}.get(kind, {"bias": bias(width)})
    names = {"fastgrnn": ("zeta", "nu"), "fastrnn": ("alpha", "beta")}.get(kind, ())
    step = {"fastgrnn": FastGRNNStep(), "fastrnn": FastRNNStep(), "lstm": LSTMStep(),
            "gru": GRUStep(), "simplernn": SimpleRNNStep()}[kind]
    graph = step.graph(types.SimpleNamespace(units=units, reset_after=reset_after,
                                             activation=activation))
    acts = {role: activation if role == "activation" else recurrent_activation
            for role in step.activations}
    layer = IntRecurrent(
        name="syn", kind=step.name, graph=graph, units=units, input_dim=features, in_frac=15,
        frac=15, matrices={"kernel": kernel, "recurrent_kernel": recurrent}, biases=biases,
        scalars=dict(zip(names, scalars)), activations=acts,
        formats={v.name: 12 if v.name == "c" else 15 for v in graph.state})
    head = IntDense(name="out", kernel=IntLinear(_syn_matrix(rng, "out/kernel", 3, units, bits,
                                                             1.0)),
                    bias=bias(3), activation="linear", in_frac=15, out_frac=15, last=True)
    return IntModel(name="syn", features=features, num_outputs=3, frac_bits=15,
                    weight_bits=bits, input_offset=np.zeros(features, np.float32),
                    input_scale=np.ones(features, np.float32), recurrent=[layer], head=[head],
                    approximations=[])


#: name -> (synthetic_model kwargs, kernels the C must use)
SYNTHETIC = {
    # dense int8, odd sizes: DSP (Cortex-M4) / assembler (AVR) / unrolled loops with 1-3 tails
    "fastgrnn_dense_i8_odd": (dict(kind="fastgrnn", features=7, units=13,
                                   scalars=(32768, 32768)), ["re_mv_dense_i8_nosat"]),
    # dense int16 with rows that can overflow int32: saturating kernel on those rows only
    "fastgrnn_dense_i16_mixed": (dict(kind="fastgrnn", features=6, units=9, bits=16,
                                      big_rows=3, activation="quantized_tanh",
                                      recurrent_activation="quantized_sigmoid"),
                                 ["re_mv_dense_i16_nosat", "re_mv_dense_i16_sat", "_fit["]),
    # factored, sparse: (column, value) pairs, short rows inlined, long rows unrolled
    # (at most 128 columns: the pairs hold byte offsets, the c8o kernels)
    "fastgrnn_csr8_lowrank": (dict(kind="fastgrnn", features=9, units=23, w_rank=3, u_rank=11,
                                   w_density=0.4, u_density=0.45),
                              ["re_mv_csr_i8_c8o_short", "re_mv_csr_i8_c8o_nosat", "re_csr8_t"]),
    # 129..256 columns: (column, value) pairs with the column itself, short and long rows
    "fastgrnn_csr8_wide": (dict(kind="fastgrnn", features=200, units=11, w_rank=2,
                                w_density=0.3, u_density=0.25),
                           ["re_mv_csr_i8_c8_nosat", "re_mv_csr_i8_c8o_nosat"]),
    "lstm_csr_i16": (dict(kind="lstm", features=5, units=13, bits=16, w_density=0.3,
                          u_density=0.45, recurrent_activation="hard_sigmoid"),
                     ["re_mv_csr_i16_c8_nosat", "re_mv_csr_i16_c8_short"]),
    # more than 256 input columns: 16-bit column indices
    "gru_csr_c16": (dict(kind="gru", features=300, units=6, w_density=0.1, reset_after=True),
                    ["re_mv_csr_i8_c16_nosat"]),
    "gru_before_lowrank": (dict(kind="gru", features=5, units=16, u_rank=4, u_density=0.3),
                           ["re_mv_csr_i8_c8", "re_mv_dense_i8"]),
    # rows of more than 16 non-zeros: the unrolled CSR loops, then their tails
    "fastgrnn_csr8_long_rows": (dict(kind="fastgrnn", features=61, units=47, w_density=0.45,
                                     u_density=0.5), ["re_mv_csr_i8_c8o_nosat"]),
    "simplernn_csr_i16_long_rows": (dict(kind="simplernn", features=50, units=37, bits=16,
                                         w_density=0.5, u_density=0.55),
                                    ["re_mv_csr_i16_c8_nosat"]),
    # 3 inputs: dense rows shorter than 4 (the inlined kernel)
    "simplernn_dense_short": (dict(kind="simplernn", features=3, units=8,
                                   activation="hard_sigmoid"), ["re_mv_dense_i8_short"]),
    # every row may overflow: saturating kernels only
    "fastrnn_i16_saturating": (dict(kind="fastrnn", features=4, units=5, bits=16, big_rows=5,
                                    scalars=(32768, 12000), activation="quantized_tanh"),
                               ["re_mv_dense_i16_sat"]),
    # relu candidates (clipped at ONE; the random biases take many above it)
    "fastrnn_relu": (dict(kind="fastrnn", features=5, units=7, activation="saturating_relu"),
                     ["re_clip32(", "re_mv_dense_i8_nosat"]),
    "fastgrnn_relu_lowrank": (dict(kind="fastgrnn", features=6, units=9, u_rank=4,
                                   activation="saturating_relu", scalars=(30000, 2000)),
                              ["re_clip32("]),
    # compact families: block-circulant with padded blocks (10 inputs and 13 units in blocks of
    # 4), Toeplitz rows from offset pointers, hashed rows with the hash walked in C
    "fastgrnn_circulant_padded": (dict(kind="fastgrnn", features=10, units=13,
                                       w_family={"family": "block_circulant", "block": 4},
                                       u_family={"family": "block_circulant", "block": 4}),
                                  ["re_mv_circ_i8_nosat", "re_mv_dense_i8_nosat"]),
    "gru_hashed_toeplitz": (dict(kind="gru", features=7, units=9, reset_after=True,
                                 w_family={"family": "hashed", "compression": 3, "seed": 5},
                                 u_family="toeplitz"),
                            ["re_mv_hash_i8_nosat", "re_mv_dense_i8_nosat"]),
    "lstm_compact_i16": (dict(kind="lstm", features=6, units=8, bits=16,
                              w_family={"family": "block_circulant", "block": 3},
                              u_family={"family": "hashed", "compression": 2},
                              recurrent_activation="hard_sigmoid"),
                         ["re_mv_circ_i16_nosat", "re_mv_hash_i16_nosat"]),
    # groups with a shuffle: each output row the dense kernel over its group's inputs
    "gru_group_shuffle": (dict(kind="gru", features=6, units=8, reset_after=False,
                               w_family={"family": "group_shuffle", "groups": 3},
                               u_family={"family": "group_shuffle", "groups": 4,
                                         "shuffle": False}), ["re_mv_dense_i8"]),
    # 16-bit parameters over the whole range: every row may overflow, the saturating forms
    "fastrnn_compact_i16_saturating": (dict(kind="fastrnn", features=8, units=6, bits=16,
                                            big_rows=1, scalars=(32768, 12000),
                                            activation="quantized_tanh",
                                            w_family={"family": "hashed", "buckets": 11},
                                            u_family={"family": "block_circulant", "block": 3}),
                                       ["re_mv_hash_i16_sat", "re_mv_circ_i16_sat"]),
    "simplernn_toeplitz_i16_saturating": (dict(kind="simplernn", features=9, units=7, bits=16,
                                               big_rows=1, activation="hard_sigmoid",
                                               w_family="toeplitz", u_family="toeplitz"),
                                          ["re_mv_dense_i16_sat"]),
}


def synthetic_inputs(im, n: int = 3, steps: int = 7, seed: int = 1) -> np.ndarray:
    """int16 sequences: random values, and the extremes -32768 / 32767 / 0."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-32768, 32768, size=(n, steps, im.features))
    x[0] = rng.choice([-32768, 32767, 0], size=(steps, im.features))
    x[1, :, ::2] = 32767
    return x


@pytest.mark.parametrize("config", sorted(SYNTHETIC))
def test_generated_c_kernels_match_the_oracle(config):
    from keras_rnnedge.converters.c.cgen import generate_c
    from tests.test_intmodel import _assert_bit_exact, _oracle, _run_c

    kwargs, kernels = SYNTHETIC[config]
    im = synthetic_model(**kwargs)
    source = generate_c(im, "syn")["syn.c"]
    for kernel in kernels:
        assert kernel in source, kernel
    x_q = synthetic_inputs(im)
    oracle = _oracle(im, x_q)
    for sanitize in (False, True):
        _assert_bit_exact(_run_c(im, x_q, sanitize=sanitize, name="syn"), oracle)
    if kwargs.get("big_rows"):  # the saturating rows do saturate on these inputs
        w = im.recurrent[0].kernel.u.values
        acc = np.abs(w[:kwargs["big_rows"]].astype(np.int64)).sum(axis=1) * 32767
        assert acc.max() > 2**31


@pytest.mark.parametrize("config", ["fastgrnn_csr8_lowrank", "fastgrnn_csr8_wide"])
def test_saturating_kernels_match_the_oracle(config):
    """The saturating CSR kernels (column and byte-offset pairs) on every row, as the
    c_targets benchmark emits them for comparison, under the sanitizers."""
    from keras_rnnedge.converters.c import cgen
    from tests.test_intmodel import _assert_bit_exact, _oracle, _run_c

    im = synthetic_model(**SYNTHETIC[config][0])
    source = cgen.generate_c(im, "syn", saturate_all=True)["syn.c"]
    assert "re_mv_csr_i8_c8o_sat(" in source
    x_q = synthetic_inputs(im)
    _assert_bit_exact(_run_c(im, x_q, sanitize=True, name="syn"), _oracle(im, x_q))


def test_step_keeps_no_int32_vector_on_the_stack():
    """Per-row fusion: the HAR-2 FastGRNN shape (H 80, ranks 5/40) needs the int16 rank-r
    intermediates only (5 + 40 int16) in ``<id>_step``, not int32 pre-activations of H."""
    from keras_rnnedge.converters.c.cgen import generate_c

    im = synthetic_model("fastgrnn", features=9, units=80, w_rank=5, u_rank=40,
                         w_density=0.2, u_density=0.3)
    step = generate_c(im, "har")["har.c"].split("void har_step(")[1].split("\n}\n")[0]
    assert not re.search(r"\bint32_t \w+\[", step)  # no int32 array
    assert "int16_t wm[5];" in step and "int16_t um[40];" in step
    assert "hn[" not in step  # factored U: h is updated in place


#: (a, b) operand pairs for the runtime's products: the int16 extremes, 2^15 (ONE), values
#: beyond int16 (the 32-bit fallback), and random ones.
_PRODUCT_PAIRS = [(-32768, -32768), (-32768, 32767), (32767, 32767), (32768, -32768),
                  (32768, 32767), (32768, 0), (0, 32768), (-1, 1), (1, -1), (65535, 1),
                  (-65536, 3), (123456, -7), (16835, 32768), (-32768, 32768), (16384, -1),
                  (-16385, 1), (3, 16383), (-3, 16384)]


#: (a, b) operand pairs of re_mulq15 (0 <= a <= 2^15, -2^15 <= b <= 2^15): FastGRNN's update.
_Q15_PAIRS = [(0, -32768), (32768, -32768), (32768, 32767), (32768, 32768), (1, 32768),
              (12345, -1), (32767, -32768), (16384, 16383), (0, 0), (2650, -20000),
              (78, 32768), (32768, 0), (1, -1), (3, -16385), (32767, 32767), (16385, -16385),
              (0, 32768), (32768, -1), (1, 16384), (1, -16384)]


def _activation_inputs() -> list[int]:
    """int32 inputs of re_tanh/re_sigmoid in Qf, f in (15, 12, 1, 0) (the table read with
    g = f and f + 1): both sides of each saturation limit 6 2^g, table knot boundaries, int32
    extremes, and random values (about 100: the AVR keeps them in its 2 KB of RAM)."""
    rng = np.random.default_rng(3)
    values = {0, 1, -1, 2047, 2048, -2048, 1023, 1024, 65535, 65536, -(2**31), 2**31 - 1}
    for g in (0, 1, 2, 12, 13, 15, 16):
        lim = 6 << g
        values.update({lim - 1, lim, lim + 1, -lim + 1, -lim, -lim - 1, lim // 2, -lim // 3})
    values.update(int(v) for v in rng.integers(-400000, 400000, size=30))
    values.update(int(v) for v in rng.integers(-4000, 4000, size=10))
    return sorted(values)


def runtime_check_main(pairs) -> tuple[str, list[str]]:
    """A main.c (including the generated ``syn.c`` as ``syn_src.inc``) printing the runtime's
    re_mulsh16/re_mulsh/re_rsh/re_sat_add32/re_sat16 on ``pairs`` and on int32 extremes (from
    global arrays, so the compiler cannot fold them; shifts by constants, as the generated code
    calls them), and the expected lines."""
    from keras_rnnedge.converters.c.intmodel import activate, rshift, sat16, sat32

    values = [-(2**31), 2**31 - 1, -1, 1, 0, -32769, 32768, 123456789, -987654321, 65535,
              -65536, -32768, 32767]
    small = [(a, b) for a, b in pairs if -32768 <= b <= 32767]
    want: list[int] = [int(rshift(a * b, 15)) for a, b in small]
    loops = ["    for (k = 0; k < NS; ++k) OUT(re_mulsh16(sa[k], (int16_t)sb[k], 15));\n"]
    for sh in (1, 8, 9, 14, 15, 16, 17, 30):
        loops.append(f"    for (k = 0; k < NP; ++k) OUT(re_mulsh(pa[k], pb[k], {sh}));\n")
        want += [int(rshift(a * b, sh)) for a, b in pairs]
    for sh in range(1, 32):
        loops.append(f"    for (k = 0; k < NV; ++k) OUT(re_rsh(v[k], {sh}));\n")
        want += [int(rshift(v, sh)) for v in values]
    loops.append("    for (k = 0; k < NQ; ++k) OUT(re_mulq15((uint16_t)qa[k], qb[k]));\n")
    want += [int(rshift(a * b, 15)) for a, b in _Q15_PAIRS]
    acts = _activation_inputs()
    for f in (15, 12, 1, 0):
        loops.append(f"    for (k = 0; k < NA; ++k) {{ OUT(re_tanh(av[k], {f})); "
                     f"OUT(re_sigmoid(av[k], {f})); }}\n")
        want += [int(activate(v, name, f)) for v in acts for name in ("tanh", "sigmoid")]
    loops.append("    for (k = 0; k < NV; ++k) OUT(re_sat16(v[k]));\n")
    want += [int(sat16(v)) for v in values]
    loops.append("    for (k = 0; k < NV; ++k) for (j = 0; j < NV; ++j) "
                 "OUT(re_sat_add32(v[k], v[j]));\n")
    want += [int(sat32(v + w)) for v in values for w in values]

    def arr(name, items):
        lit = ", ".join("INT32_MIN" if u == -(2**31) else f"INT32_C({u})" for u in items)
        return f"int32_t {name}[{len(items)}] = {{{lit}}};\n"

    main = ("#include <stdio.h>\n#include <stdint.h>\n"
            "#if defined(__AVR__)\n#include <avr/pgmspace.h>\n"
            '#define OUT(e) printf_P(PSTR("%ld\\n"), (long)(e))\n'
            '#else\n#define OUT(e) printf("%ld\\n", (long)(e))\n#endif\n'
            '#include "syn_src.inc"\n\n'
            + arr("sa", [a for a, _ in small]) + arr("sb", [b for _, b in small])
            + arr("pa", [a for a, _ in pairs]) + arr("pb", [b for _, b in pairs])
            + arr("v", values)
            + arr("qa", [a for a, _ in _Q15_PAIRS]) + arr("qb", [b for _, b in _Q15_PAIRS])
            + arr("av", acts)
            + f"#define NS {len(small)}u\n#define NP {len(pairs)}u\n#define NV {len(values)}u\n"
            f"#define NQ {len(_Q15_PAIRS)}u\n#define NA {len(acts)}u\n"
            "int main(void) {\n    uint16_t k, j;\n" + "".join(loops)
            + "    (void)j;\n    return 0;\n}\n")
    return main, [str(v) for v in want]


def runtime_check_files(progmem: bool) -> dict[str, str]:
    from keras_rnnedge.converters.c.cgen import generate_c

    files = generate_c(synthetic_model("fastgrnn", features=3, units=4), "syn", progmem=progmem)
    return {"syn.h": files["syn.h"], "syn_src.inc": files["syn.c"]}


def test_runtime_products_shifts_and_saturation():
    from keras_rnnedge.micro_targets.harness import build_and_run_host

    main, want = runtime_check_main(_PRODUCT_PAIRS)
    for sanitize in (False, True):
        out = build_and_run_host(runtime_check_files(False), main, sanitize=sanitize)
        assert out.split() == want


def test_runtime_files_are_what_the_generators_inline():
    """The C runtimes are real files (``converters/c/runtime``), read as package resources;
    their functions reach a generated model as written there."""
    from keras_rnnedge.converters.c import runtime_text
    from keras_rnnedge.converters.c.cgen import generate_c

    text = runtime_text("rnnedge_int.h")
    helpers = re.findall(r"^static inline int32_t (re_\w+)\(", text, re.M)
    assert {"re_sat_add32", "re_rshift", "re_mul_rshift64"} <= set(helpers)
    source = generate_c(synthetic_model("fastgrnn", features=4, units=6), "rt")["rt.c"]
    body = re.search(r"static inline int32_t re_sat_add32\(.*?\n}\n", text, re.S).group(0)
    assert body in source
    with pytest.raises(FileNotFoundError):
        runtime_text("missing.h")


@needs_gxx
def test_sketch_of_a_flexible_model_switches_its_level_over_serial(tmp_path):
    """"L<n>" lines set the int32 level input of every later Invoke (255, the top, before the
    first); junk after L is refused; samples are unaffected (the emulator's caller, LSB for
    LSB)."""
    spec = step_flexible_spec()
    windows = sample_windows(spec, 2)
    _, parsed = serial_text(windows)
    lines, want_levels, level = [], [], 255
    for w, window in enumerate(parsed):
        for t, sample in enumerate(window):
            if (w, t) == (0, 2):
                lines.append("L0")
                level = 0
            if (w, t) == (1, 1):
                lines += ["level 3", "Lx"]
                level = 3
            lines.append(",".join(f"{v:.9g}" for v in sample))
            want_levels.append(level)
    run = run_sketch(tmp_path, spec, "\n".join(lines) + "\n")
    assert "level 0" in run.stdout and "level 3" in run.stdout
    assert "Ignored a level: expected L0, L1, ..." in run.stdout
    trace = parse_trace(run.stderr, spec)
    position = spec.input("level").position
    assert [int(invoke[position][0]) for invoke in trace] == want_levels
    _, expected_trace = oracle(spec, parsed)
    x = spec.input("x").position
    for got, want in zip(trace, expected_trace):
        np.testing.assert_array_equal(got[x], want[x].reshape(-1))
    io_h = arduino_sketch(spec)[f"{spec.name}/{spec.name}_model_io.h"]
    assert "constexpr bool kFlexible = true;" in io_h and "kLevelPosition = 3;" in io_h
