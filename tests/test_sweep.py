"""Real multirun sweeps of ``python -m kmexp -m`` in a subprocess: progress, failures, resume, presets, report."""

from __future__ import annotations

import gc
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import files_overrides, make_rows, run_cli, write_small_data, write_tsv
from hydra import compose, initialize_config_dir

from kmexp.config import register_configs
from kmexp.paths import config_dir
from kmexp.runs import LOCK_FILE, RunLock
from kmexp.sweep import count_jobs

PROGRESS = re.compile(r"^\[kmexp sweep\] (\d+)/(\d+)  (.+?)  (completed|failed)(?: \((.*)\))?  objective (\S+)  (\S+)$")


def metrics_of(sweep_dir: Path, job: int) -> dict:
    return json.loads((sweep_dir / str(job) / "metrics.json").read_text())


def progress_lines(stdout: str) -> list[re.Match]:
    return [m for m in map(PROGRESS.match, stdout.splitlines()) if m]


def wandb_summary(run_dir: Path) -> dict:
    """The offline W&B run of a job, read back with wandb's own reader."""
    (run,) = list((run_dir / "wandb").glob("offline-run-*"))
    out = subprocess.run(["wandb", "leet", "inspect", "--summary", "--json", str(run)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def wandb_group(run_dir: Path) -> str:
    (run,) = list((run_dir / "wandb").glob("offline-run-*"))
    out = subprocess.run(["wandb", "leet", "inspect", "--json", str(run)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    groups = set(re.findall(r'"run_group"\s*:\s*"([^"]*)"', out.stdout))
    assert len(groups) == 1, groups
    return groups.pop()


@pytest.fixture(scope="module")
def sweep_2x2(tmp_path_factory, sib200_dir):
    """The issue's sweep: language=fr,zh x optimizer=adam,sgd on SIB-200, W&B offline."""
    cwd = tmp_path_factory.mktemp("sweep2x2")
    sweep_dir = cwd / "sweep"
    args = ["-m", "language=fr,zh", "optimizer=adam,sgd", "trainer.epochs=3", f"hydra.sweep.dir={sweep_dir}"]
    result = run_cli(args, cwd=cwd, env={"KMEXP_DATA_DIR": str(sib200_dir), "WANDB_MODE": "offline"})
    return result, sweep_dir


def test_sweep_runs_every_job_and_prints_progress(sweep_2x2):
    result, sweep_dir = sweep_2x2
    assert result.returncode == 0, result.stderr[-3000:]
    records = [metrics_of(sweep_dir, job) for job in range(4)]
    assert [r["status"] for r in records] == ["completed"] * 4
    assert {(r["language"]["tag"], r["choices"]["optimizer"]) for r in records} == {
        ("fr", "adam"), ("fr", "sgd"), ("zh", "adam"), ("zh", "sgd")
    }
    lines = progress_lines(result.stdout)
    assert [(m[1], m[2], m[4]) for m in lines] == [(str(i), "4", "completed") for i in range(1, 5)]
    for line, record in zip(lines, records):
        assert line[3].split() == record["overrides"]
        assert float(line[6]) == pytest.approx(record["objective"]["value"], abs=1e-4)
        assert line[7].endswith("s")


def test_sweep_writes_results_and_report(sweep_2x2):
    result, sweep_dir = sweep_2x2
    assert (sweep_dir / "results.csv").read_text().count("\n") == 5  # header and 4 rows
    assert (sweep_dir / "report.md").is_file() and (sweep_dir / "report.html").is_file()
    assert list(sweep_dir.glob("*.png")) or list(sweep_dir.glob("*/*.png"))
    assert "report" in result.stdout


def test_sweep_jobs_are_offline_wandb_runs_in_one_group(sweep_2x2):
    _, sweep_dir = sweep_2x2
    groups = {wandb_group(sweep_dir / str(job)) for job in range(4)}
    assert len(groups) == 1
    assert groups == {metrics_of(sweep_dir, 0)["group"]}
    summary = wandb_summary(sweep_dir / "0")
    assert summary["state"] == "finished"


def test_report_command_rewrites_the_report_and_says_how_to_publish_it_to_wandb(sweep_2x2):
    _, sweep_dir = sweep_2x2
    (sweep_dir / "report.md").unlink()
    out = subprocess.run(
        [sys.executable, "-m", "kmexp.report", str(sweep_dir), "--wandb-report"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (sweep_dir / "report.md").is_file()
    last = out.stdout.strip().splitlines()[-1]
    assert "W&B is offline" in last and "wandb sync" in last and "wandb login" in last


@pytest.fixture
def two_data_sets(tmp_path) -> dict[str, Path]:
    """Small files, and the path of a training file that does not exist yet."""
    folder = tmp_path / "data"
    return {**write_small_data(folder), "late_train": folder / "late_train.tsv"}


def test_a_failed_job_does_not_stop_the_sweep(small_data, tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *files_overrides(small_data), "optimizer.learning_rate=0.01,-1,0.02", "trainer.epochs=3",
            f"hydra.sweep.dir={sweep_dir}"]
    result = run_cli(args, cwd=tmp_path, env={"WANDB_MODE": "offline"})
    assert result.returncode == 1, result.stderr[-3000:]
    assert [metrics_of(sweep_dir, job)["status"] for job in range(3)] == ["completed", "failed", "completed"]
    failed = metrics_of(sweep_dir, 1)
    assert "optimizer.learning_rate" in failed["error"] and "> 0" in failed["error"]
    # The end of the sweep names the failed job and why.
    tail = result.stderr.strip().splitlines()[-2:]
    assert "1 of 3 jobs failed" in tail[0]
    assert "job 1" in tail[1] and "optimizer.learning_rate=-1" in tail[1]
    assert [m[4] for m in progress_lines(result.stdout)] == ["completed", "failed", "completed"]
    # Its W&B run is marked failed; the others finished.
    assert wandb_summary(sweep_dir / "1")["exit_code"] != 0
    assert wandb_summary(sweep_dir / "2")["state"] == "finished"
    # The report still comes, and lists the failure.
    assert "optimizer.learning_rate" in (sweep_dir / "report.md").read_text()


def test_a_nan_loss_fails_only_its_job(small_data, tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *files_overrides(small_data), "optimizer=sgd", "optimizer.learning_rate=1e38,0.1", "trainer.epochs=3",
            "logger=none", f"hydra.sweep.dir={sweep_dir}"]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode != 0
    failed = metrics_of(sweep_dir, 0)
    assert failed["status"] == "failed"
    assert failed["error"].startswith("NonFiniteLoss: training loss became") and "learning_rate" in failed["error"]
    assert metrics_of(sweep_dir, 1)["status"] == "completed"


def test_resume_reruns_only_what_did_not_complete(two_data_sets, tmp_path):
    data = two_data_sets
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "data=files", f"data.train={data['train']},{data['late_train']}", f"data.dev={data['dev']}",
            f"data.test={data['test']}", "trainer.epochs=3", "logger=none", f"hydra.sweep.dir={sweep_dir}"]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode != 0
    assert [metrics_of(sweep_dir, job)["status"] for job in range(2)] == ["completed", "failed"]
    kept_before = metrics_of(sweep_dir, 0)
    model_mtime = (sweep_dir / "0" / "model.keras").stat().st_mtime_ns

    # The missing file appears; the same sweep, resumed into the same folder, finishes.
    write_tsv(data["late_train"], make_rows(30, seed=4))
    resumed = run_cli([*args[:-1], f"resume={sweep_dir}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    kept_after = metrics_of(sweep_dir, 0)
    assert kept_after["kept_on_resume"] is True
    assert {k: v for k, v in kept_after.items() if k != "kept_on_resume"} == kept_before  # not retrained
    assert (sweep_dir / "0" / "model.keras").stat().st_mtime_ns == model_mtime
    assert metrics_of(sweep_dir, 1)["status"] == "completed"
    assert f"data.train={data['late_train']}" in metrics_of(sweep_dir, 1)["overrides"]
    assert [m[5] for m in progress_lines(resumed.stdout)] == ["kept from the earlier sweep", None]
    assert not any("resume=" in o for o in metrics_of(sweep_dir, 1)["overrides"])


@pytest.mark.slow
def test_a_job_whose_folder_another_run_holds_is_refused_and_a_resume_runs_it(small_data, tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *files_overrides(small_data), "seed=0,1", "trainer.epochs=2", "logger=none",
            f"hydra.sweep.dir={sweep_dir}"]
    with RunLock(sweep_dir / "0"):  # held by this test's process while the sweep runs
        busy = run_cli(args, cwd=tmp_path)
    assert busy.returncode != 0
    assert f"job refused: {sweep_dir / '0'}: this run folder is in use by another kmexp run (pid {os.getpid()}," in (
        busy.stdout + busy.stderr
    )
    assert not (sweep_dir / "0" / "metrics.json").exists()  # the refused job wrote no record over the other run's
    assert metrics_of(sweep_dir, 1)["status"] == "completed"

    # Each job gave its folder up at its end: resuming runs the refused job and keeps the other.
    resumed = run_cli([*args[:-1], f"resume={sweep_dir}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert metrics_of(sweep_dir, 0)["status"] == "completed"
    assert metrics_of(sweep_dir, 1)["kept_on_resume"] is True
    assert not list(sweep_dir.rglob(LOCK_FILE))


def test_resume_into_a_new_folder_runs_everything(small_data, tmp_path):
    sweep_dir = tmp_path / "fresh"
    args = ["-m", *files_overrides(small_data), "seed=0,1", "trainer.epochs=2", "logger=none", f"resume={sweep_dir}"]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [metrics_of(sweep_dir, job)["status"] for job in range(2)] == ["completed"] * 2
    assert not any("kept_on_resume" in metrics_of(sweep_dir, job) for job in range(2))


@pytest.mark.slow
def test_resume_with_other_sweep_arguments_is_refused_before_any_job_starts(small_data, tmp_path):
    sweep_dir = tmp_path / "sweep"
    common = [*files_overrides(small_data), "trainer.epochs=2", "logger=none"]
    first = run_cli(["-m", *common, "language=en,fr", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    kept = {name: (sweep_dir / name / "metrics.json") for name in ("0", "1")}
    before = {name: (path.read_bytes(), path.stat().st_mtime_ns) for name, path in kept.items()}
    sweep_json = (sweep_dir / "sweep.json").read_bytes()

    changed = run_cli(["-m", *common, "language=en,de", f"resume={sweep_dir}"], cwd=tmp_path)
    assert changed.returncode == 1
    assert changed.stderr.strip().splitlines() == [
        (
            f"kmexp: error: resume={sweep_dir}: the sweep was started with language=en,fr; this command has "
            "language=en,de (added de, dropped fr); rerun with the original arguments or a new folder"
        )
    ]
    assert "[kmexp sweep]" not in changed.stdout  # no job started
    assert {name: (path.read_bytes(), path.stat().st_mtime_ns) for name, path in kept.items()} == before
    assert (sweep_dir / "sweep.json").read_bytes() == sweep_json and not (sweep_dir / "2").exists()

    same = run_cli(["-m", *common, "language=en,fr", f"resume={sweep_dir}"], cwd=tmp_path)
    assert same.returncode == 0, same.stderr[-3000:]
    assert [metrics_of(sweep_dir, job)["kept_on_resume"] for job in range(2)] == [True, True]
    assert [m[5] for m in progress_lines(same.stdout)] == ["kept from the earlier sweep"] * 2


def test_a_resume_refusal_names_every_changed_argument():
    from kmexp.sweep import resume_mismatch

    started = ["language=en,fr", "trainer.epochs=2", "resume=old"]
    assert resume_mismatch("old", started, ["trainer.epochs=2", "language=en,fr", "resume=old"]) is None  # order of arguments
    assert resume_mismatch("old", started, ["language=fr,en", "trainer.epochs=3", "+seed=1"]) == (
        "resume=old: the sweep was started with language=en,fr trainer.epochs=2 no seed; this command has "
        "language=fr,en trainer.epochs=3 seed=1 (language: the same values in another order, which numbers the jobs "
        "differently); rerun with the original arguments or a new folder"
    )
    assert "(dropped 3)" in resume_mismatch("old", ["seed=range(1,4)"], ["seed=range(1,3)"])


def compose_multirun(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


class CountingLoader:
    """Hydra's own config loader, counting the configs it composes."""

    def __init__(self, loader):
        self.loader = loader
        self.composed = 0

    def load_sweep_config(self, master_config, sweep_overrides):
        self.composed += 1
        return self.loader.load_sweep_config(master_config, sweep_overrides)

    def load_configuration(self, config_name, overrides, run_mode):
        self.composed += 1
        return self.loader.load_configuration(config_name, overrides, run_mode)

    def list_groups(self, parent_name):
        return self.loader.list_groups(parent_name)


def test_the_sweeper_composes_each_job_once():
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from kmexp.sweeper import ComposedOnce

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        hydra_loader = GlobalHydra.instance().config_loader()
        master = hydra_loader.load_configuration("config", ["language=en,fr"], RunMode.MULTIRUN)
        counting = CountingLoader(hydra_loader)
        loader = ComposedOnce(counting)
        jobs = [["language=en"], ["language=fr"]]
        checked = [loader.load_sweep_config(master, job) for job in jobs]  # the sweeper checks every job first
        launched = [loader.load_sweep_config(master, job) for job in jobs]  # then the launcher runs each
        assert counting.composed == 2
        for job, config in zip(jobs, launched, strict=True):
            fresh = hydra_loader.load_sweep_config(master, job)
            assert OmegaConf.to_yaml(config) == OmegaConf.to_yaml(fresh)
        assert launched[0].language.code == "eng_Latn" and launched[1].language.code == "fra_Latn"
        assert [id(config) for config in launched] == [id(config) for config in checked]
        loader.load_sweep_config(master, jobs[0])  # a third request composes anew
        assert counting.composed == 3
        small = ComposedOnce(counting, size=1)  # a bounded number kept: the second job is composed twice
        for job in jobs + jobs:
            small.load_sweep_config(master, job)
        assert counting.composed == 3 + 3
        # A joblib worker gets the loader with each job, and each job's config in a file of its own, once.
        counting = CountingLoader(hydra_loader)
        loader = ComposedOnce(counting)
        checked = [loader.load_sweep_config(master, job) for job in jobs]
        sent = pickle.loads(pickle.dumps(loader))
        folder = loader._handed_over
        assert sent._kept == {} and loader._kept == {} and len(list(folder.iterdir())) == 2
        in_worker = sent._loader  # the worker's copy of the counting loader
        received = sent.load_sweep_config(master, jobs[1])
        assert in_worker.composed == 2  # read, not composed
        assert OmegaConf.to_yaml(received) == OmegaConf.to_yaml(checked[1]) and received.language.code == "fra_Latn"
        assert len(list(folder.iterdir())) == 1
        sent.load_sweep_config(master, jobs[1])  # a second request composes anew
        assert in_worker.composed == 3
        del loader, sent
        gc.collect()
        assert not folder.exists()  # the folder goes with the loader that made it
        assert master.hydra.sweeper._target_ == "hydra_plugins.kmexp_sweeper.ComposeOnceSweeper"


@pytest.mark.parametrize(
    ("jobs", "compositions"),
    [
        # The benchmark's sweep: one language option, a code per job (and the sweep's Hydra overrides).
        ([["language=generic", f"language.code={code}"] for code in ("fra_Latn", "zho_Hans", "arb_Arab")], 1),
        # Values before and after group options, a nested key, a new key, a dict, a deleted key.
        ([[f"seed={seed}", "optimizer=sgd", "optimizer.learning_rate=0.5", "+extra.note=x"] for seed in (0, 7)]
         + [["optimizer=sgd", "+extra={a: 1, b: 2}", "~extra.a", "trainer={epochs: 3, patience: 1}"]], 1),
        # Two sets of group options: one composition each.
        ([[f"language={tag}", f"seed={seed}"] for tag in ("en", "ja") for seed in (1, 2)], 2),
    ],
)
def test_jobs_that_share_group_options_get_hydras_configs_from_one_composition(tmp_path, jobs, compositions):
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from kmexp.job_configs import JobConfigs

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        hydra_loader = GlobalHydra.instance().config_loader()
        sweep = ["seed=0,1", f"hydra.sweep.dir={tmp_path}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
        master = hydra_loader.load_configuration("config", sweep, RunMode.MULTIRUN)
        counting = CountingLoader(hydra_loader)
        configs = JobConfigs(counting)
        assert configs.compositions(master, jobs) == compositions
        made = [configs.load_sweep_config(master, job) for job in jobs]
        assert counting.composed == compositions  # Hydra composed each set of group options once
        for job, config in zip(jobs, made, strict=True):
            composed = hydra_loader.load_sweep_config(master, job)
            assert OmegaConf.to_yaml(config) == OmegaConf.to_yaml(composed)
            assert OmegaConf.is_struct(config) and not OmegaConf.is_readonly(config.hydra)
            assert config.hydra.job.override_dirname == composed.hydra.job.override_dirname
        assert made[0] is not made[1]  # each job gets a config of its own
        # A job whose values do not apply raises what Hydra raises for it, and Hydra composed it as a whole.
        for bad in (["language=generic", "seed=abc"], ["language=generic", "language.cod=fra_Latn"], ["language=nope"]):
            with pytest.raises(ConfigCompositionException) as from_hydra:
                hydra_loader.load_sweep_config(master, bad)
            with pytest.raises(ConfigCompositionException) as from_configs:
                configs.load_sweep_config(master, bad)
            assert str(from_configs.value) == str(from_hydra.value)
            assert repr(from_configs.value.__cause__) == repr(from_hydra.value.__cause__)


def test_the_sweeper_check_composes_a_large_batch_in_forked_processes():
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from kmexp.sweeper import MIN_SHARE, ComposedOnce

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        hydra_loader = GlobalHydra.instance().config_loader()
        master = hydra_loader.load_configuration("config", ["seed=range(0,20)"], RunMode.MULTIRUN)
        jobs = [[f"seed={seed}", "language=fr"] for seed in range(2 * MIN_SHARE + 3)]
        counting = CountingLoader(hydra_loader)
        loader = ComposedOnce(counting)
        loader.compose_in_parallel(master, jobs, processes=2)
        assert counting.composed == 0  # composed by the forked processes' copies, not here
        launched = [loader.load_sweep_config(master, job) for job in jobs]
        assert counting.composed == 0  # the launcher gets the configs the check composed
        for job, config in zip(jobs, launched, strict=True):
            assert OmegaConf.to_yaml(config) == OmegaConf.to_yaml(hydra_loader.load_sweep_config(master, job))
        assert [config.seed for config in launched] == list(range(len(jobs)))
        # A job that does not compose raises here, with the message composing it here gives.
        bad = [*jobs[:-1], ["seed=abc"]]
        with pytest.raises(ConfigCompositionException) as here:
            hydra_loader.load_sweep_config(master, ["seed=abc"])
        with pytest.raises(ConfigCompositionException) as checked:
            ComposedOnce(hydra_loader).compose_in_parallel(master, bad, processes=2)
        assert str(checked.value) == str(here.value) and repr(checked.value.__cause__) == repr(here.value.__cause__)


@pytest.mark.parametrize(("preset", "expected"), [("locales", 26), ("encoders", 7 * 6)])
def test_sweep_presets_expand_to_their_jobs(preset, expected):
    cfg = compose_multirun([f"+sweep={preset}"])
    params = dict(cfg.hydra.sweeper.params)
    assert count_jobs(params, []) == expected
    assert count_jobs(params, ["optimizer=adam,sgd"]) == 2 * expected
    if preset == "locales":
        languages = params["language"].split(",")
        assert "en" in languages and "zh-Hant" in languages and "generic" not in languages


def test_every_sweep_preset_language_and_encoder_exists():
    from kmexp.paths import group_options

    for preset in ("locales", "encoders"):
        params = dict(compose_multirun([f"+sweep={preset}"]).hydra.sweeper.params)
        for group, values in params.items():
            assert set(values.split(",")) <= set(group_options(group)), (preset, group)


def test_the_sib200_all_preset_sweeps_every_language_by_code_the_heaviest_first():
    from omegaconf import OmegaConf

    from kmexp.languages import sib200_codes, uses_spaces

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["+sweep=sib200_all"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)
    assert params["language"] == "generic"
    codes = params["language.code"].split(",")
    assert sorted(codes) == sib200_codes() and len(codes) == 205
    # The languages written without spaces (the widest vocabularies, the most memory) first, then the
    # rest, each part by code: an in-process sweep meets its memory ceiling in its first jobs.
    without_spaces = [code for code in sib200_codes() if not uses_spaces(code)]
    assert codes[: len(without_spaces)] == without_spaces
    assert {"khm_Khmr", "zho_Hans", "tha_Thai"} <= set(without_spaces)
    assert codes[len(without_spaces) :] == [code for code in sib200_codes() if uses_spaces(code)]
    assert count_jobs(params, []) == 205


def test_outside_a_parallel_launcher_tensorflow_keeps_its_own_thread_counts():
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["device=cpu"])
    assert cfg.device.intra_op_threads is None and cfg.device.inter_op_threads is None


def test_a_finished_job_leaves_its_configs_out_of_what_the_launcher_keeps(tmp_path, capsys):
    """Hydra's launchers keep every JobReturn until the sweep ends: without the configs, the garbage
    collection at each job's start does not walk through every earlier job's config."""
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import open_dict

    from kmexp.sweep import SweepCallback

    config = compose_multirun(["language=en", f"hydra.sweep.dir={tmp_path}"])
    with open_dict(config):
        config.hydra.mode = "MULTIRUN"
        config.hydra.job.num = 0
        config.hydra.runtime.output_dir = str(tmp_path / "0")
    job = JobReturn(overrides=["language=en"], cfg=config, hydra_cfg=config, status=JobStatus.COMPLETED, _return_value=0.75)
    SweepCallback(report=False).on_job_end(config, job)
    assert job.cfg is None and job.hydra_cfg is None
    assert job.return_value == 0.75 and job.status == JobStatus.COMPLETED and job.overrides == ["language=en"]
    assert "[kmexp sweep] 1/" in capsys.readouterr().out  # the progress line, from the folder (no metrics.json: failed)
