"""Typed schemas (kmexp/schemas.py) and value checks (kmexp.config.validate).

The schemas catch unknown keys and wrong types while Hydra composes; validate()
catches values out of range, unknown names and combinations that cannot work.
The YAML files stay the one source of every value: these tests check that the
composed config holds exactly what the files say.
"""

from __future__ import annotations

import dataclasses

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate
from omegaconf import MISSING, OmegaConf

from kmexp.config import schemas
from kmexp.config import register_configs
from kmexp.config.validation import validate, validate_targets
from kmexp.errors import ConfigError
from kmexp.paths import config_dir, group_options

# Every group the root schema types, with the base class its options' schemas extend.
GROUPS = {
    f.name: f.type
    for f in dataclasses.fields(schemas.KmexpConfig)
    if isinstance(f.type, type) and dataclasses.is_dataclass(f.type)
}
# Keys an option needs from the command line before it composes to something usable.
REQUIRED = {
    ("language", "generic"): ["language.code=yor_Latn"],
    ("data", "files"): ["data.train=train.tsv", "data.test=test.tsv"],
    ("data", "hf"): ["data.path=owner/dataset"],
    ("encoder", "pretrained"): ["encoder.preset=xlm_roberta_base_multi"],
}
# Objects cheap enough to build for every option (encoders and data are built in test_config.py).
CHEAP = ("activation", "loss", "optimizer", "metric")


def load(overrides=()):
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def selection(group: str, option: str) -> list[str]:
    chosen = f"metric=[{option}]" if group == "metric" else f"{group}={option}"
    return [chosen, *REQUIRED.get((group, option), [])]


def all_options() -> list[tuple[str, str]]:
    return [(group, option) for group in [*GROUPS, "metric"] for option in group_options(group)]


def yaml_of(group: str, option: str) -> dict:
    """An option's values as written (values, interpolations), without its defaults list.

    An option that builds on another option of its group (``defaults: [pretrained]``) has that
    option's values under its own; a ``# @package _global_`` file holds its group's values
    under the group's key.
    """
    path = config_dir() / group / f"{option}.yaml"
    values = OmegaConf.to_container(OmegaConf.load(path))
    defaults = values.pop("defaults", [])
    if path.read_text(encoding="utf-8").startswith("# @package _global_"):
        values = values[group]
    for base in (entry for entry in defaults if isinstance(entry, str) and entry not in ("_self_",) and "/" not in entry):
        values = OmegaConf.to_container(OmegaConf.merge(yaml_of(group, base), values))
    return values


def leaves(tree, prefix: str = "") -> dict:
    """Flatten nested dicts to {dotted.key: value}; lists are values."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    if not tree and prefix:
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(leaves(value, f"{prefix}.{key}" if prefix else key))
    return out


# --- composition: unknown keys and wrong types ------------------------------------------


@pytest.mark.parametrize(
    "override, key",
    [
        ("optimizer.learning_rat=0.1", "optimizer.learning_rat"),
        ("trainer.epoch=3", "trainer.epoch"),
        ("model.hiden_units=[8]", "model.hiden_units"),
        ("encoder.preprocessor.ngram=[1,2]", "encoder.preprocessor.ngram"),
        ("language.standardize.casing=fold", "language.standardize.casing"),
        ("metric.macro_f1.averag=macro", "metric.macro_f1.averag"),
        ("sed=1", "sed"),
    ],
)
def test_unknown_key_fails_at_composition(override, key):
    with pytest.raises(ConfigCompositionException, match=f"Could not override '{key}'"):
        load([override])


@pytest.mark.parametrize(
    "override",
    [
        "trainer.epochs=ten",
        "seed=abc",
        "model.hidden_units=abc",
        "model.hidden_units=[8,wide]",
        "model.dropout=high",
        "optimizer.learning_rate=fast",
        "language.spaces=maybe",
        "encoder.preprocessor.sparse=maybe",
        "resume=[1,2]",
    ],
)
def test_wrong_type_fails_at_composition_naming_key_and_value(override):
    with pytest.raises(ConfigCompositionException) as err:
        load([override])
    key, value = override.split("=")
    assert f"{key}={value}" in str(err.value)
    assert err.value.__cause__ is not None  # OmegaConf's reason (could not be converted...), shown by the CLI


def test_unknown_group_option_lists_the_real_options():
    with pytest.raises(MissingConfigException) as err:
        load(["loss=nope"])
    message = str(err.value)
    assert "Could not find 'loss/nope'" in message and "Available options in 'loss'" in message
    for option in group_options("loss"):
        assert f"\t{option}\n" in message
    assert "no_arguments" not in message  # schemas live in schema/, not among the options


def test_append_still_adds_a_key_on_purpose():
    """`+key=value` is Hydra's explicit append: a Keras argument the YAML does not list."""
    cfg = load(["+optimizer.clipnorm=1.0"])
    assert instantiate(cfg.optimizer).clipnorm == pytest.approx(1.0)


