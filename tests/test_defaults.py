"""One home for each default: the YAML in conf/.

Every ``_target_`` in conf/ that names one of kmexp's own classes (``kmexp.…``) is
imported, and each argument its YAML sets is compared with the constructor's
signature: an argument either has no default (the YAML must give it) or its default
equals the YAML's value, so calling a class from Python builds the same thing as
the command line. Where several YAML files give one class's argument different
values (TextFeaturizer's ``ngram_range`` in char_ngram, onehot and tfidf), the
argument must have no default at all: no single default could agree with them all.

Only literal values are compared: an interpolation (``${language.standardize}``,
``${oc.env:...}``) has no value until the whole config composes.

Keras' own classes (``keras.optimizers.Adam``, ``keras.losses.…``, ``keras.layers.…``)
and Hydra's plugins are left out: their defaults are theirs, not ours to change, and
the YAML states every value kmexp relies on.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from pathlib import Path

import pytest
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from kmexp.paths import config_dir

# Keys Hydra reads itself, not arguments of the target.
HYDRA_KEYS = frozenset({"_target_", "_partial_", "_convert_", "_recursive_", "_args_"})
CONF = Path(config_dir())


# What _literal returns for a value that is, or holds, an interpolation.
_INTERPOLATED = object()


def _literal(node: DictConfig | ListConfig, key):
    """The value at ``node[key]`` as written, in plain Python; ``_INTERPOLATED`` if any part of it is one."""
    if OmegaConf.is_interpolation(node, key):
        return _INTERPOLATED
    value = node._get_node(key)
    if isinstance(value, (DictConfig, ListConfig)):
        keys = value.keys() if isinstance(value, DictConfig) else range(len(value))
        parts = {k: _literal(value, k) for k in keys}
        if any(part is _INTERPOLATED for part in parts.values()):
            return _INTERPOLATED
        return parts if isinstance(value, DictConfig) else [parts[i] for i in keys]
    return value._value()


def _targets(node, path: str):
    """(path, target, {key: literal value}) for every kmexp ``_target_`` at or below ``node``."""
    if isinstance(node, DictConfig):
        if "_target_" in node and not OmegaConf.is_interpolation(node, "_target_"):
            target = node._get_node("_target_")._value()
            if isinstance(target, str) and target.startswith("kmexp."):
                # A file's own `defaults:` is Hydra's defaults list, not an argument.
                skipped = HYDRA_KEYS | ({"defaults"} if path == "" else set())
                values = {key: _literal(node, key) for key in node if key not in skipped}
                yield path, target, {key: value for key, value in values.items() if value is not _INTERPOLATED}
        for key in node:
            if not OmegaConf.is_interpolation(node, key):
                yield from _targets(node._get_node(key), f"{path}.{key}" if path else str(key))
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            if not OmegaConf.is_interpolation(node, i):
                yield from _targets(node._get_node(i), f"{path}[{i}]")


def yaml_targets() -> list[tuple[str, str, dict]]:
    """Every kmexp ``_target_`` in conf/: (file:path, target, literal arguments)."""
    found = []
    for file in sorted(CONF.rglob("*.yaml")):
        for path, target, values in _targets(OmegaConf.load(file), ""):
            found.append((f"{file.relative_to(CONF)}:{path or '<root>'}", target, values))
    return found


TARGETS = yaml_targets()


def _same(yaml_value, default) -> bool:
    """Equal as the YAML means it: a list and a tuple alike, but true is not 1."""
    if isinstance(default, tuple):
        default = list(default)
    if isinstance(yaml_value, bool) or isinstance(default, bool):
        return type(yaml_value) is type(default) and yaml_value == default
    return yaml_value == default


def test_conf_names_the_kmexp_classes():
    """The walk finds the targets this test is about (a broken walk would pass every test vacuously)."""
    names = {target for _, target, _ in TARGETS}
    assert {
        "kmexp.encoders.TextFeaturizer", "kmexp.encoders.TokenSequencer", "kmexp.encoders.PooledEmbedding",
        "kmexp.encoders.ByteSequencer", "kmexp.encoders.ConvPooling", "kmexp.encoders.SubwordSequencer",
        "kmexp.encoders.TransformerEmbedder", "kmexp.optim.LBFGS", "kmexp.metrics.F1", "kmexp.metrics.Accuracy",
        "kmexp.data.SIB200", "kmexp.data.LabeledFiles", "kmexp.loggers.WandbLogger", "kmexp.loggers.CSVLogger",
    } <= names


@pytest.mark.parametrize(("where", "target", "values"), TARGETS, ids=[where for where, _, _ in TARGETS])
def test_signature_defaults_equal_the_yaml(where, target, values):
    parameters = inspect.signature(get_object(target)).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    differences = []
    for key, value in values.items():
        parameter = parameters.get(key)
        if parameter is None:
            if not takes_kwargs:
                differences.append(f"{key}: set in the YAML, but {target} has no such argument")
            continue
        if parameter.default is not inspect.Parameter.empty and not _same(value, parameter.default):
            differences.append(f"{key}: the YAML says {value!r}, the signature's default is {parameter.default!r}")
    assert not differences, f"{where} ({target}): " + "; ".join(differences)


def test_an_argument_the_yaml_files_set_differently_has_no_default():
    values_by_argument = defaultdict(set)
    for _, target, values in TARGETS:
        for key, value in values.items():
            values_by_argument[target, key].add(repr(value))
    with_a_default = []
    for (target, key), values in sorted(values_by_argument.items()):
        parameter = inspect.signature(get_object(target)).parameters.get(key)
        if len(values) > 1 and parameter is not None and parameter.default is not inspect.Parameter.empty:
            with_a_default.append(f"{target}({key}={parameter.default!r}) but conf/ sets {sorted(values)}")
    assert not with_a_default, "; ".join(with_a_default)


def test_the_check_catches_a_difference():
    """A default that disagrees with its YAML fails: the test is not blind."""

    class Widget:
        def __init__(self, dim: int = 64):
            pass

    default = inspect.signature(Widget).parameters["dim"].default
    assert not _same(32, default) and _same(64, default)
    assert not _same(True, 1) and not _same(0, False) and _same([1, 2], (1, 2)) and _same(None, None)
