"""The journal against hostile or failing storage: a damaged page, a full disk, a planted link."""

from __future__ import annotations

import csv
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from backend import service
from backend.campaign import ResultRow
from backend.errors import DiskFullError
from backend.journal import Journal, JournalDamaged, JournalError, repair_journal, salvage
from backend.recipients import Recipient, parse_text
from tests.servers import PASSWORD, USER
from tests.test_campaign import transport_for

ROOT = Path(__file__).resolve().parent.parent
PAGE = 4096


def _cli(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "BULK_MAILER_HOME": str(home), "BULK_MAILER_PASSWORD": PASSWORD}
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def _journal_with_campaigns(path: Path, campaigns: int = 4, size: int = 300) -> None:
    """A real journal: a few campaigns, half of each sent, written through the Journal API."""
    path.parent.mkdir(parents=True, exist_ok=True)
    j = Journal(path)
    for c in range(campaigns):
        people = [Recipient(f"p{c}-{i}@example.org", {"name": f"Person {i} " + "x" * 40}, i + 2)
                  for i in range(size)]
        j.create(f"c{c}", account="me @ h:587", spec={"message": {"html": "y" * 3000}}, recipients=people)
        for i in range(size // 2):
            j.record(f"c{c}", sending=i)
            j.record(f"c{c}", outcome=(i, ResultRow(people[i].email, "sent", None, 250, None, 1, "t", f"<m{i}@x>")))
        j.set_state(f"c{c}", "finished")
    j.close()  # the last connection: the WAL is folded into the file


def _listing_fails(path: Path) -> bool:
    """Whether the two queries of the history list (as recover_dead and campaigns() run them) fail."""
    db = sqlite3.connect(path)
    try:
        db.execute("SELECT id, pid, host, pid_start FROM campaigns WHERE state = 'running'").fetchall()
        db.execute("SELECT campaign, status, COUNT(*) FROM recipients GROUP BY campaign, status").fetchall()
        return False
    except sqlite3.DatabaseError:
        return True
    finally:
        db.close()


def _damage_one_page(path: Path) -> int:
    """Random bytes over one page in the middle of the file, one the history list reads; its number."""
    clean = path.read_bytes()
    pages = len(clean) // PAGE
    for page in range(pages // 3, pages):
        noise = random.Random(page).randbytes(PAGE)
        path.write_bytes(clean[:page * PAGE] + noise + clean[(page + 1) * PAGE:])
        if _listing_fails(path):
            return page
    raise AssertionError("no page of the journal breaks the listing")


def test_a_damaged_page_is_a_file_error_with_the_way_out(tmp_path):
    path = tmp_path / "data" / "journal.sqlite3"
    _journal_with_campaigns(path)
    _damage_one_page(path)

    j = Journal(path)  # opening reads only the first page: the damage shows where it is read
    with pytest.raises(JournalDamaged) as caught:
        j.campaigns()
    err = caught.value
    assert err.category == "file_error" and str(path) in err.message and "damaged" in err.message
    described = err.describe()
    assert any("bulk-mailer repair-journal" in step for step in described["fix"])
    assert any("a new campaign starts a new journal" in step for step in described["fix"])
    j.close()

    # What can be read is read, row by row, around the damaged page (an index page here).
    got = salvage(path)
    assert set(got.campaigns) == {"c0", "c1", "c2", "c3"}
    assert got.read + got.lost == 1200 and got.read >= 1200 - 40

    report = repair_journal(path)
    assert not path.exists() and report.moved_to.name.startswith("journal.sqlite3.damaged-")
    assert report.moved_to.exists() and stat.S_IMODE(report.folder.stat().st_mode) == 0o700
    rows = list(csv.DictReader(report.files["c0"].open(encoding="utf-8")))
    assert Counter(r["status"] for r in rows) == {"sent": 150, "pending": 150}
    assert rows[0]["email"] == "p0-0@example.org" and rows[0]["message_id"] == "<m0@x>"
    assert stat.S_IMODE(report.files["c0"].stat().st_mode) == 0o600
    assert any("damaged-" in line for line in report.lines())
    # A new journal in its place: sending works again.
    fresh = Journal(path)
    assert fresh.campaigns() == []
    fresh.close()


def test_a_damaged_leaf_page_is_skipped_by_salvage_and_refused_by_rows(tmp_path):
    path = tmp_path / "journal.sqlite3"
    _journal_with_campaigns(path, campaigns=2)
    clean = path.read_bytes()
    for page in range(len(clean) // PAGE // 2, len(clean) // PAGE):
        path.write_bytes(clean[:page * PAGE] + random.Random(page).randbytes(PAGE) + clean[(page + 1) * PAGE:])
        got = salvage(path)
        if got.lost:  # a page of the recipients' rows
            break
    else:
        raise AssertionError("no leaf page found")
    assert got.read + got.lost == 600 and got.lost < 60 and got.complete
    j = Journal(path)
    with pytest.raises(JournalDamaged, match="damaged"):
        for cid in ("c0", "c1"):
            j.rows(cid)
    j.close()


def test_a_damaged_journal_through_the_cli_then_repaired(smtp_server, certs, tmp_path):
    home = tmp_path / "home"
    path = home / "data" / "journal.sqlite3"
    _journal_with_campaigns(path)
    _damage_one_page(path)

    listing = _cli(["campaigns"], home)
    assert listing.returncode != 0
    assert "[file_error]" in listing.stderr and str(path) in listing.stderr and "damaged" in listing.stderr
    assert "bulk-mailer repair-journal" in listing.stderr
    assert "Traceback" not in listing.stderr and "internal error" not in listing.stderr

    server = smtp_server("starttls")
    people = tmp_path / "people.txt"
    people.write_text("a@example.org\nb@example.org\n")
    send = ["send", "--host", server.host, "--port", str(server.port), "--security", "starttls", "--user", USER,
            "--ca-file", certs.ca_file, "--from", "me@example.com", "--to-file", str(people), "--subject", "Hi",
            "--text-file", str(people), "--delay-ms", "0"]
    refused = _cli(send, home)
    assert refused.returncode != 0 and "damaged" in refused.stderr and "Traceback" not in refused.stderr
    assert server.messages == []

    repaired = _cli(["repair-journal"], home)
    assert repaired.returncode == 0, repaired.stderr
    assert "journal.sqlite3.damaged-" in repaired.stderr and "c0 (finished" in repaired.stderr
    moved = [p for p in path.parent.iterdir() if p.name.startswith("journal.sqlite3.damaged-") and p.is_file()
             and not p.name.endswith(("-wal", "-shm"))]
    assert len(moved) == 1

    sent = _cli(send, home)
    assert sent.returncode == 0, sent.stderr
    assert sorted(m.rcpt_tos[0] for m in server.messages) == ["a@example.org", "b@example.org"]
    assert _cli(["campaigns"], home).returncode == 0


# -- a full disk ----------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs (the machine must let us mount one: skipped only when the mount is refused)."""
    where = tmp_path / "disk"
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """A file that takes all the free space of folder's disk but `leave` bytes."""
    filler = folder / "filler"
    with filler.open("wb") as fh:
        free = shutil.disk_usage(folder).free
        if free > leave:
            fh.write(b"\0" * (free - leave))
    return filler


def test_a_full_disk_pauses_the_campaign_and_resume_is_exact(smtp_server, certs, small_disk):
    server = smtp_server("starttls")
    emails = [f"p{i}@example.org" for i in range(400)]
    draft = service.make_draft(parse_text("\n".join(emails)), subject="Hi", html=None, text="hello",
                               from_address="me@example.com", delay_ms=0)
    path = small_disk / "journal.sqlite3"
    journal = Journal(path)
    _fill(small_disk, 256 * 1024)  # the journal has room for a few dozen messages

    transport = transport_for(server, certs)
    outcome = service.send(draft, transport, journal=journal, account="me @ h",
                           spec=service.campaign_spec(draft, transport.settings))

    # Paused with a clear message; no exception escaped.
    assert isinstance(outcome.error, DiskFullError) and outcome.stopped == "file_error"
    msg = outcome.error.message
    assert str(small_disk) in msg and "is full" in msg and "paused" in msg
    assert f"free at least {-(-outcome.error.needed // 1_000_000)} MB" in msg
    delivered = Counter(m.rcpt_tos[0] for m in server.messages)
    assert 0 < len(delivered) < len(emails) and max(delivered.values()) == 1
    # The results so far, in memory for the results file, match what the server got.
    assert {r.email for r in outcome.results if r.status == "sent"} == set(delivered)
    # And the journal says the same: the outcome in flight was settled once the WAL had room.
    rows = journal.rows(draft.id)
    assert {r.recipient.email for r in rows if r.result.status == "sent"} == set(delivered)
    assert not [r for r in rows if r.result.status in ("sending", "uncertain")]
    # The history can still be listed while the disk is full.
    assert [c.id for c in Journal(path).campaigns()] == [draft.id]
    journal.close()

    (small_disk / "filler").unlink()  # space is back
    again = Journal(path)
    assert Path(f"{path}-wal").stat().st_size == 0  # checkpointed and cut at the open
    info = again.get(draft.id)
    assert info.state in ("stopped", "paused", "interrupted")
    rest, indices, _ = service.resume_draft(again, draft.id)
    rest.delay_ms = 0
    resumed = service.send(rest, transport_for(server, certs), journal=again, indices=indices, account=info.account)
    assert resumed.error is None, resumed.error
    delivered = Counter(m.rcpt_tos[0] for m in server.messages)
    assert set(delivered) == set(emails) and set(delivered.values()) == {1}  # 0 lost, 0 doubled
    assert Counter(r.result.status for r in again.rows(draft.id)) == {"sent": len(emails)}
    again.close()


def test_a_full_disk_when_a_campaign_starts_is_a_clear_error(smtp_server, certs, small_disk):
    server = smtp_server("starttls")
    draft = service.make_draft(parse_text("\n".join(f"p{i}@example.org" for i in range(3000))), subject="Hi",
                               html=None, text="hello", from_address="me@example.com", delay_ms=0)
    journal = Journal(small_disk / "journal.sqlite3")
    _fill(small_disk, 16 * 1024)
    with pytest.raises(DiskFullError, match="is full"):
        service.send(draft, transport_for(server, certs), journal=journal, account="me @ h")
    assert server.messages == []
    assert journal.campaigns() == []  # nothing half-made
    journal.close()


# -- links ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["", "-wal", "-shm"])
def test_a_journal_linked_to_another_file_is_refused_and_the_file_untouched(tmp_path, which):
    data = tmp_path / "home" / "data"
    data.mkdir(parents=True)
    if which:
        Journal(data / "journal.sqlite3").close()
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0:root:/root:/bin/bash\n")
    target.chmod(0o644)
    os.symlink(target, data / f"journal.sqlite3{which}")

    with pytest.raises(JournalError, match="symbolic link") as caught:
        Journal()  # data_dir()/journal.sqlite3 under BULK_MAILER_HOME
    assert str(data / f"journal.sqlite3{which}") in caught.value.message
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert target.read_text() == "root:x:0:0:root:/root:/bin/bash\n"


def test_a_linked_journal_through_the_cli(tmp_path):
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0\n")
    target.chmod(0o644)
    os.symlink(target, home / "data" / "journal.sqlite3")
    listing = _cli(["campaigns"], home)
    assert listing.returncode != 0 and "symbolic link" in listing.stderr and "Traceback" not in listing.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 and target.read_text() == "root:x:0:0\n"


def test_a_hard_linked_journal_is_refused(tmp_path):
    target = tmp_path / "other"
    target.write_text("x")
    target.chmod(0o644)
    os.link(target, tmp_path / "journal.sqlite3")
    with pytest.raises(JournalError, match="hard links"):
        Journal(tmp_path / "journal.sqlite3")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 and target.read_text() == "x"
