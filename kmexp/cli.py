"""The command line: ``python -m kmexp [overrides]`` or ``kmexp [overrides]``.

The Hydra entry point composes the config, calls ``train`` and returns the
objective (the first selected metric, on dev), which sweepers maximize.

A single run that fails on a problem the user can fix ends with one clear line
and exit code 1. In a sweep (``-m``), a failed job is recorded in its
``metrics.json`` and the sweep goes on; ``kmexp.sweep.SweepCallback`` reports
the failures and exits non-zero at the end.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from kmexp.config import register_configs
from kmexp.errors import KmexpError
from kmexp.paths import config_dir
from kmexp.report import summary_table
from kmexp.sweep import completed_record, experiment_overrides, keep_completed, sweep_group
from kmexp.train import train

log = logging.getLogger("kmexp")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def run(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = experiment_overrides(list(hydra_cfg.overrides.task))
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return _sweep_job(cfg, hydra_cfg, run_dir, overrides)
    try:
        metrics = train(cfg, run_dir, overrides, choices=_choices(hydra_cfg))
    except KmexpError as err:
        # A problem the user can fix: one clear line, no traceback, non-zero exit.
        log.error("%s", err)
        print(f"kmexp: error: {err}", file=sys.stderr)
        sys.exit(1)
    print(summary_table(metrics))
    return metrics["objective"]["value"]


def _sweep_job(cfg: DictConfig, hydra_cfg: DictConfig, run_dir: Path, overrides: list[str]) -> float:
    """One job of a sweep: its objective, or NaN when it failed (recorded, and the sweep goes on)."""
    if cfg.resume is not None:
        earlier = completed_record(run_dir, overrides)
        if earlier is not None:
            keep_completed(run_dir, earlier)
            return earlier["objective"]["value"]
    try:
        metrics = train(
            cfg, run_dir, overrides, choices=_choices(hydra_cfg), group=sweep_group(Path(hydra_cfg.sweep.dir))
        )
    except Exception as err:  # noqa: BLE001 - any failure of one job is recorded; Ctrl-C still stops the sweep
        log.error("job failed: %s: %s", type(err).__name__, err)
        return math.nan  # search sweepers (optuna) mark a NaN trial as failed
    print(summary_table(metrics))
    return metrics["objective"]["value"]


def _choices(hydra_cfg: DictConfig) -> dict[str, str]:
    """The option picked in each of kmexp's config groups (Hydra's own groups left out)."""
    return {group: str(option) for group, option in hydra_cfg.runtime.choices.items() if not group.startswith("hydra/")}


def main() -> None:
    register_configs()
    run()
