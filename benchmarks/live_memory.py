"""What each job of a long in-process sweep leaves alive: memray's record of every allocation, by job.

Runs ``python -m kmexp -m`` over the first N SIB-200 languages in one process
(Hydra's basic launcher) and tracks every allocation from the start of job
``--first`` to the end of the last job with memray (``pip install 'kmexp[profile]'``).
Python's objects go through malloc for the run (``PYTHONMALLOC=malloc``), so
that each is an allocation of its own. Then, for each job of the window, it
counts the bytes allocated during that job that are still allocated when the
sweep ends: what a job leaves behind for good, apart from what the allocator
keeps of freed memory (``sweep_memory.py`` measures the resident memory).

    python benchmarks/live_memory.py --languages 100 --first 40 --out benchmarks/results/live_memory_100.md

Jobs that leave more than ``--heavy-mb`` are listed apart from the others:
among them, the ones that trace a network the process keeps for later jobs
(``kmexp.training.kept``). Tracking slows the sweep about 2-3x and writes about 20 MB per job
to a temporary capture file.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback

HERE = Path(__file__).resolve().parent
# A location is named by its innermost frames, and by the first frame of kmexp, Hydra or W&B that called it.
INNER_FRAMES = 3
OWN_PACKAGES = ("kmexp/", "hydra/", "wandb/")


class TrackAllocations(Callback):
    """Hydra callback (imported by name in the sweep's process): memray tracks from job ``first`` to job ``last``.

    Each job's start time goes to ``<out>.jobs``, so that allocations can be told apart by job.
    """

    def __init__(self, first: int, last: int, out: str):
        self.first, self.last, self.out = first, last, out
        self.tracker = None

    def on_job_start(self, config, **kwargs) -> None:
        job = HydraConfig.get().job.num
        with open(f"{self.out}.jobs", "a", encoding="utf-8") as f:
            f.write(json.dumps({"job": job, "start": time.time()}) + "\n")
        if job == self.first:
            import memray

            self.tracker = memray.Tracker(self.out, file_format=memray.FileFormat.ALL_ALLOCATIONS, memory_interval_ms=50)
            self.tracker.__enter__()

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if HydraConfig.get().job.num == self.last and self.tracker is not None:
            self.tracker.__exit__(None, None, None)
            self.tracker = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", type=int, default=100, help="sweep the first N SIB-200 languages")
    parser.add_argument("--first", type=int, default=40, help="the job (0-based) where tracking starts")
    parser.add_argument("--logger", default="none", help="kmexp logger (none, csv, wandb)")
    parser.add_argument("--heavy-mb", type=float, default=1.0, help="jobs leaving more than this are listed apart")
    parser.add_argument("--top", type=int, default=12, help="locations shown")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "live_memory.md")
    args = parser.parse_args()
    from kmexp.languages import sib200_codes

    codes = sib200_codes()[: args.languages]
    with tempfile.TemporaryDirectory() as tmp:
        capture = Path(tmp) / "sweep.bin"
        command = [
            sys.executable, "-m", "kmexp", "-m", "seed=0", "language=generic", f"language.code={','.join(codes)}",
            f"logger={args.logger}", f"hydra.sweep.dir={tmp}/sweep",
            "+hydra.callbacks.live._target_=live_memory.TrackAllocations", f"+hydra.callbacks.live.first={args.first}",
            f"+hydra.callbacks.live.last={len(codes) - 1}", f"+hydra.callbacks.live.out={capture}",
        ]
        path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path, "WANDB_MODE": "offline", "PYTHONMALLOC": "malloc"}
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"the sweep failed:\n{done.stderr[-3000:]}")
        live = live_by_job(capture)
    text = report(live, codes, args, wall)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}")


def live_by_job(capture: Path) -> dict[int, collections.Counter]:
    """For each job of the window: bytes still allocated at the end, by location, of what that job allocated."""
    from memray import FileReader

    reader = FileReader(capture)
    snapshot_ms = [snapshot.time for snapshot in reader.get_memory_snapshots()]
    starts = sorted(
        (record["start"] * 1000, record["job"])
        for record in map(json.loads, Path(f"{capture}.jobs").read_text().splitlines())
    )
    start_ms = [ms for ms, _ in starts]

    def job_at(snapshot: int) -> int:
        ms = snapshot_ms[min(snapshot, len(snapshot_ms) - 1)]
        return starts[max(bisect.bisect_right(start_ms, ms) - 1, 0)][1]

    live: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for record in reader.get_temporal_allocation_records(merge_threads=True):
        still_allocated = [interval for interval in record.intervals if interval.deallocated_before_snapshot is None]
        if len(still_allocated) == 0:
            continue
        where = location(record.stack_trace(max_stacks=60))
        for interval in still_allocated:
            live[job_at(interval.allocated_before_snapshot)][where] += interval.n_bytes
    return live


def location(frames: list[tuple]) -> str:
    """The innermost frames of an allocation's Python stack, and the first frame of kmexp, Hydra or W&B below them."""
    names = [f"{function} ({_short(file)}:{line})" for function, file, line in frames]
    own = next((name for name in names if any(package in name for package in OWN_PACKAGES)), "")
    inner = " < ".join(names[:INNER_FRAMES]) or "(no Python frame)"
    return inner if own == "" or own in names[:INNER_FRAMES] else f"{inner} ... < {own}"


def _short(file: str) -> str:
    """A source file's path from its package (``tensorflow/...``, ``json/...``, ``kmexp/...``)."""
    if file.startswith(str(HERE.parent)):
        return str(Path(file).relative_to(HERE.parent))
    return re.sub(r"^.*/lib/python3\.\d+/(site-packages/)?", "", file)


def report(live: dict[int, collections.Counter], codes: list[str], args, wall: float) -> str:
    totals = {job: sum(by_place.values()) / 2**20 for job, by_place in live.items()}
    heavy = sorted(job for job, mb in totals.items() if mb > args.heavy_mb)
    ordinary = sorted(job for job in totals if job not in heavy)
    places = collections.Counter()
    for job in ordinary:
        places.update(live[job])
    per_job_kb = [totals[job] * 1024 for job in ordinary]
    lines = [
        "# What each job of an in-process sweep leaves allocated",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"`python -m kmexp -m seed=0 language=generic language.code=<the first {len(codes)} SIB-200 codes> "
        f"logger={args.logger}` in one process, every allocation tracked by memray from job {args.first + 1} to the "
        f"end (`benchmarks/live_memory.py`, `PYTHONMALLOC=malloc`); whole sweep {wall:.0f} s with tracking.",
        "Each job's figure is what it allocated that is still allocated when the sweep ends.",
        "",
        f"- Jobs {args.first + 1}-{len(codes)}: {len(totals)}; together they leave {sum(totals.values()):.1f} MB.",
        f"- {len(ordinary)} jobs leave little: median **{statistics.median(per_job_kb):.1f} kB** per job, "
        f"max {max(per_job_kb):.1f} kB, {sum(per_job_kb) / 1024:.2f} MB in all.",
        f"- {len(heavy)} jobs leave more than {args.heavy_mb:g} MB each: "
        + (", ".join(f"job {job + 1} ({codes[job]}) {totals[job]:.1f} MB" for job in heavy) or "none") + ".",
        "",
        "Each job of the window, in order: " + ", ".join(f"{job + 1}: {totals[job] * 1024:.0f}" for job in sorted(totals))
        + " (kB).",
        "",
        f"What the {len(ordinary)} other jobs leave, by place (kB, all jobs together):",
        "",
        "| kB | where it was allocated (innermost frames ... first frame of kmexp, Hydra or W&B) |",
        "|---:|---|",
        *(f"| {size / 1024:.1f} | `{place}` |" for place, size in places.most_common(args.top)),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
