"""Language presets in conf/language/ and the helpers in kmexp.languages."""

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationToMissingValueError

from kmexp import languages
from kmexp.errors import ConfigError
from kmexp.config.resolvers import register_resolvers
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
}


def sib200_codes() -> list[str]:
    """The 205 language folders named in the manifest (lines `<sha256>  ./<lang>/<file>`)."""
    lines = (ROOT / "kmexp" / "data" / "sib200.sha256").read_text().splitlines()
    return sorted({line.split()[1].split("/")[1] for line in lines if line.strip()})


CODES = sib200_codes()


def generic_file():
    """generic.yaml as written (without the shared defaults it includes), for resolver checks."""
    cfg = OmegaConf.load(PRESET_DIR / "generic.yaml")
    del cfg["defaults"]
    return cfg


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
    assert resolved == {
        "tag": code,
        "code": code,
        "name": code,
        "script": script,
        "spaces": spaces,
        "direction": direction,
    }


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
