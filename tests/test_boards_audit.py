"""Board catalog (micro_targets.boards) and flatbuffer audit (micro_targets.audit).

Every figure asserted here is either taken from the brief's board list or computed by hand in
the comment next to it; arenas are measured by TFLite Micro itself.
"""

from __future__ import annotations

import dataclasses
import json
import re
from importlib import resources

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from keras_rnnedge import keras, tf
from keras_rnnedge.micro_targets.audit import (
    ARENA_MARGIN_BYTES,
    RAM_ALLOWANCE_BYTES,
    TFLM_CUSTOM_OPS,
    TFLM_OPS,
    TargetFitError,
    UnsupportedOpError,
    UnsupportedTargetError,
    arena_with_margin,
    audit,
    list_ops,
)
from keras_rnnedge.micro_targets.boards import BOARDS, Board, get_board, load_boards
from keras_rnnedge.micro_targets.emulate import measure_arena, tflm_interpreter

KEYS = ("nano33ble", "uno", "due", "mkrzero", "mkr1000", "pico", "stm32f746disco", "esp32",
        "host")
KB = 1024
MB = 1024 * 1024

# -- helpers ---------------------------------------------------------------------------------------

OP = schema.BuiltinOperator
OP_NAMES = {code: name for name, code in vars(OP).items() if not name.startswith("_")}


def _opcode(op: int | str) -> schema.OperatorCodeT:
    code = schema.OperatorCodeT()
    code.version = 1
    if isinstance(op, str):  # a custom op
        code.builtinCode = code.deprecatedBuiltinCode = OP.CUSTOM
        code.customCode = op
    else:  # codes >= 127 go in builtin_code, with the placeholder in the deprecated field
        code.builtinCode = op
        code.deprecatedBuiltinCode = min(op, OP.PLACEHOLDER_FOR_GREATER_OP_CODES)
    return code


def _flatbuffer(opcodes, subgraphs) -> bytes:
    """A model whose subgraphs run ``opcodes[i]`` for each index i of each subgraph's list.

    Every operator reads and writes one float tensor: enough for TFLite Micro to look the
    operators up (it resolves every operator before preparing any), never to run them.
    """
    model = schema.ModelT()
    model.version = 3
    model.operatorCodes = list(opcodes)
    model.buffers = [schema.BufferT()]
    model.subgraphs = []
    for indices in subgraphs:
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer = [1], schema.TensorType.FLOAT32, 0
        subgraph = schema.SubGraphT()
        subgraph.tensors, subgraph.inputs, subgraph.outputs = [tensor], [0], [0]
        subgraph.operators = []
        for index in indices:
            operator = schema.OperatorT()
            operator.opcodeIndex, operator.inputs, operator.outputs = index, [0], [0]
            if model.operatorCodes[index].builtinCode == OP.VAR_HANDLE:
                # tflite_micro.runtime counts resource variables by their shared name
                operator.builtinOptionsType = schema.BuiltinOptions.VarHandleOptions
                operator.builtinOptions = schema.VarHandleOptionsT()
                operator.builtinOptions.sharedName = "v"
            subgraph.operators.append(operator)
        model.subgraphs.append(subgraph)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _convert(model: keras.Model) -> bytes:
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


@pytest.fixture(scope="module")
def small_model() -> bytes:
    """Dense(16, tanh) → Dense(4, softmax), float32, batch 1."""
    keras.utils.set_random_seed(0)
    x = keras.Input((8,), batch_size=1)
    h = keras.layers.Dense(16, activation="tanh")(x)
    return _convert(keras.Model(x, keras.layers.Dense(4, activation="softmax")(h)))


@pytest.fixture(scope="module")
def large_model() -> bytes:
    """Dense(256 → 220), float32: 56,540 weights, 226,160 B of them."""
    keras.utils.set_random_seed(0)
    x = keras.Input((256,), batch_size=1)
    return _convert(keras.Model(x, keras.layers.Dense(220)(x)))


