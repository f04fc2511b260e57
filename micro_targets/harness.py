"""Host harness: compile generated C with the host's gcc and run it.

:func:`build_and_run_host` compiles a set of C files plus a ``main`` with
``gcc -std=c99 -Wall -Wextra -Werror -pedantic -O2`` (and AddressSanitizer/UBSan with
``sanitize=True``) in a temporary directory, runs the program and returns its standard output;
when clang is installed it checks the same sources with the same warning flags first.
:func:`trace_main` writes a ``main`` that feeds int16 input sequences to a generated model and
prints every step's state and the final scores, for a bit-for-bit comparison with the oracle.

Example:
    >>> out = build_and_run_host(files, trace_main("m", features=3, state_sizes=[8],
    ...                          num_outputs=2, sequences=x_q))   # doctest: +SKIP
    >>> parse_trace(out)                                          # doctest: +SKIP

Emulated targets (toolchains: ``scripts/install-toolchains.sh``):

* :func:`build_and_run_cortex_m4` / :func:`build_and_run_cortex_m0` (:func:`build_and_run_arm`):
  ``arm-none-eabi-gcc -O2`` for the Cortex-M4F (hard float, DSP extension) or the Cortex-M0
  (ARMv6-M: no DSP, no hardware divide, soft float), newlib's rdimon semihosting, with
  ``cortex_m/startup.c`` and the machine's ``link.ld``, run in ``qemu-system-arm -M mps2-an386``
  or ``-M microbit`` (nRF51822, 256 KB flash, 16 KB RAM) with ``-semihosting -icount shift=0``;
  standard output through semihosting, exit code = ``main``'s return.
* :func:`build_and_run_avr`: ``avr-gcc -mmcu=atmega328p -Os`` with ``avr/rnnedge_support.c``
  (which owns ``main``: the program's ``main`` is compiled as ``rnnedge_user_main``), run in
  ``simavr -m atmega328p -f 16000000``; standard output through UART0, decoded from simavr's
  log; the run ends at an ``@@rnnedge-exit <code>`` line followed by ``cli(); sleep_cpu()``.

Both return a :class:`RunResult` (output, exit code, program flash/RAM, the model's constant
data). Programs include ``"rnnedge_target.h"`` for the counter ``rnnedge_count()``: exact CPU
cycles on the ATmega328P (Timer1, overflow-interrupt time removed), executed instructions on
the Cortex-M machines (QEMU does not model cycles; SysTick under ``-icount shift=0`` advances
once per 40 instructions on the mps2-an386, once per 62.5 on the microbit).
:func:`trace_main` with ``progmem=True`` and :func:`timing_main` write programs that run
unchanged on the host, QEMU and simavr. The generated model C is the same
for all three (``progmem=True`` for the AVR).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["ARM_CORE_FLAGS", "ARM_MACHINES", "AVR_CFLAGS", "ArmMachine", "CORTEX_M0_CFLAGS",
           "CORTEX_M4_CFLAGS", "CompileError", "HOST_CFLAGS", "arm_cflags", "build_and_run_arm",
           "build_and_run_cortex_m0",
           "HOST_CHECK_COMPILERS", "RunResult",
           "SANITIZE_FLAGS", "TOOLCHAIN_PACKAGES", "ToolchainMissingError", "build_and_run_avr",
           "build_and_run_cortex_m4", "build_and_run_host", "parse_counts", "parse_trace",
           "require_toolchain", "timing_main", "trace_main"]

HOST_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2")
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g")
#: Compilers that also check every host build when installed (``-fsyntax-only``, the warning
#: flags of :data:`HOST_CFLAGS`): clang warns where gcc does not (an unused static inline
#: function, a switch case falling through without the attribute).
HOST_CHECK_COMPILERS = ("clang",)


class CompileError(RuntimeError):
    """The C code did not compile, or the program failed (the message has the tool's output)."""


def build_and_run_host(files: Mapping[str, str], main_c: str, *, sanitize: bool = False,
                       defines: Sequence[str] = (), stdin: str | None = None,
                       compiler: str = "gcc", timeout: float = 120.0) -> str:
    """Compile ``files`` (name → text; the ``.c`` ones are compiled) and ``main_c``, run, return
    the standard output.

    Args:
        files: generated sources and headers.
        main_c: the text of the program's ``main.c``.
        sanitize: add ``-fsanitize=address,undefined -fno-sanitize-recover=all``.
        defines: macros to define (``"RNNEDGE_WITH_FLOAT_INPUT"``, ``"N=3"``).
        stdin: text fed to the program.
        compiler: the C compiler to call; the other installed compilers of
            :data:`HOST_CHECK_COMPILERS` check the sources first (warnings are errors).
        timeout: seconds for the compilation and for the run, each.

    Raises:
        FileNotFoundError: the compiler is not installed.
        CompileError: compilation failed, or the program exited non-zero (a sanitizer report).
    """
    path = shutil.which(compiler)
    if path is None:
        raise FileNotFoundError(
            f"The host C compiler {compiler!r} was not found on PATH; install it "
            "(apt-get install gcc) to build and run the generated C code.")
    with tempfile.TemporaryDirectory(prefix="rnnedge_host_") as tmp:
        for name, text in {**files, "main.c": main_c}.items():
            if os.path.basename(name) != name or name in ("", ".", ".."):
                raise ValueError(f"Expected plain file names, but got {name!r}.")
            with open(os.path.join(tmp, name), "w", encoding="ascii") as f:
                f.write(text)
        sources = sorted(n for n in files if n.endswith(".c")) + ["main.c"]
        for checker in HOST_CHECK_COMPILERS:
            other = shutil.which(checker)
            if other is None or os.path.realpath(other) == os.path.realpath(path):
                continue
            cmd = [other, *HOST_CFLAGS, "-fsyntax-only", *(f"-D{d}" for d in defines), "-I",
                   tmp, *sources]
            check = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True,
                                   timeout=timeout)
            if check.returncode != 0:
                raise CompileError(f"{' '.join(cmd)} failed:\n{check.stderr}")
        exe = os.path.join(tmp, "prog")
        cmd = [path, *HOST_CFLAGS, *(SANITIZE_FLAGS if sanitize else ()),
               *(f"-D{d}" for d in defines), "-I", tmp, *sources, "-o", exe, "-lm"]
        build = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        if build.returncode != 0:
            raise CompileError(f"{' '.join(cmd)} failed:\n{build.stderr}")
        env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
               "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
        run = subprocess.run([exe], cwd=tmp, input=stdin, capture_output=True, text=True,
                             timeout=timeout, env=env)
        if run.returncode != 0:
            raise CompileError(f"The program exited with code {run.returncode}:\n{run.stderr}")
        if sanitize and "runtime error" in run.stderr:
            raise CompileError(f"The sanitizers reported an error:\n{run.stderr}")
        return run.stdout


