"""The suppression list: normalisation, reasons, persistence, import reports, apply(), concurrency."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from backend import paths
from backend.errors import MailerError
from backend.recipients import Recipient, load_file
from backend.suppression import (
    DEFAULT_REASON,
    HEADER,
    ImportReport,
    SuppressionError,
    SuppressionList,
    _locked,
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "suppression.txt"


@pytest.fixture
def sl(path: Path) -> SuppressionList:
    return SuppressionList(path)


def test_default_path_is_under_data_dir(isolated_home: Path) -> None:
    sl = SuppressionList()
    assert sl.path == paths.data_dir() / "suppression.txt"
    assert sl.add(["a@example.com"]) == 1
    assert sl.path.is_relative_to(isolated_home)


def test_empty_list(sl: SuppressionList, path: Path) -> None:
    assert not sl.contains("a@example.com")
    assert sl.all() == [] and len(sl) == 0
    assert sl.reason("a@example.com") is None
    assert not path.exists()  # reading never creates the file


def test_add_normalises_and_compares_case_insensitively(sl: SuppressionList) -> None:
    assert sl.add(["  Bob@Example.COM "], reason="unsubscribed") == 1
    assert sl.all() == [("Bob@example.com", "unsubscribed")]
    for variant in ["bob@example.com", "BOB@EXAMPLE.COM", " Bob@example.com\t", "bOb@eXample.com"]:
        assert sl.contains(variant), variant
        assert variant in sl
    assert not sl.contains("bob@example.org")
    added = sl.add(["BOB@example.com", "bob@EXAMPLE.com"])
    assert added == 0 and added.already == 2
    assert len(sl) == 1


def test_unicode_and_idna_forms_match(sl: SuppressionList) -> None:
    sl.add(["Jörg@BÜCHER.example"])
    assert sl.all()[0][0] == "Jörg@bücher.example"
    assert sl.contains("jörg@xn--bcher-kva.example")  # the same domain in punycode
    assert sl.contains("JÖRG@bücher.example")
    assert sl.contains("Jo\u0308rg@bücher.example")  # decomposed ö: NFC-normalised
    assert not sl.contains("jorg@bücher.example")


def test_add_accepts_a_single_string(sl: SuppressionList) -> None:
    assert sl.add("one@example.com") == 1
    assert sl.contains("one@example.com")


def test_invalid_addresses_are_reported_not_added(sl: SuppressionList, path: Path) -> None:
    added = sl.add(["ok@example.com", "not-an-address", "a@b", "x\n@example.com", "", "#c@example.com",
                    "ok@example.com", 42])  # type: ignore[list-item]
    assert added == 1
    assert added.already == 1
    assert [(pos, value) for pos, value, _ in added.invalid] == [
        (2, "not-an-address"), (3, "a@b"), (4, "x\n@example.com"), (5, ""), (6, "#c@example.com"), (8, "42"),
    ]
    reasons = [reason for _, _, reason in added.invalid]
    assert all(r.startswith("not a valid email address: ") for r in reasons)
    assert "@-sign" in reasons[0]
    assert "line break" in reasons[2]
    assert "comment" in reasons[4]
    assert sl.all() == [("ok@example.com", DEFAULT_REASON)]
    assert path.read_text(encoding="utf-8") == HEADER + f"ok@example.com\t{DEFAULT_REASON}\n"


def test_reasons(sl: SuppressionList) -> None:
    sl.add(["a@example.com"], reason="unsubscribed")
    sl.add(["b@example.com"], reason="complaint:\tspam\r\nreport  ")  # one line, no tabs
    sl.add(["c@example.com"], reason="")
    sl.add(["a@example.com"], reason="complaint")  # the first reason stays
    assert sl.reason("A@example.com") == "unsubscribed"
    assert sl.reason("b@example.com") == "complaint: spam report"
    assert sl.reason("c@example.com") == ""
    assert sl.reason("nobody@example.com") is None
    assert len(sl.reason("b@example.com") or "") <= 200
    sl.add(["d@example.com"], reason="x" * 1000)
    assert len(sl.reason("d@example.com") or "") == 200


def test_remove(sl: SuppressionList, path: Path) -> None:
    sl.add(["a@example.com", "b@example.com", "c@example.com"], reason="r")
    assert sl.remove("B@EXAMPLE.COM") is True
    assert sl.remove("b@example.com") is False
    assert sl.remove("never@example.com") is False
    assert sl.all() == [("a@example.com", "r"), ("c@example.com", "r")]
    assert SuppressionList(path).all() == [("a@example.com", "r"), ("c@example.com", "r")]
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_remove_crash_keeps_the_old_file(sl: SuppressionList, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sl.add(["a@example.com", "b@example.com"])
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(SuppressionError, match="cannot be written.*No space left"):
        sl.remove("a@example.com")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sl.contains("a@example.com")
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_persistence_across_instances(path: Path) -> None:
    SuppressionList(path).add(["a@example.com"], reason="unsubscribed")
    SuppressionList(path).add(["b@example.com"], reason="bounced")
    again = SuppressionList(path)
    assert again.all() == [("a@example.com", "unsubscribed"), ("b@example.com", "bounced")]
    assert again.contains("A@EXAMPLE.COM")


def test_changes_by_another_instance_are_seen(path: Path) -> None:
    one, two = SuppressionList(path), SuppressionList(path)
    one.add(["a@example.com"])
    assert two.contains("a@example.com")
    two.add(["b@example.com"])
    assert one.add(["b@example.com"]) == 0  # re-read under the lock before adding
    one.reload()
    assert one.contains("b@example.com")
    two.remove("a@example.com")
    assert [a for a, _ in one.all()] == ["b@example.com"]
    assert path.read_text(encoding="utf-8").count("b@example.com") == 1


def test_hand_edited_file_is_read(sl: SuppressionList, path: Path) -> None:
    path.write_text(
        "# my list\n\n  Carol@Example.com\t complaint \nDAVE@EXAMPLE.COM\n"
        "# dave@other.example\nnot an address\nerin@example.com",  # no final line break
        encoding="utf-8",
    )
    assert sl.contains("carol@example.com") and sl.contains("dave@example.com")
    assert not sl.contains("dave@other.example")
    assert sl.reason("CAROL@example.com") == "complaint"
    assert sl.reason("dave@example.com") == ""
    assert sl.contains("erin@example.com")
    sl.add(["frank@example.com"])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[-2:] == ["erin@example.com", f"frank@example.com\t{DEFAULT_REASON}"]
    assert SuppressionList(path).contains("erin@example.com")


def test_file_format_is_readable_text(sl: SuppressionList, path: Path) -> None:
    sl.add(["a@example.com", "b@example.com"], reason="unsubscribed")
    assert path.read_text(encoding="utf-8") == (
        HEADER + "a@example.com\tunsubscribed\nb@example.com\tunsubscribed\n"
    )


# -- import --------------------------------------------------------------------------------


def test_import_text_file_with_line_numbers(sl: SuppressionList, tmp_path: Path) -> None:
    sl.add(["old@example.com"])
    src = tmp_path / "unsubscribes.txt"
    src.write_text(
        "# exported from the old tool\n"        # 1
        "\n"                                    # 2
        "new@example.com\n"                     # 3
        "OLD@example.com\n"                     # 4  already kept
        "broken.address\n"                      # 5
        "  spaced@example.com  \n"              # 6
        "new@EXAMPLE.com\n"                     # 7  duplicate within the file
        "tabbed@example.com\tcomplaint\n"       # 8  own reason
        "x@y\n",                                # 9
        encoding="utf-8",
    )
    report = sl.import_file(src, reason="old tool")
    assert isinstance(report, ImportReport)
    assert (report.added, report.already) == (3, 2)
    assert [(line, value) for line, value, _ in report.invalid] == [(5, "broken.address"), (9, "x@y")]
    assert all("not a valid email address" in r for _, _, r in report.invalid)
    assert report.summary() == "3 added, 2 already on the list, 2 invalid"
    assert sl.reason("new@example.com") == "old tool"
    assert sl.reason("spaced@example.com") == "old tool"
    assert sl.reason("tabbed@example.com") == "complaint"


def test_import_our_own_file_keeps_reasons(sl: SuppressionList, tmp_path: Path) -> None:
    sl.add(["a@example.com"], reason="unsubscribed")
    sl.add(["b@example.com"], reason="complaint")
    other = SuppressionList(tmp_path / "other.txt")
    report = other.import_file(sl.path)
    assert (report.added, report.already, report.invalid) == (2, 0, [])
    assert other.all() == sl.all()


def test_import_crlf_bom_and_windows_line_endings(sl: SuppressionList, tmp_path: Path) -> None:
    src = tmp_path / "list.txt"
    src.write_bytes(b"\xef\xbb\xbfa@example.com\r\nbad\r\nb@example.com\r\n")
    report = sl.import_file(src)
    assert report.added == 2
    assert report.invalid[0][:2] == (2, "bad")


def test_import_csv_with_email_column(sl: SuppressionList, tmp_path: Path) -> None:
    src = tmp_path / "export.csv"
    src.write_text(
        "name,Email,date\n"
        "Ann,ann@example.com,2024-01-01\n"
        "Bob,not-valid,2024-01-02\n"
        "Cy,CY@example.com,2024-01-03\n"
        "Ann again,ANN@example.com,2024-01-04\n",
        encoding="utf-8",
    )
    report = sl.import_file(src, reason="csv")
    assert (report.added, report.already) == (2, 1)
    assert [(line, value) for line, value, _ in report.invalid] == [(3, "not-valid")]
    assert sl.contains("ann@example.com") and sl.contains("cy@example.com")
    assert sl.reason("cy@example.com") == "csv"


def test_import_csv_first_column_without_header(sl: SuppressionList, tmp_path: Path) -> None:
    src = tmp_path / "plain.csv"
    src.write_text("a@example.com,unsubscribed\nb@example.com,complaint\n", encoding="utf-8")
    report = sl.import_file(src)
    assert report.added == 2 and report.invalid == []


def test_import_csv_saved_as_txt(sl: SuppressionList, tmp_path: Path) -> None:
    src = tmp_path / "export.txt"
    src.write_text("email,reason\na@example.com,x\nb@example.com,y\n", encoding="utf-8")
    report = sl.import_file(src)
    assert report.added == 2
    assert not sl.contains("reason")


def test_import_comments_only_adds_nothing(sl: SuppressionList, tmp_path: Path) -> None:
    src = tmp_path / "empty.txt"
    src.write_text("# nothing here\n\n", encoding="utf-8")
    assert sl.import_file(src) == ImportReport(0, 0, [])


@pytest.mark.parametrize("case", ["missing", "folder", "nul", "csv-without-addresses"])
def test_import_unreadable_files(sl: SuppressionList, tmp_path: Path, case: str) -> None:
    bad = tmp_path / "no-addresses.csv"
    bad.write_text("name,city\nAnn,Paris\n", encoding="utf-8")
    target = {"missing": tmp_path / "nope.txt", "folder": tmp_path, "nul": tmp_path / "a\x00b",
              "csv-without-addresses": bad}[case]
    with pytest.raises(SuppressionError) as info:
        sl.import_file(target)
    assert isinstance(info.value, MailerError)
    assert info.value.describe()["message"]
    assert sl.all() == []


def test_import_binary_garbage_reports_lines(sl: SuppressionList, tmp_path: Path) -> None:
    src = tmp_path / "garbage.txt"
    src.write_bytes(os.urandom(2000).replace(b"@", b"."))
    report = sl.import_file(src)
    assert report.added == 0
    assert all(isinstance(line, int) and len(value) <= 200 for line, value, _ in report.invalid)


# -- apply ---------------------------------------------------------------------------------


def test_apply_splits_recipients(sl: SuppressionList, tmp_path: Path) -> None:
    sl.add(["bob@example.com"], reason="unsubscribed")
    sl.add(["carol@example.com"], reason="")
    src = tmp_path / "to.csv"
    src.write_text("email,name\nann@example.com,Ann\nBOB@example.com,Bob\ncarol@EXAMPLE.com,Carol\n",
                   encoding="utf-8")
    recipients = load_file(src).recipients
    send, skipped = sl.apply(recipients)
    assert [r.email for r in send] == ["ann@example.com"]
    assert [(r.email, r.line, why) for r, why in skipped] == [
        ("BOB@example.com", 3, "suppressed: unsubscribed"),
        ("carol@example.com", 4, "suppressed"),
    ]


def test_apply_sees_additions_from_another_process(path: Path) -> None:
    sl = SuppressionList(path)
    rows = [Recipient("a@example.com"), Recipient("b@example.com")]
    assert sl.apply(rows) == (rows, [])
    SuppressionList(path).add(["b@example.com"], reason="complaint")
    send, skipped = sl.apply(rows)
    assert send == rows[:1] and skipped == [(rows[1], "suppressed: complaint")]


def test_apply_on_a_large_campaign(sl: SuppressionList) -> None:
    # how fast: benchmarks/bench_core.py; here only that every row is classified right
    sl.add([f"user{i}@example.com" for i in range(0, 20_000, 2)], reason="old")
    rows = [Recipient(f"user{i}@example.com") for i in range(100_000)]
    send, skipped = sl.apply(rows)
    assert len(skipped) == 10_000 and len(send) == 90_000
    assert all(r.email.startswith("user") and int(r.email[4:].split("@")[0]) % 2 == 0
               and int(r.email[4:].split("@")[0]) < 20_000 for r, _ in skipped)


# -- concurrency ---------------------------------------------------------------------------


def _add_many(path: str, prefix: str, count: int, start_event) -> None:
    start_event.wait(10)
    sl = SuppressionList(Path(path))
    for i in range(count):
        sl.add([f"{prefix}{i}@example.com"], reason=prefix)
        if i % 10 == 0:
            sl.add([f"shared{i}@example.com"], reason=prefix)  # both add these


def test_two_processes_appending_at_once_lose_nothing(path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    count = 150
    procs = [ctx.Process(target=_add_many, args=(str(path), prefix, count, start)) for prefix in ("p", "q")]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    sl = SuppressionList(path)
    addresses = [a for a, _ in sl.all()]
    expected = {f"{x}{i}@example.com" for x in "pq" for i in range(count)}
    expected |= {f"shared{i}@example.com" for i in range(0, count, 10)}
    assert set(addresses) == expected
    assert len(addresses) == len(expected)  # each shared address written once
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == HEADER.rstrip("\n")
    assert len(lines) == len(expected) + 1  # no torn or doubled lines
    assert all(line.count("\t") == 1 for line in lines[1:])


def test_locked_by_another_process_gives_a_clear_error(path: Path) -> None:
    sl = SuppressionList(path, lock_timeout=0.1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(sl.lock_path, 1.0):
        with pytest.raises(SuppressionError, match="being changed by another program") as info:
            sl.add(["a@example.com"])
        assert info.value.category == "action_unavailable"
    assert sl.add(["a@example.com"]) == 1


def test_unwritable_list_gives_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    sl = SuppressionList(blocker / "suppression.txt")  # its folder is a file
    with pytest.raises(SuppressionError, match="cannot be changed"):
        sl.add(["a@example.com"])


def test_hand_edited_lines_are_never_ignored(path: Path) -> None:
    path.write_text("a@example.org unsubscribed\nb@example.org, complaint\n<c@example.org>\nd@example.org\treason\n",
                    encoding="utf-8")
    sl = SuppressionList(path)
    for address in ("a@example.org", "b@example.org", "c@example.org", "d@example.org"):
        assert sl.contains(address), address
    assert sl.reason("a@example.org") == "unsubscribed" and sl.reason("b@example.org") == "complaint"
