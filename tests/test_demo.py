"""The main job (``rnnedge demo``) end to end on a tiny budget."""

from __future__ import annotations

import numpy as np
import pytest

from keras_rnnedge import cli
from keras_rnnedge.converters import load_result
from keras_rnnedge.micro_targets.emulate import emulate
from keras_rnnedge.optimize import load_model


@pytest.mark.slow
@pytest.mark.e2e
def test_demo_trains_exports_and_emulates(tmp_path, capsys):
    argv = ["demo", "--epochs", "3", "--max-train", "128", "--max-test", "12",
            "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    for expected in ("test accuracy", "model size", "Total", "exported", "int8 on TFLM",
                     "exported C", "C on the host", "bit-exact with the host build",
                     "cycles per step", ", ETA "):
        assert expected in " ".join(printed.split())  # lines are wrapped at 100 columns
    # 100 columns, except a path too long to wrap (pytest's temporary directory)
    assert [ln for ln in printed.splitlines() if len(ln) > 100 and len(ln.split()) > 1] == []
    model = load_model(tmp_path / "fastgrnn_har6.keras")
    cell = model.get_layer("rnn").cell
    # hard thresholding left exactly the target densities (s_W 0.2, s_U 0.3) in each factor
    for name, density in (("kernel_u", 0.2), ("kernel_v", 0.2), ("recurrent_kernel_u", 0.3),
                          ("recurrent_kernel_v", 0.3)):
        values = getattr(cell, name).numpy()
        assert np.count_nonzero(values) == max(1, round(density * values.size)), name
    export = tmp_path / "nano33ble_fastgrnn_har6"
    assert (export / "arduino" / "fastgrnn_har6" / "fastgrnn_har6.ino").is_file()
    saved = load_result(export)
    x = np.zeros((1, 5, 9), "float32")
    assert emulate(saved, x, runtime="tflm").outputs.shape == (1, 6)
    c_export = tmp_path / "uno_c_fastgrnn_har6"
    assert (c_export / "arduino" / "fastgrnn_har6" / "fastgrnn_har6.ino").is_file()
    assert load_result(c_export).c_sources.keys() == {"fastgrnn_har6.c", "fastgrnn_har6.h"}
