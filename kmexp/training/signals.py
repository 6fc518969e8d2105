"""Process signals: SIGTERM stops a run the way Ctrl-C does, so the run is recorded as interrupted."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop the way Ctrl-C does, so the run is recorded as interrupted."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM (``kill``, a cluster's preemption) into ``Terminated`` while the block runs.

    Python's default for SIGTERM ends the process at once, skipping every ``finally``:
    metrics.json would still say "running". Raising an exception instead unwinds the
    run like Ctrl-C. Signal handlers can only be set from the main thread; elsewhere
    (a notebook's worker thread) the block runs unchanged. The previous handler is
    restored on the way out, so a second SIGTERM during the clean-up ends the process.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interruption(stop: KeyboardInterrupt) -> str:
    """What stopped a run, in words: ``interrupted by SIGINT`` (Ctrl-C) or by the signal ``Terminated`` carries."""
    return f"interrupted by {signal.Signals(interrupting_signal(stop)).name}"


def interrupting_signal(stop: KeyboardInterrupt) -> int:
    """The signal behind a KeyboardInterrupt: SIGINT, or the one ``Terminated`` carries."""
    return getattr(stop, "signum", signal.SIGINT)


def _raise_terminated(signum, frame):
    raise Terminated(signum)
