"""The config: typed schemas (``schemas``), the ``kmexp.*`` resolvers (``resolvers``), value checks (``validation``).

The values themselves live in conf/, one YAML per option.
"""

from kmexp.config.resolvers import register_resolvers
from kmexp.config.schemas import store_schemas


def register_configs() -> None:
    """Everything that must exist before Hydra composes a config: the schemas and the resolvers."""
    store_schemas()
    register_resolvers()
