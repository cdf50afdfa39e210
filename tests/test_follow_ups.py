"""Follow-ups that stop on a reply: a campaign of 10 through a real SMTP server, replies, a bounce
and an out-of-office put in a real Dovecot mailbox, and run-due three days later (a fake clock)
sends the follow-up, threaded under each first message, only to those who did not answer."""

from __future__ import annotations

import datetime as dt
import imaplib
from collections import Counter
from email.message import EmailMessage

import pytest

from backend.app import LOCAL_INBOX, App
from backend.credentials import EncryptedFileStore, account_key
from backend.errors import SettingsError
from backend.inbox import LocalInbox
from backend.inputs import AccountInput, FollowUpInput, MessageInput, ScheduleInput, SendOptions
from tests.servers import PASSWORD, USER
from tests.test_scheduling import FakeClock

UTC = dt.UTC
PHRASE = "a passphrase for the test"
REPLIED = ("p01@example.org", "p04@example.org", "p07@example.org")
BOUNCED = "p02@example.org"
AWAY = "p05@example.org"  # out of office: no answer, gets the follow-up
MOVED = "p08@example.org"  # an auto-reply saying the address is gone: left out


def account(smtp, imap, certs) -> AccountInput:
    return AccountInput(host=smtp.host, port=smtp.port, security="starttls", user=USER, password=PASSWORD,
                        from_address="me@example.com", ca_file=certs.ca_file, timeout=10, imap_host=imap.host,
                        imap_port=imap.port_ssl)


def put(imap, certs, msg: EmailMessage | bytes, when: dt.datetime) -> None:
    """Into INBOX, arrived at `when` (the test's clock: the app reads from the day before its first send)."""
    m = imap.client(certs.ca_file)
    data = msg if isinstance(msg, bytes) else msg.as_bytes()
    try:
        assert m.append("INBOX", None, imaplib.Time2Internaldate(when.timestamp()), data)[0] == "OK"
    finally:
        m.logout()


