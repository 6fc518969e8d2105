"""Process signals: SIGTERM stops a run the way Ctrl-C does, so the run is recorded as interrupted.

During training both stop at the next batch's end (``stop_at_batch_ends``) rather than
wherever Python happens to be: an exception raised inside TensorFlow's or Keras'
own Python code can leave the process hung or crashing on its way out.
"""

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


class PendingStop:
    """The stop signal that arrived during training, if any; ``raise_if_pending`` stops there."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def raise_if_pending(self) -> None:
        if self.signum is not None:
            raise _stop(self.signum)


@contextlib.contextmanager
def stop_at_batch_ends() -> Iterator[PendingStop]:
    """While the block (training) runs, SIGINT and SIGTERM mark a stop that the training loop raises.

    The loop calls ``raise_if_pending`` after each batch (``kmexp.training.callbacks.StopOnSignal``),
    so the KeyboardInterrupt (Ctrl-C) or ``Terminated`` (SIGTERM) comes from a known place. A second
    signal raises at once, wherever the process is; a stop still pending when the block ends is raised
    there. Signal handlers can only be set from the main thread; elsewhere the block runs unchanged.
    """
    pending = PendingStop()
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return

    def mark(signum, frame):
        if pending.signum is not None:  # asked twice: stop now
            raise _stop(signum)
        pending.signum = signum

    previous = {signum: signal.signal(signum, mark) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield pending
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    pending.raise_if_pending()


def interruption(stop: KeyboardInterrupt) -> str:
    """What stopped a run, in words: ``interrupted by SIGINT`` (Ctrl-C) or by the signal ``Terminated`` carries."""
    return f"interrupted by {signal.Signals(interrupting_signal(stop)).name}"


def interrupting_signal(stop: KeyboardInterrupt) -> int:
    """The signal behind a KeyboardInterrupt: SIGINT, or the one ``Terminated`` carries."""
    return getattr(stop, "signum", signal.SIGINT)


def _raise_terminated(signum, frame):
    raise Terminated(signum)


def _stop(signum: int) -> KeyboardInterrupt:
    """What a signal raises: KeyboardInterrupt for Ctrl-C (SIGINT), ``Terminated`` for the others."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)
