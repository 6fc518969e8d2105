"""Text encoders that live inside the saved model.

An encoder has two parts, each built from its own config subtree:

- a *preprocessor*: a non-trainable Keras layer that turns raw strings into
  numbers (bag-of-n-gram features, or token ids). It is adapted on the training
  split only, runs on the CPU inside ``tf.data`` during training, and is placed
  in front of the trained network in the exported model, so that ``model.keras``
  takes raw strings in any script.
- an optional *embedder*: trainable layers between the preprocessor and the
  head (an embedding with pooling for token ids; nothing for bag features).

Every layer here is registered as Keras-serializable, so ``import kmexp`` is all
a fresh process needs to load a model with safe mode on.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

PACKAGE = "kmexp"
ANALYZERS = ("word", "char", "char_wb")
OUTPUTS = ("multi_hot", "count", "tfidf")
NORMALIZATIONS = ("NFKC", "NFC", "NFKD", "NFD", "none")

# Strings are tokenized in batches of this many texts while adapting a vocabulary.
_ADAPT_BATCH = 512


def standardize(texts: tf.Tensor, normalization: str, lowercase: bool) -> tf.Tensor:
    """Unicode-normalize and lowercase a batch of strings (all scripts, not only ASCII)."""
    if normalization != "none":
        texts = tf_text.normalize_utf8(texts, normalization)
    if lowercase:
        texts = tf.strings.lower(texts, encoding="utf-8")
    # Collapse runs of whitespace so that word and char_wb n-grams do not depend on spacing.
    return tf.strings.strip(tf.strings.regex_replace(texts, r"\s+", " "))


def ngram_tokens(texts: tf.Tensor, analyzer: str, ngram_range: Sequence[int]) -> tf.RaggedTensor:
    """Split standardized strings into a ragged [batch, tokens] tensor of n-grams.

    ``word``: word n-grams joined by a space. ``char``: character n-grams over
    the whole text. ``char_wb``: character n-grams inside words padded with a
    space on each side, as scikit-learn's ``analyzer="char_wb"``.
    """
    width = tuple(range(int(ngram_range[0]), int(ngram_range[1]) + 1))
    if analyzer == "word":
        return tf.strings.ngrams(tf.strings.split(texts), width, separator=" ")
    if analyzer == "char":
        return tf.strings.ngrams(tf.strings.unicode_split(texts, "UTF-8"), width, separator="")
    words = tf.strings.split(texts)  # [batch, words]
    padded = " " + words + " "
    chars = tf.strings.unicode_split(padded, "UTF-8")  # [batch, words, chars]
    grams = tf.strings.ngrams(chars, width, separator="")  # [batch, words, grams]
    return grams.merge_dims(1, 2)


def _batches(texts: Sequence[str], size: int) -> Iterable[tf.Tensor]:
    for start in range(0, len(texts), size):
        yield tf.constant(list(texts[start : start + size]))


def _document_frequencies(tokenize, texts: Sequence[str]) -> collections.Counter:
    """How many training texts contain each token."""
    doc_freq: collections.Counter[bytes] = collections.Counter()
    for batch in _batches(texts, _ADAPT_BATCH):
        for row in tokenize(batch).to_list():
            doc_freq.update(set(row))
    return doc_freq


def _select_vocabulary(doc_freq: collections.Counter, min_df: int, max_tokens: int | None) -> list[bytes]:
    """Tokens seen in at least min_df texts, most frequent first, at most max_tokens."""
    kept = [tok for tok, df in doc_freq.items() if df >= min_df]
    # Ties are broken by the token itself, so the vocabulary is deterministic.
    kept.sort(key=lambda tok: (-doc_freq[tok], tok))
    if max_tokens is not None:
        kept = kept[: int(max_tokens)]
    if not kept:
        raise ValueError("the training texts produced no tokens to build a vocabulary from")
    return kept


@keras.saving.register_keras_serializable(package=PACKAGE)
class TextFeaturizer(keras.layers.Layer):
    """Raw strings -> bag of n-gram features: multi-hot, counts, or TF-IDF.

    With ``output_mode="tfidf"``, ``sublinear_tf=True`` and ``l2_normalize=True`` this
    is scikit-learn's ``TfidfVectorizer(sublinear_tf=True)``: 1 + log(count),
    times a smoothed idf learned on the training split, rows scaled to unit L2.
    """

    def __init__(
        self,
        analyzer: str = "char_wb",
        ngram_range: Sequence[int] = (1, 5),
        max_tokens: int | None = None,
        min_df: int = 1,
        output_mode: str = "tfidf",
        sublinear_tf: bool = True,
        l2_normalize: bool = True,
        normalization: str = "NFKC",
        lowercase: bool = True,
        vocabulary_size: int | None = None,
        **kwargs,
    ):
        kwargs.setdefault("trainable", False)
        # Preprocessing computes in float32 whatever the global precision policy says.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.analyzer = analyzer
        self.ngram_range = tuple(int(n) for n in ngram_range)
        self.max_tokens = max_tokens
        self.min_df = int(min_df)
        self.output_mode = output_mode
        self.sublinear_tf = bool(sublinear_tf)
        self.l2_normalize = bool(l2_normalize)
        self.normalization = normalization
        self.lowercase = bool(lowercase)
        self.vocabulary_size = vocabulary_size
        # Index 0 is the out-of-vocabulary bucket; it is dropped from the features.
        self.lookup = keras.layers.StringLookup(num_oov_indices=1, mask_token=None, name="lookup")
        if vocabulary_size is not None:
            self._make_idf()

    def _make_idf(self) -> None:
        self.idf = self.add_weight(
            name="idf", shape=(self.vocabulary_size,), initializer="ones", trainable=False
        )

    def tokens(self, texts: tf.Tensor) -> tf.RaggedTensor:
        texts = standardize(tf.reshape(texts, [-1]), self.normalization, self.lowercase)
        return ngram_tokens(texts, self.analyzer, self.ngram_range)

    def adapt(self, texts: Sequence[str]) -> TextFeaturizer:
        """Learn the vocabulary and idf from training texts only."""
        doc_freq = _document_frequencies(self.tokens, texts)
        kept = _select_vocabulary(doc_freq, self.min_df, self.max_tokens)
        self.lookup.set_vocabulary([tok.decode("utf-8", "replace") for tok in kept])
        self.vocabulary_size = len(kept)
        self._make_idf()
        n_docs = len(texts)
        # Smoothed idf, as scikit-learn: log((1 + n) / (1 + df)) + 1.
        idf = [math.log((1 + n_docs) / (1 + doc_freq[tok])) + 1.0 for tok in kept]
        self.idf.assign(np.asarray(idf, dtype="float32"))
        self.built = True
        return self

    def call(self, texts):
        ids = self.lookup(self.tokens(texts))  # ragged [batch, tokens], 0 = unknown
        batch = tf.shape(ids.nested_row_splits[0])[0] - 1
        # Sum a 1 per token into its (row, id) cell: dense counts, unknown column dropped.
        cells = tf.stack([tf.cast(ids.value_rowids(), tf.int64), tf.cast(ids.flat_values, tf.int64)], 1)
        shape = tf.stack([tf.cast(batch, tf.int64), tf.constant(self.vocabulary_size + 1, tf.int64)])
        counts = tf.scatter_nd(cells, tf.ones_like(ids.flat_values, tf.float32), shape)[:, 1:]
        if self.output_mode == "multi_hot":
            features = tf.minimum(counts, 1.0)
        else:
            features = counts
            if self.sublinear_tf:
                features = tf.where(counts > 0, 1.0 + tf.math.log(tf.maximum(counts, 1.0)), 0.0)
            if self.output_mode == "tfidf":
                features = features * tf.convert_to_tensor(self.idf)
        if self.l2_normalize:
            features = tf.math.l2_normalize(features, axis=-1)
        return tf.ensure_shape(features, [None, self.vocabulary_size])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.vocabulary_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            analyzer=self.analyzer,
            ngram_range=list(self.ngram_range),
            max_tokens=self.max_tokens,
            min_df=self.min_df,
            output_mode=self.output_mode,
            sublinear_tf=self.sublinear_tf,
            l2_normalize=self.l2_normalize,
            normalization=self.normalization,
            lowercase=self.lowercase,
            vocabulary_size=self.vocabulary_size,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class TokenSequencer(keras.layers.Layer):
    """Raw strings -> padded token ids [batch, max_length] for a learned embedding.

    Id 0 is padding and id 1 an unknown token, so vocabulary ids start at 2.
    """

    def __init__(
        self,
        analyzer: str = "word",
        ngram_range: Sequence[int] = (1, 1),
        max_tokens: int | None = None,
        min_df: int = 1,
        max_length: int = 128,
        normalization: str = "NFKC",
        lowercase: bool = True,
        vocabulary_size: int | None = None,
        **kwargs,
    ):
        kwargs.setdefault("trainable", False)
        # Preprocessing computes in float32 whatever the global precision policy says.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.analyzer = analyzer
        self.ngram_range = tuple(int(n) for n in ngram_range)
        self.max_tokens = max_tokens
        self.min_df = int(min_df)
        self.max_length = int(max_length)
        self.normalization = normalization
        self.lowercase = bool(lowercase)
        self.vocabulary_size = vocabulary_size
        self.lookup = keras.layers.StringLookup(num_oov_indices=1, mask_token=None, name="lookup")

    @property
    def id_count(self) -> int:
        """Number of distinct ids the layer emits: padding, unknown and the vocabulary."""
        return int(self.vocabulary_size) + 2

    def tokens(self, texts: tf.Tensor) -> tf.RaggedTensor:
        texts = standardize(tf.reshape(texts, [-1]), self.normalization, self.lowercase)
        return ngram_tokens(texts, self.analyzer, self.ngram_range)

    def adapt(self, texts: Sequence[str]) -> TokenSequencer:
        """Learn the vocabulary from training texts only."""
        vocabulary = _select_vocabulary(_document_frequencies(self.tokens, texts), self.min_df, self.max_tokens)
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
        config = super().get_config()
        config.update(
            analyzer=self.analyzer,
            ngram_range=list(self.ngram_range),
            max_tokens=self.max_tokens,
            min_df=self.min_df,
            max_length=self.max_length,
            normalization=self.normalization,
            lowercase=self.lowercase,
            vocabulary_size=self.vocabulary_size,
        )
        return config


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
