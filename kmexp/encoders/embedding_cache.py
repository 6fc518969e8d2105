"""Embeddings of a frozen encoder, computed once per text set and kept on disk.

A frozen pretrained backbone gives the same vector for the same text every
time, so a sweep over heads, optimizers or seeds needs each split embedded only
once. A cached array is found by a key made of what decides its values: the
preset (and, for a folder, its files' sizes and times), the pooling, the
sequence length, the standardization, and the sha256 of the texts themselves
(the data). Arrays are written whole (``kmexp.runs.atomic_write``), so two jobs
of a parallel sweep that embed the same split never see half a file.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from kmexp.runs import atomic_write


def preset_identity(preset: str) -> dict:
    """What names a preset's weights: the handle, and for a local folder its files' sizes and times."""
    folder = Path(preset).expanduser()
    if not folder.is_dir():
        return {"preset": preset}
    files = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.rglob("*")) if p.is_file()}
    return {"preset": str(folder.resolve()), "files": files}


def texts_sha256(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


class EmbeddingCache:
    """Arrays of embeddings under ``folder``, keyed by ``identity`` (the encoder's settings) and the texts."""

    def __init__(self, folder: str | Path, identity: Mapping):
        self.folder = Path(folder).expanduser()
        self.identity = dict(identity)
        self.hits = 0
        self.misses = 0
        self.seconds = 0.0  # spent embedding the misses

    def key(self, texts: Sequence[str]) -> str:
        payload = json.dumps({**self.identity, "texts_sha256": texts_sha256(texts)}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def embeddings(self, texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
        """The cached embeddings of ``texts``, or ``embed(texts)``, stored for next time."""
        path = self.folder / f"{self.key(texts)}.npy"
        if path.is_file():
            self.hits += 1
            return np.load(path)
        self.misses += 1
        started = time.perf_counter()
        vectors = np.asarray(embed(texts), dtype=np.float32)
        self.seconds += time.perf_counter() - started

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # an open file: np.save would add ".npy" to a bare name
                np.save(f, vectors)

        atomic_write(path, save)
        return vectors

    def record(self) -> dict:
        """What metrics.json says about the cache: where it is, how many splits it had or had to embed, and how long that took."""
        return {"dir": str(self.folder), "hits": self.hits, "misses": self.misses, "seconds": round(self.seconds, 3)}
