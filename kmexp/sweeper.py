"""kmexp's sweeper: Hydra's basic grid sweeper, with each job's config composed once rather than twice.

Hydra's basic sweeper composes the config of every job before the first one starts,
so that a bad value fails the sweep at once rather than at its 150th job; then its
launcher (the in-process one, or joblib's, in the main process) composes each
job's config again just before the job runs. Composing kmexp's config (schemas,
a dozen groups, the script settings) costs a sizeable part of a short job
(benchmarks/results/sweep_throughput.md). Here the first composition of each job
is kept, untouched (the check only composes), and the launcher gets it back; at
most ``KEPT_CONFIGS`` at a time, so a huge grid holds a bounded number of
configs, and its later jobs are composed twice as before. A launcher that runs the
jobs in worker processes on this machine (joblib's) gets them too: the configs are
handed over in files, one per job, which a worker reads instead of composing.
Jobs that share their group options share one Hydra composition
(``kmexp.job_configs``): a sweep over values is composed in milliseconds a job. A
batch that still takes many compositions (a grid of group options) is checked in
parallel, in processes forked from the sweep's own: until the first job starts,
the machine's other cores are idle.
``conf/hydra/sweeper/kmexp.yaml`` holds its settings (the basic sweeper's keys),
and kmexp registers it as ``hydra/sweeper=basic``, in the place of Hydra's own.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import pickle
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import Any

from hydra.core.config_loader import ConfigLoader
from hydra.core.object_type import ObjectType
from hydra.types import HydraContext, RunMode, TaskFunction
from omegaconf import DictConfig

from kmexp import compat
from kmexp.cores import usable_cores
from kmexp.job_configs import JobConfigs

# Composed configs kept at once: each is a live config object, so a huge grid keeps only this many.
KEPT_CONFIGS = 256
# The sweeper's check composes a batch in parallel in shares of at least MIN_SHARE jobs, about
# SHARES_PER_PROCESS shares for each process; a smaller batch is composed here, one job after another.
MIN_SHARE = 8
SHARES_PER_PROCESS = 4


class ComposeOnceSweeper(compat.basic_sweeper()):
    """``hydra/sweeper=basic``, whose launcher reuses the configs composed to check the sweep."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        loader = ComposedOnce(hydra_context.config_loader)
        super().setup(
            hydra_context=HydraContext(config_loader=loader, callbacks=hydra_context.callbacks),
            task_function=task_function,
            config=config,
        )

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Compose every job's config before the first job starts, so that a bad value fails the sweep at once.

        The cores are idle until the first job starts: a batch that takes many Hydra compositions (one
        per set of group options, ``kmexp.job_configs``) is composed in parallel.
        """
        processes = _check_processes(self.hydra_context.config_loader.compositions(self.config, batch))
        if processes < 2:
            return super().validate_batch_is_legal(batch)
        self.hydra_context.config_loader.compose_in_parallel(self.config, batch, processes)


class ComposedOnce(ConfigLoader):
    """A config loader that keeps each job's composed config until it is asked for a second time.

    Jobs are told apart by their overrides (and the sweep's master config). The
    second request gets the config the first one composed, which the sweeper's
    check only read; a third request composes anew.
    """

    def __init__(self, loader: ConfigLoader, size: int = KEPT_CONFIGS):
        self._loader = loader
        self._configs = JobConfigs(loader)  # composes the jobs that share group options from one composition
        self.size = size
        self._kept: dict[tuple[int, tuple[str, ...]], DictConfig] = {}
        self._handed_over: Path | None = None  # the folder of the configs handed over to worker processes

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        kept = self._kept.pop(_job_key(master_config, sweep_overrides), None)
        if kept is None:
            kept = self._take_handed_over(sweep_overrides)
        if kept is not None:
            return kept
        config = self._configs.load_sweep_config(master_config, sweep_overrides)
        self._keep(master_config, sweep_overrides, config)
        return config

    def compose_in_parallel(self, master_config: DictConfig, batch: Sequence[Sequence[str]], processes: int) -> None:
        """Compose these jobs' configs in processes forked from this one, and keep them, as ``load_sweep_config`` does.

        A forked process starts with this one's Hydra state: its config store, resolvers and plugins.
        A job whose config does not compose there is composed here again, and raises here: an exception
        sent back from another process loses the errors chained to it, which the one-line report names.
        """
        # A few shares per process, so that one slow share does not leave the others idle.
        size = max(MIN_SHARE, math.ceil(len(batch) / (processes * SHARES_PER_PROCESS)))
        starts = range(0, len(batch), size)
        shares = [[list(overrides) for overrides in batch[start : start + size]] for start in starts]
        # Only the configs this loader has room to keep come back; the others are composed there to check them.
        room = self.size - len(self._kept)
        send_back = [start < room for start in starts]
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(_compose_share, repeat(self._configs), repeat(master_config), shares, send_back))
        for share, (failed, configs) in zip(shares, results, strict=True):
            for position in failed:
                self._loader.load_sweep_config(master_config, share[position])  # raises the error the check reports
            composed = [overrides for position, overrides in enumerate(share) if position not in failed]
            for overrides, config in zip(composed, configs):  # no configs where the share's were not sent back
                self._keep(master_config, overrides, config)

    def compositions(self, master_config: DictConfig, batch: Sequence[Sequence[str]]) -> int:
        """How many Hydra compositions these jobs' configs take (``kmexp.job_configs``)."""
        return self._configs.compositions(master_config, batch)

    def _keep(self, master_config: DictConfig, sweep_overrides: list[str], config: DictConfig) -> None:
        if len(self._kept) < self.size:
            self._kept[_job_key(master_config, sweep_overrides)] = config

    def __getstate__(self) -> dict:
        # A launcher that runs jobs in other processes (joblib's) sends the loader along with every job.
        # Pickling every kept config with each job made a 205-job sweep on 2 workers slower than one process
        # (docs/benchmarks.md); instead each config goes once to a file of its own, which the worker that
        # runs the job reads, much faster than composing it again. A worker on another machine
        # (a Ray cluster, SLURM) finds no file and composes, as before.
        self._hand_over()
        return {**self.__dict__, "_kept": {}}

    def _hand_over(self) -> None:
        """Move the kept configs to files in a private temporary folder, removed with this loader."""
        if not self._kept:
            return
        if self._handed_over is None:
            self._handed_over = Path(tempfile.mkdtemp(prefix="kmexp-configs-"))
            weakref.finalize(self, shutil.rmtree, self._handed_over, ignore_errors=True)
        for (_, overrides), config in self._kept.items():
            (self._handed_over / _file_name(overrides)).write_bytes(pickle.dumps(config))
        self._kept.clear()

    def _take_handed_over(self, sweep_overrides: list[str]) -> DictConfig | None:
        """The config handed over for this job, once: the file goes, so a second request composes anew."""
        if self._handed_over is None:
            return None
        path = self._handed_over / _file_name(tuple(sweep_overrides))
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        path.unlink(missing_ok=True)
        return pickle.loads(data)

    # Everything else is the wrapped loader's.

    def load_configuration(
        self,
        config_name: str | None,
        overrides: list[str],
        run_mode: RunMode,
        from_shell: bool = True,
        validate_sweep_overrides: bool = True,
    ) -> DictConfig:
        return self._loader.load_configuration(config_name, overrides, run_mode, from_shell, validate_sweep_overrides)

    def get_search_path(self):
        return self._loader.get_search_path()

    def get_sources(self):
        return self._loader.get_sources()

    def list_groups(self, parent_name: str) -> list[str]:
        return self._loader.list_groups(parent_name)

    def get_group_options(
        self,
        group_name: str,
        results_filter: ObjectType | None = ObjectType.CONFIG,
        config_name: str | None = None,
        overrides: list[str] | None = None,
    ) -> list[str]:
        return self._loader.get_group_options(group_name, results_filter, config_name, overrides)

    def compute_defaults_list(self, config_name: str | None, overrides: list[str], run_mode: RunMode) -> Any:
        return self._loader.compute_defaults_list(config_name, overrides, run_mode)


def _job_key(master_config: DictConfig, sweep_overrides: Sequence[str]) -> tuple[int, tuple[str, ...]]:
    """A kept config's key: the sweep (its master config) and the job's overrides."""
    return id(master_config), tuple(sweep_overrides)


def _check_processes(compositions: int) -> int:
    """How many processes compose a batch that takes this many Hydra compositions: one per usable core, with
    at least ``MIN_SHARE`` compositions each; 1 (this process) where processes cannot be forked with this
    one's state (Windows). A job made from a kept composition takes milliseconds: not worth a process."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return min(usable_cores(), compositions // MIN_SHARE)


def _compose_share(
    job_configs: JobConfigs, master_config: DictConfig, share: list[list[str]], send_back: bool
) -> tuple[list[int], list[DictConfig]]:
    """In a forked process: the positions in ``share`` of the jobs whose config does not compose, and
    (with ``send_back``) the configs of the others, in order."""
    failed, configs = [], []
    for position, overrides in enumerate(share):
        try:
            config = job_configs.load_sweep_config(master_config, overrides)
        except Exception:  # noqa: BLE001 - the main process composes this job again, and reports why it fails
            failed.append(position)
            continue
        if send_back:
            configs.append(config)
    return failed, configs


def _file_name(overrides: tuple[str, ...]) -> str:
    """A job's file among the handed-over configs: named by a hash of its overrides."""
    return hashlib.sha256("\0".join(overrides).encode("utf-8")).hexdigest() + ".pickle"
