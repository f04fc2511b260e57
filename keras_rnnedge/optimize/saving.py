"""Loading models that hold keras_rnnedge cells, pruning wrappers and QAT wrappers.

tfmot 0.8.1 cannot load its own quantization-aware models from ``.keras`` files
(tensorflow/model-optimization PR #1123, open): loading builds ``QuantizeLayer`` twice (its
``build`` never marks it built), and ``QuantizeWrapperV2`` records its inner layer's weights
only if that layer was built before the wrapper, which it is when tfmot creates the model but
not when Keras loads it. Either way the saved variables do not match ("expected 5 variables,
but received 3"). :func:`load_model` substitutes two subclasses that fix those ``build``
methods. They keep tfmot's class names, because ``.keras`` files address each layer's variables
by the snake-cased class name.

Plain ``keras.models.load_model`` works too once ``keras_rnnedge.optimize`` is imported: these
two classes are also resolvable by their bare names outside any scope (tfmot's own
``quantize_scope`` still takes precedence inside it), and they deserialize their contents
(quantizers, quantize configs) under :func:`optimize_scope`. The legacy ``.h5`` format names
classes by their bare names only, so keras_rnnedge's own layers and constraints are resolvable by
bare name as well (see :func:`keras_rnnedge.cells.base.register_cell`).

:func:`save_model` writes a model to a temporary file beside the target and renames it into place,
so a failed save never leaves a half-written file; it refuses ``.h5`` for a model that format
cannot hold, and checks that an ``.h5`` file loads back before it replaces anything.
"""

from __future__ import annotations

import errno
import os
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from os import PathLike
from pathlib import Path
from typing import Any

from keras_rnnedge._compat import keras, tfmot
from keras_rnnedge.cells.base import register_alias
from keras_rnnedge.optimize._tfmot import QuantizeLayer as _TfmotQuantizeLayer
from keras_rnnedge.optimize._tfmot import QuantizeWrapperV2 as _TfmotQuantizeWrapperV2
from keras_rnnedge.optimize.pruning import PruneLowMagnitudePerWeight
from keras_rnnedge.optimize.quantization import CellQuantizeConfig

__all__ = ["load_model", "optimize_scope", "save_model"]

#: File suffixes :func:`save_model` writes.
SUFFIXES = (".keras", ".h5", ".hdf5")


class QuantizeLayer(_TfmotQuantizeLayer):
    """tfmot's ``QuantizeLayer``, marked built after ``build`` (so loading builds it once)."""

    def build(self, input_shape):
        super().build(input_shape)
        self.built = True

    @classmethod
    def from_config(cls, config):
        with optimize_scope():
            return super().from_config(config)


class QuantizeWrapperV2(_TfmotQuantizeWrapperV2):
    """tfmot's ``QuantizeWrapperV2`` that builds the wrapped layer before recording its weights."""

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
            self.layer.built = True
        super().build(input_shape)

    @classmethod
    def from_config(cls, config):
        with optimize_scope():
            return super().from_config(config)


for _obj in (QuantizeLayer, QuantizeWrapperV2, PruneLowMagnitudePerWeight, CellQuantizeConfig):
    register_alias(_obj)
del _obj


