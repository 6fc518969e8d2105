"""A W&B Report for one sweep: test objective per language, the swept keys, and a run comparer.

    kmexp-report outputs/multirun/2026-11-27/10-31-02-123456 --wandb-report

Everything the report needs comes from the job folders' ``metrics.json``
(``group``, ``overrides``, ``choices``, ``objective``), so it can be built long
after the sweep. ``build_report`` only builds the report object (no network);
``publish`` saves it to W&B when W&B is online, and otherwise says, in one
line, what to run first: an offline sweep's runs are not on W&B yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from kmexp.errors import KmexpError
from kmexp.paths import config_dir
from kmexp.report.collect import swept_override_keys
from kmexp.runs import METRICS_FILE, RunRecord, job_dirs, override_values

# A job's offline run is <job>/wandb/offline-run-<time>-<id>; `wandb sync` takes these folders.
OFFLINE_RUN_PREFIX = "offline-run-"


@dataclass(frozen=True)
class Sweep:
    """What a report needs to know about a sweep, read from its jobs' ``metrics.json``."""

    folder: Path
    group: str
    objective: str  # the first selected metric; the report shows it on test
    swept_keys: list[str]  # override keys whose value differs between jobs, in first-seen order
    group_keys: set[str]  # the swept keys that are config groups (encoder=onehot), not values
    offline_runs: list[Path]


def read_sweep(sweep_dir: Path) -> Sweep:
    """Read a sweep folder; a folder without jobs of one sweep is the user's mistake, said in one line."""
    sweep_dir = Path(sweep_dir)
    jobs = [record for record in map(RunRecord.find, job_dirs(sweep_dir)) if record is not None]
    groups = {job.group for job in jobs}
    if not jobs or None in groups or len(groups) != 1:
        raise KmexpError(
            f"{sweep_dir}: not one sweep's folder (found {len(jobs)} {METRICS_FILE} with groups {sorted(map(str, groups))}); "
            "pass the folder of a `python -m kmexp -m ...` run"
        )
    objectives = [job.objective.name for job in jobs if job.objective is not None]
    if not objectives:
        raise KmexpError(f"{sweep_dir}: no job of this sweep completed, so there is nothing to report")
    overrides = [job.overrides for job in jobs]
    # When nothing differs (a one-job sweep), every override key is still worth a column.
    keys = swept_override_keys(overrides) or list(dict.fromkeys(k for o in overrides for k in override_values(o)))
    chosen = {group for job in jobs for group in job.choices}
    return Sweep(
        folder=sweep_dir,
        group=groups.pop(),
        objective=objectives[0],
        swept_keys=keys,
        group_keys={key for key in keys if key in chosen},
        offline_runs=sorted(
            path for path in sweep_dir.rglob(f"{OFFLINE_RUN_PREFIX}*") if path.is_dir() and path.parent.name == "wandb"
        ),
    )


def build_report(sweep_dir: Path, entity: str, project: str):
    """The report object (``wandb_workspaces.reports.v2.Report``) for the sweep's group; no network call.

    ``entity`` must be given: left out, wandb-workspaces asks W&B's server for the default one.
    """
    import wandb_workspaces.reports.v2 as wr

    sweep = read_sweep(sweep_dir)

    test_objective = f"test/{sweep.objective}"
    runset = wr.Runset(
        entity=entity, project=project, name=f"sweep {sweep.group}", filters=f"Metric('Group') == '{sweep.group}'"
    )
    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(_config_key(sweep, key))) for key in sweep.swept_keys]
    columns += [
        wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric("objective"), display_name=f"dev {sweep.objective}"),
        wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(test_objective)),
    ]
    panels = [
        wr.BarPlot(
            title=f"{test_objective} per language",
            metrics=[wr.SummaryMetric(test_objective)],
            groupby=wr.Config("language.code"),
            groupby_aggfunc="mean",
            groupby_rangefunc="minmax",
            layout=wr.Layout(x=0, y=0, w=12, h=8),
        ),
        wr.ParallelCoordinatesPlot(
            title="swept keys -> objective", columns=columns, layout=wr.Layout(x=12, y=0, w=12, h=8)
        ),
        wr.RunComparer(diff_only="split", layout=wr.Layout(x=0, y=8, w=24, h=12)),
    ]
    intro = (
        f"kmexp sweep {sweep.group}: swept {', '.join(sweep.swept_keys)}. "
        f"The objective ({sweep.objective}) is chosen on dev; test is reported, never tuned on."
    )
    return wr.Report(
        project=project,
        entity=entity,
        title=f"kmexp sweep {sweep.group}",
        description=intro,
        blocks=[wr.P(intro), wr.PanelGrid(runsets=[runset], panels=panels)],
    )


def _config_key(sweep: Sweep, key: str) -> str:
    """A swept config group is read from ``choices`` (the option's name), any other key from the config."""
    return f"choices.{key}" if key in sweep.group_keys else key


def publish(sweep_dir: Path, entity: str | None, project: str) -> str:
    """Save the sweep's report to W&B and return one line with its URL, or one line saying what to run first.

    W&B is online when ``WANDB_MODE`` (or, unset, ``conf/logger/wandb.yaml``)
    says ``online``; offline, nothing here touches the network.
    """
    sweep = read_sweep(sweep_dir)
    if wandb_mode() != "online":
        return offline_message(sweep)
    import wandb

    try:
        api = wandb.Api()
        report = build_report(sweep.folder, entity if entity is not None else api.default_entity, project)
        report.save()
    except wandb.errors.UsageError as err:
        return f"W&B report not published: {str(err).rstrip('.')}"
    unsynced = unsynced_runs(sweep)
    hint = f" (its runs show there once synced: `wandb sync {_paths(unsynced)}`)" if unsynced else ""
    return f"W&B report: {report.url}{hint}"


def offline_message(sweep: Sweep) -> str:
    """The one line that tells an offline user how to get the report."""
    if not sweep.offline_runs:
        return f"W&B report not published: no offline W&B runs under {sweep.folder} (run the sweep with logger=wandb)"
    return (
        f"W&B report not published (W&B is offline): run `wandb login` and `wandb sync {_paths(sweep.offline_runs)}`, "
        f"then `WANDB_MODE=online kmexp-report {sweep.folder} --wandb-report`"
    )


def unsynced_runs(sweep: Sweep) -> list[Path]:
    """Offline runs that ``wandb sync`` has not uploaded yet (it leaves ``run-<id>.wandb.synced`` beside the log)."""
    return [run for run in sweep.offline_runs if not any(run.glob("*.wandb.synced"))]


def _paths(paths: list[Path]) -> str:
    return " ".join(str(path) for path in paths)


def logger_defaults() -> dict:
    """``conf/logger/wandb.yaml``, resolved: the report uses the runs' project and mode unless told otherwise."""
    return OmegaConf.to_container(OmegaConf.load(config_dir() / "logger" / "wandb.yaml"), resolve=True)


def wandb_mode() -> str:
    return str(logger_defaults()["mode"])
