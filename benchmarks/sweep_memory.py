"""Memory and time of an in-process sweep: resident memory after each job, all jobs in one process.

Runs one multirun with Hydra's basic launcher, which runs every job in the
sweep's own process, so anything a job leaves behind (Keras state, traced
functions, datasets) accumulates there. ``rss_callback.RSSCallback`` records
VmRSS, the job's seconds and the compiled networks the process keeps as each job
ends. The result: the series, and the least-squares slope of resident memory
(MB per job), which should be flat once the process has loaded TensorFlow's
kernels and caches and filled its bounded caches.

Two kinds of sweep:

- seeds of one language (the default: ``-m seed=0,...,19 language=fr logger=none``);
- ``--languages N``: the first N SIB-200 languages (``language=generic``), gone over
  ``--passes`` times in one process (``-m seed=0,...,P-1 language.code=<N codes>``:
  the seed is the outer loop, so each pass meets every language once). A first
  pass meets each language for the first time; a second pass shows whether a
  job leaves anything behind, or whether the first pass's growth came with the
  languages it met. ``--order`` sets the order a pass meets them in: ``sib200``
  (by code), ``preset`` (as ``+sweep=sib200_all`` runs them: the languages written
  without spaces first) or ``most-ngrams-first`` (the most distinct character
  1-5-grams in the training text first, read from ``KMEXP_DATA_DIR``: the widest
  vocabularies, the heaviest jobs).

The report splits the growth into its parts: anonymous memory and mapped files,
glibc's heap used and free, and the variables and optimizer slots of the kept
networks, which grow when a wider network replaces a narrower one.

    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/sweep_memory.py              # 20 jobs: seed=0..19, fr
    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/sweep_memory.py --jobs 5 -- encoder=onehot
    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/sweep_memory.py --languages 205 --passes 2 --logger wandb \\
        --out benchmarks/results/sweep_memory_205x2.md

``--allocator`` runs the sweep's process on another memory allocator, to tell
memory that jobs hold from memory an allocator keeps: ``glibc`` (the default),
``glibc-one-arena`` (``MALLOC_ARENA_MAX=1``), ``glibc-mmap-128k`` (large blocks in
maps of their own from 128 kB up, ``MALLOC_MMAP_THRESHOLD_``), ``tensorflow-bfc`` (TensorFlow's
own pooling allocator for its CPU tensors, ``TF_CPU_ALLOCATOR_USE_BFC=true``),
``python-on-glibc`` (Python's objects from glibc's malloc rather than Python's own
arenas, ``PYTHONMALLOC=malloc``), or
``jemalloc`` (the ``libjemalloc.so`` that Ray's wheel carries, ``pip install
'kmexp[ray]'``, put in front with ``LD_PRELOAD`` and told to hand freed pages back
at once). With glibc the report also splits the growth into the heap's used and
free bytes.

The callback goes on ``PYTHONPATH`` (``benchmarks/``). Writes ``benchmarks/results/sweep_memory.md``
unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import csv
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

from kmexp.languages import sib200_codes, sib200_sweep_order
from rss_callback import last_network_added  # benchmarks/, the folder this script runs from

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20, help="jobs in the sweep (seeds 0..jobs-1)")
    parser.add_argument("--language", default="fr")
    parser.add_argument("--languages", type=int, default=None, help="sweep the first N SIB-200 languages instead")
    parser.add_argument("--passes", type=int, default=1, help="with --languages: times over the languages")
    parser.add_argument("--order", choices=sorted(ORDERS), default="sib200",
                        help="with --languages: the order of the languages in each pass (below)")
    parser.add_argument("--logger", default="none", help="kmexp logger (none, csv, wandb)")
    parser.add_argument("--allocator", choices=sorted(ALLOCATORS), default="glibc",
                        help="the memory allocator of the sweep's process (above)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sweep_memory.md")
    parser.add_argument("overrides", nargs="*", help="more kmexp overrides, after --")
    args = parser.parse_args()
    load_start = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        records = Path(tmp) / "rss.jsonl"
        command = [
            sys.executable, "-m", "kmexp", "-m", *sweep_arguments(args),
            f"logger={args.logger}", *args.overrides, f"hydra.sweep.dir={tmp}/sweep",
            "+hydra.callbacks.rss._target_=rss_callback.RSSCallback", f"+hydra.callbacks.rss.out={records}",
        ]
        # Hydra imports the callback by name: benchmarks/ on the path of the sweep's process only.
        path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path, "WANDB_MODE": "offline", **ALLOCATORS[args.allocator]()}
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


def _jemalloc() -> dict[str, str]:
    """Ray's bundled jemalloc in front of glibc's malloc; freed pages go back to the OS at once (no decay)."""
    import importlib.util

    ray = importlib.util.find_spec("ray")
    library = Path(ray.origin).parent / "core" / "libjemalloc.so" if ray is not None else None
    if library is None or not library.is_file():
        raise SystemExit("--allocator jemalloc: no libjemalloc.so in Ray's package; pip install 'kmexp[ray]'")
    return {"LD_PRELOAD": str(library), "MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0"}


# --allocator: the environment each gives the sweep's process.
ALLOCATORS = {
    "glibc": dict,
    "glibc-one-arena": lambda: {"MALLOC_ARENA_MAX": "1"},
    # A fixed threshold: glibc otherwise raises it (up to 32 MB) each time a large block is freed, so later
    # large blocks go into the heap among small ones instead of maps of their own, returned when freed.
    "glibc-mmap-128k": lambda: {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)},
    "tensorflow-bfc": lambda: {"TF_CPU_ALLOCATOR_USE_BFC": "true"},
    "python-on-glibc": lambda: {"PYTHONMALLOC": "malloc"},
    "jemalloc": _jemalloc,
}


def sweep_arguments(args) -> list[str]:
    """The sweep's own overrides: seeds of one language, or passes over the first N SIB-200 languages."""
    if args.languages is None:
        return [f"seed={','.join(str(seed) for seed in range(args.jobs))}", f"language={args.language}"]

    first = set(sib200_codes()[: args.languages])
    codes = [code for code in ORDERS[args.order]() if code in first]
    seeds = ",".join(str(seed) for seed in range(args.passes))
    return [f"seed={seeds}", "language=generic", f"language.code={','.join(codes)}"]


