"""What a conversion loses: calibration sampling, range estimators and the deployment check.

Both converters (:func:`~keras_rnnedge.converters.tflite.pipeline.convert` for TFLite Micro,
:func:`~keras_rnnedge.converters.c.cexport.convert_c` for the standalone C) share this module:

* :func:`calibration_sample`: a seeded sample of sequences drawn across the whole
  representative array (not its first rows, which are often one class when the training set is
  ordered), with a :class:`CalibrationWarning` when it is small.
* :func:`coverage`: whether the calibration windows cover the inputs and classes of the
  validation data (values outside the calibrated ranges, classes the float model never predicts
  on the calibration windows).
* :func:`choose_range`: a tensor's quantization range from its observed values, by the
  estimator (``minmax``, ``percentile``, ``mse``) with the smallest measured quantization error.
* :class:`DeploymentCheck` (thresholds and what to do when they are crossed) and
  :func:`measure`: float against deployed accuracy and argmax agreement
  (:class:`QualityReport`); :func:`enforce` raises :class:`DeploymentQualityError` (or warns
  with :class:`DeploymentQualityWarning` when ``checks="warn"``) naming the likely cause and
  what to try.
* :func:`stage_failure`: a stage-against-stage check that failed or could not be computed
  (NaN) raises :class:`StageCheckError` under the same policy.

Example:
    >>> result = convert(model, target="nano33ble", quantization="int8",   # doctest: +SKIP
    ...                  representative_data=x_train, validation_data=(x_val, y_val))
    >>> print(result.quality.to_text())                                    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import warnings

from keras_rnnedge._compat import np
from keras_rnnedge.converters.lowering import ConversionError

__all__ = [
    "CHECK_POLICIES",
    "ESTIMATORS",
    "CalibrationWarning",
    "Coverage",
    "DeploymentCheck",
    "DeploymentQualityError",
    "DeploymentQualityWarning",
    "QualityReport",
    "StageCheckError",
    "calibration_sample",
    "check_validation_data",
    "choose_range",
    "coverage",
    "diagnose",
    "enforce",
    "finite_or_nan",
    "measure",
    "stage_failure",
    "warn_coverage",
]

#: What a failed check does: ``"raise"`` (the default) or ``"warn"`` (the explicit opt-out).
CHECK_POLICIES = ("raise", "warn")
#: Range estimators :func:`choose_range` compares.
ESTIMATORS = ("minmax", "percentile", "mse")
#: Fewer calibration sequences than this draw a :class:`CalibrationWarning`.
SMALL_CALIBRATION = 32
#: Share of validation input values outside the calibrated per-feature ranges above which the
#: calibration is reported as not covering the data.
MAX_OUTSIDE = 0.005
#: The percentile estimator keeps this share of the values inside the range.
PERCENTILE = 99.99
#: Share of a feature's calibrated range that the validation data must span at least: less
#: leaves them a handful of int8 steps (the ranges were set on data of another scale).
MIN_RANGE_USE = 1 / 64
#: Share of saturated values above which a tensor is reported as saturated.
MAX_SATURATED = 0.01


class CalibrationWarning(UserWarning):
    """The calibration data are few, or do not cover the inputs or classes seen elsewhere."""


class DeploymentQualityWarning(UserWarning):
    """The deployed model loses more than the thresholds allow (``checks="warn"``)."""


class DeploymentQualityError(ConversionError):
    """The deployed model loses more accuracy or agreement than the thresholds allow."""


class StageCheckError(ConversionError):
    """A stage of the conversion differs from the one before it, or the check gave NaN."""


@dataclasses.dataclass(frozen=True)
class DeploymentCheck:
    """Thresholds of the deployment check and what to do when one is crossed.

    Attributes:
        checks: ``"raise"`` (default) or ``"warn"``: what a failed check (deployment loss or a
            stage-against-stage check) does.
        max_accuracy_drop: most accuracy points the deployed model may lose against the float
            model on the validation data (needs labels).
        min_agreement: least share of validation windows on which the deployed and float models
            predict the same class.
    """

    checks: str = "raise"
    max_accuracy_drop: float = 2.0
    min_agreement: float = 0.9

    def __post_init__(self):
        if self.checks not in CHECK_POLICIES:
            raise ConversionError(f"Expected checks to be one of "
                                  f"{', '.join(map(repr, CHECK_POLICIES))}, but got "
                                  f"{self.checks!r}.")
        drop = self.max_accuracy_drop
        if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not drop >= 0:
            raise ConversionError(f"Expected max_accuracy_drop to be a number of points >= 0, "
                                  f"but got {drop!r}.")
        agree = self.min_agreement
        if isinstance(agree, bool) or not isinstance(agree, (int, float)) or \
                not 0.0 <= agree <= 1.0:
            raise ConversionError(f"Expected min_agreement to be a share in [0, 1], but got "
                                  f"{agree!r}.")


@dataclasses.dataclass(frozen=True)
class Coverage:
    """How well the calibration windows cover the validation data.

    Attributes:
        outside: share of validation input values outside the calibrated per-feature range.
        worst_feature: the feature with the most values outside, and its share.
        missing_classes: classes the float model predicts on the validation data but never on
            the calibration windows.
        narrowest_use: the feature whose calibrated range the validation data span least,
            and that share (calibration data of another scale give ranges far too wide).
    """

    outside: float
    worst_feature: tuple[int, float]
    missing_classes: tuple[int, ...]
    narrowest_use: tuple[int, float] = (0, 1.0)

    @property
    def ok(self) -> bool:
        return (self.outside <= MAX_OUTSIDE and not self.missing_classes
                and self.narrowest_use[1] >= MIN_RANGE_USE)

    def to_text(self) -> str:
        parts = [f"{100 * self.outside:.2f} % of validation input values outside the "
                 f"calibrated ranges (worst: feature {self.worst_feature[0]}, "
                 f"{100 * self.worst_feature[1]:.1f} %)"]
        if self.missing_classes:
            parts.append("classes " + ", ".join(map(str, self.missing_classes))
                         + " never predicted on the calibration windows")
        feature, used = self.narrowest_use
        if used < MIN_RANGE_USE:
            parts.append(f"the validation data span only {100 * used:.2g} % of the calibrated "
                         f"range of feature {feature} (calibration data of another scale?)")
        return "; ".join(parts)


@dataclasses.dataclass(frozen=True)
class QualityReport:
    """Float against deployed model on the validation data.

    Attributes:
        deployed: what ran (``"TFLite Micro int8"``, ``"integer C (int8 weights)"``...).
        windows: validation windows measured.
        labelled: whether labels were given (else only the agreement is measured).
        float_accuracy, deployed_accuracy: shares in [0, 1] (``None`` without labels).
        agreement: share of windows where both predict the same class.
        thresholds: the :class:`DeploymentCheck` applied.
        source: ``"validation data"`` or ``"calibration windows"`` (no validation data given:
            agreement only, and optimistic: the ranges were set on those windows).
        cause: the likely cause when the check fails (empty when it passes).
        advice: what to try when it fails.
    """

    deployed: str
    windows: int
    labelled: bool
    float_accuracy: float | None
    deployed_accuracy: float | None
    agreement: float
    thresholds: DeploymentCheck
    source: str = "validation data"
    cause: str = ""
    advice: str = ""

    @property
    def accuracy_drop(self) -> float | None:
        """Float minus deployed accuracy, in points (``None`` without labels)."""
        if self.float_accuracy is None or self.deployed_accuracy is None:
            return None
        return 100.0 * (self.float_accuracy - self.deployed_accuracy) + 0.0

    @property
    def failures(self) -> list[str]:
        """The thresholds crossed, in words (empty: passed)."""
        out = []
        drop = self.accuracy_drop
        if drop is not None and not drop <= self.thresholds.max_accuracy_drop:
            out.append(f"accuracy drops {drop:.2f} points (float {100 * self.float_accuracy:.2f}"
                       f" %, deployed {100 * self.deployed_accuracy:.2f} %; allowed "
                       f"{self.thresholds.max_accuracy_drop:g})")
        if not self.agreement >= self.thresholds.min_agreement:
            out.append(f"agreement with the float model {100 * self.agreement:.1f} % (required "
                       f">= {100 * self.thresholds.min_agreement:.1f} %)")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_text(self) -> str:
        acc = ""
        if self.accuracy_drop is not None:
            acc = (f"float {100 * self.float_accuracy:.2f} %, deployed "
                   f"{100 * self.deployed_accuracy:.2f} % ({-self.accuracy_drop:+.2f} points), ")
        verdict = "passed" if self.passed else "FAILED: " + "; ".join(self.failures)
        return (f"{self.deployed} on {self.windows} {self.source} windows: {acc}agreement "
                f"{100 * self.agreement:.1f} % [{verdict}]")

    def to_dict(self) -> dict:
        return {"deployed": self.deployed, "windows": self.windows, "source": self.source,
                "float_accuracy": self.float_accuracy,
                "deployed_accuracy": self.deployed_accuracy,
                "accuracy_drop_points": self.accuracy_drop, "agreement": self.agreement,
                "max_accuracy_drop": self.thresholds.max_accuracy_drop,
                "min_agreement": self.thresholds.min_agreement, "checks": self.thresholds.checks,
                "passed": self.passed, "cause": self.cause, "advice": self.advice}


# -- calibration data -----------------------------------------------------------------------------

def calibration_sample(data: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """``size`` sequences drawn without replacement across the whole of ``data`` (seeded; in
    their original order), or all of them when there are no more.

    Warns (:class:`CalibrationWarning`) when fewer than :data:`SMALL_CALIBRATION` sequences are
    available.

    Raises:
        ConversionError: ``size`` is not a positive integer.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConversionError(f"Expected calibration_size to be a positive integer, but got "
                              f"{size!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConversionError(f"Expected calibration_seed to be an integer, but got {seed!r}.")
    n = len(data)
    if n < SMALL_CALIBRATION:
        warnings.warn(
            f"Calibration on only {n} sequences (representative_data has {n}); the ranges of "
            f"the deployed model may miss inputs seen in use. Pass the whole training set "
            f"(representative_data=x_train): the converter samples it.", CalibrationWarning,
            stacklevel=3)
    if n <= size:
        return data
    index = np.sort(np.random.default_rng(seed).choice(n, size=int(size), replace=False))
    return data[index]


def check_validation_data(validation_data, features: int):
    """``(x, y)`` as float32 windows and int labels (``y`` may be ``None``), or ``None``.

    Raises:
        ConversionError: a shape, a length or a value (NaN/Inf) that cannot be used.
    """
    if validation_data is None:
        return None
    if isinstance(validation_data, (tuple, list)):
        if len(validation_data) not in (1, 2):
            raise ConversionError(f"Expected validation_data to be (x, y) or (x,), but got a "
                                  f"sequence of {len(validation_data)} items.")
        x = validation_data[0]
        y = validation_data[1] if len(validation_data) == 2 else None
    else:
        x, y = validation_data, None
    x = np.asarray(x, np.float32)
    if x.ndim != 3 or x.shape[-1] != features or len(x) == 0:
        raise ConversionError(f"validation_data x has shape {x.shape}; expected (N, timesteps, "
                              f"{features}) with N >= 1.")
    if not np.all(np.isfinite(x)):
        raise ConversionError("validation_data x contains NaN or Inf values; clean the data "
                              "(the check compares the float and deployed models on it).")
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] > 1:  # one-hot labels
            y = np.argmax(y, axis=1)
        y = y.reshape(-1)
        if len(y) != len(x) or not np.issubdtype(y.dtype, np.number):
            raise ConversionError(f"validation_data y has shape {np.shape(y)}; expected {len(x)} "
                                  "class ids (or one-hot rows), one per window of x.")
        y = y.astype(np.int64)
    return x, y


