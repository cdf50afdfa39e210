"""Attachments: files for everyone, per-recipient files from a column (kept inside a folder), sizes."""

from __future__ import annotations

import errno
import math
import mimetypes
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from backend.errors import AttachmentError
from backend.recipients import Recipient

MAX_FILE_BYTES = 100 * 1024 * 1024  # one file; far above what any mail provider accepts
LARGE_MESSAGE_BYTES = 10 * 1024 * 1024  # above this a message often bounces or lands in spam
MAX_FILENAME = 255  # characters; what file systems allow, and what keeps headers sane
SEPARATOR = ";"  # several files in one cell: "contract.pdf; annex.pdf"
_BLANKS = " \u00a0\u3000"  # trimmed around each path; a line break or tab is refused instead

# Per attachment part: boundary line, Content-Type/-Transfer-Encoding/-Disposition headers.
_PART_OVERHEAD = 200
# The headers and bodies of a message without attachments, when the caller gives no size.
_DEFAULT_BODY_BYTES = 16 * 1024

# Same set as compose's header check: C0, DEL, C1, U+2028/9 and lone surrogates.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# Bidirectional controls (LRM, RLM, ALM, the embeddings, overrides and isolates): U+202E
# shows "invoice\u202efdp.exe" as "invoiceexe.pdf", so the reader would see another name. The
# same set as template names refuse, with U+061C.
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_ENCODED_WORD = re.compile(r"=\?.*\?=")
_MIME_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*"
_CONTENT_TYPE = re.compile(rf"{_MIME_NAME}/{_MIME_NAME}")
_DRIVE = re.compile(r"^[A-Za-z]:")

# Python's own table lacks the office formats; the system's table differs between machines
# (and on Windows comes from the registry, where other programs write odd values).
_TYPES = mimetypes.MimeTypes()
for _ext, _type in {
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".odp": "application/vnd.oasis.opendocument.presentation",
    ".epub": "application/epub+zip",
    ".ics": "text/calendar",
    ".md": "text/markdown",
    ".7z": "application/x-7z-compressed",
    ".rar": "application/vnd.rar",
    ".js": "text/javascript",
}.items():
    _TYPES.add_type(_type, _ext)
_COMPRESSED = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
}


class RowAttachmentError(AttachmentError):
    """An attachment problem, naming the list's line (.row), the column (.field) and the path."""

    def __init__(
        self,
        message: str,
        *,
        row: int | None = None,
        field: str | None = None,
        path: str | None = None,
        **kw: Any,
    ) -> None:
        where = f"line {row}: " if row is not None else ""
        super().__init__(where + message, **kw)
        self.row = row
        self.field = field
        self.path = path