@pytest.fixture(scope="module")
def gelu_model() -> bytes:
    """Dense(4, activation="gelu"): the converter emits the GELU builtin."""
    keras.utils.set_random_seed(0)
    x = keras.Input((8,), batch_size=1)
    return _convert(keras.Model(x, keras.layers.Dense(4, activation="gelu")(x)))


# -- the catalog -----------------------------------------------------------------------------------

def test_catalog_keys():
    assert tuple(BOARDS) == KEYS


@pytest.mark.parametrize("key", KEYS)
def test_every_board_has_every_field(key):
    fields = [f.name for f in dataclasses.fields(Board)]
    catalog = resources.files("keras_rnnedge.micro_targets") / "boards.json"
    raw = json.loads(catalog.read_text(encoding="utf-8"))
    entry = next(b for b in raw["boards"] if b["key"] == key)
    assert sorted(entry) == sorted(fields)
    board = BOARDS[key]
    for name in ("key", "display_name", "mcu", "core", "notes"):
        assert isinstance(getattr(board, name), str) and getattr(board, name)
    assert board.arch in ("arm", "avr", "xtensa", "host")
    assert isinstance(board.aliases, tuple)
    for flag in ("fpu", "tflm", "progmem"):
        assert isinstance(getattr(board, flag), bool)
    # TFLite Micro needs a 32-bit platform; only AVR needs PROGMEM
    assert board.tflm == (board.arch != "avr")
    assert board.progmem == (board.arch == "avr")
    if board.arch == "host":
        assert (board.flash_bytes, board.ram_bytes, board.arduino_fqbn) == (None, None, None)
    else:
        assert board.flash_bytes > board.ram_bytes > 0 and board.clock_hz > 0
        # vendor:architecture:board[:option=value,...]
        assert re.fullmatch(r"[\w.-]+:[\w.-]+:[\w.-]+(:[\w.-]+=[\w.-]+(,[\w.-]+=[\w.-]+)*)?",
                            board.arduino_fqbn)
        assert board.platformio_board and board.platformio_platform
    # the runtime estimate exists exactly where TFLite Micro runs on a real chip
    assert (board.tflm_runtime_flash_bytes is not None) == (board.tflm and board.arch != "host")


@pytest.mark.parametrize("key, mcu, arch, clock_hz, flash, ram, fpu, fqbn, pio", [
    ("nano33ble", "nRF52840", "arm", 64_000_000, 1 * MB, 256 * KB, True,
     "arduino:mbed_nano:nano33ble", ("nano33ble", "nordicnrf52")),
    ("uno", "ATmega328P", "avr", 16_000_000, 32 * KB, 2 * KB, False, "arduino:avr:uno",
     ("uno", "atmelavr")),
    ("due", "AT91SAM3X8E", "arm", 84_000_000, 512 * KB, 96 * KB, False,
     "arduino:sam:arduino_due_x_dbg", ("due", "atmelsam")),
    ("mkrzero", "ATSAMD21G18A", "arm", 48_000_000, 256 * KB, 32 * KB, False,
     "arduino:samd:mkrzero", ("mkrzero", "atmelsam")),
    ("mkr1000", "ATSAMD21G18A", "arm", 48_000_000, 256 * KB, 32 * KB, False,
     "arduino:samd:mkr1000", ("mkr1000USB", "atmelsam")),
    ("pico", "RP2040", "arm", 133_000_000, 2 * MB, 264 * KB, False, "arduino:mbed_rp2040:pico",
     ("pico", "raspberrypi")),
    ("stm32f746disco", "STM32F746NG", "arm", 216_000_000, 1 * MB, 320 * KB, True,
     "STMicroelectronics:stm32:Disco:pnum=DISCO_F746NG", ("disco_f746ng", "ststm32")),
    # 520 KB SRAM in all, 192 KB of it instruction RAM: the catalog counts the 320 KB data RAM
    ("esp32", "ESP32", "xtensa", 240_000_000, 4 * MB, 320 * KB, True, "esp32:esp32:esp32",
     ("esp32dev", "espressif32")),
])
def test_board_figures(key, mcu, arch, clock_hz, flash, ram, fpu, fqbn, pio):
    board = BOARDS[key]
    assert (board.mcu, board.arch, board.clock_hz, board.flash_bytes, board.ram_bytes,
            board.fpu, board.arduino_fqbn) == (mcu, arch, clock_hz, flash, ram, fpu, fqbn)
    assert (board.platformio_board, board.platformio_platform) == pio


