"""String operations shared by every encoder: standardization and segmentation.

Everything here is a TensorFlow op, so it runs inside the saved model and in
``tf.data``, and behaves the same in training and in serving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tensorflow as tf
import tensorflow_text as tf_text

NORMALIZATIONS = ("NFKC", "NFC", "none")
CASES = ("fold", "lower", "none")
DIGITS = ("keep", "zero")
ANALYZERS = ("word", "char", "char_wb", "byte")
# Locales whose dotted and dotless i differ from the default Unicode casing.
DOTTED_I_LOCALES = ("tr", "az")


def standardize(texts: tf.Tensor, options: Mapping) -> tf.Tensor:
    """Normalize a batch of strings so that spelling variants become the same string.

    ``options`` (from the language preset, ``language.standardize``):
      normalization     NFKC | NFC | none: Unicode normalization form.
      case              fold | lower | none: full Unicode case folding (ß -> ss,
                        final ς -> σ) or lowercasing, in every script.
      locale            "" or a BCP-47 tag; tr and az map İ -> i and I -> ı first.
      fold_punctuation  Unicode punctuation and symbols become spaces.
      strip_diacritics  remove combining marks (é -> e); off by default, since
                        many scripts write vowels with them.
      digits            keep | zero: every decimal digit, in any script, -> 0.
    Zero-width and control characters are always removed, and runs of
    whitespace (any Unicode space) become one space.
    """
    texts = tf.reshape(texts, [-1])
    # Drop invalid UTF-8 (replaced by U+FFFD) so that no later op can fail on it.
    texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
    if options["normalization"] != "none":
        texts = tf_text.normalize_utf8(texts, options["normalization"])
    if options["strip_diacritics"]:
        texts = tf_text.normalize_utf8(texts, "NFD")
        texts = tf.strings.regex_replace(texts, r"\p{Mn}+", "")
        texts = tf_text.normalize_utf8(texts, "NFC")
    texts = _apply_case(texts, options["case"], options["locale"])
    if options["fold_punctuation"]:
        texts = tf.strings.regex_replace(texts, r"[\p{P}\p{S}]+", " ")
    if options["digits"] == "zero":
        texts = tf.strings.regex_replace(texts, r"\p{Nd}", "0")
    texts = tf.strings.regex_replace(texts, r"[\p{Cf}\x{FEFF}]+", "")
    texts = tf.strings.regex_replace(texts, r"[\s\p{Z}\p{Cc}]+", " ")
    return tf.strings.strip(texts)


def _apply_case(texts: tf.Tensor, case: str, locale: str) -> tf.Tensor:
    if case == "none":
        return texts
    if str(locale).split("-")[0].lower() in DOTTED_I_LOCALES:
        # Turkish and Azerbaijani: İ (also I + combining dot) is i, and I is dotless ı.
        texts = tf.strings.regex_replace(texts, "İ|I\u0307", "i")
        texts = tf.strings.regex_replace(texts, "I", "ı")
    if case == "fold":
        # ICU full case folding (NFKC_Casefold): compatibility forms also unified.
        return tf_text.case_fold_utf8(texts)
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
