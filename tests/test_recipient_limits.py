"""Recipient import limits: small files that would become huge lists, progress, cancel, CPU budget."""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import openpyxl
import pytest

from backend import recipients
from backend.errors import RecipientFileError
from backend.recipients import (
    MAX_FIELD,
    MAX_NAME,
    MAX_ROW,
    ImportCancelled,
    ImportResult,
    load_bytes,
    load_file,
    parse_text,
)

_MAIN = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG = "http://schemas.openxmlformats.org/package/2006"
_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml"


def shared_string_xlsx(strings: list[str], rows: list[list[int | str]]) -> bytes:
    """A workbook written by hand, as Excel does: an int cell names a shared string by index,
    a str cell is inline text. (openpyxl writes inline strings only.)"""

    def cell(ref: str, value: int | str) -> str:
        if isinstance(value, int):
            return f'<c r="{ref}" t="s"><v>{value}</v></c>'
        return f'<c r="{ref}" t="inlineStr"><is><t>{escape(value)}</t></is></c>'

    sheet_rows = "".join(
        f'<row r="{n}">'
        + "".join(cell(f"{chr(65 + i)}{n}", value) for i, value in enumerate(row))
        + "</row>"
        for n, row in enumerate(rows, 1)
    )
    parts = {
        "[Content_Types].xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="{_PKG}/content-types">'
            f'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{_TYPE}.sheet.main+xml"/>'
            f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_TYPE}.worksheet+xml"/>'
            f'<Override PartName="/xl/sharedStrings.xml" ContentType="{_TYPE}.sharedStrings+xml"/>'
            "</Types>"
        ),
        "_rels/.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{_PKG}/relationships">'
            f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>"
        ),
        "xl/workbook.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><workbook {_MAIN} xmlns:r="{_REL}"><sheets>'
            '<sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{_PKG}/relationships">'
            f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{_REL}/sharedStrings" Target="sharedStrings.xml"/>'
            "</Relationships>"
        ),
        "xl/worksheets/sheet1.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><worksheet {_MAIN}><sheetData>{sheet_rows}'
            "</sheetData></worksheet>"
        ),
        "xl/sharedStrings.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><sst {_MAIN} count="{len(strings)}" '
            f'uniqueCount="{len(strings)}">'
            + "".join(f"<si><t>{escape(s)}</t></si>" for s in strings)
            + "</sst>"
        ),
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return out.getvalue()


def plain_xlsx(rows: list[list[object]]) -> bytes:
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def biggest_value(result: ImportResult) -> int:
    return max((len(v) for r in result.recipients for v in r.fields.values()), default=0)


# --- the amplifying workbook and the long CSV row ------------------------------------------


def test_small_workbook_naming_one_huge_shared_string_rejects_each_row_quickly() -> None:
    # 1000 rows, each name cell pointing at one 9 MB shared string: ~20 KB on disk, 9 GB of
    # names once read (the attack sent 11 MB To headers)
    rows: list[list[int | str]] = [["email", "name"]]
    rows += [[f"u{i}@example.com", 0] for i in range(1000)]
    rows.append(["ok@example.com", "Olga"])
    data = shared_string_xlsx(["N" * 9_000_000], rows)
    assert len(data) < 40_000
    tracemalloc.start()
    began = time.perf_counter()
    try:
        result = load_bytes(data, "amplifier.xlsx")
        seconds = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [r.email for r in result.recipients] == ["ok@example.com"]
    assert len(result.rejected) == 1000
    first = result.rejected[0]
    assert first.line == 2
    assert first.reason.startswith("column B ('name') holds 9,000,000 characters, more than the 65,536")
    assert all(len(r.value) <= 200 for r in result.rejected)
    assert seconds < 10, seconds
    assert peak < 150 * 2**20, peak  # the 9 MB string and openpyxl's own, never a copy per row
    assert len(json.dumps(result.preview())) < 300_000


def test_a_shared_string_under_the_cell_cap_repeated_past_the_list_size_refuses_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 60 KB is a legal cell, but 500 rows of it are 30 MB of text from a 20 KB file
    rows: list[list[int | str]] = [["email", "note"]]
    rows += [[f"u{i}@example.com", 0] for i in range(500)]
    data = shared_string_xlsx(["n" * 60_000], rows)
    with pytest.raises(RecipientFileError) as info:
        load_bytes(data, "notes.xlsx", max_bytes=10_000_000)
    message = info.value.message
    assert "notes.xlsx: refused, the rows up to row 168 hold more than 10 MB of text" in message
    assert "BULK_MAILER_MAX_BYTES" in message and info.value.category == "file_error"
    monkeypatch.setenv("BULK_MAILER_MAX_BYTES", "5000000")
    with pytest.raises(RecipientFileError, match="up to row 85 hold more than 5 MB"):
        load_bytes(data, "notes.xlsx")
    monkeypatch.setenv("BULK_MAILER_MAX_BYTES", "40000000")
    assert len(load_bytes(data, "notes.xlsx").recipients) == 500


