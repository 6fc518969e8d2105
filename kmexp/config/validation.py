"""Value checks: every rule on a config value, written once.

``validate(cfg)`` checks a composed config before any work; the classes that
conf/ targets, when called from Python, call the same ``check_*`` functions
(``raise_problems(check_device(cfg))``) instead of keeping a copy of a rule.

All problems are collected and reported together, joined by "; ", each in one
format: ``key=value is not allowed: <what is allowed>`` (``not_allowed``).

Light on purpose: the CLI validates before TensorFlow loads, so this module
imports neither Keras nor TensorFlow (``validate_targets``, which must, imports
Keras when called).
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
from collections.abc import Iterable, Mapping

from hydra.utils import get_class
from omegaconf import DictConfig

from kmexp.errors import ConfigError
from kmexp.languages import (
    ALL_CODES,
    SIB200_COMMIT,
    expand_codes,
    sib200_codes,
    splits_words_without_spaces,
    uses_spaces,
)

# --- what each setting allows (the classes that take these settings call the check_* functions below) ---
# device.kind: where the model trains (conf/device/).
KINDS = ("auto", "cpu", "gpu", "multi_gpu", "multi_worker", "tpu")
# The kinds that train one model on several replicas, each taking a share of every batch.
DISTRIBUTED_KINDS = ("multi_gpu", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# device=multi_gpu: how the replicas sum their gradients (tf.distribute cross-device ops).
ALL_REDUCES = ("auto", "nccl", "hierarchical_copy", "reduction_to_one")
# data.on_long_text: a text longer than data.max_chars is cut to that length, or refused.
LONG_TEXT_ACTIONS = ("truncate", "error")
# language.standardize
NORMALIZATIONS = ("NFKC", "NFC", "none")
CASES = ("fold", "lower", "none")
DIGITS = ("keep", "zero")
# encoder.preprocessor
ANALYZERS = ("word", "char", "char_wb", "byte")
OUTPUT_MODES = ("multi_hot", "count", "tfidf")
MODEL_TYPES = ("unigram", "bpe")  # SentencePiece's model types that train on raw text
# encoder=pretrained: how a backbone's token vectors become one vector per text, and whether it trains.
POOLINGS = ("mean", "first")
MODES = ("frozen", "finetune")
# metric.<name>.average: how per-class scores combine.
AVERAGES = ("macro", "weighted", "micro")
# optimizer=lbfgs: how L-BFGS picks each step's length (kmexp/optim/lbfgs.py).
LINE_SEARCHES = ("strong_wolfe", "armijo")

# kmexp's full-batch optimizer (conf/optimizer/lbfgs.yaml), which trains outside Keras' distributed loop.
LBFGS_TARGET = "kmexp.optim.LBFGS"
# What early stopping can watch: the dev loss or the dev objective (the first metric).
MONITORS = ("objective", "loss")
# model.nb_weighting, besides null (off): kmexp/naive_bayes.py. auto: per_class where it applies (nb_weighting_of).
NB_WEIGHTINGS = ("auto", "per_class", "per_feature")
NB_AUTO = "auto"
# What a word-level encoder does where the script writes no spaces (conf/language/).
WORD_FALLBACKS = ("error", "char")
# The metric classes kmexp computes from a confusion matrix (kmexp/metrics.py).
METRIC_TARGETS = tuple(f"kmexp.metrics.{name}" for name in ("Accuracy", "F1", "Precision", "Recall"))

# Argument names with a range wherever they appear (optimizer, encoder.preprocessor, encoder.embedder).
_AT_LEAST_ONE = frozenset({
    "history_size", "iterations_per_epoch",  # L-BFGS
    "max_length", "max_tokens", "num_bins", "min_df", "vocab_size", "round_features",  # preprocessors
    "dim", "filters", "kernel_size", "num_layers", "num_heads", "ff_dim",  # embedders
    "sequence_length",  # pretrained encoders
})
_NON_NEGATIVE = frozenset({"weight_decay", "initial_accumulator_value", "tolerance_grad", "tolerance_change"})
_FRACTIONS = frozenset({"beta_1", "beta_2", "momentum", "rho", "dropout", "warmup_fraction"})  # in [0, 1)
# How many close codes a wrong language code's message names; more would not fit on one readable line.
_N_SUGGESTIONS = 3
# language.pool's message lists the languages that can be pooled up to this many, then only counts them.
_SHOWN_CANDIDATES = 30


def validate(cfg: DictConfig) -> None:
    """Raise one ConfigError listing every invalid value in ``cfg``.

    The schemas (kmexp/config/schemas.py) already rejected unknown keys and wrong types
    during composition; these are the checks on values: ranges, names, and
    combinations that cannot work. A check on an option-specific key (`beta_1`,
    `gamma`, `analyzer`) applies to whichever chosen option has that key.
    """
    problems = [
        *_check_language(cfg.language),
        *_check_eval_languages(cfg),
        *check_data(cfg.data),
        *_check_pool_source(cfg),
        *check_optimizer(cfg.optimizer),
        *check_at_least("trainer.epochs", cfg.trainer.epochs, 1),
        *check_at_least("trainer.batch_size", cfg.trainer.batch_size, 1),
        *check_at_least("trainer.patience", cfg.trainer.patience, 0),
        *check_at_least("trainer.min_delta", cfg.trainer.min_delta, 0),
        *check_at_least("trainer.steps_per_execution", cfg.trainer.steps_per_execution, 1),
        *check_at_least("trainer.backup_interval_s", cfg.trainer.backup_interval_s, 0),
        *check_choice("trainer.monitor", cfg.trainer.monitor, MONITORS),
        *_check_accumulation(cfg.trainer.gradient_accumulation_steps, cfg.optimizer),
        *check_pretrained(cfg.encoder),
        *_check_model(cfg.model, cfg.encoder),
        *check_preprocessor(cfg.encoder.preprocessor),
        *([] if cfg.encoder.embedder is None else check_embedder(cfg.encoder.embedder)),
        *check_segmentation(cfg.encoder.preprocessor, cfg.language),
        *_check_metrics(cfg.metric),
        *check_device(cfg.device),
    ]
    if cfg.device.jit_compile is True and cfg.encoder.preprocessor.get("sparse") is True:
        problems.append(
            not_allowed("device.jit_compile", True, "XLA cannot compile sparse features; set "
                        "encoder.preprocessor.sparse=false or device.jit_compile=false",
                        context="encoder.preprocessor.sparse=true")
        )
    raise_problems(problems)


def validate_targets(cfg: DictConfig) -> None:
    """Raise one ConfigError listing every chosen class that cannot work: the activation and the loss.

    These checks import the class a ``_target_`` names, and with it Keras and
    TensorFlow, so they run when the job starts rather than in ``validate``.
    """
    raise_problems([*_check_activation(cfg.activation), *_check_loss(cfg.loss)])


# --- the message format and the generic checks ----------------------------------------------


def not_allowed(key: str, value, allowed: str, *, context: str | None = None) -> str:
    """The one message format: ``key=value is not allowed: <what is allowed>``.

    ``context`` names the other setting that rules the value out:
    ``key=value is not allowed with device=multi_gpu: ...``.
    """
    with_context = "" if context is None else f" with {context}"
    return f"{key}={_yaml(value)} is not allowed{with_context}: {allowed}"


def raise_problems(problems: Iterable[str]) -> None:
    """Raise one ConfigError joining ``problems`` with "; ", or nothing when there are none."""
    problems = list(problems)
    if problems:
        raise ConfigError("; ".join(problems))


def check_choice(key: str, value, allowed) -> list[str]:
    if value not in allowed:
        return [not_allowed(key, value, f"it must be one of {', '.join(allowed)}")]
    return []


def _is_number(value) -> bool:
    """A real number, not a bool (True is an int in Python, but never a size or a rate)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_positive(key: str, value) -> list[str]:
    """A finite number > 0: a rate, a step length, a time limit."""
    if not (_is_number(value) and math.isfinite(value) and value > 0):
        return [not_allowed(key, value, "it must be > 0")]
    return []


