"""Language presets in conf/language/ and the helpers in kmexp.languages."""

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationToMissingValueError

from kmexp import languages
from kmexp.errors import ConfigError
from kmexp.config.resolvers import register_resolvers, script_setting
from kmexp.config.validation import check_code
from kmexp.languages import direction_of, script_of, uses_spaces
from kmexp.paths import config_dir

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
PRESET_DIR = CONF / "language"

TAGS = (
    "en fr de es pt it ru uk ar he fa hi bn ta zh zh-Hant ja ko th vi tr el sw am yo id".split()
)
NO_SPACES = {"zh", "zh-Hant", "ja", "th"}
RTL = {"ar", "he", "fa"}
KEYS = {
    "tag": str, "code": str, "name": str, "script": str, "spaces": bool, "direction": str,
    "standardize": dict, "word_fallback": str, "fallback_ngram_range": list,
    "pool": type(None), "pool_weight": float,  # related-language pooling: none by default (conf/language/_common.yaml)
}


def sib200_codes() -> list[str]:
    """The 205 language folders named in the manifest (lines `<sha256>  ./<lang>/<file>`)."""
    lines = (ROOT / "kmexp" / "data" / "sib200.sha256").read_text().splitlines()
    return sorted({line.split()[1].split("/")[1] for line in lines if line.strip()})


CODES = sib200_codes()


def generic_file():
    """generic.yaml on top of the _common.yaml it includes, as written (no schema), for resolver checks."""
    parts = [OmegaConf.load(PRESET_DIR / name) for name in ("_common.yaml", "generic.yaml")]
    for part in parts:
        del part["defaults"]
    return OmegaConf.merge(*parts)


