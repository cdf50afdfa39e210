"""The journal, and the crash harness: kill -9 a sending process, resume, count deliveries."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from backend.campaign import ResultRow
from backend.journal import Journal
from backend.recipients import Recipient
from tests.servers import PASSWORD, USER, RecordingHandler

ROOT = Path(__file__).resolve().parent.parent


def test_journal_records_and_recovers(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    assert stat.S_IMODE((tmp_path / "j.sqlite3").stat().st_mode) == 0o600
    people = [Recipient(f"p{i}@example.org", {"name": f"P{i}"}, i + 2) for i in range(3)]
    j.create("c1", account="me @ h:587", spec={"x": 1}, recipients=people,
             excluded=[ResultRow("s@example.org", "skipped", None, None, "not sent: suppressed")])
    j.mark_sending("c1", 0)
    j.mark_outcome("c1", 0, ResultRow("p0@example.org", "sent", None, 250, None, 1, "t", "<m@x>"))
    j.mark_sending("c1", 1)  # in flight when the process "dies"
    info = j.get("c1")
    assert info.state == "running" and info.counts == {"sent": 1, "sending": 1, "pending": 1, "skipped": 1}
    # a campaign whose process is gone is interrupted; its in-flight row is uncertain
    j._write("UPDATE campaigns SET pid=? WHERE id='c1'", (2**22 + 12345,))
    assert j.recover_dead() == ["c1"]
    info = j.get("c1")
    assert info.state == "interrupted" and info.counts == {"sent": 1, "uncertain": 1, "pending": 1, "skipped": 1}
    rows = j.rows("c1")
    assert [r.result.status for r in rows] == ["sent", "uncertain", "pending", "skipped"]
    assert rows[0].result.message_id == "<m@x>" and rows[0].recipient.fields == {"name": "P0"}
    assert j.reset("c1", ["uncertain"]) == 1
    assert [r.index for r in j.rows("c1", ["pending"])] == [1, 2]
    assert j.spec("c1") == {"x": 1}


class SlowHandler(RecordingHandler):
    """Holds slow@ in DATA for a while (so a kill lands mid-send), then accepts it."""

    async def handle_DATA(self, server, session, envelope):
        if envelope.rcpt_tos and envelope.rcpt_tos[0].startswith("slow@"):
            await asyncio.sleep(1.5)
        return await super().handle_DATA(server, session, envelope)


def _cli(args: list[str], home: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "BULK_MAILER_HOME": str(home), "BULK_MAILER_PASSWORD": PASSWORD}
    return subprocess.Popen([sys.executable, "-m", "backend.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.parametrize(("kill_after", "connections", "pipelining"),
                         [(0, 1, False), (1, 1, False), (3, 1, False), (5, 1, False), ("slow", 1, False),
                          (0, 3, False), (60, 3, False), ("slow", 3, False),
                          # the server offers PIPELINING: two messages on the way per connection
                          (1, 1, True), (3, 1, True), ("slow", 1, True), (60, 3, True), ("slow", 3, True),
                          # and CHUNKING: each message written whole (BDAT) before the one ahead is answered
                          (1, 1, "bdat"), (3, 1, "bdat"), ("slow", 1, "bdat"), (60, 3, "bdat"),
                          ("slow", 3, "bdat")])
def test_kill_9_then_resume_delivers_everyone_once(smtp_server, certs, tmp_path, kill_after, connections,
                                                   pipelining):
    server = smtp_server("starttls", handler=SlowHandler(pipelining=bool(pipelining),
                                                         chunking=pipelining == "bdat"))
    # On several connections, no delay and a longer list: several messages are in flight at the kill.
    emails = [f"p{i}@example.org" for i in range(8 if connections == 1 else 200)]
    emails.insert(4, "slow@example.org")
    people = tmp_path / "people.txt"
    people.write_text("\n".join(emails) + "\n")
    body = tmp_path / "b.txt"
    body.write_text("hello {{ email }}")
    home = tmp_path / "home"
    account = ["--host", server.host, "--port", str(server.port), "--security", "starttls", "--user", USER,
               "--ca-file", certs.ca_file, "--timeout", "5"]
    proc = _cli(["send", *account, "--from", "me@example.com", "--to-file", str(people), "--subject", "Hi",
                 "--text-file", str(body), "--delay-ms", "150" if connections == 1 else "0",
                 "--connections", str(connections)], home)
    campaign = proc.stderr.readline().split()[1]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = [m.rcpt_tos[0] for m in server.messages]
        if kill_after == "slow" and "slow@example.org" in [c.split()[-1] for c in server.handler.commands
                                                          if c.startswith("RCPT")]:
            time.sleep(0.3)  # inside the slow DATA
            break
        if kill_after == 0 and "EHLO" in server.handler.commands:
            break  # connected: the campaign is in the journal, nothing delivered yet
        if kill_after not in ("slow", 0) and len(got) >= kill_after:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    time.sleep(1.6)  # let a held DATA finish on the server side
    if pipelining == "bdat":
        assert "BDAT" in server.handler.verbs and "DATA" not in server.handler.verbs

    listing = _cli(["campaigns", "--json"], home)
    out, _ = listing.communicate(timeout=30)
    (info,) = [c for c in json.loads(out) if c["id"] == campaign]
    assert info["state"] == "interrupted"
    uncertain_before = info["counts"].get("uncertain", 0)
    # at most one message in flight on each connection, two when pipelining
    assert uncertain_before <= connections * (2 if pipelining else 1)
    if kill_after == "slow":
        assert uncertain_before >= 1  # killed inside DATA: the journal cannot know, and says so

    if uncertain_before:  # resuming asks what to do with them, and lists them
        export = _cli(["export", campaign, str(tmp_path / "before.csv")], home)
        export.communicate(timeout=30)
        listed = [r["email"] for r in csv.DictReader((tmp_path / "before.csv").open(encoding="utf-8"))
                  if r["status"] == "uncertain"]
        assert len(listed) == uncertain_before
        if kill_after == "slow":
            assert "slow@example.org" in listed
        plain = _cli(["resume", campaign], home)
        _, err = plain.communicate(timeout=30)
        assert plain.returncode == 2 and "--resend-uncertain" in err
        assert all(email in err for email in listed), (listed, err)

    resumed = _cli(["resume", campaign, "--resend-uncertain", "--delay-ms", "0", "--results",
                    str(tmp_path / "r.csv"), "--connections", str(connections)], home)
    _, err = resumed.communicate(timeout=60)
    assert resumed.returncode in (0, 1), err
    delivered = Counter(m.rcpt_tos[0] for m in server.messages)
    rows = {r["email"]: r for r in csv.DictReader((tmp_path / "r.csv").open(encoding="utf-8"))}
    assert set(rows) == set(emails) and all(r["status"] == "sent" for r in rows.values())
    for email in emails:
        # exactly once, except a recipient that was uncertain: at most twice, and it was listed
        assert 1 <= delivered[email] <= (2 if uncertain_before else 1), (email, delivered)
    assert sum(delivered.values()) <= len(emails) + uncertain_before


def test_export_and_campaigns_listing(smtp_server, certs, tmp_path):
    server = smtp_server("starttls")
    people = tmp_path / "p.txt"
    people.write_text("a@example.org\nreject550@example.org\n")
    body = tmp_path / "b.txt"
    body.write_text("x")
    home = tmp_path / "home"
    send = _cli(["send", "--host", server.host, "--port", str(server.port), "--user", USER, "--ca-file",
                 certs.ca_file, "--from", "me@example.com", "--to-file", str(people), "--subject", "=HYPERLINK(1)",
                 "--text-file", str(body), "--delay-ms", "0"], home)
    _, err = send.communicate(timeout=60)
    campaign = err.splitlines()[0].split()[1]
    listing = _cli(["campaigns"], home)
    out, _ = listing.communicate(timeout=30)
    assert campaign in out and "finished" in out and "1 sent" in out and "1 failed" in out
    export = _cli(["export", campaign, str(tmp_path / "x.csv")], home)
    export.communicate(timeout=30)
    rows = list(csv.DictReader((tmp_path / "x.csv").open(encoding="utf-8")))
    assert [(r["email"], r["status"]) for r in rows] == [("a@example.org", "sent"), ("reject550@example.org", "failed")]
    assert rows[1]["smtp_code"] == "550"
    finished = _cli(["resume", campaign], home)
    _, err = finished.communicate(timeout=30)
    assert finished.returncode == 2 and "finished" in err


def test_results_csv_neutralises_spreadsheet_formulas():
    from backend.service import results_csv_text

    rows = [ResultRow("a@example.org", "failed", "message_rejected", 550, '=HYPERLINK("http://x.example","y")'),
            ResultRow("b@example.org", "failed", None, None, "+1"), ResultRow("c@example.org", "failed", None, None, "-2"),
            ResultRow("d@example.org", "failed", None, None, "@SUM(A1)"), ResultRow("e@example.org", "failed", None,
                                                                                    None, "\tx")]
    parsed = list(csv.DictReader(results_csv_text(rows).splitlines()))
    assert [r["error"] for r in parsed] == ["'=HYPERLINK(\"http://x.example\",\"y\")", "'+1", "'-2", "'@SUM(A1)", "'\tx"]
    assert parsed[0]["email"] == "a@example.org" and parsed[0]["smtp_code"] == "550"


class ChaosHandler(RecordingHandler):
    """Random 451s at RCPT, 421s that close the session, and drops after the final dot (seeded)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        import random

        self.rng = random.Random(seed)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        roll = self.rng.random()
        if roll < 0.05:
            return "451 4.7.1 Greylisted, try again later"
        if roll < 0.07:
            await server.push("421 4.3.2 Service shutting down")
            server.transport.close()
            await asyncio.sleep(3600)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.rng.random() < 0.01:
            # Stored, then the connection drops before the reply: the client cannot know.
            await super().handle_DATA(server, session, envelope)
            server.transport.close()
            await asyncio.sleep(3600)
        return await super().handle_DATA(server, session, envelope)


