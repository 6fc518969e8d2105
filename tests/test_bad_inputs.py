"""Bad input ends a real ``python -m kmexp`` run with one line that says what to fix.

Each case runs the command line in a fresh process, as a user would, and checks
the contract: a non-zero exit, no traceback, and a last stderr line (after
TensorFlow's start-up noise) that names the key or file and what is wrong.
Validation happens before training, so most runs take the few seconds of the
imports. ``logger=none``: W&B is not the point here.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import files_overrides, make_rows, only_run_dir, run_cli, write_small_data, write_tsv
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigKeyError

from kmexp.cli import error_line, traceback_requested
from kmexp.errors import MAX_LINE, ConfigError

# TensorFlow's C++ logging (absl) writes these to stderr at import time, whatever kmexp does.
ABSL_NOISE = ("I0000", "E0000", "W0000", "WARNING: All log messages")
SCRIPT_LABEL = "<script>alert(1)</script>"
# The runs start together: each spends its few seconds importing TensorFlow, so they overlap well.
PARALLEL_RUNS = 3

# name: (data files swapped in for the good ones, overrides, what the last line must hold).
# The files are written by write_bad_files; nope.tsv is not.
FAILING = {
    # kmexp's own checks list every bad value together, in one line.
    "several_values": (
        {},
        ["optimizer.learning_rate=-1", "model.dropout=1.5", "trainer.batch_size=0"],
        ["optimizer.learning_rate=-1", "> 0", "model.dropout=1.5", "[0, 1)", "trainer.batch_size=0", ">= 1"],
    ),
    "language_code": ({}, ["language=generic", "language.code=xx_Fake"], ["language.code=xx_Fake is not allowed: ", "closest: "]),
    # Refused by Hydra while composing the config, before kmexp's own checks.
    "unknown_key": ({}, ["trainer.epoch=3"], ["trainer.epoch", "+trainer.epoch=3"]),
    "wrong_type": ({}, ["trainer.epochs=ten"], ["trainer.epochs", "ten"]),
    "unknown_option": ({}, ["loss=nope"], ["loss/nope", "crossentropy, focal, label_smoothing, mse, squared_hinge"]),
    "option_by_name": ({}, ["language=french"], ["language/french", "; did you mean fr (French)?"]),
    "option_misspelt": ({}, ["encoder=charngram"], ["encoder/charngram", "; did you mean char_ngram?"]),
    # Nothing close: every option users pick, never a shared part (conf/device/_common.yaml).
    "option_far_off": ({}, ["device=xyz"], ["device/xyz", "; available options: auto, cpu, gpu, multi_gpu, multi_worker, tpu"]),
    # Data files.
    "missing_file": ({"train": "nope.tsv"}, [], ["data.train", "nope.tsv", "not found"]),
    "no_text_column": ({"train": "train.csv"}, [], ["train.csv", "'text'", "columns found: ['sentence', 'label']"]),
    "not_utf8": ({"train": "latin1.tsv"}, [], ["latin1.tsv", "line 3", "UTF-8"]),
    "empty_split": ({"dev": "blank_dev.tsv"}, [], ["blank_dev.tsv", "dev split has no non-empty texts"]),
    "unseen_label": ({"test": "new_label.tsv"}, [], ["new_label.tsv", "'music'", "not in the training data"]),
    "one_label": ({"train": "one_label.tsv"}, [], ["one_label.tsv: every training text has the same label, 'sports'"]),
    "long_text": ({"dev": "long_text.tsv"}, ["data.max_chars=1000", "data.on_long_text=error"],
                  ["long_text.tsv: data row 3 has a text of 5,000 characters, more than data.max_chars=1000"]),
    # A file without a header whose first line is 20 MB of text with commas in it: once minutes, now seconds.
    "headerless_csv": ({"train": "headerless.csv"}, [],
                       ["headerless.csv: missing column(s) ['text', 'label']; columns found: [", "(953,251 columns)]"]),
    # A message that quotes a 100,000-character label is cut in the middle, wherever the error line goes.
    "huge_label": ({"test": "huge_label.tsv"}, [], ["huge_label.tsv: labels not in the training data: ['xxx",
                                                    "characters left out", "train has ['food', 'sports', 'weather']"]),
    "long_text_options": ({}, ["data.max_chars=0", "data.on_long_text=cut"],
                          ["data.max_chars=0 is not allowed", "data.on_long_text=cut is not allowed"]),
}
# A text longer than any sentence, as a broken export makes.
HUGE_LINE_CHARS = 20 * 2**20


def last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(ABSL_NOISE)]
    return lines[-1] if lines else ""


def failure_line(result) -> str:
    """The one line a failed run ends with, once the contract is checked."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    line = last_line(result.stderr)
    assert line.startswith("kmexp: error: "), result.stderr[-3000:]
    assert len(line) <= MAX_LINE, line[:3000]
    return line


