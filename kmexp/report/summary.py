"""The end of a single run, as ``python -m kmexp`` prints it: the scores, why training stopped, where it all is."""

from __future__ import annotations

import shlex
from pathlib import Path

from kmexp.runs import RunRecord


def summary_table(record: RunRecord) -> str:
    """A short table of the scores on dev and test, the objective marked."""
    dev, test = record.scalars("dev"), record.scalars("test")
    width = max(len(name) for name in dev) + 2
    lines = [
        (
            f"kmexp run: language={record.language['code']} seed={record.seed} "
            f"epochs={record.epochs_run} (best {record.best_epoch}) "
            f"train {record.seconds['train']:.1f}s"
        ),
        f"{'metric':<{width}}{'dev':>8}{'test':>8}",
    ]
    for name in dev:
        mark = "  <- objective" if name == record.objective.name else ""
        lines.append(f"{name:<{width}}{dev[name]:>8.4f}{test[name]:>8.4f}{mark}")
    return "\n".join(lines)


def end_lines(record: RunRecord, run_dir: Path) -> str:
    """The last lines of a run: why training stopped, the offline W&B run and its upload command, the run folder.

    The run folder comes last, with the run's total time: what a user copies next.
    """
    lines = [] if record.stop_reason is None else [record.stop_reason]
    if record.wandb is not None and "sync" in record.wandb:
        wandb_run = shown_path(record.wandb["sync"])
        lines += [f"W&B offline run: {wandb_run}", f"upload it with: wandb sync {shlex.quote(wandb_run)}"]
    lines.append(f"run folder: {shown_path(run_dir)} ({duration(record.seconds['total'])} in all)")
    return "\n".join(lines)


def shown_path(path: str | Path) -> str:
    """A path as a user would type it here: relative to the working folder when it is inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def duration(seconds: float) -> str:
    """``9.3s``, ``4m 05s``, ``2h 03m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"
