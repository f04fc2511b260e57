"""The generated C builds warning-free with every compiler it targets.

Every layer kind and kernel path: the synthetic integer models of tests/test_codegen.py (dense
and CSR storage, int8 and int16 weights, 8- and 16-bit columns, short, unrolled and saturating
rows, factored matrices; FastGRNN, FastRNN, LSTM, GRU in both reset modes, SimpleRNN), in RAM
and in flash (``progmem``); the Keras models of tests/test_intmodel.py through
``quantize_model`` (FastGRNN/FastRNN low rank and sparse, low-rank LSTM/GRU, stock SimpleRNN,
GRU and LSTM, the H-LSTM, int8 and int16, stacked, Dense heads), also at other state formats;
and the float build of the same Keras models. Each is compiled with gcc, clang,
arm-none-eabi-gcc (Cortex-M4F) and avr-gcc (ATmega328P) at
``-std=c99 -Wall -Wextra -Werror -pedantic`` (the cross compilers with ``-c``), and with
clang's ``-Weverything`` less the exceptions listed below.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from keras_rnnedge.cells import FastGRNNCell, ProjectionLSTMCell
from keras_rnnedge.converters.c.cgen import generate_c
from keras_rnnedge.converters.c.cgen_float import generate_float_c
from keras_rnnedge.converters.c.intmodel import quantize_model
from tests.test_codegen import SYNTHETIC, synthetic_model
from tests.test_intmodel import _make_cached

pytestmark = pytest.mark.toolchain

WARNINGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
#: compiler -> (Debian package, target and optimization flags: the harness's)
COMPILERS = {
    "gcc": ("gcc", ("-O2",)),
    "clang": ("clang", ("-fsyntax-only",)),  # clang's warnings come from its front end
    "arm-none-eabi-gcc": ("gcc-arm-none-eabi", ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                                                "-mfpu=fpv4-sp-d16", "-O2")),
    "avr-gcc": ("gcc-avr", ("-mmcu=atmega328p", "-DF_CPU=16000000UL", "-Os")),
}
#: clang -Weverything, less these warnings (each with its reason). Nothing else is allowed.
EVERYTHING_EXCEPTIONS = {
    # None needed with clang 14. Candidates and why they would be acceptable:
    # -Wno-padded (a state struct of int16 arrays needs no padding, but a user's main may),
    # -Wno-declaration-after-statement (C99 allows it; clang >= 14 can warn about it).
}
#: Keras models quantized once more at another state format (Q frac_bits, LSTM c in Q cell):
#: left shifts, shifts of 16 and more, products outside the Q15 fast path.
OTHER_FORMATS = {"lstm_lowrank_stacked_int16": (9, 4), "gru_reset_after_int8": (12, None),
                 "fastgrnn_lowrank_sparse_int8": (7, None), "simplernn_tanh_int8": (3, None)}


#: Keras models of tests/test_intmodel.py: every kind, stock and compressed, int8 and int16
KERAS = ("fastgrnn_lowrank_sparse_int8", "fastgrnn_quantized_stacked", "fastrnn_lowrank_int16",
         "lstm_sparse_int8", "lstm_lowrank_stacked_int16", "gru_reset_after_int8",
         "gru_lowrank_reset_before_sparse_int8", "simplernn_relu_stacked_int16",
         "simplernn_tanh_int8", "hlstm_sparse_lowrank_stacked_int16")


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[Path]:
    """Every generated ``.c`` file, in one folder (each model named after its case)."""
    root = tmp_path_factory.mktemp("generated_c")
    models = {f"syn_{name}": synthetic_model(**kwargs) for name, (kwargs, _) in SYNTHETIC.items()}
    for name in KERAS:
        model, im, data = _make_cached(name)
        models[f"keras_{name}"] = im
        if name in OTHER_FORMATS:
            q, cell = OTHER_FORMATS[name]
            models[f"keras_{name}_q{q}"] = quantize_model(
                model, data.astype("float32"), weight_bits=8 if name.endswith("int8") else 16,
                frac_bits=q, cell_frac_bits=cell)
    from tests.test_flexible import data as flexible_data
    from tests.test_flexible import flexible_model, switching_model

    flexible = {"flex_fastgrnn": flexible_model(FastGRNNCell(8, levels=(2, 5, 8), u_rank=3)),
                "flex_lstmp": flexible_model(ProjectionLSTMCell(8, projection_units=4,
                                                                levels=(4, 8))),
                "switch": switching_model()}
    for name, model in flexible.items():  # flexible RNNs, methods 1 and 2
        models[f"keras_{name}"] = quantize_model(model, flexible_data(32))
    files = {}
    for name, im in models.items():
        files.update(generate_c(im, name))
        files.update(generate_c(im, f"{name}_progmem", progmem=True))
    for name in KERAS:
        files.update(generate_float_c(_make_cached(name)[0], f"float_{name}"))
    for file_name, text in files.items():
        (root / file_name).write_text(text)
    return sorted(root / n for n in files if n.endswith(".c"))


def _compile(compiler: str, flags, sources: list[Path], defines=()) -> str:
    """Compile the sources (``-c``, one command); the compiler's output if it said anything."""
    cmd = [compiler, *flags, *defines, "-c"]
    with tempfile.TemporaryDirectory() as out:  # the objects
        run = subprocess.run([*cmd, *map(str, sources)], cwd=out, capture_output=True,
                             text=True, timeout=600)
    if run.returncode != 0 or run.stderr.strip():
        return f"{' '.join(cmd)} <{len(sources)} files>\n{run.stderr[-5000:]}"
    return ""


