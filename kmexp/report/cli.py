"""``kmexp-report SWEEP_DIR`` (or ``python -m kmexp.report SWEEP_DIR``): write a finished sweep's report.

A sweep writes its report when it ends; this command rewrites it, e.g. after
jobs were rerun, or for a sweep that was stopped part-way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kmexp.errors import KmexpError
from kmexp.report import NoJobsError, write_report

USAGE_EXIT = 2  # argparse's exit status for bad input, kept for a folder that is not a sweep


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kmexp-report",
        description="Compare the jobs of a kmexp sweep (a Hydra multirun folder): writes results.csv, "
        "report.md, report.html and PNG plots into it.",
    )
    p.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR", help="the sweep folder (hydra.sweep.dir) holding job folders 0/, 1/, ...")
    p.add_argument("--wandb-report", action="store_true", help="also publish the sweep as a W&B report")
    # The defaults are the runs' own: conf/logger/wandb.yaml (null entity: your default entity).
    p.add_argument("--entity", default=None, help="W&B entity for --wandb-report (default: logger.entity, else yours)")
    p.add_argument("--project", default=None, help="W&B project for --wandb-report (default: logger.project)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        report = write_report(args.sweep_dir)
    except NoJobsError as err:
        print(f"kmexp-report: error: {err}", file=sys.stderr)
        return USAGE_EXIT
    completed = len(report.rows) - len(report.failed)
    print(f"kmexp-report: {len(report.rows)} jobs ({completed} completed, {len(report.failed)} did not complete)")
    for path in report.paths:
        print(f"  wrote {path}")
    if args.wandb_report:
        return _publish_to_wandb(args)
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
