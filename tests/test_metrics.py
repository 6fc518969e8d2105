"""kmexp.metrics against sklearn.metrics, on the same predictions.

sklearn is the reference: with labels=range(n) and zero_division=0 it defines
exactly what kmexp.metrics promises, including for classes that are never
predicted or never occur.
"""

from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics as skm
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from kmexp import metrics
from kmexp.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"
METRIC_FILES = sorted((CONF / "metric").glob("*.yaml"))


def _cases():
    """(y_true, y_pred, n_labels) triples covering the edge cases zero_division handles."""
    cases = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        n = 7
        # Class 5 never occurs in y_true, class 6 is never predicted,
        # so precision/recall hit the zero-division branch for both.
        y_true = rng.choice([0, 1, 2, 3, 4, 6], size=200, p=[0.4, 0.2, 0.2, 0.1, 0.05, 0.05])
        y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 6, size=200))
        y_pred[y_pred == 6] = 0
        cases.append((y_true, y_pred, n))
    # A label absent from both arrays, all predictions wrong, and a single sample.
    cases.append((np.array([0, 0, 1, 1]), np.array([0, 1, 1, 0]), 3))
    cases.append((np.array([0, 1, 2, 0]), np.array([1, 2, 0, 2]), 3))
    cases.append((np.array([2]), np.array([2]), 4))
    return cases


CASES = _cases()
IDS = [f"case{i}" for i in range(len(CASES))]


def _sklearn(name, y_true, y_pred, n):
    """Reference value for a conf/metric option name such as 'weighted_precision'."""
    if name == "accuracy":
        return skm.accuracy_score(y_true, y_pred)
    average, kind = name.split("_")
    score = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}[kind]
    return score(y_true, y_pred, labels=list(range(n)), average=average, zero_division=0)


def test_the_cases_hit_the_edge_cases():
    y_true, y_pred, n = CASES[0]
    assert 6 not in set(y_pred) and 6 in set(y_true)  # a class never predicted
    assert 5 not in set(y_true)  # a class absent from y_true


@pytest.mark.parametrize(("y_true", "y_pred", "n"), CASES, ids=IDS)
def test_confusion_matrix_matches_sklearn(y_true, y_pred, n):
    expected = skm.confusion_matrix(y_true, y_pred, labels=list(range(n)))
    np.testing.assert_array_equal(metrics.confusion_matrix(y_true, y_pred, n), expected)


@pytest.mark.parametrize(("y_true", "y_pred", "n"), CASES, ids=IDS)
@pytest.mark.parametrize("average", ["macro", "weighted", "micro"])
def test_averaged_metrics_match_sklearn(y_true, y_pred, n, average):
    cm = metrics.confusion_matrix(y_true, y_pred, n)
    for cls, kind in ((metrics.F1, "f1"), (metrics.Precision, "precision"), (metrics.Recall, "recall")):
        expected = _sklearn(f"{average}_{kind}", y_true, y_pred, n)
        assert cls(average)(cm) == pytest.approx(expected, abs=1e-12), (cls, average)


@pytest.mark.parametrize(("y_true", "y_pred", "n"), CASES, ids=IDS)
def test_accuracy_matches_sklearn(y_true, y_pred, n):
    cm = metrics.confusion_matrix(y_true, y_pred, n)
    assert metrics.Accuracy()(cm) == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)


@pytest.mark.parametrize(("y_true", "y_pred", "n"), CASES, ids=IDS)
def test_per_class_matches_sklearn(y_true, y_pred, n):
    labels = [f"label{i}" for i in range(n)]
    got = metrics.per_class(metrics.confusion_matrix(y_true, y_pred, n), labels)
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(n)), average=None, zero_division=0
    )
    assert list(got) == labels
    for i, label in enumerate(labels):
        assert got[label]["precision"] == pytest.approx(p[i], abs=1e-12)
        assert got[label]["recall"] == pytest.approx(r[i], abs=1e-12)
        assert got[label]["f1"] == pytest.approx(f[i], abs=1e-12)
        assert got[label]["support"] == s[i]
        assert type(got[label]["support"]) is int


