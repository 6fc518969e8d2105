"""``hparams_search=optuna``: a real TPE search on small data, its SQLite study, resuming it, failed trials.

CI installs hydra-optuna-sweeper (the `dev` extra pulls in `optuna`), so a missing plugin fails
these tests instead of skipping them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
from conftest import files_overrides, make_rows, run_cli, write_tsv
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from kmexp.paths import config_dir

SEARCHED = {
    "optimizer.learning_rate", "model.hidden_units", "model.dropout",
    "encoder.preprocessor.ngram_range", "encoder.preprocessor.min_df",
}
PROGRESS = re.compile(r"^\[kmexp sweep\] (\d+)/(\d+)  .+  (completed|failed)")
STUDY = "kmexp"  # the preset's study_name


def small_data(folder: Path) -> dict[str, Path]:
    """Fewer rows than conftest's data set: each trial trains in about a second."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [("train", 20, 1), ("dev", 8, 2), ("test", 8, 3)]
    return {split: write_tsv(folder / f"{split}.tsv", make_rows(n, seed)) for split, n, seed in sizes}


def search(sweep_dir: Path, cwd: Path, data: dict[str, Path], n_trials: int, *extra: str):
    args = [
        "-m", "hparams_search=optuna", f"hydra.sweeper.n_trials={n_trials}", "language=fr",
        *files_overrides(data), *extra, "logger=none", "trainer.epochs=2", f"hydra.sweep.dir={sweep_dir}",
    ]
    return run_cli(args, cwd=cwd)


def load_study(sweep_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{sweep_dir}/optuna.db")


def objectives(sweep_dir: Path) -> list[float]:
    records = [json.loads(p.read_text()) for p in sweep_dir.glob("*/metrics.json")]
    return [r["objective"]["value"] for r in records if r["status"] == "completed"]


@pytest.fixture(scope="module")
def three_trials(tmp_path_factory):
    """The issue's search: hparams_search=optuna, 3 trials, language=fr."""
    cwd = tmp_path_factory.mktemp("optuna")
    data = small_data(cwd / "data")
    sweep_dir = cwd / "search"
    return search(sweep_dir, cwd, data, 3), sweep_dir, data


def test_preset_maximizes_dev_objective_in_a_sqlite_study_in_the_sweep_folder():
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        overrides = ["hparams_search=optuna", "hydra.sweep.dir=sweeps/s1"]
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.direction == "maximize" and sweeper.study_name == STUDY
    assert sweeper.storage == "sqlite:///sweeps/s1/optuna.db"
    assert set(sweeper.params) == SEARCHED
    assert sweeper.params["optimizer.learning_rate"].startswith("tag(log,")


@pytest.mark.slow
def test_search_writes_optimization_results_with_the_best_trial(three_trials):
    result, sweep_dir, _ = three_trials
    assert result.returncode == 0, result.stderr[-3000:]
    results = OmegaConf.to_container(OmegaConf.load(sweep_dir / "optimization_results.yaml"))
    assert results["name"] == "optuna" and set(results["best_params"]) == SEARCHED
    assert results["best_value"] == pytest.approx(max(objectives(sweep_dir)))  # the dev objective, maximized
    lines = [m for m in map(PROGRESS.match, result.stdout.splitlines()) if m]
    assert [(m[1], m[2]) for m in lines] == [("1", "3"), ("2", "3"), ("3", "3")]  # i/N with N = n_trials
    assert (sweep_dir / "report.html").is_file()


@pytest.mark.slow
def test_study_is_stored_in_sqlite_with_every_trial(three_trials):
    _, sweep_dir, _ = three_trials
    trials = load_study(sweep_dir).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert all(set(t.params) == SEARCHED for t in trials)
    assert sorted(t.value for t in trials) == pytest.approx(sorted(objectives(sweep_dir)))


@pytest.mark.slow
def test_rerun_into_the_same_folder_resumes_the_study(three_trials):
    _, sweep_dir, data = three_trials
    resumed = search(sweep_dir, sweep_dir.parent, data, 1, f"resume={sweep_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Using an existing study with name 'kmexp'" in resumed.stdout + resumed.stderr
    trials = load_study(sweep_dir).trials
    assert len(trials) == 4 and [t.number for t in trials] == [0, 1, 2, 3]
    assert (sweep_dir / "optimization_results.yaml").is_file()


@pytest.mark.slow
def test_a_failed_trial_is_marked_fail_and_the_search_goes_on(tmp_path):
    data = small_data(tmp_path / "data")
    # Job 1's dev file is missing, whatever the sampler proposes: a real failure (kmexp returns NaN).
    for job in (0, 2):
        write_tsv(tmp_path / "data" / f"dev_{job}.tsv", make_rows(8, seed=2))
    dev = str(tmp_path / "data" / "dev_${hydra:job.num}.tsv")
    sweep_dir = tmp_path / "search"
    result = search(sweep_dir, tmp_path, data, 3, f"data.dev='{dev}'")
    assert result.returncode == 1  # the sweep names the failed job and exits non-zero, as every sweep does
    assert "1 of 3 jobs failed" in result.stderr and "dev_1.tsv" in result.stderr
    states = [t.state for t in load_study(sweep_dir).trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert results.best_value == pytest.approx(max(objectives(sweep_dir)))