def check_at_least(key: str, value, lowest: int, *, integer: bool = False) -> list[str]:
    """``value >= lowest``; with ``integer``, also a whole number (a count or a size)."""
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not (_is_number(value) and value >= lowest) or (integer and not whole):
        return [not_allowed(key, value, f"it must be {'an integer ' if integer else ''}>= {lowest}")]
    return []


def check_interval(
    key: str, value, low: float, high: float, *, low_open: bool = False, high_open: bool = True
) -> list[str]:
    """``low <= value < high`` by default; ``low_open`` and ``high_open`` say which ends are left out."""
    inside = _is_number(value) and (low < value if low_open else low <= value) and (
        value < high if high_open else value <= high
    )
    if not inside:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        return [not_allowed(key, value, f"it must be in {interval}")]
    return []


# --- the rules for each part of the config (validate() and the classes both call these) -----


def check_device(device: Mapping, prefix: str = "device") -> list[str]:
    """The ``device`` options (kmexp.devices.build_device)."""
    problems = [
        *check_choice(f"{prefix}.kind", device["kind"], KINDS),
        *check_choice(f"{prefix}.precision", device["precision"], PRECISIONS),
    ]
    for key in ("intra_op_threads", "inter_op_threads"):
        if device.get(key) is not None:  # null keeps TensorFlow's default
            problems += check_at_least(f"{prefix}.{key}", device[key], 1)
    if "all_reduce" in device:
        problems += check_choice(f"{prefix}.all_reduce", device["all_reduce"], ALL_REDUCES)
    return problems


