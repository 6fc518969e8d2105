"""Secrets never reach a run's outputs (``kmexp.secrets``).

Planted values stand for secrets: ``KMEXP_TEST_API_TOKEN`` (its name holds
TOKEN) and ``WANDB_API_KEY``. They get in the ways a user could let them in:
through an interpolation, pasted as an override's value, pasted inside a longer
value. Then every byte a real single run and a real two-job sweep wrote
(Hydra's saved configs, metrics.json, kmexp.log, the W&B run files, the sweep
report) and printed is searched for them.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import files_overrides, run_cli, write_small_data
from omegaconf import OmegaConf

from kmexp.secrets import Secrets, redact_log_records
from kmexp.runs import saved_overrides

PLANTED = {"KMEXP_TEST_API_TOKEN": "planted-secret-4242", "WANDB_API_KEY": "planted-wandb-key-777"}
# Offline W&B, as always in tests: with WANDB_API_KEY set it must still touch no network.
ENV = {**PLANTED, "WANDB_MODE": "offline"}
LEAKY_OVERRIDES = [
    "+note=${oc.env:KMEXP_TEST_API_TOKEN}",  # resolved in the plain config that W&B logs
    "+pasted=planted-wandb-key-777",  # saved by Hydra, recorded as an override, a W&B tag
    "+endpoint=https://example.org/planted-secret-4242/feed",  # the secret inside a longer value
]


@pytest.fixture(scope="module")
def leaky_runs(tmp_path_factory) -> dict:
    """A single run and a two-job sweep with W&B (offline), started together: name -> (folder, process)."""
    root = tmp_path_factory.mktemp("secrets")
    common = [*files_overrides(write_small_data(root / "data")), "trainer.epochs=2", *LEAKY_OVERRIDES]
    jobs = {
        "single": ([*common, "hydra.run.dir=out"], root / "single"),
        "sweep": (["-m", *common, "seed=0,1", "hydra.sweep.dir=out"], root / "sweep"),
    }
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {}
        for name, (args, cwd) in jobs.items():
            cwd.mkdir()
            futures[name] = pool.submit(run_cli, args, cwd=cwd, env=ENV)
        return {name: (jobs[name][1] / "out", future.result()) for name, future in futures.items()}


def leaks(folder: Path) -> list[str]:
    """Every file under ``folder`` (binary W&B logs too) that holds a planted value."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        content = path.read_bytes()
        found += [f"{path.relative_to(folder)}: {name}" for name, value in PLANTED.items() if value.encode() in content]
    return found