_PROGMEM_PRELUDE = """#include <string.h>
#if defined(__AVR__)
#include <avr/pgmspace.h>
#define RE_PRINTF printf_P
#define RE_STR(s) PSTR(s)
#else
#ifndef PROGMEM
#define PROGMEM
#endif
#define memcpy_P memcpy
#define RE_PRINTF printf
#define RE_STR(s) (s)
#endif
"""


def _int16_rows(seq: np.ndarray, features: int) -> str:
    if seq.ndim != 3 or seq.shape[2] != features:
        raise ValueError(f"Expected sequences of shape (N, T, {features}), but got {seq.shape}.")
    if seq.min(initial=0) < -(2**15) or seq.max(initial=0) > 2**15 - 1:
        raise ValueError("Expected int16 input values.")
    return ",\n".join("    {" + ", ".join(str(int(v)) for v in row) + "}"
                      for row in seq.reshape(-1, features))


def trace_main(ident: str, *, features: int, state_sizes: Sequence[int], num_outputs: int,
               sequences, progmem: bool = False) -> str:
    """A ``main.c`` that runs int16 ``sequences`` ``(N, T, F)`` through model ``ident``.

    For each sequence it resets the state, and after each step prints ``h <layer> v...`` for
    every recurrent layer; at the end ``y v...`` (the scores). :func:`parse_trace` reads it.

    With ``progmem=True`` the inputs and the format strings stay in flash on the AVR
    (``PROGMEM``, ``memcpy_P``, ``printf_P``), where 2 KB of SRAM would not hold them; the same
    program still compiles on the host and the Cortex-M4.
    """
    seq = np.asarray(sequences, np.int64)
    data = _int16_rows(seq, features)
    n, t, f = seq.shape
    if not progmem:
        prints = "".join(
            f'            printf("h {k}");\n'
            f"            for (i = 0; i < {size}; ++i) printf(\" %d\", (int)s.h{k}[i]);\n"
            '            printf("\\n");\n' for k, size in enumerate(state_sizes))
        return (
            "#include <stdio.h>\n#include <stdint.h>\n"
            f'#include "{ident}.h"\n\n'
            f"static const int16_t inputs[{n * t}][{f}] = {{\n{data}\n}};\n\n"
            "int main(void) {\n"
            f"    {ident}_state_t s;\n    int32_t y[{num_outputs}];\n    int n, t, i;\n"
            f"    for (n = 0; n < {n}; ++n) {{\n"
            f"        {ident}_reset(&s);\n"
            f"        for (t = 0; t < {t}; ++t) {{\n"
            f"            {ident}_step(&s, inputs[n * {t} + t]);\n"
            f"{prints}"
            "        }\n"
            f"        {ident}_predict(&s, y);\n"
            '        printf("y");\n'
            f"        for (i = 0; i < {num_outputs}; ++i) printf(\" %ld\", (long)y[i]);\n"
            '        printf("\\n");\n'
            "    }\n    return 0;\n}\n")
    prints = "".join(
        f'            RE_PRINTF(RE_STR("h %d"), {k});\n'
        f"            for (i = 0; i < {size}; ++i) RE_PRINTF(RE_STR(\" %d\"), (int)s.h{k}[i]);\n"
        "            putchar('\\n');\n" for k, size in enumerate(state_sizes))
    return (
        "#include <stdio.h>\n#include <stdint.h>\n" + _PROGMEM_PRELUDE
        + f'#include "{ident}.h"\n\n'
        f"static const int16_t inputs[{n * t}][{f}] PROGMEM = {{\n{data}\n}};\n\n"
        "int main(void) {\n"
        f"    {ident}_state_t s;\n    int16_t x[{f}];\n    int32_t y[{num_outputs}];\n"
        "    int n, t, i;\n"
        f"    for (n = 0; n < {n}; ++n) {{\n"
        f"        {ident}_reset(&s);\n"
        f"        for (t = 0; t < {t}; ++t) {{\n"
        f"            memcpy_P(x, inputs[n * {t} + t], sizeof x);\n"
        f"            {ident}_step(&s, x);\n"
        f"{prints}"
        "        }\n"
        f"        {ident}_predict(&s, y);\n"
        "        putchar('y');\n"
        f"        for (i = 0; i < {num_outputs}; ++i) RE_PRINTF(RE_STR(\" %ld\"), (long)y[i]);\n"
        "        putchar('\\n');\n"
        "    }\n    return 0;\n}\n")