def write_bad_files(folder: Path) -> None:
    with open(folder / "train.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["sentence", "label"])
        writer.writeheader()
        writer.writerows({"sentence": row["text"], "label": row["label"]} for row in make_rows(10, seed=1))
    (folder / "latin1.tsv").write_bytes("text\tlabel\nle match\tsports\nla crème brûlée\tfood\n".encode("latin-1"))
    write_tsv(folder / "blank_dev.tsv", [{"text": "  ", "label": "food"}, {"text": "", "label": "sports"}])
    write_tsv(folder / "new_label.tsv", [*make_rows(2, seed=3), {"text": "a new song", "label": "music"}])
    write_tsv(folder / "huge_label.tsv", [*make_rows(2, seed=3), {"text": "a long label", "label": "x" * 100_000}])
    write_tsv(folder / "one_label.tsv", [{**row, "label": "sports"} for row in make_rows(10, seed=1)])
    write_tsv(folder / "long_text.tsv", [*make_rows(1, seed=2)[:2], {"text": "x" * 5000, "label": "food"}])
    with open(folder / "headerless.csv", "w", encoding="utf-8") as f:
        f.write(", ".join(["le match de football"] * (HUGE_LINE_CHARS // 22)) + ",sports\n")
        f.writelines(f"{row['text']},{row['label']}\n" for row in make_rows(10, seed=1))


def write_odd_data(folder: Path) -> dict[str, Path]:
    """Small train/dev/test files with blank texts (3 in train, 1 in dev) and a ``<script>`` label."""
    folder.mkdir(parents=True, exist_ok=True)
    blank = [{"text": text, "label": "food"} for text in ("", "   ", "\t")]

    def rows(n: int, seed: int, extra: list[dict]) -> list[dict]:
        relabel = {"food": SCRIPT_LABEL}
        return [{**row, "label": relabel.get(row["label"], row["label"])} for row in [*make_rows(n, seed), *extra]]

    return {
        "train": write_tsv(folder / "train.tsv", rows(20, 1, blank)),
        "dev": write_tsv(folder / "dev.tsv", rows(5, 2, blank[:1])),
        "test": write_tsv(folder / "test.tsv", rows(5, 3, [])),
    }


def write_long_texts(folder: Path) -> dict[str, Path]:
    """Train and test files with one 5,000-character text each."""
    folder.mkdir(parents=True, exist_ok=True)
    long_row = {"text": "le match de football " * 250 + "!", "label": "sports"}
    return {
        "train": write_tsv(folder / "train.tsv", [*make_rows(30, seed=1), long_row]),
        "test": write_tsv(folder / "test.tsv", [*make_rows(10, seed=3), long_row]),
    }


def run_together(jobs: dict[str, tuple[list[str], Path, dict | None]]) -> dict:
    """``python -m kmexp`` once per job (arguments, folder, extra environment), a few at a time."""
    for _, cwd, _ in jobs.values():
        cwd.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
        futures = {name: pool.submit(run_cli, args, cwd=cwd, env=env) for name, (args, cwd, env) in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Every run of this module, started together: name -> (its folder, the finished process)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    good = write_small_data(root / "data")
    write_bad_files(root)
    quick = ["logger=none", "trainer.epochs=2"]
    jobs = {}
    for name, (files, args, _) in FAILING.items():
        data = {**good, **{split: root / file for split, file in files.items()}}
        jobs[name] = ([*files_overrides(data), *quick, *args], root / name, None)
    jobs["full_error"] = ([*files_overrides(good), *quick, "model.dropout=1.5"], root / "full_error",
                          {"HYDRA_FULL_ERROR": "1"})
    # One training run serves two checks: blank texts are dropped and counted, a <script> label is escaped.
    sweep = ["-m", *files_overrides(write_odd_data(root / "odd_data")), *quick, "hydra.sweep.dir=sweep"]
    jobs["one_job_sweep"] = (sweep, root / "one_job_sweep", None)
    long_texts = {**good, **write_long_texts(root / "long_texts_data")}
    jobs["long_texts"] = ([*files_overrides(long_texts), *quick, "data.max_chars=1000"], root / "long_texts", None)
    return {name: (jobs[name][1], result) for name, result in run_together(jobs).items()}


# --- bad input: one line --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FAILING))
def test_bad_input_ends_with_one_line_naming_it(runs, name):
    _, result = runs[name]
    line = failure_line(result)
    for part in FAILING[name][2]:
        assert part in line, line


@pytest.mark.parametrize(("name", "quoted"), [("headerless_csv", "headerless.csv: missing column(s)"),
                                              ("huge_label", "huge_label.tsv: labels not in the training data")])
def test_a_long_value_stays_out_of_the_log_and_metrics_json(runs, name, quoted):
    """metrics.json's error and kmexp.log hold the same short line as stderr, not the value it quotes."""
    folder, _ = runs[name]
    run_dir = only_run_dir(folder)
    error = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["error"]
    assert error.startswith(f"DataError: {folder.parent}") and quoted in error and len(error) <= MAX_LINE
    log = (run_dir / "kmexp.log").read_text(encoding="utf-8")
    assert quoted in log and len(log) < 10 * MAX_LINE


def test_long_texts_are_cut_counted_in_metrics_json_and_warned_about_once(runs):
    folder, result = runs["long_texts"]
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(folder)
    data = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["data"]
    assert data["truncated"] == {"train": 1, "dev": 0, "test": 1}
    assert data["sizes"] == {"train": 91, "dev": 30, "test": 31}
    log = (run_dir / "kmexp.log").read_text(encoding="utf-8")
    assert log.count("cut 2 texts longer than data.max_chars=1000 characters to that length") == 1


def test_hydra_full_error_shows_the_traceback_and_still_ends_with_the_message(runs):
    _, result = runs["full_error"]
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert last_line(result.stderr).startswith("kmexp: error: model.dropout=1.5")


def test_empty_texts_are_dropped_and_counted(runs):
    folder, result = runs["one_job_sweep"]
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((folder / "sweep" / "0" / "metrics.json").read_text())
    assert metrics["data"]["dropped_empty"] == {"train": 3, "dev": 1, "test": 0}
    assert metrics["data"]["sizes"] == {"train": 60, "dev": 15, "test": 15}


def test_a_script_label_in_a_one_job_sweep_is_escaped_in_report_html(runs):
    folder, result = runs["one_job_sweep"]
    assert result.returncode == 0, result.stderr[-3000:]
    page = (folder / "sweep" / "report.html").read_text(encoding="utf-8")
    assert SCRIPT_LABEL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- a folder kmexp cannot write in ----------------------------------------------------------------------


@pytest.fixture
def read_only_folder(tmp_path):
    """An existing folder (holding one earlier file) that this process cannot write in.

    ``chmod 555`` for a normal user; root writes through permission bits, so for root the folder
    becomes a read-only bind mount of itself (skipped where root may not mount).
    """
    folder = tmp_path / "readonly"
    folder.mkdir()
    (folder / "earlier.txt").write_text("kept", encoding="utf-8")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    for command in (["mount", "--bind", str(folder), str(folder)], ["mount", "-o", "remount,bind,ro", str(folder)]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(["umount", str(folder)], capture_output=True)
            pytest.skip(f"running as root, and no read-only bind mount here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_run_or_sweep_folder_is_refused_in_one_line(read_only_folder, small_data, tmp_path):
    why = "read-only file system" if os.geteuid() == 0 else "permission denied: dr-xr-xr-x"
    common = [*files_overrides(small_data), "logger=none"]
    cases = {
        # key=value given -> the folder the message names as not writable
        f"hydra.run.dir={read_only_folder}": "the folder",
        f"hydra.run.dir={read_only_folder / 'new' / 'run'}": f"{read_only_folder}, where it would be made,",
        f"hydra.sweep.dir={read_only_folder}": "the folder",
    }
    for setting, where in cases.items():
        result = run_cli([*(["-m", "seed=0,1"] if setting.startswith("hydra.sweep") else []), *common, setting], cwd=tmp_path)
        assert result.returncode == 1
        # Refused before Hydra opens kmexp.log there, and before TensorFlow loads: the only line on stderr.
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr[-2000:]
        assert lines[0].startswith(f"kmexp: error: {setting}: {where} is not writable ({why}"), lines[0]
        assert lines[0].endswith("); make it writable, or pick another folder"), lines[0]
        assert os.listdir(read_only_folder) == ["earlier.txt"]

    # A job folder Hydra cannot open kmexp.log in (a read-only job folder of a resumed sweep): the error Hydra
    # raises, as logging raises it, is explained in one line too.
    log_file = read_only_folder / "kmexp.log"
    script = (
        "import logging.config, sys\n"
        "from kmexp.cli import error_line\n"
        "handler = {'class': 'logging.FileHandler', 'filename': sys.argv[1]}\n"
        "try:\n"
        "    logging.config.dictConfig({'version': 1, 'handlers': {'file': handler}})\n"
        "except ValueError as err:\n"
        "    print(error_line(err))\n"
    )
    explained = subprocess.run([sys.executable, "-c", script, str(log_file)], capture_output=True, text=True,
                               check=True).stdout.strip()
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    assert explained == f"{log_file}: cannot open the log file ({reason}); make its folder writable"


# --- the one line, in process ----------------------------------------------------------------------------


def test_error_line_puts_each_kind_of_error_on_one_line():
    message = "model.dropout=1.5 is not allowed: it must be in [0, 1)"
    assert error_line(ConfigError(message)) == message
    missing = MissingConfigException("In 'config': Could not find 'loss/nope'\n\nAvailable options in 'loss':\n\tmse",
                                     "loss/nope", ["_common", "focal", "mse"])
    assert error_line(missing) == "In 'config': Could not find 'loss/nope'; available options: focal, mse"
    assert error_line(OverrideParseException("a=[1", "no viable alternative\nSee https://hydra.cc")) == (
        "cannot parse the override 'a=[1': no viable alternative"
    )
    composition = ConfigCompositionException("Could not override 'a.b'.\nTo append to your config use +a.b=1")
    composition.__cause__ = ConfigKeyError("Key 'b' is not in struct\n    full_key: a.b")
    assert error_line(composition) == (
        "Could not override 'a.b': Key 'b' is not in struct; To append to your config use +a.b=1"
    )
    assert error_line(ValueError("bad\nmore")) == "ValueError: bad (set HYDRA_FULL_ERROR=1 for the traceback)"


def test_error_line_cuts_a_long_message_after_redacting_secrets(monkeypatch):
    secret = "s3cr3t-" * 20
    monkeypatch.setenv("MY_API_TOKEN", secret)
    # The secret straddles where the line is cut: cut first, its first half would be left unredacted.
    message = f"labels not in the training data: ['{'x' * 200}{secret}{'y' * 10_000}']; train has ['a', 'b']"
    line = error_line(ConfigError(message))
    assert len(f"kmexp: error: {line}") <= MAX_LINE
    assert line.startswith("labels not in the training data: ['xxx") and line.endswith("yyy']; train has ['a', 'b']")
    assert "<redacted:MY_API_TOKEN>" in line and "characters left out" in line and "s3cr3t" not in line


@pytest.mark.parametrize(
    ("environ", "args", "expected"),
    [
        ({}, ["model.dropout=1.5"], False),
        ({"HYDRA_FULL_ERROR": "0"}, [], False),
        ({"HYDRA_FULL_ERROR": "1"}, [], True),
        ({}, ["hydra.verbose=true"], True),
        ({}, ["hydra.verbose=[kmexp]"], True),
        ({}, ["hydra.verbose=false"], False),
    ],
)
def test_the_traceback_shows_only_when_asked_for(environ, args, expected):
    assert traceback_requested(environ, args) is expected
