"""Small example configurations of every registered cell, for the parametrised contract tests.

A cell added to ``CELL_REGISTRY`` without an entry here fails ``test_every_cell_has_examples``.
"""

from __future__ import annotations

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
    "LowRankGRUCell": [
        {"units": 5},
        {"units": 5, "rank": 2, "recurrent_rank": 3},
        {"units": 5, "recurrent_rank": 2, "reset_after": False},
    ],
}


#: One example structure per matrix family beyond dense and low rank (those are in EXAMPLES),
#: sized for the small test matrices (3 inputs, 5-6 units).
FAMILY_EXAMPLES: dict[str, dict] = {
    "kronecker": {"family": "kronecker"},
    "tensor_train": {"family": "tensor_train", "ranks": 2, "num_cores": 2},
}


def cases():
    """(id, class name, config) for every example of every registered cell, and every cell
    with each matrix family on both of its matrices (cells x families)."""
    out = []
    for name in sorted(CELL_REGISTRY):
        for i, config in enumerate(EXAMPLES.get(name, [])):
            out.append((f"{name}-{i}", name, config))
        units = EXAMPLES[name][0]["units"] if name in EXAMPLES else 5
        for family, spec in FAMILY_EXAMPLES.items():
            out.append((f"{name}-{family}", name, {"units": units, "kernel_structure": spec,
                                                  "recurrent_structure": spec}))
    return out


def make(name: str, config: dict):
    return CELL_REGISTRY[name](**config)
