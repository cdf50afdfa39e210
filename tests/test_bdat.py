"""BDAT instead of DATA (RFC 3030 CHUNKING) on a server offering CHUNKING and PIPELINING.

Each message goes as MAIL, RCPT and `BDAT <size> LAST` with its bytes in one write, before the
replies of the message ahead of it are read; the server receives the bytes DATA would have left
after un-stuffing. Against a real Postfix smtpd (tests/postfix.py: the same smtpd with and
without CHUNKING, so both paths meet the same server) and aiosmtpd with the BDAT of
tests/servers.py (for failures Postfix cannot inject: drops, 421s).
"""

from __future__ import annotations

import re
import socket
import threading
from collections import Counter

import pytest

from backend.campaign import Outgoing, RetryPolicy, run_campaign
from backend.errors import RejectedError
from backend.settings import SmtpSettings
from backend.transports.base import Envelope
from backend.transports.smtp import SmtpTransport
from tests import postfix
from tests.servers import RecordingHandler
from tests.test_campaign import FakeClock, build
from tests.test_pipelining import DropAfterDot, run_faults
from tests.test_pool import people, pool

SENDER = "me@example.com"
UTF8 = "Grüße, 日本語: ça marche"

needs_postfix = pytest.mark.skipif(not postfix.available(),
                                   reason="needs Postfix (apt-get install postfix) and root for its master")


def message(to: str, body: bytes, subject: str = "hi") -> bytes:
    return f"From: {SENDER}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n".encode() + body


BODIES = {
    # lines starting with '.': DATA stuffs them, BDAT must not
    "dots@example.org": message("dots@example.org", b".\r\n..\r\n.leading\r\n. space\r\nmid . dot\r\n.\r\n"),
    "long@example.org": message("long@example.org", b"".join(
        f"{i:06d} {'x' * 70}\r\n".encode() for i in range(6000))),  # about 470 KB
    "utf8@example.org": message("utf8@example.org", f"{UTF8}\r\n.{UTF8}\r\n".encode(), subject=UTF8),
    "noeol@example.org": message("noeol@example.org", b"no line end at the end"),  # DATA adds CRLF
    "plain@example.org": message("plain@example.org", b"hello\r\n"),
}


def build_bodies(recipient) -> Outgoing:
    return Outgoing(Envelope(SENDER, (recipient.email,)), BODIES[recipient.email], f"<{recipient.line}@x>")


