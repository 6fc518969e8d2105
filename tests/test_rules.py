"""Each value rule is written once (kmexp/config/validation.py) and says one thing, one way.

A class that conf/ targets, called from Python without ``validate``, refuses a bad
value with the very message ``validate`` gives for the same key on the command line:
``key=value is not allowed: <what is allowed>``.
"""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from kmexp.config import register_configs
from kmexp.config.validation import validate
from kmexp.errors import ConfigError
from kmexp.paths import config_dir


def load(overrides):
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def validation_problem(overrides) -> str:
    """What validate() says about ``overrides``, each row here being one problem."""
    with pytest.raises(ConfigError) as err:
        validate(load(overrides))
    return str(err.value)


def class_problem(make) -> str:
    with pytest.raises(ConfigError) as err:
        make()
    return str(err.value)


def _device(cfg):
    from kmexp.devices import build_device

    return build_device(cfg.device)


def _subword(cfg):
    from kmexp.encoders import SubwordSequencer

    node = OmegaConf.to_container(cfg.encoder.preprocessor, resolve=True)
    node.pop("_target_")
    return SubwordSequencer(**node)


def _transformer(cfg):
    from kmexp.encoders import TransformerEmbedder

    node = OmegaConf.to_container(cfg.encoder.embedder)
    node.pop("_target_")
    return TransformerEmbedder(input_dim=10, **node)


def _lbfgs(cfg):
    from kmexp.optim import LBFGS

    node = OmegaConf.to_container(cfg.optimizer)
    node.pop("_target_")
    return LBFGS(**node)


def _standardize(cfg):
    import tensorflow as tf

    from kmexp.encoders.text import standardize

    return standardize(tf.constant(["x"]), OmegaConf.to_container(cfg.language.standardize, resolve=True))


def _sib200(cfg):
    from kmexp.data import SIB200

    node = OmegaConf.to_container(cfg.data, resolve=True)
    node.pop("_target_")
    return SIB200(**node)


@pytest.mark.parametrize(
    ("overrides", "make", "start"),
    [
        (["device.kind=fpga"], _device, "device.kind=fpga is not allowed: it must be one of auto,"),
        (["device.precision=float16"], _device, "device.precision=float16 is not allowed: it must be one of float32,"),
        (["encoder=subword", "encoder.preprocessor.model_type=wordpiece"], _subword,
         "encoder.preprocessor.model_type=wordpiece is not allowed: it must be one of unigram, bpe"),
        (["encoder=transformer", "encoder.embedder.num_heads=3"], _transformer,
         "encoder.embedder.dim=64 is not allowed with encoder.embedder.num_heads=3: it must be a multiple of num_heads"),
        (["encoder=transformer", "encoder.embedder.dropout=1.0"], _transformer,
         "encoder.embedder.dropout=1.0 is not allowed: it must be in [0, 1)"),
        (["optimizer=lbfgs", "optimizer.line_search=wolfe"], _lbfgs,
         "optimizer.line_search=wolfe is not allowed: it must be one of strong_wolfe, armijo"),
        (["optimizer=lbfgs", "optimizer.iterations_per_epoch=0"], _lbfgs,
         "optimizer.iterations_per_epoch=0 is not allowed: it must be an integer >= 1"),
        (["optimizer=lbfgs", "optimizer.learning_rate=0"], _lbfgs, "optimizer.learning_rate=0.0 is not allowed: it must be > 0"),
        (["language.standardize.case=upper"], _standardize,
         "language.standardize.case=upper is not allowed: it must be one of fold, lower, none"),
        (["data.timeout_s=0"], _sib200, "data.timeout_s=0.0 is not allowed: it must be > 0"),
        (["language.code=fra_Latm"], _sib200,
         "language.code=fra_Latm is not allowed: it must be a SIB-200 language code; closest: fra_Latn"),
    ],
    ids=lambda value: value[-1] if isinstance(value, list) else "",
)
def test_a_class_refuses_a_value_in_the_words_of_validate(overrides, make, start):
    problem = validation_problem(overrides)
    assert problem.startswith(start), problem
    assert class_problem(lambda: make(load(overrides))) == problem


def test_a_metric_refuses_an_average_in_the_words_of_validate():
    from kmexp.metrics import F1

    problem = validation_problem(["metric.macro_f1.average=mean"])
    assert problem.startswith("metric.macro_f1.average=mean is not allowed: ")
    # The class does not know its name under metric.<name>: it names itself instead.
    assert class_problem(lambda: F1("mean")) == problem.replace("metric.macro_f1.", "F1.")


def test_files_refuse_a_dev_share_in_the_words_of_validate():
    from kmexp.data import LabeledFiles

    overrides = ["data=files", "data.train=a.tsv", "data.test=b.tsv", "data.dev_fraction=0"]
    problem = validation_problem(overrides)
    cfg = OmegaConf.to_container(load(overrides).data, resolve=True)
    cfg.pop("_target_")
    assert class_problem(lambda: LabeledFiles(**cfg)) == problem == "data.dev_fraction=0.0 is not allowed: it must be in (0, 1)"
