"""Multirun sweeps: the id that groups a sweep's jobs."""

from __future__ import annotations

from pathlib import Path


def sweep_group(sweep_dir: Path) -> str:
    """A sweep's id: its folder's parent and name (``2026-11-27_10-31-02-123456``), unique per sweep."""
    sweep_dir = Path(sweep_dir)
    return f"{sweep_dir.parent.name}_{sweep_dir.name}" if sweep_dir.parent.name else sweep_dir.name