def reply(to_id: str, sender: str, text: str, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "me@example.com", "Re: Hello"
    msg["Message-ID"], msg["In-Reply-To"], msg["References"] = f"<r-{sender}>", to_id, to_id
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(text)
    return msg


def bounce(to_id: str, address: str) -> bytes:
    """An RFC 3464 delivery status notification for that message."""
    return (f"From: MAILER-DAEMON@example.org\r\nTo: me@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            "Message-ID: <dsn-1@example.org>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
            "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
            "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
            f"Final-Recipient: rfc822; {address}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n"
            f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {to_id}\r\nTo: {address}\r\n"
            "Subject: Hello\r\n\r\n--B--\r\n").encode()


def test_the_follow_up_goes_to_those_who_did_not_answer_in_their_thread(imap_server, smtp_server, certs, tmp_path):
    imap, smtp = imap_server(), smtp_server("starttls")
    # Days in the past: Dovecot takes no arrival time in the future.
    clock = FakeClock(dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(days=5))
    store = EncryptedFileStore(tmp_path / "secrets.enc")
    store.save(account_key(USER, smtp.host), PASSWORD, PHRASE)  # the timer sends with the saved password
    app = App(journal_path=tmp_path / "journal.sqlite3", store=store, clock=clock.clock())
    app.import_recipients(("text", "email,name\n" + "".join(f"p{i:02d}@example.org,P{i}\n" for i in range(10))))
    step = FollowUpInput(after_days=3, text="Just checking in, {{ name }}: did you see my note?")
    draft, plan = app.prepare(account(smtp, imap, certs), MessageInput(subject="Hello {{ name }}", text="Hi {{ name }}",
                                                                       delay_ms=0),
                              SendOptions(sent_copy="never", schedule=ScheduleInput(follow_ups=(step,))))
    app.launch(draft, plan)
    app.run.wait()
    cid = app.run.id
    first = {r.email: r.message_id for r in app.results(cid)}
    assert len(smtp.messages) == 10
    clock.advance(3600)  # the answers come in an hour later

    for address in REPLIED:
        put(imap, certs, reply(first[address], address, "Thanks, count me in."), clock.now())
    put(imap, certs, bounce(first[BOUNCED], BOUNCED), clock.now())
    put(imap, certs, reply(first[AWAY], AWAY, "I am out of the office until Monday.", Auto_Submitted="auto-replied"),
        clock.now())
    put(imap, certs, reply(first[MOVED], MOVED, "I am no longer with the company; please write to someone else.",
                           Auto_Submitted="auto-replied"), clock.now())

    clock.advance(2 * 86400)
    assert app.run_due(passphrase=PHRASE) == []  # day 3: not yet
    assert len(smtp.messages) == 10
    clock.advance(86400 + 60)
    (done,) = app.run_due(passphrase=PHRASE)
    assert done["kind"] == "follow-up" and done["step"] == 1 and done["state"] == "finished", done

    follow = smtp.messages[10:]
    got = Counter(m.rcpt_tos[0] for m in follow)
    wanted = {f"p{i:02d}@example.org" for i in range(10)} - set(REPLIED) - {BOUNCED, MOVED}
    assert set(got) == wanted and max(got.values()) == 1 and AWAY in got
    for m in follow:
        msg = m.message
        to = m.rcpt_tos[0]
        assert msg["In-Reply-To"] == first[to] and msg["References"] == first[to]
        assert msg["Subject"] == f"Re: Hello P{int(to[1:3])}"
        assert "did you see my note?" in msg.get_content()

    history = {c["id"]: c for c in app.history()}
    (shown,) = history[cid]["times"]["follow_ups"]
    assert shown["state"] == "finished" and shown["counts"] == {"sent": 5, "skipped": 5}
    reasons = {r.email: r.error for r in app.results(shown["campaign"]) if r.status == "skipped"}
    assert reasons[REPLIED[0]] == "not sent: replied"
    assert reasons[BOUNCED] == "not sent: the earlier message bounced"
    assert reasons[MOVED] == "not sent: an auto-reply said the address is no longer used"
    assert history[shown["campaign"]]["times"]["follow_up_of"] == cid
    assert app.run_due(passphrase=PHRASE) == []  # never twice
    app.shutdown()


def practice(tmp_path, clock: FakeClock, *steps: FollowUpInput) -> tuple[App, str]:
    app = App(inbox=LocalInbox(), journal_path=tmp_path / "journal.sqlite3", clock=clock.clock())
    app.import_recipients(("text", "a@example.org\nb@example.org\n"))
    draft, plan = app.prepare(AccountInput(provider=LOCAL_INBOX, from_address="me@example.com"),
                              MessageInput(subject="Hello", text="Hi", delay_ms=0),
                              SendOptions(schedule=ScheduleInput(follow_ups=steps)))
    app.launch(draft, plan)
    app.run.wait()
    return app, app.run.id


def test_a_follow_up_whose_day_passed_long_ago_is_skipped_with_the_reason(tmp_path):
    clock = FakeClock(dt.datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    app, cid = practice(tmp_path, clock, FollowUpInput(after_days=1, text="again", expire_days=2),
                        FollowUpInput(after_days=2, text="and again"))
    clock.advance(4 * 86400)  # the computer was off: day 1's follow-up is 3 days late
    assert app.run_due() == []
    steps = app.history()[0]["times"]["follow_ups"]
    assert [s["state"] for s in steps] == ["skipped", "skipped"]
    assert "passed more than 2 day(s) ago" in steps[0]["reason"] and steps[1]["reason"] == \
        "not sent: follow-up 1 was not sent"
    app.shutdown()


def test_a_late_follow_up_within_its_expiry_goes_and_the_next_waits_for_it(tmp_path):
    clock = FakeClock(dt.datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    app, cid = practice(tmp_path, clock, FollowUpInput(after_days=1, text="again"),
                        FollowUpInput(after_days=2, text="and again"))
    clock.advance(int(1.5 * 86400))
    (done,) = app.run_due()
    assert done["step"] == 1 and done["counts"] == {"sent": 2}
    clock.advance(86400)
    assert app.run_due() == []  # step 2 is due 2 days after step 1 went
    clock.advance(86400 + 60)
    (done,) = app.run_due()
    assert done["step"] == 2 and done["counts"] == {"sent": 2}
    shown = app.history()
    parent = next(c for c in shown if c["id"] == cid)
    assert [s["counts"] for s in parent["times"]["follow_ups"]] == [{"sent": 2}, {"sent": 2}]
    # The second step replies to the first follow-up, its References the whole thread.
    step2 = next(c for c in shown if c["id"] == f"{cid}-f2")
    assert step2["times"]["step"] == 2
    app.shutdown()


def test_follow_ups_need_a_mailbox_to_read_and_at_most_three(smtp_server, tmp_path):
    server = smtp_server("plain", auth=False)
    app = App(journal_path=tmp_path / "journal.sqlite3")
    app.import_recipients(("text", "a@example.org\n"))
    relay = AccountInput(host=server.host, port=server.port, security="none", from_address="me@example.com")
    with pytest.raises(SettingsError, match="IMAP server") as caught:
        app.prepare(relay, MessageInput(subject="Hi", text="Hi"),
                    SendOptions(schedule=ScheduleInput(follow_ups=(FollowUpInput(after_days=3, text="x"),))))
    assert caught.value.field == "follow_ups"
    inbox = App(inbox=LocalInbox(), journal_path=tmp_path / "j2.sqlite3")
    inbox.import_recipients(("text", "a@example.org\n"))
    with pytest.raises(SettingsError, match="at most 3"):
        inbox.prepare(AccountInput(provider=LOCAL_INBOX, from_address="me@example.com"),
                      MessageInput(subject="Hi", text="Hi"),
                      SendOptions(schedule=ScheduleInput(follow_ups=(FollowUpInput(after_days=1, text="x"),) * 4)))
    app.shutdown()
    inbox.shutdown()
