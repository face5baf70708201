"""Structured logging: human-readable lines on stderr, JSON lines to a file when asked."""
from __future__ import annotations

import logging
import os
import sys

_CONFIGURED = False


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at emit time (like logging's last-resort handler): a
    handler bound to the stream of its first use wrote into closed streams after
    `contextlib.redirect_stderr` or pytest's capture ended ("--- Logging error ---")."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: D401 - logging API
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__/setStream assign it; ignored
        pass


def get_logger(name: str = "mplug") -> logging.Logger:
    global _CONFIGURED
    if not _CONFIGURED:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                               datefmt="%H:%M:%S"))
        root = logging.getLogger("mplug")
        root.addHandler(handler)
        root.setLevel(os.environ.get("MPLUG_LOG_LEVEL", "INFO"))
        root.propagate = False
        _CONFIGURED = True
    return logging.getLogger(name)