def load_preset(tag: str):
    """The preset as a run sees it: composed by Hydra (with the shared _common.yaml) and resolved."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"language={tag}"])
    return OmegaConf.create(OmegaConf.to_container(cfg.language, resolve=True))


def test_manifest_has_205_languages():
    assert len(CODES) == 205


def test_preset_files_are_the_26_locales_generic_and_multi():
    presets = {p.stem for p in PRESET_DIR.glob("*.yaml") if not p.stem.startswith("_")}
    assert presets == set(TAGS) | {"generic", "multi"}


@pytest.mark.parametrize("tag", TAGS)
def test_preset(tag):
    cfg = load_preset(tag)
    assert set(cfg) == set(KEYS)
    for key, kind in KEYS.items():
        value = OmegaConf.to_container(cfg[key]) if kind in (dict, list) else cfg[key]
        assert type(value) is kind, (key, cfg[key])
    assert cfg.tag == tag
    assert cfg.code in CODES
    # The declared facts must agree with what the resolvers derive for generic.yaml,
    # so `language=fr` and `language=generic language.code=fra_Latn` mean the same thing.
    assert cfg.script == script_of(cfg.code)
    assert cfg.spaces is uses_spaces(cfg.code)
    assert cfg.direction == direction_of(cfg.code)


def test_no_space_presets():
    assert {tag for tag in TAGS if not load_preset(tag).spaces} == NO_SPACES
    # Where words are not space-separated, the preset declares what word-level encoders do.
    assert {tag for tag in TAGS if load_preset(tag).word_fallback == "char"} == NO_SPACES


def test_rtl_presets():
    assert {tag for tag in TAGS if load_preset(tag).direction == "rtl"} == RTL
    assert {load_preset(tag).direction for tag in TAGS} == {"ltr", "rtl"}


def test_presets_have_distinct_codes():
    codes = [load_preset(tag).code for tag in TAGS]
    assert len(set(codes)) == len(codes)


@pytest.mark.parametrize(
    ("code", "script", "spaces", "direction"),
    [
        ("yor_Latn", "Latn", True, "ltr"),
        ("arb_Arab", "Arab", True, "rtl"),
        ("tha_Thai", "Thai", False, "ltr"),
        ("zho_Hant", "Hant", False, "ltr"),
        ("bod_Tibt", "Tibt", False, "ltr"),
        ("nqo_Nkoo", "Nkoo", True, "rtl"),
        ("heb_Hebr", "Hebr", True, "rtl"),
    ],
)
def test_generic_preset_resolves(code, script, spaces, direction):
    register_resolvers()
    cfg = generic_file()
    cfg.code = code
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert set(resolved) == set(KEYS)
    assert {key: resolved[key] for key in ("tag", "code", "name", "script", "spaces", "direction")} == {
        "tag": code,
        "code": code,
        "name": code,
        "script": script,
        "spaces": spaces,
        "direction": direction,
    }
    assert resolved["word_fallback"] == ("error" if spaces else "char")


def test_generic_preset_requires_a_code():
    register_resolvers()
    cfg = generic_file()
    assert OmegaConf.is_missing(cfg, "code")
    # Every derived key points at the missing code, so resolving fails loudly.
    with pytest.raises(InterpolationToMissingValueError):
        OmegaConf.to_container(cfg, resolve=True)


def test_generic_preset_with_hydra():
    """`language=generic language.code=...` as on the command line; ${.code} is relative."""
    register_resolvers()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(overrides=["+language=generic", "language.code=pes_Arab"])
    assert cfg.language.tag == "pes_Arab"
    assert cfg.language.direction == "rtl"
    assert cfg.language.spaces is True


def test_preset_with_hyphenated_tag_composes_with_hydra():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(overrides=["+language=zh-Hant"])
    assert cfg.language.code == "zho_Hant"


def test_every_sib200_code_resolves_through_generic():
    register_resolvers()
    for code in CODES:
        cfg = generic_file()
        cfg.code = code
        resolved = OmegaConf.to_container(cfg, resolve=True)
        assert resolved["direction"] in {"ltr", "rtl"}
        assert code.endswith("_" + resolved["script"])


def test_register_resolvers_is_idempotent():
    register_resolvers()
    register_resolvers()
    # Every `${kmexp.<name>:...}` that conf/ uses has its resolver.
    used = {m for path in config_dir().rglob("*.yaml") for m in re.findall(r"\$\{(kmexp\.\w+):", path.read_text())}
    assert {"kmexp.script", "kmexp.codes", "kmexp.coalesce"} <= used
    for name in used:
        assert OmegaConf.has_resolver(name), name


def test_constants_are_immutable():
    assert isinstance(languages.NO_SPACE_SCRIPTS, frozenset)
    assert isinstance(languages.RTL_SCRIPTS, frozenset)
    assert isinstance(languages.HAN_SCRIPTS, frozenset) and languages.HAN_SCRIPTS <= languages.NO_SPACE_SCRIPTS


def test_malformed_code_is_a_config_error():
    with pytest.raises(ConfigError, match="language.code=french is not allowed: it must be of the form .*fra_Latn"):
        script_of("french")


def test_check_code_accepts_valid_codes():
    for code in CODES:
        assert check_code("language.code", code, CODES) == []


def test_check_code_suggests_the_closest_code():
    [message] = check_code("language.code", "fra_Latm", CODES)
    assert message.startswith(
        "language.code=fra_Latm is not allowed: it must be a SIB-200 language code; closest: fra_Latn"
    )
    assert "(205 codes: the SIB-200 folders listed in kmexp/data/sib200.sha256)" in message
    assert "\n" not in message


def test_check_code_ignores_case_when_suggesting():
    [message] = check_code("language.code", "FRA_LATN", CODES)
    assert "closest: fra_Latn" in message


def test_check_code_falls_back_to_the_same_script():
    # Too far from every code for difflib, but the script is right.
    [message] = check_code("language.code", "zzzzzz_Olck", CODES)
    assert "closest: sat_Olck " in message


def test_check_code_far_from_every_code_still_names_the_nearest_in_one_line():
    # Neither close to a code nor in a known script: the nearest codes are named anyway.
    [message] = check_code("language.code", "xx_Fake", CODES)
    assert "\n" not in message
    assert message.startswith("language.code=xx_Fake is not allowed: it must be a SIB-200 language code; closest: ")
    named = message.split("closest: ")[1].split(" (")[0].split(", ")
    assert len(named) == 3 and set(named) <= set(CODES)


# --- Settings that follow the script (conf/language/_scripts.yaml) ------------------------------

# What a preset names for itself, and so may differ from `language=generic` with its code:
# its tag, its name, and the casing locale, which is the tag (tr, az rules), in language and encoder.
NAMING = ("language.tag", "language.name", "language.standardize.locale", "encoder.preprocessor.standardize.locale")
# A character encoder and a word-level one (which falls back to characters where there are no spaces).
ENCODERS = ("char_ngram", "tfidf")


def composed(*overrides: str) -> dict:
    """The `language`, `encoder` and `model` settings a run composes from ``overrides``, resolved."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return {group: OmegaConf.to_container(cfg[group], resolve=True) for group in ("language", "encoder", "model")}


def without_naming(settings: dict) -> dict:
    """``settings`` less the keys in NAMING."""
    settings = OmegaConf.create(settings)
    for key in NAMING:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(settings, parent)
        if node is not None:
            node.pop(leaf, None)
    return OmegaConf.to_container(settings)


@pytest.mark.parametrize("tag", TAGS)
def test_generic_with_a_presets_code_composes_the_presets_model(tag):
    """`language=generic language.code=zho_Hans` trains what `language=zh` trains: only the names differ."""
    code = load_preset(tag).code
    for encoder in ENCODERS:
        preset = composed(f"language={tag}", f"encoder={encoder}")
        generic = composed("language=generic", f"language.code={code}", f"encoder={encoder}")
        assert without_naming(generic) == without_naming(preset), (tag, encoder)
        assert generic["language"]["tag"] == code and preset["language"]["tag"] == tag


