"""Training loops and the callbacks that watch them.

Keras optimizers train with ``model.fit`` over mini-batches; kmexp's L-BFGS
trains on the full batch. Both drive the same Keras callbacks, so dev scoring,
early stopping, ``history.csv`` and the experiment logger work the same way.
"""

from __future__ import annotations

import logging
import math

import keras
import numpy as np
import tensorflow as tf
from omegaconf import DictConfig

from kmexp.metrics import confusion_matrix
from kmexp.optim import LBFGS

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


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
    """
    targets = tf.constant(targets, dtype=tf.float32)

    def objective():
        return loss(targets, network(features, training=False)) + sum(network.losses, 0.0)

    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList([*callbacks, history], model=network)
    network.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(epochs):
        callback_list.on_epoch_begin(epoch)
        result = optimizer.minimize(objective, network.trainable_variables)
        callback_list.on_epoch_end(epoch, {"loss": result["loss"]})
        if network.stop_training or result["converged"]:
            break
    callback_list.on_train_end()
    return history
