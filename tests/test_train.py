"""End-to-end runs of ``python -m kmexp`` in a subprocess, on small data the test writes."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import files_overrides, only_run_dir, run_cli, write_small_data

METRIC_KEYS = {"accuracy", "macro_f1", "per_class", "confusion_matrix"}
# TensorFlow's C++ log lines (absl), as they start: its notice before InitializeLog, or I/W/E/F + date.
TF_LOG_LINE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWEF]\d{4} \d\d:)")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One default-config run (W&B offline included) on small multilingual files."""
    folder = tmp_path_factory.mktemp("run")
    data = write_small_data(folder)
    overrides = [*files_overrides(data), "language=fr", "optimizer=adam", "trainer.epochs=8", "metric=[macro_f1,accuracy,weighted_f1]"]
    result = run_cli(overrides, cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(folder / "outputs")
    return result, run_dir, json.loads((run_dir / "metrics.json").read_text())


def test_run_writes_metrics_json(finished_run):
    _, run_dir, metrics = finished_run
    assert metrics["status"] == "completed" and "error" not in metrics
    assert metrics["labels"] == ["food", "sports", "weather"]
    assert metrics["language"]["code"] == "fra_Latn" and metrics["seed"] == 0
    assert "optimizer=adam" in metrics["overrides"]
    assert 1 <= metrics["epochs_run"] <= 8
    phases = {name: metrics["seconds"][name] for name in ("prepare", "train", "save", "evaluate")}
    assert all(seconds > 0 for seconds in phases.values()), phases
    assert metrics["seconds"]["total"] >= sum(phases.values())
    assert {"python", "keras", "tensorflow", "kmexp"} <= set(metrics["versions"])
    assert isinstance(metrics["pid"], int) and metrics["host"]
    for split in ("dev", "test"):
        scores = metrics[split]
        assert METRIC_KEYS | {"weighted_f1"} <= set(scores)
        assert set(scores["per_class"]) == set(metrics["labels"])
        assert set(scores["per_class"]["food"]) == {"precision", "recall", "f1", "support"}
        cm = np.array(scores["confusion_matrix"])
        assert cm.shape == (3, 3) and cm.sum() == 30
        assert scores["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    # The first selected metric, on dev, is the objective the entry point returns.
    assert metrics["objective"] == {"name": "macro_f1", "split": "dev", "value": metrics["dev"]["macro_f1"]}
    # Three well-separated topics: a working pipeline learns them.
    assert metrics["test"]["accuracy"] >= 0.8


def test_run_writes_history_and_prints_a_summary(finished_run):
    result, run_dir, metrics = finished_run
    with open(run_dir / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == metrics["epochs_run"]
    assert {"epoch", "loss", "val_loss", "val_macro_f1", "val_accuracy"} <= set(rows[0])
    assert "<- objective" in result.stdout and "macro_f1" in result.stdout


def test_the_end_of_a_run_says_why_it_stopped_and_where_its_wandb_run_and_folder_are(finished_run):
    result, run_dir, metrics = finished_run
    cwd = run_dir.parents[3]  # <cwd>/outputs/runs/<date>/<time>
    *_, reason, wandb_line, sync_line, folder_line = result.stdout.strip().splitlines()
    # Why training stopped: the console and metrics.json say the same, and it fits the epochs recorded.
    assert reason == metrics["stop_reason"]
    epochs, best = metrics["epochs_run"], metrics["best_epoch"]
    kept = "the last epoch was the best" if best == epochs else f"best epoch {best} restored"
    early = rf"early stop at epoch {epochs}: dev loss did not improve for \d+ epochs?"
    ended = early if epochs < 8 else f"({early}|all 8 epochs ran)"  # patience can also run out at the last epoch
    assert re.fullmatch(f"{ended}; {kept}", reason), reason
    # The offline W&B run, and the command that uploads it.
    offline = re.fullmatch(r"W&B offline run: (\S+)", wandb_line).group(1)
    assert sync_line == f"upload it with: wandb sync {offline}"
    assert (cwd / offline).resolve() == Path(metrics["wandb"]["sync"]) == run_dir.resolve() / "wandb" / Path(offline).name
    assert len(list((cwd / offline).glob("*.wandb"))) == 1
    # The run folder comes last, with the run's total time.
    assert folder_line == f"run folder: {run_dir.relative_to(cwd)} ({metrics['seconds']['total']:.1f}s in all)"


def test_no_tensorflow_log_line_reaches_the_console(finished_run):
    result, _, _ = finished_run
    assert not [line for line in result.stderr.splitlines() if TF_LOG_LINE.match(line)], result.stderr[-3000:]


def test_choices_record_no_search_as_null(finished_run):
    _, _, metrics = finished_run
    assert metrics["choices"]["hparams_search"] is None
    assert metrics["choices"]["optimizer"] == "adam" and metrics["choices"]["language"] == "fr"


def test_an_early_stop_is_said_and_tensorflow_logs_come_back_when_asked(small_data, tmp_path):
    # Patience 1 on dev accuracy: the first epoch that does not beat the best one stops training.
    overrides = [*files_overrides(small_data), "logger=none", "trainer.monitor=objective", "trainer.patience=1",
                 "trainer.epochs=40"]
    result = run_cli(overrides, cwd=tmp_path, env={"KMEXP_TF_LOGS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((only_run_dir(tmp_path / "outputs") / "metrics.json").read_text())
    epochs, best = metrics["epochs_run"], metrics["best_epoch"]
    assert epochs < 40 and metrics["stop_reason"] == (
        f"early stop at epoch {epochs}: dev accuracy did not improve for 1 epoch; best epoch {best} restored"
    )
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == metrics["stop_reason"] and lines[-1].startswith("run folder: outputs/runs/")
    assert "W&B" not in result.stdout  # logger=none
    # KMEXP_TF_LOGS=1: stderr as TensorFlow writes it, its start-up lines included (no GPU here: cuInit fails).
    shown = [line for line in result.stderr.splitlines() if TF_LOG_LINE.match(line)]
    assert any("absl::InitializeLog()" in line for line in shown) and any("cuInit" in line for line in shown), shown


def test_real_errors_pass_the_start_up_filter(tmp_path):
    """What fd 2 gets while TensorFlow starts: the known start-up lines are dropped, anything else is shown in order."""
    written = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795859458.704675    2349 port.cc:153] oneDNN custom operations are on.",
        "E0000 00:00:1795859463.332391    2349 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
        "E0000 00:00:1795859463.332391    2349 some_kernel.cc:7] a real error",
        "F1128 09:58:23.826000    2349 other.cc:9] a fatal one",
        "a plain line from a library",
    ]
    data = "".join(f"{line}\n" for line in written).encode()
    script = textwrap.dedent(
        f"""
        import os, sys
        from kmexp.tf_logs import start_up_lines_dropped
        with start_up_lines_dropped(show=False):
            os.write(2, {data!r})
            print("from Python", file=sys.stderr)
        print("after", file=sys.stderr)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [*written[3:], "from Python", "after"]


def test_saved_model_predicts_raw_strings_in_a_fresh_process(finished_run):
    _, run_dir, metrics = finished_run
    script = textwrap.dedent(
        f"""
        import json, keras, tensorflow as tf
        import kmexp.layers
        model = keras.models.load_model({str(run_dir / "model.keras")!r}, safe_mode=True)
        texts = ["le match de football", "хлеб и суп", "今天下雨", "مطر ورياح", "", "🙂 mixed text 中文 عربى"]
        print(json.dumps(model.predict(tf.constant(texts), verbose=0).tolist()))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    probabilities = np.array(json.loads(out.stdout.strip().splitlines()[-1]))
    assert probabilities.shape == (6, len(metrics["labels"]))
    assert np.all(probabilities >= 0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    labels = metrics["labels"]
    assert [labels[i] for i in probabilities[:4].argmax(axis=1)] == ["sports", "food", "weather", "weather"]


def test_wandb_run_is_offline_in_the_run_folder(finished_run):
    _, run_dir, metrics = finished_run
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    out = subprocess.run(
        ["wandb", "leet", "inspect", "--summary", "--json", str(runs[0])], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    record = json.loads(out.stdout)
    assert record["state"] == "finished" and record["exit_code"] == 0
    assert record["config"]["language"]["code"] == "fra_Latn"  # the resolved config went in
    assert record["summary"]["test/accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert record["summary"]["objective"] == pytest.approx(metrics["objective"]["value"])
    assert record["summary"]["epochs_run"] == metrics["epochs_run"]
    assert "language=fr" in record["tags"] and "optimizer=adam" in record["tags"]


def test_csv_logger_writes_epochs_and_summary(small_data, tmp_path):
    result = run_cli([*files_overrides(small_data), "logger=csv", "trainer.epochs=2", "trainer.patience=5"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "outputs")
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["1", "2", "summary"]
    assert all(row["status"] == "completed" for row in rows)


def test_a_failed_run_says_why_and_records_it(small_data, tmp_path):
    missing = tmp_path / "nope.tsv"
    overrides = ["data=files", f"data.train={missing}", f"data.test={small_data['test']}", "logger=none"]
    result = run_cli(overrides, cwd=tmp_path)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "nope.tsv" in last_line and "data.train" in last_line
    assert "Traceback" not in result.stderr
    # Printed once on the console (the last line), and kept in the run's log file.
    message = f"data.train: file not found: {missing}"
    assert (result.stdout + result.stderr).count(message) == 1
    run_dir = only_run_dir(tmp_path / "outputs")
    assert message in (run_dir / "kmexp.log").read_text(encoding="utf-8")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "nope.tsv" in metrics["error"]


@pytest.mark.parametrize("optimizer", ["lbfgs", "sgd"])
def test_other_optimizers_train_end_to_end(small_data, tmp_path, optimizer):
    result = run_cli([*files_overrides(small_data), f"optimizer={optimizer}", "logger=none", "trainer.epochs=5"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((only_run_dir(tmp_path / "outputs") / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["test"]["accuracy"] >= 0.8


def test_dropout_trains_on_sparse_features_behind_a_hidden_layer(small_data, tmp_path):
    overrides = [*files_overrides(small_data), "model.hidden_units=[16]", "model.dropout=0.3", "logger=none", "trainer.epochs=4"]
    result = run_cli(overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((only_run_dir(tmp_path / "outputs") / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["test"]["accuracy"] >= 0.8


@pytest.mark.parametrize("device", [["device.precision=mixed_bfloat16"], ["device=cpu", "device.jit_compile=true", "encoder.preprocessor.sparse=false"]])
def test_precision_and_jit_settings_train_end_to_end(small_data, tmp_path, device):
    result = run_cli([*files_overrides(small_data), *device, "logger=none", "trainer.epochs=4"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((only_run_dir(tmp_path / "outputs") / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["test"]["accuracy"] >= 0.8
