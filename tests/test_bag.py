"""Bag-of-n-gram features: equal to scikit-learn's TF-IDF, sparse, and hashable to a million bins."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from sklearn.feature_extraction.text import TfidfVectorizer

from kmexp.encoders import TextFeaturizer

# No standardization beyond what scikit-learn does by default (lowercasing), so both see the same text.
PLAIN = {"normalization": "none", "case": "lower", "locale": "", "fold_punctuation": False,
         "fold_whitespace": True, "strip_diacritics": False, "digits": "keep"}
TEXTS = [
    "the match was won by the home team",
    "la pluie tombe sur la ville aujourd'hui",
    "дождь идёт весь день",
    "مطر غزير في المدينة اليوم",
    "a storm and heavy rain today",
    "the team won the cup again",
]


def featurizer(**overrides) -> TextFeaturizer:
    args = dict(standardize=PLAIN, analyzer="word", ngram_range=(1, 2), output_mode="tfidf", sublinear_tf=True,
                l2_normalize=True, sparse=False, num_bins=None, max_tokens=None, min_df=1, round_features=None)
    return TextFeaturizer(**{**args, **overrides}).adapt(TEXTS)


def test_word_tfidf_equals_scikit_learn():
    ours = featurizer()
    reference = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\S+")
    expected = reference.fit_transform(TEXTS).toarray()
    got = ours(tf.constant(TEXTS)).numpy()
    # Same vocabulary, in another order: match columns by token.
    vocabulary = ours.lookup.get_vocabulary()[1:]  # index 0 is the unknown bucket
    columns = [reference.vocabulary_[token] for token in vocabulary]
    assert sorted(vocabulary) == sorted(reference.vocabulary_)
    np.testing.assert_allclose(got, expected[:, columns], rtol=1e-5, atol=1e-6)


def test_sparse_output_equals_dense_output():
    dense = featurizer(analyzer="char_wb", ngram_range=(1, 4))
    sparse = featurizer(analyzer="char_wb", ngram_range=(1, 4), sparse=True)
    got = sparse(tf.constant(TEXTS))
    assert isinstance(got, tf.SparseTensor)
    np.testing.assert_allclose(tf.sparse.to_dense(got).numpy(), dense(tf.constant(TEXTS)).numpy(), rtol=1e-6)


def test_unknown_ngrams_are_ignored_and_rows_stay_unit_length():
    ours = featurizer(analyzer="char_wb", ngram_range=(1, 3))
    rows = ours(tf.constant(["ẞ∂ƒ 漢字 unseen", ""])).numpy()
    assert np.linalg.norm(rows[0]) == pytest.approx(1.0, rel=1e-5)
    assert not rows[1].any()  # an empty text has no features, and no NaN


def test_a_million_hashed_features_stay_sparse():
    hashed = featurizer(analyzer="char_wb", ngram_range=(1, 5), num_bins=2**20, sparse=True)
    got = hashed(tf.constant(TEXTS))
    assert got.dense_shape.numpy().tolist() == [len(TEXTS), 2**20]
    # Memory grows with the n-grams present, not with the feature count.
    assert got.values.shape[0] < 2000
    np.testing.assert_allclose(tf.sparse.reduce_sum(tf.square(got), axis=1).numpy(), 1.0, rtol=1e-5)
    assert hashed.idf.shape == (2**20,)


def test_hashed_sparse_model_trains_and_round_trips(tmp_path):
    import keras
    from omegaconf import OmegaConf

    from kmexp.builders import build_network
    from kmexp.network import export_model

    hashed = featurizer(analyzer="char_wb", ngram_range=(1, 5), num_bins=2**20, sparse=True)
    spec = hashed.compute_output_spec(keras.KerasTensor((None,), dtype="string"))
    head = OmegaConf.create({"hidden_units": [], "dropout": 0.0, "l2": 0.0})
    network = build_network(head, OmegaConf.create({"_target_": "keras.layers.ReLU"}), None, spec, 2)
    network.compile(optimizer=keras.optimizers.Adam(0.05), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    labels = np.eye(2)[[0, 1, 1, 1, 1, 0]]  # sports vs weather
    network.fit(hashed(tf.constant(TEXTS)), labels, epochs=30, verbose=0)
    model = export_model(hashed, network)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    probe = tf.constant(["the team won", "rain today", "漢字"])
    np.testing.assert_allclose(loaded.predict(probe, verbose=0), model.predict(probe, verbose=0), atol=1e-6)
    assert model.predict(tf.constant(TEXTS), verbose=0).argmax(1).tolist() == labels.argmax(1).tolist()


def test_word_ngrams_fused_with_char_ngrams_equal_scikit_learn_union(tmp_path):
    import keras
    import scipy.sparse

    from kmexp.encoders.bag import WORD_MARK

    fused = featurizer(analyzer="char_wb", ngram_range=(1, 3), word_ngram_range=(1, 2))
    # scikit-learn: the two TF-IDF blocks side by side (each with its own idf), then one unit length per row.
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, norm=None)
    word = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, norm=None, token_pattern=r"\S+")
    union = scipy.sparse.hstack([char.fit_transform(TEXTS), word.fit_transform(TEXTS)]).toarray()
    expected = union / np.linalg.norm(union, axis=1, keepdims=True)
    tokens = [*char.vocabulary_, *(WORD_MARK + w for w in word.vocabulary_)]
    offsets = [*char.vocabulary_.values(), *(len(char.vocabulary_) + i for i in word.vocabulary_.values())]
    column = dict(zip(tokens, offsets))
    vocabulary = fused.lookup.get_vocabulary()[1:]
    # "a" the word and "a" the character are two features.
    assert sorted(vocabulary) == sorted(tokens) and "a" in vocabulary and WORD_MARK + "a" in vocabulary
    np.testing.assert_allclose(fused(tf.constant(TEXTS)).numpy(), expected[:, [column[t] for t in vocabulary]],
                               rtol=1e-5, atol=1e-6)
    # The option is saved with the layer: a reloaded one counts word n-grams too.
    model = keras.Sequential([keras.Input(shape=(), dtype="string"), fused])
    model.save(tmp_path / "fused.keras")
    loaded = keras.models.load_model(tmp_path / "fused.keras")
    assert loaded.layers[0].word_ngram_range == (1, 2)
    np.testing.assert_allclose(loaded(tf.constant(TEXTS)).numpy(), fused(tf.constant(TEXTS)).numpy(), atol=1e-6)
