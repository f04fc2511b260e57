"""Compress a trained model: each chosen matrix of its recurrent layers refit in a structured
family (truncated SVD, the nearest Kronecker product, TT-SVD...), ready to fine-tune.

The survey's Table 7 (Prabhavalkar et al. 2016, "On the compression of recurrent neural
networks with an application to LVCSR acoustic modeling for embedded speech recognition"):
factorize the matrices of a trained network, then fine-tune. :func:`compress` does the first
half for a ``keras.layers.LSTM``/``GRU``/``SimpleRNN`` or any keras_rnnedge cell; ``model.fit``
does the second.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from keras_rnnedge._compat import keras, np
from keras_rnnedge.cells import LowRankGRUCell, LowRankLSTMCell, LowRankSimpleRNNCell
from keras_rnnedge.cells.base import CompressedCell
from keras_rnnedge.matrices import LowRank, MatrixStructure, get_structure
from keras_rnnedge.optimize.recurrent import is_quantize_wrapper, unwrap

__all__ = ["CompressedMatrix", "compress", "energy_rank"]

#: stock cell → (our cell with the same equations and weights, the config keys carried over)
_STOCK = {
    keras.layers.LSTMCell: (LowRankLSTMCell, ("units", "activation", "recurrent_activation",
                                              "use_bias", "unit_forget_bias")),
    keras.layers.GRUCell: (LowRankGRUCell, ("units", "activation", "recurrent_activation",
                                            "use_bias", "reset_after")),
    keras.layers.SimpleRNNCell: (LowRankSimpleRNNCell, ("units", "activation", "use_bias")),
}
#: the RNN layer arguments kept on the new layer
_RNN_ARGS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll",
             "time_major")


@dataclasses.dataclass(frozen=True)
class CompressedMatrix:
    """What :func:`compress` did to one matrix.

    Attributes:
        layer: the recurrent layer's name.
        matrix: ``kernel``, ``recurrent_kernel``...
        structure: the family it was refit in (resolved).
        params_before, params_after: parameters of the matrix.
        relative_error: ``||W - W'||_F / ||W||_F`` of the fit.
    """

    layer: str
    matrix: str
    structure: MatrixStructure
    params_before: int
    params_after: int
    relative_error: float


def energy_rank(matrix: np.ndarray, energy: float) -> int:
    """The smallest rank ``r`` whose truncated SVD keeps ``energy`` of ``||W||_F^2``
    (``Σ_{i<r} σ_i^2 >= energy Σ σ_i^2``)."""
    s = np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)
    total = float(np.sum(s**2))
    if total == 0.0:
        return 1
    kept = np.cumsum(s**2) / total
    return int(min(np.searchsorted(kept, energy - 1e-12) + 1, s.size))


def _check_fraction(value, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"Received {argument}={value!r}, expected a fraction in (0, 1] (0.9: "
                         "keep 90 % of each matrix's squared Frobenius norm).")
    return float(value)


def compress(model: keras.Model, structure: Any = None, *, rank: int | None = None,
             energy: float | None = None, matrices: Sequence[str] | None = None,
             layers: Sequence[str] | None = None,
             report: list | None = None) -> keras.Model:
    """A copy of ``model`` whose recurrent matrices are refit in a structured family.

    Each chosen matrix ``W`` of each chosen recurrent layer is replaced by the member of the
    family nearest to it (the family's ``from_dense``: truncated SVD for low rank, the nearest
    Kronecker product by the rearranged SVD, TT-SVD, diagonal or block averages for Toeplitz and
    block-circulant, bucket averages for hashed). Stock ``LSTM``/``GRU``/``SimpleRNN`` layers
    become ``RNN(LowRankLSTMCell/LowRankGRUCell/LowRankSimpleRNNCell)`` with the same
    activations, biases and layer arguments; everything else keeps its weights. Fine-tune the
    result with ``model.fit`` (compile it first: the copy is not compiled).

    Args:
        model: a trained Keras model (Sequential or functional; not pruning/QAT-wrapped: strip
            those first).
        structure: the family of every chosen matrix (a name, a config dict or a
            :class:`~keras_rnnedge.matrices.MatrixStructure`), or a mapping from matrix name
            (``"kernel"``, ``"recurrent_kernel"``, ``"projection"``) to one.
        rank: short for ``structure={"family": "low_rank", "rank": rank}`` (capped at each
            matrix's smaller dimension).
        energy: low rank with, per matrix, the smallest rank keeping this fraction of its
            squared Frobenius norm (:func:`energy_rank`).
        matrices: the matrices to refit (default: every matrix the mapping names, else all).
        layers: names of the recurrent layers to compress (default: all).
        report: a list that receives one :class:`CompressedMatrix` per refit matrix.

    Returns:
        The new model, with the same inputs, outputs and layer names.

    Raises:
        ValueError: no or several of ``structure``/``rank``/``energy``, an unknown layer or
            matrix name, a wrapped or unsupported recurrent layer (naming it and what to do).

    Example:
        >>> from keras_rnnedge._compat import keras
        >>> from keras_rnnedge.optimize import compress
        >>> model = keras.Sequential([keras.Input((None, 9)), keras.layers.LSTM(32),
        ...                           keras.layers.Dense(6)])
        >>> small = compress(model, energy=0.9)
        >>> type(small.layers[0].cell).__name__
        'LowRankLSTMCell'
    """
    given = [name for name, v in (("structure", structure), ("rank", rank), ("energy", energy))
             if v is not None]
    if len(given) != 1:
        raise ValueError(f"Received {', '.join(given) or 'none'} of structure, rank and energy; "
                         "expected exactly one (structure='kronecker', rank=4 or energy=0.9).")
    if energy is not None:
        energy = _check_fraction(energy, "energy")
    if rank is not None:
        structure = {"family": "low_rank", "rank": rank}
    specs = dict(structure) if isinstance(structure, Mapping) and "family" not in structure \
        else None
    if specs is not None:
        specs = {k: get_structure(v, f"structure[{k!r}]") for k, v in specs.items()}
    elif structure is not None:
        structure = get_structure(structure, "structure")
    if not isinstance(model, keras.Model):
        raise ValueError(f"Received {type(model).__name__}, expected a keras.Model.")

    targets = _recurrent_layers(model)
    if layers is not None:
        unknown = sorted(set(layers) - set(targets))
        if unknown:
            raise ValueError(f"Received layers={list(layers)!r}, but {unknown} are not recurrent "
                             f"layers of the model; expected names among {sorted(targets)}.")
        targets = {k: v for k, v in targets.items() if k in set(layers)}

    plans: dict[str, tuple[type, dict, dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
    for name, layer in targets.items():
        plans[name] = _plan(layer, structure, specs, energy, matrices, report)

    def clone(layer):
        if layer.name in plans:
            cls, config, _, _ = plans[layer.name]
            args = {k: getattr(layer, k) for k in _RNN_ARGS if hasattr(layer, k)}
            return keras.layers.RNN(cls.from_config(config), name=layer.name, **args)
        if isinstance(layer, keras.Model):  # a nested model: its layers cloned the same way
            return keras.models.clone_model(layer, clone_function=clone)
        return layer.__class__.from_config(layer.get_config())

    out = keras.models.clone_model(model, clone_function=clone)
    for old, new in zip(_all_layers(model), _all_layers(out), strict=True):
        if old.name in plans:
            _, _, fitted, others = plans[old.name]
            cell = new.cell
            values = []
            for variable in cell.weights:
                short = variable.name.split("/")[-1].split(":")[0]
                values.append(fitted[short] if short in fitted else others[short])
            cell.set_weights(values)
        elif not isinstance(old, keras.Model):
            new.set_weights(old.get_weights())
    return out


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _recurrent_layers(model) -> dict[str, keras.layers.Layer]:
    out = {}
    for layer in _all_layers(model):
        inner = unwrap(layer)
        if is_quantize_wrapper(layer) or inner is not layer:
            raise ValueError(f"Received a model whose layer {layer.name!r} is wrapped by tfmot "
                             f"({type(layer).__name__}); expected plain layers. Compress the "
                             "float model first (strip_pruning, or the model before "
                             "quantize_model), then prune or quantize the result.")
        if isinstance(layer, keras.layers.Bidirectional):
            raise ValueError(f"Received the Bidirectional layer {layer.name!r}, which compress "
                             "does not handle; compress a model with one-directional RNNs.")
        if isinstance(layer, keras.layers.RNN):
            cell = layer.cell
            if not isinstance(cell, CompressedCell) and type(cell) not in _STOCK:
                raise ValueError(
                    f"Received the RNN layer {layer.name!r} over a {type(cell).__name__}, which "
                    "compress does not handle; expected LSTM, GRU, SimpleRNN or a keras_rnnedge "
                    "cell.")
            out[layer.name] = layer
    if not out:
        raise ValueError("Received a model without recurrent layers; expected one with LSTM, "
                         "GRU, SimpleRNN or keras_rnnedge cells.")
    return out


def _weights(cell) -> dict[str, np.ndarray]:
    return {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in cell.weights}


def _plan(layer, structure, specs, energy, matrices, report):
    """(cell class, config, fitted matrix weights, other weights) of one layer."""
    cell = layer.cell
    if not cell.built:
        raise ValueError(f"Received the layer {layer.name!r} unbuilt; expected a trained model "
                         "(call it once or build it).")
    w = _weights(cell)
    if isinstance(cell, CompressedCell):
        cls, config = type(cell), cell.get_config()
        dense = {base: s.to_dense([w[n] for n in s.weight_names(base)])
                 for base, s in cell.structures.items()}
        others = {k: v for k, v in w.items() if k not in cell.matrix_weight_names()}
        arguments = {base: args for base, args in cell._matrix_arguments.items()}
    else:
        cls, keys = _STOCK[type(cell)]
        full = cell.get_config()
        config = {k: full[k] for k in keys if k in full}
        config["name"] = full.get("name", layer.name)
        dense = {base: w[base] for base in ("kernel", "recurrent_kernel")}
        others = {k: v for k, v in w.items() if k not in dense}
        arguments = {"kernel": ("rank", "kernel_structure"),
                     "recurrent_kernel": ("recurrent_rank", "recurrent_structure")}
    chosen = list(matrices) if matrices is not None else (list(specs) if specs else list(dense))
    unknown = [m for m in chosen if m not in dense]
    if unknown:
        raise ValueError(f"Received matrices {unknown} for layer {layer.name!r}, which has "
                         f"{sorted(dense)}; expected names among those.")
    fitted = {}
    for base, matrix in dense.items():
        rank_argument, structure_argument = arguments[base]
        if base in chosen:
            rows, cols = matrix.shape
            if energy is not None:
                target = LowRank(energy_rank(matrix, energy))
            else:
                target = specs.get(base) if specs is not None else structure
                if target is None:
                    raise ValueError(f"Received matrices={chosen} but no structure for {base!r}; "
                                     "expected one in the structure mapping.")
                if isinstance(target, LowRank):
                    target = LowRank(min(target.rank, rows, cols))
            resolved = target.resolve(rows, cols, f"structure for {layer.name}/{base}")
            parts = resolved.from_dense(matrix)
            error = float(np.linalg.norm(resolved.to_dense(parts) - matrix)
                          / max(np.linalg.norm(matrix), 1e-30))
            if report is not None:
                report.append(CompressedMatrix(layer.name, base, resolved, int(matrix.size),
                                               resolved.cost(rows, cols).params, error))
        elif isinstance(cell, CompressedCell):  # kept as it is
            for name in cell.structures[base].weight_names(base):
                fitted[name] = w[name]
            continue
        else:  # a stock cell's matrix not chosen: dense
            resolved = get_structure(None)
            parts = [matrix]
        config[rank_argument] = None
        config[structure_argument] = (None if resolved.is_dense
                                      else resolved.get_config())
        for name, value in zip(resolved.weight_names(base), parts):
            fitted[name] = np.asarray(value, np.float32)
    return cls, config, fitted, others
