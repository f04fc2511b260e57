"""keras-rnnedge: compressed recurrent cells for tf_keras, from training to microcontrollers.

The names below are loaded on first use: ``import keras_rnnedge`` (and the ``rnnedge`` command's
``--help``) does not import TensorFlow; ``keras_rnnedge.keras``, ``keras_rnnedge.summary``,
``from keras_rnnedge import FastGRNNCell`` and every submodule that needs TensorFlow import it.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

__all__ = [
    "CELL_REGISTRY",
    "FastGRNNCell",
    "FastRNNCell",
    "HLSTMCell",
    "LowRankGRUCell",
    "LowRankSimpleRNNCell",
    "LowRankLSTMCell",
    "ModelSummary",
    "ProjectionLSTMCell",
    "keras",
    "summary",
    "tf",
    "__version__",
]

#: Public name -> the module that defines it.
_LAZY = {
    "keras": "keras_rnnedge._compat",
    "tf": "keras_rnnedge._compat",
    "CELL_REGISTRY": "keras_rnnedge.cells",
    "FastGRNNCell": "keras_rnnedge.cells",
    "FastRNNCell": "keras_rnnedge.cells",
    "HLSTMCell": "keras_rnnedge.cells",
    "ProjectionLSTMCell": "keras_rnnedge.cells",
    "LowRankGRUCell": "keras_rnnedge.cells",
    "LowRankSimpleRNNCell": "keras_rnnedge.cells",
    "LowRankLSTMCell": "keras_rnnedge.cells",
    "ModelSummary": "keras_rnnedge.summary",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_rnnedge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``keras_rnnedge.summary`` is the function :func:`keras_rnnedge.summary.summary`, as it
    was when this package imported everything eagerly; importing the submodule of the same name
    must not replace it (the import system sets a submodule as an attribute of its parent)."""

    @property
    def summary(self):
        return importlib.import_module("keras_rnnedge.summary").summary

    @summary.setter
    def summary(self, value) -> None:  # the submodule being bound on import: keep the function
        pass


sys.modules[__name__].__class__ = _Package
