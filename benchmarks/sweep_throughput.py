"""Sweep throughput: kmexp's language sweeps against the scikit-learn reference loop, timed in one run.

Each program runs as a whole process (imports, start-up and, for kmexp, the
end-of-sweep report included), one after another on this machine:

1. the reference loop over the languages (``reference_svm.py DATA codes...``), before
   the kmexp sweeps and again after them: the ratios are to the mean of the two, so a
   machine that changes speed during the run (a shared VM) weighs on both sides;
2. ``python -m kmexp -m +sweep=sib200_all`` (the default config, W&B offline on),
   in one process (Hydra's basic launcher);
3. the same sweep with ``hydra/launcher=joblib hydra.launcher.n_jobs=2``;
4. ``+sweep=locales`` (the 26 language presets), between two reference loops over those languages.

Per job, ``rss_callback.RSSCallback`` records the seconds Hydra's job took and the
resident memory of the process that ran it, and ``metrics.json`` where the seconds
went (``seconds``: prepare, train, save, evaluate, total). The report gives the wall
times and their ratios to the reference, the speedup of 2 workers, the memory per
job of the in-process sweep, the per-phase medians, and whether both launchers
reached the same scores.

    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/sweep_throughput.py                  # all 205 (~15 min)
    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/sweep_throughput.py --languages 24   # the first 24 codes

Needs the ``dev`` (scikit-learn) and ``parallel`` (joblib launcher) extras.
Writes ``benchmarks/results/sweep_throughput.md``.
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

from rss_callback import last_network_added  # benchmarks/, the folder this script runs from

HERE = Path(__file__).resolve().parent
PHASES = ("prepare", "train", "save", "evaluate")


def timed(command: list[str], env: dict | None = None) -> tuple[float, str]:
    """Wall seconds of one process, and its stdout; a failure stops the benchmark."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"sweep_throughput.py: {' '.join(command[:6])} ... failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def reference_loop(root: Path, codes: list[str]) -> float:
    seconds, _ = timed([sys.executable, str(HERE / "reference_svm.py"), str(root), *codes])
    return seconds


def kmexp_sweep(arguments: list[str], folder: Path) -> dict:
    """One sweep as a fresh process: wall seconds, one row per job (Hydra's seconds, memory, metrics.json)."""
    records = folder / "rss.jsonl"
    command = [
        sys.executable, "-m", "kmexp", "-m", *arguments, f"hydra.sweep.dir={folder}/sweep",
        "+hydra.callbacks.rss._target_=rss_callback.RSSCallback", f"+hydra.callbacks.rss.out={records}",
    ]
    # Hydra imports the callback by name, in the sweep's process and in each worker.
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    wall, _ = timed(command, env={**os.environ, "PYTHONPATH": path})
    jobs = []
    for line in records.read_text(encoding="utf-8").splitlines():
        job = json.loads(line)
        metrics = json.loads((folder / "sweep" / str(job["job"]) / "metrics.json").read_text(encoding="utf-8"))
        assert metrics["status"] == "completed", metrics.get("error")
        jobs.append({**job, "code": metrics["language"]["code"], "phases": metrics["seconds"],
                     "test": metrics["test"]["accuracy"], "dev": metrics["objective"]["value"]})
    return {"wall": wall, "jobs": sorted(jobs, key=lambda job: job["job"])}


