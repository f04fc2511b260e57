"""Small example configurations of every registered cell, for the parametrised contract tests.

A cell added to ``CELL_REGISTRY`` without an entry here fails ``test_every_cell_has_examples``.
"""

from __future__ import annotations

import inspect

from keras_rnnedge.cells import CELL_REGISTRY

EXAMPLES: dict[str, list[dict]] = {
    "FastRNNCell": [
        {"units": 6},
        {"units": 6, "w_rank": 2, "u_rank": 3, "activation": "quantized_tanh"},
    ],
    "FastGRNNCell": [
        {"units": 6},
        {"units": 6, "w_rank": 2, "u_rank": 3},
        {"units": 6, "u_rank": 2, "activation": "quantized_tanh",
         "recurrent_activation": "quantized_sigmoid"},
    ],
    "LowRankLSTMCell": [
        {"units": 5},
        {"units": 5, "rank": 2, "recurrent_rank": 3},
        {"units": 5, "recurrent_rank": 2, "unit_forget_bias": False,
         "recurrent_activation": "hard_sigmoid"},
    ],
    "HLSTMCell": [
        {"units": 5, "hidden_units": 3},
        {"units": 5},  # no hidden layer: the LSTM
        {"units": 4, "hidden_units": 4, "rank": 2, "gate_rank": 2,
         "hidden_activation": "tanh"},
    ],
    "LowRankGRUCell": [
        {"units": 5},
        {"units": 5, "rank": 2, "recurrent_rank": 3},
        {"units": 5, "recurrent_rank": 2, "reset_after": False},
    ],
    "LowRankSimpleRNNCell": [
        {"units": 6},
        {"units": 8, "rank": 2, "recurrent_rank": 3},
        {"units": 4, "recurrent_rank": 2, "activation": "hard_sigmoid", "use_bias": False},
    ],
    "ProjectionLSTMCell": [
        {"units": 6, "projection_units": 4},
        {"units": 6, "projection_units": 4, "rank": 2, "projection_rank": 2},
        {"units": 6, "projection_units": 3, "recurrent_rank": 2, "unit_forget_bias": False},
        # LGP-Shuffle: a localized group projection with a channel shuffle
        {"units": 8, "projection_units": 4,
         "projection_structure": {"family": "group_shuffle", "groups": 2}},
    ],
}


#: One example structure per matrix family beyond dense and low rank (those are in EXAMPLES),
#: sized for the small test matrices (3 inputs, 5-6 units).
FAMILY_EXAMPLES: dict[str, dict] = {
    "kronecker": {"family": "kronecker"},
    "tensor_train": {"family": "tensor_train", "ranks": 2, "num_cores": 2},
    "tensor_ring": {"family": "tensor_ring", "ranks": [2, 1, 1]},
    "block_circulant": {"family": "block_circulant", "block": 2},
    "toeplitz": {"family": "toeplitz"},
    "hashed": {"family": "hashed", "compression": 3},
    "group_shuffle": {"family": "group_shuffle", "groups": None},
}


def cases():
    """(id, class name, config) for every example of every registered cell, and every cell
    with each matrix family on both of its matrices (cells x families)."""
    out = []
    for name in sorted(CELL_REGISTRY):
        for i, config in enumerate(EXAMPLES.get(name, [])):
            out.append((f"{name}-{i}", name, config))
        base = dict(EXAMPLES[name][0]) if name in EXAMPLES else {"units": 5}
        structures = sorted({p for klass in CELL_REGISTRY[name].__mro__
                             if "__init__" in vars(klass)
                             for p in inspect.signature(klass.__init__).parameters
                             if p.endswith("_structure")})
        for family, spec in FAMILY_EXAMPLES.items():
            out.append((f"{name}-{family}", name, {**base, **dict.fromkeys(structures, spec)}))
    return out


def representative_cases():
    """Every example of every cell, and each matrix family once, on one cell (the cells taken
    in turn): the slow tests (TFLite conversions, training with tfmot) run these; the full
    cross product of :func:`cases` runs in the fast Keras/NumPy tests."""
    names = sorted(CELL_REGISTRY)
    out = [c for c in cases() if not any(c[0].endswith(f"-{f}") for f in FAMILY_EXAMPLES)]
    for i, family in enumerate(FAMILY_EXAMPLES):
        name = names[i % len(names)]
        out.append(next(c for c in cases() if c[0] == f"{name}-{family}"))
    return out


def make(name: str, config: dict):
    return CELL_REGISTRY[name](**config)
