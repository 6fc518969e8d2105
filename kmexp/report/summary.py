"""The one-run summary that ``python -m kmexp`` prints after training."""

from __future__ import annotations

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
