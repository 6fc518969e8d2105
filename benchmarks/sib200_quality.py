"""Quality and speed on SIB-200: kmexp's config against the scikit-learn reference, in one run.

For each language, trains kmexp (the default config plus any overrides given)
and the reference, a scikit-learn character n-gram SVM (char_wb 1-5-gram
sublinear TF-IDF + LinearSVC(C=0.5), ``benchmarks/reference_svm.py``), on the
same machine, and writes a markdown table: test accuracy of each, the
difference, and seconds for each (fit plus evaluate, after imports). Reads
SIB-200 from ``KMEXP_DATA_DIR``.

    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/sib200_quality.py            # the 26 presets
    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/sib200_quality.py --all      # all 205
    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/sib200_quality.py --languages fr zh -- encoder=onehot   # overrides after --
    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/sib200_quality.py --all --seeds 3    # mean of seeds 0, 1, 2
    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/sib200_quality.py --all --every 5   # screening: every 5th language

With ``--seeds N`` each language is trained with ``seed=0`` ... ``seed=N-1``;
the table shows the mean over seeds, and the summary the mean over languages
with a 95% t-interval over the N seeds' means. A difference from the reference
smaller than the noise of a test split of n sentences (1.96 binomial standard
errors of a difference of two accuracies, sqrt(2 p (1 - p) / n)) is shown in
brackets. ``--every K`` keeps every K-th language of the list, for quick
screening of settings on dev: its means are not comparable with a run over all
languages.
"""

from __future__ import annotations

import argparse
import os
import platform
import math
import statistics
import tempfile
import time
from pathlib import Path

import keras
import pandas as pd
from hydra import compose, initialize_config_dir

from kmexp.config import register_configs
from kmexp.data import sib200_codes
from kmexp.paths import config_dir, group_options
from kmexp.train import train
from scipy import stats

from reference_svm import reference_run  # benchmarks/reference_svm.py: benchmarks run as scripts, this folder is on sys.path

HERE = Path(__file__).resolve().parent


def preset_languages() -> list[str]:
    # generic and multi are not one language: generic needs a code, multi trains on several.
    return [tag for tag in group_options("language") if tag not in ("generic", "multi")]


