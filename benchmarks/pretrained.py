"""Pretrained encoders on the CPU: frozen-mode embedding throughput, and a warm-cache job against char_ngram.

The cost of a pretrained encoder is the cost of its architecture, not of its
weights' values, so this runs a preset with the shapes of XLM-RoBERTa base
(250,002 token embeddings, 12 layers of width 768, 12 heads, feed-forward 3,072:
278M weights) and random weights, saved with ``save_to_preset`` the way a user
saves a downloaded one. Its tokenizer is a SentencePiece model trained on the
benchmark language's training split (real XLM-R pieces cut texts differently,
but every text is padded to ``encoder.sequence_length`` anyway, and that length
is what the backbone's time depends on). Scores are meaningless here; times are not.

In one run, on this machine:

1. the preset is built (untimed);
2. one frozen job embeds train, dev and test (cache misses): sentences per second
   is texts embedded / the embedding seconds of that job;
3. jobs taking turns, each a fresh ``python -m kmexp`` process: the default
   ``char_ngram`` job, and the frozen job with a warm cache (hits only);
   medians compared.

    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/pretrained.py               # fr, 3 repeats
    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/pretrained.py --language de --repeats 5

Writes ``benchmarks/results/pretrained.md``. Needs a few GB of disk (the preset and
each job's ``model.keras`` hold the 1.1 GB of weights).
"""

from __future__ import annotations

import argparse
import datetime
import io
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
# XLM-RoBERTa base (keras_hub xlm_roberta_base_multi).
BASE = {"vocabulary_size": 250002, "num_layers": 12, "num_heads": 12, "hidden_dim": 768, "intermediate_dim": 3072,
        "max_sequence_length": 512}


def build_base_size_preset(folder: Path, texts: list[str], sequence_length: int) -> None:
    """An XLM-R-base-shaped preset with random weights and a SentencePiece vocabulary trained on ``texts``."""
    import keras_hub
    import sentencepiece as spm

    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=proto, vocab_size=8000, model_type="unigram", pad_id=0, unk_id=1,
        bos_id=2, eos_id=3, character_coverage=0.9995, hard_vocab_limit=False, minloglevel=2,
    )
    tokenizer = keras_hub.models.XLMRobertaTokenizer(proto=proto.getvalue())
    backbone = keras_hub.models.XLMRobertaBackbone(**BASE)
    preprocessor = keras_hub.models.XLMRobertaTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length)
    keras_hub.models.XLMRobertaTextClassifier(backbone, num_classes=7, preprocessor=preprocessor).save_to_preset(str(folder))


def kmexp_job(args: list[str], run_dir: Path) -> tuple[float, dict]:
    """Wall seconds of one ``python -m kmexp`` process, and its metrics.json."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kmexp", *args, "logger=none", f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"pretrained.py: a job failed: {done.stderr.strip().splitlines()[-1]}")
    return seconds, json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--language", default="fr", help="a language preset (default: fr)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "pretrained.md")
    parser.add_argument("--build-preset-only", type=Path, metavar="FOLDER",
                        help="only save the base-size preset into FOLDER (benchmarks/gpu_check.sh uses it)")
    args = parser.parse_args()
    root = Path(os.environ["KMEXP_DATA_DIR"])
    if args.build_preset_only is not None:
        build_base_size_preset(args.build_preset_only, _train_texts(root, args.language), args.sequence_length)
        return

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_texts = _train_texts(root, args.language)
        started = time.perf_counter()
        build_base_size_preset(tmp / "preset", train_texts, args.sequence_length)
        print(f"built the base-size preset in {time.perf_counter() - started:.0f}s", flush=True)

        language = [f"language={args.language}"]
        frozen = [*language, "encoder=pretrained", f"encoder.preset={tmp / 'preset'}", "encoder.mode=frozen",
                  f"encoder.sequence_length={args.sequence_length}", f"encoder.cache_dir={tmp / 'cache'}"]
        cold_s, cold = kmexp_job(frozen, tmp / "cold")
        texts = sum(cold["data"]["sizes"].values())
        embed_s = cold["embedding_cache"]["seconds"]
        print(f"cold frozen job: {cold_s:.1f}s; {texts} texts embedded in {embed_s:.1f}s", flush=True)

        times = {"char_ngram (default)": [], "pretrained, frozen, warm cache": []}
        for repeat in range(args.repeats):
            order = list(times) if repeat % 2 == 0 else list(reversed(times))
            for name in order:
                job = language if name.startswith("char_ngram") else frozen
                seconds, record = kmexp_job(job, tmp / f"{repeat}-{len(times[name])}-{name[:4]}")
                if not name.startswith("char_ngram"):
                    assert record["embedding_cache"]["misses"] == 0, record["embedding_cache"]
                times[name].append(seconds)
            print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)

    ngram, warm = (statistics.median(times[name]) for name in times)
    lines = [
        "# Pretrained encoders on the CPU (XLM-R base shapes, random weights)",
        "",
        f"{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"language={args.language}, encoder.sequence_length={args.sequence_length}; `benchmarks/pretrained.py`.",
        "",
        f"- Frozen-mode embedding: {texts} texts (train, dev, test) in {embed_s:.1f}s, tokenizing included "
        f"(metrics.json `embedding_cache.seconds` of the first job): **{texts / embed_s:.1f} sentences/s**. "
        f"That whole first job took {cold_s:.0f}s.",
        "",
        "| job (fresh process, whole wall time) | median s | min s | ratio to char_ngram |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {statistics.median(t):.1f} | {min(t):.1f} | {statistics.median(t) / ngram:.2f} |"
          for name, t in times.items()),
        "",
        f"A warm-cache frozen job takes {warm / ngram:.2f}x the default char_ngram job (target: at most 2x).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    print(f"wrote {args.out}")


def _train_texts(root: Path, language: str) -> list[str]:
    """The language preset's SIB-200 training texts (its code from the composed config)."""
    from hydra import compose, initialize_config_dir

    from kmexp.config import register_configs
    from kmexp.paths import config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        code = compose("config", overrides=[f"language={language}"]).language.code
    import pandas as pd

    return pd.read_csv(root / code / "train.tsv", sep="\t").text.tolist()


if __name__ == "__main__":
    main()
