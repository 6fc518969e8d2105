"""Builders: ``build_x(cfg.x)`` turns one config subtree into one object.

Each group's YAML names its ``_target_`` and arguments, so adding an option
means adding a YAML file, not editing this module.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf

from kmexp.config.validation import check_segmentation, nb_weighting_of, raise_problems
from kmexp.errors import KmexpError
from kmexp.languages import splits_words_without_spaces

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # the builders that make Keras objects import Keras through instantiate, when called
    import keras
    import numpy as np


def instantiate(cfg: DictConfig, **kwargs):
    """Hydra's ``instantiate``, with kmexp's own errors passed on as they are.

    Hydra wraps whatever a constructor raises in an InstantiationException ("Error
    in call to target ..."); a KmexpError already says, in one line, what to fix.
    """
    try:
        return hydra_instantiate(cfg, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, KmexpError):
            raise err.__cause__ from None
        raise


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


def build_optimizer(cfg: DictConfig, trainer: DictConfig, n_train: int):
    """A Keras optimizer, or kmexp's full-batch L-BFGS, for ``n_train`` training texts.

    ``trainer.gradient_accumulation_steps`` (when set) goes to the Keras optimizer.
    An optimizer whose schedule spans the whole run is a partial in conf/
    (``_partial_: true``, e.g. warmup_adamw): it gets the run's length here.
    """
    accumulation = trainer.gradient_accumulation_steps
    optimizer = instantiate(cfg, **({} if accumulation is None else {"gradient_accumulation_steps": accumulation}))
    if isinstance(optimizer, functools.partial):
        optimizer = optimizer(total_steps=trainer.epochs * math.ceil(n_train / trainer.batch_size))
    return optimizer


def build_embedding_cache(cfg: DictConfig, preprocessor):
    """The on-disk cache of a frozen encoder's vectors (``cfg`` is the ``encoder`` subtree).

    Its key holds everything that decides a vector: the preset (a folder's files
    too), the tokenizer and embedder settings, and the length actually used.
    """
    from kmexp.encoders.embedding_cache import EmbeddingCache, preset_identity

    identity = {
        **preset_identity(cfg.preset),
        "preprocessor": OmegaConf.to_container(cfg.preprocessor, resolve=True),
        "embedder": OmegaConf.to_container(cfg.embedder, resolve=True),
        "sequence_length": preprocessor.sequence_length,  # after capping at the backbone's maximum
    }
    return EmbeddingCache(cfg.cache_dir, identity)


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
    kernel_scale: np.ndarray | None = None,
) -> keras.Model:
    """The trainable network (``kmexp.network.build``) that ``cfg`` (the ``model`` subtree) describes.

    ``kernel_scale``: ``build_kernel_scale``'s Naive Bayes weights, or None.
    """
    from kmexp import network

    return network.build(
        features, embedder, n_labels, hidden_units=list(cfg.hidden_units), dropout=cfg.dropout, l2=cfg.l2,
        activation=lambda: build_activation(activation_cfg), kernel_scale=kernel_scale,
    )


def build_kernel_scale(cfg: DictConfig, encoder: DictConfig, train_features, train_targets: np.ndarray,
                       weights: np.ndarray | None):
    """The first Dense kernel's Naive Bayes multiplier (``cfg`` is the ``model`` subtree), learned from the
    training split's features and one-hot targets only; None when no weighting applies (``nb_weighting_of``)."""
    weighting = nb_weighting_of(cfg, encoder)
    if weighting is None:
        return None
    from kmexp import naive_bayes

    ratios = naive_bayes.log_count_ratios(train_features, train_targets, cfg.nb_alpha, weights)
    return naive_bayes.kernel_scale(weighting, ratios)