def coverage(calibration: np.ndarray, x: np.ndarray, calibration_classes=None,
             validation_classes=None) -> Coverage:
    """How well ``calibration`` windows cover the validation windows ``x`` (see
    :class:`Coverage`); the class sets are the float model's predictions on each."""
    lo = calibration.min(axis=(0, 1))
    hi = calibration.max(axis=(0, 1))
    outside = (x < lo) | (x > hi)
    per_feature = outside.mean(axis=(0, 1))
    worst = int(np.argmax(per_feature))
    width = hi - lo
    spans = np.where(width > 0, (x.max(axis=(0, 1)) - x.min(axis=(0, 1))) / np.where(
        width > 0, width, 1.0), 1.0)
    narrow = int(np.argmin(spans))
    missing = ()
    if calibration_classes is not None and validation_classes is not None:
        missing = tuple(sorted(set(np.unique(validation_classes).tolist())
                               - set(np.unique(calibration_classes).tolist())))
    return Coverage(outside=float(outside.mean()),
                    worst_feature=(worst, float(per_feature[worst])), missing_classes=missing,
                    narrowest_use=(narrow, float(spans[narrow])))


def warn_coverage(cov: Coverage) -> None:
    """A :class:`CalibrationWarning` when ``cov`` is not :attr:`Coverage.ok`."""
    if not cov.ok:
        warnings.warn(f"The calibration data do not cover the validation data: {cov.to_text()}. "
                      "Pass representative_data drawn across the whole training set (all "
                      "classes and conditions; the converter samples it).", CalibrationWarning,
                      stacklevel=3)


