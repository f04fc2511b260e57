"""Localized group matrices with a channel shuffle: ``W`` block-diagonal over ``G`` groups,
its output columns interleaved across the groups (LGP-Shuffle, survey "RNNs for Edge
Intelligence" Table 11; the shuffle of ShuffleNet, Zhang et al., CVPR 2018)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from keras_rnnedge._compat import np, tf
from keras_rnnedge.matrices.base import (
    CompactMatrix,
    MatrixCost,
    MatrixStructure,
    Stage,
    check_positive,
    check_resolved_shape,
    check_shape,
    glorot_entries,
)

__all__ = ["GroupShuffle", "GroupRows"]


@dataclasses.dataclass(frozen=True)
class GroupShuffle(MatrixStructure):
    r"""``W`` as ``G`` independent groups: group ``g`` maps inputs
    ``[g m, (g + 1) m)`` to outputs ``[g n, (g + 1) n)`` of the block-diagonal matrix with one
    ``m × n`` block per group (``m = rows / G``, ``n = cols / G``); with ``shuffle`` the outputs
    are then interleaved (output ``j`` is block-diagonal output
    ``(j mod G) n + floor(j / G)``), so that a product that follows mixes every group. One
    weight ``{base}_groups`` of shape ``(G, m, n)``: ``G`` times fewer parameters and
    multiply-accumulates than dense.

    As the projection of :class:`~keras_rnnedge.cells.ProjectionLSTMCell`
    (``projection_structure={"family": "group_shuffle", "groups": 4}``) it is the localized
    group projection with shuffle (LGP-Shuffle); it can parameterize any matrix.

    Keras computes the groups as one batched product; TFLite holds the dense matrix (with its
    zeros: it is folded, the report says so); the C stores the blocks and runs the dense row
    kernel on each output's group.

    Initialization: uniform with the Glorot limit of one ``m × n`` block.

    Args:
        groups: ``G``, dividing both dimensions; ``None``: the largest common divisor of the
            dimensions up to 8.
        shuffle: interleave the outputs across the groups (default), or keep them in place
            (a plain block-diagonal matrix).

    Example:
        >>> from keras_rnnedge.matrices import GroupShuffle
        >>> GroupShuffle(4).resolve(64, 32, "projection_structure").cost(64, 32)
        MatrixCost(params=512, macs=512)
    """

    groups: int | None = 2
    shuffle: bool = True
    shape: tuple[int, int] | None = None
    tflite_dense = True
    family = "group_shuffle"
    suffix_pattern = "groups"

    def __post_init__(self):
        if self.groups is not None:
            check_positive(self.groups, "groups")
        if not isinstance(self.shuffle, (bool, np.bool_)):
            raise ValueError(f"Received an invalid value for argument shuffle: "
                             f"{self.shuffle!r}; expected True or False.")
        object.__setattr__(self, "shape", check_shape(self.shape))

    def resolve(self, rows: int, cols: int, argument: str) -> GroupShuffle:
        check_resolved_shape(self, rows, cols, argument)
        if self.groups is None:
            g = math.gcd(rows, cols)
            return dataclasses.replace(self, groups=max(d for d in range(1, min(g, 8) + 1)
                                                        if g % d == 0), shape=(rows, cols))
        if rows % self.groups or cols % self.groups:
            g = math.gcd(rows, cols)
            raise ValueError(
                f"Received an invalid value for argument {argument}: groups={self.groups} does "
                f"not divide the {rows}x{cols} matrix. Expected a divisor of both dimensions: "
                f"one of {[d for d in range(1, g + 1) if g % d == 0]}.")
        return dataclasses.replace(self, shape=(rows, cols))

    def weight_names(self, base: str) -> tuple[str, ...]:
        return (f"{base}_groups",)

    def weight_shapes(self, base: str, rows: int, cols: int) -> dict[str, tuple[int, ...]]:
        g = self.groups
        return {f"{base}_groups": (g, rows // g, cols // g)}

    def initializers(self, initializer, rows: int, cols: int) -> list:
        return [glorot_entries(rows / self.groups, cols / self.groups)]

    def matmul(self, x, weights: Sequence):
        g, m, n = (int(d) for d in weights[0].shape)
        y = tf.einsum("bgm,gmn->bgn", tf.reshape(x, [-1, g, m]), weights[0])
        if self.shuffle:
            y = tf.transpose(y, [0, 2, 1])
        return tf.reshape(y, [-1, g * n])

    def _index_sign(self) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = self.shape
        g = self.groups
        m, n = rows // g, cols // g
        j = np.arange(cols)
        source = (j % g) * n + j // g if self.shuffle else j  # block-diagonal column
        group_of_row = np.arange(rows) // m
        group_of_col = source // n
        index = (group_of_row[:, None] * m + np.arange(rows)[:, None] % m) * n \
            + (source % n)[None, :]
        sign = (group_of_row[:, None] == group_of_col[None, :]).astype(np.int64)
        return np.where(sign == 1, index, 0), sign

    def to_dense(self, weights: Sequence[np.ndarray]) -> np.ndarray:
        index, sign = self._index_sign()
        return sign * np.asarray(weights[0], np.float64).reshape(-1)[index]

    def from_dense(self, matrix: np.ndarray) -> list[np.ndarray]:
        """The nearest such matrix (Frobenius): the entries inside the groups, the rest
        dropped."""
        index, sign = self._index_sign()
        g = self.groups
        rows, cols = self.shape
        params = np.zeros(rows * cols // g)
        params[index[sign == 1]] = np.asarray(matrix, np.float64)[sign == 1]
        return [params.reshape(g, rows // g, cols // g)]

    def cost(self, rows: int, cols: int) -> MatrixCost:
        n = rows * cols // self.groups
        return MatrixCost(params=n, macs=n)

    def stages(self, weights: Sequence[np.ndarray]) -> list[Stage]:
        # stored (G, n, m): one contiguous row of m values per output, what the C reads
        params = np.asarray(weights[0], np.float64).transpose(0, 2, 1).reshape(-1)
        rows, cols = self.shape
        if self.groups == 1 and not self.shuffle:
            return [Stage(self.to_dense(weights))]
        return [Stage(self.to_dense(weights),
                      compact=GroupRows(params, rows, cols, self.groups, self.shuffle))]

    def describe(self) -> str:
        return f"{self.groups or 'auto'} groups" + (" + shuffle" if self.shuffle else "")


@dataclasses.dataclass(frozen=True)
class GroupRows(CompactMatrix):
    """The C form of a group stage: the ``(G, m, n)`` blocks stored transposed per group
    (``G × n × m``: one contiguous row of ``m`` values per output), each output row the dense
    kernel over its group's ``m`` inputs."""

    params: np.ndarray
    rows: int
    cols: int
    groups: int
    shuffle: bool

    def index_sign(self):
        g, m, n = self.groups, self.rows // self.groups, self.cols // self.groups
        j = np.arange(self.cols)
        source = (j % g) * n + j // g if self.shuffle else j
        row_group = np.arange(self.rows) // m
        sign = (row_group[:, None] == (source // n)[None, :]).astype(np.int64)
        # (G, n, m) storage: group, output within the group, input within the group
        index = ((source // n)[None, :] * n + (source % n)[None, :]) * m \
            + (np.arange(self.rows) % m)[:, None]
        return np.where(sign == 1, index, 0), sign

    def c_kernel(self, bits: int, mode: str, dense_kernel: str) -> tuple[str, str]:
        return dense_kernel, ""

    def c_call(self, fn: str, array: str, row: str, x: str) -> str:
        g, m, n = self.groups, self.rows // self.groups, self.cols // self.groups
        wide = "uint16_t" if np.size(self.params) <= 65535 else "uint32_t"
        source = (f"((uint16_t)(({row}) % {g}u) * {n}u + (uint16_t)(({row}) / {g}u))"
                  if self.shuffle else f"({row})")
        return (f"{fn}({array} + ({wide}){source} * {m}u, {m}, "
                f"{x} + (uint16_t)({source} / {n}u) * {m}u)")
