"""Faults during a run: a non-finite loss, SIGTERM/SIGINT with a resume, interrupted saves, overlapping data.

The signal tests kill a real ``python -m kmexp`` mid-training; the rest drive
``kmexp.training`` in-process on a tiny model, which is fast and shows exactly what
a resumed run restores.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import files_overrides, small_disk, write_small_data, write_tsv
from omegaconf import OmegaConf

from kmexp.data.splits import Split, make_splits
from kmexp.errors import ConfigError
from kmexp.optim import LBFGS
from kmexp.runs import LOCK_FILE, save_model
from kmexp.training.callbacks import HistoryCSV, NonFiniteLoss, StopOnNonFiniteLoss, StopReason
from kmexp.training.loops import compiled, fit
from kmexp.training.resume import TrainingBackup
from kmexp.training.signals import Terminated, stop_at_batch_ends

# --- a run killed mid-training, then resumed in the same folder -------------------------------


def _history_epochs(run_dir: Path) -> list[int]:
    path = run_dir / "history.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _start_run(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "kmexp", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_epochs(process: subprocess.Popen, run_dir: Path, n: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while len(_history_epochs(run_dir)) < n:
        assert process.poll() is None, f"the run ended before {n} epochs:\n{process.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, f"no {n} epochs in {timeout_s}s"
        time.sleep(0.05)


def _kill_mid_training(tmp_path: Path, signum: int, logger: str = "none") -> tuple[Path, list[str], int]:
    """Start a run, send ``signum`` after 2 epochs, check what it left; return its folder, args, epochs backed up."""
    data = write_small_data(tmp_path / "data")
    run_dir = tmp_path / "run"
    # A backup after every epoch (the default waits trainer.backup_interval_s between backups).
    common = [*files_overrides(data), f"logger={logger}", "trainer.patience=100000", "trainer.backup_interval_s=0",
              f"hydra.run.dir={run_dir}"]
    # Far more epochs than it can run before the signal: it is still training when killed.
    process = _start_run([*common, "trainer.epochs=100000"], cwd=tmp_path)
    try:
        _wait_for_epochs(process, run_dir, 2)
        process.send_signal(signum)
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    # The shell's convention for a signal: 128 + its number (130 for SIGINT, 143 for SIGTERM), and one line.
    assert process.returncode == 128 + signum, output[-3000:]
    assert "Traceback" not in output
    name = signal.Signals(signum).name
    # The line names the run folder to rerun into, as typed from where the run started.
    assert output.strip().splitlines()[-1] == (
        f"kmexp: interrupted by {name}: metrics.json says status: interrupted; rerun with hydra.run.dir=run to resume"
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())  # whole JSON
    assert metrics["status"] == "interrupted", metrics.get("error")
    assert metrics["stop_reason"] == f"interrupted by {name}"
    assert not (run_dir / "model.keras").exists()
    done = _history_epochs(run_dir)
    assert done == list(range(1, len(done) + 1)) and len(done) >= 2  # from 1, like best_epoch
    backed_up = json.loads((run_dir / "backup" / "latest.json").read_text())["epoch"]
    assert not (run_dir / LOCK_FILE).exists()  # the folder was given up: the rerun can resume there
    return run_dir, common, backed_up


def test_ctrl_c_is_recorded_as_interrupted(tmp_path):
    run_dir, _, _ = _kill_mid_training(tmp_path, signal.SIGINT)
    assert json.loads((run_dir / "metrics.json").read_text())["error"].startswith("KeyboardInterrupt")


def test_sigterm_is_recorded_as_interrupted_and_a_rerun_resumes(tmp_path):
    run_dir, common, backed_up = _kill_mid_training(tmp_path, signal.SIGTERM, logger="wandb")
    interrupted = json.loads((run_dir / "metrics.json").read_text())
    assert interrupted["error"] == "Terminated: stopped by SIGTERM"
    # The W&B run was finished, as failed (exit code 1), before the process ended.
    (wandb_run,) = (run_dir / "wandb").glob(f"offline-run-*-{interrupted['wandb']['id']}")
    summary = json.loads(subprocess.run(["wandb", "leet", "inspect", "--summary", "--json", str(wandb_run)],
                                        capture_output=True, text=True, timeout=120, check=True).stdout)
    assert summary["state"] == "failed" and summary["exit_code"] == 1

    # The rerun into the same folder goes on from the backup, with a few epochs left.
    epochs = backed_up + 3
    rerun = subprocess.run(
        [sys.executable, "-m", "kmexp", *common, f"trainer.epochs={epochs}"], cwd=tmp_path, capture_output=True,
        text=True, timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{backed_up} epoch(s) already done" in rerun.stdout + rerun.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and "error" not in metrics
    assert metrics["resumed_from_epoch"] == backed_up and metrics["epochs_run"] == epochs
    assert metrics["stop_reason"].startswith(f"resumed after epoch {backed_up}; all {epochs} epochs ran; ")
    assert metrics["stop_reason"] in rerun.stdout.splitlines()
    # Each epoch once, in order: the rows before the backup were kept, none counted twice.
    assert _history_epochs(run_dir) == list(range(1, epochs + 1))
    assert (run_dir / "model.keras").is_file() and not (run_dir / "backup").exists()
    assert not [p.name for p in run_dir.iterdir() if ".tmp" in p.name]


def _wait_for_record(process: subprocess.Popen, run_dir: Path, timeout_s: float = 120) -> dict:
    """The run's metrics.json as soon as there is one (it is written whole, when the run starts)."""
    deadline = time.monotonic() + timeout_s
    while not (run_dir / "metrics.json").is_file():
        assert process.poll() is None, f"the run ended without a metrics.json:\n{process.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, f"no metrics.json in {timeout_s}s"
        time.sleep(0.02)
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_a_killed_run_stays_running_reads_as_interrupted_and_a_rerun_finishes_it(tmp_path):
    data = write_small_data(tmp_path / "data")
    sweep_dir = tmp_path / "sweep"
    run_dir = sweep_dir / "0"  # a job folder, so that kmexp-report reads the folder above as a sweep
    # W&B offline (the default logger): metrics.json names the W&B run that the kill leaves unfinished.
    common = [*files_overrides(data), "trainer.patience=100000", "trainer.backup_interval_s=0",
              f"hydra.run.dir={run_dir}"]
    process = _start_run([*common, "trainer.epochs=100000"], cwd=tmp_path)
    try:
        started = _wait_for_record(process, run_dir)
        _wait_for_epochs(process, run_dir, 2)
        process.send_signal(signal.SIGKILL)  # no handler runs, no finally: nothing more is written
        process.communicate(timeout=60)  # waited for: the process is gone, not a zombie
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL
    # Written at the start, before training: running, this process.
    assert started["status"] == "running" and started["pid"] == process.pid and "error" not in started
    wandb_run = started["wandb"]
    assert wandb_run["mode"] == "offline" and Path(wandb_run["dir"]) == run_dir / "wandb"
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{wandb_run['id']}"))) == 1
    # The record stays as it was: running, with the dead process's pid.
    left = json.loads((run_dir / "metrics.json").read_text())
    assert left["status"] == "running" and left["pid"] == process.pid and left["wandb"] == wandb_run
    assert not (run_dir / "model.keras").exists()
    backed_up = json.loads((run_dir / "backup" / "latest.json").read_text())["epoch"]

    # kmexp-report: the job did not complete, it was interrupted, and the line says how.
    report = subprocess.run([sys.executable, "-m", "kmexp.report", str(sweep_dir)], capture_output=True, text=True,
                            timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "1 jobs (0 completed, 1 did not complete)" in report.stdout
    with open(sweep_dir / "results.csv", newline="", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert row["status"] == "interrupted"
    assert row["error"] == f"killed: process {process.pid} on {left['host']} ended without recording the end of the run"
    assert "interrupted" in (sweep_dir / "report.md").read_text(encoding="utf-8")

    # A rerun into the folder resumes from the backup and finishes, as a new W&B run.
    epochs = backed_up + 2
    rerun = subprocess.run([sys.executable, "-m", "kmexp", *common, f"trainer.epochs={epochs}"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["pid"] != process.pid
    assert metrics["resumed_from_epoch"] == backed_up and metrics["epochs_run"] == epochs
    assert _history_epochs(run_dir) == list(range(1, epochs + 1))
    assert metrics["wandb"]["id"] != wandb_run["id"]


# --- two runs into one run folder ---------------------------------------------------------------


@pytest.mark.slow
def test_a_second_run_into_a_busy_folder_is_refused_and_the_first_finishes(tmp_path):
    data = write_small_data(tmp_path / "data")
    run_dir = tmp_path / "run"
    # A lock file left by a run killed with SIGKILL: the kernel dropped its flock, so the next run takes it over.
    dead = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from kmexp.runs import RunLock; lock = RunLock(sys.argv[1]).acquire(); "
         "print('held', flush=True); time.sleep(600)", str(run_dir)], stdout=subprocess.PIPE, text=True,
    )
    assert dead.stdout.readline().strip() == "held"
    dead.kill()
    dead.wait()
    assert (run_dir / LOCK_FILE).read_text().startswith(f"{dead.pid}\n")

    common = [*files_overrides(data), "logger=none", f"hydra.run.dir={run_dir}"]
    first = _start_run([*common, "trainer.epochs=30", "trainer.patience=100000"], cwd=tmp_path)
    try:
        _wait_for_epochs(first, run_dir, 1)
        # Paused while it holds the folder, so the second run comes while it is busy however slow this machine is.
        first.send_signal(signal.SIGSTOP)
        try:
            second = subprocess.run(
                [sys.executable, "-m", "kmexp", *common, "trainer.epochs=1", "seed=1"], cwd=tmp_path,
                capture_output=True, text=True, timeout=120, env={**os.environ, "HYDRA_FULL_ERROR": "0"},
            )
        finally:
            first.send_signal(signal.SIGCONT)
        output, _ = first.communicate(timeout=300)
    finally:
        first.kill()
    # Refused in one line, before it wrote anything (its saved config, its log) into the folder.
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"kmexp: error: {run_dir}: this run folder is in use by another kmexp run (pid {first.pid}, {LOCK_FILE}); "
        "wait for it to end, or pick another folder"
    ]
    assert "seed=1" not in (run_dir / ".hydra" / "overrides.yaml").read_text()
    # The first run finished as if alone, and gave the folder up.
    assert first.returncode == 0, output[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["seed"] == 0 and metrics["epochs_run"] == 30
    assert metrics["pid"] == first.pid
    assert _history_epochs(run_dir) == list(range(1, 31))
    assert (run_dir / "model.keras").is_file() and not (run_dir / LOCK_FILE).exists()


# --- a full disk ---------------------------------------------------------------------------------

# Below the size of a model.keras or a backup of 2^16 hashed bins (megabytes), above that of every other file
# (the lock file keeps 256 KiB for metrics.json).
FILE_SIZE_LIMIT = 1 << 20


def _file_size_limit() -> None:
    """In the child: a real kernel limit on the size of a written file (RLIMIT_FSIZE), as a full disk stops a write.

    Writing past it fails with EFBIG once SIGXFSZ, which would kill the process, is ignored.
    """
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


@pytest.mark.slow
@pytest.mark.parametrize("backup_interval_s, failing", [(0, "backup/epoch-00001.weights.h5"), (60, "model.keras")])
def test_a_full_disk_is_one_line_naming_the_file_and_metrics_json_records_it(tmp_path, backup_interval_s, failing):
    data = write_small_data(tmp_path / "data")
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "kmexp", *files_overrides(data), "logger=none", "trainer.epochs=2",
         "encoder.preprocessor.num_bins=65536", f"trainer.backup_interval_s={backup_interval_s}",
         f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    message = f"cannot write {run_dir / failing} ([Errno 27] File too large): larger than a file may be here"
    assert result.stderr.strip().splitlines()[-1].startswith(f"kmexp: error: {message}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error"].startswith(f"StorageError: {message}")
    # No half-written file is left: not the backup's weights, not the model's temporary file.
    left = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())
    assert left == [".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "history.csv", "kmexp.log",
                    "metrics.json"]


@pytest.mark.slow
def test_a_run_that_fills_a_real_disk_names_the_file_and_leaves_no_backup_behind(tmp_path):
    data = write_small_data(tmp_path / "data")
    with small_disk(tmp_path / "disk", "3m") as disk:
        run_dir = disk / "run"
        # The first backup (the weights with the optimizer's state, then early stopping's best weights) fills it.
        result = subprocess.run(
            [sys.executable, "-m", "kmexp", *files_overrides(data), "logger=none", "trainer.epochs=3",
             "encoder.preprocessor.num_bins=65536", "trainer.backup_interval_s=0", f"hydra.run.dir={run_dir}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        )
        assert result.returncode == 1, result.stderr[-3000:]
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith(f"kmexp: error: cannot write {run_dir / 'backup'}/"), line
        assert "([Errno 28] No space left on device): no space left on the device" in line
        assert json.loads((run_dir / "metrics.json").read_text())["error"] == f"StorageError: {line[len('kmexp: error: '):]}"
        # The unfinished backup is gone, space and all: nothing half-written, nothing a resume could trip on.
        assert not [p for p in (run_dir / "backup").rglob("*") if p.is_file()]
        left = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())
        assert left == [".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "history.csv",
                        "kmexp.log", "metrics.json"]


# --- in-process: what a resume restores --------------------------------------------------------


class _InterruptAt(keras.callbacks.Callback):
    """Raises KeyboardInterrupt at the end of one epoch, after history.csv has its row but before the backup."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(96, 6)).astype("float32")
    labels = (features[:, 0] + 0.5 * rng.normal(size=96) > 0).astype(int) + (features[:, 1] > 1)
    return features, keras.utils.to_categorical(labels, 3)


def _network():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))


def _train(run_dir: Path, optimizer: str, epochs: int, interrupt_at: int | None = None, loss=None,
           backup_interval_s: float = 0, tolerance_grad: float = 1e-7):
    """Train through kmexp.training with the callbacks train() uses; return the network, the backup and why it stopped."""
    run_dir.mkdir(parents=True, exist_ok=True)  # train() gets its run folder from Hydra
    features, targets = _problem()
    network = _network()
    early_stopping = keras.callbacks.EarlyStopping(monitor="loss", patience=2, restore_best_weights=True)
    backup = TrainingBackup(run_dir / "backup", early_stopping, backup_interval_s)
    stop = StopReason(early_stopping, backup, epochs)
    callbacks = [StopOnNonFiniteLoss(), early_stopping, HistoryCSV(run_dir / "history.csv")]
    if interrupt_at is not None:
        callbacks.append(_InterruptAt(interrupt_at))
    trainer = OmegaConf.create({"epochs": epochs, "batch_size": 16, "steps_per_execution": 1})
    opt = LBFGS(iterations_per_epoch=2, tolerance_grad=tolerance_grad) if optimizer == "lbfgs" else keras.optimizers.Adam(0.01)
    loss = loss or keras.losses.CategoricalCrossentropy()
    network = compiled(network, opt, loss, trainer, False, None)
    fit(network, opt, loss, features, targets, trainer, 0, [*callbacks, backup, stop])
    return network, backup, stop.reason


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_resumed_fit_ends_exactly_like_an_uninterrupted_one(tmp_path):
    straight, _, _ = _train(tmp_path / "straight", "adam", epochs=6)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "resumed", "adam", epochs=6, interrupt_at=3)
    # Epoch 4 (index 3) reached history.csv but not the backup: the resume redoes it, once.
    assert _history_epochs(tmp_path / "resumed") == [1, 2, 3, 4]
    assert json.loads((tmp_path / "resumed" / "backup" / "latest.json").read_text())["epoch"] == 3
    resumed, backup, _ = _train(tmp_path / "resumed", "adam", epochs=6)
    assert backup.resumed_from == 3 and backup.epochs_done == 6
    # Weights, optimizer state, shuffling and early stopping's best weights all restored.
    for a, b in zip(straight.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert _rows(tmp_path / "straight" / "history.csv") == _rows(tmp_path / "resumed" / "history.csv")
    assert _history_epochs(tmp_path / "resumed") == [1, 2, 3, 4, 5, 6]
    assert not (tmp_path / "resumed" / "backup").exists()


def test_backups_wait_for_their_interval_and_a_run_killed_before_the_first_starts_over(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, "adam", epochs=6, interrupt_at=3, backup_interval_s=3600)
    assert not (tmp_path / "backup" / "latest.json").exists()
    _, backup, _ = _train(tmp_path, "adam", epochs=6, backup_interval_s=3600)
    assert backup.resumed_from is None and backup.epochs_done == 6


def test_lbfgs_resumes_from_the_backed_up_epoch(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, "lbfgs", epochs=5, interrupt_at=2)
    _, backup, _ = _train(tmp_path, "lbfgs", epochs=5)
    assert backup.resumed_from == 2
    # L-BFGS may stop early once converged; what ran continues the earlier epochs.
    epochs = [int(row["epoch"]) for row in _rows(tmp_path / "history.csv")]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) > 2


def test_the_stop_reason_says_why_training_ended(tmp_path):
    # Adam on a loss that keeps falling: every epoch runs, and the last is the best.
    assert _train(tmp_path / "all", "adam", epochs=4)[2] == "all 4 epochs ran; the last epoch was the best"
    # A loss that is always 0 never improves on epoch 1: patience (2) runs out at epoch 3.
    assert _train(tmp_path / "flat", "adam", epochs=10, loss=lambda y_true, y_pred: 0.0 * keras.ops.mean(y_pred))[2] == (
        "early stop at epoch 3: loss did not improve for 2 epochs; best epoch 1 restored"
    )
    # L-BFGS's own stopping rule: every gradient entry is below tolerance_grad from the start.
    assert _train(tmp_path / "lbfgs", "lbfgs", epochs=10, tolerance_grad=100.0)[2] == (
        "L-BFGS converged at epoch 1; the last epoch was the best"
    )
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "resumed", "adam", epochs=6, interrupt_at=3)
    assert _train(tmp_path / "resumed", "adam", epochs=6)[2] == (
        "resumed after epoch 3; all 6 epochs ran; the last epoch was the best"
    )


@pytest.mark.parametrize("change", ["layers", "optimizer"])
def test_a_backup_from_another_model_is_refused_in_one_line(tmp_path, change):
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, "adam", epochs=4, interrupt_at=1)
    features, targets = _problem()
    if change == "layers":
        other, optimizer = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")]), "adam"
    else:
        other, optimizer = _network(), keras.optimizers.SGD(momentum=0.9)
    early_stopping = keras.callbacks.EarlyStopping(monitor="loss")
    trainer = OmegaConf.create({"epochs": 4, "batch_size": 16, "steps_per_execution": 1})
    with pytest.raises(ConfigError, match="does not fit this model.*delete") as raised:
        other = compiled(other, optimizer, "categorical_crossentropy", trainer, False, None)
        fit(other, optimizer, "categorical_crossentropy", features, targets, trainer, 0,
            [early_stopping, TrainingBackup(tmp_path / "backup", early_stopping, 0)])
    assert "\n" not in str(raised.value)


# --- a non-finite loss -------------------------------------------------------------------------


def _nan_loss(y_true, y_pred):
    return keras.ops.mean(y_pred) * np.nan


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_nan_loss_stops_at_the_first_epoch_and_is_not_backed_up(tmp_path, optimizer):
    with pytest.raises(NonFiniteLoss, match="at epoch 1"):
        _train(tmp_path, optimizer, epochs=5, loss=_nan_loss)
    assert not (tmp_path / "backup" / "latest.json").exists()


# --- files stay whole --------------------------------------------------------------------------


class _BrokenSave:
    """A model whose save writes half a file, then fails (a full disk, a signal)."""

    def save(self, path):
        Path(path).write_bytes(b"half")
        raise KeyboardInterrupt


def test_an_interrupted_model_save_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt):
        save_model(_BrokenSave(), target)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


# --- rows shared between train and dev/test ----------------------------------------------------


def test_rows_shared_with_train_are_counted_and_warned_once(tmp_path, caplog):
    train = Split(texts=["a b", "c d", "e f"], labels=["x", "y", "x"], source="train.tsv")
    dev = Split(texts=["g h", "c d  "], labels=["x", "y"], source="dev.tsv")  # same text after stripping
    test = Split(texts=["a b", " e f", "a b", "i j"], labels=["x", "x", "x", "y"], source="test.tsv")
    for split, name in ((train, "train"), (dev, "dev"), (test, "test")):
        rows = [{"text": text, "label": label} for text, label in zip(split.texts, split.labels)]
        write_tsv(tmp_path / f"{name}.tsv", rows)
    files = [tmp_path / f"{name}.tsv" for name in ("train", "dev", "test")]
    with caplog.at_level(logging.WARNING, logger="kmexp.data.splits"):
        splits = make_splits(train, dev, test, files)
    assert splits.info["overlap"] == {"train_dev": 1, "train_test": 3}
    warnings = [r.getMessage() for r in caplog.records if "same text" in r.getMessage()]
    assert len(warnings) == 2
    assert "3 of 4 rows of test.tsv" in warnings[1] and "train.tsv" in warnings[1]
    assert set(splits.info["files"]) == {str(path) for path in files}


def test_a_signal_during_training_stops_at_the_next_check_and_a_second_one_at_once():
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    # Training checks the pending stop after each batch: the signal itself raises nothing.
    with pytest.raises(KeyboardInterrupt), stop_at_batch_ends() as pending:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler has run: nothing raised yet
        assert pending.signum == signal.SIGINT
        pending.raise_if_pending()
    # A stop still pending when training ends is raised there, as the signal's own exception.
    with pytest.raises(Terminated), stop_at_batch_ends():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
    # Asked twice: the second signal raises where the process is.
    with pytest.raises(KeyboardInterrupt), stop_at_batch_ends():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
        pytest.fail("the second signal did not stop the block")
    # The process's own handlers are back afterwards.
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
