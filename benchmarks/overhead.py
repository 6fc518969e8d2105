"""Per-job overhead: ``python -m kmexp language=X`` against the same job written in plain Keras.

Five programs train the same model on the same data, each as a fresh process,
taking turns (the order rotates every repeat, so neither always runs on a warmer
disk cache or a quieter machine), and the medians are compared:

- ``plain``: ``benchmarks/plain_keras.py``, the modelling work only (features,
  linear head, Adam, early stopping on the dev loss, save, score dev and test);
- ``plain + W&B``: the same with ``--wandb``: an offline W&B run started by hand
  after the imports, per-epoch logs and a summary (what W&B costs without kmexp);
- ``plain in Hydra``: ``benchmarks/plain_in_hydra.py``, the same job as the task of
  a bare ``@hydra.main`` on kmexp's config (composed once, as kmexp does; kmexp's
  Hydra callbacks removed): what Hydra itself costs on this config, the floor
  under any job composed from kmexp's config groups;
- ``kmexp``: the default run, ``python -m kmexp language=X``: Hydra composition
  and its run folder, config checks, the W&B offline run (``logger=wandb``, the
  default: init, per-epoch logs, tables and confusion matrices, finish),
  ``metrics.json``, ``history.csv``, the backup (none in a job shorter than trainer.backup_interval_s), save, evaluation;
- ``kmexp logger=none``: the same without W&B, to show what the logger costs.

Two times per run: the whole process (subprocess wall time: interpreter start,
imports, the job, exit) and the time after imports (``plain_keras.py`` times
itself after its imports; kmexp is started through ``benchmarks/timed_kmexp.py``,
which runs ``kmexp.cli.main()`` as ``python -m kmexp`` does, with stopwatches on
the parts plain Keras does not do, reported as medians). W&B is imported lazily,
when its run starts, so its import counts after imports: it is part of what
``logger=wandb`` costs.

    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/overhead.py                  # fr, 5 repeats
    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/overhead.py --languages fr zh --repeats 3

Writes ``benchmarks/results/overhead.md``.
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

from omegaconf import OmegaConf

HERE = Path(__file__).resolve().parent
CONF = HERE.parent / "conf"

VARIANTS = ["plain", "plain + W&B", "plain in Hydra", "kmexp", "kmexp logger=none"]
# The plain variants' scripts and flags.
PLAIN = {"plain": ["plain_keras.py"], "plain + W&B": ["plain_keras.py", "--wandb"], "plain in Hydra": ["plain_in_hydra.py"]}
KMEXP_VARIANTS = [variant for variant in VARIANTS if variant.startswith("kmexp")]


def language(tag: str) -> tuple[str, str]:
    """A preset's SIB-200 code and casing locale (its tag), read from conf/language/<tag>.yaml."""
    preset = OmegaConf.load(CONF / "language" / f"{tag}.yaml")
    return preset.code, preset.tag