def _require(compiler: str) -> None:
    if shutil.which(compiler) is None:  # as the emulated-target tests: fail unless told to skip
        message = (f"{compiler} is not installed (Debian package {COMPILERS[compiler][0]}; "
                   "scripts/install-toolchains.sh installs it)")
        if os.environ.get("RNNEDGE_SKIP_TOOLCHAIN") == "1":
            pytest.skip(f"RNNEDGE_SKIP_TOOLCHAIN=1: {message}")
        pytest.fail(f"{message} (set RNNEDGE_SKIP_TOOLCHAIN=1 to skip these tests instead)",
                    pytrace=False)


def test_every_layer_kind_and_build_is_covered(sources):
    names = {src.name for src in sources}
    kinds = {"fastgrnn", "fastrnn", "lstm", "gru", "simplernn"}
    for prefix in ("syn_", "keras_", "float_"):
        assert {k for k in kinds if any(n.startswith(prefix + k) for n in names)} == kinds
    text = "".join(src.read_text() for src in sources if src.name.startswith("syn_"))
    for kernel in ("dense_i8", "dense_i16", "csr_i8_c8_", "csr_i8_c8o_", "csr_i16_c8",
                   "csr_i8_c16"):
        for mode in ("nosat", "short", "sat"):
            if f"re_mv_{kernel}{'' if kernel.endswith('_') else '_'}{mode}(" in text:
                break
        else:
            pytest.fail(f"no model uses a {kernel} kernel")
    other_formats = [src for src in sources if re.search(r"_q\d+", src.name)]
    assert len(other_formats) == 2 * len(OTHER_FORMATS)
    # an LSTM cell state in fewer fractional bits than h: tanh(c) is shifted left
    assert any("re_lshift_sat(" in src.read_text().split("_step(")[-1] for src in other_formats)


@pytest.mark.parametrize("compiler", sorted(COMPILERS))
def test_generated_c_builds_warning_free(compiler, sources):
    """No warning at all (not only no error): ``-Werror`` and an empty standard error."""
    _require(compiler)
    flags = [*WARNINGS, *COMPILERS[compiler][1]]
    failed = _compile(compiler, flags, sources)
    assert not failed, failed
    if compiler in ("gcc", "clang"):  # the optional float input quantization of the int build
        some = [s for s in sources if s.name.startswith("keras_fastgrnn_lowrank_sparse_int8")]
        failed = _compile(compiler, flags, some, ["-DRNNEDGE_WITH_FLOAT_INPUT"])
        assert not failed, failed


def test_clang_weverything_leaves_nothing(sources):
    _require("clang")
    flags = [*WARNINGS, "-Weverything", *EVERYTHING_EXCEPTIONS, "-fsyntax-only"]
    failed = _compile("clang", flags, sources, ["-DRNNEDGE_WITH_FLOAT_INPUT"])
    assert not failed, failed


def test_the_checks_catch_a_warning(tmp_path):
    """The compile check itself: an unused static function and a silent fall-through fail."""
    _require("clang")
    src = tmp_path / "model.c"
    src.write_text("#include <stdint.h>\nstatic int32_t f(int32_t v) { return v; }\n"
                   "int32_t g(int32_t v);\nint32_t g(int32_t v) {\n    switch (v) {\n"
                   "    case 1: ++v;\n    default: break;\n    }\n    return v;\n}\n")
    assert _compile("clang", [*WARNINGS, "-O2"], [src])
    assert _compile("clang", [*WARNINGS, "-Weverything", "-Wno-unused-function"], [src])