# --- every option composes, typed, with exactly the YAML's values -------------------------


@pytest.mark.parametrize("group, option", all_options())
def test_every_option_composes_typed_and_validates(group, option):
    cfg = load(selection(group, option))
    nodes = cfg.metric.values() if group == "metric" else [cfg[group]]
    base = schemas.MetricConfig if group == "metric" else GROUPS[group]
    for node in nodes:
        assert issubclass(OmegaConf.get_type(node), base)
    if (group, option) != ("data", "files"):  # its train/test paths are required (???) and made up here
        assert OmegaConf.missing_keys(cfg) == set()
    validate(cfg)
    validate_targets(cfg)
    if group in CHEAP:
        built = [instantiate(node) for node in nodes]
        assert all(obj is not None for obj in built)


@pytest.mark.parametrize("group, option", all_options())
def test_composed_values_are_the_yaml_values(group, option):
    """Every value comes from the YAML: the same keys, the same values, nothing added by a dataclass."""
    cfg = load(selection(group, option))
    composed = OmegaConf.to_container(cfg.metric if group == "metric" else cfg[group])
    expected = yaml_of(group, option)
    if (config_dir() / group / "_common.yaml").is_file():  # an option is _common.yaml with its own keys on top
        expected = OmegaConf.to_container(OmegaConf.merge(yaml_of(group, "_common"), expected))
    if (group, option) in REQUIRED:  # the command line filled these in
        expected = OmegaConf.to_container(OmegaConf.merge(expected, OmegaConf.from_dotlist(
            [item.split(".", 1)[1] for item in REQUIRED[(group, option)]]
        )))
    assert leaves(composed) == leaves(expected)  # 30 == 30.0: a float field may widen an int


def test_schema_fields_hold_no_values():
    """One source of truth: a schema field is MISSING, or an empty node of its own schema type."""
    classes = {node for _, _, node in schemas.SCHEMAS} | {schemas.KmexpConfig}
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                assert f.default == MISSING, (cls.__name__, f.name, f.default)
            else:
                made = f.default_factory()
                assert made == {} or all(getattr(made, g.name) == MISSING for g in dataclasses.fields(made)), (
                    cls.__name__, f.name,
                )


def test_specialisations_merge_into_the_typed_groups():
    """`language_encoder/` and `encoder_training/` override keys under encoder, optimizer and trainer."""
    cfg = load(["language=zh"])
    assert OmegaConf.get_type(cfg.encoder.preprocessor) is schemas.TextFeaturizerConfig
    assert cfg.encoder.preprocessor.analyzer == "char" and list(cfg.encoder.preprocessor.ngram_range) == [1, 3]
    cfg = load(["encoder=transformer"])
    assert OmegaConf.get_type(cfg.optimizer) is schemas.AdamConfig
    assert cfg.optimizer.learning_rate == pytest.approx(0.01) and cfg.trainer.monitor == "objective"
    cfg = load(["language=multi"])
    assert OmegaConf.get_type(cfg.language) is schemas.MultiLanguageConfig
    assert len(cfg.language.codes) == 8 and cfg.encoder.preprocessor.num_bins == 1048576
    validate(cfg)


def test_sweep_preset_and_hydra_block_still_compose():
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["+sweep=locales"], return_hydra_config=True)
    assert "zh-Hant" in cfg.hydra.sweeper.params.language
    assert cfg.hydra.callbacks.kmexp._target_ == "kmexp.sweep.SweepCallback"
    assert not any(group.startswith("schema") for group in cfg.hydra.runtime.choices)


