"""The block-circulant family: ``W`` in ``k × k`` blocks, each a circulant matrix defined by one
vector of ``k`` values (C-LSTM, Wang et al., FPGA 2018; CirCNN, Ding et al., MICRO 2017)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from keras_rnnedge._compat import np
from keras_rnnedge.matrices.base import (
    CompactMatrix,
    MatrixCost,
    MatrixStructure,
    Stage,
    check_positive,
    check_resolved_shape,
    check_shape,
    gathered_matmul,
    glorot_entries,
)

__all__ = ["BlockCirculant", "CirculantRows"]


@dataclasses.dataclass(frozen=True)
class BlockCirculant(MatrixStructure):
    r"""``W`` (``rows × cols``) as ``P × Q`` circulant blocks of size ``k``: block ``(p, q)`` is
    one vector ``c_{pq}`` of ``k`` values with ``W[p k + a, q k + b] = c_{pq}[(a - b) mod k]``.
    One weight ``{base}_blocks`` of shape ``(Q, P, k)``, ``P = ceil(rows / k)``,
    ``Q = ceil(cols / k)``: about ``k`` times fewer parameters than dense, the same
    multiply-accumulates when computed directly (the C does that, reading each block vector in
    two contiguous runs; an FFT would bring ``O(k log k)`` per block). When ``k`` does not
    divide a dimension, the matrix is the top-left corner of the padded one (C-LSTM's padding).

    Keras and TFLite multiply by the expanded matrix (a constant gather the converter folds:
    the flatbuffer holds a dense matrix, no flash saving there); the C keeps the vectors.

    Initialization: uniform with the Glorot variance of the ``rows × cols`` matrix (every entry
    of ``W`` is one parameter); the cell's initializer for the matrix is not used.

    Args:
        block: ``k`` (default 4; C-LSTM uses 8 and 16 on 1024-unit layers).

    Example:
        >>> from keras_rnnedge.matrices import BlockCirculant
        >>> BlockCirculant(8).resolve(32, 128, "recurrent_structure").cost(32, 128)
        MatrixCost(params=512, macs=4096)
    """

    block: int = 4
    shape: tuple[int, int] | None = None
    tflite_dense = True
    family = "block_circulant"
    suffix_pattern = "blocks"

    def __post_init__(self):
        check_positive(self.block, "block")
        object.__setattr__(self, "shape", check_shape(self.shape))

    def resolve(self, rows: int, cols: int, argument: str) -> BlockCirculant:
        check_resolved_shape(self, rows, cols, argument)
        return BlockCirculant(self.block, shape=(rows, cols))

    def weight_names(self, base: str) -> tuple[str, ...]:
        return (f"{base}_blocks",)

    def weight_shapes(self, base: str, rows: int, cols: int) -> dict[str, tuple[int, ...]]:
        k = self.block
        return {f"{base}_blocks": (-(-cols // k), -(-rows // k), k)}

    def initializers(self, initializer, rows: int, cols: int) -> list:
        return [glorot_entries(rows, cols)]

    def matmul(self, x, weights: Sequence):
        q, p, k = (int(d) for d in weights[0].shape)
        rows, cols = self.shape
        return gathered_matmul(x, weights[0], _index(p, q, k)[:rows, :cols], None)

    def to_dense(self, weights: Sequence[np.ndarray]) -> np.ndarray:
        c = np.asarray(weights[0], np.float64)
        q, p, k = c.shape
        rows, cols = self.shape
        return c.reshape(-1)[_index(p, q, k)[:rows, :cols]]

    def from_dense(self, matrix: np.ndarray) -> list[np.ndarray]:
        """The nearest block-circulant matrix (Frobenius): each ``c_{pq}[t]`` is the mean of
        the entries of block ``(p, q)`` it stands for (0 where all of them are padding)."""
        w = np.asarray(matrix, np.float64)
        rows, cols = w.shape
        k = self.block
        p, q = -(-rows // k), -(-cols // k)
        index = _index(p, q, k)[:rows, :cols].ravel()
        total = np.bincount(index, weights=w.ravel(), minlength=q * p * k)
        count = np.bincount(index, minlength=q * p * k)
        return [(total / np.maximum(count, 1)).reshape(q, p, k)]

    def cost(self, rows: int, cols: int) -> MatrixCost:
        k = self.block
        return MatrixCost(params=-(-rows // k) * -(-cols // k) * k, macs=rows * cols)

    def stages(self, weights: Sequence[np.ndarray]) -> list[Stage]:
        c = np.asarray(weights[0], np.float64)
        q, p, k = c.shape
        matrix = self.to_dense(weights)
        if k == 1:  # a dense matrix
            return [Stage(matrix)]
        return [Stage(matrix, compact=CirculantRows(c.reshape(-1), p, q, k, *self.shape))]

    def describe(self) -> str:
        return f"block-circulant {self.block}"


def _index(p: int, q: int, k: int) -> np.ndarray:
    """``(p k, q k)`` indices into the flattened ``(q, p, k)`` block vectors."""
    a = np.arange(p * k)
    b = np.arange(q * k)
    pa, aa = a // k, a % k
    qb, bb = b // k, b % k
    return (qb[None, :] * p + pa[:, None]) * k + (aa[:, None] - bb[None, :]) % k


@dataclasses.dataclass(frozen=True)
class CirculantRows(CompactMatrix):
    """The C form of a block-circulant stage: the ``(Q, P, k)`` vectors. Row ``q k + b`` of
    the transposed matrix, over input block ``p``, is ``c_{pq}[k - b .. k - 1]`` against
    inputs ``p k .. p k + b - 1`` then ``c_{pq}[0 .. k - b - 1]`` against the rest: two
    contiguous runs, inputs in increasing order (the last block holds ``rows - (P - 1) k``
    inputs)."""

    params: np.ndarray
    p: int
    q: int
    k: int
    rows: int
    cols: int

    def index_sign(self):
        index = _index(self.p, self.q, self.k)[:self.rows, :self.cols]
        return index, np.ones(index.shape, np.int64)

    def c_kernel(self, bits: int, mode: str, dense_kernel: str) -> tuple[str, str]:
        t, ct = f"I{bits}", f"int{bits}_t"
        name = f"re_mv_circ_i{bits}_{mode}"
        head = (f"RE_KERNEL int32_t {name}(const {ct} *c, uint16_t k, uint16_t nb, uint16_t last, "
                "uint16_t b, const int16_t *x) {\n    int32_t acc = 0;\n    while (nb--) {\n"
                "        uint16_t m = nb ? k : last;  /* inputs in this block */\n"
                "        uint16_t n1 = b < m ? b : m;\n")
        if mode == "sat":
            body = (f"        const {ct} *w = c + (k - b);\n"
                    "        const int16_t *v = x;\n        uint16_t n = n1;\n"
                    f"        while (n--) acc = re_sat_add32(acc, (int32_t)RE_RD_{t}(w++) * "
                    "(int32_t)*v++);\n"
                    "        w = c;\n        n = m - n1;\n"
                    f"        while (n--) acc = re_sat_add32(acc, (int32_t)RE_RD_{t}(w++) * "
                    "(int32_t)*v++);\n")
        else:
            body = (f"        if (n1) acc += {dense_kernel}(c + (k - b), n1, x);\n"
                    f"        if (m > n1) acc += {dense_kernel}(c, m - n1, x + b);\n")
        return name, head + body + "        c += k;\n        x += k;\n    }\n    return acc;\n}\n"

    def c_call(self, fn: str, array: str, row: str, x: str) -> str:
        wide = "uint16_t" if self.params.size <= 65535 else "uint32_t"
        last = self.rows - (self.p - 1) * self.k
        return (f"{fn}({array} + ({wide})(({row}) / {self.k}u) * {self.p * self.k}u, {self.k}, "
                f"{self.p}, {last}, (uint16_t)(({row}) % {self.k}u), {x})")
