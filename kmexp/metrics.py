"""Classification metrics computed from a confusion matrix, with numpy only.

Every metric is a function of the confusion matrix, so the matrix is built once
per evaluation and each selected metric reads it. The definitions match
sklearn.metrics with `labels=range(n_labels)` and `zero_division=0` (checked in
tests/test_metrics.py); sklearn is a dev dependency only, so it is not imported here.

Metrics are chosen in the config (conf/metric/*.yaml) and built with
hydra.utils.instantiate, e.g. `{_target_: kmexp.metrics.F1, average: macro}`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from kmexp.config.validation import check_average, raise_problems


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int) -> np.ndarray:
    """Counts of (true, predicted) pairs: rows are true labels, columns predicted labels.

    Labels are integer ids in [0, n_labels). n_labels is explicit so that a class
    absent from both arrays still gets a row and a column.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D of the same length, got shapes "
            f"{y_true.shape} and {y_pred.shape}"
        )
    if y_true.size and not (
        np.issubdtype(y_true.dtype, np.integer) and np.issubdtype(y_pred.dtype, np.integer)
    ):
        raise ValueError(f"labels must be integer ids, got {y_true.dtype} and {y_pred.dtype}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= n_labels):
            raise ValueError(f"{name} has label ids outside [0, {n_labels})")
    # Encode each (true, pred) pair as one index so a single bincount does the counting.
    flat = y_true.astype(np.int64) * n_labels + y_pred.astype(np.int64)
    return np.bincount(flat, minlength=n_labels * n_labels).reshape(n_labels, n_labels)


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, with 0.0 where the denominator is 0 (sklearn's zero_division=0)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _counts(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class true positives, predicted counts (tp + fp) and true counts (tp + fn)."""
    cm = np.asarray(cm)
    return np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)


def _scores(tp: np.ndarray, predicted: np.ndarray, support: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and F1 from counts: per class, or pooled over classes for micro."""
    return {
        "precision": _divide(tp, predicted),
        "recall": _divide(tp, support),
        # 2tp / (2tp + fp + fn) rather than 2pr / (p + r): same value, but it is
        # defined whenever the class occurs at all, and it is what sklearn computes.
        "f1": _divide(2 * tp, predicted + support),
    }


def per_class(cm: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """Precision, recall, F1 and support (number of true samples) for each label."""
    cm = np.asarray(cm)
    if cm.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion matrix of shape {cm.shape} does not match {len(labels)} labels")
    scores = _scores(*_counts(cm))
    support = cm.sum(axis=1)
    return {
        str(label): {
            "precision": float(scores["precision"][i]),
            "recall": float(scores["recall"][i]),
            "f1": float(scores["f1"][i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }


class Accuracy:
    """Fraction of samples whose predicted label is the true label."""

    def __call__(self, cm: np.ndarray) -> float:
        cm = np.asarray(cm)
        return float(_divide(np.trace(cm), cm.sum()))

    def __repr__(self) -> str:
        return "Accuracy()"


class _Averaged:
    """A per-class score reduced to one number.

    macro: unweighted mean over classes, so rare classes count as much as common ones.
    weighted: mean weighted by support, so it tracks the class distribution.
    micro: computed from counts pooled over classes; with every label included
    this equals accuracy for precision, recall and F1 alike.
    """

    score: str  # key in _scores(), set by each subclass

    def __init__(self, average: str) -> None:
        # Checked here, not at call time, so a wrong value fails when the metric is made rather
        # than after training: the rule validate() applies to metric.<name>.average.
        raise_problems(check_average(f"{type(self).__name__}.average", average))
        self.average = average

    def __call__(self, cm: np.ndarray) -> float:
        tp, predicted, support = _counts(cm)
        if self.average == "micro":
            # Pool the counts first, then apply the same formula as per class.
            return float(_scores(tp.sum(), predicted.sum(), support.sum())[self.score])
        scores = _scores(tp, predicted, support)[self.score]
        if self.average == "macro":
            return float(scores.mean()) if scores.size else 0.0
        return float(_divide((scores * support).sum(), support.sum()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(average={self.average!r})"


class Precision(_Averaged):
    """Of the samples predicted as a class, the fraction that belong to it."""

    score = "precision"


class Recall(_Averaged):
    """Of the samples of a class, the fraction predicted as it."""

    score = "recall"


class F1(_Averaged):
    """Harmonic mean of precision and recall."""

    score = "f1"


def classification_report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    labels: Sequence[str],
    metrics: Mapping[str, Callable[[np.ndarray], float]] | None = None,
) -> dict:
    """Selected metrics, per-class scores and the confusion matrix, as plain Python values.

    accuracy and macro_f1 are always included so that every run can be compared
    on the same two numbers whatever the config selected. The result holds only
    floats, ints, strings, lists and dicts, so it can be written as JSON.
    """
    cm = confusion_matrix(y_true, y_pred, len(labels))
    report: dict = {"accuracy": Accuracy()(cm), "macro_f1": F1("macro")(cm)}
    for name, metric in (metrics or {}).items():
        report[str(name)] = float(metric(cm))
    report["per_class"] = per_class(cm, labels)
    report["confusion_matrix"] = cm.tolist()
    return report