def test_fault_soak_every_recipient_ends_final_and_journal_matches_the_server(smtp_server, certs, tmp_path):
    from backend import service
    from backend.campaign import RetryPolicy
    from backend.recipients import parse_text
    from backend.settings import SmtpSettings
    from backend.transports.smtp import SmtpTransport

    server = smtp_server("starttls", handler=ChaosHandler(seed=7))
    n = 2000
    draft = service.make_draft(parse_text("\n".join(f"user{i}@example.org" for i in range(n))),
                               subject="Soak", html=None, text="hello {{ email }}", from_address="me@example.com",
                               delay_ms=0)
    journal = Journal(tmp_path / "j.sqlite3")
    transport = SmtpTransport(SmtpSettings(host=server.host, port=server.port, user=USER, password=PASSWORD,
                                           ca_file=certs.ca_file, timeout=5))
    fake = {"t": 0.0}

    def clock() -> float:
        return fake["t"]

    def sleep(seconds: float) -> None:
        fake["t"] += seconds

    outcome = service.send(draft, transport, journal=journal, account="soak", sleep=sleep, clock=clock,
                           spec={"soak": True}, retry=RetryPolicy(base_s=30, cap_s=300, max_attempts=6))
    delivered = Counter(m.rcpt_tos[0] for m in server.messages)
    rows = journal.rows(draft.id)
    assert len(rows) == n
    statuses = Counter(r.result.status for r in rows)
    assert set(statuses) <= {"sent", "failed", "uncertain"}, (statuses, outcome.stopped, outcome.error)
    assert statuses["sent"] > n * 0.9
    for row in rows:
        email, status = row.recipient.email, row.result.status
        if status == "sent":
            assert delivered[email] == 1, (email, delivered[email])
        elif status == "failed":
            assert delivered[email] == 0, email
        else:  # uncertain: the server may have it, once
            assert delivered[email] <= 1, email
    assert outcome.counts == statuses


