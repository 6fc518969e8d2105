"""The sweep report (kmexp.report): results.csv, report.md, report.html and plots of a real sweep.

One real sweep runs once for the module (2 languages x 2 optimizers on small
data, plus a job that fails validation). Tests that need particular numbers
(seeds, dev-vs-test disagreements, hostile strings, transfer scores) copy its
real job folders and edit their metrics.json, so the report's arithmetic is
checked on real files against values computed here.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import files_overrides, run_cli, write_small_data
from scipy import stats as scipy_stats

from kmexp.report import NoJobsError, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TF_LOG_LINE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWEF]\d{4} \d\d:)")
HOSTILE = "<script>alert(1)</script>"


# --- helpers ---------------------------------------------------------------------------------------------


def read_metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text(encoding="utf-8"))


def edit_metrics(job_dir: Path, **fields) -> dict:
    """Set top-level fields of a job's metrics.json (nested dicts are merged one level deep)."""
    metrics = read_metrics(job_dir)
    for key, value in fields.items():
        metrics[key] = {**metrics[key], **value} if isinstance(value, dict) and isinstance(metrics.get(key), dict) else value
    (job_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return metrics


def copy_jobs(sweep: Path, target: Path, jobs: dict[str, str]) -> Path:
    """A new sweep folder made of real job folders: ``{new name: job of the module's sweep}``."""
    target.mkdir()
    for new, old in jobs.items():
        shutil.copytree(sweep / old, target / new, ignore=shutil.ignore_patterns("model.keras"))
    return target


def job_of(sweep: Path, language: str, optimizer: str) -> str:
    """The name of the completed job of the module's sweep with this language and optimizer."""
    for job_dir in sweep.iterdir():
        if (job_dir / "metrics.json").exists():
            m = read_metrics(job_dir)
            if m["status"] == "completed" and m["language"]["tag"] == language and m["choices"]["optimizer"] == optimizer:
                return job_dir.name
    raise AssertionError(f"no job {language} {optimizer}")


def md_section(markdown: str, title: str) -> str:
    """The text of one ``## title`` section of report.md."""
    start = markdown.index(f"## {title}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end >= 0 else None]


def md_table(section: str) -> tuple[list[str], list[list[str]]]:
    """The first pipe table in a section: header and rows of cell strings."""
    lines = [line for line in section.splitlines() if line.startswith("|")]
    split = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]
    return split[0], split[2:]


def by_first_column(rows: list[list[str]]) -> dict[str, list[str]]:
    return {row[0]: row for row in rows}


def marked(cell: str) -> bool:
    return cell.startswith("**") and cell.endswith("✓")


def plain(cell: str) -> str:
    return cell.removesuffix("✓").strip().strip("*")


def results_csv(sweep: Path) -> list[dict]:
    with open(sweep / "results.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --- the module's sweep ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A real sweep: language=en,fr x optimizer=adam,sgd, and as job 4 a job that fails (learning rate -1)."""
    root = tmp_path_factory.mktemp("report")
    data = write_small_data(root)
    common = [*files_overrides(data), "trainer.epochs=3", "logger=none"]
    main = ["-m", *common, "language=en,fr", "optimizer=adam,sgd", f"hydra.sweep.dir={root / 'sweep'}"]
    failing = ["-m", *common, "language=en", "optimizer.learning_rate=-1", f"hydra.sweep.dir={root / 'failing'}"]
    with ThreadPoolExecutor(2) as pool:  # the two processes share the machine's two cores
        done = list(pool.map(lambda args: run_cli(args, cwd=root), [main, failing]))
    assert done[0].returncode == 0, done[0].stderr[-3000:]
    assert read_metrics(root / "failing" / "0")["status"] == "failed", done[1].stderr[-3000:]
    shutil.copytree(root / "failing" / "0", root / "sweep" / "4")  # the failure handling may exit non-zero: use the folder
    return root / "sweep"


@pytest.fixture(scope="module")
def report(sweep):
    return write_report(sweep)


@pytest.fixture(scope="module")
def jobs(sweep) -> dict[str, dict]:
    return {name: read_metrics(sweep / name) for name in ("0", "1", "2", "3", "4")}


def test_results_csv_has_a_row_per_job_with_the_swept_keys(sweep, report, jobs):
    rows = results_csv(sweep)
    assert [row["job"] for row in rows] == ["0", "1", "2", "3", "4"]
    assert set(report.swept_keys) == {"language", "optimizer", "optimizer.learning_rate"}
    for column in ["overrides", *report.swept_keys, "status", "objective", "objective_value", "epochs_run", "seconds", "error"]:
        assert column in rows[0], column
    for column in ["dev_accuracy", "dev_macro_f1", "test_accuracy", "test_macro_f1"]:
        assert column in rows[0], column
    for row in rows:
        metrics = jobs[row["job"]]
        values = dict(o.split("=", 1) for o in metrics["overrides"])
        assert row["overrides"] == " ".join(metrics["overrides"])
        assert all(row[key] == values.get(key, "") for key in report.swept_keys)
        assert row["status"] == metrics["status"]
        if metrics["status"] == "completed":
            assert row["error"] == ""
            assert float(row["objective_value"]) == metrics["objective"]["value"]
            for split in ("dev", "test"):
                assert float(row[f"{split}_accuracy"]) == metrics[split]["accuracy"]
                assert float(row[f"{split}_macro_f1"]) == metrics[split]["macro_f1"]
            assert int(row["epochs_run"]) == metrics["epochs_run"]
            assert float(row["seconds"]) == metrics["seconds"]["total"]
        else:
            assert row["error"] == metrics["error"] and "learning_rate" in row["error"]
            assert row["test_accuracy"] == ""
    assert len(report.rows) == len(rows)


def test_markdown_table_shows_test_scores_and_marks_the_best_setting_by_dev(sweep, report, jobs):
    markdown = (sweep / "report.md").read_text(encoding="utf-8")
    header, rows = md_table(md_section(markdown, "Test accuracy by locale and setting"))
    assert header[0] == "locale" and header[1:3] == ["optimizer=adam", "optimizer=sgd"]
    table = by_first_column(rows)
    assert set(table) == {"en", "fr"}
    for language in ("en", "fr"):
        completed = {m["choices"]["optimizer"]: m for m in jobs.values() if m["status"] == "completed" and m["language"]["tag"] == language}
        best_dev = max(m["dev"]["accuracy"] for m in completed.values())
        best = next(o for o in ("adam", "sgd") if completed[o]["dev"]["accuracy"] == best_dev)  # the first on ties
        for column, optimizer in ((1, "adam"), (2, "sgd")):
            cell = table[language][column]
            assert plain(cell) == f"{completed[optimizer]['test']['accuracy']:.4f}"
            assert marked(cell) == (optimizer == best)
        assert table[language][-1] == f"optimizer={best}"
    assert "dev split only" in markdown


def test_the_best_setting_is_chosen_on_dev_even_when_test_disagrees(sweep, tmp_path):
    folder = copy_jobs(sweep, tmp_path / "sweep", {"0": job_of(sweep, "en", "adam"), "1": job_of(sweep, "en", "sgd")})
    edit_metrics(folder / "0", dev={"accuracy": 0.9}, test={"accuracy": 0.5}, objective={"value": 0.9})
    edit_metrics(folder / "1", dev={"accuracy": 0.8}, test={"accuracy": 0.95}, objective={"value": 0.8})
    write_report(folder)
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    _, rows = md_table(md_section(markdown, "Test accuracy by locale and setting"))
    assert rows == [["en", "**0.5000** ✓", "0.9500", "optimizer=adam"]]
    _, dev_rows = md_table(md_section(markdown, "Dev accuracy (used for model selection)"))
    assert dev_rows == [["en", "**0.9000** ✓", "0.8000", "optimizer=adam"]]
    assert "Job 0 (en, optimizer=adam" in md_section(markdown, "Best run")
    assert '<td class="best num">0.5000 ✓</td>' in (folder / "report.html").read_text(encoding="utf-8")


def test_settings_are_summarized_across_locales(sweep, report, jobs):
    markdown = (sweep / "report.md").read_text(encoding="utf-8")
    header, rows = md_table(md_section(markdown, "Settings across locales"))
    table = by_first_column(rows)
    for optimizer in ("adam", "sgd"):
        scores = {m["language"]["tag"]: m["test"]["accuracy"] for m in jobs.values() if m["status"] == "completed" and m["choices"]["optimizer"] == optimizer}
        row = dict(zip(header, table[f"optimizer={optimizer}"]))
        assert row["mean"] == f"{statistics.fmean(scores.values()):.4f}"
        assert row["worst"] == f"{min(scores.values()):.4f}" and scores[row["worst locale"]] == min(scores.values())
        assert row["gap (best − worst)"] == f"{max(scores.values()) - min(scores.values()):.4f}"


def test_failed_jobs_are_listed_with_their_error(sweep, report, jobs):
    failed = jobs["4"]
    assert report.failed == [("4", " ".join(failed["overrides"]), failed["error"])]
    _, rows = md_table(md_section((sweep / "report.md").read_text(encoding="utf-8"), "Jobs that did not complete"))
    assert rows == [["4", " ".join(failed["overrides"]), failed["error"]]]
    assert html.escape(failed["error"]) in (sweep / "report.html").read_text(encoding="utf-8")


def test_plots_are_pngs_linked_from_markdown_and_embedded_in_html(sweep, report):
    pngs = [p for p in report.paths if p.suffix == ".png"]
    assert {p.name for p in pngs} == {"scores.png", "heatmap.png", "learning_curves.png", "confusion_best.png"}
    markdown = (sweep / "report.md").read_text(encoding="utf-8")
    page = (sweep / "report.html").read_text(encoding="utf-8")
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC), png
        assert f"]({png.relative_to(sweep).as_posix()})" in markdown
        assert f'src="data:image/png;base64,{base64.b64encode(data).decode()}"' in page


def test_html_is_self_contained(sweep, report):
    page = (sweep / "report.html").read_text(encoding="utf-8")
    references = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page, flags=re.IGNORECASE)
    assert references and all(ref.startswith("data:image/png;base64,") for ref in references), references
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page and "url(" not in page
    assert "<style>" in page


