"""The hidden-layer LSTM (H-LSTM) of Dai, Yin and Jha, "Grow and Prune Compact, Fast, and
Accurate LSTMs" (IEEE Transactions on Computers, 2020).

Each control gate and the cell candidate is a small multi-layer perceptron over
``[x_t, h_{t-1}]`` instead of one affine map: a hidden layer (ReLU by default, optional dropout)
then the gate's own output layer. Stacking LSTM layers deepens the recurrence; the H-LSTM deepens
the gates and keeps one layer, which grow-and-prune training
(:class:`keras_rnnedge.optimize.GrowAndPrune`) then makes sparse.
"""

from __future__ import annotations

import numbers

from keras_rnnedge._compat import keras, tf
from keras_rnnedge.cells.base import (
    CellStats,
    activation_name,
    add_matrix,
    check_positive_int,
    fresh,
    get_activation,
    matmul,
    matmul_columns,
    rank_of,
    register_cell,
    structure_config,
)
from keras_rnnedge.cells.lowrank import LowRankLSTMCell
from keras_rnnedge.cells.step import (
    BOUNDED_ACTIVATIONS,
    LSTMStep,
    _bias,
    register_step,
)

__all__ = ["HLSTMCell"]

#: Activations of the hidden layers that the converters implement in integers.
HIDDEN_ACTIVATIONS = ("relu", "linear") + BOUNDED_ACTIVATIONS


@register_cell
class HLSTMCell(LowRankLSTMCell):
    r"""LSTM whose gates are small MLPs: the H-LSTM (Dai, Yin, Jha 2020).

    For each gate ``k`` of ``i, f, c, o`` (Keras order), with ``H`` = ``hidden_units``:

    ``s_k = ψ(x_t W_k + h_{t-1} U_k + b_k)`` (``H`` values, ``ψ`` = ``hidden_activation``,
    dropout ``hidden_dropout`` in training), ``g_k = s_k V_k + d_k``, then the LSTM:
    ``c_t = σ(g_f) c_{t-1} + σ(g_i) φ(g_c)``, ``h_t = σ(g_o) φ(c_t)``.

    ``W = [W_i .. W_o]`` (``kernel``, ``F x 4H``), ``U`` (``recurrent_kernel``, ``units x 4H``)
    and ``V = [V_i .. V_o]`` (``gate_kernel``, ``H x 4 units``; block ``k`` reads ``s_k``) are
    matrices like any other: each takes a structure (``kernel_structure``,
    ``recurrent_structure``, ``gate_structure``; the rank arguments are the low-rank short form),
    and grow-and-prune or pruning makes them sparse. ``hidden_bias`` is ``b``, ``bias`` is ``d``
    (with the forget gate's unit bias).

    With ``hidden_units=None`` the gates have no hidden layer and the cell is exactly
    ``keras.layers.LSTMCell`` given the same weights.

    Parameters: ``4H (F + units) + 4 units H + 4H + 4 units`` (dense matrices).

    Example:
        >>> import numpy as np
        >>> from keras_rnnedge import keras
        >>> from keras_rnnedge.cells import HLSTMCell
        >>> keras.layers.RNN(HLSTMCell(32, hidden_units=16))(np.zeros((1, 5, 9), "float32")).shape
        TensorShape([1, 32])
    """

    def __init__(self, units: int, *, hidden_units: int | None = None,
                 hidden_activation="relu", hidden_dropout: float = 0.0,
                 gate_rank: int | None = None, gate_structure=None,
                 gate_initializer="glorot_uniform", gate_regularizer=None, gate_constraint=None,
                 **kwargs):
        super().__init__(units, **kwargs)
        self.hidden_units = (None if hidden_units is None
                             else check_positive_int(hidden_units, "hidden_units"))
        self.hidden_activation = get_activation(hidden_activation, "hidden_activation")
        if activation_name(self.hidden_activation) not in HIDDEN_ACTIVATIONS:
            raise ValueError(f"Received hidden_activation={hidden_activation!r}; expected one "
                             f"of {list(HIDDEN_ACTIVATIONS)} (those the converters implement "
                             "in integers).")
        if (isinstance(hidden_dropout, bool) or not isinstance(hidden_dropout, numbers.Real)
                or not 0.0 <= hidden_dropout < 1.0):
            raise ValueError(f"Received hidden_dropout={hidden_dropout!r}; expected a rate in "
                             "[0, 1) (the fraction of hidden units dropped in training).")
        self.hidden_dropout = float(hidden_dropout)
        if self.hidden_units is None:
            if gate_rank is not None or gate_structure is not None:
                raise ValueError(
                    f"Received gate_rank={gate_rank!r} / gate_structure={gate_structure!r} "
                    "with hidden_units=None: without hidden layers there is no gate_kernel. "
                    "Give hidden_units, or drop the gate arguments.")
        else:
            self.set_structure("gate_kernel", gate_rank, "gate_rank", gate_structure,
                               "gate_structure", limit=min(self.units, self.hidden_units))
        self.gate_initializer = keras.initializers.get(gate_initializer)
        self.gate_regularizer = keras.regularizers.get(gate_regularizer)
        self.gate_constraint = keras.constraints.get(gate_constraint)

    @property
    def _hidden_width(self) -> int:
        """Columns of each gate's block in ``kernel`` and ``recurrent_kernel``."""
        return self.units if self.hidden_units is None else self.hidden_units

    def build(self, input_shape):
        if self.hidden_units is None:
            super().build(input_shape)
            self.hidden_bias = None
            return
        input_dim = self.step_input_dim(input_shape)
        self.input_dim = input_dim
        width = 4 * self.hidden_units
        add_matrix(self, "kernel", (input_dim, width), self.kernel_initializer,
                   self.kernel_regularizer, self.kernel_constraint)
        add_matrix(self, "recurrent_kernel", (self.units, width), self.recurrent_initializer,
                   self.recurrent_regularizer, self.recurrent_constraint)
        add_matrix(self, "gate_kernel", (self.hidden_units, 4 * self.units),
                   self.gate_initializer, self.gate_regularizer, self.gate_constraint)
        self.hidden_bias = self.bias = None
        if self.use_bias:
            self.hidden_bias = self.add_weight(
                name="hidden_bias", shape=(width,), initializer=fresh(self.bias_initializer),
                regularizer=self.bias_regularizer, constraint=self.bias_constraint)
            self.bias = self.add_weight(name="bias", shape=self._bias_shape(),
                                        initializer=self._bias_initializer(),
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)
        self.built = True

    def compression_stats(self) -> CellStats:
        if self.hidden_units is None:
            return super().compression_stats()
        f = self._require_built()
        n, hid = self.units, self.hidden_units
        biases = 4 * (hid + n) if self.use_bias else 0
        matrices = self.matrix_cost()
        return CellStats(params=matrices.params + biases,
                         dense_params=4 * hid * (f + n) + 4 * n * hid + biases,
                         macs_per_step=matrices.macs, state_size=2 * n)

    def hidden(self, inputs, h, training=None):
        """The four gates' hidden layers ``s``, concatenated (``4 hidden_units`` values)."""
        s = matmul(self, inputs, "kernel") + matmul(self, h, "recurrent_kernel")
        if self.use_bias:
            s = s + self.hidden_bias
        s = self.hidden_activation(s)
        if training and self.hidden_dropout > 0.0:
            s = tf.nn.dropout(s, rate=self.hidden_dropout)
        return s

    def transition(self, inputs, states, training=None):
        if self.hidden_units is None:
            return super().transition(inputs, states, training=training)
        h, c = states[0], states[1]
        parts = tf.split(self.hidden(inputs, h, training), 4, axis=-1)
        n = self.units
        i, f, g, o = (matmul_columns(self, s, "gate_kernel", k * n, (k + 1) * n)
                      for k, s in enumerate(parts))
        if self.use_bias:
            i, f, g, o = (v + b for v, b in zip((i, f, g, o), tf.split(self.bias, 4)))
        act, rec = self.activation, self.recurrent_activation
        c_new = rec(f) * c + rec(i) * act(g)
        h_new = rec(o) * act(c_new)
        return h_new, [h_new, c_new]

    def get_config(self):
        ser = keras.initializers.serialize
        config = {**super().get_config(), "hidden_units": self.hidden_units,
                  "hidden_activation": activation_name(self.hidden_activation),
                  "hidden_dropout": self.hidden_dropout,
                  "gate_initializer": ser(self.gate_initializer),
                  "gate_regularizer": keras.regularizers.serialize(self.gate_regularizer),
                  "gate_constraint": keras.constraints.serialize(self.gate_constraint)}
        gate = self.structures.get("gate_kernel")
        config["gate_rank"] = None if gate is None else rank_of(gate)
        config["gate_structure"] = None if gate is None else structure_config(gate)
        return config


