"""Where the app keeps its files: the user's folders, or all under BULK_MAILER_HOME."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import platformdirs

APP = "bulk-mailer"
HOME_ENV = "BULK_MAILER_HOME"


def _home() -> Path | None:
    value = os.environ.get(HOME_ENV, "").strip()
    return Path(value).expanduser() if value else None


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def config_dir() -> Path:
    """Settings (no secrets in plain text)."""
    home = _home()
    return _ensure(home / "config" if home else platformdirs.user_config_path(APP))


def data_dir() -> Path:
    """Campaign data: results, journal, templates."""
    home = _home()
    return _ensure(home / "data" if home else platformdirs.user_data_path(APP))


def log_dir() -> Path:
    """Log files."""
    home = _home()
    return _ensure(home / "logs" if home else platformdirs.user_log_path(APP))


def atomic_write(target: Path, data: bytes) -> None:
    """Replace target with data all at once (temporary file, fsync, os.replace; mode 0600).

    A crash mid-write leaves the previous version in place, never half a file.
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
