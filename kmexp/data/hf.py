"""Any labeled text dataset that the Hugging Face `datasets` library reads.

`data.path` is a Hub id (`user/dataset`), a folder saved with `save_to_disk`
(or a folder of such folders, one per config), a folder of data files, or a
builder (`csv`, `json`, `parquet`) reading `data.data_files`. Hub datasets go
through `datasets`' own cache.

The language preset picks the part of the dataset to use: `locale_config`
maps its tag to the dataset's config (MASSIVE's `fr`), `locale_filter` to the
value of a column, for datasets that keep every language in one split. So one
sweep over `language=` covers several languages of one dataset.

Every problem the user can fix (the Hub unreachable with nothing cached, a
missing split, column, config or language) is one `DataError` line that lists
what the dataset has. `datasets` is imported inside the functions: it takes
about a second to load, and configs are checked before.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
from collections.abc import Mapping
from functools import cache, partial
from pathlib import Path

from kmexp.compat import dataset_fingerprint, hub_offline, packaged_builders
from kmexp.config.validation import check_data, raise_problems
from kmexp.data.files import refuse_long_texts, stratified_split
from kmexp.data.pooling import choose, pooled_train
from kmexp.data.splits import Split, Splits, TextLimit, make_splits
from kmexp.errors import DataError

log = logging.getLogger(__name__)

# kmexp's split names, in the order they are read.
SPLIT_NAMES = ("train", "dev", "test")
# A Hub dataset id: `name` or `owner/name`.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# How many values of a column an error line shows before it only counts them.
_SHOWN_VALUES = 20


class HFDataset:
    """Train/dev/test from one dataset of the `datasets` library, for the language preset's locale.

    `splits` maps kmexp's train, dev and test to the dataset's split names; a
    null dev carves a seeded stratified share of train (`dev_fraction`), as
    `data=files` does. ClassLabel labels become their names; other labels are
    kept as their text. Texts longer than `max_chars` are cut, or refused with
    `on_long_text="error"` (`TextLimit`), as in every other source.
    `pool` (related-language pooling) appends other locales' train splits of the
    mapping at `pool_weight` per row; dev and test stay the locale's own.
    """

    def __init__(
        self,
        path: str,
        name: str | None,
        revision: str | None,
        data_files,
        splits: Mapping[str, str | None],
        text_column: str,
        label_column: str,
        locale: str,
        locale_config: Mapping[str, str] | None,
        locale_filter: Mapping | None,
        dev_fraction: float,
        seed: int,
        cache_dir: str | None,
        timeout_s: float,
        max_chars: int,
        on_long_text: str,
        pool: int | list[str] | None = None,
        pool_weight: float | None = None,  # needed with pool (conf/language/_common.yaml: 0.5)
    ):
        # The rules validate() applies, for a caller that skipped it.
        options = {"path": path, "name": name, "splits": splits, "locale": locale, "locale_config": locale_config,
                   "locale_filter": locale_filter, "dev_fraction": dev_fraction, "timeout_s": timeout_s,
                   "max_chars": max_chars, "on_long_text": on_long_text, "pool": pool, "pool_weight": pool_weight}
        raise_problems(check_data(options))
        self.path = path
        self.name = name
        self.revision = revision
        self.data_files = _plain(data_files)
        self.splits = {key: splits[key] for key in SPLIT_NAMES}
        self.text_column = text_column
        self.label_column = label_column
        self.locale = locale
        # Values as text: a YAML `1` names the same config, or matches the same column value, as "1".
        self.locale_config = None if locale_config is None else {k: str(v) for k, v in locale_config.items()}
        self.locale_filter = None if locale_filter is None else {
            "column": locale_filter["column"], "values": {k: str(v) for k, v in locale_filter["values"].items()},
        }
        self.dev_fraction = dev_fraction
        self.seed = seed
        self.cache_dir = cache_dir
        self.timeout_s = timeout_s
        self.limit = TextLimit(max_chars, on_long_text)
        self.pool = _plain(pool)
        self.pool_weight = pool_weight

    @property
    def config_name(self) -> str | None:
        """The dataset config to read: the locale's under `locale_config`, else `name`."""
        return self.name if self.locale_config is None else self.locale_config[self.locale]

    @property
    def label(self) -> str:
        """The dataset as messages name it: path, and config in brackets."""
        return self.path if self.config_name is None else f"{self.path}[{self.config_name}]"

    def load(self) -> Splits:
        """Open the dataset, read the three splits of the locale, and check them like any other source."""
        dataset, where = self._open()
        read = {key: self._read(dataset, key) for key in SPLIT_NAMES if self.splits[key] is not None}
        train, test = read["train"], read["test"]
        if self.splits["dev"] is None:
            train, dev = stratified_split(train, self.dev_fraction, self.seed)
        else:
            dev = read["dev"]
        pool = None
        if self.pool is not None:
            # Each locale's train split is read once, whether nearness or pooling asks first.
            train_of = cache(partial(self._train_of, {self.config_name: dataset}))
            chosen = choose(self.pool, partial(self._similarities, train, train_of))
            train, pool = pooled_train(train, chosen, train_of, self.pool, self.pool_weight)
        splits = make_splits(train, dev, test, [], limit=self.limit)
        info = {**splits.info, "dataset": self._record(dataset, where)}
        return dataclasses.replace(splits, info=info if pool is None else {**info, "pool": pool})

    # --- pooling (language.pool) -----------------------------------------------------------------

    def _locales(self) -> list[str]:
        """Every locale of the mapping (locale_config or locale_filter.values)."""
        mapping = self.locale_config if self.locale_config is not None else self.locale_filter["values"]
        return list(mapping)

    def _train_of(self, opened: dict, locale: str) -> Split:
        """Another locale's train split, read like this one's; ``opened`` keeps each config opened once.

        With dev carved out of train, the other locale's train is carved the same way (same seed):
        in a parallel dataset (MASSIVE) the rows held out are then the translations of this dev.
        """
        other = copy.copy(self)
        other.locale = locale
        if other.config_name not in opened:
            opened[other.config_name] = other._open()[0]
        train = other._read(opened[other.config_name], "train")
        if self.splits["dev"] is None:
            train, _ = stratified_split(train, self.dev_fraction, self.seed)
        return train

    def _similarities(self, own: Split, train_of) -> dict[str, float]:
        """This locale's nearness to every other locale of the mapping, by their train splits' character n-grams."""
        from kmexp.data.neighbours import profile, similarity

        mine = profile(own.texts)
        return {locale: similarity(mine, profile(train_of(locale).texts))
                for locale in self._locales() if locale != self.locale}

    # --- opening --------------------------------------------------------------------------------

    def _open(self) -> tuple[Mapping, dict]:
        """The dataset's splits by name, and where they came from (for metrics.json)."""
        local = Path(self.path).expanduser()
        if local.is_dir():
            saved = _saved_folder(local, self.config_name)
            if saved is not None:
                import datasets

                loaded = datasets.load_from_disk(str(saved))
                # A saved single Dataset has no split names: it is all of `train`.
                splits = {"train": loaded} if isinstance(loaded, datasets.Dataset) else loaded
                return splits, {"saved_to_disk": str(saved)}
            _refuse_missing_saved_config(local, self.config_name)
        elif self.path.startswith((".", "/", "~")) or Path(self.path).is_absolute():
            raise DataError(f"data.path={self.path}: no such folder")
        return self._build()

    def _build(self) -> tuple[Mapping, dict]:
        """Build the dataset with `datasets` (downloading into its cache), or read it from that cache."""
        import datasets

        hub = self._is_hub_id()
        unreachable = None
        if hub and not datasets.config.HF_HUB_OFFLINE:
            unreachable = _unreachable_hub(self.timeout_s)
        try:
            if unreachable is None:
                builder = self._prepare()
            else:
                log.warning("%s: %s; reading the dataset from datasets' cache", self.path, unreachable)
                with hub_offline():
                    builder = self._prepare()
            dataset = builder.as_dataset()
        except ConnectionError:
            raise DataError(self._offline_message(unreachable)) from None
        except (ValueError, FileNotFoundError, RuntimeError, datasets.exceptions.DatasetsError) as err:
            raise DataError(f"{self._keys()}: {_first_line(err)}") from None
        where = {"builder_hash": builder.hash, "cache": builder.cache_dir}
        return dataset, where

    def _prepare(self):
        import datasets

        builder = datasets.load_dataset_builder(
            self.path, self.config_name, revision=self.revision, data_files=self.data_files, cache_dir=self.cache_dir,
        )
        builder.download_and_prepare()
        return builder

    def _is_hub_id(self) -> bool:
        """A name on the Hub: not a local folder (`data/multi` looks like `owner/name`), not a builder."""
        local = Path(self.path).expanduser().exists()
        return not local and self.path not in packaged_builders() and _HUB_ID.match(self.path) is not None

    def _keys(self) -> str:
        """The settings that chose the dataset, as the user typed them."""
        keys = f"data.path={self.path}"
        if self.config_name is not None:
            via = f"data.locale_config.{self.locale}" if self.locale_config is not None else "data.name"
            keys += f", {via}={self.config_name}"
        return keys

    def _offline_message(self, unreachable: str | None) -> str:
        import datasets

        cache = Path(self.cache_dir).expanduser() if self.cache_dir is not None else datasets.config.HF_DATASETS_CACHE
        why = "HF_HUB_OFFLINE is set" if unreachable is None else unreachable
        config = "" if self.config_name is None else f", {self.config_name!r}"
        target = "/folder" if self.config_name is None else f"/folder/{self.config_name}"
        return (
            f"{self.label}: the Hugging Face Hub cannot be reached ({why}) and no copy is cached in {cache}; "
            f"to run on a local copy, on a machine with network run "
            f"datasets.load_dataset({self.path!r}{config}).save_to_disk({target!r}), "
            "copy the folder here and set data.path=/folder"
        )

    # --- reading --------------------------------------------------------------------------------

    def _read(self, dataset: Mapping, key: str) -> Split:
        """kmexp's split `key` (train, dev or test): the dataset split it maps to, rows of the locale only."""
        name = self.splits[key]
        if name not in dataset:
            hint = "; set data.splits.dev=null to carve dev out of train" if key == "dev" else ""
            raise DataError(
                f"{self.label}: data.splits.{key}={name}: no such split; the dataset has {sorted(dataset)}{hint}"
            )
        split = dataset[name]
        source = f"{self.label}/{name}"
        self._require_columns(split, source)
        columns = [self.text_column, self.label_column]
        if self.locale_filter is not None:
            columns.append(self.locale_filter["column"])
        rows = split.select_columns(list(dict.fromkeys(columns))).to_dict()
        if self.locale_filter is not None:
            rows, source = self._filtered(rows, source)
        texts = ["" if text is None else str(text) for text in rows[self.text_column]]
        labels = _label_names(split.features[self.label_column], rows[self.label_column], source, self.label_column)
        if self.limit.on_long_text == "error":
            refuse_long_texts(source, texts, (f"row {i}" for i in range(len(texts))), self.limit.max_chars)
        return Split(texts=texts, labels=labels, source=source)

    def _require_columns(self, split, source: str) -> None:
        columns = list(split.column_names)
        wanted = {"data.text_column": self.text_column, "data.label_column": self.label_column}
        if self.locale_filter is not None:
            wanted["data.locale_filter.column"] = self.locale_filter["column"]
        missing = [f"{key}={column}" for key, column in wanted.items() if column not in columns]
        if missing:
            raise DataError(f"{source}: no such column: {', '.join(missing)}; the dataset has {columns}")

    def _filtered(self, rows: dict[str, list], source: str) -> tuple[dict[str, list], str]:
        """The rows whose locale column holds the locale's value (compared as text)."""
        column, value = self.locale_filter["column"], self.locale_filter["values"][self.locale]
        keep = [i for i, found in enumerate(rows[column]) if str(found) == value]
        source = f"{source}[{column}={value}]"
        if not keep:
            present = sorted({str(found) for found in rows[column]})
            shown = present if len(present) <= _SHOWN_VALUES else [*present[:_SHOWN_VALUES], f"... {len(present)} in all"]
            raise DataError(
                f"{source}: no rows for data.locale_filter.values.{self.locale}={value}; "
                f"the column {column!r} holds {shown}"
            )
        return {name: [values[i] for i in keep] for name, values in rows.items()}, source

    def _record(self, dataset: Mapping, where: dict) -> dict:
        """What metrics.json says about the dataset: enough to load exactly the same rows again."""
        return {
            "path": self.path,
            "name": self.config_name,
            "revision": self.revision,
            "data_files": self.data_files,
            "locale": self.locale,
            "locale_filter": None if self.locale_filter is None else {
                "column": self.locale_filter["column"], "value": self.locale_filter["values"][self.locale],
            },
            "splits": dict(self.splits),
            # Per dataset split: its rows (before the locale filter) and datasets' fingerprint of its content.
            "fingerprint": {name: dataset_fingerprint(dataset[name]) for name in self._used(dataset)},
            "rows": {name: dataset[name].num_rows for name in self._used(dataset)},
            **where,
        }

    def _used(self, dataset: Mapping) -> list[str]:
        return list(dict.fromkeys(name for name in self.splits.values() if name is not None))


