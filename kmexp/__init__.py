"""kmexp: config-driven experiments for multilingual text classification with Keras.

``import kmexp`` is light: it loads neither TensorFlow nor Keras, so the command
line answers (help, config errors) at once. TensorFlow loads when a job starts,
or when a saved model is loaded:

    model = kmexp.load_model("outputs/runs/<date>/<time>/model.keras")

``keras.models.load_model`` works too, after ``import kmexp.layers`` (which
registers kmexp's layers with Keras).
"""

from __future__ import annotations

import os
from pathlib import Path

# TensorFlow's C++ start-up chatter (CUDA probes, CPU features) hides kmexp's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"


def load_model(path: str | Path):
    """A saved ``model.keras`` (raw strings in, label probabilities out), loaded with safe mode on.

    Imports TensorFlow, and registers kmexp's layers so that safe mode accepts them.
    """
    import keras

    import kmexp.layers  # noqa: F401  (registers the layers the saved model is built from)

    from kmexp import compat

    with compat.weights_read_in_place():  # the saved weights replace the initial ones, without copies
        return keras.models.load_model(path, safe_mode=True)
