"""The network: the trainable head over the encoder's features, and the end-to-end model that is saved."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from kmexp.naive_bayes import ScaledDense


def build(
    features: keras.KerasTensor,
    embedder: keras.layers.Layer | None,
    n_labels: int,
    *,
    hidden_units: list[int],
    dropout: float,
    l2: float,
    activation: Callable[[], keras.layers.Layer],
    kernel_scale: np.ndarray | None = None,
) -> keras.Model:
    """Features (or ids) -> [embedder] -> hidden layers -> one logit per label.

    ``features`` describes the preprocessor's output (shape, dtype, sparse);
    ``activation`` makes a fresh activation layer for each hidden layer. The
    network returns logits, which every loss takes; the exported model turns them
    into probabilities. The output layer computes in float32 so that scores stay
    exact under mixed precision.

    ``kernel_scale``: a fixed multiplier of the first Dense kernel (Naive Bayes
    feature weighting, ``kmexp.naive_bayes``), of shape (features, 1) or
    (features, units of that layer); None: plain Dense layers.
    """
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    layers: list[keras.layers.Layer] = [
        keras.Input(shape=features.shape[1:], dtype=features.dtype, sparse=features.sparse)
    ]
    if embedder is not None:
        layers.append(embedder)
    # Dropout goes before every Dense layer, except on sparse bag features: Keras' Dropout takes
    # dense tensors only, so there the first layer sees the whole input.
    dense_input = embedder is not None or not features.sparse
    for i, units in enumerate(hidden_units):
        if dropout > 0 and (i > 0 or dense_input):
            layers.append(keras.layers.Dropout(dropout))
        layers.append(_dense(units, regularizer, kernel_scale if i == 0 else None))
        layers.append(activation())
    if dropout > 0 and (len(hidden_units) > 0 or dense_input):
        layers.append(keras.layers.Dropout(dropout))
    scale_logits = kernel_scale if len(hidden_units) == 0 else None
    layers.append(_dense(n_labels, regularizer, scale_logits, dtype="float32", name="logits"))
    network = keras.Sequential(layers, name="network")  # builds the layers: the scale exists from here on
    for layer in layers:
        if isinstance(layer, ScaledDense):
            layer.scale.assign(kernel_scale)
    return network


def _dense(units: int, regularizer, kernel_scale: np.ndarray | None, **kwargs) -> keras.layers.Layer:
    if kernel_scale is None:
        return keras.layers.Dense(units, kernel_regularizer=regularizer, **kwargs)
    return ScaledDense(units, kernel_scale.shape[1], kernel_regularizer=regularizer, **kwargs)


def export_model(
    preprocessor: keras.layers.Layer, network: keras.Model, frozen: keras.layers.Layer | None = None
) -> keras.Model:
    """The end-to-end model: raw strings in, label probabilities out.

    ``frozen``: an embedder that trained outside the network (a frozen pretrained
    backbone), placed between the preprocessor and the network.
    """
    texts = keras.Input(shape=(), dtype="string", name="text")
    features = preprocessor(texts) if frozen is None else frozen(preprocessor(texts))
    probabilities = keras.layers.Softmax(dtype="float32", name="probabilities")(network(features))
    return keras.Model(texts, probabilities, name="kmexp_text_classifier")