def _most_ngrams_first() -> list[str]:
    return sorted(sib200_codes(), key=distinct_ngrams, reverse=True)


# --order: the order in which a pass meets the first N languages.
ORDERS = {
    "sib200": sib200_codes,  # by code
    "preset": sib200_sweep_order,  # as +sweep=sib200_all: the languages written without spaces first
    "most-ngrams-first": _most_ngrams_first,  # the widest vocabularies, the heaviest jobs, first
}


def distinct_ngrams(code: str) -> int:
    """Distinct character 1-5-grams within the space-padded words of a language's training text, from the
    SIB-200 copy at KMEXP_DATA_DIR: a measure of how wide its vocabulary, and how heavy its job, is."""
    path = Path(os.environ["KMEXP_DATA_DIR"]) / code / "train.tsv"
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        words = {word for row in rows for word in row["text"].lower().split()}
    return len({f" {word} "[i : i + n] for word in words for n in range(1, 6) for i in range(len(word) + 3 - n)})


def slope(ys: list[float]) -> float:
    """Least-squares slope of ys against 0, 1, 2, ... (units of y per step)."""
    xs = range(len(ys))
    x_mean, y_mean = statistics.mean(xs), statistics.mean(ys)
    return sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys)) / sum((x - x_mean) ** 2 for x in xs)


