"""The numbers behind the report: scores per locale and setting, the best setting by dev, spread over seeds.

Model selection uses dev only: the best setting for a locale is the one with
the highest mean *dev* objective; test scores are carried along to be reported,
never compared to choose.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats as scipy_stats

from kmexp.report.collect import SEED_KEY, Job, setting_of
from kmexp.runs import override_values

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Run:
    """A completed job as the comparison sees it: where it sits, and its dev and test objective."""

    job: Job
    locale: str
    setting: str
    seed: str
    dev: float
    test: float


@dataclass(frozen=True)
class Stats:
    """Mean, sample standard deviation and a t-distribution interval of a few values (one per seed)."""

    n: int
    mean: float
    std: float  # ddof=1; NaN for a single value
    low: float  # CONFIDENCE interval for the mean; NaN for a single value
    high: float


def describe(values: list[float]) -> Stats:
    """Stats of values that are independent repeats (seeds): with few seeds, t rather than normal quantiles."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Stats(n, mean, math.nan, math.nan, math.nan)
    std = statistics.stdev(values)
    half = scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * std / math.sqrt(n)
    return Stats(n, mean, std, mean - half, mean + half)


def runs_of(jobs: list[Job], keys: list[str], objective: str) -> list[Run]:
    """The completed jobs that recorded a finite objective on both dev and test (NaN would poison max/mean)."""
    runs = []
    for job in jobs:
        dev, test = job.score("dev", objective), job.score("test", objective)
        if job.completed and dev is not None and test is not None and math.isfinite(dev) and math.isfinite(test):
            seed = override_values(job.overrides).get(SEED_KEY, "" if job.record.seed is None else str(job.record.seed))
            runs.append(Run(job, job.locale, setting_of(job, keys), seed, dev, test))
    return runs


def unique(items) -> list:
    """Items in first-seen order, once each: locales and settings keep the sweep's own order."""
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class Grid:
    """Runs arranged as locales (rows) x settings (columns); a cell holds one run per seed."""

    locales: list[str]
    settings: list[str]
    cells: dict[tuple[str, str], list[Run]]

    @classmethod
    def of(cls, runs: list[Run]) -> Grid:
        cells: dict[tuple[str, str], list[Run]] = {}
        for run in runs:
            cells.setdefault((run.locale, run.setting), []).append(run)
        return cls(unique(r.locale for r in runs), unique(r.setting for r in runs), cells)

    def test(self, locale: str, setting: str) -> Stats | None:
        runs = self.cells.get((locale, setting))
        return describe([r.test for r in runs]) if runs else None

    def dev(self, locale: str, setting: str) -> Stats | None:
        runs = self.cells.get((locale, setting))
        return describe([r.dev for r in runs]) if runs else None

    def best_setting(self, locale: str) -> str | None:
        """The setting with the highest mean dev objective for this locale (the first one on ties)."""
        scored = [(self.dev(locale, s).mean, -i, s) for i, s in enumerate(self.settings) if (locale, s) in self.cells]
        return max(scored)[2] if scored else None


@dataclass(frozen=True)
class SettingSummary:
    """One setting across locales: mean test score, the worst locale, and the best-worst gap."""

    setting: str
    locales: int
    mean: float
    worst_locale: str
    worst: float
    best_locale: str
    best: float
    over_seeds: Stats | None  # the mean over locales, per seed, described across seeds

    @property
    def gap(self) -> float:
        return self.best - self.worst


def summarize(grid: Grid, setting: str) -> SettingSummary | None:
    """A setting's test scores across locales (each locale's mean over seeds)."""
    by_locale = {loc: grid.test(loc, setting).mean for loc in grid.locales if (loc, setting) in grid.cells}
    if not by_locale:
        return None
    worst = min(by_locale, key=by_locale.get)
    best = max(by_locale, key=by_locale.get)
    return SettingSummary(
        setting,
        len(by_locale),
        statistics.fmean(by_locale.values()),
        worst,
        by_locale[worst],
        best,
        by_locale[best],
        _over_seeds(grid, setting, list(by_locale)),
    )


def _over_seeds(grid: Grid, setting: str, locales: list[str]) -> Stats | None:
    """Spread over seeds of the setting's mean over locales; a seed counts only if every locale ran with it,
    so that a missing (failed) locale does not move one seed's mean."""
    per_seed: dict[str, dict[str, float]] = {}
    for locale in locales:
        for run in grid.cells[(locale, setting)]:
            per_seed.setdefault(run.seed, {})[locale] = run.test
    means = [statistics.fmean(scores.values()) for scores in per_seed.values() if len(scores) == len(locales)]
    return describe(means) if means else None


def best_run(runs: list[Run]) -> Run | None:
    """The run with the highest dev objective (its test scores are what the report shows of it)."""
    return max(runs, key=lambda r: r.dev) if runs else None


@dataclass(frozen=True)
class Transfer:
    """Test objective of models trained on one language (rows) and tested on others (columns), per setting."""

    setting: str
    rows: list[str]
    columns: list[str]
    values: dict[tuple[str, str], float]  # mean over seeds


def transfers(runs: list[Run], objective: str) -> list[Transfer]:
    """Cross-lingual transfer matrices, one per setting whose jobs recorded ``eval`` scores."""
    found = []
    for setting in unique(r.setting for r in runs):
        scores: dict[tuple[str, str], list[float]] = {}
        for run in (r for r in runs if r.setting == setting):
            tested = run.job.transfer(objective)
            if not tested:
                continue
            trained_on = "multi" if run.locale == "multi" else run.job.code
            if trained_on != "multi":
                tested.setdefault(trained_on, run.test)  # its own test set, when eval does not repeat it
            for code, value in tested.items():
                scores.setdefault((trained_on, code), []).append(value)
        if scores:
            rows = unique(row for row, _ in scores)
            columns = unique([*(r for r in rows if any(c == r for _, c in scores)), *sorted({c for _, c in scores})])
            values = {key: statistics.fmean(vals) for key, vals in scores.items()}
            found.append(Transfer(setting, rows, columns, values))
    return found
