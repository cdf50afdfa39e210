"""track: a campaign's bounces and replies read from a real Dovecot (tests/imapserver.py), read-only.

A real campaign is sent to an aiosmtpd server; messages of the corpus (tests/bounces/) are
rewritten to point to its Message-IDs and put in INBOX (and Junk); track must record them in
the journal, the results CSV and the campaign's counts, suppress the bounced addresses, read
nothing twice, and leave every flag in the mailbox as it was.
"""

from __future__ import annotations

import csv
import imaplib
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.app import App
from backend.errors import MailerError
from backend.inputs import AccountInput, MessageInput, SendOptions
from backend.model import ResultRow
from tests.servers import PASSWORD, USER

CORPUS = Path(__file__).parent / "bounces"
# corpus file -> what track makes of its recipient
PLAN = {
    "postfix-user-unknown-headers.eml": "bounced",          # RFC 3464, text/rfc822-headers
    "gmail-no-such-user.eml": "bounced",                     # RFC 3464, message/rfc822
    "qmail-remote-user-unknown.eml": "bounced",              # heuristic, original inline
    "exchange2000-text-only.eml": "bounced",                 # heuristic, no Message-ID: by address
    "postfix-delayed.eml": "sent",                           # delayed: recorded, no change
    "gmail-over-quota-gave-up.eml": "sent",                  # transient: recorded, no change
    "reply-threaded-en.eml": "replied",
    "reply-unthreaded-re.eml": "replied",                    # From a recipient, after their message
    "ooo-de-x-autoreply.eml": "auto_replied",
    "ooo-exchange-automatic-reply.eml": "auto_replied",
}
IN_JUNK = {"reply-threaded-en.eml"}
UNCERTAIN = {"icloud-delayed.eml": "sent", "yahoo-text-user-unknown.eml": "bounced"}  # left uncertain by a crash
QUIET = ["quiet@example.org"]  # no message about them: stays sent


def corpus_address(name: str) -> str:
    """The recipient a corpus message is about (rNN@example.org)."""
    return re.search(r"r\d\d@example\.org", (CORPUS / name).read_text(encoding="utf-8")).group(0)


def rewritten(name: str, ids: dict[str, str]) -> bytes:
    """The corpus message, pointing to the real Message-ID sent to its recipient."""
    text = (CORPUS / name).read_text(encoding="utf-8")
    n = re.search(r"r(\d\d)@example\.org", text).group(1)
    return text.replace(f"<orig-{n}.bm@example.com>", ids[f"r{n}@example.org"]).encode()


def account(smtp, imap, certs, **kw) -> AccountInput:
    return AccountInput(**{"host": smtp.host, "port": smtp.port, "security": "starttls", "user": USER,
                           "password": PASSWORD, "from_address": "me@example.com", "ca_file": certs.ca_file,
                           "timeout": 10, "imap_host": imap.host, "imap_port": imap.port_ssl, **kw})


def recipients(tmp_path: Path) -> Path:
    f = tmp_path / "people.txt"
    names = [*PLAN, *UNCERTAIN]
    f.write_text("".join(corpus_address(n) + "\n" for n in names) + "".join(a + "\n" for a in QUIET))
    return f


class Mailbox:
    """The test's own look into the Dovecot account (not the app's client)."""

    def __init__(self, imap, certs) -> None:
        self.imap, self.certs = imap, certs

    def put(self, folder: str, data: bytes, flags: str = "") -> None:
        m = self.imap.client(self.certs.ca_file)
        try:
            if folder != "INBOX":
                m.create(f'"{folder}"')
            typ, _ = m.append(f'"{folder}"', f"({flags})" if flags else None, imaplib.Time2Internaldate(time.time()),
                              data)
            assert typ == "OK"
        finally:
            m.logout()

    def flags(self, folder: str) -> dict[int, bytes]:
        m = self.imap.client(self.certs.ca_file)
        try:
            m.select(f'"{folder}"', readonly=True)
            typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
            out = {}
            for line in data or []:
                if isinstance(line, bytes) and b"UID" in line:
                    uid = int(re.search(rb"UID (\d+)", line).group(1))
                    flags = re.search(rb"FLAGS \(([^)]*)\)", line).group(1).split()
                    out[uid] = b" ".join(sorted(f for f in flags if f != b"\\Recent"))  # \Recent: per session
            return out
        finally:
            m.logout()


