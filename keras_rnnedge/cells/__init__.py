"""Compressed recurrent cells, usable in ``keras.layers.RNN``."""

from keras_rnnedge.cells.base import (
    ACTIVATIONS,
    CELL_REGISTRY,
    CellStats,
    CompressedCell,
    get_activation,
    quantized_sigmoid,
    quantized_tanh,
    register_cell,
)
from keras_rnnedge.cells.constraints import SupportMask
from keras_rnnedge.cells.fastgrnn import FastGRNNCell, FastRNNCell
from keras_rnnedge.cells.hlstm import HLSTMCell
from keras_rnnedge.cells.lowrank import (
    LowRankGRUCell,
    LowRankLSTMCell,
    LowRankSimpleRNNCell,
    ProjectionLSTMCell,
)

__all__ = [
    "ACTIVATIONS",
    "CELL_REGISTRY",
    "CellStats",
    "CompressedCell",
    "FastGRNNCell",
    "FastRNNCell",
    "HLSTMCell",
    "LowRankGRUCell",
    "LowRankLSTMCell",
    "LowRankSimpleRNNCell",
    "ProjectionLSTMCell",
    "SupportMask",
    "get_activation",
    "quantized_sigmoid",
    "quantized_tanh",
    "register_cell",
]
