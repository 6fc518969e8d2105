"""Runs in one process leave nothing of themselves behind: the next run starts from the same memory.

A sweep with Hydra's basic launcher (or optuna, or a notebook loop) trains many
models in one process. Each ``train()`` must free its traced train step, its
variables and its lookup tables when it ends; ``benchmarks/sweep_memory.py``
measures the resident memory, these tests check the objects that used to stay.
They run in a fresh process, so that only their own runs are counted.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import FILLER, TOPICS, files_overrides, make_rows, only_run_dir, write_small_data, write_tsv

# A text of 20 MB (UTF-8), in five scripts: what a broken export puts in one cell.
HUGE_TEXT_BYTES = 20 * 2**20
# How much more than a normal run a run with such a text may take at its peak.
EXTRA_MEMORY_LIMIT = 2**30

RUNS_IN_ONE_PROCESS = textwrap.dedent(
    """
    import gc, json, sys, tempfile
    from pathlib import Path

    import keras
    from hydra import compose, initialize_config_dir
    from tensorflow.python.framework import ops

    import kmexp.experiment  # noqa: F401  (train() imports it on the first run: what importing registers is not a run's)
    from kmexp.config import register_configs
    from kmexp.paths import config_dir
    from kmexp.train import train

    def alive(kind):
        return sum(type(obj).__name__ == kind for obj in gc.get_objects())

    register_configs()
    registry = ops._gradient_registry._registry
    counts = []
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for seed in range(3):
            cfg = compose("config", overrides=[*sys.argv[1:], f"seed={seed}"])
            before = len(registry)
            with tempfile.TemporaryDirectory() as run_dir:
                metrics = train(cfg, Path(run_dir), [])
            keras.backend.clear_session()
            gc.collect()
            counts.append({
                "status": metrics.status,
                "func_graphs": alive("FuncGraph") + alive("CondBranchFuncGraph"),
                "graphs": alive("Graph"),
                "new_gradients": len(registry) - before,
            })
    print(json.dumps(counts))
    """
)


def runs_in_one_process(overrides: list[str]) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-c", RUNS_IN_ONE_PROCESS, *overrides], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_run_frees_its_traced_train_step(small_data):
    # The default model has L2 on its kernel, so its gradients are dense and Keras' optimizer
    # wraps them in a tf.custom_gradient: the case that kept every run's graph and variables.
    counts = runs_in_one_process([*files_overrides(small_data), "logger=none", "trainer.epochs=3"])
    assert [run["status"] for run in counts] == ["completed"] * 3
    assert all(run["func_graphs"] == 0 and run["graphs"] == 0 for run in counts), counts
    assert all(run["new_gradients"] == 0 for run in counts), counts


def test_a_hidden_layer_with_dropout_is_freed_too(small_data):
    overrides = [*files_overrides(small_data), "logger=none", "trainer.epochs=2", "model.hidden_units=[16]", "model.dropout=0.2"]
    counts = runs_in_one_process(overrides)
    assert all(run["func_graphs"] == 0 and run["new_gradients"] == 0 for run in counts), counts


def test_vocabulary_tables_are_anonymous_and_survive_saving(tmp_path):
    # Named tables live in TensorFlow's resource manager until the process ends, so each run
    # left its vocabulary behind; anonymous ones go with their layer.
    import keras
    import tensorflow as tf

    from kmexp.encoders.lookup import StringLookup

    layer = StringLookup(num_oov_indices=1, mask_token=None)
    layer.set_vocabulary(["chat", "chien", "猫"])
    assert layer.lookup_table._is_anonymous
    assert layer(tf.constant(["chien", "猫", "oiseau"])).numpy().tolist() == [2, 3, 0]
    for special in (True, False):  # what a saved model writes: Keras' own vocabulary, in index order
        assert layer.get_vocabulary(special) == keras.layers.StringLookup.get_vocabulary(layer, special)
    assert layer.get_vocabulary() == ["[UNK]", "chat", "chien", "猫"]
    model = keras.Sequential([keras.Input(shape=(), dtype="string"), layer])
    model.save(tmp_path / "lookup.keras")
    loaded = keras.models.load_model(tmp_path / "lookup.keras", custom_objects={"StringLookup": StringLookup})
    assert loaded(tf.constant(["chat", "猫"])).numpy().tolist() == [1, 3]


# Numbers turned into tensors, in a fresh process: glibc's heap in use (mallinfo2) after converting them,
# and after emptying TensorFlow's caches of constants.
CONVERTED_NUMBERS = textwrap.dedent(
    """
    import ctypes, json

    import tensorflow as tf

    from kmexp import compat

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = Mallinfo2

    def heap_used_mb():
        info = mallinfo2()
        return (info.uordblks + info.hblkhd) / 2**20

    start = heap_used_mb()
    for i in range(50_000):  # each epoch's loss, each language's vocabulary size: new numbers in every job
        tf.cast(i + 0.5, tf.float64)
    converted = heap_used_mb()
    compat.clear_tensorflow_caches()
    print(json.dumps({"converted": converted - start, "cleared": heap_used_mb() - start}))
    """
)


def test_tensorflow_forgets_the_numbers_a_job_turned_into_tensors():
    # TensorFlow keeps every Python number it converts in a cache of its own, process-wide and unbounded;
    # Keras' clear_session leaves it, so a sweep job empties it as it ends (kmexp.cli).
    done = subprocess.run([sys.executable, "-c", CONVERTED_NUMBERS], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    heap = json.loads(done.stdout.strip().splitlines()[-1])
    assert heap["converted"] > 15, heap  # MB: about 0.6 kB per number
    assert heap["cleared"] < heap["converted"] / 5, heap


# A Hydra callback for a sweep's process: at each job's end, before anything else runs, how many
# unreachable objects a garbage collection finds (what the job left for later to free).
GARBAGE_CALLBACK = textwrap.dedent(
    """
    import gc, json
    from hydra.experimental.callback import Callback

    class Garbage(Callback):
        def __init__(self, out):
            self.out = out

        def on_job_end(self, config, job_return, **kwargs):
            with open(self.out, "a", encoding="utf-8") as f:
                f.write(json.dumps({"garbage": gc.collect()}) + "\\n")
    """
)


def test_a_sweep_job_leaves_no_garbage_for_the_next_one(small_data, tmp_path):
    # Keras layers and models hold reference cycles: only a garbage collection frees them. A sweep
    # job collects them and hands the freed heap back as it ends, so the process holds only what it
    # keeps for later jobs between jobs (while Hydra composes the next job, or the report is written).
    (tmp_path / "callbacks").mkdir()
    (tmp_path / "callbacks" / "garbage_callback.py").write_text(GARBAGE_CALLBACK, encoding="utf-8")
    out = tmp_path / "garbage.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "callbacks"), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "kmexp", "-m", *files_overrides(small_data), "logger=none", "trainer.epochs=2",
         "seed=0,1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}",
         "+hydra.callbacks.garbage._target_=garbage_callback.Garbage", f"+hydra.callbacks.garbage.out={out}"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = [json.loads(line)["garbage"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(found) == 3
    # A job's model alone is thousands of objects in cycles; Hydra's own bookkeeping after a job a few.
    assert max(found) < 100, found


def huge_text(seed: int = 0) -> str:
    """Topic and filler words of every language of the small data set, HUGE_TEXT_BYTES of them in UTF-8."""
    words = [w for topic in TOPICS.values() for ws in topic.values() for w in ws] + [w for ws in FILLER.values() for w in ws]
    rng = random.Random(seed)
    chosen, size = [], 0
    while size < HUGE_TEXT_BYTES:
        chosen.append(rng.choice(words))
        size += len(chosen[-1].encode("utf-8")) + 1
    return " ".join(chosen)


def peak_rss_of_run(args: list[str], cwd: Path) -> tuple[int, int]:
    """``python -m kmexp ARGS`` in a fresh process: its exit status and its peak resident memory, in bytes.

    ``os.wait4`` reports this one child's peak (``ru_maxrss``, KiB on Linux), whatever other
    processes the test session has run.
    """
    cwd.mkdir(parents=True, exist_ok=True)
    with open(cwd / "stdout.txt", "wb") as out, open(cwd / "stderr.txt", "wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "kmexp", *args], cwd=cwd, stdout=out, stderr=err,
                                   env={**os.environ, "HYDRA_FULL_ERROR": "0"})
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    return process.returncode, usage.ru_maxrss * 1024


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "wait4"), reason="os.wait4 (the peak memory of one child) is POSIX only")
def test_a_huge_text_in_train_or_test_costs_less_than_a_gigabyte_more(tmp_path):
    """A 20 MB text in train, or in test, is cut to data.max_chars: the run peaks within 1 GB of a normal one."""
    data = write_small_data(tmp_path / "data")
    huge_row = {"text": huge_text(), "label": "sports"}
    runs = {"normal": data}
    for split, n_per_label in (("train", 30), ("test", 10)):
        path = write_tsv(tmp_path / f"huge_{split}.tsv", [*make_rows(n_per_label, seed=7), huge_row])
        runs[split] = {**data, split: path}
    quick = ["logger=none", "trainer.epochs=2"]
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        futures = {name: pool.submit(peak_rss_of_run, [*files_overrides(files), *quick], tmp_path / name)
                   for name, files in runs.items()}
        results = {name: future.result() for name, future in futures.items()}
    assert all(status == 0 for status, _ in results.values()), {
        name: (tmp_path / name / "stderr.txt").read_text(encoding="utf-8")[-2000:] for name in results
    }
    normal = results["normal"][1]
    for split in ("train", "test"):
        truncated = json.loads((only_run_dir(tmp_path / split) / "metrics.json").read_text())["data"]["truncated"]
        assert truncated == {"train": 0, "dev": 0, "test": 0, split: 1}
        assert results[split][1] - normal < EXTRA_MEMORY_LIMIT, {name: rss / 2**20 for name, (_, rss) in results.items()}
