"""Fuzz generated C models with libFuzzer, and check every input it kept against an oracle.

For one model (its generated C and a stepping oracle, see :class:`FuzzModel`):

1. :func:`build_fuzzer` compiles a libFuzzer target (``clang -fsanitize=fuzzer,address,
   undefined -fno-sanitize-recover=all``) around the model's ``<id>_reset``/``<id>_step``/
   ``<id>_predict``. The fuzzer's bytes are the inputs (:func:`decode_input`: little-endian
   int16 samples, ``features`` per step, at most ``max_steps`` steps), so every int16 value,
   the extremes included, is reachable; the seed corpus (:func:`seed_inputs`) and a dictionary
   start it at the extremes. A crash is a finding: AddressSanitizer (out of bounds), UBSan
   (signed overflow, a shift out of range, ...), or one of the target's own checks: the state
   after the same input from a fresh reset must be the same (no hidden or stale state), and,
   when the model comes with a ``reference`` build (the same model through other kernels, e.g.
   the saturating ones only), both builds must agree after every step.
2. :func:`run_fuzzer` runs it for a fixed time, growing a corpus of inputs that reach new code.
3. :func:`replay` runs every corpus input through a plain host build of the model (gcc
   ``-O2``, the flags of :data:`~keras_rnnedge.micro_targets.harness.HOST_CFLAGS`) and
   :func:`compare` checks each step's state and the scores against the oracle, bit for bit.

:func:`fuzz_model` does all three. The module builds on the harness only; the models come from
the caller (``benchmarks/fuzz_c.py`` draws random ones through ``quantize_model`` and
``generate_c``). Needs clang and libFuzzer (Debian: ``clang``, ``libclang-rt-14-dev``;
``scripts/install-toolchains.sh``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_rnnedge.micro_targets.harness import (
    CompileError,
    ToolchainMissingError,
    build_and_run_host,
)

__all__ = ["FUZZ_CFLAGS", "FUZZ_PACKAGES", "FuzzModel", "FuzzReport", "FuzzerRun",
           "ReplayTrace", "build_fuzzer", "compare", "decode_input", "fuzz_model",
           "require_fuzzer", "replay", "run_fuzzer", "seed_inputs"]

#: Debian packages for the fuzzer: clang and its runtime library (libFuzzer, the sanitizers).
FUZZ_PACKAGES = ("clang", "libclang-rt-14-dev")
#: clang flags of the fuzz target (the warning flags of the host build, plus instrumentation).
FUZZ_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-g", "-O1",
               "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all")
#: libFuzzer dictionary: the int16 extremes and their neighbours, little-endian.
_DICTIONARY = ('"\\x00\\x80"', '"\\xff\\x7f"', '"\\x01\\x80"', '"\\xfe\\x7f"', '"\\x00\\x00"',
               '"\\xff\\xff"', '"\\x01\\x00"', '"\\x00\\x40"', '"\\x00\\xc0"')


@dataclasses.dataclass(frozen=True)
class FuzzModel:
    """A generated C model and its oracle.

    Attributes:
        name: the C identifier (``<id>``) of ``c_sources``.
        c_sources: ``{"<id>.h": ..., "<id>.c": ...}``.
        features, num_outputs: inputs per step, scores per prediction.
        state_sizes: per recurrent layer, the size of its output ``h<n>``.
        state_layout: per recurrent layer, its state vectors ``(name, size)`` in the order of
            the struct's fields ``<name><n>`` and of the oracle's state vector (``h`` first).
        oracle: has ``initial_state(batch)``, ``step(state, x_q)`` and ``predict(state)``, batched
            over leading dimensions, with the state per layer ``h`` then ``c`` (as
            :class:`keras_rnnedge.converters.c.intmodel.IntModel`); ``None``: fuzz only (no
            replay).
        reference: optional ``(name, c_sources)``: the same model generated another way; the
            fuzz target aborts when the two builds differ after any step.
        description: for reports.
    """

    name: str
    c_sources: Mapping[str, str]
    features: int
    num_outputs: int
    state_sizes: tuple[int, ...]
    state_layout: tuple[tuple[tuple[str, int], ...], ...]
    oracle: Any
    reference: tuple[str, Mapping[str, str]] | None = None
    description: str = ""


@dataclasses.dataclass(frozen=True)
class FuzzerRun:
    """One libFuzzer run.

    Attributes:
        executions: inputs executed (libFuzzer's ``stat::number_of_executed_units``).
        corpus: the corpus files after the run (seeds and what the fuzzer kept).
        crashes: reproducers the fuzzer wrote (``crash-*``, ``leak-*``, ``timeout-*``,
            ``oom-*``), each a finding.
        seconds: wall-clock time of the run.
        log: the end of libFuzzer's output (the sanitizer report of a crash).
        returncode: libFuzzer's exit code (0: no finding).
    """

    executions: int
    corpus: tuple[Path, ...]
    crashes: tuple[Path, ...]
    seconds: float
    log: str
    returncode: int


@dataclasses.dataclass(frozen=True)
class ReplayTrace:
    """One input through the plain build: ``x`` ``(T, F)``, ``states[t][layer]`` (``h`` then
    ``c``) and ``scores``."""

    path: Path
    x: np.ndarray
    states: list[list[np.ndarray]]
    scores: np.ndarray


@dataclasses.dataclass(frozen=True)
class FuzzReport:
    """What :func:`fuzz_model` found for one model.

    Attributes:
        name, description: the model's.
        executions: inputs the fuzz target executed.
        corpus_files, corpus_bytes: the corpus after the run.
        replayed: corpus inputs checked against the oracle (bit for bit).
        crashes: reproducers with the start of the sanitizer's or the check's report.
        mismatches: corpus inputs where the plain build and the oracle differ (described).
        seconds: total time (build, fuzzing, replay).
    """

    name: str
    description: str
    executions: int
    corpus_files: int
    corpus_bytes: int
    replayed: int
    crashes: tuple[str, ...]
    mismatches: tuple[str, ...]
    seconds: float

    @property
    def findings(self) -> int:
        return len(self.crashes) + len(self.mismatches)


def require_fuzzer() -> str:
    """The path of a clang that links libFuzzer with the sanitizers.

    Raises:
        ToolchainMissingError: clang or its runtime library is missing (names the packages).
    """
    clang = shutil.which("clang")
    hint = (f"Install the Debian packages {' '.join(FUZZ_PACKAGES)} (run "
            "scripts/install-toolchains.sh as root).")
    if clang is None:
        raise ToolchainMissingError(f"clang was not found, so the generated C cannot be fuzzed. "
                                    f"{hint}")
    _check_libfuzzer(clang, hint)
    return clang


_LIBFUZZER_OK: dict[str, bool] = {}


def _check_libfuzzer(clang: str, hint: str) -> None:
    if clang not in _LIBFUZZER_OK:
        with tempfile.TemporaryDirectory(prefix="rnnedge_fuzzcheck_") as tmp:
            src = os.path.join(tmp, "t.c")
            with open(src, "w", encoding="ascii") as fh:
                fh.write("#include <stddef.h>\n#include <stdint.h>\n"
                         "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\n"
                         "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) "
                         "{ (void)d; (void)n; return 0; }\n")
            run = subprocess.run([clang, *FUZZ_CFLAGS, src, "-o", os.path.join(tmp, "t")],
                                 capture_output=True, text=True, timeout=300)
            _LIBFUZZER_OK[clang] = run.returncode == 0
    if not _LIBFUZZER_OK[clang]:
        raise ToolchainMissingError(f"{clang} cannot link libFuzzer with AddressSanitizer and "
                                    f"UBSan (-fsanitize=fuzzer,address,undefined). {hint}")


def decode_input(data: bytes, features: int, max_steps: int) -> np.ndarray:
    """The ``(T, features)`` int16 inputs the fuzz target reads from ``data``: little-endian
    int16 samples, ``T = min(len(data) // (2 features), max_steps)`` (the rest is ignored)."""
    steps = min(len(data) // (2 * features), max_steps)
    raw = np.frombuffer(data[:2 * features * steps], dtype="<i2")
    return raw.astype(np.int64).reshape(steps, features)


def seed_inputs(features: int, max_steps: int, seed: int = 0) -> list[bytes]:
    """Seed corpus: zeros, every extreme, the extremes alternating in time and across features,
    a ramp through the int16 range, random samples; full length and a single step."""
    rng = np.random.default_rng(seed)
    t, f = max_steps, features
    grid = np.add.outer(np.arange(t), np.arange(f))
    arrays = [np.zeros((t, f)), np.full((t, f), -32768), np.full((t, f), 32767),
              np.where(grid % 2 == 0, 32767, -32768), np.where(grid % 2 == 0, -32768, 32767),
              np.where(np.arange(t)[:, None] < t // 2, 32767, -32768) * np.ones((1, f)),
              np.linspace(-32768, 32767, t * f).reshape(t, f),
              rng.integers(-32768, 32768, size=(t, f)),
              rng.choice([-32768, -1, 0, 1, 32767], size=(t, f)),
              np.full((1, f), 32767), np.full((1, f), -32768)]
    return [np.asarray(a).astype("<i2").tobytes() for a in arrays]


def _state_fields(model: FuzzModel) -> list[tuple[str, int, int]]:
    """(field, layer, size) of the state struct, in the order of the oracle's state vector."""
    fields = []
    for k, layout in enumerate(model.state_layout):
        for name, size in layout:
            fields.append((f"{name}{k}", k, size))
    return fields


def _prelude(ident: str, features: int) -> str:
    return (f"#include <stddef.h>\n#include <stdint.h>\n#include <stdio.h>\n#include <stdlib.h>\n"
            f"#include <string.h>\n#include \"{ident}.h\"\n\n"
            "/* little-endian int16 (written without the implementation-defined conversion) */\n"
            "static int16_t re_sample(const uint8_t *p) {\n"
            "    const int32_t u = (int32_t)p[0] | ((int32_t)p[1] << 8);\n"
            "    return (int16_t)(u >= 32768 ? u - 65536 : u);\n}\n\n"
            f"#define RE_FEATURES {features}u\n")


def _fuzz_main(model: FuzzModel, max_steps: int) -> str:
    ident, out = model.name, model.num_outputs
    ref = model.reference[0] if model.reference else None
    text = _prelude(ident, model.features)
    if ref:
        text += (f"#include \"{ref}.h\"\n"
                 f"typedef char re_same_layout[sizeof({ident}_state_t) == sizeof({ref}_state_t) "
                 "? 1 : -1];\n")
    text += (
        f"\nstatic void re_fail(const char *what, size_t t) {{\n"
        '    fprintf(stderr, "rnnedge-fuzz: %s (step %lu)\\n", what, (unsigned long)t);\n'
        "    abort();\n}\n\n"
        "int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);\n"
        "int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {\n"
        f"    static {ident}_state_t s, again;\n"
        + (f"    static {ref}_state_t r;\n    int32_t yr[{out}];\n" if ref else "")
        + f"    int16_t x[RE_FEATURES];\n    int32_t y[{out}];\n"
        "    size_t steps = size / (2u * RE_FEATURES), t, i;\n"
        f"    if (steps > {max_steps}u) steps = {max_steps}u;\n"
        f"    {ident}_reset(&s);\n"
        + (f"    {ref}_reset(&r);\n" if ref else "")
        + "    for (t = 0; t < steps; ++t) {\n"
        "        for (i = 0; i < RE_FEATURES; ++i) x[i] = re_sample(data + 2u * (t * RE_FEATURES "
        "+ i));\n"
        f"        {ident}_step(&s, x);\n"
        + (f"        {ref}_step(&r, x);\n"
           "        if (memcmp(&s, &r, sizeof s) != 0) re_fail(\"the reference build's state "
           "differs\", t);\n" if ref else "")
        + "    }\n"
        f"    {ident}_predict(&s, y);\n"
        + (f"    {ref}_predict(&r, yr);\n"
           "    if (memcmp(y, yr, sizeof y) != 0) re_fail(\"the reference build's scores "
           "differ\", steps);\n" if ref else "")
        + f"    {ident}_reset(&again);\n"
        "    for (t = 0; t < steps; ++t) {\n"
        "        for (i = 0; i < RE_FEATURES; ++i) x[i] = re_sample(data + 2u * (t * RE_FEATURES "
        "+ i));\n"
        f"        {ident}_step(&again, x);\n"
        "    }\n"
        "    if (memcmp(&s, &again, sizeof s) != 0) re_fail(\"the same input from reset gives "
        "another state\", steps);\n"
        "    return 0;\n}\n")
    return text


def _replay_main(model: FuzzModel, max_steps: int) -> str:
    """A ``main.c`` reading input file paths from stdin and printing ``x``, the state fields
    and ``y`` per input (after each step: ``x v...`` and ``s <field> v...``)."""
    ident, f = model.name, model.features
    prints = "".join(
        f'            printf("s {name}");\n'
        f"            for (i = 0; i < {size}u; ++i) printf(\" %d\", (int)s.{name}[i]);\n"
        '            printf("\\n");\n' for name, _, size in _state_fields(model))
    limit = 2 * f * max_steps
    return (
        _prelude(ident, f)
        + "\nint main(void) {\n"
        f"    static {ident}_state_t s;\n    static uint8_t data[{limit}];\n"
        f"    static char path[4096];\n    int16_t x[RE_FEATURES];\n"
        f"    int32_t y[{model.num_outputs}];\n    size_t size, steps, t, i;\n"
        "    while (fgets(path, sizeof path, stdin) != NULL) {\n"
        "        FILE *fh;\n"
        "        path[strcspn(path, \"\\n\")] = '\\0';\n"
        "        if (path[0] == '\\0') continue;\n"
        "        fh = fopen(path, \"rb\");\n"
        "        if (fh == NULL) return 2;\n"
        "        size = fread(data, 1, sizeof data, fh);\n"
        "        fclose(fh);\n"
        f"        steps = size / (2u * RE_FEATURES);\n"
        f"        if (steps > {max_steps}u) steps = {max_steps}u;\n"
        '        printf("file %s\\n", path);\n'
        f"        {ident}_reset(&s);\n"
        "        for (t = 0; t < steps; ++t) {\n"
        "            printf(\"x\");\n"
        "            for (i = 0; i < RE_FEATURES; ++i) {\n"
        "                x[i] = re_sample(data + 2u * (t * RE_FEATURES + i));\n"
        "                printf(\" %d\", (int)x[i]);\n"
        "            }\n"
        "            printf(\"\\n\");\n"
        f"            {ident}_step(&s, x);\n"
        f"{prints}"
        "        }\n"
        f"        {ident}_predict(&s, y);\n"
        "        printf(\"y\");\n"
        f"        for (i = 0; i < {model.num_outputs}u; ++i) printf(\" %ld\", (long)y[i]);\n"
        "        printf(\"\\n\");\n"
        "    }\n    return 0;\n}\n")


def _write(folder: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        if os.path.basename(name) != name or name in ("", ".", ".."):
            raise ValueError(f"Expected plain file names, but got {name!r}.")
        (folder / name).write_text(text, encoding="ascii")


def build_fuzzer(model: FuzzModel, folder: Path | str, *, max_steps: int = 16,
                 timeout: float = 300.0) -> Path:
    """Compile the libFuzzer target of ``model`` in ``folder``; the executable's path.

    Raises:
        ToolchainMissingError: clang or libFuzzer is missing.
        CompileError: the target did not compile (warnings are errors, :data:`FUZZ_CFLAGS`).
    """
    clang = require_fuzzer()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = dict(model.c_sources)
    if model.reference:
        files.update(model.reference[1])
    files["fuzz_main.c"] = _fuzz_main(model, max_steps)
    _write(folder, files)
    exe = folder / "fuzz"
    cmd = [clang, *FUZZ_CFLAGS, "-I", str(folder), *sorted(n for n in files if n.endswith(".c")),
           "-o", str(exe)]
    build = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=timeout)
    if build.returncode != 0:
        raise CompileError(f"{' '.join(cmd)} failed:\n{build.stderr}")
    return exe


_EXECUTED = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_DONE = re.compile(r"Done (\d+) runs")
_ARTIFACT = ("crash-", "leak-", "timeout-", "oom-")


def run_fuzzer(exe: Path | str, corpus: Path | str, *, seconds: float, seed: int = 1,
               max_len: int, seeds: Sequence[bytes] = (), artifacts: Path | str | None = None
               ) -> FuzzerRun:
    """Run libFuzzer ``exe`` for ``seconds`` on the corpus folder ``corpus`` (created, seeded
    with ``seeds``); reproducers of findings go to ``artifacts`` (default: ``corpus/../``)."""
    exe, corpus = Path(exe), Path(corpus)
    corpus.mkdir(parents=True, exist_ok=True)
    for k, data in enumerate(seeds):
        (corpus / f"seed-{k:02d}").write_bytes(data)
    artifacts = Path(artifacts) if artifacts is not None else corpus.parent / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    dictionary = corpus.parent / "int16.dict"
    dictionary.write_text("\n".join(_DICTIONARY) + "\n", encoding="ascii")
    cmd = [str(exe), str(corpus), f"-max_total_time={max(1, int(round(seconds)))}",
           f"-seed={int(seed)}", f"-max_len={int(max_len)}", f"-dict={dictionary}",
           f"-artifact_prefix={artifacts}/", "-print_final_stats=1", "-timeout=20",
           # libFuzzer's RSS limit reads the peak RSS, which Linux carries over from the
           # parent across fork/exec: started from a large process (a test session with
           # TensorFlow loaded, ~2.7 GB) the very first input reads as out-of-memory. The
           # limit on single allocations stays.
           "-rss_limit_mb=0", "-malloc_limit_mb=2048", "-use_value_profile=1"]
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
    start = time.perf_counter()
    run = subprocess.run(cmd, cwd=corpus.parent, capture_output=True, text=True,
                         errors="replace", timeout=seconds + 120, env=env)
    elapsed = time.perf_counter() - start
    log = run.stderr + run.stdout
    m = _EXECUTED.search(log) or _DONE.search(log)
    crashes = tuple(sorted(p for p in artifacts.iterdir() if p.name.startswith(_ARTIFACT)))
    return FuzzerRun(executions=int(m.group(1)) if m else 0,
                     corpus=tuple(sorted(p for p in corpus.iterdir() if p.is_file())),
                     crashes=crashes, seconds=elapsed, log=log[-6000:],
                     returncode=run.returncode)


def replay(model: FuzzModel, paths: Sequence[Path | str], *, max_steps: int = 16,
           sanitize: bool = False, timeout: float = 300.0) -> list[ReplayTrace]:
    """Run each input file through a plain host build of the model (one build, all files)."""
    if not paths:
        return []
    fields = _state_fields(model)
    stdin = "".join(f"{os.path.abspath(p)}\n" for p in paths)
    if any("\n" in str(p) for p in paths):
        raise ValueError("Expected input file paths without newlines.")
    out = build_and_run_host(dict(model.c_sources), _replay_main(model, max_steps), stdin=stdin,
                             sanitize=sanitize, timeout=timeout)
    traces, current = [], None

    def close():
        if current is not None:
            traces.append(current)

    for line in out.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "file":
            close()
            current = {"path": Path(rest), "x": [], "states": [], "scores": None}
        elif tag == "x":
            current["x"].append([int(v) for v in rest.split()])
            current["states"].append([[] for _ in model.state_sizes])
        elif tag == "s":
            name, *values = rest.split()
            layer = next(k for field, k, _ in fields if field == name)
            current["states"][-1][layer].extend(int(v) for v in values)
        elif tag == "y":
            current["scores"] = np.array(rest.split(), np.int64)
    close()
    return [ReplayTrace(path=c["path"],
                        x=np.array(c["x"], np.int64).reshape(-1, model.features),
                        states=[[np.array(v, np.int64) for v in step] for step in c["states"]],
                        scores=c["scores"]) for c in traces]


def compare(model: FuzzModel, traces: Sequence[ReplayTrace], *, max_steps: int = 16,
            limit: int = 20) -> list[str]:
    """The traces that differ from the oracle (at most ``limit`` described): the oracle steps
    the inputs the C decoded (checked against :func:`decode_input`), batched by length."""
    problems: list[str] = []
    by_length: dict[int, list[ReplayTrace]] = {}
    for trace in traces:
        want_x = decode_input(trace.path.read_bytes(), model.features, max_steps)
        if not np.array_equal(trace.x, want_x):
            problems.append(f"{trace.path.name}: the C decoded other inputs than decode_input")
            continue
        by_length.setdefault(len(trace.x), []).append(trace)
    oracle = model.oracle
    for steps, group in sorted(by_length.items()):
        x = np.stack([g.x for g in group])  # (N, T, F)
        state = oracle.initial_state((len(group),))
        for t in range(steps):
            state = oracle.step(state, x[:, t])
            for n, trace in enumerate(group):
                for layer, want in enumerate(state):
                    got = trace.states[t][layer]
                    if not np.array_equal(got, np.asarray(want[n], np.int64)):
                        bad = np.flatnonzero(got != want[n]) if got.shape == want[n].shape \
                            else []
                        problems.append(
                            f"{trace.path.name}: step {t} layer {layer}: C {got[bad[:4]]} != "
                            f"oracle {np.asarray(want[n])[bad[:4]]} at {list(bad[:4])}")
        scores = oracle.predict(state)
        for n, trace in enumerate(group):
            if not np.array_equal(trace.scores, np.asarray(scores[n], np.int64)):
                problems.append(f"{trace.path.name}: scores C {trace.scores.tolist()} != oracle "
                                f"{np.asarray(scores[n]).tolist()}")
    unique = list(dict.fromkeys(problems))
    return unique[:limit] + ([f"... {len(unique) - limit} more"] if len(unique) > limit else [])


def _crash_summary(path: Path, log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines()
             if "runtime error" in ln or "ERROR: AddressSanitizer" in ln
             or "rnnedge-fuzz:" in ln or "ERROR: libFuzzer" in ln]
    return f"{path.name}: {lines[0] if lines else log.strip().splitlines()[-1:]}"


def fuzz_model(model: FuzzModel, *, seconds: float, workdir: Path | str, seed: int = 1,
               max_steps: int = 16,
               progress: Callable[[str], None] | None = None) -> FuzzReport:
    """Build, fuzz for ``seconds``, replay the corpus against the oracle; see the module
    docstring. The work (sources, corpus, reproducers) stays in ``workdir``.

    Raises:
        ToolchainMissingError: clang or libFuzzer is missing.
        CompileError: the generated C does not compile (warnings are errors).
    """
    start = time.perf_counter()
    workdir = Path(workdir)
    exe = build_fuzzer(model, workdir / "build", max_steps=max_steps)
    if progress:
        progress(f"{model.name}: fuzzing {seconds:g} s")
    run = run_fuzzer(exe, workdir / "corpus", seconds=seconds, seed=seed,
                     max_len=2 * model.features * max_steps,
                     seeds=seed_inputs(model.features, max_steps, seed),
                     artifacts=workdir / "artifacts")
    crashes = tuple(_crash_summary(p, run.log) for p in run.crashes)
    if run.returncode != 0 and not crashes:
        crashes = (f"libFuzzer exited with code {run.returncode}: {run.log[-1500:]}",)
    traces, mismatches = [], []
    if model.oracle is not None:
        if progress:
            progress(f"{model.name}: replaying {len(run.corpus)} inputs")
        # the corpus holds no crashing input (libFuzzer stops at a crash, reported apart)
        traces = replay(model, run.corpus, max_steps=max_steps)
        mismatches = compare(model, traces, max_steps=max_steps)
    return FuzzReport(name=model.name, description=model.description,
                      executions=run.executions, corpus_files=len(run.corpus),
                      corpus_bytes=sum(p.stat().st_size for p in run.corpus),
                      replayed=len(traces), crashes=crashes, mismatches=tuple(mismatches),
                      seconds=time.perf_counter() - start)
