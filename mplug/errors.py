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
