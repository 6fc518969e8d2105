"""The ``kmexp.*`` OmegaConf resolvers that conf/ uses.

Registered before Hydra composes a config (``kmexp.config.register_configs``);
``replace=True`` makes registering idempotent, so the CLI, tests and notebooks
can all call it without tracking whether it already ran in this process.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from kmexp import languages


def register_resolvers() -> None:
    # conf/language/generic.yaml: `${kmexp.script:${.code}}` and so on, from the code's script subtag.
    OmegaConf.register_new_resolver("kmexp.script", languages.script_of, replace=True)
    OmegaConf.register_new_resolver("kmexp.spaces", languages.uses_spaces, replace=True)
    OmegaConf.register_new_resolver("kmexp.direction", languages.direction_of, replace=True)
    # conf/language/multi.yaml: what a set of languages shares.
    OmegaConf.register_new_resolver("kmexp.shared_script", languages.shared_script, replace=True)
    OmegaConf.register_new_resolver("kmexp.all_spaces", languages.all_use_spaces, replace=True)
    OmegaConf.register_new_resolver("kmexp.shared_direction", languages.shared_direction, replace=True)
    # `language.codes` as a list, with `all` expanded to the 205 SIB-200 codes.
    OmegaConf.register_new_resolver(
        "kmexp.codes", lambda value: languages.expand_codes(value, languages.sib200_codes()), replace=True
    )
    # ${kmexp.coalesce:a,b}: a unless it is null, else b. Lets `resume=DIR` pick the sweep folder.
    OmegaConf.register_new_resolver(
        "kmexp.coalesce", lambda value, default: default if value is None else value, replace=True
    )