def timing_main(ident: str, *, features: int, num_outputs: int, sequence,
                repeats: int = 1) -> str:
    """A ``main.c`` that measures model ``ident`` with ``rnnedge_count()`` (emulated targets).

    It copies the int16 ``sequence`` ``(T, F)`` (kept in flash on the AVR) to RAM, then times
    ``repeats * T`` calls of ``<id>_step`` in one measurement (the state carries on), ``repeats``
    calls of ``<id>_predict``, one ``<id>_reset`` and an empty measurement, each minus
    ``rnnedge_count_overhead()``. It prints ``@count <label> <total> <calls>`` lines, which
    :func:`parse_counts` reads (per call, loop overhead included: a few cycles per call). The
    unit is the target's (:attr:`RunResult.count_unit`).
    """
    seq = np.asarray(sequence, np.int64)
    if seq.ndim != 2:
        raise ValueError(f"Expected a sequence of shape (T, {features}), but got {seq.shape}.")
    if not isinstance(repeats, int) or not 1 <= repeats <= 65535:
        raise ValueError(f"Expected repeats to be an integer in [1, 65535], but got {repeats!r}.")
    data = _int16_rows(seq[None], features)
    t, f = seq.shape

    def measure(label: str, body: str, calls: str) -> str:
        return (f"    t0 = rnnedge_count();\n{body}    t1 = rnnedge_count();\n"
                f'    RE_PRINTF(RE_STR("@count {label} %lu %lu\\n"), '
                "(unsigned long)(t1 - t0 - rnnedge_count_overhead()), "
                f"(unsigned long)({calls}));\n")

    return (
        "#include <stdio.h>\n#include <stdint.h>\n" + _PROGMEM_PRELUDE
        + f'#include "rnnedge_target.h"\n#include "{ident}.h"\n\n'
        f"static const int16_t inputs[{t}][{f}] PROGMEM = {{\n{data}\n}};\n\n"
        "int main(void) {\n"
        f"    static {ident}_state_t s;\n    static int16_t x[{t}][{f}];\n"
        f"    static int32_t y[{num_outputs}];\n"
        "    uint32_t t0, t1;\n    uint16_t r, t;\n"
        "    memcpy_P(x, inputs, sizeof x);\n"
        f"    {ident}_reset(&s);\n"
        + measure("step", f"    for (r = 0; r < {repeats}u; ++r)\n"
                          f"        for (t = 0; t < {t}u; ++t) {ident}_step(&s, x[t]);\n",
                  f"{repeats}ul * {t}ul")
        + measure("predict", f"    for (r = 0; r < {repeats}u; ++r) {ident}_predict(&s, y);\n",
                  f"{repeats}ul")
        + measure("reset", f"    {ident}_reset(&s);\n", "1ul")
        + measure("empty", "", "1ul")
        + "    return 0;\n}\n")


