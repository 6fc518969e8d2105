"""SIB-200: topic classification in 205 languages (Adelani et al., EACL 2024).

The data (CC BY-SA 4.0) is not shipped; only its sha256 sums are
(`sib200.sha256`, the upstream SHA256SUMS of the pinned commit). It is read
either from a local copy (`KMEXP_DATA_DIR`) or downloaded once into a cache.

A download is verified before it enters the cache: it is written to a temporary
file next to its destination, hashed, and only then moved into place with
`os.replace`, so the cache never holds a partial or altered file. Files already
in the cache are not hashed again on each load (they were checked on the way
in); their sums are still recorded in `Splits.info["files"]` for provenance.
The shipped sums cover the pinned commit only, so any other `commit` fails
the check on download; use KMEXP_DATA_DIR for other versions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from kmexp.config.validation import check_data, check_languages, raise_problems
from kmexp.data.files import read_split
from kmexp.data.pooling import choose, pooled_train
from kmexp.data.splits import Split, Splits, TextLimit, concat_splits, file_sha256, make_splits
from kmexp.errors import DataError
from kmexp.languages import (  # noqa: F401  (kmexp.data exports the codes)
    SHIPPED_SUMS,
    SIB200_COMMIT,
    codes_in,
    expand_codes,
    sib200_codes,
)
from kmexp.runs import atomic_write, read_json, write_json

SPLIT_FILES = ("train.tsv", "dev.tsv", "test.tsv")
TRAIN_FILE = "train.tsv"
TEST_FILE = "test.tsv"
# Under cache_dir: every language's nearness to every other (language.pool), by digest of the train files.
NEIGHBOURS_DIR = "neighbours"
TEXT_COLUMN = "text"
LABEL_COLUMN = "category"

_CHUNK = 1 << 16
# A pooled split's source names its languages up to this many, then only counts them.
_SHOWN_CODES = 4


def shipped_sums() -> dict[str, str]:
    """Map '<code>/<file>' to its sha256: the sums shipped in the package (``SHIPPED_SUMS``)."""
    sums = {}
    for line in SHIPPED_SUMS.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip().removeprefix("./")] = digest
    return sums


class SIB200:
    """SIB-200 in one language, or in several trained on together, plus languages only tested on.

    One language has 701 train / 99 dev / 204 test sentences and 7 topics. With
    `codes` (language=multi) train, dev and test pool those languages' splits,
    so early stopping sees every language's dev, and each language's test split
    is also kept on its own (`Splits.eval_tests`) to be scored per language.
    `eval_codes` adds the test split of more languages (zero-shot transfer).
    `pool` (related-language pooling, one language only) appends other languages'
    train splits, at `pool_weight` per row: the `pool` nearest (``kmexp.data.neighbours``),
    or the listed codes; dev and test stay the language's own.
    Every file goes through the same check (local copy) or verified download,
    and every text through the same length limit (`max_chars`, `on_long_text`).
    """

    def __init__(
        self,
        root: str | None,
        code: str,
        cache_dir: str,
        base_url: str,
        commit: str,
        timeout_s: float,
        max_chars: int,
        on_long_text: str,
        codes: list[str] | str | None = None,
        eval_codes: list[str] | str | None = None,
        pool: int | list[str] | None = None,
        pool_weight: float | None = None,  # needed with pool (conf/language/_common.yaml: 0.5)
    ):
        self._sums = shipped_sums()
        valid = codes_in(self._sums)
        # The rules validate() applies, for a caller that skipped it.
        data = {
            "root": root, "commit": commit, "timeout_s": timeout_s, "max_chars": max_chars, "on_long_text": on_long_text,
            "code": code, "codes": codes, "pool": pool, "pool_weight": pool_weight,
        }
        raise_problems([*check_languages(code, codes, eval_codes, valid), *check_data(data)])
        self.root = root
        self.code = code
        # Trained on: `code` alone, or the `codes` of language=multi.
        self.codes = [code] if codes is None else expand_codes(codes, valid)
        # Tested one by one: each training language of language=multi, then the eval languages.
        multi = [] if codes is None else self.codes
        extra = [] if eval_codes is None else expand_codes(eval_codes, valid)
        self.eval_codes = list(dict.fromkeys([*multi, *extra]))
        self.cache_dir = cache_dir
        self.base_url = base_url.rstrip("/")
        self.commit = commit
        self.timeout_s = timeout_s
        self.limit = TextLimit(max_chars, on_long_text)
        self.pool = pool
        self.pool_weight = pool_weight

    def load(self) -> Splits:
        """Read train/dev/test of the training language(s) and the eval test splits, downloading first if needed."""
        # Language by language (train, dev, test, train, dev, test, ...): files[i::3] is one split of every language.
        files = [path for code in self.codes for path in self._paths(code, SPLIT_FILES)]
        read = {path: self._read(path) for path in files}
        train, dev, test = (
            _pooled([read[path] for path in files[i :: len(SPLIT_FILES)]], self.codes) for i in range(len(SPLIT_FILES))
        )
        eval_tests = {}
        for code in self.eval_codes:
            # A training language's test is already read; a language only tested on adds its test file alone.
            [path] = self._paths(code, [TEST_FILE])
            if path not in read:
                read[path] = self._read(path)
                files.append(path)
            eval_tests[code] = read[path]
        if self.pool is None:
            return make_splits(train, dev, test, files, eval_tests, self.limit)
        chosen = choose(self.pool, self._similarities)
        train, record = pooled_train(train, chosen, self._train_of, self.pool, self.pool_weight)
        files += [path for code, _ in chosen for path in self._paths(code, [TRAIN_FILE])]
        splits = make_splits(train, dev, test, files, eval_tests, self.limit)
        return dataclasses.replace(splits, info={**splits.info, "pool": record})

    def _read(self, path: Path) -> Split:
        return read_split(path, TEXT_COLUMN, LABEL_COLUMN, self.limit)

    def _paths(self, code: str, names: Sequence[str]) -> list[Path]:
        """Paths of one language's files, checked in the local copy or downloaded and verified into the cache."""
        if self.root is not None:
            folder = self._local_folder(code, names)
        else:
            folder = self._cached_folder(code, names)
        return [folder / name for name in names]

    def _local_folder(self, code: str, names: Sequence[str]) -> Path:
        """The language folder in the local copy that KMEXP_DATA_DIR points to."""
        folder = Path(self.root).expanduser() / code
        if not folder.is_dir():
            raise DataError(
                f"{folder}: no such SIB-200 language folder (KMEXP_DATA_DIR points to {self.root})"
            )
        for name in names:
            if not (folder / name).is_file():
                raise DataError(
                    f"{folder / name}: file missing from the SIB-200 copy "
                    f"(KMEXP_DATA_DIR points to {self.root})"
                )
        return folder

    def _cached_folder(self, code: str, names: Sequence[str]) -> Path:
        """The cache folder for this language, with any missing file downloaded into it."""
        folder = Path(self.cache_dir).expanduser() / self.commit / code
        for name in names:
            dest = folder / name
            if not dest.is_file():
                download_file(self._url(code, name), dest, self._sums[f"{code}/{name}"], self.timeout_s)
        return folder

    def _url(self, code: str, name: str) -> str:
        return f"{self.base_url}/{self.commit}/data/annotated/{code}/{name}"

    def _train_of(self, code: str) -> Split:
        [path] = self._paths(code, [TRAIN_FILE])
        return self._read(path)

    def _similarities(self) -> dict[str, float]:
        """This language's nearness to every other SIB-200 language, from all 205 train splits.

        Profiling every train split and comparing every pair takes seconds, so the whole
        table is cached in ``cache_dir/neighbours/<digest>.json``, the digest being of every
        train file's sha256: another copy of the data, or another version, computes its own.
        """
        from kmexp.data.neighbours import profile, similarity_table

        paths = {code: self._paths(code, [TRAIN_FILE])[0] for code in sorted(codes_in(self._sums))}
        sums = "".join(f"{code} {file_sha256(path)}\n" for code, path in paths.items())
        digest = hashlib.sha256(sums.encode("utf-8")).hexdigest()
        cached = Path(self.cache_dir).expanduser() / NEIGHBOURS_DIR / f"{digest}.json"
        table = read_json(cached)
        if table is None:
            table = similarity_table({code: profile(self._read(path).texts) for code, path in paths.items()})
            write_json(cached, table)
        return table[self.code]


