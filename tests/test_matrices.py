"""Matrix families: products against the folded matrix, fits, costs counted by hand, errors."""

from __future__ import annotations

import numpy as np
import pytest

from keras_rnnedge._compat import keras, tf
from keras_rnnedge.cells import FastGRNNCell, LowRankLSTMCell
from keras_rnnedge.matrices import (
    MATRIX_FAMILIES,
    BlockCirculant,
    Dense,
    GroupShuffle,
    Hashed,
    Kronecker,
    LowRank,
    TensorRing,
    TensorTrain,
    Toeplitz,
    factor_suffix,
    get_structure,
)
from keras_rnnedge.matrices.base import run_stages
from tests import tolerances

#: (structure, rows, cols) covering every registered family
EXAMPLES = [
    (Dense(), 7, 5),
    (LowRank(3), 7, 9),
    (Kronecker(), 12, 20),
    (Kronecker(num_factors=3), 8, 27),
    (Kronecker(factors=((2, 3), (5, 4))), 10, 12),
    (TensorTrain(ranks=3), 16, 24),
    (TensorTrain(ranks=(2, 3), in_modes=(2, 3, 2), out_modes=(3, 2, 4)), 12, 24),
    # ranks that reach every 12x24 matrix: the ring's SVD fit is exact (see below)
    (TensorRing(ranks=(2, 3, 12), in_modes=(2, 2, 3), out_modes=(3, 4, 2)), 12, 24),
    (TensorRing(ranks=2, num_cores=2), 6, 20),
    (BlockCirculant(4), 8, 12),
    (BlockCirculant(4), 9, 10),  # padded: the corner of a 12x12 block-circulant matrix
    (Toeplitz(), 7, 12),
    (Hashed(compression=4, seed=7), 9, 16),
    (GroupShuffle(3), 6, 12),
    (GroupShuffle(2, shuffle=False), 8, 10),
]


def test_every_family_has_an_example():
    assert {type(s).family for s, _, _ in EXAMPLES} == set(MATRIX_FAMILIES)


def _random_weights(structure, rows, cols, rng):
    shapes = structure.weight_shapes("w", rows, cols)
    return [rng.normal(size=shape).astype("float32") for shape in shapes.values()]


@pytest.mark.parametrize("structure,rows,cols", EXAMPLES, ids=lambda v: str(v)[:30])
def test_product_equals_the_folded_matrix(structure, rows, cols, rng):
    s = structure.resolve(rows, cols, "kernel_structure")
    weights = _random_weights(s, rows, cols, rng)
    x = rng.normal(size=(5, rows)).astype("float32")
    dense = s.to_dense(weights)
    assert dense.shape == (rows, cols)
    eager = s.matmul(tf.constant(x), [tf.constant(w) for w in weights]).numpy()
    jit = tf.function(lambda a, *ws: s.matmul(a, ws), jit_compile=True)(
        tf.constant(x), *[tf.constant(w) for w in weights]).numpy()
    # float32 products reassociated against a float64 fold of at most a few dozen terms
    np.testing.assert_allclose(eager, x @ dense, atol=tolerances.STRUCTURED_PRODUCT_ATOL)
    np.testing.assert_allclose(jit, eager, atol=tolerances.STRUCTURED_JIT_ATOL)


@pytest.mark.parametrize("structure,rows,cols", EXAMPLES, ids=lambda v: str(v)[:30])
def test_from_dense_recovers_a_matrix_of_the_family(structure, rows, cols, rng):
    s = structure.resolve(rows, cols, "kernel_structure")
    w = s.to_dense(_random_weights(s, rows, cols, rng))
    refit = s.to_dense(s.from_dense(w))
    np.testing.assert_allclose(refit, w,
                               atol=tolerances.FOLD_ROUNDTRIP_EPS * np.abs(w).max() * w.size)