def sent_campaign(tmp_path, smtp, imap, certs) -> tuple[App, str, dict[str, str]]:
    app = App(journal_path=tmp_path / "j.sqlite3")
    app.import_recipients(("file", str(recipients(tmp_path))))
    draft, plan = app.prepare(account(smtp, imap, certs), MessageInput(subject="Hello", text="Hello there",
                                                                       delay_ms=0), SendOptions(sent_copy="never"))
    outcome = app.start(draft, plan).wait()
    assert outcome.counts["sent"] == len(PLAN) + len(UNCERTAIN) + len(QUIET)
    rows = app.journal.rows(outcome.campaign)
    ids = {r.recipient.email: r.result.message_id for r in rows}
    # A crash left two of them uncertain: as the journal has it after a kill (its 'sending' mark
    # with the Message-ID, then mark_interrupted): no time sent.
    for r in rows:
        if r.recipient.email in {corpus_address(n) for n in UNCERTAIN}:
            app.journal.mark_outcome(outcome.campaign, r.index, ResultRow(r.recipient.email, "pending", line=r.result.line))
            app.journal.record(outcome.campaign, sending=r.index, sending_id=r.result.message_id)
    assert app.journal.mark_interrupted(outcome.campaign, "killed") == len(UNCERTAIN)
    assert {r.result.message_id for r in app.journal.rows(outcome.campaign, ["uncertain"])} == \
        {ids[corpus_address(n)] for n in UNCERTAIN}
    return app, outcome.campaign, ids


def fill_mailbox(box: Mailbox, ids: dict[str, str]) -> None:
    for name in [*PLAN, *UNCERTAIN]:
        box.put("Junk" if name in IN_JUNK else "INBOX", rewritten(name, ids))
    # A bounce for an address of no recipient, and a message already read by the user.
    box.put("INBOX", (CORPUS / "sendmail-user-unknown-rfc822.eml").read_bytes())
    box.put("INBOX", (CORPUS / "unrelated-new-message.eml").read_bytes(), flags="\\Seen \\Flagged")


