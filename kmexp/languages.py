"""Facts about SIB-200 language codes, and the OmegaConf resolvers built on them.

A SIB-200 code is `<ISO 639-3 language>_<ISO 15924 script>`, e.g. `fra_Latn`.
Everything the pipeline needs to know about a language beyond its data
(tokenisation by spaces, writing direction) follows from the script, so these
helpers only look at the part after the underscore. That lets
conf/language/generic.yaml cover all 205 languages without a preset each, and
conf/language/multi.yaml describe a set of languages by what they share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from kmexp.errors import ConfigError

# Scripts written without spaces between words: whitespace tokenisation would
# turn a whole sentence into one token, so they need character/subword handling.
NO_SPACE_SCRIPTS: frozenset[str] = frozenset(
    {"Hans", "Hant", "Jpan", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"}
)

# Scripts written right to left.
RTL_SCRIPTS: frozenset[str] = frozenset({"Arab", "Hebr", "Thaa", "Syrc", "Nkoo", "Adlm"})

# Chinese characters and Japanese (kanji with kana), a subset of NO_SPACE_SCRIPTS: one
# character is a syllable or a morpheme, nearly a word, unlike Thai or Khmer letters.
HAN_SCRIPTS: frozenset[str] = frozenset({"Hans", "Hant", "Jpan"})

# The rows of conf/language/_scripts.yaml, the one table of settings that follow the script,
# most specific first: the first class that holds a script is its class; the rest are `default`.
SCRIPT_CLASSES: tuple[tuple[str, frozenset[str]], ...] = (
    ("han", HAN_SCRIPTS),
    ("no_spaces", NO_SPACE_SCRIPTS),
    ("rtl", RTL_SCRIPTS),
)
DEFAULT_SCRIPT_CLASS = "default"

# `language.codes=all` / `eval_languages=all`: every SIB-200 language.
ALL_CODES = "all"
# The sha256 of every SIB-200 file at the pinned upstream commit, shipped in the package:
# the list of the 205 codes, and what a download is checked against (kmexp.data.sib200).
SHIPPED_SUMS = Path(__file__).resolve().parent / "data" / "sib200.sha256"
SIB200_COMMIT = "593cea88519930f776c1a4a1980b6a35b39dca57"  # the upstream commit the shipped sums were taken from
# What a set of languages reports for a fact its members do not share.
MIXED_SCRIPT = "Mixed"
MIXED_DIRECTION = "mixed"



def sib200_codes() -> list[str]:
    """The 205 SIB-200 language codes (e.g. fra_Latn), sorted, from the shipped sums."""
    return codes_in(line.split(maxsplit=1)[1] for line in SHIPPED_SUMS.read_text(encoding="utf-8").splitlines() if line.strip())


def sib200_sweep_order() -> list[str]:
    """The 205 SIB-200 codes in the order ``+sweep=sib200_all`` runs them: the languages written without
    spaces first, then the others, each part by code.

    A run of characters between two spaces is one long word there, so those languages have the widest
    character n-gram vocabularies of SIB-200, and their jobs need the most memory. Met first, they set
    an in-process sweep's memory in its first jobs, and it stays flat after them; met in code order,
    they raise it part way through (docs/benchmarks.md, sweep throughput).
    """
    return sorted(sib200_codes(), key=uses_spaces)  # stable: False (no spaces) first, by code within


def codes_in(names: Iterable[str]) -> list[str]:
    """The language codes in SIB-200 file names ('<code>/<file>', './' allowed first), sorted."""
    return sorted({name.strip().removeprefix("./").split("/", 1)[0] for name in names})


def script_of(code: str) -> str:
    """ISO 15924 script of a SIB-200 code: the part after `_` (`fra_Latn` -> `Latn`)."""
    language, sep, script = str(code).rpartition("_")
    if not sep or not language or not script:
        raise ConfigError(
            f"language.code={code} is not allowed: it must be of the form <ISO 639-3>_<ISO 15924>, e.g. fra_Latn"
        )
    return script


def uses_spaces(code: str) -> bool:
    """Whether the code's script separates words with spaces."""
    return script_of(code) not in NO_SPACE_SCRIPTS


def splits_words_without_spaces(preprocessor: Mapping, language: Mapping) -> bool:
    """Whether ``preprocessor`` splits words on spaces (analyzer=word) where ``language`` writes none.

    There, ``language.word_fallback`` decides: ``char`` counts character n-grams instead
    (kmexp.builders.build_preprocessor), ``error`` stops before training (kmexp.config.validation).
    For language=multi, ``spaces`` is false when any of its languages writes none.
    """
    return preprocessor.get("analyzer") == "word" and language["spaces"] is not True


def script_class(script: str) -> str:
    """The class of an ISO 15924 script: its row in conf/language/_scripts.yaml (``han``, ``no_spaces``,
    ``rtl``), else ``default``, as for ``Mixed`` (language=multi over several scripts)."""
    return next((name for name, scripts in SCRIPT_CLASSES if str(script) in scripts), DEFAULT_SCRIPT_CLASS)


def direction_of(code: str) -> str:
    """Writing direction of the code's script: "rtl" or "ltr"."""
    return "rtl" if script_of(code) in RTL_SCRIPTS else "ltr"


def _scripts(codes: Iterable[str]) -> set[str]:
    """Script suffixes of well-formed codes; malformed ones are left to validation to report.

    Lenient on purpose: these feed resolvers, which run before `validate` and
    would otherwise turn one bad code into an interpolation traceback.
    """
    return {str(code).rpartition("_")[2] for code in codes if "_" in str(code)}


def shared_script(codes: Iterable[str]) -> str:
    """The one script all `codes` are written in, or "Mixed"."""
    scripts = _scripts(codes)
    return scripts.pop() if len(scripts) == 1 else MIXED_SCRIPT


def all_use_spaces(codes: Iterable[str]) -> bool:
    """Whether every one of `codes` separates words with spaces (word-level encoders need all)."""
    return not _scripts(codes) & NO_SPACE_SCRIPTS


def shared_direction(codes: Iterable[str]) -> str:
    """"ltr" or "rtl" when all `codes` agree, else "mixed"."""
    directions = {"rtl" if script in RTL_SCRIPTS else "ltr" for script in _scripts(codes)}
    return directions.pop() if len(directions) == 1 else MIXED_DIRECTION


def expand_codes(value, valid_codes: Iterable[str]) -> list[str]:
    """`all` -> every valid code; a list -> its codes in order, each once.

    Anything else (a single string, a number) comes back as a one-element list
    so that resolvers never fail on it; `kmexp.config.validation.check_codes` is what rejects it.
    """
    if isinstance(value, str):
        return sorted(set(valid_codes)) if value == ALL_CODES else [value]
    if isinstance(value, Iterable):
        return list(dict.fromkeys(str(code) for code in value))
    return [str(value)]
