"""Quantization-aware training (QAT) of recurrent models with tfmot.

tfmot's ``quantize_model`` refuses every RNN layer (stock ``LSTM`` included). Here a
:class:`CellQuantizeConfig` tells tfmot how to fake-quantize a recurrent layer, and
:func:`quantize_model` annotates the recurrent layers with it, every other layer with tfmot's
defaults, and applies the annotation (``quantize_apply`` in ``quantize_scope``).

What is fake-quantized (simulated int8 during training and inference of the QAT model):

* **the cell's quantizable weights** (``quantizable_weights`` present on the instance; for stock
  cells ``kernel`` and ``recurrent_kernel``): 8-bit, symmetric, narrow range ([-127, 127]),
  per tensor, with tfmot's ``LastValueQuantizer`` (range = the weight's current ``max |w|``).
  A low-rank matrix is quantized factor by factor (``kernel_u`` and ``kernel_v`` separately);
  the product ``kernel_u @ kernel_v`` is not, so a converter that folds the factors into one
  matrix must re-quantize it, which QAT did not simulate;
* **the layer output** (the last ``h``, or the whole sequence with ``return_sequences=True``):
  8-bit asymmetric per tensor with tfmot's ``MovingAverageQuantizer`` (not with
  ``return_state=True``: tfmot's wrapper quantizes single outputs only, so nothing is);
* **the layer input**, by whatever precedes the layer: tfmot's ``QuantizeLayer`` at the model
  input, or the output quantizer of the previous layer; not after a leading
  ``keras.layers.Normalization``, which tfmot has no config for: it is left unannotated (float
  standardisation, weights ``mean``/``variance``/``count`` untouched), so neither the raw input
  nor the standardised features the first recurrent layer reads are fake-quantized (the int8
  converter calibrates the input range on the representative data instead).

Ranges: a weight's range is its current ``max |w|`` from the first training step on. Activation
ranges start at tfmot's [-6, 6] and follow an exponential moving average (decay 0.999) of the
batch ranges, widened to include 0, so they take a few thousand steps to settle; until then the
output rounding step is coarse (12 / 255 for [-6, 6]).

What is not fake-quantized: everything inside the time loop that is not a weight: the recurrent
state ``h_{t-1}`` fed back (and the LSTM cell state ``c``), the matrix products and
pre-activations, the intermediate ``x @ kernel_u`` of a low-rank product, and the gate and
candidate activations; the biases (int32 in an int8 TFLite model, as tfmot leaves ``Dense``
biases); and the scalars ``zeta``, ``nu`` (FastGRNN) and ``alpha``, ``beta`` (FastRNN), which an
integer implementation folds into constants after the sigmoid. The QAT model therefore models
weight rounding and the output range, but not the accumulated rounding of an integer recurrence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keras_rnnedge._compat import keras, register, tfmot
from keras_rnnedge.flexible import WithLevel
from keras_rnnedge.optimize._tfmot import PruneLowMagnitude, QuantizeAnnotate, QuantizeWrapper
from keras_rnnedge.optimize.recurrent import (
    cell_variable,
    is_recurrent,
    recurrent_cell,
    weight_names,
)

__all__ = [
    "CellQuantizeConfig",
    "quantize_annotate",
    "quantize_apply",
    "quantize_model",
    "quantize_scope",
]

_qk = tfmot.quantization.keras
quantize_scope = _qk.quantize_scope


@register
class CellQuantizeConfig(_qk.QuantizeConfig):
    """tfmot ``QuantizeConfig`` for a recurrent layer: int8 weights of its cell, int8 output.

    tfmot hands the config the RNN layer; the weights live on ``layer.cell``. At every call the
    wrapper fake-quantizes the weight variables and :meth:`set_quantize_weights` sets the results
    as attributes of the cell, which reads its weights by attribute on every step.

    Works for ``RNN(cell)`` with a keras_rnnedge cell and for stock ``LSTM``/``GRU``/
    ``SimpleRNN`` (their cells read ``kernel`` and ``recurrent_kernel`` by attribute too).
    """

    def _names(self, layer) -> tuple[str, ...]:
        return weight_names(recurrent_cell(layer), "quantizable")

    def get_weights_and_quantizers(self, layer):
        cell = recurrent_cell(layer)
        return [(cell_variable(cell, name),
                 _qk.quantizers.LastValueQuantizer(num_bits=8, per_axis=False, symmetric=True,
                                                   narrow_range=True))
                for name in self._names(layer)]

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        names = self._names(layer)
        if len(quantize_weights) != len(names):
            raise ValueError(f"Received {len(quantize_weights)} quantized weights for layer "
                             f"{layer.name!r}, expected {len(names)} (for {list(names)}).")
        cell = recurrent_cell(layer)
        for name, value in zip(names, quantize_weights):
            setattr(cell, name, value)

    def set_quantize_activations(self, layer, quantize_activations):
        if quantize_activations:
            raise ValueError(f"Received {len(quantize_activations)} quantized activations for "
                             f"layer {layer.name!r}, expected none.")

    def get_output_quantizers(self, layer):
        if getattr(layer, "return_state", False):
            return []
        return [_qk.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False,
                                                      symmetric=False, narrow_range=False)]

    def get_config(self) -> dict[str, Any]:
        return {}


def _annotate_layer(layer, quantize_config_for_others):
    if isinstance(layer, (QuantizeAnnotate, QuantizeWrapper)):
        return layer
    if isinstance(layer, PruneLowMagnitude):
        raise ValueError(
            f"Received the pruning-wrapped layer {layer.name!r}. Expected a layer without a "
            "pruning wrapper: call strip_pruning(model) before quantization-aware training "
            "(tfmot's prune-preserving scheme does not keep a cell's sparsity).")
    if isinstance(layer, keras.Model):
        raise ValueError(f"Received the nested model {layer.name!r}; tfmot cannot quantize a "
                         "model inside a model. Expected a flat Sequential or functional model.")
    if is_recurrent(layer):
        return _qk.quantize_annotate_layer(layer, quantize_config=CellQuantizeConfig())
    config = quantize_config_for_others.get(layer.name) if quantize_config_for_others else None
    if config is None and isinstance(layer, (keras.layers.Normalization, WithLevel)):
        return layer  # no tfmot config: an unannotated layer stays float, as it is
    return _qk.quantize_annotate_layer(layer, quantize_config=config)


def quantize_annotate(model_or_layer: keras.layers.Layer, *,
                      quantize_configs: Mapping[str, _qk.QuantizeConfig] | None = None,
                      ) -> keras.layers.Layer:
    """Annotate recurrent layers with :class:`CellQuantizeConfig`, others with tfmot defaults.

    Args:
        model_or_layer: a Sequential/functional model (layers are shared, as in tfmot), or one
            layer.
        quantize_configs: optional ``{layer name: QuantizeConfig}`` for non-recurrent layers
            that tfmot does not support by default.

    Returns:
        The annotated layer or model; pass a model to :func:`quantize_apply`.

    Raises:
        ValueError: for a pruning-wrapped layer, a nested model, or a single layer that is not
            a supported recurrent layer (annotating other layers alone is tfmot's job).
    """
    if not isinstance(model_or_layer, keras.Model):
        if not isinstance(model_or_layer, (QuantizeAnnotate, QuantizeWrapper,
                                           PruneLowMagnitude)):
            recurrent_cell(model_or_layer)  # raises for a non-recurrent layer
        return _annotate_layer(model_or_layer, quantize_configs)
    return keras.models.clone_model(
        model_or_layer, input_tensors=None,
        clone_function=lambda layer: _annotate_layer(layer, quantize_configs))


def quantize_apply(annotated_model: keras.Model, **kwargs: Any) -> keras.Model:
    """tfmot's ``quantize_apply`` inside ``quantize_scope`` (so our config deserializes).

    Args:
        annotated_model: a model from :func:`quantize_annotate`.
        **kwargs: passed to tfmot's ``quantize_apply`` (e.g. ``scheme``).

    Returns:
        The quantization-aware model.
    """
    with quantize_scope():
        return _qk.quantize_apply(annotated_model, **kwargs)


def quantize_model(model: keras.Model, *,
                   quantize_configs: Mapping[str, _qk.QuantizeConfig] | None = None,
                   ) -> keras.Model:
    """A QAT copy of ``model``: int8 fake quantization of weights and layer outputs.

    See the module docstring for exactly what is fake-quantized. Compile and train the result as
    usual; it saves to ``.keras`` and loads with :func:`keras_rnnedge.optimize.load_model`.

    Args:
        model: a Sequential or functional tf_keras model (no nested models).
        quantize_configs: optional ``{layer name: QuantizeConfig}`` for other custom layers.

    Returns:
        A new, uncompiled model with the original weights.

    Raises:
        TypeError: if ``model`` is not a keras Model.
        ValueError: see :func:`quantize_annotate`.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"Received {model!r}, expected a tf_keras Sequential or functional "
                        "Model. Wrap a single layer in a model first.")
    return quantize_apply(quantize_annotate(model, quantize_configs=quantize_configs))
