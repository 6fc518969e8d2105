"""kmexp: config-driven experiments for multilingual text classification with Keras.

Importing kmexp registers its Keras layers, so that a saved ``model.keras``
loads with safe mode on: ``import kmexp; keras.models.load_model(path)``.
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probes, CPU features) hides kmexp's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from kmexp import encoders  # noqa: E402,F401  (registers the serializable layers)

__version__ = "0.1.0"
