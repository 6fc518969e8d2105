"""kmexp's sweeper as a Hydra plugin (``hydra/sweeper=basic``, conf/hydra/sweeper/kmexp.yaml).

Hydra instantiates only plugin classes defined in the ``hydra_plugins`` namespace
package. This folder is installed as ``hydra_plugins/kmexp_sweeper``
(pyproject.toml); the sweeper's code is ``kmexp.sweeper``.
"""

from kmexp import sweeper


class ComposeOnceSweeper(sweeper.ComposeOnceSweeper):
    """``kmexp.sweeper.ComposeOnceSweeper``, under the name Hydra accepts."""
