"""The command line: ``python -m kmexp [overrides]`` or ``kmexp [overrides]``.

The Hydra entry point composes the config, calls ``train`` and returns the
objective (the first selected metric, on dev), which sweepers maximize.

A run that fails ends with one line on stderr, ``kmexp: error: <what went
wrong>``, as its last line, and exit code 1, whatever raised: kmexp's own checks,
Hydra composing the config (an unknown key, group option or type), or training.
``HYDRA_FULL_ERROR=1`` (or ``hydra.verbose=true``) shows the traceback instead.
In a sweep (``-m``), a failed job is recorded in its ``metrics.json`` and the
sweep goes on; ``kmexp.sweep.SweepCallback`` reports the failures and exits
non-zero at the end.

One run at a time writes in a run folder (``kmexp.runs.RunLock``): a single run
claims its folder in ``RunFolderCallback``, before Hydra writes there; a sweep
job claims its job folder when it starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import difflib
import functools
import gc
import logging
import os
import shlex
import string
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kmexp import compat
from kmexp.config import register_configs
from kmexp.errors import KmexpError, StorageError, capped
from kmexp.paths import config_dir, group_options, is_option, option_names
from kmexp.provenance import versions
from kmexp.report.summary import end_lines, shown_path, summary_table
from kmexp.runs import RunLock, check_writable, completed_record, experiment_overrides, keep_completed
from kmexp.secrets import Secrets, redact_log_records
from kmexp.sweep import sweep_group
from kmexp.tf_logs import start_tensorflow
from kmexp.train import train
from kmexp.training.signals import interrupting_signal, interruption

log = logging.getLogger("kmexp")

FULL_ERROR = "HYDRA_FULL_ERROR"
HELP_FLAGS = ("--help", "-h")
# What `--version` names: (shown name, distribution).
VERSIONS = (("kmexp", "kmexp"), ("tensorflow", "tensorflow"), ("keras", "keras"), ("hydra", "hydra-core"))
# Groups that kmexp picks for itself (specialisations, Hydra's own): not listed in --help.
INTERNAL_GROUPS = ("hydra", "encoder_training", "language_encoder")
# An unknown option's closest options: at most this many, at least this similar (difflib's ratio).
MAX_SUGGESTIONS = 3
SUGGESTION_CUTOFF = 0.6


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def run(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    # Redacted here, so that metrics.json, W&B tags and progress lines never see a pasted secret.
    overrides = Secrets.from_environ().data(experiment_overrides(list(hydra_cfg.overrides.task)))
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return _locked_sweep_job(cfg, hydra_cfg, run_dir, overrides)
    try:
        record = train(cfg, run_dir, overrides, choices=_choices(hydra_cfg))
    except Exception as err:
        _log_to_file(error_line(err))  # the console shows it once: main's last line
        raise RunFailed(err, run_dir) from err
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (kmexp.training.signals.Terminated): train() recorded it
        raise RunFailed(stop, run_dir) from stop
    print(Secrets.from_environ().text(f"{summary_table(record)}\n{end_lines(record, run_dir)}"))
    return record.objective.value


def _log_to_file(line: str) -> None:
    """Write an error line into the run's log file (``kmexp.log``) only, not through Hydra's console handler."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (line,), None)  # redacted (kmexp.secrets)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)


def _locked_sweep_job(cfg: DictConfig, hydra_cfg: DictConfig, run_dir: Path, overrides: list[str]) -> float | None:
    """A sweep job in its claimed job folder; refused (None) while another run uses that folder."""
    lock = RunLock(run_dir)
    try:
        lock.acquire()
    except StorageError as err:  # the other run's files stay as they are: this job writes nothing
        log.error("job refused: %s", err)
        return None
    try:
        return _sweep_job(cfg, hydra_cfg, run_dir, overrides)
    finally:
        lock.release()
        _leave_nothing_behind()