@pytest.mark.parametrize("structure,rows,cols", EXAMPLES, ids=lambda v: str(v)[:30])
def test_stages_compute_the_product(structure, rows, cols, rng):
    """The chain of stages (what the integer path quantizes and the C runs) is x @ W, and its
    multiplies are the family's MAC count."""
    s = structure.resolve(rows, cols, "kernel_structure")
    weights = _random_weights(s, rows, cols, rng)
    x = rng.normal(size=(4, rows))
    stages = s.stages(weights)
    np.testing.assert_allclose(run_stages(stages, x), x @ s.to_dense(weights),
                               atol=tolerances.STAGES_ATOL)
    # the MACs are the stages' structural non-zeros (random weights: every other entry is
    # non-zero), what the C multiplies: a group matrix's or a ring's block-diagonal zeros are not
    assert sum(st.blocks * np.count_nonzero(st.matrix) for st in stages) == \
        s.cost(rows, cols).macs


def test_costs_counted_by_hand():
    # Kronecker 80x240 = (8x16) ⊗ (10x15): x reshaped (8, 10); contracting the 10-mode costs
    # 8 rows x (10x15) = 1200 MACs, then the 8-mode 15 rows x (8x16) = 1920.
    k = Kronecker(factors=((8, 16), (10, 15)))
    assert k.cost(80, 240).params == 8 * 16 + 10 * 15 == 278
    assert k.cost(80, 240).macs == 1200 + 1920
    # TT 64x256, modes (4,4,4) -> (8,4,8), ranks 4: core 3 over (16 rows, m3=4) -> 16*4*4*8;
    # core 2: (m1=4, n3=8) x (m2 r2 = 16) x (r1 n2 = 16); core 1: (n2 n3 = 32) x (m1 r1) x n1
    tt = TensorTrain(ranks=4, in_modes=(4, 4, 4), out_modes=(8, 4, 8))
    assert tt.cost(64, 256).params == 1 * 4 * 8 * 4 + 4 * 4 * 4 * 4 + 4 * 4 * 8 * 1 == 512
    assert tt.cost(64, 256).macs == 16 * 4 * 4 * 8 + 4 * 8 * 16 * 16 + 32 * 16 * 8
    assert LowRank(5).cost(9, 80) == Dense().cost(5, 89)  # 5 * (9 + 80) both
    # block-circulant 9x10 in 4x4 blocks: padded to 12x12, 3x3 blocks of 4 values
    assert BlockCirculant(4).cost(9, 10).params == 3 * 3 * 4
    assert Toeplitz().cost(9, 10).params == 18  # one value per diagonal
    assert Hashed(compression=8).resolve(32, 128, "x").cost(32, 128).params == 512


def test_tensor_ring_is_the_trace_of_its_cores(rng):
    """Every entry of W is trace(G_1[i_1, j_1] ... G_d[i_d, j_d]) (Zhao et al.), computed here
    entry by entry; a ring with r_0 = 1 is a tensor train."""
    s = TensorRing(ranks=(2, 3, 2)).resolve(12, 24, "x")
    cores = _random_weights(s, 12, 24, rng)
    w = s.to_dense(cores)
    for row in range(12):
        for col in range(24):
            i = np.unravel_index(row, s.in_modes)
            j = np.unravel_index(col, s.out_modes)
            prod = np.eye(2)
            for k, core in enumerate(cores):
                prod = prod @ core[:, i[k], j[k], :].astype(np.float64)
            assert w[row, col] == pytest.approx(np.trace(prod), abs=1e-9)
    tt = TensorTrain(ranks=(3, 2), in_modes=s.in_modes, out_modes=s.out_modes)
    ring = TensorRing(ranks=(1, 3, 2), in_modes=s.in_modes, out_modes=s.out_modes)
    tt_cores = _random_weights(tt, 12, 24, rng)
    np.testing.assert_allclose(ring.to_dense(tt_cores), tt.to_dense(tt_cores), atol=1e-12)
    # the fit of a random dense matrix with ranks that reach it is exact; smaller ranks are not
    dense = rng.normal(size=(12, 24))
    full = TensorRing(ranks=(2, 3, 12), in_modes=(2, 2, 3), out_modes=(3, 4, 2))
    np.testing.assert_allclose(full.to_dense(full.from_dense(dense)), dense, atol=1e-9)
    small = s.to_dense(s.from_dense(dense))
    assert 0.3 < np.linalg.norm(small - dense) / np.linalg.norm(dense) < 1.0


