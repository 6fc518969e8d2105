"""How many CPU cores this process may use: the ones it is pinned to (Linux affinity), else all of them."""

from __future__ import annotations

import os


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
