"""The issue's acceptance run on real SIB-200 data (CI sets KMEXP_DATA_DIR)."""

from __future__ import annotations

import json

import pytest

from conftest import only_run_dir, run_cli


@pytest.mark.slow
def test_french_default_run_reaches_the_quality_bar(sib200_dir, tmp_path):
    result = run_cli(["language=fr", "optimizer=adam", "logger=none"], cwd=tmp_path, env={"KMEXP_DATA_DIR": str(sib200_dir)})
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "outputs")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["data"]["sizes"] == {"train": 701, "dev": 99, "test": 204}
    assert len(metrics["labels"]) == 7
    # Reference: scikit-learn char n-gram SVM scores 0.696 on fra_Latn test.
    assert metrics["test"]["accuracy"] >= 0.65, metrics["test"]["accuracy"]
    assert (run_dir / "model.keras").is_file() and (run_dir / "history.csv").is_file()