@contextmanager
def optimize_scope(custom_objects: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Deserialization scope for models with pruning and QAT wrappers.

    Combines tfmot's ``prune_scope`` and ``quantize_scope`` with the loading fixes of this
    module; keras_rnnedge's own classes are registered and need no scope.

    Args:
        custom_objects: further ``{name: class or function}`` to make available.
    """
    with ExitStack() as stack:
        stack.enter_context(tfmot.sparsity.keras.prune_scope())
        stack.enter_context(tfmot.quantization.keras.quantize_scope())
        stack.enter_context(keras.utils.custom_object_scope(
            {"QuantizeLayer": QuantizeLayer, "QuantizeWrapperV2": QuantizeWrapperV2,
             **dict(custom_objects or {})}))
        yield


def load_model(path: str | PathLike, *, custom_objects: Mapping[str, Any] | None = None,
               compile: bool = True) -> keras.Model:
    """Load a model saved with keras_rnnedge cells, pruning and/or QAT wrappers.

    Args:
        path: a ``.keras`` or ``.h5`` file (SavedModel directories work too).
        custom_objects: further custom objects (keras_rnnedge classes are registered already).
        compile: whether to restore the training configuration.

    Returns:
        The loaded model.

    Raises:
        ValueError: the file is truncated or is not a Keras model file (the message names it).
    """
    with optimize_scope(custom_objects):
        try:
            return keras.models.load_model(path, compile=compile)
        except (zipfile.BadZipFile, EOFError) as exc:
            raise _unreadable(path, exc) from exc
        except OSError as exc:  # h5py: "truncated file", "file signature not found", ...
            if not Path(path).is_file():
                raise
            raise _unreadable(path, exc) from exc


def _unreadable(path, exc: BaseException) -> ValueError:
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return ValueError(f"Cannot load the model {str(path)!r}: the file is truncated or not a Keras "
                      f"model file ({detail}). Expected a file written by model.save(...) "
                      "(.keras or .h5); save the model again.")


def save_model(model: keras.Model, path: str | PathLike, *, overwrite: bool = True) -> Path:
    """Save ``model`` to a ``.keras`` or ``.h5`` file, all or nothing.

    The model is written to a temporary file in the target's directory and renamed into place,
    so an error (a full disk, an interrupted save) leaves no half-written file and keeps any
    previous file. An ``.h5`` file is loaded back (with :func:`load_model`) before the rename.

    Args:
        model: the model (keras_rnnedge cells, pruning and QAT wrappers included).
        path: the file to write; its suffix chooses the format (``.keras`` recommended).
        overwrite: whether to replace an existing file.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: for another suffix, or a model the ``.h5`` format cannot hold (the message
            says why; save it as ``.keras``).
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        OSError: the file cannot be written (the message names it).
    """
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"Received the path {str(path)!r}, expected a file name ending in "
                         f"{' or '.join(SUFFIXES)} (.keras is recommended).")
    h5 = path.suffix != ".keras"
    if h5:
        check_h5(model, path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"Cannot save the model to {str(path)!r}: it is a "
                                "directory. Expected a file name.")
    if not overwrite and path.exists():
        raise FileExistsError(errno.EEXIST, f"Cannot save the model to {str(path)!r}: the file "
                              "exists. Pass overwrite=True to replace it.")
    # A fresh name beside the target (not mkstemp, whose file would keep owner-only permissions).
    tmp = path.parent / f".{path.stem}.{os.getpid()}.{os.urandom(6).hex()}{path.suffix}"
    try:
        model.save(tmp, overwrite=True)
        if h5:
            try:
                load_model(tmp, compile=False)
            except Exception as exc:
                raise ValueError(
                    f"Cannot save the model as {str(path)!r}: the .h5 file written does not load "
                    f"back ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}). Save it "
                    "as .keras instead.") from exc
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path appeared meanwhile: never replaces a file
            tmp.unlink()
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.EEXIST and not overwrite:
            raise FileExistsError(errno.EEXIST, f"Cannot save the model to {str(path)!r}: the "
                                  "file exists. Pass overwrite=True to replace it.") from exc
        reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else \
            (exc.strerror or str(exc))
        raise OSError(exc.errno, f"Cannot save the model to {str(path)!r}: {reason}. Nothing "
                      "was written; free space or choose another location.") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def check_h5(model: keras.Model, path: str | PathLike = "model.h5") -> None:
    """Refuse, before anything is written, a model that an ``.h5`` file cannot hold.

    HDF5 stores each top-level layer as a group and each of its weights by name: two layers or
    two weights of one layer with the same name cannot be stored ("name already exists").

    Raises:
        ValueError: naming the clash, and suggesting ``.keras``.
    """
    if not isinstance(model, keras.Model) or not (model._is_graph_network
                                                  or isinstance(model, keras.Sequential)):
        raise ValueError(f"Cannot save {getattr(model, 'name', model)!r} as {str(path)!r}: .h5 "
                         "holds only Sequential and functional models. Save it as .keras.")
    seen_layers: set[str] = set()
    for layer in model.layers:
        if layer.name in seen_layers:
            raise ValueError(f"Cannot save the model as {str(path)!r}: two layers are named "
                             f"{layer.name!r}, which .h5 cannot store. Save it as .keras.")
        seen_layers.add(layer.name)
        names = [w.name for w in layer.weights]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise ValueError(f"Cannot save the model as {str(path)!r}: layer {layer.name!r} has "
                             f"several weights named {clashes}, which .h5 cannot store (tfmot's "
                             "PruneLowMagnitude on a layer with several pruned weights does this; "
                             "keras_rnnedge.optimize.prune_low_magnitude does not). Save it as "
                             ".keras.")
