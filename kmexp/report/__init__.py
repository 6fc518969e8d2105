"""Human-readable views of results: one run's summary, and a whole sweep's report.

``write_report(sweep_dir)`` compares the jobs of a sweep (Hydra multirun folder)
and writes ``results.csv``, ``report.md``, a self-contained ``report.html`` and
PNG plots into it. ``summary_table(record)`` is the short table a single run prints.
"""

from __future__ import annotations

from pathlib import Path

from kmexp.report.collect import NoJobsError, SweepReport
from kmexp.report.summary import summary_table

__all__ = ["NoJobsError", "SweepReport", "summary_table", "write_report"]


def write_report(sweep_dir: Path) -> SweepReport:
    """Write the sweep report into ``sweep_dir`` and return what it found and wrote.

    The report's modules (matplotlib, scipy) load here, not at import: every
    training run imports this package for ``summary_table`` and needs neither.
    """
    from kmexp.report.build import write_report as build_report

    return build_report(Path(sweep_dir))