def kmexp_run(language: list[str], overrides: list[str], run_dir: Path) -> tuple[float, float, float]:
    """Dev accuracy, test accuracy and seconds (fit plus evaluate) of one kmexp run."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[*language, "logger=none", *overrides])
    keras.backend.clear_session()  # each language starts from a clean Keras state
    started = time.perf_counter()
    record = train(cfg, run_dir, overrides)
    return record.dev["accuracy"], record.test["accuracy"], time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="all 205 SIB-200 languages")
    parser.add_argument("--languages", nargs="*", help="preset tags (fr, zh, ...) or SIB-200 codes")
    parser.add_argument("--encoders", nargs="*", help="instead: a language x encoder table of test accuracy")
    parser.add_argument("--seeds", type=int, default=1, help="train each language with seeds 0..N-1 and report means")
    parser.add_argument("--every", type=int, default=1, help="screening only: keep every K-th language")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sib200_quality.md")
    parser.add_argument("overrides", nargs="*", help="kmexp config overrides, after --")
    args = parser.parse_args()
    root = Path(os.environ["KMEXP_DATA_DIR"])
    register_configs()

    if args.all:
        languages = [(code, ["language=generic", f"language.code={code}"]) for code in sib200_codes()]
    else:
        tags = args.languages or preset_languages()
        languages = [_language(tag) for tag in tags]
    languages = languages[:: args.every]

    if args.encoders:
        args.out.write_text(encoder_matrix(root, languages, args.encoders, args.overrides))
        print(f"wrote {args.out}")
        return
    seeds = [[]] if args.seeds == 1 else [[f"seed={k}"] for k in range(args.seeds)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (code, language) in enumerate(languages):
            runs = [kmexp_run(language, [*args.overrides, *seed], Path(tmp) / f"{i}-{k}") for k, seed in enumerate(seeds)]
            ref, ref_s = reference_run(root, code)
            dev, ours, ours_s = (list(values) for values in zip(*runs))
            n = len(pd.read_csv(root / code / "test.tsv", sep="\t"))
            rows.append({"language": code, "dev": dev, "kmexp": ours, "reference": ref, "ours_s": ours_s, "ref_s": ref_s, "n": n})
            print(
                f"{i + 1}/{len(languages)} {code}: dev {statistics.mean(dev):.4f} kmexp {statistics.mean(ours):.4f} "
                f"({statistics.mean(ours_s):.1f}s)  reference {ref:.4f} ({ref_s:.2f}s)",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(rows, args.overrides, args.every))
    print(f"wrote {args.out}")


def encoder_matrix(root: Path, languages: list, encoders: list[str], overrides: list[str]) -> str:
    """Test accuracy of each encoder in each language, beside the reference."""
    header = "| language | reference | " + " | ".join(encoders) + " |"
    lines = [
        "# SIB-200 test accuracy by language and encoder",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores. Each cell: kmexp's default config with that "
        f"encoder{' and ' + ' '.join(overrides) if overrides else ''}; seconds per run in brackets.",
        "",
        header,
        "|---|---:|" + "---:|" * len(encoders),
    ]
    totals = {encoder: [] for encoder in ["reference", *encoders]}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (code, language) in enumerate(languages):
            ref, _ = reference_run(root, code)
            totals["reference"].append(ref)
            cells = []
            for encoder in encoders:
                _, test, seconds = kmexp_run(language, [*overrides, f"encoder={encoder}"], Path(tmp) / f"{i}-{encoder}")
                totals[encoder].append(test)
                cells.append(f"{100 * test:.1f} ({seconds:.0f}s)")
                print(f"{code} {encoder}: {test:.4f} ({seconds:.1f}s)", flush=True)
            lines.append(f"| {code} | {100 * ref:.1f} | " + " | ".join(cells) + " |")
    means = " | ".join(f"{100 * statistics.mean(totals[e]):.1f}" for e in encoders)
    lines.append(f"| **mean** | {100 * statistics.mean(totals['reference']):.1f} | {means} |")
    return "\n".join(lines) + "\n"


def _language(tag: str) -> tuple[str, list[str]]:
    if "_" in tag:  # a SIB-200 code
        return tag, ["language=generic", f"language.code={tag}"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        code = compose("config", overrides=[f"language={tag}"]).language.code
    return code, [f"language={tag}"]


def report(rows: list[dict], overrides: list[str], every: int) -> str:
    """Markdown: one row per language (means over seeds), then the means, intervals and counts."""
    seeds = len(rows[0]["kmexp"])
    subset = f" Screening: every {every}th language only." if every > 1 else ""
    lines = [
        "# SIB-200 test accuracy: kmexp vs the scikit-learn char n-gram SVM reference",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}; "
        f"kmexp overrides: {' '.join(overrides) or '(default config)'}; "
        f"{'seed 0' if seeds == 1 else f'mean of seeds 0-{seeds - 1}'}.{subset}",
        "Seconds: fit plus evaluate, after imports, both measured in this run. A difference in brackets is "
        "within the noise of the test split (|difference| < 1.96 sqrt(2 p (1 - p) / n)).",
        "",
        "| language | kmexp | reference | difference | kmexp s | reference s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ours, diff = statistics.mean(r["kmexp"]), _difference(r)
        shown = f"{100 * diff:+.1f}" if abs(diff) >= _noise(r) else f"({100 * diff:+.1f})"
        lines.append(
            f"| {r['language']} | {100 * ours:.1f} | {100 * r['reference']:.1f} | {shown} | "
            f"{statistics.mean(r['ours_s']):.1f} | {r['ref_s']:.2f} |"
        )
    worst = min(rows, key=_difference)
    ref_mean = 100 * statistics.mean(r["reference"] for r in rows)
    time_ratio = statistics.median(statistics.mean(r["ours_s"]) / r["ref_s"] for r in rows)
    below = [sum(_difference(r) < -limit for r in rows) for limit in (0.025, 0.05)]
    within = sum(abs(_difference(r)) < _noise(r) for r in rows)
    lines += [
        "",
        f"- Mean test accuracy over {len(rows)} languages: kmexp {_mean_over_seeds(rows, 'kmexp')}, "
        f"reference {ref_mean:.2f}. kmexp's mean dev accuracy (what settings are chosen on): "
        f"{_mean_over_seeds(rows, 'dev')}.",
        f"- Worst language against the reference: {worst['language']} ({100 * _difference(worst):+.1f} points).",
        f"- Languages more than 2.5 points below the reference: {below[0]}; more than 5 below: {below[1]}; "
        f"difference within the noise of the test split: {within} of {len(rows)}.",
        f"- Time ratio kmexp / reference (median over languages): {time_ratio:.1f}x; kmexp seconds per job: "
        f"median {statistics.median(s for r in rows for s in r['ours_s']):.2f}, "
        f"mean {statistics.mean(s for r in rows for s in r['ours_s']):.2f}.",
        "",
    ]
    return "\n".join(lines)


def _difference(row: dict) -> float:
    return statistics.mean(row["kmexp"]) - row["reference"]


def _noise(row: dict) -> float:
    """1.96 standard errors of the difference of two accuracies near p on the same n test sentences."""
    p = (statistics.mean(row["kmexp"]) + row["reference"]) / 2
    return 1.96 * math.sqrt(2 * p * (1 - p) / row["n"])


def _mean_over_seeds(rows: list[dict], key: str) -> str:
    """The mean over languages; with several seeds, the mean of the seeds' means and its 95% t-interval."""
    per_seed = [100 * statistics.mean(r[key][k] for r in rows) for k in range(len(rows[0][key]))]
    mean = statistics.mean(per_seed)
    if len(per_seed) == 1:
        return f"{mean:.2f}"
    half = stats.t.ppf(0.975, len(per_seed) - 1) * statistics.stdev(per_seed) / math.sqrt(len(per_seed))
    seeds = ", ".join(f"{m:.2f}" for m in per_seed)
    return f"{mean:.2f} ± {half:.2f} (95% interval over {len(per_seed)} seeds: {seeds})"


if __name__ == "__main__":
    main()
