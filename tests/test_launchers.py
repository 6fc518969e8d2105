"""Hydra launchers for sweeps: joblib (worker processes), the SLURM preset, and Ray on a local cluster.

CI installs the plugins (the `dev` extra pulls in `parallel`, `slurm` and `ray`), so a missing
plugin fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import files_overrides, make_rows, run_cli, write_small_data, write_tsv
from hydra import compose, initialize_config_dir

from kmexp.paths import config_dir

PROGRESS = re.compile(r"\[kmexp sweep\] (\d+)/(\d+)  .+  (completed|failed)")
# Ray resolves 127.0.0.1 to the machine's network address unless told it runs one node only:
# with this, the head node and every connection to it stay on the loopback interface.
RAY_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def job_records(sweep_dir: Path) -> list[dict]:
    """Every job's metrics.json, in job-number order."""
    paths = sorted(sweep_dir.glob("*/metrics.json"), key=lambda p: int(p.parent.name))
    return [json.loads(p.read_text()) for p in paths]


def compose_with_hydra(overrides: list[str]):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


# --- joblib ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def joblib_sweep(tmp_path_factory):
    """The issue's sweep: 4 languages, 2 joblib workers, W&B offline, on small data."""
    cwd = tmp_path_factory.mktemp("joblib")
    data = write_small_data(cwd / "data")
    sweep_dir = cwd / "sweep"
    args = [
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "language=fr,de,es,pt",
        *files_overrides(data), "trainer.epochs=2", f"hydra.sweep.dir={sweep_dir}",
    ]
    return run_cli(args, cwd=cwd, env={"WANDB_MODE": "offline"}), sweep_dir


@pytest.mark.slow
def test_joblib_runs_the_jobs_in_several_worker_processes(joblib_sweep):
    result, sweep_dir = joblib_sweep
    assert result.returncode == 0, result.stderr[-3000:]
    records = job_records(sweep_dir)
    assert [r["status"] for r in records] == ["completed"] * 4
    assert sorted(r["language"]["tag"] for r in records) == ["de", "es", "fr", "pt"]
    assert len({r["pid"] for r in records}) >= 2  # two loky workers share the four jobs
    assert len({r["host"] for r in records}) == 1
    # Each worker runs TensorFlow on its share of the cores, not on all of them.
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert {(r["device"]["intra_op_threads"], r["device"]["inter_op_threads"]) for r in records} == {(share, share)}


@pytest.mark.slow
def test_joblib_sweep_keeps_progress_report_and_wandb(joblib_sweep):
    result, sweep_dir = joblib_sweep
    # Workers print the progress lines, in the order jobs end: each job once, out of 4.
    lines = [m for m in map(PROGRESS.search, result.stdout.splitlines()) if m]
    assert sorted(int(m[1]) for m in lines) == [1, 2, 3, 4] and {m[2] for m in lines} == {"4"}
    assert (sweep_dir / "report.html").is_file() and (sweep_dir / "results.csv").is_file()
    for job in range(4):  # each worker wrote its job's offline W&B run
        assert len(list((sweep_dir / str(job) / "wandb").glob("offline-run-*"))) == 1


@pytest.mark.slow
def test_joblib_sweep_with_a_failed_job_exits_non_zero(small_data, tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = [
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optimizer.learning_rate=0.05,-1",
        *files_overrides(small_data), "logger=none", "trainer.epochs=2", f"hydra.sweep.dir={sweep_dir}",
    ]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert [r["status"] for r in job_records(sweep_dir)] == ["completed", "failed"]
    assert "1 of 2 jobs failed" in result.stderr and "optimizer.learning_rate=-1" in result.stderr
    assert (sweep_dir / "report.html").is_file()


# --- SLURM (composed only: there is no SLURM here) -----------------------------------------------


def test_slurm_gpu_preset_extends_the_submitit_slurm_launcher():
    cfg = compose_with_hydra(["hydra/launcher=slurm_gpu", "hydra.launcher.timeout_min=240"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node, launcher.nodes, launcher.tasks_per_node) == ("gpu", 1, 1, 1)
    assert (launcher.cpus_per_task, launcher.mem_gb, launcher.timeout_min) == (8, 32, 240)
    assert launcher.submitit_folder.endswith("/.submitit/%j")  # the plugin's own keys are kept
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "slurm_gpu"


def test_ray_cluster_preset_joins_a_running_cluster(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    launcher = compose_with_hydra(["hydra/launcher=ray_cluster"]).hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert launcher.ray.init.address == "10.1.2.3:6379"
    assert launcher.ray.init.object_store_memory is None  # ray.init refuses it when joining a cluster
    assert launcher.ray.remote.num_gpus == 0


# --- Ray, on a local one-node cluster ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "ray start exited early"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"Ray's head node did not open port {port} in {timeout:.0f}s")


@pytest.fixture
def ray_head():
    """A one-node Ray cluster on 127.0.0.1, owned by this test: its address.

    ``ray start --block`` stays in the foreground, so stopping that one process (SIGTERM) stops the
    node and every process it started; ``ray stop`` would stop every Ray node on the machine.
    """
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="kmexp-ray-")  # short: Ray's socket paths must stay under 107 characters
    command = [
        "ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
        "--include-dashboard=false", "--disable-usage-stats", "--object-store-memory=100000000",
        f"--temp-dir={temp_dir}",
    ]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    head = subprocess.Popen(command, env={**os.environ, **RAY_LOOPBACK}, **quiet)
    try:
        wait_for_port(port, head)
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_ray_sweep_runs_on_a_local_cluster(ray_head, tmp_path):
    data = {split: write_tsv(tmp_path / f"{split}.tsv", make_rows(n, seed)) for split, n, seed in
            [("train", 20, 1), ("dev", 8, 2), ("test", 8, 3)]}
    sweep_dir = tmp_path / "sweep"
    args = [
        "-m", "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={ray_head}", "language=fr,de",
        *files_overrides(data), "logger=none", "trainer.epochs=2", f"hydra.sweep.dir={sweep_dir}",
    ]
    result = run_cli(args, cwd=tmp_path, env=RAY_LOOPBACK)
    assert result.returncode == 0, result.stderr[-3000:]
    records = job_records(sweep_dir)
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert [r["language"]["tag"] for r in records] == ["fr", "de"]
    # The jobs ran in Ray's worker processes, not in the process that ran the sweep.
    assert all(r["pid"] != os.getpid() for r in records)
    assert "Connected to Ray cluster" in result.stderr + result.stdout
    assert "all 2 jobs completed" in result.stdout and (sweep_dir / "report.html").is_file()
