"""Host harness: compile generated C with the host's gcc and run it.

:func:`build_and_run_host` compiles a set of C files plus a ``main`` with
``gcc -std=c99 -Wall -Wextra -Werror -O2`` (and AddressSanitizer/UBSan with ``sanitize=True``)
in a temporary directory, runs the program and returns its standard output.
:func:`trace_main` writes a ``main`` that feeds int16 input sequences to a generated model and
prints every step's state and the final scores, for a bit-for-bit comparison with the oracle.

Example:
    >>> out = build_and_run_host(files, trace_main("m", features=3, state_sizes=[8],
    ...                          num_outputs=2, sequences=x_q))   # doctest: +SKIP
    >>> parse_trace(out)                                          # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["CompileError", "HOST_CFLAGS", "SANITIZE_FLAGS", "build_and_run_host", "parse_trace",
           "trace_main"]

HOST_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-O2")
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g")


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
        compiler: the C compiler to call.
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


def trace_main(ident: str, *, features: int, state_sizes: Sequence[int], num_outputs: int,
               sequences) -> str:
    """A ``main.c`` that runs int16 ``sequences`` ``(N, T, F)`` through model ``ident``.

    For each sequence it resets the state, and after each step prints ``h <layer> v...`` for
    every recurrent layer; at the end ``y v...`` (the scores). :func:`parse_trace` reads it.
    """
    seq = np.asarray(sequences, np.int64)
    if seq.ndim != 3 or seq.shape[2] != features:
        raise ValueError(f"Expected sequences of shape (N, T, {features}), but got {seq.shape}.")
    if seq.min(initial=0) < -(2**15) or seq.max(initial=0) > 2**15 - 1:
        raise ValueError("Expected int16 input values.")
    n, t, f = seq.shape
    data = ",\n".join("    {" + ", ".join(str(int(v)) for v in row) + "}"
                      for row in seq.reshape(n * t, f))
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


def parse_trace(text: str, num_layers: int) -> list[dict]:
    """Read :func:`trace_main` output: per sequence ``{"states": [[h per layer] per step],
    "scores": array}``."""
    out, steps, current = [], [], []
    for line in text.splitlines():
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
