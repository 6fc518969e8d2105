"""W&B logging, read back with wandb's own reader (``wandb leet inspect``), and the sweep's W&B Report.

Nothing of wandb is mocked: jobs train for real on small files the test writes,
in this process, like the jobs of one Hydra sweep; the offline run files are
then read back as a user would. Where the test needs the network to be
untouched, it points W&B at a dead port and guards Python's sockets.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import TOPICS, files_overrides, make_rows, only_run_dir, write_small_data, write_tsv
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from kmexp.config import register_configs
from kmexp.errors import KmexpError
from kmexp.loggers import MAX_TAG_LENGTH
from kmexp.paths import config_dir
from kmexp.train import train

DEAD_URL = "http://127.0.0.1:9"  # the discard port: nothing answers there
GROUP = "2026-11-27_10-31-02-123456"
OFFLINE_VARIABLES = ("WANDB_ERROR_REPORTING", "WANDB_DATA_DIR")
# Each job's own overrides, as a sweep would give them (the data files come first).
JOBS = {
    "fr": ["language=fr", "logger.log_model=true"],
    "ru": ["language=ru"],
    "bad": ["language=fr", "optimizer.learning_rate=-1"],  # fails validation: a failed job
}
# Seconds a small job may take with W&B on; a network wait (init_timeout_s is 30) would exceed it.
QUICK_S = 25


@dataclass
class Job:
    run_dir: Path
    metrics: dict
    seconds: float
    environment_after: dict
    summary: dict  # `wandb leet inspect --summary --json`
    records: list[dict]  # `wandb leet inspect --json`, one record per line

    @property
    def wandb_run(self) -> Path:
        (found,) = (self.run_dir / "wandb").glob("offline-run-*")
        return found

    def first(self, kind: str) -> dict:
        return next(record[kind] for record in self.records if record["type"] == kind)

    def all(self, kind: str) -> list[dict]:
        return [record[kind] for record in self.records if record["type"] == kind]


def compose_job(overrides: list[str]) -> tuple[DictConfig, dict[str, str]]:
    """The job's config and the option picked in each group, as the entry point gets them from Hydra."""
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    choices = {group: str(option) for group, option in cfg.hydra.runtime.choices.items() if not group.startswith("hydra/")}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def leet(*args: str) -> str:
    out = subprocess.run(["wandb", "leet", "inspect", *args], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def run_job(sweep_dir: Path, name: str, overrides: list[str]) -> Job:
    cfg, choices = compose_job(overrides)
    run_dir = sweep_dir / name
    # What Hydra saves in each job folder of a sweep, and how the reports find a sweep's jobs.
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), run_dir / ".hydra" / "overrides.yaml")
    started = time.perf_counter()
    try:
        train(cfg, run_dir, overrides, choices=choices, group=GROUP)
    except KmexpError:
        pass  # the failed job: its metrics.json and W&B run say so
    seconds = time.perf_counter() - started
    job = Job(run_dir, json.loads((run_dir / "metrics.json").read_text()), seconds,
              {name: os.environ.get(name) for name in OFFLINE_VARIABLES}, {}, [])
    job.summary = json.loads(leet("--summary", "--json", str(job.wandb_run)))
    job.records = [json.loads(line) for line in leet("--json", str(job.wandb_run)).splitlines() if line.strip()]
    return job


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict[str, Job]:
    """Three jobs of one sweep in one process, W&B offline and pointed at a dead server."""
    root = tmp_path_factory.mktemp("wandb")
    # A long folder name makes the data overrides longer than a W&B tag may be.
    data_dir = root / "multilingual_topic_classification_files_for_the_wandb_test"
    data_dir.mkdir()
    data = write_small_data(data_dir)
    with _offline_at_a_dead_server():
        common = [*files_overrides(data), "trainer.epochs=3"]
        return {name: run_job(root / "sweep", name, [*common, *extra]) for name, extra in JOBS.items()}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Job:
    """A job that early stopping ends after its best epoch, so the last epoch's dev scores are not the saved model's."""
    root = tmp_path_factory.mktemp("wandb_stopped")
    data = write_small_data(root / "data")
    # Dev labels partly wrong: the dev loss turns up after epoch 2 and early stopping restores that epoch.
    data["dev"] = write_tsv(root / "data" / "dev_noisy.tsv", _mislabel_every_third(make_rows(10, seed=2)))
    with _offline_at_a_dead_server():
        return run_job(root, "0", [*files_overrides(data), "language=fr", "trainer.epochs=30", "trainer.patience=2"])


