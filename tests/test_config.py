"""Every option of every config group composes with Hydra's compose API and builds its object."""

from __future__ import annotations

import contextlib
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from kmexp.builders import (
    build_activation,
    build_data,
    build_embedder,
    build_logger,
    build_loss,
    build_metrics,
    build_network,
    build_optimizer,
    build_preprocessor,
)
from kmexp.config import register_configs
from kmexp.config.validation import validate
from kmexp.devices import build_device
from kmexp.errors import ConfigError, DeviceError
from kmexp.network import export_model
from kmexp.paths import config_dir, group_options

from conftest import classic_encoders, make_rows

GROUPS = ("data", "language", "encoder", "activation", "loss", "optimizer", "metric", "device", "model", "trainer", "logger")


def options(group: str) -> list[str]:
    return group_options(group)


def load(overrides: list[str] = ()):
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_every_group_exists_with_the_contracted_default():
    cfg = load()
    assert set(GROUPS) <= set(cfg)
    assert cfg.language.code == "eng_Latn"
    assert cfg.encoder.preprocessor.analyzer == "char_wb"
    assert list(cfg.metric) == ["accuracy", "macro_f1"]
    assert cfg.optimizer._target_ == "keras.optimizers.Adam"
    assert cfg.logger._target_ == "kmexp.loggers.WandbLogger"
    assert cfg.device.kind == "auto" and cfg.seed == 0
    validate(cfg)


def test_groups_have_at_least_the_contracted_options():
    assert {"sib200", "files"} <= set(options("data"))
    assert {"onehot", "char_ngram", "embedding"} <= set(options("encoder"))
    assert {"relu", "gelu", "sigmoid", "tanh", "silu", "elu", "selu", "leaky_relu"} <= set(options("activation"))
    assert {"crossentropy", "label_smoothing", "focal", "mse", "squared_hinge"} <= set(options("loss"))
    assert {"adam", "adamw", "sgd", "adagrad", "rmsprop", "lbfgs"} <= set(options("optimizer"))
    assert {"accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall"} <= set(options("metric"))
    assert {"auto", "cpu", "gpu"} <= set(options("device"))
    assert {"wandb", "csv", "none"} <= set(options("logger"))
    assert len(set(options("language")) - {"generic"}) >= 26


@pytest.mark.parametrize("name", options("language"))
def test_language_presets_compose(name):
    extra = ["language.code=yor_Latn"] if name == "generic" else []
    cfg = load([f"language={name}", *extra])
    resolved = OmegaConf.to_container(cfg.language, resolve=True)
    assert resolved["code"] == cfg.data.code
    assert resolved["direction"] in ("ltr", "rtl", "mixed") and isinstance(resolved["spaces"], bool)  # mixed: language=multi
    validate(cfg)


@pytest.mark.parametrize("name", options("activation"))
def test_activations_build(name):
    layer = build_activation(load([f"activation={name}"]).activation)
    out = layer(tf.constant([[-1.0, 0.0, 2.0]]))
    assert out.shape == (1, 3) and np.all(np.isfinite(out))