def _saved_folder(folder: Path, config: str | None) -> Path | None:
    """The folder `load_from_disk` reads: `folder` itself, or its sub-folder named after the config."""
    candidates = [folder] if config is None else [folder, folder / config]
    for candidate in candidates:
        if _is_saved(candidate):
            return candidate
    return None


def _is_saved(folder: Path) -> bool:
    import datasets.config

    names = (datasets.config.DATASETDICT_JSON_FILENAME, datasets.config.DATASET_STATE_JSON_FILENAME)
    return any((folder / name).is_file() for name in names)


def _refuse_missing_saved_config(folder: Path, config: str | None) -> None:
    """A folder of saved configs without the one asked for: say which it has."""
    saved = sorted(child.name for child in folder.iterdir() if child.is_dir() and _is_saved(child))
    if saved:
        raise DataError(
            f"data.path={folder}: holds datasets saved with save_to_disk for the configs {saved}, "
            f"not for {config!r}"
        )


def _unreachable_hub(timeout_s: float) -> str | None:
    """Why the Hub cannot be reached, found in one request of at most `timeout_s`; None when it answers.

    An error status counts as unreachable too: a proxy or firewall that refuses
    the Hub answers for it, and then every download would fail.
    """
    from huggingface_hub import constants, get_session

    try:
        response = get_session().head(constants.ENDPOINT, timeout=timeout_s)
    except Exception as err:  # noqa: BLE001 - whatever stops the request means the same: no Hub
        return f"no answer from {constants.ENDPOINT} within {timeout_s:g} s: {_first_line(err)}"
    if response.status_code >= 400:
        return f"{constants.ENDPOINT} answered HTTP {response.status_code}"
    return None


def _label_names(feature, values: list, source: str, column: str) -> list[str]:
    """Labels as text: a ClassLabel's names, anything else as it reads."""
    from datasets import ClassLabel, Value

    if not isinstance(feature, (ClassLabel, Value)):
        raise DataError(
            f"{source}: the label column {column!r} is {type(feature).__name__}, not one label per text; "
            "kmexp needs a ClassLabel, string or integer column"
        )
    labels = []
    for row, value in enumerate(values, start=1):
        if value is None or (isinstance(feature, ClassLabel) and value < 0):
            raise DataError(f"{source}: row {row} has no '{column}' value")
        label = feature.int2str(value) if isinstance(feature, ClassLabel) else str(value).strip()
        if not label:
            raise DataError(f"{source}: row {row} has an empty '{column}'")
        labels.append(label)
    return labels


def _plain(value):
    """A config node (DictConfig, ListConfig) as plain dicts and lists, for `datasets` and JSON."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
