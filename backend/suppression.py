"""The suppression list: addresses that must never be mailed (unsubscribes, complaints), kept across runs.

Stored as plain UTF-8 text the user can read and edit, one address a line with an optional
reason after a tab; blank lines and lines starting with # are ignored:

    # Bulk Mailer suppression list: one address a line, optionally a tab and the reason
    bob@example.com\tunsubscribed

Every change happens under an exclusive lock on a sidecar file (suppression.txt.lock):
adding re-reads what other processes wrote, appends the new lines in one write and fsyncs;
removing rewrites the file atomically (temporary file + os.replace). So two processes adding
at once lose nothing, and a reader never sees a half-rewritten file.

Addresses are kept in email-validator's normalised form and compared case-insensitively
(case-folded), the same way recipients.py dedupes a list. Lookups answer from a dict loaded
once (O(1) per address); the file is re-read only when its size, time or inode changed.
"""

from __future__ import annotations

import builtins
import io
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from email_validator import validate_email

from backend import paths
from backend.errors import InputError, RecipientFileError
from backend.recipients import Recipient

__all__ = ["DEFAULT_REASON", "Added", "ImportReport", "SuppressionError", "SuppressionList"]

FILE_NAME = "suppression.txt"
HEADER = "# Bulk Mailer suppression list: one address a line, optionally a tab and the reason\n"
DEFAULT_REASON = "added by hand"
LOCK_TIMEOUT = 30.0  # seconds to wait for another process's change to finish
MAX_REASON = 200
_MAX_ADDRESS = 1000
_TABLE_SUFFIXES = {".csv", ".tsv", ".tab", ".xlsx"}

# An ASCII dot-atom address whose normalised form is just the domain lower-cased: its key
# is computed without email-validator (fast, and a 100k-row campaign checks every row).
# Punycode labels (xn--) are normalised to Unicode by email-validator, so they take the slow path.
_SIMPLE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_BLANKS = " \t\u00a0\u3000"


class SuppressionError(InputError):
    """The suppression list or a file to import cannot be read or written."""

    default_category = "file_error"


