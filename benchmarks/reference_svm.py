"""The benchmarks' reference baseline: a scikit-learn character n-gram SVM, one model per language.

TF-IDF over char_wb 1-5-grams (sublinear tf) and LinearSVC(C=0.5), trained on
``<DATA_DIR>/<code>/train.tsv`` and scored on ``<DATA_DIR>/<code>/test.tsv``
(SIB-200's layout: tab separated, with ``text`` and ``category`` columns). It
needs scikit-learn and pandas (the ``dev`` extra), not kmexp.

As a script it prints ``lang,accuracy,seconds`` rows, then the mean:

    python benchmarks/reference_svm.py "$KMEXP_DATA_DIR"                     # every language folder
    python benchmarks/reference_svm.py /path/to/sib200 fra_Latn zho_Hans     # some of them

As a module, the other benchmarks (run as ``python benchmarks/<name>.py``, so this
folder is on ``sys.path``) import it: ``from reference_svm import reference_run``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC


def reference_run(root: Path, code: str) -> tuple[float, float]:
    """Test accuracy of the reference on one language, and the seconds of its fit plus predict."""
    train = pd.read_csv(Path(root) / code / "train.tsv", sep="\t")
    test = pd.read_csv(Path(root) / code / "test.tsv", sep="\t")
    started = time.perf_counter()
    model = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True), LinearSVC(C=0.5)
    ).fit(train.text, train.category)
    accuracy = accuracy_score(test.category, model.predict(test.text))
    return accuracy, time.perf_counter() - started


def language_folders(root: Path) -> list[str]:
    """Every subfolder of ``root`` that holds a train and a test split, sorted."""
    return sorted(
        d.name for d in Path(root).iterdir() if (d / "train.tsv").is_file() and (d / "test.tsv").is_file()
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="holds <code>/train.tsv and <code>/test.tsv")
    parser.add_argument("codes", nargs="*", help="language folders, e.g. fra_Latn (default: all of them)")
    args = parser.parse_args(argv)
    codes = args.codes or language_folders(args.data_dir)
    if not codes:
        parser.error(f"no <code>/train.tsv and <code>/test.tsv under {args.data_dir}")
    print("lang,accuracy,seconds")
    accuracies, seconds = [], []
    for code in codes:
        accuracy, took = reference_run(args.data_dir, code)
        accuracies.append(accuracy)
        seconds.append(took)
        print(f"{code},{accuracy:.4f},{took:.2f}", flush=True)
    print(f"mean,{statistics.mean(accuracies):.4f},{statistics.mean(seconds):.2f}")


if __name__ == "__main__":
    main()
