"""What the network trains on: each split's features, computed once per run (or once per cache).

Two kinds of encoder, one interface. Usually the features are the
preprocessor's output (n-gram rows, token ids) and any embedder trains inside
the network. A frozen embedder (a pretrained backbone with ``encoder.mode=frozen``)
gives each text the same vector every epoch, so it runs once per split, in
front of the network, and its vectors are kept in an ``EmbeddingCache``: a sweep
over heads, optimizers or seeds embeds each split once.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kmexp.encoders.embedding_cache import EmbeddingCache
from kmexp.encoders.vocab import batches
from kmexp.training.loops import concat_rows

# Texts preprocessed per call: large enough to amortize each call, small enough to bound memory.
PREPROCESS_BATCH = 1024
# Texts per frozen-backbone call: a base-size transformer's activations for this many fit in memory.
EMBED_BATCH = 64


def is_frozen(embedder: keras.layers.Layer | None) -> bool:
    """An embedder that does not train: it runs once per split, in front of the network."""
    return embedder is not None and not embedder.trainable


class Features:
    """``features(texts)``: what the network sees for these texts; ``spec``: its shape and type."""

    def __init__(self, preprocessor: keras.layers.Layer, frozen: keras.layers.Layer | None, cache: EmbeddingCache | None):
        self.preprocessor = preprocessor
        self.frozen = frozen
        self.cache = cache

    @property
    def spec(self) -> keras.KerasTensor:
        spec = self.preprocessor.compute_output_spec(keras.KerasTensor((None,), dtype="string"))
        return spec if self.frozen is None else self.frozen.compute_output_spec(spec)

    def __call__(self, texts: list[str]) -> tf.Tensor | tf.SparseTensor:
        if self.frozen is None:
            return self._preprocessed(texts)
        return tf.constant(self.cache.embeddings(texts, self._embedded))

    def _preprocessed(self, texts: list[str]) -> tf.Tensor | tf.SparseTensor:
        # Eagerly and on the CPU (string ops have no GPU kernels), in chunks that bound memory:
        # no graph to trace, and each epoch only reshuffles the result.
        with tf.device("/cpu:0"):
            return concat_rows([self.preprocessor(chunk) for chunk in batches(texts, PREPROCESS_BATCH)])

    def _embedded(self, texts: list[str]) -> np.ndarray:
        ids = self._preprocessed(texts)
        return np.concatenate(
            [self.frozen(ids[i : i + EMBED_BATCH], training=False).numpy() for i in range(0, len(texts), EMBED_BATCH)]
        )
