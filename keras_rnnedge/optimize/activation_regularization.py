"""Activation and temporal activation regularization (AR/TAR) of a recurrent layer's outputs.

Merity, McCann, Socher (2017), "Revisiting activation regularization for language RNNs": AR adds
``alpha * mean(h_t^2)`` (large activations penalized) and TAR ``beta * mean((h_t - h_{t-1})^2)``
(slowly changing hidden states favoured) to the loss, over every step of the sequence.
:class:`RegularizedRNN` is ``keras.layers.RNN`` with the two factors: in training it runs the
whole output sequence to compute them (also when it returns only the last output), and returns
what ``keras.layers.RNN`` returns. At inference it is ``keras.layers.RNN``, and the converters
take it as one (the penalties are training-only)::

    RegularizedRNN(FastGRNNCell(64), activation_l2=1e-3, temporal_activation_l2=1e-3)
"""

from __future__ import annotations

from keras_rnnedge._compat import keras, np, register, tf

__all__ = ["RegularizedRNN"]


def _factor(value, name: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
            or not np.isfinite(float(value)) or float(value) < 0.0):
        raise ValueError(f"Received {name}={value!r}; expected a finite number >= 0 (0 turns "
                         "the penalty off).")
    return float(value)


@register
class RegularizedRNN(keras.layers.RNN):
    """``keras.layers.RNN`` with AR (``activation_l2``, alpha) and TAR
    (``temporal_activation_l2``, beta) on its output sequence, in training (see the module
    docstring). Other arguments are ``keras.layers.RNN``'s."""

    def __init__(self, cell, *, activation_l2: float = 0.0, temporal_activation_l2: float = 0.0,
                 **kwargs):
        super().__init__(cell, **kwargs)
        self.activation_l2 = _factor(activation_l2, "activation_l2")
        self.temporal_activation_l2 = _factor(temporal_activation_l2, "temporal_activation_l2")

    def call(self, inputs, mask=None, training=None, initial_state=None, constants=None):
        if not (self.activation_l2 or self.temporal_activation_l2) or not training:
            return super().call(inputs, mask=mask, training=training,
                                initial_state=initial_state, constants=constants)
        wanted = self.return_sequences
        self.return_sequences = True
        try:
            result = super().call(inputs, mask=mask, training=training,
                                  initial_state=initial_state, constants=constants)
        finally:
            self.return_sequences = wanted
        sequence = result[0] if self.return_state else result
        self.add_loss(self.penalty(sequence))
        if wanted:
            return result
        last = sequence[:, -1]
        return [last, *result[1:]] if self.return_state else last

    def penalty(self, sequence):
        """``alpha mean(h_t^2) + beta mean((h_t - h_{t-1})^2)`` over batch, steps and units."""
        loss = tf.constant(0.0, dtype=sequence.dtype)
        if self.activation_l2:
            loss += self.activation_l2 * tf.reduce_mean(tf.square(sequence))
        if self.temporal_activation_l2:
            loss += self.temporal_activation_l2 * tf.reduce_mean(
                tf.square(sequence[:, 1:] - sequence[:, :-1]))
        return loss

    def get_config(self):
        return {**super().get_config(), "activation_l2": self.activation_l2,
                "temporal_activation_l2": self.temporal_activation_l2}