def parse_counts(text: str) -> dict[str, float]:
    """Read the ``@count <label> <total> <calls>`` lines of :func:`timing_main`: label → count
    per call."""
    counts = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "@count":
            counts[parts[1]] = int(parts[2]) / max(int(parts[3]), 1)
    return counts


def parse_trace(text: str, num_layers: int) -> list[dict]:
    """Read :func:`trace_main` output: per sequence ``{"states": [[h per layer] per step],
    "scores": array}``."""
    out, steps, current = [], [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        tag, *values = line.split()
        if tag == "h":
            current.append(np.array(values[1:], np.int64))
            if len(current) == num_layers:
                steps.append(current)
                current = []
        elif tag == "y":
            out.append({"states": steps, "scores": np.array(values, np.int64)})
            steps = []
    return out


# ---- emulated targets ---------------------------------------------------------------------

_SUPPORT_DIR = os.path.dirname(os.path.abspath(__file__))
_INSTALL_SCRIPT = "scripts/install-toolchains.sh"

TOOLCHAIN_PACKAGES = {
    "cortex_m4": ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm"),
    "cortex_m0": ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm"),
    "avr": ("gcc-avr", "avr-libc", "binutils-avr", "simavr"),
}
"""Debian packages of each emulated target's toolchain."""

#: arm-none-eabi-gcc's CPU flags per Cortex-M core of the board catalog (``Board.core``).
ARM_CORE_FLAGS = {
    "Cortex-M0": ("-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"),
    "Cortex-M0+": ("-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"),
    "Cortex-M3": ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"),
    "Cortex-M4F": ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
    "Cortex-M7": ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"),
}


def arm_cflags(core: str) -> tuple[str, ...]:
    """arm-none-eabi-gcc flags for a Cortex-M ``core`` (a key of :data:`ARM_CORE_FLAGS`):
    C99, every warning an error, ``-O2``.

    Raises:
        ValueError: an unknown core, naming the known ones.
    """
    if core not in ARM_CORE_FLAGS:
        raise ValueError(f"Expected a Cortex-M core, one of {', '.join(ARM_CORE_FLAGS)}, but "
                         f"got {core!r}.")
    return ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", *ARM_CORE_FLAGS[core], "-O2")


CORTEX_M4_CFLAGS = arm_cflags("Cortex-M4F")
CORTEX_M0_CFLAGS = arm_cflags("Cortex-M0")


@dataclass(frozen=True)
class ArmMachine:
    """A Cortex-M machine that QEMU emulates, with its support files in ``micro_targets/<key>/``
    (``link.ld``, ``rnnedge_target.h``; the start-up code ``cortex_m/startup.c`` is shared).

    Attributes:
        key: the harness target (``"cortex_m4"``).
        machine: QEMU's ``-M`` value.
        core: the core, a key of :data:`ARM_CORE_FLAGS`.
        flash_bytes, ram_bytes: the emulated chip's memories (what a test program may use).
    """

    key: str
    machine: str
    core: str
    flash_bytes: int
    ram_bytes: int

    @property
    def cflags(self) -> tuple[str, ...]:
        return arm_cflags(self.core)


#: The emulated Cortex-M machines: harness target → machine.
ARM_MACHINES = {
    "cortex_m4": ArmMachine("cortex_m4", "mps2-an386", "Cortex-M4F", 4 << 20, 4 << 20),
    "cortex_m0": ArmMachine("cortex_m0", "microbit", "Cortex-M0", 256 << 10, 16 << 10),
}
AVR_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-mmcu=atmega328p",
              "-DF_CPU=16000000UL", "-Os")


class ToolchainMissingError(FileNotFoundError):
    """A cross compiler, its C library or an emulator is not installed (the message names the
    Debian packages and ``scripts/install-toolchains.sh``)."""


