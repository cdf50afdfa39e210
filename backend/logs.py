"""The app's log: a rotating bulk-mailer.log in the log folder, mode 0600, capped records.

Every record, traceback included, is cut to MAX_RECORD_BYTES (its start and its end kept,
with a note saying how much was cut), so one huge message cannot grow the log past its
rotation size. The file is created and reopened at each rotation without following links.
"""

from __future__ import annotations

import logging
import os
import sys
from logging.handlers import RotatingFileHandler
from typing import TextIO

from backend import paths

LOG_FILE = "bulk-mailer.log"
LOG_BYTES, LOG_BACKUPS = 5_000_000, 5
MAX_RECORD_BYTES = 64 * 1024


def cap_text(text: str, limit: int = MAX_RECORD_BYTES) -> str:
    """text if its UTF-8 form fits in limit bytes; else its start and end with a note between
    saying how many bytes were cut (the end is where a traceback names the error)."""
    if len(text) * 4 <= limit:  # fits whatever the characters
        return text
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    room = limit - 200  # for the note
    head, tail = room * 3 // 4, room // 4
    cut = len(data) - head - tail
    note = f"\n[... {cut} bytes cut here: a log record keeps at most {limit // 1024} KB ...]\n"
    return (data[:head].decode("utf-8", "ignore") + note + data[len(data) - tail:].decode("utf-8", "ignore"))


class CappedFormatter(logging.Formatter):
    """A Formatter whose every formatted record (message, traceback, stack) is cap_text-ed."""

    def __init__(self, fmt: str | None = None, *, limit: int = MAX_RECORD_BYTES) -> None:
        super().__init__(fmt)
        self.limit = limit

    def formatException(self, ei) -> str:  # noqa: N802 (the stdlib's name)
        # Cut here too: the traceback text is cached on the record for every other handler.
        return cap_text(super().formatException(ei), self.limit)

    def format(self, record: logging.LogRecord) -> str:
        return cap_text(super().format(record), self.limit)


class PrivateRotatingFileHandler(RotatingFileHandler):
    """RotatingFileHandler whose file is opened with O_NOFOLLOW and mode 0600 (paths.open_private)."""

    def _open(self):  # type: ignore[override]
        fd = paths.open_private(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


def log_path():
    return paths.log_dir() / LOG_FILE


def setup_logging(level: str = "INFO", *, verbose_to: TextIO | None = None) -> None:
    """Log to a rotating bulk-mailer.log in the log folder; --verbose also to the terminal."""
    root = logging.getLogger()
    try:
        handler: logging.Handler = PrivateRotatingFileHandler(
            log_path(), maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
    except (OSError, paths.AppFileError) as exc:
        home = os.environ.get(paths.HOME_ENV)
        where = f"{paths.HOME_ENV}={home}" if home else "the log folder"
        if isinstance(exc, paths.AppFileError):
            reason = " ".join((exc.message + ".", *exc.extra_fix))
        else:
            reason = f"{exc.strerror or exc}."
        print(f"bulk-mailer: warning: cannot write the log file ({where}): {reason} "
              "Logging to the terminal only.", file=sys.stderr)
        handler = logging.StreamHandler(sys.stderr)
        level = "WARNING" if level in ("DEBUG", "INFO") and verbose_to is None else level
    handler.setFormatter(CappedFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if verbose_to is not None:
        terminal = logging.StreamHandler(verbose_to)
        terminal.setFormatter(CappedFormatter("debug: %(name)s: %(message)s"))
        root.addHandler(terminal)
        level = "DEBUG"
    root.setLevel(level)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd (the local inbox)
