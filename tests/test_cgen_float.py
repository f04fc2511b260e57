"""The float build of the standalone C against its oracle, the Keras model itself.

Every cell kind of the integer build (the configurations of tests/test_intmodel.py: FastGRNN,
FastRNN, low-rank and stock LSTM/GRU in both reset modes, SimpleRNN, sparse and stacked, Dense
heads), compiled with ``gcc -Wall -Wextra -Werror`` (and the sanitizers) on the host, and for the
Cortex-M4F (hard float) in QEMU.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from keras_rnnedge._compat import keras
from keras_rnnedge.converters.c.cgen_float import generate_float_c
from keras_rnnedge.micro_targets.harness import build_and_run_cortex_m4, build_and_run_host
from tests.test_intmodel import CONFIGS, _make_cached
from tests.test_targets_emulated import _toolchain

# float32 C against TensorFlow's float32: the same products summed in another order (and
# libm's expf/tanhf against Eigen's), over 12 steps: a few ulp of values of order 1.
ATOL = 2e-5


def _main(ident: str, x: np.ndarray, outputs: int) -> str:
    n, t, f = x.shape
    rows = ",\n".join("    {" + ", ".join(f"{float(v)!r}f" for v in step) + "}"
                      for step in x.reshape(-1, f))
    return (f'#include <stdio.h>\n#include "{ident}.h"\n'
            f"static const float inputs[{n * t}][{f}] = {{\n{rows}\n}};\n"
            "int main(void) {\n"
            f"    static {ident}_state_t s;\n    float y[{outputs}];\n    int n, t, i;\n"
            f"    for (n = 0; n < {n}; ++n) {{\n        {ident}_reset(&s);\n"
            f"        for (t = 0; t < {t}; ++t) {ident}_step(&s, inputs[n * {t} + t]);\n"
            f"        {ident}_predict(&s, y);\n        printf(\"y\");\n"
            f"        for (i = 0; i < {outputs}; ++i) printf(\" %.9g\", (double)y[i]);\n"
            "        printf(\"\\n\");\n    }\n    return 0;\n}\n")


def _scores(text: str) -> np.ndarray:
    return np.array([[float(v) for v in line.split()[1:]] for line in text.splitlines()
                     if line.startswith("y")])


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_float_c_matches_keras_on_the_host(config):
    model, _, data = _make_cached(config)
    x = np.asarray(data[:4], np.float32)
    files = generate_float_c(model, "m")
    assert not re.search(r"\b(int8_t|int16_t|int32_t)\b", files["m.c"])  # float arithmetic
    out = build_and_run_host(files, _main("m", x, 3), sanitize=True)
    got = _softmax(_scores(out))
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=ATOL, rtol=0)


def test_float_c_on_the_cortex_m4_hard_float():
    _toolchain("cortex_m4")
    model, _, data = _make_cached("fastgrnn_lowrank_sparse_int8")
    x = np.asarray(data[:2], np.float32)
    files = generate_float_c(model, "m")
    r = build_and_run_cortex_m4(files, _main("m", x, 3))
    np.testing.assert_allclose(_softmax(_scores(r.stdout)), model.predict(x, verbose=0),
                               atol=ATOL, rtol=0)
    assert r.model_flash_bytes > 0


def test_sparse_matrices_are_stored_as_csr():
    model, _, _ = _make_cached("lstm_sparse_int8")
    source = generate_float_c(model, "m")["m.c"]
    assert "CSR */" in source and "rf_mv_csr_c8(" in source
    dense_model, _, _ = _make_cached("lstm_full_int8")
    assert "CSR */" not in generate_float_c(dense_model, "m")["m.c"]


def test_errors_name_the_layer_and_the_weight():
    model = keras.Sequential([keras.Input((4, 2)), keras.layers.Conv1D(3, 2, name="conv"),
                              keras.layers.GRU(3), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="conv"):
        generate_float_c(model, "m")
    model, _, _ = _make_cached("fastrnn_full_int8")
    bad = keras.models.clone_model(model)
    weights = model.get_weights()
    weights[0] = weights[0].copy()
    weights[0][0, 0] = np.nan
    bad.set_weights(weights)
    with pytest.raises(ValueError, match="NaN"):
        generate_float_c(bad, "m")


def test_head_errors_are_named():
    """The head is read once (intmodel.head_layers) for the integer and the float C."""
    from keras_rnnedge.converters.c.intmodel import quantize_model

    x = np.zeros((2, 4, 2), np.float32)

    def model(*head):
        return keras.Sequential([keras.Input((4, 2)), keras.layers.GRU(3), *head])

    relu_then_act = model(keras.layers.Dense(2, activation="relu", name="d"),
                          keras.layers.Activation("softmax", name="act"))
    softmax_hidden = model(keras.layers.Dense(4, activation="softmax", name="hidden"),
                           keras.layers.Dense(2))
    for bad, match in ((relu_then_act, "'act'.*must follow a Dense layer with a linear"),
                       (softmax_hidden, "'hidden'.*softmax is supported only on the last")):
        with pytest.raises(ValueError, match=match):
            generate_float_c(bad, "m")
        with pytest.raises(ValueError, match=match):
            quantize_model(bad, x)
    ok = model(keras.layers.Dense(2, name="d"), keras.layers.Activation("softmax"))
    assert "rf_mv_dense" in generate_float_c(ok, "m")["m.c"]
