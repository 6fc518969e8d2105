"""The user's own labeled data: TSV, CSV or JSON Lines files.

Every problem a user can fix (a missing file, a wrong column name, a file
saved in the wrong encoding) is reported as one `DataError` line naming the
file, so the run stops before any model is built.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path

from kmexp.config.validation import check_data, raise_problems
from kmexp.data.splits import Split, Splits, TextLimit, make_splits
from kmexp.errors import DataError, shown

# A missing column's message lists this many of the columns found, then only counts them.
_SHOWN_COLUMNS = 5

# Extension -> field separator; None marks JSON Lines.
_FORMATS = {".tsv": "\t", ".csv": ",", ".jsonl": None, ".json-lines": None}


class LabeledFiles:
    """Train/dev/test files with a text column and a label column.

    The format follows the extension (.tsv, .csv, .jsonl, .json-lines). Labels
    are read as strings, so "01" and "1" stay different labels. With no dev
    file, a seeded stratified share of train (`dev_fraction`) becomes dev.
    A text longer than `max_chars` is cut to that length, or, with
    `on_long_text="error"`, refused (`TextLimit`).
    """

    def __init__(
        self,
        train: str,
        dev: str | None,
        test: str,
        text_column: str,
        label_column: str,
        dev_fraction: float,
        seed: int,
        max_chars: int,
        on_long_text: str,
    ):
        # The rules validate() applies, for a caller that skipped it.
        data = {"dev": dev, "dev_fraction": dev_fraction, "max_chars": max_chars, "on_long_text": on_long_text}
        raise_problems(check_data(data))
        self.train = train
        self.dev = dev
        self.test = test
        self.text_column = text_column
        self.label_column = label_column
        self.dev_fraction = dev_fraction
        self.seed = seed
        self.limit = TextLimit(max_chars, on_long_text)

    def load(self) -> Splits:
        """Read the files, carve dev out of train if needed, and check the result."""
        train_path = _existing_file("data.train", self.train)
        test_path = _existing_file("data.test", self.test)
        train = self._read(train_path, "data.train")
        test = self._read(test_path, "data.test")
        if self.dev is None:
            train, dev = stratified_split(train, self.dev_fraction, self.seed)
            files = [train_path, test_path]
        else:
            dev_path = _existing_file("data.dev", self.dev)
            dev = self._read(dev_path, "data.dev")
            files = [train_path, dev_path, test_path]
        return make_splits(train, dev, test, files, limit=self.limit)

    def _read(self, path: Path, key: str) -> Split:
        return read_split(path, self.text_column, self.label_column, self.limit, key)


def read_split(path: Path, text_column: str, label_column: str, limit: TextLimit, key: str = "data") -> Split:
    """Read one labeled file into a `Split`; the format follows the extension.

    With ``limit.on_long_text="error"``, a text longer than ``limit.max_chars`` is
    refused here, where its row is known (make_splits cuts them otherwise).
    """
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise DataError(
            f"{key}: {path}: unknown extension {path.suffix!r}; use one of {sorted(_FORMATS)}"
        )
    text = _decode_utf8(path)
    sep = _FORMATS[suffix]
    if sep is None:
        texts, labels, rows = _parse_jsonl(path, text, text_column, label_column)
    else:
        texts, labels = _parse_table(path, text, sep, text_column, label_column)
        rows = (f"data row {number}" for number in range(1, len(texts) + 1))
    if not texts:
        raise DataError(f"{path}: the file has no data rows")
    if limit.on_long_text == "error":
        refuse_long_texts(path, texts, rows, limit.max_chars)
    return Split(texts=texts, labels=labels, source=str(path))


def refuse_long_texts(source: str | Path, texts: list[str], rows: Iterable[str], max_chars: int) -> None:
    """``data.on_long_text=error``: the first text longer than ``max_chars``, named by its source and row."""
    for text, row in zip(texts, rows):
        if len(text) > max_chars:
            raise DataError(
                f"{source}: {row} has a text of {len(text):,} characters, more than data.max_chars={max_chars}; "
                "shorten it, raise data.max_chars, or set data.on_long_text=truncate to cut such texts"
            )


def stratified_split(train: Split, dev_fraction: float, seed: int) -> tuple[Split, Split]:
    """Move a seeded, per-class share of train into a new dev split.

    Every class with at least two rows gives dev at least one row and keeps at
    least one in train, so dev covers as many classes as it can without
    leaving a class unseen in training. Rows keep their original order.
    """
    import numpy as np  # numpy and pandas load when files are read, not when a config is checked

    rng = np.random.default_rng(seed)
    labels = np.asarray(train.labels, dtype=object)
    dev_rows = []
    for label in sorted(set(train.labels)):  # sorted: same draws for the same seed
        rows = np.flatnonzero(labels == label)
        n_dev = _dev_count(len(rows), dev_fraction)
        dev_rows.extend(rng.permutation(rows)[:n_dev].tolist())
    in_dev = np.zeros(len(labels), dtype=bool)
    in_dev[dev_rows] = True
    source = f"{train.source} (dev: {dev_fraction:g} of data.train, seed {seed})"
    return _subset(train, ~in_dev, train.source), _subset(train, in_dev, source)


def _dev_count(n_rows: int, dev_fraction: float) -> int:
    """Rows of one class that go to dev: about the fraction, at least 1, never all."""
    if n_rows < 2:
        return 0
    return min(max(1, round(n_rows * dev_fraction)), n_rows - 1)


def _subset(split: Split, mask, source: str) -> Split:
    import numpy as np

    rows = np.flatnonzero(mask)
    return Split(
        texts=[split.texts[i] for i in rows],
        labels=[split.labels[i] for i in rows],
        source=source,
    )


def _existing_file(key: str, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise DataError(f"{key}: file not found: {path}")
    return path


def _decode_utf8(path: Path) -> str:
    """The file's text; non-UTF-8 bytes are reported with their line number."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")  # -sig: accept the BOM that spreadsheet exports add
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{path}: line {line} is not valid UTF-8 (byte {raw[err.start]:#04x}); "
            "save the file as UTF-8"
        ) from None


def _parse_table(
    path: Path, text: str, sep: str, text_column: str, label_column: str
) -> tuple[list[str], list[str]]:
    """Parse CSV/TSV with CSV quoting; every cell stays a string ('' for empty)."""
    import pandas as pd

    # The header is checked before pandas reads the file: a file without a header would make pandas take its
    # first data line as the column names, and a long line's thousands of duplicate names take it minutes.
    _require_columns(path, _header(path, text, sep), text_column, label_column)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as err:
        reason = str(err).strip().splitlines()[-1]
        raise DataError(f"{path}: cannot parse as {_format_name(sep)}: {reason}") from None
    texts = frame[text_column].tolist()
    labels = [label.strip() for label in frame[label_column].tolist()]
    for row, label in enumerate(labels, start=1):
        if not label:
            raise DataError(f"{path}: data row {row} has an empty '{label_column}'")
    return texts, labels


def _header(path: Path, text: str, sep: str) -> list[str]:
    """The column names: the first record of the file that is not a blank line, read with CSV quoting."""
    try:
        for record in csv.reader(io.StringIO(text), delimiter=sep):
            if record:
                return record
    except csv.Error as err:  # a first line that is a long text, not a header: a field over the csv module's limit
        raise DataError(f"{path}: cannot read the first line as a header of column names ({err})") from None
    raise DataError(f"{path}: the file is empty")


def _parse_jsonl(
    path: Path, text: str, text_column: str, label_column: str
) -> tuple[list[str], list[str], list[str]]:
    """Parse one JSON object per line; blank lines are skipped. Also returns where each row is ("line 3")."""
    records = []
    # split("\n"), not splitlines(): JSON strings may hold raw U+2028 and similar.
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            records.append((number, _json_object(path, number, line)))
    columns = list(dict.fromkeys(key for _, record in records for key in record))
    if records:
        _require_columns(path, columns, text_column, label_column)
    texts, labels = [], []
    for number, record in records:
        texts.append(_json_text(record.get(text_column)))
        labels.append(_json_label(path, number, record, label_column))
    return texts, labels, [f"line {number}" for number, _ in records]


def _json_object(path: Path, number: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: line {number} is not valid JSON: {err.msg}") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: line {number} is not a JSON object")
    return record


def _json_text(value) -> str:
    """A missing or null text counts as empty (make_splits drops and counts it)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _json_label(path: Path, number: int, record: dict, label_column: str) -> str:
    value = record.get(label_column)
    label = "" if value is None else str(value).strip()
    if not label:
        raise DataError(f"{path}: line {number} has no '{label_column}' value")
    return label


def _require_columns(path: Path, columns: list[str], text_column: str, label_column: str) -> None:
    missing = [c for c in (text_column, label_column) if c not in columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; columns found: {_shown_columns(columns)}")


def _shown_columns(columns: list[str]) -> str:
    """The columns found, as a list; a long list (a first line that is data, not a header) is shortened."""
    listed = ", ".join(shown(column) for column in columns[:_SHOWN_COLUMNS])
    more = f", ... ({len(columns):,} columns)" if len(columns) > _SHOWN_COLUMNS else ""
    return f"[{listed}{more}]"


def _format_name(sep: str) -> str:
    return "TSV" if sep == "\t" else "CSV"