@dataclass(frozen=True)
class RunResult:
    """What a program built for an emulated target printed and how big it was.

    Attributes:
        stdout: the program's standard output (decoded from the emulator).
        exit_code: ``main``'s return value (QEMU: modulo 256).
        target: ``"cortex_m4"``, ``"cortex_m0"`` or ``"avr"``.
        flash_bytes: program total in flash, ``text + data`` of ``<arch>-size`` (on the AVR,
            ``text`` holds the ``PROGMEM`` data; ``data`` is the initial values of ``.data``).
        ram_bytes: static RAM, ``data + bss`` (stack and heap not included).
        model_flash_bytes: the model's constant data: the sizes of the data objects (``readelf``
            symbols of type ``OBJECT``) in read-only sections of the object files of ``files``'
            ``.c`` sources (weights, biases, CSR indices; ``.rodata`` on Arm, ``.progmem.data``
            on the AVR). Code is counted in ``model_code_bytes``. Chosen over building twice and
            subtracting because it needs one build and is exact per symbol.
        model_code_bytes: the sizes of the functions (``FUNC`` symbols) in those object files.
        model_ram_bytes: the sizes of the data objects of those object files in writable
            sections (0 for a generated model with ``progmem=True`` on the AVR).
        count_unit: the unit of ``rnnedge_count()``: ``"instructions"`` (Cortex-M under QEMU,
            never cycles) or ``"cycles"`` (ATmega328P under simavr, exact).
        counts: the ``@count`` lines in ``stdout`` (:func:`parse_counts`): label → per call.
        cycle_estimates: with ``trace=True`` on the Cortex-M0 (:func:`build_and_run_arm`): the
            estimated Cortex-M0+ cycles of each region between two ``rnnedge_count()`` calls
            (:func:`keras_rnnedge.micro_targets.cycles.cycles_between_counts`), else ``None``.
    """

    stdout: str
    exit_code: int
    target: str
    flash_bytes: int
    ram_bytes: int
    model_flash_bytes: int | None = None
    model_code_bytes: int | None = None
    model_ram_bytes: int | None = None
    count_unit: str = ""
    counts: dict[str, float] = field(default_factory=dict)
    cycle_estimates: list[int] | None = None


def _missing(target: str, what: str) -> ToolchainMissingError:
    packages = " ".join(TOOLCHAIN_PACKAGES[target])
    return ToolchainMissingError(
        f"{what} was not found, so the {target} target cannot be built or run. Install the "
        f"Debian packages {packages} (run {_INSTALL_SCRIPT} as root, or apt-get install -y "
        f"--no-install-recommends {packages}).")


