"""The report's tables: ``results.csv`` (one row per job), and the comparison tables of report.md/report.html.

A ``Table`` holds plain strings; the renderers escape them for their format,
so nothing here needs to know about Markdown or HTML.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from kmexp.report.collect import Job, as_float, setting_of
from kmexp.runs import override_values
from kmexp.report.stats import Grid, SettingSummary, Stats, Transfer

MISSING = "–"


@dataclass(frozen=True)
class Table:
    """Header and rows of strings; ``marked`` cells (row, column) are the best setting of their row."""

    header: list[str]
    rows: list[list[str]]
    marked: frozenset[tuple[int, int]] = field(default_factory=frozenset)


def fmt(value: float | None) -> str:
    """A score as the tables show it: four decimals, a dash when there is none."""
    return MISSING if value is None or math.isnan(value) else f"{value:.4f}"


def fmt_stats(stats: Stats | None) -> str:
    """``mean ± std`` over seeds, or the single value."""
    if stats is None:
        return MISSING
    return fmt(stats.mean) if stats.n < 2 else f"{fmt(stats.mean)} ± {fmt(stats.std)}"


def fmt_interval(stats: Stats | None) -> str:
    return MISSING if stats is None or stats.n < 2 else f"[{fmt(stats.low)}, {fmt(stats.high)}]"


# --- results.csv -------------------------------------------------------------------------------------------


def metric_names(jobs: list[Job], split: str) -> list[str]:
    """Scalar metrics recorded on a split by any job (per-class scores and confusion matrices left out)."""
    names: list[str] = []
    for job in jobs:
        names.extend(name for name in job.record.scalars(split) if name not in names)
    return names


def result_rows(jobs: list[Job], keys: list[str], objective: str | None) -> list[dict]:
    """One flat row per job: what it ran (overrides, each swept key), how it ended, and its scores."""
    dev_names, test_names = metric_names(jobs, "dev"), metric_names(jobs, "test")
    transfer_codes = sorted({code for job in jobs for code in (job.transfer(objective) if objective else {})})
    rows = []
    for job in jobs:
        values = override_values(job.overrides)
        recorded = job.record.objective
        seconds = job.record.seconds
        transfer = job.transfer(objective) if objective else {}
        rows.append(
            {
                "job": job.name,
                "overrides": " ".join(job.overrides),
                **{key: values.get(key, "") for key in keys},
                "locale": job.locale,
                "setting": setting_of(job, keys),
                "status": job.status,
                "objective": "" if recorded is None else recorded.name,
                "objective_value": as_float(job.record.objective_value) if job.completed else None,
                **{f"dev_{name}": job.score("dev", name) for name in dev_names},
                **{f"test_{name}": job.score("test", name) for name in test_names},
                **{f"eval_{code}_{objective}": transfer.get(code) for code in transfer_codes},
                "epochs_run": job.record.epochs_run,
                "best_epoch": job.record.best_epoch,
                "seconds": as_float(seconds.get("total")),
                "train_seconds": as_float(seconds.get("train")),
                "error": job.error,
            }
        )
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    """results.csv; floats at full precision, empty cells where a job recorded nothing."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({key: "" if row.get(key) is None else row[key] for key in columns} for row in rows)
    return path


# --- comparison tables -------------------------------------------------------------------------------------


def scores_table(grid: Grid, split: str) -> Table:
    """Locales x settings on one split (mean ± std over seeds), each locale's best setting by dev marked."""
    cell = grid.test if split == "test" else grid.dev
    rows, marked = [], set()
    for i, locale in enumerate(grid.locales):
        best = grid.best_setting(locale)
        row = [locale]
        for j, setting in enumerate(grid.settings):
            row.append(fmt_stats(cell(locale, setting)))
            if setting == best:
                marked.add((i, j + 1))
        rows.append([*row, best or MISSING])
    return Table(["locale", *grid.settings, "best setting (by dev)"], rows, frozenset(marked))


