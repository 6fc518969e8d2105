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
