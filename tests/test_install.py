"""A non-editable install, used from an unrelated empty folder, finds its configs in the wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import files_overrides, only_run_dir

PROJECT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_install_runs_from_an_empty_folder(small_data, tmp_path):
    venv = tmp_path / "venv"
    # Reuse the already-installed dependencies; install kmexp itself from a built wheel.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--quiet", str(PROJECT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    where = subprocess.run(
        [str(python), "-c", "import kmexp, kmexp.paths; print(kmexp.__file__); print(kmexp.paths.config_dir())"],
        cwd=empty, env=env, capture_output=True, text=True, timeout=300,
    )
    module_file, conf = where.stdout.strip().splitlines()[-2:]
    assert str(venv) in module_file, module_file
    assert conf.startswith(str(venv)) and Path(conf, "config.yaml").is_file()

    run = subprocess.run(
        [str(python), "-m", "kmexp", *files_overrides(small_data), "language=fr", "optimizer=adam", "logger=none", "trainer.epochs=2"],
        cwd=empty, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((only_run_dir(empty / "outputs") / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["versions"]["kmexp"] is not None

    # A sweep: Hydra finds kmexp's sweeper, a plugin the wheel installs as hydra_plugins/kmexp_sweeper.
    sweep = subprocess.run(
        [str(python), "-m", "kmexp", "-m", *files_overrides(small_data), "logger=none", "trainer.epochs=2", "seed=0,1",
         "hydra.sweep.dir=swept"],
        cwd=empty, env=env, capture_output=True, text=True, timeout=600,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert "Warning" not in sweep.stderr, sweep.stderr[-3000:]
    assert [json.loads((empty / "swept" / job / "metrics.json").read_text())["status"] for job in ("0", "1")] == [
        "completed", "completed"]
