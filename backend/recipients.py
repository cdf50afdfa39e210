"""Recipient lists: file/paste import -> Recipient rows; validation, dedupe, rejects by line."""

from __future__ import annotations

import csv
import datetime
import functools
import io
import itertools
import json
import os
import re
import time
import unicodedata
import warnings as warnings_module
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from email_validator import validate_email

from backend.errors import RecipientFileError

PREVIEW_VALUE_CHARS = 200  # a value shown in ImportResult.preview()
PREVIEW_MAX_BYTES = 2 * 1024 * 1024  # the JSON of one preview, about


@dataclass(frozen=True, slots=True)
class Recipient:
    """One person to mail: normalised address, the row's other columns, its line in the file."""

    email: str
    fields: dict[str, str] = field(default_factory=dict)
    line: int = 0


@dataclass
class Rejected:
    """A row or entry that cannot be used: its physical line, the offending value, why."""

    line: int
    value: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"

    @property
    def problem(self) -> str:
        """The reason without the value in front ("more than one @"), for a list that shows the
        value beside it."""
        head, sep, rest = self.reason.partition(_NOT_VALID)
        return rest if sep and head.strip() else self.reason


@dataclass
class Duplicate:
    """An address seen before (compared case-insensitively); first_line is where it was."""

    line: int
    email: str
    first_line: int

    def __str__(self) -> str:
        return f"line {self.line}: {self.email} is a duplicate of line {self.first_line}"


@dataclass
class ImportResult:
    """What an import found: usable recipients, rejected rows, duplicates, the field names.

    encoding is how the file's bytes were read: "utf-8", "utf-16", "cp1252", "latin-1", or
    "xlsx" for an Excel workbook (pasted text was never bytes: "utf-8"). warnings are
    plain-words notes for the user about the whole import (bytes replaced, a guessed
    encoding, a quote that may be missing, sheets not read); they are not rejected rows and
    summary() leaves them out. name_column is where each recipient's "name" field (the To
    display name, {{ name }}) came from: a column, "First Name + Last Name" when two columns
    were combined, "name" for a list's "Name <address>" entries, None when there is none.
    """

    recipients: list[Recipient]
    rejected: list[Rejected]
    duplicates: list[Duplicate]
    fields: list[str]
    email_column: str
    source: str
    encoding: str = "utf-8"
    warnings: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # the list's own columns, in file order
    name_column: str | None = None

    def summary(self) -> str:
        """One line for the UI and the CLI, e.g. '120 valid, 3 invalid, 2 duplicates'."""
        dup = len(self.duplicates)
        return (
            f"{len(self.recipients)} valid, {len(self.rejected)} invalid, "
            f"{dup} duplicate{'' if dup == 1 else 's'}"
        )

    def preview(
        self,
        rows: int = 100,
        rejects: int = 500,
        *,
        value_chars: int = PREVIEW_VALUE_CHARS,
        max_bytes: int = PREVIEW_MAX_BYTES,
    ) -> dict[str, Any]:
        """What the UI shows of an import, JSON-ready and bounded whatever the list holds.

        At most `rows` recipients and `rejects` rejected rows and duplicates; each value cut
        to value_chars characters; recipients stop once the answer would pass max_bytes of
        JSON ("truncated" then says so; "counts" always has the full numbers).
        """
        out: dict[str, Any] = {
            "source": _clip(self.source, 1000),
            "summary": self.summary(),
            "counts": {
                "valid": len(self.recipients),
                "invalid": len(self.rejected),
                "duplicates": len(self.duplicates),
            },
            "name_column": self.name_column,
            "columns": list(self.columns or [f for f in self.fields if f != "email"]),
            "email_column": self.email_column,
            "fields": list(self.fields),
            "encoding": self.encoding,
            "warnings": [_clip(w, 2000) for w in self.warnings[:100]],
            "rejected": [
                {"line": r.line, "value": _clip(r.value, value_chars), "reason": _clip(r.reason, 1000),
                 "problem": _clip(r.problem, 1000)}
                for r in self.rejected[:rejects]
            ],
            "duplicates": [
                {"line": d.line, "email": _clip(d.email, value_chars), "first_line": d.first_line}
                for d in self.duplicates[:rejects]
            ],
            "rows": [],
            "truncated": False,
        }
        size = len(json.dumps(out))
        for r in self.recipients[:rows]:
            row = {
                "line": r.line,
                "email": r.email,
                "fields": {k: _clip(v, value_chars) for k, v in r.fields.items()},
            }
            size += len(json.dumps(row)) + 2
            if size > max_bytes:
                out["truncated"] = True
                break
            out["rows"].append(row)
        return out


PASTED = "pasted text"

# Header cells meaning "the address column", compared after _header_key() (casefolded,
# accents and punctuation dropped), so "E-Mail Address" and "Correo electrónico" match.
_EMAIL_HEADERS = {
    "email", "emails", "emailaddress", "emailaddresses", "emailaddr", "emailid",
    "mail", "mailaddress", "mails", "email1", "primaryemail", "emailprimary",
    "emailadresse", "mailadresse", "epost", "epostadresse",  # de, no/sv
    "courriel", "adresseemail", "adressemail", "adressecourriel", "mel",  # fr
    "correo", "correoelectronico", "direcciondecorreo", "direccionemail",  # es
    "emailadres", "indirizzoemail", "postaelettronica", "posta",  # nl, it
}
# Header cells (after _header_key()) of a column holding the whole name, and of first and
# last name columns, which are combined into "name" when there is no whole-name column.
_NAME_HEADERS = {
    "name", "fullname", "displayname", "contactname", "recipientname", "yourname",
    "vollername", "nomcomplet", "nombrecompleto", "nomecompleto", "volledigenaam",
}
_FIRST_NAME_HEADERS = {
    "firstname", "givenname", "forename", "fname", "first", "vorname", "prenom", "nombre",
    "voornaam", "nome", "fornavn", "fornamn", "etunimi",
}
_LAST_NAME_HEADERS = {
    "lastname", "surname", "familyname", "lname", "last", "nachname", "nom", "apellido",
    "apellidos", "achternaam", "cognome", "efternavn", "etternavn", "efternamn", "sukunimi",
}

# Cheap "looks like an address" test for sniffing and column guessing; the real check is
# email-validator, which is far too slow to run on every cell of every column.
_EMAILISH = re.compile(r'[^\s@<>,;"]+@[^\s@<>,;"]+\.[^\s@<>,;"]+')
# CR/LF and other controls are never part of an address and, in a header, are an injection.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_BLANKS = " \t\u00a0\u3000"  # trimmed around an address; spreadsheets leave these behind
_SAMPLE_ROWS = 500  # rows looked at to guess the delimiter, header and address column
_SNIFF_LINES = 200
_MAX_RESTARTS = 10  # unclosed-quote recoveries per file; each one re-reads the rest
_MAX_REREAD = 1  # broken-quote recoveries re-read at most this many times the file's lines
_MAX_ADDRESS = 1000  # longer cells are rejected before email-validator sees them
_LINES_SHOWN = 10  # line numbers named in one warning before "and N more"
# Decoding: bytes that are not UTF-8 become these lone surrogates (surrogateescape); valid
# UTF-8 never decodes to them, so each one is exactly one bad byte.
_BAD_BYTE = re.compile("[\udc80-\udcff]")
# A file with more than this many bad bytes per well-formed multi-byte UTF-8 character is
# read as Windows-1252: a real cp1252 export almost never holds a valid UTF-8 sequence.
_BAD_PER_GOOD = 4
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

