"""Run generated standalone C on the host, a Cortex-M4 (QEMU) or an ATmega328P (simavr).

:func:`run_c` takes a C conversion (anything with ``name``, ``c_sources``, ``features`` and
``num_outputs``, e.g. :class:`keras_rnnedge.converters.c.cexport.CConversionResult` or what
:func:`keras_rnnedge.converters.load_result` reads back) and int16 input windows, builds a program
around the model's ``<id>_reset``/``<id>_step``/``<id>_predict`` and returns every window's
scores with the cost per step:

* ``"host"``: gcc ``-O2``, all windows through standard input in one run; time per step from
  ``clock_gettime`` (seconds, noisy).
* ``"cortex-m4"``: arm-none-eabi-gcc ``-O2`` in QEMU ``mps2-an386``; executed instructions per
  step (exact, resolution 40 per measurement).
* ``"cortex-m0"``: arm-none-eabi-gcc ``-O2 -mcpu=cortex-m0`` in QEMU ``microbit`` (nRF51822:
  256 KB flash, 16 KB RAM); executed instructions per step (resolution 62.5 per measurement).
* ``"uno"``: avr-gcc ``-Os`` for the ATmega328P in simavr at 16 MHz; CPU cycles per step (exact).

On the emulated targets the windows are compiled into the program (in flash: ``PROGMEM`` on the
AVR), a batch per build, so a long test set takes several builds.

:func:`measure_c` compiles a model's C for a target without running it: constant data, code,
static RAM and the stack frame of ``<id>_step`` (``-fstack-usage``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from keras_rnnedge.micro_targets.harness import (
    _PROGMEM_PRELUDE,
    ARM_MACHINES,
    AVR_CFLAGS,
    CompileError,
    _object_sizes,
    arm_cflags,
    build_and_run_arm,
    build_and_run_avr,
    build_and_run_host,
    require_toolchain,
)
from keras_rnnedge.micro_targets.validate import check_sequences
from keras_rnnedge.progress import ProgressArg, check_progress, progress_bar

__all__ = ["RUN_TARGETS", "CModelSources", "CRunResult", "CodeSize", "measure_c", "run_c",
           "run_target"]

#: ``rnnedge run --target`` values → the harness target (``None``: the host).
RUN_TARGETS = {"host": None, "cortex-m4": "cortex_m4", "cortex-m0": "cortex_m0", "uno": "avr"}
_ALIASES = {"cortex_m4": "cortex-m4", "m4": "cortex-m4", "cortex_m0": "cortex-m0",
            "m0": "cortex-m0", "microbit": "cortex-m0", "avr": "uno", "atmega328p": "uno"}
#: Bytes of input windows compiled into one emulated program (at most).
_BATCH_BYTES = {"cortex_m4": 256 * 1024, "cortex_m0": 64 * 1024, "avr": 12 * 1024}
#: What the Cortex-M0 test program adds to the model in flash (newlib's printf and
#: semihosting, start-up code, main: measured about 40 KB) and in RAM (newlib's buffers and
#: reentrancy data, main's frame: about 3 KB).
_M0_PROGRAM_BYTES = 48 * 1024
_M0_PROGRAM_RAM = 4 * 1024
#: ATmega328P flash for the program (32 KB less the bootloader's 512 B), and what the harness
#: adds to the model: main, stdio output over the UART, the counters (measured: about 4 KB).
_AVR_FLASH = 32 * 1024 - 512
_AVR_PROGRAM_BYTES = 5 * 1024
_CLOCK_HZ = {"avr": 16_000_000}
#: ATmega328P RAM, and what the test program needs beside the model (stdio buffers, counters,
#: main's frame and return addresses; measured static RAM of the harness about 225 B).
_AVR_RAM = 2048
_AVR_PROGRAM_RAM = 512


def _state_bytes(header: str) -> int:
    """Bytes of ``<id>_state_t`` as the generated header declares it (int16 or float arrays)."""
    found = re.search(r"typedef struct \{(.*?)\}\s*\w+_state_t;", header, re.S)
    if found is None:
        return 0
    return sum((2 if ctype == "int16_t" else 4) * int(n)
               for ctype, n in re.findall(r"(int16_t|float)\s+\w+\[(\d+)\]", found.group(1)))


def run_target(target: str) -> str:
    """The canonical ``rnnedge run`` target of ``target`` (aliases accepted).

    Raises:
        ValueError: an unknown target, naming the valid ones.
    """
    key = str(target).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in RUN_TARGETS:
        raise ValueError(f"Expected target to be one of {', '.join(map(repr, RUN_TARGETS))}, "
                         f"but got {target!r}.")
    return key


@dataclasses.dataclass(frozen=True)
class CModelSources:
    """The least :func:`run_c` needs: generated C and its shape.

    Attributes:
        name: the C identifier (``<id>``).
        c_sources: ``{"<id>.h": ..., "<id>.c": ...}``.
        features, num_outputs: inputs per step, scores per prediction.
        precision: ``"float32"`` for the float build, anything else for the integer one.
    """

    name: str
    c_sources: Mapping[str, str]
    features: int
    num_outputs: int
    precision: str = "int8"


@dataclasses.dataclass(frozen=True)
class CRunResult:
    """What :func:`run_c` measured.

    Attributes:
        target: ``"host"``, ``"cortex-m4"``, ``"cortex-m0"`` or ``"uno"``.
        scores: ``(N, outputs)`` scores as ``<id>_predict`` wrote them: ``int64`` (integer
            build), ``float64`` (float build; to 1e-6 on the emulated targets, which print
            micro-units clamped to +-2000, 9 significant digits on the host).
        per_step: cost of one ``<id>_step`` (mean over every step run) in ``unit``.
        unit: ``"seconds"`` (host), ``"instructions"`` (Cortex-M in QEMU) or ``"cycles"``
            (ATmega328P in simavr, exact).
        clock_hz: the emulated CPU clock for cycles (``None`` otherwise).
        builds: programs built (the windows are split in batches on emulated targets).
        flash_bytes, ram_bytes: the largest program built (windows included), ``size``'s
            ``text + data`` and ``data + bss`` (``None`` on the host).
        model_flash_bytes, model_code_bytes: constant data and code of the model's objects.
    """

    target: str
    scores: np.ndarray
    per_step: float
    unit: str
    clock_hz: int | None = None
    builds: int = 1
    flash_bytes: int | None = None
    ram_bytes: int | None = None
    model_flash_bytes: int | None = None
    model_code_bytes: int | None = None

    def predictions(self) -> np.ndarray:
        return np.argmax(self.scores, axis=1)

    def seconds_per_step(self) -> float | None:
        """Time per step: measured on the host, ``cycles / clock`` on the AVR, else ``None``."""
        if self.unit == "seconds":
            return self.per_step
        if self.unit == "cycles" and self.clock_hz:
            return self.per_step / self.clock_hz
        return None


#: Files of the programs built around a model: the model's own files cannot have these names.
_HARNESS_FILES = ("main.c", "startup.c", "rnnedge_target.h", "rnnedge_support.c")


def _check_windows(x_q, features: int, is_float: bool) -> np.ndarray:
    x = check_sequences(x_q, features=features, name="x_q")
    if is_float:
        if not np.all(np.isfinite(x)):
            raise ValueError("Expected finite float input windows (NaN or Inf found).")
        return x.astype(np.float32)
    if not np.issubdtype(x.dtype, np.integer) or x.min() < -(2**15) or x.max() > 2**15 - 1:
        raise ValueError("Expected int16 input values (quantize the windows with the model's "
                         "quantize_input first).")
    return x.astype(np.int64)


def _check_levels(levels, x: np.ndarray, c_sources: Mapping[str, str], ident: str
                  ) -> np.ndarray | None:
    """``levels`` (``(T,)`` or ``(N, T)``) as ``(N, T)`` int64, checked against the model's
    ``<ID>_NUM_LEVELS`` (``None`` without levels)."""
    if levels is None:
        return None
    found = re.search(rf"#define {ident.upper()}_NUM_LEVELS (\d+)",
                      c_sources.get(f"{ident}.h", ""))
    if found is None:
        raise ValueError(f"Received levels, but model {ident!r} is not flexible (its C has no "
                         f"{ident}_step_level); run it without levels.")
    count = int(found.group(1))
    lv = np.asarray(levels)
    if lv.shape not in ((x.shape[1],), x.shape[:2]) or not np.issubdtype(lv.dtype, np.integer):
        raise ValueError(f"Expected levels as integers of shape ({x.shape[1]},) or "
                         f"{x.shape[:2]} (one per step), but got {lv.dtype} {lv.shape}.")
    if lv.size and (lv.min() < 0 or lv.max() >= count):
        raise ValueError(f"Expected levels in [0, {count - 1}], but got values in "
                         f"[{lv.min()}, {lv.max()}].")
    return np.broadcast_to(lv, x.shape[:2]).astype(np.int64)


def _host_main(ident: str, features: int, outputs: int, is_float: bool,
               flexible: bool = False) -> str:
    if is_float:
        x_type, read, y_type, fmt, cast = "float", '"%f", &x[i]', "float", "%.9g", "(double)"
    else:
        x_type, read, y_type, fmt, cast = "int16_t", '"%ld", &v', "int32_t", "%ld", "(long)"
    store = "" if is_float else "\n                x[i] = (int16_t)v;"
    level = ('            if (scanf("%ld", &lv) != 1) return 5;\n' if flexible else "")
    call = f"{ident}_step_level(&s, x, (uint8_t)lv)" if flexible else f"{ident}_step(&s, x)"
    return f"""#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdint.h>
