"""The low-rank family: ``W = W_u W_v`` with ``W_u`` rows × r and ``W_v`` r × cols (FastGRNN's
``W = W_1 W_2``; Kusupati et al., NeurIPS 2018)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from keras_rnnedge._compat import np, tf
from keras_rnnedge.matrices.base import (
    MatrixCost,
    MatrixStructure,
    Stage,
    check_positive,
    fresh,
)

__all__ = ["LowRank"]


@dataclasses.dataclass(frozen=True)
class LowRank(MatrixStructure):
    """A rank-``rank`` factorization kept factored: ``x @ W = (x @ W_u) @ W_v``.

    Parameters and MACs per product: ``rank * (rows + cols)``. Weights ``{base}_u`` and
    ``{base}_v``, each initialized with the cell's initializer for the matrix.

    Args:
        rank: ``1 <= rank <= min(rows, cols)``.

    Example:
        >>> from keras_rnnedge.matrices import LowRank
        >>> LowRank(5).cost(9, 80)
        MatrixCost(params=445, macs=445)
    """

    rank: int
    family = "low_rank"
    suffix_pattern = "u|v"

    def __post_init__(self):
        check_positive(self.rank, "rank")

    def resolve(self, rows: int, cols: int, argument: str) -> LowRank:
        limit = min(rows, cols)
        if self.rank > limit:
            raise ValueError(
                f"Received an invalid value for argument {argument}, expected None or an "
                f"integer in [1, {limit}] (the smaller dimension of the {rows}x{cols} matrix it "
                f"factorises), got {self.rank}.")
        return self

    def weight_names(self, base: str) -> tuple[str, ...]:
        return (f"{base}_u", f"{base}_v")

    def weight_shapes(self, base: str, rows: int, cols: int) -> dict[str, tuple[int, ...]]:
        return {f"{base}_u": (rows, self.rank), f"{base}_v": (self.rank, cols)}

    def initializers(self, initializer, rows: int, cols: int) -> list:
        return [fresh(initializer), fresh(initializer)]

    def matmul(self, x, weights: Sequence):
        return tf.matmul(tf.matmul(x, weights[0]), weights[1])

    def matmul_columns(self, x, weights: Sequence, start: int, stop: int):
        return tf.matmul(tf.matmul(x, weights[0]), weights[1][:, start:stop])

    def to_dense(self, weights: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(weights[0], np.float64) @ np.asarray(weights[1], np.float64)

    def from_dense(self, matrix: np.ndarray) -> list[np.ndarray]:
        """Truncated SVD (the best rank-``rank`` approximation, Eckart–Young), the singular
        values split evenly between the factors."""
        u, s, vt = np.linalg.svd(np.asarray(matrix, np.float64), full_matrices=False)
        root = np.sqrt(s[:self.rank])
        return [u[:, :self.rank] * root, root[:, None] * vt[:self.rank]]

    def cost(self, rows: int, cols: int) -> MatrixCost:
        n = self.rank * (rows + cols)
        return MatrixCost(params=n, macs=n)

    def level_macs(self, rows: int, cols: int, active_rows: int, active_cols: int,
                   read_cols: int) -> int:
        return self.rank * (active_rows + active_cols)

    def stages(self, weights: Sequence[np.ndarray]) -> list[Stage]:
        return [Stage(np.asarray(w, np.float64), source=i) for i, w in enumerate(weights)]

    def describe(self) -> str:
        return f"low rank {self.rank}"
