"""Token-id sequences and the trainable layers that embed them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import tensorflow as tf

from kmexp.encoders import text, vocab
from kmexp.encoders.base import PACKAGE, SequencePreprocessor
from kmexp.encoders.lookup import StringLookup


@keras.saving.register_keras_serializable(package=PACKAGE)
class TokenSequencer(SequencePreprocessor):
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
        super().__init__(standardize, analyzer, ngram_range, max_length, **kwargs)
        self.max_tokens = max_tokens
        self.min_df = int(min_df)
        self.vocabulary_size = vocabulary_size
        self.lookup = StringLookup(num_oov_indices=1, mask_token=None, name="lookup")

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

    def get_config(self):
        return {
            **super().get_config(),
            "max_tokens": self.max_tokens,
            "min_df": self.min_df,
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

    def build(self, input_shape):
        self.embedding.build(input_shape)
        self.built = True

    def call(self, ids):
        vectors = self.embedding(ids)
        mask = keras.ops.expand_dims(keras.ops.cast(self.embedding.compute_mask(ids), vectors.dtype), -1)
        # An empty text (all padding) averages to zeros, not 0/0 = NaN.
        return keras.ops.sum(vectors * mask, axis=1) / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self):
        config = super().get_config()
        config.update(input_dim=self.input_dim, dim=self.dim)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class ByteSequencer(SequencePreprocessor):
    """Raw strings -> their standardized UTF-8 bytes as ids [batch, max_length].

    Id = byte value + 2 (0 is padding, 1 is reserved, as the unknown id of the
    other sequencers), so there is no vocabulary to learn: every script, seen
    in training or not, maps to the same 258 ids. Texts longer than
    ``max_length`` bytes are cut; a character in a 3-byte script (most of
    South and South-East Asia, CJK) takes 3 of them.
    """

    RESERVED = 2  # ids below the first byte: padding (0) and a reserved id (1)

    def __init__(
        self,
        standardize: Mapping,
        max_length: int,
        analyzer: str = "byte",
        ngram_range: Sequence[int] = (1, 1),
        **kwargs,
    ):
        super().__init__(standardize, analyzer, ngram_range, max_length, **kwargs)

    @property
    def id_count(self) -> int:
        """Number of distinct ids the layer emits: padding, the reserved id and 256 byte values."""
        return 256 + self.RESERVED

    def adapt(self, texts: Sequence[str]) -> ByteSequencer:
        """Nothing to learn: bytes need no vocabulary."""
        self.built = True
        return self

    def call(self, texts):
        texts = text.standardize(texts, self.standardize)
        # Cut before splitting: only the bytes that are kept get split into strings.
        texts = tf.strings.substr(texts, 0, self.max_length, unit="BYTE")
        chars = tf.strings.bytes_split(texts)  # ragged [batch, bytes] of 1-byte strings
        values = tf.reshape(tf.io.decode_raw(chars.flat_values, tf.uint8), [-1])
        ids = chars.with_flat_values(tf.cast(values, tf.int32) + self.RESERVED)
        return ids.to_tensor(0, shape=[None, self.max_length])


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConvPooling(keras.layers.Layer):
    """Ids -> embeddings -> one 1-D convolution (ReLU) -> global max and mean pooling, concatenated.

    Made for byte ids: a kernel spanning a few bytes learns character and
    short-word detectors in any script. Padding (id 0) is masked out of both
    poolings; an empty text gives zeros. The output has ``2 * filters`` features.
    """

    def __init__(self, input_dim: int, dim: int = 32, filters: int = 256, kernel_size: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.dim = int(dim)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        # Padding is masked by hand below (Conv1D does not take Keras masks).
        self.embedding = keras.layers.Embedding(self.input_dim, self.dim, name="embedding")
        self.conv = keras.layers.Conv1D(self.filters, self.kernel_size, padding="same", activation="relu", name="conv")

    def build(self, input_shape):
        self.embedding.build(input_shape)
        self.conv.build((*input_shape, self.dim))
        self.built = True

    def call(self, ids):
        mask = keras.ops.expand_dims(keras.ops.cast(keras.ops.not_equal(ids, 0), self.compute_dtype), -1)
        hidden = self.conv(self.embedding(ids) * mask) * mask
        # ReLU outputs are >= 0, so zeroed padding never wins the max.
        max_pool = keras.ops.max(hidden, axis=1)
        mean_pool = keras.ops.sum(hidden, axis=1) / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)
        return keras.ops.concatenate([max_pool, mean_pool], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(input_dim=self.input_dim, dim=self.dim, filters=self.filters, kernel_size=self.kernel_size)
        return config
