"""The ``kmexp.*`` OmegaConf resolvers that conf/ uses.

Registered before Hydra composes a config (``kmexp.config.register_configs``);
``replace=True`` makes registering idempotent, so the CLI, tests and notebooks
can all call it without tracking whether it already ran in this process.
"""

from __future__ import annotations

import functools
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from kmexp import languages
from kmexp.cores import usable_cores
from kmexp.errors import ConfigError
from kmexp.paths import config_dir

# The one table of settings that follow the script, by script class (kmexp.languages.script_class).
SCRIPT_TABLE = ("language", "_scripts.yaml")


def register_resolvers() -> None:
    # conf/language/generic.yaml: `${kmexp.script:${.code}}` and so on, from the code's script subtag.
    OmegaConf.register_new_resolver("kmexp.script", languages.script_of, replace=True)
    OmegaConf.register_new_resolver("kmexp.spaces", languages.uses_spaces, replace=True)
    OmegaConf.register_new_resolver("kmexp.direction", languages.direction_of, replace=True)
    # conf/language/_common.yaml, conf/encoder/char_ngram.yaml: `${kmexp.script_setting:word_fallback,${.script}}`.
    OmegaConf.register_new_resolver("kmexp.script_setting", script_setting, replace=True)
    # conf/language/multi.yaml: what a set of languages shares.
    OmegaConf.register_new_resolver("kmexp.shared_script", languages.shared_script, replace=True)
    OmegaConf.register_new_resolver("kmexp.all_spaces", languages.all_use_spaces, replace=True)
    OmegaConf.register_new_resolver("kmexp.shared_direction", languages.shared_direction, replace=True)
    # `language.codes` as a list, with `all` expanded to the 205 SIB-200 codes.
    OmegaConf.register_new_resolver(
        "kmexp.codes", lambda value: languages.expand_codes(value, languages.sib200_codes()), replace=True
    )
    # conf/device/_common.yaml: TensorFlow's thread pools when jobs run side by side (hydra/launcher=joblib).
    OmegaConf.register_new_resolver("kmexp.threads_per_worker", threads_per_worker, replace=True)
    # conf/sweep/sib200_all.yaml: the 205 codes as one sweep value, the heaviest first: "bod_Tibt,...,ace_Arab,...".
    OmegaConf.register_new_resolver("kmexp.sib200_sweep", lambda: ",".join(languages.sib200_sweep_order()), replace=True)
    # ${kmexp.coalesce:a,b}: a unless it is null, else b. Lets `resume=DIR` pick the sweep folder.
    OmegaConf.register_new_resolver(
        "kmexp.coalesce", lambda value, default: default if value is None else value, replace=True
    )


def script_setting(key: str, script: str):
    """The value conf/language/_scripts.yaml gives ``key`` (a dotted path) for ``script``'s class.

    A class row names only what differs for its scripts; the rest comes from its ``default`` row.
    """
    table = _script_table(config_dir().joinpath(*SCRIPT_TABLE))
    for row in (languages.script_class(script), languages.DEFAULT_SCRIPT_CLASS):
        value = OmegaConf.select(table, f"{row}.{key}", default=table)  # the table itself stands for "no such key"
        if value is not table:
            return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    raise ConfigError(
        f"{key} is not allowed in ${{kmexp.script_setting:...}}: conf/{'/'.join(SCRIPT_TABLE)} has no such key "
        f"in its {languages.script_class(script)} or {languages.DEFAULT_SCRIPT_CLASS} row"
    )


@functools.cache
def _script_table(path: Path) -> DictConfig:
    """The table, read once per process: a config resolves a dozen settings from it, and a sweep many configs."""
    table = OmegaConf.load(path)
    OmegaConf.set_readonly(table, True)
    return table


def threads_per_worker() -> int | None:
    """Each worker's share of this machine's cores when the launcher runs jobs in parallel, else None.

    TensorFlow's default gives every op all the cores. That suits one job at a
    time; two workers on two cores would then fight over both, so each takes its
    share instead (cores // workers, at least 1; joblib's n_jobs=-1 means one
    worker per core). Read from the running job's Hydra config: None outside a
    Hydra job and with launchers that run one job at a time here (basic, SLURM, Ray).
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    workers = OmegaConf.select(HydraConfig.get(), "launcher.n_jobs", default=None)
    if not isinstance(workers, int) or workers in (0, 1):
        return None
    cores = usable_cores()
    if workers < 0:  # joblib: -1 is one worker per core, -2 all cores but one, ...
        workers = max(1, cores + 1 + workers)
    return max(1, cores // workers)
