"""Every notebook in ``notebooks/`` runs top to bottom on a tiny budget and saves its plots.

The notebooks read their budget from the environment (``RNNEDGE_NOTEBOOK_EPOCHS``,
``RNNEDGE_NOTEBOOK_MAX_TRAIN``) and save plots as ``<notebook stem>_*.png`` under
``RNNEDGE_NOTEBOOK_OUT``. The list is a glob, so a new notebook is executed here without
touching this file. The kernel is ipykernel's ``python3`` run by this interpreter, with the
checkout first on ``PYTHONPATH`` so the notebook imports the code under test.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# Budget of the test runs: enough for every phase of a three-phase recipe (one epoch each) and
# a few batches per epoch, so each code path runs once.
EPOCHS = 3
MAX_TRAIN = 256
# Seconds per cell. A tiny-budget cell takes under a minute on 2 cores (XLA compilation of the
# FastGRNN train step dominates); 5 minutes allows a loaded CI machine but still stops a cell
# that hangs or ignores the budget long before the default unlimited wait.
CELL_TIMEOUT = 300
# Prepended to the notebook: the kernel reports the interpreter it runs on.
_WHICH_PYTHON = "import json, sys\nprint(json.dumps([sys.executable, sys.prefix]))"


def _stored(path: Path):
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(path, as_version=4)


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {ROOT / 'notebooks'}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    """Outputs are cleared before committing: the repository stays small, diffs stay clean."""
    with_outputs = [
        i
        for i, cell in enumerate(_stored(path).cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not with_outputs, f"{path.name}: code cells {with_outputs} have stored outputs"


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")

    notebook = _stored(path)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(_WHICH_PYTHON))
    env = {
        **os.environ,
        "RNNEDGE_NOTEBOOK_EPOCHS": str(EPOCHS),
        "RNNEDGE_NOTEBOOK_MAX_TRAIN": str(MAX_TRAIN),
        "RNNEDGE_NOTEBOOK_OUT": str(tmp_path),
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(path.parent)}},  # cwd, as Jupyter runs it
    )
    # Raises CellExecutionError, with the cell's traceback, at the first cell that fails.
    client.execute(env=env)

    # jupyter_client starts the "python3" kernel with sys.executable: same Python, same venv.
    executable, prefix = json.loads(notebook.cells[0].outputs[0]["text"])
    assert os.path.realpath(executable) == os.path.realpath(sys.executable)
    assert prefix == sys.prefix
    errors = [
        (i, output.get("ename"))
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors, f"{path.name}: cells raised {errors}"
    plots = sorted(tmp_path.glob(f"{path.stem}_*.png"))
    assert plots, f"{path.name} saved no {path.stem}_*.png in RNNEDGE_NOTEBOOK_OUT={tmp_path}"
    assert all(plot.stat().st_size > 0 for plot in plots), plots
