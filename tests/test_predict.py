"""``kmexp-predict`` end to end: a real small run, then the command in fresh processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import files_overrides, only_run_dir, run_cli, write_small_data

LABELS = ["food", "sports", "weather"]
# Clear texts in four scripts, with the topic each should get (as in test_train).
CLEAR = {"le match de football": "sports", "хлеб и суп": "food", "今天下雨": "weather", "مطر ورياح": "weather"}
# Standard input: CRLF, an empty line, emoji, a tab inside a line and no final newline.
STDIN_LINES = ["le match de football", "", "хлеб и суп", "今天下雨", "مطر ورياح", "🙂 👍 mixed 中文 عربى", "a\tb", "no final newline"]
STDIN = ("\n".join(STDIN_LINES[:3]) + "\r\n" + "\n".join(STDIN_LINES[3:])).encode("utf-8")
# Line 2 is Latin-1, not UTF-8 (0xe8 is "è"); line 1 is labelled before it is read (--batch-size 1).
NOT_UTF8 = "le match de football\n".encode("utf-8") + "la crème brûlée\n".encode("latin-1") + b"du pain\n"

# Importing kmexp loads TensorFlow, whose C++ logger writes these lines before kmexp-predict runs.
TF_LOG_LINE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWEF]\d{4} \d\d:)")


def predict_command() -> list[str]:
    """The installed ``kmexp-predict`` script, or the same entry point when the install predates it."""
    script = Path(sys.executable).with_name("kmexp-predict")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from kmexp.predict import main; main()"]


def run_predict(*args, stdin: bytes = b"", command: list[str] | None = None) -> subprocess.CompletedProcess:
    # A non-UTF-8 locale and stdout encoding: kmexp-predict must write UTF-8 anyway.
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONIOENCODING": "ascii", "PYTHONUTF8": "0"}
    return subprocess.run(
        [*(command or predict_command()), *map(str, args)], input=stdin, capture_output=True, env=env, timeout=300
    )


def output_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")[-3000:]
    text = result.stdout.decode("utf-8")  # strict: the output must be valid UTF-8
    assert text.endswith("\n")
    return text[:-1].split("\n")


def check_pairs(fields: list[str]) -> list[tuple[str, float]]:
    """label/probability fields as pairs, each a known label with a probability in [0, 1]."""
    pairs = [(fields[i], float(fields[i + 1])) for i in range(0, len(fields), 2)]
    for label, probability in pairs:
        assert label in LABELS and 0.0 <= probability <= 1.0
    return pairs


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("predict")
    data = write_small_data(folder)
    result = run_cli([*files_overrides(data), "logger=none", "trainer.epochs=5"], cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(folder / "outputs")
    assert json.loads((run_dir / "metrics.json").read_text())["labels"] == LABELS
    return run_dir


ERROR_CASES = [  # (case, extra arguments, words the error line must contain)
    ("missing RUN_DIR", [], ["not found", "nope"]),
    ("no model.keras", [], ["model.keras", "kmexp run folder"]),
    ("no metrics.json", [], ["metrics.json", "kmexp run folder"]),
    ("no labels", [], ["metrics.json", "labels"]),
    ("top-k 0", ["--top-k", "0"], ["--top-k=0", "1 to 3"]),
    ("top-k 4", ["--top-k", "4"], ["--top-k=4", "1 to 3"]),
]


def broken_run(folder: Path, run_dir: Path, case: str) -> Path:
    """A copy of the real run folder with one thing wrong (or none, for the option errors)."""
    if case == "missing RUN_DIR":
        return folder / "nope"
    folder.mkdir()
    if case != "no model.keras":
        shutil.copy(run_dir / "model.keras", folder)
    if case == "no labels":
        (folder / "metrics.json").write_text(json.dumps({"status": "completed"}))
    elif case != "no metrics.json":
        shutil.copy(run_dir / "metrics.json", folder)
    return folder


@pytest.fixture(scope="module")
def results(run_dir, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Every command the tests check, run a few at a time: each is a fresh process that imports TensorFlow."""
    broken = tmp_path_factory.mktemp("broken")
    calls = {
        "arguments": ([run_dir, *CLEAR], b"", None),
        # Standard input read in batches of 3, so the last batch is partial.
        "top3": ([run_dir, "--top-k", "3", "--batch-size", "3"], STDIN, None),
        # The same through ``python -m kmexp.predict``.
        "json": ([run_dir, "--json", "--top-k", "3"], STDIN, [sys.executable, "-m", "kmexp.predict"]),
        "not utf-8": ([run_dir, "--batch-size", "1"], NOT_UTF8, None),
    }
    for index, (case, extra, _) in enumerate(ERROR_CASES):
        calls[case] = ([broken_run(broken / str(index), run_dir, case), "le match", *extra], b"", None)
    with ThreadPoolExecutor(max_workers=min(4, max(2, os.cpu_count() or 1))) as pool:
        futures = {name: pool.submit(run_predict, *args, stdin=stdin, command=command) for name, (args, stdin, command) in calls.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def top3_lines(results) -> list[str]:
    return output_lines(results["top3"])


def test_text_arguments_give_one_line_each(results):
    lines = output_lines(results["arguments"])
    assert len(lines) == len(CLEAR)
    for line, (text, expected) in zip(lines, CLEAR.items()):
        label, probability, echoed = line.split("\t")
        assert check_pairs([label, probability]) and echoed == text
        assert label == expected  # labels come out in metrics.json order


def test_stdin_lines_stay_aligned_with_output_lines(top3_lines):
    assert len(top3_lines) == len(STDIN_LINES)
    for line, text in zip(top3_lines, STDIN_LINES):
        fields = line.split("\t")
        assert len(fields) == 7
        assert fields[6] == text.replace("\t", " ")  # the text is the last field; a tab in it shows as a space


def test_top_k_lists_every_label_most_probable_first(top3_lines):
    for line in top3_lines:
        pairs = check_pairs(line.split("\t")[:6])
        assert sorted(label for label, _ in pairs) == LABELS
        probabilities = [p for _, p in pairs]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) <= 1.0 + 2e-4  # three values rounded to 4 decimals
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-3)  # all labels: the whole distribution