def _tool(target: str, name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise _missing(target, f"The program {name!r}")
    return path


@functools.cache
def _check_library(target: str, compiler: str, flags: tuple[str, ...], name: str) -> None:
    found = subprocess.run([compiler, *flags, f"-print-file-name={name}"], capture_output=True,
                           text=True, timeout=60).stdout.strip()
    if not os.path.isabs(found) or not os.path.exists(found):
        raise _missing(target, f"The C library file {name!r} of {os.path.basename(compiler)}")


def require_toolchain(target: str) -> dict[str, str]:
    """The paths of ``target``'s tools (``"cortex_m4"``, ``"cortex_m0"`` or ``"avr"``).

    Raises:
        ValueError: an unknown target.
        ToolchainMissingError: a tool or the target's C library is not installed.
    """
    if target in ARM_MACHINES:
        tools = {"cc": _tool(target, "arm-none-eabi-gcc"),
                 "size": _tool(target, "arm-none-eabi-size"),
                 "readelf": _tool(target, "arm-none-eabi-readelf"),
                 "emulator": _tool(target, "qemu-system-arm")}
        _check_library(target, tools["cc"],
                       tuple(f for f in ARM_MACHINES[target].cflags if f.startswith("-m")),
                       "rdimon.specs")
    elif target == "avr":
        tools = {"cc": _tool(target, "avr-gcc"), "size": _tool(target, "avr-size"),
                 "readelf": _tool(target, "avr-readelf"), "emulator": _tool(target, "simavr")}
        _check_library(target, tools["cc"], ("-mmcu=atmega328p",), "libc.a")
    else:
        raise ValueError(f"Expected target to be one of {', '.join(map(repr, TOOLCHAIN_PACKAGES))}"
                         f", but got {target!r}.")
    return tools


def _run(cmd: list[str], cwd: str, timeout: float, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, errors="replace")
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        raise CompileError(f"{what} did not finish within {timeout} s: {' '.join(cmd)}\n"
                           f"stdout:\n{(out or '')[-2000:]}\nstderr:\n{(err or '')[-2000:]}"
                           ) from None


def _compile(cc: str, flags: Sequence[str], src: str, obj: str, cwd: str,
             timeout: float) -> None:
    cmd = [cc, *flags, "-c", src, "-o", obj]
    build = _run(cmd, cwd, timeout, "The compiler")
    if build.returncode != 0:
        raise CompileError(f"{' '.join(cmd)} failed:\n{build.stderr}")


def _sizes(size_tool: str, elf: str, cwd: str) -> tuple[int, int]:
    """(text + data, data + bss) of ``size -B``."""
    out = _run([size_tool, "-B", elf], cwd, 60, "size").stdout.splitlines()
    text, data, bss = (int(v) for v in out[1].split()[:3])
    return text + data, data + bss


_SECTION = re.compile(r"^\s*\[\s*(\d+)\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+[0-9a-f]+\s+"
                      r"[0-9a-f]+\s*([A-Za-z]*)")


def _object_sizes(readelf: str, obj: str, cwd: str) -> tuple[int, int, int]:
    """(read-only data, code, writable data) bytes of the symbols defined in ``obj``."""
    flags = {}
    for line in _run([readelf, "-SW", obj], cwd, 60, "readelf").stdout.splitlines():
        m = _SECTION.match(line)
        if m:
            flags[m.group(1)] = m.group(3)
    const = code = ram = 0
    for line in _run([readelf, "-sW", obj], cwd, 60, "readelf").stdout.splitlines():
        parts = line.split()
        if len(parts) < 8 or not parts[0].endswith(":") or not parts[6].isdigit():
            continue
        size, kind, section = int(parts[2], 0), parts[3], flags.get(parts[6], "")
        if kind == "FUNC":
            code += size
        elif kind == "OBJECT" and "A" in section:
            if "W" in section:
                ram += size
            else:
                const += size
    return const, code, ram


_SIMAVR_LINE = re.compile(r"\x1b\[32m([^\n]*)\n\x1b\[0m")
_SIMAVR_EXIT = re.compile(r"@@rnnedge-exit (-?\d+)")
_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|$)")


def _decode_simavr(log: str) -> tuple[str, int | None]:
    """The UART0 text of a simavr log (see ``avr/rnnedge_support.c``) and the exit code."""
    chunks = [c[:-1] if c.endswith(".") else c for c in _SIMAVR_LINE.findall(log)]
    code = None
    if chunks and _SIMAVR_EXIT.fullmatch(chunks[-1]):
        code = int(_SIMAVR_EXIT.fullmatch(chunks.pop()).group(1))
    out = []
    for chunk in chunks:
        continued = chunk.endswith("\\") and (len(chunk) - len(chunk.rstrip("\\"))) % 2 == 1

        def unescape(m: re.Match) -> str:
            e = m.group(1)
            return "\\" if e == "\\" else "" if e == "" else chr(int(e[1:], 16))

        out.append(_ESCAPE.sub(unescape, chunk) + ("" if continued else "\n"))
    return "".join(out), code


def _build(target: str, tools: Mapping[str, str], files: Mapping[str, str], main_c: str,
           tmp: str, cflags: Sequence[str], main_flags: Sequence[str],
           support: Sequence[str], ldflags: Sequence[str], timeout: float
           ) -> tuple[str, tuple[int, int, int] | None]:
    for name in files:
        if os.path.basename(name) != name or name in ("", ".", "..", "main.c"):
            raise ValueError(f"Expected plain file names other than 'main.c', but got {name!r}.")
    for name, text in {**files, "main.c": main_c}.items():
        with open(os.path.join(tmp, name), "w", encoding="ascii") as f:
            f.write(text)
    support_dir = os.path.join(_SUPPORT_DIR, target)
    flags = [*cflags, "-I", tmp, "-I", support_dir]
    objects, model_objects = [], []
    for name in sorted(n for n in files if n.endswith(".c")):
        obj = os.path.join(tmp, name[:-2] + ".o")
        _compile(tools["cc"], flags, name, obj, tmp, timeout)
        objects.append(obj)
        model_objects.append(obj)
    obj = os.path.join(tmp, "main.o")
    _compile(tools["cc"], [*flags, *main_flags], "main.c", obj, tmp, timeout)
    objects.append(obj)
    for i, name in enumerate(support):
        obj = os.path.join(tmp, f"rnnedge_support_{i}.o")
        _compile(tools["cc"], flags, os.path.join(support_dir, name), obj, tmp, timeout)
        objects.append(obj)
    elf = os.path.join(tmp, "prog.elf")
    cmd = [tools["cc"], *cflags, *objects, *ldflags, "-o", elf]
    link = _run(cmd, tmp, timeout, "The linker")
    if link.returncode != 0:
        raise CompileError(f"{' '.join(cmd)} failed:\n{link.stderr}")
    model = None
    if model_objects:
        sizes = [_object_sizes(tools["readelf"], o, tmp) for o in model_objects]
        model = tuple(sum(s[i] for s in sizes) for i in range(3))
    return elf, model


