"""Serving-side code: ``modelserver`` is odstack's development stand-in for TensorFlow Serving."""
