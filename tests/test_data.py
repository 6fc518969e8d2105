"""Loading the user's own files and SIB-200 from a local copy (no mocks).

The small multilingual files are written by the tests themselves.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from kmexp.data import SIB200, LabeledFiles, Split, Splits, sib200_codes
from kmexp.paths import config_dir
from kmexp.errors import ConfigError, DataError

TRAIN = [
    ("The team won the final in extra time.", "sports"),
    ("L'équipe a gagné la finale aux prolongations.", "sports"),
    ("球队在加时赛中赢得了决赛。", "sports"),
    ("فاز الفريق بالمباراة النهائية في الوقت الإضافي.", "sports"),
    ("Команда выиграла финал в дополнительное время.", "sports"),
    ("Parliament passed the budget, 210 votes to 190.", "politics"),
    ("Le parlement a voté le budget, dit-il : « enfin ».", "politics"),
    ("议会以210票对190票通过了预算。", "politics"),
    ("أقر البرلمان الميزانية.", "politics"),
    ("Парламент принял бюджет.", "politics"),
    ('Doctors say "sleep, water and walks" help.', "health"),
    ("Les médecins recommandent de dormir davantage.", "health"),
    ("医生建议多喝水。", "health"),
    ("ينصح الأطباء بشرب الماء.", "health"),
    ("Врачи советуют больше спать.", "health"),
]
DEV = [
    ("She ran the marathon in under three hours.", "sports"),
    ("Le ministre a démissionné hier.", "politics"),
    ("每天散步有益健康。", "health"),
]
TEST = [
    ("Он забил два гола.", "sports"),
    ("انتخب الرئيس الجديد.", "politics"),
    ("Vaccines reduce severe illness.", "health"),
]


def write_table(path: Path, rows, header=("text", "label"), delimiter=None) -> Path:
    """Write rows with CSV quoting; the delimiter follows the extension."""
    delimiter = delimiter or ("\t" if path.suffix == ".tsv" else ",")
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows, keys=("text", "label")) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(dict(zip(keys, row)), ensure_ascii=False) + "\n")
    return path


def write_set(folder: Path, ext: str, train=TRAIN, dev=DEV, test=TEST) -> dict[str, str]:
    writer = write_jsonl if ext in (".jsonl", ".json-lines") else write_table
    return {name: str(writer(folder / f"{name}{ext}", rows))
            for name, rows in (("train", train), ("dev", dev), ("test", test))}


def yaml_defaults(option: str, *keys: str) -> dict:
    """The defaults that conf/data/<option>.yaml gives these keys (or conf/data/_common.yaml, which it includes):
    the YAML holds every default."""
    folder = config_dir() / "data"
    cfg = OmegaConf.merge(OmegaConf.load(folder / "_common.yaml"), OmegaConf.load(folder / f"{option}.yaml"))
    return {key: cfg[key] for key in keys}


LIMIT_KEYS = ("max_chars", "on_long_text")
FILES_DEFAULTS = yaml_defaults("files", "text_column", "label_column", "dev_fraction", *LIMIT_KEYS)


def load(paths: dict[str, str], **kwargs) -> Splits:
    kwargs = {**FILES_DEFAULTS, "seed": 0, **kwargs}
    return LabeledFiles(paths["train"], paths.get("dev"), paths["test"], **kwargs).load()


def as_rows(split: Split) -> list[tuple[str, str]]:
    return list(zip(split.texts, split.labels))


# --- LabeledFiles: formats -------------------------------------------------


@pytest.mark.parametrize("ext", [".tsv", ".csv", ".jsonl", ".json-lines"])
def test_formats_read_the_same(tmp_path, ext):
    splits = load(write_set(tmp_path, ext))

    assert as_rows(splits.train) == TRAIN
    assert as_rows(splits.dev) == DEV
    assert as_rows(splits.test) == TEST
    assert splits.labels == ["health", "politics", "sports"]
    assert splits.info["dropped_empty"] == {"train": 0, "dev": 0, "test": 0}
    assert splits.info["truncated"] == {"train": 0, "dev": 0, "test": 0}
    assert len(splits.info["files"]) == 3
    assert all(len(digest) == 64 for digest in splits.info["files"].values())


def test_custom_columns_and_labels_stay_strings(tmp_path):
    rows = [("un", "01"), ("deux", "1"), ("trois", "01"), ("quatre", "1")]
    paths = {name: str(write_table(tmp_path / f"{name}.csv", rows, header=("phrase", "classe")))
             for name in ("train", "dev", "test")}

    splits = load(paths, text_column="phrase", label_column="classe")

    assert splits.labels == ["01", "1"]
    assert splits.train.texts == ["un", "deux", "trois", "quatre"]


# --- LabeledFiles: dev carved out of train ---------------------------------


def test_stratified_dev_split_is_seeded_and_covers_every_class(tmp_path):
    train = TRAIN + [("Un seul exemple de voyage.", "travel")]  # a class with one row
    paths = write_set(tmp_path, ".tsv", train=train, dev=[], test=TEST)
    del paths["dev"]

    splits = load(paths, dev_fraction=0.2, seed=3)

    assert sorted(as_rows(splits.train) + as_rows(splits.dev)) == sorted(train)
    assert set(splits.train.labels) == {"sports", "politics", "health", "travel"}
    assert sorted(splits.dev.labels) == ["health", "politics", "sports"]  # 1 of 5 each
    assert "travel" in splits.labels  # the single-row class stays in train
    assert load(paths, dev_fraction=0.2, seed=3) == splits
    dev_sets = {tuple(load(paths, dev_fraction=0.2, seed=s).dev.texts) for s in range(8)}
    assert len(dev_sets) > 1  # the seed matters
    assert set(splits.info["files"]) == {paths["train"], paths["test"]}


def test_dev_fraction_outside_0_1_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="data.dev_fraction"):
        LabeledFiles("train.tsv", None, "test.tsv", **{**FILES_DEFAULTS, "seed": 0, "dev_fraction": 1.5})


# --- LabeledFiles: errors --------------------------------------------------


def test_missing_file_names_key_and_path(tmp_path):
    paths = write_set(tmp_path, ".tsv")
    paths["train"] = str(tmp_path / "nope.tsv")
    with pytest.raises(DataError, match=r"data\.train: file not found: .*nope\.tsv"):
        load(paths)


def test_missing_column_lists_the_columns_found(tmp_path):
    paths = write_set(tmp_path, ".csv")
    write_table(Path(paths["dev"]), DEV, header=("sentence", "label"))
    with pytest.raises(DataError) as err:
        load(paths)
    message = str(err.value)
    assert "dev.csv" in message and "'text'" in message
    assert "['sentence', 'label']" in message


def test_missing_jsonl_key_lists_the_keys_found(tmp_path):
    paths = write_set(tmp_path, ".jsonl")
    write_jsonl(Path(paths["test"]), TEST, keys=("text", "topic"))
    with pytest.raises(DataError, match=r"test\.jsonl.*'label'.*\['text', 'topic'\]"):
        load(paths)


def test_non_utf8_bytes_report_the_line(tmp_path):
    paths = write_set(tmp_path, ".tsv")
    lines = Path(paths["train"]).read_bytes().split(b"\n")
    lines[3] = "Le médecin est arrivé.\thealth".encode("latin-1")  # line 4 of the file
    Path(paths["train"]).write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"train\.tsv: line 4 is not valid UTF-8"):
        load(paths)


def test_invalid_json_reports_the_line(tmp_path):
    paths = write_set(tmp_path, ".jsonl")
    with open(paths["dev"], "a", encoding="utf-8") as f:
        f.write('{"text": "cassé", "label": \n')
    with pytest.raises(DataError, match=r"dev\.jsonl: line 4 is not valid JSON"):
        load(paths)


def test_file_with_no_rows(tmp_path):
    paths = write_set(tmp_path, ".csv", test=[])
    with pytest.raises(DataError, match=r"test\.csv: the file has no data rows"):
        load(paths)


def test_unseen_dev_label_is_refused_in_one_line(tmp_path):
    paths = write_set(tmp_path, ".tsv", dev=DEV + [("Le train part à midi.", "travel")])
    with pytest.raises(DataError) as err:
        load(paths)
    message = str(err.value)
    assert "dev.tsv" in message and "['travel']" in message
    assert "['health', 'politics', 'sports']" in message
    assert "\n" not in message


def test_empty_texts_are_dropped_and_counted(tmp_path, caplog):
    train = TRAIN + [("", "sports"), ("   ", "health")]
    paths = write_set(tmp_path, ".csv", train=train, test=TEST + [("\t", "health")])

    with caplog.at_level(logging.WARNING, logger="kmexp.data.splits"):
        splits = load(paths)

    assert as_rows(splits.train) == TRAIN
    assert splits.info["dropped_empty"] == {"train": 2, "dev": 0, "test": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("train.csv" in w and "dropped 2" in w for w in warnings)


def test_a_split_left_empty_is_an_error(tmp_path):
    paths = write_set(tmp_path, ".jsonl", dev=[("  ", "sports")])
    with pytest.raises(DataError, match=r"dev\.jsonl: the dev split has no non-empty texts"):
        load(paths)


@pytest.mark.parametrize("dev", ["file", "carved from train"])
def test_a_train_split_with_one_label_is_refused_in_one_line(tmp_path, dev):
    """With one label every prediction is right: the run would report 100%."""
    one_label = [(text, "sports") for text, _ in TRAIN]
    paths = write_set(tmp_path, ".tsv", train=one_label)
    if dev != "file":
        del paths["dev"]
    with pytest.raises(DataError) as err:
        load(paths)
    assert str(err.value) == (
        f"{paths['train']}: every training text has the same label, 'sports'; "
        "a classifier needs at least two labels in data.train"
    )


LONG = "Le match " * 20  # 180 characters


def test_long_texts_are_cut_counted_and_warned_about_once(tmp_path, caplog):
    paths = write_set(tmp_path, ".tsv", train=TRAIN + [(LONG, "sports")], test=TEST + [(LONG + "!", "sports")])

    with caplog.at_level(logging.WARNING, logger="kmexp.data.splits"):
        splits = load(paths, max_chars=50)

    assert splits.info["truncated"] == {"train": 1, "dev": 0, "test": 1}
    assert splits.train.texts[-1] == LONG[:50] and splits.test.texts[-1] == LONG[:50]
    assert as_rows(splits.train)[:-1] == TRAIN  # shorter texts are kept whole
    [warning] = [r.getMessage() for r in caplog.records if "max_chars" in r.getMessage()]
    assert warning.startswith("cut 2 texts longer than data.max_chars=50 characters to that length")
    assert f"{paths['train']}: 1" in warning and f"{paths['test']}: 1" in warning


@pytest.mark.parametrize(("ext", "row"), [(".tsv", "data row 4"), (".jsonl", "line 5")])
def test_a_long_text_is_refused_naming_file_and_row_when_asked(tmp_path, ext, row):
    paths = write_set(tmp_path, ext, dev=DEV + [(LONG, "sports")])
    if ext == ".jsonl":  # a blank line: JSON Lines rows are named by their line in the file
        Path(paths["dev"]).write_text("\n" + Path(paths["dev"]).read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(DataError) as err:
        load(paths, max_chars=100, on_long_text="error")
    assert str(err.value) == (
        f"{paths['dev']}: {row} has a text of 180 characters, more than data.max_chars=100; "
        "shorten it, raise data.max_chars, or set data.on_long_text=truncate to cut such texts"
    )


def test_a_headerless_file_lists_a_few_of_its_columns(tmp_path):
    """The first line of a file without a header is data: its cells are shown shortened, then counted."""
    path = tmp_path / "train.csv"
    path.write_text(",".join(["un texte sans en-tête"] * 2000 + ["x" * 500]) + ",sports\nle match,sports\n",
                    encoding="utf-8")
    with pytest.raises(DataError) as err:
        load({"train": str(path), "test": str(path)})
    message = str(err.value)
    assert message.startswith(f"{path}: missing column(s) ['text', 'label']; columns found: ['un texte sans en-tête', ")
    assert message.endswith(", ... (2,002 columns)]") and len(message) < 500


def test_a_first_line_too_long_for_a_header_is_refused(tmp_path):
    path = write_table(tmp_path / "train.tsv", [("x", "sports")], header=("t" * 200_000, "label"))
    with pytest.raises(DataError, match=r"train\.tsv: cannot read the first line as a header of column names"):
        load({"train": str(path), "test": str(path)})


# --- SIB-200 ---------------------------------------------------------------


def sib200(root, code="fra_Latn", cache_dir="unused-cache", **options):
    defaults = yaml_defaults("sib200", "base_url", "commit", "timeout_s", *LIMIT_KEYS)
    return SIB200(root=root, code=code, cache_dir=cache_dir, **{**defaults, **options})


def test_sib200_codes_come_from_the_shipped_sums():
    codes = sib200_codes()
    assert len(codes) == 205
    assert codes == sorted(codes)
    assert {"eng_Latn", "fra_Latn", "zho_Hans", "arb_Arab"} <= set(codes)


def test_sib200_loads_fra_latn_from_kmexp_data_dir():
    root = os.environ.get("KMEXP_DATA_DIR")
    if not root:
        pytest.skip("KMEXP_DATA_DIR is not set: no local SIB-200 copy")

    splits = sib200(root).load()

    assert (len(splits.train.texts), len(splits.dev.texts), len(splits.test.texts)) == (701, 99, 204)
    assert splits.labels == ["entertainment", "geography", "health", "politics",
                             "science/technology", "sports", "travel"]
    expected = Path(root, "fra_Latn", "labels.txt").read_text(encoding="utf-8").split()
    assert sorted(expected) == splits.labels
    assert splits.info["dropped_empty"] == {"train": 0, "dev": 0, "test": 0}
    assert splits.info["truncated"] == {"train": 0, "dev": 0, "test": 0}
    assert len(splits.info["files"]) == 3


def test_sib200_texts_go_through_the_same_length_limit(sib200_dir):
    cut = sib200(str(sib200_dir), max_chars=40).load()
    assert max(len(text) for text in cut.train.texts + cut.dev.texts + cut.test.texts) == 40
    assert min(cut.info["truncated"].values()) > 0
    with pytest.raises(DataError, match=r"fra_Latn/train\.tsv: data row 1 has a text of \d+ characters, more than data"):
        sib200(str(sib200_dir), max_chars=40, on_long_text="error").load()


def test_sib200_missing_language_folder_names_kmexp_data_dir(tmp_path):
    with pytest.raises(DataError) as err:
        sib200(str(tmp_path)).load()
    message = str(err.value)
    assert str(tmp_path / "fra_Latn") in message and "KMEXP_DATA_DIR" in message


def test_sib200_unknown_code_suggests_the_closest():
    with pytest.raises(ConfigError) as err:
        sib200(None, code="fra_Latm")
    message = str(err.value)
    assert message.startswith("language.code=fra_Latm is not allowed: it must be a SIB-200 language code")
    assert "fra_Latn" in message