def report(jobs: list[dict], args, wall: float, load_start: tuple, load_end: tuple) -> str:
    rss = [job["rss_mb"] for job in jobs]
    seconds = [job["seconds"] for job in jobs]
    after_second = rss[2:]
    shown = sweep_arguments(args)
    if args.languages is not None:
        order = {"sib200": "", "preset": ", in the order of +sweep=sib200_all",
                 "most-ngrams-first": ", the most distinct character 1-5-grams first"}[args.order]
        shown[-1] = f"language.code=<the first {args.languages} SIB-200 codes{order}>"
    lines = [
        "# In-process sweep: resident memory and seconds per job",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. Load average (1, 5, 15 min) at start "
        f"{_load(load_start)}, at end {_load(load_end)}.",
        "",
        f"`python -m kmexp -m {' '.join(shown)} logger={args.logger} "
        f"{' '.join(args.overrides)}`".replace(" `", "`") + " with Hydra's basic launcher (every job in one process); "
        f"VmRSS read as each job ends; memory allocator: {args.allocator} "
        f"({' '.join(f'{k}={v}' for k, v in ALLOCATORS[args.allocator]().items()) or 'as the process starts'}).",
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
        *pass_lines(jobs, args),
        "",
        "| job | resident MB | anonymous MB | mapped files MB | kept networks' variables MB | seconds |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {job['job'] + 1} | {job['rss_mb']:.0f} | {job.get('anon_mb', float('nan')):.0f} "
        f"| {job.get('file_mb', float('nan')):.0f} | {_or_nan(job.get('kept_mb')):.1f} | {job['seconds']:.2f} |"
        for job in jobs
    ]
    return "\n".join(lines) + "\n"


def pass_lines(jobs: list[dict], args) -> list[str]:
    """Per pass over the languages: its memory growth, the first pass's from its last added kept network on.

    The compiled networks the process keeps (``kmexp.training.kept``) hold memory by design, up to a
    bound: the first pass's slope starts after the last one was added.
    """
    if args.languages is None:
        return []
    last_added = last_network_added(jobs)
    if last_added is None:
        return ["- Kept networks: not recorded."]
    lines = [
        f"- Compiled networks kept for later jobs: {jobs[-1]['kept_networks']} at the end, "
        f"the last one added at job {last_added + 1}."
    ]
    for number in range(args.passes):
        first, end = number * args.languages, (number + 1) * args.languages
        start = max(first, last_added + 1)
        rss = [job["rss_mb"] for job in jobs[start:end]]
        if len(rss) < 10:
            lines.append(f"- Pass {number + 1} (jobs {first + 1}-{end}): too few jobs after the last kept network.")
            continue
        lines.append(
            f"- Pass {number + 1} over the {args.languages} languages, jobs {start + 1}-{end}: "
            f"**{slope(rss):+.3f} MB/job**; {rss[0]:.0f} MB at job {start + 1}, {rss[-1]:.0f} MB at job {end}, "
            f"max {max(rss):.0f} MB; of that, anonymous memory {_part_slope(jobs[start:end], 'anon_mb')} "
            f"(glibc's heap: used {_part_slope(jobs[start:end], 'heap_used_mb')}, free "
            f"{_part_slope(jobs[start:end], 'heap_free_mb')}) and pages of mapped files "
            f"{_part_slope(jobs[start:end], 'file_mb')}; the kept networks' variables "
            f"{_part_slope(jobs[start:end], 'kept_mb')}, and resident memory without them "
            f"{_rest_slope(jobs[start:end])}."
        )
    return lines


def _part_slope(jobs: list[dict], part: str) -> str:
    """The slope of one recorded part of memory (RssAnon, RssFile, glibc's heap used or free, the kept
    networks' variables), in MB per job."""
    return f"{slope([job[part] for job in jobs]):+.3f} MB/job" if part in jobs[0] else "n/a"


def _rest_slope(jobs: list[dict]) -> str:
    """The slope of the resident memory less the kept networks' variables, in MB per job."""
    if "kept_mb" not in jobs[0]:
        return "n/a"
    return f"{slope([job['rss_mb'] - job['kept_mb'] for job in jobs]):+.3f} MB/job"


def _or_nan(value: float | None) -> float:
    """A recorded figure, or NaN for one not recorded (before a job loaded TensorFlow)."""
    return float("nan") if value is None else value


def _load(load: tuple) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


if __name__ == "__main__":
    main()
