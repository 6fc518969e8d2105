"""Related-language pooling: a language's train split plus the train splits of other languages, weighed less.

``language.pool`` is a number k (the k nearest languages, ``kmexp.data.neighbours``)
or an explicit list of codes (no nearness computed); ``language.pool_weight`` is
each pooled row's weight in the training loss, the language's own rows weighing 1.
Dev and test stay the language's own, so the scores are still that language's.
The loaders (SIB-200, Hugging Face datasets with a locale mapping) say how to read
another language's train split; this module picks the languages and joins the splits.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence

from kmexp.data.splits import Split, concat_splits, weighted


def is_count(pool) -> bool:
    """``language.pool`` as a number of nearest languages (not a list of codes)."""
    return isinstance(pool, numbers.Integral) and not isinstance(pool, bool)


def choose(pool, scores: Callable[[], Mapping[str, float]]) -> list[tuple[str, float | None]]:
    """The languages to pool and their similarity: the k nearest by ``scores()``, or the listed codes (no similarity).

    ``scores`` is only called for a count: the explicit list needs no nearness.
    """
    from kmexp.data.neighbours import nearest  # numpy: loaded when pooling, not when a config is checked

    if is_count(pool):
        return nearest(scores(), int(pool))
    return [(str(code), None) for code in pool]


def pooled_train(
    own: Split, chosen: Sequence[tuple[str, float | None]], train_of: Callable[[str], Split], pool, weight: float
) -> tuple[Split, dict]:
    """The language's train split with each chosen language's appended at ``weight``, and metrics.json's ``data.pool``."""
    theirs = {code: train_of(code) for code, _ in chosen}
    codes = ",".join(theirs)
    train = concat_splits([own, *(weighted(split, weight) for split in theirs.values())], f"{own.source} (+ pooled {codes})")
    record = {
        ("k" if is_count(pool) else "codes"): int(pool) if is_count(pool) else [str(code) for code in pool],
        "weight": float(weight),
        "neighbours": [
            {"code": code, "similarity": None if score is None else round(score, 4), "rows": len(theirs[code].texts)}
            for code, score in chosen
        ],
    }
    return train, record
