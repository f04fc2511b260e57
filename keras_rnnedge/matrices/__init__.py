"""Matrix families: the ways a cell's weight matrix can be parameterized.

Each family is one module holding everything about it (see :mod:`keras_rnnedge.matrices.base`
for the verbs) and one entry in :data:`MATRIX_FAMILIES`. Cells take a structure per matrix
(``kernel_structure=``, ``recurrent_structure=``) as a string, a config dict or an instance:

    >>> from keras_rnnedge.matrices import get_structure
    >>> get_structure("kronecker")
    Kronecker(factors=None, num_factors=2)
    >>> get_structure({"family": "tensor_train", "ranks": 2})
    TensorTrain(ranks=(2, 2), in_modes=None, out_modes=None, num_cores=3)
"""

from __future__ import annotations

import re
from typing import Any

from keras_rnnedge.matrices.base import MatrixCost, MatrixStructure
from keras_rnnedge.matrices.block_circulant import BlockCirculant
from keras_rnnedge.matrices.dense import Dense
from keras_rnnedge.matrices.group_shuffle import GroupShuffle
from keras_rnnedge.matrices.hashed import Hashed
from keras_rnnedge.matrices.kronecker import Kronecker
from keras_rnnedge.matrices.low_rank import LowRank
from keras_rnnedge.matrices.tensor_ring import TensorRing
from keras_rnnedge.matrices.tensor_train import TensorTrain
from keras_rnnedge.matrices.toeplitz import Toeplitz

__all__ = [
    "MATRIX_FAMILIES",
    "BlockCirculant",
    "Dense",
    "GroupShuffle",
    "Hashed",
    "Kronecker",
    "LowRank",
    "MatrixCost",
    "MatrixStructure",
    "TensorRing",
    "TensorTrain",
    "Toeplitz",
    "factor_suffix",
    "get_structure",
    "register_family",
]

#: Family name → structure class.
MATRIX_FAMILIES: dict[str, type[MatrixStructure]] = {}


def register_family(cls: type[MatrixStructure]) -> type[MatrixStructure]:
    """Add a structure class to :data:`MATRIX_FAMILIES` under its ``family`` name."""
    if not (isinstance(cls, type) and issubclass(cls, MatrixStructure) and cls.family):
        raise ValueError(f"Received {cls!r}, expected a MatrixStructure subclass with a family "
                         "name.")
    MATRIX_FAMILIES[cls.family] = cls
    return cls


for _cls in (Dense, LowRank, Kronecker, TensorTrain, TensorRing, BlockCirculant, Toeplitz,
             Hashed, GroupShuffle):
    register_family(_cls)


def get_structure(spec: Any, argument: str = "structure") -> MatrixStructure:
    """A structure from ``None`` (dense), a family name, a config dict or an instance.

    Raises:
        ValueError: naming the value received and the families there are.
    """
    if spec is None:
        return Dense()
    if isinstance(spec, MatrixStructure):
        return spec
    families = ", ".join(repr(f) for f in MATRIX_FAMILIES)
    if isinstance(spec, str):
        cls = MATRIX_FAMILIES.get(spec)
        if cls is None:
            raise ValueError(f"Received an unknown value for argument {argument}: {spec!r}. "
                             f"Expected one of {families}, a dict such as "
                             "{'family': 'low_rank', 'rank': 4}, or None (dense).")
        try:
            return cls()
        except TypeError:
            raise ValueError(f"Received {argument}={spec!r}: the {spec} family needs "
                             f"parameters; pass a dict such as {_example(spec)}.") from None
    if isinstance(spec, dict):
        params = dict(spec)
        name = params.pop("family", None)
        cls = MATRIX_FAMILIES.get(name) if isinstance(name, str) else None
        if cls is None:
            raise ValueError(f"Received an invalid value for argument {argument}: {spec!r}; "
                             f"expected a dict with 'family' one of {families}.")
        try:
            return cls(**params)
        except TypeError as exc:
            raise ValueError(f"Received an invalid value for argument {argument}: {spec!r} "
                             f"({exc}); for example {_example(name)}.") from None
    raise ValueError(f"Received an invalid value for argument {argument}: {spec!r}; expected "
                     f"None, one of {families}, a dict or a MatrixStructure.")


def _example(family: str) -> str:
    return {"low_rank": "{'family': 'low_rank', 'rank': 4}",
            "kronecker": "{'family': 'kronecker', 'factors': [[3, 8], [3, 10]]}",
            "tensor_train": "{'family': 'tensor_train', 'ranks': 4}",
            "tensor_ring": "{'family': 'tensor_ring', 'ranks': 2}"}.get(
        family, f"{{'family': {family!r}}}")


def factor_suffix() -> re.Pattern:
    """Matches the suffix of a weight that is a factor of a matrix (``_u``, ``_core_2``...):
    stripping it gives the matrix's base name."""
    alternatives = [cls.suffix_pattern for cls in MATRIX_FAMILIES.values() if cls.suffix_pattern]
    return re.compile(r"_(" + "|".join(alternatives) + r")$")


# The cells register themselves with Keras when TensorFlow is reached through the package
# (keras_rnnedge._compat); on this import path that is here, once the families are defined.
import keras_rnnedge.cells  # noqa: E402,F401