def test_group_shuffle_is_block_diagonal_then_shuffled(rng):
    """Output j of the shuffled matrix is output (j mod G) n + j // G of the block-diagonal
    one (ShuffleNet's channel shuffle: reshape (G, n), transpose, flatten)."""
    s = GroupShuffle(3).resolve(6, 12, "x")
    blocks = rng.normal(size=(3, 2, 4))
    plain = np.zeros((6, 12))
    for g in range(3):
        plain[2 * g:2 * g + 2, 4 * g:4 * g + 4] = blocks[g]
    shuffled = plain.reshape(6, 3, 4).transpose(0, 2, 1).reshape(6, 12)
    np.testing.assert_allclose(s.to_dense([blocks]), shuffled)
    np.testing.assert_allclose(GroupShuffle(3, shuffle=False).resolve(6, 12, "x")
                               .to_dense([blocks]), plain)
    with pytest.raises(ValueError, match=r"groups=4 does not divide the 6x12 matrix.*\[1, 2, 3, "
                                         r"6\]"):
        GroupShuffle(4).resolve(6, 12, "kernel_structure")


def test_compact_families_follow_their_papers_definitions(rng):
    # block-circulant (C-LSTM): each k x k block is circulant, its first column the vector
    s = BlockCirculant(3).resolve(6, 9, "x")
    c = rng.normal(size=(3, 2, 3))
    w = s.to_dense([c])
    for p in range(2):
        for q in range(3):
            block = w[3 * p:3 * p + 3, 3 * q:3 * q + 3]
            for shift in range(3):  # every column is the first one rotated down
                np.testing.assert_array_equal(block[:, shift], np.roll(block[:, 0], shift))
            np.testing.assert_array_equal(block[:, 0], c[q, p])
    # Toeplitz: constant along every diagonal
    t = Toeplitz().resolve(5, 7, "x").to_dense([rng.normal(size=11)])
    for i in range(1, 5):
        np.testing.assert_array_equal(t[i, 1:], t[i - 1, :-1])
    # hashed: every entry is ± one of the K shared weights; the signs are balanced and every
    # weight is used (64 x 64 entries over 512 weights)
    h = Hashed(buckets=512).resolve(64, 64, "x")
    shared = rng.normal(size=512)
    dense = h.to_dense([shared])
    assert set(np.round(np.abs(dense).ravel(), 12)) <= set(np.round(np.abs(shared), 12))
    bucket, sign = h.stages([shared])[0].compact.index_sign()
    assert len(np.unique(bucket)) == 512 and abs(sign.mean()) < 0.05
    # another seed, another pattern
    other = Hashed(buckets=512, seed=1).resolve(64, 64, "x").stages([shared])[0].compact
    assert np.mean(other.index_sign()[0] == bucket) < 0.05


def test_automatic_kronecker_factors_keep_the_rank():
    """The fewest-parameter split of 32x32 is (1x32) ⊗ (32x1), a rank-1 matrix; the chosen
    split can reach full rank, with the fewest parameters among those that can."""
    k = Kronecker().resolve(32, 32, "recurrent_structure")
    assert np.prod([min(m, n) for m, n in k.factors]) == 32
    assert k.cost(32, 32).params == 4 * 4 + 8 * 8
    rng = np.random.default_rng(0)
    w = k.to_dense(_random_weights(k, 32, 32, rng))
    assert np.linalg.matrix_rank(w) == 32


@pytest.mark.parametrize("structure,rows,cols", [(Kronecker(), 64, 96),
                                                  (TensorTrain(ranks=4), 64, 96),
                                                  (TensorRing(ranks=3), 64, 96),
                                                  (BlockCirculant(8), 64, 96),
                                                  (Toeplitz(), 64, 96),
                                                  (Hashed(), 64, 96)])
