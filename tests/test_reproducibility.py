"""The same config and seed give the same numbers on CPU, and metrics.json says what produced them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import files_overrides, make_rows, write_tsv

from kmexp.provenance import code_commit, git_commit, versions

REPO = Path(__file__).resolve().parent.parent
SCORES = ("objective", "labels", "dev", "test", "epochs_run", "best_epoch", "data")


def _kmexp(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "kmexp", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen) -> None:
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]


@pytest.fixture(scope="module")
def seeded_runs(tmp_path_factory) -> dict[str, Path]:
    """Two seed=7 runs in different processes (one a sweep job, beside a seed=8 job), run side by side."""
    root = tmp_path_factory.mktemp("seeds")
    data = {
        "train": write_tsv(root / "train.tsv", make_rows(30, seed=1)),
        "dev": write_tsv(root / "dev.tsv", make_rows(10, seed=2)),
        "test": write_tsv(root / "test.tsv", make_rows(10, seed=3)),
    }
    # Several epochs of mini-batches with dropout and a hidden layer: shuffling, initialization and
    # dropout masks all depend on the seed. (Dense features: dropout on sparse ones is not supported.)
    common = [
        *files_overrides(data), "logger=none", "trainer.epochs=6", "model.hidden_units=[16]", "model.dropout=0.2",
        "encoder.preprocessor.sparse=false",
    ]
    single = _kmexp([*common, "seed=7", f"hydra.run.dir={root / 'single'}"], cwd=root)
    sweep = _kmexp(["-m", *common, "seed=7,8", f"hydra.sweep.dir={root / 'sweep'}"], cwd=root)
    _finish(single)
    _finish(sweep)
    return {"seed7": root / "single", "sweep_seed7": root / "sweep" / "0", "sweep_seed8": root / "sweep" / "1"}


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_the_same_seed_gives_identical_scores_and_history(seeded_runs):
    first, second = _metrics(seeded_runs["seed7"]), _metrics(seeded_runs["sweep_seed7"])
    assert first["status"] == second["status"] == "completed"
    assert first["seed"] == second["seed"] == 7
    for key in SCORES:
        assert first[key] == second[key], key
    history = [(run / "history.csv").read_bytes() for run in (seeded_runs["seed7"], seeded_runs["sweep_seed7"])]
    assert history[0] == history[1]


def test_seed_can_be_swept(seeded_runs):
    other = _metrics(seeded_runs["sweep_seed8"])
    assert other["status"] == "completed" and other["seed"] == 8
    # Another seed is another run (it may still land on the same scores on data this easy).
    assert "seed=8" in other["overrides"]


def test_metrics_json_records_the_git_commit_and_every_data_file(seeded_runs):
    metrics = _metrics(seeded_runs["seed7"])
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not run from a git checkout")
    assert metrics["git"]["commit"] == head.stdout.strip()
    assert isinstance(metrics["git"]["dirty"], bool)
    assert set(metrics["versions"]) >= {"python", "keras", "tensorflow", "numpy", "kmexp"}
    assert len(metrics["data"]["files"]) == 3
    assert all(len(digest) == 64 for digest in metrics["data"]["files"].values())


def _git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(folder), *args], check=True,
        capture_output=True,
    )


def test_git_commit_is_clean_or_dirty_and_none_outside_a_checkout(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "code.py").write_text("x = 1\n")
    _git(repo, "add", "code.py")
    _git(repo, "commit", "-q", "-m", "one")
    found = git_commit(repo)
    assert len(found["commit"]) == 40 and found["dirty"] is False
    (repo / "code.py").write_text("x = 2\n")
    assert git_commit(repo) == {"commit": found["commit"], "dirty": True}

    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no checkout above tmp_path either
    assert git_commit(outside) is None
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # git missing: no record, no failure
    assert git_commit(repo) is None


def test_a_process_reads_its_own_commit_and_versions_once(monkeypatch):
    # The jobs of a sweep in one process record the commit and versions of the code it imported, read once.
    first, packages = code_commit(), versions()
    assert first == git_commit()
    monkeypatch.setenv("PATH", "/nonexistent")  # git is no longer found, yet the process's record stays
    assert code_commit() == first and versions() == packages
    packages["keras"] = "changed"  # each record gets its own copy
    assert versions()["keras"] != "changed"
