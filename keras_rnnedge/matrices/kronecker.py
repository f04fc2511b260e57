"""The Kronecker-product family: ``W = A_1 ⊗ A_2 ⊗ ... ⊗ A_d`` (Thakker et al., "Compressing
RNNs for IoT devices by 15-38x using Kronecker products", 2019)."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

from keras_rnnedge._compat import keras, np, tf
from keras_rnnedge.matrices.base import (
    MatrixCost,
    MatrixStructure,
    Stage,
    check_positive,
    divisor_splits,
)

__all__ = ["Kronecker"]


@dataclasses.dataclass(frozen=True)
class Kronecker(MatrixStructure):
    r"""``W = A_1 ⊗ ... ⊗ A_d`` with ``A_i`` of shape ``(m_i, n_i)``, ``∏ m_i = rows``,
    ``∏ n_i = cols``; weights ``{base}_factor_<i>``.

    Parameters: ``Σ m_i n_i``. ``x @ W`` never forms ``W``: ``x`` is reshaped to
    ``(m_1, ..., m_d)`` and each mode is contracted with its factor in turn (a reshape, a small
    matrix product and a transpose per factor; all TFLite Micro builtins), which costs
    ``Σ_k (∏_{i<k} m_i)(∏_{i>k} n_i) m_k n_k`` multiply-accumulates.

    Automatic factor shapes (``factors=None``): the rank of ``A ⊗ B`` is ``rank(A) rank(B)``,
    so the shapes decide how expressive ``W`` can be (``(1, 32) ⊗ (32, 1)`` has the fewest
    parameters of a 32×32 matrix and is a rank-1 matrix). Among every way to write ``rows`` and
    ``cols`` as ordered products of ``num_factors`` integers, the choice is the one whose
    product can reach the highest rank (``∏ min(m_i, n_i)``, at most ``min(rows, cols)``),
    then the fewest parameters ``Σ m_i n_i``, then the most balanced factors, then the first in
    lexicographic order. A prime dimension can only split as ``1 × p``, so one factor carries
    it whole (13 inputs: factors ``(1, n_1)`` and ``(13, n_2)``).

    Initialization: the factors' entries are uniform with the variance that gives the product
    the variance of a Glorot-uniform ``rows × cols`` matrix, ``2 / (rows + cols)`` (each factor
    ``(2 / (rows + cols))^{1/d}``): the cell's initializer for the matrix is not used.

    Args:
        factors: ``[(m_1, n_1), ..., (m_d, n_d)]``, or ``None`` to choose automatically.
        num_factors: ``d`` when ``factors`` is ``None`` (2 or more).

    Example:
        >>> from keras_rnnedge.matrices import Kronecker
        >>> k = Kronecker().resolve(80, 240, "recurrent_structure")
        >>> k.factors, k.cost(80, 240).params
        (((8, 16), (10, 15)), 278)
    """

    factors: tuple[tuple[int, int], ...] | None = None
    num_factors: int = 2
    family = "kronecker"
    suffix_pattern = r"factor_\d+"

    def __post_init__(self):
        d = check_positive(self.num_factors, "num_factors", "an integer >= 2")
        if d < 2:
            raise ValueError("Received an invalid value for argument num_factors, expected an "
                             f"integer >= 2, got {self.num_factors!r}.")
        if self.factors is not None:
            factors = _check_factors(self.factors)
            object.__setattr__(self, "factors", factors)
            object.__setattr__(self, "num_factors", len(factors))

    def resolve(self, rows: int, cols: int, argument: str) -> Kronecker:
        if self.factors is None:
            return Kronecker(factors=_best_factors(rows, cols, self.num_factors))
        m = math.prod(f[0] for f in self.factors)
        n = math.prod(f[1] for f in self.factors)
        if (m, n) != (rows, cols):
            example = _best_factors(rows, cols, len(self.factors))
            raise ValueError(
                f"Received an invalid value for argument {argument}: Kronecker factors "
                f"{[list(f) for f in self.factors]} make a {m}x{n} matrix, expected {rows}x{cols} "
                f"(the row sizes must multiply to {rows} and the column sizes to {cols}), for "
                f"example {[list(f) for f in example]}, or factors=None to choose them.")
        return self

    def weight_names(self, base: str) -> tuple[str, ...]:
        return tuple(f"{base}_factor_{i}" for i in range(self.num_factors))

    def weight_shapes(self, base: str, rows: int, cols: int) -> dict[str, tuple[int, ...]]:
        return {f"{base}_factor_{i}": tuple(f) for i, f in enumerate(self.factors)}

    def initializers(self, initializer, rows: int, cols: int) -> list:
        variance = (2.0 / (rows + cols)) ** (1.0 / self.num_factors)
        limit = math.sqrt(3.0 * variance)
        return [keras.initializers.RandomUniform(-limit, limit) for _ in self.factors]

    def matmul(self, x, weights: Sequence):
        # y holds (batch, *dims); the last axis is the next mode to contract.
        dims = [m for m, _ in self.factors]
        y = x
        for k in reversed(range(len(self.factors))):
            m, n = self.factors[k]
            y = tf.matmul(tf.reshape(y, [-1, m]), weights[k])
            dims = dims[:-1]
            if dims:
                y = tf.reshape(y, [-1, *dims, n])
                y = tf.transpose(y, [0, len(dims) + 1, *range(1, len(dims) + 1)])
            dims = [n, *dims]
        return tf.reshape(y, [-1, math.prod(dims)])

    def to_dense(self, weights: Sequence[np.ndarray]) -> np.ndarray:
        return functools.reduce(np.kron, [np.asarray(w, np.float64) for w in weights])

    def from_dense(self, matrix: np.ndarray) -> list[np.ndarray]:
        """The nearest Kronecker product (Van Loan & Pitsianis 1993: the leading singular pair
        of the rearranged matrix) for two factors; for more, applied factor by factor (``A_1``
        against the rest, then the rest), which is not jointly optimal."""
        w = np.asarray(matrix, np.float64)
        out = []
        for k, (m1, n1) in enumerate(self.factors[:-1]):
            m2 = math.prod(f[0] for f in self.factors[k + 1:])
            n2 = math.prod(f[1] for f in self.factors[k + 1:])
            r = w.reshape(m1, m2, n1, n2).transpose(0, 2, 1, 3).reshape(m1 * n1, m2 * n2)
            u, s, vt = np.linalg.svd(r, full_matrices=False)
            root = np.sqrt(s[0])
            out.append((u[:, 0] * root).reshape(m1, n1))
            w = (vt[0] * root).reshape(m2, n2)
        out.append(w)
        return out

    def cost(self, rows: int, cols: int) -> MatrixCost:
        return MatrixCost(params=sum(m * n for m, n in self.factors),
                          macs=_kron_macs(self.factors))

    def stages(self, weights: Sequence[np.ndarray]) -> list[Stage]:
        """One stage per factor, the last first (the order of :meth:`matmul`)."""
        out = []
        for k in reversed(range(len(self.factors))):
            blocks = (math.prod(f[0] for f in self.factors[:k])
                      * math.prod(f[1] for f in self.factors[k + 1:]))
            out.append(Stage(np.asarray(weights[k], np.float64), blocks=blocks, source=k))
        return out

    def describe(self) -> str:
        if self.factors is None:
            return f"kronecker ({self.num_factors} factors)"
        return "kronecker " + "⊗".join(f"{m}x{n}" for m, n in self.factors)


def _check_factors(factors) -> tuple[tuple[int, int], ...]:
    bad = ValueError(f"Received an invalid value for argument factors, expected a list of "
                     f"(rows, cols) pairs of positive integers, at least two, got {factors!r}.")
    if isinstance(factors, (str, bytes)) or not isinstance(factors, Sequence) or len(factors) < 2:
        raise bad
    out = []
    for f in factors:
        if isinstance(f, (str, bytes)) or not isinstance(f, Sequence) or len(f) != 2:
            raise bad
        try:
            out.append((check_positive(f[0], "factors"), check_positive(f[1], "factors")))
        except ValueError:
            raise bad from None
    return tuple(out)


def _kron_macs(factors) -> int:
    total = 0
    for k, (m, n) in enumerate(factors):
        total += (math.prod(f[0] for f in factors[:k]) * math.prod(f[1] for f in factors[k + 1:])
                  * m * n)
    return total


@functools.lru_cache(maxsize=256)
def _best_factors(rows: int, cols: int, d: int) -> tuple[tuple[int, int], ...]:
    best, best_key = None, None
    for ms in divisor_splits(rows, d):
        for ns in divisor_splits(cols, d):
            pairs = tuple(zip(ms, ns))
            rank = math.prod(min(m, n) for m, n in pairs)
            key = (-rank, sum(m * n for m, n in pairs), max(m * n for m, n in pairs), pairs)
            if best_key is None or key < best_key:
                best, best_key = pairs, key
    return best
