"""``StringLookup`` whose hash tables are freed with the layer.

Keras' ``StringLookup`` builds a ``tf.lookup.StaticHashTable`` under a fresh
shared name. In eager mode TensorFlow's resource manager keeps a named table
until the process ends, so every job of an in-process sweep left its whole
vocabulary behind (about 13 MB per job for a 150,000-token vocabulary,
measured with ``benchmarks/sweep_memory.py``). Anonymous tables are deleted
when the last handle to them goes, which is when the layer goes.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kmexp import compat


class StringLookup(keras.layers.StringLookup):
    """``keras.layers.StringLookup`` with anonymous hash tables; same arguments, same saved form."""

    def _uninitialized_lookup_table(self):
        with tf.init_scope():
            initializer = compat.null_lookup_initializer(self._key_dtype, self._value_dtype)
            return tf.lookup.StaticHashTable(initializer, self._default_value, experimental_is_anonymous=True)

    def _lookup_table_from_tokens(self, tokens):
        if self.invert:  # ids -> tokens: not used by kmexp, left to Keras
            return super()._lookup_table_from_tokens(tokens)
        with tf.init_scope():
            start = self._token_start_index()
            indices = tf.range(start, start + tf.size(tokens), dtype=self._value_dtype)
            initializer = tf.lookup.KeyValueTensorInitializer(tokens, indices, self._key_dtype, self._value_dtype)
            return tf.lookup.StaticHashTable(initializer, self._default_value, experimental_is_anonymous=True)

    def get_vocabulary(self, include_special_tokens=True):
        """Keras' vocabulary in index order, built with NumPy: saving a model writes it out, and Keras'
        own loop over the tokens took a sizeable part of a short job's save."""
        if self.invert or self.vocabulary_dtype != "string" or self.lookup_table.size() == 0:
            return super().get_vocabulary(include_special_tokens)
        keys, values = self.lookup_table.export()
        vocabulary = np.full(self.vocabulary_size(), self.oov_token, dtype=object)
        vocabulary[values.numpy()] = [token.decode(self.encoding) for token in keys.numpy().tolist()]
        if self.mask_token is not None and self.output_mode == "int":
            vocabulary[0] = self.mask_token
        if not include_special_tokens:
            vocabulary = vocabulary[self._token_start_index():]
        return vocabulary.tolist()
