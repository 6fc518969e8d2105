"""Devices: missing hardware fails with one line, the CPU options train, and mirrored training works.

This machine has no GPU or TPU, so the GPU/TPU options must fail clearly here. The
code path of device=multi_gpu (MirroredStrategy) is exercised on two logical CPUs:
a fresh process splits the CPU before TensorFlow starts, then runs kmexp's CLI with
``device.devices=[/cpu:0,/cpu:1]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tensorflow as tf
from conftest import files_overrides, only_run_dir, run_cli
from test_config import load

from kmexp.config.validation import validate, validate_distributed
from kmexp.errors import ConfigError

NO_GPU = len(tf.config.list_physical_devices("GPU")) == 0
# A quick run: two epochs on the small data, nothing logged.
QUICK = ["logger=none", "trainer.epochs=2"]
# What every multi-replica option needs with Keras 3.15 (kmexp.config.validate_distributed).
REPLICA_READY = ["encoder.preprocessor.sparse=false", "trainer.steps_per_execution=1"]

# Runs kmexp's CLI after splitting the CPU into two logical devices (possible only before TensorFlow starts).
TWO_CPUS = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from kmexp.cli import main
    sys.argv = ["kmexp", *sys.argv[1:]]
    main()
""")


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def metrics_of(root) -> dict:
    return json.loads((only_run_dir(root / "outputs") / "metrics.json").read_text())


@pytest.mark.skipif(not NO_GPU, reason="a GPU is visible")
@pytest.mark.parametrize(
    ("device", "expected"),
    [
        (["device=gpu"], "device=gpu was requested but no GPU is visible to TensorFlow"),
        (["device=multi_gpu"], "device=multi_gpu needs at least 2 GPUs but TensorFlow sees 0"),
        (["device=tpu"], "device=tpu was requested but no TPU is visible to TensorFlow"),
    ],
)
def test_missing_hardware_fails_with_one_line(small_data, tmp_path, device, expected):
    result = run_cli([*files_overrides(small_data), *QUICK, *device], cwd=tmp_path)
    assert result.returncode != 0
    assert last_line(result.stderr).startswith(f"kmexp: error: {expected}"), result.stderr[-2000:]


@pytest.mark.parametrize(
    ("tf_config", "expected"),
    [
        (None, 'device=multi_worker needs the TF_CONFIG environment variable, a JSON cluster spec: {"cluster"'),
        ("{not json", "TF_CONFIG is not a cluster spec"),
        # A valid spec: refused before the strategy exists (Keras 3.15 cannot fit under it), so nothing waits.
        ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}',
         "device=multi_worker: Keras 3.15's model.fit cannot train under MultiWorkerMirroredStrategy"),
    ],
)
def test_multi_worker_names_tf_config_or_fails_clearly(small_data, tmp_path, tf_config, expected):
    env = {"TF_CONFIG": "" if tf_config is None else tf_config}
    result = run_cli([*files_overrides(small_data), *QUICK, "device=multi_worker"], cwd=tmp_path, env=env, timeout=120)
    assert result.returncode != 0
    assert last_line(result.stderr).startswith(f"kmexp: error: {expected}"), result.stderr[-2000:]


@pytest.mark.parametrize(
    ("device", "threads"),
    [
        (["device=auto"], (0, 0)),  # 0: TensorFlow's default
        (["device=cpu", "device.precision=mixed_bfloat16", "device.intra_op_threads=1", "device.inter_op_threads=2"],
         (1, 2)),
    ],
)
def test_cpu_options_train_and_record_the_device(small_data, tmp_path, device, threads):
    result = run_cli([*files_overrides(small_data), *QUICK, *device], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    record = metrics_of(tmp_path)["device"]
    assert record["strategy"] == "default" and record["replicas"] == 1 and record["devices"] == ["/cpu:0"]
    assert (record["intra_op_threads"], record["inter_op_threads"]) == threads
    assert record["precision"] == ("mixed_bfloat16" if "device.precision=mixed_bfloat16" in device else "float32")


def test_mirrored_strategy_trains_end_to_end_on_two_logical_cpus(small_data, tmp_path):
    """device=multi_gpu's path (MirroredStrategy over listed devices), on two CPUs, with dense features."""
    args = [*files_overrides(small_data), *QUICK, "trainer.epochs=4", *REPLICA_READY, "device=multi_gpu",
            "device.devices=[/cpu:0,/cpu:1]", "device.precision=mixed_bfloat16"]
    result = subprocess.run([sys.executable, "-c", TWO_CPUS, *args], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = metrics_of(tmp_path)
    assert metrics["device"]["strategy"] == "MirroredStrategy" and metrics["device"]["replicas"] == 2
    assert metrics["status"] == "completed" and metrics["test"]["accuracy"] >= 0.8


def test_mirrored_strategy_asks_for_dense_features_in_one_line(small_data, tmp_path):
    """Sparse features under MirroredStrategy crash inside Keras; kmexp says what to set instead."""
    args = [*files_overrides(small_data), *QUICK, "device=multi_gpu", "device.devices=[/cpu:0,/cpu:1]"]
    result = subprocess.run([sys.executable, "-c", TWO_CPUS, *args], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0
    line = last_line(result.stderr)
    assert line.startswith("kmexp: error: encoder.preprocessor.sparse=true is not allowed with device=multi_gpu")
    assert "set trainer.steps_per_execution=1" in line


def test_listed_devices_must_exist(small_data, tmp_path):
    result = run_cli([*files_overrides(small_data), *QUICK, *REPLICA_READY, "device=multi_gpu",
                      "device.devices=[/cpu:0,/cpu:7]"], cwd=tmp_path)
    assert result.returncode != 0
    assert last_line(result.stderr).startswith(
        "kmexp: error: device.devices=[/cpu:0,/cpu:7] must name at least 2 visible devices; not visible: /cpu:7"
    ), result.stderr[-2000:]


@pytest.mark.parametrize("kind", ["multi_gpu", "multi_worker", "tpu"])
def test_multi_replica_kinds_refuse_what_keras_cannot_distribute(kind):
    with pytest.raises(ConfigError) as err:
        validate_distributed(load([f"device={kind}", "optimizer=lbfgs"]))
    message = str(err.value)
    assert f"encoder.preprocessor.sparse=true is not allowed with device={kind}" in message
    assert f"trainer.steps_per_execution=16 is not allowed with device={kind}" in message
    assert f"optimizer=lbfgs is not allowed with device={kind}: L-BFGS trains on the full batch in one place" in message
    validate_distributed(load([f"device={kind}", *REPLICA_READY]))  # passes
    validate_distributed(load(["device=auto"]))  # one device: nothing to refuse


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("device.intra_op_threads=0", "device.intra_op_threads=0 is not allowed: it must be >= 1"),
        ("device.precision=float16", "device.precision=float16 is not allowed: it must be one of float32,"),
    ],
)
def test_device_values_are_checked(override, expected):
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[")):
        validate(load([override]))


def test_every_precision_composes_with_every_option():
    for kind in ("auto", "cpu", "gpu", "multi_gpu", "multi_worker", "tpu"):
        for precision in ("float32", "mixed_float16", "mixed_bfloat16"):
            cfg = load([f"device={kind}", f"device.precision={precision}"])
            assert (cfg.device.kind, cfg.device.precision) == (kind, precision)
            validate(cfg)


@pytest.mark.skipif(not NO_GPU, reason="a GPU is visible")
def test_gpu_check_script_fails_in_one_line_without_a_gpu(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    result = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert last_line(result.stderr).startswith("gpu_check: error: no GPU is visible to TensorFlow")
