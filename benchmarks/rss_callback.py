"""A Hydra callback that appends one JSON line per finished job: job number, pid, seconds, resident memory,
and the compiled networks the process keeps for later jobs (``kmexp.training.kept``).

For the sweep benchmarks (``sweep_memory.py``, ``sweep_parallel.py``). Hydra
imports it by name, so ``benchmarks/`` goes on ``PYTHONPATH``:

    PYTHONPATH=benchmarks python -m kmexp -m seed=0,1,2 logger=none \\
        +hydra.callbacks.rss._target_=rss_callback.RSSCallback +hydra.callbacks.rss.out=/tmp/rss.jsonl

The callback runs in the process that ran the job (the sweep's own process with
Hydra's basic launcher, a worker with joblib), so VmRSS is that process's. The kept
networks hold memory by design, up to their bound: the benchmarks tell the growth
while they fill from the growth once they stopped.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def resident_mb(pid: int | str = "self") -> float:
    """VmRSS of a process, in MB (Linux: /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # reported in kB
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


class RSSCallback(Callback):
    def __init__(self, out: str):
        self.out = out
        self.started = None

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.perf_counter()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        record = {
            "job": HydraConfig.get().job.num,
            "pid": os.getpid(),
            "seconds": time.perf_counter() - self.started,
            "rss_mb": resident_mb(),
            "end": time.time(),
            "kept_networks": _kept_networks(),
        }
        # One short line per write, appended: lines from parallel workers do not interleave.
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _kept_networks() -> int | None:
    """How many compiled networks this process keeps for its later jobs; None before a job loaded them."""
    if "kmexp.training.kept" not in sys.modules:  # importing it here would load TensorFlow into this process
        return None
    from kmexp.training.kept import process_networks

    return len(process_networks())


def last_network_added(jobs: list[dict]) -> int | None:
    """The index of the job (in ``jobs``, one process's records in job order) that added the last kept network.

    The memory growth after it is what a longer sweep would add: each kept network holds memory by
    design, up to a bound. None when a record has no count (written before a job loaded TensorFlow).
    """
    kept = [job.get("kept_networks") for job in jobs]
    if None in kept:
        return None
    return max(i for i, count in enumerate(kept) if i == 0 or count > kept[i - 1])
