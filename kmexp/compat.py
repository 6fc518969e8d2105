"""The private APIs of Keras, TensorFlow and Hydra that kmexp relies on, in one place.

Each has no public equivalent; each is covered by a test, so an upgrade that
moves one fails here first. Imports happen inside the functions: this module
is imported by light modules too, and TensorFlow must not load with them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def forget_traced_gradients() -> Iterator[None]:
    """Drop the gradient functions that tracing registered while the block ran, once it ends.

    Keras' TensorFlow optimizer sums dense gradients with the strategy's ``all_reduce``,
    even with one replica, and that wraps them in ``tf.custom_gradient``. Each trace
    registers its gradient function in TensorFlow's global gradient registry, under a
    new ``CustomGradient-<n>`` name, and nothing ever removes it. The function holds
    the traced train step, and that holds the model's variables and optimizer slots,
    so every run in one process (a sweep's jobs, a notebook's loop) kept the last one's
    ~7 MB (benchmarks/results/sweep_memory.md). A registered gradient is only looked up
    while TensorFlow differentiates the graph that uses it, so the run's own entries
    are not needed once the run is over. Entries registered by anything else stay.
    """
    # TensorFlow offers no public way to unregister a gradient: its registry is a private dict.
    from tensorflow.python.framework import ops

    registry = ops._gradient_registry._registry
    before = set(registry)
    try:
        yield
    finally:
        for name in set(registry) - before:
            if name.startswith("CustomGradient-"):
                del registry[name]


@contextlib.contextmanager
def skip_random_initializers() -> Iterator[None]:
    """Variables created in the block start as zeros instead of a random draw, for weights loaded right after.

    Drawing XLM-R base's 278M random numbers takes most of a warm-cache frozen job's
    time (benchmarks/results/pretrained.md), and loading the preset overwrites every
    one of them: Keras' weight loading refuses a file that lacks any of a layer's
    variables. Variables with a constant initializer (seed states, counters) keep it.
    """
    # Keras has no public way to create variables without running their initializers.
    import tensorflow as tf
    from keras.src.backend.tensorflow.core import Variable
    from keras.src.initializers.random_initializers import RandomInitializer

    draw = Variable._initialize_with_initializer

    def zeros_for_random(variable, initializer):
        if isinstance(initializer, RandomInitializer):
            variable._initialize(lambda: tf.zeros(variable._shape, dtype=variable._dtype))
        else:
            draw(variable, initializer)

    Variable._initialize_with_initializer = zeros_for_random
    try:
        yield
    finally:
        Variable._initialize_with_initializer = draw


def null_lookup_initializer(key_dtype, value_dtype):
    """Keras' placeholder initializer for a lookup table that is filled later (``StringLookup`` builds with it)."""
    from keras.src.layers.preprocessing.index_lookup import get_null_initializer

    return get_null_initializer(key_dtype, value_dtype)


def preset_backbone_config(preset: str) -> dict | None:
    """A KerasHub preset's backbone config (its ``config.json``), read without building the backbone.

    None where the preset is not in Keras' own format (``hf://`` checkpoints convert on loading).
    """
    from keras_hub.src.utils.preset_utils import CONFIG_FILE, load_json

    try:
        config = load_json(preset, CONFIG_FILE)
    except (OSError, ValueError, KeyError):
        return None
    return config.get("config") if isinstance(config, dict) else None


def initial_epoch(model) -> int:
    """The epoch ``model.fit`` starts from: 0, or what ``set_initial_epoch`` set."""
    return getattr(model, "_initial_epoch", None) or 0


def set_initial_epoch(model, epoch: int | None) -> None:
    """Make ``model.fit`` start at ``epoch``: the attribute Keras' own BackupAndRestore sets."""
    model._initial_epoch = epoch


def count_grid_jobs(overrides: list[str]) -> int:
    """How many jobs Hydra's basic sweeper makes of these overrides (its own splitting rule)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return sum(len(batch) for batch in BasicSweeper.split_arguments(parsed, None))


def dataset_fingerprint(dataset) -> str:
    """The ``datasets`` fingerprint of a ``Dataset``: a hash of its source files and of every transform applied.

    ``datasets`` names its cache files after it and offers no public accessor.
    """
    return dataset._fingerprint


def packaged_builders() -> frozenset[str]:
    """The builder names ``datasets`` ships (csv, json, parquet, ...): a ``data.path`` that is not a Hub id."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return frozenset(_PACKAGED_DATASETS_MODULES)


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Treat the Hugging Face Hub as offline while the block runs, as HF_HUB_OFFLINE=1 would.

    ``datasets`` and ``huggingface_hub`` read HF_HUB_OFFLINE once, at import; setting
    the variable later changes nothing. Where the Hub is unreachable, this makes
    ``load_dataset`` go straight to its cache, instead of retrying the Hub for
    tens of seconds first (five retries, with backoff, per request).
    """
    import datasets.config
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def basic_sweeper() -> type:
    """Hydra's basic grid sweeper (``hydra/sweeper=basic``), which kmexp's sweeper extends.

    Hydra exports the ``Sweeper`` interface but not the basic sweeper's class.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return BasicSweeper
