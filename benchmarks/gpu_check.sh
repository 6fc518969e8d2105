#!/usr/bin/env bash
# One default kmexp job on one GPU, in float32 and in mixed_float16: samples per second and peak GPU memory;
# then one epoch of fine-tuning a base-size pretrained encoder (XLM-R base shapes), in both precisions.
#
#   KMEXP_DATA_DIR=/path/to/sib200 bash benchmarks/gpu_check.sh [extra overrides...]
#
# Samples per second = train examples x epochs run / train seconds (metrics.json). Peak GPU memory is
# what TensorFlow allocated on GPU:0 during the job (metrics.json device.gpu_peak_bytes; memory growth
# is on, so it is what the job used). A few minutes at most. Fails with one line where no GPU is visible.
set -euo pipefail

if ! python -c 'import sys, tensorflow as tf; sys.exit(0 if tf.config.list_physical_devices("GPU") else 1)' 2>/dev/null; then
    echo "gpu_check: error: no GPU is visible to TensorFlow on this machine; nothing to measure" >&2
    exit 1
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for precision in float32 mixed_float16; do
    if ! python -m kmexp device=gpu "device.precision=$precision" logger=none "hydra.run.dir=$out/$precision" "$@" \
        >"$out/$precision.log" 2>&1; then
        echo "gpu_check: error: the $precision job failed: $(tail -n 1 "$out/$precision.log")" >&2
        exit 1
    fi
done

python - "$out" <<'PY'
import json
import sys
from pathlib import Path

print(f"{'precision':<15} {'samples/s':>10} {'train s':>8} {'epochs':>6} {'peak GPU MiB':>12} {'test acc':>8}")
for precision in ("float32", "mixed_float16"):
    m = json.loads((Path(sys.argv[1]) / precision / "metrics.json").read_text())
    samples = m["data"]["sizes"]["train"] * m["epochs_run"]
    seconds = m["seconds"]["train"]
    peak = m["device"]["gpu_peak_bytes"].get("GPU:0", 0) / 2**20
    print(f"{precision:<15} {samples / seconds:>10.0f} {seconds:>8.2f} {m['epochs_run']:>6} {peak:>12.1f} "
          f"{m['test']['accuracy']:>8.4f}")
PY

# Fine-tuning a base-size pretrained encoder (XLM-R base shapes, random weights, benchmarks/pretrained.py
# builds the preset): samples per second and peak GPU memory, float32 and mixed_float16.
python benchmarks/pretrained.py --build-preset-only "$out/preset" >"$out/preset.log" 2>&1 || {
    echo "gpu_check: error: building the base-size preset failed: $(tail -n 1 "$out/preset.log")" >&2; exit 1; }
for precision in float32 mixed_float16; do
    if ! python -m kmexp device=gpu "device.precision=$precision" logger=none encoder=pretrained \
        "encoder.preset=$out/preset" encoder.mode=finetune trainer.epochs=1 "hydra.run.dir=$out/ft-$precision" "$@" \
        >"$out/ft-$precision.log" 2>&1; then
        echo "gpu_check: error: the $precision fine-tuning job failed: $(tail -n 1 "$out/ft-$precision.log")" >&2
        exit 1
    fi
done
python - "$out" <<'PY'
import json
import sys
from pathlib import Path

print(f"\nfine-tuning XLM-R-base shapes, 1 epoch:")
print(f"{'precision':<15} {'samples/s':>10} {'train s':>8} {'peak GPU MiB':>12}")
for precision in ("float32", "mixed_float16"):
    m = json.loads((Path(sys.argv[1]) / f"ft-{precision}" / "metrics.json").read_text())
    seconds = m["seconds"]["train"]
    peak = m["device"]["gpu_peak_bytes"].get("GPU:0", 0) / 2**20
    print(f"{precision:<15} {m['data']['sizes']['train'] * m['epochs_run'] / seconds:>10.1f} {seconds:>8.2f} {peak:>12.1f}")
PY
