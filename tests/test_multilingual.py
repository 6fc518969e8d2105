"""Multilingual training (language=multi) and zero-shot cross-lingual scoring (eval_languages).

Real SIB-200 data (KMEXP_DATA_DIR), real Keras training: two or three small
languages and two epochs keep each run to a few seconds.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import files_overrides, only_run_dir, run_cli, shared_data_options
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from kmexp.builders import build_data
from kmexp.config import register_configs
from kmexp.config.validation import validate
from kmexp.data import SIB200
from kmexp.data.sib200 import SIB200_COMMIT
from kmexp.errors import ConfigError
from kmexp.paths import config_dir
from kmexp.train import train

FAST = ["logger=none", "trainer.epochs=2"]
N_TRAIN, N_DEV, N_TEST = 701, 99, 204  # every SIB-200 language
N_LABELS = 7


def load(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def config_error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as err:
        validate(load(overrides))
    return str(err.value)


def assert_valid_scores(scores: dict, support: int) -> None:
    """One `eval` entry: every selected metric a probability, and the number of texts scored."""
    assert set(scores) == {"accuracy", "macro_f1", "support"}
    assert scores["support"] == support
    assert 1 / N_LABELS < scores["accuracy"] <= 1  # two epochs already beat chance
    assert 0 <= scores["macro_f1"] <= 1


@pytest.fixture(scope="module")
def fr_with_eval(tmp_path_factory):
    """A French run (in-process) also scored zero-shot on German and Chinese."""
    if not os.environ.get("KMEXP_DATA_DIR"):
        pytest.skip("KMEXP_DATA_DIR is not set")
    overrides = ["language=fr", "eval_languages=[deu_Latn,zho_Hans]", *FAST]
    return train(load(overrides), tmp_path_factory.mktemp("fr"), overrides).to_json()  # as metrics.json holds it


# --- training on several languages ----------------------------------------------------------


def test_cli_trains_one_model_on_several_languages(sib200_dir, tmp_path):
    """`python -m kmexp language=multi ...` pools train and dev, and scores each language's test."""
    result = run_cli(
        ["language=multi", "language.codes=[fra_Latn,zho_Hans]", "eval_languages=[deu_Latn]", *FAST],
        cwd=tmp_path, env={"KMEXP_DATA_DIR": str(sib200_dir)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((only_run_dir(tmp_path / "outputs") / "metrics.json").read_text())

    assert metrics["status"] == "completed"
    assert metrics["language"]["code"] == "multi" and metrics["language"]["codes"] == ["fra_Latn", "zho_Hans"]
    # One model, trained and selected on both languages: the splits are the sums.
    assert metrics["data"]["sizes"] == {"train": 2 * N_TRAIN, "dev": 2 * N_DEV, "test": 2 * N_TEST}
    # Each training language's test, then the zero-shot language, in that order.
    assert list(metrics["eval"]) == ["fra_Latn", "zho_Hans", "deu_Latn"]
    for scores in metrics["eval"].values():
        assert_valid_scores(scores, N_TEST)
    # The pooled test is the two training languages' tests together (equal sizes: the mean).
    pooled = (metrics["eval"]["fra_Latn"]["accuracy"] + metrics["eval"]["zho_Hans"]["accuracy"]) / 2
    assert metrics["test"]["accuracy"] == pytest.approx(pooled)
    assert sum(map(sum, metrics["test"]["confusion_matrix"])) == 2 * N_TEST
    # Provenance: every file read, train/dev/test of each training language and German's test only.
    files = {str(Path(path).relative_to(sib200_dir)) for path in metrics["data"]["files"]}
    assert files == {f"{code}/{name}.tsv" for code in ("fra_Latn", "zho_Hans") for name in ("train", "dev", "test")} | {
        "deu_Latn/test.tsv"
    }


def test_multi_loader_pools_splits_and_keeps_each_test(sib200_dir):
    splits = build_data(load(["language=multi", "language.codes=[fra_Latn,arb_Arab,zho_Hans]"]).data).load()

    assert (len(splits.train.texts), len(splits.dev.texts), len(splits.test.texts)) == (3 * N_TRAIN, 3 * N_DEV, 3 * N_TEST)
    assert list(splits.eval_tests) == ["fra_Latn", "arb_Arab", "zho_Hans"]
    # Pooled in the order of language.codes: the Arabic test rows follow the French ones.
    assert splits.test.texts[N_TEST:2 * N_TEST] == splits.eval_tests["arb_Arab"].texts
    assert len(splits.labels) == N_LABELS and splits.info["dropped_empty"]["eval"] == dict.fromkeys(splits.eval_tests, 0)
    assert "fra_Latn,arb_Arab,zho_Hans" in splits.train.source


def test_multi_preset_describes_what_the_languages_share():
    spaced = OmegaConf.to_container(load(["language=multi", "language.codes=[fra_Latn,deu_Latn]"]).language, resolve=True)
    assert (spaced["script"], spaced["spaces"], spaced["direction"]) == ("Latn", True, "ltr")
    mixed = OmegaConf.to_container(load(["language=multi", "language.codes=[arb_Arab,zho_Hans]"]).language, resolve=True)
    assert (mixed["script"], mixed["spaces"], mixed["direction"]) == ("Mixed", False, "mixed")
    assert mixed["tag"] == mixed["code"] == "multi"
    # Generic standardization for every script: no locale-specific casing.
    assert mixed["standardize"]["locale"] == "multi" and mixed["standardize"]["case"] == "fold"


def test_all_205_languages_compose_and_validate():
    cfg = load(["language=multi", "language.codes=all", "eval_languages=all"])
    validate(cfg)
    language = OmegaConf.to_container(cfg.language, resolve=True)
    assert language["codes"] == "all"  # metrics.json keeps the short form
    assert (language["script"], language["spaces"], language["direction"]) == ("Mixed", False, "mixed")
    # The n-grams of 205 languages are hashed into a fixed number of bins (conf/language_encoder/multi_char_ngram.yaml).
    assert cfg.encoder.preprocessor.num_bins == 2**20
    data = build_data(cfg.data)  # built, not loaded: no 205-language training here
    assert len(data.codes) == 205 and data.eval_codes == data.codes


# --- zero-shot scoring on other languages ---------------------------------------------------


def test_eval_languages_score_a_single_language_model_on_others(fr_with_eval):
    metrics = fr_with_eval
    assert metrics["language"]["code"] == "fra_Latn"
    assert metrics["data"]["sizes"] == {"train": N_TRAIN, "dev": N_DEV, "test": N_TEST}  # trained on French only
    assert list(metrics["eval"]) == ["deu_Latn", "zho_Hans"]
    for scores in metrics["eval"].values():
        assert set(scores) == {"accuracy", "macro_f1", "support"} and scores["support"] == N_TEST
        assert 0 <= scores["accuracy"] <= 1 and 0 <= scores["macro_f1"] <= 1
    # A French model transfers better to German (shared script and many words) than to Chinese.
    assert metrics["eval"]["deu_Latn"]["accuracy"] > metrics["eval"]["zho_Hans"]["accuracy"]
    assert len(metrics["data"]["files"]) == 5  # French train/dev/test and the two eval tests


def test_runs_without_eval_languages_write_an_empty_eval(small_data, tmp_path):
    overrides = [*files_overrides(small_data), *FAST]
    assert load(overrides).eval_languages is None
    assert train(load(overrides), tmp_path, overrides).eval == {}


def test_eval_languages_downloads_only_the_test_files_it_needs(sib200_dir, tmp_path):
    """A download (local HTTP server over the real copy) verifies every file, and fetches no more than it reads."""
    served = tmp_path / "served" / SIB200_COMMIT / "data" / "annotated"
    served.mkdir(parents=True)
    for code in ("fra_Latn", "deu_Latn"):
        (served / code).symlink_to(sib200_dir / code)
    handler = functools.partial(_QuietHandler, directory=str(tmp_path / "served"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        splits = SIB200(root=None, code="fra_Latn", cache_dir=str(tmp_path / "cache"),
                        base_url=f"http://127.0.0.1:{server.server_address[1]}", commit=SIB200_COMMIT,
                        **shared_data_options(), timeout_s=5.0, eval_codes=["deu_Latn"]).load()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    cached = {str(p.relative_to(tmp_path / "cache" / SIB200_COMMIT)) for p in (tmp_path / "cache").rglob("*.tsv")}
    assert cached == {"fra_Latn/train.tsv", "fra_Latn/dev.tsv", "fra_Latn/test.tsv", "deu_Latn/test.tsv"}
    assert list(splits.eval_tests) == ["deu_Latn"] and len(splits.eval_tests["deu_Latn"].texts) == N_TEST


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep pytest output clean
        pass


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["language=multi", "language.codes=[fra_Latn,fra_Latm]"],
         "language.codes[1]=fra_Latm is not allowed: it must be a SIB-200 language code; closest: fra_Latn"),
        (["language=multi", "language.codes=fra_Latn"], "language.codes=fra_Latn is not allowed: it must be all or a list"),
        (["language=multi", "language.codes=[]"], "language.codes=[] is not allowed: list at least one SIB-200 code"),
        (["language=fr", "eval_languages=[deu_Latn,ZHO_HANS]"],
         "eval_languages[1]=ZHO_HANS is not allowed: it must be a SIB-200 language code; closest: zho_Hans"),
        (["language=fr", "eval_languages=every"], "eval_languages=every is not allowed: it must be all or a list"),
    ],
)
def test_bad_codes_are_rejected_naming_the_key(overrides, expected):
    assert expected in config_error(overrides)


def test_eval_languages_need_per_language_test_files(small_data):
    message = config_error([*files_overrides(small_data), "eval_languages=[deu_Latn]"])
    assert "eval_languages=[deu_Latn]" in message and "data=sib200" in message


def test_all_bad_codes_are_reported_at_once():
    message = config_error(["language=multi", "language.codes=[xx_Fake,fra_Latn,yy_Fake]", "eval_languages=[zz]"])
    assert "language.codes[0]=xx_Fake is not allowed" in message and "language.codes[2]=yy_Fake is not allowed" in message
    assert "eval_languages[0]=zz is not allowed" in message


def test_word_encoder_names_the_languages_without_spaces():
    message = config_error(["language=multi", "language.codes=[fra_Latn,zho_Hans,tha_Thai]", "encoder=onehot"])
    assert "language.codes has zho_Hans, tha_Thai" in message
    validate(load(["language=multi", "language.codes=[fra_Latn,deu_Latn]", "encoder=onehot"]))


def test_the_loader_rejects_bad_codes_itself():
    """Built outside a validated config (a notebook), SIB200 still names the key and the closest code."""
    with pytest.raises(ConfigError, match=r"eval_languages\[0\]=deu_Latm is not allowed: .*closest: deu_Latn"):
        SIB200(root=None, code="fra_Latn", cache_dir="unused", base_url="http://127.0.0.1:9",
               commit=SIB200_COMMIT, **shared_data_options(), timeout_s=5.0, eval_codes=["deu_Latm"])
