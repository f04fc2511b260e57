"""Low-rank LSTM and GRU cells: the stock tf_keras cells with ``W = W_u W_v`` and
``U = U_u U_v`` (one factor pair shared by all gates), as in EdgeML's LR-LSTM / LR-GRU baselines
(Kusupati et al., NeurIPS 2018, Table 2)."""

from __future__ import annotations

import dataclasses

from keras_rnnedge._compat import keras, tf
from keras_rnnedge.cells.base import (
    CellStats,
    CompressedCell,
    activation_name,
    add_matrix,
    check_bool,
    check_positive_int,
    fresh,
    get_activation,
    matmul,
    matmul_columns,
    rank_of,
    register_cell,
    structure_config,
)
from keras_rnnedge.cells.step import (
    GRUStep,
    LSTMStep,
    ProjectionLSTMStep,
    SimpleRNNStep,
    register_step,
)

__all__ = ["LowRankGRUCell", "LowRankLSTMCell", "LowRankSimpleRNNCell", "ProjectionLSTMCell"]

class _LowRankBase(CompressedCell):
    _gates = 1

    def __init__(self, units: int, *, rank: int | None = None, recurrent_rank: int | None = None,
                 kernel_structure=None, recurrent_structure=None, activation="tanh",
                 recurrent_activation="sigmoid", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(units, **kwargs)
        self.set_structure("kernel", rank, "rank", kernel_structure, "kernel_structure")
        self.set_structure("recurrent_kernel", recurrent_rank, "recurrent_rank",
                           recurrent_structure, "recurrent_structure", limit=self.units)
        self.activation = get_activation(activation, "activation")
        self.recurrent_activation = get_activation(recurrent_activation, "recurrent_activation")
        self.use_bias = check_bool(use_bias, "use_bias")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)

    def build(self, input_shape):
        input_dim = self.step_input_dim(input_shape)
        self.input_dim = input_dim
        width = self._gates * self.units
        add_matrix(self, "kernel", (input_dim, width), self.kernel_initializer,
                   self.kernel_regularizer, self.kernel_constraint)
        add_matrix(self, "recurrent_kernel", (self.units, width), self.recurrent_initializer,
                   self.recurrent_regularizer, self.recurrent_constraint)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=self._bias_shape(),
                                        initializer=self._bias_initializer(),
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)
        self.built = True

    def _bias_shape(self):
        return (self._gates * self.units,)

    def _bias_initializer(self):
        return self.bias_initializer

    def compression_stats(self) -> CellStats:
        f = self._require_built()
        h, width = self.units, self._gates * self.units
        matrices = self.matrix_cost()
        biases = 0
        if self.use_bias:
            biases = 1
            for d in self._bias_shape():
                biases *= d
        return CellStats(params=matrices.params + biases, dense_params=(f + h) * width + biases,
                         macs_per_step=matrices.macs, state_size=self._state_elements())

    @property
    def rank(self) -> int | None:
        return rank_of(self.structures["kernel"])

    @property
    def recurrent_rank(self) -> int | None:
        return rank_of(self.structures["recurrent_kernel"])

    def _state_elements(self) -> int:
        return self.units

    def get_config(self):
        ser = keras.initializers.serialize
        return {
            **super().get_config(),
            "rank": self.rank,
            "recurrent_rank": self.recurrent_rank,
            "kernel_structure": structure_config(self.structures["kernel"]),
            "recurrent_structure": structure_config(self.structures["recurrent_kernel"]),
            "activation": activation_name(self.activation),
            "recurrent_activation": activation_name(self.recurrent_activation),
            "use_bias": self.use_bias,
            "kernel_initializer": ser(self.kernel_initializer),
            "recurrent_initializer": ser(self.recurrent_initializer),
            "bias_initializer": ser(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": keras.regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": keras.constraints.serialize(self.recurrent_constraint),
            "bias_constraint": keras.constraints.serialize(self.bias_constraint),
        }


@register_cell
class LowRankLSTMCell(_LowRankBase):
    r"""LSTM cell with low-rank input and recurrent matrices.

    Gates in Keras order ``i, f, c, o``:
    ``[i, f, c, o] = x_t W + h_{t-1} U + b``, ``c_t = σ(f) c_{t-1} + σ(i) φ(c)``,
    ``h_t = σ(o) φ(c_t)`` with ``W = W_u W_v`` (rank ``rank``) and ``U = U_u U_v``
    (rank ``recurrent_rank``). With both ranks ``None`` it computes exactly
    ``keras.layers.LSTMCell`` given the same weights.

    Parameters: ``r (F + 4H) + r_U (H + 4H) + 4H`` (``F*4H``/``H*4H`` for a full matrix).

    Example:
        >>> import numpy as np
        >>> from keras_rnnedge import keras
        >>> from keras_rnnedge.cells import LowRankLSTMCell
        >>> keras.layers.RNN(LowRankLSTMCell(32, rank=4, recurrent_rank=8))(
        ...     np.zeros((1, 5, 9), "float32")).shape
        TensorShape([1, 32])
    """

    _gates = 4

    def __init__(self, units: int, *, unit_forget_bias: bool = True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = check_bool(unit_forget_bias, "unit_forget_bias")

    @property
    def state_size(self):
        return [self.units, self.units]

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        dtype = dtype or self.compute_dtype or tf.float32
        return [tf.zeros([batch_size, self.units], dtype=dtype) for _ in range(2)]

    def _state_elements(self) -> int:
        return 2 * self.units

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        base, units = self.bias_initializer, self.units

        def initializer(shape, *args, **kwargs):
            return tf.concat([base((units,), *args, **kwargs),
                              keras.initializers.get("ones")((units,), *args, **kwargs),
                              fresh(base)((units * 2,), *args, **kwargs)], axis=0)

        return initializer

    def _lstm(self, inputs, h, c):
        """``(σ(o) φ(c'), c')``: the LSTM equations over the gates of ``x W + h U + b``."""
        z = matmul(self, inputs, "kernel") + matmul(self, h, "recurrent_kernel")
        if self.use_bias:
            z = z + self.bias
        i, f, g, o = tf.split(z, 4, axis=-1)
        c_new = self.recurrent_activation(f) * c + self.recurrent_activation(i) * self.activation(g)
        return self.recurrent_activation(o) * self.activation(c_new), c_new

    def transition(self, inputs, states, training=None):
        h_new, c_new = self._lstm(inputs, states[0], states[1])
        return h_new, [h_new, c_new]

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


@register_cell
class LowRankGRUCell(_LowRankBase):
    r"""GRU cell with low-rank input and recurrent matrices.

    Gates in Keras order ``z, r, h``. With ``reset_after=True`` (the Keras default):
    ``x_z, x_r, x_h = x_t W + b_in``, ``u_z, u_r, u_h = h_{t-1} U + b_rec``,
    ``z = σ(x_z + u_z)``, ``r = σ(x_r + u_r)``, ``h̃ = φ(x_h + r ⊙ u_h)``,
    ``h_t = z ⊙ h_{t-1} + (1 - z) ⊙ h̃``; with ``reset_after=False`` the candidate is
    ``φ(x_h + (r ⊙ h_{t-1}) U_h)``. With both ranks ``None`` it computes exactly
    ``keras.layers.GRUCell`` given the same weights.

    Parameters: ``r (F + 3H) + r_U (H + 3H) + 3H`` (``6H`` biases with ``reset_after``).

    Example:
        >>> import numpy as np
        >>> from keras_rnnedge import keras
        >>> from keras_rnnedge.cells import LowRankGRUCell
        >>> keras.layers.RNN(LowRankGRUCell(32, recurrent_rank=8))(
        ...     np.zeros((1, 5, 9), "float32")).shape
        TensorShape([1, 32])
    """

    _gates = 3

    def __init__(self, units: int, *, reset_after: bool = True, **kwargs):
        super().__init__(units, **kwargs)
        self.reset_after = check_bool(reset_after, "reset_after")

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def transition(self, inputs, states, training=None):
        h = states[0] if isinstance(states, (list, tuple)) else states
        units = self.units
        x = matmul(self, inputs, "kernel")
        if self.use_bias:
            x = x + (self.bias[0] if self.reset_after else self.bias)
        x_z, x_r, x_h = tf.split(x, 3, axis=-1)
        if self.reset_after:
            u = matmul(self, h, "recurrent_kernel")
            if self.use_bias:
                u = u + self.bias[1]
            u_z, u_r, u_h = tf.split(u, 3, axis=-1)
            z = self.recurrent_activation(x_z + u_z)
            r = self.recurrent_activation(x_r + u_r)
            candidate = self.activation(x_h + r * u_h)
        else:
            u_zr = matmul_columns(self, h, "recurrent_kernel", 0, 2 * units)
            u_z, u_r = tf.split(u_zr, 2, axis=-1)
            z = self.recurrent_activation(x_z + u_z)
            r = self.recurrent_activation(x_r + u_r)
            u_h = matmul_columns(self, r * h, "recurrent_kernel", 2 * units, 3 * units)
            candidate = self.activation(x_h + u_h)
        h_new = z * h + (1.0 - z) * candidate
        return h_new, [h_new]

    def get_config(self):
        return {**super().get_config(), "reset_after": self.reset_after}


@register_cell
class LowRankSimpleRNNCell(_LowRankBase):
    r"""Elman RNN cell with structured input and recurrent matrices:
    ``h_t = φ(x_t W + h_{t-1} U + b)``. With both ranks ``None`` (and no structures) it computes
    exactly ``keras.layers.SimpleRNNCell`` given the same weights; it is what
    :func:`keras_rnnedge.optimize.compress` turns a trained ``SimpleRNN`` into.

    Parameters: ``r (F + H) + r_U (H + H) + H`` (``F*H``/``H*H`` for a full matrix). The
    ``recurrent_activation`` argument is accepted for a uniform signature and unused.

    Example:
        >>> import numpy as np
        >>> from keras_rnnedge._compat import keras
        >>> from keras_rnnedge.cells import LowRankSimpleRNNCell
        >>> rnn = keras.layers.RNN(LowRankSimpleRNNCell(16, rank=2, recurrent_rank=4))
        >>> rnn(np.zeros((1, 5, 3), "float32")).shape
        TensorShape([1, 16])
    """

    def transition(self, inputs, states, training=None):
        h = states[0] if isinstance(states, (list, tuple)) else states
        z = matmul(self, inputs, "kernel")
        if self.use_bias:  # next to its product: TFLite fuses it into the FULLY_CONNECTED
            z = z + self.bias
        h_new = self.activation(z + matmul(self, h, "recurrent_kernel"))
        return h_new, [h_new]


register_step(LowRankLSTMCell, LSTMStep())
register_step(LowRankGRUCell, GRUStep())
register_step(LowRankSimpleRNNCell, SimpleRNNStep())


@register_cell
class ProjectionLSTMCell(LowRankLSTMCell):
    r"""LSTM with a recurrent projection layer (LSTMP, Sak, Senior, Beaufays, Interspeech 2014).

    ``[i, f, c, o] = x_t W + h_{t-1} U + b``, ``c_t = σ(f) c_{t-1} + σ(i) φ(c)``,
    ``m_t = σ(o) φ(c_t)``, ``h_t = m_t P``: the output and the recurrent input are the
    ``projection_units``-wide projection of the ``units``-wide ``m_t``, so ``U`` is
    ``projection_units x 4 units`` instead of ``units x 4 units``. Every matrix takes a
    structure (``kernel_structure``, ``recurrent_structure``, ``projection_structure``; the rank
    arguments are the low-rank short form), so a Kronecker or low-rank projection is a
    composition. The state is ``[h, c]`` of sizes ``projection_units`` and ``units``.

    Parameters: ``4 H (F + P) + H P + 4 H`` (dense matrices).

    Example:
        >>> import numpy as np
        >>> from keras_rnnedge import keras
        >>> from keras_rnnedge.cells import ProjectionLSTMCell
        >>> keras.layers.RNN(ProjectionLSTMCell(64, projection_units=16))(
        ...     np.zeros((1, 5, 9), "float32")).shape
        TensorShape([1, 16])
    """

    def __init__(self, units: int, *, projection_units: int | None = None,
                 projection_rank: int | None = None,
                 projection_structure=None, projection_initializer="glorot_uniform",
                 projection_regularizer=None, projection_constraint=None, **kwargs):
        super().__init__(units, **kwargs)
        self.projection_units = check_positive_int(projection_units, "projection_units")
        self.set_structure("projection", projection_rank, "projection_rank",
                           projection_structure, "projection_structure",
                           limit=min(self.units, self.projection_units))
        self.projection_initializer = keras.initializers.get(projection_initializer)
        self.projection_regularizer = keras.regularizers.get(projection_regularizer)
        self.projection_constraint = keras.constraints.get(projection_constraint)

    @property
    def state_size(self):
        return [self.projection_units, self.units]

    @property
    def output_size(self):
        return self.projection_units

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        dtype = dtype or self.compute_dtype or tf.float32
        return [tf.zeros([batch_size, self.projection_units], dtype=dtype),
                tf.zeros([batch_size, self.units], dtype=dtype)]

    def _state_elements(self) -> int:
        return self.projection_units + self.units

    def build(self, input_shape):
        input_dim = self.step_input_dim(input_shape)
        self.input_dim = input_dim
        width = self._gates * self.units
        add_matrix(self, "kernel", (input_dim, width), self.kernel_initializer,
                   self.kernel_regularizer, self.kernel_constraint)
        add_matrix(self, "recurrent_kernel", (self.projection_units, width),
                   self.recurrent_initializer, self.recurrent_regularizer,
                   self.recurrent_constraint)
        add_matrix(self, "projection", (self.units, self.projection_units),
                   self.projection_initializer, self.projection_regularizer,
                   self.projection_constraint)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=self._bias_shape(),
                                        initializer=self._bias_initializer(),
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)
        self.built = True

    def compression_stats(self) -> CellStats:
        stats = super().compression_stats()
        f, h, p = self.input_dim, self.units, self.projection_units
        width = self._gates * h
        biases = width if self.use_bias else 0
        return dataclasses.replace(stats, dense_params=(f + p) * width + h * p + biases)

    def transition(self, inputs, states, training=None):
        m, c_new = self._lstm(inputs, states[0], states[1])
        h_new = matmul(self, self.unit_masked(m), "projection")
        return h_new, [h_new, c_new]

    def get_config(self):
        ser = keras.initializers.serialize
        return {**super().get_config(), "projection_units": self.projection_units,
                "projection_rank": rank_of(self.structures["projection"]),
                "projection_structure": structure_config(self.structures["projection"]),
                "projection_initializer": ser(self.projection_initializer),
                "projection_regularizer": keras.regularizers.serialize(
                    self.projection_regularizer),
                "projection_constraint": keras.constraints.serialize(
                    self.projection_constraint)}


register_step(ProjectionLSTMCell, ProjectionLSTMStep())