def check_optimizer(optimizer: Mapping, prefix: str = "optimizer") -> list[str]:
    """Any optimizer's options, by name (kmexp.optim.LBFGS calls it on its own)."""
    problems = [*check_positive(f"{prefix}.learning_rate", optimizer["learning_rate"]), *_check_ranges(prefix, optimizer)]
    if "line_search" in optimizer:
        problems += check_choice(f"{prefix}.line_search", optimizer["line_search"], LINE_SEARCHES)
    return problems


def check_preprocessor(preprocessor: Mapping, prefix: str = "encoder.preprocessor") -> list[str]:
    """An encoder's preprocessor options, by name (the encoders call it on their own arguments)."""
    problems = [
        *_check_ranges(prefix, preprocessor),
        *_check_ngram_range(f"{prefix}.ngram_range", preprocessor.get("ngram_range")),
        *_check_ngram_range(f"{prefix}.word_ngram_range", preprocessor.get("word_ngram_range")),
    ]
    if "analyzer" in preprocessor:
        problems += check_choice(f"{prefix}.analyzer", preprocessor["analyzer"], ANALYZERS)
    if "output_mode" in preprocessor:
        problems += check_choice(f"{prefix}.output_mode", preprocessor["output_mode"], OUTPUT_MODES)
    if "model_type" in preprocessor:
        problems += check_choice(f"{prefix}.model_type", preprocessor["model_type"], MODEL_TYPES)
    if "character_coverage" in preprocessor:
        coverage = preprocessor["character_coverage"]
        problems += check_interval(f"{prefix}.character_coverage", coverage, 0, 1, high_open=False)
    return problems


def check_embedder(embedder: Mapping, prefix: str = "encoder.embedder") -> list[str]:
    """An encoder's embedder options, by name; a Transformer's width must split evenly across its heads."""
    problems = _check_ranges(prefix, embedder)
    dim, heads = embedder.get("dim"), embedder.get("num_heads")
    if _is_number(dim) and _is_number(heads) and heads >= 1 and dim % heads != 0:
        problems.append(
            not_allowed(f"{prefix}.dim", dim, "it must be a multiple of num_heads (each head gets dim / num_heads)",
                        context=f"{prefix}.num_heads={heads}")
        )
    return problems


def check_pretrained(encoder: Mapping, prefix: str = "encoder") -> list[str]:
    """A pretrained encoder's own keys (none for the classic encoders): its mode, pooling and length."""
    problems = []
    if "mode" in encoder:
        problems += check_choice(f"{prefix}.mode", encoder["mode"], MODES)
    if "pooling" in encoder:
        problems += check_choice(f"{prefix}.pooling", encoder["pooling"], POOLINGS)
    if "sequence_length" in encoder:
        problems += check_at_least(f"{prefix}.sequence_length", encoder["sequence_length"], 1, integer=True)
    return problems


