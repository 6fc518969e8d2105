"""Keep secrets out of everything a run writes or prints.

A run's outputs are made to be shared: Hydra's saved configs, ``metrics.json``,
``kmexp.log``, W&B runs, sweep reports. A secret can still get into them:

- through an interpolation, ``+note=${oc.env:MY_API_TOKEN}``: Hydra saves the
  interpolation unresolved, but the plain (resolved) config that W&B logs holds
  the value;
- pasted on the command line, ``+logger.note=sk-...``: the value is then an
  override, which Hydra saves (``.hydra/*.yaml``, ``multirun.yaml``), kmexp
  records (``metrics.json``), tags its W&B run with, and prints in progress lines.

A secret cannot be told by its look, so kmexp redacts by *value*: the values of
the environment variables whose names say they are secret (the name contains
KEY, TOKEN or SECRET, in any case: ``WANDB_API_KEY``, ``HF_TOKEN``) are replaced
by ``<redacted:NAME>`` wherever they appear inside a string. Values shorter than
``MIN_SECRET_LENGTH`` are left alone: redacting them would garble ordinary words
and numbers (``KEYBOARD_LAYOUT=us``), and they are no real secret anyway.

The variables are read when a ``Secrets`` is made (``Secrets.from_environ()``),
so each call site sees the environment of the moment; nothing is cached.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from kmexp.runs import HYDRA_FILES, atomic_write

SECRET_NAME = re.compile("KEY|TOKEN|SECRET", re.IGNORECASE)
MIN_SECRET_LENGTH = 6

@dataclass(frozen=True)
class Secrets:
    """Secret values by variable name, longest value first (a secret that holds another is redacted whole)."""

    named: tuple[tuple[str, str], ...]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Secrets:
        environ = os.environ if environ is None else environ
        named = [
            (name, value)
            for name, value in sorted(environ.items())
            if SECRET_NAME.search(name) and len(value) >= MIN_SECRET_LENGTH
        ]
        return cls(tuple(sorted(named, key=lambda item: -len(item[1]))))

    @property
    def empty(self) -> bool:
        return len(self.named) == 0

    def text(self, text: str) -> str:
        """``text`` with every secret value in it replaced by ``<redacted:NAME>``."""
        for name, value in self.named:
            text = text.replace(value, f"<redacted:{name}>")
        return text

    def data(self, value: Any) -> Any:
        """A copy of nested dicts, lists and tuples with every string (keys too) redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.data(v) for v in value)
        return value

    def yaml_file(self, path: Path) -> None:
        """Rewrite a YAML file that Hydra saved if, and only if, it holds a secret.

        Read and written with OmegaConf, as Hydra writes them, so interpolations
        (kept unresolved), ``???`` and value types come back as they were.
        """
        path = Path(path)
        if self.empty or not path.is_file():
            return
        saved = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        redacted = self.data(saved)
        if redacted != saved:
            atomic_write(path, lambda tmp: OmegaConf.save(OmegaConf.create(redacted), tmp))

    def hydra_files(self, output_dir: Path) -> None:
        """Redact a job's ``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml``."""
        for name in HYDRA_FILES:
            self.yaml_file(Path(output_dir) / name)

    def record(self, record: logging.LogRecord) -> logging.LogRecord:
        """A log record with its message (and traceback, if any) redacted, formatted now."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: leave it to logging's own error report
            return record
        redacted = self.text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text, so the traceback they print is this redacted one.
            record.exc_text = self.text(logging.Formatter().formatException(record.exc_info))
        return record


def redact_log_records(secrets: Secrets) -> None:
    """Redact the secrets in every log record made from now on in this process.

    Hydra replaces the logging handlers before every job and again between the
    jobs of a sweep (its launcher then logs each job's overrides), so a filter
    added to today's handlers would miss later lines; the record factory is the
    one place every record passes through, whatever handlers print it.
    """
    make_record = logging.getLogRecordFactory()
    if secrets.empty or getattr(make_record, "redacts_secrets", False):
        return

    def make_redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return secrets.record(make_record(*args, **kwargs))

    make_redacted_record.redacts_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_redacted_record)


@contextlib.contextmanager
def redacted_argv(secrets: Secrets) -> Iterator[None]:
    """Redact ``sys.argv`` for a block: W&B records the command line in each run's metadata."""
    saved = sys.argv
    sys.argv = secrets.data(list(saved))
    try:
        yield
    finally:
        sys.argv = saved