@contextlib.contextmanager
def _offline_at_a_dead_server():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_BASE_URL", DEAD_URL)
        for name in ("WANDB_MODE", "WANDB_API_KEY", *OFFLINE_VARIABLES):
            mp.delenv(name, raising=False)
        yield


def _mislabel_every_third(rows: list[dict]) -> list[dict]:
    labels = sorted(TOPICS)
    return [{**row, "label": labels[(labels.index(row["label"]) + 1) % len(labels)]} if i % 3 == 0 else row
            for i, row in enumerate(rows)]


def test_each_job_is_its_own_offline_run_in_its_folder(sweep):
    run_ids = {job.summary["run_id"] for job in sweep.values()}
    assert len(run_ids) == len(sweep)  # runs never merge across jobs of one process
    for job in sweep.values():
        assert job.wandb_run.parent == job.run_dir / "wandb"
        # metrics.json names the run, from the start: id, mode and the folder of its files; at the end of a job that
        # trained, also the offline run's own folder, what `wandb sync` takes (a job that failed validation has not
        # waited for its run to start).
        named = {"id": job.summary["run_id"], "mode": "offline", "dir": str(job.run_dir / "wandb")}
        if job.metrics["status"] == "completed":
            named["sync"] = str(job.wandb_run)
        assert job.metrics["wandb"] == named
        assert job.wandb_run.name.endswith(f"-{job.summary['run_id']}")
        assert job.first("run")["telemetry"]["feature"]["offline"] is True
        if job.metrics["status"] == "completed":
            # Each run saves the installed packages, read once per process (kmexp.compat.wandb_lists_packages_once).
            listed = (job.wandb_run / "files" / "requirements.txt").read_text(encoding="utf-8").splitlines()
            assert f"keras=={importlib.metadata.version('keras')}" in listed
        assert job.seconds < QUICK_S, job.seconds


def test_offline_settings_do_not_outlive_the_run(sweep):
    for job in sweep.values():
        assert job.environment_after == dict.fromkeys(OFFLINE_VARIABLES)


def test_runs_carry_the_sweep_group_and_job_type(sweep):
    for job in sweep.values():
        run = job.first("run")
        assert run["run_group"] == GROUP and run["job_type"] == "train" and run["project"] == "kmexp"


def test_tags_name_the_options_and_the_overrides(sweep):
    tags = sweep["fr"].summary["tags"]
    assert tags[:3] == ["language=fr", "encoder=char_ngram", "optimizer=adam"]
    assert {"data=files", "trainer.epochs=3", "logger.log_model=true"} <= set(tags)
    assert all(len(tag) <= MAX_TAG_LENGTH for tag in tags)
    # A long override keeps its key and the end of its value.
    train_tag = next(tag for tag in tags if tag.startswith("data.train="))
    assert train_tag.endswith("_for_the_wandb_test/train.tsv") and "…" in train_tag
    assert "language=ru" in sweep["ru"].summary["tags"]


def test_config_is_the_full_resolved_config_and_the_choices(sweep):
    config = sweep["fr"].summary["config"]
    assert config["language"]["code"] == "fra_Latn"
    assert config["optimizer"]["learning_rate"] == 0.05
    assert config["trainer"]["epochs"] == 3
    assert config["logger"]["mode"] == "offline"  # resolved from ${oc.env:WANDB_MODE,offline}
    assert config["choices"]["encoder"] == "char_ngram" and config["choices"]["language"] == "fr"