def _check_accumulation(steps, optimizer: Mapping) -> list[str]:
    """Gradient accumulation: null (none) or a count of batches per update; L-BFGS takes the full batch anyway."""
    if steps is None:
        return []
    if optimizer["_target_"] == LBFGS_TARGET:
        return [not_allowed("trainer.gradient_accumulation_steps", steps, "L-BFGS trains on the full batch; set "
                            "trainer.gradient_accumulation_steps=null", context="optimizer=lbfgs")]
    return check_at_least("trainer.gradient_accumulation_steps", steps, 1, integer=True)


def check_standardize(options: Mapping, prefix: str = "language.standardize") -> list[str]:
    """The standardization choices (kmexp.encoders.text.standardize calls it too)."""
    return [
        *check_choice(f"{prefix}.normalization", options["normalization"], NORMALIZATIONS),
        *check_choice(f"{prefix}.case", options["case"], CASES),
        *check_choice(f"{prefix}.digits", options["digits"], DIGITS),
    ]


def check_average(key: str, value) -> list[str]:
    """How a metric combines per-class scores (kmexp.metrics.F1, Precision, Recall)."""
    return check_choice(key, value, AVERAGES)


def check_data(data: Mapping, prefix: str = "data") -> list[str]:
    """The data options: a download needs the pinned commit and a positive time limit; a dev share is in (0, 1);
    a Hugging Face dataset's locale mapping has the language (``_check_locale``).

    Every option has ``max_chars`` (a whole number of characters, >= 1) and ``on_long_text`` (LONG_TEXT_ACTIONS).
    """
    problems = []
    if "max_chars" in data:
        problems += check_at_least(f"{prefix}.max_chars", data["max_chars"], 1, integer=True)
    if "on_long_text" in data:
        problems += check_choice(f"{prefix}.on_long_text", data["on_long_text"], LONG_TEXT_ACTIONS)
    if "commit" in data and data.get("root") is None:  # null root: SIB-200 downloads, checked against shipped sums
        if data["commit"] != SIB200_COMMIT:
            allowed = (
                f"downloads are checked against sha256 sums shipped for {SIB200_COMMIT} only; "
                "set KMEXP_DATA_DIR to use another version"
            )
            problems.append(not_allowed(f"{prefix}.commit", data["commit"], allowed, context=f"{prefix}.root=null"))
    if "timeout_s" in data:
        problems += check_positive(f"{prefix}.timeout_s", data["timeout_s"])
    # A share of train becomes dev only without a dev file (data=files) or dev split (data=hf).
    dev = data["splits"]["dev"] if "splits" in data else data.get("dev")
    if "dev_fraction" in data and dev is None:
        problems += check_interval(f"{prefix}.dev_fraction", data["dev_fraction"], 0, 1, low_open=True)
    if "locale" in data:
        problems += _check_locale(data, prefix)
    if "pool" in data:
        problems += check_pool(data["pool"], data["pool_weight"], _pool_candidates(data), data.get("codes"))
    return problems


def check_pool(pool, weight, candidates: list[str] | None, multi_codes=None) -> list[str]:
    """Related-language pooling: ``language.pool`` is null, a count k of nearest languages, or a list of codes.

    ``candidates`` are the languages that can be pooled: SIB-200's other codes, or the other
    locales of a Hugging Face dataset's mapping; None when this data has no other languages.
    Each pooled row weighs ``language.pool_weight`` in (0, 1] (the language's own rows weigh 1).
    """
    if pool is None and weight is None:  # a class called from Python without pooling needs no weight
        return []
    problems = check_interval("language.pool_weight", weight, 0, 1, low_open=True, high_open=False)
    if pool is None:
        return problems
    if multi_codes is not None:
        return [*problems, not_allowed("language.pool", _shown(pool), "language=multi already trains on every "
                                       "language in language.codes; set language.pool=null", context="language=multi")]
    if candidates is None:
        return [*problems, not_allowed("language.pool", _shown(pool), "pooling adds other languages' train "
                                       "splits, which only data=sib200 and data=hf with data.locale_config or "
                                       "data.locale_filter have; set language.pool=null")]
    if isinstance(pool, numbers.Integral) and not isinstance(pool, bool):
        return [*problems, *_check_pool_count(pool, len(candidates))]
    return [*problems, *_check_pool_codes(pool, candidates)]


