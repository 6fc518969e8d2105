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

import ctypes
import json
import os
import sys
import time
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def resident_mb(pid: int | str = "self", field: str = "VmRSS") -> float:
    """A memory field of a process's /proc/<pid>/status, in MB (Linux): VmRSS, or its parts RssAnon and RssFile."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024  # reported in kB
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


class _Mallinfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc 2.33 and later): sizes in bytes, over all of its arenas."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"
    )]


def glibc_heap_mb() -> dict[str, float]:
    """glibc's heap, in MB: the bytes its allocations hold (``heap_used_mb``: in its arenas and in their
    own mappings) and the free bytes it keeps in its arenas (``heap_free_mb``). Empty where malloc is not
    glibc's (another C library, or an allocator put in front with LD_PRELOAD)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return {}
    process = ctypes.CDLL(None)
    if ctypes.cast(process.malloc, ctypes.c_void_p).value != ctypes.cast(libc.malloc, ctypes.c_void_p).value:
        return {}
    mallinfo2.restype = _Mallinfo2
    info = mallinfo2()
    return {"heap_used_mb": (info.uordblks + info.hblkhd) / 2**20, "heap_free_mb": info.fordblks / 2**20}


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
            # Anonymous memory (heaps, tensors, Python's arenas) apart from the pages of mapped files
            # (libraries' code and data, shared with other processes).
            "anon_mb": resident_mb(field="RssAnon"),
            "file_mb": resident_mb(field="RssFile"),
            **glibc_heap_mb(),
            "end": time.time(),
            **_kept_networks(),
        }
        # One short line per write, appended: lines from parallel workers do not interleave.
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _kept_networks() -> dict[str, float | None]:
    """How many compiled networks this process keeps for its later jobs, and the MB their variables and
    optimizer slots hold; None before a job loaded them."""
    if "kmexp.training.kept" not in sys.modules:  # importing it here would load TensorFlow into this process
        return {"kept_networks": None, "kept_mb": None}
    from kmexp.training.kept import process_networks

    kept = process_networks()
    return {"kept_networks": len(kept), "kept_mb": kept.variable_bytes() / 2**20}


def last_network_added(jobs: list[dict]) -> int | None:
    """The index of the job (in ``jobs``, one process's records in job order) that added the last kept network.

    The memory growth after it is what a longer sweep would add: each kept network holds memory by
    design, up to a bound. None when a record has no count (written before a job loaded TensorFlow).
    """
    kept = [job.get("kept_networks") for job in jobs]
    if None in kept:
        return None
    return max(i for i, count in enumerate(kept) if i == 0 or count > kept[i - 1])