def settings_table(summaries: list[SettingSummary], seeds: bool) -> Table:
    """Each setting across locales; with seeds swept, also its mean over locales described across seeds."""
    header = ["setting", "locales", "mean", "worst locale", "worst", "best locale", "best", "gap (best − worst)"]
    if seeds:
        header += ["seeds", "mean ± std over seeds", "95% interval"]
    rows = []
    for s in summaries:
        row = [s.setting, str(s.locales), fmt(s.mean), s.worst_locale, fmt(s.worst), s.best_locale, fmt(s.best), fmt(s.gap)]
        if seeds:
            n = str(s.over_seeds.n) if s.over_seeds else "0"
            row += [n, fmt_stats(s.over_seeds), fmt_interval(s.over_seeds)]
        rows.append(row)
    return Table(header, rows)


def seeds_table(grid: Grid) -> Table:
    """Every locale and setting over its seeds: n, mean, sample std and the t interval."""
    rows = []
    for setting in grid.settings:
        for locale in grid.locales:
            stats = grid.test(locale, setting)
            if stats is not None:
                rows.append([setting, locale, str(stats.n), fmt(stats.mean), fmt(stats.std), fmt_interval(stats)])
    return Table(["setting", "locale", "seeds", "mean", "std", "95% interval"], rows)


def transfer_table(transfer: Transfer) -> Table:
    rows = [[row, *(fmt(transfer.values.get((row, col))) for col in transfer.columns)] for row in transfer.rows]
    return Table(["trained on \\ tested on", *transfer.columns], rows)


def jobs_table(jobs: list[Job], keys: list[str], objective: str | None) -> Table:
    """Every job at a glance (results.csv has all columns)."""
    rows = []
    for job in jobs:
        seconds = job.record.seconds
        dev = job.score("dev", objective) if objective else None
        test = job.score("test", objective) if objective else None
        epochs = job.record.epochs_run
        rows.append(
            [
                job.name,
                job.locale,
                setting_of(job, keys),
                "" if job.record.seed is None else str(job.record.seed),
                job.status,
                fmt(dev),
                fmt(test),
                MISSING if epochs is None else str(epochs),
                fmt_seconds(as_float(seconds.get("total"))),
            ]
        )
    name = objective or "objective"
    return Table(["job", "locale", "setting", "seed", "status", f"dev {name}", f"test {name}", "epochs", "seconds"], rows)


def per_class_table(job: Job, split: str = "test") -> Table | None:
    """Precision, recall, F1 and support per label on a split (test unless told), in the model's label order."""
    per_class = {"dev": job.record.dev, "test": job.record.test}[split].get("per_class")
    if not isinstance(per_class, dict) or not per_class:
        return None
    rows = []
    for label, scores in per_class.items():
        support = scores.get("support")
        rows.append(
            [str(label), *(fmt(as_float(scores.get(k))) for k in ("precision", "recall", "f1")), MISSING if support is None else str(support)]
        )
    return Table(["label", "precision", "recall", "f1", "support"], rows)


def confusion_table(labels: list[str], matrix) -> Table | None:
    """Counts per true label (rows) and predicted label (columns), with row and column totals."""
    if not isinstance(matrix, list) or not labels or len(matrix) != len(labels):
        return None
    rows = [[str(label), *(str(count) for count in row), str(sum(row))] for label, row in zip(labels, matrix)]
    totals = [sum(column) for column in zip(*matrix)]
    rows.append(["total", *(str(count) for count in totals), str(sum(totals))])
    return Table(["true \\ predicted", *(str(label) for label in labels), "total"], rows)


def scalars_table(job: Job) -> Table | None:
    """Each selected metric on dev and test, in selection order."""
    dev, test = job.record.scalars("dev"), job.record.scalars("test")
    names = list(dict.fromkeys([*dev, *test]))
    return Table(["metric", "dev", "test"], [[name, fmt(dev.get(name)), fmt(test.get(name))] for name in names]) if names else None


def fmt_seconds(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f}"


def failed_table(failed: list[tuple[str, str, str]]) -> Table:
    return Table(["job", "overrides", "error"], [list(item) for item in failed])
