"""Where a run's numbers come from: the code's git commit, the package versions, the process and host."""

from __future__ import annotations

import copy
import functools
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path


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


def code_commit() -> dict | None:
    """``git_commit()`` of kmexp's own source, as this process found it first.

    The code a process runs is the code it imported at its start, so the jobs of a sweep in one
    process record the same commit, and git runs once per process rather than three times a job.
    """
    return copy.copy(_first_code_commit())  # each record its own dict (None stays None)


@functools.cache
def _first_code_commit() -> dict | None:
    return git_commit()


def _git(folder: Path, timeout_s: float, *args: str) -> str | None:
    """Output of ``git -C folder ARGS``, or None when git refuses (not a checkout)."""
    done = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=timeout_s
    )
    return done.stdout.strip() if done.returncode == 0 else None


def versions() -> dict:
    """Versions of Python and the packages that decide a run's numbers (read once per process: the
    modules it runs are those it imported, whatever is installed later)."""
    return copy.copy(_versions())


@functools.cache
def _versions() -> dict:
    found = {"python": platform.python_version()}
    # datasets: it reads data=hf, and its version decides the fingerprints metrics.json records.
    for package in ("kmexp", "keras", "tensorflow", "tensorflow-text", "hydra-core", "numpy", "datasets"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def where() -> dict:
    """The process and machine that ran the job (useful once jobs run in parallel or on a cluster)."""
    return {"pid": os.getpid(), "host": socket.gethostname()}
