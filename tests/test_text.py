"""Unit tests of text standardization: each option, each switch off, and the language presets."""

from __future__ import annotations

import unicodedata

import pytest
import tensorflow as tf
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from kmexp.config import register_configs
from kmexp.encoders.text import OPTIONS, has_dotted_i, standardize, tokens
from kmexp.errors import ConfigError
from kmexp.paths import config_dir


def common_options() -> dict:
    """The standardize options of conf/language/_common.yaml (their one home), with no locale."""
    written = OmegaConf.load(config_dir() / "language" / "_common.yaml").standardize
    return {**OmegaConf.to_container(written), "locale": ""}  # the file's locale is ${..tag}: the preset's


# Every preset's options unless it overrides one.
COMMON = common_options()

# Every step switched off: only invalid UTF-8 is still repaired.
ALL_OFF = {
    "normalization": "none",
    "case": "none",
    "locale": "",
    "fold_punctuation": False,
    "strip_diacritics": False,
    "digits": "keep",
    "fold_whitespace": False,
}


def run(texts, **options) -> list[str]:
    """Standardize Python strings with COMMON overridden by ``options``."""
    out = standardize(tf.constant(list(texts)), {**COMMON, **options})
    return [value.decode("utf-8") for value in out.numpy()]


def one(text: str, **options) -> str:
    return run([text], **options)[0]


def off(text: str, **options) -> str:
    """Standardize with every step off except those in ``options``."""
    return one(text, **{**ALL_OFF, **options})


def load(overrides: list[str] = ()):
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def preset_options(overrides: list[str]) -> dict:
    return OmegaConf.to_container(load(overrides).language.standardize, resolve=True)


def language_presets() -> list[str]:
    return sorted(p.stem for p in (config_dir() / "language").glob("*.yaml") if not p.stem.startswith("_"))


# --- defaults -----------------------------------------------------------------------------


def test_the_english_preset_keeps_the_common_options():
    assert set(COMMON) == set(OPTIONS)
    assert preset_options(["language=en"]) == {**COMMON, "locale": "en"}


def test_defaults_on_a_mixed_sentence():
    assert one("  ÉTÉ, à PARIS!!  Straße\u00a0\u2003ΣΟΦΊΑ  ") == "été à paris strasse σοφία"


def test_shape_scalar_and_empty():
    assert standardize(tf.constant("ABC"), COMMON).shape == (1,)
    assert standardize(tf.constant([["A", "B"], ["C", "D"]]), COMMON).shape == (4,)
    assert standardize(tf.constant([], dtype=tf.string), COMMON).shape == (0,)
    assert run(["", " ", "\u200b", "!?"]) == ["", "", "", ""]


def test_models_saved_before_fold_whitespace_existed_fold_whitespace():
    # Such a model's config carries every option but fold_whitespace: whitespace was always folded then.
    partial = {k: v for k, v in COMMON.items() if k != "fold_whitespace"}
    assert standardize(tf.constant(["A\u200bB  C"]), partial).numpy().tolist() == [b"ab c"]


def test_any_other_missing_option_is_an_error():
    partial = {k: v for k, v in COMMON.items() if k != "case"}
    with pytest.raises(ConfigError, match="language.standardize has no case"):
        standardize(tf.constant(["x"]), partial)


@pytest.mark.parametrize(
    ("key", "value"),
    [("normalization", "NFD"), ("case", "upper"), ("digits", "ascii")],
)
def test_unknown_choice_is_refused(key, value):
    # The rule and the words of validate()'s language.standardize check.
    with pytest.raises(ConfigError, match=f"language.standardize.{key}={value} is not allowed: it must be one of "):
        standardize(tf.constant(["x"]), {**COMMON, key: value})


def test_choices_are_case_insensitive_and_null_means_none():
    assert one("ﬁ", normalization="nfkc", case="NONE") == "fi"
    assert one("ﬁ", normalization=None, case="none") == "ﬁ"


# --- normalization ------------------------------------------------------------------------


def test_nfkc_maps_compatibility_forms():
    assert off("ﬁ ① ² Ａ ｶ", normalization="NFKC") == "fi 1 2 A カ"


def test_nfc_composes_but_keeps_compatibility_forms():
    assert off("e\u0301 ﬁ ①", normalization="NFC") == "é ﬁ ①"


def test_normalization_none_keeps_code_points():
    assert off("e\u0301 ﬁ", normalization="none") == "e\u0301 ﬁ"


