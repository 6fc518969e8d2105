"""Config set-up and value checks that run before any work.

All problems are collected and reported together, one line each, naming the
key, the value received and what is allowed.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from kmexp.data import sib200_codes
from kmexp.errors import ConfigError
from kmexp.languages import (
    check_code,
    check_codes,
    expand_codes,
    register_resolvers,
    uses_spaces,
)
from kmexp.sweep import register_sweep_resolvers


def register_configs() -> None:
    """Everything that must exist before Hydra composes a config."""
    register_resolvers()
    register_code_resolver()
    register_sweep_resolvers()


def register_code_resolver() -> None:
    """`${kmexp.codes:...}`: a `language.codes` value as a list, with `all` expanded to the 205 codes.

    Registered here rather than in kmexp.languages, which stays independent of
    where the SIB-200 manifest lives; conf/language/multi.yaml uses it.
    """
    OmegaConf.register_new_resolver("kmexp.codes", lambda value: expand_codes(value, sib200_codes()), replace=True)


def validate(cfg: DictConfig) -> None:
    """Raise one ConfigError listing every invalid value in ``cfg``."""
    problems = [
        *_check_language(cfg.language),
        *_check_eval_languages(cfg),
        *_check_positive("optimizer.learning_rate", cfg.optimizer.get("learning_rate")),
        *_check_at_least("trainer.epochs", cfg.trainer.epochs, 1),
        *_check_at_least("trainer.batch_size", cfg.trainer.batch_size, 1),
        *_check_at_least("trainer.patience", cfg.trainer.patience, 0),
        *_check_at_least("trainer.steps_per_execution", cfg.trainer.steps_per_execution, 1),
        *_check_model(cfg.model),
        *_check_ngram_range("encoder.preprocessor.ngram_range", cfg.encoder.preprocessor.get("ngram_range")),
        *_check_segmentation(cfg.encoder.preprocessor, cfg.language),
    ]
    if cfg.device.jit_compile and cfg.encoder.preprocessor.get("sparse"):
        problems.append(
            "device.jit_compile=true cannot compile sparse features; "
            "set encoder.preprocessor.sparse=false or device.jit_compile=false"
        )
    if cfg.trainer.monitor not in ("objective", "loss"):
        problems.append(f"trainer.monitor={cfg.trainer.monitor} is not allowed; it must be objective or loss")
    if len(cfg.metric) == 0:
        problems.append("metric=[] selects no metric; choose at least one, e.g. metric=[accuracy,macro_f1]")
    if problems:
        raise ConfigError("; ".join(problems))


def _check_language(language: DictConfig) -> list[str]:
    """The preset's SIB-200 code, or for language=multi each entry of `language.codes`."""
    if "codes" in language:
        return check_codes("language.codes", language.codes, sib200_codes())
    try:
        check_code(language.code, sib200_codes())
    except ConfigError as err:
        return [str(err)]
    return []


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


def _shown(value) -> str:
    """A config value as the user would type it on the command line."""
    return value if isinstance(value, str) else f"[{','.join(str(v) for v in value)}]"


def _check_positive(key: str, value) -> list[str]:
    if value is not None and not value > 0:
        return [f"{key}={value} is not allowed; it must be > 0"]
    return []


def _check_at_least(key: str, value, lowest: int) -> list[str]:
    if not value >= lowest:
        return [f"{key}={value} is not allowed; it must be an integer >= {lowest}"]
    return []


def _check_model(model: DictConfig) -> list[str]:
    problems = []
    if not 0 <= model.dropout < 1:
        problems.append(f"model.dropout={model.dropout} is not allowed; it must be in [0, 1)")
    if not model.l2 >= 0:
        problems.append(f"model.l2={model.l2} is not allowed; it must be >= 0")
    for i, units in enumerate(model.hidden_units):
        problems += _check_at_least(f"model.hidden_units[{i}]", units, 1)
    return problems


def _check_segmentation(preprocessor: DictConfig, language: DictConfig) -> list[str]:
    """Word splitting needs spaces: where the script has none, the preset's fallback must have applied."""
    if preprocessor.get("analyzer") != "word" or language.spaces:
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
