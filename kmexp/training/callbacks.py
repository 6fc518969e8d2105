"""Keras callbacks that watch training: dev scores, non-finite losses, the epoch logger and ``history.csv``.

Both loops (``kmexp.training.loops``) drive them, so Keras optimizers and the
full-batch L-BFGS behave the same way.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kmexp.errors import KmexpError
from kmexp.metrics import confusion_matrix
from kmexp.runs import write_text, writing

log = logging.getLogger("kmexp.training")


class NonFiniteLoss(KmexpError):
    """The training loss became NaN or infinite: a setting to fix (usually the learning rate), not a bug."""


class DevScores(keras.callbacks.Callback):
    """After each epoch, scores the dev split and adds ``val_loss`` and ``val_<metric>`` to the logs.

    Must come before EarlyStopping in the callback list, which monitors these values.
    """

    def __init__(self, features: tf.Tensor, targets: np.ndarray, loss, metrics: dict):
        super().__init__()
        self.features = features
        self.targets = targets
        self.loss = loss
        self.metrics = metrics

    def on_epoch_end(self, epoch, logs=None):
        # One eager call on the cached features: model.predict would build a new input pipeline
        # (and trace a function) every epoch.
        logits = self.model(self.features, training=False).numpy()
        cm = confusion_matrix(self.targets.argmax(1), logits.argmax(1), self.targets.shape[1])
        logs["val_loss"] = float(self.loss(self.targets, logits))
        for name, metric in self.metrics.items():
            logs[f"val_{name}"] = float(metric(cm))


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops at once when the loss is NaN or infinite, naming the epoch."""

    def on_epoch_end(self, epoch, logs=None):
        loss = float(logs.get("loss", 0.0))
        if not math.isfinite(loss):
            raise NonFiniteLoss(f"training loss became {loss} at epoch {epoch + 1}; lower optimizer.learning_rate")


class EpochLogger(keras.callbacks.Callback):
    """Forwards each epoch's logs to the experiment logger and prints a one-line progress report."""

    def __init__(self, logger, epochs: int):
        super().__init__()
        self.logger = logger
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        values = {key: float(value) for key, value in logs.items()}
        self.logger.log_epoch(epoch + 1, values)
        shown = "  ".join(f"{key} {value:.4f}" for key, value in sorted(values.items()))
        log.info("epoch %d/%d  %s", epoch + 1, self.epochs, shown)


class HistoryCSV(keras.callbacks.Callback):
    """``history.csv``: one row per epoch (``epoch`` from 0, then the sorted log keys), as Keras's CSVLogger writes it.

    Unlike CSVLogger it resumes: when training restarts at epoch k (restored from a
    backup), the rows of epochs 0..k-1 are kept and any later row (written after the
    last backup, before the interruption) is dropped, so each epoch appears once.
    Every row is written and flushed whole.
    """

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        self._file = None
        self._writer = None
        self._keys = None

    def on_epoch_end(self, epoch, logs=None):
        if self._file is None:
            self._open(first_epoch=epoch, keys=sorted(logs))
        with writing(self.path):
            self._writer.writerow([epoch, *(logs.get(key, "NA") for key in self._keys)])
            self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self, first_epoch: int, keys: list[str]) -> None:
        """Start the file over with the rows of the epochs before ``first_epoch``, then append."""
        self._keys = keys
        kept = self._rows_before(first_epoch)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["epoch", *keys])
        writer.writerows(kept)
        write_text(self.path, text.getvalue())
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, lineterminator="\n")

    def _rows_before(self, first_epoch: int) -> list[list[str]]:
        if first_epoch == 0 or not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))[1:]
        return [row for row in rows if row and row[0].isdigit() and int(row[0]) < first_epoch]