def test_metric_files_are_the_expected_options():
    assert {p.stem for p in METRIC_FILES} == {
        "accuracy", "macro_f1", "weighted_f1", "micro_f1",
        "macro_precision", "macro_recall", "weighted_precision", "weighted_recall",
    }


@pytest.mark.parametrize("path", METRIC_FILES, ids=[p.stem for p in METRIC_FILES])
def test_metric_yaml_instantiates_and_matches_sklearn(path):
    cfg = OmegaConf.load(path)
    # Each option nests its node under its own name (see the file's comment); `defaults` names its schema.
    assert [key for key in cfg if key != "defaults"] == [path.stem]
    metric = instantiate(cfg[path.stem])
    for y_true, y_pred, n in CASES:
        cm = metrics.confusion_matrix(y_true, y_pred, n)
        expected = _sklearn(path.stem, y_true, y_pred, n)
        assert metric(cm) == pytest.approx(expected, abs=1e-12)


def test_metrics_multi_select_with_hydra():
    """Several metrics selected at once land side by side under metric.<name>.

    Composed with version_base 1.3: the old `# @package _group_._name_` header
    only works in the deprecated 1.1 mode, which is why the files nest by name.
    """
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(overrides=["+metric=[accuracy,macro_f1,weighted_recall]"])
    assert list(cfg.metric) == ["accuracy", "macro_f1", "weighted_recall"]
    selected = instantiate(cfg.metric)
    assert isinstance(selected["macro_f1"], metrics.F1)
    assert selected["macro_f1"].average == "macro"


def test_classification_report():
    y_true, y_pred, n = CASES[0]
    labels = [f"label{i}" for i in range(n)]
    chosen = {"weighted_f1": metrics.F1("weighted"), "macro_recall": metrics.Recall("macro")}
    report = metrics.classification_report(y_true, y_pred, labels, chosen)

    assert list(report) == ["accuracy", "macro_f1", "weighted_f1", "macro_recall", "per_class", "confusion_matrix"]
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert report["macro_f1"] == pytest.approx(_sklearn("macro_f1", y_true, y_pred, n))
    assert report["weighted_f1"] == pytest.approx(_sklearn("weighted_f1", y_true, y_pred, n))
    assert report["macro_recall"] == pytest.approx(_sklearn("macro_recall", y_true, y_pred, n))
    assert list(report["per_class"]) == labels
    assert report["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=list(range(n))).tolist()
    # Plain Python values only, so the report can be written as JSON as is.
    assert all(type(v) is int for row in report["confusion_matrix"] for v in row)
    assert type(report["accuracy"]) is float


def test_classification_report_always_has_accuracy_and_macro_f1():
    report = metrics.classification_report(np.array([0, 1]), np.array([0, 0]), ["a", "b"], {})
    assert set(report) == {"accuracy", "macro_f1", "per_class", "confusion_matrix"}


def test_unknown_average_is_a_config_error():
    # The rule and the words of validate()'s metric.<name>.average check.
    with pytest.raises(ConfigError, match="F1.average=mean is not allowed: it must be one of macro, weighted, micro"):
        metrics.F1("mean")


@pytest.mark.parametrize(
    ("y_true", "y_pred", "n"),
    [
        (np.array([0, 1]), np.array([0]), 2),  # lengths differ
        (np.array([0, 2]), np.array([0, 1]), 2),  # label id out of range
        (np.array([0, -1]), np.array([0, 1]), 2),  # negative label id
        (np.array([0.0, 1.0]), np.array([0.0, 1.0]), 2),  # not integer ids
    ],
)
def test_confusion_matrix_rejects_bad_input(y_true, y_pred, n):
    with pytest.raises(ValueError):
        metrics.confusion_matrix(y_true, y_pred, n)