@pytest.mark.parametrize("form", ["NFKC", "NFC"])
def test_nfc_and_nfd_inputs_agree(form):
    text = "Ελληνικά Tiếng Việt Åström 한국어 ḱṓ"
    nfc, nfd = unicodedata.normalize("NFC", text), unicodedata.normalize("NFD", text)
    assert nfc != nfd
    assert run([nfc, nfd], normalization=form, case="none") == [nfc, nfc]


def test_fold_implies_nfkc_even_with_normalization_none():
    # Documented: case=fold is ICU NFKC_Casefold; only case=lower|none keep raw code points.
    assert off("ﬁ ①", normalization="none", case="fold") == "fi 1"
    assert off("ﬁ ①", normalization="none", case="lower") == "ﬁ ①"


# --- case ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["fold", "lower"])
@pytest.mark.parametrize(
    ("upper", "lower"),
    [
        ("ÉTÉ", "été"),
        ("ΣΟΦΊΑ", "σοφία"),
        ("ΣΟΦΌΣ", "σοφός"),
        ("МОСКВА ЁЛКА", "москва ёлка"),
        ("ÅNGSTRÖM ÆØ", "ångström æø"),
        ("ՀԱՅԵՐԵՆ", "հայերեն"),
    ],
)
def test_full_unicode_case_not_ascii_only(case, upper, lower):
    expected = lower.replace("ς", "σ") if case == "fold" else lower  # fold: every sigma is σ
    assert off(upper, case=case) == expected
    assert off(lower, case=case) == expected


def test_fold_versus_lower_on_sigma_and_sharp_s():
    # fold: every sigma is σ and ß is ss; lower keeps word-final ς and ß.
    assert off("ΟΔΟΣ οδος οδοσ Straße", case="fold") == "οδοσ οδοσ οδοσ strasse"
    assert off("ΟΔΟΣ οδος Straße", case="lower") == "οδος οδος straße"
    assert off("ΟΔΟΣ", case="lower") == off("οδος", case="lower")


def test_case_none_keeps_case():
    assert off("ÉTÉ Ποτέ", case="none") == "ÉTÉ Ποτέ"


def test_default_locale_lowercases_dotted_capital_i_by_unicode_rules():
    # Root casing: I -> i, İ -> i + combining dot above.
    assert one("ILIK") == "ilik"
    assert one("İ") == "i\u0307"


@pytest.mark.parametrize("locale", ["tr", "tr-TR", "az", "az-Latn", "tur_Latn", "azj_Latn", "azb_Arab", "crh_Latn"])
@pytest.mark.parametrize("case", ["fold", "lower"])
def test_turkic_dotted_and_dotless_i(locale, case):
    assert off("İSTANBUL ILIK Iğdır", case=case, locale=locale) == "istanbul ılık ığdır"
    # NFD İ (I + U+0307), with no normalization to compose it first.
    assert off("I\u0307STANBUL", case=case, locale=locale) == "istanbul"


@pytest.mark.parametrize("locale", ["", "en", "fr", "trk", "tu", "azerty", "ru_Cyrl"])
def test_other_locales_do_not_use_turkic_casing(locale):
    assert not has_dotted_i(locale)
    assert off("ILIK", case="fold", locale=locale) == "ilik"


def test_turkish_case_none_keeps_capitals():
    assert off("İSTANBUL ILIK", case="none", locale="tr") == "İSTANBUL ILIK"


def test_turkish_casing_comes_before_diacritic_stripping():
    # Stripping first would make İ -> I -> ı.
    assert one("İSTANBUL Şişli", locale="tr", strip_diacritics=True) == "istanbul sisli"


# --- punctuation, diacritics, digits, whitespace ------------------------------------------


def test_fold_punctuation_on_and_off():
    text = "«Bonjour», dit-il… ¿Qué? 你好。 ١٢٣؟ €5 👍 x"
    assert one(text) == "bonjour dit il qué 你好 ١٢٣ 5 x"
    assert one(text, fold_punctuation=False) == "«bonjour», dit-il... ¿qué? 你好。 ١٢٣؟ €5 👍 x"


def test_strip_diacritics_on_and_off():
    assert off("Crème brûlée Ωμέγα Đakovo ñ", strip_diacritics=True) == "Creme brulee Ωμεγα Đakovo n"
    assert one("Crème brûlée") == "crème brûlée"
    # Hangul decomposes to jamo under NFD and must come back whole.
    assert off("한국어", strip_diacritics=True) == "한국어"


def test_digits_zero_in_every_script():
    assert off("2024 ٢٠٢٤ ۲۰۲۴ २०२४ ௨௦", digits="zero") == "0000 0000 0000 0000 00"
    assert off("2024 ٢٠٢٤", digits="keep") == "2024 ٢٠٢٤"


