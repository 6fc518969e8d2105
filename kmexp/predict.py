"""``kmexp-predict RUN_DIR [TEXT ...]``: label texts with a trained kmexp model.

RUN_DIR is a kmexp run folder: it must hold ``model.keras`` (the end-to-end
model, loaded with safe mode on) and ``metrics.json`` (whose ``labels`` name
the model's outputs, in order).

Input: the TEXT arguments, or, when there are none, standard input: one text
per line, UTF-8. Bytes that are not valid UTF-8 stop the run with an error
naming the line (or the argument), rather than a label for a garbled text. Only the line
break (``\\n`` or ``\\r\\n``) is removed; an empty line is an empty text, so
output line N always belongs to input line N. Standard input is read and
labelled ``--batch-size`` lines at a time, so a large input streams (use
``--batch-size 1`` to get each answer as soon as its line is typed).

Output: UTF-8 whatever the locale, one line per text, in input order.

- default: tab-separated, the best label, its probability with 4 decimals,
  then the text::

      weather<TAB>0.9731<TAB>il pleut aujourd'hui

  With ``--top-k N``: N label/probability pairs, most probable first, then the
  text (2N + 1 fields)::

      weather<TAB>0.9731<TAB>sports<TAB>0.0150<TAB>food<TAB>0.0119<TAB>text

  The text is always the last field; tabs and line breaks inside it are shown
  as spaces, so every result is exactly one line. ``cut -f1`` gives the labels.
- ``--json``: one JSON object per line, non-ASCII kept as is, the text exact::

      {"text": "...", "predictions": [{"label": "weather", "probability": 0.97...}]}

Errors (a missing or incomplete run folder, a bad option, input that is not
UTF-8) print one line, ``kmexp-predict: error: ...``, on stderr and exit with
status 2. Results printed before an error in the input stay printed.
"""

from __future__ import annotations

import argparse
import codecs
import json
import locale
import sys
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import NoReturn

from kmexp.errors import capped
from kmexp.runs import METRICS_FILE, MODEL_FILE, RecordError, RunRecord

PROG = "kmexp-predict"
EXIT_USAGE = 2

EPILOG = """\
output (one line per text, in input order, UTF-8):
  default    LABEL<TAB>PROBABILITY<TAB>TEXT, e.g. "weather<TAB>0.9731<TAB>il pleut"
  --top-k N  LABEL1<TAB>P1<TAB>...<TAB>LABELN<TAB>PN<TAB>TEXT, most probable first
             (probabilities have 4 decimals; tabs and line breaks in TEXT become spaces)
  --json     {"text": ..., "predictions": [{"label": ..., "probability": ...}, ...]}

examples:
  kmexp-predict outputs/runs/2025-01-01/12-00-00 "Le match a été gagné." "今天下雨"
  kmexp-predict RUN_DIR --top-k 3 < texts.txt > labels.tsv
  kmexp-predict RUN_DIR --json < texts.txt | jq -r .predictions[0].label

errors print one line on stderr and exit with status 2."""


class UsageError(Exception):
    """A problem the user can fix; reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line like every other error here."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {PROG} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Label texts with a trained kmexp model. Reads TEXT arguments, "
        "or standard input (one text per line) when none are given.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a kmexp run folder (holds model.keras and metrics.json)")
    parser.add_argument("texts", metavar="TEXT", nargs="*", default=[], help="texts to label; standard input is read when none are given")
    parser.add_argument("--top-k", metavar="N", type=int, default=1, help="print the N most probable labels per text (default: 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per text instead of tab-separated fields")
    parser.add_argument("--batch-size", metavar="B", type=int, default=128, help="texts per model call when reading standard input (default: 128)")
    return parser


# --- the run folder ---------------------------------------------------------


def check_run_dir(run_dir: Path) -> Path:
    """The path of ``model.keras`` in ``run_dir``, or a UsageError saying what is missing."""
    if not run_dir.exists():
        raise UsageError(f"RUN_DIR not found: {run_dir}")
    if not run_dir.is_dir():
        raise UsageError(f"RUN_DIR is not a folder: {run_dir}; it must be a kmexp run folder")
    model_path = run_dir / MODEL_FILE
    if not model_path.is_file():
        raise UsageError(f"{MODEL_FILE} not found in {run_dir}; RUN_DIR must be a kmexp run folder{_failed_run_note(run_dir)}")
    return model_path


def _failed_run_note(run_dir: Path) -> str:
    """A hint when metrics.json says the run did not complete (so it saved no model)."""
    record = RunRecord.find(run_dir)
    return f" (its {METRICS_FILE} has status={record.status!r})" if record is not None and not record.completed else ""


def read_labels(run_dir: Path) -> list[str]:
    """The label names, in model-output order, from ``run_dir/metrics.json``."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise UsageError(f"{METRICS_FILE} not found in {run_dir}; RUN_DIR must be a kmexp run folder")
    try:
        labels = RunRecord.read(run_dir).labels
    except RecordError as err:
        raise UsageError(f"{path}: {err}") from None
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise UsageError(f"{path}: no 'labels' list (expected the label names in model-output order)")
    return labels


def check_options(args: argparse.Namespace, n_labels: int) -> None:
    if not 1 <= args.top_k <= n_labels:
        raise UsageError(f"--top-k={args.top_k} is not allowed: this model has {n_labels} labels, so use 1 to {n_labels}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size={args.batch_size} is not allowed: use 1 or more")


