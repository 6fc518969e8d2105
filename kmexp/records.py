"""What a run writes about itself: provenance, and files written whole or not at all."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

METRICS_FILE = "metrics.json"  # every run's record; sweeps, reports and kmexp-predict read it back


def read_json(path: Path) -> dict | list | None:
    """A JSON file's content, or None if it is missing or unreadable (a run may have died before writing it)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path, payload: dict) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, ensure_ascii=False, default=str)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model, path: Path) -> None:
    """Save a Keras model through a temporary file and a rename, so an interrupted save leaves no half file."""
    path = Path(path)
    # Keras picks the format from the suffix, so the temporary name keeps ".keras".
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def git_commit(folder: Path | None = None, timeout_s: float = 5.0) -> dict | None:
    """The git commit of the checkout that holds ``folder`` (kmexp's source by default), and whether it has changes.

    ``{"commit": sha, "dirty": bool}``, or None when the code is not in a git checkout (an
    installed wheel), git is missing or slow, or the folder is git-ignored there (a virtual
    environment inside some project). Provenance only: it never fails a run.
    """
    folder = Path(__file__).resolve().parent if folder is None else Path(folder)
    try:
        commit = _git(folder, timeout_s, "rev-parse", "HEAD")
        ignored = subprocess.run(
            ["git", "-C", str(folder), "check-ignore", "-q", "."], capture_output=True, timeout=timeout_s
        ).returncode == 0
        if commit is None or ignored:
            return None
        status = _git(folder, timeout_s, "status", "--porcelain")
    except (OSError, subprocess.SubprocessError):  # no git executable, or it timed out
        return None
    return {"commit": commit, "dirty": None if status is None else status != ""}


def _git(folder: Path, timeout_s: float, *args: str) -> str | None:
    """Output of ``git -C folder ARGS``, or None when git refuses (not a checkout)."""
    done = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=timeout_s
    )
    return done.stdout.strip() if done.returncode == 0 else None


def versions() -> dict:
    """Versions of Python and the packages that decide a run's numbers."""
    found = {"python": platform.python_version()}
    for package in ("kmexp", "keras", "tensorflow", "tensorflow-text", "hydra-core", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def where() -> dict:
    """The process and machine that ran the job (useful once jobs run in parallel or on a cluster)."""
    return {"pid": os.getpid(), "host": socket.gethostname()}