def test_initialization_has_glorot_variance(structure, rows, cols):
    keras.utils.set_random_seed(0)
    s = structure.resolve(rows, cols, "kernel_structure")
    inits = s.initializers(keras.initializers.GlorotUniform(), rows, cols)
    shapes = s.weight_shapes("w", rows, cols).values()
    variances = []
    for _ in range(20):
        weights = [init(shape).numpy() for init, shape in zip(inits, shapes)]
        variances.append(s.to_dense(weights).var())
    # 20 draws of a 64x96 matrix: the mean variance within 25 % of Glorot's 2 / (rows + cols)
    assert np.mean(variances) == pytest.approx(2.0 / (rows + cols), rel=0.25)


@pytest.mark.parametrize("spec,match", [
    ("circulant", r"unknown value for argument kernel_structure: 'circulant'.*Expected one of"),
    ("low_rank", r"low_rank family needs parameters.*'rank': 4"),
    ({"family": "low_rank", "rank": 0}, r"argument rank, expected a positive integer, got 0"),
    ({"family": "kronecker", "factors": [[2, 3]]}, r"argument factors.*at least two"),
    ({"family": "tensor_train", "ranks": 0}, r"argument ranks.*got 0"),
    ({"family": "tensor_train", "in_modes": [2, 2]}, r"one is None"),
    ({"family": "kronecker", "size": 3}, r"unexpected keyword argument 'size'"),
    (3, r"expected None, one of"),
    ({"family": "block_circulant", "block": 0}, r"argument block, expected a positive integer"),
    ({"family": "hashed", "buckets": 70000}, r"buckets=70000, expected at most 65536"),
    ({"family": "hashed", "compression": 0.5}, r"argument compression.*number >= 1"),
    ({"family": "hashed", "seed": -1}, r"argument seed.*\[0, 2\*\*32\)"),
    ({"family": "toeplitz", "shape": [3]}, r"argument shape.*\(rows, cols\)"),
])
def test_bad_structure_arguments(spec, match):
    with pytest.raises(ValueError, match=match):
        get_structure(spec, "kernel_structure")


@pytest.mark.parametrize("structure,match", [
    (Kronecker(factors=((2, 3), (4, 4))), r"make a 8x12 matrix, expected 9x16.*for example"),
    (TensorTrain(ranks=2, in_modes=(3, 2), out_modes=(4, 4)),
     r"make a 6x16 matrix, expected 9x16.*for example in_modes="),
    (TensorTrain(ranks=50, in_modes=(3, 3), out_modes=(4, 4)),
     r"TT rank r_1 = 50 exceeds 12"),
    (LowRank(10), r"integer in \[1, 9\].*got 10"),
    (Toeplitz(shape=(4, 4)), r"resolved for a 4x4 matrix\), expected one for the 9x16"),
])
def test_structures_that_do_not_fit_the_matrix(structure, match):
    with pytest.raises(ValueError, match=rf"argument kernel_structure.*{match}"):
        structure.resolve(9, 16, "kernel_structure")


def test_cell_refuses_a_rank_and_a_structure_for_one_matrix():
    with pytest.raises(ValueError, match=r"both w_rank=4 and kernel_structure='kronecker'"):
        FastGRNNCell(8, w_rank=4, kernel_structure="kronecker")
    # the same low-rank structure both ways is accepted
    cell = LowRankLSTMCell(8, rank=2, kernel_structure={"family": "low_rank", "rank": 2})
    assert cell.rank == 2 and cell.get_config()["kernel_structure"] is None


def test_cell_build_names_the_argument_when_the_structure_does_not_fit():
    cell = FastGRNNCell(8, kernel_structure={"family": "kronecker", "factors": [[2, 2], [2, 4]]})
    with pytest.raises(ValueError, match=r"argument kernel_structure: Kronecker factors "
                                         r"\[\[2, 2\], \[2, 4\]\] make a 4x8 matrix, expected 3x8"):
        keras.layers.RNN(cell)(np.zeros((1, 2, 3), "float32"))


def test_factor_suffix_names_every_family_weight():
    pattern = factor_suffix()
    for structure, rows, cols in EXAMPLES:
        s = structure.resolve(rows, cols, "x")
        for name in s.weight_names("recurrent_kernel"):
            assert pattern.sub("", name) == "recurrent_kernel"