def test_resume_keeps_a_deferred_recipients_next_attempt(tmp_path):
    from backend import service

    j = Journal(tmp_path / "j.sqlite3")
    people = [Recipient("a@example.org", {}, 1), Recipient("b@example.org", {}, 2)]
    spec = {"settings": {}, "message": {"subject": "s", "html": None, "text": "t", "from": "me@example.com",
                                        "reply_to": None, "unsubscribe": [], "attach": [],
                                        "uploaded_attachments": False, "attach_column": None, "attach_dir": None},
            "delay_ms": 0}
    j.create("c", account="x", spec=spec, recipients=people)
    j.mark_outcome("c", 0, ResultRow("a@example.org", "deferred", "greylisted", 451, "later", 1, None, None,
                                     next_attempt="2999-01-01T00:00:00+00:00"))
    draft, indices, got = service.resume_draft(j, "c")
    assert [r.email for r in draft.recipients] == ["a@example.org", "b@example.org"] and indices == [0, 1]
    assert got["deferred_until"] == {0: "2999-01-01T00:00:00+00:00"}


def test_records_from_several_connections_share_one_commit(tmp_path):
    import threading

    j = Journal(tmp_path / "j.sqlite3")
    people = [Recipient(f"p{i}@example.org", {}, i + 2) for i in range(10)]
    j.create("c", account="x", spec={}, recipients=people)
    j.record("c", sending=0)
    before = j.commits
    threads = [threading.Thread(target=j.record, args=("c",), kwargs={
        "outcome": (i, ResultRow(f"p{i}@example.org", "sent", None, 250, None, 1, "t", f"<{i}@x>")),
        "sending": i + 5}) for i in range(5)]
    with j._lock:  # a commit under way: the first caller waits for it, the others queue behind
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(j._queue) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    for t in threads:
        t.join(10)
    assert j.commits - before == 2  # the first caller's, then one for the four queued behind it
    rows = {r.index: r.result for r in j.rows("c")}
    assert [rows[i].status for i in range(10)] == ["sent"] * 5 + ["sending"] * 5
    assert [rows[i].message_id for i in range(5)] == [f"<{i}@x>" for i in range(5)]
    assert [rows[i].attempts for i in range(5, 10)] == [1] * 5