@dataclass(frozen=True)
class Attachment:
    """One file to attach: the name the reader sees, its MIME type and its bytes."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_filename(self.filename)
        if not isinstance(self.data, bytes):
            raise RowAttachmentError(f"{self.filename}: the content must be bytes")
        if not isinstance(self.content_type, str) or not _CONTENT_TYPE.fullmatch(self.content_type):
            raise RowAttachmentError(
                f"{self.filename}: {self.content_type!r} is not a MIME type such as application/pdf"
            )
        if self.maintype in ("multipart", "message"):
            # RFC 2046 forbids base64 for these; as a file they are application/octet-stream.
            raise RowAttachmentError(
                f"{self.filename}: attach {self.content_type} files as application/octet-stream"
            )

    @property
    def maintype(self) -> str:
        return self.content_type.split("/")[0].lower()

    @property
    def subtype(self) -> str:
        return self.content_type.split("/")[1].lower()

    @property
    def size(self) -> int:
        return len(self.data)


def check_filename(name: str, *, row: int | None = None, field: str | None = None) -> None:
    """Refuse names that cannot travel safely in a Content-Disposition header."""
    if not isinstance(name, str) or not name.strip():
        raise RowAttachmentError("the attachment has no file name", row=row, field=field)
    bad = _CONTROL.search(name)
    if bad:
        raise RowAttachmentError(
            f"the file name {name!r} contains a control character (U+{ord(bad.group()):04X}); "
            "rename the file",
            row=row,
            field=field,
            path=name,
        )
    bidi = BIDI_CONTROLS.search(name)
    if bidi:
        raise RowAttachmentError(
            f"the file name {name!r} contains a bidirectional text control "
            f"(U+{ord(bidi.group()):04X}), which makes mail programs show the name in another "
            "order (a .exe can look like a .pdf); rename the file",
            row=row,
            field=field,
            path=name,
        )
    if name != name.strip():
        # Mail programs (Python's parser too) drop them, so the reader would see another name.
        raise RowAttachmentError(
            f"the file name {name!r} starts or ends with a space; rename the file",
            row=row,
            field=field,
            path=name,
        )
    if "/" in name or "\\" in name or name in (".", ".."):
        raise RowAttachmentError(
            f"the file name {name!r} is a path, not a name", row=row, field=field, path=name
        )
    if _ENCODED_WORD.search(name):
        # Mail programs decode "=?...?=" inside names, so the reader would see another name.
        raise RowAttachmentError(
            f"the file name {name!r} contains an encoded word (=?...?=), which mail programs "
            "would show as a different name; rename the file",
            row=row,
            field=field,
            path=name,
        )
    if len(name) > MAX_FILENAME:
        raise RowAttachmentError(
            f"the file name {name[:40]!r}... is longer than {MAX_FILENAME} characters; rename it",
            row=row,
            field=field,
            path=name,
        )


def guess_content_type(name: str) -> str:
    """The MIME type for a file name by its extension; application/octet-stream if unknown."""
    # guess_type reads its argument as a URL ("data:", "#"): give it only the extensions.
    suffixes = "".join(PurePath(name).suffixes[-2:])
    if not re.fullmatch(r"(\.[A-Za-z0-9_+-]+)+", suffixes or "."):
        return "application/octet-stream"
    probe = "file" + suffixes
    for guess in (_TYPES.guess_type, mimetypes.guess_type):
        ctype, encoding = guess(probe, strict=False)
        if encoding:
            return _COMPRESSED.get(encoding, "application/octet-stream")
        if ctype and _CONTENT_TYPE.fullmatch(ctype):
            if ctype.split("/")[0] in ("multipart", "message"):
                return "application/octet-stream"
            return ctype
    return "application/octet-stream"


def load_attachment(
    path: str | os.PathLike[str],
    *,
    filename: str | None = None,
    row: int | None = None,
    field: str | None = None,
    follow_symlinks: bool = True,
    beneath: Path | None = None,
) -> Attachment:
    """Read one regular file into an Attachment; RowAttachmentError with the path and reason.

    Folders, devices, pipes and sockets are refused from their metadata, before any open:
    opening a pipe would wait forever and a device could be endless. With beneath (a resolved
    folder that path is inside), the file is opened one folder at a time from there, refusing a
    link at every step: a folder swapped for a link since the path was checked cannot lead out.
    """
    p = Path(path)
    shown = str(path)
    name = (filename if filename is not None else p.name).strip()
    check_filename(name, row=row, field=field)

    def fail(reason: str) -> RowAttachmentError:
        return RowAttachmentError(f"attachment {shown}: {reason}", row=row, field=field, path=shown)

    try:
        before = os.stat(p, follow_symlinks=follow_symlinks)
    except FileNotFoundError:
        raise fail("the file does not exist") from None
    except PermissionError:
        raise fail("permission denied") from None
    except (OSError, ValueError) as exc:  # ValueError: NUL in the path
        raise fail(f"cannot be read ({_reason(exc)})") from None
    _require_regular(before, fail)
    if before.st_size > MAX_FILE_BYTES:
        raise fail(f"is {_mb(before.st_size)}; files over {_mb(MAX_FILE_BYTES)} cannot be sent by email")
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = _open_beneath(beneath, p, flags) if beneath is not None and _WALKABLE else os.open(p, flags)
    except PermissionError:
        raise fail("permission denied") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise fail("a folder or file on its path was replaced by a link; refused") from None
        raise fail(f"cannot be opened ({_reason(exc)})") from None
    with os.fdopen(fd, "rb") as fh:
        now = os.fstat(fh.fileno())
        # Replaced by something else between the check and the open (a pipe, another file)?
        _require_regular(now, fail)
        if os.name != "nt" and (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise fail("the file changed while it was being read; try again")
        try:
            data = fh.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise fail(f"cannot be read ({_reason(exc)})") from None
    if len(data) > MAX_FILE_BYTES:
        raise fail(f"is larger than {_mb(MAX_FILE_BYTES)}; it cannot be sent by email")
    return Attachment(name, guess_content_type(name), data)


_WALKABLE = os.open in os.supports_dir_fd and hasattr(os, "O_NOFOLLOW") and hasattr(os, "O_DIRECTORY")


def _open_beneath(root: Path, path: Path, flags: int) -> int:
    """Open path (inside root) component by component with O_NOFOLLOW: no link is followed."""
    parts = path.relative_to(root).parts
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            step = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = step
        return os.open(parts[-1], flags | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


def load_attachments(paths: Iterable[str | os.PathLike[str]]) -> list[Attachment]:
    """Load the files everyone gets, once per campaign; RowAttachmentError listing every problem."""
    loaded: list[Attachment] = []
    problems: list[RowAttachmentError] = []
    for path in paths:
        try:
            loaded.append(load_attachment(path, field="attachments"))
        except RowAttachmentError as exc:
            problems.append(exc)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise RowAttachmentError(
            f"{len(problems)} attachments cannot be used: " + "; ".join(p.message for p in problems),
            field="attachments",
        )
    return loaded


# --- per-recipient files from a column ---------------------------------------------------


def split_cell(value: str | None) -> list[str]:
    """The paths in one cell: separated by ';', blanks around each trimmed, empty ones dropped."""
    if not value:
        return []
    return [piece.strip(_BLANKS) for piece in value.split(SEPARATOR) if piece.strip(_BLANKS)]


def resolve_row_attachment(
    folder: Path, value: str, row: int, *, field: str | None = None
) -> Path:
    """The real path of one cell's file inside folder; refuses escapes without opening anything.

    value is relative to folder ('\\' counts as '/', so lists made on Windows work anywhere).
    Refused: absolute paths, drive letters, '..' parts, control characters, and links (or
    link chains) whose target lies outside the folder; missing files, folders, devices and
    pipes are reported. Only path metadata is read (lstat/readlink/stat), never the file.
    """
    def refuse(reason: str) -> RowAttachmentError:
        return RowAttachmentError(
            f"attachment {value!r} {reason}", row=row, field=field, path=value
        )

    piece = value.strip(_BLANKS)
    if not piece:
        raise refuse("is empty")
    bad = _CONTROL.search(piece)
    if bad:
        raise refuse(
            f"contains a control character (U+{ord(bad.group()):04X}); refused"
        )
    posix = piece.replace("\\", "/")
    if posix.startswith("/") or _DRIVE.match(posix):
        raise refuse("is an absolute path; refused: give a path relative to the attachments folder")
    parts = posix.split("/")
    # '..', and the '...'/'.. ' spellings Windows reads as '..', would climb out of the folder.
    if any(part not in ("", ".") and not part.strip(" .") for part in parts):
        raise refuse("contains '..'; refused: attachments must be inside the attachments folder")
    if os.name == "nt" and ":" in posix:
        raise refuse("contains ':'; refused (a drive or an alternate data stream)")

    try:
        root = Path(folder).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise RowAttachmentError(
            f"the attachments folder {str(folder)!r} cannot be used ({_reason(exc)})",
            row=row,
            field=field,
            path=str(folder),
        ) from None
    candidate = root.joinpath(*[part for part in parts if part not in ("", ".")])
    outside = refuse(f"leads outside the attachments folder {str(root)!r} (a link); refused")
    try:
        # Not strict: follows every link that exists, so a dangling link out is still "outside".
        if not candidate.resolve(strict=False).is_relative_to(root):
            raise outside
        real = candidate.resolve(strict=True)
    except FileNotFoundError:
        raise refuse(f"was not found in the attachments folder {str(root)!r}") from None
    except RuntimeError:  # a symlink loop (Python 3.11 reports it so)
        raise refuse("is a link that points to itself; refused") from None
    except OSError as exc:
        raise refuse(f"cannot be used ({_reason(exc)})") from None
    if not real.is_relative_to(root):
        raise outside
    try:
        info = real.stat()
    except OSError as exc:
        raise refuse(f"cannot be used ({_reason(exc)})") from None
    if stat.S_ISDIR(info.st_mode):
        raise refuse("is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise refuse("is not a regular file (a device, pipe or socket); refused")
    return real


def resolve_row_attachments(
    folder: Path, cell: str | None, row: int, *, field: str | None = None
) -> list[tuple[str, Path]]:
    """Every file named in one cell as (name shown to the reader, real path); raises on the first problem."""
    return [
        (_display_name(piece), resolve_row_attachment(folder, piece, row, field=field))
        for piece in split_cell(cell)
    ]


def row_attachments(
    recipient: Recipient, column: str | None, folder: Path | None
) -> list[Attachment]:
    """Load one recipient's own files from their cell in column; [] when the cell is empty."""
    if not column:
        return []
    cell = recipient.fields.get(column, "")
    if not split_cell(cell):
        return []
    if folder is None:
        raise RowAttachmentError(
            "choose the attachments folder the paths in the column are relative to",
            row=recipient.line,
            field=column,
        )
    out = []
    root = Path(folder).resolve()
    for name, real in resolve_row_attachments(folder, cell, recipient.line, field=column):
        # The resolved path holds no links any more: refuse one swapped in since the check,
        # at any depth.
        out.append(load_attachment(real, filename=name, row=recipient.line, field=column,
                                   follow_symlinks=False, beneath=root))
    return out