def test_dataset_and_config_strings_are_escaped(sweep, tmp_path):
    folder = copy_jobs(sweep, tmp_path / "sweep", {"0": job_of(sweep, "en", "adam"), "1": job_of(sweep, "en", "sgd")})
    metrics = read_metrics(folder / "1")
    labels = [HOSTILE, *metrics["labels"][1:]]
    per_class = {HOSTILE if label == metrics["labels"][0] else label: scores for label, scores in metrics["test"]["per_class"].items()}
    overrides = [f"optimizer={HOSTILE}" if o == "optimizer=sgd" else o for o in metrics["overrides"]]
    # job 1 becomes the best run by dev, so its labels appear in the per-class table and the confusion matrix
    edit_metrics(folder / "1", labels=labels, overrides=overrides, dev={"accuracy": 2.0}, test={"per_class": per_class})
    write_report(folder)
    page = (folder / "report.html").read_text(encoding="utf-8")
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    assert HOSTILE not in page and "<script" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3  # setting column, per-class label, jobs table
    assert "<script" not in markdown and "&lt;script>alert(1)&lt;/script>" in markdown
    assert f"optimizer={HOSTILE}" in [row["setting"] for row in results_csv(folder)]  # the CSV keeps the data as is


def test_seed_sweeps_report_mean_std_and_t_interval(sweep, tmp_path):
    en, fr = job_of(sweep, "en", "adam"), job_of(sweep, "fr", "adam")
    scores = {"en": [0.70, 0.80, 0.90], "fr": [0.60, 0.65, 0.70]}
    folder = copy_jobs(sweep, tmp_path / "sweep", {str(i): job for i, job in enumerate([en] * 3 + [fr] * 3)})
    for i, (language, seed) in enumerate([(lang, s) for lang in ("en", "fr") for s in (1, 2, 3)]):
        metrics = read_metrics(folder / str(i))
        edit_metrics(folder / str(i), seed=seed, overrides=[*metrics["overrides"], f"seed={seed}"], test={"accuracy": scores[language][seed - 1]})
    report = write_report(folder)
    assert set(report.swept_keys) == {"language", "seed"}
    assert [row["seed"] for row in results_csv(folder)] == ["1", "2", "3"] * 2

    def interval(values):
        mean, std = statistics.fmean(values), statistics.stdev(values)
        half = scipy_stats.t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values))
        return mean, std, f"[{mean - half:.4f}, {mean + half:.4f}]"

    markdown = (folder / "report.md").read_text(encoding="utf-8")
    header, rows = md_table(md_section(markdown, "Seeds"))
    assert header == ["setting", "locale", "seeds", "mean", "std", "95% interval"]
    for row in rows:
        mean, std, ci = interval(scores[row[1]])
        assert row == ["default", row[1], "3", f"{mean:.4f}", f"{std:.4f}", ci]
    _, test_rows = md_table(md_section(markdown, "Test accuracy by locale and setting"))
    for language, cell, _ in test_rows:
        mean, std, _ = interval(scores[language])
        assert plain(cell) == f"{mean:.4f} ± {std:.4f}"
    header, rows = md_table(md_section(markdown, "Settings across locales"))
    row = dict(zip(header, rows[0]))
    mean, std, ci = interval([statistics.fmean(pair) for pair in zip(scores["en"], scores["fr"])])  # per seed, mean over locales
    assert row["seeds"] == "3" and row["mean ± std over seeds"] == f"{mean:.4f} ± {std:.4f}" and row["95% interval"] == ci


