"""A small Transformer encoder trained from scratch over token ids (subwords by default)."""

from __future__ import annotations

import keras
from keras import ops

from kmexp.config.validation import check_embedder, raise_problems
from kmexp.encoders.base import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerBlock(keras.layers.Layer):
    """One pre-norm encoder block: x + attention(norm(x)), then x + feed_forward(norm(x))."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float, **kwargs):
        super().__init__(**kwargs)
        raise_problems(check_embedder({"dim": dim, "num_heads": num_heads, "ff_dim": ff_dim, "dropout": dropout}))
        self.dim = int(dim)
        self.num_heads = int(num_heads)
        self.ff_dim = int(ff_dim)
        self.dropout_rate = float(dropout)
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self.attention = keras.layers.MultiHeadAttention(
            self.num_heads, key_dim=self.dim // self.num_heads, dropout=self.dropout_rate, name="attention"
        )
        self.ff_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="ff_norm")
        self.ff_in = keras.layers.Dense(self.ff_dim, activation="gelu", name="ff_in")
        self.ff_out = keras.layers.Dense(self.dim, name="ff_out")
        self.dropout = keras.layers.Dropout(self.dropout_rate)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.ff_norm.build(input_shape)
        self.ff_in.build(input_shape)
        self.ff_out.build((*input_shape[:-1], self.ff_dim))
        self.built = True

    def call(self, x, attention_mask=None, training=None):
        h = self.attention_norm(x)
        h = self.attention(h, h, attention_mask=attention_mask, training=training)
        x = x + self.dropout(h, training=training)
        h = self.ff_out(self.ff_in(self.ff_norm(x)))
        return x + self.dropout(h, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, num_heads=self.num_heads, ff_dim=self.ff_dim, dropout=self.dropout_rate)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerEmbedder(keras.layers.Layer):
    """Token ids [batch, length] -> one vector [batch, dim] from a small Transformer encoder.

    Token embedding + learned position embedding (one per position up to the
    preprocessor's ``max_length``, read from the input shape), ``num_layers``
    pre-norm blocks of multi-head self-attention and a GELU feed-forward, a
    final layer norm, then the mean over the real tokens. Id 0 is padding:
    no token attends to it and the mean leaves it out.
    """

    def __init__(
        self,
        input_dim: int,
        dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 4,
        ff_dim: int = 128,
        dropout: float = 0.2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # The rules validate() applies to encoder.embedder, for a caller that skipped it.
        raise_problems(check_embedder({
            "dim": dim, "num_layers": num_layers, "num_heads": num_heads, "ff_dim": ff_dim, "dropout": dropout,
        }))
        self.input_dim = int(input_dim)
        self.dim = int(dim)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.ff_dim = int(ff_dim)
        self.dropout_rate = float(dropout)
        self.token_embedding = keras.layers.Embedding(self.input_dim, self.dim, name="token_embedding")
        self.blocks = [
            TransformerBlock(self.dim, self.num_heads, self.ff_dim, self.dropout_rate, name=f"block_{i}")
            for i in range(self.num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")
        self.dropout = keras.layers.Dropout(self.dropout_rate)

    def build(self, input_shape):
        length = input_shape[1]
        if length is None:
            raise ValueError("TransformerEmbedder needs a fixed sequence length (the preprocessor's max_length)")
        self.token_embedding.build(input_shape)
        self.position_embedding = self.add_weight(
            name="position_embedding",
            shape=(int(length), self.dim),
            initializer=keras.initializers.RandomUniform(-0.05, 0.05),  # as the token embedding
        )
        hidden_shape = (input_shape[0], int(length), self.dim)
        for block in self.blocks:
            block.build(hidden_shape)
        self.final_norm.build(hidden_shape)
        self.built = True

    def call(self, ids, training=None):
        mask = ops.not_equal(ids, 0)  # [batch, length]
        x = self.token_embedding(ids) + ops.cast(self.position_embedding, self.compute_dtype)
        x = self.dropout(x, training=training)
        length = ops.shape(ids)[1]
        # [batch, query, key]: every position attends to the real tokens only.
        attention_mask = ops.repeat(ops.expand_dims(mask, 1), length, axis=1)
        for block in self.blocks:
            x = block(x, attention_mask=attention_mask, training=training)
        x = self.final_norm(x)
        weights = ops.expand_dims(ops.cast(mask, x.dtype), -1)
        return ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            input_dim=self.input_dim,
            dim=self.dim,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            ff_dim=self.ff_dim,
            dropout=self.dropout_rate,
        )
        return config
