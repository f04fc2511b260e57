"""The tensor-train family: ``W`` as a TT-matrix (Novikov et al., "Tensorizing Neural
Networks", NeurIPS 2015; TT-RNN: Yang, Krompass, Tresp, ICML 2017), computed with t3f."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

from keras_rnnedge._compat import import_t3f, keras, np, tf
from keras_rnnedge.matrices.base import (
    MatrixCost,
    MatrixStructure,
    Stage,
    check_int_list,
    check_positive,
    divisor_splits,
)

__all__ = ["TensorTrain"]


@dataclasses.dataclass(frozen=True)
class TensorTrain(MatrixStructure):
    r"""A TT-matrix: ``rows = ∏ m_k``, ``cols = ∏ n_k`` and

    .. math:: W[(i_1..i_d), (j_1..j_d)] = G_1[i_1, j_1] G_2[i_2, j_2] \cdots G_d[i_d, j_d]

    with cores ``G_k`` of shape ``(r_{k-1}, m_k, n_k, r_k)``, ``r_0 = r_d = 1`` (t3f's layout);
    weights ``{base}_core_<k>``. ``x @ W`` is ``t3f.matmul(x, t3f.TensorTrain(cores))``: the
    cores are contracted one by one, never forming ``W``.

    Parameters: ``Σ_k r_{k-1} m_k n_k r_k``. Multiply-accumulates per vector product (cores
    contracted from the last): ``Σ_k (∏_{i<k} m_i)(∏_{i>=k} n_i) m_k r_{k-1} r_k``.

    Automatic modes (``in_modes``/``out_modes`` ``None``): among the ordered factorizations of
    ``rows`` and ``cols`` into ``num_cores`` integers whose ranks are all reachable (a rank
    ``r_k`` cannot exceed ``min(∏_{i<=k} m_i n_i, ∏_{i>k} m_i n_i)``), the one with the fewest
    modes of size 1 (a core over a mode of 1 only mixes ranks), then the fewest parameters,
    then the most balanced modes.

    Initialization: the cores' entries are uniform with the variance that gives ``W`` the
    variance of a Glorot-uniform matrix, ``2 / (rows + cols)``: each core
    ``(2 / ((rows + cols) ∏ r_k))^{1/d}`` (``W``'s entries sum ``∏ r_k`` products of ``d``
    core entries). The cell's initializer for the matrix is not used.

    Pruning a core with tfmot zeroes core entries, which removes no entry of ``W`` by itself;
    lowering the ranks is the structured way to shrink a TT-matrix.

    Args:
        ranks: the inner TT ranks ``r_1 .. r_{d-1}``: one integer for all, or a list of
            ``num_cores - 1``.
        in_modes, out_modes: ``m_1..m_d`` and ``n_1..n_d``, or ``None`` to choose them.
        num_cores: ``d`` when the modes are chosen automatically (2 or more).

    Example:
        >>> from keras_rnnedge.matrices import TensorTrain
        >>> tt = TensorTrain(ranks=4).resolve(64, 256, "recurrent_structure")
        >>> tt.in_modes, tt.out_modes, tt.cost(64, 256).params
        ((4, 4, 4), (8, 4, 8), 512)
    """

    ranks: int | tuple[int, ...] = 4
    in_modes: tuple[int, ...] | None = None
    out_modes: tuple[int, ...] | None = None
    num_cores: int = 3
    family = "tensor_train"
    suffix_pattern = r"core_\d+"

    def __post_init__(self):
        check_cores(self, ring=False)

    @property
    def full_ranks(self) -> tuple[int, ...]:
        return (1, *self.ranks, 1)

    def resolve(self, rows: int, cols: int, argument: str) -> TensorTrain:
        if self.in_modes is None:
            found = _best_modes(rows, cols, self.ranks)
            if found is None:
                raise ValueError(
                    f"Received an invalid value for argument {argument}: no split of the "
                    f"{rows}x{cols} matrix into {self.num_cores} TT cores reaches ranks "
                    f"{list(self.ranks)}; lower the ranks or use fewer cores.")
            return TensorTrain(ranks=self.ranks, in_modes=found[0], out_modes=found[1])
        m, n = math.prod(self.in_modes), math.prod(self.out_modes)
        if (m, n) != (rows, cols):
            example = _best_modes(rows, cols, (1,) * (self.num_cores - 1))
            hint = "" if example is None else (f", for example in_modes={list(example[0])}, "
                                               f"out_modes={list(example[1])}")
            raise ValueError(
                f"Received an invalid value for argument {argument}: in_modes "
                f"{list(self.in_modes)} and out_modes {list(self.out_modes)} make a {m}x{n} "
                f"matrix, expected {rows}x{cols} (the modes must multiply to the matrix's "
                f"dimensions){hint}, or in_modes=out_modes=None to choose them.")
        limits = _rank_limits(self.in_modes, self.out_modes)
        for k, (r, limit) in enumerate(zip(self.ranks, limits)):
            if r > limit:
                raise ValueError(
                    f"Received an invalid value for argument {argument}: TT rank r_{k + 1} = "
                    f"{r} exceeds {limit}, the largest this split of modes allows "
                    f"(min of the sizes on either side of the bond); expected ranks <= "
                    f"{list(limits)}.")
        return self

    def weight_names(self, base: str) -> tuple[str, ...]:
        return tuple(f"{base}_core_{k}" for k in range(self.num_cores))

    def weight_shapes(self, base: str, rows: int, cols: int) -> dict[str, tuple[int, ...]]:
        r = self.full_ranks
        return {f"{base}_core_{k}": (r[k], m, n, r[k + 1])
                for k, (m, n) in enumerate(zip(self.in_modes, self.out_modes))}

    def initializers(self, initializer, rows: int, cols: int) -> list:
        variance = (2.0 / ((rows + cols) * math.prod(self.ranks))) ** (1.0 / self.num_cores)
        limit = math.sqrt(3.0 * variance)
        return [keras.initializers.RandomUniform(-limit, limit) for _ in range(self.num_cores)]

    def matmul(self, x, weights: Sequence):
        t3f = import_t3f()
        # t3f.matmul takes tensors only (not variables: a stateful RNN's state is one)
        cores = [tf.convert_to_tensor(w) for w in weights]
        return t3f.matmul(tf.convert_to_tensor(x), t3f.TensorTrain(cores))

    def to_dense(self, weights: Sequence[np.ndarray]) -> np.ndarray:
        full = np.ones((1, 1, 1))  # (rows so far, cols so far, rank)
        for core in weights:
            core = np.asarray(core, np.float64)
            r0, m, n, r1 = core.shape
            full = np.einsum("abr,rmns->ambns", full, core)
            full = full.reshape(full.shape[0] * m, full.shape[2] * n, r1)
        return full[:, :, 0]

    def from_dense(self, matrix: np.ndarray) -> list[np.ndarray]:
        """TT-SVD (Oseledets 2011): sequential truncated SVDs of the matrix's unfoldings, with
        the modes interleaved ``(m_1 n_1)(m_2 n_2)...``; quasi-optimal for the given ranks."""
        d, ins, outs = self.num_cores, self.in_modes, self.out_modes
        w = np.asarray(matrix, np.float64).reshape(*ins, *outs)
        w = w.transpose([i for k in range(d) for i in (k, d + k)])
        cores, r_prev = [], 1
        rest = w.reshape(r_prev * ins[0] * outs[0], -1)
        for k in range(d - 1):
            u, s, vt = np.linalg.svd(rest, full_matrices=False)
            r = min(self.ranks[k], s.size)
            core = u[:, :r].reshape(r_prev, ins[k], outs[k], r)
            if r < self.ranks[k]:  # unreachable rank: pad with zeros to keep the shapes
                core = np.concatenate(
                    [core, np.zeros((r_prev, ins[k], outs[k], self.ranks[k] - r))], axis=3)
            cores.append(core)
            rest = s[:r, None] * vt[:r]
            if r < self.ranks[k]:
                rest = np.concatenate([rest, np.zeros((self.ranks[k] - r, rest.shape[1]))])
            r_prev = self.ranks[k]
            rest = rest.reshape(r_prev * ins[k + 1] * outs[k + 1], -1)
        cores.append(rest.reshape(r_prev, ins[-1], outs[-1], 1))
        return cores

    def cost(self, rows: int, cols: int) -> MatrixCost:
        r = self.full_ranks
        params = sum(r[k] * m * n * r[k + 1]
                     for k, (m, n) in enumerate(zip(self.in_modes, self.out_modes)))
        return MatrixCost(params=params, macs=_tt_macs(self.in_modes, self.out_modes, r))

    def stages(self, weights: Sequence[np.ndarray]) -> list[Stage]:
        """One stage per core, the last first: core ``k`` as the ``(m_k r_k) × (n_k r_{k-1})``
        matrix ``M[m r_k + r, n r_{k-1} + a] = G_k[a, m, n, r]`` over blocks
        ``(∏_{i<k} m_i)(∏_{i>k} n_i)``, with ``inner = r_{k-1}``."""
        out = []
        ins, outs = self.in_modes, self.out_modes
        for k in reversed(range(self.num_cores)):
            core = np.asarray(weights[k], np.float64)
            a, m, n, r = core.shape
            matrix = core.transpose(1, 3, 2, 0).reshape(m * r, n * a)
            out.append(Stage(matrix, blocks=math.prod(ins[:k]) * math.prod(outs[k + 1:]),
                             inner=a, source=k))
        return out

    def describe(self) -> str:
        if self.in_modes is None:
            return f"tensor train ({self.num_cores} cores, ranks {list(self.ranks)})"
        return (f"tensor train {'x'.join(map(str, self.in_modes))} -> "
                f"{'x'.join(map(str, self.out_modes))}, ranks {list(self.ranks)}")


def check_cores(structure, ring: bool) -> None:
    """Validate and normalize ``in_modes``/``out_modes``/``num_cores``/``ranks`` of a tensor
    train (``num_cores - 1`` ranks) or a tensor ring (``ring``: ``num_cores`` ranks)."""
    if (structure.in_modes is None) != (structure.out_modes is None):
        raise ValueError("Received in_modes and out_modes where one is None; expected both "
                         f"lists or both None, got in_modes={structure.in_modes!r}, "
                         f"out_modes={structure.out_modes!r}.")
    d = structure.num_cores
    if structure.in_modes is not None:
        ins = check_int_list(structure.in_modes, "in_modes")
        outs = check_int_list(structure.out_modes, "out_modes", length=len(ins))
        object.__setattr__(structure, "in_modes", ins)
        object.__setattr__(structure, "out_modes", outs)
        d = len(ins)
    d = check_positive(d, "num_cores", "an integer >= 2")
    if d < 2:
        raise ValueError("Received an invalid value for argument num_cores (or the length "
                         f"of in_modes), expected an integer >= 2, got {d}.")
    object.__setattr__(structure, "num_cores", d)
    count = d if ring else d - 1
    if isinstance(structure.ranks, (int, np.integer)) and not isinstance(structure.ranks, bool):
        ranks = (check_positive(structure.ranks, "ranks"),) * count
    else:
        ranks = check_int_list(structure.ranks, "ranks", length=count)
    object.__setattr__(structure, "ranks", ranks)


def _rank_limits(ins, outs) -> tuple[int, ...]:
    sizes = [m * n for m, n in zip(ins, outs)]
    return tuple(min(math.prod(sizes[:k + 1]), math.prod(sizes[k + 1:]))
                 for k in range(len(sizes) - 1))


def _tt_macs(ins, outs, r) -> int:
    d = len(ins)
    return sum(math.prod(ins[:k]) * math.prod(outs[k:]) * ins[k] * r[k] * r[k + 1]
               for k in range(d))


@functools.lru_cache(maxsize=256)
def _best_modes(rows: int, cols: int, ranks: tuple[int, ...]):
    d = len(ranks) + 1
    r = (1, *ranks, 1)
    best, best_key = None, None
    for ins in divisor_splits(rows, d):
        for outs in divisor_splits(cols, d):
            if any(rk > lim for rk, lim in zip(ranks, _rank_limits(ins, outs))):
                continue
            params = sum(r[k] * m * n * r[k + 1] for k, (m, n) in enumerate(zip(ins, outs)))
            ones = sum(1 for m in ins + outs if m == 1)
            key = (ones, params, max(ins) + max(outs), ins, outs)
            if best_key is None or key < best_key:
                best, best_key = (ins, outs), key
    return best
