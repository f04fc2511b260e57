"""What used to convert silently wrong: masked models, process-dependent flatbuffers."""

from __future__ import annotations

import numpy as np
import pytest

from keras_rnnedge._compat import keras
from keras_rnnedge.cells import FastGRNNCell
from keras_rnnedge.converters import ConversionError, convert, convert_c, without_masking
from keras_rnnedge.converters.c.intmodel import quantize_model
from tests import tolerances

T, F = 8, 3


def _model(seed: int = 0, masking: bool = False, name: str | None = None) -> keras.Model:
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((T, F))]
    if masking:
        layers.append(keras.layers.Masking(0.0))
    layers += [keras.layers.RNN(FastGRNNCell(4)), keras.layers.Dense(2)]
    return keras.Sequential(layers, name=name)


def _data(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, T, F)).astype("float32")


@pytest.mark.parametrize("convert_fn", ["convert", "convert_c"])
def test_masking_is_refused_with_the_way_out(convert_fn):
    model = _model(masking=True)
    with pytest.raises(ConversionError, match=r"'masking' \(Masking, mask_value=0.0\).*"
                                              r"without_masking\(model\)"):
        if convert_fn == "convert":
            convert(model, target="host", quantization="float32", representative_data=_data())
        else:
            convert_c(model, target="host", representative_data=_data())


def test_without_masking_equals_the_masked_model_on_unpadded_sequences():
    masked = _model(masking=True)
    plain = without_masking(masked)
    assert not any(isinstance(layer, keras.layers.Masking) for layer in plain.layers)
    x = _data()
    np.testing.assert_allclose(plain.predict(x, verbose=0), masked.predict(x, verbose=0),
                               atol=tolerances.REORDER_ATOL)
    # and it converts: the C oracle of the unmasked model runs
    im = quantize_model(plain, x)
    assert im.run(x[0]).shape == (2,)


def test_padding_makes_the_difference_the_refusal_prevents():
    """The reason for the refusal: on padded input the unmasked model differs."""
    masked = _model(masking=True)
    padded = _data()
    padded[:, T // 2:] = 0.0
    diff = np.abs(without_masking(masked).predict(padded, verbose=0)
                  - masked.predict(padded, verbose=0)).max()
    assert diff > 1e-3


@pytest.mark.parametrize("quantization", ["float32", "int8"])
def test_flatbuffer_does_not_depend_on_earlier_conversions(quantization):
    """The same model converted twice, and an identical model built later in the process,
    give byte-identical flatbuffers (the lowering names its layers by position)."""
    x = _data()
    first = _model(name="m")
    a = convert(first, target="host", quantization=quantization, representative_data=x)
    b = convert(first, target="host", quantization=quantization, representative_data=x)
    keras.layers.RNN(FastGRNNCell(4))  # advance Keras' layer-name counters
    c = convert(_model(name="m"), target="host", quantization=quantization,
                representative_data=x)
    assert a.flatbuffer == b.flatbuffer == c.flatbuffer
    assert a.files == c.files  # model.tflite and the C array


class _MyFastGRNNCell(FastGRNNCell):
    """A user's subclass (say, to add a regularizer): converts as its base class."""


def test_a_subclass_of_a_supported_cell_converts():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((T, F)), keras.layers.RNN(_MyFastGRNNCell(4)),
                              keras.layers.Dense(2)])
    x = _data()
    tfl = convert(model, target="host", quantization="float32", representative_data=x)
    assert tfl.checks["lowered vs keras"] <= tolerances.FLOAT_TFLITE_ATOL
    im = quantize_model(model, x)
    assert im.recurrent[0].kind == "fastgrnn"
