"""Parallel sweeps: Hydra's joblib launcher with 2 workers against the in-process basic launcher, 8 jobs.

The same sweep (``seed=0..7``, one language, ``logger=none``) runs twice as a
whole process each: with Hydra's basic launcher (jobs one after another in the
sweep's process) and with ``hydra/launcher=joblib hydra.launcher.n_jobs=2``
(jobs in 2 worker processes, each importing TensorFlow once). The speedup is the
ratio of the two wall times, start-up and the end-of-sweep report included;
seconds per job come from ``rss_callback.RSSCallback`` in whichever process ran
the job. Both sweeps must reach the same dev objective for each seed.

With 2 cores, 2 workers can at best halve the time: TensorFlow already spreads
one job's ops over both cores, and each worker pays its own imports.

    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/sweep_parallel.py              # 8 jobs, 2 workers
    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/sweep_parallel.py --jobs 4 --workers 2 --repeats 2

Needs the ``parallel`` extra (hydra-joblib-launcher). Writes ``benchmarks/results/sweep_parallel.md``.
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


def sweep(launcher: list[str], jobs: int, language: str, folder: Path) -> dict:
    """One sweep as a fresh process: wall seconds, per-job records, and each seed's dev objective."""
    records = folder / "rss.jsonl"
    command = [
        sys.executable, "-m", "kmexp", "-m", f"seed={','.join(str(s) for s in range(jobs))}",
        f"language={language}", "logger=none", *launcher, f"hydra.sweep.dir={folder}/sweep",
        "+hydra.callbacks.rss._target_=rss_callback.RSSCallback", f"+hydra.callbacks.rss.out={records}",
    ]
    # Hydra imports the callback by name, in the sweep's process and in each worker.
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the sweep {' '.join(launcher) or '(basic launcher)'} failed:\n{done.stderr[-3000:]}")
    per_job = [json.loads(line) for line in records.read_text().splitlines()]
    objectives = {}
    for metrics_file in (folder / "sweep").glob("*/metrics.json"):
        metrics = json.loads(metrics_file.read_text())
        objectives[metrics["seed"]] = metrics["objective"]["value"]
    return {"wall": wall, "jobs": per_job, "objectives": objectives}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--language", default="fr")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each sweep, taking turns")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sweep_parallel.md")
    args = parser.parse_args()
    load_start = os.getloadavg()
    launchers = {
        "basic (in-process)": [],
        f"joblib, {args.workers} workers": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.workers}"],
    }

    results = {name: [] for name in launchers}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            # Alternate which launcher goes first, so neither always meets a warmer cache.
            names = list(launchers) if repeat % 2 == 0 else list(reversed(launchers))
            for name in names:
                folder = Path(tmp) / f"{repeat}-{len(results[name])}-{name.split()[0].strip(',')}"
                result = sweep(launchers[name], args.jobs, args.language, folder)
                results[name].append(result)
                print(f"{repeat + 1}/{args.repeats} {name}: {result['wall']:.1f} s", flush=True)

    text = report(results, args, load_start, os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}")


def report(results: dict, args, load_start: tuple, load_end: tuple) -> str:
    basic, parallel = list(results)
    wall = {name: statistics.median(r["wall"] for r in runs) for name, runs in results.items()}
    same = all(r["objectives"] == results[basic][0]["objectives"] for runs in results.values() for r in runs)
    lines = [
        "# Parallel sweep: joblib launcher against the in-process basic launcher",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. Load average (1, 5, 15 min) at start "
        f"{_load(load_start)}, at end {_load(load_end)}.",
        "",
        f"`python -m kmexp -m seed=0,...,{args.jobs - 1} language={args.language} logger=none`, "
        f"each launcher run {args.repeats} time(s) as a whole process (start-up and the sweep report included).",
        "",
        "| launcher | wall s (median) | speedup | seconds per job (median) | processes that ran jobs |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        per_job = statistics.median(job["seconds"] for r in runs for job in r["jobs"])
        workers = statistics.median(len({job["pid"] for job in r["jobs"]}) for r in runs)
        lines.append(f"| {name} | {wall[name]:.1f} | {wall[basic] / wall[name]:.2f}x | {per_job:.2f} | {workers:.0f} |")
    lines += [
        "",
        f"- Speedup of {parallel} over {basic}: **{wall[basic] / wall[parallel]:.2f}x** on {os.cpu_count()} cores.",
        f"- Same dev objective for every seed under both launchers: {'yes' if same else 'NO'}.",
        "- Every wall time (s): " + "; ".join(
            name + ": " + ", ".join(f"{r['wall']:.1f}" for r in runs) for name, runs in results.items()
        ) + ".",
    ]
    return "\n".join(lines) + "\n"


def _load(load: tuple) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


if __name__ == "__main__":
    main()
