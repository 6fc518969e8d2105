"""Scripts without spaces: word-level encoders behave as the code's script says (language.word_fallback)."""

from __future__ import annotations

import json

import keras

import kmexp.layers  # noqa: F401  (registers the layers for loading)
from conftest import files_overrides, only_run_dir, run_cli


def _preprocessor(model: keras.Model) -> keras.layers.Layer:
    return next(layer for layer in model.layers if hasattr(layer, "analyzer"))


def test_chinese_onehot_run_falls_back_to_characters(small_data, tmp_path):
    # zh's script writes no spaces (word_fallback: char), so the onehot encoder counts characters.
    result = run_cli([*files_overrides(small_data), "language=zh", "encoder=onehot", "logger=none", "trainer.epochs=3"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "outputs")
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
    preprocessor = _preprocessor(keras.models.load_model(run_dir / "model.keras"))
    assert preprocessor.analyzer == "char"
    assert list(preprocessor.ngram_range) == [1, 2]


def test_a_spaceless_code_without_a_preset_falls_back_to_characters_too(small_data, tmp_path):
    # Khmer has no preset: reached by code, its script (no spaces) sets word_fallback: char as zh's does.
    overrides = [*files_overrides(small_data), "language=generic", "language.code=khm_Khmr", "encoder=tfidf",
                 "logger=none", "trainer.epochs=3"]
    result = run_cli(overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "outputs")
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
    preprocessor = _preprocessor(keras.models.load_model(run_dir / "model.keras"))
    assert (preprocessor.analyzer, list(preprocessor.ngram_range)) == ("char", [1, 2])


def test_word_fallback_error_stops_a_chinese_word_encoder_before_training(small_data, tmp_path):
    # The same preset with language.word_fallback=error: one line naming the setting, and no training.
    overrides = [*files_overrides(small_data), "language=zh", "language.word_fallback=error", "encoder=onehot",
                 "logger=none"]
    result = run_cli(overrides, cwd=tmp_path)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "kmexp: error: encoder.preprocessor.analyzer=word is not allowed with language.word_fallback=error: "
        "it splits words on spaces, but zho_Hans (Hans script) writes none"
    ), last
    assert "Traceback" not in result.stderr
    recorded = [json.loads(path.read_text()) for path in (tmp_path / "outputs").rglob("metrics.json")]
    assert all(metrics["status"] == "failed" for metrics in recorded)
    assert not list((tmp_path / "outputs").rglob("model.keras"))