# -- range estimators ---------------------------------------------------------------------------

def _quant_error(values: np.ndarray, lo: float, hi: float, levels: int) -> float:
    """Mean squared error of quantizing ``values`` on ``levels`` uniform steps over
    ``[lo, hi]`` (values outside are clipped)."""
    if hi <= lo:
        return float(np.mean((values - lo) ** 2))
    step = (hi - lo) / (levels - 1)
    q = np.round((np.clip(values, lo, hi) - lo) / step) * step + lo
    return float(np.mean((values - q) ** 2))


def _include_zero(lo: float, hi: float) -> tuple[float, float]:
    return min(lo, 0.0), max(hi, 0.0)


def choose_range(values, bits: int = 8, estimators=ESTIMATORS, *, include_zero: bool = True
                 ) -> tuple[float, float, str]:
    """The quantization range of a tensor from values it took, by the estimator with the
    smallest mean squared quantization error on those values.

    Estimators: ``minmax`` (the extremes), ``percentile`` (the central :data:`PERCENTILE` % of
    the values), ``mse`` (the range shrunk by 0-90 %, in 64 steps, with the smallest error).
    With ``include_zero`` every range contains 0 (zero must be exact in TFLite's asymmetric
    int8); the standalone C's inputs are centred on their range instead.

    Returns:
        ``(low, high, estimator)``.
    """
    v = np.asarray(values, np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 0.0, "minmax"
    levels = 2**bits
    widen = _include_zero if include_zero else (lambda lo, hi: (lo, hi))
    candidates = {}
    if "minmax" in estimators:
        candidates["minmax"] = widen(float(v.min()), float(v.max()))
    if "percentile" in estimators:
        tail = (100.0 - PERCENTILE) / 2.0
        candidates["percentile"] = widen(float(np.percentile(v, tail)),
                                         float(np.percentile(v, 100.0 - tail)))
    if "mse" in estimators:
        lo, hi = widen(float(v.min()), float(v.max()))
        mid = 0.0 if include_zero else (lo + hi) / 2.0
        sub = v if v.size <= 20000 else v[np.linspace(0, v.size - 1, 20000).astype(int)]
        best = None
        for frac in np.linspace(1.0, 0.1, 64):  # shrink the range towards 0 (or its centre)
            cand = (mid + (lo - mid) * frac, mid + (hi - mid) * frac)
            err = _quant_error(sub, *cand, levels)
            if best is None or err < best[0]:
                best = (err, cand)
        candidates["mse"] = best[1]
    errors = {name: _quant_error(v, lo, hi, levels) for name, (lo, hi) in candidates.items()}
    name = min(errors, key=lambda k: (errors[k], list(candidates).index(k)))
    lo, hi = candidates[name]
    return lo, hi, name


# -- the deployment check ---------------------------------------------------------------------

def measure(float_scores, deployed_scores, labels, check: DeploymentCheck, deployed: str,
            source: str = "validation data") -> QualityReport:
    """Accuracy of both models (when ``labels`` are given) and their argmax agreement."""
    fp = np.argmax(np.asarray(float_scores), axis=-1)
    dp = np.argmax(np.asarray(deployed_scores), axis=-1)
    fa = da = None
    if labels is not None:
        fa = float(np.mean(fp == labels))
        da = float(np.mean(dp == labels))
    return QualityReport(deployed=deployed, windows=int(len(fp)), labelled=labels is not None,
                         float_accuracy=fa, deployed_accuracy=da,
                         agreement=float(np.mean(fp == dp)), thresholds=check, source=source)


def diagnose(report: QualityReport, cov: Coverage | None, saturated: dict[str, float],
             drift_advice: str) -> QualityReport:
    """``report`` with its likely cause and advice filled in (when it failed)."""
    if report.passed:
        return report
    causes, advice = [], []
    if cov is not None and not cov.ok:
        causes.append(f"calibration coverage ({cov.to_text()})")
        advice.append("pass representative_data drawn across the whole training set (all "
                      "classes and conditions), e.g. representative_data=x_train")
    hot = {k: v for k, v in saturated.items() if v > MAX_SATURATED}
    if hot:
        causes.append("saturated tensor (" + ", ".join(f"{k}: {100 * v:.1f} % of values at the "
                                                       "limit" for k, v in hot.items()) + ")")
        advice.append("calibrate on data covering the inputs in use, or retrain with input "
                      "normalization / weight regularization so activations stay in range")
    if not causes:
        causes.append("state drift (rounding of the recurrent state accumulates over the time "
                      "steps; the calibration covers the validation inputs)")
        advice.append(drift_advice)
    return dataclasses.replace(report, cause="; ".join(causes), advice="; ".join(advice))


def enforce(report: QualityReport) -> None:
    """Raise :class:`DeploymentQualityError` (``checks="raise"``) or warn
    (:class:`DeploymentQualityWarning`, ``checks="warn"``) when ``report`` failed."""
    if report.passed:
        return
    message = (f"The deployed model ({report.deployed}) loses too much on {report.windows} "
               f"{report.source} windows: " + "; ".join(report.failures) + f". Likely cause: "
               f"{report.cause or 'unknown'}. Try: {report.advice or 'int16 precision'}. To "
               "accept the loss, raise max_accuracy_drop / lower min_agreement, or pass "
               "checks='warn'.")
    if report.thresholds.checks == "warn":
        warnings.warn(message, DeploymentQualityWarning, stacklevel=3)
        return
    raise DeploymentQualityError(message)


def stage_failure(check: DeploymentCheck, message: str) -> None:
    """A stage check that failed or gave NaN: raise :class:`StageCheckError`, or warn
    (:class:`DeploymentQualityWarning`) when ``checks="warn"``."""
    text = (f"{message} To convert anyway (the result records the figure in `checks`), pass "
            "checks='warn'.")
    if check.checks == "warn":
        warnings.warn(text, DeploymentQualityWarning, stacklevel=3)
        return
    raise StageCheckError(text)


def finite_or_nan(value: float) -> bool:
    """Whether a check's figure could be computed (not NaN/Inf)."""
    return isinstance(value, (int, float)) and math.isfinite(value)
