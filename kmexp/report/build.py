"""``write_report``: read a sweep, compute its comparison, write results.csv, report.md, report.html and plots."""

from __future__ import annotations

from pathlib import Path

from kmexp.report import plots
from kmexp.report.collect import (
    NOT_RUN,
    SEED_KEY,
    Job,
    SweepReport,
    collect_jobs,
    not_run,
    not_run_line,
    objective_name,
    planned_jobs,
    swept_keys,
)
from kmexp.report.render import BEST_MARK, Image, Section, to_html, to_markdown
from kmexp.report.stats import Grid, Run, best_run, runs_of, summarize, transfers
from kmexp.report.tables import (
    failed_table,
    fmt,
    jobs_table,
    per_class_table,
    result_rows,
    scores_table,
    seeds_table,
    settings_table,
    transfer_table,
    write_csv,
)
from kmexp.runs import HTML_FILE, MARKDOWN_FILE, PLOTS_DIR, RESULTS_FILE, write_text

def write_report(sweep_dir: Path) -> SweepReport:
    """Write the report of the sweep in ``sweep_dir`` into that folder; raises NoJobsError if it holds no jobs."""
    sweep_dir = Path(sweep_dir)
    jobs = collect_jobs(sweep_dir)
    keys = swept_keys(jobs)
    objective = objective_name(jobs)
    runs = runs_of(jobs, keys, objective) if objective else []
    failed = [(job.name, " ".join(job.overrides), job.error) for job in jobs if not job.completed]
    planned = planned_jobs(sweep_dir)
    missing = not_run(jobs, planned)

    rows = result_rows(jobs, keys, objective)
    paths = [write_csv(sweep_dir / RESULTS_FILE, rows)]
    images = draw_plots(runs, objective, sweep_dir / PLOTS_DIR)
    sections = report_sections(sweep_dir, jobs, keys, objective, runs, failed, images, missing)
    title = f"kmexp sweep report: {sweep_dir.resolve().name}"
    write_text(sweep_dir / MARKDOWN_FILE, to_markdown(title, sections, sweep_dir))
    write_text(sweep_dir / HTML_FILE, to_html(title, sections))
    paths += [sweep_dir / MARKDOWN_FILE, sweep_dir / HTML_FILE, *(image.path for image in images.values())]
    return SweepReport(sweep_dir, rows, failed, paths, keys, objective, planned, missing)


def draw_plots(runs: list[Run], objective: str | None, folder: Path) -> dict[str, Image]:
    """Every plot the data allows, by name. PNGs of an earlier report are removed first, so none goes stale."""
    for old in folder.glob("*.png"):
        old.unlink()
    if not runs or objective is None:
        return {}
    grid = Grid.of(runs)
    drawn = {
        "scores": (plots.score_bars(grid, objective, folder / "scores.png"), f"Test {objective} per locale and setting"),
        "heatmap": (plots.score_heatmap(grid, objective, folder / "heatmap.png"), f"Test {objective}: setting x locale"),
        "curves": (plots.learning_curves(runs, objective, folder / "learning_curves.png"), "Learning curves on dev"),
    }
    best = best_run(runs)
    drawn["confusion"] = (
        plots.confusion(best, folder / "confusion_best.png"),
        f"Test confusion matrix of the best run by dev {objective}: job {best.job.name} ({best.locale}, {best.setting})",
    )
    for i, transfer in enumerate(transfers(runs, objective)):
        drawn[f"transfer{i}"] = (
            plots.transfer_heatmap(transfer, objective, folder / f"transfer_{i}.png"),
            f"Cross-lingual transfer, test {objective} ({transfer.setting})",
        )
    return {name: Image(path, caption) for name, (path, caption) in drawn.items() if path is not None}


def report_sections(
    sweep_dir: Path,
    jobs: list[Job],
    keys: list[str],
    objective: str | None,
    runs: list[Run],
    failed: list[tuple[str, str, str]],
    images: dict[str, Image],
    missing: list[str],
) -> list[Section]:
    """The report, section by section; each section appears only when the sweep has data for it."""
    sections = [overview(sweep_dir, jobs, keys, objective, runs, missing)]
    if runs and objective:
        sections += comparison(Grid.of(runs), objective, seeds=SEED_KEY in keys, images=images)
        sections += transfer_sections(runs, objective, images)
        sections += best_run_sections(runs, objective, images)
    not_completed = [*failed, *((name, "", NOT_RUN) for name in missing)]
    sections.append(
        Section("Jobs that did not complete", (failed_table(not_completed),) if not_completed else ("None: every job completed.",))
    )
    sections.append(Section("All jobs", (f"Every column of every job is in {RESULTS_FILE}.", jobs_table(jobs, keys, objective))))
    return sections


