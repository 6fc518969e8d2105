"""Backups of the training state, so that a rerun into the same run folder resumes where the run stopped."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kmexp import compat
from kmexp.errors import ConfigError
from kmexp.runs import atomic_write, read_json, write_json, writing

log = logging.getLogger("kmexp.training")


class TrainingBackup(keras.callbacks.Callback):
    """Backs up the training state at epoch ends, restores it when training starts again, deletes it at the end.

    A backup is written at the end of the first epoch that ends ``interval_s`` seconds
    or more after the last one (or after training started); ``interval_s=0`` backs up
    every epoch. A run killed before its first backup starts over. Each backup of the
    default job writes ~13 MB in ~15 ms, so short runs skip them and long ones lose at
    most about ``interval_s`` seconds of training.

    The state is the model's weights with the optimizer's (one Keras ``.weights.h5``
    file), early stopping's counters and best weights, and the number of epochs done.
    Each epoch's weights go to a new file, and ``latest.json`` (written whole, by
    rename) names the files of the last complete backup: a kill at any moment leaves
    a loadable backup, then older files are removed. Keras's BackupAndRestore keeps
    neither early stopping's state nor this all-or-nothing update, hence this class.

    Must come after EarlyStopping (and HistoryCSV) in the callback list: it restores
    early stopping's state after EarlyStopping resets it at the start of training,
    and saves it once this epoch's value is counted. Training resumes at the restored
    epoch through ``kmexp.compat.set_initial_epoch``, the attribute BackupAndRestore also sets
    (``model.fit`` starts there; ``fit_full_batch`` reads it too).
    """

    LATEST = "latest.json"

    def __init__(self, folder: Path, early_stopping: keras.callbacks.EarlyStopping, interval_s: float):
        super().__init__()
        self.folder = Path(folder)
        self.early_stopping = early_stopping
        self.interval_s = interval_s
        self._last_backup = None  # time.monotonic() of the last backup, or of the start of training
        self.resumed_from = None  # epochs restored from the backup; None when training started fresh
        self.epochs_done = 0

    def on_train_begin(self, logs=None):
        self._last_backup = time.monotonic()
        latest = self.folder / self.LATEST
        if not latest.is_file():
            return
        state = json.loads(latest.read_text(encoding="utf-8"))
        self._restore(state)
        self.resumed_from = self.epochs_done = state["epoch"]
        compat.set_initial_epoch(self.model, state["epoch"])
        log.info("resumed from %s: %d epoch(s) already done", self.folder, state["epoch"])

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_done = epoch + 1
        if time.monotonic() - self._last_backup < self.interval_s:
            return
        self._last_backup = time.monotonic()
        self.folder.mkdir(parents=True, exist_ok=True)
        weights = f"epoch-{epoch + 1:05d}.weights.h5"
        try:
            _save_weights(self.model, self.folder / weights)
            stopping = self._early_stopping_state()
            write_json(self.folder / self.LATEST, {"epoch": epoch + 1, "weights": weights, "early_stopping": stopping})
        except BaseException:
            # A backup left unfinished (a full disk, an interrupt): its files go, which frees their space too;
            # the last complete backup stays.
            self._remove_all_but(self._complete_backup())
            raise
        self._remove_all_but({self.LATEST, weights, stopping["best_weights"]})

    def on_train_end(self, logs=None):
        # Training finished: nothing left to resume (an interruption later, while scoring, retrains).
        self._remove_all_but(set())
        with contextlib.suppress(OSError):
            self.folder.rmdir()

    def _complete_backup(self) -> set:
        """The files of the last complete backup (those ``latest.json`` names); empty when there is none."""
        latest = read_json(self.folder / self.LATEST)
        if latest is None:
            return set()
        return {self.LATEST, latest["weights"], latest["early_stopping"]["best_weights"]}

    def _early_stopping_state(self) -> dict:
        """Early stopping's counters; its best weights go to a file named by the best epoch, written when it changes."""
        es = self.early_stopping
        best_weights = None
        if es.best_weights is not None:
            best_weights = f"best-{es.best_epoch + 1:05d}.npz"
            if not (self.folder / best_weights).is_file():
                _save_arrays(self.folder / best_weights, es.best_weights)
        best = None if es.best is None else float(es.best)
        return {"wait": es.wait, "best": best, "best_epoch": es.best_epoch, "stopped_epoch": es.stopped_epoch,
                "best_weights": best_weights}

    def _restore(self, state: dict) -> None:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)  # its variables must exist before they are loaded
        try:
            with warnings.catch_warnings():
                # Keras only warns when the optimizer's variables differ (another optimizer): refuse that too.
                warnings.filterwarnings("error", message="Skipping variable loading")
                self.model.load_weights(self.folder / state["weights"])
        except (ValueError, KeyError, OSError, UserWarning) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(
                f"{self.folder}: the backup of an interrupted run does not fit this model ({reason}); "
                f"rerun with the same overrides, or delete {self.folder} to start over"
            ) from None
        stopping = state["early_stopping"]
        es = self.early_stopping
        es.wait, es.best, es.best_epoch, es.stopped_epoch = (
            stopping["wait"], stopping["best"], stopping["best_epoch"], stopping["stopped_epoch"]
        )
        if stopping["best_weights"] is not None:
            es.best_weights = _load_arrays(self.folder / stopping["best_weights"])

    def _remove_all_but(self, keep: set) -> None:
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            if path.name not in keep and path.is_file():
                path.unlink(missing_ok=True)


class SkipShuffles(keras.callbacks.Callback):
    """On a resumed run, advance the training set's shuffling past the epochs already done.

    ``Dataset.shuffle(seed=..., reshuffle_each_iteration=True)`` draws a new order for
    each iterator made from it, and Keras 3's ``model.fit`` makes two per epoch over a
    dataset of known length (one to train on, one made ready at the epoch's end and
    dropped). Making and dropping as many here gives the remaining epochs the orders
    they would have had without the interruption, so a resumed run ends with the same
    numbers (tests/test_faults.py checks this). Must come after TrainingBackup, which
    sets the epoch to resume from.
    """

    ITERATORS_PER_EPOCH = 2

    def __init__(self, dataset: tf.data.Dataset):
        super().__init__()
        self.dataset = dataset

    def on_train_begin(self, logs=None):
        for _ in range(resumed_epoch(self.model) * self.ITERATORS_PER_EPOCH):
            iter(self.dataset)


def resumed_epoch(model: keras.Model) -> int:
    """The epoch training starts from: 0, or the epochs restored by TrainingBackup."""
    return compat.initial_epoch(model)


def _save_weights(model: keras.Model, path: Path) -> None:
    """``model.save_weights``; a file left half-written (a full disk, an interrupt) is removed.

    Not ``atomic_write``: Keras wants the name to end in ``.weights.h5``. Each backup writes a new file,
    and ``latest.json`` names it only once it is whole, so a half-written one was never used: only removed.
    """
    try:
        with writing(path):
            model.save_weights(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _save_arrays(path: Path, arrays: list) -> None:
    # np.savez appends ".npz" unless the name has it; an open file keeps the name exact.
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, *arrays)

    atomic_write(path, write)


def _load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]
