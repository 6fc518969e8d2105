"""The config: typed schemas (``schemas``), the ``kmexp.*`` resolvers (``resolvers``), value checks (``validation``).

The values themselves live in conf/, one YAML per option.
"""

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from omegaconf import OmegaConf

from kmexp.config.resolvers import register_resolvers
from kmexp.config.schemas import store_schemas
from kmexp.paths import config_dir


def register_configs() -> None:
    """Everything that must exist before Hydra composes a config: the schemas, the resolvers, the sweeper."""
    store_schemas()
    register_resolvers()
    store_basic_sweeper()


def store_basic_sweeper(store: ConfigStore | None = None) -> None:
    """Make ``hydra/sweeper=basic``, Hydra's default sweeper, kmexp's (conf/hydra/sweeper/kmexp.yaml).

    Registered in the ConfigStore, where Hydra keeps its own basic sweeper's config, rather than
    as a file named basic.yaml: Hydra warns about a file that has a stored config's name. And not
    as an override in conf/config.yaml: that would win over hparams_search=optuna's own.
    """
    # Hydra's plugin scan, at its first use, stores Hydra's own basic sweeper again: done first, so that
    # kmexp's stays (later calls reuse the scan).
    Plugins.instance()
    store = ConfigStore.instance() if store is None else store
    node = OmegaConf.load(config_dir() / "hydra" / "sweeper" / "kmexp.yaml")
    store.store(group="hydra/sweeper", name="basic", node=node, provider="kmexp")
