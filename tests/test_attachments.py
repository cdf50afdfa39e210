"""Tests for backend.attachments: loading, per-row paths kept inside a folder, sizes, delivery."""

from __future__ import annotations

import builtins
import email
import email.policy
import io
import os
import pathlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import attachments
from backend.attachments import (
    Attachment,
    RowAttachmentError,
    check_attachments,
    check_filename,
    encoded_size,
    estimated_size,
    guess_content_type,
    large_message_warning,
    load_attachment,
    load_attachments,
    planned_sizes,
    resolve_row_attachment,
    resolve_row_attachments,
    row_attachments,
    server_size_limit,
    size_problems,
    split_cell,
)
from backend.compose import Sender, Template, render
from backend.errors import AttachmentError, InputError
from backend.recipients import Recipient
from backend.settings import SmtpSettings
from backend.transports.base import Envelope
from backend.transports.smtp import SmtpTransport

SENDER = Sender("me@sender.example", "Me")
posix_only = pytest.mark.skipif(os.name == "nt", reason="FIFOs and /dev exist on POSIX only")


def person(line: int, email_addr: str = "bob@example.com", **fields: str) -> Recipient:
    return Recipient(email_addr, {"email": email_addr, **fields}, line)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An attachments folder with a few files, and a secret file next to (outside) it."""
    root = tmp_path / "att"
    (root / "sub").mkdir(parents=True)
    (root / "a.pdf").write_bytes(b"%PDF-1.4 a")
    (root / "b.txt").write_bytes(b"bee\n")
    (root / "sub" / "c.csv").write_bytes(b"x,y\n1,2\n")
    (tmp_path / "secret.txt").write_bytes(b"top secret")
    return root


class Opens:
    """Records (and refuses) every way of opening a file, to prove none happened."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []

        def record(real):
            def opener(path, *args, **kwargs):
                self.paths.append(str(path))
                raise AssertionError(f"opened {path!r}")

            return opener

        monkeypatch.setattr(builtins, "open", record(builtins.open))
        monkeypatch.setattr(io, "open", record(io.open))
        monkeypatch.setattr(os, "open", record(os.open))
        monkeypatch.setattr(pathlib.Path, "open", lambda self, *a, **k: record(None)(self))


# --- Attachment and file names -----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a\nb.pdf", "a\rb.pdf", "a\x00b", "tab\there.txt", "esc\x1b[31m.txt", "nel\x85.txt",
     "ls\u2028.txt", "bad\udcff.txt"],
)  # fmt: skip
def test_control_characters_in_file_names_are_refused(name: str) -> None:
    with pytest.raises(RowAttachmentError) as info:
        Attachment(name, "application/pdf", b"x")
    assert "control character" in info.value.message
    assert isinstance(info.value, AttachmentError) and isinstance(info.value, InputError)
    assert info.value.category == "attachment_error"


@pytest.mark.parametrize(
    ("name", "words"),
    [("", "no file name"), ("  ", "no file name"), ("a/b.pdf", "is a path"),
     ("a\\b.pdf", "is a path"), ("..", "is a path"), ("=?utf-8?q?x?=.pdf", "encoded word"),
     ("x" * 256, "longer than 255"), (" a.pdf", "starts or ends with a space"),
     ("a.pdf\u00a0", "starts or ends with a space")],
)  # fmt: skip
def test_unusable_file_names_are_refused(name: str, words: str) -> None:
    with pytest.raises(RowAttachmentError) as info:
        check_filename(name, row=4, field="file")
    assert words in info.value.message
    assert (info.value.row, info.value.field) == (4, "file")
    assert info.value.message.startswith("line 4: ")


@pytest.mark.parametrize("ctype", ["pdf", "application/", "a/b c", "text/plain; charset=x", "x/y\n"])
def test_bad_content_types_are_refused(ctype: str) -> None:
    with pytest.raises(RowAttachmentError, match="not a MIME type"):
        Attachment("a.bin", ctype, b"x")