def _running_elsewhere(j: Journal, cid: str, pid: int, started: str | None) -> None:
    """Pretend another process (pid) runs the campaign."""
    import socket

    with j._lock:
        j._db.execute("UPDATE campaigns SET state='running', pid=?, host=?, pid_start=? WHERE id=?",
                      (pid, socket.gethostname(), started, cid))


def test_only_one_process_can_claim_a_campaign(tmp_path):
    from backend.journal import JournalError, _process_start

    j = Journal(tmp_path / "j.sqlite3")
    j.create("c", account="x", spec={}, recipients=[Recipient("a@example.org", {}, 2)])
    j.set_state("c", "paused")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _running_elsewhere(j, "c", other.pid, _process_start(other.pid))
        with pytest.raises(JournalError, match="being sent by another window or process"):
            j.claim("c")
        assert j.get("c").state == "running"  # still the other one's
    finally:
        other.kill()
        other.wait()
    j.claim("c")  # the other one is gone: interrupted, then ours
    j.claim("c")  # claiming again from the holder is fine
    assert j.get("c").state == "running"


def test_a_reused_pid_is_not_taken_for_the_campaigns_process(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    j.create("c", account="x", spec={}, recipients=[Recipient("a@example.org", {}, 2)])
    j.record("c", sending=0)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # The number of a living process, but it started at another time: not the campaign's.
        _running_elsewhere(j, "c", alive.pid, "another-boot:12345")
        info = j.get("c")
    finally:
        alive.kill()
        alive.wait()
    assert info.state == "interrupted" and info.counts == {"uncertain": 1}


def test_an_unexpected_stop_leaves_the_message_in_flight_uncertain_not_lost(tmp_path, isolated_home):
    from backend import service
    from backend.recipients import parse_text
    from backend.transports.base import Receipt

    class Breaks:
        sent = 0
        supports_smtputf8 = False  # the seam's two facts
        size_limit = None

        def open(self):
            pass

        def close(self):
            pass

        def send(self, envelope, message):
            Breaks.sent += 1
            if Breaks.sent == 2:
                raise KeyboardInterrupt  # the process is told to stop mid-send
            return Receipt(250, "ok")

    draft = service.make_draft(parse_text("a@example.org\nb@example.org\nc@example.org"), subject="s", html=None,
                               text="t", from_address="me@example.com", delay_ms=0)
    j = Journal()
    with pytest.raises(KeyboardInterrupt):
        service.send(draft, Breaks(), journal=j, account="x", spec={"message": {
            "subject": "s", "html": None, "text": "t", "from": "me@example.com"}})
    info = j.get(draft.id)
    assert info.state == "interrupted" and info.counts == {"sent": 1, "uncertain": 1, "pending": 1}
    _, indices, _ = service.resume_draft(j, draft.id)
    assert indices == [2]  # the uncertain one waits for the user's choice; the pending one goes


def test_tries_in_earlier_runs_count_towards_the_limit(tmp_path, isolated_home, smtp_server, certs):
    from backend import service
    from backend.campaign import RetryPolicy
    from backend.settings import SmtpSettings
    from backend.transports.smtp import SmtpTransport

    server = smtp_server("starttls")
    j = Journal()
    people = [Recipient("flaky9@example.org", {}, 2)]
    j.create("c", account="x", spec={"message": {"subject": "s", "html": None, "text": "t",
                                                 "from": "me@example.com"}}, recipients=people)
    for _ in range(4):  # four tries in earlier runs, each marked before its MAIL FROM
        j.mark_sending("c", 0)
        j.mark_outcome("c", 0, ResultRow("flaky9@example.org", "deferred", "greylisted", 451, "later", 4, None,
                                         None))
    j.set_state("c", "paused")
    draft, indices, spec = service.resume_draft(j, "c")
    assert spec["attempts_before"] == {0: 4}
    transport = SmtpTransport(SmtpSettings(host=server.host, port=server.port, user=USER, password=PASSWORD,
                                           ca_file=certs.ca_file, timeout=5))
    out = service.send(draft, transport, journal=j, indices=indices, account="x", sleep=lambda s: None,
                       retry=RetryPolicy(max_attempts=5), attempts_before=spec["attempts_before"])
    (row,) = out.results
    assert row.status == "failed" and row.attempts == 5 and "gave up after 5 attempts" in row.error
    assert [c for c in server.handler.commands if c.startswith("RCPT")] == ["RCPT flaky9@example.org"]
