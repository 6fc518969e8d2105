"""Pretrained KerasHub encoders, end to end through the command line, on a tiny preset built here.

There is no network here, so the test makes its own preset the way a user saves
one: an XLM-RoBERTa backbone with random weights and a SentencePiece vocabulary
trained on the test's own texts, saved with ``save_to_preset``. Every run goes
through ``python -m kmexp`` in a fresh process.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import files_overrides, make_rows, run_cli

pytestmark = pytest.mark.slow

TEXTS = ["le match de football", "хлеб и суп", "今天下雨", "مطر ورياح", "the storm and the wind"]


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory) -> Path:
    """An XLM-R preset folder: 2 layers of width 16, a 120-piece SentencePiece vocabulary, random weights."""
    import keras_hub
    import sentencepiece as spm

    folder = tmp_path_factory.mktemp("presets") / "tiny_xlmr"
    texts = [row["text"] for row in make_rows(30, seed=1)] + TEXTS
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=proto, vocab_size=120, model_type="unigram", pad_id=0, unk_id=1,
        bos_id=2, eos_id=3, character_coverage=1.0, hard_vocab_limit=False,
    )
    tokenizer = keras_hub.models.XLMRobertaTokenizer(proto=proto.getvalue())
    backbone = keras_hub.models.XLMRobertaBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=64,
    )
    preprocessor = keras_hub.models.XLMRobertaTextClassifierPreprocessor(tokenizer, sequence_length=64)
    keras_hub.models.XLMRobertaTextClassifier(backbone, num_classes=2, preprocessor=preprocessor).save_to_preset(str(folder))
    return folder


def pretrained_run(data, tmp_path: Path, *extra: str, cache: Path) -> tuple[subprocess.CompletedProcess, Path | None]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    result = run_cli(
        [*files_overrides(data), "logger=none", f"encoder.cache_dir={cache}", *extra], cwd=tmp_path
    )
    runs = list((tmp_path / "outputs").rglob("metrics.json")) if (tmp_path / "outputs").is_dir() else []
    return result, (max(runs, key=lambda p: p.stat().st_mtime).parent if runs else None)


def test_frozen_mode_trains_the_head_and_caches_the_embeddings(small_data, tiny_preset, tmp_path):
    cache = tmp_path / "cache"
    args = ["encoder=pretrained", f"encoder.preset={tiny_preset}", "encoder.mode=frozen", "trainer.epochs=5"]
    first, run_dir = pretrained_run(small_data, tmp_path / "a", *args, cache=cache)
    assert first.returncode == 0, first.stderr[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed"
    # train, dev and test were embedded once each (dev read back for the final scores); nothing was there yet.
    assert {k: record["embedding_cache"][k] for k in ("dir", "hits", "misses")} == {"dir": str(cache), "hits": 1, "misses": 3}
    assert record["embedding_cache"]["seconds"] > 0
    assert len(list(cache.glob("*.npy"))) == 3

    # A second job over the same data (another seed) embeds nothing.
    second, run_dir2 = pretrained_run(small_data, tmp_path / "b", *args, "seed=1", cache=cache)
    assert second.returncode == 0, second.stderr[-3000:]
    record2 = json.loads((run_dir2 / "metrics.json").read_text())
    assert record2["embedding_cache"]["hits"] == 4 and record2["embedding_cache"]["misses"] == 0
    # Another pooling is another set of vectors.
    third, run_dir3 = pretrained_run(small_data, tmp_path / "c", *args, "encoder.pooling=first", cache=cache)
    assert third.returncode == 0, third.stderr[-3000:]
    assert json.loads((run_dir3 / "metrics.json").read_text())["embedding_cache"]["misses"] == 3

    # The saved model holds tokenizer, backbone and head, and scores raw strings in any script in a fresh
    # process the way the run scored its test split.
    probabilities = predict_in_fresh_process(run_dir, TEXTS)
    assert len(probabilities) == len(TEXTS) and all(abs(sum(row) - 1) < 1e-5 for row in probabilities)


def predict_in_fresh_process(run_dir: Path, texts: list[str]) -> list[list[float]]:
    script = textwrap.dedent(
        f"""
        import json, tensorflow as tf
        import kmexp
        model = kmexp.load_model({str(run_dir / "model.keras")!r})
        print(json.dumps(model.predict(tf.constant({texts!r}), verbose=0).tolist()))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_finetune_mode_trains_the_backbone_and_kmexp_predict_reads_the_model(small_data, tiny_preset, tmp_path):
    args = ["encoder=pretrained", f"encoder.preset={tiny_preset}", "encoder.mode=finetune", "trainer.epochs=2",
            "trainer.gradient_accumulation_steps=2", "encoder.sequence_length=1000"]
    result, run_dir = pretrained_run(small_data, tmp_path, *args, cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr[-3000:]
    # The length is capped at what the backbone supports, and the run says so in one line.
    assert "encoder.preprocessor.sequence_length=1000 is more than" in result.stdout + result.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and "embedding_cache" not in record
    assert record["epochs_run"] == 2
    # Fine-tuning trained AdamW with its warm-up, the encoder's training default.
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "kmexp.optim.warmup_adamw" in config
    predicted = subprocess.run(
        [sys.executable, "-m", "kmexp.predict", str(run_dir), *TEXTS[:3], "--json"], capture_output=True, text=True,
        timeout=300,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    lines = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [line["text"] for line in lines] == TEXTS[:3]
    assert all(line["predictions"][0]["label"] in {"sports", "food", "weather"} for line in lines)


def test_a_named_preset_offline_fails_before_training_in_one_line(small_data, tmp_path):
    result, _ = pretrained_run(
        small_data, tmp_path, "encoder=xlmr_base", "+hydra.job.env_set.KAGGLEHUB_CACHE=" + str(tmp_path / "empty"),
        cache=tmp_path / "cache",
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("kmexp: error: encoder.preset=xlm_roberta_base_multi: not cached and not downloadable here")
    assert str(tmp_path / "empty") in last and "encoder.preset=/folder" in last
    assert "Traceback" not in result.stderr


def test_a_preset_that_cannot_classify_text_is_refused_in_one_line(small_data, tmp_path):
    folder = tmp_path / "not_a_text_preset"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"module": "x", "class_name": "ImageBackbone", "config": {}}))
    (folder / "metadata.json").write_text(json.dumps({"keras_version": "3.15.1", "keras_hub_version": "0.32.0"}))
    result, _ = pretrained_run(small_data, tmp_path, "encoder=pretrained", f"encoder.preset={folder}", cache=tmp_path / "c")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"kmexp: error: encoder.preset={folder}") and "XLMRoberta" in last


