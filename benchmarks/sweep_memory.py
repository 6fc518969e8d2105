"""Memory and time of an in-process sweep: resident memory after each of 20 jobs in one process.

Runs one multirun with Hydra's basic launcher, which runs every job in the
sweep's own process, so anything a job leaves behind (Keras state, traced
functions, datasets) accumulates there. ``rss_callback.RSSCallback`` records
VmRSS and the job's seconds as each job ends. The result: the series, and the
least-squares slope of resident memory over jobs 3..N (MB per job), which should
be flat: the first jobs load TensorFlow's kernels and caches once.

    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/sweep_memory.py              # 20 jobs: seed=0..19, fr
    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/sweep_memory.py --jobs 5 -- encoder=onehot

The sweep run is ``python -m kmexp -m seed=0,...,19 language=fr logger=none`` plus
the callback (``PYTHONPATH=benchmarks``). Writes ``benchmarks/results/sweep_memory.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20, help="jobs in the sweep (seeds 0..jobs-1)")
    parser.add_argument("--language", default="fr")
    parser.add_argument("--logger", default="none", help="kmexp logger (none, csv, wandb)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sweep_memory.md")
    parser.add_argument("overrides", nargs="*", help="more kmexp overrides, after --")
    args = parser.parse_args()
    load_start = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        records = Path(tmp) / "rss.jsonl"
        seeds = ",".join(str(seed) for seed in range(args.jobs))
        command = [
            sys.executable, "-m", "kmexp", "-m", f"seed={seeds}", f"language={args.language}",
            f"logger={args.logger}", *args.overrides, f"hydra.sweep.dir={tmp}/sweep",
            "+hydra.callbacks.rss._target_=rss_callback.RSSCallback", f"+hydra.callbacks.rss.out={records}",
        ]
        # Hydra imports the callback by name: benchmarks/ on the path of the sweep's process only.
        path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path, "WANDB_MODE": "offline"}
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"the sweep failed:\n{done.stderr[-3000:]}")
        jobs = sorted((json.loads(line) for line in records.read_text().splitlines()), key=lambda r: r["job"])

    text = report(jobs, args, wall, load_start, os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}")


def slope(ys: list[float]) -> float:
    """Least-squares slope of ys against 0, 1, 2, ... (units of y per step)."""
    xs = range(len(ys))
    x_mean, y_mean = statistics.mean(xs), statistics.mean(ys)
    return sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys)) / sum((x - x_mean) ** 2 for x in xs)


def report(jobs: list[dict], args, wall: float, load_start: tuple, load_end: tuple) -> str:
    rss = [job["rss_mb"] for job in jobs]
    seconds = [job["seconds"] for job in jobs]
    after_second = rss[2:]
    lines = [
        "# In-process sweep: resident memory and seconds per job",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. Load average (1, 5, 15 min) at start "
        f"{_load(load_start)}, at end {_load(load_end)}.",
        "",
        f"`python -m kmexp -m seed=0,...,{len(jobs) - 1} language={args.language} logger={args.logger} "
        f"{' '.join(args.overrides)}`".replace(" `", "`") + " with Hydra's basic launcher (every job in one process); "
        "VmRSS read as each job ends.",
        "",
        f"- Jobs: {len(jobs)}, all in process {sorted({job['pid'] for job in jobs})}; "
        f"whole sweep {wall:.1f} s (start-up and the end-of-sweep report included).",
        f"- Seconds per job: median {statistics.median(seconds):.2f}, first {seconds[0]:.2f}, "
        f"min {min(seconds):.2f}, max {max(seconds):.2f}.",
        f"- Resident memory: {rss[0]:.0f} MB after job 1, {rss[1]:.0f} MB after job 2, {rss[-1]:.0f} MB after "
        f"job {len(jobs)}; max {max(rss):.0f} MB.",
        f"- Slope after job 2 (least squares over jobs 3..{len(jobs)}): "
        + (f"**{slope(after_second):+.2f} MB/job**" if len(after_second) > 1 else "n/a (too few jobs)")
        + f"; change from job 2 to job {len(jobs)}: {rss[-1] - rss[1]:+.0f} MB.",
        "",
        "| job | resident MB | seconds |",
        "|---:|---:|---:|",
    ]
    lines += [f"| {job['job'] + 1} | {job['rss_mb']:.0f} | {job['seconds']:.2f} |" for job in jobs]
    return "\n".join(lines) + "\n"


def _load(load: tuple) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


if __name__ == "__main__":
    main()
