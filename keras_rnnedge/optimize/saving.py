"""Loading models that hold keras_rnnedge cells, pruning wrappers and QAT wrappers.

tfmot 0.8.1 cannot load its own quantization-aware models from ``.keras`` files
(tensorflow/model-optimization PR #1123, open): loading builds ``QuantizeLayer`` twice (its
``build`` never marks it built), and ``QuantizeWrapperV2`` records its inner layer's weights
only if that layer was built before the wrapper, which it is when tfmot creates the model but
not when Keras loads it. Either way the saved variables do not match ("expected 5 variables,
but received 3"). :func:`load_model` substitutes two subclasses that fix those ``build``
methods. They keep tfmot's class names, because ``.keras`` files address each layer's variables
by the snake-cased class name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from os import PathLike
from typing import Any

from keras_rnnedge._compat import keras, tfmot
from keras_rnnedge.optimize._tfmot import QuantizeLayer as _TfmotQuantizeLayer
from keras_rnnedge.optimize._tfmot import QuantizeWrapperV2 as _TfmotQuantizeWrapperV2

__all__ = ["load_model", "optimize_scope"]


class QuantizeLayer(_TfmotQuantizeLayer):
    """tfmot's ``QuantizeLayer``, marked built after ``build`` (so loading builds it once)."""

    def build(self, input_shape):
        super().build(input_shape)
        self.built = True


class QuantizeWrapperV2(_TfmotQuantizeWrapperV2):
    """tfmot's ``QuantizeWrapperV2`` that builds the wrapped layer before recording its weights."""

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
            self.layer.built = True
        super().build(input_shape)


@contextmanager
def optimize_scope(custom_objects: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Deserialization scope for models with pruning and QAT wrappers.

    Combines tfmot's ``prune_scope`` and ``quantize_scope`` with the loading fixes of this
    module; keras_rnnedge's own classes are registered and need no scope.

    Args:
        custom_objects: further ``{name: class or function}`` to make available.
    """
    with ExitStack() as stack:
        stack.enter_context(tfmot.sparsity.keras.prune_scope())
        stack.enter_context(tfmot.quantization.keras.quantize_scope())
        stack.enter_context(keras.utils.custom_object_scope(
            {"QuantizeLayer": QuantizeLayer, "QuantizeWrapperV2": QuantizeWrapperV2,
             **dict(custom_objects or {})}))
        yield


def load_model(path: str | PathLike, *, custom_objects: Mapping[str, Any] | None = None,
               compile: bool = True) -> keras.Model:
    """Load a model saved with keras_rnnedge cells, pruning and/or QAT wrappers.

    Args:
        path: a ``.keras`` file (``.h5`` and SavedModel directories work too).
        custom_objects: further custom objects (keras_rnnedge classes are registered already).
        compile: whether to restore the training configuration.

    Returns:
        The loaded model.
    """
    with optimize_scope(custom_objects):
        return keras.models.load_model(path, compile=compile)
