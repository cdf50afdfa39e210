"""Where the app keeps its files: the user's folders, or all under BULK_MAILER_HOME.

The app's folders hold passwords, tokens and recipient lists, so they must be the user's
own: a folder owned by another user, or one that others may write into (where they could
plant a link named journal.sqlite3 pointing at another file), is refused with the fix.
The app's files are created and opened without following symbolic links (O_NOFOLLOW) and
their mode is set on the open file (fchmod), never through a path that could be a link.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

import platformdirs

from backend.errors import MailerError

APP = "bulk-mailer"
HOME_ENV = "BULK_MAILER_HOME"
PRIVATE_MODE = 0o600
FOLDER_MODE = 0o700
_POSIX = os.name == "posix"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# What SQLite keeps next to a database: checked together with it.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


class AppFileError(MailerError):
    """An app folder or file is not safe to use (another user's, writable by others, a link)."""

    default_category = "file_error"

    def __init__(self, message: str, *, path: Path | str, fix: tuple[str, ...] = ()) -> None:
        super().__init__(message, fix=fix)
        self.path = str(path)


def _home() -> Path | None:
    value = os.environ.get(HOME_ENV, "").strip()
    return Path(value).expanduser() if value else None


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    check_folder(path)
    return path


def check_folder(path: Path | str) -> None:
    """Raise AppFileError unless the folder belongs to this user and no one else may write in it.

    POSIX only (Windows folders under the user's profile carry the user's ACLs).
    """
    if not _POSIX:
        return
    try:
        st = os.stat(path)
    except OSError as exc:
        raise AppFileError(f"the app's folder {path} cannot be used ({exc.strerror or exc})", path=path) from None
    if not stat.S_ISDIR(st.st_mode):
        raise AppFileError(f"the app's folder {path} is not a folder", path=path,
                           fix=(f"Move the file {path} aside, or set {HOME_ENV} to a folder of your own.",))
    me = os.geteuid()
    if st.st_uid != me:
        raise AppFileError(
            f"the app's folder {path} belongs to another user (uid {st.st_uid}, this program runs as uid {me}); "
            "Bulk Mailer keeps passwords and recipient lists there and uses only a folder of its own user",
            path=path,
            fix=(f"If the folder is yours, take it back: sudo chown -R {me} '{path}' && chmod 700 '{path}'.",
                 f"Or point {HOME_ENV} at a folder of your own."))
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise AppFileError(
            f"the app's folder {path} can be changed by other users (mode {mode:04o}); Bulk Mailer keeps "
            "passwords and recipient lists there and uses it only when no one else may write in it",
            path=path, fix=(f"Make it yours alone: chmod 700 '{path}'.",))


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


# -- the app's files ----------------------------------------------------------------------


def _link_error(path: Path | str) -> AppFileError:
    return AppFileError(
        f"{path} is a symbolic link; Bulk Mailer does not follow links in its own folders (one could make it "
        "write into another file)", path=path,
        fix=(f"Remove the link (rm '{path}'); the app creates the file again.",))


def _not_ours(st: os.stat_result, path: Path | str) -> None:
    """Raise AppFileError unless st is a regular file of this user with one name."""
    why = None
    if not stat.S_ISREG(st.st_mode):
        why = "is not a regular file"
    elif _POSIX and st.st_uid != os.geteuid():
        why = f"belongs to another user (uid {st.st_uid})"
    elif _POSIX and st.st_nlink > 1:
        why = "has other names (hard links), so writing it would change another file"
    if why:
        raise AppFileError(f"{path} {why}; Bulk Mailer writes only files of its own", path=path,
                           fix=(f"Move '{path}' aside; the app creates the file again.",))


def _check_open(fd: int, path: Path | str) -> None:
    st = os.fstat(fd)
    _not_ours(st, path)
    if _POSIX and stat.S_IMODE(st.st_mode) != PRIVATE_MODE:
        os.fchmod(fd, PRIVATE_MODE)


def open_private(path: Path | str, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """os.open for one of the app's own files: never through a symbolic link, mode 0600 (set
    on the open file), a regular file of this user with one name; else AppFileError.
    Other OSErrors (missing, no space) are raised as they are."""
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC, PRIVATE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.EMLINK and os.path.islink(path)):
            raise _link_error(path) from None
        raise
    try:
        _check_open(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_no_symlink(path: Path | str, companions: tuple[str, ...] = ()) -> None:
    """Raise AppFileError if path (or path+suffix for each companion) is a symbolic link or,
    when it exists, not a regular file of this user; nothing is created."""
    for name in (str(path), *(f"{path}{suffix}" for suffix in companions)):
        try:
            st = os.lstat(name)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise _link_error(name)
        _not_ours(st, name)


def safe_file(path: Path | str, companions: tuple[str, ...] = SQLITE_COMPANIONS) -> Path:
    """Create (or check) one of the app's files for a library that opens it by name (SQLite):
    created without following links, mode 0600 set on the open file, and neither it nor its
    companions (SQLite's -wal, -shm, -journal) a link. Returns the path."""
    check_no_symlink(path, companions)
    os.close(open_private(path, os.O_RDWR | os.O_CREAT))
    return Path(path)


def read_private(path: Path | str) -> bytes:
    """The bytes of one of the app's files, read without following a link (AppFileError)."""
    fd = open_private(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def atomic_write(target: Path, data: bytes, mode: int = PRIVATE_MODE) -> None:
    """Replace target with data all at once (temporary file, fsync, os.replace; mode 0600, or
    the mode given for a file others must read, such as a timer unit).

    A crash mid-write leaves the previous version in place, never half a file. The temporary
    file is new (O_EXCL), and os.replace puts it in place of a link rather than writing
    through it.
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if _POSIX:
                os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
