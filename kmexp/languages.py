"""Facts about SIB-200 language codes, and the OmegaConf resolvers built on them.

A SIB-200 code is `<ISO 639-3 language>_<ISO 15924 script>`, e.g. `fra_Latn`.
Everything the pipeline needs to know about a language beyond its data
(tokenisation by spaces, writing direction) follows from the script, so these
helpers only look at the part after the underscore. That lets
conf/language/generic.yaml cover all 205 languages without a preset each.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from omegaconf import OmegaConf

from kmexp.errors import ConfigError

# Scripts written without spaces between words: whitespace tokenisation would
# turn a whole sentence into one token, so they need character/subword handling.
NO_SPACE_SCRIPTS: frozenset[str] = frozenset(
    {"Hans", "Hant", "Jpan", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"}
)

# Scripts written right to left.
RTL_SCRIPTS: frozenset[str] = frozenset({"Arab", "Hebr", "Thaa", "Syrc", "Nkoo", "Adlm"})

# Resolver names used by conf/language/generic.yaml, as `${kmexp.script:${.code}}` etc.
RESOLVER_NAMES: tuple[str, ...] = ("kmexp.script", "kmexp.spaces", "kmexp.direction")

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


def register_resolvers() -> None:
    """Register the `kmexp.*` resolvers used by conf/language/generic.yaml.

    replace=True makes this idempotent: the CLI, tests and notebooks can all call
    it without tracking whether it already ran in this process.
    """
    OmegaConf.register_new_resolver("kmexp.script", script_of, replace=True)
    OmegaConf.register_new_resolver("kmexp.spaces", uses_spaces, replace=True)
    OmegaConf.register_new_resolver("kmexp.direction", direction_of, replace=True)


def check_code(code: str, valid_codes: Iterable[str]) -> None:
    """Raise ConfigError, with the closest valid codes, if `code` is not one of `valid_codes`.

    The valid codes are passed in rather than read here so that this module does
    not depend on where the SIB-200 manifest lives.
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

    closest = f"; closest: {', '.join(suggestions)}" if suggestions else ""
    raise ConfigError(
        f"language.code={code!r} is not a SIB-200 language code{closest} "
        f"({len(codes)} codes: see conf/language/ or ../shared/sib200)"
    )