def test_history_has_every_epoch(sweep):
    job = sweep["fr"]
    epochs = [item["item"]["epoch"] for item in job.all("history") if "epoch" in item["item"]]
    assert epochs == list(range(1, job.metrics["epochs_run"] + 1))
    last = next(item["item"] for item in job.all("history") if item["item"].get("epoch") == epochs[-1])
    assert {"loss", "val_loss", "val_accuracy", "val_macro_f1"} <= set(last)


def test_summary_holds_the_dev_and_test_metrics(sweep):
    job = sweep["fr"]
    assert job.summary["state"] == "finished" and job.summary["exit_code"] == 0
    for split in ("dev", "test"):
        for name in ("accuracy", "macro_f1"):
            assert job.summary["summary"][f"{split}/{name}"] == pytest.approx(job.metrics[split][name])
    assert job.summary["summary"]["objective"] == pytest.approx(job.metrics["objective"]["value"])


def test_the_summary_holds_the_best_epoch_once_and_no_stale_last_epoch(stopped):
    job = stopped
    summary = job.summary["summary"]
    assert job.metrics["best_epoch"] < job.metrics["epochs_run"] < 30  # early stopping restored an earlier epoch
    with open(job.run_dir / "history.csv", newline="", encoding="utf-8") as f:
        rows = {int(row["epoch"]): row for row in csv.DictReader(f)}
    assert sorted(rows) == list(range(1, job.metrics["epochs_run"] + 1))  # from 1, like best_epoch and W&B
    best, last = rows[job.metrics["best_epoch"]], rows[job.metrics["epochs_run"]]
    assert float(best["val_loss"]) != float(last["val_loss"])
    # The saved (best epoch's) dev scores, each under one name; the last epoch's values are in the history only.
    assert summary["best_epoch"] == job.metrics["best_epoch"] and summary["epochs_run"] == job.metrics["epochs_run"]
    assert summary["dev/loss"] == pytest.approx(float(best["val_loss"]))
    for name in ("accuracy", "macro_f1"):
        assert summary[f"dev/{name}"] == pytest.approx(float(best[f"val_{name}"]))
        assert summary[f"dev/{name}"] == pytest.approx(job.metrics["dev"][name])
        assert summary[f"test/{name}"] == pytest.approx(job.metrics["test"][name])
    assert not {"epoch", "loss", "val_loss", "val_accuracy", "val_macro_f1"} & set(summary)
    epochs = [item["item"] for item in job.all("history") if "epoch" in item["item"]]
    assert [item["epoch"] for item in epochs] == sorted(rows)
    assert epochs[-1]["val_loss"] == pytest.approx(float(last["val_loss"]))


def test_per_class_tables_and_confusion_matrices(sweep):
    job = sweep["ru"]
    files = job.wandb_run / "files"
    labels = job.metrics["labels"]
    for split in ("dev", "test"):
        table = job.summary["summary"][f"{split}/per_class"]
        assert table["_type"] == "table-file" and table["nrows"] == len(labels)
        rows = json.loads((files / table["path"]).read_text())
        assert rows["columns"] == ["label", "precision", "recall", "f1", "support"]
        per_class = job.metrics[split]["per_class"]
        assert rows["data"] == [[label, *(per_class[label][key] for key in rows["columns"][1:])] for label in labels]

        counts = json.loads((files / job.summary["summary"][f"{split}/confusion_matrix_table"]["path"]).read_text())
        cells = {(actual, predicted): n for actual, predicted, n in counts["data"]}
        matrix = job.metrics[split]["confusion_matrix"]
        assert cells == {(a, p): matrix[i][j] for i, a in enumerate(labels) for j, p in enumerate(labels)}
    charts = {key for config in job.all("config") for key in config["update"]}
    assert {"_wandb.visualize.dev/confusion_matrix", "_wandb.visualize.test/confusion_matrix"} <= charts


def test_a_failed_job_is_a_failed_run(sweep):
    job = sweep["bad"]
    assert job.metrics["status"] == "failed" and "learning_rate" in job.metrics["error"]
    assert job.summary["state"] == "failed" and job.summary["exit_code"] == 1
    assert not any(key.startswith("test/") for key in job.summary["summary"])


