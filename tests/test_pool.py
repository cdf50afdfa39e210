"""Sending on several connections at once, and SMTP pipelining, against real servers."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from backend.campaign import Control, RateLimiter, RateLimits, RetryPolicy, run_campaign
from backend.recipients import Recipient
from backend.settings import SmtpSettings
from backend.transports.smtp import SmtpTransport
from tests.servers import PASSWORD, USER, RecordingHandler
from tests.test_campaign import FakeClock, build


def people(emails: list[str]) -> list[Recipient]:
    return [Recipient(e, {}, i + 2) for i, e in enumerate(emails)]


def pool(server, certs, n: int, **kw) -> list[SmtpTransport]:
    options = dict(host=server.host, port=server.port, security="starttls", user=USER, password=PASSWORD,
                   ca_file=certs.ca_file, timeout=3)
    options.update(kw)
    return [SmtpTransport(SmtpSettings(**options)) for _ in range(n)]


class Events:
    """Every event, in the order the callback saw them (the callback runs on several threads)."""

    def __init__(self) -> None:
        self.all: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, event: dict) -> None:
        with self.lock:
            self.all.append(event)

    def check_order(self, total: int) -> dict[int, list[str]]:
        """Each recipient: 'sending' before each outcome, one outcome per 'sending'."""
        seen: dict[int, list[str]] = {}
        for e in self.all:
            seen.setdefault(e["current"], []).append(e["status"])
            assert e["total"] == total
        for statuses in seen.values():
            assert statuses[0::2] == ["sending"] * len(statuses[0::2]), statuses
            assert "sending" not in statuses[1::2] and len(statuses) % 2 == 0, statuses
        return seen


class Pipelining(RecordingHandler):
    """Offers PIPELINING and notes whether RCPT and DATA had already arrived when MAIL was read."""

    def __init__(self) -> None:
        super().__init__(pipelining=True)
        self.batched: list[bool] = []

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.batched.append(b"DATA" in bytes(server._reader._buffer).upper())
        return await super().handle_MAIL(server, session, envelope, address, mail_options)


FAULTS = ["a@example.org", "reject550@example.org", "close421@example.org", "b@example.org",
          "droprcpt@example.org", "spam@example.org", "data421@example.org", "ansi550@example.org",
          "c@example.org", "dropdata@example.org", "flaky1@example.org", "d@example.org"]


def outcomes(server, certs, handler, connections: int = 1):
    srv = server("starttls", handler=handler)
    clock = FakeClock()
    out = run_campaign(people(FAULTS), build, pool(srv, certs, connections, timeout=1), campaign_id="p",
                       delay_s=0, clock=clock, sleep=clock.sleep, retry=RetryPolicy(base_s=5, jitter=0))
    got = Counter(m.rcpt_tos[0] for m in srv.messages)
    return [(r.email, r.status, r.category, r.smtp_code) for r in out.results], got


def test_pipelining_gives_the_same_outcome_for_every_kind_of_reply(smtp_server, certs):
    plain, plain_got = outcomes(smtp_server, certs, RecordingHandler())
    handler = Pipelining()
    piped, piped_got = outcomes(smtp_server, certs, handler)
    assert piped == plain
    assert piped_got == plain_got
    assert handler.batched and all(handler.batched)  # MAIL, RCPT and DATA came in one write
    statuses = dict((e, s) for e, s, _, _ in piped)
    assert statuses["reject550@example.org"] == "failed" and statuses["spam@example.org"] == "failed"
    assert statuses["close421@example.org"] == statuses["droprcpt@example.org"] == "sent"  # retried
    assert statuses["dropdata@example.org"] == "uncertain"


def test_pipelining_a_refused_sender_is_refused_and_the_session_goes_on(smtp_server, certs):
    srv = smtp_server("starttls", handler=Pipelining())
    t = pool(srv, certs, 1)[0]
    from backend.errors import RejectedError
    from backend.transports.base import Envelope

    t.open()
    data = b"From: x@example.com\r\nSubject: s\r\n\r\nbody\r\n"
    with pytest.raises(RejectedError) as info:
        t.send(Envelope("blocked@example.com", ("a@example.org",)), data)
    assert info.value.category == "sender_rejected" and info.value.code == 550
    assert t.send(Envelope(USER, ("a@example.org",)), data).code == 250  # still in step
    t.close()
    assert [m.rcpt_tos for m in srv.messages] == [["a@example.org"]]


@pytest.mark.parametrize("pipelining", [False, True])
def test_n_connections_are_used_and_everyone_gets_it_once(smtp_server, certs, pipelining):
    srv = smtp_server("starttls", handler=RecordingHandler(pipelining=pipelining))
    emails = [f"p{i}@example.org" for i in range(120)]
    events = Events()
    out = run_campaign(people(emails), build, pool(srv, certs, 4), campaign_id="n", delay_s=0,
                       on_event=events)
    assert srv.sessions == 4
    assert Counter(m.rcpt_tos[0] for m in srv.messages) == Counter(emails)
    assert [r.status for r in out.results] == ["sent"] * 120
    seen = events.check_order(120)
    assert sorted(seen) == list(range(1, 121)) and all(s == ["sending", "sent"] for s in seen.values())
    assert out.summary()["sent"] == 120 and out.counts == Counter(sent=120)


def test_a_421_or_a_drop_on_one_connection_reconnects_it(smtp_server, certs):
    srv = smtp_server("starttls")
    emails = [f"p{i}@example.org" for i in range(60)]
    emails[10], emails[25], emails[40] = "close421@example.org", "droprcpt@example.org", "data421@example.org"
    out = run_campaign(people(emails), build, pool(srv, certs, 3), campaign_id="r", delay_s=0,
                       retry=RetryPolicy(base_s=0.01, jitter=0))
    assert [r.status for r in out.results] == ["sent"] * 60
    assert Counter(m.rcpt_tos[0] for m in srv.messages) == Counter(emails)
    assert srv.sessions == 3 + 3  # each drop reopened its own connection once


class FewConnections(RecordingHandler):
    """A server that allows two sessions at a time: a third is told 421 at EHLO."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        return responses if len(self.sessions) <= 2 else ["421 4.7.0 Too many connections from your host"]