def test_csv_row_with_a_50_mb_name_is_rejected_and_the_rest_imported(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "email,name\nann@example.com,Ann\nbig@example.com," + "x" * 50_000_000 + "\nbob@example.com,Bob\n"
    )
    began = time.perf_counter()
    result = load_file(path)
    seconds = time.perf_counter() - began
    assert [(r.email, r.fields["name"]) for r in result.recipients] == [
        ("ann@example.com", "Ann"), ("bob@example.com", "Bob")
    ]
    [bad] = result.rejected
    assert bad.line == 3 and len(bad.value) <= 200
    assert bad.reason == (
        "column 2 ('name') holds 50,000,000 characters, more than the 65,536 a cell may hold; "
        "this row was not imported"
    )
    assert seconds < 15, seconds


def test_a_name_over_1_kb_rejects_its_row_in_tables_and_lists() -> None:
    long_name = "N" * (MAX_NAME + 1)
    text = f"email,name\na@example.com,{long_name}\nb@example.com,{'M' * MAX_NAME}\n"
    result = parse_text(text)
    assert [r.email for r in result.recipients] == ["b@example.com"]
    [bad] = result.rejected
    assert (bad.line, bad.value) == (2, "a@example.com")
    assert bad.reason.startswith("the name in column 'name' is 1,025 characters long, more than the 1,024")
    # first and last name joined
    half = "F" * 600
    result = parse_text(f"email,First Name,Last Name\nc@example.com,{half},{half}\n")
    [bad] = result.rejected
    assert bad.reason.startswith("the name in columns 'First Name' + 'Last Name' is 1,201 characters")
    # a list's "Name <address>" entries
    result = parse_text(f'"{long_name}" <d@example.com>, e@example.com')
    assert [r.email for r in result.recipients] == ["e@example.com"]
    assert result.rejected[0].reason.startswith("the name of this entry is 1,025 characters long")
    # the address column keeps its own, smaller cap, naming the column
    result = parse_text(f"email,name\n{'a' * 1500}@example.com,Al\n")
    assert "in column 'email' is not a valid email address: it is 1,512 characters long" in (
        result.rejected[0].reason
    )


def test_a_row_over_256_kb_is_rejected_even_when_each_cell_is_allowed() -> None:
    cell = "z" * (MAX_FIELD - 10)
    text = "email,a,b,c,d,e\n" + f"x@example.com,{','.join([cell] * 5)}\n" + "y@example.com,1,2,3,4,5\n"
    result = parse_text(text)
    assert [r.email for r in result.recipients] == ["y@example.com"]
    [bad] = result.rejected
    assert bad.line == 2
    assert bad.reason.startswith(f"this row holds {5 * (MAX_FIELD - 10) + 13:,} characters, more than the {MAX_ROW:,}")
    assert biggest_value(result) < MAX_FIELD


def test_too_many_rows_refuse_the_file_naming_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "email\n" + "".join(f"u{i}@example.com\n" for i in range(20))
    assert len(parse_text(text, max_rows=21).recipients) == 20  # the header is a row
    with pytest.raises(RecipientFileError, match=r"more than 20 rows \(line 21 is past the limit\)"):
        parse_text(text, max_rows=20)
    monkeypatch.setenv("BULK_MAILER_MAX_ROWS", "10")
    with pytest.raises(RecipientFileError, match="more than 10 rows.*BULK_MAILER_MAX_ROWS"):
        load_bytes(text.encode(), "l.csv")
    with pytest.raises(RecipientFileError, match="more than 10 rows"):
        parse_text(" ".join(f"u{i}@example.com" for i in range(20)))  # list entries count
    monkeypatch.setenv("BULK_MAILER_MAX_ROWS", "lots")
    with pytest.raises(RecipientFileError, match="BULK_MAILER_MAX_ROWS environment variable must be a positive whole number, not 'lots'") as info:
        parse_text(text)
    assert info.value.category == "invalid_settings"


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as f:  # sparse: 600 MB on paper, nothing on the disk
        f.truncate(600 * 2**20)
    began = time.perf_counter()
    with pytest.raises(RecipientFileError, match="refused, the file is 600 MB; at most 500 MB"):
        load_file(path)
    assert time.perf_counter() - began < 1
    with pytest.raises(RecipientFileError, match="the file is 40 bytes; at most 30 bytes"):
        load_bytes(b"email\n" + b"a" * 20 + b"@example.com\n\n", "s.csv", max_bytes=30)


def test_a_huge_shared_strings_part_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    data = shared_string_xlsx(["x" * 5000], [["email"], ["a@example.com"], [0]])
    monkeypatch.setattr(recipients, "_XLSX_MAX_SHARED_STRINGS", 4000)

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("openpyxl must not see a refused file")

    monkeypatch.setattr(openpyxl, "load_workbook", no_parsing)
    with pytest.raises(RecipientFileError, match=r"shared text \(xl/sharedStrings.xml\) would unpack to 5,\d\d\d bytes \(at most 4,000 bytes\)"):
        load_bytes(data, "s.xlsx")


