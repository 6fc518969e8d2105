"""Where kmexp finds its configs: inside the wheel, or in the source checkout."""

from pathlib import Path


def config_dir() -> Path:
    """The ``conf/`` folder: ``kmexp/conf`` in an installed wheel, the top-level ``conf/`` in a checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "conf"
    return installed if installed.is_dir() else package.parent / "conf"


def group_options(group: str) -> list[str]:
    """The selectable options of a config group (files starting with ``_`` are shared parts, not options)."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml") if not p.stem.startswith("_"))