def load_model(model_path: Path, n_labels: int):
    """The saved model, loaded with safe mode on. Imports TensorFlow (slow), so runs last."""
    if not zipfile.is_zipfile(model_path):
        raise UsageError(f"{model_path} is not a .keras file (a zip archive); was the run interrupted while saving?")
    import kmexp

    try:
        with utf8_file_encoding():
            model = kmexp.load_model(model_path)
    except Exception as err:  # a corrupt or foreign file: say so in one line
        raise UsageError(f"could not load {model_path}: {_one_line_reason(err)}") from None
    width = model.output_shape[-1] if isinstance(model.output_shape, tuple) else None
    if width is not None and width != n_labels:
        raise UsageError(f"{model_path} has {width} outputs but {METRICS_FILE} lists {n_labels} labels")
    return model


def _one_line_reason(err: Exception) -> str:
    """The gist of a multi-line error: its first line, and the next when the first ends with ':'."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    return " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]


@contextmanager
def utf8_file_encoding() -> Iterator[None]:
    """Make ``open()``'s default text encoding UTF-8 for a while, whatever the locale.

    Keras reads a lookup layer's ``vocabulary.txt`` with ``open(path, "r")``, so in
    a non-UTF-8 locale (``LC_ALL=C PYTHONUTF8=0``, Latin-1, Windows code pages) a
    vocabulary in other scripts fails to load. UTF-8 mode needs no change.
    """
    if sys.flags.utf8_mode or codecs.lookup(locale.getpreferredencoding(False)).name == "utf-8":
        yield
        return
    previous = locale.setlocale(locale.LC_CTYPE)
    for name in ("C.UTF-8", "C.utf8", "en_US.UTF-8", ".UTF-8"):
        try:
            locale.setlocale(locale.LC_CTYPE, name)
            break
        except locale.Error:
            continue
    try:
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)


# --- input ------------------------------------------------------------------


def argument_texts(texts: list[str]) -> list[str]:
    """TEXT arguments as Unicode; an argument that is not valid UTF-8 is a UsageError naming it."""
    return [
        utf8(text.encode("utf-8", "surrogateescape"), f"TEXT argument {number}")  # the OS's bytes, as given
        for number, text in enumerate(texts, start=1)
    ]


def stdin_lines(stream) -> Iterator[str]:
    """One text per line of a binary stream, without its line break; empty lines kept.

    A line that is not valid UTF-8 is a UsageError naming its number (from 1).
    """
    for number, raw in enumerate(stream):
        line = utf8(raw, f"standard input line {number + 1}")
        if line.endswith("\n"):
            line = line[:-1]
            if line.endswith("\r"):
                line = line[:-1]
        if number == 0:
            line = line.removeprefix("\ufeff")  # a byte-order mark is not part of the text
        yield line


def utf8(raw: bytes, where: str) -> str:
    """``raw`` decoded as UTF-8, or a UsageError naming ``where`` and the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(
            f"{where} is not valid UTF-8 (byte {raw[err.start]:#04x}); convert the input to UTF-8 "
            "(e.g. iconv -f latin1 -t utf-8)"
        ) from None


def batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(texts)
    while batch := list(islice(iterator, size)):
        yield batch


# --- prediction and output --------------------------------------------------


def predict(model, texts: list[str], labels: list[str], top_k: int) -> list[list[tuple[str, float]]]:
    """Per text, the ``top_k`` (label, probability) pairs, most probable first."""
    import numpy as np
    import tensorflow as tf

    probabilities = np.asarray(model.predict_on_batch(tf.constant(texts, dtype=tf.string)), dtype=np.float64)
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
    return [[(labels[j], float(row[j])) for j in best] for row, best in zip(probabilities, order)]


def format_tsv(text: str, predictions: list[tuple[str, float]]) -> str:
    fields = [field for label, probability in predictions for field in (label, f"{probability:.4f}")]
    return "\t".join([*fields, one_line(text)])


def one_line(text: str) -> str:
    """The text with tabs and line breaks as spaces, so it is one last field of one line."""
    return " ".join(text.replace("\t", " ").splitlines())


def format_json(text: str, predictions: list[tuple[str, float]]) -> str:
    record = {"text": text, "predictions": [{"label": label, "probability": p} for label, p in predictions]}
    return json.dumps(record, ensure_ascii=False)


def write_results(model, texts: Iterable[str], labels: list[str], args: argparse.Namespace, out) -> None:
    formatter = format_json if args.json else format_tsv
    for batch in batches(texts, args.batch_size):
        for text, predictions in zip(batch, predict(model, batch, labels, args.top_k)):
            out.write(formatter(text, predictions) + "\n")
        out.flush()  # each batch reaches the next program in a pipe as soon as it is labelled


# --- entry point ------------------------------------------------------------


def run(argv: list[str] | None = None) -> None:
    args = build_parser().parse_intermixed_args(argv)
    model_path = check_run_dir(args.run_dir)
    labels = read_labels(args.run_dir)
    check_options(args, len(labels))
    model = load_model(model_path, len(labels))
    texts = argument_texts(args.texts) if args.texts else stdin_lines(sys.stdin.buffer)
    write_results(model, texts, labels, args, sys.stdout)


def main(argv: list[str] | None = None) -> None:
    # UTF-8 out whatever the locale, so any script (CJK, RTL, emoji) prints.
    sys.stdout.reconfigure(encoding="utf-8", errors="replace", newline="\n")
    sys.stderr.reconfigure(encoding="utf-8", errors="backslashreplace")
    try:
        run(argv)
    except UsageError as err:
        print(f"{PROG}: error: {capped(str(err))}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (e.g. ``| head``): stop quietly, without a traceback at exit.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


if __name__ == "__main__":
    main()