def wandb_record(run_dir: Path) -> dict:
    (run,) = list((run_dir / "wandb").glob("offline-run-*"))
    out = subprocess.run(["wandb", "leet", "inspect", "--summary", "--json", str(run)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.mark.parametrize("name", ["single", "sweep"])
def test_planted_secrets_reach_no_file_and_no_output(leaky_runs, name):
    folder, result = leaky_runs[name]
    assert result.returncode == 0, result.stderr[-3000:]
    assert leaks(folder) == []
    for value in PLANTED.values():
        assert value not in result.stdout and value not in result.stderr


def test_every_kind_of_output_was_searched(leaky_runs):
    single, _ = leaky_runs["single"]
    sweep, _ = leaky_runs["sweep"]
    written = [*(single / ".hydra" / name for name in ("config.yaml", "hydra.yaml", "overrides.yaml")),
               single / "metrics.json", single / "kmexp.log", sweep / "multirun.yaml", sweep / "sweep.json",
               sweep / "results.csv", sweep / "report.md", sweep / "report.html", sweep / "1" / "kmexp.log"]
    assert [path for path in written if not path.is_file()] == []
    for run_dir in (single, sweep / "0", sweep / "1"):
        assert list((run_dir / "wandb").glob("offline-run-*/*.wandb")), run_dir


def test_secrets_are_replaced_by_their_names(leaky_runs):
    single, _ = leaky_runs["single"]
    expected = ["+pasted=<redacted:WANDB_API_KEY>", "+endpoint=https://example.org/<redacted:KMEXP_TEST_API_TOKEN>/feed"]
    assert set(expected) <= set(saved_overrides(single))
    assert set(expected) <= set(json.loads((single / "metrics.json").read_text())["overrides"])
    # The interpolation stays unresolved in Hydra's saved config, so it holds no value.
    saved = OmegaConf.to_container(OmegaConf.load(single / ".hydra" / "config.yaml"), resolve=False)
    assert saved["note"] == "${oc.env:KMEXP_TEST_API_TOKEN}"
    config = wandb_record(single)["config"]
    assert config["note"] == "<redacted:KMEXP_TEST_API_TOKEN>"
    assert config["pasted"] == "<redacted:WANDB_API_KEY>"


# --- in process ------------------------------------------------------------------------------------------


def test_secret_variables_are_found_by_name_and_long_enough_values():
    secrets = Secrets.from_environ({
        "MY_API_TOKEN": "tok-123456", "aws_secret_access_key": "abc-secret-xyz", "HF_Token": "hf_abcdefgh",
        "KEYBOARD": "us", "PATH": "/usr/bin:/bin", "SHORT_SECRET": "12345",
    })
    assert {name for name, _ in secrets.named} == {"MY_API_TOKEN", "aws_secret_access_key", "HF_Token"}
    assert secrets.text("x tok-123456 y") == "x <redacted:MY_API_TOKEN> y"
    assert secrets.data({"k": ["hf_abcdefgh", 1.5, None], "tok-123456": True}) == {
        "k": ["<redacted:HF_Token>", 1.5, None], "<redacted:MY_API_TOKEN>": True
    }


def test_a_secret_holding_another_is_redacted_whole():
    secrets = Secrets.from_environ({"OUTER_KEY": "prefix-inner-secret", "INNER_KEY": "inner-secret"})
    assert secrets.text("prefix-inner-secret and inner-secret") == "<redacted:OUTER_KEY> and <redacted:INNER_KEY>"


def test_a_yaml_file_is_rewritten_only_where_it_holds_a_secret(tmp_path):
    secrets = Secrets.from_environ({"MY_TOKEN": "planted-value-1"})
    path = tmp_path / "config.yaml"
    path.write_text("note: ${oc.env:MY_TOKEN}\npasted: x-planted-value-1\nlr: 0.001\nmissing: ???\nn: 3\n")
    secrets.yaml_file(path)
    saved = OmegaConf.load(path)
    assert OmegaConf.to_container(saved, resolve=False) == {
        "note": "${oc.env:MY_TOKEN}", "pasted": "x-<redacted:MY_TOKEN>", "lr": 0.001, "missing": "???", "n": 3
    }
    clean = tmp_path / "clean.yaml"
    clean.write_text("a:   1   # kept as written\n")
    secrets.yaml_file(clean)
    assert clean.read_text() == "a:   1   # kept as written\n"


def test_log_records_are_redacted_whatever_handler_prints_them():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("kmexp.test_secrets")
    logger.addHandler(handler)
    saved_factory = logging.getLogRecordFactory()
    try:
        redact_log_records(Secrets.from_environ({"MY_TOKEN": "planted-value-1"}))
        logger.warning("overrides: %s", ["+note=planted-value-1"])
        try:
            raise ValueError("bad planted-value-1")
        except ValueError:
            logger.exception("failed")
    finally:
        logging.setLogRecordFactory(saved_factory)
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "planted-value-1" not in text
    assert "overrides: ['+note=<redacted:MY_TOKEN>']" in text and "ValueError: bad <redacted:MY_TOKEN>" in text


def test_saved_overrides_are_read_unresolved(tmp_path, monkeypatch):
    """Resolving ``${oc.env:...}`` in a saved override would print the secret, or fail where it is unset."""
    from kmexp.report.collect import read_job

    job = tmp_path / "0"
    (job / ".hydra").mkdir(parents=True)
    saved = ["seed=1", "+note=${oc.env:KMEXP_TEST_UNSET_TOKEN}"]
    OmegaConf.save(OmegaConf.create(saved), job / ".hydra" / "overrides.yaml")
    monkeypatch.delenv("KMEXP_TEST_UNSET_TOKEN", raising=False)
    assert saved_overrides(job) == saved
    assert read_job(job).overrides == tuple(saved)
    assert read_job(job).error == "no metrics.json"
