"""Token-id sequences and the trainable layers that embed them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import tensorflow as tf

from kmexp.encoders import vocab
from kmexp.encoders.base import PACKAGE, Preprocessor


@keras.saving.register_keras_serializable(package=PACKAGE)
class TokenSequencer(Preprocessor):
    """Raw strings -> padded token ids [batch, max_length] for a learned embedding.

    Id 0 is padding and id 1 an unknown token, so vocabulary ids start at 2.
    """

    def __init__(
        self,
        standardize: Mapping,
        analyzer: str,
        ngram_range: Sequence[int],
        max_tokens: int | None,
        min_df: int,
        max_length: int,
        vocabulary_size: int | None = None,
        **kwargs,
    ):
        super().__init__(standardize, analyzer, ngram_range, **kwargs)
        self.max_tokens = max_tokens
        self.min_df = int(min_df)
        self.max_length = int(max_length)
        self.vocabulary_size = vocabulary_size
        self.lookup = keras.layers.StringLookup(num_oov_indices=1, mask_token=None, name="lookup")

    @property
    def id_count(self) -> int:
        """Number of distinct ids the layer emits: padding, unknown and the vocabulary."""
        return int(self.vocabulary_size) + 2

    def adapt(self, texts: Sequence[str]) -> TokenSequencer:
        """Learn the vocabulary from training texts only."""
        doc_freq = vocab.document_frequencies(self.tokens, texts)
        vocabulary = vocab.select_vocabulary(doc_freq, self.min_df, self.max_tokens)
        self.lookup.set_vocabulary([tok.decode("utf-8", "replace") for tok in vocabulary])
        self.vocabulary_size = len(vocabulary)
        self.built = True
        return self

    def call(self, texts):
        ids = self.lookup(self.tokens(texts)) + 1  # shift so that 0 stays free for padding
        return tf.cast(ids.to_tensor(0, shape=[None, self.max_length]), "int32")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.max_length)

    def get_config(self):
        return {
            **super().get_config(),
            "max_tokens": self.max_tokens,
            "min_df": self.min_df,
            "max_length": self.max_length,
            "vocabulary_size": self.vocabulary_size,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class PooledEmbedding(keras.layers.Layer):
    """Token ids -> the mean of their learned embeddings (fastText-style), padding ignored."""

    def __init__(self, input_dim: int, dim: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.dim = int(dim)
        self.embedding = keras.layers.Embedding(self.input_dim, self.dim, mask_zero=True, name="embedding")
        self.pool = keras.layers.GlobalAveragePooling1D(name="pool")

    def build(self, input_shape):
        self.embedding.build(input_shape)
        self.built = True

    def call(self, ids):
        vectors = self.embedding(ids)
        return self.pool(vectors, mask=self.embedding.compute_mask(ids))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self):
        config = super().get_config()
        config.update(input_dim=self.input_dim, dim=self.dim)
        return config
