"""Naive Bayes feature weighting (NBSVM, Wang & Manning 2012): log-count ratios and the Dense layer they scale.

A bag feature that occurs mostly in one class's training texts says more than one
spread over every class. The log-count ratio of feature j for class c,

    r[j, c] = log((p_c[j] / |p_c|_1) / (q_c[j] / |q_c|_1)),

with p_c = alpha + the sum of class c's training rows and q_c = alpha + the sum
of the other classes' rows, measures that. ``model.nb_weighting`` multiplies the
first Dense kernel by it, a fixed weight saved inside the model:
``per_class`` scales each class's logit column by its own r[:, c] (the linear
head of one-vs-rest NBSVM), ``per_feature`` scales each feature by max_c |r[j, c]|.
Scaling the kernel is scaling the features (x r) W = x (r W), with the same
gradients and the same L2 penalty on W, and it keeps sparse features sparse.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kmexp.encoders.base import PACKAGE


def log_count_ratios(
    features: tf.Tensor | tf.SparseTensor, targets: np.ndarray, alpha: float, weights: np.ndarray | None = None
) -> np.ndarray:
    """r, shape (features, classes), from the training rows ``features`` and their one-hot ``targets``.

    ``weights``: each row's weight in the loss (a pooled split's other languages weigh less), which
    its counts get too; None: all 1.
    """
    per_row = targets if weights is None else targets * weights[:, None]
    per_row = tf.constant(per_row, tf.float32)
    if isinstance(features, tf.SparseTensor):
        by_class = tf.sparse.sparse_dense_matmul(features, per_row, adjoint_a=True)
    else:
        by_class = tf.matmul(features, per_row, transpose_a=True)
    by_class = by_class.numpy().astype(np.float64)
    p = alpha + by_class
    q = alpha + (by_class.sum(axis=1, keepdims=True) - by_class)
    return (np.log(p / p.sum(axis=0)) - np.log(q / q.sum(axis=0))).astype(np.float32)


def kernel_scale(weighting: str, ratios: np.ndarray) -> np.ndarray:
    """The first Dense kernel's multiplier: (features, classes) per class, (features, 1) per feature."""
    if weighting == "per_class":
        return ratios
    return np.abs(ratios).max(axis=1, keepdims=True)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ScaledDense(keras.layers.Layer):
    """A Dense layer whose kernel is multiplied, element by element, by a fixed ``scale`` before use.

    ``scale`` has shape (inputs, ``scale_columns``): one column scales every unit's
    weights alike (a weight per input feature), ``units`` columns scale each unit's
    own. It does not train and is saved with the layer; the L2 penalty applies to
    the trained kernel.
    """

    def __init__(self, units: int, scale_columns: int, kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.scale_columns = int(scale_columns)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        n_inputs = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel", shape=(n_inputs, self.units), initializer="glorot_uniform", regularizer=self.kernel_regularizer
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.scale = self.add_weight(name="scale", shape=(n_inputs, self.scale_columns), initializer="ones", trainable=False)

    def call(self, inputs):
        kernel = self.kernel * self.scale
        if isinstance(inputs, tf.SparseTensor):
            # TensorFlow's sparse-dense product: keras.ops.matmul takes sparse inputs through
            # embedding_lookup_sparse, which made each epoch longer (docs/benchmarks.md).
            if inputs.dtype != kernel.dtype:  # mixed precision: the kernel computes in float16/bfloat16
                inputs = tf.cast(inputs, kernel.dtype)
            return tf.sparse.sparse_dense_matmul(inputs, kernel) + self.bias
        return keras.ops.add(keras.ops.matmul(inputs, kernel), self.bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "scale_columns": self.scale_columns,
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        }