def test_transfer_matrix_from_eval_scores(sweep, tmp_path):
    en, fr = job_of(sweep, "en", "adam"), job_of(sweep, "fr", "adam")
    folder = copy_jobs(sweep, tmp_path / "sweep", {"0": en, "1": fr})
    en_test = edit_metrics(folder / "0", eval={"fra_Latn": {"accuracy": 0.42, "macro_f1": 0.4}})["test"]["accuracy"]
    fr_test = edit_metrics(folder / "1", eval={"eng_Latn": {"accuracy": 0.37, "macro_f1": 0.3}})["test"]["accuracy"]
    report = write_report(folder)
    header, rows = md_table(md_section((folder / "report.md").read_text(encoding="utf-8"), "Cross-lingual transfer"))
    assert header[1:] == ["eng_Latn", "fra_Latn"]
    assert rows == [["eng_Latn", f"{en_test:.4f}", "0.4200"], ["fra_Latn", "0.3700", f"{fr_test:.4f}"]]
    assert (folder / "report_plots" / "transfer_0.png").read_bytes().startswith(PNG_MAGIC)
    assert folder / "report_plots" / "transfer_0.png" in report.paths
    assert [row["eval_fra_Latn_accuracy"] for row in results_csv(folder)] == ["0.42", ""]