def test_connections_the_server_refuses_leave_the_others_sending(smtp_server, certs):
    srv = smtp_server("plain", handler=FewConnections(), auth=False)
    emails = [f"p{i}@example.org" for i in range(40)]
    out = run_campaign(people(emails), build, pool(srv, certs, 4, security="none", user="", password=""),
                       campaign_id="f", delay_s=0)
    assert [r.status for r in out.results] == ["sent"] * 40 and out.stopped is None
    assert Counter(m.rcpt_tos[0] for m in srv.messages) == Counter(emails)


def test_cancel_stops_every_connection_after_its_current_message(smtp_server, certs):
    srv = smtp_server("starttls")
    control = Control()
    events = Events()

    def on_event(event):
        events(event)
        if event["status"] == "sent" and sum(e["status"] == "sent" for e in events.all) == 10:
            control.cancel()

    emails = [f"p{i}@example.org" for i in range(200)]
    out = run_campaign(people(emails), build, pool(srv, certs, 3), campaign_id="c", delay_s=0,
                       on_event=on_event, control=control)
    sent = [r.email for r in out.results if r.status == "sent"]
    assert out.stopped == "cancelled"
    assert 10 <= len(sent) <= 10 + 3 * 2  # what was in flight, or dispatched, on each connection
    assert sorted(m.rcpt_tos[0] for m in srv.messages) == sorted(sent)
    rest = [r for r in out.results if r.status != "sent"]
    assert rest and all(r.status == "skipped" and r.error == "not sent: stopped by the user; resume the campaign to send it" for r in rest)
    events.check_order(200)


def test_pause_holds_every_connection_until_resumed(smtp_server, certs):
    srv = smtp_server("starttls")
    control = Control()
    paused_at: list[int] = []
    resumed = threading.Event()

    def on_event(event):
        if event["status"] == "sent" and event["current"] == 5:
            control.pause()

    def on_pause(paused):
        if paused:
            paused_at.append(len(srv.messages))
            threading.Timer(0.3, lambda: (paused_at.append(len(srv.messages)), resumed.set(),
                                          control.resume())).start()

    emails = [f"p{i}@example.org" for i in range(60)]
    out = run_campaign(people(emails), build, pool(srv, certs, 3), campaign_id="h", delay_s=0,
                       on_event=on_event, control=control, on_pause=on_pause)
    assert resumed.is_set() and len(paused_at) == 2
    assert paused_at[0] == paused_at[1]  # nothing went out while paused, on any connection
    assert [r.status for r in out.results] == ["sent"] * 60


class WatchedLimiter(RateLimiter):
    """The limiter, noting the clock time of every send it lets through."""

    def __init__(self, limits: RateLimits) -> None:
        super().__init__(limits)
        self.log: list[float] = []

    def record(self, now: float) -> None:
        self.log.append(now)
        super().record(now)


def test_rate_limits_hold_across_connections(smtp_server, certs):
    srv = smtp_server("starttls")
    clock = FakeClock()
    limiter = WatchedLimiter(RateLimits(per_second=3, per_minute=20))
    emails = [f"p{i}@example.org" for i in range(45)]
    out = run_campaign(people(emails), build, pool(srv, certs, 4), campaign_id="l", delay_s=0,
                       clock=clock, sleep=clock.sleep, limiter=limiter)
    assert [r.status for r in out.results] == ["sent"] * 45
    assert len(limiter.log) == len(srv.messages) == 45  # every message passed the one limiter
    for window, limit in ((1.0, 3), (60.0, 20)):
        for t in limiter.log:
            assert sum(1 for u in limiter.log if t - window < u <= t) <= limit, (window, limiter.log)
    assert limiter.log[-1] - limiter.log[0] >= 120  # 45 at 20 a minute: two more minutes at least