def _result(target: str, stdout: str, code: int, sizes: tuple[int, int],
            model: tuple[int, int, int] | None, unit: str, check: bool,
            log: str) -> RunResult:
    if check and code != 0:
        raise CompileError(f"The {target} program exited with code {code}.\nstdout:\n"
                           f"{stdout[-2000:]}\nemulator log:\n{log[-2000:]}")
    const, code_bytes, ram = model if model else (None, None, None)
    return RunResult(stdout=stdout, exit_code=code, target=target, flash_bytes=sizes[0],
                     ram_bytes=sizes[1], model_flash_bytes=const, model_code_bytes=code_bytes,
                     model_ram_bytes=ram, count_unit=unit, counts=parse_counts(stdout))


def build_and_run_arm(target: str, files: Mapping[str, str], main_c: str, *,
                      defines: Sequence[str] = (), timeout: float = 120.0,
                      check: bool = True, trace: bool = False) -> RunResult:
    """Build ``files`` + ``main_c`` for the Cortex-M machine ``target`` (a key of
    :data:`ARM_MACHINES`) and run it in QEMU.

    ``arm-none-eabi-gcc`` with the machine's core flags (:func:`arm_cflags`, ``-O2``) and
    newlib's rdimon semihosting, linked with ``cortex_m/startup.c`` and ``<target>/link.ld``;
    run in ``qemu-system-arm -M <machine> -nographic -semihosting -icount shift=0 -kernel``.
    Standard output arrives through semihosting; the exit code is ``main``'s return. With
    ``-icount shift=0`` the run is deterministic and ``rnnedge_count()`` (``"rnnedge_target.h"``)
    counts executed instructions (resolution 40 on the Cortex-M4, 62.5 on the Cortex-M0).

    Args:
        target: ``"cortex_m4"`` (mps2-an386, Cortex-M4F) or ``"cortex_m0"`` (microbit,
            Cortex-M0: no DSP extension, no hardware divide, no FPU).
        files: the model's sources and headers (name → text); their ``.c`` objects are the
            model in :attr:`RunResult.model_flash_bytes`.
        main_c: the program's ``main.c``.
        defines: macros to define.
        timeout: seconds for each compilation and for the run.
        check: raise :class:`CompileError` when ``main`` returns non-zero.
        trace: Cortex-M0 only: log every executed instruction (QEMU ``-d in_asm,exec,nochain``)
            and estimate the Cortex-M0+ cycles between ``rnnedge_count()`` calls
            (:attr:`RunResult.cycle_estimates`, :mod:`~keras_rnnedge.micro_targets.cycles`); the
            run is several times slower and its log large (about 80 bytes per executed block),
            so trace short programs.

    Raises:
        ValueError: an unknown target, or ``trace`` on a target other than the Cortex-M0.
        ToolchainMissingError: ``arm-none-eabi-gcc``, newlib or ``qemu-system-arm`` is missing.
        CompileError: compilation or linking failed (e.g. a region overflowed: the program does
            not fit the machine), the run timed out, or (``check``) the program exited non-zero
            (a hard fault exits with 127).
    """
    if target not in ARM_MACHINES:
        raise ValueError(f"Expected target to be one of {', '.join(map(repr, ARM_MACHINES))}, "
                         f"but got {target!r}.")
    if trace and target != "cortex_m0":
        raise ValueError(f"Expected trace=True with target 'cortex_m0' (the cycle estimate uses "
                         f"the Cortex-M0+ timing table), but got target {target!r}.")
    m = ARM_MACHINES[target]
    tools = require_toolchain(target)
    cflags = [*m.cflags, *(f"-D{d}" for d in defines)]
    with tempfile.TemporaryDirectory(prefix=f"rnnedge_{target}_") as tmp:
        elf, model = _build(target, tools, files, main_c, tmp, cflags, (),
                            (os.path.join(_SUPPORT_DIR, "cortex_m", "startup.c"),),
                            ("--specs=rdimon.specs", "-nostartfiles", "-T",
                             os.path.join(_SUPPORT_DIR, target, "link.ld"), "-lm"), timeout)
        sizes = _sizes(tools["size"], elf, tmp)
        log = os.path.join(tmp, "qemu.log")
        cmd = [tools["emulator"], "-M", m.machine, "-nographic", "-monitor", "none",
               "-serial", "none", "-semihosting", "-icount", "shift=0",
               *(("-d", "in_asm,exec,nochain", "-D", log) if trace else ()), "-kernel", elf]
        run = _run(cmd, tmp, timeout, "QEMU")
        result = _result(target, run.stdout, run.returncode, sizes, model, "instructions",
                         check, run.stderr)
        if trace:
            from keras_rnnedge.micro_targets.cycles import cycles_between_counts

            with open(log, encoding="utf-8", errors="replace") as f:
                result = replace(result, cycle_estimates=cycles_between_counts(f.read()))
        return result


