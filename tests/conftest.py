"""Shared test helpers: small multilingual data the tests write themselves, and a CLI runner."""

from __future__ import annotations

import contextlib
import csv
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

@pytest.fixture(scope="session", autouse=True)
def kmexp_configs():
    """Schemas and resolvers exist before any test composes a config, as the CLI makes sure they do."""
    from kmexp.config import register_configs

    register_configs()


# Topic words per language: a sentence mixes filler with words of its topic, so the
# labels are learnable from a few dozen rows but not by one fixed token.
TOPICS = {
    "sports": {
        "en": ["football", "match", "goal", "team", "coach"],
        "fr": ["équipe", "but", "entraîneur", "stade", "victoire"],
        "ru": ["футбол", "матч", "команда", "тренер", "гол"],
        "zh": ["足球", "比赛", "球队", "教练", "进球"],
        "ar": ["كرة", "مباراة", "فريق", "مدرب", "هدف"],
    },
    "food": {
        "en": ["bread", "cheese", "soup", "kitchen", "recipe"],
        "fr": ["fromage", "pain", "soupe", "cuisine", "recette"],
        "ru": ["хлеб", "сыр", "суп", "кухня", "рецепт"],
        "zh": ["面包", "奶酪", "汤", "厨房", "食谱"],
        "ar": ["خبز", "جبن", "حساء", "مطبخ", "وصفة"],
    },
    "weather": {
        "en": ["rain", "storm", "sunny", "cloud", "wind"],
        "fr": ["pluie", "orage", "soleil", "nuage", "vent"],
        "ru": ["дождь", "гроза", "солнце", "облако", "ветер"],
        "zh": ["下雨", "暴风", "晴天", "云", "风"],
        "ar": ["مطر", "عاصفة", "مشمس", "غيوم", "رياح"],
    },
}
FILLER = {
    "en": ["the", "today", "very", "and", "we"],
    "fr": ["le", "aujourd'hui", "très", "et", "nous"],
    "ru": ["сегодня", "очень", "и", "мы", "это"],
    "zh": ["今天", "我们", "非常", "和", "的"],
    "ar": ["اليوم", "نحن", "جدا", "و", "في"],
}


def classic_encoders() -> list[str]:
    """The encoder options kmexp trains from scratch; the pretrained ones (a KerasHub preset each, downloaded
    on first use) are tested on a preset made by tests/test_pretrained.py."""
    from kmexp.paths import config_dir, group_options

    return [name for name in group_options("encoder")
            if "preset:" not in (config_dir() / "encoder" / f"{name}.yaml").read_text(encoding="utf-8")]


def make_rows(n_per_label: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for label, by_language in TOPICS.items():
        for i in range(n_per_label):
            language = sorted(by_language)[i % len(by_language)]
            words = rng.sample(by_language[language], 3) + rng.sample(FILLER[language], 2)
            rng.shuffle(words)
            joiner = "" if language == "zh" else " "
            rows.append({"text": joiner.join(words), "label": label})
    rng.shuffle(rows)
    return rows


def write_tsv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"], delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_small_data(folder: Path) -> dict[str, Path]:
    """train/dev/test TSV files in five languages and scripts, three topics (90/30/30 rows), in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "train": write_tsv(folder / "train.tsv", make_rows(30, seed=1)),
        "dev": write_tsv(folder / "dev.tsv", make_rows(10, seed=2)),
        "test": write_tsv(folder / "test.tsv", make_rows(10, seed=3)),
    }


@pytest.fixture
def small_data(tmp_path) -> dict[str, Path]:
    """The small data set, written for one test."""
    return write_small_data(tmp_path / "data")


def shared_data_options() -> dict:
    """The keys every data option shares, as conf/data/_common.yaml sets them (max_chars, on_long_text):
    for tests that build a data loader in Python rather than from a composed config."""
    from omegaconf import OmegaConf

    from kmexp.paths import config_dir

    return OmegaConf.to_container(OmegaConf.load(config_dir() / "data" / "_common.yaml"))


def files_overrides(data: dict[str, Path]) -> list[str]:
    return ["data=files", f"data.train={data['train']}", f"data.dev={data['dev']}", f"data.test={data['test']}"]


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m kmexp ARGS`` in a fresh process, as a user would."""
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "kmexp", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def only_run_dir(root: Path) -> Path:
    """The one run folder under ``root`` (a run's hydra.run.dir)."""
    found = [p.parent for p in root.rglob("metrics.json")]
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="session")
def sib200_dir() -> Path:
    """The local SIB-200 copy named by KMEXP_DATA_DIR (CI always sets it)."""
    root = os.environ.get("KMEXP_DATA_DIR")
    if not root:
        pytest.skip("KMEXP_DATA_DIR is not set")
    return Path(root)


@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    """``folder`` as a real file system of ``size`` (tmpfs: ``"1m"``), that a run can fill up; unmounted after.

    Skips the test where this process may not mount (it needs root and CAP_SYS_ADMIN).
    """
    folder.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                           text=True)
    if mount.returncode != 0:
        pytest.skip(f"no tmpfs mount here (needs root and CAP_SYS_ADMIN): {mount.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