@pytest.mark.parametrize("key", KEYS)
def test_aliases_resolve(key):
    board = BOARDS[key]
    for name in board.names:
        assert get_board(name) is board
        assert get_board(name.upper()) is board
    assert get_board(board) is board


@pytest.mark.parametrize("name, key", [
    ("Nano 33 BLE Sense", "nano33ble"), ("nano33-ble", "nano33ble"), ("DISCO-F746NG",
     "stm32f746disco"), ("mkr1000USB", "mkr1000"), ("Raspberry Pi Pico", "pico"),
    ("esp32dev", "esp32"), ("x86_64", "host"),
])
def test_names_ignore_case_spaces_and_separators(name, key):
    assert get_board(name).key == key


def test_unknown_board_lists_the_names():
    with pytest.raises(ValueError) as info:
        get_board("xyz")
    assert str(info.value) == (
        'Expected target to be one of "nano33ble", "uno", "due", "mkrzero", "mkr1000", "pico", '
        '"stm32f746disco", "esp32", "host", but got "xyz".')


def test_load_boards_rejects_bad_catalogs(tmp_path):
    entry = dataclasses.asdict(BOARDS["uno"])
    entry["aliases"] = list(entry["aliases"])
    path = tmp_path / "boards.json"

    path.write_text(json.dumps({"boards": [{k: v for k, v in entry.items() if k != "fpu"}]}))
    with pytest.raises(ValueError, match="missing: fpu"):
        load_boards(path)

    other = {**entry, "key": "uno2", "aliases": ["ATmega-328P"]}  # "atmega328p" normalized
    path.write_text(json.dumps({"boards": [entry, other]}))
    with pytest.raises(ValueError, match='"ATmega-328P" is used by both "uno" and "uno2"'):
        load_boards(path)

    path.write_text(json.dumps({"boards": [{**entry, "arch": "riscv"}]}))
    with pytest.raises(ValueError, match='arch to be one of .* but got "riscv"'):
        load_boards(path)


# -- the op table ----------------------------------------------------------------------------------

def _tflm_finds(first, absent) -> bool:
    """Whether TFLite Micro's op resolver has ``first``; ``absent`` is an op it lacks.

    The model runs [first, absent]: TFLite Micro resolves every operator before preparing any,
    so the load fails on ``first`` when it is missing and on ``absent`` otherwise.
    """
    with pytest.raises(RuntimeError) as info:
        tflm_interpreter(_flatbuffer([_opcode(first), _opcode(absent)], [[0, 1]]), 64 * KB)
    message = str(info.value)
    assert "Failed to get registration" in message, message
    return not ("CUSTOM" in message if isinstance(first, str) else f"'{OP_NAMES[first]}'" in
                message)


def test_tflm_ops_are_exactly_what_tflite_micro_registers():
    """The evidence for TFLM_OPS, re-run against the installed tflite-micro."""
    registered = {OP_NAMES[code] for code in OP_NAMES
                  if OP_NAMES[code] not in ("CUSTOM", "DELEGATE",
                                            "PLACEHOLDER_FOR_GREATER_OP_CODES")
                  and _tflm_finds(code, "RNNEDGE_ABSENT_OP")}
    assert registered == set(TFLM_OPS)
    # the method names follow micro_mutable_op_resolver.h: AddX for BuiltinOperator_X
    assert all(m.startswith("Add") for m in TFLM_OPS.values())
    assert len(set(TFLM_OPS.values())) == len(TFLM_OPS)
    assert TFLM_OPS["FULLY_CONNECTED"] == "AddFullyConnected"
    assert TFLM_OPS["UNIDIRECTIONAL_SEQUENCE_LSTM"] == "AddUnidirectionalSequenceLSTM"
    assert "RELU_N1_TO_1" not in TFLM_OPS and "GELU" not in TFLM_OPS


