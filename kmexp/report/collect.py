"""Read a sweep folder into one record per job.

Everything downstream (tables, plots, pages) works from these records, so the
rules about what a job *is* live here: a job is a folder Hydra made (it holds
``.hydra/overrides.yaml``, see ``kmexp.runs.job_dirs``), a job without a
readable ``metrics.json`` is a failed job, never a silently missing one, and a job
that ``sweep.json`` counts but that has no folder was never started: not run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kmexp.runs import (
    SWEEP_FILE,
    RecordError,
    RunRecord,
    experiment_overrides,
    job_dirs,
    override_values,
    read_history,
    read_json,
    saved_overrides,
)

# Override keys that say which locale a job is about: they make the rows of the report, not its settings.
LOCALE_KEYS = ("language", "language.code", "language.tag", "language.name")
SEED_KEY = "seed"


class NoJobsError(ValueError):
    """The folder is not a sweep: it holds no job folders."""


@dataclass(frozen=True)
class SweepReport:
    """What ``write_report`` found and wrote: one row per job (as in results.csv), the failures, the files."""

    sweep_dir: Path
    rows: list[dict]
    failed: list[tuple[str, str, str]]  # (job name, its overrides, error), for every job that did not complete
    paths: list[Path]
    swept_keys: list[str]
    objective: str | None
    planned: int | None = None  # the number of jobs sweep.json says the sweep makes; None when it does not say
    not_run: list[str] = field(default_factory=list)  # jobs counted in sweep.json that have no folder: never started

    @property
    def completed(self) -> int:
        return len(self.rows) - len(self.failed)


@dataclass(frozen=True)
class RunReport:
    """What ``write_run_report`` wrote for one run folder, and how the run ended."""

    run_dir: Path
    status: str
    error: str  # why the run did not complete ("" when it did)
    paths: list[Path]


@dataclass(frozen=True)
class Job:
    """One job of a sweep: its folder, overrides, and its record (an empty one when it has none)."""

    name: str
    folder: Path
    overrides: tuple[str, ...]
    record: RunRecord = field(default_factory=RunRecord)
    problem: str = ""  # why metrics.json could not be used, when it could not

    @property
    def status(self) -> str:
        return "failed" if self.problem else self.record.status

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def error(self) -> str:
        """One line saying why the job did not complete ("" when it did)."""
        if self.problem:
            return self.problem
        if self.completed:
            return ""
        return self.record.error or f"status {self.status}"

    @property
    def locale(self) -> str:
        """The language tag (``fr``; the SIB-200 code for ``language=generic``), read where it is recorded."""
        if self.record.language.get("tag"):
            return str(self.record.language["tag"])
        values = override_values(self.overrides)
        for key in LOCALE_KEYS:
            if key in values:
                return values[key]
        return str(self.record.choices.get("language", "?"))

    @property
    def code(self) -> str:
        """The SIB-200 code (``fra_Latn``): transfer scores in ``eval`` are keyed by it."""
        if self.record.language.get("code"):
            return str(self.record.language["code"])
        return self.locale

    def score(self, split: str, metric: str) -> float | None:
        """A metric on a split (``dev``/``test``), or None when the job did not record it."""
        return self.record.score(split, metric)

    def transfer(self, metric: str) -> dict[str, float]:
        """Test scores on other languages (the optional ``eval`` field), by SIB-200 code."""
        found = {}
        for code, scores in self.record.eval.items():
            value = as_float(scores.get(metric)) if isinstance(scores, dict) else None
            if value is not None:
                found[str(code)] = value
        return found

    def history(self) -> dict[str, list[float]]:
        """The per-epoch columns of ``history.csv``, empty when there is none."""
        return read_history(self.folder)


def as_float(value) -> float | None:
    """A finite-or-NaN float from a JSON/CSV value; None for anything that is not a number."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_job(folder: Path) -> Job:
    """One job folder as a ``Job``; an absent or unreadable ``metrics.json`` becomes the job's error."""
    try:
        record = RunRecord.read(folder)
    except RecordError as err:
        return Job(folder.name, folder, tuple(experiment_overrides(saved_overrides(folder))), problem=str(err))
    return Job(folder.name, folder, tuple(experiment_overrides(record.overrides)), record)


def collect_jobs(sweep_dir: Path) -> list[Job]:
    """Every job of a sweep, in job-number order. Raises NoJobsError for a folder that holds none."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise NoJobsError(f"{sweep_dir} is not a folder; expected a sweep folder (hydra.sweep.dir) with job folders 0/, 1/, ...")
    jobs = [read_job(folder) for folder in job_dirs(sweep_dir)]
    if not jobs:
        raise NoJobsError(
            f"{sweep_dir} holds no job folders; expected a sweep folder (hydra.sweep.dir) with job folders "
            "0/, 1/, ... each holding .hydra/overrides.yaml"
        )
    return jobs


def planned_jobs(sweep_dir: Path) -> int | None:
    """How many jobs the sweep was to run, as ``sweep.json`` recorded it at the start; None when unknown."""
    sweep = read_json(Path(sweep_dir) / SWEEP_FILE)
    jobs = sweep.get("jobs") if isinstance(sweep, dict) else None
    return jobs if isinstance(jobs, int) and not isinstance(jobs, bool) else None


def not_run(jobs: list[Job], planned: int | None) -> list[str]:
    """The jobs of a sweep that never started (a killed sweep): numbers below ``planned`` without a folder.

    At most ``planned - len(jobs)`` of them, so that job folders named otherwise than by
    number (another ``hydra.sweep.subdir``) are not all counted as missing.
    """
    if planned is None:
        return []
    names = {job.name for job in jobs}
    return [str(i) for i in range(planned) if str(i) not in names][: max(0, planned - len(jobs))]


NOT_RUN = "not run: the sweep stopped before this job started"


def not_run_line(missing: list[str], total: int, sweep_dir: Path) -> str:
    """The line that keeps a killed sweep's report from reading as complete (report.md and the console)."""
    return (
        f"Incomplete: {len(missing)} of {total} jobs not run (job {', '.join(missing)}); "
        f"rerunning the sweep with resume={sweep_dir} and its original arguments runs them."
    )


def swept_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value differs across jobs (absent counts as a value), in first-seen order."""
    return swept_override_keys([job.overrides for job in jobs])


def swept_override_keys(overrides_per_job: list) -> list[str]:
    """``swept_keys`` over plain override lists (one per job), for readers that hold no ``Job``."""
    per_job = [override_values(overrides) for overrides in overrides_per_job]
    keys: list[str] = []
    for values in per_job:
        keys.extend(key for key in values if key not in keys)
    return [key for key in keys if len({values.get(key) for values in per_job}) > 1]


def setting_of(job: Job, keys: list[str]) -> str:
    """What a job tried, apart from its locale and seed: ``optimizer=sgd``; ``default`` when nothing else is swept."""
    values = override_values(job.overrides)
    parts = [f"{key}={values[key]}" for key in keys if key in values and key not in LOCALE_KEYS and key != SEED_KEY]
    return " ".join(parts) or "default"


def objective_name(jobs: list[Job]) -> str | None:
    """The objective the completed jobs share (the most common, should a sweep mix them)."""
    names = Counter(
        job.record.objective.name for job in jobs if job.completed and job.record.objective is not None and job.record.objective.name
    )
    return names.most_common(1)[0][0] if names else None
