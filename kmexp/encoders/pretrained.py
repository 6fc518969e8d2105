"""Pretrained multilingual encoders from KerasHub: a preset's own tokenizer, and its backbone pooled per text.

An encoder=pretrained run splits a KerasHub preset (``xlm_roberta_base_multi``,
a ``kaggle://`` or ``hf://`` handle, or a folder saved with ``save_to_preset``)
into kmexp's two encoder parts:

- ``PresetTokenizer`` (the preprocessor): raw strings -> the preset's token ids,
  padded to ``sequence_length``; optional kmexp standardization first;
- ``PresetEncoder`` (the embedder): token ids -> the backbone -> one vector per
  text, the mean over its tokens or its first token. Fine-tuned with the head
  (``trainable``), or frozen: then each text is embedded once, and the vectors
  are cached on disk (``kmexp.encoders.embedding_cache``).

Both are Keras layers that save inside ``model.keras`` with the backbone's
weights and the tokenizer's vocabulary, so the saved model takes raw strings.
KerasHub loads only when a pretrained encoder is used: kmexp runs without it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import keras
import tensorflow as tf

from kmexp import compat
from kmexp.config.validation import MODES, POOLINGS, check_choice, raise_problems
from kmexp.encoders import text
from kmexp.encoders.base import PACKAGE
from kmexp.errors import ConfigError, KmexpError

log = logging.getLogger(__name__)


class PresetError(KmexpError):
    """A preset that cannot be loaded here, or cannot classify text."""


def _keras_hub():
    """KerasHub, imported on first use; registers its layers for loading too."""
    import keras_hub

    return keras_hub


def preset_caches() -> str:
    """Where KerasHub looks for downloaded presets: kagglehub's cache and Hugging Face's."""
    kaggle = os.environ.get("KAGGLEHUB_CACHE", str(Path.home() / ".cache" / "kagglehub"))
    hf = os.environ.get("HF_HUB_CACHE", os.path.join(os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface")), "hub"))
    return f"{kaggle} (kaggle:// and built-in names), {hf} (hf://)"


def _load(kind: str, preset: str, **kwargs):
    """``keras_hub.models.<kind>.from_preset(preset)``, its failures said in one line."""
    keras_hub = _keras_hub()
    loader = getattr(keras_hub.models, kind)
    try:
        return loader.from_preset(preset, **kwargs)
    except (OSError, ConnectionError) as err:  # no network (requests' errors are OSErrors), or no such folder
        log.debug("encoder.preset=%s: %s", preset, err)
        raise PresetError(
            # Kept within an error line's 500 characters (kmexp.errors.capped): the preset, where KerasHub
            # looked and the fix; the underlying error goes to kmexp.log.
            f"encoder.preset={preset}: not cached and not downloadable here; looked in {preset_caches()}. "
            f"To use a local copy: keras_hub.models.TextClassifier.from_preset('{preset}', num_classes=2)"
            f".save_to_preset('/folder') on a machine with network, copy the folder here, set encoder.preset=/folder"
        ) from None
    except ValueError as err:  # KerasHub's answer to a preset it cannot build as a text classifier's part
        raise PresetError(
            f"encoder.preset={preset} cannot classify text ({_first_line(err)}); supported kinds: "
            f"{', '.join(text_classifier_kinds())}"
        ) from None


def _max_sequence_length(preset: str) -> int | None:
    """The longest input the preset's backbone supports: from its config, or from the backbone built without weights."""
    config = compat.preset_backbone_config(preset)
    if config is not None and "max_sequence_length" in config:
        return config["max_sequence_length"]
    return _load("Backbone", preset, load_weights=False).max_sequence_length


def text_classifier_kinds() -> list[str]:
    """The backbone families KerasHub can classify text with (``XLMRoberta``, ``Bert``, ...)."""
    keras_hub = _keras_hub()
    return sorted(
        name.removesuffix("TextClassifier")
        for name in dir(keras_hub.models)
        if name.endswith("TextClassifier") and name != "TextClassifier"
    )


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


class _HoldsKerasHubLayer(keras.layers.Layer):
    """A layer around one KerasHub layer (named by ``HELD``), saved and rebuilt with it."""

    HELD: str

    def get_config(self):
        return {**super().get_config(), self.HELD: keras.saving.serialize_keras_object(getattr(self, self.HELD))}

    @classmethod
    def from_config(cls, config):
        _keras_hub()  # registers KerasHub's layers, so the held one deserializes
        return cls(**{**config, cls.HELD: keras.saving.deserialize_keras_object(config[cls.HELD])})