@pytest.mark.parametrize("name", [*TFLM_CUSTOM_OPS, "ethos-u"])
def test_tflm_custom_ops(name):
    # "ethos-u" is registered only by Ethos-U builds of TFLite Micro
    assert _tflm_finds(name, OP.TILE) == (name in TFLM_CUSTOM_OPS)


# -- list_ops --------------------------------------------------------------------------------------

def test_list_ops_of_a_converted_model(small_model):
    # the two Dense layers share FULLY_CONNECTED; tanh and softmax are separate ops
    assert list_ops(small_model) == ["FULLY_CONNECTED", "TANH", "SOFTMAX"]


def test_list_ops_order_customs_and_subgraphs():
    old = schema.OperatorCodeT()  # an old file: only deprecated_builtin_code is filled
    old.version, old.builtinCode, old.deprecatedBuiltinCode = 1, 0, OP.FULLY_CONNECTED
    opcodes = [_opcode("CIRCULAR_BUFFER"), _opcode(OP.TILE), _opcode(OP.ADD), _opcode(OP.GELU),
               old, _opcode(OP.SOFTMAX)]
    # SOFTMAX (index 5) is declared but never used; subgraph 1 is e.g. a WHILE body
    fb = _flatbuffer(opcodes, [[0, 1, 0, 4], [2, 1, 3]])
    assert list_ops(fb) == ["CUSTOM:CIRCULAR_BUFFER", "TILE", "FULLY_CONNECTED", "ADD", "GELU"]


def test_list_ops_rejects_other_bytes():
    with pytest.raises(ValueError, match='Expected a TFLite flatbuffer .* but got 5 bytes'):
        list_ops(b"hello")


# -- audit -----------------------------------------------------------------------------------------

def test_arena_margin():
    # 1000 * 1.1 = 1100 → 1104 (16-byte multiple) + 1024
    assert arena_with_margin(1000) == 2128
    # 1878 * 1.1 = 2065.8 → 2066 → 2080 + 1024
    assert arena_with_margin(1878) == 3104
    assert arena_with_margin(1600) == 1760 + ARENA_MARGIN_BYTES  # 1760 is already aligned


def test_audit_small_model_fits_the_nano(small_model):
    report = audit(small_model, "nano33ble")
    board = BOARDS["nano33ble"]
    assert report.fits and report.flash_fits and report.ram_fits
    assert report.ops == ("FULLY_CONNECTED", "TANH", "SOFTMAX")
    assert report.resolver_methods == ("AddFullyConnected", "AddTanh", "AddSoftmax")
    assert report.unsupported_ops == () and report.refusals == ()
    assert report.model_bytes == len(small_model)
    assert report.arena_bytes == measure_arena(small_model)
    assert report.arena_with_margin == arena_with_margin(report.arena_bytes)
    assert report.flash_needed == len(small_model) + board.tflm_runtime_flash_bytes
    assert report.ram_needed == report.arena_with_margin + RAM_ALLOWANCE_BYTES
    assert (report.flash_available, report.ram_available) == (1 * MB, 256 * KB)
    # the arena the report asks for is enough for TFLite Micro to load and run the model
    interpreter = tflm_interpreter(small_model, report.arena_with_margin)
    interpreter.set_input(np.ones((1, 8), np.float32), 0)
    interpreter.invoke()
    # softmax over 4 classes: the outputs sum to 1 up to float32 rounding
    assert np.isclose(np.sum(interpreter.get_output(0)), 1.0, atol=1e-6)
    text = report.to_text()
    assert "Arduino Nano 33 BLE Sense" in text
    assert "tflite::MicroMutableOpResolver<3> with AddFullyConnected, AddTanh, AddSoftmax" in text
    assert f"= {report.ram_needed:,} B of 262,144 B  OK" in text
    assert text.endswith("fits: yes")


def test_audit_host_has_no_limits(large_model):
    report = audit(large_model, "host", arena_bytes=4096)
    assert report.fits and report.flash_needed == len(large_model)
    assert report.arena_bytes == 4096  # taken as given, not re-measured


