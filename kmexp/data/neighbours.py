"""Which languages are near one another, from the character n-grams of their training texts.

Related-language pooling (``language.pool``) adds the train splits of a
language's k nearest languages to its own. Nearness here is the cosine of two
languages' character 3-gram count vectors, read from train only (dev and test
never choose the neighbours). The texts are lowercased, runs of whitespace
become one space and each text is padded with a space, so that 3-grams also
mark where words start and end (as scikit-learn's ``char_wb``). 3-grams rather
than 1-grams: single characters say mostly which script a text uses, while
3-grams separate Galician's nearest (Portuguese, Spanish) from Latin-script
languages at large; Chinese in either script still finds the other one first.

Pure functions, no TensorFlow: a profile is a sorted array of n-gram keys and
their L2-normalized counts. A 3-gram's key packs its three code points
(21 bits each) into one 64-bit integer, so there are no hash collisions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

# The n of the character n-grams compared.
NGRAM = 3
# Bits in a Unicode code point (the largest is 0x10FFFF).
_CODE_POINT_BITS = 21


@dataclass(frozen=True)
class Profile:
    """One language's character n-grams: sorted unique keys, and their counts scaled to unit length."""

    keys: np.ndarray
    weights: np.ndarray


def profile(texts: Iterable[str], n: int = NGRAM) -> Profile:
    """The n-gram profile of a language's training texts."""
    joined = " " + " ".join(" ".join(text.lower().split()) for text in texts) + " "
    points = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    count = len(points) - n + 1
    if count <= 0:
        return Profile(np.zeros(0, dtype=np.int64), np.zeros(0))
    keys = points[:count].copy()
    for i in range(1, n):
        keys = (keys << _CODE_POINT_BITS) | points[i : count + i]
    unique, counts = np.unique(keys, return_counts=True)
    counts = counts.astype(np.float64)
    return Profile(unique, counts / np.linalg.norm(counts))


def similarity(a: Profile, b: Profile) -> float:
    """Cosine similarity of two profiles: 1 for the same n-gram mix, 0 for no n-gram in common."""
    _, in_a, in_b = np.intersect1d(a.keys, b.keys, assume_unique=True, return_indices=True)
    return float(a.weights[in_a] @ b.weights[in_b])


def similarities(code: str, profiles: Mapping[str, Profile]) -> dict[str, float]:
    """``code``'s similarity to every other language in ``profiles``."""
    own = profiles[code]
    return {other: similarity(own, theirs) for other, theirs in profiles.items() if other != code}


def similarity_table(profiles: Mapping[str, Profile]) -> dict[str, dict[str, float]]:
    """Every language's similarity to every other (each pair computed once: cosine is symmetric)."""
    codes = list(profiles)
    table = {code: {} for code in codes}
    for i, code in enumerate(codes):
        for other in codes[i + 1 :]:
            table[code][other] = table[other][code] = similarity(profiles[code], profiles[other])
    return table


def nearest(scores: Mapping[str, float], k: int) -> list[tuple[str, float]]:
    """The ``k`` most similar languages, most similar first; ties go to the code that sorts first."""
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]
