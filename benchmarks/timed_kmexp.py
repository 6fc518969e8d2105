"""kmexp's entry point with stopwatches: where a job's time goes, after imports.

Runs exactly what ``python -m kmexp`` runs (``kmexp.cli.main``), with timers
wrapped around the parts that plain Keras would not do: Hydra's compositions
of the config (one for a single run, ``kmexp.compat.one_composition_for_a_run``) and
the rest of its run (the run folder, its saved configs, logging), the W&B logger's calls, the
backup, ``history.csv``, the progress lines, the provenance records,
config checks, and the callback that redacts Hydra's saved files. The last line
printed is JSON: ``seconds_after_imports`` and the seconds of each part.

    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/timed_kmexp.py language=fr hydra.run.dir=/tmp/run

``overhead.py`` starts kmexp through this file; the timers cost microseconds.
"""

from __future__ import annotations

import collections
import functools
import json
import time

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.hydra import Hydra

import kmexp.cli
import kmexp.experiment
import kmexp.train
from kmexp import loggers, runs, sweep
from kmexp.training import callbacks, resume

seconds: dict[str, float] = collections.defaultdict(float)


def timed(owner, name: str, label: str) -> None:
    """Replace ``owner.name`` with a wrapper that adds its run time to ``seconds[label]``."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[label] += time.perf_counter() - started

    setattr(owner, name, wrapper)


timed(ConfigLoaderImpl, "load_configuration", "hydra: compose the config")
timed(Hydra, "run", "hydra: run (job inside)")
timed(kmexp.cli, "train", "train()")  # cli.py imported train by name
timed(kmexp.experiment, "fit", "train(): model fit, callbacks inside")
for method in ("start", "log_epoch", "log_summary", "log_evaluation", "finish"):
    timed(loggers.WandbLogger, method, f"logger: W&B {method}")
timed(resume.TrainingBackup, "on_epoch_end", "callbacks: backup (every trainer.backup_interval_s)")
timed(resume.TrainingBackup, "on_train_end", "callbacks: backup (every trainer.backup_interval_s)")
timed(callbacks.HistoryCSV, "on_epoch_end", "callbacks: history.csv")
timed(callbacks.EpochLogger, "on_epoch_end", "callbacks: progress lines (W&B log_epoch inside)")
timed(callbacks.DevScores, "on_epoch_end", "callbacks: dev scores (plain Keras does the same)")
for name in ("code_commit", "versions", "validate"):
    # train.py imported these by name: wrap the names it calls.
    timed(kmexp.train, name, "records and checks: git, versions, metrics.json, validate")
timed(runs.RunRecord, "write", "records and checks: git, versions, metrics.json, validate")
timed(sweep.SweepCallback, "on_job_start", "hydra callback: redact saved configs")

started = time.perf_counter()
kmexp.cli.main()
total = time.perf_counter() - started
print(json.dumps({"seconds_after_imports": total, "parts": {k: round(v, 4) for k, v in seconds.items()}}))
