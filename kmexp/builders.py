"""Builders: ``build_x(cfg.x)`` turns one config subtree into one object.

Each group's YAML names its ``_target_`` and arguments, so adding an option
means adding a YAML file, not editing this module.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from kmexp.config.validation import check_segmentation, raise_problems
from kmexp.languages import splits_words_without_spaces

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # the builders that make Keras objects import Keras through instantiate, when called
    import keras


def build_data(cfg: DictConfig):
    """The dataset reader (SIB-200 or the user's files); call ``.load()`` for the splits."""
    return instantiate(cfg)


def build_preprocessor(cfg: DictConfig, language: DictConfig, train_texts: Sequence[str]) -> keras.layers.Layer:
    """The string -> numbers layer of the encoder (``cfg``), adapted on the training texts only.

    The one place ``language.word_fallback`` applies: where ``cfg`` splits words on spaces
    (analyzer=word) and the language writes none, ``char`` counts character n-grams
    (``language.fallback_ngram_range``) instead; ``error`` raises the ConfigError that
    validation raises before training.
    """
    raise_problems(check_segmentation(cfg, language))
    if splits_words_without_spaces(cfg, language) and language.word_fallback == "char":
        log.info(
            "%s writes no spaces: encoder.preprocessor.analyzer=word counts character %s-grams instead "
            "(language.word_fallback=char)", language.code, "-".join(str(n) for n in language.fallback_ngram_range),
        )
        # Resolved first: the node's interpolations (`${language.standardize}`) need the root config.
        resolved = OmegaConf.to_container(cfg, resolve=True)
        cfg = OmegaConf.create({**resolved, "analyzer": "char", "ngram_range": list(language.fallback_ngram_range)})
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
    """The trainable network (``kmexp.network.build``) that ``cfg`` (the ``model`` subtree) describes."""
    from kmexp import network

    return network.build(
        features, embedder, n_labels, hidden_units=list(cfg.hidden_units), dropout=cfg.dropout, l2=cfg.l2,
        activation=lambda: build_activation(activation_cfg),
    )
