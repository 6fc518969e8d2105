"""What every preprocessor shares: standardization options, segmentation, Keras plumbing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import tensorflow as tf

from kmexp.encoders import text

PACKAGE = "kmexp"


class Preprocessor(keras.layers.Layer):
    """A non-trainable layer from raw strings to numbers, adapted on training texts only.

    Subclasses implement ``adapt(texts) -> self`` and ``call(texts)``.
    """

    def __init__(self, standardize: Mapping, analyzer: str, ngram_range: Sequence[int], **kwargs):
        kwargs.setdefault("trainable", False)
        # Preprocessing computes in float32 whatever the global precision policy says.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.standardize = dict(standardize)
        self.analyzer = analyzer
        self.ngram_range = tuple(int(n) for n in ngram_range)

    def tokens(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Standardize then segment a batch of raw strings into ragged n-gram tokens."""
        return text.tokens(text.standardize(texts, self.standardize), self.analyzer, self.ngram_range)

    def get_config(self):
        return {
            **super().get_config(),
            "standardize": self.standardize,
            "analyzer": self.analyzer,
            "ngram_range": list(self.ngram_range),
        }


class SequencePreprocessor(Preprocessor):
    """A preprocessor that emits padded int32 ids [batch, max_length], 0 being padding.

    Subclasses set ``max_length`` through this constructor and provide ``id_count``,
    the number of distinct ids, which sizes the embedder that follows.
    """

    def __init__(self, standardize: Mapping, analyzer: str, ngram_range: Sequence[int], max_length: int, **kwargs):
        super().__init__(standardize, analyzer, ngram_range, **kwargs)
        self.max_length = int(max_length)

    def compute_output_spec(self, texts):
        return keras.KerasTensor((texts.shape[0], self.max_length), dtype="int32")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.max_length)

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length}
