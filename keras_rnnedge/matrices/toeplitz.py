"""The Toeplitz family: ``W`` constant along its diagonals, ``rows + cols - 1`` parameters
(Lu, Sindhwani & Sainath, "Learning compact recurrent neural networks", ICASSP 2016)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from keras_rnnedge._compat import np
from keras_rnnedge.matrices.base import (
    CompactMatrix,
    MatrixCost,
    MatrixStructure,
    Stage,
    check_resolved_shape,
    check_shape,
    gathered_matmul,
    glorot_entries,
)

__all__ = ["Toeplitz", "ToeplitzRows"]


@dataclasses.dataclass(frozen=True)
class Toeplitz(MatrixStructure):
    r"""``W[i, j] = t[i - j + cols - 1]``: one weight ``{base}_diagonals`` of
    ``rows + cols - 1`` values, one per diagonal (the displacement-rank-1 case of Lu et al.'s
    Toeplitz-like matrices).

    Keras and TFLite multiply by the expanded matrix (a constant gather the converter folds:
    the flatbuffer holds a dense matrix); the C keeps the diagonals, and row ``j`` of the
    transposed matrix is the contiguous run ``t[cols - 1 - j ..]``, so it runs the dense row
    kernel at the dense kernel's speed from ``rows + cols - 1`` stored values.

    Initialization: uniform with the Glorot variance of the ``rows × cols`` matrix; the cell's
    initializer for the matrix is not used.

    Example:
        >>> from keras_rnnedge.matrices import Toeplitz
        >>> Toeplitz().cost(32, 128)
        MatrixCost(params=159, macs=4096)
    """

    shape: tuple[int, int] | None = None
    tflite_dense = True
    family = "toeplitz"
    suffix_pattern = "diagonals"

    def __post_init__(self):
        object.__setattr__(self, "shape", check_shape(self.shape))

    def resolve(self, rows: int, cols: int, argument: str) -> Toeplitz:
        check_resolved_shape(self, rows, cols, argument)
        return Toeplitz(shape=(rows, cols))

    def weight_names(self, base: str) -> tuple[str, ...]:
        return (f"{base}_diagonals",)

    def weight_shapes(self, base: str, rows: int, cols: int) -> dict[str, tuple[int, ...]]:
        return {f"{base}_diagonals": (rows + cols - 1,)}

    def initializers(self, initializer, rows: int, cols: int) -> list:
        return [glorot_entries(rows, cols)]

    def matmul(self, x, weights: Sequence):
        rows = int(x.shape[-1])
        cols = int(weights[0].shape[0]) - rows + 1
        return gathered_matmul(x, weights[0], _index(rows, cols), None)

    def to_dense(self, weights: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(weights[0], np.float64)[_index(*self.shape)]

    def from_dense(self, matrix: np.ndarray) -> list[np.ndarray]:
        """The nearest Toeplitz matrix (Frobenius): the mean of each diagonal."""
        w = np.asarray(matrix, np.float64)
        index = _index(*w.shape)
        n = sum(w.shape) - 1
        return [np.bincount(index.ravel(), weights=w.ravel(), minlength=n)
                / np.bincount(index.ravel(), minlength=n)]

    def cost(self, rows: int, cols: int) -> MatrixCost:
        return MatrixCost(params=rows + cols - 1, macs=rows * cols)

    def stages(self, weights: Sequence[np.ndarray]) -> list[Stage]:
        t = np.asarray(weights[0], np.float64)
        return [Stage(self.to_dense(weights), compact=ToeplitzRows(t, *self.shape))]

    def describe(self) -> str:
        return "toeplitz"


def _index(rows: int, cols: int) -> np.ndarray:
    """``(rows, cols)`` indices into the diagonals: ``i - j + cols - 1``."""
    return np.arange(rows)[:, None] - np.arange(cols)[None, :] + cols - 1


@dataclasses.dataclass(frozen=True)
class ToeplitzRows(CompactMatrix):
    """The C form of a Toeplitz stage: the diagonals; row ``j`` of the transposed matrix is
    ``t[cols - 1 - j + i]`` for inputs ``i`` in increasing order, the dense row kernel's input
    from an offset pointer."""

    params: np.ndarray
    rows: int
    cols: int

    def index_sign(self):
        index = _index(self.rows, self.cols)
        return index, np.ones(index.shape, np.int64)

    def c_kernel(self, bits: int, mode: str, dense_kernel: str) -> tuple[str, str]:
        return dense_kernel, ""

    def c_call(self, fn: str, array: str, row: str, x: str) -> str:
        wide = "uint16_t" if self.params.size <= 65535 else "uint32_t"
        return f"{fn}({array} + ({wide})({self.cols - 1}u - ({row})), {self.rows}, {x})"