def _display_name(piece: str) -> str:
    return piece.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


# --- the check before sending ------------------------------------------------------------


def check_attachments(
    recipients: Iterable[Recipient],
    column: str | None,
    folder: Path | None,
    shared: Sequence[Attachment | str | os.PathLike[str]] = (),
    *,
    size_limit: int | None = None,
    body_bytes: int = _DEFAULT_BODY_BYTES,
) -> list[AttachmentError]:
    """Every attachment problem before sending, each naming its line; opens no per-row file.

    shared: the files everyone gets, loaded (Attachment) or as paths (checked, not read).
    size_limit: the server's SIZE limit in bytes (see server_size_limit); rows whose message
    would be larger are reported.
    """
    problems: list[AttachmentError] = []
    rows = list(recipients)
    shared_sizes: list[tuple[str, int]] = []
    for item in shared:
        if isinstance(item, Attachment):
            shared_sizes.append((item.filename, item.size))
            continue
        try:
            shared_sizes.append(_check_shared(item))
        except RowAttachmentError as exc:
            problems.append(exc)
    row_sizes: dict[int, list[tuple[str, int]]] = {}
    if column:
        folder_problem = _check_folder(folder, column)
        if rows and not any(column in r.fields for r in rows):
            problems.append(
                RowAttachmentError(
                    f"the recipient list has no column {column!r} for attachments",
                    field=column,
                )
            )
        elif folder_problem is not None:
            if any(split_cell(r.fields.get(column)) for r in rows):
                problems.append(folder_problem)
        else:
            assert folder is not None
            for recipient in rows:
                try:
                    row_sizes[recipient.line] = _row_files(recipient, column, folder)
                except RowAttachmentError as exc:
                    problems.append(exc)
    if size_limit:
        sizes = {
            r.line: estimated_size([*shared_sizes, *row_sizes.get(r.line, [])], body_bytes)
            for r in rows
            if not column or r.line in row_sizes or not split_cell(r.fields.get(column))
        }  # rows whose files have problems are reported above, not sized
        problems.extend(size_problems(sizes, size_limit))
    return problems


