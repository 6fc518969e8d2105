"""TensorFlow's C++ start-up log lines, kept off the console.

While TensorFlow loads and first lists its devices, its C++ logger (absl) writes
5 to 7 lines straight to file descriptor 2: "All log messages before
absl::InitializeLog() is called are written to STDERR", oneDNN being on, no
CUDA driver found, ``cuInit`` failing on a machine without a GPU. They say
nothing about the run, and ``TF_CPP_MIN_LOG_LEVEL`` cannot silence them: the
lines written before ``absl::InitializeLog()`` ignore it (TensorFlow 2.21).

``start_tensorflow`` imports TensorFlow and lists its devices with fd 2 pointed
at a pipe; a thread copies every line to the real stderr except those known
start-up lines (``is_start_up_line``), so a real error still shows. Set
``KMEXP_TF_LOGS=1`` to leave stderr as TensorFlow writes it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

SHOW_TF_LOGS = "KMEXP_TF_LOGS"
PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# absl's format: severity, MMDD hh:mm:ss.micros, thread id, file:line] message. Before InitializeLog the
# date and time are zeros and seconds since 1970 (I0000 00:00:1795859458.704675).
ABSL_LINE = re.compile(r"([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] (.*)")
# Errors that only say this machine has no CUDA driver; any other error (or fatal) line is shown.
KNOWN_ERRORS = ("failed call to cuInit",)
# The second line of a two-line INFO message (cpu_feature_guard.cc, shown with TF_CPP_MIN_LOG_LEVEL=0).
KNOWN_CONTINUATIONS = ("To enable the following instructions: ",)
# Written into the pipe when the start is over: the copying thread has passed on everything before it.
END_MARK = b"\0kmexp-tf-logs-end\0"
# How long the end of the start waits for the copying thread; it never blocks a run for longer.
DRAIN_TIMEOUT_S = 5.0


def start_tensorflow() -> None:
    """Import TensorFlow and list its devices, its C++ start-up log lines left out of stderr.

    Listing physical devices does not start the runtime, so thread counts and
    visible devices can still be set afterwards (``kmexp.devices``). Once
    TensorFlow is loaded (a later job of an in-process sweep), this does nothing.
    """
    if "tensorflow" in sys.modules:
        return
    with start_up_lines_dropped(os.environ.get(SHOW_TF_LOGS) == "1"):
        import tensorflow as tf

        tf.config.list_physical_devices()


def is_start_up_line(line: str) -> bool:
    """Whether ``line`` is one of the C++ log lines TensorFlow writes while it starts, not an error."""
    if line == PREAMBLE or line.startswith(KNOWN_CONTINUATIONS):
        return True
    match = ABSL_LINE.fullmatch(line)
    if match is None:
        return False
    severity, message = match.groups()
    return severity in ("I", "W") or (severity == "E" and message.startswith(KNOWN_ERRORS))


@contextlib.contextmanager
def start_up_lines_dropped(show: bool) -> Iterator[None]:
    """Point fd 2 at a pipe while the block runs; a thread copies what is not a start-up line to the real stderr.

    A pipe with a thread rather than a file read afterwards: a line is shown as
    soon as it is written (a crash while TensorFlow loads still shows its error),
    and a process started meanwhile (W&B's service, started in the background)
    may keep the pipe as its stderr: the thread goes on copying its lines.
    """
    if show:
        yield
        return
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    real_stderr = os.dup(2)
    passed = threading.Event()
    threading.Thread(
        target=_copy_lines, args=(read_end, real_stderr, passed), name="kmexp-tf-logs", daemon=True
    ).start()
    os.dup2(write_end, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        with contextlib.suppress(OSError):  # the copying thread stopped: the pipe has no reader
            os.write(write_end, END_MARK)
        os.dup2(real_stderr, 2)
        os.close(write_end)
        passed.wait(DRAIN_TIMEOUT_S)  # what the block wrote is on stderr before the run goes on


def _copy_lines(read_end: int, real_stderr: int, passed: threading.Event) -> None:
    """Copy the pipe to ``real_stderr`` line by line, start-up lines left out, until every writer closed it."""
    pending = b""
    try:
        while chunk := os.read(read_end, 65536):
            pending += chunk
            if END_MARK in pending:
                before, _, pending = pending.partition(END_MARK)
                _write_kept(real_stderr, before, final=True)
                passed.set()
            lines, _, pending = pending.rpartition(b"\n")
            if lines:
                _write_kept(real_stderr, lines + b"\n", final=False)
        _write_kept(real_stderr, pending, final=True)
    except OSError:
        pass  # the real stderr is gone: nothing left to show anything on
    finally:
        passed.set()
        os.close(read_end)
        os.close(real_stderr)


def _write_kept(fd: int, data: bytes, final: bool) -> None:
    """Write the lines of ``data`` that are not start-up lines; ``final``: a last line without a line break too."""
    lines = data.splitlines(keepends=True)
    text = b"".join(line for line in lines if not is_start_up_line(line.decode("utf-8", "replace").rstrip("\r\n")))
    if final and text and not text.endswith(b"\n"):
        text += b"\n"
    while text:
        text = text[os.write(fd, text):]