def test_the_model_is_an_artifact_only_when_asked(sweep):
    (model,) = [a for a in sweep["fr"].all("artifact") if a["type"] == "model"]
    assert model["name"] == f"model-{sweep['fr'].summary['run_id']}"
    (entry,) = model["manifest"]["contents"]
    assert entry["path"] == "model.keras"
    assert int(entry["size"]) == (sweep["fr"].run_dir / "model.keras").stat().st_size
    # Staged in the job's folder, not in the user's data folder.
    assert Path(entry["local_path"]).is_relative_to(sweep["fr"].run_dir / "wandb")
    assert not [a for a in sweep["ru"].all("artifact") if a["type"] == "model"]


def test_csv_logger_writes_per_class_scores(small_data, tmp_path):
    overrides = [*files_overrides(small_data), "logger=csv", "trainer.epochs=2"]
    cfg, choices = compose_job(overrides)
    record = train(cfg, tmp_path, overrides, choices=choices)
    lines = (tmp_path / "logs" / "per_class.csv").read_text().splitlines()
    assert lines[0] == "split,label,precision,recall,f1,support"
    assert len(lines) == 1 + 2 * len(record.labels)
    assert lines[1].startswith(f"dev,{record.labels[0]},")


@pytest.fixture
def logged_out(tmp_path, monkeypatch):
    """No W&B credentials anywhere wandb looks, and a dead server if it looked further."""
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")  # the test's own choice: online runs keep the user's
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_BASE_URL", DEAD_URL)