def locales_codes() -> list[str]:
    """The SIB-200 codes of the languages that ``+sweep=locales`` runs, in its order."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from kmexp.config import register_configs
    from kmexp.paths import config_dir

    register_configs()
    tags = OmegaConf.load(config_dir() / "sweep" / "locales.yaml").hydra.sweeper.params.language.split(",")
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return [compose("config", overrides=[f"language={tag}"]).language.code for tag in tags]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", type=int, default=None, help="only the first N of the 205 codes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sweep_throughput.md")
    args = parser.parse_args()
    root = Path(os.environ["KMEXP_DATA_DIR"])

    from kmexp.languages import sib200_codes

    codes = sib200_codes()[: args.languages]
    languages = ["+sweep=sib200_all"] if args.languages is None else ["language=generic", f"language.code={','.join(codes)}"]
    load_start = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results["reference"] = [reference_loop(root, codes)]
        print(f"reference loop, {len(codes)} languages: {results['reference'][0]:.1f} s", flush=True)
        results["basic"] = kmexp_sweep(languages, tmp / "basic")
        print(f"kmexp sweep, in process: {results['basic']['wall']:.1f} s", flush=True)
        results["joblib"] = kmexp_sweep(
            [*languages, "hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.workers}"], tmp / "joblib"
        )
        print(f"kmexp sweep, joblib x{args.workers}: {results['joblib']['wall']:.1f} s", flush=True)
        results["reference"].append(reference_loop(root, codes))
        print(f"reference loop again: {results['reference'][1]:.1f} s", flush=True)
        preset_codes = locales_codes()
        results["locales_reference"] = [reference_loop(root, preset_codes)]
        results["locales"] = kmexp_sweep(["+sweep=locales"], tmp / "locales")
        results["locales_reference"].append(reference_loop(root, preset_codes))
        print(f"26 presets: kmexp {results['locales']['wall']:.1f} s, reference {results['locales_reference']} s")

    text = report(results, codes, args.workers, load_start, os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {args.out}")


def report(results: dict, codes: list[str], workers: int, load_start: tuple, load_end: tuple) -> str:
    basic, joblib, locales = results["basic"], results["joblib"], results["locales"]
    n = len(codes)
    # The reference loops ran before and after the sweeps they are compared with: their mean is the baseline.
    ref, ref26 = statistics.mean(results["reference"]), statistics.mean(results["locales_reference"])
    refs, refs26 = (" and ".join(f"{s:.1f}" for s in results[key]) for key in ("reference", "locales_reference"))
    same = {job["code"]: job["test"] for job in basic["jobs"]} == {job["code"]: job["test"] for job in joblib["jobs"]}
    rss = [job["rss_mb"] for job in basic["jobs"]]
    slope = _slope(rss[1:])  # after the first job, which loads TensorFlow and builds the first graphs
    lines = [
        "# Sweep throughput: kmexp's language sweeps against the scikit-learn reference loop",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. Load average (1, 5, 15 min) at start "
        f"{_load(load_start)}, at end {_load(load_end)}. `benchmarks/sweep_throughput.py`; every program a whole "
        "process (imports, start-up and kmexp's end-of-sweep report included), run one after another.",
        "",
        "| program | jobs | wall s | s per job | ratio to the reference loop |",
        "|---|---:|---:|---:|---:|",
        f"| reference loop (scikit-learn char n-gram SVM), mean of the runs before and after ({refs} s) | {n} | "
        f"{ref:.1f} | {ref / n:.2f} | 1.00 |",
        f"| kmexp sweep, default config, W&B offline, in one process | {n} | {basic['wall']:.1f} | "
        f"{basic['wall'] / n:.2f} | **{basic['wall'] / ref:.2f}** |",
        f"| the same, `hydra/launcher=joblib hydra.launcher.n_jobs={workers}` | {n} | {joblib['wall']:.1f} | "
        f"{joblib['wall'] / n:.2f} | **{joblib['wall'] / ref:.2f}** |",
        f"| reference loop over the 26 presets' languages, before and after ({refs26} s) | 26 | {ref26:.1f} | "
        f"{ref26 / 26:.2f} | 1.00 |",
        f"| `+sweep=locales` (26 presets), in one process | 26 | {locales['wall']:.1f} | {locales['wall'] / 26:.2f} | "
        f"**{locales['wall'] / ref26:.2f}** |",
        "",
        f"- {workers} workers against one process: **{basic['wall'] / joblib['wall']:.2f}x** faster "
        f"({os.cpu_count()} cores; each worker runs TensorFlow on its share of the cores).",
        f"- Same test accuracy for every language under both launchers: {'yes' if same else 'NO'}.",
        f"- Memory of the in-process sweep: {rss[0]:.0f} MB after job 1, {rss[-1]:.0f} MB after job {n} "
        f"(max {max(rss):.0f}); **{slope:+.2f} MB per job** (least squares over jobs 2-{n}).",
        _after_kept_networks(basic["jobs"]),
        f"- Mean test accuracy: {statistics.mean(job['test'] for job in basic['jobs']) * 100:.2f} over the {n} languages.",
        "",
        "Where a job's seconds go (medians over the in-process sweep's jobs; `metrics.json` `seconds`, and Hydra's job "
        "time from the callback):",
        "",
        "| phase | median s |",
        "|---|---:|",
    ]
    jobs = basic["jobs"][1:]  # the first job pays for TensorFlow's import
    # Earlier kmexp recorded only the fit (train) and the total: its other phases read as "-".
    known = [phase for phase in PHASES if all(phase in job["phases"] for job in jobs)]
    for phase in PHASES:
        median = statistics.median(job["phases"][phase] for job in jobs) if phase in known else None
        lines.append(f"| {phase} | {'-' if median is None else f'{median:.3f}'} |")
    rest = [job["phases"]["total"] - sum(job["phases"][p] for p in known) for job in jobs]
    outside = [job["seconds"] - job["phases"]["total"] for job in jobs]
    lines += [
        f"| rest of `train()`{'' if len(known) == len(PHASES) else ' (phases not recorded included)'}: records, "
        f"config checks, logger start, summary and finish | {statistics.median(rest):.3f} |",
        f"| `train()` in all (`seconds.total`) | {statistics.median(job['phases']['total'] for job in jobs):.3f} |",
        f"| outside `train()`: Hydra's job set-up and saved configs, Keras' session reset, progress line | "
        f"{statistics.median(outside):.3f} |",
        f"| the job, as Hydra ran it | {statistics.median(job['seconds'] for job in jobs):.3f} |",
        "",
        "Per-language test accuracy (in one process): " + ", ".join(
            f"{job['code']} {job['test'] * 100:.1f}" for job in basic["jobs"]
        ) + ".",
        "",
    ]
    return "\n".join(lines)


def _after_kept_networks(jobs: list[dict]) -> str:
    """The memory growth once the compiled networks the process keeps (``kmexp.training.kept``) stopped growing.

    Each kept network holds its variables, optimizer slots and traced step, by design and up to a bound:
    the growth that goes on after the last one was added is what a longer sweep would add.
    """
    last = last_network_added(jobs)
    if last is None:
        return "- Kept networks: not recorded."
    rss = [job["rss_mb"] for job in jobs[last + 1 :]]
    growth = f"**{_slope(rss):+.2f} MB per job** over jobs {last + 2}-{len(jobs)}" if len(rss) >= 10 else "too few jobs left"
    return (
        f"- Compiled networks kept for later jobs: {jobs[-1]['kept_networks']} at the end, the last one added at job {last + 1} "
        f"({jobs[last]['rss_mb']:.0f} MB then). After it: {growth}."
    )


def _slope(values: list[float]) -> float:
    """Least-squares slope of values against their index."""
    if len(values) < 2:
        return 0.0
    xs = range(len(values))
    mean_x, mean_y = statistics.mean(xs), statistics.mean(values)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, values)) / sum((x - mean_x) ** 2 for x in xs)


def _load(load: tuple) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


if __name__ == "__main__":
    main()
