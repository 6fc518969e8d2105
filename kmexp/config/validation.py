"""Value checks on a composed config, run before any work.

All problems are collected and reported together, one line each, naming the
key, the value received and what is allowed.
"""

from __future__ import annotations

import inspect

from hydra.utils import get_class
from omegaconf import DictConfig

from kmexp.data.sib200 import sib200_codes
from kmexp.errors import ConfigError
from kmexp.languages import check_code, check_codes, expand_codes, uses_spaces

# --- what each setting allows (the classes that take these settings check them here too) ---
# device.kind: where the model trains (conf/device/).
KINDS = ("auto", "cpu", "gpu", "multi_gpu", "multi_worker", "tpu")
# The kinds that train one model on several replicas, each taking a share of every batch.
DISTRIBUTED_KINDS = ("multi_gpu", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# device=multi_gpu: how the replicas sum their gradients (tf.distribute cross-device ops).
ALL_REDUCES = ("auto", "nccl", "hierarchical_copy", "reduction_to_one")
# language.standardize
NORMALIZATIONS = ("NFKC", "NFC", "none")
CASES = ("fold", "lower", "none")
DIGITS = ("keep", "zero")
# encoder.preprocessor
ANALYZERS = ("word", "char", "char_wb", "byte")
OUTPUT_MODES = ("multi_hot", "count", "tfidf")
MODEL_TYPES = ("unigram", "bpe")  # SentencePiece's model types that train on raw text
# metric.<name>.average: how per-class scores combine.
AVERAGES = ("macro", "weighted", "micro")

# kmexp's full-batch optimizer (conf/optimizer/lbfgs.yaml), which trains outside Keras' distributed loop.
LBFGS_TARGET = "kmexp.optim.LBFGS"
# What early stopping can watch: the dev loss or the dev objective (the first metric).
MONITORS = ("objective", "loss")
# What a word-level encoder does where the script writes no spaces (conf/language/).
WORD_FALLBACKS = ("error", "char")
# The metric classes kmexp computes from a confusion matrix (kmexp/metrics.py).
METRIC_TARGETS = tuple(f"kmexp.metrics.{name}" for name in ("Accuracy", "F1", "Precision", "Recall"))

# Argument names with a range wherever they appear (optimizer, encoder.preprocessor, encoder.embedder).
_AT_LEAST_ONE = frozenset({
    "history_size", "iterations_per_epoch",  # L-BFGS
    "max_length", "max_tokens", "num_bins", "min_df", "vocab_size",  # preprocessors
    "dim", "filters", "kernel_size", "num_layers", "num_heads", "ff_dim",  # embedders
})
_NON_NEGATIVE = frozenset({"weight_decay", "initial_accumulator_value", "tolerance_grad", "tolerance_change"})
_FRACTIONS = frozenset({"beta_1", "beta_2", "momentum", "rho", "dropout"})  # in [0, 1)


def validate(cfg: DictConfig) -> None:
    """Raise one ConfigError listing every invalid value in ``cfg``.

    The schemas (kmexp/schemas.py) already rejected unknown keys and wrong types
    during composition; these are the checks on values: ranges, names, and
    combinations that cannot work. A check on an option-specific key (`beta_1`,
    `gamma`, `analyzer`) applies to whichever chosen option has that key.
    """
    problems = [
        *_check_language(cfg.language),
        *_check_eval_languages(cfg),
        *_check_positive("optimizer.learning_rate", cfg.optimizer.learning_rate),
        *_check_ranges("optimizer", cfg.optimizer),
        *_check_at_least("trainer.epochs", cfg.trainer.epochs, 1),
        *_check_at_least("trainer.batch_size", cfg.trainer.batch_size, 1),
        *_check_at_least("trainer.patience", cfg.trainer.patience, 0),
        *_check_at_least("trainer.steps_per_execution", cfg.trainer.steps_per_execution, 1),
        *_check_at_least("trainer.backup_interval_s", cfg.trainer.backup_interval_s, 0),
        *_check_choice("trainer.monitor", cfg.trainer.monitor, MONITORS),
        *_check_model(cfg.model, cfg.encoder),
        *_check_encoder(cfg.encoder),
        *_check_segmentation(cfg.encoder.preprocessor, cfg.language),
        *_check_metrics(cfg.metric),
        *_check_device(cfg),
    ]
    if cfg.device.jit_compile is True and cfg.encoder.preprocessor.get("sparse") is True:
        problems.append(
            "device.jit_compile=true cannot compile sparse features; "
            "set encoder.preprocessor.sparse=false or device.jit_compile=false"
        )
    if problems:
        raise ConfigError("; ".join(problems))


def validate_targets(cfg: DictConfig) -> None:
    """Raise one ConfigError listing every chosen class that cannot work: the activation and the loss.

    These checks import the class a ``_target_`` names, and with it Keras and
    TensorFlow, so they run when the job starts rather than in ``validate``.
    """
    problems = [*_check_activation(cfg.activation), *_check_loss(cfg.loss)]
    if problems:
        raise ConfigError("; ".join(problems))


def _check_device(cfg: DictConfig) -> list[str]:
    device = cfg.device
    problems = [
        *_check_choice("device.kind", device.kind, KINDS),
        *_check_choice("device.precision", device.precision, PRECISIONS),
    ]
    for key in ("intra_op_threads", "inter_op_threads"):
        if device[key] is not None:  # null keeps TensorFlow's default
            problems += _check_at_least(f"device.{key}", device[key], 1)
    if "all_reduce" in device:
        problems += _check_choice("device.all_reduce", device.all_reduce, ALL_REDUCES)
    return problems


def validate_distributed(cfg: DictConfig) -> None:
    """Raise one ConfigError listing what Keras 3.15 cannot do over several replicas (device=multi_gpu, ...).

    Checked with MirroredStrategy (tests/test_devices.py). kmexp.train calls it right
    after kmexp.devices.build_device rather than in ``validate``: on a machine without
    the hardware, the missing hardware is the error to report, not these settings.
    """
    kind, problems = cfg.device.kind, []
    if kind not in DISTRIBUTED_KINDS:
        return
    if cfg.encoder.preprocessor.get("sparse") is True:
        # Keras' distributed input (tf.distribute.DistributedValues) fails on tf.SparseTensor: no `.device`.
        problems.append(
            f"encoder.preprocessor.sparse=true is not allowed with device={kind}: Keras cannot split sparse "
            "features across replicas; set encoder.preprocessor.sparse=false"
        )
    if cfg.trainer.steps_per_execution != 1:
        # Keras' multi-step training loop fails under a distribution strategy (keras-team/keras#19246).
        problems.append(
            f"trainer.steps_per_execution={cfg.trainer.steps_per_execution} is not allowed with device={kind}: "
            "Keras runs one step per call under a distribution strategy; set trainer.steps_per_execution=1"
        )
    if cfg.optimizer._target_ == LBFGS_TARGET:
        problems.append(
            f"optimizer=lbfgs trains on the full batch in one place and cannot use device={kind}; "
            "use device=gpu or device=cpu, or another optimizer"
        )
    if problems:
        raise ConfigError("; ".join(problems))


def _check_language(language: DictConfig) -> list[str]:
    """The preset's SIB-200 code, or for language=multi each entry of `language.codes`."""
    problems = [
        *_check_choice("language.word_fallback", language.word_fallback, WORD_FALLBACKS),
        *_check_choice("language.standardize.normalization", language.standardize.normalization, NORMALIZATIONS),
        *_check_choice("language.standardize.case", language.standardize.case, CASES),
        *_check_choice("language.standardize.digits", language.standardize.digits, DIGITS),
    ]
    if "codes" in language:
        return [*check_codes("language.codes", language.codes, sib200_codes()), *problems]
    try:
        check_code(language.code, sib200_codes())
    except ConfigError as err:
        return [str(err), *problems]
    return problems


def _check_eval_languages(cfg: DictConfig) -> list[str]:
    """`eval_languages` needs SIB-200's per-language test splits, which only data=sib200 reads."""
    if cfg.eval_languages is None:
        return []
    if "eval_codes" not in cfg.data:
        message = (
            f"eval_languages={_shown(cfg.eval_languages)} scores other SIB-200 languages' test splits, but this "
            "data option has no per-language test files; use data=sib200 or eval_languages=null"
        )
        return [message]
    return check_codes("eval_languages", cfg.eval_languages, sib200_codes())


def _yaml(value) -> str:
    """A scalar as the user types it on the command line: null, true, false, 0.1."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value is True else "false"
    return str(value)


def _shown(value) -> str:
    """A config value as the user would type it on the command line."""
    return value if isinstance(value, str) else f"[{','.join(str(v) for v in value)}]"


def _check_choice(key: str, value, allowed) -> list[str]:
    if value not in allowed:
        return [f"{key}={value} is not allowed; it must be one of {', '.join(allowed)}"]
    return []


def _check_positive(key: str, value) -> list[str]:
    if not value > 0:
        return [f"{key}={value} is not allowed; it must be > 0"]
    return []


def _check_at_least(key: str, value, lowest: int) -> list[str]:
    if not value >= lowest:
        return [f"{key}={value} is not allowed; it must be >= {lowest}"]
    return []


def _check_model(model: DictConfig, encoder: DictConfig) -> list[str]:
    problems = []
    if not 0 <= model.dropout < 1:
        problems.append(f"model.dropout={model.dropout} is not allowed; it must be in [0, 1)")
    sparse_input = encoder.embedder is None and encoder.preprocessor.get("sparse") is True
    if model.dropout > 0 and len(model.hidden_units) == 0 and sparse_input:
        # Keras' Dropout takes dense tensors only: a linear head on sparse features has nothing it can drop.
        problems.append(
            f"model.dropout={model.dropout} has no effect on a linear head over sparse features; "
            "add model.hidden_units=[...] or set encoder.preprocessor.sparse=false"
        )
    if not model.l2 >= 0:
        problems.append(f"model.l2={model.l2} is not allowed; it must be >= 0")
    for i, units in enumerate(model.hidden_units):
        problems += _check_at_least(f"model.hidden_units[{i}]", units, 1)
    return problems


def _check_interval(key: str, value, low: float, high: float, *, high_open: bool = True) -> list[str]:
    """``low <= value < high`` (or ``<= high`` when ``high_open`` is False)."""
    inside = low <= value < high if high_open else low <= value <= high
    if not inside:
        return [f"{key}={value} is not allowed; it must be in [{low}, {high}{')' if high_open else ']'}"]
    return []


def _check_ranges(prefix: str, node: DictConfig) -> list[str]:
    """Range checks by argument name, for whichever of these arguments the chosen option has.

    Optimizers and encoders differ in their arguments, but a name means the same
    thing wherever it appears (`momentum` in SGD and RMSprop, `dim` in every embedder).
    """
    problems = []
    for name, value in node.items():
        key = f"{prefix}.{name}"
        if value is None:  # an Optional size left open: no vocabulary cap, no hashing
            continue
        if name in _AT_LEAST_ONE:
            problems += _check_at_least(key, value, 1)
        elif name in _NON_NEGATIVE:
            problems += _check_at_least(key, value, 0)
        elif name in _FRACTIONS:
            problems += _check_interval(key, value, 0, 1)
    return problems


def _check_encoder(encoder: DictConfig) -> list[str]:
    preprocessor, embedder = encoder.preprocessor, encoder.embedder
    problems = [
        *_check_ranges("encoder.preprocessor", preprocessor),
        *_check_ngram_range("encoder.preprocessor.ngram_range", preprocessor.get("ngram_range")),
    ]
    if "analyzer" in preprocessor:
        problems += _check_choice("encoder.preprocessor.analyzer", preprocessor.analyzer, ANALYZERS)
    if "output_mode" in preprocessor:
        problems += _check_choice("encoder.preprocessor.output_mode", preprocessor.output_mode, OUTPUT_MODES)
    if "model_type" in preprocessor:
        problems += _check_choice("encoder.preprocessor.model_type", preprocessor.model_type, MODEL_TYPES)
    if "character_coverage" in preprocessor:
        coverage = preprocessor.character_coverage
        problems += _check_interval("encoder.preprocessor.character_coverage", coverage, 0, 1, high_open=False)
    if embedder is None:
        return problems
    problems += _check_ranges("encoder.embedder", embedder)
    if "num_heads" in embedder and embedder.num_heads >= 1 and embedder.dim % embedder.num_heads != 0:
        problems.append(
            f"encoder.embedder.dim={embedder.dim} is not allowed with encoder.embedder.num_heads={embedder.num_heads}; "
            "dim must be a multiple of num_heads (each head gets dim / num_heads)"
        )
    return problems


def _check_activation(activation: DictConfig) -> list[str]:
    """A Keras layer; `activation` (for keras.layers.Activation) must be a name keras.activations knows."""
    import keras

    problems = _check_class("activation._target_", activation._target_, keras.layers.Layer, "a Keras layer")
    if "activation" in activation:
        problems += _check_choice("activation.activation", activation.activation, _keras_activation_names())
    if "negative_slope" in activation:
        problems += _check_at_least("activation.negative_slope", activation.negative_slope, 0)
    return problems


def _keras_activation_names() -> list[str]:
    """Every activation keras.activations has by name, e.g. relu, gelu, mish."""
    import keras

    helpers = {"get", "serialize", "deserialize"}
    return sorted(name for name in dir(keras.activations) if not name.startswith("_") and name not in helpers)


def _check_loss(loss: DictConfig) -> list[str]:
    """A Keras loss that fits kmexp's labels and outputs.

    Targets are always one-hot, one label per text, and the network outputs
    logits (the exported model applies the softmax). So: no Sparse* loss (those
    take integer labels); `from_logits: true` wherever the loss class has that
    argument, set explicitly (Keras defaults it to false, which would read logits
    as probabilities); label smoothing a share in [0, 1); focal `gamma` >= 0 and
    `alpha` a class weight in [0, 1].
    """
    import keras

    problems = _check_class("loss._target_", loss._target_, keras.losses.Loss, "a Keras loss class")
    if problems:
        return problems
    cls = get_class(loss._target_)
    if cls.__name__.startswith("Sparse"):
        problems.append(
            f"loss._target_={loss._target_} is not allowed; it takes integer labels, but kmexp's targets are "
            "one-hot: use the loss without Sparse (e.g. keras.losses.CategoricalCrossentropy)"
        )
    if "from_logits" in loss and loss.from_logits is not True:
        problems.append(
            f"loss.from_logits={_yaml(loss.from_logits)} is not allowed; it must be true: "
            "the network outputs logits, not probabilities"
        )
    elif "from_logits" not in loss and "from_logits" in inspect.signature(cls).parameters:
        problems.append(
            f"loss._target_={loss._target_} reads scores as probabilities unless from_logits=true; "
            "add +loss.from_logits=true: the network outputs logits"
        )
    if "label_smoothing" in loss:
        problems += _check_interval("loss.label_smoothing", loss.label_smoothing, 0, 1)
    if "gamma" in loss:
        problems += _check_at_least("loss.gamma", loss.gamma, 0)
    if "alpha" in loss:
        problems += _check_interval("loss.alpha", loss.alpha, 0, 1, high_open=False)
    return problems


def _check_metrics(metric: DictConfig) -> list[str]:
    if len(metric) == 0:
        return ["metric=[] selects no metric; choose at least one, e.g. metric=[accuracy,macro_f1]"]
    problems = []
    for name, chosen in metric.items():
        problems += _check_choice(f"metric.{name}._target_", chosen._target_, METRIC_TARGETS)
        if "average" in chosen:
            problems += _check_choice(f"metric.{name}.average", chosen.average, AVERAGES)
    return problems


def _check_class(key: str, target: str, base: type, what: str) -> list[str]:
    """``target`` must import as a subclass of ``base``."""
    try:
        cls = get_class(target)
    except (ImportError, ValueError):
        return [f"{key}={target} is not allowed; it must be the import path of {what}"]
    if not issubclass(cls, base):
        return [f"{key}={target} is not allowed; it must name {what} (a subclass of {base.__name__})"]
    return []


def _check_segmentation(preprocessor: DictConfig, language: DictConfig) -> list[str]:
    """Word splitting needs spaces: where the script has none, the preset's fallback must have applied."""
    if preprocessor.get("analyzer") != "word" or language.spaces is True:
        return []
    message = (
        f"encoder.preprocessor.analyzer=word splits words on spaces, but {_spaceless(language)} "
        f"writes none (language.word_fallback={language.word_fallback}); use encoder=char_ngram or "
        f"encoder=subword, or encoder.preprocessor.analyzer=char"
    )
    return [message]


def _spaceless(language: DictConfig) -> str:
    """Which language(s) write no spaces: the preset's code, or the offending entries of `language.codes`."""
    if "codes" not in language:
        return f"{language.code} ({language.script} script)"
    codes = expand_codes(language.codes, sib200_codes())
    return "language.codes has " + ", ".join(code for code in codes if "_" in code and not uses_spaces(code))


def _check_ngram_range(key: str, value) -> list[str]:
    if value is None:
        return []
    if len(value) != 2 or not 1 <= value[0] <= value[1]:
        return [f"{key}={list(value)} is not allowed; it must be [min_n, max_n] with 1 <= min_n <= max_n"]
    return []
