"""Saving without losing anything: model files (.keras and .h5) and conversion output directories.

* ``.h5`` round trips for every registered cell, pruned and QAT models, through
  ``keras_rnnedge.optimize.load_model`` and plain ``keras.models.load_model``;
  ``optimize.save_model`` writes all or nothing and refuses what ``.h5`` cannot hold.
* ``save_directory`` (behind ``ConversionResult.save`` and ``CConversionResult.save``): ``force``
  replaces only earlier outputs; concurrent saves to one path never both succeed and never mix;
  a full disk is one clear error and leaves nothing behind.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import subprocess
import sys
import time
import traceback
import zipfile
from pathlib import Path

import numpy as np
import pytest

from keras_rnnedge import cli, optimize
from keras_rnnedge._compat import keras, tfmot
from keras_rnnedge.cells import CELL_REGISTRY
from keras_rnnedge.converters import ConversionError, OutputExistsError
from keras_rnnedge.converters.result import (
    OUTPUT_MARKER,
    check_output_directory,
    is_conversion_output,
    save_directory,
)
from tests.cell_examples import cases, make

CASES = cases()
IDS = [c[0] for c in CASES]
# The first example of each registered cell: pruning and QAT are per cell class.
FIRST = [next(c for c in CASES if c[1] == name) for name in sorted(CELL_REGISTRY)]
T, F, OUT = 5, 3, 2


def model_of(name, config):
    return keras.Sequential([keras.Input((T, F)), keras.layers.RNN(make(name, config)),
                             keras.layers.Dense(OUT)])


def data(rng, n=8):
    return (rng.normal(size=(n, T, F)).astype("float32"),
            rng.normal(size=(n, OUT)).astype("float32"))


def pruned_model(name, config, rng):
    pruned = optimize.prune_low_magnitude(model_of(name, config), 0.5)
    pruned.compile(keras.optimizers.Adam(0.01), "mse", run_eagerly=True)
    x, y = data(rng)
    pruned.fit(x, y, batch_size=4, epochs=1, verbose=0,
               callbacks=[optimize.UpdatePruningStep()])
    return pruned


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def assert_same_weights(a: keras.Model, b: keras.Model):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for u, v in zip(wa, wb):
        np.testing.assert_array_equal(u, v)


# -- .h5 and .keras model files ----------------------------------------------------------------
@pytest.mark.parametrize("case_id,name,config", CASES, ids=IDS)
def test_h5_round_trip_of_every_cell(case_id, name, config, rng, tmp_path):
    model = model_of(name, config)
    x, _ = data(rng)
    want = model(x).numpy()
    path = optimize.save_model(model, tmp_path / "m.h5")
    for loaded in (keras.models.load_model(path), optimize.load_model(path)):
        assert type(loaded.layers[0].cell) is CELL_REGISTRY[name]
        assert loaded.layers[0].cell.get_config() == model.layers[0].cell.get_config()
        np.testing.assert_array_equal(loaded(x).numpy(), want)


@pytest.mark.parametrize("case_id,name,config", FIRST, ids=[c[0] for c in FIRST])
@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_pruned_model_round_trip(case_id, name, config, suffix, rng, tmp_path):
    pruned = pruned_model(name, config, rng)
    x, _ = data(rng)
    want = pruned(x).numpy()
    masks = {k: m.numpy() for k, m in pruned.layers[0].masks().items()}
    assert masks and all(0 < m.sum() < m.size for m in masks.values())  # really pruned
    pruned.save(tmp_path / f"p{suffix}")  # Keras' own save, not only our helper
    for loaded in (optimize.load_model(tmp_path / f"p{suffix}"),
                   keras.models.load_model(tmp_path / f"p{suffix}")):
        wrapper = loaded.layers[0]
        assert isinstance(wrapper, optimize.PruneLowMagnitudePerWeight)
        got = {k: m.numpy() for k, m in wrapper.masks().items()}
        assert set(got) == set(masks)
        for key, mask in masks.items():
            np.testing.assert_array_equal(got[key], mask, err_msg=key)
        assert int(wrapper.pruning_step.numpy()) == int(pruned.layers[0].pruning_step.numpy())
        np.testing.assert_array_equal(loaded(x).numpy(), want)


@pytest.mark.parametrize("case_id,name,config", FIRST, ids=[c[0] for c in FIRST])
@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_qat_model_round_trip(case_id, name, config, suffix, rng, tmp_path):
    qat = optimize.quantize_model(model_of(name, config))
    x, _ = data(rng)
    qat(x, training=True)  # moves the activation ranges away from their initial values
    want = qat(x, training=False).numpy()
    path = optimize.save_model(qat, tmp_path / f"q{suffix}")
    # keras.models.load_model works without a scope once keras_rnnedge.optimize is imported
    # (it used to fail with "QuantizeLayer of type str").
    for loaded in (optimize.load_model(path), keras.models.load_model(path)):
        assert_same_weights(loaded, qat)
        np.testing.assert_array_equal(loaded(x, training=False).numpy(), want)


def test_pruned_mask_names_are_unique(rng):
    wrapper = pruned_model(*FIRST[0][1:], rng).layers[0]
    names = [w.name.split(":")[0].split("/")[-1] for w in wrapper.non_trainable_weights
             if w.name.split(":")[0].endswith(("mask", "threshold"))]
    assert len(names) == len(set(names)) == 2 * len(wrapper.masks())
    assert {n.rsplit("_", 1)[0] for n in names} == set(wrapper.masks())


def test_save_model_refuses_what_h5_cannot_hold(rng, tmp_path):
    # tfmot's own wrapper names every mask "mask": two pruned weights clash in HDF5.
    model = keras.Sequential([keras.Input((T, F)), keras.layers.LSTM(4),
                              keras.layers.Dense(OUT)])
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
    with pytest.raises(ValueError, match=r"several weights named .*Save it as \.keras"):
        optimize.save_model(pruned, tmp_path / "p.h5")
    assert list(tmp_path.iterdir()) == []
    optimize.save_model(pruned, tmp_path / "p.keras")  # the alternative works
    with pytest.raises(ValueError, match=r"expected a file name ending in \.keras or \.h5"):
        optimize.save_model(model, tmp_path / "m.pb")


def test_save_model_is_all_or_nothing(rng, tmp_path, monkeypatch):
    model = model_of(*FIRST[0][1:])
    path = tmp_path / "m.keras"
    optimize.save_model(model, path)
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()
    before = path.read_bytes()
    real_save = keras.Model.save

    def half_then_fail(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"PK\x03\x04 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", half_then_fail)
    with pytest.raises(OSError, match=r"m\.keras.*disk is full") as info:
        optimize.save_model(model, path)
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before  # the earlier file is kept
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temporary file left
    monkeypatch.setattr(keras.Model, "save", real_save)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        optimize.save_model(model, path, overwrite=False)
    optimize.save_model(model, tmp_path / "new.keras", overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "new.keras"]


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_truncated_model_file_is_one_clear_error(suffix, tmp_path):
    model = model_of(*FIRST[0][1:])
    path = optimize.save_model(model, tmp_path / f"m{suffix}")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=rf"Cannot load the model .*m\{suffix}.*truncated"):
        optimize.load_model(path)
    with pytest.raises(cli.CommandError) as info:
        cli.load_model(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_model_with_support_mask_loads_with_the_cells_alone(tmp_path):
    """The SupportMask constraint is registered with the cells: ``import keras_rnnedge`` is
    enough to load a model trained with HardThresholding (checked in a fresh interpreter)."""
    model = model_of(*FIRST[0][1:])
    cell = model.layers[0].cell
    mask = np.eye(F, cell.units, dtype=bool)
    cell.kernel_constraint = optimize.SupportMask({"kernel": mask})
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        config = json.loads(archive.read("config.json"))
    rnn = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "RNN")
    constraint = rnn["config"]["cell"]["config"]["kernel_constraint"]
    assert constraint["registered_name"] == "keras_rnnedge>SupportMask"
    script = (
        "import sys, numpy as np\n"
        "import keras_rnnedge\n"
        "from keras_rnnedge._compat import keras\n"
        f"m = keras.models.load_model({str(tmp_path / 'm.keras')!r})\n"
        "assert 'keras_rnnedge.optimize' not in sys.modules\n"
        "print(int(m.layers[0].cell.kernel_constraint.masks['kernel'].sum()))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == str(int(mask.sum()))


# -- conversion output directories -----------------------------------------------------------
FILES = {"model.tflite": b"\x00\x00\x00\x00TFL3" + bytes(64), "c/a.h": "// a\n",
         "manifest.json": json.dumps({"name": "m", "target": "host", "quantization": "int8",
                                      "mode": "step", "inputs": [], "outputs": []}),
         "REPORT.txt": "report\n"}


def files_of(tag: str) -> dict[str, str | bytes]:
    """Output files whose every file names ``tag``, to tell outputs apart after a race."""
    return {"model.tflite": b"\x00\x00\x00\x00TFL3" + tag.encode() * 4096,
            **{f"c/part{i}.h": f"// {tag}\n" * 200 for i in range(6)},
            "manifest.json": json.dumps({"name": tag, "target": "host", "quantization": "int8",
                                         "mode": "step", "inputs": [], "outputs": []}),
            "REPORT.txt": f"{tag}\n"}


def test_force_replaces_only_earlier_outputs(tmp_path):
    out = save_directory(tmp_path / "out", FILES, force=False)
    assert out.stat().st_mode & 0o777 == 0o777 & ~_umask()  # not a temporary's owner-only mode
    marker = json.loads((out / OUTPUT_MARKER).read_text())
    assert marker["producer"] == "keras_rnnedge" and marker["format"] == "tflite"
    assert marker["version"]
    assert is_conversion_output(out)
    with pytest.raises(OutputExistsError, match="exists; pass force=True"):
        save_directory(out, FILES, force=False)
    (out / "stale.txt").write_text("old")
    save_directory(out, FILES, force=True)  # an earlier output: replaced entirely
    assert not (out / "stale.txt").exists()

    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "thesis.tex").write_text("precious")
    with pytest.raises(OutputExistsError, match=rf"{unrelated.name}.*not written by "
                                                rf"keras_rnnedge.*{OUTPUT_MARKER}"):
        save_directory(unrelated, FILES, force=True)
    assert (unrelated / "thesis.tex").read_text() == "precious"
    with pytest.raises(OutputExistsError, match="not written by keras_rnnedge"):
        check_output_directory(unrelated, force=True)  # the check the CLI can make up front

    # An output of an earlier version (manifest.json and REPORT.txt, no marker) is recognised.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for rel in ("manifest.json", "REPORT.txt"):
        (legacy / rel).write_text(FILES[rel])
    assert is_conversion_output(legacy)
    save_directory(legacy, FILES, force=True)
    assert (legacy / OUTPUT_MARKER).is_file()
    c_manifest = tmp_path / "c_out"
    c_manifest.mkdir()
    (c_manifest / "manifest.json").write_text(json.dumps(
        {"format": "c", "name": "m", "target": "uno", "precision": "int8"}))
    (c_manifest / "REPORT.txt").write_text("")
    assert is_conversion_output(c_manifest)
    (c_manifest / "REPORT.txt").unlink()  # a manifest alone is not enough
    assert not is_conversion_output(c_manifest)

    empty = tmp_path / "empty"
    empty.mkdir()
    save_directory(empty, FILES, force=True)  # nothing to lose
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(ConversionError, match="is a file"):
        save_directory(a_file, FILES, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a_file", "c_out", "empty", "legacy", "out", "unrelated"]  # no staging leftovers


def test_c_output_marker_names_its_format(tmp_path):
    files = {**FILES, "manifest.json": json.dumps({"format": "c", "name": "m"})}
    out = save_directory(tmp_path / "out", files, force=False)
    assert json.loads((out / OUTPUT_MARKER).read_text())["format"] == "c"


class _SlowModel:
    """Stands in for the Keras model: its save takes a while, so every racer has passed the
    early existence check before any of them renames its output into place."""

    def __init__(self, tag):
        self.tag = tag

    def save(self, path):
        time.sleep(0.5)
        Path(path).write_text(self.tag)


def _save_worker(path, tag, force, barrier, queue):
    try:
        barrier.wait(timeout=60)
        save_directory(path, files_of(tag), force=force, model=_SlowModel(tag))
        queue.put((tag, "ok"))
    except OutputExistsError as exc:
        queue.put((tag, f"OutputExistsError: {exc}"))
    except BaseException:
        queue.put((tag, traceback.format_exc()))


def _race(path: Path, force: bool, n: int = 8) -> dict[str, str]:
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_save_worker, args=(path, f"p{i}", force, barrier, queue))
             for i in range(n)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    return results


def _assert_one_complete_output(out: Path, tag: str):
    want = {**files_of(tag), "model.keras": tag}
    got = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert got == set(want) | {OUTPUT_MARKER}
    for rel, content in want.items():
        data = (out / rel).read_bytes()
        assert data == (content if isinstance(content, bytes) else content.encode()), rel


def test_concurrent_saves_without_force_exactly_one_succeeds(tmp_path):
    out = tmp_path / "out"
    results = _race(out, force=False)
    winners = [tag for tag, r in results.items() if r == "ok"]
    losers = {tag: r for tag, r in results.items() if r != "ok"}
    assert len(winners) == 1, results
    assert all(r.startswith("OutputExistsError") for r in losers.values()), losers
    _assert_one_complete_output(out, winners[0])
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging leftovers


def test_concurrent_saves_with_force_leave_one_complete_output(tmp_path):
    out = save_directory(tmp_path / "out", files_of("first"), force=False,
                         model=_SlowModel("first"))
    results = _race(out, force=True)
    assert all(r == "ok" for r in results.values()), results
    tag = (out / "REPORT.txt").read_text().strip()
    assert tag in results
    _assert_one_complete_output(out, tag)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("where", ["files", "model"])
def test_full_disk_is_one_clear_error_and_leaves_nothing(where, tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "files":
        monkeypatch.setattr(Path, "write_bytes", no_space)
        model = None
    else:
        model = model_of(*FIRST[0][1:])
        monkeypatch.setattr(keras.Model, "save", no_space)
    out = tmp_path / "out"
    with pytest.raises(ConversionError) as info:
        save_directory(out, FILES, force=False, model=model)
    message = str(info.value)
    assert "\n" not in message and str(out) in message and "no space left" in message
    assert list(tmp_path.iterdir()) == []  # neither the output nor a staging directory

    # With force over an earlier output, that output is kept untouched.
    monkeypatch.undo()
    save_directory(out, FILES, force=False)
    monkeypatch.setattr(Path, "write_bytes", no_space)
    with pytest.raises(ConversionError, match="no space left"):
        save_directory(out, files_of("new"), force=True)
    assert (out / "REPORT.txt").read_text() == FILES["REPORT.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