def _sweep_job(cfg: DictConfig, hydra_cfg: DictConfig, run_dir: Path, overrides: list[str]) -> float | None:
    """One job of a sweep: its objective, or None when it failed (recorded, and the sweep goes on)."""
    if cfg.resume is not None:
        earlier = completed_record(run_dir, overrides)
        if earlier is not None:
            keep_completed(run_dir, earlier)
            return earlier.objective.value
    # A sweep runs many jobs in one process (basic launcher, a joblib worker, optuna): each starts from a
    # blank Keras state (layer-name counters, global settings), as a single run does, because the job
    # before reset it as it ended (_leave_nothing_behind). train() itself frees what TensorFlow would keep
    # of the last job (benchmarks/results/sweep_memory.md).
    start_tensorflow()  # TensorFlow loads here rather than with the CLI: this job is about to train anyway
    _freeze_process_objects()
    from kmexp.training.kept import process_networks

    try:
        # The jobs of this process share their compiled networks: a job whose shapes match an earlier
        # job's reuses its traced train step (kmexp.training.kept).
        record = train(
            cfg, run_dir, overrides, choices=_choices(hydra_cfg), group=sweep_group(Path(hydra_cfg.sweep.dir)),
            kept=process_networks(),
        )
    except Exception as err:  # noqa: BLE001 - any failure of one job is recorded; Ctrl-C still stops the sweep
        log.error("job failed: %s", error_line(err))
        # Not NaN: hydra-optuna-sweeper 1.3 tells optuna 2.10 a NaN trial FAILed *with* its value, which
        # optuna refuses, ending the search. A value that is not a number is marked FAIL cleanly.
        return None
    _freeze_what_the_first_job_kept()
    print(Secrets.from_environ().text(summary_table(record)))
    return record.objective.value


@functools.cache
def _freeze_process_objects() -> None:
    """Before a process's first job, freeze the objects that last as long as the process.

    TensorFlow's, Keras' and Hydra's modules (~10^6 objects) then stay out of each later job's
    garbage collection (docs/benchmarks.md). Only once (hence the cache): frozen objects are never
    collected, and a job's leftovers must stay collectable. Not ``gc.get_freeze_count() == 0`` as the
    test: it counts the frozen objects one by one, at every job.
    """
    gc.freeze()


@functools.cache
def _freeze_what_the_first_job_kept() -> None:
    """After a process's first job, freeze what it loaded and keeps, once its garbage is collected.

    The first job imports modules on first use (W&B, Keras' saving, TensorFlow's tracing
    machinery) and keeps its compiled network (``kmexp.training.kept``): without this, each later
    job's garbage collection walked through all of them (docs/benchmarks.md). Only after the first
    job, for the reason ``_freeze_process_objects`` gives.
    """
    gc.collect()
    gc.freeze()


def _leave_nothing_behind() -> None:
    """At a sweep job's end, free its objects and hand the heap pages they held back to the OS.

    Then the process holds only what it keeps for later jobs while Hydra composes the next job,
    the sweep writes its report, or a worker waits. Keras' session reset drops its global state
    (so the next job starts blank) and TensorFlow's cached kernels; its garbage collection frees
    the job's reference cycles (Keras layers and models hold some). TensorFlow's caches of
    constants, which hold every number the job turned into a tensor, are emptied next
    (``kmexp.compat.clear_tensorflow_caches``). ``malloc_trim`` is glibc's (elsewhere a no-op):
    glibc keeps freed memory for reuse, fragmented by each job's differently sized vocabularies
    and tensors (docs/benchmarks.md).
    """
    keras = sys.modules.get("keras")  # none yet when the jobs so far ended before TensorFlow loaded (resumed ones)
    if keras is not None:
        keras.backend.clear_session()  # with a full garbage collection
        compat.clear_tensorflow_caches()
    else:
        gc.collect()
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # the C library the process already runs on
    if trim is not None:
        trim(0)


def _choices(hydra_cfg: DictConfig) -> dict[str, str | None]:
    """The option picked in each of kmexp's config groups (Hydra's own groups left out); None where none is."""
    return {
        group: None if option is None else str(option)
        for group, option in hydra_cfg.runtime.choices.items()
        if not group.startswith("hydra/")
    }


class RunFolderCallback(Callback):
    """Checks the folder a run or sweep writes in, and claims a single run's folder, before Hydra writes there.

    Hydra opens ``kmexp.log`` and saves ``.hydra/`` in the run folder before the
    task function runs: a read-only folder would fail as "Unable to configure
    handler 'file'", and a second run into a busy folder would overwrite the first
    one's saved config. Registered in ``conf/config.yaml``, before ``SweepCallback``.
    Hydra turns a callback's ``Exception`` into a warning and goes on, so a refusal
    is raised as ``RunFailed``, which ``main`` prints as one line.
    """

    def __init__(self):
        self._lock: RunLock | None = None

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        run_dir = Path(config.hydra.run.dir)
        try:
            check_writable(run_dir, "hydra.run.dir")
            self._lock = RunLock(run_dir).acquire()
        except StorageError as err:
            raise RunFailed(err, run_dir) from None

    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        # Not called when the run fails or is interrupted: then the lock goes when the process ends.
        if self._lock is not None:
            self._lock.release()

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            check_writable(sweep_dir, "hydra.sweep.dir")
        except StorageError as err:
            raise RunFailed(err, sweep_dir) from None