def test_one_job_sweep(sweep, tmp_path):
    folder = copy_jobs(sweep, tmp_path / "sweep", {"0": "0"})
    report = write_report(folder)
    assert report.swept_keys == [] and report.failed == []
    _, rows = md_table(md_section((folder / "report.md").read_text(encoding="utf-8"), "Test accuracy by locale and setting"))
    assert len(rows) == 1 and marked(rows[0][1]) and rows[0][-1] == "default"


def test_all_failed_sweep_still_gets_a_report_without_plots(sweep, tmp_path):
    folder = copy_jobs(sweep, tmp_path / "sweep", {"0": "4", "1": "0"})
    (folder / "1" / "metrics.json").unlink()  # a job that died before writing anything
    report = write_report(folder)
    assert [(name, error) for name, _, error in report.failed] == [("0", read_metrics(folder / "0")["error"]), ("1", "no metrics.json")]
    assert [p.name for p in report.paths] == ["results.csv", "report.md", "report.html"]
    assert not list((folder / "report_plots").glob("*.png"))
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "no metrics.json" in page and "<img" not in page
    assert [row["status"] for row in results_csv(folder)] == ["failed", "failed"]


def test_a_folder_without_jobs_is_refused(tmp_path):
    with pytest.raises(NoJobsError, match=re.escape(str(tmp_path))):
        write_report(tmp_path)


def run_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kmexp.report", *args], check=False, capture_output=True, text=True, timeout=120)


def test_cli_writes_the_report_and_refuses_a_missing_folder(sweep, tmp_path):
    folder = copy_jobs(sweep, tmp_path / "sweep", {"0": "0", "1": "4"})
    with ThreadPoolExecutor(2) as pool:
        good, missing = pool.map(lambda args: run_report(*args), [[str(folder)], [str(tmp_path / "nowhere")]])
    assert good.returncode == 0, good.stderr[-3000:]
    for name in ("results.csv", "report.md", "report.html", "report_plots/scores.png"):
        assert (folder / name).is_file() and str(folder / name) in good.stdout

    assert missing.returncode == 2 and missing.stdout == ""
    ours = [line for line in missing.stderr.splitlines() if not TF_LOG_LINE.match(line)]
    assert len(ours) == 1 and "Traceback" not in missing.stderr, missing.stderr
    assert ours[0].startswith("kmexp-report: error: ") and str(tmp_path / "nowhere") in ours[0] and "sweep folder" in ours[0]


