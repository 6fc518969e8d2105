"""The training loops: Keras' ``fit`` over shuffled mini-batches, and full-batch L-BFGS.

Both drive the same Keras callbacks (``kmexp.training.callbacks``), so dev
scoring, early stopping, ``history.csv``, backups and the logger work the same way.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from omegaconf import DictConfig

from kmexp.optim import LBFGS
from kmexp.training.callbacks import CONVERGED, NonFiniteLoss, StopOnSignal
from kmexp.training.kept import KeptNetworks
from kmexp.training.resume import SkipShuffles, resumed_epoch
from kmexp.training.signals import stop_at_batch_ends


def concat_rows(parts: list) -> tf.Tensor | tf.SparseTensor:
    """Stack batches of features (dense or sparse) into one."""
    if isinstance(parts[0], tf.SparseTensor):
        return tf.sparse.concat(axis=0, sp_inputs=parts)
    return tf.concat(parts, axis=0)


def compiled(network: keras.Model, optimizer, loss, trainer: DictConfig, jit_compile: bool,
             kept: KeptNetworks | None) -> keras.Model:
    """The network to train: ``network`` compiled for Keras' fit, or a kept network with the same shapes in
    the same starting state (``kept``: the process's kept networks; None keeps none). L-BFGS needs no compiling."""
    if isinstance(optimizer, LBFGS):
        return network
    settings = {"jit_compile": jit_compile, "steps_per_execution": trainer.steps_per_execution}
    if kept is None:
        network.compile(optimizer=optimizer, loss=loss, **settings)
        return network
    return kept.compiled(network, optimizer, loss, **settings)


def fit(network: keras.Model, optimizer, loss, features, targets: np.ndarray, trainer: DictConfig, seed: int,
        callbacks: list, sample_weight: np.ndarray | None = None):
    """Train ``network`` on precomputed features and one-hot targets; return its ``keras.callbacks.History``.

    ``network`` comes from ``compiled``. ``trainer`` is the ``trainer`` config subtree (epochs,
    batch size). ``sample_weight`` (one per row; None: all 1) scales each row's loss, e.g. the
    rows that related-language pooling (``language.pool``) adds from other languages.
    """
    # Ctrl-C and SIGTERM stop training after a batch, never inside TensorFlow's own code.
    with stop_at_batch_ends() as pending:
        if isinstance(optimizer, LBFGS):
            return fit_full_batch(network, optimizer, loss, features, targets, trainer.epochs,
                                  [*callbacks, StopOnSignal(pending)], sample_weight)
        train = minibatches(features, targets, trainer.batch_size, seed, sample_weight)
        callbacks = [*callbacks, SkipShuffles(train), StopOnSignal(pending)]
        return network.fit(train, epochs=trainer.epochs, callbacks=callbacks, verbose=0, shuffle=False)


def minibatches(features, targets: np.ndarray, batch_size: int, seed: int,
                sample_weight: np.ndarray | None = None) -> tf.data.Dataset:
    """Shuffled batches of (features, one-hot targets[, sample weights]), reshuffled every epoch.

    Keras' ``fit`` reads a third element of each batch as the rows' sample weights.
    """
    rows = (features, targets) if sample_weight is None else (features, targets, sample_weight)
    return (
        tf.data.Dataset.from_tensor_slices(rows)
        .shuffle(len(targets), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def fit_full_batch(network: keras.Model, optimizer: LBFGS, loss, features, targets: np.ndarray, epochs: int,
                   callbacks: list, sample_weight: np.ndarray | None = None):
    """Full-batch training with L-BFGS: each epoch is ``optimizer.iterations_per_epoch`` iterations.

    The loss is the deterministic full-batch loss (dropout off, inference mode),
    because L-BFGS's line search needs the same function at every evaluation.
    A run resumed from a backup starts at the restored epoch with the restored
    weights; L-BFGS's curvature pairs are not backed up, so its first steps after
    resuming are gradient steps again (the run converges, on a slightly different path).
    """
    targets = tf.constant(targets, dtype=tf.float32)
    # Weighted as model.fit weighs a batch: each row's loss times its weight, averaged over the rows. Passed
    # only when there are weights: a plain loss function (y_true, y_pred), which Keras also accepts, takes none.
    weighted = {} if sample_weight is None else {"sample_weight": tf.constant(sample_weight, dtype=tf.float32)}

    def objective():
        return loss(targets, network(features, training=False), **weighted) + sum(network.losses, 0.0)

    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList([*callbacks, history], model=network)
    network.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    for epoch in range(resumed_epoch(network), epochs):
        callback_list.on_epoch_begin(epoch)
        try:
            result = optimizer.minimize(objective, network.trainable_variables)
        except FloatingPointError as err:
            # L-BFGS's line search only accepts lower, finite losses: a non-finite one can only be
            # where the epoch starts. Same error as StopOnNonFiniteLoss raises for model.fit.
            raise NonFiniteLoss(f"training loss became non-finite at epoch {epoch + 1} (L-BFGS: {err})") from None
        logs = {"loss": result["loss"]}
        callback_list.on_epoch_end(epoch, logs)
        if network.stop_training or result["converged"]:
            # The last epoch's logs, as model.fit passes them; CONVERGED tells StopReason why training ended.
            logs = {**logs, CONVERGED: bool(result["converged"])}
            break
    callback_list.on_train_end(logs)
    return history
