"""Experiment loggers: W&B (offline by default), CSV, or none.

Every logger has the same four calls, made by the training program in order:
``start(config, tags)``, ``log_epoch(epoch, logs)`` once per epoch,
``log_summary(metrics)``, and ``finish(status)`` exactly once.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path


class NullLogger:
    """Logs nothing: the run folder's own files are the record."""

    def __init__(self, run_dir: str):
        self.run_dir = Path(run_dir)

    def start(self, config: dict, tags: list[str]) -> None:
        pass

    def log_epoch(self, epoch: int, logs: dict) -> None:
        pass

    def log_summary(self, metrics: dict) -> None:
        pass

    def finish(self, status: str) -> None:
        pass


class CSVLogger(NullLogger):
    """Appends one row per epoch to ``<run_dir>/<filename>``; the summary goes in a last row."""

    def __init__(self, run_dir: str, filename: str):
        super().__init__(run_dir)
        self.path = self.run_dir / filename
        self._rows: list[dict] = []

    def log_epoch(self, epoch: int, logs: dict) -> None:
        self._rows.append({"epoch": epoch, **logs})

    def log_summary(self, metrics: dict) -> None:
        self._rows.append({"epoch": "summary", **metrics})

    def finish(self, status: str) -> None:
        fields: list[str] = []
        for row in self._rows:
            fields.extend(key for key in row if key not in fields)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=[*fields, "status"])
            writer.writeheader()
            for row in self._rows:
                writer.writerow({**row, "status": status})


class WandbLogger(NullLogger):
    """One W&B run per job, its files inside the run folder.

    Offline unless ``mode`` is ``online``: the mode, error reporting and the
    init timeout are settled before ``wandb.init``, so an offline run never
    touches the network.
    """

    def __init__(self, run_dir: str, project: str, mode: str, job_type: str, init_timeout_s: float):
        super().__init__(run_dir)
        self.project = project
        self.mode = mode
        self.job_type = job_type
        self.init_timeout_s = init_timeout_s
        self.run = None

    def start(self, config: dict, tags: list[str]) -> None:
        # Set before importing wandb: it reads these at import and at init.
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        self.run = wandb.init(
            project=self.project,
            dir=str(self.run_dir),
            mode=self.mode,
            job_type=self.job_type,
            config=config,
            tags=tags,
            reinit="finish_previous",
            settings=wandb.Settings(init_timeout=self.init_timeout_s, x_disable_stats=True, console="off"),
        )

    def log_epoch(self, epoch: int, logs: dict) -> None:
        self.run.log({"epoch": epoch, **logs}, step=epoch)

    def log_summary(self, metrics: dict) -> None:
        self.run.summary.update(metrics)

    def finish(self, status: str) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if status == "completed" else 1)
            self.run = None
