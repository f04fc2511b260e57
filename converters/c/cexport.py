"""Standalone C conversion: a trained model → integer C99, an Arduino sketch and a C project.

:func:`convert_c` is the path for boards where TFLite Micro does not run or does not fit (the
Arduino Uno: 32 KB flash, 2 KB RAM) and for anyone who wants no runtime at all. It runs

1. :func:`~keras_rnnedge.converters.c.intmodel.quantize_model` (int8 or int16 weights, Q15 state,
   input ranges from all of ``representative_data``, formats from a seeded sample of
   ``calibration_size`` windows drawn across it), checked against the float model: argmax
   agreement on the calibration windows (``checks``), and float against deployed accuracy and
   agreement on ``validation_data`` (:attr:`CConversionResult.quality`; a loss beyond
   ``max_accuracy_drop``/``min_agreement`` raises
   :class:`~keras_rnnedge.converters.quality.DeploymentQualityError` unless ``checks="warn"``);
2. :func:`~keras_rnnedge.converters.c.cgen.generate_c` (``PROGMEM``-ready: the same source builds
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
    >>> result = convert_c(model, target="uno", representative_data=x_train,   # doctest: +SKIP
    ...                    validation_data=(x_val, y_val))
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
from keras_rnnedge.cells.step import step_of
from keras_rnnedge.converters.c.cgen import generate_c
from keras_rnnedge.converters.c.cgen_float import generate_float_c
from keras_rnnedge.converters.c.cproject import c_sketch, cortex_m_project
from keras_rnnedge.converters.c.intmodel import IntModel, quantize_input, quantize_model
from keras_rnnedge.converters.carray import c_identifier
from keras_rnnedge.converters.lowering import (
    ConversionError,
    check_inputs,
    plan_model,
    strip_wrappers,
)
from keras_rnnedge.converters.quality import (
    DeploymentCheck,
    QualityReport,
    calibration_sample,
    check_validation_data,
    coverage,
    diagnose,
    enforce,
    measure,
    stage_failure,
    warn_coverage,
)
from keras_rnnedge.converters.result import MANIFEST, ConversionOutput, check_stage
from keras_rnnedge.micro_targets.audit import TargetFitError
from keras_rnnedge.micro_targets.boards import Board, get_board
from keras_rnnedge.micro_targets.harness import (
    ARM_CORE_FLAGS,
    CompileError,
    ToolchainMissingError,
)
from keras_rnnedge.progress import ProgressArg, stage, with_stages

__all__ = ["C_PRECISIONS", "CConversionResult", "CFit", "CModelInfo", "SavedC", "convert_c",
           "load_c_result"]

#: Precisions of the standalone C: the weights' integer width (``int8``/``int16``; state and
#: activations Q15), or ``float32`` (the float build, for boards with an FPU).
C_PRECISIONS = ("int8", "int16", "float32")
FORMAT = "c"
_CHECK_SEQUENCES = 2
#: Representative sequences sampled for calibration by default (``calibration_size``).
CALIBRATION_SEQUENCES = 512
#: Float C vs the Keras model: float32 sums in another order and libm's expf/tanhf against
#: TensorFlow's, over a few hundred steps.
FLOAT_ATOL = 1e-4
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


@dataclasses.dataclass(frozen=True)
class CModelInfo:
    """What the files, the fit and ``rnnedge run`` need to know of the converted model.

    Attributes:
        features, num_outputs: inputs per step, scores per prediction.
        frac_bits: ``Q`` of the integer build's scores; ``None`` for the float build.
        weight_bytes: constant data as stored.
        state_bytes: the state struct.
        input_offset, input_scale: the integer build's input quantization (``None``: float).
        approximations: activations the integer build approximates.
        state_scales: state vectors stored in a format other than ``Q`` (``"layer/h: Q13"``:
            their values may exceed 1; the format was calibrated).
    """

    features: int
    num_outputs: int
    frac_bits: int | None
    weight_bytes: int
    state_bytes: int
    input_offset: np.ndarray | None = None
    input_scale: np.ndarray | None = None
    approximations: tuple[str, ...] = ()
    state_scales: tuple[str, ...] = ()

    @classmethod
    def of_int_model(cls, im: IntModel) -> CModelInfo:
        return cls(features=im.features, num_outputs=im.num_outputs, frac_bits=im.frac_bits,
                   weight_bytes=im.weight_bytes(),
                   state_bytes=2 * im.state_elements,
                   input_offset=np.asarray(im.input_offset, np.float32),
                   input_scale=np.asarray(im.input_scale, np.float32),
                   approximations=tuple(im.approximations),
                   state_scales=tuple(f"{layer.name}/{name}: Q{frac}"
                                      for layer in im.recurrent
                                      for name, frac in layer.formats.items()
                                      if frac != im.frac_bits))

    @classmethod
    def of_float_model(cls, model: keras.Model) -> CModelInfo:
        plan = plan_model(model)
        state = sum(v.size for layer in plan.recurrent
                    for v in step_of(layer.cell).state(layer.cell))
        return cls(features=plan.features, num_outputs=plan.num_outputs, frac_bits=None,
                   weight_bytes=4 * int(model.count_params()), state_bytes=4 * state)

    def quantize_input(self, x) -> np.ndarray:
        """Float windows → what ``<id>_step`` takes (int16 values, or float32 as they are)."""
        if self.input_offset is None:
            return np.asarray(x, np.float32)
        return quantize_input(x, self.input_offset, self.input_scale)


def _arm_core(board: Board) -> str:
    """The core whose compiler flags size the C for an Arm ``board`` (its own; the Cortex-M4F's
    for a core the flag table does not know)."""
    return board.core if board.core in ARM_CORE_FLAGS else "Cortex-M4F"


def _fit(info: CModelInfo, sources: dict[str, str], ident: str, board: Board) -> CFit:
    arch = {"avr": "avr", "arm": "arm"}.get(board.arch)
    weights = CFit(board=board, flash_needed=info.weight_bytes, ram_needed=info.state_bytes,
                   measured=False, how="the weights as stored and the state alone, without "
                   "code or stack: already too big, so not compiled")
    if not weights.fits:
        return weights
    if arch is not None:
        from keras_rnnedge.micro_targets.crun import measure_c

        try:
            size = (measure_c(sources, ident, arch) if arch == "avr" else
                    measure_c(sources, ident, arch, core=_arm_core(board)))
        except ToolchainMissingError as exc:
            how = f"estimated (weights + {_CODE_ESTIMATE_BYTES:,} B of code): {exc}"
        except CompileError as exc:
            raise ConversionError(f"The generated C does not compile for {board.core}; this is "
                                  f"a bug, please report it with the model.\n{exc}") from exc
        else:
            flags = ("avr-gcc -Os" if arch == "avr"
                     else f"arm-none-eabi-gcc -O2 ({_arm_core(board)})")
            return CFit(board=board, flash_needed=size.flash_bytes,
                        ram_needed=info.state_bytes + size.static_ram_bytes
                        + size.step_stack_bytes, measured=True,
                        how=f"compiled with {flags}: {size.const_bytes:,} B constants + "
                            f"{size.code_bytes:,} B code; state {info.state_bytes:,} B + step "
                            f"stack {size.step_stack_bytes:,} B")
    else:
        how = f"estimated (weights + {_CODE_ESTIMATE_BYTES:,} B of code; no {board.arch} build)"
    return CFit(board=board, flash_needed=info.weight_bytes + _CODE_ESTIMATE_BYTES,
                ram_needed=info.state_bytes, measured=False, how=how)


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
class CConversionResult(ConversionOutput):
    """Everything :func:`convert_c` made, in memory until :meth:`save`.

    Attributes:
        name: the C identifier (``<id>``).
        target: the board.
        precision: ``"int8"``/``"int16"`` weights, or ``"float32"`` (the float build).
        info: sizes and the input quantization of the model (:class:`CModelInfo`).
        int_model: the integer model (its methods are the C code's oracle); ``None`` for the
            float build (whose oracle is the Keras model).
        source_model: the trained model, wrappers stripped.
        files: relative path → text of every file :meth:`save` writes.
        fit: flash and RAM against the board.
        checks: stage-against-stage figures (``int vs float argmax agreement``, ``host C vs
            oracle max |diff|``: 0 when bit-exact; ``float C vs keras max |diff|`` for the
            float build).
        timesteps: the window length the sketch uses.
        class_names: names printed by the sketch.
        quality: float against deployed (C) accuracy and agreement on the validation data
            (or, without them, agreement on the calibration windows).
    """

    name: str
    target: Board
    precision: str
    info: CModelInfo
    int_model: IntModel | None
    source_model: keras.Model
    files: dict[str, str]
    fit: CFit
    checks: dict[str, float]
    timesteps: int | None
    class_names: tuple[str, ...] = ()
    quality: QualityReport | None = None

    @property
    def features(self) -> int:
        return self.info.features

    @property
    def num_outputs(self) -> int:
        return self.info.num_outputs

    @property
    def frac_bits(self) -> int | None:
        return self.info.frac_bits

    @property
    def c_sources(self) -> dict[str, str]:
        """``{"<id>.h": ..., "<id>.c": ...}``."""
        return {rel[2:]: text for rel, text in self.files.items()
                if rel.startswith("c/") and "/" not in rel[2:]}

    def quantize_input(self, x) -> np.ndarray:
        """Float windows → what ``<id>_step`` takes (int16 values; float32 for the float
        build)."""
        return self.info.quantize_input(x)

    def report(self) -> str:
        info = self.info
        kind = ("float arithmetic" if info.frac_bits is None
                else f"{self.precision} weights, Q{info.frac_bits} state")
        lines = [
            f"model          {self.name} (standalone C, {kind})",
            f"target         {self.target.display_name} ({self.target.key})",
            f"weights        {info.weight_bytes:,} bytes" + (
                " (float32 parameters, before CSR)" if info.frac_bits is None
                else " as stored (CSR where smaller)"),
            f"state          {info.state_bytes:,} bytes",
            self.fit.to_text(),
        ]
        lines += self.report_checks()
        for scale in info.state_scales:
            lines.append(f"state format   {scale} (calibrated: the values may exceed 1)")
        for a in info.approximations:
            lines.append(f"approximation  {a}")
        return "\n".join(lines + self.report_files())

    def manifest(self) -> dict[str, Any]:
        info = self.info

        def floats(values):
            return None if values is None else [float(v) for v in values]

        return {
            "format": FORMAT, "name": self.name, "target": self.target.key,
            "precision": self.precision, "features": info.features,
            "num_outputs": info.num_outputs, "frac_bits": info.frac_bits,
            "timesteps": self.timesteps, "state_bytes": info.state_bytes,
            "weight_bytes": info.weight_bytes,
            "input_offset": floats(info.input_offset), "input_scale": floats(info.input_scale),
            "class_names": list(self.class_names),
            "fit": {"flash_needed": self.fit.flash_needed, "ram_needed": self.fit.ram_needed,
                    "measured": self.fit.measured, "how": self.fit.how},
            "checks": self.checks, "approximations": list(info.approximations),
            "quality": None if self.quality is None else self.quality.to_dict(),
        }


@dataclasses.dataclass(frozen=True)
class SavedC:
    """A standalone C conversion read back from its directory (what ``rnnedge run`` needs)."""

    path: Path
    name: str
    target: str
    precision: str
    features: int
    num_outputs: int
    frac_bits: int | None
    timesteps: int | None
    input_offset: np.ndarray | None
    input_scale: np.ndarray | None
    class_names: tuple[str, ...]
    c_sources: dict[str, str]

    def quantize_input(self, x) -> np.ndarray:
        """Float windows → what ``<id>_step`` takes (int16 values; float32 for the float
        build)."""
        if self.input_offset is None:
            return np.asarray(x, np.float32)
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
    manifest_path = root / MANIFEST
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
        if m["precision"] not in C_PRECISIONS:
            raise ValueError(f"unknown precision {m['precision']!r}")
        offset = scale = None
        if m["precision"] != "float32":
            offset = np.asarray(m["input_offset"], np.float32)
            scale = np.asarray(m["input_scale"], np.float32)
            if offset.shape != (m["features"],) or scale.shape != (m["features"],):
                raise ValueError(f"input_offset/input_scale do not have {m['features']} "
                                 "values")
        return SavedC(path=root, name=ident, target=m["target"], precision=m["precision"],
                      features=int(m["features"]), num_outputs=int(m["num_outputs"]),
                      frac_bits=None if m["frac_bits"] is None else int(m["frac_bits"]),
                      timesteps=m["timesteps"],
                      input_offset=offset, input_scale=scale,
                      class_names=tuple(m.get("class_names", ())), c_sources=sources)
    except OSError as exc:
        raise ConversionError(f"Cannot read {str(manifest_path)!r}: {exc}; expected a directory "
                              "written by `rnnedge convert`.") from exc
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{str(manifest_path)!r} or the C files beside it are corrupt "
                              f"({type(exc).__name__}: {exc}); convert again.") from exc


def _stage_checks(im: IntModel | None, info: CModelInfo, sources: dict[str, str], ident: str,
                  model: keras.Model, data: np.ndarray, policy: DeploymentCheck
                  ) -> tuple[dict[str, float], np.ndarray | None]:
    """The generated C against its oracle and against the float model.

    Integer build: the host C equals the integer oracle bit for bit on the first windows, and
    its argmax agreement with the float model is measured on every calibration window. Float
    build: the host C's outputs against the Keras model's on every window (softmax applied when
    the model ends with one). Without gcc only the oracle is checked, on the first windows.
    A figure that cannot be computed (NaN) fails the check (``policy``).

    Returns:
        The figures, and the deployed scores on ``data`` (``None`` when not measured).
    """
    checks: dict[str, float] = {}
    probe = data[:_CHECK_SEQUENCES]
    oracle = None if im is None else np.stack([im.run(s) for s in probe])
    float_out = np.asarray(model.predict(data, verbose=0))
    if not np.all(np.isfinite(float_out)):
        stage_failure(policy, f"The float model gives NaN/Inf on representative_data (inputs up "
                      f"to {float(np.max(np.abs(data))):.3g}): the checks of the C cannot be "
                      "computed. Pass data in the range the model was trained on.")
    if shutil.which("gcc") is None:
        if im is None:
            return checks, None
        scores = im.run(data)
        checks["int vs float argmax agreement"] = float(np.mean(
            np.argmax(scores, -1) == np.argmax(float_out, -1)))
        return checks, scores
    from keras_rnnedge.micro_targets.crun import CModelSources, run_c

    c_model = CModelSources(ident, sources, info.features, info.num_outputs,
                            "float32" if im is None else "int")
    scores = run_c(c_model, info.quantize_input(data), target="host").scores
    if oracle is not None:
        diff = float(np.max(np.abs(scores[:len(probe)] - oracle)))
        check_stage(checks, "host C vs oracle max |diff|", diff, policy=policy, limit=0.0,
                    message=f"The check 'host C vs oracle' gives {diff}: the integer C or its "
                    "oracle computes NaN/Inf; this is a bug, please report it with the model.",
                    bug=f"The generated C differs from the integer oracle by {diff:g} (expected "
                    "bit-exact); this is a bug, please report it with the model.")
        checks["int vs float argmax agreement"] = float(np.mean(
            np.argmax(scores, -1) == np.argmax(float_out, -1)))
        return checks, scores
    got = np.asarray(scores, np.float64)
    if _ends_with_softmax(model):
        got = np.exp(got - got.max(axis=-1, keepdims=True))
        got /= got.sum(axis=-1, keepdims=True)
    diff = float(np.max(np.abs(got - float_out)))
    check_stage(checks, "float C vs keras max |diff|", diff, policy=policy, limit=FLOAT_ATOL,
                message=f"The check 'float C vs keras' gives {diff}: the model computes NaN/Inf "
                "on representative_data.",
                bug=f"The float C differs from the Keras model by {diff:.3g} (tolerance "
                f"{FLOAT_ATOL}); this is a bug, please report it with the model.")
    return checks, scores


def _c_quality(im: IntModel | None, info: CModelInfo, sources: dict[str, str], ident: str,
               model: keras.Model, sample: np.ndarray, sample_scores, policy: DeploymentCheck,
               validation, what: str) -> QualityReport | None:
    """The deployed C against the float model on the validation data (the integer oracle,
    bit-exact with the C, or the host float C), or on the calibration windows without them."""
    if validation is None:
        if sample_scores is None:
            return None
        x, y, deployed, source = sample, None, sample_scores, "calibration windows"
    else:
        x, y = validation
        source = "validation data"
        if im is not None:
            deployed = im.run(x)
        elif shutil.which("gcc") is not None:
            from keras_rnnedge.micro_targets.crun import CModelSources, run_c

            c_model = CModelSources(ident, sources, info.features, info.num_outputs, "float32")
            deployed = run_c(c_model, info.quantize_input(x), target="host").scores
        else:
            return None
    float_out = np.asarray(model.predict(x, verbose=0))
    report = measure(float_out, deployed, y, policy, what, source)
    cov = None
    if validation is not None:
        cov = coverage(sample, x, np.argmax(model.predict(sample, verbose=0), -1),
                       np.argmax(float_out, -1))
        warn_coverage(cov)
    saturated = {}
    if not report.passed and im is not None:
        saturated = _saturation(im, x)
    advice = ("precision='int16' (16-bit weights), quantization-aware training, or a larger "
              "calibration_size")
    report = diagnose(report, cov, saturated, advice)
    enforce(report)
    if im is not None and getattr(im, "num_levels", None) and validation is not None:
        _check_levels(im, model, x, y, policy, what, source)
    return report


def _check_levels(im, model: keras.Model, x: np.ndarray, y, policy: DeploymentCheck, what: str,
                  source: str) -> None:
    """A flexible model's levels below the top: the deployed model at each level against the
    float model at that level, with the same thresholds as the top level."""
    from keras_rnnedge.flexible import with_level_input

    both = with_level_input(model)
    for level in range(im.num_levels - 1):
        levels = np.full(x.shape[:2], level)
        float_out = np.asarray(both.predict([x, levels.astype(np.float32)], verbose=0))
        enforce(measure(float_out, im.run(x, levels=levels), y, policy,
                        f"{what} at level {level}", source))


def _saturation(im: IntModel, x: np.ndarray) -> dict[str, float]:
    """Share of values at the int16 limits: the quantized input, and each layer's stored state
    over every step (the oracle's own step)."""
    x_q = im.quantize_input(x)
    out = {"input": float(np.mean((x_q <= -(2**15)) | (x_q >= 2**15 - 1)))}
    state = im.initial_state(x_q.shape[:1])
    hits = np.zeros(len(state))
    for t in range(x_q.shape[1]):
        state = im.step(state, x_q[:, t])
        hits += [np.mean(np.abs(s) >= 2**15 - 1) for s in state]
    for layer, h in zip(im.recurrent, hits):
        out[f"{layer.name} state"] = float(h / x_q.shape[1])
    return out


def _ends_with_softmax(model: keras.Model) -> bool:
    last = model.layers[-1]
    return getattr(last, "activation", None) is keras.activations.softmax


@with_stages("converting to C", 3)
def convert_c(model: keras.Model, *, target: str, representative_data, precision: str = "int8",
              name: str | None = None, class_names=None,
              timesteps: int | None = None, validation_data=None, checks: str = "raise",
              max_accuracy_drop: float = 2.0, min_agreement: float = 0.9,
              calibration_size: int | None = None,
              calibration_seed: int = 0, progress: ProgressArg = True) -> CConversionResult:
    """Convert a trained model to standalone C for ``target`` (see the module docstring).

    Args:
        model: an optional leading ``Normalization(axis=-1)`` (composed into the per-feature
            input quantization, or standardised in ``<id>_step`` by the float build: the C takes
            the raw features), recurrent layers (FastGRNN, FastRNN, low-rank LSTM/GRU, stock
            SimpleRNN, GRU, LSTM) then Dense layers; pruning/QAT wrappers are stripped.
        target: a board key of :data:`keras_rnnedge.micro_targets.boards.BOARDS` (``"uno"``,
            ``"nano33ble"``, ..., ``"host"``).
        representative_data: float windows ``(N, T, F)``: input ranges (measured on all of
            them) and formats of the integer model (on ``calibration_size`` windows sampled
            across them). Pass the whole training set.
        precision: ``"int8"`` or ``"int16"`` weights.
        name: model name for files and C symbols (default: the Keras model's name).
        class_names: names printed by the sketch.
        timesteps: the window length of the sketch (default: the model's or the data's).
        validation_data: ``(x, y)`` (``y`` optional: without labels only the agreement is
            checked): the deployed model (the integer oracle, bit-exact with the C) runs on
            every window of ``x`` and is compared with the float model
            (:attr:`CConversionResult.quality`). Without it the agreement is checked on the
            calibration windows.
        checks: ``"raise"`` (default) or ``"warn"``: what a deployment loss beyond the
            thresholds, or a stage check that fails or gives NaN, does.
        max_accuracy_drop: most accuracy points the C may lose against the float model
            (default 2).
        min_agreement: least argmax agreement with the float model (default 0.9).
        calibration_size: windows sampled for calibration (default 512); fewer than 32
            available warn (:class:`~keras_rnnedge.converters.quality.CalibrationWarning`).
        calibration_seed: seed of that sample.
        progress: a bar over the stages (quantizing, checking, measuring) on stderr when it
            is a terminal; ``False`` for none (:mod:`keras_rnnedge.progress`).

    Raises:
        ConversionError: an option, a layer (named, with the supported ones) or a weight
            (named, with its range) that cannot be converted, or bad data.
        keras_rnnedge.converters.quality.DeploymentQualityError: the C loses more than
            ``max_accuracy_drop`` points or agrees less than ``min_agreement``.
        keras_rnnedge.converters.quality.StageCheckError: a stage check fails or gives NaN.
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
    _, data = check_inputs(model, representative_data, mode="c", timesteps=timesteps,
                           class_names=class_names)
    policy = DeploymentCheck(checks, max_accuracy_drop, min_agreement)
    validation = check_validation_data(validation_data, data.shape[-1])
    sample = calibration_sample(data, calibration_size or CALIBRATION_SEQUENCES,
                                calibration_seed)
    ident = c_identifier(name or model.name)
    reference = strip_wrappers(model)
    stage(f"quantizing ({precision})")
    from keras_rnnedge.converters.c.switching import switching_layer

    if precision == "float32" and switching_layer(reference) is not None:
        raise ConversionError(
            f"Model {reference.name!r} has a SwitchingCell (flexible RNN, method 2): its C is "
            "integer only; convert with precision='int8' or 'int16'.")
    try:
        if precision == "float32":
            im = None
            info = CModelInfo.of_float_model(reference)
            sources = generate_float_c(reference, ident)
        else:
            im = quantize_model(model, data, weight_bits=int(precision[3:]),
                                calibration_size=calibration_size or CALIBRATION_SEQUENCES,
                                calibration_seed=calibration_seed)
            info = CModelInfo.of_int_model(im)
            sources = generate_c(im, ident, progmem=True)
    except ConversionError:
        raise
    except ValueError as exc:
        raise ConversionError(str(exc)) from exc
    stage("checking the C")
    checks, sample_scores = _stage_checks(im, info, sources, ident, reference, sample, policy)
    what = ("C float32" if im is None else f"integer C ({precision} weights, Q{im.frac_bits} "
            "state)")
    quality = _c_quality(im, info, sources, ident, reference, sample, sample_scores, policy,
                         validation, what)

    stage(f"measuring for {board.key}")
    fit = _fit(info, sources, ident, board)
    if not fit.fits:
        raise _fit_error(fit)
    names = tuple(str(c) for c in (class_names or ()))
    window = timesteps or (model.inputs[0].shape[1] if model.inputs else None) or data.shape[1]
    files = {f"c/{n}": text for n, text in sources.items()}
    if board.arduino_fqbn:
        for rel, text in c_sketch(ident, sources, features=info.features,
                                  num_outputs=info.num_outputs, frac_bits=info.frac_bits,
                                  timesteps=int(window), input_offset=info.input_offset,
                                  input_scale=info.input_scale, class_names=names,
                                  board_name=board.display_name,
                                  num_levels=None if im is None else im.num_levels).items():
            files[f"arduino/{rel}"] = text
    if board.arch == "arm":
        expected = (im.run(data[0]) if im is not None
                    else _float_scores(reference, data[:1])[0])
        for rel, text in cortex_m_project(ident, sources, example=info.quantize_input(data[0]),
                                          expected=expected,
                                          num_outputs=info.num_outputs).items():
            files[f"cortex-m/{rel}"] = text
    return CConversionResult(name=ident, target=board, precision=precision, info=info,
                             int_model=im,
                             source_model=reference, files=files, fit=fit, checks=checks,
                             timesteps=int(window), class_names=names, quality=quality)


def _float_scores(model: keras.Model, x) -> np.ndarray:
    """The model's pre-softmax outputs (what the float C's ``<id>_predict`` writes)."""
    if not _ends_with_softmax(model):
        return np.asarray(model.predict(x, verbose=0))
    last = model.layers[-1]
    y = np.asarray(x, np.float32)
    for layer in model.layers[:-1]:  # a chain (plan_model): recurrent layers, then the head
        if not isinstance(layer, keras.layers.InputLayer):
            y = layer(y, training=False)
    features = np.asarray(y)
    kernel, *bias = last.get_weights()
    return features @ kernel + (bias[0] if bias else 0.0)
