"""The configs of a sweep's jobs, each made from a Hydra composition that jobs with the same group options share.

Hydra composes a job's config in two steps: it builds the defaults list from the
config group options and merges every config file in it (about 40 files for
kmexp's default config), then applies the overrides that set values. The first
step is nearly all of the time, and in a sweep over values (205
``language.code``s, seeds, learning rates) it gives every job the same result.
Here it runs once for each set of group options, and each job's config is that
composition with the job's values applied: the config Hydra composes for the job
(``tests/test_sweep.py`` compares them), in a fraction of the time
(``docs/benchmarks.md``). A job whose config does not come out this way is
composed by Hydra as a whole, which raises Hydra's own error for it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from kmexp import compat

# Compositions kept at once, the most recently used first: one per set of group options in use.
KEPT_COMPOSITIONS = 16


class JobConfigs:
    """``load_sweep_config`` of a Hydra config loader, composing each set of group options once."""

    def __init__(self, loader: ConfigLoader, size: int = KEPT_COMPOSITIONS):
        self._loader = loader
        self.size = size
        self._parser = OverridesParser.create()
        self._composed: OrderedDict[tuple[str, ...], DictConfig] = OrderedDict()
        self._is_group: dict[str, bool] = {}

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: Sequence[str]) -> DictConfig:
        """The config of the job with these overrides, as Hydra's ``load_sweep_config`` composes it."""
        overrides, options, values = self._split(master_config, sweep_overrides)
        if not values:  # nothing to share: a composition of its own
            return self._loader.load_sweep_config(master_config, list(sweep_overrides))
        try:
            composed = self._composition(master_config.hydra.job.config_name, options)
            config = compat.with_value_overrides(composed, options, overrides, values)
        except Exception:  # noqa: BLE001 - Hydra composes the job as a whole, and raises its own error
            return self._loader.load_sweep_config(master_config, list(sweep_overrides))
        # As Hydra's load_sweep_config: values resolved once (timestamps) are the sweep's.
        OmegaConf.copy_cache(from_config=master_config, to_config=config)
        return config

    def compositions(self, master_config: DictConfig, batch: Sequence[Sequence[str]]) -> int:
        """How many Hydra compositions these jobs' configs take: one per set of group options."""
        options = (self._split(master_config, overrides)[1] for overrides in batch)
        return len({tuple(override.input_line for override in job) for job in options})

    def __getstate__(self) -> dict:
        # A copy sent to another process (with each job, to joblib's workers) starts with no compositions.
        return {"_loader": self._loader, "size": self.size}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["_loader"], state["size"])

    def _split(
        self, master_config: DictConfig, sweep_overrides: Sequence[str]
    ) -> tuple[list[Override], list[Override], list[Override]]:
        """A job's overrides as Hydra composes them (the sweep's Hydra overrides, then the job's), and
        those among them that pick group options and those that set values, each in that order."""
        overrides = self._parser.parse_overrides([*master_config.hydra.overrides.hydra, *sweep_overrides])
        sets_a_value = [self._sets_a_value(override) for override in overrides]
        options = [override for override, value in zip(overrides, sets_a_value) if not value]
        values = [override for override, value in zip(overrides, sets_a_value) if value]
        return overrides, options, values

    def _composition(self, config_name: str, options: list[Override]) -> DictConfig:
        """Hydra's composition of these group options, kept for the next job that has the same."""
        lines = [override.input_line for override in options]
        key = (config_name, *lines)
        composed = self._composed.pop(key, None)
        if composed is None:
            composed = self._loader.load_configuration(config_name, lines, RunMode.RUN)
        self._composed[key] = composed
        self._composed.move_to_end(key, last=False)
        while len(self._composed) > self.size:
            self._composed.popitem()
        return composed

    def _sets_a_value(self, override: Override) -> bool:
        """Hydra's rule (its defaults list's ``Overrides``): an override sets a value when its value is a
        dict or its key names no config group. A sweep's list of values is neither: Hydra refuses it in a job."""
        if override.is_sweep_override():
            return False
        return isinstance(override.value(), dict) or not self._names_a_group(override.key_or_group)

    def _names_a_group(self, key: str) -> bool:
        if key not in self._is_group:
            parent, _, name = key.rpartition("/")
            self._is_group[key] = name in self._loader.list_groups(parent)
        return self._is_group[key]
