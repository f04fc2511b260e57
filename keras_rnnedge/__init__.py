"""keras-rnnedge: compressed recurrent cells for tf_keras, from training to microcontrollers."""

from keras_rnnedge._compat import keras, tf
from keras_rnnedge.cells import (
    CELL_REGISTRY,
    FastGRNNCell,
    FastRNNCell,
    LowRankGRUCell,
    LowRankLSTMCell,
)
from keras_rnnedge.summary import ModelSummary, summary

__version__ = "0.1.0"

__all__ = [
    "CELL_REGISTRY",
    "FastGRNNCell",
    "FastRNNCell",
    "LowRankGRUCell",
    "LowRankLSTMCell",
    "ModelSummary",
    "keras",
    "summary",
    "tf",
    "__version__",
]