@dataclass
class ImportReport:
    """What an import or add did: new addresses, ones already kept, invalid (line, value, reason)."""

    added: int = 0
    already: int = 0
    invalid: list[tuple[int, str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the UI and the CLI."""
        return f"{self.added} added, {self.already} already on the list, {len(self.invalid)} invalid"


class Added(int):
    """add()'s count of newly added addresses, with .already and .invalid (position, value, reason)."""

    already: int
    invalid: list[tuple[int, str, str]]

    def __new__(cls, report: ImportReport) -> Added:
        obj = super().__new__(cls, report.added)
        obj.already = report.already
        obj.invalid = report.invalid
        return obj


def _clip(value: str, limit: int = 200) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _clean_reason(reason: object) -> str:
    text = reason if isinstance(reason, str) else ""
    text = " ".join(_CONTROL.sub(" ", text).split())
    return _clip(text, MAX_REASON)


def normalize(address: str) -> str:
    """email-validator's normalised form; ValueError (EmailNotValidError) saying why if invalid."""
    value = address.strip(_BLANKS) if isinstance(address, str) else ""
    if not value:
        raise ValueError("no email address")
    if _CONTROL.search(value):
        raise ValueError("it contains a line break or a control character")
    if len(value) > _MAX_ADDRESS:
        raise ValueError("it is far too long")
    if value.startswith("#"):
        raise ValueError("an address starting with # would read as a comment in the list")
    return validate_email(value, check_deliverability=False).normalized


def _key(address: str) -> str:
    """The comparison key: the normalised address, case-folded (invalid ones: trimmed and folded)."""
    value = address.strip(_BLANKS)
    if value.isascii() and _SIMPLE.fullmatch(value) and "xn--" not in value.lower():
        return value.lower()
    try:
        return validate_email(value, check_deliverability=False).normalized.casefold()
    except ValueError:  # EmailNotValidError and odd IDNA errors: never matches a real address
        return value.casefold()


_LOOSE = re.compile(r"\s*<?([^\s<>,;]+@[^\s<>,;]+?)>?(?=[\s,;]|$)")


def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@contextmanager
def _locked(path: Path, timeout: float, private: bool = False) -> Iterator[None]:
    """An exclusive lock on a sidecar file, shared with every other process using the list.
    private: a file in the app's own folder, opened without following a link."""
    fd = paths.open_private(path) if private else os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        if os.name == "nt":  # pragma: no cover - exercised on Windows only
            import msvcrt

            while True:
                try:
                    os.lseek(fd, 0, os.SEEK_SET)
                    msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            try:
                yield
            finally:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.005)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class SuppressionList:
    """Addresses never to mail, with a reason each; kept in data_dir()/suppression.txt."""

    def __init__(self, path: Path | str | None = None, *, lock_timeout: float = LOCK_TIMEOUT) -> None:
        # The list in the app's folder is never written through a link; a file the user
        # chose is theirs to link where they like.
        self._private = path is None
        if path is None:
            path = paths.data_dir() / FILE_NAME
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_timeout = lock_timeout
        self._mutex = threading.RLock()  # bridge methods run on their own threads
        self._entries: dict[str, tuple[str, str]] = {}  # key -> (address, reason)
        self._signature: tuple[int, int, int, int] | None = None
        self._loaded = False

    # -- reading -----------------------------------------------------------------------

    def _stat(self) -> os.stat_result | None:
        try:
            return self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SuppressionError(f"{self.path}: the suppression list cannot be read ({exc.strerror or exc})") from exc

    def reload(self, *, force: bool = False) -> None:
        """Read the file again if another process (or the user) changed it since the last read."""
        with self._mutex:
            st = self._stat()
            signature = None if st is None else _signature(st)
            if self._loaded and not force and signature == self._signature:
                return
            entries: dict[str, tuple[str, str]] = {}
            if st is not None:
                try:
                    data = self.path.read_bytes()
                except OSError as exc:
                    raise SuppressionError(
                        f"{self.path}: the suppression list cannot be read ({exc.strerror or exc})"
                    ) from exc
                for line in data.decode("utf-8", "replace").splitlines():
                    address, _, reason = line.partition("\t")
                    address = address.strip(_BLANKS)
                    if not address or address.startswith("#"):
                        continue
                    if not reason and _LOOSE.match(address):
                        # Edited by hand: "a@x.org unsubscribed", "b@x.org, complaint", "<c@x.org>".
                        # A line that names an address must never be ignored.
                        found = _LOOSE.match(address)
                        assert found is not None
                        reason = address[found.end():].strip(" ,;:-")
                        address = found.group(1)
                    entries.setdefault(_key(address), (address, reason.strip()))
                # stat again after reading: if it moved on meanwhile, the next call reads again
                after = self._stat()
                if after is None or _signature(after) != signature:
                    signature = (-1, -1, -1, -1)
            self._entries = entries
            self._signature = signature
            self._loaded = True

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.reload()

    def contains(self, address: str) -> bool:
        """Whether the address is suppressed (normalised, case-insensitive); O(1) from memory.

        Answers from what was read last; reload(), apply(), reason(), all() and every change
        pick up what other processes wrote since.
        """
        with self._mutex:
            self._ensure_loaded()
            return isinstance(address, str) and _key(address) in self._entries

    __contains__ = contains

    def reason(self, address: str) -> str | None:
        """The reason the address is suppressed ("" if none was given), or None if it is not."""
        with self._mutex:
            self.reload()
            entry = self._entries.get(_key(address)) if isinstance(address, str) else None
            return None if entry is None else entry[1]

    def all(self) -> builtins.list[tuple[str, str]]:
        """Every (address, reason), in the order they were added."""
        with self._mutex:
            self.reload()
            return list(self._entries.values())

    def __len__(self) -> int:
        with self._mutex:
            self._ensure_loaded()
            return len(self._entries)

    # -- writing -----------------------------------------------------------------------

    @contextmanager
    def _changing(self) -> Iterator[None]:
        with self._mutex:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                lock = _locked(self.lock_path, self._lock_timeout, self._private)
                lock.__enter__()
            except BlockingIOError as exc:
                raise SuppressionError(
                    f"{self.path}: the suppression list is being changed by another program; try again",
                    category="action_unavailable",
                ) from exc
            except OSError as exc:
                raise SuppressionError(
                    f"{self.path}: the suppression list cannot be changed ({exc.strerror or exc})"
                ) from exc
            try:
                self.reload()
                yield
            finally:
                lock.__exit__(None, None, None)

    def _append(self, entries: builtins.list[tuple[str, str]]) -> None:
        lines = "".join(f"{address}\t{reason}\n" for address, reason in entries)
        try:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
            fd = paths.open_private(self.path, flags) if self._private else os.open(self.path, flags, 0o600)
            try:
                size = os.fstat(fd).st_size
                prefix = HEADER if size == 0 else ""
                if size and not self._ends_with_newline(size):
                    prefix = "\n"  # a hand-edited last line without its line break
                data = (prefix + lines).encode("utf-8")
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise SuppressionError(
                f"{self.path}: the suppression list cannot be written ({exc.strerror or exc})"
            ) from exc

    def _ends_with_newline(self, size: int) -> bool:
        with self.path.open("rb") as fh:
            fh.seek(size - 1)
            return fh.read(1) in (b"\n", b"\r")

    def _add(self, entries: Iterable[tuple[int, str, str]]) -> ImportReport:
        """Add (position, address, reason) entries under the lock; one append for all of them."""
        report = ImportReport()
        checked: builtins.list[tuple[str, str, str]] = []  # key, normalised address, reason
        for position, value, reason in entries:
            try:
                address = normalize(value)
            except ValueError as exc:
                report.invalid.append((position, _clip(str(value)), f"not a valid email address: {exc}"))
                continue
            checked.append((address.casefold(), address, _clean_reason(reason)))
        with self._changing():
            new: dict[str, tuple[str, str]] = {}
            for key, address, reason in checked:
                if key in self._entries or key in new:
                    report.already += 1
                else:
                    new[key] = (address, reason)
            if new:
                self._append(list(new.values()))
                self._entries.update(new)
                st = self._stat()
                self._signature = None if st is None else _signature(st)
            report.added = len(new)
        return report

    def add(self, addresses: Iterable[str] | str, reason: str = DEFAULT_REASON) -> Added:
        """Suppress addresses; returns how many were new (.already and .invalid say the rest)."""
        if isinstance(addresses, str):
            addresses = [addresses]
        return Added(self._add((i, a, reason) for i, a in enumerate(addresses, 1)))

    def remove(self, address: str) -> bool:
        """Stop suppressing an address; False if it was not on the list."""
        key = _key(address) if isinstance(address, str) else ""
        with self._changing():
            if key not in self._entries:
                return False
            kept = [entry for k, entry in self._entries.items() if k != key]
            data = HEADER + "".join(f"{a}\t{r}\n" for a, r in kept)
            try:
                paths.atomic_write(self.path, data.encode("utf-8"))
            except OSError as exc:
                raise SuppressionError(
                    f"{self.path}: the suppression list cannot be written ({exc.strerror or exc})"
                ) from exc
            del self._entries[key]
            st = self._stat()
            self._signature = None if st is None else _signature(st)
            return True

    # -- files and campaigns -----------------------------------------------------------

    def import_file(self, path: Path | str, reason: str = "imported") -> ImportReport:
        """Add every address of a file: one a line (optionally a tab and a reason), or a CSV/TSV/XLSX.

        Blank lines and # comments are ignored; invalid entries are reported with their line.
        """
        source = Path(path)
        if source.suffix.lower() in _TABLE_SUFFIXES:
            return self._import_table(source, reason)
        data = _read(source)
        text = data.decode("utf-8-sig", "replace")
        lines = io.StringIO(text, newline="").readlines()
        first = next((ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")
        if "\t" not in first and ("," in first or ";" in first):
            return self._import_table(source, reason)  # a CSV saved as .txt
        entries = []
        for number, raw in enumerate(lines, 1):
            line = raw.rstrip("\r\n")
            if not line.strip(_BLANKS) or line.strip(_BLANKS).startswith("#"):
                continue
            address, tab, own_reason = line.partition("\t")
            entries.append((number, address, own_reason.strip() if tab and own_reason.strip() else reason))
        return self._add(entries)

    def _import_table(self, source: Path, reason: str) -> ImportReport:
        from backend.recipients import load_file

        try:
            result = load_file(source)
        except RecipientFileError as exc:
            raise SuppressionError(exc.message) from exc
        report = self._add((r.line, r.email, reason) for r in result.recipients)
        report.already += len(result.duplicates)
        report.invalid.extend((r.line, r.value, r.reason) for r in result.rejected)
        report.invalid.sort(key=lambda item: item[0])
        return report

    def apply(
        self, recipients: builtins.list[Recipient]
    ) -> tuple[builtins.list[Recipient], builtins.list[tuple[Recipient, str]]]:
        """Split recipients into (to send, [(skipped, "suppressed: <reason>")])."""
        with self._mutex:
            self.reload()
            entries = self._entries
        send: builtins.list[Recipient] = []
        skipped: builtins.list[tuple[Recipient, str]] = []
        for recipient in recipients:
            entry = entries.get(_key(recipient.email))
            if entry is None:
                send.append(recipient)
            else:
                skipped.append((recipient, f"suppressed: {entry[1]}" if entry[1] else "suppressed"))
        return send, skipped


def _read(path: Path) -> bytes:
    source = str(path)
    try:
        if path.is_dir():
            raise SuppressionError(f"{source}: is a folder, not a file")
        if path.exists() and not path.is_file():
            raise SuppressionError(f"{source}: is not a regular file")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise SuppressionError(f"{source}: file not found") from exc
    except PermissionError as exc:
        raise SuppressionError(f"{source}: permission denied, the file cannot be read") from exc
    except (OSError, ValueError) as exc:
        raise SuppressionError(f"{source}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from exc