def test_too_large_for_the_mkr1000_flash(large_model):
    with pytest.raises(TargetFitError) as info:
        audit(large_model, "mkr1000")
    report = info.value.report
    assert not report.flash_fits and report.ram_fits
    needed = len(large_model) + 102_400  # model + the catalog's runtime estimate
    lines = str(info.value).splitlines()
    assert lines[0] == "The model does not fit the Arduino MKR 1000 WiFi (mkr1000):"
    assert lines[1] == (f"  model needs {needed:,} B of flash (model {len(large_model):,} B + "
                        "TFLite Micro runtime ~102,400 B, estimated) but Arduino MKR 1000 WiFi "
                        "has 262,144 B")
    assert "of RAM" not in str(info.value)  # RAM fits: no line for it
    assert "nano33ble" in lines[-1] and "mkrzero" not in lines[-1]  # boards it does fit


def test_both_memories_too_small(small_model):
    tiny = dataclasses.replace(BOARDS["mkrzero"], key="tiny", display_name="Tiny board",
                               flash_bytes=64 * KB, ram_bytes=2 * KB)
    with pytest.raises(TargetFitError) as info:
        audit(small_model, tiny)
    report = info.value.report
    problems = str(info.value).splitlines()[1:3]
    assert problems == [
        f"  model needs {report.flash_needed:,} B of flash (model {len(small_model):,} B + "
        "TFLite Micro runtime ~102,400 B, estimated) but Tiny board has 65,536 B",
        f"  model needs {report.ram_needed:,} B of RAM (arena {report.arena_bytes:,} B + margin "
        f"= {report.arena_with_margin:,} B, + 4,096 B for the interpreter and stack) but Tiny "
        "board has 2,048 B"]
    unchecked = audit(small_model, tiny, check=False)
    assert not unchecked.fits and unchecked.fit_problems() == [p.strip() for p in problems]
    assert "DOES NOT FIT" in unchecked.to_text()


def test_uno_cannot_run_tflite_micro(small_model):
    with pytest.raises(UnsupportedTargetError) as info:
        audit(small_model, "uno")
    message = str(info.value)
    assert "Arduino Uno" in message and "cannot run TFLite Micro" in message
    assert "convert_c(model, target='uno'" in message and "--format c" in message
    assert "32-bit" in message and "nano33ble" in message
    report = audit(small_model, "uno", check=False)
    assert not report.fits and report.refusals == (message,)


def test_op_tflite_micro_lacks_is_refused(gelu_model):
    assert list_ops(gelu_model) == ["FULLY_CONNECTED", "GELU"]
    # the refusal is real: TFLite Micro cannot load the model
    with pytest.raises(RuntimeError, match="Didn't find op for builtin opcode 'GELU'"):
        tflm_interpreter(gelu_model, 64 * KB)
    with pytest.raises(UnsupportedOpError) as info:
        audit(gelu_model, "nano33ble")
    assert info.value.unsupported == ("GELU",)
    assert info.value.ops == ("FULLY_CONNECTED", "GELU")
    message = str(info.value)
    assert "no kernel for GELU; the model's ops are FULLY_CONNECTED, GELU" in message
    # GELU is not a loop op: no other mode removes it, so no mode is suggested
    assert "mode=" not in message and "'gelu' activation" in message
    report = audit(gelu_model, "nano33ble", check=False)
    assert report.arena_bytes is None and report.ram_needed is None and not report.fits
    assert report.resolver_methods == ("AddFullyConnected",)


def test_audit_rejects_bad_arguments(small_model):
    with pytest.raises(ValueError, match="Expected runtime to be one of 'tflm', but got 'c'"):
        audit(small_model, "nano33ble", runtime="c")
    with pytest.raises(ValueError, match='but got "arduino-mega"'):
        audit(small_model, "arduino-mega")
    with pytest.raises(ValueError, match="arena_bytes to be a positive integer, but got 0"):
        audit(small_model, "nano33ble", arena_bytes=0)