def _row_files(recipient: Recipient, column: str, folder: Path) -> list[tuple[str, int]]:
    """(name, size) of each file in the row's cell, checked by metadata only."""
    out = []
    for name, real in resolve_row_attachments(
        folder, recipient.fields.get(column), recipient.line, field=column
    ):
        check_filename(name, row=recipient.line, field=column)
        try:
            size = real.stat().st_size
        except OSError as exc:
            raise RowAttachmentError(
                f"attachment {name!r} cannot be used ({_reason(exc)})",
                row=recipient.line,
                field=column,
                path=str(real),
            ) from None
        if size > MAX_FILE_BYTES:
            raise RowAttachmentError(
                f"attachment {name!r} is {_mb(size)}; files over {_mb(MAX_FILE_BYTES)} "
                "cannot be sent by email",
                row=recipient.line,
                field=column,
                path=str(real),
            )
        out.append((name, size))
    return out


def _check_shared(path: str | os.PathLike[str]) -> tuple[str, int]:
    p = Path(path)
    shown = str(path)
    check_filename(p.name, field="attachments")
    try:
        info = p.stat()
    except FileNotFoundError:
        raise RowAttachmentError(
            f"attachment {shown}: the file does not exist", field="attachments", path=shown
        ) from None
    except (OSError, ValueError) as exc:
        raise RowAttachmentError(
            f"attachment {shown}: cannot be read ({_reason(exc)})", field="attachments", path=shown
        ) from None

    def fail(reason: str) -> RowAttachmentError:
        return RowAttachmentError(f"attachment {shown}: {reason}", field="attachments", path=shown)

    _require_regular(info, fail)
    if not os.access(p, os.R_OK):
        raise fail("permission denied")
    if info.st_size > MAX_FILE_BYTES:
        raise fail(f"is {_mb(info.st_size)}; files over {_mb(MAX_FILE_BYTES)} cannot be sent by email")
    return p.name, info.st_size