def test_track_records_bounces_and_replies_and_changes_nothing_in_the_mailbox(
        imap_server, smtp_server, certs, tmp_path):
    imap, smtp = imap_server(), smtp_server("starttls")
    app, cid, ids = sent_campaign(tmp_path, smtp, imap, certs)
    box = Mailbox(imap, certs)
    fill_mailbox(box, ids)
    before = {f: box.flags(f) for f in ("INBOX", "Junk")}
    assert len(before["INBOX"]) == len(PLAN) + len(UNCERTAIN) - len(IN_JUNK) + 2

    outcome = app.track(cid, account(smtp, imap, certs))

    assert {f: box.flags(f) for f in ("INBOX", "Junk")} == before  # no \Seen, nothing moved or deleted
    assert outcome.folders == ["INBOX", "Junk"] and outcome.read == len(PLAN) + len(UNCERTAIN) + 2
    status = {r.email: r for r in app.results(cid)}
    for name, want in {**PLAN, **UNCERTAIN}.items():
        assert status[corpus_address(name)].status == want, name
    assert status[QUIET[0]].status == "sent" and status[QUIET[0]].notice is None
    bounced = {corpus_address(n) for n, w in {**PLAN, **UNCERTAIN}.items() if w == "bounced"}
    assert {b["email"] for b in outcome.bounced} == bounced
    assert sorted(outcome.suppressed) == sorted(bounced)
    assert {a for a, reason in app.suppression.all() if reason == "bounced"} == bounced
    assert not app.suppression.contains("r38@example.org")  # a bounce about no recipient of the campaign
    assert outcome.unmatched >= 1
    pf = status[corpus_address("postfix-user-unknown-headers.eml")]
    assert (pf.dsn_status, pf.smtp_code) == ("5.1.1", 550) and "User unknown" in pf.error and pf.notice_at
    delayed = status[corpus_address("postfix-delayed.eml")]
    assert delayed.dsn_status == "4.4.1" and delayed.notice.startswith("delayed:")
    reply = status[corpus_address("reply-threaded-en.eml")]
    assert reply.notice == "Thanks, that works for me. See you on Friday!" and reply.notice_at.startswith("2026-12-02")
    assert sorted(outcome.now_sent) == [corpus_address("icloud-delayed.eml")]
    assert outcome.summary() == (f"{len(bounced)} bounced, 2 replied, 2 auto-replies, 3 delayed, "
                                 f"1 uncertain now known sent, {outcome.read} messages read, "
                                 "nothing changed in your mailbox")

    # The results CSV and the history's counts carry the new statuses.
    text, _ = app.export(cid)
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(text))}
    assert rows[pf.email]["status"] == "bounced" and rows[pf.email]["dsn_status"] == "5.1.1"
    assert rows[reply.email]["status"] == "replied"
    counts = next(c for c in app.history() if c["id"] == cid)["counts"]
    assert counts == {"sent": 4, "bounced": len(bounced), "replied": 2, "auto_replied": 2}

    # A second run reads nothing it read before; a new message is read alone.
    again = app.track(cid, account(smtp, imap, certs))
    assert again.read == 0 and again.summary().startswith("0 bounced, 0 replied, 0 auto-replies, 0 messages read")
    box.put("INBOX", rewritten("reply-auto-submitted-no.eml", {corpus_address("reply-auto-submitted-no.eml"):
                                                                "<none@example.com>"}))
    box.put("INBOX", rewritten("ooo-en-auto-submitted.eml", {corpus_address("ooo-en-auto-submitted.eml"):
                                                              "<none@example.com>"}))
    assert app.track(cid, account(smtp, imap, certs)).read == 2
    assert {f: box.flags(f) for f in ("INBOX", "Junk")}["Junk"] == before["Junk"]

    # Resend to failed: bounced addresses are no failed ones, and suppressed: left out, said so.
    status_rows = app.journal.rows(cid)
    quiet = next(r for r in status_rows if r.recipient.email == QUIET[0])
    app.journal.mark_outcome(cid, quiet.index, ResultRow(QUIET[0], "failed", "recipient_refused", 550, "no", 1,
                                                         None, None, line=quiet.result.line))
    run = app.resend(cid, account=account(smtp, imap, certs, password=PASSWORD))
    assert run.total == 1 and run.left_out["bounced"] == len(bounced)
    run.wait()