@keras.saving.register_keras_serializable(package=PACKAGE)
class PresetTokenizer(_HoldsKerasHubLayer):
    """Raw strings -> a pretrained preset's token ids [batch, sequence_length], int32.

    ``standardize`` (kmexp's ``language.standardize`` options) runs before the
    preset's tokenizer; the default config keeps NFKC only, without case folding,
    because pretrained vocabularies are cased.
    """

    HELD = "preset_preprocessor"

    def __init__(self, preset_preprocessor, standardize: Mapping, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.preset_preprocessor = preset_preprocessor
        self.standardize = dict(standardize)

    @classmethod
    def from_preset(cls, preset: str, sequence_length: int, standardize: Mapping) -> PresetTokenizer:
        """The preset's text-classifier preprocessor, its length capped at what the backbone supports."""
        supported = _max_sequence_length(preset)
        if supported is not None and sequence_length > supported:
            log.warning(
                "encoder.preprocessor.sequence_length=%d is more than %s supports: using %d",
                sequence_length, preset, supported,
            )
            sequence_length = supported
        return cls(_load("TextClassifierPreprocessor", preset, sequence_length=sequence_length), standardize)

    def build(self, input_shape):
        self.built = True  # nothing to build: the preset's preprocessor holds the vocabulary

    def adapt(self, texts) -> PresetTokenizer:
        """Nothing to learn: the preset brings its vocabulary."""
        return self

    @property
    def sequence_length(self) -> int:
        return int(self.preset_preprocessor.sequence_length)

    @property
    def id_count(self) -> int:
        return int(self.preset_preprocessor.tokenizer.vocabulary_size())

    @property
    def pad_id(self) -> int:
        return int(self.preset_preprocessor.tokenizer.pad_token_id)

    def call(self, texts):
        texts = text.standardize(tf.convert_to_tensor(texts), self.standardize)
        return tf.cast(self.preset_preprocessor(texts)["token_ids"], tf.int32)

    def compute_output_spec(self, texts):
        # Said without calling the tokenizer: while a saved model is rebuilt, its vocabulary is not loaded yet.
        return keras.KerasTensor((texts.shape[0], self.sequence_length), dtype="int32")

    def get_config(self):
        return {**super().get_config(), "standardize": self.standardize}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PresetEncoder(_HoldsKerasHubLayer):
    """Token ids -> one vector per text: a pretrained backbone, pooled over each text's tokens.

    ``pooling``: ``mean`` (over the tokens that are not padding) or ``first``
    (the first token, ``<s>``/``[CLS]``). ``pad_id`` marks padding.
    """

    HELD = "backbone"

    def __init__(self, backbone, pooling: str, pad_id: int, **kwargs):
        super().__init__(**kwargs)
        raise_problems(check_choice("encoder.pooling", pooling, POOLINGS))
        self.backbone = backbone
        self.pooling = pooling
        self.pad_id = int(pad_id)
        self.backbone.trainable = self.trainable

    @classmethod
    def from_preset(cls, preset: str, pooling: str, mode: str, input_dim: int) -> PresetEncoder:
        """The preset's backbone with its weights; ``mode`` finetune trains it, frozen does not."""
        raise_problems(check_choice("encoder.mode", mode, MODES))
        with compat.weights_read_in_place():  # the preset's weights replace the initial ones, without copies
            backbone = _load("Backbone", preset)
        if input_dim > backbone.vocabulary_size:  # an id past the embedding table would fail mid-training
            raise ConfigError(
                f"encoder.preset={preset} is not allowed: its tokenizer has {input_dim} token ids but its backbone "
                f"embeds {backbone.vocabulary_size}; the preset's parts do not belong together"
            )
        pad_id = _load("Tokenizer", preset).pad_token_id
        return cls(backbone, pooling, pad_id, trainable=mode == "finetune")

    @property
    def dim(self) -> int:
        return int(self.backbone.hidden_dim)

    def call(self, token_ids, training=None):
        mask = tf.not_equal(token_ids, self.pad_id)
        inputs = {"token_ids": token_ids, "padding_mask": mask}
        if "segment_ids" in self.backbone.input:
            inputs["segment_ids"] = tf.zeros_like(token_ids)
        output = self.backbone(inputs, training=training)
        sequence = output["sequence_output"] if isinstance(output, dict) else output
        sequence = tf.cast(sequence, tf.float32)
        if self.pooling == "first":
            return sequence[:, 0, :]
        weights = tf.cast(mask, tf.float32)[:, :, None]
        return tf.reduce_sum(sequence * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)

    def compute_output_spec(self, token_ids):
        return keras.KerasTensor((token_ids.shape[0], self.dim), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "pooling": self.pooling, "pad_id": self.pad_id}
