"""odstack: TensorFlow object detection from your own images to production, in containers or locally."""

__version__ = "0.1.0"