def test_track_from_the_command_line_and_campaigns_json(imap_server, smtp_server, certs, tmp_path):
    imap, smtp = imap_server(special_use=False), smtp_server("starttls")
    home = tmp_path / "h"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULK_MAILER_")}
    env.update(BULK_MAILER_HOME=str(home), BULK_MAILER_PASSWORD=PASSWORD)
    body = tmp_path / "b.txt"
    body.write_text("Hello there")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "backend.cli", *args], capture_output=True, text=True, env=env,
                              timeout=120)

    sent = cli("send", "--host", smtp.host, "--port", str(smtp.port), "--security", "starttls", "--user", USER,
               "--ca-file", certs.ca_file, "--from", "me@example.com", "--to-file", str(recipients(tmp_path)),
               "--subject", "Hello", "--text-file", str(body), "--delay-ms", "0", "--imap-host", imap.host,
               "--imap-port", str(imap.port_starttls), "--imap-security", "starttls")
    assert sent.returncode == 0, sent.stderr
    assert len(imap.messages("Sent Items", certs.ca_file)) == len(PLAN) + len(UNCERTAIN) + 1
    app = App(journal_path=home / "data" / "journal.sqlite3")
    ids = {r.recipient.email: r.result.message_id for r in app.journal.rows(app.campaign_id("latest"))}
    box = Mailbox(imap, certs)
    for name in PLAN:
        box.put("INBOX", rewritten(name, ids))
    before = box.flags("INBOX")

    # No account options: the campaign's own mailbox (where it filed its copies), its password.
    tracked = cli("track", "latest", "--json")
    assert tracked.returncode == 0, tracked.stderr
    data = json.loads(tracked.stdout)
    bounced = sum(w == "bounced" for w in PLAN.values())
    assert data["counts"]["bounced"] == bounced and data["counts"]["replied"] == 2 and data["read"] == len(PLAN)
    assert data["folders"] == ["INBOX"] and data["mailbox_changed"] is False
    assert (f"{bounced} bounced, 2 replied, 2 auto-replies, 2 delayed, {len(PLAN)} messages read, nothing changed "
            "in your mailbox") in tracked.stderr
    assert box.flags("INBOX") == before
    listed = json.loads(cli("campaigns", "latest", "--json").stdout)
    info = listed[0] if isinstance(listed, list) else listed
    assert info["counts"]["bounced"] == bounced and info["counts"]["auto_replied"] == 2
    exported = cli("export", "latest", "-")
    assert ",bounced," in exported.stdout and ",replied," in exported.stdout
    again = cli("track", "latest", "--imap-host", imap.host, "--imap-port", str(imap.port_starttls),
                "--imap-security", "starttls", "--user", USER, "--host", smtp.host, "--ca-file", certs.ca_file)
    assert again.returncode == 0, again.stderr
    assert "0 bounced, 0 replied, 0 auto-replies, 0 messages read" in again.stderr  # same mailbox: read before
    # Only when asked, the bounce notices it matched move to a "Bulk Mailer" folder; nothing else moves
    late = "icloud-delayed.eml"  # a delayed notice: not a bounce, stays
    box.put("INBOX", rewritten(late, ids))
    box.put("INBOX", rewritten("yahoo-text-user-unknown.eml", ids))
    kept = len(box.flags("INBOX"))
    moved = cli("track", "latest", "--move-bounces", "--json")
    assert moved.returncode == 0, moved.stderr
    data = json.loads(moved.stdout)
    assert data["moved"] == 1 and data["mailbox_changed"] is True
    assert "1 bounce notice moved to Bulk Mailer" in moved.stderr
    assert len(box.flags("INBOX")) == kept - 1 and len(box.flags("Bulk Mailer")) == 1


def test_track_wrong_password_is_categorised_and_never_shown(imap_server, smtp_server, certs, tmp_path,
                                                              monkeypatch):
    imap, smtp = imap_server(), smtp_server("starttls")
    app, cid, _ = sent_campaign(tmp_path, smtp, imap, certs)
    wrong = "Wr0ng-imap-pass-77"
    monkeypatch.setenv("BULK_MAILER_IMAP_PASSWORD", wrong)
    with pytest.raises(MailerError) as caught:
        app.track(cid, account(smtp, imap, certs))
    assert caught.value.category == "imap_auth_failed" and wrong not in str(caught.value.message)
    monkeypatch.delenv("BULK_MAILER_IMAP_PASSWORD")
    with pytest.raises(MailerError) as untrusted:
        app.track(cid, account(smtp, imap, certs, ca_file=None))
    assert untrusted.value.category == "certificate_invalid"


def test_verify_imap_logs_in_and_names_the_folders(imap_server, smtp_server, certs, tmp_path):
    imap, smtp = imap_server(), smtp_server("starttls")
    Mailbox(imap, certs).put("Spam", b"From: a@example.org\nSubject: x\n\nx\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULK_MAILER_")}
    env.update(BULK_MAILER_HOME=str(tmp_path / "h"), BULK_MAILER_PASSWORD=PASSWORD)
    args = [sys.executable, "-m", "backend.cli", "verify", "--host", smtp.host, "--port", str(smtp.port),
            "--security", "starttls", "--user", USER, "--ca-file", certs.ca_file, "--imap", "--imap-host", imap.host,
            "--imap-port", str(imap.port_ssl)]
    ok = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert f"Mailbox OK: {imap.host}:{imap.port_ssl} (ssl) as {USER}; Sent folder: Sent; Junk folder: Spam." in ok.stderr
    wrong = "Wr0ng-imap-pass-91"
    bad = subprocess.run(args, capture_output=True, text=True, env={**env, "BULK_MAILER_IMAP_PASSWORD": wrong},
                         timeout=60)
    assert bad.returncode == 2 and "[imap_auth_failed]" in bad.stderr and wrong not in bad.stderr + bad.stdout