# --- validate(): one test per check ---------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["optimizer.learning_rate=0"], "optimizer.learning_rate=0.0 is not allowed: it must be > 0"),
        (["optimizer.beta_1=1.0"], "optimizer.beta_1=1.0 is not allowed: it must be in [0, 1)"),
        (["optimizer=sgd", "optimizer.momentum=-0.1"], "optimizer.momentum=-0.1"),
        (["optimizer=rmsprop", "optimizer.rho=1.5"], "optimizer.rho=1.5"),
        (["optimizer=adamw", "optimizer.weight_decay=-1"], "optimizer.weight_decay=-1.0 is not allowed"),
        (["optimizer=lbfgs", "optimizer.line_search=wolfe"],
         "optimizer.line_search=wolfe is not allowed: it must be one of strong_wolfe, armijo"),
        (["data.timeout_s=0"], "data.timeout_s=0.0 is not allowed: it must be > 0"),
        (["data=files", "data.train=a.tsv", "data.test=b.tsv", "data.dev_fraction=1.0"],
         "data.dev_fraction=1.0 is not allowed: it must be in (0, 1)"),
        (["optimizer=lbfgs", "optimizer.history_size=0"], "optimizer.history_size=0 is not allowed: it must be an integer >= 1"),
        (["model.dropout=1.0"], "model.dropout=1.0 is not allowed: it must be in [0, 1)"),
        (["model.dropout=-0.1"], "model.dropout=-0.1"),
        (["model.dropout=0.2"], "model.dropout=0.2 is not allowed with model.hidden_units=[]: dropout has no effect on a linear head"),
        (["model.l2=-1"], "model.l2=-1.0"),
        (["model.hidden_units=[8,0]"], "model.hidden_units[1]=0 is not allowed: it must be >= 1"),
        (["trainer.batch_size=0"], "trainer.batch_size=0 is not allowed: it must be >= 1"),
        (["trainer.epochs=0"], "trainer.epochs=0 is not allowed: it must be >= 1"),
        (["trainer.patience=-1"], "trainer.patience=-1"),
        (["trainer.min_delta=-0.1"], "trainer.min_delta=-0.1 is not allowed: it must be >= 0"),
        (["trainer.steps_per_execution=0"], "trainer.steps_per_execution=0"),
        (["trainer.backup_interval_s=-1"], "trainer.backup_interval_s=-1.0 is not allowed: it must be >= 0"),
        (["trainer.monitor=accuracy"], "trainer.monitor=accuracy is not allowed: it must be one of objective, loss"),
        (["encoder.preprocessor.ngram_range=[0,2]"], "encoder.preprocessor.ngram_range=[0, 2] is not allowed"),
        (["encoder.preprocessor.ngram_range=[3,2]"], "encoder.preprocessor.ngram_range=[3, 2]"),
        (["encoder.preprocessor.ngram_range=[1,2,3]"], "encoder.preprocessor.ngram_range=[1, 2, 3]"),
        (["encoder.preprocessor.word_ngram_range=[2,1]"], "encoder.preprocessor.word_ngram_range=[2, 1] is not"),
        (["encoder.preprocessor.analyzer=words"], "analyzer=words is not allowed: it must be one of word,"),
        (["encoder.preprocessor.output_mode=onehot"], "encoder.preprocessor.output_mode=onehot"),
        (["encoder.preprocessor.max_tokens=0"], "encoder.preprocessor.max_tokens=0"),
        (["encoder=subword", "encoder.preprocessor.model_type=wordpiece"], "encoder.preprocessor.model_type=wordpiece"),
        (["encoder=subword", "encoder.preprocessor.character_coverage=1.5"], "character_coverage=1.5"),
        (["encoder=byte", "encoder.preprocessor.max_length=0"], "encoder.preprocessor.max_length=0"),
        (["encoder=embedding", "encoder.embedder.dim=0"], "encoder.embedder.dim=0"),
        (["encoder=transformer", "encoder.embedder.dropout=1.0"], "encoder.embedder.dropout=1.0"),
        (["encoder=transformer", "encoder.embedder.num_heads=3"], "encoder.embedder.dim=64 is not allowed with"),
        (["activation.activation=relux"], "activation.activation=relux is not allowed: it must be one of celu, elu,"),
        (["activation=leaky_relu", "activation.negative_slope=-1"], "activation.negative_slope=-1.0"),
        (["activation._target_=keras.layers.Nope"], "activation._target_=keras.layers.Nope is not allowed"),
        (["loss._target_=keras.optimizers.Adam"], "loss._target_=keras.optimizers.Adam is not allowed"),
        (["loss._target_=keras.losses.SparseCategoricalCrossentropy"], "it takes integer labels"),
        (["loss.from_logits=false"], "loss.from_logits=false is not allowed: it must be true"),
        (["loss=mse", "loss._target_=keras.losses.CategoricalCrossentropy"], "add +loss.from_logits=true"),
        (["loss.label_smoothing=1.0"], "loss.label_smoothing=1.0 is not allowed: it must be in [0, 1)"),
        (["loss=label_smoothing", "loss.label_smoothing=-0.1"], "loss.label_smoothing=-0.1"),
        (["loss=focal", "loss.gamma=-1"], "loss.gamma=-1.0 is not allowed: it must be >= 0"),
        (["loss=focal", "loss.alpha=1.5"], "loss.alpha=1.5 is not allowed: it must be in [0, 1]"),
        (["metric.macro_f1.average=mikro"], "metric.macro_f1.average=mikro is not allowed: it must be one of macro,"),
        (["metric.accuracy._target_=kmexp.metrics.Nope"], "metric.accuracy._target_=kmexp.metrics.Nope"),
        (["metric=[]"], "metric=[] is not allowed: it selects no metric"),
        (["language.code=fra_Latm"], "language.code=fra_Latm is not allowed: it must be a SIB-200 language code; closest: fra_Latn"),
        (["language=multi", "language.codes=[fra_Latn,xx_Fake]"], "language.codes[1]=xx_Fake is not allowed: it must be a SIB-200 language code"),
        (["language.word_fallback=skip"], "language.word_fallback=skip is not allowed: it must be one of error, char"),
        (["language.standardize.case=upper"], "language.standardize.case=upper"),
        (["language.standardize.normalization=NFD"], "language.standardize.normalization=NFD"),
        (["language.standardize.digits=drop"], "language.standardize.digits=drop"),
        (["language=generic", "language.code=lao_Laoo", "language.word_fallback=error", "encoder=onehot"],
         ("encoder.preprocessor.analyzer=word is not allowed with language.word_fallback=error: it splits words on "
          "spaces, but lao_Laoo (Laoo script) writes none; set language.word_fallback=char")),
        (["language=th", "language.word_fallback=error", "encoder=tfidf"],
         ("encoder.preprocessor.analyzer=word is not allowed with language.word_fallback=error: it splits words on "
          "spaces, but tha_Thai (Thai script) writes none")),
        (["language=ja", "language.word_fallback=error", "encoder=embedding"],
         ("encoder.preprocessor.analyzer=word is not allowed with language.word_fallback=error: it splits words on "
          "spaces, but jpn_Jpan (Jpan script) writes none")),
        (["language=multi", "encoder=onehot"],
         ("encoder.preprocessor.analyzer=word is not allowed with language.word_fallback=error: it splits words on "
          "spaces, but language.codes has zho_Hans, jpn_Jpan, tha_Thai, which write none")),
        (["language.fallback_ngram_range=[2,1]"], "language.fallback_ngram_range=[2, 1] is not allowed: it must be"),
        (["eval_languages=[deu_Latx]"], "eval_languages[0]=deu_Latx is not allowed: it must be a SIB-200 language code"),
        (["device.kind=fpga"], "device.kind=fpga is not allowed: it must be one of auto, cpu, gpu, multi_gpu,"),
        (["device.precision=float16"], "device.precision=float16"),
        (["device.jit_compile=true"], "device.jit_compile=true is not allowed with encoder.preprocessor.sparse=true: XLA cannot compile sparse"),
    ],
)
def test_validate_names_key_value_and_what_is_allowed(overrides, expected):
    """Each row: one problem, found by validate() or, for the classes a `_target_` names, validate_targets()."""
    cfg = load(overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
        validate_targets(cfg)
    assert expected in str(err.value)


def test_validate_reports_every_problem_at_once():
    with pytest.raises(ConfigError) as err:
        validate(load(["optimizer.learning_rate=0", "trainer.epochs=0", "trainer.batch_size=0", "model.l2=-1"]))
    assert str(err.value).count("is not allowed: ") == 4


@pytest.mark.parametrize("name", ["relu", "gelu", "mish", "softplus"])
def test_any_keras_activation_name_is_allowed(name):
    cfg = load([f"activation.activation={name}"])
    validate(cfg)
    validate_targets(cfg)