class HLSTMStep(LSTMStep):
    """The LSTM step with a hidden layer in each gate: ``s_k = ψ(x W_k + h U_k + b_k)`` is a
    vector in a calibrated format (a ReLU's values exceed 1), read by ``gate_kernel``'s block
    ``k``. Without hidden layers it is the LSTM's step."""

    name = "hlstm"
    gates = {"kernel": 4, "recurrent_kernel": 4, "gate_kernel": 4}
    activations = {**LSTMStep.activations, "hidden_activation": HIDDEN_ACTIVATIONS}

    def widths(self, cell):
        if cell.hidden_units is None:
            return {}
        return {"kernel": cell.hidden_units, "recurrent_kernel": cell.hidden_units}

    def biases(self, cell, weights):
        if cell.hidden_units is None:
            return super().biases(cell, weights)
        n, hid = int(cell.units), int(cell.hidden_units)
        return {"hidden_bias": (_bias(weights, "hidden_bias", 4 * hid), True),
                "bias": (_bias(weights, "bias", 4 * n), False)}

    def matrices(self, cell):
        if cell.hidden_units is None:
            return {"kernel": 4, "recurrent_kernel": 4}
        return dict(self.gates)

    def equations(self, b, cell):
        if cell.hidden_units is None:
            return super().equations(b, cell)
        x, h, hid = b.input(), b.state("h"), int(cell.hidden_units)
        names = ("ig", "fg", "g", "og")

        def gate(k: int, role: str):
            pre = b.add(b.add(b.product("kernel", x, k), b.product("recurrent_kernel", h, k)),
                        b.bias("hidden_bias", k, width=hid))
            s = b.vector(b.act("hidden_activation", pre), name=f"s_{names[k]}", calibrated=True)
            return b.act(role, b.add(b.product("gate_kernel", s, k), b.bias("bias", k)),
                         name=names[k])

        i = gate(0, "recurrent_activation")
        f = gate(1, "recurrent_activation")
        g = gate(2, "activation")
        o = gate(3, "recurrent_activation")
        c = b.sat16(b.add(b.mul(f, b.state("c"), like="c"), b.mul(i, g, like="c")), name="c")
        return {"c": c, "h": b.mul(o, b.rescale(b.act("activation", c)))}


register_step(HLSTMCell, HLSTMStep())
