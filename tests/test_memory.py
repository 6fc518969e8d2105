"""Runs in one process leave nothing of themselves behind: the next run starts from the same memory.

A sweep with Hydra's basic launcher (or optuna, or a notebook loop) trains many
models in one process. Each ``train()`` must free its traced train step, its
variables and its lookup tables when it ends; ``benchmarks/sweep_memory.py``
measures the resident memory, these tests check the objects that used to stay.
They run in a fresh process, so that only their own runs are counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from conftest import files_overrides

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
    model = keras.Sequential([keras.Input(shape=(), dtype="string"), layer])
    model.save(tmp_path / "lookup.keras")
    loaded = keras.models.load_model(tmp_path / "lookup.keras", custom_objects={"StringLookup": StringLookup})
    assert loaded(tf.constant(["chat", "猫"])).numpy().tolist() == [1, 3]
