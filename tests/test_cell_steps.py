"""A cell kind is one module plus one registry entry (:mod:`keras_rnnedge.cells.step`).

The minimal gated unit (MGU, Zhou et al. 2016) is not part of the package: this file defines it
as a plain Keras cell, declares its step, registers it, and then the whole pipeline takes it
without any other change: the integer oracle (checked against the Keras model), the integer C
(bit for bit against the oracle), the float C and TFLite (both against the Keras model). Also:
subclasses of a registered cell run their base's step, declarations are validated, and no
converter module dispatches on a cell kind's name.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from keras_rnnedge._compat import keras, tf
from keras_rnnedge.cells.step import (
    BOUNDED_ACTIVATIONS,
    GATE_ACTIVATIONS,
    STEPS,
    CellStep,
    LSTMStep,
    StateVector,
    register_step,
    step_of,
)
from keras_rnnedge.converters import convert, convert_c
from keras_rnnedge.micro_targets.crun import run_c
from keras_rnnedge.micro_targets.emulate import emulate
from tests.test_cgen_float import ATOL as FLOAT_C_ATOL
from tests.tolerances import FLOAT_TFLITE_ATOL

F, H, T = 5, 8, 12

#: The integer model (int16 weights, Q15) against the float Keras model: weight rounding of
#: 2^-15 relative, the tanh/sigmoid tables (<1e-4) and state rounding over 12 steps; a wrong
#: gate or a missing bias moves the scores by 0.1 or more.
INT16_ATOL = 2e-3


class MGUCell(keras.layers.Layer):
    """Minimal gated unit: ``f = σ(x W_f + h U_f + b_f)``,
    ``h̃ = tanh(x W_h + (f h) U_h + b_h)``, ``h' = (1 - f) h + f h̃``."""

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], 2 * self.units))
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel",
                                                shape=(self.units, 2 * self.units))
        self.bias = self.add_weight(name="bias", shape=(2 * self.units,),
                                    initializer="random_normal")

    def call(self, inputs, states):
        h = states[0] if isinstance(states, (list, tuple)) else states
        n = self.units
        xw = tf.matmul(inputs, self.kernel) + self.bias
        f = self.recurrent_activation(xw[:, :n] + tf.matmul(h, self.recurrent_kernel[:, :n]))
        c = self.activation(xw[:, n:] + tf.matmul(f * h, self.recurrent_kernel[:, n:]))
        h_new = (1.0 - f) * h + f * c
        return h_new, [h_new]

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "recurrent_activation": keras.activations.serialize(self.recurrent_activation)}


class MGUStep(CellStep):
    name = "mgu"
    gates = {"kernel": 2, "recurrent_kernel": 2}
    activations = {"activation": BOUNDED_ACTIVATIONS, "recurrent_activation": GATE_ACTIVATIONS}

    def biases(self, cell, weights):
        return {"bias": (np.asarray(weights["bias"], np.float64), True)}

    def equations(self, b, cell):
        x, h = b.input(), b.state("h")
        f = b.act("recurrent_activation", b.add(b.add(b.product("kernel", x, 0), b.bias("bias", 0)),
                                               b.product("recurrent_kernel", h, 0)), name="f")
        fh = b.vector(b.mul(f, h), name="fh")
        c = b.act("activation", b.add(b.add(b.product("kernel", x, 1), b.bias("bias", 1)),
                                      b.product("recurrent_kernel", fh, 1)), name="c")
        return {"h": b.add(b.mul(b.sub(b.one(), f), h), b.mul(f, c))}


@pytest.fixture(scope="module")
def mgu():
    register_step(MGUCell, MGUStep())
    rng = np.random.default_rng(3)
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((T, F)), keras.layers.RNN(MGUCell(H)),
                              keras.layers.Dense(3)])
    x = rng.normal(size=(48, T, F)).astype("float32")
    yield model, x
    STEPS.pop(MGUCell, None)


def test_new_cell_kind_integer_oracle_and_c(mgu):
    model, x = mgu
    want = model.predict(x, verbose=0)
    result = convert_c(model, target="host", representative_data=x, precision="int16",
                       checks="warn", progress=False)
    im = result.int_model
    assert im.recurrent[0].kind == "mgu"
    np.testing.assert_allclose(im.dequantize(im.run(x)), want, atol=INT16_ATOL)
    assert "int16_t fh[8];" in result.c_sources[f"{result.name}.c"]  # the vector node's buffer
    got = run_c(result, result.quantize_input(x[:6]), target="host", progress=False)
    np.testing.assert_array_equal(got.scores, im.run(x[:6]))


def test_new_cell_kind_float_c_and_tflite(mgu):
    model, x = mgu
    want = model.predict(x[:6], verbose=0)
    result = convert_c(model, target="host", representative_data=x, precision="float32",
                       checks="warn", progress=False)
    got = run_c(result, result.quantize_input(x[:6]), target="host", progress=False)
    np.testing.assert_allclose(got.scores, want, atol=FLOAT_C_ATOL)
    converted = convert(model, target="host", quantization="float32", progress=False)
    out = emulate(converted, x[:6], runtime="tflm", progress=False)
    np.testing.assert_allclose(out.outputs, want, atol=FLOAT_TFLITE_ATOL)


def test_subclass_runs_its_base_step():
    class MyLSTMCell(keras.layers.LSTMCell):
        pass

    assert isinstance(step_of(MyLSTMCell(4)), LSTMStep)
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((T, F)), keras.layers.RNN(MyLSTMCell(H)),
                              keras.layers.Dense(3)])
    x = rng.normal(size=(48, T, F)).astype("float32")
    result = convert_c(model, target="host", representative_data=x, precision="int16",
                       checks="warn", progress=False)
    np.testing.assert_allclose(result.int_model.dequantize(result.int_model.run(x)),
                               model.predict(x, verbose=0), atol=INT16_ATOL)


def test_declarations_are_validated():
    class Broken(MGUStep):
        def equations(self, b, cell):
            return {"h": b.product("kernel", b.input(), 2)}  # MGU's kernel has 2 gates

    cell = MGUCell(4)
    with pytest.raises(ValueError, match="Matrix 'kernel' has 2 gates, but gate 2 was read"):
        Broken().graph(cell)

    class Missing(MGUStep):
        def state(self, cell):
            return (StateVector("h", 4), StateVector("c", 4))

    with pytest.raises(ValueError, match="new value of every state vector"):
        Missing().graph(cell)

    class MixedFormats(MGUStep):
        def state(self, cell):
            return (StateVector("h", 4), StateVector("c", 4, calibrated=True))

        def equations(self, b, cell):
            return {"h": b.add(b.state("h"), b.state("c")), "c": b.state("c")}

    from keras_rnnedge.converters.c.intmodel import step_formats

    with pytest.raises(ValueError, match=r"adds values in Q15 and Q12.*must rescale"):
        step_formats(MixedFormats().graph(cell), 15, {"h": 15, "c": 12}, 15, "l")
    with pytest.raises(TypeError, match="Expected a CellStep"):
        register_step(MGUCell, object())


def test_no_converter_dispatches_on_a_cell_kind():
    """The converters read the declarations: no comparison with a kind's name remains."""
    root = Path(__file__).resolve().parents[1] / "converters"
    kinds = "|".join(sorted({s.name for s in STEPS.values()}))
    pattern = re.compile(rf"""(==|!=|\bin\b)\s*\(?["'](?:{kinds})["']""")
    found = [f"{p.name}: {line.strip()}" for p in sorted(root.rglob("*.py"))
             for line in p.read_text().splitlines() if pattern.search(line)]
    assert not found, found
