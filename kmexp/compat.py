"""The private APIs of Keras, TensorFlow, Hydra and W&B that kmexp relies on, in one place.

Each has no public equivalent; each is covered by a test, so an upgrade that
moves one fails here first. Imports happen inside the functions: this module
is imported by light modules too, and TensorFlow must not load with them.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Iterator, Sequence


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
def weights_read_in_place() -> Iterator[None]:
    """Weights loaded in the block go from the file into their variables' memory, without copies on the way.

    Keras loads a weight by building its variable from a random draw, reading the
    saved array into new memory, copying it (TensorFlow's ``convert_to_tensor``
    copies every NumPy array) and assigning the copy. For XLM-R base's 1.1 GB each
    of these fills 1.1 GB of fresh memory; on the benchmark machine that took most
    of a warm-cache frozen job's time (benchmarks/results/pretrained.md). Here:

    - a variable with a random initializer starts uninitialized (no draw, no memory
      touched): loading overwrites it, since Keras refuses a file that lacks any of a
      layer's variables. Variables with a constant initializer (seed states,
      counters) keep it;
    - each numeric array of an ``.h5`` weights file is read once, into fresh
      page-aligned memory, and the variable it is assigned to takes that memory
      over (DLPack) instead of a copy. Only arrays the block read and nothing else
      changed are taken over; any other value is converted as usual.
    """
    # Keras has no public way to create variables without running their initializers, nor to
    # read weights other than through its own stores; TensorFlow copies every array it converts.
    import weakref

    import tensorflow as tf
    from keras.src.backend.tensorflow.core import Variable
    from keras.src.initializers.random_initializers import RandomInitializer
    from keras.src.saving import saving_lib

    draw, read, convert = Variable._initialize_with_initializer, saving_lib.H5IOStore.__getitem__, Variable._convert_to_tensor
    fresh = weakref.WeakValueDictionary()  # id -> array read from the file in this block, not yet taken over

    def uninitialized_for_random(variable, initializer):
        if isinstance(initializer, RandomInitializer):
            variable._initialize(lambda: tf.raw_ops.Empty(shape=variable._shape, dtype=variable._dtype, init=False))
        else:
            draw(variable, initializer)

    def read_once(store, key):
        dataset = saving_lib.safe_get_h5_dataset(store._h5_entry_group, key)
        if "dtype" in dataset.attrs or dataset.dtype.name not in _SHARED_DTYPES:  # bfloat16 (an attribute), strings
            return read(store, key)
        array = _page_aligned_empty(dataset.shape, dataset.dtype)
        if array.size:
            dataset.read_direct(array)
        fresh[id(array)] = array
        return array

    def take_over(variable, value, dtype=None):
        if fresh.get(id(value)) is value and value.dtype == variable._dtype:
            del fresh[id(value)]
            return tf.experimental.dlpack.from_dlpack(value.__dlpack__())
        return convert(variable, value, dtype=dtype)

    Variable._initialize_with_initializer = uninitialized_for_random
    saving_lib.H5IOStore.__getitem__ = read_once
    Variable._convert_to_tensor = take_over
    try:
        yield
    finally:
        Variable._initialize_with_initializer = draw
        saving_lib.H5IOStore.__getitem__ = read
        Variable._convert_to_tensor = convert


# The dtypes whose arrays TensorFlow and NumPy share through DLPack (bfloat16, bool and float8 are left out).
_SHARED_DTYPES = frozenset(
    {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
)


def _page_aligned_empty(shape: tuple, dtype):
    """A NumPy array over fresh anonymous memory: page-aligned, as TensorFlow needs to share it."""
    import mmap
    import numpy as np

    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    return np.frombuffer(mmap.mmap(-1, max(count * dtype.itemsize, 1)), dtype=dtype, count=count).reshape(shape)


@contextlib.contextmanager
def weights_written_in_place() -> Iterator[None]:
    """Models saved in the block write each variable's values to the ``.h5`` weights straight from its memory.

    Keras copies every variable into a new NumPy array before writing it
    (``np.array``, then ``Variable.numpy``): for a 1.1 GB backbone that is 1.1 GB of
    fresh memory filled per save. The file's contents are the same either way.
    Variables off the CPU, and those of other dtypes than ``_SHARED_DTYPES`` (bfloat16
    is stored with a dtype attribute), are written the usual way.
    """
    # Keras' weights store offers no way to write an array without copying it first.
    import numpy as np
    import tensorflow as tf
    from keras.src.backend.tensorflow.core import Variable
    from keras.src.saving import saving_lib

    write = saving_lib.H5IOStore.__setitem__
    cpu = 1  # DLPack's device type for host memory

    def write_in_place(store, key, value):
        tensor = tf.convert_to_tensor(value) if isinstance(value, Variable) and value.dtype in _SHARED_DTYPES else None
        if tensor is None or tensor.__dlpack_device__()[0] != cpu:
            return write(store, key, value)
        if not store._h5_entry_initialized:
            store._create_h5_group(store._h5_entry_path)
        store._h5_entry_group[key] = np.from_dlpack(tensor)

    saving_lib.H5IOStore.__setitem__ = write_in_place
    try:
        yield
    finally:
        saving_lib.H5IOStore.__setitem__ = write


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


def with_value_overrides(composed, composed_from: Sequence, overrides: Sequence, values: Sequence):
    """The config Hydra composes of ``overrides``, made from ``composed``, Hydra's composition of ``composed_from``.

    ``composed_from`` is ``overrides`` less ``values``, the ones that set values rather than pick
    config group options (all parsed ``Override``s). Hydra composes in two steps: the defaults list,
    from the group options, merged into one config (most of the time), then the value overrides
    applied and every override recorded. This is the second step, as Hydra's
    ``ConfigLoaderImpl._load_configuration_impl`` takes it, on a copy of ``composed``: the method
    that applies the values and the function that names the job's folder are Hydra's private ones.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname

    config = copy.deepcopy(composed)
    ConfigLoaderImpl._apply_overrides_to_config(values, config)
    # Hydra appends the overrides to lists the config may already hold: those entries stay.
    for kind, is_hydra in (("hydra", True), ("task", False)):
        recorded = list(config.hydra.overrides[kind])
        held = len(recorded) - sum(override.is_hydra_override() == is_hydra for override in composed_from)
        lines = [override.input_line for override in overrides if override.is_hydra_override() == is_hydra]
        config.hydra.overrides[kind] = recorded[:held] + lines
    naming = config.hydra.job.config.override_dirname
    config.hydra.job.override_dirname = get_overrides_dirname(
        overrides=[override for override in overrides if not override.is_hydra_override()],
        kv_sep=naming.kv_sep,
        item_sep=naming.item_sep,
        exclude_keys=naming.exclude_keys,
    )
    return config