def _check_folder(folder: Path | None, column: str) -> RowAttachmentError | None:
    if folder is None:
        return RowAttachmentError(
            f"choose the attachments folder the paths in column {column!r} are relative to",
            field=column,
        )
    try:
        if not Path(folder).resolve(strict=True).is_dir():
            return RowAttachmentError(
                f"the attachments folder {str(folder)!r} is not a folder", field=column, path=str(folder)
            )
    except (OSError, RuntimeError) as exc:
        return RowAttachmentError(
            f"the attachments folder {str(folder)!r} cannot be used ({_reason(exc)})",
            field=column,
            path=str(folder),
        )
    return None


# --- sizes -------------------------------------------------------------------------------


def encoded_size(n: int) -> int:
    """Bytes that n bytes take in base64 with 76-character lines and CRLF, as compose writes them."""
    return 4 * math.ceil(n / 3) + 2 * math.ceil(n / 57)


def estimated_size(files: Iterable[tuple[str, int]], body_bytes: int = _DEFAULT_BODY_BYTES) -> int:
    """A message's approximate size in bytes: its text plus each (name, size) file encoded."""
    return body_bytes + sum(
        encoded_size(size) + _PART_OVERHEAD + 3 * len(name.encode()) for name, size in files
    )


def size_problems(sizes: Mapping[int, int], limit: int | None) -> list[RowAttachmentError]:
    """Rows (line -> message bytes, estimated or exact) the server's SIZE limit would refuse."""
    if not limit:
        return []
    return [
        RowAttachmentError(
            f"the message would be about {_mb(size)} with its attachments; the server accepts at "
            f"most {_mb(limit)} (its SIZE limit): attach fewer or smaller files, or share a link",
            row=line,
            field="attachments",
            fix=("Attach fewer or smaller files, or put large files on a file-sharing service "
                 "and send a link.",),
        )
        for line, size in sizes.items()
        if size > limit
    ]


def large_message_warning(
    sizes: Mapping[int, int], threshold: int = LARGE_MESSAGE_BYTES
) -> str | None:
    """A plain-words warning when any message (line -> bytes) is over threshold, else None."""
    big = {line: size for line, size in sizes.items() if size > threshold}
    if not big:
        return None
    line, size = max(big.items(), key=lambda item: item[1])
    many = "1 message is" if len(big) == 1 else f"{len(big)} messages are"
    return (
        f"{many} larger than {_mb(threshold)} with attachments (largest: line {line}, about "
        f"{_mb(size)}): large attachments are often rejected or land in spam; consider "
        "sharing a link instead"
    )


def planned_sizes(
    recipients: Iterable[Recipient],
    column: str | None,
    folder: Path | None,
    shared: Sequence[Attachment] = (),
    *,
    body_bytes: int = _DEFAULT_BODY_BYTES,
) -> dict[int, int]:
    """line -> estimated message size from file sizes (stat only); rows with problems left out."""
    base = [(a.filename, a.size) for a in shared]
    out: dict[int, int] = {}
    for recipient in recipients:
        files: list[tuple[str, int]] = []
        if column and folder is not None:
            try:
                files = _row_files(recipient, column, folder)
            except (RowAttachmentError, OSError):
                continue
        out[recipient.line] = estimated_size([*base, *files], body_bytes)
    return out


def server_size_limit(features: Mapping[str, str]) -> int | None:
    """The SIZE limit from EHLO features (smtplib's esmtp_features); None if none is stated."""
    value = (features.get("size") or "").strip()
    if not value.isdigit() or int(value) == 0:  # "SIZE" alone or "SIZE 0": no fixed limit
        return None
    return int(value)


# --- helpers -----------------------------------------------------------------------------


def _require_regular(info: os.stat_result, fail: Any) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise fail("is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise fail("is not a regular file (a device, pipe or socket); refused")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"