@pytest.mark.parametrize("name", options("loss"))
def test_losses_build(name):
    loss = build_loss(load([f"loss={name}"]).loss)
    targets = tf.constant([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # The network outputs one score (logit) per label; every loss takes scores.
    good = loss(targets, tf.constant([[3.0, -1.0, -1.0], [-1.0, 2.0, -1.0]]))
    bad = loss(targets, tf.constant([[-1.0, 3.0, -1.0], [2.0, -1.0, -1.0]]))
    assert math.isfinite(float(good)) and float(good) < float(bad)


@pytest.mark.parametrize("name", options("optimizer"))
def test_optimizers_build_and_expose_learning_rate(name):
    cfg = load([f"optimizer={name}", "trainer.batch_size=64", "trainer.epochs=40"])
    optimizer = build_optimizer(cfg.optimizer, cfg.trainer, n_train=640)
    if name == "warmup_adamw":  # the rate climbs to its peak, then falls: 40 x 10 = 400 steps, 40 of them warming up
        rates = []
        for step in (0, 39, 219, 399):
            optimizer.iterations.assign(step)
            rates.append(float(optimizer.learning_rate))
        assert rates == pytest.approx([cfg.optimizer.learning_rate * r for r in (1 / 40, 1, 0.5, 0)], rel=1e-5)
    else:
        assert float(optimizer.learning_rate) == pytest.approx(cfg.optimizer.learning_rate)


def test_gradient_accumulation_reaches_the_keras_optimizer():
    cfg = load(["optimizer=adamw", "trainer.gradient_accumulation_steps=4"])
    assert build_optimizer(cfg.optimizer, cfg.trainer, n_train=640).gradient_accumulation_steps == 4


def test_metrics_select_several_in_order():
    cfg = load(["metric=[macro_f1,accuracy,weighted_f1,macro_precision,macro_recall]"])
    metrics = build_metrics(cfg.metric)
    assert list(metrics) == ["macro_f1", "accuracy", "weighted_f1", "macro_precision", "macro_recall"]
    cm = np.array([[3, 1], [0, 4]])
    assert metrics["accuracy"](cm) == pytest.approx(7 / 8)


@pytest.mark.parametrize("name", ["auto", "cpu"])
def test_devices_build_a_strategy(name):
    strategy = build_device(load([f"device={name}"]).device)
    assert isinstance(strategy, tf.distribute.Strategy)


def test_gpu_device_fails_clearly_without_a_gpu():
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible")
    with pytest.raises(DeviceError, match="no GPU is visible"):
        build_device(load(["device=gpu"]).device)


@pytest.mark.parametrize("name", options("logger"))
def test_loggers_build(name, tmp_path):
    logger = build_logger(load([f"logger={name}"]).logger, tmp_path)
    assert hasattr(logger, "log_epoch") and hasattr(logger, "finish")


def test_data_options_build(small_data, tmp_path):
    sib = build_data(load(["language=fr", f"data.cache_dir={tmp_path}"]).data)
    assert sib.code == "fra_Latn"
    files = build_data(load(["data=files", f"data.train={small_data['train']}", f"data.test={small_data['test']}"]).data)
    splits = files.load()
    assert len(splits.train.texts) + len(splits.dev.texts) == 90 and len(splits.labels) == 3


@pytest.mark.parametrize("name", classic_encoders())
@pytest.mark.parametrize("hidden", ["[]", "[16,8]"])
def test_encoders_and_model_build_end_to_end(name, hidden):
    cfg = load([f"encoder={name}", f"model.hidden_units={hidden}", "model.dropout=0.1"])
    texts = [row["text"] for row in make_rows(10, seed=0)]
    preprocessor = build_preprocessor(cfg.encoder.preprocessor, cfg.language, texts)
    embedder = build_embedder(cfg.encoder.embedder, preprocessor)
    features = preprocessor.compute_output_spec(keras.KerasTensor((None,), dtype="string"))
    network = build_network(cfg.model, cfg.activation, embedder, features, 3)
    probabilities = export_model(preprocessor, network).predict(tf.constant(texts[:4]), verbose=0)
    assert probabilities.shape == (4, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "override, key",
    [
        ("optimizer.learning_rate=-1", "optimizer.learning_rate"),
        ("model.dropout=1.5", "model.dropout"),
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("trainer.epochs=0", "trainer.epochs"),
        ("model.hidden_units=[8,0]", "model.hidden_units[1]"),
        ("encoder.preprocessor.ngram_range=[3,2]", "encoder.preprocessor.ngram_range"),
        ("language.code=xx_Fake", "language.code"),
        ("device.jit_compile=true", "device.jit_compile"),
        ("data.max_chars=0", "data.max_chars=0 is not allowed: it must be an integer >= 1"),
        ("data.on_long_text=cut", "data.on_long_text=cut is not allowed: it must be one of truncate, error"),
    ],
)
def test_validation_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        validate(load([override]))


def test_validation_reports_all_problems_at_once():
    with pytest.raises(ConfigError) as err:
        validate(load(["optimizer.learning_rate=0", "trainer.epochs=0", "model.dropout=-0.1"]))
    message = str(err.value)
    assert "optimizer.learning_rate" in message and "trainer.epochs" in message and "model.dropout" in message


@pytest.mark.parametrize(
    "language",
    [["language=zh"], ["language=zh-Hant"], ["language=ja"], ["language=th"],
     # No preset: the fallback follows the code's script (conf/language/_scripts.yaml).
     ["language=generic", "language.code=zho_Hans"], ["language=generic", "language.code=khm_Khmr"]],
    ids=lambda overrides: overrides[-1].split("=")[1],
)
@pytest.mark.parametrize("encoder", ["onehot", "tfidf", "embedding"])
def test_word_encoders_fall_back_to_characters_without_spaces(language, encoder):
    # The config asks for words; language.word_fallback=char makes the built layer count characters.
    cfg = load([*language, f"encoder={encoder}"])
    assert cfg.language.spaces is False and cfg.language.word_fallback == "char"
    assert cfg.encoder.preprocessor.analyzer == "word"
    validate(cfg)
    texts = [row["text"] for row in make_rows(10, seed=0)]
    preprocessor = build_preprocessor(cfg.encoder.preprocessor, cfg.language, texts)
    assert preprocessor.analyzer == "char"
    assert list(preprocessor.ngram_range) == list(cfg.language.fallback_ngram_range) == [1, 2]
    # Everything else is the encoder's own setting.
    assert preprocessor.standardize == OmegaConf.to_container(cfg.language.standardize, resolve=True)
    assert preprocessor.max_tokens == cfg.encoder.preprocessor.max_tokens


def test_the_fallback_ngram_range_is_a_language_setting():
    cfg = load(["language=zh", "encoder=tfidf", "language.fallback_ngram_range=[1,3]"])
    validate(cfg)
    preprocessor = build_preprocessor(cfg.encoder.preprocessor, cfg.language, ["中文字", "文字"])
    assert (preprocessor.analyzer, list(preprocessor.ngram_range)) == ("char", [1, 3])


@pytest.mark.parametrize("language", ["en", "fr", "ar"])
def test_word_encoders_split_words_where_scripts_use_spaces(language):
    cfg = load([f"language={language}", "encoder=onehot"])
    assert cfg.encoder.preprocessor.analyzer == "word"
    assert build_preprocessor(cfg.encoder.preprocessor, cfg.language, ["a b", "c"]).analyzer == "word"


@pytest.mark.parametrize(
    "overrides",
    [
        ["language=generic", "language.code=lao_Laoo", "language.word_fallback=error", "encoder=onehot"],
        ["language=zh", "language.word_fallback=error", "encoder=onehot"],
        ["language=th", "language.word_fallback=error", "encoder=tfidf"],
        ["language=ja", "language.word_fallback=error", "encoder=embedding"],
    ],
)
def test_word_encoder_on_a_spaceless_language_without_fallback_is_an_error(overrides):
    cfg = load(overrides)
    assert cfg.language.word_fallback == "error"
    with pytest.raises(ConfigError, match="encoder.preprocessor.analyzer=word is not allowed with language.word_fallback=error"):
        validate(cfg)
    # The same rule for a caller that builds the layer without validating.
    with pytest.raises(ConfigError, match="encoder.preprocessor.analyzer=word is not allowed with language.word_fallback=error"):
        build_preprocessor(cfg.encoder.preprocessor, cfg.language, ["a b"])


@pytest.mark.parametrize("language", ["zh", "zh-Hant", "ja", "generic language.code=zho_Hans", "generic language.code=jpn_Jpan"])
def test_char_ngram_counts_characters_across_clauses_in_cjk(language):
    # By the script, so also for a code reached through generic.
    cfg = load([f"language={language.split()[0]}", *language.split()[1:]])
    assert cfg.encoder.preprocessor.analyzer == "char"
    assert list(cfg.encoder.preprocessor.ngram_range) == [1, 3]


@pytest.mark.parametrize("encoder", ["embedding", "byte", "subword", "transformer"])
def test_sequence_encoders_get_their_own_adam_step(encoder):
    assert load([f"encoder={encoder}"]).optimizer.learning_rate == pytest.approx(0.01)
    assert load([f"encoder={encoder}", "optimizer.learning_rate=0.003"]).optimizer.learning_rate == pytest.approx(0.003)
    assert load(["encoder=char_ngram"]).optimizer.learning_rate == pytest.approx(0.05)


@pytest.mark.parametrize(
    "arguments",
    [
        ["language=fr"],
        ["language=generic", "language.code=fra_Latn", "seed=0", "+extra={a: 1}"],
        ["language=fr", "hydra.mode=RUN"],  # the mode set: Hydra adds no hydra.mode=RUN
        # A sweep: Hydra's compositions, as they are (without kmexp's report, which needs jobs that train).
        ["--multirun", "language=fr", "seed=0,1", "~hydra.callbacks.kmexp"],
    ],
)
def test_a_single_run_composes_its_config_once_and_gets_the_config_hydra_composes(tmp_path, monkeypatch, arguments):
    import hydra
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from kmexp.compat import one_composition_for_a_run

    register_configs()
    compose_impl = ConfigLoaderImpl._load_configuration_impl
    composed = []

    def counted(loader, *args, **kwargs):
        composed.append(kwargs["run_mode"])
        return compose_impl(loader, *args, **kwargs)

    monkeypatch.setattr(ConfigLoaderImpl, "_load_configuration_impl", counted)
    seen: list[str] = []

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
    def task(cfg) -> None:  # what a task gets: its config and Hydra's, as YAML
        seen.append(OmegaConf.to_yaml(HydraConfig.get()) + OmegaConf.to_yaml(cfg))

    folders = [f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    monkeypatch.setattr("sys.argv", ["kmexp", *arguments, *folders])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    try:
        task()
        by_hydra, seen[:], composed_by_hydra, composed[:] = list(seen), [], list(composed), []
        with one_composition_for_a_run():
            task()
    finally:
        GlobalHydra.instance().clear()
    assert seen == by_hydra
    if "--multirun" in arguments:
        assert composed == composed_by_hydra
    else:
        assert len(composed_by_hydra) == 2 and len(composed) == 1


@pytest.mark.parametrize("arguments", [["language=nope"], ["language=fr", "seed=abc"], ["language=fr", "nokey=1"]])
def test_a_single_run_whose_config_does_not_compose_fails_with_hydras_error(tmp_path, monkeypatch, arguments):
    import hydra
    from hydra.core.global_hydra import GlobalHydra

    from kmexp.compat import one_composition_for_a_run

    register_configs()

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
    def task(cfg) -> None:
        raise AssertionError("a config that does not compose reached the task")

    monkeypatch.setattr("sys.argv", ["kmexp", *arguments, f"hydra.run.dir={tmp_path}"])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # Hydra raises its error instead of printing it
    raised = []
    try:
        for context in (contextlib.nullcontext(), one_composition_for_a_run()):
            with pytest.raises(Exception) as error, context:
                task()
            raised.append((type(error.value), str(error.value), repr(error.value.__cause__)))
    finally:
        GlobalHydra.instance().clear()
    assert raised[0] == raised[1]
