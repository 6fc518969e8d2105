"""Facts about SIB-200 language codes, and the OmegaConf resolvers built on them.

A SIB-200 code is `<ISO 639-3 language>_<ISO 15924 script>`, e.g. `fra_Latn`.
Everything the pipeline needs to know about a language beyond its data
(tokenisation by spaces, writing direction) follows from the script, so these
helpers only look at the part after the underscore. That lets
conf/language/generic.yaml cover all 205 languages without a preset each, and
conf/language/multi.yaml describe a set of languages by what they share.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from kmexp.errors import ConfigError

# Scripts written without spaces between words: whitespace tokenisation would
# turn a whole sentence into one token, so they need character/subword handling.
NO_SPACE_SCRIPTS: frozenset[str] = frozenset(
    {"Hans", "Hant", "Jpan", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"}
)

# Scripts written right to left.
RTL_SCRIPTS: frozenset[str] = frozenset({"Arab", "Hebr", "Thaa", "Syrc", "Nkoo", "Adlm"})

# `language.codes=all` / `eval_languages=all`: every SIB-200 language.
ALL_CODES = "all"
# What a set of languages reports for a fact its members do not share.
MIXED_SCRIPT = "Mixed"
MIXED_DIRECTION = "mixed"

# How many suggestions check_code offers; more would not fit on one readable line.
_N_SUGGESTIONS = 3


def script_of(code: str) -> str:
    """ISO 15924 script of a SIB-200 code: the part after `_` (`fra_Latn` -> `Latn`)."""
    language, sep, script = str(code).rpartition("_")
    if not sep or not language or not script:
        raise ConfigError(
            f"language.code={code!r} is not of the form <ISO 639-3>_<ISO 15924>, e.g. fra_Latn"
        )
    return script


def uses_spaces(code: str) -> bool:
    """Whether the code's script separates words with spaces."""
    return script_of(code) not in NO_SPACE_SCRIPTS


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
    so that resolvers never fail on it; `check_codes` is what rejects it.
    """
    if isinstance(value, str):
        return sorted(set(valid_codes)) if value == ALL_CODES else [value]
    if isinstance(value, Iterable):
        return list(dict.fromkeys(str(code) for code in value))
    return [str(value)]


def check_codes(key: str, value, valid_codes: Iterable[str]) -> list[str]:
    """Problems with a `language.codes`-style value: `all` or a non-empty list of valid codes."""
    if isinstance(value, str) and value == ALL_CODES:
        return []
    if isinstance(value, str) or not isinstance(value, Iterable):
        message = (
            f"{key}={value!r} is not allowed; it must be {ALL_CODES} or a list of SIB-200 codes, "
            f"e.g. {key}=[fra_Latn,zho_Hans]"
        )
        return [message]
    codes = list(value)
    if not codes:
        return [f"{key}=[] selects no language; list at least one SIB-200 code, or use {key}={ALL_CODES}"]
    valid = sorted(set(valid_codes))
    problems = []
    for i, code in enumerate(codes):
        try:
            check_code(code, valid, key=f"{key}[{i}]")
        except ConfigError as err:
            problems.append(str(err))
    return problems


def check_code(code: str, valid_codes: Iterable[str], key: str = "language.code") -> None:
    """Raise ConfigError, with the closest valid codes, if `code` is not one of `valid_codes`.

    The valid codes are passed in rather than read here so that this module does
    not depend on where the SIB-200 manifest lives. `key` is the config key the
    message names (`language.codes[1]` for one entry of a list).
    """
    codes = sorted(set(valid_codes))
    if code in codes:
        return

    # Compare case-insensitively: `FRA_LATN` or `fra_latn` should point at `fra_Latn`.
    by_lower = {c.lower(): c for c in codes}
    close = difflib.get_close_matches(str(code).lower(), list(by_lower), n=_N_SUGGESTIONS)
    suggestions = [by_lower[c] for c in close]

    # A mistyped language with a correct script (e.g. `xyz_Olck`) is too far from
    # everything for difflib; the languages in that script are the best hint left.
    if not suggestions:
        script = str(code).rpartition("_")[2].lower()
        suggestions = [c for c in codes if c.rpartition("_")[2].lower() == script]
        suggestions = suggestions[:_N_SUGGESTIONS]

    # Still nothing (`xx_Fake`): name the nearest codes anyway, rather than none.
    if not suggestions:
        nearest = difflib.get_close_matches(str(code).lower(), list(by_lower), n=_N_SUGGESTIONS, cutoff=0.0)
        suggestions = [by_lower[c] for c in nearest]

    closest = f"; closest: {', '.join(suggestions)}" if suggestions else ""
    raise ConfigError(
        f"{key}={code!r} is not a SIB-200 language code{closest} "
        f"({len(codes)} codes: see conf/language/ or ../shared/sib200)"
    )
