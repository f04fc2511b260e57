"""Converters: Keras model -> lowered model -> TFLite flatbuffer -> C array -> sketch."""
