"""The run folder (kmexp.runs): RunRecord reads and writes metrics.json, job folders, atomic writes."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import small_disk

from kmexp.errors import StorageError
from kmexp.runs import (
    LOCK_FILE,
    METRICS_FILE,
    RunLock,
    RecordError,
    RunRecord,
    atomic_write,
    completed_record,
    job_dirs,
    history_row,
    keep_completed,
    process_alive,
    read_history,
    save_model,
    write_json,
)

# A metrics.json as kmexp 0.1.0 wrote it before RunRecord existed (a real `language=sw` run;
# the data paths, host and commit were made neutral).
OLD_RECORD = Path(__file__).parent / "data" / "metrics_0.1.0.json"


def test_a_metrics_json_written_before_runrecord_reads_and_writes_back_unchanged(tmp_path):
    payload = json.loads(OLD_RECORD.read_text(encoding="utf-8"))
    (tmp_path / METRICS_FILE).write_text(json.dumps(payload), encoding="utf-8")
    record = RunRecord.read(tmp_path)
    assert record.completed and record.language["code"] == "swh_Latn"
    assert record.objective.name == "accuracy" and record.objective_value == payload["objective"]["value"]
    assert record.score("test", "macro_f1") == payload["test"]["macro_f1"]
    assert list(record.scalars("dev")) == ["accuracy", "macro_f1"]
    assert record.labels == payload["labels"] and record.extra == {}
    record.write(tmp_path / "again")
    assert json.loads((tmp_path / "again" / METRICS_FILE).read_text(encoding="utf-8")) == payload


def test_keys_a_version_does_not_know_are_kept(tmp_path):
    write_json(tmp_path / METRICS_FILE, {"status": "failed", "error": "ValueError: x", "from_the_future": [1, 2]})
    record = RunRecord.read(tmp_path)
    assert record.status == "failed" and record.error == "ValueError: x" and record.objective_value is None
    assert record.to_json()["from_the_future"] == [1, 2]


@pytest.mark.parametrize(
    ("content", "says"), [(None, "no metrics.json"), ("{not json", "unreadable metrics.json"), ("[1]", "not a JSON object")]
)
def test_a_missing_or_broken_record_is_an_error_that_says_why(tmp_path, content, says):
    if content is not None:
        (tmp_path / METRICS_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(RecordError, match=says):
        RunRecord.read(tmp_path)
    assert RunRecord.find(tmp_path) is None


def test_a_resumed_sweep_keeps_only_a_completed_run_of_the_same_job(tmp_path):
    RunRecord(status="completed", overrides=["seed=1", "resume=/s"]).write(tmp_path)
    assert completed_record(tmp_path, ["seed=1"]) is not None  # resume=... steers the sweep, not the job
    assert completed_record(tmp_path, ["seed=2"]) is None
    keep_completed(tmp_path, completed_record(tmp_path, ["seed=1"]))
    assert RunRecord.read(tmp_path).kept_on_resume is True


def test_job_folders_come_in_job_number_order(tmp_path):
    for name in ("10", "2", "0", "notes"):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text("[]\n")
    (tmp_path / "3").mkdir()  # not a job: Hydra made no .hydra/ there
    assert [p.name for p in job_dirs(tmp_path)] == ["0", "2", "10", "notes"]


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / METRICS_FILE
    write_json(target, {"status": "completed"})

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text('{"status": "runn', encoding="utf-8")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_fail)
    assert json.loads(target.read_text()) == {"status": "completed"}
    assert os.listdir(tmp_path) == [METRICS_FILE]
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_history_columns_read_back_with_nan_for_gaps(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss,val_accuracy\n1,0.5,0.7\n2,NA,0.8\n", encoding="utf-8")
    columns = read_history(tmp_path)
    assert columns["epoch"] == [1.0, 2.0] and columns["val_accuracy"] == [0.7, 0.8]
    assert columns["loss"][0] == 0.5 and columns["loss"][1] != columns["loss"][1]  # NaN
    assert read_history(tmp_path / "nowhere") == {}


def test_history_row_is_one_epoch_counted_from_1(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss,val_loss\n1,0.5,0.7\n2,0.4,0.9\n", encoding="utf-8")
    assert history_row(tmp_path, 1) == {"epoch": 1.0, "loss": 0.5, "val_loss": 0.7}
    assert history_row(tmp_path, 3) == {} and history_row(tmp_path, None) == {}


def _running_record(folder: Path, pid: int, host: str) -> Path:
    folder.mkdir()
    write_json(folder / METRICS_FILE, {"status": "running", "pid": pid, "host": host})
    return folder


def test_a_running_record_whose_process_is_gone_reads_as_interrupted(tmp_path):
    here = socket.gethostname()
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    gone = int(ended.stdout)  # waited for: no process has this pid now (unless the system reused it since)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_alive(sleeper.pid) and not process_alive(os.getpid()) and not process_alive(0)
        in_progress = RunRecord.read(_running_record(tmp_path / "alive", sleeper.pid, here))
        assert in_progress.status == "running" and not in_progress.killed and in_progress.error is None
        sleeper.kill()
        sleeper.wait()
        assert RunRecord.read(tmp_path / "alive").status == "interrupted"  # the same record, once the process is gone
    finally:
        sleeper.kill()
        sleeper.wait()
    killed = RunRecord.read(_running_record(tmp_path / "killed", gone, here))
    assert killed.status == "interrupted" and not killed.completed
    assert killed.error == f"killed: process {gone} on {here} ended without recording the end of the run"
    # Reading changes nothing on disk: the file still says what the run last wrote.
    assert json.loads((tmp_path / "killed" / METRICS_FILE).read_text())["status"] == "running"
    # This process's own pid: an earlier process's record (a run here writes its end before anyone reads it).
    assert RunRecord.read(_running_record(tmp_path / "mine", os.getpid(), here)).status == "interrupted"
    # Another machine's process cannot be looked up: it stays running.
    assert RunRecord.read(_running_record(tmp_path / "elsewhere", gone, f"not-{here}")).status == "running"
    # A kept-on-resume decision never keeps it.
    assert completed_record(tmp_path / "killed", []) is None


def test_a_saved_model_is_a_keras_archive_that_loads_with_its_weights(tmp_path):
    import zipfile

    import keras
    import numpy as np

    from kmexp import load_model

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Dense(4)(inputs)))
    save_model(model, tmp_path / "model.keras")
    with zipfile.ZipFile(tmp_path / "model.keras") as archive:
        assert sorted(archive.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
    for loaded in (keras.models.load_model(tmp_path / "model.keras"), load_model(tmp_path / "model.keras")):
        for mine, theirs in zip(loaded.weights, model.weights, strict=True):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]  # no temporary left beside it


# --- one run at a time in a run folder ---------------------------------------------------------


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process that holds ``run_dir``'s RunLock until it is killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from kmexp.runs import RunLock; lock = RunLock(sys.argv[1]).acquire(); "
         "print('held', flush=True); time.sleep(600)", str(run_dir)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_busy_folder_is_refused_naming_the_pid_and_a_dead_holders_lock_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    holder = _hold_lock(run_dir)
    try:
        with pytest.raises(StorageError) as refused:
            RunLock(run_dir).acquire()
        assert str(refused.value) == (
            f"{run_dir}: this run folder is in use by another kmexp run (pid {holder.pid}, {LOCK_FILE}); "
            "wait for it to end, or pick another folder"
        )
    finally:
        holder.kill()  # SIGKILL: no clean-up, the lock file stays with its pid
        holder.wait()
    assert (run_dir / LOCK_FILE).read_bytes().startswith(f"{holder.pid}\n".encode())

    with RunLock(run_dir):  # the kernel dropped the dead process's flock: taken over
        assert (run_dir / LOCK_FILE).read_bytes().startswith(f"{os.getpid()}\n".encode())
        with pytest.raises(StorageError, match=f"pid {os.getpid()},"):
            RunLock(run_dir).acquire()  # one claim at a time, also within a process
    assert not (run_dir / LOCK_FILE).exists()
    with RunLock(run_dir):  # released: the folder can be claimed again (a rerun resumes there)
        pass


def _fill(disk: Path, name: str) -> None:
    """Write ``disk/name`` until the file system has no space left."""
    fd = os.open(disk / name, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as err:
        assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_on_a_full_disk_metrics_json_still_records_the_failure(tmp_path):
    with small_disk(tmp_path / "disk", "1m") as disk:
        run_dir = disk / "run"
        failed = RunRecord(status="failed", error="StorageError: cannot write model.keras")
        with RunLock(run_dir):
            _fill(disk, "filler")
            # The disk is full: a write fails in one line naming its file, and leaves no partial file.
            with pytest.raises(StorageError, match=re.escape(f"cannot write {run_dir / 'model.keras'} ([Errno 28]")):
                atomic_write(run_dir / "model.keras", lambda tmp: tmp.write_bytes(b"\0" * 100_000))
            assert sorted(os.listdir(run_dir)) == [LOCK_FILE]
            # metrics.json is written in the room the run's lock file kept.
            failed.write(run_dir)
            assert RunRecord.read(run_dir).error == failed.error
        assert sorted(os.listdir(run_dir)) == [METRICS_FILE]

        # Without a lock there is no kept room: the one line names metrics.json.
        _fill(disk, "more")
        with pytest.raises(StorageError, match=re.escape(f"cannot write {run_dir / METRICS_FILE} ([Errno 28]")):
            RunRecord(status="failed", error="x" * 8192).write(run_dir)
        assert RunRecord.read(run_dir).error == failed.error  # the earlier record stays whole
