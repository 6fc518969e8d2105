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