def test_online_without_login_fails_the_job_in_one_line(small_data, tmp_path, logged_out):
    overrides = [*files_overrides(small_data), "logger.mode=online", "trainer.epochs=1"]
    cfg, choices = compose_job(overrides)
    before = {name: os.environ.get(name) for name in OFFLINE_VARIABLES}
    with pytest.raises(KmexpError, match=r"logger.mode=online.*wandb login.*logger.mode=offline"):
        train(cfg, tmp_path / "job", overrides, choices=choices)
    metrics = json.loads((tmp_path / "job" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "wandb login" in metrics["error"]
    assert {name: os.environ.get(name) for name in OFFLINE_VARIABLES} == before


def test_epochs_logged_while_the_offline_run_starts_arrive_in_order(tmp_path, monkeypatch):
    # The offline run starts in a background thread; the first epochs usually end before it is ready.
    from kmexp.loggers import WandbLogger

    monkeypatch.setenv("WANDB_BASE_URL", DEAD_URL)
    logger = WandbLogger(str(tmp_path), project="kmexp-test", entity=None, mode="offline", job_type="train",
                         tag_groups=[], log_model=False, init_timeout_s=30, system_metrics=False, console="off",
                         quiet=True)
    logger.start({"seed": 0}, choices={}, overrides=[], group=None)
    for epoch in range(1, 6):
        logger.log_epoch(epoch, {"loss": 1.0 / epoch})
    logger.log_summary({"objective": 0.5})
    logger.finish("completed")
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    records = [json.loads(line) for line in leet("--json", str(run)).splitlines() if line.strip()]
    history = [record["history"]["item"] for record in records if record["type"] == "history"]
    assert [item["epoch"] for item in history] == [1, 2, 3, 4, 5]
    assert [item["loss"] for item in history] == [1.0, 0.5, 1.0 / 3, 0.25, 0.2]
    summary = json.loads(leet("--summary", "--json", str(run)))
    assert summary["state"] == "finished" and summary["summary"]["objective"] == 0.5


def test_an_offline_run_that_cannot_start_fails_the_job_in_one_line(small_data, tmp_path):
    overrides = [*files_overrides(small_data), "logger.project=not/allowed", "trainer.epochs=2"]
    cfg, choices = compose_job(overrides)
    with pytest.raises(KmexpError, match=r"W&B could not start the run.*Invalid project name"):
        train(cfg, tmp_path / "job", overrides, choices=choices)
    metrics = json.loads((tmp_path / "job" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "Invalid project name" in metrics["error"] and "\n" not in metrics["error"]


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to watch the job's connections")
def test_an_offline_job_opens_no_network_connection(small_data, tmp_path):
    """The whole CLI job, W&B's service included, under strace: only local (AF_UNIX) sockets."""
    trace = tmp_path / "connect.trace"
    started = time.perf_counter()
    out = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace), sys.executable, "-m", "kmexp",
         *files_overrides(small_data), "trainer.epochs=2"],
        cwd=tmp_path, env={**os.environ, "WANDB_BASE_URL": DEAD_URL, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"},
        check=False, capture_output=True, text=True, timeout=300,
    )
    if out.returncode != 0 and "ptrace" in out.stderr:
        pytest.skip("strace cannot trace here: " + out.stderr.strip().splitlines()[-1])
    assert out.returncode == 0, out.stderr[-3000:]
    assert time.perf_counter() - started < 120
    inet = [line for line in trace.read_text().splitlines() if "AF_INET" in line]
    assert inet == []
    assert list((only_run_dir(tmp_path / "outputs") / "wandb").glob("offline-run-*"))


# --- the sweep's W&B Report -------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Fail any Python socket that would leave the machine (wandb-workspaces talks to W&B through requests)."""

    def refuse(self, address, *args):
        if self.family != socket.AF_UNIX:
            raise AssertionError(f"network access to {address}")
        return real_connect(self, address, *args)

    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setenv("WANDB_BASE_URL", DEAD_URL)
    monkeypatch.delenv("WANDB_MODE", raising=False)


def test_build_report_for_the_sweep_group(sweep, no_network):
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    from kmexp.report.wandb import build_report

    report = build_report(sweep["fr"].run_dir.parent, entity="my-team", project="kmexp")
    assert isinstance(report, wr.Report) and (report.entity, report.project) == ("my-team", "kmexp")
    assert GROUP in report.title
    (grid,) = [block for block in report.blocks if isinstance(block, wr.PanelGrid)]
    (runset,) = grid.runsets
    assert (runset.entity, runset.project) == ("my-team", "kmexp")
    only_group = expr.expr_to_filters(runset.filters)
    assert (only_group.key.section, only_group.key.name, only_group.op, only_group.value) == ("run", "group", "=", GROUP)

    bar, parallel, comparer = grid.panels
    assert isinstance(bar, wr.BarPlot) and bar.metrics == [wr.SummaryMetric("test/accuracy")]
    assert bar.groupby == wr.Config("language.code")  # one bar per locale
    assert isinstance(parallel, wr.ParallelCoordinatesPlot)
    assert [column.metric for column in parallel.columns] == [
        wr.Config("choices.language"),  # a swept config group is read from the option picked
        wr.Config("optimizer.learning_rate"),
        wr.Config("logger.log_model"),
        wr.SummaryMetric("objective"),
        wr.SummaryMetric("test/accuracy"),
    ]
    assert isinstance(comparer, wr.RunComparer)


def test_publish_offline_says_what_to_run_in_one_line(sweep, no_network):
    from kmexp.report.wandb import publish

    message = publish(sweep["fr"].run_dir.parent, entity=None, project="kmexp")
    assert "\n" not in message
    assert "wandb login" in message and "wandb sync" in message
    for job in sweep.values():
        assert str(job.wandb_run) in message


def test_publish_online_without_login_says_so_in_one_line(sweep, logged_out, no_network, monkeypatch):
    from kmexp.report.wandb import publish

    monkeypatch.setenv("WANDB_MODE", "online")
    message = publish(sweep["fr"].run_dir.parent, entity=None, project="kmexp")
    assert "\n" not in message and message.startswith("W&B report not published") and "wandb login" in message


def test_publish_refuses_a_folder_that_is_not_one_sweep(tmp_path, no_network):
    from kmexp.report.wandb import publish

    with pytest.raises(KmexpError, match="not one sweep"):
        publish(tmp_path, entity=None, project="kmexp")
