"""The main job: train a compressed FastGRNN on the bundled HAR data, export it, emulate it.

``rnnedge demo`` calls :func:`run_demo`. The recipe is the FastGRNN paper's HAR configuration
(hidden 80, ``r_W = 5``, ``r_U = 40``, ``s_W = 0.2``, ``s_U = 0.3``) trained by the project's
recipe (:func:`keras_rnnedge.recipe.train`): inputs standardised by the model's Normalization
layer, dense training, iterative hard thresholding with a cubic ramp, sparse fine-tuning with the
support frozen, gradient clipping, the best validation epoch restored in every phase. The
trained model is converted to a full-integer (int8) one-step TFLite model for the Arduino Nano
33 BLE Sense (flatbuffer, C array, Arduino sketch), and the int8 model is run over the test set
in the TensorFlow Lite Micro interpreter on the host. It is also converted to standalone integer
C for the Arduino Uno (no TFLite Micro: C99, an Arduino sketch), which is compiled and run over
the test set on the host and, for a few windows, on an emulated ATmega328P (simavr), bit for bit
against the host build, with the exact cycles per step.

Both conversions run with ``checks="warn"``: a deployed model that loses more than the
converters' thresholds against the float model is reported with a warning, and the demo goes on
to measure it on the test set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from keras_rnnedge._compat import keras, np
from keras_rnnedge.cells import FastGRNNCell
from keras_rnnedge.converters import CConversionResult, ConversionResult, convert, convert_c
from keras_rnnedge.datasets import balanced_sample, load_har
from keras_rnnedge.micro_targets.boards import get_board
from keras_rnnedge.micro_targets.crun import CRunResult, run_c
from keras_rnnedge.micro_targets.emulate import emulate
from keras_rnnedge.micro_targets.harness import ToolchainMissingError
from keras_rnnedge.progress import ProgressArg, check_progress
from keras_rnnedge.recipe import Recipe, build_classifier, train
from keras_rnnedge.summary import ModelSummary, summary

__all__ = ["CLIPNORM", "DemoResult", "build_fastgrnn_classifier", "run_demo"]

#: Global gradient-norm clipping of the demo's optimizer.
CLIPNORM = 1.0


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """What the demo measured and where it saved the model."""

    test_accuracy: float
    num_classes: int
    epochs: int
    train_seconds: float
    summary: ModelSummary
    model_path: Path
    conversion: ConversionResult | None = None
    export_path: Path | None = None
    int8_accuracy: float | None = None
    int8_agreement: float | None = None
    int8_seconds_per_step: float | None = None
    emulated_windows: int = 0
    c_conversion: CConversionResult | None = None
    c_export_path: Path | None = None
    c_accuracy: float | None = None
    c_agreement: float | None = None
    c_emulated: CRunResult | None = None
    c_bit_exact: bool | None = None
    c_skipped: str | None = None

    @property
    def int8_bytes(self) -> int:
        return self.summary.totals.bytes_int8


def build_fastgrnn_classifier(input_shape: tuple[int, int], num_classes: int, *,
                              units: int = 80, w_rank: int | None = 5,
                              u_rank: int | None = 40, name: str = "fastgrnn") -> keras.Model:
    """``Input -> RNN(FastGRNNCell) -> Dense(num_classes)`` (logits), as in the paper."""
    inputs = keras.Input(input_shape, name="x")
    h = keras.layers.RNN(FastGRNNCell(units, w_rank=w_rank, u_rank=u_rank), name=f"{name}_rnn")(
        inputs)
    outputs = keras.layers.Dense(num_classes, name="classifier")(h)
    return keras.Model(inputs, outputs, name=name)


def run_demo(out_dir: str | Path = "runs/demo", *, epochs: int = 30, num_classes: int = 6,
             batch_size: int = 64, learning_rate: float = 0.005, max_train: int | None = None,
             seed: int = 0, log: Callable[[str], None] | None = None,
             verbose: int = 0, target: str | None = "nano33ble",
             max_test: int | None = None, c_target: str | None = "uno",
             c_emulated_windows: int = 2, progress: ProgressArg = True) -> DemoResult:
    """Train FastGRNN with hard thresholding on bundled HAR data, evaluate, save the model.

    Args:
        out_dir: directory for ``fastgrnn_har{num_classes}.keras`` (created if missing).
        epochs: total epochs, split a third each into dense / IHT / sparse fine-tuning.
        num_classes: 6 (HAR-6) or 2 (HAR-2, the paper's binary task).
        batch_size, learning_rate: Adam training settings.
        max_train: use only this many training windows (for a quick run).
        seed: seeds weights and data order.
        log: called with one line per epoch (phase, loss, accuracy, elapsed time, ETA) and
            per step of the export.
        verbose: passed to ``model.fit``.
        target: board to export for (int8, step mode) and emulate in TFLite Micro; ``None``
            skips the export.
        max_test: emulate only this many test windows, drawn across the classes (seeded;
            default: all).
        c_target: board to export standalone integer C for (``None`` skips it); the C runs
            over the test set on the host, and on the emulated board (ATmega328P in simavr for
            AVR boards, Cortex-M4 in QEMU for Arm boards) for ``c_emulated_windows`` windows,
            drawn across the classes (seeded).
        progress: bars on stderr (when it is a terminal) over each epoch's batches, the
            conversions, the emulation and the C runs; ``False`` for none
            (:mod:`keras_rnnedge.progress`).

    Returns:
        A :class:`DemoResult` (test accuracy, the summary, the saved model path).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 3:
        raise ValueError(f"Received epochs={epochs!r}, expected an integer >= 3 (a third each "
                         "for dense training, hard thresholding and fine-tuning).")
    log = log or (lambda line: None)
    check_progress(progress)
    keras.utils.set_random_seed(seed)
    data = load_har(num_classes, validation_split=0.1, seed=seed)
    x_train, y_train = data.x_train, data.y_train
    if max_train is not None:
        x_train, y_train = x_train[:max_train], y_train[:max_train]
    log(f"HAR-{num_classes}: {len(x_train)} training, {len(data.x_val)} validation, "
        f"{len(data.x_test)} test windows of {data.input_shape[0]} x {data.input_shape[1]}")

    # the project's recipe (keras_rnnedge.recipe): standardised inputs, clipping, a cubic ramp
    # into thresholding, the best validation epoch restored in every phase
    model = build_classifier(FastGRNNCell(80, w_rank=5, u_rank=40), x_train, data.num_classes,
                             name="fastgrnn")
    third = epochs // 3
    recipe = Recipe(dense_epochs=third, threshold_epochs=third,
                    sparse_epochs=epochs - 2 * third, learning_rate=learning_rate,
                    batch_size=batch_size, clipnorm=CLIPNORM, seed=seed)
    trained = train(model, dataclasses.replace(data, x_train=x_train, y_train=y_train), recipe,
                    density={"kernel": 0.2, "recurrent_kernel": 0.3}, log=log,
                    progress=progress)
    model, accuracy, seconds = trained.model, trained.test_accuracy, trained.seconds

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"fastgrnn_har{num_classes}.keras"
    model.save(path)
    result = DemoResult(test_accuracy=float(accuracy), num_classes=num_classes, epochs=epochs,
                        train_seconds=seconds, summary=summary(model), model_path=path)
    if target is not None:
        result = _tflite_export(result, model, data, x_train, out, target, max_test, log,
                                progress, seed)
    if c_target is not None:
        result = _c_export(result, model, data, x_train, out, c_target, max_test,
                           c_emulated_windows, log, progress, seed)
    return result


def _test_windows(data, max_test: int | None, seed: int):
    """The test windows, or ``max_test`` of them drawn across the classes (the test set is
    ordered by class: its first windows are all one class)."""
    if max_test is None or max_test >= len(data.y_test):
        return data.x_test, data.y_test
    index = balanced_sample(data.y_test, max_test, seed)
    return data.x_test[index], data.y_test[index]


def _tflite_export(result, model, data, x_train, out, target, max_test, log,
                   progress, seed) -> DemoResult:
    num_classes = result.num_classes
    log(f"converting to int8 (step mode) for {target}...")
    conversion = convert(model, target=target, quantization="int8", mode="step",
                         representative_data=x_train, name=f"fastgrnn_har{num_classes}",
                         class_names=data.class_names, checks="warn", progress=progress)
    export = conversion.save(out / f"{target}_fastgrnn_har{num_classes}", force=True)
    x_test, y_test = _test_windows(data, max_test, seed)
    log(f"emulating {len(x_test)} test windows step by step in TensorFlow Lite Micro...")
    emulated = emulate(conversion, x_test, runtime="tflm", progress=progress)
    keras_pred = model.predict(x_test, batch_size=256, verbose=0).argmax(-1)
    return dataclasses.replace(
        result, conversion=conversion, export_path=export,
        int8_accuracy=float(np.mean(emulated.predictions() == y_test)),
        int8_agreement=float(np.mean(emulated.predictions() == keras_pred)),
        int8_seconds_per_step=emulated.seconds_per_step, emulated_windows=len(x_test))


def _c_export(result, model, data, x_train, out, c_target, max_test, emulated_windows,
              log, progress, seed) -> DemoResult:
    num_classes = result.num_classes
    log(f"converting to standalone integer C for {c_target}...")
    conversion = convert_c(model, target=c_target, representative_data=x_train,
                           name=f"fastgrnn_har{num_classes}", class_names=data.class_names,
                           checks="warn", progress=progress)
    export = conversion.save(out / f"{c_target}_c_fastgrnn_har{num_classes}", force=True)
    x_test, y_test = _test_windows(data, max_test, seed)
    log(f"running the C over {len(x_test)} test windows on the host...")
    x_q = conversion.quantize_input(x_test)
    host = run_c(conversion, x_q, target="host", progress=progress)
    keras_pred = model.predict(x_test, batch_size=256, verbose=0).argmax(-1)
    result = dataclasses.replace(
        result, c_conversion=conversion, c_export_path=export,
        c_accuracy=float(np.mean(host.predictions() == y_test)),
        c_agreement=float(np.mean(host.predictions() == keras_pred)))
    arch = get_board(c_target).arch
    run_target = {"avr": "uno", "arm": "cortex-m4"}.get(arch)
    if run_target is None or emulated_windows < 1:
        return result
    pick = balanced_sample(y_test, min(emulated_windows, len(x_q)), seed)  # not one class
    k = len(pick)
    counts = ", ".join(f"{data.class_names[c]} {n}"
                       for c, n in zip(*np.unique(y_test[pick], return_counts=True)))
    log(f"running {k} test windows ({counts}) on the emulated {run_target} "
        f"({'simavr' if arch == 'avr' else 'QEMU'})...")
    try:
        emulated = run_c(conversion, x_q[pick], target=run_target, progress=progress)
    except ToolchainMissingError as exc:
        log(f"skipped the emulated run: {exc}")
        return dataclasses.replace(result, c_skipped=str(exc))
    return dataclasses.replace(result, c_emulated=emulated,
                               c_bit_exact=bool(np.array_equal(emulated.scores,
                                                               host.scores[pick])))