def test_one_sweep_mixes_classic_and_pretrained_encoders(small_data, tiny_preset, tmp_path):
    """Named pretrained options are one YAML each; a user adds their own in a config folder of theirs."""
    user_conf = tmp_path / "my_conf" / "encoder"
    user_conf.mkdir(parents=True)
    (user_conf / "tiny.yaml").write_text(
        f"defaults:\n  - pretrained\n  - _self_\n\npreset: {tiny_preset}\nmode: frozen\ncache_dir: {tmp_path / 'cache'}\n"
    )
    sweep_dir = tmp_path / "sweep"
    result = run_cli(
        ["-m", *files_overrides(small_data), "encoder=char_ngram,tiny", "seed=0,1", "trainer.epochs=3", "logger=none",
         f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]", f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path,
    )
    # Keys only a pretrained encoder has (preset, mode, cache_dir) live in its option, never on the command
    # line of a mixed sweep, where the classic jobs would refuse them.
    assert result.returncode == 0, result.stderr[-3000:]
    rows = (sweep_dir / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 4
    optimizers = {json.loads((sweep_dir / str(i) / "metrics.json").read_text())["choices"]["optimizer"] for i in range(4)}
    assert optimizers == {"adam", "warmup_adamw"}  # each encoder kind kept its own training default
    assert (sweep_dir / "report.html").is_file()


def test_one_model_on_several_languages_is_scored_zero_shot_on_others(tiny_preset, sib200_dir, tmp_path):
    """language=multi pools train and dev; eval_languages scores other languages' test splits, from the cache too."""
    result = run_cli(
        ["language=multi", "language.codes=[fra_Latn,deu_Latn]", "eval_languages=[zho_Hans]", "encoder=pretrained",
         f"encoder.preset={tiny_preset}", "encoder.mode=frozen", f"encoder.cache_dir={tmp_path / 'cache'}",
         "trainer.epochs=2", "logger=none"],
        cwd=tmp_path, env={"KMEXP_DATA_DIR": str(sib200_dir)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = [json.loads(p.read_text()) for p in (tmp_path / "outputs").rglob("metrics.json")]
    assert list(metrics["eval"]) == ["fra_Latn", "deu_Latn", "zho_Hans"]
    assert all(0 <= scores["accuracy"] <= 1 and scores["support"] == 204 for scores in metrics["eval"].values())


def test_the_backbone_loads_the_presets_weights_in_place_and_they_train_there(tiny_preset):
    import keras
    import keras_hub
    import tensorflow as tf

    from kmexp.encoders.pretrained import PresetEncoder

    drawn = keras_hub.models.Backbone.from_preset(str(tiny_preset))  # Keras' own path: random draws, then copies
    encoder = PresetEncoder.from_preset(str(tiny_preset), pooling="mean", mode="finetune", input_dim=100)
    assert len(encoder.backbone.weights) == len(drawn.weights)
    for mine, theirs in zip(encoder.backbone.weights, drawn.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)
    # The variables own the memory the file was read into: the backbone runs on it, and training writes to it.
    ids = tf.constant([[0, 10, 11, 2, encoder.pad_id, encoder.pad_id]], dtype=tf.int32)
    np.testing.assert_allclose(
        encoder(ids, training=False).numpy(), PresetEncoder(drawn, "mean", encoder.pad_id)(ids, training=False).numpy(),
        rtol=1e-5,
    )
    embeddings = encoder.backbone.token_embedding.embeddings
    embeddings.assign_add(keras.ops.ones(embeddings.shape))
    np.testing.assert_array_equal(embeddings.numpy(), drawn.token_embedding.embeddings.numpy() + 1)


def test_inside_the_in_place_block_other_arrays_are_still_copied_into_variables():
    import keras

    from kmexp import compat

    with compat.weights_read_in_place():
        variable = keras.Variable(np.zeros(3, dtype="float32"))
        values = np.ones(3, dtype="float32")
        variable.assign(values)
        values[:] = 5  # the caller's array stays the caller's
    np.testing.assert_array_equal(variable.numpy(), [1, 1, 1])


def test_a_saved_model_holds_the_same_weights_file_as_keras_own_save(tiny_preset, tmp_path):
    import zipfile

    import h5py
    import keras
    import keras_hub

    from kmexp.runs import save_model

    backbone = keras_hub.models.Backbone.from_preset(str(tiny_preset))
    inputs = {name: keras.Input((None,), dtype=dtype, name=name) for name, dtype in
              [("token_ids", "int32"), ("padding_mask", "bool")]}
    model = keras.Model(inputs, backbone(inputs))
    save_model(model, tmp_path / "kmexp.keras")  # weights written from the variables' memory
    model.save(tmp_path / "keras.keras")  # weights copied first, Keras' way

    def arrays(path: Path) -> dict:
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is None  # every member's checksum holds
            (tmp_path / "weights.h5").write_bytes(archive.read("model.weights.h5"))
        found = {}
        with h5py.File(tmp_path / "weights.h5") as weights:
            weights.visititems(lambda name, item: found.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
        return found

    mine, theirs = arrays(tmp_path / "kmexp.keras"), arrays(tmp_path / "keras.keras")
    assert sorted(mine) == sorted(theirs) and len(mine) > 10
    for name in mine:
        np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)
    reloaded = keras.saving.load_model(tmp_path / "kmexp.keras")
    for saved, loaded in zip(model.weights, reloaded.weights):
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy(), err_msg=saved.path)