def test_a_killed_sweep_counts_the_jobs_it_never_started_as_not_run(sweep, tmp_path):
    # The real sweep's sweep.json says 4 jobs; only the first two had started when it was killed.
    folder = copy_jobs(sweep, tmp_path / "sweep", {"0": "0", "1": "1"})
    shutil.copy(sweep / "sweep.json", folder / "sweep.json")
    assert json.loads((folder / "sweep.json").read_text(encoding="utf-8"))["jobs"] == 4
    out = run_report(str(folder))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[:2] == [
        "kmexp-report: 4 jobs (2 completed, 0 did not complete, 2 not run)",
        (
            f"kmexp-report: Incomplete: 2 of 4 jobs not run (job 2, 3); rerunning the sweep with resume={folder} "
            "and its original arguments runs them."
        ),
    ]
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    overview = md_section(markdown, "Overview")
    assert "4 jobs: 2 completed, 0 did not complete, 2 not run." in overview and "2 of 4 jobs not run" in overview
    _, rows = md_table(md_section(markdown, "Jobs that did not complete"))
    assert [(row[0], row[2]) for row in rows] == [(job, "not run: the sweep stopped before this job started") for job in ("2", "3")]
    assert "every job completed" not in markdown
    assert "2 of 4 jobs not run" in (folder / "report.html").read_text(encoding="utf-8")
    report = write_report(folder)
    assert (report.planned, report.not_run, report.completed) == (4, ["2", "3"], 2)


@pytest.mark.slow
def test_report_of_one_run_has_its_curves_per_class_table_and_confusion_matrix(tmp_path):
    data = write_small_data(tmp_path / "data")
    run_dir, failed_dir = tmp_path / "run", tmp_path / "failed"
    common = [*files_overrides(data), "trainer.epochs=3", "logger=none"]
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(
            lambda args: run_cli(args, cwd=tmp_path),
            [[*common, f"hydra.run.dir={run_dir}"], [*common, "optimizer.learning_rate=-1", f"hydra.run.dir={failed_dir}"]],
        ))
    assert done[0].returncode == 0 and done[1].returncode == 1, done[0].stderr[-3000:]
    with ThreadPoolExecutor(2) as pool:
        out, failed = pool.map(lambda folder: run_report(str(folder)), [run_dir, failed_dir])
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[0] == f"kmexp-report: run {run_dir} (completed)"
    for name in ("report.md", "report.html", "report_plots/learning_curves.png", "report_plots/confusion_test.png"):
        assert (run_dir / name).is_file() and f"wrote {run_dir / name}" in out.stdout
    for png in (run_dir / "report_plots").glob("*.png"):
        assert png.read_bytes().startswith(PNG_MAGIC)
    assert not (run_dir / "results.csv").exists()

    metrics = read_metrics(run_dir)
    with open(data["test"], newline="", encoding="utf-8") as f:
        test_rows = list(csv.DictReader(f, delimiter="\t"))
    labels = sorted({row["label"] for row in test_rows})
    assert metrics["labels"] == labels
    markdown = (run_dir / "report.md").read_text(encoding="utf-8")
    header, rows = md_table(md_section(markdown, "Per-class scores on test"))
    assert header == ["label", "precision", "recall", "f1", "support"] and [row[0] for row in rows] == labels
    assert {row[0]: int(row[4]) for row in rows} == {label: sum(r["label"] == label for r in test_rows) for label in labels}
    header, rows = md_table(md_section(markdown, "Confusion matrix on test"))
    assert header == ["true \\ predicted", *labels, "total"]
    counts = [[int(cell) for cell in row[1 : len(labels) + 1]] for row in rows if row[0] in labels]
    assert counts == metrics["test"]["confusion_matrix"] and sum(map(sum, counts)) == len(test_rows)
    assert sum(counts[i][i] for i in range(len(labels))) / len(test_rows) == pytest.approx(metrics["test"]["accuracy"])
    header, rows = md_table(md_section(markdown, "Scores"))
    assert by_first_column(rows)["accuracy"][1:] == [f"{metrics['dev']['accuracy']:.4f}", f"{metrics['test']['accuracy']:.4f}"]
    assert "](report_plots/learning_curves.png)" in markdown and "](report_plots/confusion_test.png)" in markdown
    assert (run_dir / "report.html").read_text(encoding="utf-8").count("data:image/png;base64,") == 2

    # A run that failed gets a report too: how it ended, and nothing it did not record.
    assert failed.returncode == 0, failed.stderr[-3000:]
    page = (failed_dir / "report.md").read_text(encoding="utf-8")
    assert "Status: failed: " in page and "optimizer.learning_rate" in page
    assert "## Confusion matrix" not in page and not list((failed_dir / "report_plots").glob("*.png"))
