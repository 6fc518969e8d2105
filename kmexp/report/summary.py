"""The one-run summary that ``python -m kmexp`` prints after training."""

from __future__ import annotations


def summary_table(metrics: dict) -> str:
    """A short table of the scores on dev and test, the objective marked."""
    objective = metrics["objective"]["name"]
    names = [name for name, value in metrics["dev"].items() if isinstance(value, float)]
    width = max(len(name) for name in names) + 2
    lines = [
        (
            f"kmexp run: language={metrics['language']['code']} seed={metrics['seed']} "
            f"epochs={metrics['epochs_run']} (best {metrics['best_epoch']}) "
            f"train {metrics['seconds']['train']:.1f}s"
        ),
        f"{'metric':<{width}}{'dev':>8}{'test':>8}",
    ]
    for name in names:
        mark = "  <- objective" if name == objective else ""
        lines.append(f"{name:<{width}}{metrics['dev'][name]:>8.4f}{metrics['test'][name]:>8.4f}{mark}")
    return "\n".join(lines)
