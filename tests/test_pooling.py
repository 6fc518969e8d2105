"""Related-language pooling (language.pool): neighbours by character n-grams, pooled train splits, weighted fits.

The neighbour function runs on texts written here and on real SIB-200 (KMEXP_DATA_DIR);
the weights go through real Keras training; the CLI run reads real SIB-200 files;
the Hugging Face case reads datasets built and saved by the test.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import only_run_dir, run_cli, shared_data_options
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from test_hf_data import CONFIGS, dataset_dict, hf, save_mixed_locales, split_rows

from kmexp.config.validation import validate
from kmexp.data import SIB200
from kmexp.data.neighbours import nearest, profile, similarities, similarity
from kmexp.errors import ConfigError
from kmexp.optim import LBFGS
from kmexp.paths import config_dir
from kmexp.training.loops import compiled, fit

ENGLISH = ["the cat sat on the mat", "the dog ate the bread", "we went to the market"]
SCOTS = ["the cat sat oan the mat", "the dug ate the breid", "we went tae the mercat"]
FRENCH = ["le chat est sur le tapis", "le chien mange le pain", "nous allons au marché"]
RUSSIAN = ["кошка сидит на ковре", "собака ест хлеб", "мы идём на рынок"]


def sib200(root, code: str, tmp_path, **options) -> SIB200:
    return SIB200(
        root=str(root), code=code, cache_dir=str(tmp_path / "cache"), base_url="https://example.invalid",
        commit="593cea88519930f776c1a4a1980b6a35b39dca57", timeout_s=5, **shared_data_options(), **options,
    )


# --- the neighbour function --------------------------------------------------------------------


def test_similarity_is_cosine_of_character_trigrams_and_nearest_ranks_by_it():
    english, scots, french, russian = (profile(texts) for texts in (ENGLISH, SCOTS, FRENCH, RUSSIAN))

    assert similarity(english, english) == pytest.approx(1.0)
    assert similarity(english, russian) == pytest.approx(0.0, abs=1e-9)  # no trigram in common
    assert similarity(english, scots) == pytest.approx(similarity(scots, english))
    assert similarity(english, scots) > similarity(english, french) > similarity(english, russian)
    # Case and runs of whitespace do not change a profile.
    assert similarity(english, profile([text.upper().replace(" ", " \t ") for text in ENGLISH])) == pytest.approx(1.0)

    scores = similarities("en", {"en": english, "sco": scots, "fr": french, "ru": russian})
    assert set(scores) == {"sco", "fr", "ru"}
    assert [code for code, _ in nearest(scores, 2)] == ["sco", "fr"]
    assert nearest({"b": 0.5, "a": 0.5, "c": 0.9}, 3) == [("c", 0.9), ("a", 0.5), ("b", 0.5)]  # ties: by code


def test_sib200_neighbours_are_close_relatives_and_the_table_is_cached(sib200_dir, tmp_path):
    galician = sib200(sib200_dir, "glg_Latn", tmp_path, pool=3, pool_weight=0.5).load()

    pool = galician.info["pool"]
    codes = [n["code"] for n in pool["neighbours"]]
    assert {"por_Latn", "spa_Latn"} <= set(codes), codes
    assert pool["k"] == 3 and pool["weight"] == 0.5
    assert all(0 < n["similarity"] <= 1 and n["rows"] == 701 for n in pool["neighbours"])
    # Train gains the neighbours' rows at the pool weight; dev and test are Galician's own.
    assert len(galician.train.texts) == 4 * 701 and len(galician.dev.texts) == 99 and len(galician.test.texts) == 204
    assert galician.train.weights == [1.0] * 701 + [0.5] * 3 * 701
    assert all(str(sib200_dir / code / "train.tsv") in galician.info["files"] for code in codes)

    # The whole table is cached by the digest of the train files; a later load reads it rather than recomputing.
    [cached] = (tmp_path / "cache" / "neighbours").glob("*.json")
    table = json.loads(cached.read_text())
    assert len(table) == 205 and table["zho_Hans"]["zho_Hant"] == table["zho_Hant"]["zho_Hans"]
    assert max(table["zho_Hans"], key=table["zho_Hans"].get) in {"zho_Hant", "yue_Hant"}
    table["glg_Latn"] = {code: 0.0 for code in table["glg_Latn"]} | {"fra_Latn": 1.0}
    cached.write_text(json.dumps(table))
    again = sib200(sib200_dir, "glg_Latn", tmp_path, pool=1, pool_weight=0.5).load()
    assert again.info["pool"]["neighbours"] == [{"code": "fra_Latn", "similarity": 1.0, "rows": 701}]


def test_an_explicit_list_pools_those_languages_without_computing_nearness(sib200_dir, tmp_path):
    splits = sib200(sib200_dir, "glg_Latn", tmp_path, pool=["ita_Latn", "fra_Latn"], pool_weight=0.25).load()

    assert splits.info["pool"] == {
        "codes": ["ita_Latn", "fra_Latn"], "weight": 0.25,
        "neighbours": [{"code": "ita_Latn", "similarity": None, "rows": 701},
                       {"code": "fra_Latn", "similarity": None, "rows": 701}],
    }
    assert splits.train.weights[700:702] == [1.0, 0.25] and len(splits.train.texts) == 3 * 701
    assert not (tmp_path / "cache").exists()  # no table was computed


# --- the settings ------------------------------------------------------------------------------


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


HF_LOCALES = ["data=hf", "data.path=x", "language=fr", "+data.locale_config={fr: fr-FR, en: en-US, ru: ru-RU}"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["language.pool=0"], "language.pool=0 is not allowed: it must be a number of nearest languages in [1, 204], "
                              "a list of codes, or null"),
        (["language.pool=abc"], "language.pool=abc is not allowed: it must be null, a number k >= 1 of nearest "
                                "languages, or a non-empty list of other languages' codes"),
        (["language.pool=[eng_Latn,xx_Latn]"], "language.pool=[eng_Latn,xx_Latn] is not allowed: eng_Latn, xx_Latn "
                                               "cannot be pooled: list other languages of the dataset (204 codes)"),
        (["language.pool=[fra_Latn,fra_Latn]"], "language.pool=[fra_Latn,fra_Latn] is not allowed: fra_Latn listed "
                                                "more than once: list each language once"),
        (["language.pool_weight=0"], "language.pool_weight=0.0 is not allowed: it must be in (0, 1]"),
        (["language=multi", "language.pool=2"], "language.pool=2 is not allowed with language=multi: language=multi "
                                                "already trains on every language in language.codes; set language.pool=null"),
        (["data=files", "data.train=a", "data.test=b", "language.pool=2"],
         "language.pool=2 is not allowed: pooling adds other languages' train splits, which only data=sib200 and "
         "data=hf with data.locale_config or data.locale_filter have; set language.pool=null"),
        ([*HF_LOCALES, "language.pool=3"], "language.pool=3 is not allowed: it must be a number of nearest languages "
                                           "in [1, 2], a list of codes, or null"),
        ([*HF_LOCALES, "language.pool=[de]"], "language.pool=[de] is not allowed: de cannot be pooled: list other "
                                              "languages of the dataset (en, ru)"),
    ],
)
def test_pool_settings_are_refused_in_one_message_each(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(compose_config(overrides))
    assert str(err.value) == message


def test_the_defaults_pool_nothing_and_pass_the_settings_to_the_data():
    cfg = compose_config(["language=fr"])
    assert cfg.language.pool is None and cfg.language.pool_weight == 0.5
    pooled = compose_config(["language=fr", "language.pool=[ita_Latn]", "language.pool_weight=0.3"])
    validate(pooled)
    assert list(pooled.data.pool) == ["ita_Latn"] and pooled.data.pool_weight == 0.3


def test_the_loader_refuses_its_own_language_in_the_words_of_validate(sib200_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"^language.pool=\[glg_Latn\] is not allowed: glg_Latn cannot be pooled"):
        sib200(sib200_dir, "glg_Latn", tmp_path, pool=["glg_Latn"], pool_weight=0.5)


# --- weighted training ------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_sample_weights_decide_between_conflicting_rows(optimizer):
    """Three rows with the same features: one of label 0 at weight 1, two of label 1 at weight 0.2 each.

    Unweighted, label 1 wins (2 rows to 1); weighted, label 0 does, and the fitted probability is the
    weighted share 1 / (1 + 0.4), the optimum of weighted cross-entropy.
    """
    keras.utils.set_random_seed(0)
    features = np.ones((3, 1), dtype=np.float32)
    targets = keras.utils.to_categorical([0, 1, 1], 2)
    weights = np.array([1.0, 0.2, 0.2], dtype=np.float32)
    network = keras.Sequential([keras.Input((1,)), keras.layers.Dense(2)])
    trainer = OmegaConf.create({"epochs": 300 if optimizer == "adam" else 5, "batch_size": 3, "steps_per_execution": 1})
    opt = keras.optimizers.Adam(0.05) if optimizer == "adam" else LBFGS(iterations_per_epoch=20)
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)

    network = compiled(network, opt, loss, trainer, False, None)
    fit(network, opt, loss, features, targets, trainer, 0, [], sample_weight=weights)

    probabilities = keras.ops.softmax(network(features[:1])).numpy()[0]
    assert probabilities[0] == pytest.approx(1 / 1.4, abs=0.02)


# --- end to end --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_pooled_sib200_run_records_its_neighbours_and_scores_its_own_dev_and_test(sib200_dir, tmp_path):
    args = ["language=generic", "language.code=glg_Latn", "language.pool=2", "language.pool_weight=0.4",
            "trainer.epochs=2", "logger=none", f"hydra.run.dir={tmp_path / 'run'}"]
    result = run_cli(args, cwd=tmp_path, env={"KMEXP_DATA_DIR": str(sib200_dir), "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert result.returncode == 0, result.stderr[-3000:]

    metrics = json.loads((only_run_dir(tmp_path / "run") / "metrics.json").read_text())
    pool = metrics["data"]["pool"]
    assert pool["k"] == 2 and pool["weight"] == 0.4
    assert [n["code"] for n in pool["neighbours"]] == ["por_Latn", "spa_Latn"]
    assert metrics["data"]["sizes"] == {"train": 3 * 701, "dev": 99, "test": 204}
    assert metrics["status"] == "completed"


# --- Hugging Face datasets ---------------------------------------------------------------------


def test_a_hf_locale_pools_its_nearest_locale_and_keeps_its_own_dev_and_test(tmp_path):
    root = tmp_path / "saved_configs"
    for lang, config in CONFIGS.items():
        dataset_dict(split_rows(lang)).save_to_disk(str(root / config))

    splits = hf(root, tmp_path, locale="fr", locale_config=CONFIGS, pool=1, pool_weight=0.5).load()

    # French and English share the Latin script; Russian does not.
    [neighbour] = splits.info["pool"]["neighbours"]
    assert neighbour["code"] == "en" and neighbour["rows"] == 30 and neighbour["similarity"] > 0
    own, english = split_rows("fr"), split_rows("en")
    assert splits.train.texts == [r["text"] for r in own["train"]] + [r["text"] for r in english["train"]]
    assert splits.train.weights == [1.0] * 30 + [0.5] * 30
    assert splits.dev.texts == [r["text"] for r in own["validation"]]
    assert splits.test.texts == [r["text"] for r in own["test"]]


def test_a_hf_locale_filter_pools_listed_locales_carved_as_its_own_train(tmp_path):
    saved = save_mixed_locales(tmp_path / "mixed")
    by_filter = {"column": "lang", "values": {"en": "en", "fr": "fr", "ru": "ru"}}
    no_dev = {"train": "train", "dev": None, "test": "test"}

    splits = hf(saved, tmp_path, locale="fr", locale_filter=by_filter, splits=no_dev, dev_fraction=0.2,
                pool=["ru"], pool_weight=0.7).load()

    # Dev is carved out of French train; Russian train is carved the same way, its held-out rows left out.
    assert len(splits.dev.texts) == 6 and len(splits.train.texts) == 24 + 24
    assert splits.info["pool"] == {"codes": ["ru"], "weight": 0.7,
                                   "neighbours": [{"code": "ru", "similarity": None, "rows": 24}]}
    assert splits.train.weights == [1.0] * 24 + [0.7] * 24
