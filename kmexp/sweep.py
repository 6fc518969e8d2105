"""Multirun sweeps: progress lines, failed jobs that don't stop the sweep, resume, and the end-of-sweep report.

A sweep is Hydra's multirun. kmexp adds, through ``SweepCallback`` (a Hydra
callback registered in ``conf/config.yaml``):

- ``on_multirun_start``: ``sweep.json`` in the sweep folder, with the number of
  jobs, so that each job's progress line can say ``i/N``, and the command-line
  arguments, so that ``resume=SWEEP_DIR`` with other arguments is refused before
  any job starts;
- ``on_job_start`` (single runs too): secrets redacted from the config files
  Hydra has just saved (``.hydra/*.yaml``, and a sweep's ``multirun.yaml``),
  see ``kmexp.secrets``;
- ``on_job_end``: one line per finished job: ``i/N``, its overrides, status,
  objective and seconds, read back from the job's ``metrics.json``;
- ``on_multirun_end``: the comparison report (``kmexp.report``), then a
  non-zero exit naming the failed jobs, if any.

A failed job never stops the sweep: the entry point records it (``metrics.json``
says ``status: failed`` and why) and returns None to the sweeper (optuna marks the trial FAIL).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from kmexp import compat
from kmexp.runs import (
    HTML_FILE,
    MULTIRUN_FILE,
    SWEEP_FILE,
    RecordError,
    RunRecord,
    experiment_overrides,
    job_dirs,
    override_values,
    read_json,
    saved_overrides,
    write_json,
)
from kmexp.secrets import Secrets

log = logging.getLogger("kmexp.sweep")


def sweep_group(sweep_dir: Path) -> str:
    """A sweep's id: its folder's parent and name (``2026-11-27_10-31-02-123456``), unique per sweep."""
    sweep_dir = Path(sweep_dir)
    return f"{sweep_dir.parent.name}_{sweep_dir.name}" if sweep_dir.parent.name else sweep_dir.name


def count_jobs(sweep_params: dict, arguments: list[str]) -> int | None:
    """How many jobs the basic sweeper makes of these sweeper params and command-line overrides."""
    try:
        return compat.count_grid_jobs([*(f"{k}={v}" for k, v in sweep_params.items()), *arguments])
    except Exception:  # e.g. glob() sweeps, which need the config loader: the count is only for display
        return None


def resume_mismatch(resume: str, started: list[str], now: list[str]) -> str | None:
    """Why ``resume=DIR`` cannot go on, in one line: the arguments that differ from those the sweep was
    started with (``sweep.json``); None when they are the same. ``resume`` itself is left out.

    A job is kept when its folder holds a completed run of the same overrides, so a changed
    sweep would rerun, and overwrite, the finished jobs whose number now means another job.
    """
    before, after = override_values(experiment_overrides(started)), override_values(experiment_overrides(now))
    keys = [key for key in dict.fromkeys([*before, *after]) if before.get(key) != after.get(key)]
    if not keys:
        return None
    was = " ".join(f"{key}={before[key]}" if key in before else f"no {key}" for key in keys)
    has = " ".join(f"{key}={after[key]}" if key in after else f"no {key}" for key in keys)
    changes = [(key, change) for key in keys if (change := value_change(key, before.get(key), after.get(key)))]
    detail = "; ".join(change if len(keys) == 1 else f"{key}: {change}" for key, change in changes)
    return (
        f"resume={resume}: the sweep was started with {was}; this command has {has}"
        f"{f' ({detail})' if detail else ''}; rerun with the original arguments or a new folder"
    )


def value_change(key: str, before: str | None, after: str | None) -> str:
    """How a swept key's values changed (``added de, dropped fr``); "" when it is not a sweep on both sides."""
    if before is None or after is None:
        return ""
    old, new = sweep_values(key, before), sweep_values(key, after)
    if len(old) < 2 and len(new) < 2:
        return ""
    added, dropped = [v for v in new if v not in old], [v for v in old if v not in new]
    parts = [*([f"added {', '.join(added)}"] if added else []), *([f"dropped {', '.join(dropped)}"] if dropped else [])]
    return ", ".join(parts) or "the same values in another order, which numbers the jobs differently"


def sweep_values(key: str, value: str) -> list[str]:
    """The values Hydra sweeps ``key=value`` over (``en,fr`` -> ``[en, fr]``); ``[value]`` for one value."""
    try:
        (parsed,) = OverridesParser.create().parse_overrides([f"{key}={value}"])
    except HydraException:
        return [value]
    if parsed.is_sweep_override() and not parsed.is_interval_sweep():
        return [str(v) for v in parsed.sweep_string_iterator()]
    return [value]


@dataclass(frozen=True)
class JobLine:
    """One finished job, as the sweep's progress line shows it."""

    number: int
    total: int | None
    overrides: list[str]
    status: str
    objective: float | None
    seconds: float | None
    note: str = ""

    def __str__(self) -> str:
        total = "?" if self.total is None else self.total
        objective = "-" if self.objective is None else f"{self.objective:.4f}"
        seconds = "-" if self.seconds is None else f"{self.seconds:.1f}s"
        status = f"{self.status} ({self.note})" if self.note else self.status
        return f"[kmexp sweep] {self.number + 1}/{total}  {' '.join(self.overrides) or '(no overrides)'}  {status}  objective {objective}  {seconds}"


