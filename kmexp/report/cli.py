"""``kmexp-report DIR`` (or ``python -m kmexp.report DIR``): write a sweep's report, or one run's.

A sweep writes its report when it ends; this command rewrites it, e.g. after
jobs were rerun, or for a sweep that was stopped part-way (the jobs it never
started are counted as not run). Given one run's folder (it holds
``metrics.json``), it writes that run's report into it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kmexp.errors import KmexpError
from kmexp.report import NoJobsError, SweepReport, write_report, write_run_report
from kmexp.report.collect import not_run_line
from kmexp.runs import is_run_dir

USAGE_EXIT = 2  # argparse's exit status for bad input, kept for a folder that is not a sweep


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kmexp-report",
        description="Compare the jobs of a kmexp sweep (a Hydra multirun folder): writes results.csv, "
        "report.md, report.html and PNG plots into it. Given one run's folder, writes that run's "
        "report.md, report.html and plots into it.",
    )
    p.add_argument(
        "sweep_dir", type=Path, metavar="DIR",
        help="the sweep folder (hydra.sweep.dir) holding job folders 0/, 1/, ..., or one run's folder (holding metrics.json)",
    )
    p.add_argument("--wandb-report", action="store_true", help="also publish the sweep as a W&B report")
    # The defaults are the runs' own: conf/logger/wandb.yaml (null entity: your default entity).
    p.add_argument("--entity", default=None, help="W&B entity for --wandb-report (default: logger.entity, else yours)")
    p.add_argument("--project", default=None, help="W&B project for --wandb-report (default: logger.project)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if is_run_dir(args.sweep_dir):
        return _run_report(args)
    try:
        report = write_report(args.sweep_dir)
    except NoJobsError as err:
        print(f"kmexp-report: error: {err}", file=sys.stderr)
        return USAGE_EXIT
    print(f"kmexp-report: {counts(report)}")
    if report.not_run:
        print(f"kmexp-report: {not_run_line(report.not_run, len(report.rows) + len(report.not_run), args.sweep_dir.resolve())}")
    for path in report.paths:
        print(f"  wrote {path}")
    if args.wandb_report:
        return _publish_to_wandb(args)
    return 0


def counts(report: SweepReport) -> str:
    """``4 jobs (3 completed, 1 did not complete)``, and how many never started, if any did not."""
    ran = f"{report.completed} completed, {len(report.failed)} did not complete"
    if not report.not_run:
        return f"{len(report.rows)} jobs ({ran})"
    return f"{len(report.rows) + len(report.not_run)} jobs ({ran}, {len(report.not_run)} not run)"


def _run_report(args: argparse.Namespace) -> int:
    """One run's report; --wandb-report is for sweeps (the run's own W&B run already holds its scores)."""
    if args.wandb_report:
        print(
            f"kmexp-report: error: --wandb-report publishes a sweep; {args.sweep_dir} is one run's folder, "
            "whose W&B run (in its wandb/ folder) already holds its scores",
            file=sys.stderr,
        )
        return USAGE_EXIT
    report = write_run_report(args.sweep_dir)
    status = f"{report.status}: {report.error}" if report.error else report.status
    print(f"kmexp-report: run {args.sweep_dir} ({status})")
    for path in report.paths:
        print(f"  wrote {path}")
    return 0


def _publish_to_wandb(args: argparse.Namespace) -> int:
    from kmexp.report.wandb import logger_defaults, publish  # W&B API only when asked for

    defaults = logger_defaults()
    entity = args.entity if args.entity is not None else defaults["entity"]
    project = args.project if args.project is not None else defaults["project"]
    try:
        print(publish(args.sweep_dir, entity=entity, project=project))
    except KmexpError as err:
        print(f"kmexp-report: error: {err}", file=sys.stderr)
        return 1
    return 0