def overview(
    sweep_dir: Path, jobs: list[Job], keys: list[str], objective: str | None, runs: list[Run], missing: list[str]
) -> Section:
    completed = sum(job.completed for job in jobs)
    total = len(jobs) + len(missing)
    counts = f"{total} jobs: {completed} completed, {len(jobs) - completed} did not complete"
    lines = [
        f"Sweep folder: {sweep_dir.resolve()}",
        f"{counts}, {len(missing)} not run." if missing else f"{counts}.",
        *((not_run_line(missing, total, sweep_dir.resolve()),) if missing else ()),
        (
            f"Swept keys: {', '.join(keys) if keys else 'none (one configuration)'}. Rows are locales (the language tag); "
            "a setting is the values of the swept keys other than language and seed ('default' when only those are swept)."
        ),
    ]
    if objective and runs:
        lines.append(
            f"Objective: {objective}. Model selection uses the dev split only: the best setting for each locale "
            f"(marked {BEST_MARK}) is the one with the highest dev {objective}, and the best run is the one with "
            f"the highest dev {objective}. The test scores shown were never used to choose anything."
        )
    else:
        lines.append("No job completed with a dev and a test objective, so there is nothing to compare yet.")
    return Section("Overview", tuple(lines))


def comparison(grid: Grid, objective: str, seeds: bool, images: dict[str, Image]) -> list[Section]:
    """Locale x setting tables (test, then dev), the settings across locales, and the spread over seeds."""
    spread = " Cells with several seeds show mean ± sample std over seeds." if seeds else ""
    test = Section(
        f"Test {objective} by locale and setting",
        (
            f"Each locale's best setting by dev {objective} is marked {BEST_MARK}.{spread}",
            scores_table(grid, "test"),
            *(images[name] for name in ("scores", "heatmap") if name in images),
        ),
    )
    dev = Section(f"Dev {objective} (used for model selection)", (scores_table(grid, "dev"),))
    summaries = [s for setting in grid.settings if (s := summarize(grid, setting))]
    across = Section(
        "Settings across locales",
        (
            (
                f"Mean, worst and best locale of each setting's test {objective} (each locale averaged over its seeds), "
                "and the gap between its best and worst locale."
            ),
            settings_table(summaries, seeds),
        ),
    )
    sections = [test, dev, across]
    if seeds:
        sections.append(
            Section(
                "Seeds",
                (
                    (
                        "Test scores over seeds: mean ± sample standard deviation, and a 95% interval for the mean from "
                        "the t distribution (n − 1 degrees of freedom). In 'Settings across locales', a seed's value is "
                        "its mean over locales, counted only when every locale of the setting ran with that seed."
                    ),
                    seeds_table(grid),
                ),
            )
        )
    if "curves" in images:
        sections.append(Section("Learning curves", (images["curves"],)))
    return sections


def transfer_sections(runs: list[Run], objective: str, images: dict[str, Image]) -> list[Section]:
    found = transfers(runs, objective)
    if not found:
        return []
    blocks: list = [
        (
            f"Test {objective} of each model on other languages (zero-shot; the 'eval' field of metrics.json). "
            "Rows: the language trained on; columns: the language tested on; mean over seeds."
        )
    ]
    for i, transfer in enumerate(found):
        blocks += [f"Setting: {transfer.setting}", transfer_table(transfer)]
        if f"transfer{i}" in images:
            blocks.append(images[f"transfer{i}"])
    return [Section("Cross-lingual transfer", tuple(blocks))]


def best_run_sections(runs: list[Run], objective: str, images: dict[str, Image]) -> list[Section]:
    best = best_run(runs)
    line = (
        f"Job {best.job.name} ({best.locale}, {best.setting}, seed {best.seed}): dev {objective} {fmt(best.dev)}, "
        f"test {objective} {fmt(best.test)}. Chosen by dev {objective}."
    )
    per_class = per_class_table(best.job)
    blocks = (line, *((per_class,) if per_class else ()), *((images["confusion"],) if "confusion" in images else ()))
    return [Section("Best run", blocks)]