def test_the_presets_keep_the_settings_their_files_declared():
    """What zh, zh-Hant, ja, th (and every other preset) set by name before now comes from their script."""
    for tag in TAGS:
        settings = composed(f"language={tag}")
        char_ngram = settings["encoder"]["preprocessor"]
        expected = ("char", [1, 3]) if tag in {"zh", "zh-Hant", "ja"} else ("char_wb", [1, 5])
        assert (char_ngram["analyzer"], char_ngram["ngram_range"]) == expected, tag
        assert settings["language"]["word_fallback"] == ("char" if tag in NO_SPACES else "error"), tag
        assert settings["language"]["fallback_ngram_range"] == [1, 2]


@pytest.mark.parametrize("code", ["khm_Khmr", "lao_Laoo", "mya_Mymr", "bod_Tibt", "dzo_Tibt"])
def test_a_code_without_spaces_and_without_a_preset_gets_the_no_space_settings(code):
    settings = composed("language=generic", f"language.code={code}", "encoder=tfidf")
    assert settings["language"]["spaces"] is False and settings["language"]["word_fallback"] == "char"
    # Thai's class: character n-grams keep char_wb (only Chinese and Japanese take char 1-3-grams).
    thai = composed("language=th", "encoder=char_ngram")["encoder"]
    assert composed("language=generic", f"language.code={code}")["encoder"] == {
        **thai, "preprocessor": {**thai["preprocessor"], "standardize": {**thai["preprocessor"]["standardize"], "locale": code}},
    }


@pytest.mark.parametrize("code", ["urd_Arab", "uig_Arab", "pes_Arab", "ydd_Hebr"])
def test_an_rtl_code_without_a_preset_gets_the_rtl_direction(code):
    language = composed("language=generic", f"language.code={code}")["language"]
    assert (language["direction"], language["spaces"], language["word_fallback"]) == ("rtl", True, "error")


def test_multi_keeps_its_settings():
    """Several scripts (the default eight): Mixed reads the default row, plus multi's hashing."""
    settings = composed("language=multi")
    assert settings["language"]["script"] == "Mixed"
    assert settings["language"]["word_fallback"] == "error"
    preprocessor = settings["encoder"]["preprocessor"]
    assert (preprocessor["analyzer"], preprocessor["ngram_range"], preprocessor["num_bins"]) == ("char_wb", [1, 5], 1048576)
    # Languages that share one script read its row, as one language in it would; Hans and Hant are two.
    chinese = composed("language=multi", "language.codes=[zho_Hans,yue_Hant]")
    assert chinese["language"]["script"] == "Mixed" and chinese["encoder"]["preprocessor"]["analyzer"] == "char_wb"
    hans = composed("language=multi", "language.codes=[zho_Hans]")
    assert (hans["language"]["word_fallback"], hans["encoder"]["preprocessor"]["analyzer"]) == ("char", "char")


def test_the_command_line_still_overrides_what_the_script_sets():
    settings = composed(
        "language=generic", "language.code=zho_Hans", "encoder.preprocessor.analyzer=char_wb", "language.word_fallback=error"
    )
    assert settings["encoder"]["preprocessor"]["analyzer"] == "char_wb"
    assert settings["encoder"]["preprocessor"]["ngram_range"] == [1, 3]  # not overridden: still the script's
    assert settings["language"]["word_fallback"] == "error"


def test_every_script_class_has_a_row_and_default_has_every_key():
    table = OmegaConf.load(PRESET_DIR / "_scripts.yaml")
    assert set(table) == {name for name, _ in languages.SCRIPT_CLASSES} | {languages.DEFAULT_SCRIPT_CLASS}
    for row in table.values():
        assert set(row) <= set(table.default)  # a class row only changes what default sets


@pytest.mark.parametrize(
    ("script", "script_class"),
    [("Hans", "han"), ("Hant", "han"), ("Jpan", "han"), ("Thai", "no_spaces"), ("Khmr", "no_spaces"),
     ("Tibt", "no_spaces"), ("Arab", "rtl"), ("Hebr", "rtl"), ("Latn", "default"), ("Hang", "default"),
     ("Mixed", "default")],
)
def test_script_class(script, script_class):
    assert languages.script_class(script) == script_class


def test_a_key_the_script_table_lacks_is_a_config_error():
    assert script_setting("char_ngram.ngram_range", "Hans") == [1, 3]
    assert script_setting("word_fallback", "Hans") == "char"
    assert script_setting("char_ngram.analyzer", "Thai") == "char_wb"  # not in its row: the default row's
    with pytest.raises(ConfigError, match=r"^char_ngram\.nope is not allowed .*_scripts\.yaml has no such key"):
        script_setting("char_ngram.nope", "Hans")