class Relay:
    """A TCP relay on 127.0.0.1 that keeps every byte the client sent (the transcript)."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.sent = bytearray()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while data := src.recv(65536):
                if record:
                    self.sent += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def commands(self, verb: bytes) -> int:
        return len(re.findall(rb"(?im)^" + verb + rb"\b", bytes(self.sent)))

    def stop(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def postfix_server():
    if not postfix.available():
        pytest.skip("needs Postfix and root")
    server = postfix.Postfix().start()
    yield server
    server.stop()


def _send_all(port: int, emails: list[str], builder=build_bodies, **kw):
    t = SmtpTransport(SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=10))
    clock = FakeClock()
    out = run_campaign(people(emails), builder, [t], campaign_id="b", delay_s=0, clock=clock, sleep=clock.sleep,
                       retry=RetryPolicy(base_s=5, jitter=0, max_attempts=2), **kw)
    return t, out


@needs_postfix
def test_bdat_delivers_the_very_bytes_data_does_on_postfix(postfix_server):
    emails = list(BODIES)
    relay = Relay(postfix_server.port)
    try:
        t, out = _send_all(relay.port, emails)
        assert t.info.features.get("chunking") is not None and t.info.features.get("smtputf8") is not None
        assert [r.status for r in out.results] == ["sent"] * len(emails), [r.error for r in out.results]
        # the transcript: no DATA at all, one BDAT ... LAST a message, each message unstuffed
        assert relay.commands(b"data") == 0
        assert relay.commands(b"BDAT") == len(emails)
        assert re.search(rb"(?i)mail FROM:<me@example.com> SMTPUTF8", bytes(relay.sent))
        assert b"\r\n..leading" not in relay.sent and b"\r\n.leading\r\n" in relay.sent
    finally:
        relay.stop()
    by_bdat = dict(postfix_server.messages())
    for path in postfix_server.root.joinpath("dump").iterdir():
        path.unlink()
    u, out = _send_all(postfix_server.port_data, emails)
    assert not u.uses_bdat and "chunking" not in u.info.features
    assert [r.status for r in out.results] == ["sent"] * len(emails)
    by_data = dict(postfix_server.messages())
    assert set(by_bdat) == set(by_data) == set(emails)
    for email, sent in BODIES.items():
        expected = (sent if sent.endswith(b"\r\n") else sent + b"\r\n").replace(b"\r\n", b"\n")
        assert by_data[email] == expected, email  # what DATA leaves after un-stuffing...
        assert by_bdat[email] == by_data[email], email  # ...is what BDAT delivers


@needs_postfix
def test_a_refusal_on_postfix_touches_only_its_message(postfix_server):
    for path in postfix_server.root.joinpath("dump").iterdir():
        path.unlink()
    emails = ["a@example.org", "reject550@example.org", "b@example.org", "spam@example.org", "c@example.org",
              "defer451@example.org", "d@example.org"]
    results = {}
    for port in (postfix_server.port, postfix_server.port_data):
        t, out = _send_all(port, emails, build)
        results[port] = [(r.email, r.status, r.smtp_code, r.category) for r in out.results]
        got = Counter(rcpt for rcpt, _ in postfix_server.messages())
        assert got == Counter(["a@example.org", "b@example.org", "c@example.org", "d@example.org"])
        for path in postfix_server.root.joinpath("dump").iterdir():
            path.unlink()
    assert results[postfix_server.port] == results[postfix_server.port_data]  # BDAT as DATA
    statuses = {e: (s, code) for e, s, code, _ in results[postfix_server.port]}
    assert statuses["reject550@example.org"] == ("failed", 550)
    assert statuses["spam@example.org"] == ("failed", 554)
    assert statuses["defer451@example.org"] == ("failed", 451)  # deferred, then given up (2 tries)


@needs_postfix
def test_pipelined_bdat_keeps_several_messages_on_the_way_on_postfix(postfix_server):
    t = SmtpTransport(SmtpSettings(host="127.0.0.1", port=postfix_server.port, security="none", timeout=10),
                      in_flight=3)
    t.open()
    assert t.uses_bdat and t.pipeline_depth == 3  # no 354 to wait for: in_flight as asked
    emails = [f"p{i}@example.org" for i in range(20)]
    out = run_campaign(people(emails), build, [t], campaign_id="d", delay_s=0)
    assert [r.status for r in out.results] == ["sent"] * 20
    t.close()


class Chunking(RecordingHandler):
    """aiosmtpd offering PIPELINING and CHUNKING (tests/servers.py's BDAT)."""

    def __init__(self) -> None:
        super().__init__(pipelining=True, chunking=True)


@pytest.mark.parametrize("connections", [1, 3])
@pytest.mark.parametrize("in_flight", [1, 2, 3])
def test_every_kind_of_reply_settles_only_its_own_message_over_bdat(smtp_server, certs, connections, in_flight):
    srv = smtp_server("starttls", handler=Chunking())
    out = run_faults(srv, certs, connections, in_flight)
    assert "DATA" not in srv.handler.verbs and "BDAT" in srv.handler.verbs
    statuses = {r.email: r.status for r in out.results}
    got = Counter(m.rcpt_tos[0] for m in srv.messages)
    # the whole message went with its envelope: a drop before its reply leaves it uncertain,
    # and with it those written behind it on that connection (at most in_flight - 1 each)
    uncertain = {e for e, s in statuses.items() if s == "uncertain"}
    assert "droprcpt@example.org" in uncertain and len(uncertain) <= 2 * in_flight, uncertain
    # three uncertain in a row stop the run (campaign.py): with 3 on the way, one drop can do it
    for email, status in statuses.items():
        if status == "sent":
            assert got[email] == 1, email  # a 421 (close421@, data421@): sent again, once
        elif status == "failed":
            assert got[email] == 0 and email in ("reject550@example.org", "spam@example.org",
                                                 "ansi550@example.org"), email
        elif status in ("skipped", "deferred"):
            assert got[email] == 0 and out.stopped is not None, (email, status)  # due on resume
        else:
            assert status == "uncertain" and got[email] <= 1, (email, status)
    if connections == 1:  # in list order: those not behind a drop
        sent = {"a@example.org", "b@example.org", "c@example.org", "close421@example.org"}
        assert {e for e, s in statuses.items() if s == "sent"} >= sent
        assert statuses["reject550@example.org"] == statuses["ansi550@example.org"] == "failed"
        if in_flight < 3:
            assert "dropdata@example.org" in uncertain and out.stopped is None
        if in_flight == 1:
            assert uncertain == {"dropdata@example.org", "droprcpt@example.org"}
            assert statuses["spam@example.org"] == "failed" and statuses["data421@example.org"] == "sent"


def test_a_drop_mid_pipeline_leaves_at_most_the_written_ones_uncertain(smtp_server, certs):
    srv = smtp_server("starttls", handler=DropAfterDot(chunking=True))
    emails = [f"p{i}@example.org" for i in range(10)]
    emails.insert(4, "drop@example.org")
    (t,) = pool(srv, certs, 1, timeout=2)
    out = run_campaign(people(emails), build, [t], campaign_id="d", delay_s=0,
                       retry=RetryPolicy(base_s=0.01, jitter=0))
    statuses = {r.email: r.status for r in out.results}
    uncertain = [e for e, s in statuses.items() if s == "uncertain"]
    assert "drop@example.org" in uncertain and len(uncertain) <= 2  # in_flight 2: the one behind it
    assert all(s == "sent" for e, s in statuses.items() if e not in uncertain)
    got = Counter(m.rcpt_tos[0] for m in srv.messages)
    assert all(got[e] == 1 for e in emails if e not in uncertain)
    assert max(got.values()) == 1
    assert srv.sessions == 2


def test_rset_goes_before_a_message_written_while_the_one_ahead_was_unsettled(smtp_server, certs):
    # A refused message's transaction may still be open when the next one arrives (the server
    # decides): the next MAIL then comes after an RSET, in the same write.
    srv = smtp_server("starttls", handler=Chunking())
    (t,) = pool(srv, certs, 1)
    out = run_campaign(people(["a@example.org", "reject550@example.org", "b@example.org"]), build, [t],
                       campaign_id="r", delay_s=0)
    assert [r.status for r in out.results] == ["sent", "failed", "sent"]
    verbs = [v for v in srv.handler.verbs if v in ("MAIL", "RCPT", "BDAT", "RSET")]
    assert verbs == ["MAIL", "RCPT", "BDAT", "RSET", "MAIL", "RCPT", "BDAT", "RSET", "MAIL", "RCPT", "BDAT"]
    # one at a time (send()): nothing unsettled when the next goes, so no RSET after a success
    srv2 = smtp_server("starttls", handler=Chunking())
    (u,) = pool(srv2, certs, 1)
    u.in_flight = 1
    out = run_campaign(people(["a@example.org", "b@example.org", "reject550@example.org", "c@example.org"]),
                       build, [u], campaign_id="s", delay_s=0)
    assert [r.status for r in out.results] == ["sent", "sent", "failed", "sent"]
    verbs = [v for v in srv2.handler.verbs if v in ("MAIL", "RCPT", "BDAT", "RSET")]
    assert verbs == ["MAIL", "RCPT", "BDAT"] * 3 + ["RSET", "MAIL", "RCPT", "BDAT"]


def test_several_recipients_still_go_with_data(smtp_server, certs):
    # All or nothing: with BDAT written with the envelope, the server would deliver to the
    # recipients it took while another was refused.
    srv = smtp_server("starttls", handler=Chunking())
    (t,) = pool(srv, certs, 1)
    t.open()
    assert t.uses_bdat
    t.send(Envelope("me@example.com", ("a@example.org",)), b"Subject: one\r\n\r\nx\r\n")
    t.send(Envelope("me@example.com", ("a@example.org", "b@example.org")), b"Subject: two\r\n\r\nx\r\n")
    assert [v for v in srv.handler.verbs if v in ("BDAT", "DATA")] == ["BDAT", "DATA"]
    assert [m.rcpt_tos for m in srv.messages] == [["a@example.org"], ["a@example.org", "b@example.org"]]
    # after a refused BDAT message, the DATA one starts with RSET as well
    with pytest.raises(RejectedError):
        t.send(Envelope("me@example.com", ("reject550@example.org",)), b"Subject: three\r\n\r\nx\r\n")
    t.send(Envelope("me@example.com", ("a@example.org", "c@example.org")), b"Subject: four\r\n\r\nx\r\n")
    tail = [v for v in srv.handler.verbs if v in ("BDAT", "DATA", "RSET", "MAIL")][-5:]
    assert tail == ["MAIL", "BDAT", "RSET", "MAIL", "DATA"], tail
    assert len(srv.messages) == 3
    t.close()