def test_json_lines_parse_and_match_the_tab_separated_output(results, top3_lines):
    lines = output_lines(results["json"])  # run as ``python -m kmexp.predict``
    assert len(lines) == len(STDIN_LINES)
    for line, text, tsv_line in zip(lines, STDIN_LINES, top3_lines):
        assert "\\u" not in line  # ensure_ascii=False: scripts and emoji as they are
        record = json.loads(line)
        assert set(record) == {"text", "predictions"} and record["text"] == text
        assert all(set(p) == {"label", "probability"} for p in record["predictions"])
        tsv_pairs = check_pairs(tsv_line.split("\t")[:6])
        assert [p["label"] for p in record["predictions"]] == [label for label, _ in tsv_pairs]
        for prediction, (_, tsv_probability) in zip(record["predictions"], tsv_pairs):
            assert prediction["probability"] == pytest.approx(tsv_probability, abs=5e-5)


def test_a_line_that_is_not_utf8_stops_with_one_line_naming_it(results):
    result = results["not utf-8"]
    stderr = result.stderr.decode("utf-8")
    assert result.returncode == 2 and "Traceback" not in stderr, stderr[-3000:]
    ours = [line for line in stderr.splitlines() if not TF_LOG_LINE.match(line)]
    assert ours == ["kmexp-predict: error: standard input line 2 is not valid UTF-8 (byte 0xe8); "
                    "convert the input to UTF-8 (e.g. iconv -f latin1 -t utf-8)"]
    # Line 1 was labelled and printed before line 2 was read; nothing is printed for lines 2 and 3.
    [line] = result.stdout.decode("utf-8").splitlines()
    assert line.startswith("sports\t") and line.endswith("\tle match de football")


def test_a_text_argument_that_is_not_utf8_is_named():
    from kmexp.predict import UsageError, argument_texts

    # As Python hands over an argument whose bytes are not UTF-8 (PEP 383).
    broken = "crème".encode("latin-1").decode("utf-8", "surrogateescape")
    assert argument_texts(["le match", "crème"]) == ["le match", "crème"]
    with pytest.raises(UsageError, match=r"^TEXT argument 2 is not valid UTF-8 \(byte 0xe8\)"):
        argument_texts(["le match", broken])


@pytest.mark.parametrize(("case", "expected"), [(case, expected) for case, _, expected in ERROR_CASES])
def test_errors_are_one_line_with_exit_status_2(results, case, expected):
    result = results[case]
    stderr = result.stderr.decode("utf-8")
    assert result.returncode == 2, stderr[-3000:]
    assert result.stdout == b"" and "Traceback" not in stderr
    ours = [line for line in stderr.splitlines() if not TF_LOG_LINE.match(line)]
    assert len(ours) == 1 and ours[0].startswith("kmexp-predict: error: "), stderr
    assert all(word in ours[0] for word in expected), ours[0]
