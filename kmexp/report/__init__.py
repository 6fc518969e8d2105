"""Human-readable views of results: one run's summary and report, and a whole sweep's report.

``write_report(sweep_dir)`` compares the jobs of a sweep (Hydra multirun folder)
and writes ``results.csv``, ``report.md``, a self-contained ``report.html`` and
PNG plots into it. ``write_run_report(run_dir)`` writes one run's report.md,
report.html and plots into its folder. ``summary_table(record)`` is the short
table a single run prints.
"""

from __future__ import annotations

from pathlib import Path

from kmexp.report.collect import NoJobsError, RunReport, SweepReport
from kmexp.report.summary import summary_table

__all__ = ["NoJobsError", "RunReport", "SweepReport", "summary_table", "write_report", "write_run_report"]


def write_report(sweep_dir: Path) -> SweepReport:
    """Write the sweep report into ``sweep_dir`` and return what it found and wrote.

    The report's modules (matplotlib, scipy) load here, not at import: every
    training run imports this package for ``summary_table`` and needs neither.
    """
    from kmexp.report.build import write_report as build_report

    return build_report(Path(sweep_dir))


def write_run_report(run_dir: Path) -> RunReport:
    """Write one run's report into its folder (``run_dir``) and return what it wrote; matplotlib loads here."""
    from kmexp.report.run_report import write_run_report as build_run_report

    return build_run_report(Path(run_dir))