def run_once(variant: str, tag: str, out: Path) -> dict:
    """One fresh process: its wall time, its time after imports, and the scores it reports."""
    code, locale = language(tag)
    if variant.startswith("plain"):
        script, *flags = PLAIN[variant]
        command = [sys.executable, str(HERE / script), "--code", code, "--locale", locale, "--out", str(out), *flags]
    else:
        command = [sys.executable, str(HERE / "timed_kmexp.py"), f"language={tag}", f"hydra.run.dir={out}",
                   *variant.split()[1:]]
    # Offline W&B whatever the caller's environment says: the benchmark never talks to a server.
    env = {**os.environ, "WANDB_MODE": "offline"}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{variant} failed (exit code {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    last = json.loads(done.stdout.strip().splitlines()[-1])
    if variant.startswith("plain"):
        after_imports, parts = last["seconds"], last.get("hydra", {})
        epochs, test = last["epochs_run"], last["test"]["accuracy"]
    else:
        after_imports, parts = last["seconds_after_imports"], last["parts"]
        metrics = json.loads((out / "metrics.json").read_text())
        epochs, test = metrics["epochs_run"], metrics["test"]["accuracy"]
    return {"wall": wall, "after_imports": after_imports, "parts": parts, "epochs": epochs, "test": test}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", nargs="+", default=["fr"], help="language presets (fr, zh, ...)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each program per language")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "overhead.md")
    args = parser.parse_args()
    load_start = os.getloadavg()
    began = time.perf_counter()

    runs = {(tag, variant): [] for tag in args.languages for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for tag in args.languages:
                # Rotate the order each repeat, so that no program always runs first.
                order = VARIANTS[repeat % len(VARIANTS):] + VARIANTS[:repeat % len(VARIANTS)]
                for variant in order:
                    out = Path(tmp) / f"{tag}-{variant.replace(' ', '-').replace('=', '-')}-{repeat}"
                    result = run_once(variant, tag, out)
                    runs[tag, variant].append(result)
                    print(f"{repeat + 1}/{args.repeats} {tag} {variant:18s} wall {result['wall']:5.2f}s  "
                          f"after imports {result['after_imports']:5.2f}s  epochs {result['epochs']}  "
                          f"test {result['test']:.4f}", flush=True)

    text = report(runs, args, load_start, os.getloadavg(), time.perf_counter() - began)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}")


def report(runs: dict, args, load_start: tuple, load_end: tuple, seconds: float) -> str:
    def median(tag, variant, key):
        return statistics.median(r[key] for r in runs[tag, variant])

    lines = [
        "# Per-job overhead: kmexp's default run against the same job in plain Keras",
        "",
        f"Machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. "
        f"Load average (1, 5, 15 min) at start {_load(load_start)}, at end {_load(load_end)}; "
        f"{seconds:.0f} s in all.",
        "",
        f"Medians of {args.repeats} fresh processes per program and language, taking turns. "
        "`plain`: benchmarks/plain_keras.py; `plain + W&B`: the same with `--wandb` (an offline W&B run, by hand); "
        "`plain in Hydra`: benchmarks/plain_in_hydra.py (the same job inside a bare `@hydra.main` on kmexp's config, "
        "composed once, without kmexp's callbacks: Hydra's own part); "
        "`kmexp`: `python -m kmexp language=X` (default config, W&B offline). Ratios are to `plain`, and, whole "
        "process, to `plain + W&B`.",
        "",
        "| language | program | whole process s | ratio | ratio to plain + W&B | after imports s | ratio | epochs "
        "| test acc |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tag in args.languages:
        base_wall, base_after = median(tag, "plain", "wall"), median(tag, "plain", "after_imports")
        wandb_wall = median(tag, "plain + W&B", "wall")
        for variant in VARIANTS:
            wall, after = median(tag, variant, "wall"), median(tag, variant, "after_imports")
            epochs = sorted({r["epochs"] for r in runs[tag, variant]})
            test = sorted({round(100 * r["test"], 1) for r in runs[tag, variant]})
            lines.append(
                f"| {tag} | {variant} | {wall:.2f} | {wall / base_wall:.3f} | {wall / wandb_wall:.3f} | {after:.2f} "
                f"| {after / base_after:.3f} | {'/'.join(map(str, epochs))} | {'/'.join(map(str, test))} |"
            )
    lines += [
        "",
        "Where kmexp's time goes after imports (median seconds; `train()` and the fit include the modelling work "
        "that plain Keras does too, the other rows are kmexp's own):",
        "",
        "| language | part | " + " | ".join(KMEXP_VARIANTS) + " |",
        "|---|---|" + "---:|" * len(KMEXP_VARIANTS),
    ]
    for tag in args.languages:
        names = list(dict.fromkeys(name for v in KMEXP_VARIANTS for r in runs[tag, v] for name in r["parts"]))
        for name in names:
            cells = [statistics.median(r["parts"].get(name, 0.0) for r in runs[tag, v]) for v in KMEXP_VARIANTS]
            lines.append(f"| {tag} | {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    lines += hydra_floor(runs, args.languages)
    lines += ["", "Every run (seconds, whole process / after imports):", ""]
    for (tag, variant), results in runs.items():
        series = ", ".join(f"{r['wall']:.2f}/{r['after_imports']:.2f}" for r in results)
        lines.append(f"- {tag} {variant}: {series}")
    return "\n".join(lines) + "\n"


def hydra_floor(runs: dict, languages: list[str]) -> list[str]:
    """Hydra's own parts in ``plain in Hydra``, timed inside each process, and the ratio they alone give.

    Per process: whole / (whole - Hydra's parts), the ratio to plain Keras of a process that differs from
    it only by Hydra. Both times come from the same process, so a VM whose speed drifts between processes
    moves them together.
    """
    lines = ["", "Hydra's own parts in `plain in Hydra`, timed inside each process (median seconds), and the ratio "
             "they alone give, whole / (whole - Hydra's parts), per process:", "",
             "| language | part | s |", "|---|---|---:|"]
    for tag in languages:
        results = runs[tag, "plain in Hydra"]
        for name in results[0]["parts"]:
            lines.append(f"| {tag} | {name} | {statistics.median(r['parts'][name] for r in results):.3f} |")
        hydra = [sum(r["parts"].values()) for r in results]
        ratios = [r["wall"] / (r["wall"] - h) for r, h in zip(results, hydra)]
        lines.append(f"| {tag} | all of Hydra's parts | {statistics.median(hydra):.3f} |")
        lines.append(f"| {tag} | **ratio from Hydra alone** (median; min-max {min(ratios):.3f}-{max(ratios):.3f}) "
                     f"| **{statistics.median(ratios):.3f}** |")
    return lines


def _load(load: tuple) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


if __name__ == "__main__":
    main()