def _check_pool_count(k: int, n_candidates: int) -> list[str]:
    if not 1 <= k <= n_candidates:
        return [not_allowed("language.pool", k, f"it must be a number of nearest languages in [1, {n_candidates}], "
                            "a list of codes, or null")]
    return []


def _check_pool_codes(pool, candidates: list[str]) -> list[str]:
    """An explicit list: other languages of the dataset, each once."""
    if isinstance(pool, str) or not isinstance(pool, Iterable) or len(list(pool)) == 0:
        return [not_allowed("language.pool", _shown(pool), "it must be null, a number k >= 1 of nearest languages, "
                            "or a non-empty list of other languages' codes")]
    codes = list(pool)
    unknown = [str(code) for code in codes if code not in candidates]
    if unknown:
        shown = ", ".join(candidates) if len(candidates) <= _SHOWN_CANDIDATES else f"{len(candidates)} codes"
        return [not_allowed("language.pool", _shown(pool), f"{', '.join(unknown)} cannot be pooled: list other "
                            f"languages of the dataset ({shown})")]
    twice = sorted({str(code) for code in codes if codes.count(code) > 1})
    if twice:
        return [not_allowed("language.pool", _shown(pool), f"{', '.join(twice)} listed more than once: "
                            "list each language once")]
    return []


def _pool_candidates(data: Mapping) -> list[str] | None:
    """The languages a data option can pool: SIB-200's other codes, or the other locales of data=hf's mapping."""
    if "code" in data:
        own = data["code"]  # resolved once: an interpolation in a config, resolved anew at each access
        return [code for code in sib200_codes() if code != own]
    mapping = data.get("locale_config")
    if mapping is None and _is_locale_filter(data.get("locale_filter")):
        mapping = data["locale_filter"]["values"]
    if not isinstance(mapping, Mapping):
        return None
    return [str(tag) for tag in mapping if tag != data["locale"]]


def _check_locale(data: Mapping, prefix: str) -> list[str]:
    """data=hf: one way to pick the language's part of the dataset, and a mapping that has the language."""
    by_config, by_filter = data["locale_config"], data["locale_filter"]
    if by_config is not None and by_filter is not None:
        return [not_allowed(f"{prefix}.locale_filter", "{...}", f"choose one: {prefix}.locale_config (a config per "
                            f"language) or {prefix}.locale_filter (rows per language); set the other to null",
                            context=f"{prefix}.locale_config")]
    if by_config is not None and data["name"] is not None:
        return [not_allowed(f"{prefix}.name", data["name"], f"{prefix}.locale_config picks the config of each "
                            f"language; set {prefix}.name=null, or {prefix}.locale_config=null to use {prefix}.name",
                            context=f"{prefix}.locale_config")]
    if by_config is not None and not isinstance(by_config, Mapping):
        return [not_allowed(f"{prefix}.locale_config", by_config, "it must be null or {<language tag>: <config>, ...}")]
    if by_filter is not None and not _is_locale_filter(by_filter):
        return [not_allowed(f"{prefix}.locale_filter", "{...}", "it must be {column: <the language column>, "
                            "values: {<language tag>: <value in that column>, ...}}")]
    if by_config is not None:
        mapping, key = by_config, f"{prefix}.locale_config"
    elif by_filter is not None:
        mapping, key = by_filter["values"], f"{prefix}.locale_filter.values"
    else:
        return []
    locale = data["locale"]
    if locale in mapping:
        return []
    return [not_allowed("language", locale, f"{data['path']} has no part mapped to it in {key}, which maps "
                        f"{', '.join(sorted(mapping))}; choose one of those, or add '+{key}.{locale}=<value>'")]


