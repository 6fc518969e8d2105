"""Every encoder option trains through the real pipeline and survives ``model.keras``.

Each ``conf/encoder/*.yaml`` is trained by ``kmexp.train.train`` on small
multilingual files written here (Latin, Cyrillic, Arabic, Chinese without
spaces), then its saved model is reloaded and must predict exactly as the
in-memory one, in this process and in a fresh one (custom ops and assets are
the risk). Dev and test rows carry a word that training never sees, which the
subword vocabulary must not contain.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import keras
import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import kmexp.experiment
import kmexp.train
from kmexp import builders
from kmexp import network as network_module
from kmexp.config import register_configs
from kmexp.encoders import (
    ByteSequencer,
    ConvPooling,
    PooledEmbedding,
    SubwordSequencer,
    TransformerEmbedder,
)
from kmexp.paths import config_dir
from kmexp.runs import MODEL_FILE

from conftest import classic_encoders, files_overrides, make_rows, write_tsv

ENCODERS = classic_encoders()
# Raw strings in scripts seen in training and not (Greek, Devanagari), plus edge cases.
TEXTS = [
    "le match de football",
    "хлеб и суп",
    "今天下雨",
    "مطر ورياح",
    "",
    "🙂 mixed text 中文 عربى",
    "Ελληνικό κείμενο",
    "हिन्दी में पाठ",
    "LE PAIN ET LE FROMAGE",
]
# Appended to every dev and test text: a word the training split never contains.
HELD_OUT_WORD = "vuvuzela"
# Three well-separated topics (chance is 1/3). Every encoder scored 0.83-1.0 on these 30
# test rows when this was written; the bar leaves room for other CPUs and library versions.
MIN_TEST_ACCURACY = 0.7


def load_config(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def with_held_out_word(rows: list[dict]) -> list[dict]:
    return [{**row, "text": f"{row['text']} {HELD_OUT_WORD}"} for row in rows]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    return {
        "train": write_tsv(folder / "train.tsv", make_rows(30, seed=1)),
        "dev": write_tsv(folder / "dev.tsv", with_held_out_word(make_rows(10, seed=2))),
        "test": write_tsv(folder / "test.tsv", with_held_out_word(make_rows(10, seed=3))),
    }


class Run:
    def __init__(self, record: dict, model: keras.Model, run_dir: Path):
        self.record = record
        self.model = model  # the in-memory model that train() saved
        self.path = run_dir / MODEL_FILE


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """``trained(encoder)`` -> its Run, trained once per module through ``kmexp.train.train``."""
    runs: dict[str, Run] = {}

    def get(name: str) -> Run:
        if name not in runs:
            # Dev accuracy saturates within a few epochs here; a short patience keeps the module fast,
            # long enough that the transformer gets past its first plateau.
            overrides = [
                f"encoder={name}",
                *files_overrides(data),
                "logger=none",
                "device=cpu",
                "trainer.epochs=15",
                "trainer.patience=4",
            ]
            captured = {}

            def export(preprocessor, network, frozen=None):
                captured["model"] = network_module.export_model(preprocessor, network, frozen)
                return captured["model"]

            run_dir = tmp_path_factory.mktemp(f"run_{name}")
            with mock.patch.object(kmexp.experiment, "export_model", export):
                record = kmexp.train.train(load_config(overrides), run_dir, overrides)
            runs[name] = Run(record, captured["model"], run_dir)
        return runs[name]

    return get


def predict(model: keras.Model, texts: list[str]) -> np.ndarray:
    return model.predict(tf.constant(texts), verbose=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_trains_and_round_trips_through_model_keras(name, trained):
    run = trained(name)
    assert run.record.status == "completed"
    assert run.record.test["accuracy"] >= MIN_TEST_ACCURACY, run.record.test

    loaded = keras.models.load_model(run.path, safe_mode=True)
    expected = predict(run.model, TEXTS)
    assert expected.shape == (len(TEXTS), 3) and np.all(np.isfinite(expected))
    np.testing.assert_allclose(predict(loaded, TEXTS), expected, atol=1e-6)
    # The preprocessor alone also matches: same features or token ids after reloading.
    original, reloaded = run.model.layers[1], loaded.layers[1]
    assert type(reloaded) is type(original)
    features = [layer(tf.constant(TEXTS)) for layer in (original, reloaded)]
    features = [tf.sparse.to_dense(f) if isinstance(f, tf.SparseTensor) else f for f in features]
    np.testing.assert_array_equal(features[1].numpy(), features[0].numpy())


@pytest.mark.slow
def test_saved_models_predict_raw_strings_in_a_fresh_process(trained):
    names = ["byte", "subword", "transformer"]
    paths = {name: str(trained(name).path) for name in names}
    script = textwrap.dedent(
        f"""
        import json, keras, tensorflow as tf
        import kmexp.layers
        texts = {TEXTS!r}
        out = {{}}
        for name, path in {paths!r}.items():
            model = keras.models.load_model(path, safe_mode=True)
            out[name] = model.predict(tf.constant(texts), verbose=0).tolist()
        print(json.dumps(out))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    for name in names:
        np.testing.assert_allclose(np.array(fresh[name]), predict(trained(name).model, TEXTS), atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_subword_vocabulary_comes_from_the_training_split_only(trained, data):
    layer = trained("subword").model.layers[1]
    assert isinstance(layer, SubwordSequencer)
    sp = spm.SentencePieceProcessor(model_proto=layer.model_proto)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    assert layer.id_count == len(pieces) <= layer.vocab_size
    assert not [piece for piece in pieces if HELD_OUT_WORD in piece]
    assert len(layer.tokens(tf.constant([HELD_OUT_WORD]))[0]) > 1  # cut into smaller pieces

    # Control: had the test texts been seen, the word would have become one piece.
    cfg = load_config(["encoder=subword"])
    texts = [row["text"] for row in make_rows(30, seed=1) + with_held_out_word(make_rows(10, seed=3))]
    leaky = builders.build_preprocessor(cfg.encoder.preprocessor, cfg.language, texts)
    assert f"▁{HELD_OUT_WORD}" in spm.SentencePieceProcessor(model_proto=leaky.model_proto).id_to_piece(
        list(range(leaky.id_count))
    )


STANDARDIZE = OmegaConf.to_container(load_config([]).language.standardize, resolve=True)


def test_byte_sequencer_maps_utf8_bytes_without_a_vocabulary():
    layer = ByteSequencer(STANDARDIZE, max_length=6).adapt([])
    assert layer.id_count == 258
    ids = layer(tf.constant(["Aé", "", "中文字"])).numpy()
    assert ids.dtype == np.int32 and ids.shape == (3, 6)
    # Standardized (case folded) first: "a" = 0x61; "é" = 0xC3 0xA9; then padding.
    np.testing.assert_array_equal(ids[0], [0x61 + 2, 0xC3 + 2, 0xA9 + 2, 0, 0, 0])
    np.testing.assert_array_equal(ids[1], 0)
    assert list(ids[2]) == [b + 2 for b in "中文字".encode()][:6]  # cut at max_length bytes
    spec = layer.compute_output_spec(keras.KerasTensor((None,), dtype="string"))
    assert spec.shape == (None, 6) and spec.dtype == "int32"


def test_subword_sequencer_caps_the_vocabulary_to_what_the_data_supports():
    texts = [row["text"] for row in make_rows(10, seed=0)]
    layer = SubwordSequencer(STANDARDIZE, vocab_size=8000, model_type="bpe", character_coverage=1.0, max_length=16)
    layer.adapt(texts)
    assert 2 < layer.id_count < 8000
    ids = layer(tf.constant(["今天下雨", "", "a" * 100])).numpy()
    assert ids.dtype == np.int32 and ids.shape == (3, 16)
    assert np.all(ids[0, :1] > 1) and np.all(ids[1] == 0) and np.all(ids < layer.id_count)
    # Seeding clears TensorFlow's kernel cache, which once deleted the tokenizer's resource.
    tf.random.set_seed(0)
    np.testing.assert_array_equal(layer(tf.constant(["今天下雨", "", "a" * 100])).numpy(), ids)
    np.testing.assert_array_equal(tf.function(layer)(tf.constant(["今天下雨", "", "a" * 100])).numpy(), ids)
    spec = layer.compute_output_spec(keras.KerasTensor((None,), dtype="string"))
    assert spec.shape == (None, 16) and spec.dtype == "int32"


@pytest.mark.parametrize(
    "embedder",
    [
        lambda: PooledEmbedding(input_dim=20, dim=8),
        lambda: ConvPooling(input_dim=20, dim=8, filters=6, kernel_size=3),
        lambda: TransformerEmbedder(input_dim=20, dim=8, num_layers=2, num_heads=2, ff_dim=16, dropout=0.0),
    ],
    ids=["pooled_embedding", "conv_pooling", "transformer"],
)
def test_embedders_ignore_padding(embedder):
    layer = embedder()
    ids = tf.constant([[3, 4, 5, 0, 0, 0, 0, 0], [7, 0, 0, 0, 0, 0, 0, 0], [0] * 8], dtype="int32")
    before = layer(ids).numpy()
    assert np.all(np.isfinite(before))
    # Whatever the padding id's embedding holds, the output must not change.
    table = layer.token_embedding if isinstance(layer, TransformerEmbedder) else layer.embedding
    weights = table.embeddings.numpy()
    weights[0] = 100.0
    table.embeddings.assign(weights)
    np.testing.assert_allclose(layer(ids).numpy(), before, atol=1e-5)
