"""The ``rnnedge`` command: ``summary`` on saved models, and its errors (exit code 2)."""

from __future__ import annotations

import json
import os
import zipfile

import pytest

from keras_rnnedge import cli
from keras_rnnedge._compat import keras, tfmot
from keras_rnnedge.cells import FastGRNNCell
from keras_rnnedge.summary import summary


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
    return path, summary(model).to_text()


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
