"""Builders: ``build_x(cfg.x)`` turns one config subtree into one object.

Each group's YAML names its ``_target_`` and arguments, so adding an option
means adding a YAML file, not editing this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf



def build_data(cfg: DictConfig):
    """The dataset reader (SIB-200 or the user's files); call ``.load()`` for the splits."""
    return instantiate(cfg)


def build_preprocessor(cfg: DictConfig, train_texts: Sequence[str]) -> keras.layers.Layer:
    """The string -> numbers layer of the encoder, adapted on the training texts only."""
    return instantiate(cfg).adapt(train_texts)


def build_embedder(cfg: DictConfig | None, preprocessor: keras.layers.Layer) -> keras.layers.Layer | None:
    """The trainable part of the encoder, sized to the preprocessor's ids; None for bag features."""
    if cfg is None:
        return None
    return instantiate(cfg, input_dim=preprocessor.id_count)


def build_activation(cfg: DictConfig) -> keras.layers.Layer:
    """A fresh hidden-layer activation (one per hidden layer)."""
    return instantiate(cfg)


def build_loss(cfg: DictConfig) -> keras.losses.Loss:
    return instantiate(cfg)


def build_optimizer(cfg: DictConfig):
    """A Keras optimizer, or kmexp's full-batch L-BFGS."""
    return instantiate(cfg)


def build_metrics(cfg: DictConfig) -> dict:
    """Selected metrics by name, in selection order: the first is the objective."""
    return {name: instantiate(metric) for name, metric in cfg.items()}


def build_logger(cfg: DictConfig, run_dir: Path):
    return instantiate(cfg, run_dir=str(run_dir))


def build_network(
    cfg: DictConfig,
    activation_cfg: DictConfig,
    embedder: keras.layers.Layer | None,
    features: keras.KerasTensor,
    n_labels: int,
) -> keras.Model:
    """The trainable network: features (or ids) -> [embedder] -> hidden layers -> one score per label.

    ``cfg`` is the ``model`` subtree; ``features`` describes the preprocessor's
    output (shape, dtype, sparse). The network returns logits, which every loss
    takes; the exported model turns them into probabilities. The output layer
    computes in float32 so that scores stay exact under mixed precision.
    """
    regularizer = keras.regularizers.L2(cfg.l2) if cfg.l2 > 0 else None
    layers: list[keras.layers.Layer] = [
        keras.Input(shape=features.shape[1:], dtype=features.dtype, sparse=features.sparse)
    ]
    if embedder is not None:
        layers.append(embedder)
    # Dropout goes before every Dense layer, except on sparse bag features: Keras' Dropout takes
    # dense tensors only, so there the first layer sees the whole input.
    dense_input = embedder is not None or not features.sparse
    for i, units in enumerate(cfg.hidden_units):
        if cfg.dropout > 0 and (i > 0 or dense_input):
            layers.append(keras.layers.Dropout(cfg.dropout))
        layers.append(keras.layers.Dense(units, kernel_regularizer=regularizer))
        layers.append(build_activation(activation_cfg))
    if cfg.dropout > 0 and (len(cfg.hidden_units) > 0 or dense_input):
        layers.append(keras.layers.Dropout(cfg.dropout))
    layers.append(keras.layers.Dense(n_labels, kernel_regularizer=regularizer, dtype="float32", name="logits"))
    return keras.Sequential(layers, name="network")


def export_model(preprocessor: keras.layers.Layer, network: keras.Model) -> keras.Model:
    """The end-to-end model: raw strings in, label probabilities out."""
    texts = keras.Input(shape=(), dtype="string", name="text")
    probabilities = keras.layers.Softmax(dtype="float32", name="probabilities")(network(preprocessor(texts)))
    return keras.Model(texts, probabilities, name="kmexp_text_classifier")


def plain(cfg: DictConfig) -> dict:
    """A resolved, plain-Python copy of a config, for logs and metrics files."""
    return OmegaConf.to_container(cfg, resolve=True)
