"""Errors that kmexp reports to the user as one clear line.

Every message names the key or file, the value received and what is allowed,
so the entry point can print it without a traceback.
"""


class KmexpError(Exception):
    """Base class for problems the user can fix: bad config, bad data, missing hardware."""


class ConfigError(KmexpError):
    """A config value is invalid. The message names the key, the value and what is allowed."""


class DataError(KmexpError):
    """A data file is missing, unreadable or inconsistent. The message names the file."""


class DeviceError(KmexpError):
    """The requested hardware is not available on this machine."""


class StorageError(KmexpError):
    """A file or folder kmexp must write cannot be written: a full disk, a read-only folder, a run folder in use.

    The message names the path.
    """


# The longest error line printed, its "kmexp: error: " included: a longer message is cut in the middle, since
# a message can quote a value as long as a line of a data file. The message itself leaves room for the prefix.
MAX_LINE = 500
MAX_MESSAGE = MAX_LINE - len("kmexp-predict: error: ")
# A value quoted in a message (a label, a column name) is shown up to this many characters.
MAX_SHOWN = 60
_ELLIPSIS = " ... "


def capped(line: str, limit: int = MAX_MESSAGE) -> str:
    """``line`` if it fits in ``limit`` characters, else its start and end around a count of what was left out.

    The start names the key or file, the end says what is allowed, so both are kept.
    """
    if len(line) <= limit:
        return line
    # Sized with the whole line's length, so the real count (never longer) fits in the same space.
    kept = max(limit - len(_left_out(len(line))), 0)
    head = kept * 2 // 3
    return f"{line[:head]}{_left_out(len(line) - kept)}{line[len(line) - (kept - head):]}"


def _left_out(count: int) -> str:
    return f"{_ELLIPSIS}({count:,} characters left out){_ELLIPSIS}"


def shown(value: str, limit: int = MAX_SHOWN) -> str:
    """A value quoted in a message (``repr``), its middle elided when it is longer than ``limit`` characters."""
    if len(value) <= limit:
        return repr(value)
    half = limit // 2
    return f"{value[:half] + '...' + value[-half:]!r} ({len(value):,} characters)"
