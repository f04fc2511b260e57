"""Regularizers for recurrent matrices.

:class:`SoftOrthogonality` is the soft orthogonality constraint of Vorontsov et al. (2017), "On
orthogonality and learning recurrent networks with long term dependencies": a penalty
``strength * ||W W^T - I||_F^2`` that keeps a recurrent matrix near the orthogonal set (its
singular values near 1, so gradients neither vanish nor explode through many steps) without
constraining it to it. Pass it as a cell's ``recurrent_regularizer`` (one line; it serializes
with the model and plays no part at inference, so the converters never see it)::

    FastGRNNCell(64, recurrent_regularizer=SoftOrthogonality(1e-3),
                 recurrent_initializer="orthogonal")

For a structured matrix the cell applies the regularizer to each stored weight (the factors of
a low-rank matrix, the cores of a tensor train...).
"""

from __future__ import annotations

from keras_rnnedge._compat import keras, np, register, tf

__all__ = ["SoftOrthogonality"]


@register
class SoftOrthogonality(keras.regularizers.Regularizer):
    """``strength * ||G - I||_F^2`` with ``G`` the Gram matrix of the weight's rows or columns,
    whichever is smaller (``W W^T`` for a wide ``W``, ``W^T W`` for a tall one; an LSTM's
    ``(H, 4H)`` recurrent matrix has orthonormal rows at the minimum). A weight of more than two
    dimensions is flattened to ``(prod(shape[:-1]), shape[-1])``; a vector or scalar costs 0.

    Args:
        strength: the penalty's factor (finite, >= 0); Vorontsov et al. sweep 1e-4..1e1.
    """

    def __init__(self, strength: float = 1e-3):
        if (isinstance(strength, bool) or not isinstance(strength, (int, float, np.number))
                or not np.isfinite(float(strength)) or float(strength) < 0.0):
            raise ValueError(f"Received strength={strength!r}; expected a finite number >= 0 "
                             "(the penalty's factor, e.g. 1e-3).")
        self.strength = float(strength)

    def __call__(self, w):
        if w.shape.rank is None or w.shape.rank < 2:
            return tf.constant(0.0, dtype=w.dtype)
        m = tf.reshape(w, (-1, w.shape[-1]))
        rows, cols = int(m.shape[0]), int(m.shape[1])
        gram = (tf.matmul(m, m, transpose_b=True) if rows <= cols
                else tf.matmul(m, m, transpose_a=True))
        eye = tf.eye(min(rows, cols), dtype=w.dtype)
        return self.strength * tf.reduce_sum(tf.square(gram - eye))

    def get_config(self):
        return {"strength": self.strength}
