"""Standalone C conversion: a trained model → integer C99, an Arduino sketch and a C project.

:func:`convert_c` is the path for boards where TFLite Micro does not run or does not fit (the
Arduino Uno: 32 KB flash, 2 KB RAM) and for anyone who wants no runtime at all. It runs

1. :func:`~keras_rnnedge.converters.intmodel.quantize_model` (int8 or int16 weights, Q15 state,
   calibrated on ``representative_data``), checked against the float model (argmax agreement
   and the largest score difference on the representative windows, recorded in ``checks``);
2. :func:`~keras_rnnedge.converters.cgen.generate_c` (``PROGMEM``-ready: the same source builds
   for AVR, Arm and the host), checked bit for bit against the integer oracle on the host when
   ``gcc`` is installed;
3. the fit against the board: the model's flash (constant data + code) and RAM (state + the
   step's stack frame), measured by compiling for the board's architecture
   (:func:`~keras_rnnedge.micro_targets.crun.measure_c`) when its cross compiler is installed,
   else estimated from the weights; a model that does not fit raises
   :class:`~keras_rnnedge.micro_targets.audit.TargetFitError` with bytes needed against
   available;
4. the files: ``c/<id>.h``, ``c/<id>.c``; an Arduino sketch with the C model (any board with an
   Arduino core, AVR included); a plain C project for Cortex-M (Arm boards).

Nothing is written until :meth:`CConversionResult.save`. ``rnnedge run DIR --target
uno|cortex-m4|host`` runs a saved conversion (:func:`~keras_rnnedge.micro_targets.crun.run_c`).

Example:
    >>> result = convert_c(model, target="uno", representative_data=x_train[:256])  # doctest: +SKIP
    >>> print(result.report())                                                     # doctest: +SKIP
    >>> result.save("out/har_uno")                                                 # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from keras_rnnedge._compat import keras, np
from keras_rnnedge.converters.carray import c_identifier
from keras_rnnedge.converters.cgen import generate_c
from keras_rnnedge.converters.cproject import c_sketch, cortex_m_project
from keras_rnnedge.converters.intmodel import IntModel, quantize_input, quantize_model
from keras_rnnedge.converters.lowering import ConversionError, strip_wrappers
from keras_rnnedge.micro_targets.audit import TargetFitError
from keras_rnnedge.micro_targets.boards import Board, get_board
from keras_rnnedge.micro_targets.harness import CompileError, ToolchainMissingError

__all__ = ["C_PRECISIONS", "CConversionResult", "CFit", "SavedC", "convert_c", "load_c_result"]

#: Precisions of the standalone C: the weights' integer width (state and activations Q15).
C_PRECISIONS = ("int8", "int16")
FORMAT = "c"
_MANIFEST = "manifest.json"
_CHECK_SEQUENCES = 2
#: Flash of the model's code when no cross compiler measures it (the generated step, predict
#: and runtime functions compile to 1-2.5 KB for one recurrent layer and a Dense head on AVR
#: and Cortex-M4; per extra layer about as much again).
_CODE_ESTIMATE_BYTES = 2560


@dataclasses.dataclass(frozen=True)
class CFit:
    """The model's flash and RAM on a board.

    Attributes:
        board: the board.
        flash_needed: constant data + code of the model (bytes).
        ram_needed: recurrent state + the stack frame of ``<id>_step`` (bytes).
        measured: ``True`` when compiled for the board's architecture, ``False`` when
            estimated (no cross compiler, or no limit to check).
        how: one line on how the figures were obtained.
    """

    board: Board
    flash_needed: int
    ram_needed: int
    measured: bool
    how: str

    @property
    def fits(self) -> bool:
        b = self.board
        return ((b.flash_bytes is None or self.flash_needed <= b.flash_bytes)
                and (b.ram_bytes is None or self.ram_needed <= b.ram_bytes))

    def to_text(self) -> str:
        b = self.board

        def of(need: int, have: int | None) -> str:
            if have is None:
                return f"{need:,} B"
            return f"{need:,} B of {have:,} B ({100 * need / have:.1f} %)"

        return (f"flash          {of(self.flash_needed, b.flash_bytes)}\n"
                f"RAM            {of(self.ram_needed, b.ram_bytes)}\n"
                f"measured       {self.how}")


def _state_bytes(im: IntModel) -> int:
    return 2 * (sum(im.state_sizes) + sum(im.cell_sizes))


def _fit(im: IntModel, sources: dict[str, str], ident: str, board: Board) -> CFit:
    arch = {"avr": "avr", "arm": "arm"}.get(board.arch)
    weights = CFit(board=board, flash_needed=im.weight_bytes(), ram_needed=_state_bytes(im),
                   measured=False, how="the weights as stored and the state alone, without "
                   "code or stack: already too big, so not compiled")
    if not weights.fits:
        return weights
    if arch is not None:
        from keras_rnnedge.micro_targets.crun import measure_c

        try:
            size = measure_c(sources, ident, arch)
        except ToolchainMissingError as exc:
            how = f"estimated (weights + {_CODE_ESTIMATE_BYTES:,} B of code): {exc}"
        except CompileError as exc:
            raise ConversionError(f"The generated C does not compile for {board.core}; this is "
                                  f"a bug, please report it with the model.\n{exc}") from exc
        else:
            flags = "avr-gcc -Os" if arch == "avr" else "arm-none-eabi-gcc -O2 (Cortex-M4F)"
            return CFit(board=board, flash_needed=size.flash_bytes,
                        ram_needed=_state_bytes(im) + size.static_ram_bytes
                        + size.step_stack_bytes, measured=True,
                        how=f"compiled with {flags}: {size.const_bytes:,} B constants + "
                            f"{size.code_bytes:,} B code; state {_state_bytes(im):,} B + step "
                            f"stack {size.step_stack_bytes:,} B")
    else:
        how = f"estimated (weights + {_CODE_ESTIMATE_BYTES:,} B of code; no {board.arch} build)"
    return CFit(board=board, flash_needed=im.weight_bytes() + _CODE_ESTIMATE_BYTES,
                ram_needed=_state_bytes(im), measured=False, how=how)


def _fit_error(fit: CFit) -> TargetFitError:
    b = fit.board
    over = []
    if b.flash_bytes is not None and fit.flash_needed > b.flash_bytes:
        over.append(f"it needs {fit.flash_needed:,} B of flash and the {b.mcu} has "
                    f"{b.flash_bytes:,} B")
    if b.ram_bytes is not None and fit.ram_needed > b.ram_bytes:
        over.append(f"it needs {fit.ram_needed:,} B of RAM and the {b.mcu} has "
                    f"{b.ram_bytes:,} B")
    return TargetFitError(
        f"The standalone C model does not fit the {b.display_name} ({b.key}):\n  "
        + ";\n  ".join(over) + f".\n  ({fit.how})\nShrink the model (fewer units, lower rank, "
        "hard thresholding to a sparser model), or choose a bigger board.", fit)


@dataclasses.dataclass(frozen=True)
class CConversionResult:
    """Everything :func:`convert_c` made, in memory until :meth:`save`.

    Attributes:
        name: the C identifier (``<id>``).
        target: the board.
        precision: ``"int8"`` or ``"int16"`` weights.
        int_model: the integer model (its methods are the C code's oracle).
        source_model: the trained model, wrappers stripped.
        files: relative path → text of every file :meth:`save` writes.
        fit: flash and RAM against the board.
        checks: stage-against-stage figures (``int vs float agreement``, ``int vs float max
            |score diff|``, ``host C vs oracle``: 0 when bit-exact).
        timesteps: the window length the sketch uses.
        class_names: names printed by the sketch.
    """

    name: str
    target: Board
    precision: str
    int_model: IntModel
    source_model: keras.Model
    files: dict[str, str]
    fit: CFit
    checks: dict[str, float]
    timesteps: int | None
    class_names: tuple[str, ...] = ()

    @property
    def features(self) -> int:
        return self.int_model.features

    @property
    def num_outputs(self) -> int:
        return self.int_model.num_outputs

    @property
    def frac_bits(self) -> int:
        return self.int_model.frac_bits

    @property
    def c_sources(self) -> dict[str, str]:
        """``{"<id>.h": ..., "<id>.c": ...}``."""
        return {rel[2:]: text for rel, text in self.files.items()
                if rel.startswith("c/") and "/" not in rel[2:]}

    def quantize_input(self, x) -> np.ndarray:
        """Float windows → the int16 values ``<id>_step`` takes."""
        return self.int_model.quantize_input(x)

    def report(self) -> str:
        im = self.int_model
        lines = [
            f"model          {self.name} (standalone C, {self.precision} weights, "
            f"Q{im.frac_bits} state)",
            f"target         {self.target.display_name} ({self.target.key})",
            f"weights        {im.weight_bytes():,} bytes as stored (CSR where smaller)",
            f"state          {_state_bytes(im):,} bytes",
            self.fit.to_text(),
        ]
        for key, value in self.checks.items():
            lines.append(f"check          {key}: {value:.4g}")
        for a in im.approximations:
            lines.append(f"approximation  {a}")
        lines += ["", "files          " + ", ".join(sorted(self.files))]
        return "\n".join(lines)

    def manifest(self) -> dict[str, Any]:
        im = self.int_model
        return {
            "format": FORMAT, "name": self.name, "target": self.target.key,
            "precision": self.precision, "features": im.features,
            "num_outputs": im.num_outputs, "frac_bits": im.frac_bits,
            "timesteps": self.timesteps, "state_sizes": im.state_sizes,
            "cell_sizes": im.cell_sizes,
            "input_offset": [float(v) for v in np.asarray(im.input_offset, np.float32)],
            "input_scale": [float(v) for v in np.asarray(im.input_scale, np.float32)],
            "class_names": list(self.class_names),
            "fit": {"flash_needed": self.fit.flash_needed, "ram_needed": self.fit.ram_needed,
                    "measured": self.fit.measured, "how": self.fit.how},
            "checks": self.checks, "approximations": list(im.approximations),
        }

    def save(self, path: str | os.PathLike, *, force: bool = False) -> Path:
        """Write every file under the directory ``path``, all or nothing (see
        :func:`~keras_rnnedge.converters.pipeline.save_directory`)."""
        from keras_rnnedge.converters.pipeline import save_directory

        files = {**self.files, _MANIFEST: json.dumps(self.manifest(), indent=2) + "\n",
                 "REPORT.txt": self.report() + "\n"}
        return save_directory(path, files, force=force, model=self.source_model)


@dataclasses.dataclass(frozen=True)
class SavedC:
    """A standalone C conversion read back from its directory (what ``rnnedge run`` needs)."""

    path: Path
    name: str
    target: str
    precision: str
    features: int
    num_outputs: int
    frac_bits: int
    timesteps: int | None
    input_offset: np.ndarray
    input_scale: np.ndarray
    class_names: tuple[str, ...]
    c_sources: dict[str, str]

    def quantize_input(self, x) -> np.ndarray:
        return quantize_input(x, self.input_offset, self.input_scale)

    def source_model(self) -> keras.Model:
        from keras_rnnedge.optimize import load_model

        return load_model(self.path / "model.keras", compile=False)


def load_c_result(path: str | os.PathLike, manifest: dict | None = None) -> SavedC:
    """Read a directory written by :meth:`CConversionResult.save`.

    Raises:
        ConversionError: naming the file that is missing or corrupt.
    """
    root = Path(path)
    manifest_path = root / _MANIFEST
    try:
        m = manifest if manifest is not None else json.loads(manifest_path.read_text())
        ident = m["name"]
        sources = {}
        for name in (f"{ident}.h", f"{ident}.c"):
            p = root / "c" / name
            if not p.is_file():
                raise ConversionError(f"{str(p)!r} is missing: expected the generated C of "
                                      "`rnnedge convert --format c`; convert again.")
            sources[name] = p.read_text(encoding="ascii")
        offset = np.asarray(m["input_offset"], np.float32)
        scale = np.asarray(m["input_scale"], np.float32)
        if offset.shape != (m["features"],) or scale.shape != (m["features"],):
            raise ValueError(f"input_offset/input_scale do not have {m['features']} values")
        return SavedC(path=root, name=ident, target=m["target"], precision=m["precision"],
                      features=int(m["features"]), num_outputs=int(m["num_outputs"]),
                      frac_bits=int(m["frac_bits"]), timesteps=m["timesteps"],
                      input_offset=offset, input_scale=scale,
                      class_names=tuple(m.get("class_names", ())), c_sources=sources)
    except OSError as exc:
        raise ConversionError(f"Cannot read {str(manifest_path)!r}: {exc}; expected a directory "
                              "written by `rnnedge convert`.") from exc
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{str(manifest_path)!r} or the C files beside it are corrupt "
                              f"({type(exc).__name__}: {exc}); convert again.") from exc


def _stage_checks(im: IntModel, sources: dict[str, str], ident: str, model: keras.Model,
                  data: np.ndarray) -> dict[str, float]:
    """Host C vs the oracle (bit for bit, first windows) and the integer model's argmax
    agreement with the float model (every window; the host C when gcc is installed, else the
    oracle on the first windows)."""
    probe = data[:_CHECK_SEQUENCES]
    oracle = np.stack([im.run(s) for s in probe])
    checks: dict[str, float] = {}
    if shutil.which("gcc") is None:
        scores, x = oracle, probe
    else:
        from keras_rnnedge.micro_targets.crun import run_c

        c_model = _CModel(ident, sources, im.features, im.num_outputs)
        scores = run_c(c_model, np.stack([im.quantize_input(s) for s in data]),
                       target="host").scores
        diff = float(np.max(np.abs(scores[:len(probe)] - oracle)))
        if diff != 0:
            raise ConversionError(f"The generated C differs from the integer oracle by {diff:g} "
                                  "(expected bit-exact); this is a bug, please report it with "
                                  "the model.")
        checks["host C vs oracle max |diff|"] = diff
        x = data
    float_pred = np.argmax(np.asarray(model.predict(x, verbose=0)), axis=-1)
    checks["int vs float argmax agreement"] = float(np.mean(np.argmax(scores, -1) == float_pred))
    return checks


@dataclasses.dataclass(frozen=True)
class _CModel:
    name: str
    c_sources: dict[str, str]
    features: int
    num_outputs: int


def convert_c(model: keras.Model, *, target: str, representative_data, precision: str = "int8",
              name: str | None = None, class_names=None,
              timesteps: int | None = None) -> CConversionResult:
    """Convert a trained model to standalone C for ``target`` (see the module docstring).

    Args:
        model: recurrent layers (FastGRNN, FastRNN, low-rank LSTM/GRU, stock SimpleRNN, GRU,
            LSTM) then Dense layers; pruning/QAT wrappers are stripped.
        target: a board key of :data:`keras_rnnedge.micro_targets.boards.BOARDS` (``"uno"``,
            ``"nano33ble"``, ..., ``"host"``).
        representative_data: float windows ``(N, T, F)``: input ranges and formats of the
            integer model (a few hundred training windows).
        precision: ``"int8"`` or ``"int16"`` weights.
        name: model name for files and C symbols (default: the Keras model's name).
        class_names: names printed by the sketch.
        timesteps: the window length of the sketch (default: the model's or the data's).

    Raises:
        ConversionError: an option, a layer (named, with the supported ones) or a weight
            (named, with its range) that cannot be converted, or bad data.
        TargetFitError: the model does not fit the board (bytes needed against available).
    """
    try:
        board = get_board(target)
    except ValueError as exc:
        raise ConversionError(str(exc)) from exc
    if precision not in C_PRECISIONS:
        raise ConversionError(f"Expected precision to be one of "
                              f"{', '.join(map(repr, C_PRECISIONS))}, but got {precision!r}.")
    if not isinstance(model, keras.Model):
        raise ConversionError(f"Received {type(model).__name__}, expected a tf_keras Model "
                              "(from keras_rnnedge import keras).")
    if representative_data is None:
        raise ConversionError("The standalone C needs representative_data (float windows "
                              "(N, T, F) from the training set) to set the input scaling and "
                              "the integer formats.")
    data = np.asarray(representative_data, np.float32)
    if data.ndim != 3 or not np.all(np.isfinite(data)):
        raise ConversionError(f"Expected finite representative_data of shape (N, T, F), but got "
                              f"shape {data.shape}" + ("" if data.ndim != 3 else
                                                       " with NaN or Inf values") + ".")
    ident = c_identifier(name or model.name)
    try:
        im = quantize_model(model, data, weight_bits=int(precision[3:]))
    except ConversionError:
        raise
    except ValueError as exc:
        raise ConversionError(str(exc)) from exc
    sources = generate_c(im, ident, progmem=True)

    reference = strip_wrappers(model)
    checks = _stage_checks(im, sources, ident, reference, data)

    fit = _fit(im, sources, ident, board)
    if not fit.fits:
        raise _fit_error(fit)
    names = tuple(str(c) for c in (class_names or ()))
    window = timesteps or (model.inputs[0].shape[1] if model.inputs else None) or data.shape[1]
    files = {f"c/{n}": text for n, text in sources.items()}
    if board.arduino_fqbn:
        for rel, text in c_sketch(ident, sources, features=im.features,
                                  num_outputs=im.num_outputs, frac_bits=im.frac_bits,
                                  timesteps=int(window), input_offset=im.input_offset,
                                  input_scale=im.input_scale, class_names=names,
                                  board_name=board.display_name).items():
            files[f"arduino/{rel}"] = text
    if board.arch == "arm":
        example = im.quantize_input(data[0])
        for rel, text in cortex_m_project(ident, sources, example=example,
                                          expected=im.run(data[0]),
                                          num_outputs=im.num_outputs).items():
            files[f"cortex-m/{rel}"] = text
    return CConversionResult(name=ident, target=board, precision=precision, int_model=im,
                             source_model=reference, files=files, fit=fit, checks=checks,
                             timesteps=int(window), class_names=names)