def _is_locale_filter(value) -> bool:
    return (
        isinstance(value, Mapping) and set(value) == {"column", "values"} and isinstance(value["column"], str)
        and isinstance(value["values"], Mapping)
    )


def check_languages(code: str, codes, eval_codes, valid_codes: Iterable[str]) -> list[str]:
    """SIB-200 codes: `language.code`, or `language.codes` (language=multi), and `eval_languages`."""
    valid = sorted(set(valid_codes))
    problems = check_code("language.code", code, valid) if codes is None else check_codes("language.codes", codes, valid)
    if eval_codes is not None:
        problems += check_codes("eval_languages", eval_codes, valid)
    return problems


def check_codes(key: str, value, valid_codes: Iterable[str]) -> list[str]:
    """Problems with a `language.codes`-style value: `all` or a non-empty list of valid codes."""
    if isinstance(value, str) and value == ALL_CODES:
        return []
    if isinstance(value, str) or not isinstance(value, Iterable):
        return [not_allowed(key, value, f"it must be {ALL_CODES} or a list of SIB-200 codes, e.g. {key}=[fra_Latn,zho_Hans]")]
    codes = list(value)
    if not codes:
        return [not_allowed(key, "[]", f"list at least one SIB-200 code, or use {key}={ALL_CODES}")]
    valid = sorted(set(valid_codes))
    return [problem for i, code in enumerate(codes) for problem in check_code(f"{key}[{i}]", code, valid)]


def check_code(key: str, code: str, valid_codes: Iterable[str]) -> list[str]:
    """A SIB-200 code, or a problem naming the closest valid codes.

    `key` is the config key the message names (`language.codes[1]` for one entry of a list).
    The valid codes are passed in, so that the rule does not depend on where the manifest lives.
    """
    codes = sorted(set(valid_codes))
    if code in codes:
        return []
    # Compare case-insensitively: `FRA_LATN` or `fra_latn` should point at `fra_Latn`.
    by_lower = {c.lower(): c for c in codes}
    close = difflib.get_close_matches(str(code).lower(), list(by_lower), n=_N_SUGGESTIONS)
    suggestions = [by_lower[c] for c in close]
    # A mistyped language with a correct script (e.g. `xyz_Olck`) is too far from
    # everything for difflib; the languages in that script are the best hint left.
    if not suggestions:
        script = str(code).rpartition("_")[2].lower()
        suggestions = [c for c in codes if c.rpartition("_")[2].lower() == script][:_N_SUGGESTIONS]
    # Still nothing (`xx_Fake`): name the nearest codes anyway, rather than none.
    if not suggestions:
        nearest = difflib.get_close_matches(str(code).lower(), list(by_lower), n=_N_SUGGESTIONS, cutoff=0.0)
        suggestions = [by_lower[c] for c in nearest]
    closest = f"; closest: {', '.join(suggestions)}" if suggestions else ""
    allowed = (
        f"it must be a SIB-200 language code{closest} "
        f"({len(codes)} codes: the SIB-200 folders listed in kmexp/data/sib200.sha256)"
    )
    return [not_allowed(key, code, allowed)]


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
            not_allowed("encoder.preprocessor.sparse", True, "Keras cannot split sparse features across replicas; "
                        "set encoder.preprocessor.sparse=false", context=f"device={kind}")
        )
    if cfg.trainer.steps_per_execution != 1:
        # Keras' multi-step training loop fails under a distribution strategy (keras-team/keras#19246).
        problems.append(
            not_allowed("trainer.steps_per_execution", cfg.trainer.steps_per_execution, "Keras runs one step per call "
                        "under a distribution strategy; set trainer.steps_per_execution=1", context=f"device={kind}")
        )
    if cfg.optimizer._target_ == LBFGS_TARGET:
        problems.append(
            not_allowed("optimizer", "lbfgs", "L-BFGS trains on the full batch in one place; "
                        "use device=gpu or device=cpu, or another optimizer", context=f"device={kind}")
        )
    raise_problems(problems)