def test_failures_in_a_row_stop_the_pool(smtp_server, certs):
    srv = smtp_server("starttls")
    emails = ["a@example.org"] + ["reject550@example.org"] * 30 + [f"z{i}@example.org" for i in range(30)]
    out = run_campaign(people(emails), build, pool(srv, certs, 3), campaign_id="s", delay_s=0,
                       max_failures_in_a_row=5)
    statuses = Counter(r.status for r in out.results)
    assert out.stopped == "recipient_rejected" and "in a row failed" in out.error.message
    assert 5 <= statuses["failed"] <= 5 + 3  # the ones in flight on the other connections end too
    assert statuses["sent"] == 1 and not any(m.rcpt_tos[0].startswith("z") for m in srv.messages)


def test_a_pool_of_one_for_a_transport_that_cannot_share(smtp_server, certs):
    # A single transport (e.g. an API with one token) is a pool of one: the same loop.
    srv = smtp_server("starttls")
    (t,) = pool(srv, certs, 1)
    out = run_campaign(people(["a@example.org", "b@example.org"]), build, t, campaign_id="o", delay_s=0)
    assert [r.status for r in out.results] == ["sent", "sent"] and srv.sessions == 1


def test_an_error_on_one_connection_stops_them_all_and_is_raised(smtp_server, certs):
    # The journal failing (a full disk) on one connection: nothing hangs, the error reaches the
    # caller (which marks the campaign interrupted), and nothing is sent after it.
    srv = smtp_server("starttls")
    calls = []

    def record(sending, outcome):
        calls.append(sending)
        if len(calls) == 10:
            raise OSError(28, "No space left on device")

    box: dict = {}

    def run():
        try:
            run_campaign(people([f"p{i}@example.org" for i in range(100)]), build, pool(srv, certs, 3),
                         campaign_id="e", delay_s=0, record=record)
        except OSError as exc:
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(20)
    assert not thread.is_alive()
    assert box["error"].errno == 28
    assert len(srv.messages) < 10 + 3


@pytest.mark.parametrize("address", ["a@b.org", "a.b+c@x-y.example", "jörg@example.com", "a@[1.2.3.4]", "<>",
                                     "x <a@b.org>", "a.@b.c", '"q q"@b.org', "a..b@c.org", "-@-"])
def test_pipelined_commands_quote_addresses_as_smtplib_does(address):
    import smtplib

    from backend.transports.smtp import _quoteaddr

    assert _quoteaddr(address) == smtplib.quoteaddr(address)


@pytest.mark.parametrize("connections", [1, 3])
def test_cancel_on_an_outcome_event_sends_nothing_more_and_the_journal_agrees(smtp_server, certs, tmp_path,
                                                                             connections):
    # With no delay an outcome is committed with the next recipient's 'sending' mark: a cancel
    # that comes as the outcome is told takes that next one back (its mark undone, not sent).
    from backend import service
    from backend.journal import Journal
    from backend.recipients import parse_text

    srv = smtp_server("starttls")
    emails = [f"p{i}@example.org" for i in range(30)]
    draft = service.make_draft(parse_text("\n".join(emails)), subject="S", html=None, text="x",
                               from_address="me@example.com", delay_ms=0)
    journal = Journal(tmp_path / "j.sqlite3")
    control = Control()
    sent: list[str] = []

    def on_event(event):
        if event["status"] == "sent":
            sent.append(event["recipient"])
            if len(sent) == 2:
                control.cancel()

    out = service.send(draft, pool(srv, certs, connections), journal=journal, on_event=on_event, control=control,
                       account="x", spec={})
    assert out.stopped == "cancelled"
    on_server = sorted(m.rcpt_tos[0] for m in srv.messages)
    assert on_server == sorted(r.email for r in out.results if r.status == "sent")
    assert 2 <= len(on_server) <= 2 + (connections - 1)  # others already on their way finish
    if connections == 1:
        assert on_server == emails[:2]
    rows = journal.rows(draft.id)
    assert {r.result.status for r in rows} == {"sent", "pending"}  # nothing left 'sending'
    assert sorted(r.recipient.email for r in rows if r.result.status == "sent") == on_server
    left = journal.rows(draft.id, ["pending", "deferred"])  # what a resume sends
    assert sorted(r.recipient.email for r in left) == sorted(set(emails) - set(on_server))


def test_pause_on_an_outcome_event_holds_the_next_one_back_in_order(smtp_server, certs):
    srv = smtp_server("starttls")
    control = Control()
    held: list[int] = []

    def on_event(event):
        if event["status"] == "sent" and event["current"] == 3:
            control.pause()

    def on_pause(paused):
        if paused:
            held.append(len(srv.messages))
            threading.Timer(0.2, lambda: (held.append(len(srv.messages)), control.resume())).start()

    emails = [f"p{i}@example.org" for i in range(10)]
    out = run_campaign(people(emails), build, pool(srv, certs, 1), campaign_id="q", delay_s=0,
                       on_event=on_event, control=control, on_pause=on_pause, record=lambda s, o: None)
    assert held == [3, 3]  # the fourth was taken back, not sent, while paused
    assert [m.rcpt_tos[0] for m in srv.messages] == emails  # and went first after the pause
    assert [r.status for r in out.results] == ["sent"] * 10 and out.results[3].attempts == 1
