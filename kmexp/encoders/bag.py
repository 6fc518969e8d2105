"""Bag-of-n-gram features: multi-hot, counts or TF-IDF, over a learned vocabulary or hash bins."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from kmexp.encoders import text, vocab
from kmexp.encoders.base import PACKAGE, Preprocessor
from kmexp.encoders.lookup import StringLookup

# Prefixes word n-grams fused with character n-grams (``word_ngram_range``).
WORD_MARK = "\x1f"


@keras.saving.register_keras_serializable(package=PACKAGE)
class TextFeaturizer(Preprocessor):
    """Raw strings -> one row of n-gram features per text.

    With ``output_mode="tfidf"``, ``sublinear_tf`` and ``l2_normalize`` this is
    scikit-learn's ``TfidfVectorizer(sublinear_tf=True)``: 1 + log(count) times a
    smoothed idf learned on the training split, rows scaled to unit length.

    ``num_bins=None`` keeps an exact vocabulary of the training n-grams;
    an integer hashes n-grams into that many bins instead (no vocabulary to
    store, any feature count). ``sparse=True`` returns a ``tf.SparseTensor``,
    so a million features cost memory only for the n-grams a text contains.

    ``round_features=b`` rounds an exact vocabulary's feature count up to a number
    with ``b`` significant bits (at most 1 / 2^(b-1) more features), columns that
    are always zero. Languages' vocabularies differ in size, so without it every
    job of a sweep has its own input shape and Keras traces its train step again;
    rounded, most jobs share a few shapes and reuse one traced step
    (``kmexp.training.kept``). None: the exact count.
    """

    def __init__(
        self,
        standardize: Mapping,
        analyzer: str,
        ngram_range: Sequence[int],
        output_mode: str,
        sublinear_tf: bool,
        l2_normalize: bool,
        sparse: bool,
        num_bins: int | None,
        max_tokens: int | None,
        min_df: int,
        round_features: int | None,
        word_ngram_range: Sequence[int] | None = None,
        vocabulary_size: int | None = None,
        **kwargs,
    ):
        super().__init__(standardize, analyzer, ngram_range, **kwargs)
        self.word_ngram_range = None if word_ngram_range is None else tuple(int(n) for n in word_ngram_range)
        self.output_mode = output_mode
        self.sublinear_tf = bool(sublinear_tf)
        self.l2_normalize = bool(l2_normalize)
        self.sparse = bool(sparse)
        self.num_bins = None if num_bins is None else int(num_bins)
        self.max_tokens = max_tokens
        self.min_df = int(min_df)
        self.round_features = None if round_features is None else int(round_features)
        self.vocabulary_size = self.num_bins if self.num_bins is not None else vocabulary_size
        if self.num_bins is None:
            # Index 0 is the out-of-vocabulary bucket; it is dropped from the features.
            self.lookup = StringLookup(num_oov_indices=1, mask_token=None, name="lookup")
        if self.vocabulary_size is not None:
            self._make_idf()

    @property
    def num_features(self) -> int:
        """Columns of the output: the vocabulary (or bins), rounded up as ``round_features`` says."""
        if self.num_bins is not None or self.round_features is None:
            return self.vocabulary_size
        return rounded_up(self.vocabulary_size, self.round_features)

    def tokens(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """The analyzer's n-grams, then (with ``word_ngram_range``) word n-grams, marked apart."""
        if self.word_ngram_range is None:
            return super().tokens(texts)
        standardized = text.standardize(texts, self.standardize)
        words = text.tokens(standardized, "word", self.word_ngram_range)
        # Standardized text holds no control characters, so the mark keeps word n-grams apart
        # from character n-grams that spell the same string.
        marked = tf.ragged.map_flat_values(lambda grams: tf.strings.join([WORD_MARK, grams]), words)
        return tf.concat([text.tokens(standardized, self.analyzer, self.ngram_range), marked], axis=1)

    def _make_idf(self) -> None:
        self.idf = self.add_weight(name="idf", shape=(self.vocabulary_size,), initializer="ones", trainable=False)

    def adapt(self, texts: Sequence[str]) -> TextFeaturizer:
        """Learn the vocabulary (unless hashing) and the idf from training texts only."""
        if self.num_bins is None:
            doc_freq = vocab.document_frequencies(self.tokens, texts)
            kept = vocab.select_vocabulary(doc_freq, self.min_df, self.max_tokens)
            self.lookup.set_vocabulary([tok.decode("utf-8", "replace") for tok in kept])
            self.vocabulary_size = len(kept)
            self._make_idf()
            kept_df = np.array([doc_freq[tok] for tok in kept])
        else:
            kept_df = vocab.hashed_document_frequencies(self._hash_ids, texts, self.num_bins)
        self.idf.assign(vocab.smooth_idf(kept_df, len(texts)))
        self.built = True
        return self

    def _hash_ids(self, texts: tf.Tensor) -> tf.RaggedTensor:
        return tf.strings.to_hash_bucket_fast(self.tokens(texts), self.num_bins)

    def _feature_ids(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Ragged [batch, tokens] feature ids in [0, vocabulary_size); unknown n-grams dropped."""
        if self.num_bins is not None:
            return self._hash_ids(texts)
        ids = self.lookup(self.tokens(texts))
        known = tf.ragged.boolean_mask(ids, ids > 0)
        return known - 1

    def call(self, texts):
        ids = self._feature_ids(texts)
        batch = ids.nrows(out_type=tf.int64)
        cells, counts = vocab.row_token_pairs(ids, self.vocabulary_size)
        rows = cells // self.vocabulary_size
        columns = cells % self.vocabulary_size
        values = self._weights(columns, counts)
        if self.l2_normalize:
            norms = tf.math.unsorted_segment_sum(tf.square(values), rows, tf.cast(batch, tf.int32))
            values = values * tf.gather(tf.math.rsqrt(tf.maximum(norms, 1e-12)), rows)
        indices = tf.stack([rows, columns], axis=1)
        shape = tf.stack([batch, tf.constant(self.num_features, tf.int64)])
        if self.sparse:
            return tf.SparseTensor(indices, values, shape)
        return tf.ensure_shape(tf.scatter_nd(indices, values, shape), [None, self.num_features])

    def _weights(self, columns: tf.Tensor, counts: tf.Tensor) -> tf.Tensor:
        if self.output_mode == "multi_hot":
            return tf.ones_like(counts)
        weights = 1.0 + tf.math.log(counts) if self.sublinear_tf else counts
        if self.output_mode == "tfidf":
            weights = weights * tf.gather(tf.convert_to_tensor(self.idf), columns)
        return weights

    def compute_output_spec(self, texts):
        return keras.KerasTensor((texts.shape[0], self.num_features), dtype="float32", sparse=self.sparse)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_features)

    @classmethod
    def from_config(cls, config):
        # Models saved before round_features existed have the exact feature count.
        return super().from_config({"round_features": None, **config})

    def get_config(self):
        return {
            **super().get_config(),
            "output_mode": self.output_mode,
            "sublinear_tf": self.sublinear_tf,
            "l2_normalize": self.l2_normalize,
            "sparse": self.sparse,
            "num_bins": self.num_bins,
            "max_tokens": self.max_tokens,
            "min_df": self.min_df,
            "round_features": self.round_features,
            "word_ngram_range": None if self.word_ngram_range is None else list(self.word_ngram_range),
            "vocabulary_size": self.vocabulary_size,
        }


def rounded_up(count: int, bits: int) -> int:
    """The smallest number >= ``count`` written with ``bits`` significant bits (35158, 3 -> 40960)."""
    shift = max(0, int(count).bit_length() - bits)
    return ((int(count) + (1 << shift) - 1) >> shift) << shift