def _check_language(language: DictConfig) -> list[str]:
    """The preset's SIB-200 code, or for language=multi each entry of `language.codes`."""
    return [
        *check_languages(language.code, language.get("codes"), None, sib200_codes()),
        *check_choice("language.word_fallback", language.word_fallback, WORD_FALLBACKS),
        *_check_ngram_range("language.fallback_ngram_range", language.fallback_ngram_range),
        *check_standardize(language.standardize),
    ]


def _check_pool_source(cfg: DictConfig) -> list[str]:
    """A data option without pooling keys (data=files) has no other languages to pool (check_pool says so)."""
    if "pool" in cfg.data:
        return []
    return check_pool(cfg.language.pool, cfg.language.pool_weight, None)


def _check_eval_languages(cfg: DictConfig) -> list[str]:
    """`eval_languages` needs SIB-200's per-language test splits, which only data=sib200 reads."""
    if cfg.eval_languages is None:
        return []
    if "eval_codes" not in cfg.data:
        message = not_allowed(
            "eval_languages", _shown(cfg.eval_languages), "it scores other SIB-200 languages' test splits, but "
            "this data option has no per-language test files; use data=sib200 or eval_languages=null",
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
    if isinstance(value, str):
        return value
    if not isinstance(value, Iterable):
        return _yaml(value)
    return f"[{','.join(str(v) for v in value)}]"


def _check_model(model: DictConfig, encoder: DictConfig) -> list[str]:
    problems = check_interval("model.dropout", model.dropout, 0, 1)
    sparse_input = encoder.embedder is None and encoder.preprocessor.get("sparse") is True
    if model.dropout > 0 and len(model.hidden_units) == 0 and sparse_input:
        # Keras' Dropout takes dense tensors only: a linear head on sparse features has nothing it can drop.
        problems.append(
            not_allowed("model.dropout", model.dropout, "dropout has no effect on a linear head over sparse "
                        "features; add model.hidden_units=[...] or set encoder.preprocessor.sparse=false",
                        context="model.hidden_units=[]")
        )
    problems += check_at_least("model.l2", model.l2, 0)
    for i, units in enumerate(model.hidden_units):
        problems += check_at_least(f"model.hidden_units[{i}]", units, 1)
    return problems + _check_nb_weighting(model, encoder)


def _check_nb_weighting(model: DictConfig, encoder: DictConfig) -> list[str]:
    """Naive Bayes weights count bag features per class: they need the features themselves as the network's input."""
    problems = check_positive("model.nb_alpha", model.nb_alpha)
    if model.nb_weighting is None or model.nb_weighting == NB_AUTO:
        return problems
    if model.nb_weighting not in NB_WEIGHTINGS:
        return problems + [not_allowed("model.nb_weighting", model.nb_weighting,
                                       f"it must be null (off) or one of {', '.join(NB_WEIGHTINGS)}")]
    if encoder.embedder is not None:
        problems.append(
            not_allowed("model.nb_weighting", model.nb_weighting, "it weights bag features (encoder=char_ngram, "
                        "tfidf, onehot), not token ids or vectors; set model.nb_weighting=null",
                        context="an encoder.embedder")
        )
    if model.nb_weighting == "per_class" and len(model.hidden_units) > 0:
        problems.append(
            not_allowed("model.nb_weighting", model.nb_weighting, "per_class scales the classes' logit columns, "
                        "which only a linear head has; use per_feature or model.hidden_units=[]",
                        context=f"model.hidden_units={_shown(list(model.hidden_units))}")
        )
    return problems


def nb_weighting_of(model: DictConfig, encoder: DictConfig) -> str | None:
    """The Naive Bayes weighting a run applies: ``model.nb_weighting``, with ``auto`` read as per_class for a
    linear head over bag features (no ``encoder.embedder``), where it was measured to help, and as none elsewhere."""
    if model.nb_weighting != NB_AUTO:
        return model.nb_weighting
    return "per_class" if encoder.embedder is None and len(model.hidden_units) == 0 else None


def _check_ranges(prefix: str, node: Mapping) -> list[str]:
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
            problems += check_at_least(key, value, 1, integer=True)
        elif name in _NON_NEGATIVE:
            problems += check_at_least(key, value, 0)
        elif name in _FRACTIONS:
            problems += check_interval(key, value, 0, 1)
    return problems


def _check_activation(activation: DictConfig) -> list[str]:
    """A Keras layer; `activation` (for keras.layers.Activation) must be a name keras.activations knows."""
    import keras

    problems = _check_class("activation._target_", activation._target_, keras.layers.Layer, "a Keras layer")
    if "activation" in activation:
        problems += check_choice("activation.activation", activation.activation, _keras_activation_names())
    if "negative_slope" in activation:
        problems += check_at_least("activation.negative_slope", activation.negative_slope, 0)
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
            not_allowed("loss._target_", loss._target_, "it takes integer labels, but kmexp's targets are "
                        "one-hot: use the loss without Sparse (e.g. keras.losses.CategoricalCrossentropy)")
        )
    if "from_logits" in loss and loss.from_logits is not True:
        problems.append(
            not_allowed("loss.from_logits", loss.from_logits, "it must be true: the network outputs logits, not probabilities")
        )
    elif "from_logits" not in loss and "from_logits" in inspect.signature(cls).parameters:
        problems.append(
            not_allowed("loss._target_", loss._target_, "it reads scores as probabilities unless from_logits=true; "
                        "add +loss.from_logits=true: the network outputs logits")
        )
    if "label_smoothing" in loss:
        problems += check_interval("loss.label_smoothing", loss.label_smoothing, 0, 1)
    if "gamma" in loss:
        problems += check_at_least("loss.gamma", loss.gamma, 0)
    if "alpha" in loss:
        problems += check_interval("loss.alpha", loss.alpha, 0, 1, high_open=False)
    return problems


