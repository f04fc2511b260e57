"""The dense family: ``W`` stored as it is (rows × cols parameters)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from keras_rnnedge._compat import np, tf
from keras_rnnedge.matrices.base import MatrixCost, MatrixStructure, Stage

__all__ = ["Dense"]


@dataclasses.dataclass(frozen=True)
class Dense(MatrixStructure):
    """A full matrix: one weight ``{base}`` of shape (rows, cols).

    Example:
        >>> from keras_rnnedge.matrices import Dense
        >>> Dense().cost(9, 80)
        MatrixCost(params=720, macs=720)
    """

    family = "dense"
    suffix_pattern = ""

    @property
    def is_dense(self) -> bool:
        return True

    def resolve(self, rows: int, cols: int, argument: str) -> Dense:
        return self

    def weight_names(self, base: str) -> tuple[str, ...]:
        return (base,)

    def weight_shapes(self, base: str, rows: int, cols: int) -> dict[str, tuple[int, ...]]:
        return {base: (rows, cols)}

    def initializers(self, initializer, rows: int, cols: int) -> list:
        return [initializer]

    def matmul(self, x, weights: Sequence):
        return tf.matmul(x, weights[0])

    def matmul_columns(self, x, weights: Sequence, start: int, stop: int):
        return tf.matmul(x, weights[0][:, start:stop])

    def to_dense(self, weights: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(weights[0], np.float64)

    def from_dense(self, matrix: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(matrix)]

    def cost(self, rows: int, cols: int) -> MatrixCost:
        return MatrixCost(params=rows * cols, macs=rows * cols)

    def level_macs(self, rows: int, cols: int, active_rows: int, active_cols: int,
                   read_cols: int) -> int:
        return active_rows * active_cols

    def stages(self, weights: Sequence[np.ndarray]) -> list[Stage]:
        return [Stage(np.asarray(weights[0], np.float64))]