def job_line(run_dir: Path, number: int, total: int | None, overrides: list[str]) -> JobLine:
    record = RunRecord.find(run_dir)
    if record is None:
        return JobLine(number, total, experiment_overrides(overrides), "failed", None, None)
    return JobLine(
        number=number,
        total=total,
        overrides=experiment_overrides(overrides),
        status=record.status,
        objective=record.objective_value,
        seconds=record.seconds.get("total"),
        note="kept from the earlier sweep" if record.kept_on_resume else (record.error or ""),
    )


@dataclass(frozen=True)
class FailedJob:
    name: str
    overrides: list[str]
    error: str

    def __str__(self) -> str:
        return f"job {self.name} ({' '.join(self.overrides) or 'no overrides'}): {self.error}"


def failed_jobs(sweep_dir: Path) -> list[FailedJob]:
    """Jobs of a sweep that did not complete, from their folders' ``metrics.json``."""
    failed = []
    for job_dir in job_dirs(sweep_dir):
        try:
            record = RunRecord.read(job_dir)
        except RecordError as err:
            failed.append(FailedJob(job_dir.name, experiment_overrides(saved_overrides(job_dir)), str(err)))
            continue
        if not record.completed:
            error = record.error or f"status {record.status}"
            failed.append(FailedJob(job_dir.name, experiment_overrides(record.overrides), error))
    return failed


class SweepCallback(Callback):
    """kmexp's Hydra callback: progress lines during a sweep, the report and the exit status after it."""

    def __init__(self, report: bool):
        self.report = report  # write results.csv, report.md, report.html and plots at the end of every sweep

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        arguments = list(config.hydra.overrides.task)
        params = config.hydra.sweeper.get("params")
        params = {} if params is None else OmegaConf.to_container(params, resolve=True)
        # Search sweepers (optuna) say how many trials they run; a grid count of their
        # choice(...) params would be the size of the search space instead.
        total = config.hydra.sweeper.get("n_trials")
        if total is None:
            total = count_jobs(params, arguments)
        arguments = Secrets.from_environ().data(arguments)
        if config.get("resume") is not None:
            self._refuse_other_arguments(str(config.resume), sweep_dir, arguments)
        write_json(sweep_dir / SWEEP_FILE, {"group": sweep_group(sweep_dir), "jobs": total, "overrides": arguments})

    @staticmethod
    def _refuse_other_arguments(resume: str, sweep_dir: Path, arguments: list[str]) -> None:
        """Stop a resume whose arguments differ from the sweep's, before any job starts or any file changes."""
        started = (read_json(sweep_dir / SWEEP_FILE) or {}).get("overrides")
        if not isinstance(started, list):  # a new folder, or one no kmexp sweep started: nothing to keep
            return
        mismatch = resume_mismatch(resume, [str(item) for item in started], arguments)
        if mismatch is not None:
            print(f"kmexp: error: {Secrets.from_environ().text(mismatch)}", file=sys.stderr, flush=True)
            # A BaseException: Hydra turns a callback's Exception into a warning, and the sweep would go on.
            raise SystemExit(1)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Redact the config files that Hydra saved for this job (and the sweep) just before calling it."""
        secrets = Secrets.from_environ()
        if config.hydra.output_subdir is not None:
            secrets.hydra_files(Path(config.hydra.runtime.output_dir) / config.hydra.output_subdir)
        if config.hydra.mode == RunMode.MULTIRUN:
            # The sweeper writes multirun.yaml after on_multirun_start, before its first job.
            secrets.yaml_file(Path(config.hydra.sweep.dir) / MULTIRUN_FILE)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        sweep = read_json(Path(config.hydra.sweep.dir) / SWEEP_FILE) or {}
        line = job_line(
            Path(config.hydra.runtime.output_dir), config.hydra.job.num, sweep.get("jobs"), list(config.hydra.overrides.task)
        )
        print(Secrets.from_environ().text(str(line)), flush=True)
        # Hydra's launchers keep every job's JobReturn until the sweep ends, each with two copies of the
        # job's config (tens of thousands of objects): the garbage collection at each job's start walked
        # through all of them, longer at each job (docs/benchmarks.md). The sweepers
        # read only the return value, status and overrides; the config is saved in the job's .hydra folder.
        # Callbacks registered after this one see the whole JobReturn: Hydra calls on_job_end in reverse.
        job_return.cfg = None
        job_return.hydra_cfg = None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if self.report:
            self._write_report(sweep_dir)
        failed = failed_jobs(sweep_dir)
        total = len(job_dirs(sweep_dir))
        if not failed:
            print(f"[kmexp sweep] all {total} jobs completed: {sweep_dir}", flush=True)
            return
        lines = [f"kmexp: error: {len(failed)} of {total} jobs failed in {sweep_dir}:", *(f"  {job}" for job in failed)]
        print(Secrets.from_environ().text("\n".join(lines)), file=sys.stderr, flush=True)
        raise SystemExit(1)  # a BaseException: Hydra's callback runner passes it on, and the sweep exits non-zero

    @staticmethod
    def _write_report(sweep_dir: Path) -> None:
        try:
            from kmexp.report import write_report

            report = write_report(sweep_dir)
        except Exception as err:  # the jobs' own results are already safe on disk; say why the report is missing
            message = f"kmexp: error: the sweep report could not be written: {type(err).__name__}: {err}"
            print(Secrets.from_environ().text(message), file=sys.stderr)
            return
        print(f"[kmexp sweep] report: {sweep_dir / HTML_FILE} ({len(report.rows)} jobs)", flush=True)

