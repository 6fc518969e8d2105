"""Learning a vocabulary from the training split, with TensorFlow ops rather than Python loops."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

# Texts tokenized at once while counting: bounds memory on large (multilingual) training sets.
ADAPT_BATCH = 4096


def batches(texts: Sequence[str], size: int = ADAPT_BATCH) -> Iterator[tf.Tensor]:
    for start in range(0, len(texts), size):
        yield tf.constant(list(texts[start : start + size]))


def row_token_pairs(ids: tf.RaggedTensor, n_ids) -> tuple[tf.Tensor, tf.Tensor]:
    """Distinct (row, id) cells of a ragged id tensor and how often each occurs, in row-major order."""
    rows = tf.cast(ids.value_rowids(), tf.int64)
    keys = tf.sort(rows * tf.cast(n_ids, tf.int64) + tf.cast(ids.flat_values, tf.int64))
    # Sorted, the copies of a cell are neighbours: a cell starts where the key changes (keys are >= 0, so
    # the -1 in front marks the first one), and its count is the distance to the next start.
    starts = tf.not_equal(keys, tf.concat([tf.constant([-1], tf.int64), keys], axis=0)[:-1])
    first = tf.where(starts)[:, 0]
    counts = tf.concat([first[1:], tf.shape(keys, out_type=tf.int64)], axis=0) - first
    return tf.boolean_mask(keys, starts), tf.cast(counts, tf.float32)


def document_frequencies(tokenize: Callable[[tf.Tensor], tf.RaggedTensor], texts: Sequence[str]) -> collections.Counter:
    """How many training texts contain each token (bytes)."""
    doc_freq: collections.Counter[bytes] = collections.Counter()
    for batch in batches(texts):
        grams = tokenize(batch)
        vocabulary, index = tf.unique(grams.flat_values)
        size = tf.cast(tf.size(vocabulary), tf.int64)
        # The distinct (text, token) cells, unordered: counting them needs no sort (half the time of row_token_pairs).
        cells, _ = tf.unique(tf.cast(grams.value_rowids(), tf.int64) * size + tf.cast(index, tf.int64))
        per_token = tf.math.bincount(tf.cast(cells % size, tf.int32), minlength=tf.size(vocabulary))
        doc_freq.update(dict(zip(vocabulary.numpy().tolist(), per_token.numpy().tolist())))
    return doc_freq


def hashed_document_frequencies(hash_ids: Callable[[tf.Tensor], tf.RaggedTensor], texts: Sequence[str], num_bins: int) -> np.ndarray:
    """How many training texts hit each hash bin."""
    doc_freq = np.zeros(num_bins, dtype=np.int64)
    for batch in batches(texts):
        cells, _ = row_token_pairs(hash_ids(batch), num_bins)
        doc_freq += tf.math.bincount(tf.cast(cells % num_bins, tf.int32), minlength=num_bins, maxlength=num_bins).numpy()
    return doc_freq


def select_vocabulary(doc_freq: collections.Counter, min_df: int, max_tokens: int | None) -> list[bytes]:
    """Tokens seen in at least ``min_df`` texts, most frequent first, at most ``max_tokens``."""
    kept = [tok for tok, df in doc_freq.items() if df >= min_df]
    # Ties are broken by the token itself, so the vocabulary is deterministic.
    kept.sort(key=lambda tok: (-doc_freq[tok], tok))
    if max_tokens is not None:
        kept = kept[: int(max_tokens)]
    if not kept:
        raise ValueError("the training texts produced no tokens to build a vocabulary from")
    return kept


def smooth_idf(doc_freq: np.ndarray, n_docs: int) -> np.ndarray:
    """scikit-learn's smoothed idf: log((1 + n) / (1 + df)) + 1."""
    return (np.log((1.0 + n_docs) / (1.0 + np.asarray(doc_freq, dtype=np.float64))) + 1.0).astype("float32")