# --- the preview -----------------------------------------------------------------------


def test_the_preview_payload_is_bounded_whatever_the_rows_hold() -> None:
    wide = "email," + ",".join(f"c{i}" for i in range(250)) + "\n"
    cell = "v" * 1000  # 250 KB a row: under every cap, and 25 MB as 100 preview rows
    text = wide + "".join(f"u{i}@example.com," + ",".join([cell] * 250) + "\n" for i in range(120))
    result = parse_text(text)
    assert len(result.recipients) == 120
    preview = result.preview(rows=100, rejects=500)
    size = len(json.dumps(preview))
    assert size <= recipients.PREVIEW_MAX_BYTES
    assert preview["truncated"] is True and 0 < len(preview["rows"]) < 100
    assert preview["counts"] == {"valid": 120, "invalid": 0, "duplicates": 0}
    assert all(len(v) <= 200 for row in preview["rows"] for v in row["fields"].values())
    small = parse_text("a@example.com, b@example.com").preview()
    assert small["truncated"] is False and [r["email"] for r in small["rows"]] == ["a@example.com", "b@example.com"]


# --- progress, cancel and the CPU budget ---------------------------------------------------


def big_csv(rows: int) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["email", "name"])
    for i in range(rows):
        writer.writerow([f"user{i}@example{i % 7}.com", f"Name {i}"])
    return buf.getvalue().encode()


@pytest.mark.parametrize("kind", ["csv", "xlsx", "text", "list"])
def test_progress_is_reported_and_ends_at_the_total(kind: str) -> None:
    calls: list[tuple[int, int]] = []
    n = 5000
    if kind == "csv":
        result = load_bytes(big_csv(n), "p.csv", progress=lambda d, t: calls.append((d, t)))
    elif kind == "xlsx":
        data = plain_xlsx([["email"], *([f"u{i}@example.com"] for i in range(n))])
        result = load_bytes(data, "p.xlsx", progress=lambda d, t: calls.append((d, t)))
    elif kind == "text":
        result = parse_text(big_csv(n).decode(), progress=lambda d, t: calls.append((d, t)))
    else:
        text = "\n".join(f"u{i}@example.com" for i in range(n))
        result = parse_text(text, progress=lambda d, t: calls.append((d, t)))
    assert len(result.recipients) == n
    assert len(calls) >= 5  # every thousand lines or rows read, then checked
    dones = [d for d, _ in calls]
    assert dones == sorted(dones)
    assert all(d <= t for d, t in calls if t)
    assert calls[-1][0] == calls[-1][1] >= 2 * n


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_cancel_stops_the_import(kind: str, tmp_path: Path) -> None:
    stop = threading.Event()
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done >= 3000:
            stop.set()

    if kind == "csv":
        path = tmp_path / "c.csv"
        path.write_bytes(big_csv(20_000))
    else:
        path = tmp_path / "c.xlsx"
        path.write_bytes(plain_xlsx([["email"], *([f"u{i}@example.com"] for i in range(20_000))]))
    with pytest.raises(ImportCancelled) as info:
        load_file(path, progress=progress, cancelled=stop.is_set)
    assert info.value.message == f"{path}: the import was cancelled; nothing was imported"
    assert isinstance(info.value, RecipientFileError) and info.value.category == "file_error"
    assert max(seen) < 5000  # stopped at the next check, not at the end
    # cancelled before it starts: nothing is read
    with pytest.raises(ImportCancelled):
        parse_text("a@example.com", cancelled=lambda: True)


def test_a_workbook_over_its_cpu_budget_is_refused_naming_the_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = plain_xlsx([["email", "a", "b"], *([f"u{i}@example.com", i, f"x{i}"] for i in range(20_000))])
    began = time.perf_counter()
    with pytest.raises(RecipientFileError) as info:
        load_bytes(data, "slow.xlsx", cpu_seconds=0.3)
    seconds = time.perf_counter() - began
    assert "slow.xlsx: refused, reading the workbook took more than 0.3 seconds of CPU time (stopped at row " in (
        info.value.message
    )
    assert "BULK_MAILER_XLSX_CPU_SECONDS" in info.value.message
    assert seconds < 2.5, seconds  # stopped near the budget, not after the whole sheet
    monkeypatch.setenv("BULK_MAILER_XLSX_CPU_SECONDS", "0.2")
    with pytest.raises(RecipientFileError, match="more than 0.2 seconds of CPU"):
        load_bytes(data, "slow.xlsx")
    monkeypatch.delenv("BULK_MAILER_XLSX_CPU_SECONDS")
    assert len(load_bytes(data, "slow.xlsx").recipients) == 20_000


def test_limits_do_not_refuse_an_ordinary_list(tmp_path: Path) -> None:
    path = tmp_path / "ok.csv"
    path.write_bytes(big_csv(2000))
    result = load_file(path)
    assert len(result.recipients) == 2000 and not result.rejected
    assert os.environ.get("BULK_MAILER_MAX_ROWS") is None
