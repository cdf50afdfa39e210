"""Several messages on the way on one connection (RFC 2920), against aiosmtpd and Postfix's smtp-sink.

Message n+1's MAIL, RCPT and DATA are written before message n's final reply is read; replies
are matched to their message in order; a refusal touches only its message; a dropped connection
leaves the message whose dot went out uncertain and sends the others once more, never twice.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from backend.campaign import RetryPolicy, run_campaign
from backend.journal import Journal
from backend.settings import SmtpSettings
from backend.transports.smtp import SmtpTransport
from tests.servers import Received, RecordingHandler, free_port
from tests.test_campaign import FakeClock, build
from tests.test_pool import FAULTS, people, pool

SMTP_SINK = "/usr/sbin/smtp-sink"
ROOT = Path(__file__).resolve().parent.parent


class Overlap(RecordingHandler):
    """Offers PIPELINING; holds each final reply a moment and notes whether the next message's
    MAIL FROM had arrived meanwhile (the client did not wait for the reply to send it)."""

    def __init__(self, hold: float = 0.15) -> None:
        super().__init__(pipelining=True)
        self.hold = hold
        self.next_already_there: list[bool] = []

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.hold)
        self.next_already_there.append(b"MAIL FROM" in bytes(server._reader._buffer).upper())
        return await super().handle_DATA(server, session, envelope)


def test_next_message_goes_out_before_the_previous_reply_is_read(smtp_server, certs):
    handler = Overlap()
    srv = smtp_server("starttls", handler=handler)
    emails = [f"p{i}@example.org" for i in range(6)]
    (t,) = pool(srv, certs, 1)
    out = run_campaign(people(emails), build, [t], campaign_id="o", delay_s=0)
    assert [r.status for r in out.results] == ["sent"] * 6
    assert [m.rcpt_tos[0] for m in srv.messages] == emails  # in order, each once
    # every message but the last had the next one's envelope behind it
    assert handler.next_already_there[:-1] == [True] * 5, handler.next_already_there
    assert srv.sessions == 1


def test_one_at_a_time_when_asked_or_not_offered(smtp_server, certs):
    handler = Overlap(hold=0.05)
    srv = smtp_server("starttls", handler=handler)
    (t,) = pool(srv, certs, 1)
    t.in_flight = 1
    t.open()
    assert t.pipeline_depth == 1
    run_campaign(people(["a@example.org", "b@example.org", "c@example.org"]), build, [t], campaign_id="s",
                 delay_s=0)
    assert handler.next_already_there == [False, False, False]
    plain = smtp_server("starttls", handler=RecordingHandler())  # aiosmtpd offers no PIPELINING itself
    (u,) = pool(plain, certs, 1)
    u.open()
    assert u.pipeline_depth == 1 and "pipelining" not in u.info.features
    u.close()



def run_faults(srv, certs, connections: int, in_flight: int):
    """Every kind of injected failure (FAULTS) sent over a pool with this many messages in flight."""
    clock = FakeClock()
    transports = pool(srv, certs, connections, timeout=1)
    for t in transports:
        t.in_flight = in_flight
    return run_campaign(people(FAULTS), build, transports, campaign_id="f", delay_s=0, clock=clock,
                        sleep=clock.sleep, retry=RetryPolicy(base_s=5, jitter=0))

@pytest.mark.parametrize("connections", [1, 3])
def test_every_kind_of_reply_settles_only_its_own_message(smtp_server, certs, connections):
    # The same list one at a time and pipelined: the same outcome for each recipient, and the
    # same deliveries (a refusal, a 421, a drop after the dot touch only their message).
    results = {}
    for in_flight in (1, 2):
        srv = smtp_server("starttls", handler=RecordingHandler(pipelining=True))
        out = run_faults(srv, certs, connections, in_flight)
        results[in_flight] = ([(r.email, r.status, r.category, r.smtp_code) for r in out.results],
                              Counter(m.rcpt_tos[0] for m in srv.messages))
    assert results[2] == results[1]
    statuses = {e: s for e, s, _, _ in results[2][0]}
    assert statuses["reject550@example.org"] == statuses["spam@example.org"] == "failed"
    assert statuses["dropdata@example.org"] == "uncertain"
    assert all(statuses[e] == "sent" for e in ("a@example.org", "b@example.org", "c@example.org", "d@example.org",
                                               "close421@example.org", "droprcpt@example.org", "data421@example.org"))
    assert max(results[2][1].values()) == 1  # none delivered twice


class DropAfterDot(RecordingHandler):
    """Takes the message of drop@ and closes the connection before answering its dot, or its BDAT
    LAST with chunking (every time), while the next message is already on its way."""

    def __init__(self, chunking: bool = False) -> None:
        super().__init__(pipelining=True, chunking=chunking)

    async def handle_DATA(self, server, session, envelope):
        if envelope.rcpt_tos and envelope.rcpt_tos[0].startswith("drop@"):
            with self.lock:
                self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, None))
            server.transport.close()
            await asyncio.sleep(3600)
        return await super().handle_DATA(server, session, envelope)


def test_a_drop_mid_pipeline_leaves_one_uncertain_and_sends_the_rest_once(smtp_server, certs, tmp_path):
    srv = smtp_server("starttls", handler=DropAfterDot())
    emails = [f"p{i}@example.org" for i in range(10)]
    emails.insert(4, "drop@example.org")
    journal = Journal(tmp_path / "j.sqlite3")
    recipients = people(emails)
    journal.create("d", account="a", spec={}, recipients=recipients)
    commits_before = journal.commits

    def record(sending, done):
        journal.record("d", sending=sending, outcome=done)

    (t,) = pool(srv, certs, 1, timeout=2)
    out = run_campaign(recipients, build, [t], campaign_id="d", delay_s=0, record=record,
                       retry=RetryPolicy(base_s=0.01, jitter=0))
    statuses = {r.email: r.status for r in out.results}
    assert statuses.pop("drop@example.org") == "uncertain"  # its dot went out: the server may have it
    assert set(statuses.values()) == {"sent"}
    got = Counter(m.rcpt_tos[0] for m in srv.messages)
    assert got == Counter(emails)  # the one behind it went again on a new connection: once
    assert srv.sessions == 2
    rows = {r.recipient.email: r.result.status for r in journal.rows("d")}
    assert rows == {r.email: r.status for r in out.results}
    # one commit a message (its 'sending' mark carries the previous outcome), not two
    assert journal.commits - commits_before <= len(emails) + 3


@pytest.mark.skipif(not os.access(SMTP_SINK, os.X_OK),
                    reason="Postfix's smtp-sink is not installed: apt-get install postfix (.ci/run does)")
def test_against_postfix_smtp_sink_through_a_distant_link():
    # smtp-sink offers PIPELINING (as Postfix's smtpd does); through benchmarks/latency_proxy.py
    # it is 40 ms away: one round trip a message, not two.
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    sink = subprocess.Popen([SMTP_SINK, *user, f"127.0.0.1:{port}", "64"],  # noqa: S603
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy_port = free_port()
    proxy = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "latency_proxy.py"),  # noqa: S603
                              str(proxy_port), str(port), "20"], stdout=subprocess.PIPE, text=True)
    try:
        assert proxy.stdout is not None and proxy.stdout.readline().strip() == "ready"
        settings = SmtpSettings(host="127.0.0.1", port=proxy_port, security="none", timeout=10)
        t = SmtpTransport(settings)
        for _ in range(50):
            try:
                t.open()
                break
            except Exception:
                time.sleep(0.1)
        assert t.pipeline_depth == 2 and "pipelining" in t.info.features
        emails = [f"p{i}@example.org" for i in range(30)]
        started = time.monotonic()
        out = run_campaign(people(emails), build, [t], campaign_id="k", delay_s=0)
        seconds = time.monotonic() - started
        assert [r.status for r in out.results] == ["sent"] * 30
        # one at a time: 2 round trips (80 ms) a message, at least 2.4 s; pipelined about 1.3 s
        assert seconds < 2.2, seconds
    finally:
        proxy.terminate()
        sink.terminate()
        proxy.wait(10)
        sink.wait(10)
