"""``write_run_report``: one run's report in its own folder: scores, learning curves, per-class table, confusion matrix.

The same pages as a sweep's (report.md, a self-contained report.html, PNGs in
report_plots/), from what the run recorded: ``metrics.json`` and ``history.csv``.
"""

from __future__ import annotations

from pathlib import Path

from kmexp.report import plots
from kmexp.report.collect import Job, RunReport, as_float, read_job
from kmexp.report.render import Image, Section, to_html, to_markdown
from kmexp.report.tables import (
    confusion_table,
    fmt,
    fmt_seconds,
    per_class_table,
    scalars_table,
)
from kmexp.runs import (
    HISTORY_FILE,
    HTML_FILE,
    MARKDOWN_FILE,
    METRICS_FILE,
    PLOTS_DIR,
    write_text,
)


def write_run_report(run_dir: Path) -> RunReport:
    """Write the report of the run in ``run_dir`` into that folder (a run that did not complete gets one too)."""
    run_dir = Path(run_dir)
    job = read_job(run_dir)
    images = draw_plots(job, run_dir / PLOTS_DIR)
    title = f"kmexp run report: {run_dir.resolve().name}"
    sections = run_sections(job, images)
    write_text(run_dir / MARKDOWN_FILE, to_markdown(title, sections, run_dir))
    write_text(run_dir / HTML_FILE, to_html(title, sections))
    paths = [run_dir / MARKDOWN_FILE, run_dir / HTML_FILE, *(image.path for image in images.values())]
    return RunReport(run_dir, job.status, job.error, paths)


def draw_plots(job: Job, folder: Path) -> dict[str, Image]:
    """The learning curves and the test confusion matrix, when the run recorded them; stale PNGs removed first."""
    for old in folder.glob("*.png"):
        old.unlink()
    record = job.record
    drawn = {
        "curves": (plots.run_curves(job.history(), folder / "learning_curves.png"), f"Loss and dev metrics per epoch ({HISTORY_FILE})"),
        "confusion": (
            plots.confusion_matrix(record.labels, record.test.get("confusion_matrix"), "Test confusion matrix", folder / "confusion_test.png"),
            "Test confusion matrix (rows: true label, columns: predicted)",
        ),
    }
    return {name: Image(path, caption) for name, (path, caption) in drawn.items() if path is not None}


def run_sections(job: Job, images: dict[str, Image]) -> list[Section]:
    """The report, section by section; a section appears only when the run recorded what it shows."""
    sections = [overview(job)]
    scores = scalars_table(job)
    if scores is not None:
        sections.append(Section("Scores", (f"Objective: {objective_line(job)}.", scores)))
    if "curves" in images:
        sections.append(Section("Learning curves", (images["curves"],)))
    for split in ("test", "dev"):
        table = per_class_table(job, split)
        if table is not None:
            sections.append(Section(f"Per-class scores on {split}", (table,)))
    confusion = confusion_table(job.record.labels, job.record.test.get("confusion_matrix"))
    if confusion is not None:
        blocks = ("Counts of test examples: rows are the true label, columns the predicted one.", confusion)
        sections.append(Section("Confusion matrix on test", (*blocks, *((images["confusion"],) if "confusion" in images else ()))))
    return sections


def overview(job: Job) -> Section:
    record = job.record
    status = f"{job.status}: {job.error}" if job.error else job.status
    lines = [f"Run folder: {job.folder.resolve()}", f"Status: {status}."]
    if job.problem:
        return Section("Overview", (*lines, f"Nothing else to show: the run left no readable {METRICS_FILE}."))
    language = record.language
    lines.append(f"Language: {language.get('tag', job.locale)} ({language.get('code', '?')}); seed {record.seed}.")
    lines.append(f"Overrides: {' '.join(job.overrides) or 'none'}.")
    if record.epochs_run is not None:
        lines.append(f"Epochs run: {record.epochs_run}; best epoch (its weights were saved): {record.best_epoch}.")
    sizes = record.data.get("sizes")
    if isinstance(sizes, dict) and sizes:
        lines.append("Rows: " + ", ".join(f"{split} {n}" for split, n in sizes.items()) + ".")
    seconds = as_float(record.seconds.get("total"))
    if seconds is not None:
        lines.append(f"Seconds: {fmt_seconds(seconds)}.")
    return Section("Overview", tuple(lines))


def objective_line(job: Job) -> str:
    objective = job.record.objective
    return "none recorded" if objective is None else f"{objective.name} on {objective.split} ({fmt(objective.value)})"
