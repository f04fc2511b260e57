"""Converters: a trained Keras model → TFLite flatbuffer → C array → Arduino sketch.

:func:`convert_c` makes standalone integer C instead (no TFLite Micro: the Arduino Uno and
other small boards), with an Arduino sketch and a Cortex-M project around it.

:func:`convert` runs the pipeline (validate → lower → TFLite → audit against the target → C
array → sketch and PlatformIO project) and returns a :class:`ConversionResult`; nothing is
written until :meth:`ConversionResult.save`. Every stage is checked against the one before it:
the lowered model against the trained model, the float flatbuffer against the lowered model,
and with ``compression="prune"`` (pruned int8 weights stored for TFLite Micro's ``TFLM_DECODE``,
:mod:`~keras_rnnedge.converters.tflite.compression`) the compressed flatbuffer against the
uncompressed one, bit for bit in TFLite Micro.
Both converters measure what the deployed model loses against the float model
(:mod:`~keras_rnnedge.converters.quality`: ``validation_data``, ``checks``,
``max_accuracy_drop``, ``min_agreement``) and calibrate on a seeded sample drawn across the
whole ``representative_data``.

Example:
    >>> from keras_rnnedge.converters import convert
    >>> result = convert(model, target="nano33ble", quantization="int8", mode="step",
    ...                  representative_data=x_train,            # doctest: +SKIP
    ...                  validation_data=(x_val, y_val))
    >>> print(result.report())                                   # doctest: +SKIP
    >>> result.save("out/har_fastgrnn")                          # doctest: +SKIP
"""

from keras_rnnedge.converters.c.cexport import (
    C_PRECISIONS,
    CConversionResult,
    SavedC,
    convert_c,
)
from keras_rnnedge.converters.lowering import (
    LOWERINGS,
    MODES,
    ConversionError,
    LoweredModel,
    lower,
    supported_layers,
    without_masking,
)
from keras_rnnedge.converters.quality import (
    CalibrationWarning,
    DeploymentCheck,
    DeploymentQualityError,
    DeploymentQualityWarning,
    QualityReport,
    StageCheckError,
)
from keras_rnnedge.converters.tflite.compression import (
    COMPRESSIONS,
    CompressionReport,
    CompressionWarning,
)
from keras_rnnedge.converters.tflite.flatbuffer import (
    QUANTIZATIONS,
    TensorInfo,
    TFLiteModel,
    to_tflite,
)
from keras_rnnedge.converters.tflite.pipeline import (
    ConversionResult,
    OutputExistsError,
    convert,
    load_result,
)

__all__ = [
    "COMPRESSIONS",
    "C_PRECISIONS",
    "CConversionResult",
    "CalibrationWarning",
    "CompressionReport",
    "CompressionWarning",
    "DeploymentCheck",
    "DeploymentQualityError",
    "DeploymentQualityWarning",
    "QualityReport",
    "StageCheckError",
    "LOWERINGS",
    "MODES",
    "QUANTIZATIONS",
    "SavedC",
    "ConversionError",
    "ConversionResult",
    "LoweredModel",
    "OutputExistsError",
    "TFLiteModel",
    "TensorInfo",
    "convert",
    "convert_c",
    "load_result",
    "lower",
    "supported_layers",
    "to_tflite",
    "without_masking",
]
