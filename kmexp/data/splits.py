"""Train/dev/test splits and the checks every data source goes through.

Each loader (SIB-200, the user's own files) reads its files into `Split`s and
hands them to `make_splits`, so the checks and the provenance record are the
same whatever the source.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from kmexp.errors import DataError, shown

log = logging.getLogger(__name__)

# Read files in 1 MiB pieces when hashing so large files need no large buffer.
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Split:
    """Texts and their labels (as strings), plus the file they came from and, for training, each row's weight."""

    texts: list[str]
    labels: list[str]
    source: str  # the file it came from (for error messages and provenance)
    # Each row's sample weight in the training loss (a pooled train split weighs other languages' rows less);
    # None: every row weighs 1.
    weights: list[float] | None = None

    def rows(self, keep: list[int]) -> Split:
        """The rows at the positions ``keep``, weights included."""
        weights = None if self.weights is None else [self.weights[i] for i in keep]
        return Split([self.texts[i] for i in keep], [self.labels[i] for i in keep], self.source, weights)


@dataclass(frozen=True)
class TextLimit:
    """The longest text a run keeps (``data.max_chars``) and what happens to a longer one (``data.on_long_text``).

    ``truncate``: ``make_splits`` cuts it to ``max_chars`` characters, counts it and warns once.
    ``error``: ``read_split`` refuses it, naming the file and the row. Either way no text
    longer than ``max_chars`` reaches the encoders, where one 20 MB text took gigabytes.
    """

    max_chars: int
    on_long_text: str


@dataclass(frozen=True)
class Splits:
    """The three splits of one data set, checked and ready for training."""

    train: Split
    dev: Split
    test: Split
    labels: list[str]  # sorted label names seen in train: the model-output order
    # {"dropped_empty": {"train": n, "dev": n, "test": n}, "truncated": {"train": n, "dev": n, "test": n},
    #  "overlap": {"train_dev": n, "train_test": n}, "files": {path: sha256}}
    info: dict
    # Test splits scored one language at a time (metrics.json `eval`), by SIB-200 code; empty for one language.
    eval_tests: dict[str, Split] = field(default_factory=dict)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, recorded so a run names exactly the data it used."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def make_splits(
    train: Split,
    dev: Split,
    test: Split,
    files: list[Path],
    eval_tests: dict[str, Split] | None = None,
    limit: TextLimit | None = None,
) -> Splits:
    """Check the splits and bundle them with their label order and provenance.

    Empty or whitespace-only texts are dropped (and counted), since a model can
    learn nothing from them and they usually come from a broken export. Texts
    longer than ``limit.max_chars`` are cut to that length (and counted, in one
    warning); None keeps every text whole. A split left empty, a train split with
    a single label (every prediction would be right), or a dev/test label that
    train never shows is a `DataError`: the model could not predict such a label,
    so its scores would be misleading.
    Dev or test rows whose text also appears in train are allowed but counted and
    warned about (`overlap`), since they make those scores optimistic.
    `eval_tests` (per-language test splits, by code) go through the same checks;
    their counts appear under `dropped_empty["eval"]` and `truncated["eval"]` only when there are any.
    """
    max_chars = None if limit is None else limit.max_chars
    named = {"train": train, "dev": dev, "test": test}
    dropped, truncated, cleaned = {}, {}, {}
    for name, split in named.items():
        cleaned[name], dropped[name], truncated[name] = _clean(split, max_chars)
        _require_rows(name, cleaned[name])

    labels = sorted(set(cleaned["train"].labels))
    _require_two_labels(cleaned["train"], labels)
    for name in ("dev", "test"):
        _require_known_labels(cleaned[name], labels)
    checked_eval, dropped_eval, truncated_eval = _check_eval_tests(eval_tests or {}, labels, max_chars)
    if checked_eval:
        dropped["eval"] = dropped_eval
        truncated["eval"] = truncated_eval
    _warn_truncated(named, eval_tests or {}, truncated, max_chars)

    info = {
        "dropped_empty": dropped,
        "truncated": truncated,
        "overlap": {f"train_{name}": _count_overlap(cleaned["train"], cleaned[name]) for name in ("dev", "test")},
        "files": {str(path): file_sha256(Path(path)) for path in files},
    }
    return Splits(
        train=cleaned["train"],
        dev=cleaned["dev"],
        test=cleaned["test"],
        labels=labels,
        info=info,
        eval_tests=checked_eval,
    )


