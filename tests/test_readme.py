"""Every ``rnnedge`` command of README.md runs as written, on a tiny budget.

The bash blocks of the README are extracted, their ``rnnedge`` commands run in order in a
temporary directory, each must exit 0. The budget is made tiny around them, not in them: the
model the README trains in Python (``fastgrnn.keras``) is replaced by a small FastGRNN trained
for a few steps, and the ``.npz`` written by ``rnnedge data`` is cut to a few windows per class
right after that command ran as written. Commands that need a cross toolchain (avr-gcc and
simavr for the Uno, arm-none-eabi-gcc and QEMU for the Cortex-M4) run only where it is
installed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

#: Tools a command needs, by a word it contains.
_TOOLS = {"uno": ("avr-gcc", "simavr"), "cortex-m4": ("arm-none-eabi-gcc", "qemu-system-arm"),
          "cortex-m0": ("arm-none-eabi-gcc", "qemu-system-arm"),
          "--format c": ("arm-none-eabi-gcc",)}


def readme_commands(text: str) -> list[str]:
    """The ``rnnedge`` commands of the bash blocks of ``text``, continuation lines joined and
    comments removed."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "rnnedge":
                commands.append(shlex.join(words))
    return commands


def test_readme_commands_are_found():
    commands = readme_commands(README.read_text())
    for sub in ("data", "summary", "convert", "emulate", "run"):
        assert any(c.startswith(f"rnnedge {sub} ") for c in commands), sub
    assert readme_commands("```bash\nrnnedge a \\\n  --b c   # note\nmake x\n```\n") == [
        "rnnedge a --b c"]


def _tiny_model(path: Path) -> None:
    """``fastgrnn.keras`` as the README's quick start saves it, trained on 96 HAR windows."""
    from keras_rnnedge import keras
    from keras_rnnedge.cells import FastGRNNCell
    from keras_rnnedge.datasets import balanced_sample, load_har

    keras.utils.set_random_seed(0)
    data = load_har(6)
    index = balanced_sample(data.y_train, 96, seed=0)
    x, y = data.x_train[index], data.y_train[index]
    model = keras.Sequential([keras.Input(x.shape[1:]),
                              keras.layers.RNN(FastGRNNCell(16, w_rank=4, u_rank=8)),
                              keras.layers.Dense(int(y.max()) + 1)], name="fastgrnn")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    model.save(path)


def _shrink(path: Path) -> None:
    from keras_rnnedge.datasets import balanced_sample

    with np.load(path) as d:
        arrays = {k: d[k] for k in d.files}
    for split, n in (("train", 96), ("val", 48), ("test", 24)):
        if f"y_{split}" in arrays:
            index = balanced_sample(arrays[f"y_{split}"], n, seed=0)
            arrays[f"x_{split}"] = arrays[f"x_{split}"][index]
            arrays[f"y_{split}"] = arrays[f"y_{split}"][index]
    np.savez(path, **arrays)


@pytest.mark.slow
@pytest.mark.e2e
def test_readme_commands_run_as_written(tmp_path):
    bindir = Path(sys.executable).parent
    if not (bindir / "rnnedge").exists():
        pytest.skip(f"the rnnedge console script is not installed in {bindir}")
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    skipped, model_made = [], False
    for command in readme_commands(README.read_text()):
        missing = sorted({tool for word, tools in _TOOLS.items() if word in command
                          for tool in tools if shutil.which(tool) is None})
        if missing:
            skipped.append(f"{command} (needs {', '.join(missing)})")
            continue
        if not model_made and "fastgrnn.keras" in command:
            _tiny_model(tmp_path / "fastgrnn.keras")
            model_made = True
        done = subprocess.run(shlex.split(command), cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        assert done.stdout.strip(), command
        assert "I0000" not in done.stderr and "cuInit" not in done.stderr, done.stderr[-2000:]
        if command.startswith("rnnedge data"):
            _shrink(tmp_path / "har.npz")
    if skipped and os.environ.get("RNNEDGE_SKIP_TOOLCHAIN") != "1":
        pytest.fail("README commands not run, toolchain missing: " + "; ".join(skipped))
