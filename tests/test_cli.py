"""The ``rnnedge`` command: ``summary`` on saved models, and its errors (exit code 2)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
import zipfile

import numpy as np
import pytest

from keras_rnnedge import cli
from keras_rnnedge._compat import keras, tfmot
from keras_rnnedge.cells import FastGRNNCell
from keras_rnnedge.summary import summary
from tests.tolerances import HELP_SECONDS


def make_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((10, 3)),
            keras.layers.RNN(FastGRNNCell(8, u_rank=4), name="rnn"),
            keras.layers.Dense(2, name="dense"),
        ],
        name="demo",
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved model and its summary text, computed before saving."""
    model = make_model()
    path = tmp_path_factory.mktemp("models") / "demo.keras"
    model.save(path)
    return path, summary(model).to_text(wide=False)


def assert_one_line_error(capsys, *fragments: str) -> None:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("rnnedge: error: cannot load model ")
    assert "Traceback" not in captured.err
    for fragment in fragments:
        assert fragment in captured.err


def test_summary_prints_the_table(saved, capsys):
    path, expected = saved
    assert cli.main(["summary", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == expected + "\n"
    assert "RNN(FastGRNNCell)" in captured.out


def test_summary_wide_prints_every_column(saved, capsys):
    path, _ = saved
    assert cli.main(["summary", str(path), "--wide"]) == 0
    out = capsys.readouterr().out
    assert out == summary(keras.models.load_model(path)).to_text() + "\n"
    assert "MACs/inference" in out and "Bytes f32" in out


def test_summary_fits_100_columns(saved, capsys):
    path, compact = saved
    assert "MACs/inference" not in compact and "Bytes int8" in compact
    assert cli.main(["summary", str(path)]) == 0
    assert max(map(len, capsys.readouterr().out.splitlines())) <= 100


def test_summary_json(saved, capsys):
    path, _ = saved
    assert cli.main(["summary", str(path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "demo"
    # 106 + 18, see test_summary.test_fastgrnn_figures
    assert data["totals"]["params"] == 124
    assert [layer["class_name"] for layer in data["layers"]] == ["RNN(FastGRNNCell)", "Dense"]


def test_summary_markdown(saved, capsys):
    path, _ = saved
    assert cli.main(["summary", str(path), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("**Model `demo`**")
    assert "| rnn | RNN(FastGRNNCell) | 106 |" in out


def test_summary_of_a_saved_pruned_model(tmp_path, capsys):
    path = tmp_path / "pruned.keras"
    tfmot.sparsity.keras.prune_low_magnitude(make_model()).save(path)
    assert cli.main(["summary", str(path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layers"][0]["class_name"] == "PruneLowMagnitude(RNN(FastGRNNCell))"
    assert data["totals"]["params"] == 124  # the masks are not parameters


def test_missing_file(tmp_path, capsys):
    path = tmp_path / "absent.keras"
    assert cli.main(["summary", str(path)]) == 2
    assert_one_line_error(capsys, str(path), "no such file", "model.save(")


def test_random_bytes(tmp_path, capsys):
    path = tmp_path / "random.keras"
    path.write_bytes(os.urandom(512))
    assert cli.main(["summary", str(path)]) == 2
    assert_one_line_error(capsys, str(path), "not a zip archive", "model.save(")


def test_truncated_archive(saved, tmp_path, capsys):
    source, _ = saved
    path = tmp_path / "truncated.keras"
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert cli.main(["summary", str(path)]) == 2
    assert_one_line_error(capsys, str(path), "not a zip archive")


def test_zip_that_is_not_a_model(tmp_path, capsys):
    path = tmp_path / "other.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    assert cli.main(["summary", str(path)]) == 2
    assert_one_line_error(capsys, str(path), "config.json", "not a Keras model archive")


def test_archive_with_a_corrupt_config(tmp_path, capsys):
    path = tmp_path / "corrupt.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{not json")
        archive.writestr("metadata.json", "{}")
    assert cli.main(["summary", str(path)]) == 2
    assert_one_line_error(capsys, str(path), "expected a Keras model saved with model.save(")


def test_usage_errors_exit_2(saved, capsys):
    path, _ = saved
    assert cli.main([]) == 2
    assert cli.main(["summary", str(path), "--format", "xml"]) == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def test_subcommands_are_added_from_the_registry(monkeypatch, capsys):
    def add_echo(subparsers):
        parser = subparsers.add_parser("echo", help="print a word")
        parser.add_argument("word")
        parser.set_defaults(run=lambda args: print(args.word) or 0)

    monkeypatch.setattr(cli, "SUBCOMMANDS", [*cli.SUBCOMMANDS, add_echo])
    assert cli.main(["echo", "hi"]) == 0
    assert capsys.readouterr().out == "hi\n"
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "summary" in out and "print a word" in out


@pytest.mark.parametrize("argv, message", [
    (["emulate", "DIR", "--data", "d.npz", "--limit", "-3"],
     "argument --limit: received -3; expected a positive integer (1 or more)"),
    (["run", "DIR", "--target", "host", "--data", "d.npz", "--limit", "0"],
     "argument --limit: received 0; expected a positive integer (1 or more)"),
    (["convert", "m.keras", "--target", "host", "--out", "o", "--calibration", "-5"],
     "argument --calibration: received -5; expected a positive integer (1 or more)"),
    (["convert", "m.keras", "--target", "host", "--out", "o", "--calibration-seed", "-1"],
     "argument --calibration-seed: received -1; expected an integer from 0 to 4294967295"),
    (["convert", "m.keras", "--target", "host", "--out", "o", "--min-agreement", "1.5"],
     "argument --min-agreement: received '1.5'; expected a share from 0 to 1"),
    (["convert", "m.keras", "--target", "host", "--out", "o", "--max-accuracy-drop", "nan"],
     "argument --max-accuracy-drop: received 'nan'; expected accuracy points from 0 to 100"),
    (["demo", "--epochs", "2"], "argument --epochs: received 2; expected an integer of at "
     "least 3"),
    (["demo", "--max-train", "0"], "argument --max-train: received 0; expected a positive"),
    (["demo", "--max-test", "-1"], "argument --max-test: received -1; expected a positive"),
    (["demo", "--c-emulated", "-2"], "argument --c-emulated: received -2; expected an integer "
     "of at least 0"),
    (["demo", "--seed", "-1"], "argument --seed: received -1; expected an integer from 0"),
    (["emulate", "DIR", "--data", "d.npz", "--limit", "two"],
     "argument --limit: received 'two'; expected a positive integer"),
])
def test_numeric_options_are_checked_by_the_parser(argv, message, capsys):
    """Before: ``--limit -3`` used 13 of 16 windows and ``--calibration -5`` one sequence."""
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err


def test_zero_emulated_windows_is_allowed():
    args = cli.build_parser().parse_args(["demo", "--c-emulated", "0", "--seed", "7"])
    assert (args.c_emulated, args.seed) == (0, 7)


# -- a fast, quiet command line ----------------------------------------------------------------

SUBCOMMAND_NAMES = ("summary", "demo", "data", "convert", "emulate", "run")

_HELP_PROBE = """
import sys, time
from keras_rnnedge import cli
for argv in [["--help"], *[[name, "--help"] for name in sys.argv[1:]]]:
    start = time.perf_counter()
    assert cli.main(argv) == 0, argv
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras"))
print("HEAVY", heavy, file=sys.stderr)
"""


def test_help_imports_no_tensorflow():
    """--help of every subcommand, in a fresh interpreter: no TensorFlow in sys.modules."""
    done = subprocess.run([sys.executable, "-c", _HELP_PROBE, *SUBCOMMAND_NAMES],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stderr, done.stderr[-2000:]
    for name in SUBCOMMAND_NAMES:
        assert f"usage: rnnedge {name}" in done.stdout


def test_help_is_fast():
    """Before: every --help imported TensorFlow first (13-27 s on a loaded 2-core machine)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _HELP_PROBE, "convert"], capture_output=True,
                          text=True, timeout=120)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    assert seconds < HELP_SECONDS, f"rnnedge --help took {seconds:.1f} s"


def test_help_describes_every_argument():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {action.dest}" for name, sub in subparsers.choices.items()
               for action in sub._actions
               if not action.help and action.dest not in ("help",)]
    assert missing == []


def test_converter_choices_match_the_converters():
    from keras_rnnedge.converters import C_PRECISIONS, MODES, QUANTIZATIONS

    assert (cli._QUANTIZATIONS, cli._C_PRECISIONS, cli._MODES) == (QUANTIZATIONS, C_PRECISIONS,
                                                                    MODES)


def test_library_logs_are_hidden_unless_verbose(capfd):
    """C++ code writes its logs to file descriptor 2, Python's ``warnings`` to sys.stderr."""
    for verbose in (False, True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with cli.quiet_libraries(verbose):
                os.write(2, b"I0000 native log line\n")
                warnings.warn_explicit("Statistics for quantized inputs were expected",
                                       UserWarning, "convert.py", 1,
                                       module="tensorflow.lite.python.convert")
                warnings.warn("our own warning", UserWarning, stacklevel=1)
                print("a progress line", file=sys.stderr)
        err = capfd.readouterr().err
        messages = " ".join(str(w.message) for w in caught)
        assert ("native log line" in err) is verbose
        assert ("Statistics for quantized inputs" in messages) is verbose
        assert "our own warning" in messages and "a progress line" in err
    os.write(2, b"fd 2 restored\n")
    assert "fd 2 restored" in capfd.readouterr().err


def test_verbose_is_accepted_before_and_after_the_command():
    assert cli.build_parser().parse_args(["--verbose", "data", "har", "--out", "x"]).verbose
    assert cli.build_parser().parse_args(["data", "har", "--out", "x", "--verbose"]).verbose
    assert not getattr(cli.build_parser().parse_args(["data", "har", "--out", "x"]),
                       "verbose", False)


def test_output_is_wrapped_to_100_columns():
    line = "files          " + ", ".join(f"arduino/model/file_{i}.cpp" for i in range(12))
    wrapped = cli.fit_columns(line + "\nshort")
    rows = wrapped.splitlines()
    assert max(map(len, rows)) <= 100 and rows[-1] == "short"
    assert all(row.startswith(" " * 15) for row in rows[1:-1])
    assert " ".join(rows[:-1]).split() == line.split()  # nothing lost or split


# -- data in: `rnnedge data`, windows sampled across the classes ---------------------------------

def test_data_writes_the_npz_the_commands_read(tmp_path, capsys):
    from keras_rnnedge.datasets import NPZ_KEYS, load_har

    out = tmp_path / "har.npz"
    assert cli.main(["data", "har", "--classes", "2", "--out", str(out), "--max-train", "40",
                     "--max-test", "10"]) == 0
    assert str(out) in capsys.readouterr().out
    with np.load(out) as data:
        assert set(data.files) == set(NPZ_KEYS)
        assert data["x_train"].shape == (40, 128, 9) and data["x_test"].shape == (10, 128, 9)
        assert list(data["class_names"]) == list(load_har(2).class_names)
        assert np.bincount(data["y_test"]).tolist() == [5, 5]
        assert np.bincount(data["y_train"]).tolist() == [20, 20]
    x, y = cli._load_npz(out, "eval")
    assert x.shape == (10, 128, 9) and y.shape == (10,)
    assert cli.main(["data", "har", "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err


def test_data_har_holds_out_whole_subjects(tmp_path, capsys):
    from keras_rnnedge.datasets import load_har

    out = tmp_path / "har.npz"
    assert cli.main(["data", "har", "--validation-by", "subject", "--out", str(out)]) == 0
    want = load_har(6, validation_split=0.1, validation_by="subject")
    with np.load(out) as data:
        np.testing.assert_array_equal(data["y_val"], want.y_val)
    capsys.readouterr()
    assert cli.main(["data", "mnist", "--validation-by", "subject", "--out",
                     str(tmp_path / "m.npz")]) == 2
    assert "only har has" in capsys.readouterr().err


def test_emulated_targets_sample_across_the_classes(tmp_path):
    """Before: the first 8 test windows, all STANDING in a class-ordered test set."""
    y = np.repeat(np.arange(6), 50)  # ordered by class, as many test sets are
    x = np.arange(300, dtype=np.float32)[:, None, None] * np.ones((1, 4, 3), np.float32)
    xs, ys = cli._sample_windows(x, y, 8, seed=0)
    counts = np.bincount(ys, minlength=6)
    assert counts.sum() == 8 and counts.max() - counts.min() <= 1
    assert np.array_equal(xs[:, 0, 0].astype(int) // 50, ys)  # windows stay with their labels
    again, _ = cli._sample_windows(x, y, 8, seed=0)
    other, _ = cli._sample_windows(x, y, 8, seed=1)
    assert np.array_equal(xs, again) and not np.array_equal(xs, other)
    path = tmp_path / "d.npz"
    np.savez(path, x_test=x, y_test=y, class_names=np.array(list("ABCDEF")))
    line = cli._class_counts(ys, path)
    assert line.startswith("per class ") and max(map(len, line.splitlines())) <= 100
    assert {f"{c} {n}" for c, n in zip("ABCDEF", counts) if n} == {
        part.strip() for part in line[len("per class"):].replace("\n", " ").split(",")}


def test_the_package_loads_its_names_on_first_use():
    """``import keras_rnnedge`` is light; its public names are the same objects as before."""
    import keras_rnnedge
    import keras_rnnedge.summary as summary_module  # noqa: F401  (binds the submodule)
    from keras_rnnedge.cells import FastGRNNCell

    assert keras_rnnedge.summary is summary
    assert keras_rnnedge.FastGRNNCell is FastGRNNCell and keras_rnnedge.keras is keras
    assert set(keras_rnnedge.__all__) <= set(dir(keras_rnnedge))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        keras_rnnedge.nothing  # noqa: B018


def test_convert_compression_prune(tmp_path, capsys):
    """``--compression prune`` stores the pruned matrices as DECODE encodings; refused for C."""
    import json as _json

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10, 3)),
                              keras.layers.RNN(FastGRNNCell(48, u_rank=24), name="rnn"),
                              keras.layers.Dense(2, name="dense")], name="pruned")
    cell = model.get_layer("rnn").cell
    for weight in (cell.recurrent_kernel_u, cell.recurrent_kernel_v):
        values = weight.numpy()
        weight.assign(np.where(np.abs(values) > np.quantile(np.abs(values), 0.8), values, 0))
    path = tmp_path / "pruned.keras"
    model.save(path)
    data = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x_train=rng.normal(size=(40, 10, 3)).astype("float32"))
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    base = ["convert", str(path), "--target", "nano33ble", "--data", str(data)]
    assert cli.main(base + ["--out", str(plain)]) == 0
    assert cli.main(base + ["--compression", "prune", "--out", str(packed)]) == 0
    capsys.readouterr()
    size = {d: sum(f.stat().st_size for f in d.glob("*.tflite")) for d in (plain, packed)}
    assert 0 < size[packed] < size[plain]
    manifest = _json.loads((packed / "manifest.json").read_text())
    assert manifest["compression"]["method"] == "prune"
    assert cli.main(["convert", str(path), "--target", "uno", "--data", str(data),
                     "--compression", "prune", "--out", str(tmp_path / "c")]) == 2
    assert "applies to --format tflite" in capsys.readouterr().err
    # one scale per weight matrix: smaller still, recorded in the manifest
    scaled = tmp_path / "per_tensor"
    assert cli.main(base + ["--compression", "prune", "--weight-scales", "per-tensor",
                            "--out", str(scaled)]) == 0
    assert "int8, per-tensor scales" in capsys.readouterr().out
    assert _json.loads((scaled / "manifest.json").read_text())["weight_scales"] == "per-tensor"
    assert (scaled / "model.tflite").stat().st_size < (packed / "model.tflite").stat().st_size
    # without the strings no interpreter reads: smaller again, compression still checked
    bare = tmp_path / "stripped"
    assert cli.main(base + ["--compression", "prune", "--weight-scales", "per-tensor",
                            "--strip-strings", "--out", str(bare)]) == 0
    assert "tflm compressed vs uncompressed" in capsys.readouterr().out
    assert (bare / "model.tflite").stat().st_size < (scaled / "model.tflite").stat().st_size
    assert cli.main(["convert", str(path), "--target", "uno", "--data", str(data),
                     "--weight-scales", "per-tensor", "--out", str(tmp_path / "c2")]) == 2
    assert "--weight-scales per-tensor applies to --format tflite" in capsys.readouterr().err
