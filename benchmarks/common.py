"""Helpers shared by the benchmark scripts: machine description and docs/benchmarks.md sections.

Each benchmark owns one section of ``docs/benchmarks.md``, delimited by
``<!-- <name>:start -->`` and ``<!-- <name>:end -->``, and rewrites only that section; the rest of
the file (other benchmarks' sections, hand-written text) is left as it is.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"

DOC_HEADER = """# Benchmarks

Measured results of the scripts in `benchmarks/`. Each section is (re)written by its script,
between its `<!-- name:start -->` / `<!-- name:end -->` markers, and records the exact command,
the date and the machine it ran on. Edit text outside the markers freely; text inside them is
replaced on the next run.
"""


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, str | int]:
    """CPU, cores, OS, Python, TensorFlow and tf_keras versions (imports TF via ``_compat``)."""
    from keras_rnnedge._compat import keras, np, tf

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    try:
        load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        load = "n/a"
    return {
        "cpu": cpu_model(),
        "cores": cores,
        "load_at_start": load,
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
        "numpy": np.__version__,
    }


def machine_line(info: dict) -> str:
    return (
        f"{info['cpu']}, {info['cores']} cores (load average at start {info['load_at_start']}); "
        f"{info['os']}; Python {info['python']}, TensorFlow {info['tensorflow']}, "
        f"tf_keras {info['tf_keras']}, NumPy {info['numpy']}"
    )


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed from the repository root: ``python benchmarks/x.py --flag ...``."""
    argv = sys.argv if argv is None else argv
    script = Path(argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO))
    except ValueError:
        script_text = argv[0]
    return " ".join(["python", shlex.quote(script_text), *(shlex.quote(a) for a in argv[1:])])


def write_section(name: str, body: str, path: Path | str = DOC) -> Path:
    """Replace (or append) the section ``name`` of ``path`` with ``body``.

    Creates the file with :data:`DOC_HEADER` when it does not exist. Only the text between the
    section's markers changes.
    """
    path = Path(path)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else DOC_HEADER
    if start in text and end in text and text.index(start) < text.index(end):
        before = text[: text.index(start)]
        after = text[text.index(end) + len(end) :]
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def target_line(target: dict) -> str:
    """``PASS|FAIL task: target: measured text`` for one evaluated target."""
    verdict = "PASS" if target["passed"] else "FAIL"
    return f"{verdict} {target['task']}: {target['target']}: {target['text']}"


def quick_subset(ds, n_train: int = 512, n_val: int = 128, n_test: int = 128, seed: int = 0):
    """``ds`` (a :class:`~keras_rnnedge.datasets.Dataset`) cut to a seeded random choice of
    windows per split, in their order: the data of a benchmark's ``--quick`` smoke test."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def take(x, y, n):
        index = np.sort(rng.permutation(len(y))[:n])
        return x[index], y[index]

    x_train, y_train = take(ds.x_train, ds.y_train, n_train)
    x_val, y_val = take(ds.x_val, ds.y_val, n_val)
    x_test, y_test = take(ds.x_test, ds.y_test, n_test)
    return dataclasses.replace(ds, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
                               x_test=x_test, y_test=y_test)
