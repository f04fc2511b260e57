"""The hashed family: every entry of ``W`` is a signed copy of one of ``K`` shared weights
chosen by a hash of its position (HashedNets, Chen et al., ICML 2015)."""

from __future__ import annotations

import dataclasses
import math
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

__all__ = ["HASH_MULTIPLIER", "Hashed", "HashedRows", "hash_bucket_sign"]

#: The hash: ``h = HASH_MULTIPLIER * (position + seed) mod 2**32`` (Fibonacci hashing, Knuth
#: TAOCP 6.4), the bucket ``(h >> 16) * K >> 16`` (the high bits, mapped onto ``K``) and the
#: sign from bit 15. Consecutive positions step ``h`` by the multiplier: the C walks a row with
#: one 32-bit addition and one 16×16-bit product per entry.
HASH_MULTIPLIER = 0x9E3779B1
#: At most this many shared weights (the bucket is a 16-bit fraction times K).
MAX_BUCKETS = 1 << 16


def hash_bucket_sign(rows: int, cols: int, buckets: int, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(bucket, sign)`` of every entry of a ``rows × cols`` matrix, each ``rows × cols``.

    The position of ``W[i, j]`` is ``j * rows + i`` (the transposed matrix's row-major index,
    the order the C reads). This is the one definition of the hash; Keras, the integer oracle
    and the C (:class:`HashedRows`) all follow it.
    """
    i = np.arange(rows, dtype=np.uint64)[:, None]
    j = np.arange(cols, dtype=np.uint64)[None, :]
    position = j * np.uint64(rows) + i
    h = (np.uint64(HASH_MULTIPLIER) * (position + np.uint64(seed))) & np.uint64(0xFFFFFFFF)
    bucket = ((h >> np.uint64(16)) * np.uint64(buckets)) >> np.uint64(16)
    sign = np.where(h & np.uint64(0x8000), -1, 1)
    return bucket.astype(np.int64), sign.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Hashed(MatrixStructure):
    r"""``W[i, j] = ξ(i, j) · w[h(i, j)]`` with ``K`` shared weights ``{base}_buckets`` and the
    hash and sign of :func:`hash_bucket_sign` (seeded: each matrix of a cell can take its own
    seed so that two matrices do not share a pattern).

    Keras and TFLite multiply by the expanded matrix (a constant gather and sign the converter
    folds: the flatbuffer holds a dense matrix, no flash saving there); the C stores the ``K``
    weights and computes bucket and sign on the fly.

    Args:
        buckets: ``K``; or ``None`` for ``ceil(rows · cols / compression)``.
        compression: the ratio when ``buckets`` is ``None`` (default 8).
        seed: a non-negative integer below ``2**32``.

    Example:
        >>> from keras_rnnedge.matrices import Hashed
        >>> Hashed(compression=16).resolve(32, 128, "recurrent_structure").cost(32, 128)
        MatrixCost(params=256, macs=4096)
    """

    buckets: int | None = None
    compression: float = 8.0
    seed: int = 0
    shape: tuple[int, int] | None = None
    tflite_dense = True
    family = "hashed"
    suffix_pattern = "buckets"

    def __post_init__(self):
        if self.buckets is not None:
            check_positive(self.buckets, "buckets")
            if self.buckets > MAX_BUCKETS:
                raise ValueError(f"Received buckets={self.buckets}, expected at most "
                                 f"{MAX_BUCKETS} (the hash maps a 16-bit fraction onto them).")
        if (isinstance(self.compression, bool) or not isinstance(self.compression, (int, float))
                or not self.compression >= 1):
            raise ValueError(f"Received an invalid value for argument compression: "
                             f"{self.compression!r}; expected a number >= 1.")
        if (isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer))
                or not 0 <= self.seed < 2**32):
            raise ValueError(f"Received an invalid value for argument seed: {self.seed!r}; "
                             "expected an integer in [0, 2**32).")
        object.__setattr__(self, "shape", check_shape(self.shape))

    def resolve(self, rows: int, cols: int, argument: str) -> Hashed:
        check_resolved_shape(self, rows, cols, argument)
        k = self.buckets or max(1, math.ceil(rows * cols / self.compression))
        if k > MAX_BUCKETS:
            raise ValueError(f"Received {argument}={self.get_config()}: {k} shared weights for "
                             f"the {rows}x{cols} matrix, expected at most {MAX_BUCKETS}; raise "
                             "compression or set buckets.")
        return dataclasses.replace(self, buckets=min(k, rows * cols), shape=(rows, cols))

    def weight_names(self, base: str) -> tuple[str, ...]:
        return (f"{base}_buckets",)

    def weight_shapes(self, base: str, rows: int, cols: int) -> dict[str, tuple[int, ...]]:
        return {f"{base}_buckets": (self.buckets,)}

    def initializers(self, initializer, rows: int, cols: int) -> list:
        return [glorot_entries(rows, cols)]

    def _hash(self):
        return hash_bucket_sign(*self.shape, self.buckets, self.seed)

    def matmul(self, x, weights: Sequence):
        bucket, sign = self._hash()
        return gathered_matmul(x, weights[0], bucket, sign)

    def to_dense(self, weights: Sequence[np.ndarray]) -> np.ndarray:
        bucket, sign = self._hash()
        return sign * np.asarray(weights[0], np.float64)[bucket]

    def from_dense(self, matrix: np.ndarray) -> list[np.ndarray]:
        """The nearest hashed matrix (Frobenius): each shared weight is the mean of the signed
        entries it stands for (0 for a bucket no entry hashes to)."""
        bucket, sign = self._hash()
        w = np.asarray(matrix, np.float64)
        total = np.bincount(bucket.ravel(), weights=(sign * w).ravel(), minlength=self.buckets)
        count = np.bincount(bucket.ravel(), minlength=self.buckets)
        return [total / np.maximum(count, 1)]

    def cost(self, rows: int, cols: int) -> MatrixCost:
        return MatrixCost(params=self.buckets, macs=rows * cols)

    def stages(self, weights: Sequence[np.ndarray]) -> list[Stage]:
        w = np.asarray(weights[0], np.float64)
        return [Stage(self.to_dense(weights),
                      compact=HashedRows(w, *self.shape, self.buckets, self.seed))]

    def describe(self) -> str:
        return f"hashed K={self.buckets}" if self.buckets else "hashed"


@dataclasses.dataclass(frozen=True)
class HashedRows(CompactMatrix):
    """The C form of a hashed stage: the ``K`` weights; row ``j`` of the transposed matrix
    starts at ``h = HASH_MULTIPLIER * (j * rows + seed)`` and steps ``h`` by the multiplier
    per input."""

    params: np.ndarray
    rows: int
    cols: int
    buckets: int
    seed: int

    def index_sign(self):
        return hash_bucket_sign(self.rows, self.cols, self.buckets, self.seed)

    def c_kernel(self, bits: int, mode: str, dense_kernel: str) -> tuple[str, str]:
        # the weights are symmetric (|q| <= 2^(bits-1) - 1): negating one stays in its type,
        # and the product goes through the runtime's multiply-accumulate (8x16 bits on the AVR)
        t, ct = f"I{bits}", f"int{bits}_t"
        name = f"re_mv_hash_i{bits}_{mode}"
        add = ("acc = re_sat_add32(acc, (int32_t)v * (int32_t)*x++);" if mode == "sat"
               else f"RE_MAC_{t}(acc, v, *x++);")
        return name, (
            f"RE_KERNEL int32_t {name}(const {ct} *w, uint16_t k, uint32_t h, uint16_t n, "
            "const int16_t *x) {\n    int32_t acc = 0;\n    while (n--) {\n"
            f"        {ct} v = RE_RD_{t}(w + (uint16_t)(((uint32_t)(uint16_t)(h >> 16) * k) "
            ">> 16));\n"
            f"        if (h & 0x8000u) v = ({ct})-v;\n"
            f"        {add}\n        h += UINT32_C({HASH_MULTIPLIER:#x});\n    }}\n"
            "    return acc;\n}\n")

    def c_call(self, fn: str, array: str, row: str, x: str) -> str:
        return (f"{fn}({array}, {self.buckets}u, UINT32_C({HASH_MULTIPLIER:#x}) * "
                f"((uint32_t)({row}) * {self.rows}u + UINT32_C({self.seed})), {self.rows}, {x})")