class RunFailed(BaseException):
    """A single run's error or interruption, carried past Hydra to ``main`` with the run folder.

    Hydra catches a job's ``Exception`` and, before raising it again, writes
    "Error executing job with overrides: [...]" to stderr: noise, and the raw
    overrides, a pasted secret included. A ``BaseException`` passes through
    Hydra untouched, as ``sys.exit`` does.
    """

    def __init__(self, error: BaseException, run_dir: Path):
        super().__init__(error)
        self.error = error
        self.run_dir = run_dir


def main() -> None:
    if any(arg in HELP_FLAGS for arg in sys.argv[1:]):
        print(help_text())  # answered here: Hydra's own help composes every option of every group, seconds on 2 cores
        return
    if "--version" in sys.argv[1:]:
        print(version_text())
        return
    register_configs()
    redact_log_records(Secrets.from_environ())
    show_traceback = traceback_requested(os.environ, sys.argv[1:])
    try:
        with _hydra_passes_errors_on(), compat.one_composition_for_a_run():
            run()
    except RunFailed as failed:
        if isinstance(failed.error, KeyboardInterrupt):
            _exit_interrupted(failed.error, failed.run_dir)
        _exit_with(failed.error, show_traceback)
    except KeyboardInterrupt as stop:  # a sweep's: each job's metrics.json records it
        _exit_interrupted(stop, None)
    except Exception as err:  # raised by Hydra itself: composing the config, parsing an override
        _exit_with(err, show_traceback)


def help_text() -> str:
    """``--help``: the template of conf/hydra/help/kmexp.yaml, with the options of each group users pick."""
    help_cfg = OmegaConf.to_container(OmegaConf.load(config_dir() / "hydra" / "help" / "kmexp.yaml"), resolve=False)
    groups = sorted(p.name for p in config_dir().iterdir() if p.is_dir() and p.name not in INTERNAL_GROUPS)
    listing = "\n".join(f"  {group}: {', '.join(group_options(group))}" for group in groups)
    text = help_cfg["template"]
    for key in ("header", "footer"):  # as Hydra resolves them in its own help
        text = text.replace(f"${{hydra.help.{key}}}", help_cfg[key])
    return string.Template(text).safe_substitute(APP_CONFIG_GROUPS=listing)


def version_text() -> str:
    """``--version``: kmexp's, and those of the libraries that decide a run's numbers (read without importing them)."""
    found = versions()
    return " ".join(f"{name} {found.get(package) or 'not installed'}" for name, package in VERSIONS)


def _exit_with(err: Exception, show_traceback: bool) -> NoReturn:
    """Print the error as one line, last on stderr (what scripts and CI show), and exit 1."""
    secrets = Secrets.from_environ()
    if show_traceback:
        sys.stderr.write(secrets.text("".join(traceback.format_exception(err))))
    print(f"kmexp: error: {secrets.text(error_line(err))}", file=sys.stderr, flush=True)
    sys.exit(1)


def _exit_interrupted(stop: KeyboardInterrupt, run_dir: Path | None) -> NoReturn:
    """One line on what was stopped and how to go on; the shell's exit status for the signal (130, 143).

    A single run names its folder: a rerun into it resumes from its last backup.
    """
    folder = "the same hydra.run.dir" if run_dir is None else f"hydra.run.dir={shlex.quote(shown_path(run_dir))}"
    print(
        Secrets.from_environ().text(
            f"kmexp: {interruption(stop)}: metrics.json says status: interrupted; rerun with {folder} to resume"
        ),
        file=sys.stderr,
        flush=True,
    )
    sys.exit(128 + interrupting_signal(stop))


@contextlib.contextmanager
def _hydra_passes_errors_on() -> Iterator[None]:
    """Make Hydra raise its own errors instead of printing them.

    Hydra's ``run_and_report`` prints a failed composition (unknown key, group
    option or type, unparsable override) as several lines, sometimes with a
    traceback, then a hint to set HYDRA_FULL_ERROR, so the message is never the
    last line. With HYDRA_FULL_ERROR=1 it raises the error instead, and ``main``
    prints one line (and the traceback only when the user asked for it). The
    variable is put back afterwards.
    """
    saved = os.environ.get(FULL_ERROR)
    os.environ[FULL_ERROR] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(FULL_ERROR, None)
        else:
            os.environ[FULL_ERROR] = saved


