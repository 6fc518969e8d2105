"""One experiment, top to bottom: data -> encoder -> network -> fit -> evaluate -> save.

``run(cfg, run_dir, logger)`` is called by ``kmexp.train.train`` once the config
has passed its checks; it imports TensorFlow, which is why it lives apart.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

import keras
import numpy as np
from omegaconf import DictConfig

from kmexp.builders import (
    build_data,
    build_embedder,
    build_embedding_cache,
    build_kernel_scale,
    build_loss,
    build_metrics,
    build_network,
    build_optimizer,
    build_preprocessor,
)
from kmexp.compat import forget_traced_gradients
from kmexp.config.validation import validate_distributed, validate_targets
from kmexp.data import Split
from kmexp.devices import build_device, device_record
from kmexp.encoders.vocab import batches
from kmexp.features import PREPROCESS_BATCH, Features, is_frozen
from kmexp.metrics import classification_report
from kmexp.network import export_model
from kmexp.runs import BACKUP_DIR, HISTORY_FILE, MODEL_FILE, Objective, save_model
from kmexp.training.callbacks import DevScores, EpochLogger, HistoryCSV, StopOnNonFiniteLoss, StopReason
from kmexp.training.kept import KeptNetworks, with_values_of
from kmexp.training.loops import compiled, fit
from kmexp.training.resume import TrainingBackup

log = logging.getLogger(__name__)


def run(cfg: DictConfig, run_dir: Path, logger, kept: KeptNetworks | None = None) -> dict:
    """Train, evaluate and save the model that ``cfg`` describes; return the ``RunRecord`` fields it fills.

    ``kept``: compiled networks kept from earlier runs in this process, whose traced train step
    a run with the same shapes reuses (``kmexp.training.kept``); None: a new network, compiled anew.
    """
    # Frees the gradient functions that tracing registered, once the run ends: a kept network's traced
    # step no longer needs them, and a network that is not kept is freed with them.
    with forget_traced_gradients():
        return _experiment(cfg, run_dir, logger, kept)


def _experiment(cfg: DictConfig, run_dir: Path, logger, kept: KeptNetworks | None) -> dict:
    # Seed Python, NumPy and the backend before anything random happens.
    keras.utils.set_random_seed(cfg.seed)
    validate_targets(cfg)  # the classes the config names: importing them needs Keras
    strategy = build_device(cfg.device)
    validate_distributed(cfg)  # after build_device: missing hardware is reported before these settings

    started = time.perf_counter()
    splits = build_data(cfg.data).load()
    labels = splits.labels
    # The vocabulary (and idf) come from the training split only: dev and test stay unseen. A pooled
    # train split (language.pool) adapts on its other languages' texts too: they are training data.
    preprocessor = build_preprocessor(cfg.encoder.preprocessor, cfg.language, splits.train.texts)
    with strategy.scope():
        embedder = build_embedder(cfg.encoder.embedder, preprocessor)
    # Each split's features are computed once. A frozen embedder (a pretrained backbone, encoder.mode=frozen)
    # runs once per split too, in front of the network, its vectors cached on disk across runs.
    frozen = embedder if is_frozen(embedder) else None
    cache = build_embedding_cache(cfg.encoder, preprocessor) if frozen is not None else None
    features = Features(preprocessor, frozen, cache)
    train_features, train_targets = features(splits.train.texts), _targets(splits.train, labels)
    dev_features, dev_targets = features(splits.dev.texts), _targets(splits.dev, labels)

    # Naive Bayes weights (model.nb_weighting) count the training split's features by class, like the vocabulary.
    kernel_scale = build_kernel_scale(cfg.model, cfg.encoder, train_features, train_targets, _sample_weights(splits.train))
    with strategy.scope():
        trained_embedder = None if frozen is not None else embedder
        built = build_network(cfg.model, cfg.activation, trained_embedder, features.spec, len(labels), kernel_scale)
        optimizer = build_optimizer(cfg.optimizer, cfg.trainer, len(splits.train.texts))
        loss = build_loss(cfg.loss)
    network = compiled(built, optimizer, loss, cfg.trainer, cfg.device.jit_compile, kept)
    metrics = build_metrics(cfg.metric)
    objective = next(iter(metrics))

    # Model selection looks at dev only; test is scored once, at the end.
    early_stopping = _early_stopping(cfg.trainer, objective)
    # A rerun into this run folder resumes from the backup of the last finished epoch.
    backup = TrainingBackup(run_dir / BACKUP_DIR, early_stopping, cfg.trainer.backup_interval_s)
    stop = StopReason(early_stopping, backup, cfg.trainer.epochs)
    callbacks = [
        DevScores(dev_features, dev_targets, loss, metrics),
        StopOnNonFiniteLoss(),  # before the backup: a NaN epoch is never backed up
        early_stopping,
        HistoryCSV(run_dir / HISTORY_FILE),
        EpochLogger(logger, cfg.trainer.epochs),
        backup,  # it restores early stopping's state after EarlyStopping resets it
        stop,
    ]
    train_started = time.perf_counter()
    prepare_seconds = train_started - started
    fit(network, optimizer, loss, train_features, train_targets, cfg.trainer, cfg.seed, callbacks, _sample_weights(splits.train))
    train_seconds = time.perf_counter() - train_started

    # Export and evaluate the end-to-end model, so the scores are those of the saved file. A frozen
    # encoder's splits are scored from their cached vectors: the saved model's numbers, not embedded again.
    # The job's own network is exported, with the trained values: a kept network called inside an exported
    # model would keep a reference to each job's model (its vocabulary too) for as long as it is kept.
    model = export_model(preprocessor, with_values_of(network, built), frozen)
    save_model(model, run_dir / MODEL_FILE)
    evaluate_started = time.perf_counter()
    predict = partial(_probabilities, model) if frozen is None else partial(_head_probabilities, network, features)
    dev, test = _evaluate(predict, [splits.dev, splits.test], labels, metrics)
    # One entry per language tested on its own: language=multi's languages, then eval_languages.
    per_language = _evaluate_languages(predict, splits.eval_tests, labels, metrics)
    # Where the job's time went: data and features, the fit, export and save, scoring (train() adds the total).
    seconds = {
        "prepare": prepare_seconds,
        "train": train_seconds,
        "save": evaluate_started - train_started - train_seconds,
        "evaluate": time.perf_counter() - evaluate_started,
    }
    return {
        "objective": Objective(name=objective, split="dev", value=dev[objective]),
        "labels": labels,
        "dev": dev,
        "test": test,
        "eval": per_language,
        # Counted from epoch 1 even when resumed: history holds only the epochs run since.
        "epochs_run": backup.epochs_done,
        "resumed_from_epoch": backup.resumed_from,
        "best_epoch": early_stopping.best_epoch + 1,
        "stop_reason": stop.reason,
        "data": {**splits.info, "sizes": {name: len(getattr(splits, name).texts) for name in ("train", "dev", "test")}},
        "seconds": {name: round(value, 3) for name, value in seconds.items()},
        # After training, so that it holds the peak GPU memory of the run (benchmarks/gpu_check.sh prints it).
        "device": device_record(strategy),
        "embedding_cache": None if cache is None else cache.record(),
    }


def _early_stopping(trainer: DictConfig, objective: str) -> keras.callbacks.EarlyStopping:
    """Stop when the dev loss (or the dev objective) stops improving, and restore the best epoch."""
    monitor = f"val_{objective}" if trainer.monitor == "objective" else "val_loss"
    return keras.callbacks.EarlyStopping(
        monitor=monitor, mode="min" if monitor == "val_loss" else "max", patience=trainer.patience,
        min_delta=trainer.min_delta, restore_best_weights=True,
    )


def _targets(split: Split, labels: list[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    return keras.utils.to_categorical([index[label] for label in split.labels], len(labels))


def _sample_weights(split: Split) -> np.ndarray | None:
    """Each training row's weight in the loss (a pooled train split's other languages weigh less); None: all 1."""
    return None if split.weights is None else np.asarray(split.weights, dtype=np.float32)


def _probabilities(model: keras.Model, texts: list[str]) -> np.ndarray:
    """The end-to-end model's label probabilities for raw strings, called eagerly in chunks."""
    return np.concatenate([model(chunk, training=False).numpy() for chunk in batches(texts, PREPROCESS_BATCH)])


def _head_probabilities(network: keras.Model, features: Features, texts: list[str]) -> np.ndarray:
    """The network's label probabilities from the (cached) features of these texts."""
    return keras.ops.softmax(network(features(texts), training=False)).numpy()


def _evaluate(predict, splits: list[Split], labels: list[str], metrics: dict) -> list[dict]:
    """Score each split from ``predict(texts)``, its label probabilities."""
    index = {label: i for i, label in enumerate(labels)}
    reports = []
    for split in splits:
        y_true = np.array([index[label] for label in split.labels])
        reports.append(classification_report(y_true, predict(split.texts).argmax(1), labels, metrics))
    return reports


def _evaluate_languages(predict, tests: dict[str, Split], labels: list[str], metrics: dict) -> dict:
    """Each language's test scores, by SIB-200 code: the scalar metrics and the support.

    Per-class scores and confusion matrices are left out: over 205 languages they
    would swamp metrics.json, and the pooled `test` keeps them.
    """
    reports = _evaluate(predict, list(tests.values()), labels, metrics)
    return {
        code: {**{name: value for name, value in report.items() if isinstance(value, float)}, "support": len(split.texts)}
        for (code, split), report in zip(tests.items(), reports, strict=True)
    }