# Paste/list mode: split on , and ; but not inside "quoted names" or <addresses>.
_LIST_PIECE = re.compile(r'(?:"[^"]*"|<[^<>]*>|[^,;])+')
_NAME_ADDR = re.compile(r"(.*?)<([^<>]*)>\s*", re.S)

_Row = tuple[int, list[str]]  # (physical line where the row starts, cells)
_Column = str | int | None  # a column as the caller names it: header, alias, colN or 1-based number

# Excel workbooks. A ZIP file's first bytes; an OLE2 compound file's (old .xls, and also an
# encrypted .xlsx: Excel stores a password-protected workbook in one).
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_XLSX_SUFFIXES = {".xlsx", ".xlsm", ".xltx", ".xltm"}
_OTHER_SPREADSHEETS = {".xls", ".xlsb", ".ods", ".numbers"}
_SAVE_AS = "save it as .xlsx or .csv and import that"
# Refuse absurd workbooks (zip bombs, damaged files) before they cost minutes or gigabytes.
# The declared sizes are binding: zipfile stops reading a member at its file_size.
_XLSX_MAX_UNPACKED = 200 * 1024 * 1024  # all members, uncompressed
_XLSX_MAX_MEMBERS = 10_000
_XLSX_SHEET_ROWS = 1_048_576  # Excel's own limit; a row number past it means a damaged file
_XLSX_MAX_CELLS = 20_000_000  # cells read, empty ones included
# openpyxl reads the whole shared strings part into memory before the first row.
_XLSX_MAX_SHARED_STRINGS = 100 * 1024 * 1024  # uncompressed

# Caps on what one import may hold, checked while the rows are read, so that a small file
# cannot become a huge list: an 11 KB workbook whose rows all name one 9 MB shared string,
# or a CSV row with a 50 MB name, once made 11 MB To headers and a 900 MB preview. Lengths
# are in characters. A cell or a row over its cap rejects that row (the import goes on); a
# list over its caps is refused whole. The last three can be changed per call (max_rows=,
# max_bytes=, cpu_seconds=) or by environment variable (BULK_MAILER_MAX_ROWS, ...).
MAX_NAME = 1024  # a name: it travels in the To header of every message
MAX_FIELD = 64 * 1024  # any other cell
MAX_ROW = 256 * 1024  # all the cells of one row together
MAX_ROWS = 1_000_000  # rows with content (or list entries) read, rejected ones included
MAX_BYTES = 500 * 1024 * 1024  # the file (or pasted text), and the text of all rows kept
XLSX_CPU_SECONDS = 180.0  # CPU time to read one workbook (a legit 1M-row sheet: ~100 s)
_ENV_MAX_ROWS = "BULK_MAILER_MAX_ROWS"
_ENV_MAX_BYTES = "BULK_MAILER_MAX_BYTES"
_ENV_CPU_SECONDS = "BULK_MAILER_XLSX_CPU_SECONDS"
_TICK = 1000  # work units (lines, rows) between progress reports and cancel checks

Progress = Callable[[int, int], None]  # (done, total): see load_bytes
Cancelled = Callable[[], bool]  # True: stop the import (e.g. a threading.Event's is_set)


class ImportCancelled(RecipientFileError):
    """The caller's cancel check answered True during an import; nothing was imported."""


class _Run:
    """One import's limits and counters; reports progress and honours the cancel check."""

    def __init__(
        self,
        source: str,
        *,
        max_rows: int | None = None,
        max_bytes: int | None = None,
        cpu_seconds: float | None = None,
        progress: Progress | None = None,
        cancelled: Cancelled | None = None,
    ) -> None:
        self.source = source
        self.max_rows = int(_setting(max_rows, _ENV_MAX_ROWS, MAX_ROWS, "max_rows"))
        self.max_bytes = int(_setting(max_bytes, _ENV_MAX_BYTES, MAX_BYTES, "max_bytes"))
        self.cpu_seconds = _setting(cpu_seconds, _ENV_CPU_SECONDS, XLSX_CPU_SECONDS, "cpu_seconds")
        self.progress = progress
        self.cancelled = cancelled
        self.unit = "line"  # what a row's number is: a line of a text file, a sheet's row
        self.rows = 0  # rows with content read
        self.size = 0  # characters in the rows kept
        self.done = 0  # work units done: lines or sheet rows read, then rows checked
        self.total = 0  # the units expected in all; 0 while unknown
        self._next = 0
        self._cpu_start = time.thread_time()

    def step(self, units: int = 1) -> None:
        self.done += max(units, 0)
        if self.done >= self._next:
            self._next = self.done + _TICK
            self.check()

    def check(self) -> None:
        """Stop if cancelled; else tell the caller how far the import is."""
        if self.cancelled is not None and self.cancelled():
            raise ImportCancelled(
                f"{self.source}: the import was cancelled; nothing was imported",
                fix=("Import the list again when you want to use it.",),
            )
        if self.progress is not None:
            self.progress(min(self.done, self.total) if self.total else self.done, self.total)

    def finish(self) -> None:
        self.total = self.done = max(self.done, self.total)
        self.check()

    def file_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise RecipientFileError(
                f"{self.source}: refused, the file is {_size(size)}; at most "
                f"{_size(self.max_bytes)} can be imported; split the list into smaller files, "
                f"or raise the limit with the {_ENV_MAX_BYTES} environment variable"
            )

    def row(self, number: int, size: int) -> None:
        """Count a row with content (rejected or not) and the characters kept from it."""
        self.rows += 1
        if self.rows > self.max_rows:
            raise RecipientFileError(
                f"{self.source}: refused, the list has more than {self.max_rows:,} rows "
                f"({self.unit} {number:,} is past the limit); split it into smaller lists, or "
                f"raise the limit with the {_ENV_MAX_ROWS} environment variable"
            )
        self.size += size
        if self.size > self.max_bytes:
            raise RecipientFileError(
                f"{self.source}: refused, the rows up to {self.unit} {number:,} hold more than "
                f"{_size(self.max_bytes)} of text (the file is small, but its cells repeat long "
                f"values); split the list into smaller files, or raise the limit with the "
                f"{_ENV_MAX_BYTES} environment variable"
            )

    def cpu(self, number: int) -> None:
        """Refuse a workbook that has cost more CPU time than its budget so far."""
        if time.thread_time() - self._cpu_start > self.cpu_seconds:
            raise RecipientFileError(
                f"{self.source}: refused, reading the workbook took more than "
                f"{self.cpu_seconds:g} seconds of CPU time (stopped at row {number:,}): its "
                "cells cost far more to read than usual; save it as .csv and import that, or "
                f"raise the limit with the {_ENV_CPU_SECONDS} environment variable"
            )