def traceback_requested(environ: Mapping[str, str], arguments: Sequence[str]) -> bool:
    """Whether the user asked for the traceback: HYDRA_FULL_ERROR=1, or Hydra's debug logging (hydra.verbose)."""
    if environ.get(FULL_ERROR) == "1":
        return True
    verbose = [arg.split("=", 1)[1] for arg in arguments if arg.lstrip("+~").startswith("hydra.verbose=")]
    return any(value.strip().lower() not in ("false", "null", "[]", "") for value in verbose)


def error_line(err: BaseException) -> str:
    """What went wrong, in one line for the user to fix, of at most ``kmexp.errors.MAX_MESSAGE`` characters.

    Secrets are redacted before the line is cut: a cut through a secret would leave part of it.
    """
    return capped(Secrets.from_environ().text(_error_line(err)))


def _error_line(err: BaseException) -> str:
    if isinstance(err, KmexpError):
        return _flat(str(err))  # kmexp's messages already name the key or file, the value and what is allowed
    if isinstance(err, MissingConfigException):
        return _missing_config_line(err)
    if isinstance(err, OverrideParseException):
        return f"cannot parse the override {err.override!r}: {_lines(err.message)[0]}"
    if isinstance(err, HydraException):
        return _hydra_line(err)
    if isinstance(err, OmegaConfBaseException):
        return _omegaconf_line(err)
    if isinstance(err.__cause__, OSError) and str(err).startswith("Unable to configure handler"):
        # Hydra opening kmexp.log in a job folder it cannot write in (a read-only folder of a resumed sweep).
        return f"{err.__cause__.filename}: cannot open the log file ({err.__cause__.strerror}); make its folder writable"
    # Anything else (a NaN loss, a Keras or TensorFlow error, a bug): its type says where it came from.
    return f"{type(err).__name__}: {_lines(str(err))[0]} (set {FULL_ERROR}=1 for the traceback)"


def _missing_config_line(err: MissingConfigException) -> str:
    """An unknown group option: the closest options (``language=french``: did you mean fr (French)?), else all.

    Only the options users pick are named, never a group's shared parts (``_common``).
    """
    line = _lines(str(err))[0]
    options = [option for option in err.options or [] if is_option(option)]
    if len(options) == 0:
        return line
    group, _, value = (err.missing_cfg_file or "").rpartition("/")
    close = _closest_options(value, options, option_names(group))
    if len(close) > 0:
        return f"{line}; did you mean {' or '.join(close)}?"
    return f"{line}; available options: {', '.join(options)}"


def _closest_options(value: str, options: list[str], names: dict[str, str]) -> list[str]:
    """The options closest to ``value``, by their own spelling or by the name they give themselves (``French``).

    Case is ignored; a name matches by itself or by its first word (``Chinese (Simplified)``: chinese).
    """
    spellings: dict[str, list[str]] = {}
    for option in options:
        spellings.setdefault(option.lower(), []).append(option)
    for option, name in names.items():
        for spelling in (name.lower(), name.lower().split(" (")[0]):
            spellings.setdefault(spelling, []).append(f"{option} ({name.replace(' (', ', ').rstrip(')')})")
    matches = difflib.get_close_matches(value.lower(), list(spellings), n=MAX_SUGGESTIONS, cutoff=SUGGESTION_CUTOFF)
    return list(dict.fromkeys(shown for match in matches for shown in spellings[match]))[:MAX_SUGGESTIONS]


def _hydra_line(err: HydraException) -> str:
    """A composition error, with the OmegaConf error under it (``Key 'epoch' is not in struct``)."""
    lines = _lines(str(err))
    if isinstance(err.__cause__, OmegaConfBaseException):
        lines[0] = f"{lines[0].rstrip('.')}: {_lines(str(err.__cause__))[0]}"
    return "; ".join(lines)


def _omegaconf_line(err: OmegaConfBaseException) -> str:
    """An OmegaConf error names its key on a later line (``full_key: ...``): put it first."""
    key = getattr(err, "full_key", None)
    line = _lines(str(err))[0]
    return line if key is None or key == "" else f"{key}: {line}"


def _lines(text: str) -> list[str]:
    """The non-blank lines of a message, stripped; one empty line for an empty message."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines if len(lines) > 0 else [""]


def _flat(text: str) -> str:
    return " ".join(_lines(text))
