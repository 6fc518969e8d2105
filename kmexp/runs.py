"""The run folder: what a run writes, under which names, and how it is read back.

One module owns the layout, so no other module spells a file name or walks
``metrics.json`` by hand::

    <run>/metrics.json       RunRecord: status, scores, provenance (written whole, by rename; first when the run starts)
    <run>/model.keras        the end-to-end model: raw strings in, probabilities out
    <run>/history.csv        one row per epoch, epochs counted from 1
    <run>/backup/            the training state while a run trains (resume); removed at the end
    <run>/.hydra/            Hydra's saved config, hydra config and overrides
    <run>/report.md, report.html, report_plots/   the run's report, when ``kmexp-report RUN_DIR`` writes it
    <run>/.kmexp.lock        while a run runs: its pid (RunLock); removed at the end

A sweep folder holds one run folder per job (``0/``, ``1/``, ...), ``sweep.json``, and
the report: ``results.csv``, ``report.md``, ``report.html`` and ``report_plots/``.
``RunRecord`` reads every ``metrics.json`` written since kmexp 0.1: keys it does not
know are kept in ``extra`` and written back unchanged.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import fcntl
import json
import math
import os
import socket
import stat
import tempfile
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmexp.errors import StorageError

METRICS_FILE = "metrics.json"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
# The training state at epoch ends (every trainer.backup_interval_s), so that a rerun into the same
# run folder resumes; removed once training ends.
BACKUP_DIR = "backup"
SWEEP_FILE = "sweep.json"  # in a sweep folder: its group, number of jobs and command-line overrides
# The report (kmexp.report), in the sweep folder; a run's own report (no results.csv) in the run folder.
RESULTS_FILE = "results.csv"
MARKDOWN_FILE = "report.md"
HTML_FILE = "report.html"
PLOTS_DIR = "report_plots"
HYDRA_DIR = ".hydra"
OVERRIDES_FILE = "overrides.yaml"  # in HYDRA_DIR: the job's command-line overrides, as typed
HYDRA_FILES = ("config.yaml", "hydra.yaml", OVERRIDES_FILE)  # what Hydra saves in HYDRA_DIR
MULTIRUN_FILE = "multirun.yaml"  # in a sweep folder: the sweep's whole config, as Hydra saved it
# Overrides that steer the sweep itself rather than the experiment: left out of a job's recorded overrides.
CONTROL_KEYS = ("resume",)
# Held while a run runs in the folder (RunLock): its pid, then room kept for its last metrics.json.
LOCK_FILE = ".kmexp.lock"
# Room the lock file keeps while a run runs, given back to write metrics.json when the disk is full. A failed
# run's record is a few KB; a completed one with the scores of all 205 SIB-200 languages about 32 KB.
RESERVED_BYTES = 256 * 1024
# The errors of a full disk, what they mean and what to do.
DISK_FULL = {
    errno.ENOSPC: "no space left on the device; free some space, or pick a folder on another disk",
    errno.EDQUOT: "disk quota exceeded; free some space, or pick a folder on another disk",
    errno.EFBIG: "larger than a file may be here (ulimit -f, or the file system's limit); raise the limit, "
    "or pick a folder on another disk",
}


# --- writing files whole ------------------------------------------------------


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Create or replace ``path`` whole: ``write`` fills a temporary file beside it, then a rename.

    Readers (a report, a resumed run, another job) never see half a file, and an
    interrupted write leaves the old file, or none. The temporary name keeps the
    suffix, because some writers (Keras' ``model.save``) pick the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
        os.close(fd)
        tmp = Path(tmp)
        try:
            write(tmp)
            os.chmod(tmp, 0o644)  # mkstemp makes the file private; results are meant to be shared
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk leaves no half file behind, and its space is free again
            raise


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a full disk (a quota, a file size limit) while writing ``path`` into a StorageError naming ``path``."""
    try:
        yield
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        raise _disk_full(path, err) from err


def _disk_full(path: Path, err: OSError) -> StorageError:
    return StorageError(
        f"cannot write {path} ([Errno {err.errno}] {os.strerror(err.errno)}): {DISK_FULL[err.errno]}"
    )