def _check_eval_tests(
    eval_tests: dict[str, Split], labels: list[str], max_chars: int | None
) -> tuple[dict[str, Split], dict[str, int], dict[str, int]]:
    """Each per-language test split cleaned and checked like the pooled test; dropped and cut counts by code."""
    checked, dropped, truncated = {}, {}, {}
    for code, split in eval_tests.items():
        checked[code], dropped[code], truncated[code] = _clean(split, max_chars)
        _require_rows("test", checked[code])
        _require_known_labels(checked[code], labels)
    return checked, dropped, truncated


def _clean(split: Split, max_chars: int | None) -> tuple[Split, int, int]:
    """The split without empty texts and with long ones cut; how many were dropped, how many cut."""
    kept, n_dropped = _drop_empty_texts(split)
    if max_chars is None:
        return kept, n_dropped, 0
    cut, n_cut = _cut_long_texts(kept, max_chars)
    return cut, n_dropped, n_cut


def _cut_long_texts(split: Split, max_chars: int) -> tuple[Split, int]:
    """The split with every text longer than ``max_chars`` cut to that length, and how many were cut."""
    n_cut = sum(len(text) > max_chars for text in split.texts)
    if n_cut == 0:
        return split, 0
    cut = [text[:max_chars] for text in split.texts]
    return dataclasses.replace(split, texts=cut), n_cut


def _warn_truncated(named: dict[str, Split], eval_tests: dict[str, Split], truncated: dict, max_chars: int | None) -> None:
    """One warning for all the texts cut, naming the files they came from."""
    counts = [(named[name].source, n) for name, n in truncated.items() if name != "eval" and n > 0]
    counts += [(eval_tests[code].source, n) for code, n in truncated.get("eval", {}).items() if n > 0]
    if counts:
        log.warning(
            "cut %d texts longer than data.max_chars=%d characters to that length (%s); "
            "data.on_long_text=error refuses them instead", sum(n for _, n in counts), max_chars,
            ", ".join(f"{source}: {n}" for source, n in counts),
        )


def _count_overlap(train: Split, other: Split) -> int:
    """Rows of ``other`` whose text (stripped) is also in train, warned about in one line when there are any."""
    seen = {text.strip() for text in train.texts}
    shared = sum(text.strip() in seen for text in other.texts)
    if shared > 0:
        log.warning(
            "%d of %d rows of %s have the same text as a row of %s (exact match after stripping); "
            "their scores are optimistic", shared, len(other.texts), other.source, train.source,
        )
    return shared


def concat_splits(splits: list[Split], source: str) -> Split:
    """Several splits as one (rows in order), e.g. the pooled train split of several languages.

    Weights are kept when any split has them (a split without weighs 1 per row).
    """
    weighted = any(split.weights is not None for split in splits)
    return Split(
        texts=[text for split in splits for text in split.texts],
        labels=[label for split in splits for label in split.labels],
        source=source,
        weights=[weight for split in splits for weight in _row_weights(split)] if weighted else None,
    )


def weighted(split: Split, weight: float) -> Split:
    """The split with every row weighing ``weight`` (another language's rows in a pooled train split)."""
    return dataclasses.replace(split, weights=[float(weight)] * len(split.texts))


def _row_weights(split: Split) -> list[float]:
    return [1.0] * len(split.texts) if split.weights is None else split.weights


def _drop_empty_texts(split: Split) -> tuple[Split, int]:
    """Return the split without empty/whitespace-only texts, and how many were dropped."""
    if len(split.texts) != len(split.labels):
        raise DataError(
            f"{split.source}: {len(split.texts)} texts but {len(split.labels)} labels"
        )
    keep = [i for i, text in enumerate(split.texts) if text.strip()]
    n_dropped = len(split.texts) - len(keep)
    if n_dropped == 0:
        return split, 0
    log.warning("%s: dropped %d empty or whitespace-only texts", split.source, n_dropped)
    return split.rows(keep), n_dropped


def _require_rows(name: str, split: Split) -> None:
    """A split with no rows cannot train or score anything."""
    if not split.texts:
        raise DataError(f"{split.source}: the {name} split has no non-empty texts")


def _require_two_labels(train: Split, labels: list[str]) -> None:
    """With one label a model learns nothing: every prediction is right, and every score says 100%."""
    if len(labels) < 2:
        raise DataError(
            f"{train.source}: every training text has the same label, {shown(labels[0])}; "
            "a classifier needs at least two labels in data.train"
        )


def _require_known_labels(split: Split, train_labels: list[str]) -> None:
    """Refuse labels the model never sees in training (it has no output for them)."""
    unseen = sorted(set(split.labels) - set(train_labels))
    if unseen:
        raise DataError(
            f"{split.source}: labels not in the training data: {unseen}; "
            f"train has {train_labels}"
        )
