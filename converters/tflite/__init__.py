"""The TFLite path: the lowered Keras model (:mod:`keras_rnnedge.converters.lowering`) →
flatbuffer (:mod:`.flatbuffer`: float32, int8, int16x8, dynamic range, float16) → optionally
pruned weights stored compressed for TFLite Micro's DECODE operator (:mod:`.compression`) → C
array and Arduino sketch for TFLite Micro (:mod:`.sketch`); :func:`.pipeline.convert` runs it
with a check after each stage."""
