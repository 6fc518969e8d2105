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

# In the logs of on_train_end: true when an optimizer with its own stopping rule (L-BFGS) ended training.
CONVERGED = "converged"


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


class StopReason(keras.callbacks.Callback):
    """Why training stopped, in words (``reason``, once training ends), for the run's last lines and metrics.json.

    ``early stop at epoch 10: dev loss did not improve for 5 epochs; best epoch 5 restored``,
    ``all 40 epochs ran; ...``, ``L-BFGS converged at epoch 3; ...``, each after
    ``resumed after epoch 4; `` when a backup was restored. Reads early stopping's state
    and ``backup``'s epoch counts (kmexp.training.resume.TrainingBackup).
    """

    def __init__(self, early_stopping: keras.callbacks.EarlyStopping, backup, epochs: int):
        super().__init__()
        self.early_stopping = early_stopping
        self.backup = backup
        self.epochs = epochs
        self.reason: str | None = None

    def on_train_end(self, logs=None):
        es, done = self.early_stopping, self.backup.epochs_done
        if es.stopped_epoch > 0:
            # A run watches val_loss or val_<objective> (trainer.monitor): the dev split's.
            watched = f"dev {es.monitor.removeprefix('val_')}" if es.monitor.startswith("val_") else es.monitor
            epochs = f"{es.wait} epoch{'' if es.wait == 1 else 's'}"
            ended = f"early stop at epoch {es.stopped_epoch + 1}: {watched} did not improve for {epochs}"
        elif bool((logs or {}).get(CONVERGED, False)):  # Keras passes logs on as floats: 1.0
            ended = f"L-BFGS converged at epoch {done}"
        else:
            ended = f"all {self.epochs} epochs ran"
        best = es.best_epoch + 1
        kept = f"best epoch {best} restored" if best < done else "the last epoch was the best"
        resumed = "" if self.backup.resumed_from is None else f"resumed after epoch {self.backup.resumed_from}; "
        self.reason = f"{resumed}{ended}; {kept}"


class StopOnSignal(keras.callbacks.Callback):
    """Raise a stop signal that arrived during training (``kmexp.training.signals.stop_at_batch_ends``).

    Checked after each batch and each epoch: last in the list, so a finished epoch is written and backed
    up first.
    """

    def __init__(self, pending):
        super().__init__()
        self.pending = pending

    def on_train_batch_end(self, batch, logs=None):
        self.pending.raise_if_pending()

    def on_epoch_end(self, epoch, logs=None):
        self.pending.raise_if_pending()


class HistoryCSV(keras.callbacks.Callback):
    """``history.csv``: one row per epoch (``epoch``, then the sorted log keys), like Keras's CSVLogger.

    Epochs count from 1, as in the console, W&B and ``best_epoch`` (CSVLogger counts
    from 0). Unlike CSVLogger it resumes: when training restarts after k epochs
    (restored from a backup), the rows of epochs 1..k are kept and any later row
    (written after the last backup, before the interruption) is dropped, so each
    epoch appears once. Every row is written and flushed whole.
    """

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        self._file = None
        self._writer = None
        self._keys = None

    def on_epoch_end(self, epoch, logs=None):
        if self._file is None:
            self._open(epochs_done=epoch, keys=sorted(logs))
        with writing(self.path):
            self._writer.writerow([epoch + 1, *(logs.get(key, "NA") for key in self._keys)])
            self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self, epochs_done: int, keys: list[str]) -> None:
        """Start the file over with the rows of the first ``epochs_done`` epochs, then append."""
        self._keys = keys
        kept = self._rows_up_to(epochs_done)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["epoch", *keys])
        writer.writerows(kept)
        write_text(self.path, text.getvalue())
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, lineterminator="\n")

    def _rows_up_to(self, epochs_done: int) -> list[list[str]]:
        if epochs_done == 0 or not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))[1:]
        return [row for row in rows if row and row[0].isdigit() and int(row[0]) <= epochs_done]