def test_a_message_in_flight_when_the_app_was_killed_is_found_by_its_bounce(imap_server, smtp_server, certs,
                                                                             tmp_path):
    """The Message-ID is journaled with the 'sending' mark: after kill -9 the uncertain recipient
    has it, and its bounce makes it bounced."""
    import signal

    imap, smtp = imap_server(), smtp_server("starttls")
    home = tmp_path / "h"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULK_MAILER_")}
    env.update(BULK_MAILER_HOME=str(home), BULK_MAILER_PASSWORD=PASSWORD)
    people = tmp_path / "p.txt"
    people.write_text("silent@example.org\n")  # the test server never answers its DATA
    body = tmp_path / "b.txt"
    body.write_text("Hello there")
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "send", "--host", smtp.host, "--port",
                             str(smtp.port), "--security", "starttls", "--user", USER, "--ca-file", certs.ca_file,
                             "--from", "me@example.com", "--to-file", str(people), "--subject", "Hello",
                             "--text-file", str(body), "--timeout", "120", "--sent-copy", "never"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    journal = home / "data" / "journal.sqlite3"
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and not any(c.startswith("RCPT") for c in smtp.handler.commands):
            time.sleep(0.05)
        time.sleep(0.5)  # DATA is on its way and never answered
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    app = App(journal_path=journal)
    cid = app.campaign_id("latest")
    row = app.journal.rows(cid)[0]
    assert row.result.status == "uncertain" and row.result.message_id and row.result.sent_at is None
    text = (CORPUS / "gmail-no-such-user.eml").read_text(encoding="utf-8")
    bounce = re.sub(r"<orig-\d+\.bm@example\.com>", row.result.message_id, text)
    Mailbox(imap, certs).put("INBOX", bounce.encode())
    outcome = app.track(cid, account(smtp, imap, certs))
    assert outcome.read == 1 and [b["email"] for b in outcome.bounced] == ["silent@example.org"]
    assert app.results(cid)[0].status == "bounced" and app.suppression.contains("silent@example.org")


def test_the_automatic_check_reads_each_recent_campaign_at_most_every_ten_minutes(
        imap_server, smtp_server, certs, tmp_path, monkeypatch):
    """track_due (the window's timer calls it every minute): campaigns that sent something in the
    last 3 days, not practice runs, each at most every 10 minutes; a failure is reported, not raised."""
    from backend.core import mailbox as app_module

    imap, smtp = imap_server(), smtp_server("starttls")
    app, cid, ids = sent_campaign(tmp_path, smtp, imap, certs)
    app.import_recipients(("text", "practice@example.org"))  # a practice run: never read
    practice = app.start(*app.prepare(AccountInput(provider="local-inbox", from_address="me@example.com"),
                                      MessageInput(subject="Hi", text="x", delay_ms=0), SendOptions())).wait()
    Mailbox(imap, certs).put("INBOX", rewritten("postfix-user-unknown-headers.eml", ids))
    # the campaign's own mailbox (its IMAP server, with the sending login): no account needed
    monkeypatch.setenv("BULK_MAILER_IMAP_PASSWORD", PASSWORD)
    monkeypatch.setenv("SSL_CERT_FILE", certs.ca_file)
    [first] = app.track_due()
    assert "error" not in first, first
    assert first["campaign"] == cid and first["counts"]["bounced"] == 1 and practice.campaign != cid
    assert app.track_due() == []  # read a moment ago: not due yet
    monkeypatch.setattr(app_module, "TRACK_EVERY_S", 0)
    [again] = app.track_due()
    assert again["read"] == 0  # only new messages are read
    imap.stop()  # the mailbox cannot be reached: said, not raised
    [failed] = app.track_due()
    assert failed["campaign"] == cid and failed["error"]["category"] in ("imap_connection_failed", "timeout")
    monkeypatch.setattr(app_module, "TRACK_DAYS", 0)
    assert app.track_due() == []  # older than the days the window keeps reading