#include <time.h>
#include "{ident}.h"

int main(void) {{
    static {ident}_state_t s;
    {x_type} x[{features}];
    {y_type} y[{outputs}];
    long n, t, steps, k, i, v = 0, lv = 0;
    double seconds = 0.0;
    struct timespec a, b;
    if (scanf("%ld %ld", &n, &steps) != 2) return 3;
    for (k = 0; k < n; ++k) {{
        {ident}_reset(&s);
        for (t = 0; t < steps; ++t) {{
{level}            for (i = 0; i < {features}; ++i) {{
                if (scanf({read}) != 1) return 4;{store}
            }}
            (void)v;
            (void)lv;
            clock_gettime(CLOCK_MONOTONIC, &a);
            {call};
            clock_gettime(CLOCK_MONOTONIC, &b);
            seconds += (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
        }}
        {ident}_predict(&s, y);
        printf("y");
        for (i = 0; i < {outputs}; ++i) printf(" {fmt}", {cast}y[i]);
        printf("\\n");
    }}
    printf("@seconds %.9e %ld\\n", seconds, n * steps);
    return 0;
}}
"""


def _target_main(ident: str, windows: np.ndarray, outputs: int, is_float: bool,
                 levels: np.ndarray | None = None) -> str:
    n, t, f = windows.shape
    if levels is None:
        level_table, call = "", f"{ident}_step(&s, x);"
    else:
        items = ", ".join(str(int(v)) for v in levels.ravel())
        level_table = f"static const uint8_t levels[{n * t}] PROGMEM = {{{items}}};\n\n"
        call = (f"memcpy_P(&lv, &levels[(uint32_t)n * {t}u + t], 1);\n"
                f"            {ident}_step_level(&s, x, lv);")
    value = (lambda v: f"{float(v)!r}f") if is_float else (lambda v: str(int(v)))
    rows = ",\n".join("    {" + ", ".join(value(v) for v in row) + "}"
                      for row in windows.reshape(-1, f))
    x_type, y_type = ("float", "float") if is_float else ("int16_t", "int32_t")
    if is_float:  # avr-libc's printf has no %f by default: micro-units as a long, clamped
        print_y = ("            RE_PRINTF(RE_STR(\" %ld\"), (long)(y[i] > 2000.0f ? 2e9f : "
                   "y[i] < -2000.0f ? -2e9f : y[i] * 1e6f + (y[i] < 0.0f ? -0.5f : 0.5f)));\n")
    else:
        print_y = "            RE_PRINTF(RE_STR(\" %ld\"), (long)y[i]);\n"
    return (
        "#include <stdio.h>\n#include <stdint.h>\n" + _PROGMEM_PRELUDE
        + f'#include "rnnedge_target.h"\n#include "{ident}.h"\n\n'
        f"static const {x_type} inputs[{n * t}][{f}] PROGMEM = {{\n{rows}\n}};\n\n"
        + level_table +
        "int main(void) {\n"
        f"    static {ident}_state_t s;\n    static {x_type} x[{f}];\n"
        f"    static {y_type} y[{outputs}];\n"
        "    uint32_t total = 0, t0, t1;\n    uint16_t n, t, i;\n"
        + ("" if levels is None else "    uint8_t lv;\n") +
        f"    for (n = 0; n < {n}u; ++n) {{\n"
        f"        {ident}_reset(&s);\n"
        f"        for (t = 0; t < {t}u; ++t) {{\n"
        f"            memcpy_P(x, inputs[(uint32_t)n * {t}u + t], sizeof x);\n"
        "            t0 = rnnedge_count();\n"
        f"            {call}\n"
        "            t1 = rnnedge_count();\n"
        "            total += t1 - t0 - rnnedge_count_overhead();\n"
        "        }\n"
        f"        {ident}_predict(&s, y);\n"
        "        putchar('y');\n"
        f"        for (i = 0; i < {outputs}u; ++i)\n{print_y}"
        "        putchar('\\n');\n"
        "    }\n"
        f'    RE_PRINTF(RE_STR("@count step %lu %lu\\n"), (unsigned long)total, '
        f"(unsigned long){n * t}ul);\n"
        "    return 0;\n}\n")


def _scores(text: str, outputs: int, is_float: bool) -> np.ndarray:
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith("y")]
    if is_float:
        return np.array(rows, np.float64).reshape(-1, outputs)
    return np.array(rows, np.int64).reshape(-1, outputs)


def run_c(converted: Any, x_q, *, target: str,
          progress: ProgressArg = True,
          timeout: float = 900.0, levels=None) -> CRunResult:
    """Run the generated C of ``converted`` on int16 windows ``x_q`` ``(N, T, F)``.

    Args:
        converted: has ``name`` (the C identifier), ``c_sources`` (file name → text of
            ``<id>.h`` and ``<id>.c``), ``features``, ``num_outputs`` and optionally
            ``precision`` (``"float32"``: the float build).
        x_q: the windows as ``<id>_step`` takes them (``converted.quantize_input(x)``: int16
            values, or float32 for the float build).
        target: ``"host"``, ``"cortex-m4"``, ``"cortex-m0"`` or ``"uno"``
            (:data:`RUN_TARGETS`).
        progress: a bar over the windows on stderr (``True``, drawn when stderr is a
            terminal; it moves after each build and run), ``False``, or a callable
            ``f(done, total)`` (:mod:`keras_rnnedge.progress`).
        timeout: seconds for each compilation and each run.
        levels: a flexible model's level of every step (``(T,)`` or ``(N, T)`` integers),
            run with ``<id>_step_level``; ``None``: ``<id>_step`` (the top level).

    Raises:
        ValueError: an unknown target, malformed windows or levels.
        ToolchainMissingError: the target's compiler or emulator is missing (the message names
            the Debian packages).
        CompileError: the program did not build or run.
    """
    key = run_target(target)
    check_progress(progress)
    clash = sorted(set(converted.c_sources) & set(_HARNESS_FILES))
    if clash:
        raise ValueError(f"The model's C files include {', '.join(clash)}, which the test "
                         f"programs need for their own files (model name {converted.name!r}); "
                         "convert again with another name (convert_c(..., name=...), rnnedge "
                         "convert --name).")
    is_float = getattr(converted, "precision", "") == "float32"
    x = _check_windows(x_q, converted.features, is_float)
    ident, outputs = converted.name, converted.num_outputs
    files = dict(converted.c_sources)
    lv = _check_levels(levels, x, files, ident)
    n, t, f = x.shape
    if key == "host":
        value = (lambda v: repr(float(v))) if is_float else str
        if lv is None:
            body = "\n".join(" ".join(map(value, w.ravel())) for w in x)
        else:
            body = "\n".join(" ".join(f"{int(lv[k, j])} " + " ".join(map(value, x[k, j]))
                                       for j in range(t)) for k in range(n))
        text = f"{n} {t}\n" + body + "\n"
        with progress_bar(progress, "C on the host", n, unit="window") as bar:
            out = build_and_run_host(files, _host_main(ident, f, outputs, is_float,
                                                       lv is not None),
                                     stdin=text, timeout=timeout)
            bar.update(n)
        line = next(ln for ln in out.splitlines() if ln.startswith("@seconds"))
        seconds, steps = float(line.split()[1]), int(line.split()[2])
        return CRunResult(target=key, scores=_scores(out, outputs, is_float),
                          per_step=seconds / max(steps, 1), unit="seconds")
    harness = RUN_TARGETS[key]
    if harness == "avr":
        runner = build_and_run_avr
    else:
        def runner(files, main_c, timeout):
            return build_and_run_arm(harness, files, main_c, timeout=timeout)
    window_bytes = t * f * (4 if is_float else 2) + (0 if lv is None else t)
    budget = _BATCH_BYTES[harness]
    if harness == "cortex_m0":
        machine = ARM_MACHINES[harness]
        size = measure_c(files, ident, "arm", core=machine.core)
        state = _state_bytes(files.get(f"{ident}.h", ""))
        ram = size.static_ram_bytes + size.step_stack_bytes + state
        room = machine.flash_bytes - _M0_PROGRAM_BYTES - size.flash_bytes
        if ram > machine.ram_bytes - _M0_PROGRAM_RAM or room < window_bytes:
            raise ValueError(
                f"The model needs {size.flash_bytes:,} B of flash and {ram:,} B of RAM on the "
                f"emulated Cortex-M0 (microbit: {machine.flash_bytes:,} B flash, "
                f"{machine.ram_bytes:,} B RAM, of which the test program takes about "
                f"{_M0_PROGRAM_BYTES:,} B and {_M0_PROGRAM_RAM:,} B, plus one {t}-step window "
                f"of {window_bytes:,} B in flash). Run on cortex-m4 or the host, or shrink the "
                "model.")
        budget = min(budget, room)
    if harness == "avr":
        size = measure_c(files, ident, "avr")
        state = _state_bytes(files.get(f"{ident}.h", ""))
        ram = size.static_ram_bytes + size.step_stack_bytes + state
        if ram > _AVR_RAM - _AVR_PROGRAM_RAM:
            raise ValueError(
                f"The model needs {ram:,} B of RAM on the ATmega328P (state {state:,} B + the "
                f"step's stack {size.step_stack_bytes:,} B + static {size.static_ram_bytes:,} B); "
                f"with about {_AVR_PROGRAM_RAM:,} B for the test program the Uno's {_AVR_RAM:,} B "
                "would overflow (the stack would run into the data: wrong results or a hang). "
                "Run on the host or cortex-m4, or shrink the model (convert_c(..., "
                "target='uno') checks the same fit).")
        model = size.flash_bytes
        budget = min(budget, _AVR_FLASH - _AVR_PROGRAM_BYTES - model)
        if budget < window_bytes:
            raise ValueError(
                f"The model takes {model:,} B of the ATmega328P's {_AVR_FLASH:,} B of flash; "
                f"with about {_AVR_PROGRAM_BYTES:,} B for the test program there is no room for "
                f"one {t}-step window ({window_bytes:,} B) in flash. Run on the host or "
                "cortex-m4, or use shorter windows.")
    per_batch = max(1, budget // window_bytes)
    scores, total, steps, builds = [], 0.0, 0, 0
    flash = ram = model_flash = model_code = None
    with progress_bar(progress, f"C on {key}", n, unit="window") as bar:
        for start in range(0, n, per_batch):
            batch = x[start:start + per_batch]
            r = runner(files, _target_main(ident, batch, outputs, is_float,
                                           None if lv is None else lv[start:start + per_batch]),
                       timeout=timeout)
            builds += 1
            got = _scores(r.stdout, outputs, is_float)
            scores.append(got / 1e6 if is_float else got)
            count = r.counts.get("step")
            if count is None:
                raise CompileError(f"The {key} program printed no step count:\n"
                                   f"{r.stdout[-2000:]}")
            total += count * batch.shape[0] * t
            steps += batch.shape[0] * t
            flash = max(flash or 0, r.flash_bytes)
            ram = max(ram or 0, r.ram_bytes)
            model_flash, model_code = r.model_flash_bytes, r.model_code_bytes
            bar.update(min(start + per_batch, n))
    return CRunResult(target=key, scores=np.concatenate(scores), per_step=total / steps,
                      unit="cycles" if harness == "avr" else "instructions",
                      clock_hz=_CLOCK_HZ.get(harness), builds=builds, flash_bytes=flash,
                      ram_bytes=ram, model_flash_bytes=model_flash, model_code_bytes=model_code)


@dataclasses.dataclass(frozen=True)
class CodeSize:
    """A model's C compiled for one architecture (:func:`measure_c`).

    Attributes:
        arch: ``"avr"`` (avr-gcc ``-Os``, ATmega328P) or ``"arm"`` (arm-none-eabi-gcc ``-O2``).
        core: the Cortex-M core the ``"arm"`` build was for (its flags: ``harness.arm_cflags``),
            ``None`` on the AVR.
        const_bytes: constant data (weights, biases, indices): flash.
        code_bytes: the model's functions: flash.
        static_ram_bytes: writable data of the model's objects (0 for generated models).
        step_stack_bytes: the stack frame of ``<id>_step`` plus the deepest frame of the
            runtime functions it calls (``-fstack-usage``; return addresses not counted).
    """

    arch: str
    const_bytes: int
    code_bytes: int
    static_ram_bytes: int
    step_stack_bytes: int
    core: str | None = None

    @property
    def flash_bytes(self) -> int:
        return self.const_bytes + self.code_bytes


def measure_c(c_sources: Mapping[str, str], ident: str, arch: str,
              core: str = "Cortex-M4F") -> CodeSize:
    """Compile ``c_sources`` for ``arch`` (``"avr"`` or ``"arm"``; on Arm for ``core``, a key
    of ``harness.ARM_CORE_FLAGS`` such as ``"Cortex-M0+"``) and measure the model.

    Raises:
        ValueError: an unknown ``arch`` or ``core``; on the AVR, an array larger than its
            32 KB data address space (the model cannot fit any AVR of the catalog).
        ToolchainMissingError: the cross compiler is missing.
        CompileError: the sources do not compile.
    """
    if arch not in ("avr", "arm"):
        raise ValueError(f'Expected arch to be "avr" or "arm", but got {arch!r}.')
    flags = AVR_CFLAGS if arch == "avr" else arm_cflags(core)
    tools = require_toolchain("avr" if arch == "avr" else "cortex_m4")
    with tempfile.TemporaryDirectory(prefix="rnnedge_size_") as tmp:
        for name, text in c_sources.items():
            if os.path.basename(name) != name:
                raise ValueError(f"Expected plain file names, but got {name!r}.")
            with open(os.path.join(tmp, name), "w", encoding="ascii") as fh:
                fh.write(text)
        const = code = ram = stack = 0
        for name in sorted(n for n in c_sources if n.endswith(".c")):
            obj = name[:-2] + ".o"
            cmd = [tools["cc"], *flags, "-fstack-usage", "-I", tmp, "-c", name, "-o", obj]
            build = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=300)
            if build.returncode != 0:
                big = re.search(r"size of array .(\w+). is too large", build.stderr)
                if arch == "avr" and big:
                    raise ValueError(
                        f"The model's array {big.group(1)} is larger than the AVR's 32 KB "
                        "address space (avr-gcc: 'size of array is too large'), so the model "
                        "cannot fit an ATmega328P's 32 KB of flash. Run it on a Cortex-M "
                        "target or the host, or shrink the model (convert_c(..., target='uno') "
                        "reports the fit).")
                raise CompileError(f"{' '.join(cmd)} failed:\n{build.stderr}")
            c, k, r = _object_sizes(tools["readelf"], obj, tmp)
            const, code, ram = const + c, code + k, ram + r
            frames = {}
            with open(os.path.join(tmp, name[:-2] + ".su"), encoding="utf-8") as fh:
                for line in fh:
                    location, size, _ = line.rstrip("\n").split("\t")
                    frames[location.rsplit(":", 1)[-1]] = int(size)
            if f"{ident}_step" in frames:
                callee = max((v for k2, v in frames.items() if k2.startswith("re_")), default=0)
                stack = frames[f"{ident}_step"] + callee
    return CodeSize(arch=arch, const_bytes=const, code_bytes=code, static_ram_bytes=ram,
                    step_stack_bytes=stack, core=None if arch == "avr" else core)