def _check_metrics(metric: DictConfig) -> list[str]:
    if len(metric) == 0:
        return [not_allowed("metric", "[]", "it selects no metric; choose at least one, e.g. metric=[accuracy,macro_f1]")]
    problems = []
    for name, chosen in metric.items():
        problems += check_choice(f"metric.{name}._target_", chosen._target_, METRIC_TARGETS)
        if "average" in chosen:
            problems += check_average(f"metric.{name}.average", chosen.average)
    return problems


def _check_class(key: str, target: str, base: type, what: str) -> list[str]:
    """``target`` must import as a subclass of ``base``."""
    try:
        cls = get_class(target)
    except (ImportError, ValueError):
        return [not_allowed(key, target, f"it must be the import path of {what}")]
    if not issubclass(cls, base):
        return [not_allowed(key, target, f"it must name {what} (a subclass of {base.__name__})")]
    return []


def check_segmentation(preprocessor: DictConfig, language: DictConfig) -> list[str]:
    """Word splitting needs spaces: where the script has none, `language.word_fallback` decides.

    `char` counts character n-grams instead (kmexp.builders.build_preprocessor); `error` stops here.
    """
    if not splits_words_without_spaces(preprocessor, language) or language.word_fallback != "error":
        return []
    allowed = (
        f"it splits words on spaces, but {_spaceless(language)}; set language.word_fallback=char "
        "(character n-grams), or use encoder=char_ngram or encoder=subword"
    )
    return [not_allowed("encoder.preprocessor.analyzer", "word", allowed, context="language.word_fallback=error")]


def _spaceless(language: DictConfig) -> str:
    """Which language(s) write no spaces: the preset's code, or the offending entries of `language.codes`."""
    if "codes" not in language:
        return f"{language.code} ({language.script} script) writes none"
    codes = expand_codes(language.codes, sib200_codes())
    spaceless = ", ".join(code for code in codes if "_" in code and not uses_spaces(code))
    return f"language.codes has {spaceless}, which write none"


def _check_ngram_range(key: str, value) -> list[str]:
    if value is None:
        return []
    if len(value) != 2 or not 1 <= value[0] <= value[1]:
        return [not_allowed(key, list(value), "it must be [min_n, max_n] with 1 <= min_n <= max_n")]
    return []
