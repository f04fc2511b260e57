"""FastRNN and FastGRNN (Kusupati et al., "FastGRNN: A Fast, Accurate, Stable and Tiny
Kilobyte Sized Gated Recurrent Neural Network", NeurIPS 2018)."""

from __future__ import annotations

from keras_rnnedge._compat import keras, tf
from keras_rnnedge.cells.base import (
    CellStats,
    CompressedCell,
    activation_name,
    add_matrix,
    check_finite_float,
    fresh,
    get_activation,
    matmul,
    rank_of,
    register_cell,
    structure_config,
)
from keras_rnnedge.cells.step import FastGRNNStep, FastRNNStep, register_step

__all__ = ["FastGRNNCell", "FastRNNCell"]

class _FastBase(CompressedCell):
    """What FastRNN and FastGRNN share: ``W`` (kernel) and ``U`` (recurrent kernel), each
    optionally factored as ``W = W_u W_v`` (rank ``w_rank``) and ``U = U_u U_v`` (``u_rank``)."""

    _scalars: tuple[str, ...] = ()

    def __init__(self, units: int, *, w_rank: int | None = None, u_rank: int | None = None,
                 kernel_structure=None, recurrent_structure=None, activation="tanh",
                 kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="ones",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(units, **kwargs)
        self.set_structure("kernel", w_rank, "w_rank", kernel_structure, "kernel_structure")
        self.set_structure("recurrent_kernel", u_rank, "u_rank", recurrent_structure,
                           "recurrent_structure", limit=self.units)
        self.activation = get_activation(activation, "activation")
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
        add_matrix(self, "kernel", (input_dim, self.units), self.kernel_initializer,
                   self.kernel_regularizer, self.kernel_constraint)
        add_matrix(self, "recurrent_kernel", (self.units, self.units),
                   self.recurrent_initializer, self.recurrent_regularizer,
                   self.recurrent_constraint)
        self._build_rest()
        self.built = True

    def _bias(self, name):
        return self.add_weight(name=name, shape=(self.units,),
                               initializer=fresh(self.bias_initializer),
                               regularizer=self.bias_regularizer, constraint=self.bias_constraint)

    def _scalar(self, name, value):
        return self.add_weight(name=name, shape=(1,),
                               initializer=keras.initializers.Constant(value))

    def _preactivation(self, x, h):
        return matmul(self, x, "kernel") + matmul(self, h, "recurrent_kernel")

    @property
    def w_rank(self) -> int | None:
        return rank_of(self.structures["kernel"])

    @property
    def u_rank(self) -> int | None:
        return rank_of(self.structures["recurrent_kernel"])

    def compression_stats(self) -> CellStats:
        f = self._require_built()
        h = self.units
        matrices = self.matrix_cost()
        rest = self._n_biases * h + len(self._scalars)
        return CellStats(params=matrices.params + rest, dense_params=f * h + h * h + rest,
                         macs_per_step=matrices.macs, state_size=h)

    def get_config(self):
        ser = keras.initializers.serialize
        return {
            **super().get_config(),
            "w_rank": self.w_rank,
            "u_rank": self.u_rank,
            "kernel_structure": structure_config(self.structures["kernel"]),
            "recurrent_structure": structure_config(self.structures["recurrent_kernel"]),
            "activation": activation_name(self.activation),
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
class FastRNNCell(_FastBase):
    r"""FastRNN: a residual RNN with two trainable scalars.

    .. math::
        \tilde h_t = \phi(W x_t + U h_{t-1} + b), \qquad
        h_t = \sigma(\alpha)\, \tilde h_t + \sigma(\beta)\, h_{t-1}

    Parameters: ``F*H + H*H + H + 2`` (full rank) or ``r_W (F+H) + r_U (2H) + H + 2``.

    Args:
        units: hidden size ``H``.
        w_rank, u_rank: ranks of ``W = W_u W_v`` and ``U = U_u U_v``; ``None`` keeps it full.
        activation: ``phi``; one of ``keras_rnnedge.cells.ACTIVATIONS``.
        alpha_initializer, beta_initializer: initial values of the scalars *before* the
            sigmoid (EdgeML's defaults -3 and 3).

    Example:
        >>> import numpy as np
        >>> from keras_rnnedge import keras
        >>> from keras_rnnedge.cells import FastRNNCell
        >>> layer = keras.layers.RNN(FastRNNCell(16, u_rank=4))
        >>> layer(np.zeros((2, 10, 3), "float32")).shape
        TensorShape([2, 16])
    """

    _scalars = ("alpha", "beta")
    _n_biases = 1

    def __init__(self, units: int, *, alpha_initializer: float = -3.0,
                 beta_initializer: float = 3.0, **kwargs):
        super().__init__(units, **kwargs)
        self.alpha_initializer = check_finite_float(alpha_initializer, "alpha_initializer")
        self.beta_initializer = check_finite_float(beta_initializer, "beta_initializer")

    def _build_rest(self):
        self.bias = self._bias("bias")
        self.alpha = self._scalar("alpha", self.alpha_initializer)
        self.beta = self._scalar("beta", self.beta_initializer)

    def transition(self, inputs, states, training=None):
        h = states[0] if isinstance(states, (list, tuple)) else states
        candidate = self.activation(self._preactivation(inputs, h) + self.bias)
        h_new = tf.sigmoid(self.alpha) * candidate + tf.sigmoid(self.beta) * h
        return h_new, [h_new]

    def get_config(self):
        return {**super().get_config(), "alpha_initializer": self.alpha_initializer,
                "beta_initializer": self.beta_initializer}


@register_cell
class FastGRNNCell(_FastBase):
    r"""FastGRNN: a gated RNN whose gate and update share ``W`` and ``U``.

    .. math::
        a_t = W x_t + U h_{t-1}, \quad z_t = \sigma_g(a_t + b_z), \quad
        \tilde h_t = \phi(a_t + b_h), \\
        h_t = \big(\sigma(\zeta)(1 - z_t) + \sigma(\nu)\big) \odot \tilde h_t + z_t \odot h_{t-1}

    Parameters: ``F*H + H*H + 2H + 2`` (full rank) or ``r_W (F+H) + r_U (2H) + 2H + 2``;
    MACs per step equal the matrix parameters.

    Args:
        units: hidden size ``H``.
        w_rank, u_rank: ranks of ``W = W_u W_v`` and ``U = U_u U_v``; ``None`` keeps it full
            (the paper's FastGRNN-LSQ has both ``None``).
        activation: the update non-linearity ``phi`` (``"tanh"``, or ``"quantized_tanh"`` for
            integer inference).
        recurrent_activation: the gate non-linearity (``"sigmoid"`` or ``"quantized_sigmoid"``).
        zeta_initializer, nu_initializer: initial values before the sigmoid (paper: 1 and -4).

    Example:
        >>> import numpy as np
        >>> from keras_rnnedge import keras
        >>> from keras_rnnedge.cells import FastGRNNCell
        >>> layer = keras.layers.RNN(FastGRNNCell(80, w_rank=5, u_rank=40))
        >>> layer(np.zeros((2, 128, 9), "float32")).shape
        TensorShape([2, 80])
    """

    _scalars = ("zeta", "nu")
    _n_biases = 2

    def __init__(self, units: int, *, recurrent_activation="sigmoid",
                 zeta_initializer: float = 1.0, nu_initializer: float = -4.0, **kwargs):
        super().__init__(units, **kwargs)
        self.recurrent_activation = get_activation(recurrent_activation, "recurrent_activation")
        self.zeta_initializer = check_finite_float(zeta_initializer, "zeta_initializer")
        self.nu_initializer = check_finite_float(nu_initializer, "nu_initializer")

    def _build_rest(self):
        self.gate_bias = self._bias("gate_bias")
        self.update_bias = self._bias("update_bias")
        self.zeta = self._scalar("zeta", self.zeta_initializer)
        self.nu = self._scalar("nu", self.nu_initializer)

    def transition(self, inputs, states, training=None):
        h = states[0] if isinstance(states, (list, tuple)) else states
        a = self._preactivation(inputs, h)
        z = self.recurrent_activation(a + self.gate_bias)
        candidate = self.activation(a + self.update_bias)
        h_new = (tf.sigmoid(self.zeta) * (1.0 - z) + tf.sigmoid(self.nu)) * candidate + z * h
        return h_new, [h_new]

    def get_config(self):
        return {**super().get_config(),
                "recurrent_activation": activation_name(self.recurrent_activation),
                "zeta_initializer": self.zeta_initializer, "nu_initializer": self.nu_initializer}


register_step(FastGRNNCell, FastGRNNStep())
register_step(FastRNNCell, FastRNNStep())
