"""The command line: ``python -m kmexp [overrides]`` or ``kmexp [overrides]``.

The Hydra entry point composes the config, calls ``train`` and returns the
objective (the first selected metric, on dev), which sweepers maximize.
"""

from __future__ import annotations

import logging
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
from kmexp.sweep import sweep_group
from kmexp.train import train

log = logging.getLogger("kmexp")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def run(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    try:
        metrics = train(
            cfg,
            Path(hydra_cfg.runtime.output_dir),
            list(hydra_cfg.overrides.task),
            choices={group: str(option) for group, option in hydra_cfg.runtime.choices.items() if not group.startswith("hydra/")},
            group=sweep_group(Path(hydra_cfg.sweep.dir)) if hydra_cfg.mode == RunMode.MULTIRUN else None,
        )
    except KmexpError as err:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise  # the sweep records the failed job and goes on
        # A problem the user can fix: one clear line, no traceback, non-zero exit.
        log.error("%s", err)
        print(f"kmexp: error: {err}", file=sys.stderr)
        sys.exit(1)
    print(summary_table(metrics))
    return metrics["objective"]["value"]


def main() -> None:
    register_configs()
    run()