def write_text(path: Path, text: str) -> None:
    """Replace a text file whole (UTF-8)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, payload: Any) -> None:
    """Replace a JSON file whole (indented, UTF-8; values JSON cannot hold are written as strings)."""
    write_text(path, json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file's content, or None if it is missing or unreadable (a run may have died before writing it)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def save_model(model, path: Path) -> None:
    """Save a Keras model whole (``model.save`` into a temporary ``.keras`` file, then a rename).

    The weights are written from the variables' own memory, not from copies: the
    same file, without filling memory as large as the weights first (a pretrained
    backbone's 1.1 GB).
    """
    from kmexp import compat

    with compat.weights_written_in_place():
        atomic_write(path, model.save)


# --- metrics.json ---------------------------------------------------------------


@dataclass
class Objective:
    """The score model selection maximizes: the first selected metric, on dev."""

    name: str
    split: str
    value: float | None


@dataclass
class RunRecord:
    """One run's ``metrics.json``.

    Written when a run starts (``status: running``, with its ``pid`` and ``host``)
    and again at its end, completed or not (``status``: completed, failed,
    interrupted; ``error`` says why it did not complete). A run killed outright
    (SIGKILL) cannot write its end: its record stays ``running``, and ``read``
    gives it as interrupted once its process is gone (``killed``).
    Scores (``dev``, ``test``) are classification reports: each selected metric,
    ``per_class`` and ``confusion_matrix``; ``eval`` holds each language tested on
    its own (``language=multi``, ``eval_languages``), by SIB-200 code.
    """

    status: str = "running"
    language: dict = field(default_factory=dict)  # the resolved language preset (tag, code, script, ...)
    seed: int | None = None
    overrides: list[str] = field(default_factory=list)  # the job's command-line overrides (secrets redacted)
    choices: dict[str, str | None] = field(default_factory=dict)  # the option picked in each config group (None: none)
    group: str | None = None  # the sweep's id; None for a single run
    versions: dict = field(default_factory=dict)
    git: dict | None = None
    pid: int | None = None
    host: str | None = None
    objective: Objective | None = None
    labels: list[str] = field(default_factory=list)  # in model-output order
    dev: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)
    eval: dict = field(default_factory=dict)
    epochs_run: int | None = None  # counted from epoch 1, a resumed run's earlier epochs included
    resumed_from_epoch: int | None = None
    best_epoch: int | None = None  # from 1; the epoch whose weights were restored and saved
    stop_reason: str | None = None  # why training stopped, as the run's end says it (None: the run failed)
    data: dict = field(default_factory=dict)  # provenance: files and their sha256, sizes, overlap
    seconds: dict = field(default_factory=dict)  # total, and its phases: prepare, train, save, evaluate
    device: dict | None = None
    embedding_cache: dict | None = None  # a frozen pretrained encoder's cache: dir, hits, misses (splits)
    # The job's W&B run: id, mode, dir (its files) and, once an offline run started, sync (the folder
    # `wandb sync` takes); None without W&B.
    wandb: dict | None = None
    error: str | None = None  # why the run did not complete
    kept_on_resume: bool = False  # a resumed sweep kept this completed job instead of rerunning it
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept as they were

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def killed(self) -> bool:
        """A ``running`` record whose process is gone: it ended without recording its end (SIGKILL, out of memory).

        Only a process of this machine can be looked up: a record from another host reads
        as running. A run in this very process has written its end before anyone reads it,
        so a ``running`` record with this process's pid is an earlier process's.
        """
        return (
            self.status == "running" and self.pid is not None and self.host == socket.gethostname()
            and not process_alive(self.pid)
        )

    @property
    def objective_value(self) -> float | None:
        """The objective of a completed run; None otherwise."""
        return self.objective.value if self.completed and self.objective is not None else None

    def score(self, split: str, metric: str) -> float | None:
        """A scalar metric on ``dev`` or ``test``; None when the run did not record it."""
        value = {"dev": self.dev, "test": self.test}[split].get(metric)
        return None if isinstance(value, bool) or not isinstance(value, (int, float)) else float(value)

    def scalars(self, split: str) -> dict[str, float]:
        """The scalar metrics of ``dev`` or ``test``, in selection order."""
        return {name: value for name, value in {"dev": self.dev, "test": self.test}[split].items() if isinstance(value, float)}

    def to_json(self) -> dict:
        """The JSON object, in field order; ``stop_reason``, ``error``, ``embedding_cache``, ``wandb`` and
        ``kept_on_resume`` only when set (a record written before a key existed reads back unchanged)."""
        payload = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        payload["objective"] = None if self.objective is None else dataclasses.asdict(self.objective)
        if self.objective is None:
            del payload["objective"]
        for optional in ("stop_reason", "error", "embedding_cache", "wandb"):
            if payload[optional] is None:
                del payload[optional]
        if not self.kept_on_resume:
            del payload["kept_on_resume"]
        return {**payload, **self.extra}

    @classmethod
    def from_json(cls, payload: dict) -> RunRecord:
        """A record from a ``metrics.json`` object; keys it does not know go to ``extra``."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {key: value for key, value in payload.items() if key in known}
        objective = values.pop("objective", None)
        if isinstance(objective, dict):
            values["objective"] = Objective(
                name=str(objective.get("name", "")), split=str(objective.get("split", "dev")), value=objective.get("value")
            )
        return cls(**values, extra={key: value for key, value in payload.items() if key not in known})

    def write(self, run_dir: Path) -> None:
        """Write ``metrics.json``; on a full disk, with the room this process's RunLock kept for it."""
        path = Path(run_dir) / METRICS_FILE
        try:
            write_json(path, self.to_json())
        except StorageError:
            # The record of a run that failed because the disk is full must still be written: the lock
            # file gives back the room it kept, and the write is tried once more.
            if not _free_reserve(Path(run_dir) / LOCK_FILE):
                raise
            write_json(path, self.to_json())

    @classmethod
    def read(cls, run_dir: Path) -> RunRecord:
        """``run_dir``'s record, a killed run's as interrupted. Raises RecordError, saying why, when it is missing or unreadable."""
        path = Path(run_dir) / METRICS_FILE
        if not path.is_file():
            raise RecordError(f"no {METRICS_FILE}")
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise RecordError(f"unreadable {METRICS_FILE}: {err}") from None
        if not isinstance(payload, dict):
            raise RecordError(f"unreadable {METRICS_FILE}: not a JSON object")
        try:
            record = cls.from_json(payload)
        except TypeError as err:
            raise RecordError(f"unreadable {METRICS_FILE}: {err}") from None
        if record.killed:
            # The file keeps saying "running" (nothing is written here): readers see what happened.
            error = f"killed: process {record.pid} on {record.host} ended without recording the end of the run"
            record = dataclasses.replace(record, status="interrupted", error=record.error or error)
        return record

    @classmethod
    def find(cls, run_dir: Path) -> RunRecord | None:
        """``run_dir``'s record, or None when it has none (or an unreadable one)."""
        try:
            return cls.read(run_dir)
        except RecordError:
            return None


class RecordError(ValueError):
    """A run folder's ``metrics.json`` is missing or unreadable."""


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine still runs; this process's own pid counts as gone (see ``killed``).

    A killed process its parent has not yet waited for (a zombie) is gone too. A pid
    that the system has since given to another process reads as alive.
    """
    if pid <= 0 or pid == os.getpid():
        return False  # 0 and negative pids name process groups, not a process
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OSError:
        return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Linux: whether ``pid`` has ended but not yet been waited for (state ``Z`` in ``/proc/<pid>/stat``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False  # no /proc (macOS): os.kill's answer stands
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


# --- one run at a time in a run folder -------------------------------------------


class RunLock:
    """A run folder claimed by one process: ``with RunLock(run_dir):``, or ``acquire()`` then ``release()``.

    The claim is an exclusive ``flock`` on ``LOCK_FILE``, which holds the pid for the
    message another run gets. The kernel drops a flock when its process dies, however
    it dies (``kill -9`` included), so a lock file left behind by a dead run is simply
    taken over. ``release()`` removes the file; so does the end of the process, or the
    lock being garbage-collected, when a failure or an interrupt skips ``release()``.
    While held, the file also keeps ``RESERVED_BYTES`` of disk for ``metrics.json``
    (see ``RunRecord.write``).
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._release = None

    def acquire(self) -> RunLock:
        """Claim the folder (made if missing), or raise StorageError naming it and the pid that holds it."""
        if self._release is not None and self._release.alive:
            return self  # already held by this lock
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = self._locked_fd()
        self._release = weakref.finalize(self, _unlock, fd, self.path)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            os.posix_fallocate(fd, 0, RESERVED_BYTES)
        except OSError as err:
            if err.errno in DISK_FULL:
                self.release()
                raise _disk_full(self.path, err) from err
            # Any other error: a file system that cannot allocate ahead; the run goes on without the room.
        return self

    def release(self) -> None:
        """Give the folder up (and remove the lock file); a no-op when not held."""
        if self._release is not None:
            self._release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    def _locked_fd(self) -> int:
        """An open descriptor of the lock file, flocked by this process."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_holder(fd)
                os.close(fd)
                raise StorageError(
                    f"{self.run_dir}: this run folder is in use by another kmexp run "
                    f"(pid {'unknown' if holder is None else holder}, {LOCK_FILE}); "
                    "wait for it to end, or pick another folder"
                ) from None
            # The holder may have removed the file between our open and flock: lock the file now at the path.
            if _same_file(fd, self.path):
                return fd
            os.close(fd)


def _lock_holder(fd: int) -> int | None:
    """The pid a lock file names; None while its holder has not written it yet."""
    text = os.pread(fd, 32, 0).split(b"\0", 1)[0].strip()
    return int(text) if text.isdigit() else None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _unlock(fd: int, path: Path) -> None:
    # Removed while still locked, so that no other run locks a file that is about to vanish.
    if _same_file(fd, path):
        path.unlink(missing_ok=True)
    os.close(fd)


def _free_reserve(lock_path: Path) -> bool:
    """Give back the room this process's lock file keeps (its pid stays); False when there is none to give."""
    try:
        with open(lock_path, "rb") as f:
            head = f.read(32)
        size = lock_path.stat().st_size
    except OSError:
        return False
    pid = head.split(b"\0", 1)[0]
    if pid.strip() != str(os.getpid()).encode() or size <= len(pid):
        return False
    os.truncate(lock_path, len(pid))
    return True


def check_writable(folder: Path, key: str) -> None:
    """Refuse, in one line, a run or sweep folder this process cannot write in (or make).

    Checked with ``os.access``, as the kernel would decide: root may write in a
    ``chmod 555`` folder, nobody in a read-only file system. ``key`` is the
    setting that named the folder (``hydra.run.dir``, ``hydra.sweep.dir``).
    """
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or os.access(existing, os.W_OK | os.X_OK):
        return  # a file in the way: Hydra's own error names it
    where = "the folder" if existing == folder else f"{existing}, where it would be made,"
    raise StorageError(
        f"{key}={folder}: {where} is not writable ({_why_not_writable(existing)}); "
        "make it writable, or pick another folder"
    )


def _why_not_writable(folder: Path) -> str:
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        return "read-only file system"
    st = folder.stat()
    return f"permission denied: {stat.filemode(st.st_mode)}, owner uid {st.st_uid}, kmexp runs as uid {os.geteuid()}"


# --- job folders and overrides --------------------------------------------------


def is_run_dir(folder: Path) -> bool:
    """Whether ``folder`` is one run's folder (``metrics.json`` or Hydra's ``.hydra/overrides.yaml`` in it),
    rather than a sweep folder, whose runs are one level down."""
    folder = Path(folder)
    return (folder / METRICS_FILE).is_file() or (folder / HYDRA_DIR / OVERRIDES_FILE).is_file()


def job_dirs(sweep_dir: Path) -> list[Path]:
    """A sweep's job folders (those Hydra made: they hold ``.hydra/overrides.yaml``), in job-number order."""
    found = [p.parent.parent for p in Path(sweep_dir).glob(f"*/{HYDRA_DIR}/{OVERRIDES_FILE}")]
    return sorted(found, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def saved_overrides(job_dir: Path) -> list[str]:
    """A job's command-line overrides as Hydra saved them (``.hydra/overrides.yaml``), or [] if unreadable.

    Read as written: resolving would turn ``+note=${oc.env:MY_API_TOKEN}`` into the secret, or fail
    where the variable is not set.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        saved = OmegaConf.to_container(OmegaConf.load(Path(job_dir) / HYDRA_DIR / OVERRIDES_FILE), resolve=False)
    except (OSError, ValueError, OmegaConfBaseException):
        return []
    return [str(item) for item in saved] if isinstance(saved, list) else []


def experiment_overrides(overrides: list[str]) -> list[str]:
    """A job's overrides without the sweep-control ones (``resume=...``)."""
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in CONTROL_KEYS]


def override_values(overrides) -> dict[str, str]:
    """``["optimizer=sgd", "+x=1"]`` -> ``{"optimizer": "sgd", "x": "1"}`` (Hydra's ``+``/``~`` prefixes dropped)."""
    values = {}
    for item in overrides:
        key, _, value = str(item).partition("=")
        values[key.lstrip("+~")] = value
    return values


def completed_record(run_dir: Path, overrides: list[str]) -> RunRecord | None:
    """The record of an earlier, completed run of this same job in ``run_dir``, if there is one.

    Resuming keeps a job only when its folder holds a completed run with the same
    overrides: a folder from a different sweep at the same job number is rerun.
    """
    record = RunRecord.find(run_dir)
    if record is None or not record.completed:
        return None
    if experiment_overrides(record.overrides) != experiment_overrides(overrides):
        return None
    return record


def keep_completed(run_dir: Path, record: RunRecord) -> None:
    """Mark a completed run that a resumed sweep keeps instead of rerunning."""
    dataclasses.replace(record, kept_on_resume=True).write(run_dir)


def history_row(run_dir: Path, epoch: int | None) -> dict[str, float]:
    """One epoch's row of ``history.csv`` (epochs count from 1); empty when there is none."""
    columns = read_history(run_dir)
    epochs = columns.get("epoch", [])
    if epoch is None or float(epoch) not in epochs:
        return {}
    row = epochs.index(float(epoch))
    return {key: values[row] for key, values in columns.items()}


def read_history(run_dir: Path) -> dict[str, list[float]]:
    """The per-epoch columns of ``history.csv`` (NaN where a value is not a number); empty when there is none."""
    try:
        with open(Path(run_dir) / HISTORY_FILE, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return {}
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            columns.setdefault(key, []).append(number)
    return columns
