"""What a run writes about itself: provenance, and files written whole or not at all."""

from __future__ import annotations

import json
import os
import platform
import socket
import tempfile
from importlib import metadata
from pathlib import Path


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
