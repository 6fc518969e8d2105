"""Naive Bayes feature weighting (``model.nb_weighting``): the weights are the log-count ratios of the training
rows, they live in the saved model, and a kept network takes each job's own.

Each run is a real ``kmexp.train.train`` on the small files written here; the
weights are checked against the formula computed in NumPy on the training rows'
features, which the saved model's own preprocessor gives back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from conftest import files_overrides, make_rows, run_cli, write_small_data, write_tsv
from kmexp.config import register_configs
from kmexp.paths import config_dir
from kmexp.runs import MODEL_FILE
from kmexp.train import train

LABELS = ["food", "sports", "weather"]  # make_rows' topics, in the order kmexp sorts labels
TEXTS = ["le match de football", "хлеб и суп", "今天下雨", "", "an unseen text entirely"]


def compose_config(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=["logger=none", "device=cpu", "trainer.epochs=6", *overrides])


def run(run_dir, overrides: list[str], kept=None):
    import keras

    keras.backend.clear_session()
    record = train(compose_config(overrides), run_dir, overrides, kept=kept)
    assert record.status == "completed", record.error
    return record, keras.models.load_model(run_dir / MODEL_FILE, safe_mode=True)


def expected_ratios(model, train_file, labels: list[str], alpha: float) -> np.ndarray:
    """r[j, c] = log((p_c[j] / |p_c|_1) / (q_c[j] / |q_c|_1)), in NumPy, from the training rows' features."""
    import tensorflow as tf

    train = pd.read_csv(train_file, sep="\t", keep_default_na=False)
    features = model.layers[1](tf.constant(train.text.tolist()))
    x = (tf.sparse.to_dense(features) if isinstance(features, tf.SparseTensor) else features).numpy().astype(np.float64)
    y = np.array([[label == name for name in labels] for label in train.label], dtype=np.float64)
    p = alpha + x.T @ y
    q = alpha + x.T @ (1 - y)
    return np.log(p / p.sum(axis=0)) - np.log(q / q.sum(axis=0))


def scaled_layer(model):
    from kmexp.naive_bayes import ScaledDense

    network = model.get_layer("network")
    found = [layer for layer in network.layers if isinstance(layer, ScaledDense)]
    assert len(found) == 1, network.layers
    return found[0]


def accuracy(model, file) -> float:
    import tensorflow as tf

    rows = pd.read_csv(file, sep="\t", keep_default_na=False)
    return float(np.mean(model.predict(tf.constant(rows.text.tolist()), verbose=0).argmax(1) == rows.label.map(LABELS.index)))



@pytest.mark.slow
def test_per_class_weights_are_the_training_log_count_ratios_and_survive_saving(tmp_path, small_data):
    alpha = 0.5
    overrides = [*files_overrides(small_data), "model.nb_weighting=per_class", f"model.nb_alpha={alpha}"]
    record, model = run(tmp_path / "run", overrides)
    assert record.labels == LABELS
    assert record.test["accuracy"] >= 0.7, record.test

    layer = scaled_layer(model)
    assert layer.name == "logits" and not layer.scale.trainable
    scale = layer.scale.numpy()
    ratios = expected_ratios(model, small_data["train"], LABELS, alpha)
    assert scale.shape == ratios.shape == (layer.kernel.shape[0], 3)
    np.testing.assert_allclose(scale, ratios, rtol=1e-5, atol=1e-5)
    # Words of one topic lean to its class: each class's ratios spread well apart.
    assert np.ptp(scale, axis=0).min() > 1.0

    # The reloaded file scores what the run recorded, with the in-memory model, on dev and test.
    assert accuracy(model, small_data["test"]) == pytest.approx(record.test["accuracy"])
    assert accuracy(model, small_data["dev"]) == pytest.approx(record.dev["accuracy"])
    # And it loads and predicts the same in a fresh process, which imports only kmexp.layers.
    script = textwrap.dedent(
        f"""
        import json, keras, tensorflow as tf
        import kmexp.layers
        model = keras.models.load_model({str(tmp_path / "run" / MODEL_FILE)!r}, safe_mode=True)
        print(json.dumps(model.predict(tf.constant({TEXTS!r}), verbose=0).tolist()))
        """
    )
    import tensorflow as tf

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = np.array(json.loads(result.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(fresh, model.predict(tf.constant(TEXTS), verbose=0), atol=1e-6)


@pytest.mark.slow
def test_per_feature_scales_the_first_hidden_layer_and_a_kept_network_takes_each_jobs_own(tmp_path):
    from kmexp.training.kept import KeptNetworks

    first_data = write_small_data(tmp_path / "first")
    # Other training texts, same vocabulary size rounded up: the second job trains the kept network.
    (tmp_path / "second").mkdir()
    second_data = {**first_data, "train": write_tsv(tmp_path / "second" / "train.tsv", make_rows(30, seed=7))}
    common = ["model.nb_weighting=per_feature", "model.nb_alpha=1.0", "model.hidden_units=[8]", "encoder.preprocessor.sparse=false"]
    kept = KeptNetworks()
    scales = []
    for name, data in (("first", first_data), ("second", second_data)):
        record, model = run(tmp_path / f"run_{name}", [*files_overrides(data), *common], kept)
        layer = scaled_layer(model)
        assert layer.units == 8 and layer.name != "logits"
        ratios = expected_ratios(model, data["train"], record.labels, 1.0)
        np.testing.assert_allclose(layer.scale.numpy(), np.abs(ratios).max(axis=1, keepdims=True), rtol=1e-5, atol=1e-5)
        scales.append(layer.scale.numpy())
    assert kept.reused == 1
    assert not np.allclose(scales[0], scales[1])


def test_bad_values_end_the_run_with_one_line(tmp_path, small_data):
    args = [*files_overrides(small_data), "logger=none", f"hydra.run.dir={tmp_path / 'run'}", "encoder=embedding",
            "model.nb_weighting=per_class", "model.hidden_units=[8]", "model.nb_alpha=0"]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("kmexp: error: ") and line.count("is not allowed") == 3, line
    for part in ("model.nb_alpha=0.0 is not allowed: it must be > 0",
                 "model.nb_weighting=per_class is not allowed with an encoder.embedder: it weights bag features",
                 "model.nb_weighting=per_class is not allowed with model.hidden_units=[8]: per_class scales"):
        assert part in line, line


def test_an_unknown_weighting_is_named_with_the_allowed_ones(small_data):
    from kmexp.config.validation import validate
    from kmexp.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        validate(compose_config([*files_overrides(small_data), "model.nb_weighting=nbsvm"]))
    assert str(refused.value) == "model.nb_weighting=nbsvm is not allowed: it must be null (off) or one of auto, per_class, per_feature"


@pytest.mark.parametrize(
    ("overrides", "applied"),
    [
        ([], "per_class"),  # the default: a linear head over char n-grams
        (["encoder=tfidf"], "per_class"),
        (["model.hidden_units=[8]"], None),  # hidden layers: auto weights nothing, and the run is valid
        (["encoder=subword"], None),  # token ids through an embedder: nothing to weight
        (["model.nb_weighting=per_feature", "model.hidden_units=[8]"], "per_feature"),
        (["model.nb_weighting=null"], None),
    ],
)
def test_auto_weights_a_linear_head_over_bag_features_only(small_data, overrides, applied):
    from kmexp.config.validation import nb_weighting_of, validate

    cfg = compose_config([*files_overrides(small_data), *overrides])
    validate(cfg)
    assert nb_weighting_of(cfg.model, cfg.encoder) == applied