def _setting(given: float | None, env: str, default: float, name: str) -> float:
    """A limit: the caller's value, else the environment variable's, else the default."""
    if given is not None:
        value, origin = given, name
    else:
        raw = os.environ.get(env, "").strip()
        if not raw:
            return default
        origin = f"the {env} environment variable"
        try:
            value = float(raw) if isinstance(default, float) else int(raw.replace("_", ""))
        except ValueError:
            value = 0
    if isinstance(value, bool) or not value > 0 or value == float("inf"):
        raise RecipientFileError(
            f"{origin} must be a positive {'number' if isinstance(default, float) else 'whole number'}, "
            f"not {str(given if given is not None else raw)!r}",
            category="invalid_settings",
        )
    return value


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 2**20 else f"{n / 2**20:,.0f} MB"


def load_file(
    path: str | os.PathLike[str],
    email_column: _Column = None,
    name_column: _Column = None,
    *,
    max_rows: int | None = None,
    max_bytes: int | None = None,
    cpu_seconds: float | None = None,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> ImportResult:
    """Read a .csv/.tsv/.txt/.xlsx recipient file; raise RecipientFileError if it cannot be used.

    email_column and name_column pick columns by header, alias ("first_name"), colN or
    1-based number; None means detect them. The name column is copied into each recipient's
    "name" field (see ImportResult.name_column). A file larger than max_bytes is refused
    before it is read; the other keywords are load_bytes'.
    """
    p = Path(path)
    source = str(p)
    run = _Run(
        source, max_rows=max_rows, max_bytes=max_bytes, cpu_seconds=cpu_seconds,
        progress=progress, cancelled=cancelled,
    )
    try:
        if p.is_dir():
            raise RecipientFileError(f"{source}: is a folder, not a file")
        if p.exists() and not p.is_file():
            # a FIFO or a device would block or never end
            raise RecipientFileError(f"{source}: is not a regular file")
        run.file_size(p.stat().st_size)
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise RecipientFileError(f"{source}: file not found") from exc
    except PermissionError as exc:
        raise RecipientFileError(f"{source}: permission denied, the file cannot be read") from exc
    except OSError as exc:
        raise RecipientFileError(f"{source}: cannot be read ({exc.strerror or exc})") from exc
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise RecipientFileError(f"{source!r}: not a usable file path ({exc})") from exc
    return _load_bytes(data, source, email_column, name_column, run)


def load_bytes(
    data: bytes,
    name: str,
    email_column: _Column = None,
    name_column: _Column = None,
    *,
    max_rows: int | None = None,
    max_bytes: int | None = None,
    cpu_seconds: float | None = None,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> ImportResult:
    """Import a file's content (e.g. uploaded in browser mode); the name's suffix picks the format.

    A ZIP file is read as an Excel workbook whatever its name; an old binary .xls (or an
    encrypted workbook) is refused with what to do instead.

    Limits (None: the environment variable named, else the module default): max_rows, the
    rows read (BULK_MAILER_MAX_ROWS, MAX_ROWS); max_bytes, the file's size and the text of
    the rows kept (BULK_MAILER_MAX_BYTES, MAX_BYTES); cpu_seconds, the CPU time a workbook
    may take to read (BULK_MAILER_XLSX_CPU_SECONDS, XLSX_CPU_SECONDS). Past them the whole
    file is refused. A row with a cell over MAX_FIELD characters (MAX_NAME for the name, 1000
    for the address) or over MAX_ROW in all is rejected, naming its line and column.

    progress(done, total) is called every thousand lines or rows and at the end: done counts
    the lines (or sheet rows) read and then the rows checked, total is what is expected in
    all (0 while unknown; it may be revised); the last call has done == total. cancelled()
    is asked as often (from the same thread); when it answers True, ImportCancelled is
    raised. Both run in the importing thread.
    """
    run = _Run(
        name, max_rows=max_rows, max_bytes=max_bytes, cpu_seconds=cpu_seconds,
        progress=progress, cancelled=cancelled,
    )
    return _load_bytes(data, name, email_column, name_column, run)


def _load_bytes(
    data: bytes, name: str, email_column: _Column, name_column: _Column, run: _Run
) -> ImportResult:
    run.file_size(len(data))
    if not data:
        raise RecipientFileError(f"{name}: the file is empty")
    suffix = Path(name).suffix.lower()
    if data.startswith(_OLE_MAGIC):
        if suffix in _XLSX_SUFFIXES:
            raise RecipientFileError(
                f"{name}: the workbook is password-protected (encrypted) or in the old .xls "
                f"format; remove the password in Excel, or {_SAVE_AS}"
            )
        raise RecipientFileError(
            f"{name}: is an old Excel (.xls) workbook, which cannot be read; {_SAVE_AS}"
        )
    if suffix in _OTHER_SPREADSHEETS - {".xls"} or (
        suffix == ".xls" and not data.startswith(_ZIP_MAGIC)
    ):
        raise RecipientFileError(f"{name}: {suffix} files cannot be read; {_SAVE_AS}")
    if suffix in _XLSX_SUFFIXES or data.startswith(_ZIP_MAGIC):
        return _load_xlsx(data, name, _given(email_column), _given(name_column), run)
    run.check()
    text, encoding, warnings = _decode(data)
    if not text.strip():
        raise RecipientFileError(f"{name}: the file is empty")
    if suffix in {".tsv", ".tab"}:
        delimiter, table = "\t", True
    elif suffix == ".csv":
        delimiter, table = None, True
    else:
        # .txt and anything else: a list of addresses, unless it turns out to be a table
        delimiter, table = None, None
    result = _import(
        text, name, email_column, name_column, run, delimiter=delimiter, table=table
    )
    result.encoding = encoding
    result.warnings[:0] = warnings
    return result


def parse_text(
    text: str,
    email_column: _Column = None,
    name_column: _Column = None,
    *,
    max_rows: int | None = None,
    max_bytes: int | None = None,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> ImportResult:
    """Import pasted text: a CSV/TSV table, or addresses split by newlines, commas, ; or spaces.

    The keywords are load_bytes' (max_bytes counts the text's characters).
    """
    run = _Run(
        PASTED, max_rows=max_rows, max_bytes=max_bytes, progress=progress, cancelled=cancelled
    )
    run.file_size(len(text))
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise RecipientFileError(f"{PASTED}: nothing to import, the text is empty")
    return _import(text, PASTED, email_column, name_column, run, delimiter=None, table=None)


def _load_xlsx(
    data: bytes, name: str, chosen: str | None, name_chosen: str | None, run: _Run
) -> ImportResult:
    """The first sheet of a workbook, through the same table logic as a CSV file."""
    _check_zip(data, name)
    run.unit = "row"
    run.check()
    try:
        import openpyxl  # noqa: PLC0415 - slow to import, and only needed for workbooks
    except ImportError as exc:
        raise RecipientFileError(
            f"{name}: reading Excel workbooks needs the openpyxl package; {_SAVE_AS}"
        ) from exc
    try:
        with warnings_module.catch_warnings():
            # openpyxl warns about styles, extensions and the like it does not read
            warnings_module.simplefilter("ignore")
            # data_only: a formula cell gives the value Excel last calculated and saved
            # (or nothing); no formula is ever evaluated here.
            book = openpyxl.load_workbook(
                io.BytesIO(data), read_only=True, data_only=True, keep_links=False
            )
            try:
                sheets = book.worksheets
                if not sheets:
                    raise RecipientFileError(f"{name}: the workbook has no worksheet")
                budget = [_XLSX_MAX_CELLS]
                title = str(sheets[0].title)
                rows, rejected = _sheet_rows(sheets[0], name, budget, run)
                others = [
                    str(sheet.title)
                    for sheet in sheets[1:]
                    if _sheet_has_content(sheet, name, budget, run)
                ]
            finally:
                book.close()
    except RecipientFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged workbook fails in many ways in openpyxl
        detail = _clip(f"{type(exc).__name__}: {exc}".strip(": "), 200)
        raise RecipientFileError(
            f"{name}: cannot be read as an Excel workbook ({detail}); the file may be damaged: "
            "open it in Excel and save it again, or save it as .csv and import that"
        ) from exc
    if not rows and not rejected:
        raise RecipientFileError(f"{name}: the first sheet, {title!r}, is empty")
    run.total = run.done + len(rows)
    result = _import_table(rows, rejected, name, chosen, ", ", name_chosen, run)
    result.encoding = "xlsx"
    if others:
        ignored = _clip(", ".join(repr(t) for t in others), 200)
        sheets_were = "sheets" if len(others) > 1 else "sheet"
        result.warnings.append(
            f"only the first sheet, {title!r}, was read; the other {sheets_were} "
            f"({ignored}) {'were' if len(others) > 1 else 'was'} ignored"
        )
    return result


def _check_zip(data: bytes, name: str) -> None:
    """Refuse what is not a workbook, or would unpack to far too much, before openpyxl sees it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise RecipientFileError(
            f"{name}: is not a valid .xlsx workbook (it is not a readable ZIP file: the file is "
            f"damaged or of another kind); {_SAVE_AS}"
        ) from exc
    if len(members) > _XLSX_MAX_MEMBERS:
        raise RecipientFileError(
            f"{name}: refused, the workbook holds {len(members):,} parts (at most "
            f"{_XLSX_MAX_MEMBERS:,}); {_SAVE_AS}"
        )
    unpacked = sum(member.file_size for member in members)
    if unpacked > _XLSX_MAX_UNPACKED:
        raise RecipientFileError(
            f"{name}: refused, the workbook would unpack to {unpacked / 2**20:,.0f} MB (at most "
            f"{_XLSX_MAX_UNPACKED // 2**20} MB); {_SAVE_AS}"
        )
    for member in members:
        if (
            member.filename.rsplit("/", 1)[-1].casefold() == "sharedstrings.xml"
            and member.file_size > _XLSX_MAX_SHARED_STRINGS
        ):
            raise RecipientFileError(
                f"{name}: refused, the workbook's shared text ({member.filename}) would unpack "
                f"to {_size(member.file_size)} (at most {_size(_XLSX_MAX_SHARED_STRINGS)}); "
                f"{_SAVE_AS}"
            )
    if any(member.flag_bits & 0x1 for member in members):
        raise RecipientFileError(f"{name}: the workbook is password-protected; {_SAVE_AS}")
    if "[Content_Types].xml" not in {member.filename for member in members}:
        raise RecipientFileError(
            f"{name}: is a ZIP archive but not an Excel workbook; {_SAVE_AS}"
        )


def _sheet_rows(
    sheet: Any, name: str, budget: list[int], run: _Run
) -> tuple[list[_Row], list[Rejected]]:
    """Non-blank rows as text, each with its row number in the sheet; trailing empty cells cut.

    Also the rows rejected because a cell or the row is too long (see MAX_FIELD). A shared
    string is one object however many cells name it, so nothing here copies it.
    """
    rows: list[_Row] = []
    rejected: list[Rejected] = []
    try:
        declared = int(sheet.max_row or 0)  # the stored size: a guess for progress only
    except Exception:  # noqa: BLE001 - absent or damaged: progress without a total
        declared = 0
    run.total = 2 * declared if 0 < declared <= _XLSX_SHEET_ROWS else 0
    sheet.reset_dimensions()  # the stored size may be wrong; never pad rows out to it
    for number, values in enumerate(sheet.iter_rows(values_only=True), 1):
        _charge(number, len(values), name, budget)
        run.cpu(number)
        run.step()
        if not values:
            continue
        cells = ["" if value is None else _cell_text(value) for value in values]
        while cells and not cells[-1]:
            cells.pop()
        # lengths first: strip() below would scan a long blank cell
        too_long = _too_long(cells, number, _column_letter)
        if too_long is not None:
            run.row(number, 0)
            too_long.value = _cells_shown(cells)
            rejected.append(too_long)
            continue
        if not any(cell.strip() for cell in cells):
            continue
        run.row(number, sum(len(cell) for cell in cells))
        rows.append((number, cells))
    return rows, rejected


def _sheet_has_content(sheet: Any, name: str, budget: list[int], run: _Run) -> bool:
    """Whether a sheet holds any value (Excel's default empty "Sheet2" earns no warning)."""
    try:
        sheet.reset_dimensions()
        for number, values in enumerate(sheet.iter_rows(values_only=True), 1):
            _charge(number, len(values), name, budget)
            run.cpu(number)
            run.step()
            if any(value is not None and _cell_text(value).strip() for value in values):
                return True
    except RecipientFileError:
        raise
    except Exception:  # noqa: BLE001 - a sheet that is not read must not stop the import
        return True  # something is there: say it was not read
    return False


@dataclass
class _TooLong(Rejected):
    """A row rejected while reading for a cell (index) or the whole row (None) being too long."""

    index: int | None = None
    column: str = ""  # "column 3", "column C": the header's name is added once known

    def named(self, names: list[str]) -> Rejected:
        """A plain Rejected whose reason also gives the column's header name."""
        reason = self.reason
        if self.index is not None and self.index < len(names):
            header = names[self.index]
            if header != f"col{self.index + 1}":
                reason = reason.replace(self.column, f"{self.column} ({_show(header)})", 1)
        return Rejected(self.line, self.value, reason)


def _too_long(cells: list[str], line: int, label: Callable[[int], str]) -> _TooLong | None:
    """The rejection of a row with a cell over MAX_FIELD or over MAX_ROW in all, else None."""
    total = 0
    for i, cell in enumerate(cells):
        size = len(cell)
        total += size
        if size > MAX_FIELD:
            column = label(i)
            return _TooLong(
                line, "",
                f"{column} holds {size:,} characters, more than the {MAX_FIELD:,} a cell may "
                "hold; this row was not imported",
                i, column,
            )
    if total > MAX_ROW:
        return _TooLong(
            line, "",
            f"this row holds {total:,} characters, more than the {MAX_ROW:,} a row may hold; "
            "this row was not imported",
        )
    return None


def _column_number(index: int) -> str:
    return f"column {index + 1}"


def _column_letter(index: int) -> str:
    letters, n = "", index + 1
    while n:
        n, rest = divmod(n - 1, 26)
        letters = chr(65 + rest) + letters
    return f"column {letters}"


def _cells_shown(cells: list[str]) -> str:
    """A short view of a row, without joining its long cells."""
    return _clip(", ".join(_clip(cell, 40) for cell in cells[:10]), 200)


def _charge(number: int, cells: int, name: str, budget: list[int]) -> None:
    if number > _XLSX_SHEET_ROWS:
        raise RecipientFileError(
            f"{name}: refused, a sheet has rows past Excel's last row "
            f"({_XLSX_SHEET_ROWS:,}); the file is damaged; {_SAVE_AS}"
        )
    budget[0] -= cells
    if budget[0] < 0:
        raise RecipientFileError(
            f"{name}: refused, the workbook has more than {_XLSX_MAX_CELLS:,} cells; {_SAVE_AS}"
        )


def _cell_text(value: object) -> str:
    """A cell's value as the text a user expects: 42 not 42.0, dates as ISO dates."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        # Excel shows at most 15 significant digits: 0.1 + 0.2 is "0.3" there, and here
        return format(value, ".15g")
    if isinstance(value, datetime.datetime):
        if value.time() == datetime.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def _decode(data: bytes) -> tuple[str, str, list[str]]:
    """(text, encoding used, warnings). Never fails: latin-1 decodes any byte string."""
    # Excel's "Unicode text" export is UTF-16 with a BOM.
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16", []
        except UnicodeDecodeError:  # e.g. cut off in the middle of a character
            text = data.decode("utf-16", "replace")
            where = _lines_phrase(_lines_matching(text, re.compile("\ufffd")))
            return text, "utf-16", [
                f"{where}: bytes that are not valid UTF-16 were replaced with \ufffd; "
                "the file may be damaged, save it again"
            ]
    try:
        return data.decode("utf-8-sig"), "utf-8", []
    except UnicodeDecodeError:
        pass
    # Not clean UTF-8. One stray Windows-1252 byte in a UTF-8 file must not turn every other
    # accented name into mojibake ("Ä" -> "Ã„"), so weigh the evidence: well-formed multi-byte
    # UTF-8 characters against bytes that are not UTF-8. A real cp1252/latin-1 file has
    # (almost) no well-formed multi-byte sequence at all.
    text = data.decode("utf-8-sig", "surrogateescape")
    bad = len(_BAD_BYTE.findall(text))
    good = len(text) - len(text.encode("ascii", "ignore")) - bad  # non-ASCII, decoded fine
    if good and bad <= _BAD_PER_GOOD * good:
        where = _lines_phrase(_lines_matching(text, _BAD_BYTE))
        return _BAD_BYTE.sub("\ufffd", text), "utf-8", [
            f"{where}: bytes that are not UTF-8 were replaced with \ufffd; "
            "save the file as UTF-8 to keep those characters"
        ]
    body = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return body.decode("cp1252"), "cp1252", [
            "read as Windows-1252 (not UTF-8); if accented letters look wrong, "
            "save the file as UTF-8"
        ]
    except UnicodeDecodeError:
        return body.decode("latin-1"), "latin-1", [
            "read as Latin-1 (not UTF-8); if accented letters look wrong, save the file as UTF-8"
        ]


def _lines_matching(text: str, pattern: re.Pattern[str]) -> list[int]:
    # the same line splitting as _import, so the numbers match the rejected rows'
    lines = io.StringIO(text, newline="").readlines()
    return [number for number, line in enumerate(lines, 1) if pattern.search(line)]


def _lines_phrase(numbers: list[int]) -> str:
    """'line 7', 'lines 3 and 7', 'lines 1, 2, ... and 40 more'."""
    if not numbers:
        return "some lines"
    if len(numbers) == 1:
        return f"line {numbers[0]}"
    shown = [str(n) for n in numbers[:_LINES_SHOWN]]
    more = len(numbers) - len(shown)
    if more:
        return f"lines {', '.join(shown)} and {more} more"
    return f"lines {', '.join(shown[:-1])} and {shown[-1]}"


def _import(
    text: str,
    source: str,
    email_column: _Column,
    name_column: _Column,
    run: _Run,
    *,
    delimiter: str | None,
    table: bool | None,
) -> ImportResult:
    # io's universal newlines split lines exactly as csv.reader counts them (\r, \n, \r\n),
    # so list index + 1 is the physical line number csv reports.
    lines = io.StringIO(text, newline="").readlines()
    run.total = 2 * len(lines)  # each line read, then each row checked
    run.check()
    _ensure_field_limit(len(text) + 2)
    chosen = _given(email_column)
    name_chosen = _given(name_column)
    if delimiter is None:
        delimiter = _sniff(lines)
    rows, broken, warnings = _read_csv(lines, delimiter, run)
    if table is None:
        # naming a column (other than a list's own "name") means the text is a table
        named = name_chosen is not None and name_chosen.casefold() != "name"
        table = chosen is not None or named or _is_table(rows, lines)
    if table:
        run.total = run.done + len(rows)
        result = _import_table(rows, broken, source, chosen, delimiter, name_chosen, run)
        result.warnings.extend(warnings)
        return result
    run.total = run.done + len(lines)
    run.rows = run.size = 0  # the list's entries are counted instead
    return _import_list(lines, source, run)


def _given(column: _Column) -> str | None:
    if column is None or isinstance(column, bool):
        return None
    value = str(column).strip()
    return value or None


def _ensure_field_limit(size: int) -> None:
    # A field can never be longer than the text, so a limit above its length means no
    # "field larger than field limit" error; only ever raise the process-wide limit.
    size = min(size, 2**31 - 1)  # a C long on Windows
    if csv.field_size_limit() < size:
        csv.field_size_limit(size)


def _read_csv(
    lines: list[str], delimiter: str, run: _Run | None = None
) -> tuple[list[_Row], list[Rejected], list[str]]:
    """Parse lines into non-blank rows with their start line; unreadable rows are rejected.

    Returns (rows, rejected, warnings). No line vanishes without a trace: a quote that runs
    on and swallows rows is rejected (see "A broken quote" below), and one that only might
    be missing its closing quote is named in a warning. With a run (not when sniffing), rows
    are counted against its limits and rows too long (MAX_FIELD, MAX_ROW) are rejected.
    """
    rows: list[_Row] = []
    rejected: list[Rejected] = []
    warnings: list[str] = []
    total = len(lines)
    pos = 0  # lines before the current pass
    restarts = 0
    reread = 0  # lines read again after broken-quote recoveries: _MAX_REREAD * total at most
    while pos < total:
        # A sentinel line after the end: if a row swallows it, that row's quote never closed.
        source = itertools.chain(itertools.islice(lines, pos, None), ("\n",))
        reader = csv.reader(source, delimiter=delimiter, strict=False)
        done = 0  # lines read by this reader before the current row
        resume = None
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                start = pos + done + 1
                done = reader.line_num
                if start > total:
                    break
                reason = f"this row cannot be read: {exc}"
                rejected.append(Rejected(start, _line_text(lines, start), reason))
                continue
            start = pos + done + 1
            done = reader.line_num
            end = pos + done  # the row's last physical line
            if run is not None:
                run.step(end - start + 1)
            if end > total:
                if cells and start <= total:
                    restarts += 1
                    if restarts > _MAX_RESTARTS:
                        reason = (
                            'a quoted field starting on this line is never closed (a missing "), '
                            f"so lines {start}-{total} were skipped"
                        )
                    else:
                        reason = (
                            'a quoted field starting on this line is never closed (a missing "), '
                            "so this line was skipped"
                        )
                        resume = start
                    rejected.append(Rejected(start, _line_text(lines, start), reason))
                break
            if end > start:
                width = len(rows[0][1]) if rows else len(_cells_alone(lines[start - 1], delimiter))
                malformed = len(cells) != width or not _well_formed(
                    lines[start - 1 : end], delimiter
                )
                swallowed = _swallowed_row(
                    cells, lines[start:end] if malformed else [], delimiter, width
                )
                if swallowed is not None:
                    if malformed:
                        text = _line_text(lines, start)
                        opened = (
                            f'a quote (") opened on this line is not closed until line {end} '
                            "and swallows lines that look like rows of their own"
                        )
                        if reread + end - start <= _MAX_REREAD * total:
                            # read the rest again from the next line, as if this one were not there
                            reread += end - start
                            again = (
                                f"line {end} was read as a row of its own"
                                if start + 1 == end
                                else f"lines {start + 1}-{end} were read as rows of their own"
                            )
                            reason = f"{opened}; this line was skipped and {again}"
                            rejected.append(Rejected(start, text, reason))
                            resume = start
                            break
                        reason = f"{opened}; lines {start}-{end} were not imported"
                        rejected.append(Rejected(start, text, reason))
                        continue
                    warnings.append(
                        f"line {start}: a quoted cell here runs on to line {end} and holds "
                        f"{_show(swallowed)}, which looks like a row of its own; if a closing "
                        'quote (") is missing, fix the file and import it again'
                    )
            if run is not None:
                # lengths first: strip() below would scan a long blank cell
                too_long = _too_long(cells, start, _column_number)
                if too_long is not None:
                    run.row(start, 0)
                    too_long.value = _line_text(lines, start)
                    rejected.append(too_long)
                    continue
            if any(cell.strip() for cell in cells):
                if run is not None:
                    run.row(start, sum(len(cell) for cell in cells))
                rows.append((start, cells))
        if resume is None:
            break
        pos = resume
    return rows, rejected, warnings


# A broken quote: a cell opens a quote that the file never meant to keep open (a stray " in
# a company name, an unfinished edit). csv then reads every following line into that cell up
# to the next quote character, and the rows on those lines vanish without a trace. But a
# quoted cell may legitimately hold line breaks (an address block "12 Main St\nSpringfield",
# a note), and csv.writer quotes any value that needs it, so the text of one cell can even
# hold a line that looks exactly like a row ("x\nbob@example.com,Bob"). The rule, for a row
# that spans several physical lines:
#   1. "looks like a row": a line of text, read on its own, has as many cells as the first
#      row of the file (the header, usually) and one of them is address-like. The lines
#      tested are the lines of each multi-line cell's text (_swallowed_row).
#   2. the row is broken only if it looks like a row by 1. AND is malformed: its quoting is
#      not well-formed CSV (a closing quote followed by more text, as when the quote that
#      ends the span really is the opening quote of a later row), or it has another number
#      of cells than the first row. For a malformed row, the physical lines after its first
#      are tested by 1. as well (a swallowed row may be split over two cells, e.g. when the
#      line that ends the span is '"Bob",bob@example.com'). A broken row is rejected, naming
#      its line range, and the lines after its first one are read again as rows of their
#      own, like the recovery for a quote that runs to the end of the file (at most
#      _MAX_REREAD times the file's lines in all; past that the whole range is rejected).
#   3. a well-formed row of the right width is kept as it is: csv.writer's output, whatever
#      the values, is always well-formed and as wide as its header, so it reads back
#      exactly. Only its cells' lines are tested by 1. (a row's last physical line always
#      holds the rest of the row, so it would look like a row in any legit file); if one
#      looks like a row, a warning names it, so no row disappears silently even then.


def _swallowed_row(
    cells: list[str], more_lines: list[str], delimiter: str, width: int
) -> str | None:
    """A line of a multi-line cell, or one of more_lines, that reads as a row of its own."""
    multi_line = (cell for cell in cells if "\n" in cell or "\r" in cell)
    texts = itertools.chain(
        (piece for cell in multi_line for piece in _LINE_BREAK.split(cell)),
        (line.rstrip("\r\n") for line in more_lines),
    )
    for text in texts:
        if "@" not in text:
            continue
        parsed = _cells_alone(text, delimiter)
        if len(parsed) == width and any(
            _EMAILISH.fullmatch(value.strip(_BLANKS)) for value in parsed
        ):
            return text
    return None


def _cells_alone(line: str, delimiter: str) -> list[str]:
    """The cells of one line read on its own, an unclosed quote running to its end."""
    try:
        return next(csv.reader([line], delimiter=delimiter, strict=False), [])
    except csv.Error:
        return []


def _well_formed(span: list[str], delimiter: str) -> bool:
    """Whether these lines are valid CSV quoting: what csv.writer writes always is."""
    try:
        for _ in csv.reader(span, delimiter=delimiter, strict=True):
            pass
    except csv.Error:
        return False
    return True


def _line_text(lines: list[str], line: int) -> str:
    return _clip(lines[line - 1].rstrip("\r\n"), 200)


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _show(value: str) -> str:
    # repr() quotes the value and makes controls and line breaks visible in the message
    return repr(_clip(value, 80))


def _sniff(lines: list[str]) -> str:
    """Pick , ; or tab: the one giving a column of addresses and consistent column counts."""
    # a line longer than a row may be is cut: its row is rejected anyway, and parsing it
    # three times here would cost seconds
    sample = [
        line if len(line) <= MAX_ROW else line[:MAX_ROW] + "\n" for line in lines[:_SNIFF_LINES]
    ]
    best, best_score = ",", (False, False, 0.0, 0)
    for delimiter in (",", ";", "\t"):
        rows, _, _ = _read_csv(sample, delimiter)
        if not rows:
            continue
        counts = Counter(len(cells) for _, cells in rows)
        width, matching = counts.most_common(1)[0]
        has_addresses = any(
            _EMAILISH.fullmatch(cell.strip(_BLANKS)) for _, cells in rows for cell in cells
        )
        score = (width >= 2, has_addresses, matching / len(rows), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _is_table(rows: list[_Row], lines: list[str]) -> bool:
    """Whether pasted text / a .txt is a table (header, or a column of names) or a plain list."""
    if not rows:
        return False
    if any(_is_email_header(cell) for cell in rows[0][1]):
        return True
    # Every entry of the list reading holds an '@' ("Ann <a@x>, b@y"): it is a list.
    if all("@" in address for _, address, _, _ in _list_entries(lines)):
        return False
    sample = rows[:_SAMPLE_ROWS]
    if len(sample) < 2:
        return False
    width = Counter(len(cells) for _, cells in sample).most_common(1)[0][0]
    if width < 2:
        return False
    # A column that is mostly not addresses (names, companies) means tabular data; a list
    # of addresses split by commas has an '@' in nearly every piece.
    for col in range(width):
        values = [cells[col] for _, cells in sample if col < len(cells) and cells[col].strip()]
        if values and sum("@" not in v for v in values) * 2 > len(values):
            return True
    return False


def _is_number(value: str) -> bool:
    # isdecimal, not isdigit: int() rejects "²"; short, because int() limits huge strings
    return value.isdecimal() and len(value) <= 9


def _header_key(cell: str) -> str:
    decomposed = unicodedata.normalize("NFKD", cell.casefold())
    return "".join(ch for ch in decomposed if ch.isalnum())


def _is_email_header(cell: str) -> bool:
    return _header_key(cell) in _EMAIL_HEADERS


def _has_header(rows: list[_Row], *chosen: str | None) -> bool:
    first = rows[0][1]
    for given in chosen:
        if given is not None and not _is_number(given):
            wanted = given.casefold()
            if any(cell.strip().casefold() == wanted for cell in first):
                return True
    if any(_is_email_header(cell) for cell in first):
        return True
    # Header cells never hold an '@'; data rows below hold addresses.
    if any("@" in cell for cell in first):
        return False
    return any(
        _EMAILISH.fullmatch(cell.strip(_BLANKS))
        for _, cells in rows[1:_SAMPLE_ROWS]
        for cell in cells
    )


def _column_names(header: list[str], width: int) -> list[str]:
    """Unique keys: the stripped header cell, or colN when empty, missing or repeated."""
    names: list[str] = []
    seen: set[str] = set()
    for i in range(width):
        name = header[i].strip() if i < len(header) else ""
        if not name or name in seen:
            name = f"col{i + 1}"
        base, k = name, 2
        while name in seen:
            name, k = f"{base}_{k}", k + 1
        seen.add(name)
        names.append(name)
    return names


def _aliases(names: list[str]) -> list[tuple[str, int]]:
    """Template-friendly extra keys: 'First Name' -> first_name, 'Code' -> code; real names win."""
    taken = set(names)
    aliases = []
    for i, name in enumerate(names):
        if name.isidentifier() and name.islower():
            continue
        alias = re.sub(r"\W+", "_", name).strip("_").lower()
        if alias[:1].isdigit():
            alias = "_" + alias
        if alias and alias.isidentifier() and alias not in taken:
            taken.add(alias)
            aliases.append((alias, i))
    return aliases


def _find_column(
    names: list[str],
    aliases: list[tuple[str, int]],
    header: list[str],
    data: list[_Row],
    chosen: str | None,
    source: str,
) -> int:
    """Index of the address column: the caller's choice, a header name, or mostly addresses."""
    listing = ", ".join(repr(n) for n in names)
    if chosen is not None:
        index = _resolve_column(names, aliases, chosen)
        if index is None:
            raise RecipientFileError(
                f"{source}: there is no column {chosen!r}; the columns are: {listing}",
                category="invalid_settings",
            )
        return index
    for i, cell in enumerate(header):
        if _is_email_header(cell):
            return i
    sample = data[:_SAMPLE_ROWS]
    for i in range(len(names)):
        values = [
            cells[i].strip(_BLANKS) for _, cells in sample if i < len(cells) and cells[i].strip()
        ]
        hits = sum(1 for v in values if _EMAILISH.fullmatch(v))
        if hits and hits * 2 >= len(values):
            return i
    raise RecipientFileError(
        f"{source}: no column of email addresses found (the columns are: {listing}); "
        "name the column 'email' in a header row, or choose the column to use"
    )


def _resolve_column(names: list[str], aliases: list[tuple[str, int]], chosen: str) -> int | None:
    """The column a caller named: exact name, then any case, then alias, then 1-based number."""
    for i, name in enumerate(names):
        if name == chosen:
            return i
    folded = chosen.casefold()
    for i, name in enumerate(names):
        if name.casefold() == folded:
            return i
    for alias, i in aliases:
        if alias == folded:
            return i
    if _is_number(chosen) and 1 <= int(chosen) <= len(names):
        return int(chosen) - 1
    return None


def _find_name_columns(
    names: list[str],
    aliases: list[tuple[str, int]],
    header: list[str],
    chosen: str | None,
    source: str,
) -> tuple[str | None, list[int]]:
    """(what ImportResult.name_column says, the column indexes joined into "name").

    The caller's choice; else a column called "name" (or "Name": its alias), else one called
    like a whole name ("Full Name", "Display Name"); else first and last name columns joined.
    """
    if chosen is not None:
        index = _resolve_column(names, aliases, chosen)
        if index is None:
            listing = ", ".join(repr(n) for n in names)
            raise RecipientFileError(
                f"{source}: there is no column {chosen!r} to take the names from; "
                f"the columns are: {listing}",
                category="invalid_settings",
            )
        return names[index], [index]
    if "name" in names:
        return "name", [names.index("name")]
    for alias, i in aliases:
        if alias == "name":
            return names[i], [i]
    keys = [_header_key(cell) for cell in header]
    for i, key in enumerate(keys):
        if key in _NAME_HEADERS:
            return names[i], [i]
    first = next((i for i, key in enumerate(keys) if key in _FIRST_NAME_HEADERS), None)
    last = next((i for i, key in enumerate(keys) if key in _LAST_NAME_HEADERS), None)
    if first is not None and last is not None:
        return f"{names[first]} + {names[last]}", [first, last]
    return None, []


class _Collector:
    """Validates addresses and dedupes them as rows arrive, in file order."""

    def __init__(self) -> None:
        self.recipients: list[Recipient] = []
        self.rejected: list[Rejected] = []
        self.duplicates: list[Duplicate] = []
        self._first_line: dict[str, int] = {}

    def add(self, line: int, cell: str, value: str, fields: dict[str, str], what: str) -> None:
        address, reason = _check_address(cell, what)
        if reason:
            self.rejected.append(Rejected(line, _clip(value, 200), reason))
            return
        key = address.casefold()
        first = self._first_line.get(key)
        if first is not None:
            self.duplicates.append(Duplicate(line, address, first))
            return
        self._first_line[key] = line
        fields["email"] = address
        self.recipients.append(Recipient(address, fields, line))


def _check_address(cell: str, what: str) -> tuple[str, str]:
    """(normalised address, "") or ("", the reason in plain words)."""
    address = cell.strip(_BLANKS)
    if not address:
        return "", f"no email address in {what}"
    if _CONTROL.search(address):
        return "", (
            f"{_show(address)} is not a valid email address: it contains a line break "
            "or a control character"
        )
    if len(address) > _MAX_ADDRESS:
        return "", (
            f"{_show(address)} in {what} is not a valid email address: it is {len(address):,} "
            f"characters long, far too long (at most {_MAX_ADDRESS:,})"
        )
    quick = _plain_address(address)
    if quick is not None:
        return quick, ""
    try:
        info = validate_email(address, check_deliverability=False)
    except ValueError as exc:  # EmailNotValidError, and any odd IDNA/Unicode error
        return "", f"{_show(address)}{_NOT_VALID}{_plain_reason(address, str(exc))}"
    return info.normalized, ""


_NOT_VALID = " is not a valid email address: "


def _plain_reason(address: str, said: str) -> str:
    """email-validator's reason in plain words where a common mistake explains it."""
    at = address.count("@")
    if at > 1:
        return "more than one @"
    if at == 0:
        return "no @ (an address looks like name@example.com)"
    local, _, domain = address.rpartition("@")
    if not local:
        return "nothing before the @"
    if not domain:
        return "nothing after the @"
    if any(c.isspace() for c in address):
        return "it contains a space"
    if "should have a period" in said:
        return f"the part after the @ has no dot ({domain}.com?)"
    if ".." in address:
        return "two dots in a row"
    return said[:1].lower() + said[1:].rstrip(".")


# An ASCII address whose part before the @ is a plain dot-atom: for these email-validator's
# verdict depends on the domain (and the lengths) only, so each domain is checked once.
_DOT_ATOM_AT = re.compile(r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)@([^@]+)")


def _plain_address(address: str) -> str | None:
    """The normalised form of a plain address whose domain is valid; None: ask email-validator."""
    match = _DOT_ATOM_AT.fullmatch(address)
    if match is None or len(match[1]) > 64 or len(address) > 254:
        return None
    domain = _valid_domain(match[2])
    if domain is None:
        return None
    normalised = f"{match[1]}@{domain}"
    return normalised if len(normalised) <= 254 else None


@functools.lru_cache(maxsize=65536)
def _valid_domain(domain: str) -> str | None:
    """The domain as email-validator normalises it, or None when it refuses it."""
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain
    except ValueError:
        return None


def _import_table(
    rows: list[_Row],
    broken: list[Rejected],
    source: str,
    chosen: str | None,
    delimiter: str,
    name_chosen: str | None,
    run: _Run,
) -> ImportResult:
    if not rows:
        raise RecipientFileError(f"{source}: no rows found, only blank or unreadable lines")
    width = max(len(cells) for _, cells in rows)
    header_row = _has_header(rows, chosen, name_chosen)
    header = rows[0][1] if header_row else []
    data = rows[1:] if header_row else rows
    names = _column_names(header, width)
    aliases = _aliases(names)
    index = _find_column(names, aliases, header, data, chosen, source)
    name_column, name_indexes = _find_name_columns(names, aliases, header, name_chosen, source)
    column = names[index]
    what = f"column {column!r}"
    if name_column is None:
        name_what = ""
    elif len(name_indexes) == 1:
        name_what = f"the name in column {_show(name_column)}"
    else:
        name_what = "the name in columns " + " + ".join(_show(names[i]) for i in name_indexes)
    out = _Collector()
    out.rejected.extend(r.named(names) if isinstance(r, _TooLong) else r for r in broken)
    for line, cells in data:
        run.step()
        if len(cells) < width:
            cells = cells + [""] * (width - len(cells))
        fields = dict(zip(names, cells, strict=True))
        for alias, i in aliases:
            fields[alias] = cells[i]
        if len(name_indexes) == 1:
            fields["name"] = cells[name_indexes[0]]
        elif name_indexes:
            fields["name"] = " ".join(
                part for part in (cells[i].strip(_BLANKS) for i in name_indexes) if part
            )
        # an empty address cell: show the whole row, so the user can find it
        value = cells[index].strip() or delimiter.join(cells).rstrip(delimiter)
        if name_indexes and len(fields["name"]) > MAX_NAME:
            out.rejected.append(Rejected(line, _clip(value, 200), _name_too_long(
                name_what, len(fields["name"])
            )))
            continue
        out.add(line, cells[index], value, fields, what)
    out.rejected.sort(key=lambda r: r.line)
    keys = [*names, *(a for a, _ in aliases)]
    if "email" not in keys:
        keys.append("email")
    if name_indexes and "name" not in keys:
        keys.append("name")
    run.finish()
    return ImportResult(
        out.recipients, out.rejected, out.duplicates, keys, column, source,
        columns=list(names), name_column=name_column,
    )


def _list_entries(lines: list[str]) -> Iterator[tuple[int, str, str, str]]:
    """(line, address, name, original piece) for each entry of an address list."""
    for number, raw in enumerate(lines, 1):
        text = raw.rstrip("\r\n")
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not any(ch in text for ch in ',;"<'):
            for token in text.split():
                yield number, token, "", token
            continue
        for piece in _LIST_PIECE.findall(text):
            piece = piece.strip()
            if not piece:
                continue
            match = _NAME_ADDR.fullmatch(piece)
            if match:
                yield number, match[2], _unquote(match[1].strip()), piece
            else:
                for token in piece.split():
                    yield number, token, "", token


def _unquote(name: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return name


def _name_too_long(what: str, size: int) -> str:
    return (
        f"{what} is {size:,} characters long, more than the {MAX_NAME:,} a name may have; "
        "this row was not imported"
    )


def _import_list(lines: list[str], source: str, run: _Run) -> ImportResult:
    out = _Collector()
    last = 0
    for line, address, name, piece in _list_entries(lines):
        run.step(line - last)
        last = line
        run.row(line, 0)  # the text's size was checked before reading
        if len(name) > MAX_NAME:
            out.rejected.append(Rejected(line, _clip(piece, 200), _name_too_long(
                "the name of this entry", len(name)
            )))
            continue
        out.add(line, address, piece, {"name": name}, "this entry")
    if not (out.recipients or out.rejected or out.duplicates):
        raise RecipientFileError(f"{source}: no email addresses found")
    run.finish()
    return ImportResult(
        out.recipients, out.rejected, out.duplicates, ["email", "name"], "email", source,
        columns=["email", "name"], name_column="name",
    )
