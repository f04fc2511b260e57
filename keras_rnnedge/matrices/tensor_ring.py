"""The tensor-ring family: a TT-matrix closed into a ring, ``W = trace(G_1 G_2 ... G_d)``
(Zhao et al., "Tensor ring decomposition", 2016; TR-RNN: Pan et al., AAAI 2019)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from keras_rnnedge._compat import import_t3f, keras, np, tf
from keras_rnnedge.matrices.base import (
    MatrixCost,
    MatrixStructure,
    Stage,
)
from keras_rnnedge.matrices.tensor_train import TensorTrain, check_cores

__all__ = ["TensorRing"]


@dataclasses.dataclass(frozen=True)
class TensorRing(MatrixStructure):
    r"""A tensor-ring matrix: ``rows = ∏ m_k``, ``cols = ∏ n_k`` and

    .. math:: W[(i_1..i_d), (j_1..j_d)] = \operatorname{trace}(G_1[i_1, j_1] \cdots G_d[i_d, j_d])

    with cores ``G_k`` of shape ``(r_{k-1}, m_k, n_k, r_k)`` and ``r_d = r_0`` (the ring closes;
    ``r_0 = 1`` is a tensor train). Weights ``{base}_ring_<k>``. Parameters
    ``Σ_k r_{k-1} m_k n_k r_k``: the ring spreads the ranks evenly where a TT pins its ends to 1.

    The product runs as the equivalent tensor train (the sum over the ring index ``ρ`` of ``r_0``
    TTs, carried as an extra rank): the first core becomes ``(1, m_1, n_1, r_1 r_0)``, each
    middle core ``G_k ⊗ I_{r_0}`` (block-diagonal over ``ρ``) and the last
    ``(r_{d-1} r_0, m_d, n_d, 1)``; Keras computes it with ``t3f.matmul``, TFLite and the C run
    its stages. The block-diagonal middle cores cost ``r_0`` times their parameters in
    multiply-accumulates (and in a TFLite flatbuffer, which holds them with their zeros; the C
    stores them CSR when that is smaller). With two cores there is no middle core and no
    overhead (and the ring is a TT of rank ``r_0 r_1``).

    Initialization: uniform with the variance giving ``W`` the Glorot variance
    ``2 / (rows + cols)``: each core ``(2 / ((rows + cols) ∏_k r_k))^{1/d}``.

    Args:
        ranks: ``r_0, ..., r_{d-1}``: one integer for all, or a list of ``num_cores``.
        in_modes, out_modes: ``m_1..m_d`` and ``n_1..n_d``, or ``None`` to choose them as
            :class:`~keras_rnnedge.matrices.TensorTrain` does.
        num_cores: ``d`` when the modes are chosen automatically (2 or more).

    Example:
        >>> from keras_rnnedge.matrices import TensorRing
        >>> tr = TensorRing(ranks=3).resolve(64, 256, "recurrent_structure")
        >>> tr.in_modes, tr.out_modes, tr.cost(64, 256).params
        ((4, 4, 4), (8, 4, 8), 576)
    """

    ranks: int | tuple[int, ...] = 2
    in_modes: tuple[int, ...] | None = None
    out_modes: tuple[int, ...] | None = None
    num_cores: int = 3
    family = "tensor_ring"
    suffix_pattern = r"ring_\d+"

    def __post_init__(self):
        check_cores(self, ring=True)

    @property
    def full_ranks(self) -> tuple[int, ...]:
        return (*self.ranks, self.ranks[0])

    def resolve(self, rows: int, cols: int, argument: str) -> TensorRing:
        if self.in_modes is None:
            modes = TensorTrain(ranks=1, num_cores=self.num_cores).resolve(rows, cols, argument)
            return TensorRing(ranks=self.ranks, in_modes=modes.in_modes,
                              out_modes=modes.out_modes)
        m, n = math.prod(self.in_modes), math.prod(self.out_modes)
        if (m, n) != (rows, cols):
            raise ValueError(
                f"Received an invalid value for argument {argument}: in_modes "
                f"{list(self.in_modes)} and out_modes {list(self.out_modes)} make a {m}x{n} "
                f"matrix, expected {rows}x{cols} (the modes must multiply to the matrix's "
                "dimensions), or in_modes=out_modes=None to choose them.")
        return self

    def weight_names(self, base: str) -> tuple[str, ...]:
        return tuple(f"{base}_ring_{k}" for k in range(self.num_cores))

    def weight_shapes(self, base: str, rows: int, cols: int) -> dict[str, tuple[int, ...]]:
        r = self.full_ranks
        return {f"{base}_ring_{k}": (r[k], m, n, r[k + 1])
                for k, (m, n) in enumerate(zip(self.in_modes, self.out_modes))}

    def initializers(self, initializer, rows: int, cols: int) -> list:
        variance = (2.0 / ((rows + cols) * math.prod(self.ranks))) ** (1.0 / self.num_cores)
        limit = math.sqrt(3.0 * variance)
        return [keras.initializers.RandomUniform(-limit, limit) for _ in range(self.num_cores)]

    # -- the equivalent tensor train ------------------------------------------------------------
    def _train(self) -> TensorTrain:
        r0 = self.ranks[0]
        return TensorTrain(ranks=tuple(r * r0 for r in self.ranks[1:]), in_modes=self.in_modes,
                           out_modes=self.out_modes)

    def _train_cores(self, cores, ops):
        """The TT cores of the ring (``ops``: NumPy or TensorFlow)."""
        r0, d = self.ranks[0], self.num_cores
        out = []
        for k, g in enumerate(cores):
            a, m, n, b = (int(v) for v in g.shape)
            if k == 0:    # G'[0, m, n, (b, ρ)] = G[ρ, m, n, b]
                out.append(ops.reshape(ops.transpose(g, (1, 2, 3, 0)), (1, m, n, b * r0)))
            elif k == d - 1:  # G'[(a, ρ), m, n, 0] = G[a, m, n, ρ]
                out.append(ops.reshape(ops.transpose(g, (0, 3, 1, 2)), (a * r0, m, n, 1)))
            else:         # G'[(a, ρ), m, n, (b, ρ')] = G[a, m, n, b] δ(ρ, ρ')
                # a broadcast product, a transpose and a reshape of constants: the TFLite
                # converter folds them (an einsum here lowers to a BatchMatMul it rejects)
                eye = ops.reshape(ops.eye(r0, dtype=g.dtype), (1, 1, 1, 1, r0, r0))
                block = ops.transpose(ops.reshape(g, (a, m, n, b, 1, 1)) * eye,
                                      (0, 4, 1, 2, 3, 5))
                out.append(ops.reshape(block, (a * r0, m, n, b * r0)))
        return out

    def matmul(self, x, weights: Sequence):
        t3f = import_t3f()
        cores = self._train_cores([tf.convert_to_tensor(w) for w in weights], _TF)
        return t3f.matmul(tf.convert_to_tensor(x), t3f.TensorTrain(cores))

    def to_dense(self, weights: Sequence[np.ndarray]) -> np.ndarray:
        # (r_0, rows so far, cols so far, r_k), then the trace over r_0 = r_d
        full = None
        for core in weights:
            core = np.asarray(core, np.float64)
            a, m, n, b = core.shape
            if full is None:
                full = core
                continue
            full = np.einsum("pxyr,rmns->pxmyns", full, core)
            p, x, _, y, _, s = full.shape
            full = full.reshape(p, x * m, y * n, s)
        return np.einsum("pxyp->xy", full)

    def from_dense(self, matrix: np.ndarray) -> list[np.ndarray]:
        """TR-SVD (Zhao et al. 2016): the first unfolding's truncated SVD of rank ``r_0 r_1``
        split into the two ring ranks, then TT-SVD of the rest with ``r_0`` carried to the last
        core; quasi-optimal, exact when the ranks reach the matrix's."""
        d, ins, outs, r = self.num_cores, self.in_modes, self.out_modes, self.full_ranks
        w = np.asarray(matrix, np.float64).reshape(*ins, *outs)
        w = w.transpose([i for k in range(d) for i in (k, d + k)])
        u, s, vt = np.linalg.svd(w.reshape(ins[0] * outs[0], -1), full_matrices=False)
        keep = min(r[0] * r[1], s.size)
        u = np.pad(u[:, :keep], ((0, 0), (0, r[0] * r[1] - keep)))
        rest = np.pad(s[:keep, None] * vt[:keep], ((0, r[0] * r[1] - keep), (0, 0)))
        cores = [u.reshape(ins[0], outs[0], r[0], r[1]).transpose(2, 0, 1, 3)]
        rest = rest.reshape(r[0], r[1], -1).transpose(1, 2, 0)  # (r_1, rest, r_0)
        for k in range(1, d - 1):
            mat = rest.reshape(r[k] * ins[k] * outs[k], -1)
            u, s, vt = np.linalg.svd(mat, full_matrices=False)
            keep = min(r[k + 1], s.size)
            u = np.pad(u[:, :keep], ((0, 0), (0, r[k + 1] - keep)))
            rest = np.pad(s[:keep, None] * vt[:keep], ((0, r[k + 1] - keep), (0, 0)))
            cores.append(u.reshape(r[k], ins[k], outs[k], r[k + 1]))
        cores.append(rest.reshape(r[d - 1], ins[-1], outs[-1], r[0]))
        return cores

    def cost(self, rows: int, cols: int) -> MatrixCost:
        r = self.full_ranks
        params = sum(r[k] * m * n * r[k + 1]
                     for k, (m, n) in enumerate(zip(self.in_modes, self.out_modes)))
        # the equivalent TT's products, less the zeros of its block-diagonal middle cores
        # (r_0 - 1 of every r_0 entries; the C stores them CSR and skips them)
        train, r0 = self._train(), self.ranks[0]
        macs = 0
        for k, stage in zip(reversed(range(self.num_cores)), train.stages(
                [np.ones(s) for s in train.weight_shapes("w", rows, cols).values()])):
            dense = stage.blocks * stage.matrix.size
            macs += dense if k in (0, self.num_cores - 1) else dense // r0
        return MatrixCost(params=params, macs=macs)

    def stages(self, weights: Sequence[np.ndarray]) -> list[Stage]:
        cores = self._train_cores([np.asarray(w, np.float64) for w in weights], np)
        return self._train().stages(cores)

    def describe(self) -> str:
        if self.in_modes is None:
            return f"tensor ring ({self.num_cores} cores, ranks {list(self.ranks)})"
        return (f"tensor ring {'x'.join(map(str, self.in_modes))} -> "
                f"{'x'.join(map(str, self.out_modes))}, ranks {list(self.ranks)}")


class _TF:
    """The array operations :meth:`TensorRing._train_cores` needs, in TensorFlow."""

    reshape = staticmethod(tf.reshape)
    transpose = staticmethod(tf.transpose)

    @staticmethod
    def eye(n, dtype):
        return tf.eye(n, dtype=dtype)
