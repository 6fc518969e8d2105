"""Where kmexp finds its configs: inside the wheel, or in the source checkout, and the options each group offers."""

from pathlib import Path

from omegaconf import OmegaConf


def config_dir() -> Path:
    """The ``conf/`` folder: ``kmexp/conf`` in an installed wheel, the top-level ``conf/`` in a checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "conf"
    return installed if installed.is_dir() else package.parent / "conf"


def group_options(group: str) -> list[str]:
    """The selectable options of a config group."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml") if is_option(p.stem))


def is_option(name: str) -> bool:
    """Whether a config file is an option users pick: files starting with ``_`` are shared parts (``_common``)."""
    return not name.startswith("_")


def option_names(group: str) -> dict[str, str]:
    """The ``name`` each option of a group gives itself, by option (language presets: ``{"fr": "French", ...}``).

    Read as written: a name that is an interpolation (``${.code}``) is left out.
    """
    names = {}
    for option in group_options(group):
        name = OmegaConf.to_container(OmegaConf.load(config_dir() / group / f"{option}.yaml"), resolve=False).get("name")
        if isinstance(name, str) and "${" not in name:
            names[option] = name
    return names
