"""One run, start to end: record it, check the config, run the experiment, write ``metrics.json``.

``train(cfg, run_dir, overrides)`` returns the ``RunRecord`` it also writes to
``run_dir/metrics.json``, whatever happens: a run that fails or is interrupted
says so there, and why. It knows nothing about Hydra's entry point, so tests
and notebooks can call it with a composed config. Inside a sweep, the entry
point also passes ``choices`` (the option picked in each config group) and
``group`` (the sweep's id, which groups its W&B runs).

This module is light: the config is checked before TensorFlow loads, so a bad
value fails in a moment. The experiment itself, data -> encoder -> network ->
fit -> evaluate -> save, is ``kmexp.experiment``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from kmexp.builders import build_logger
from kmexp.config.validation import validate
from kmexp.errors import capped
from kmexp.provenance import code_commit, versions, where
from kmexp.runs import MODEL_FILE, RunRecord, history_row
from kmexp.secrets import Secrets
from kmexp.tf_logs import start_tensorflow
from kmexp.training.signals import interruption, stop_on_sigterm

if TYPE_CHECKING:  # kmexp.training.kept loads Keras: not before the config is checked
    from kmexp.training.kept import KeptNetworks


def train(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str],
    choices: dict[str, str] | None = None,
    group: str | None = None,
    kept: KeptNetworks | None = None,
) -> RunRecord:
    """Run the experiment that ``cfg`` describes and return its record.

    ``overrides`` are this job's command-line overrides; ``choices`` maps each
    config group to the option picked (``{"encoder": "char_ngram", ...}``);
    ``group`` names the sweep the job belongs to (None for a single run);
    ``kept``: the compiled networks that the jobs of a sweep in this process share
    (``kmexp.training.kept``), None for a run on its own.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(
        language=OmegaConf.to_container(cfg.language, resolve=True),
        seed=cfg.seed,
        overrides=list(overrides),
        choices=dict(choices or {}),
        group=group,
        versions=versions(),
        git=code_commit(),
        **where(),
    )
    logger = build_logger(cfg.logger, run_dir)
    record.wandb = logger.wandb_run
    # Written first, with this process's pid: a run killed outright (SIGKILL, the OOM killer, a lost machine)
    # leaves this record, which kmexp-report and a rerun read as interrupted once the process is gone.
    _write(record, run_dir)
    try:
        # SIGTERM stops the run like Ctrl-C (KeyboardInterrupt), so it is recorded as interrupted.
        with stop_on_sigterm():
            # Inside the try: a logger that cannot start fails the job, and metrics.json says why.
            config = OmegaConf.to_container(cfg, resolve=True)
            logger.start(config, choices=record.choices, overrides=record.overrides, group=group)
            validate(cfg)
            start_tensorflow()  # TensorFlow loads here, once the config is known to be good
            from kmexp import experiment

            record = dataclasses.replace(record, **experiment.run(cfg, run_dir, logger, kept))
            # Logged before "completed": a job whose results could not be logged is not reported as done.
            logger.log_summary(_summary(record, run_dir))
            logger.log_evaluation(record.labels, {"dev": record.dev, "test": record.test}, run_dir / MODEL_FILE)
            record.status = "completed"
    except BaseException as err:
        # Record why the run ended before passing the error on: nothing is lost.
        record.status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        record.error = _one_line(err)
        if isinstance(err, KeyboardInterrupt):
            record.stop_reason = interruption(err)
        raise
    finally:
        record.seconds = {**record.seconds, "total": round(time.perf_counter() - started, 3)}
        record.wandb = logger.wandb_run  # now with the offline run's own folder (once it started), for `wandb sync`
        _write(record, run_dir)
        logger.finish(record.status)
    return record


def _write(record: RunRecord, run_dir: Path) -> None:
    """``metrics.json``, redacted: an error message or a recorded path can hold a secret (see kmexp.secrets)."""
    RunRecord.from_json(Secrets.from_environ().data(record.to_json())).write(run_dir)


def _summary(record: RunRecord, run_dir: Path) -> dict:
    """Flat scalars for the logger's run summary: the saved model's, that is the best epoch's, one name each."""
    summary = {"objective": record.objective.value, "epochs_run": record.epochs_run, "best_epoch": record.best_epoch}
    best = history_row(run_dir, record.best_epoch)
    if "val_loss" in best:
        summary["dev/loss"] = best["val_loss"]
    for split in ("dev", "test"):
        for name, value in record.scalars(split).items():
            summary[f"{split}/{name}"] = value
    return summary


def _one_line(err: BaseException) -> str:
    """The error's type and first line, redacted, then cut to ``kmexp.errors.MAX_MESSAGE`` characters."""
    text = str(err).strip().splitlines()
    return capped(Secrets.from_environ().text(f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")))