@pytest.mark.parametrize("ctype", ["message/rfc822", "multipart/mixed"])
def test_message_and_multipart_types_are_refused_for_files(ctype: str) -> None:
    with pytest.raises(RowAttachmentError, match="octet-stream"):
        Attachment("a.eml", ctype, b"x")


def test_attachment_data_must_be_bytes() -> None:
    with pytest.raises(RowAttachmentError, match="bytes"):
        Attachment("a.txt", "text/plain", "text")  # type: ignore[arg-type]


def test_attachment_repr_leaves_out_the_bytes() -> None:
    a = Attachment("a.pdf", "application/pdf", b"secret" * 1000)
    assert "secret" not in repr(a)
    assert (a.maintype, a.subtype, a.size) == ("application", "pdf", 6000)


@pytest.mark.parametrize(
    ("name", "ctype"),
    [("a.pdf", "application/pdf"), ("A.PDF", "application/pdf"), ("x.png", "image/png"),
     ("r.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
     ("r.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
     ("t.csv", "text/csv"), ("t.txt", "text/plain"), ("b.tar.gz", "application/gzip"),
     ("b.gz", "application/gzip"), ("m.eml", "application/octet-stream"),
     ("noext", "application/octet-stream"), ("x.unknownext", "application/octet-stream"),
     ("data:x.pdf", "application/pdf"), ("a#b.zip", "application/zip"),
     ("résumé.pdf", "application/pdf"), ("weird.p df", "application/octet-stream")],
)  # fmt: skip
def test_content_type_from_the_extension(name: str, ctype: str) -> None:
    assert guess_content_type(name) == ctype


# --- loading files -----------------------------------------------------------------------


def test_load_attachment_reads_name_type_and_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10
    p = tmp_path / "Résumé 2024.pdf"
    p.write_bytes(data)
    a = load_attachment(p)
    assert (a.filename, a.content_type, a.data) == ("Résumé 2024.pdf", "application/pdf", data)
    assert load_attachment(str(p), filename="cv.pdf").filename == "cv.pdf"


def test_load_attachment_refuses_a_folder(tmp_path: Path) -> None:
    with pytest.raises(RowAttachmentError, match="is a folder") as info:
        load_attachment(tmp_path)
    assert info.value.path == str(tmp_path)


def test_load_attachment_reports_a_missing_file_with_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pdf"
    with pytest.raises(RowAttachmentError) as info:
        load_attachment(missing, row=7, field="file")
    assert str(missing) in info.value.message and "does not exist" in info.value.message
    assert (info.value.row, info.value.path) == (7, str(missing))


@posix_only
def test_load_attachment_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.pdf"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    with pytest.raises(RowAttachmentError, match="not a regular file"):
        load_attachment(fifo)


@posix_only
def test_load_attachment_refuses_a_device() -> None:
    with pytest.raises(RowAttachmentError, match="not a regular file"):
        load_attachment("/dev/zero", filename="zero.bin")


def test_load_attachment_refuses_files_over_the_cap(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(attachments, "MAX_FILE_BYTES", 10)
    p = tmp_path / "big.bin"
    p.write_bytes(b"x" * 11)
    with pytest.raises(RowAttachmentError, match="cannot be sent by email"):
        load_attachment(p)


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root reads everything")
def test_load_attachment_reports_permission_denied(tmp_path: Path) -> None:
    p = tmp_path / "locked.pdf"
    p.write_bytes(b"x")
    p.chmod(0)
    with pytest.raises(RowAttachmentError, match="permission denied"):
        load_attachment(p)


def test_load_attachment_refuses_a_control_character_in_the_name_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "evil\nBcc: x@y.example.pdf"
    p.write_bytes(b"x")
    opens = Opens(monkeypatch)
    with pytest.raises(RowAttachmentError, match="control character"):
        load_attachment(p)
    assert opens.paths == []


BIDI = ["\u202e", "\u202a", "\u202b", "\u202c", "\u202d", "\u2066", "\u2067", "\u2068",
        "\u2069", "\u200e", "\u200f", "\u061c"]


@pytest.mark.parametrize("control", BIDI)
def test_bidi_controls_in_attachment_names_are_refused(control: str) -> None:
    # "invoice\u202efdp.exe" shows as "invoiceexe.pdf": the reader would open a program
    name = f"invoice{control}fdp.exe"
    with pytest.raises(RowAttachmentError) as info:
        Attachment(name, "application/octet-stream", b"MZ")
    assert f"U+{ord(control):04X}" in info.value.message
    assert "bidirectional" in info.value.message
    assert info.value.category == "attachment_error"
    with pytest.raises(RowAttachmentError, match="bidirectional"):
        check_filename(name, row=4, field="file")


def test_bidi_names_are_refused_from_disk_and_from_a_row_before_reading(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evil = folder / "invoice\u202efdp.exe"
    evil.write_bytes(b"MZ")
    monkeypatch.chdir(folder)
    with pytest.raises(RowAttachmentError, match="U\\+202E"):
        load_attachment(evil)
    with pytest.raises(RowAttachmentError, match="U\\+202E") as info:
        row_attachments(person(7, file="invoice\u202efdp.exe"), "file", folder)
    assert info.value.row == 7
    # names around the controls still work: Arabic and Hebrew letters are fine
    (folder / "\u0641\u0627\u062a\u0648\u0631\u0629.pdf").write_bytes(b"%PDF")
    [ok] = row_attachments(person(8, file="\u0641\u0627\u062a\u0648\u0631\u0629.pdf"), "file", folder)
    assert ok.filename == "\u0641\u0627\u062a\u0648\u0631\u0629.pdf"


def test_load_attachments_reports_every_missing_file(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_bytes(b"ok")
    with pytest.raises(RowAttachmentError) as info:
        load_attachments([tmp_path / "ok.txt", tmp_path / "x.pdf", tmp_path / "y.pdf"])
    assert "2 attachments cannot be used" in info.value.message
    assert "x.pdf" in info.value.message and "y.pdf" in info.value.message
    loaded = load_attachments([tmp_path / "ok.txt"])
    assert [(a.filename, a.data) for a in loaded] == [("ok.txt", b"ok")]


# --- per-recipient paths -----------------------------------------------------------------


def test_split_cell() -> None:
    assert split_cell("") == [] and split_cell(None) == [] and split_cell(" ; ;") == []
    assert split_cell(" a.pdf ;sub/b.pdf; ") == ["a.pdf", "sub/b.pdf"]


def test_resolve_accepts_files_inside_the_folder(folder: Path) -> None:
    assert resolve_row_attachment(folder, "a.pdf", 2) == (folder / "a.pdf").resolve()
    assert resolve_row_attachment(folder, "sub/c.csv", 2) == (folder / "sub" / "c.csv").resolve()
    assert resolve_row_attachment(folder, "sub\\c.csv", 2) == (folder / "sub" / "c.csv").resolve()
    assert resolve_row_attachment(folder, "./sub//c.csv", 2) == (folder / "sub" / "c.csv").resolve()
    assert resolve_row_attachment(folder, "  b.txt ", 2) == (folder / "b.txt").resolve()


TRAVERSALS = [
    ("../secret.txt", "'..'"),
    ("a/../../secret.txt", "'..'"),
    ("sub/../../secret.txt", "'..'"),
    ("..\\secret.txt", "'..'"),
    ("sub/..", "'..'"),
    (".../secret.txt", "'..'"),
    (".. /secret.txt", "'..'"),
    ("/etc/passwd", "absolute"),
    ("\\etc\\passwd", "absolute"),
    ("//server/share/x.pdf", "absolute"),
    ("\\\\server\\share\\x.pdf", "absolute"),
    ("C:\\Windows\\win.ini", "absolute"),
    ("c:secret.txt", "absolute"),
    ("a.pdf\x00.txt", "control character"),
    ("a.pdf\n", "control character"),
]


@pytest.mark.parametrize(("value", "words"), TRAVERSALS)
def test_traversal_attempts_are_refused_by_row_without_opening(
    folder: Path, monkeypatch: pytest.MonkeyPatch, value: str, words: str
) -> None:
    opens = Opens(monkeypatch)
    with pytest.raises(RowAttachmentError) as info:
        resolve_row_attachment(folder, value, 12, field="file")
    err = info.value
    assert (err.row, err.field, err.path) == (12, "file", value)
    assert err.message.startswith("line 12: ")
    assert repr(value) in err.message and words in err.message
    assert opens.paths == []


def test_symlink_out_of_the_folder_is_refused_without_opening(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (folder / "link.txt").symlink_to(tmp_path / "secret.txt")
    (folder / "sub" / "up").symlink_to(tmp_path)  # a folder link leading out
    (folder / "chain1").symlink_to(folder / "chain2")  # a chain that ends outside
    (folder / "chain2").symlink_to(tmp_path / "secret.txt")
    (folder / "dangling").symlink_to(tmp_path / "not-yet-there.txt")
    opens = Opens(monkeypatch)
    for value in ["link.txt", "sub/up/secret.txt", "chain1", "dangling"]:
        with pytest.raises(RowAttachmentError) as info:
            resolve_row_attachment(folder, value, 3)
        assert "outside the attachments folder" in info.value.message, value
        assert info.value.row == 3 and repr(value) in info.value.message
    assert opens.paths == []


@posix_only
def test_symlink_to_a_fifo_outside_is_refused_and_the_fifo_never_opened(
    folder: Path, tmp_path: Path
) -> None:
    # Opening the FIFO would block this test forever: finishing proves it was never opened.
    fifo = tmp_path / "outside.fifo"
    os.mkfifo(fifo)
    (folder / "report.pdf").symlink_to(fifo)
    with pytest.raises(RowAttachmentError, match="outside the attachments folder"):
        resolve_row_attachment(folder, "report.pdf", 5)
    problems = check_attachments([person(5, file="report.pdf")], "file", folder)
    assert [p.row for p in problems] == [5]
    with pytest.raises(RowAttachmentError, match="outside"):
        row_attachments(person(5, file="report.pdf"), "file", folder)


@posix_only
def test_fifo_inside_the_folder_is_refused_without_opening(folder: Path) -> None:
    os.mkfifo(folder / "pipe.pdf")
    with pytest.raises(RowAttachmentError, match="not a regular file"):
        resolve_row_attachment(folder, "pipe.pdf", 6)
    with pytest.raises(RowAttachmentError, match="not a regular file"):
        row_attachments(person(6, file="pipe.pdf"), "file", folder)


def test_symlinks_inside_the_folder_are_fine_and_keep_the_cell_name(folder: Path) -> None:
    (folder / "blob").write_bytes(b"contract")
    (folder / "Contract.pdf").symlink_to(folder / "blob")
    (folder / "s").symlink_to(folder / "sub")
    assert resolve_row_attachment(folder, "Contract.pdf", 2) == (folder / "blob").resolve()
    got = row_attachments(person(2, file="Contract.pdf; s/c.csv"), "file", folder)
    assert [(a.filename, a.content_type, a.data) for a in got] == [
        ("Contract.pdf", "application/pdf", b"contract"),
        ("c.csv", "text/csv", b"x,y\n1,2\n"),
    ]


def test_a_folder_given_as_a_link_works(folder: Path, tmp_path: Path) -> None:
    link = tmp_path / "att-link"
    link.symlink_to(folder)
    assert resolve_row_attachment(link, "a.pdf", 2) == (folder / "a.pdf").resolve()


def test_symlink_loop_is_refused(folder: Path) -> None:
    (folder / "loop1").symlink_to(folder / "loop2")
    (folder / "loop2").symlink_to(folder / "loop1")
    with pytest.raises(RowAttachmentError) as info:
        resolve_row_attachment(folder, "loop1", 2)
    assert info.value.row == 2


@pytest.mark.parametrize(
    ("value", "words"),
    [("missing.pdf", "was not found"), ("sub", "is a folder"), ("sub/", "is a folder"),
     ("a.pdf/x", "cannot be used"), ("   ", "is empty")],
)  # fmt: skip
def test_missing_and_non_files_are_reported_with_the_line(folder: Path, value: str, words: str) -> None:
    with pytest.raises(RowAttachmentError) as info:
        resolve_row_attachment(folder, value, 9)
    assert words in info.value.message and info.value.row == 9


def test_resolve_row_attachments_gives_names_and_paths(folder: Path) -> None:
    got = resolve_row_attachments(folder, "a.pdf;sub\\c.csv", 2)
    assert got == [("a.pdf", (folder / "a.pdf").resolve()), ("c.csv", (folder / "sub/c.csv").resolve())]


def test_row_attachments_empty_cell_or_no_column_means_none(folder: Path) -> None:
    assert row_attachments(person(2, file=""), "file", folder) == []
    assert row_attachments(person(2, file=" ; "), "file", folder) == []
    assert row_attachments(person(2), "file", folder) == []
    assert row_attachments(person(2, file="a.pdf"), None, folder) == []
    with pytest.raises(RowAttachmentError, match="attachments folder") as info:
        row_attachments(person(8, file="a.pdf"), "file", None)
    assert info.value.row == 8


# --- the check before sending -------------------------------------------------------------


def test_check_attachments_lists_every_problem_by_line_without_opening(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (folder / "out.txt").symlink_to(tmp_path / "secret.txt")
    rows = [
        person(2, file="a.pdf"),
        person(3, file="missing.pdf"),
        person(4, file="../secret.txt"),
        person(5, file=""),
        person(6, file="a.pdf; /etc/passwd"),
        person(7, file="out.txt"),
        person(8, file="sub/c.csv;b.txt"),
        person(9, file="gone1.pdf;gone2.pdf"),
    ]
    opens = Opens(monkeypatch)
    problems = check_attachments(rows, "file", folder)
    assert opens.paths == []
    assert [p.row for p in problems] == [3, 4, 6, 7, 9]
    text = [p.message for p in problems]
    assert "missing.pdf" in text[0] and "not found" in text[0]
    assert "'..'" in text[1] and "absolute" in text[2] and "outside" in text[3]
    assert all(p.field == "file" and p.category == "attachment_error" for p in problems)


def test_check_attachments_reports_a_missing_column_once(folder: Path) -> None:
    problems = check_attachments([person(2), person(3)], "file", folder)
    assert len(problems) == 1 and problems[0].row is None
    assert "no column 'file'" in problems[0].message


def test_check_attachments_reports_a_missing_folder_once(tmp_path: Path) -> None:
    rows = [person(2, file="a.pdf"), person(3, file="b.pdf")]
    (problem,) = check_attachments(rows, "file", tmp_path / "nope")
    assert problem.row is None and "attachments folder" in problem.message
    (problem,) = check_attachments(rows, "file", None)
    assert "choose the attachments folder" in problem.message
    assert check_attachments([person(2, file="")], "file", None) == []


def test_check_attachments_checks_shared_paths_without_reading_them(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opens = Opens(monkeypatch)
    problems = check_attachments(
        [person(2)], None, None, [folder / "a.pdf", folder / "nope.pdf", folder / "sub"]
    )
    assert opens.paths == []
    assert [("nope.pdf" in p.message, "is a folder" in p.message) for p in problems] == [
        (True, False), (False, True),
    ]  # fmt: skip
    assert all(p.row is None and p.field == "attachments" for p in problems)


def test_check_attachments_size_limit_names_the_rows_too_big(folder: Path) -> None:
    (folder / "big.bin").write_bytes(b"x" * 300_000)
    shared = [Attachment("s.pdf", "application/pdf", b"y" * 100_000)]
    rows = [person(2, file="big.bin"), person(3, file="a.pdf"), person(4, file="missing")]
    limit = 400_000  # the shared file fits; the shared file plus big.bin does not
    problems = check_attachments(rows, "file", folder, shared, size_limit=limit)
    assert [p.row for p in problems] == [4, 2]
    assert "SIZE limit" in problems[1].message and "about 0.5 MB" in problems[1].message
    assert check_attachments(rows[:2], "file", folder, shared, size_limit=None) == []


# --- sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 3, 56, 57, 58, 114, 1000, 123_457])
def test_encoded_size_is_exactly_the_base64_body_compose_writes(n: int) -> None:
    data = bytes(i % 251 for i in range(n))
    msg = render(Template("s", text="x"), person(2), SENDER,
                 attachments=[Attachment("a.bin", "application/octet-stream", data)])
    (part,) = msg.iter_attachments()
    body = part.get_payload().encode()
    assert len(body.replace(b"\n", b"\r\n")) == encoded_size(n)


def test_estimated_size_is_close_to_the_real_message() -> None:
    files = [("a.pdf", 500_000), ("Résumé.docx", 120_000)]
    msg = render(Template("s", text="x" * 2000), person(2), SENDER, attachments=[
        Attachment(name, guess_content_type(name), b"z" * size) for name, size in files
    ])
    real = len(msg.as_bytes())
    estimate = estimated_size(files, body_bytes=3000)
    assert real <= estimate <= real * 1.01


def test_size_problems_and_warning() -> None:
    mb = 1024 * 1024
    sizes = {2: 1 * mb, 3: 12 * mb, 4: 30 * mb}
    problems = size_problems(sizes, 25 * mb)
    assert [(p.row, p.field) for p in problems] == [(4, "attachments")]
    assert "about 30.0 MB" in problems[0].message and "at most 25.0 MB" in problems[0].message
    assert size_problems(sizes, None) == [] and size_problems(sizes, 0) == []
    warning = large_message_warning(sizes)
    assert warning is not None
    assert warning.startswith("2 messages are larger than 10.0 MB")
    assert "line 4" in warning and "spam" in warning
    assert large_message_warning({2: mb}) is None
    assert large_message_warning({7: 11 * mb}).startswith("1 message is")


def test_planned_sizes_add_shared_and_row_files(folder: Path) -> None:
    shared = [Attachment("s.pdf", "application/pdf", b"y" * 1000)]
    sizes = planned_sizes(
        [person(2, file="a.pdf"), person(3, file=""), person(4, file="../x")], "file", folder, shared,
        body_bytes=0,
    )
    base = estimated_size([("s.pdf", 1000)], 0)
    assert sizes == {2: base + estimated_size([("a.pdf", 10)], 0), 3: base}


@pytest.mark.parametrize(
    ("features", "limit"),
    [({"size": "35882577"}, 35882577), ({"size": ""}, None), ({"size": "0"}, None), ({}, None),
     ({"size": "abc"}, None)],
)  # fmt: skip
def test_server_size_limit(features: dict, limit: int | None) -> None:
    assert server_size_limit(features) == limit


# --- delivered through a real server -------------------------------------------------------


def _transport(server) -> SmtpTransport:
    return SmtpTransport(SmtpSettings(host=server.host, port=server.port, security="none", timeout=5))


def test_attachments_arrive_with_names_types_and_bytes(smtp_server, folder: Path) -> None:
    server = smtp_server("plain", auth=False)
    pdf = bytes(range(256)) * 300  # every byte value, several base64 lines
    (folder / "Grüße & Co – Bericht.pdf").write_bytes(pdf)
    shared = load_attachments([folder / "b.txt"])
    rows = [
        person(2, "ann@example.org", name="Ann", file="Grüße & Co – Bericht.pdf"),
        person(3, "bob@example.org", name="Bob", file="sub/c.csv; a.pdf"),
        person(4, "cy@example.org", name="Cy", file=""),
    ]
    assert check_attachments(rows, "file", folder, shared) == []
    t = _transport(server)
    t.open()
    assert server_size_limit(t.info.features) == 33554432  # aiosmtpd's default SIZE
    template = Template("Files for {{ name }}", html="<p>Hi {{ name }}</p>", text="Hi {{ name }}")
    for r in rows:
        msg = render(template, r, SENDER,
                     attachments=[*shared, *row_attachments(r, "file", folder)])
        t.send(Envelope(SENDER.address, (r.email,)), msg.as_bytes())
    t.close()
    got = {m.rcpt_tos[0]: m for m in server.messages}
    expected = {
        "ann@example.org": [("b.txt", "text/plain", b"bee\n"),
                            ("Grüße & Co – Bericht.pdf", "application/pdf", pdf)],
        "bob@example.org": [("b.txt", "text/plain", b"bee\n"), ("c.csv", "text/csv", b"x,y\n1,2\n"),
                            ("a.pdf", "application/pdf", b"%PDF-1.4 a")],
        "cy@example.org": [("b.txt", "text/plain", b"bee\n")],
    }  # fmt: skip
    for addr, files in expected.items():
        raw = got[addr].data
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg.get_content_type() == "multipart/mixed"
        first, *rest = msg.iter_parts()
        assert first.get_content_type() == "multipart/alternative"
        assert [(p.get_filename(), p.get_content_type(), p.get_payload(decode=True)) for p in rest] == files
        assert all(p.get_content_disposition() == "attachment" for p in rest)
        assert all(p["Content-Transfer-Encoding"] == "base64" for p in rest)
        assert raw.isascii()
        assert all(len(line) <= 78 for line in raw.splitlines())
    ann = got["ann@example.org"].data
    # RFC 2231 for the non-ASCII name; the raw header has no non-ASCII byte.
    assert b"filename*=utf-8''Gr%C3%BC%C3%9Fe%20%26%20Co%20%E2%80%93%20Bericht.pdf" in ann


# --- property: any name that is accepted round-trips and injects nothing -----------------

NAME_CHARS = st.sampled_from(
    list("abcXYZ019 .-_\"'\\;:=?*%()<>,@[]{}éßü中😀\u00a0\u200b\t\r\n\x00\x85\u2028")
    + ["=?utf-8?q?x?=", "\r\nBcc: a@b.example", '"; filename="evil.exe', "'' ", "*0*="]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.lists(NAME_CHARS, min_size=1, max_size=80).map("".join) | st.text(min_size=1, max_size=255),
    utf8=st.booleans(),
)
def test_file_name_property_no_injection_and_exact_round_trip(name: str, utf8: bool) -> None:
    try:
        a = Attachment(name, "application/pdf", b"%PDF")
    except RowAttachmentError:
        assert any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029/\\" or
                   0xD800 <= ord(c) <= 0xDFFF for c in name) or not name.strip() or "=?" in name \
            or name in (".", "..") or len(name) > 255 or name != name.strip()
        return
    # utf8: a recipient with a non-ASCII local part makes a UTF-8 (RFC 6532) message.
    to = person(2, "jörg@example.com") if utf8 else person(2)
    raw = bytes(render(Template("s", text="x"), to, SENDER, attachments=[a], smtputf8=True))
    assert raw.isascii() != utf8
    got = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    (part,) = got.iter_attachments()
    assert part.keys() == ["Content-Type", "Content-Transfer-Encoding", "Content-Disposition"]
    assert not part.defects
    # The header's own parameter; get_filename() would also strip quotes and blanks.
    assert part["Content-Disposition"].params["filename"] == name
    assert part.get_content() == b"%PDF"
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"Bcc" not in head
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


@pytest.mark.skipif(not attachments._WALKABLE, reason="needs openat with O_NOFOLLOW")
def test_a_folder_swapped_for_a_link_after_the_check_cannot_lead_out(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "c.csv").write_text("secret")
    (folder / "a" / "deep").mkdir(parents=True)
    (folder / "a" / "deep" / "c.csv").write_text("fine")
    root = folder.resolve()
    real = resolve_row_attachment(folder, "a/deep/c.csv", 2)
    # Between the check and the open, a folder high on the path becomes a link leading out.
    (folder / "a").rename(tmp_path / "moved")
    (folder / "a").symlink_to(outside)
    with pytest.raises(AttachmentError, match="replaced by a link"):
        load_attachment(real, filename="c.csv", row=2, follow_symlinks=False, beneath=root)
    # The same open without the walk would have read the file outside: the walk is what refuses it.
    assert load_attachment(real, filename="c.csv", row=2).data == b"secret"
