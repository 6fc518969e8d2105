"""String operations shared by every encoder: standardization and segmentation.

Everything here is a TensorFlow op, so it runs inside the saved model and in
``tf.data``, and behaves the same in training and in serving.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import tensorflow as tf
import tensorflow_text as tf_text

from kmexp.config.validation import CASES, DIGITS, NORMALIZATIONS, check_standardize, raise_problems
from kmexp.errors import ConfigError

# Every option standardize() reads. Its values come from the language preset (conf/language/),
# and a saved model carries them all in its preprocessor's config.
OPTIONS = ("normalization", "case", "locale", "fold_punctuation", "strip_diacritics", "digits", "fold_whitespace")
# Options added after models were first saved, with what every model saved before then did:
# those models always folded whitespace (kmexp 126e8de; the switch came in 2f6ecdb).
SAVED_BEFORE_THE_OPTION = {"fold_whitespace": True}

# Languages whose Latin alphabet pairs dotted İ/i and dotless I/ı, unlike the default
# Unicode casing (I -> i). Matched on the language part of `locale`, which is a BCP-47
# tag for the presets (tr) but the SIB-200 code itself for `language=generic`
# (tur_Latn, azj_Latn, azb_Arab), so both the ISO 639-1 and 639-3 names are listed.
# ICU special-cases only tr and az; Crimean Tatar (crh_Latn in SIB-200) writes the
# same four letters, so it gets the same rule.
DOTTED_I_LANGUAGES = frozenset({"tr", "tur", "az", "aze", "azj", "azb", "crh"})

# RE2 syntax (tf.strings.regex_replace). Format characters (Cf) are invisible: zero-width
# space/joiners, BOM U+FEFF, bidi marks (LRM/RLM around RTL text), soft hyphen, emoji
# tag characters. U+FEFF is Cf in current Unicode; listed for older RE2 tables.
_INVISIBLE = r"[\p{Cf}\x{FEFF}]+"
# \s alone is ASCII in RE2; \p{Z} adds every Unicode space and line/paragraph separator,
# \p{Cc} the C0/C1 controls (tab, newline, NUL, NEL...).
_WHITESPACE = r"[\s\p{Z}\p{Cc}]+"
_PUNCTUATION = r"[\p{P}\p{S}]+"
_COMBINING_MARKS = r"\p{Mn}+"
_DECIMAL_DIGIT = r"\p{Nd}"


def standardize(texts: tf.Tensor, options: Mapping) -> tf.Tensor:
    """Normalize a batch of strings so that spelling variants become the same string.

    ``options`` (from the language preset, ``language.standardize``; every key of
    ``OPTIONS``, except those a model saved before them lacks: ``SAVED_BEFORE_THE_OPTION``):
      normalization     NFKC | NFC | none: Unicode normalization form.
      case              fold | lower | none, in every script (not ASCII-only).
                        fold: ICU full case folding, NFKC_Casefold (ß -> ss, every
                        σ/ς -> σ, ﬁ -> fi); it includes NFKC and drops default-ignorable
                        characters, so with fold the text ends up NFKC whatever
                        ``normalization`` says. Use lower to keep NFC or raw code points.
                        lower: full Unicode lowercasing; a word-final capital Σ becomes
                        final ς (ΟΔΟΣ -> οδος), so οδοσ and οδος stay different.
      locale            "" or a BCP-47 tag or SIB-200 code; tr, az (tur_Latn, azj_Latn,
                        azb_Arab) and crh map İ -> i and I -> ı before casing.
      strip_diacritics  remove combining marks (é -> e); off by default, since
                        many scripts write vowels with them.
      fold_punctuation  Unicode punctuation and symbols (emoji too) become spaces.
      digits            keep | zero: every decimal digit, in any script, -> 0.
      fold_whitespace   drop zero-width and format characters (U+200B, U+200D, U+FEFF,
                        bidi marks), turn control characters and runs of any Unicode
                        space into one space, and trim the ends.
    Invalid UTF-8 always becomes U+FFFD first (a symbol, so fold_punctuation removes it).
    The result is idempotent for every combination of options, and the same for NFC
    and NFD input whenever ``normalization`` is on (tests/test_properties.py).
    """
    options = _checked({**SAVED_BEFORE_THE_OPTION, **options})
    texts = tf.reshape(texts, [-1])
    # Invalid UTF-8 -> U+FFFD, so that no later op can fail on it.
    texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
    if options["fold_whitespace"]:
        # Before normalization: an invisible character between a letter and a combining
        # mark (e, U+200B, U+0301) blocks composition; removed afterwards, it would leave
        # an uncomposed e + U+0301 that a second pass composes (not idempotent).
        texts = tf.strings.regex_replace(texts, _INVISIBLE, "")
    if options["normalization"] != "none":
        texts = tf_text.normalize_utf8(texts, options["normalization"])
    # Casing before diacritics: stripping first would turn Turkish İ (I + U+0307) into I,
    # which the Turkish rule then lowercases to dotless ı.
    texts = _apply_case(texts, options["case"], options["locale"])
    if options["strip_diacritics"]:
        # Decompose so accents are separate marks, drop them, recompose what is left.
        texts = tf_text.normalize_utf8(texts, "NFD")
        texts = tf.strings.regex_replace(texts, _COMBINING_MARKS, "")
        texts = tf_text.normalize_utf8(texts, "NFC")
    if options["fold_punctuation"]:
        texts = tf.strings.regex_replace(texts, _PUNCTUATION, " ")
    if options["digits"] == "zero":
        texts = tf.strings.regex_replace(texts, _DECIMAL_DIGIT, "0")
    if options["fold_whitespace"]:
        texts = tf.strings.regex_replace(texts, _WHITESPACE, " ")
        texts = tf.strings.strip(texts)
    return texts


def _checked(options: dict) -> dict:
    """Fail at model build time on a misspelt or missing option, not silently at prediction.

    The choices are matched case-insensitively (nfkc is NFKC, None is none), then checked by
    the rule validate() applies to ``language.standardize``.
    """
    missing = [key for key in OPTIONS if key not in options]
    if missing:
        raise ConfigError(f"language.standardize has no {', '.join(missing)}: give every option of {', '.join(OPTIONS)}")
    checked = dict(options)
    for key, allowed in (("normalization", NORMALIZATIONS), ("case", CASES), ("digits", DIGITS)):
        value = "none" if options[key] is None else str(options[key])
        # Case-insensitive: nfkc and NFKC are the same choice.
        checked[key] = next((choice for choice in allowed if choice.lower() == value.lower()), options[key])
    raise_problems(check_standardize(checked))
    for key in ("fold_punctuation", "strip_diacritics", "fold_whitespace"):
        checked[key] = bool(options[key])
    checked["locale"] = "" if options["locale"] is None else str(options["locale"])
    return checked


def has_dotted_i(locale: str) -> bool:
    """Whether ``locale`` (tr, az-Latn, tur_Latn, azj_Latn...) uses Turkic İ/i, I/ı casing."""
    language = re.split(r"[-_]", str(locale), maxsplit=1)[0].lower()
    return language in DOTTED_I_LANGUAGES


def _apply_case(texts: tf.Tensor, case: str, locale: str) -> tf.Tensor:
    if case == "none":
        return texts
    if has_dotted_i(locale):
        # Turkic: İ (or I + combining dot above, as in NFD) is i, and plain I is dotless ı.
        # Done by hand because TF's casing ops take no locale (ICU root rules: I -> i).
        texts = tf.strings.regex_replace(texts, "İ|I\u0307", "i")
        texts = tf.strings.regex_replace(texts, "I", "ı")
    if case == "fold":
        return tf_text.case_fold_utf8(texts)
    # encoding="utf-8" makes it full Unicode lowercasing; without it TF lowercases ASCII only.
    return tf.strings.lower(texts, encoding="utf-8")


def tokens(texts: tf.Tensor, analyzer: str, ngram_range: Sequence[int]) -> tf.RaggedTensor:
    """Split standardized strings into a ragged [batch, tokens] tensor of n-grams.

    ``word``: n-grams of whitespace-separated words, joined by a space.
    ``char``: character n-grams over the whole text.
    ``char_wb``: character n-grams inside words padded with a space on each
    side (scikit-learn's ``analyzer="char_wb"``).
    ``byte``: n-grams of UTF-8 bytes (every script, no vocabulary needed).
    """
    width = tuple(range(int(ngram_range[0]), int(ngram_range[1]) + 1))
    if analyzer == "word":
        return tf.strings.ngrams(tf.strings.split(texts), width, separator=" ")
    if analyzer == "char":
        return tf.strings.ngrams(tf.strings.unicode_split(texts, "UTF-8"), width, separator="")
    if analyzer == "byte":
        return tf.strings.ngrams(tf.strings.bytes_split(texts), width, separator="")
    words = tf.strings.split(texts)  # [batch, words]
    chars = tf.strings.unicode_split(" " + words + " ", "UTF-8")  # [batch, words, chars]
    return tf.strings.ngrams(chars, width, separator="").merge_dims(1, 2)