def build_and_run_cortex_m4(files: Mapping[str, str], main_c: str, *,
                            defines: Sequence[str] = (), timeout: float = 120.0,
                            check: bool = True) -> RunResult:
    """:func:`build_and_run_arm` on the Cortex-M4F (QEMU ``mps2-an386``)."""
    return build_and_run_arm("cortex_m4", files, main_c, defines=defines, timeout=timeout,
                             check=check)


def build_and_run_cortex_m0(files: Mapping[str, str], main_c: str, *,
                            defines: Sequence[str] = (), timeout: float = 120.0,
                            check: bool = True, trace: bool = False) -> RunResult:
    """:func:`build_and_run_arm` on the Cortex-M0 (QEMU ``microbit``, nRF51822)."""
    return build_and_run_arm("cortex_m0", files, main_c, defines=defines, timeout=timeout,
                             check=check, trace=trace)


def build_and_run_avr(files: Mapping[str, str], main_c: str, *, defines: Sequence[str] = (),
                      timeout: float = 120.0, check: bool = True) -> RunResult:
    """Build ``files`` + ``main_c`` for the ATmega328P (16 MHz) and run it in simavr.

    ``avr-gcc`` with :data:`AVR_CFLAGS` (``-Os``); ``main.c`` is compiled with
    ``-Dmain=rnnedge_user_main`` and linked with ``avr/rnnedge_support.c``, whose ``main`` sets
    up UART0 as stdout and Timer1, calls it, prints ``@@rnnedge-exit <code>`` and stops with
    ``cli(); sleep_cpu()``. The output is decoded from simavr's log (ANSI codes stripped,
    escapes undone). ``rnnedge_count()`` (``"rnnedge_target.h"``) counts CPU cycles exactly.
    Generate the model with ``progmem=True``: ``const`` data read through plain pointers goes
    to the 2 KB of SRAM.

    Args: as :func:`build_and_run_cortex_m4`.

    Raises:
        ToolchainMissingError: ``avr-gcc``, avr-libc, ``avr-size`` or ``simavr`` is missing.
        CompileError: compilation or linking failed (e.g. ``section .data not within region
            data``: the program does not fit the SRAM), the run timed out or ended without the
            end marker, or (``check``) the program exited non-zero.
    """
    tools = require_toolchain("avr")
    cflags = [*AVR_CFLAGS, *(f"-D{d}" for d in defines)]
    with tempfile.TemporaryDirectory(prefix="rnnedge_avr_") as tmp:
        elf, model = _build("avr", tools, files, main_c, tmp, cflags,
                            ("-Dmain=rnnedge_user_main",), ("rnnedge_support.c",), ("-lm",),
                            timeout)
        sizes = _sizes(tools["size"], elf, tmp)
        cmd = [tools["emulator"], "-m", "atmega328p", "-f", "16000000", elf]
        run = _run(cmd, tmp, timeout, "simavr")
        stdout, code = _decode_simavr(run.stderr)
        if code is None:
            raise CompileError(f"The avr program ended without the end marker (a crash, a "
                               f"reset, or sleep with interrupts off before main returned).\n"
                               f"stdout:\n{stdout[-2000:]}\nsimavr log:\n{run.stderr[-2000:]}"
                               f"{run.stdout[-1000:]}")
        return _result("avr", stdout, code, sizes, model, "cycles", check, run.stderr)