@contextlib.contextmanager
def one_composition_for_a_run() -> Iterator[None]:
    """A single run started in the block composes its config once, where Hydra composes it twice.

    Hydra's ``@hydra.main`` composes the config to read ``hydra.mode`` (``Hydra.get_mode``),
    then, for a single run, composes it again with ``hydra.mode=RUN`` added to the overrides:
    two compositions of every config file in the defaults list before a run starts
    (docs/benchmarks.md has the cost).
    Here the mode is read from a composition for a run, and that composition is handed to the
    run, with ``hydra.mode=RUN`` applied as Hydra applies a value (``with_value_overrides``).
    Where it is not the run's composition (a sweep, an override it does not expect), or it
    fails (an error, a missing group option), Hydra composes as it always does, and raises
    its own error. The steps are Hydra's private ``Hydra.get_mode`` and its loader's method.
    """
    from hydra._internal.hydra import Hydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    get_mode = Hydra.get_mode
    parser = OverridesParser.create()

    def get_mode_keeping_the_composition(hydra, config_name, overrides):
        try:
            parsed = parser.parse_overrides(overrides)
            if any(override.is_sweep_override() for override in parsed):
                return get_mode(hydra, config_name, overrides)  # a sweep: composed for one
            composed = hydra.config_loader.load_configuration(config_name, list(overrides), RunMode.RUN)
        except Exception:  # noqa: BLE001 - Hydra's get_mode, as it is: it reads the mode or finds none
            return get_mode(hydra, config_name, overrides)
        if composed.hydra.mode in (None, RunMode.RUN):
            _hand_over_once(hydra.config_loader, config_name, parsed, composed, parser)
        return composed.hydra.mode

    Hydra.get_mode = get_mode_keeping_the_composition
    try:
        yield
    finally:
        Hydra.get_mode = get_mode


def _hand_over_once(loader, composed_name, composed_from: list, composed, parser) -> None:
    """The loader's next ``load_configuration`` returns ``composed`` if it is the run's composition.

    That is: the same config and overrides for a run, plus the ``hydra.mode=RUN`` that Hydra
    appends when the config sets no mode. Any other call is Hydra's own.
    """
    from hydra.types import RunMode

    lines = [override.input_line for override in composed_from]

    def load_configuration(config_name, overrides, run_mode, from_shell=True, validate_sweep_overrides=True):
        del loader.load_configuration  # once: the method is the loader's own again
        added = list(overrides[len(lines):])
        if (config_name, list(overrides[: len(lines)]), run_mode) != (composed_name, lines, RunMode.RUN) or added not in (
            [], ["hydra.mode=RUN"]
        ):
            return loader.load_configuration(config_name, overrides, run_mode, from_shell, validate_sweep_overrides)
        if not added:
            return composed
        parsed_added = parser.parse_overrides(added)
        return with_value_overrides(composed, composed_from, composed_from + parsed_added, parsed_added)

    loader.load_configuration = load_configuration


def basic_sweeper() -> type:
    """Hydra's basic grid sweeper (``hydra/sweeper=basic``), which kmexp's sweeper extends.

    Hydra exports the ``Sweeper`` interface but not the basic sweeper's class.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return BasicSweeper


@functools.cache
def wandb_lists_packages_once() -> None:
    """Make W&B read the list of installed distributions once per process, not at each run's start.

    A run's ``requirements.txt`` is W&B's ``wandb.util.working_set()``, which parses the
    metadata of every installed distribution: about 0.1 s of Python per run, paid again by each
    job of an in-process sweep, while it trains (the run starts in a background thread, but it
    holds the interpreter). Installed packages do not change while a sweep runs, so every run
    of the process gets the list read the first time; each run still saves it.
    """
    import wandb.util

    listed = tuple(wandb.util.working_set())
    wandb.util.working_set = lambda: listed


def clear_tensorflow_caches() -> None:
    """Empty TensorFlow's eager caches of constant tensors: the scalar cache, and the ones and zeros caches.

    TensorFlow keeps every Python number it converts to a tensor (``tf.cast(vocabulary_size, ...)``,
    ``cells // vocabulary_size``, each epoch's loss compared by early stopping) in a process-wide cache,
    for reuse: unbounded, and new values keep coming with each job of a sweep. Keras' ``clear_session``
    clears the kernel cache but not these. Only ``tf.config.experimental_connect_to_cluster`` empties them
    publicly, and it does much more.
    """
    from tensorflow.python.eager import context

    context.context()._clear_caches()
