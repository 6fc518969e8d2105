"""``overhead.py``'s ``plain in Hydra`` program: ``plain_keras.py``'s job inside a bare ``@hydra.main`` on kmexp's config.

What Hydra itself costs a single run on kmexp's config, and nothing of kmexp's
code: kmexp's schemas and ``conf/`` composed once for the run (as kmexp's CLI
composes a single run, ``kmexp.compat.one_composition_for_a_run``), Hydra's run
folder, saved configs and logging, then the plain Keras job. kmexp's Hydra
callbacks are removed, and nothing else of kmexp runs: no records, checks,
logger or training loop. This is the floor under ``python -m kmexp logger=none``.

Hydra is imported before TensorFlow, as kmexp's CLI imports it: imported after
TensorFlow, its import takes ~0.4 s more (a full garbage collection over
TensorFlow's objects falls inside it).

    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/plain_in_hydra.py --code fra_Latn --locale fr --out /tmp/plain

The last line printed is ``plain_keras.py``'s JSON, with ``hydra``: the seconds of
Hydra's own parts, timed in this process (``overhead.py`` divides by the whole
process's time, so both come from the same run of the same process).
"""

from __future__ import annotations

import json
import sys
import time

began = time.perf_counter()
import hydra  # noqa: E402

from kmexp import compat  # noqa: E402
from kmexp.config import register_configs  # noqa: E402
from kmexp.paths import config_dir  # noqa: E402

hydra_imported = time.perf_counter()
import plain_keras  # noqa: E402  (TensorFlow and Keras, after Hydra; benchmarks/ is the script's folder)


def main() -> None:
    args = plain_keras.arguments()
    started = time.perf_counter()
    job: dict = {}
    register_configs()  # the schemas that conf/config.yaml starts from

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
    def task(cfg) -> None:
        job["began"] = time.perf_counter()
        job["result"] = plain_keras.job(args, started)
        job["ended"] = time.perf_counter()

    # The language's preset as kmexp composes it, Hydra's run folder inside --out, none of kmexp's callbacks.
    sys.argv = [sys.argv[0], f"language={args.locale}", f"hydra.run.dir={args.out / 'hydra'}",
                "~hydra.callbacks.run_folder", "~hydra.callbacks.kmexp"]
    with compat.one_composition_for_a_run():
        task()
    hydra_parts = {
        "import Hydra, OmegaConf and kmexp's config modules": hydra_imported - began,
        "schemas, composition, run folder, logging (before the job)": job["began"] - started,
        "Hydra after the job": time.perf_counter() - job["ended"],
    }
    print(json.dumps({**job["result"], "hydra": {name: round(s, 4) for name, s in hydra_parts.items()}}))


if __name__ == "__main__":
    main()
