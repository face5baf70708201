"""User-facing errors: the CLI prints their message (no traceback) and exits non-zero."""


class MplugError(Exception):
    """An error the user can act on. The message names the file, line or key, and what to do."""

    exit_code = 2


class ConfigError(MplugError):
    """A config file or value is invalid (unknown key, wrong type, impossible value)."""


class DataError(MplugError):
    """A dataset file is missing or malformed."""


class CheckpointError(MplugError):
    """A checkpoint cannot be loaded safely or does not fit the model."""


class DownloadError(MplugError):
    """A download failed after its retries, or its checksum does not match."""


class OutputError(MplugError):
    """An output cannot be written: the disk is full, read-only, or the folder not writable."""

    exit_code = 74  # EX_IOERR: the input was fine, the machine's storage was not


class RunLockedError(MplugError):
    """Another process holds the lock of a training run folder (`--out`)."""
