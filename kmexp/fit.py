"""Training loops and the callbacks that watch them.

Keras optimizers train with ``model.fit`` over mini-batches; kmexp's L-BFGS
trains on the full batch. Both drive the same Keras callbacks, so dev scoring,
early stopping, ``history.csv``, the backup that lets an interrupted run resume,
and the experiment logger work the same way.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from omegaconf import DictConfig

from kmexp.errors import ConfigError, KmexpError
from kmexp.metrics import confusion_matrix
from kmexp.optim import LBFGS
from kmexp.records import write_json

log = logging.getLogger(__name__)


class NonFiniteLoss(KmexpError):
    """The training loss became NaN or infinite: a setting to fix (usually the learning rate), not a bug."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop the way Ctrl-C does, so the run is recorded as interrupted."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM (``kill``, a cluster's preemption) into ``Terminated`` while the block runs.

    Python's default for SIGTERM ends the process at once, skipping every ``finally``:
    metrics.json would still say "running". Raising an exception instead unwinds the
    run like Ctrl-C. Signal handlers can only be set from the main thread; elsewhere
    (a notebook's worker thread) the block runs unchanged. The previous handler is
    restored on the way out, so a second SIGTERM during the clean-up ends the process.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def forget_traced_gradients() -> Iterator[None]:
    """Drop the gradient functions that tracing registered while the block ran, once it ends.

    Keras' TensorFlow optimizer sums dense gradients with the strategy's ``all_reduce``,
    even with one replica, and that wraps them in ``tf.custom_gradient``. Each trace
    registers its gradient function in TensorFlow's global gradient registry, under a
    new ``CustomGradient-<n>`` name, and nothing ever removes it. The function holds
    the traced train step, and that holds the model's variables and optimizer slots,
    so every run in one process (a sweep's jobs, a notebook's loop) kept the last one's
    ~7 MB (benchmarks/results/sweep_memory.md). A registered gradient is only looked up
    while TensorFlow differentiates the graph that uses it, so the run's own entries
    are not needed once the run is over. Entries registered by anything else stay.
    """
    # TensorFlow offers no public way to unregister a gradient: its registry is a private dict.
    from tensorflow.python.framework import ops

    registry = ops._gradient_registry._registry
    before = set(registry)
    try:
        yield
    finally:
        for name in set(registry) - before:
            if name.startswith("CustomGradient-"):
                del registry[name]


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
        _write_text(self.path, text.getvalue())
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, lineterminator="\n")

    def _rows_before(self, first_epoch: int) -> list[list[str]]:
        if first_epoch == 0 or not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))[1:]
        return [row for row in rows if row and row[0].isdigit() and int(row[0]) < first_epoch]


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
    epoch through ``model._initial_epoch``, the attribute BackupAndRestore also sets
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
        self.model._initial_epoch = state["epoch"]
        log.info("resumed from %s: %d epoch(s) already done", self.folder, state["epoch"])

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_done = epoch + 1
        if time.monotonic() - self._last_backup < self.interval_s:
            return
        self._last_backup = time.monotonic()
        self.folder.mkdir(parents=True, exist_ok=True)
        weights = f"epoch-{epoch + 1:05d}.weights.h5"
        self.model.save_weights(self.folder / weights)
        stopping = self._early_stopping_state()
        write_json(self.folder / self.LATEST, {"epoch": epoch + 1, "weights": weights, "early_stopping": stopping})
        self._remove_all_but({self.LATEST, weights, stopping["best_weights"]})

    def on_train_end(self, logs=None):
        # Training finished: nothing left to resume (an interruption later, while scoring, retrains).
        self._remove_all_but(set())
        with contextlib.suppress(OSError):
            self.folder.rmdir()

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
    return getattr(model, "_initial_epoch", None) or 0


def _save_arrays(path: Path, arrays: list) -> None:
    # np.savez appends ".npz" unless the name has it; an open file keeps the name exact.
    with open(path, "wb") as f:
        np.savez(f, *arrays)


def _load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def _write_text(path: Path, text: str) -> None:
    """Replace a file whole: write a temporary file next to it, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def concat_rows(parts: list) -> tf.Tensor | tf.SparseTensor:
    """Stack batches of features (dense or sparse) into one."""
    if isinstance(parts[0], tf.SparseTensor):
        return tf.sparse.concat(axis=0, sp_inputs=parts)
    return tf.concat(parts, axis=0)


def fit(network: keras.Model, optimizer, loss, features, targets: np.ndarray, trainer: DictConfig, seed: int,
        callbacks: list, jit_compile: bool):
    """Train ``network`` on precomputed features and one-hot targets; return its ``keras.callbacks.History``.

    ``trainer`` is the ``trainer`` config subtree (epochs, batch size, steps per execution).
    """
    if isinstance(optimizer, LBFGS):
        return fit_full_batch(network, optimizer, loss, features, targets, trainer.epochs, callbacks)
    network.compile(
        optimizer=optimizer, loss=loss, jit_compile=jit_compile, steps_per_execution=trainer.steps_per_execution
    )
    train = minibatches(features, targets, trainer.batch_size, seed)
    callbacks = [*callbacks, SkipShuffles(train)]
    return network.fit(train, epochs=trainer.epochs, callbacks=callbacks, verbose=0, shuffle=False)


def minibatches(features, targets: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    """Shuffled batches of (features, one-hot targets), reshuffled every epoch."""
    return (
        tf.data.Dataset.from_tensor_slices((features, targets))
        .shuffle(len(targets), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def fit_full_batch(network: keras.Model, optimizer: LBFGS, loss, features, targets: np.ndarray, epochs: int,
                   callbacks: list):
    """Full-batch training with L-BFGS: each epoch is ``optimizer.iterations_per_epoch`` iterations.

    The loss is the deterministic full-batch loss (dropout off, inference mode),
    because L-BFGS's line search needs the same function at every evaluation.
    A run resumed from a backup starts at the restored epoch with the restored
    weights; L-BFGS's curvature pairs are not backed up, so its first steps after
    resuming are gradient steps again (the run converges, on a slightly different path).
    """
    targets = tf.constant(targets, dtype=tf.float32)

    def objective():
        return loss(targets, network(features, training=False)) + sum(network.losses, 0.0)

    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList([*callbacks, history], model=network)
    network.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(resumed_epoch(network), epochs):
        callback_list.on_epoch_begin(epoch)
        try:
            result = optimizer.minimize(objective, network.trainable_variables)
        except FloatingPointError as err:
            # L-BFGS's line search only accepts lower, finite losses: a non-finite one can only be
            # where the epoch starts. Same error as StopOnNonFiniteLoss raises for model.fit.
            raise NonFiniteLoss(f"training loss became non-finite at epoch {epoch + 1} (L-BFGS: {err})") from None
        callback_list.on_epoch_end(epoch, {"loss": result["loss"]})
        if network.stop_training or result["converged"]:
            break
    callback_list.on_train_end()
    return history