def _pooled(splits: list[Split], codes: list[str]) -> Split:
    """One split from the same split of several languages; a single language's split stays as it is."""
    if len(splits) == 1:
        return splits[0]
    name = Path(splits[0].source).name
    shown = ",".join(codes) if len(codes) <= _SHOWN_CODES else f"{len(codes)} languages"
    return concat_splits(splits, f"{Path(splits[0].source).parent.parent}/<{shown}>/{name}")


def download_file(url: str, dest: Path, sha256: str, timeout_s: float) -> Path:
    """Download `url` to `dest` only if its bytes hash to `sha256`.

    The bytes go to a temporary file in dest's folder and are moved into place
    only after the check (``kmexp.runs.atomic_write``).
    On any failure nothing is left behind: not the temporary file, and not
    the folders this call created.
    """
    dest = Path(dest)
    created = _make_dirs(dest.parent)

    def fetch_checked(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            received = _fetch(url, out, timeout_s)
        if received != sha256:
            raise DataError(
                f"{url}: sha256 mismatch: expected {sha256}, received {received}; "
                "the file was not cached"
            )

    try:
        atomic_write(dest, fetch_checked)
    except BaseException:
        _remove_empty(created)
        raise
    return dest


def _fetch(url: str, out, timeout_s: float) -> str:
    """Stream `url` into `out` and return the sha256 of what arrived."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as err:
        raise DataError(
            f"could not download {url} ({_reason(err)}); "
            "to work offline, set KMEXP_DATA_DIR to a local copy of SIB-200"
        ) from None
    return digest.hexdigest()


def _reason(err: Exception) -> str:
    if isinstance(err, urllib.error.HTTPError):
        err.close()  # an HTTPError holds the open response
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def _make_dirs(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; return the ones created, deepest first."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders (deepest first) that a failed download created, if still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (another download filled it) or gone: leave the rest
