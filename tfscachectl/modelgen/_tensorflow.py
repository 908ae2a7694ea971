"""TensorFlow, imported on first use: importing it costs seconds and hundreds of MB."""

from __future__ import annotations

from typing import Any


def import_tensorflow() -> Any:
    """The ``tensorflow`` module. Call it inside the function that needs TensorFlow, never at import."""
    import tensorflow as tf

    return tf
