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
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import keras
from hydra import compose, initialize_config_dir

from kmexp.config import register_configs
from kmexp.data import sib200_codes
from kmexp.paths import config_dir, group_options
from kmexp.train import train

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

    if args.encoders:
        args.out.write_text(encoder_matrix(root, languages, args.encoders, args.overrides))
        print(f"wrote {args.out}")
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (code, language) in enumerate(languages):
            dev, ours, ours_s = kmexp_run(language, args.overrides, Path(tmp) / str(i))
            ref, ref_s = reference_run(root, code)
            rows.append({"language": code, "dev": dev, "kmexp": ours, "reference": ref, "ours_s": ours_s, "ref_s": ref_s})
            print(f"{i + 1}/{len(languages)} {code}: kmexp {ours:.4f} ({ours_s:.1f}s)  reference {ref:.4f} ({ref_s:.2f}s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(rows, args.overrides))
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


def report(rows: list[dict], overrides: list[str]) -> str:
    lines = [
        "# SIB-200 test accuracy: kmexp vs the scikit-learn char n-gram SVM reference",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}; "
        f"kmexp overrides: {' '.join(overrides) or '(default config)'}.",
        "Seconds: fit plus evaluate, after imports, both measured in this run.",
        "",
        "| language | kmexp | reference | difference | kmexp s | reference s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['language']} | {100 * r['kmexp']:.1f} | {100 * r['reference']:.1f} | "
            f"{100 * (r['kmexp'] - r['reference']):+.1f} | {r['ours_s']:.1f} | {r['ref_s']:.2f} |"
        )
    worst = min(rows, key=lambda r: r["kmexp"] - r["reference"])
    ours_mean = 100 * statistics.mean(r["kmexp"] for r in rows)
    ref_mean = 100 * statistics.mean(r["reference"] for r in rows)
    time_ratio = statistics.median(r["ours_s"] / r["ref_s"] for r in rows)
    dev_mean = 100 * statistics.mean(r["dev"] for r in rows)
    lines += [
        "",
        f"- Mean test accuracy over {len(rows)} languages: kmexp {ours_mean:.1f}, reference {ref_mean:.1f} "
        f"({ours_mean - ref_mean:+.1f}). kmexp's mean dev accuracy (what settings are chosen on): {dev_mean:.1f}.",
        f"- Worst language against the reference: {worst['language']} "
        f"({100 * (worst['kmexp'] - worst['reference']):+.1f} points).",
        f"- Time ratio kmexp / reference (median over languages): {time_ratio:.1f}x.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