def test_fold_whitespace_on():
    text = "\ufeffa\u200bb c\u200d\u200cd\u00a0\u2003e\u2028f\tg\n\rh\x00i\x85j\u200e\u200fk \u00adl "
    assert one(text, fold_punctuation=False) == "ab cd e f g h i jk l"


def test_fold_whitespace_off_keeps_everything():
    text = " a\u200bb\t\tc\u00a0 "
    assert off(text) == text
    assert off(text, fold_whitespace=False, normalization="NFC") == text


def test_all_switches_off_is_identity_on_valid_utf8():
    text = "ÉTÉ, e\u0301 ﬁ ٣ 👨\u200d👩\u200d👧 \u200b\t"
    assert off(text) == text


def test_emoji_zwj_sequences():
    family = "👨\u200d👩\u200d👧\u200d👦"
    assert one(f"a {family} b") == "a b"
    # Kept as symbols, joiners dropped: the sequence becomes its separate emoji.
    assert one(f"a {family} b", fold_punctuation=False) == "a 👨👩👧👦 b"


def test_rtl_text_and_bidi_marks():
    assert one("\u202bمرحبا\u200f بالعالم!\u202c") == "مرحبا بالعالم"
    assert one("שָׁלוֹם עוֹלָם") == unicodedata.normalize("NFKC", "שָׁלוֹם עוֹלָם")


def test_invalid_utf8_is_replaced_not_raised():
    out = standardize(tf.constant([b"\xff\xfe", b"ab\xc3", b"\xc3\x28x"]), COMMON).numpy().tolist()
    assert out == [b"", b"ab", b"x"]  # U+FFFD is a symbol: folded away with punctuation
    kept = standardize(tf.constant([b"a\xffb"]), {**COMMON, "fold_punctuation": False}).numpy().tolist()
    assert kept == ["a\ufffdb".encode()]


def test_long_string():
    text = "Ab, Ωμέγα! " * 10_000
    out = one(text)
    assert out == " ".join(["ab ωμέγα"] * 10_000)


def test_tokens_segment_standardized_text():
    texts = standardize(tf.constant(["Le CHAT", ""]), COMMON)
    assert tokens(texts, "word", (1, 2)).to_list() == [[b"le", b"chat", b"le chat"], []]
    assert tokens(texts, "char_wb", (3, 3)).to_list()[0] == [b" le", b"le ", b" ch", b"cha", b"hat", b"at "]


# --- language presets ---------------------------------------------------------------------


def test_turkish_preset():
    options = preset_options(["language=tr"])
    assert options["locale"] == "tr"
    got = standardize(tf.constant(["İSTANBUL", "istanbul", "ILIK", "ılık"]), options).numpy().tolist()
    assert [s.decode() for s in got] == ["istanbul", "istanbul", "ılık", "ılık"]


@pytest.mark.parametrize("code", ["azj_Latn", "azb_Arab", "tur_Latn"])
def test_azerbaijani_and_turkish_through_the_generic_preset(code):
    options = preset_options(["language=generic", f"language.code={code}"])
    assert options["locale"] == code
    got = standardize(tf.constant(["İLHAM IŞIQ"]), options).numpy().tolist()
    assert got == ["ilham ışıq".encode()]


def test_english_preset_keeps_unicode_i_rules():
    options = preset_options(["language=en"])
    assert standardize(tf.constant(["ILIK"]), options).numpy().tolist() == [b"ilik"]


SAMPLES = [
    "Hello, WORLD! ÉTÉ Straße",
    "ΣΟΦΌΣ οδός Москва",
    "مرحبا بالعالم ١٢٣",
    "שָׁלוֹם",
    "你好，世界。東京タワー",
    "สวัสดีครับ",
    "नमस्ते दुनिया १२३ ক্ষ தமிழ்",
    "ሰላም ዓለም Ẹ̀kọ́ Tiếng Việt",
    "한국어 👨\u200d👩\u200d👧 \u200b\ufeff\x00",
    "",
]


@pytest.mark.parametrize("name", language_presets())
def test_every_preset_standardizes(name):
    extra = ["language.code=yor_Latn"] if name == "generic" else []
    options = preset_options([f"language={name}", *extra])
    out = standardize(tf.constant(SAMPLES), options)
    assert out.shape == (len(SAMPLES),)
    for value in out.numpy():
        value.decode("utf-8")  # valid UTF-8
    again = standardize(out, options)
    assert again.numpy().tolist() == out.numpy().tolist()
