"""The fault matrix: each failure produced for real on 127.0.0.1, diagnosed at the right step."""

from __future__ import annotations

import pytest

from backend.diagnostics import diagnose
from backend.settings import SmtpSettings
from tests.fakedns import FakeDNS
from tests.servers import PASSWORD, USER, GreetingServer, free_port, listen_silently


def run(server=None, certs=None, **kw):
    options = dict(host="127.0.0.1", port=server.port if server else free_port(),
                   security=server.mode if server and server.mode != "plain" else "none",
                   user=USER, password=PASSWORD, ca_file=certs.ca_file if certs else None, timeout=2,
                   from_address="me@example.com")
    options.update(kw)
    check = {k: options.pop(k) for k in ("check_sender", "check_domain", "resolver") if k in options}
    return diagnose(SmtpSettings(**options), **check)


def statuses(result) -> list[tuple[str, str]]:
    return [(s.name, s.status) for s in result.steps]


def test_everything_works(smtp_server, certs):
    result = run(smtp_server("starttls"), certs, check_sender=True)
    assert result.ok, result.error
    assert statuses(result) == [("dns", "ok"), ("tcp", "ok"), ("tls", "ok"), ("certificate", "ok"),
                                ("ehlo", "ok"), ("auth", "ok"), ("sender", "ok")]
    cert = result.steps[3].data
    assert "localhost" in cert["names"] and cert["not_after"] > cert["not_before"]
    ehlo = result.steps[4].data
    assert "PLAIN" in ehlo["auth"] and ehlo["8bitmime"] is True


def test_unresolvable_host_names_the_name():
    result = run(host="smtp.nowhere.invalid", port=587, security="starttls")
    assert statuses(result) == [("dns", "failed")]
    assert result.error.category == "dns_failure"
    assert "smtp.nowhere.invalid" in result.error.fix_steps()[0]


def test_refused_port():
    result = run(port=free_port(), security="starttls")
    assert statuses(result) == [("dns", "ok"), ("tcp", "failed")]
    assert result.error.category == "connection_refused"


@pytest.mark.parametrize(("security", "step"), [("starttls", "tls"), ("none", "ehlo")])
def test_silent_server_times_out_at_the_greeting(security, step):
    sock, port = listen_silently()
    try:
        result = run(port=port, security=security, user="", password="", timeout=1)
    finally:
        sock.close()
    assert statuses(result) == [("dns", "ok"), ("tcp", "ok"), (step, "failed")]
    assert result.error.category == "timeout"
    assert any("port" in s.lower() for s in result.error.fix_steps())


@pytest.mark.parametrize(("server_mode", "chosen", "advice"), [
    ("starttls", "ssl", "choose Security STARTTLS"),
    ("ssl", "starttls", "choose Security SSL/TLS"),
])
def test_tls_mode_mismatch_says_which_setting_works(smtp_server, certs, server_mode, chosen, advice):
    result = run(smtp_server(server_mode), certs, security=chosen, timeout=1.5)
    assert statuses(result)[-1] == ("tls", "failed")
    assert result.error.category == "tls_mode_mismatch"
    assert advice in result.error.fix_steps()[0]


def test_starttls_not_offered(smtp_server, certs):
    result = run(smtp_server("plain", auth_require_tls=False), certs, security="starttls")
    assert statuses(result)[-1] == ("tls", "failed")
    assert result.error.category == "tls_handshake_failed"


@pytest.mark.parametrize(("which", "words"), [
    ("self_signed", "self-signed"), ("untrusted", "does not trust"), ("expired", "clock says"),
    ("wrong_host", "It covers: mail.other.example"),
])
@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_bad_certificates_stop_at_the_certificate_step(smtp_server, certs, which, words, mode):
    result = run(smtp_server(mode, cert=getattr(certs, which)), certs)
    assert statuses(result)[-2:] == [("tls", "ok"), ("certificate", "failed")]
    assert result.error.category == "certificate_invalid"
    assert words in result.steps[-1].detail
    assert result.steps[-1].data["subject"]  # the certificate's details, though it was refused


def test_wrong_password_stops_at_auth_with_the_steps_before_ok(smtp_server, certs):
    result = run(smtp_server("ssl"), certs, password="wrong")
    assert statuses(result) == [("dns", "ok"), ("tcp", "ok"), ("tls", "ok"), ("certificate", "ok"),
                                ("ehlo", "ok"), ("auth", "failed")]
    assert result.error.category == "auth_failed" and result.error.code == 535


def test_plaintext_auth_refused_and_not_offered(smtp_server, certs):
    plain_auth = smtp_server("plain", auth_require_tls=False)
    result = run(plain_auth, certs)
    assert statuses(result)[-1] == ("auth", "failed")
    assert result.error.category == "plaintext_auth_refused"
    assert plain_auth.handler.auth_attempts == []
    result = run(smtp_server("plain"), certs, allow_plaintext_auth=True)
    assert result.error.category == "auth_not_offered"


def test_sender_rejected(smtp_server, certs):
    result = run(smtp_server("starttls"), certs, from_address="blocked@example.com", check_sender=True)
    assert statuses(result)[-1] == ("sender", "failed")
    assert result.error.category == "sender_rejected" and result.error.code == 550


@pytest.mark.parametrize(("greeting", "category"), [
    ("554 5.7.1 Your IP is listed at a blocklist", "connection_refused"),
    ("421 4.7.0 Too many connections, try later", "rate_limited"),
])
def test_refusal_at_the_greeting(greeting, category):
    server = GreetingServer(greeting)
    try:
        result = run(port=server.port, security="none", user="", password="")
    finally:
        server.stop()
    assert statuses(result)[-1] == ("ehlo", "failed")
    assert result.error.category == category
    assert greeting.split()[0] in result.error.message


def test_verification_off_is_a_warning(smtp_server, certs):
    result = run(smtp_server("ssl", cert=certs.self_signed), certs, ca_file=None, verify_certificates=False)
    assert result.ok
    assert ("certificate", "warning") in statuses(result)


def test_sender_domain_records():
    dns_server = FakeDNS({
        ("good.test.", "MX"): ["10 mx.good.test."],
        ("good.test.", "TXT"): ['"v=spf1 include:_spf.good.test -all"'],
        ("_dmarc.good.test.", "TXT"): ['"v=DMARC1; p=none"'],
        ("bare.test.", "TXT"): ['"some-verification=1"'],
    })
    try:
        from backend.diagnostics import _domain, _Run

        good, bare = _Run(lambda: 0.0), _Run(lambda: 0.0)
        _domain(good, SmtpSettings(host="h", from_address="me@good.test"), dns_server.resolver())
        _domain(bare, SmtpSettings(host="h", from_address="me@bare.test"), dns_server.resolver())
    finally:
        dns_server.stop()
    (g,), (b,) = good.steps, bare.steps
    assert g.status == "ok" and g.data["mx"] == ["mx.good.test"] and g.data["spf"] and g.data["dmarc"]
    assert b.status == "warning"
    assert any("no SPF record" in n for n in b.data["notes"]) and any("DMARC" in n for n in b.data["notes"])


def test_unreachable_dns_skips_the_domain_check_with_a_note():
    import dns.resolver

    from backend.diagnostics import _domain, _Run

    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = free_port()
    r.lifetime = 1
    run_ = _Run(lambda: 0.0)
    _domain(run_, SmtpSettings(host="h", from_address="me@x.test"), r)
    assert run_.steps[0].status == "skipped" and "needs a working DNS" in run_.steps[0].detail


# -- replies at MAIL, RCPT and DATA from a real server ------------------------------------------

REPLIES = [
    ("421 4.7.0 Too many messages, slow down", {"mail": "rate_limited", "rcpt": "rate_limited", "data": "rate_limited"}),
    ("450 4.2.1 Receiving mail too quickly", {"mail": "rate_limited", "rcpt": "rate_limited", "data": "rate_limited"}),
    ("451 4.7.1 Greylisted, please come back later", {"mail": "greylisted", "rcpt": "greylisted", "data": "greylisted"}),
    ("452 4.5.3 Too many recipients", {"mail": "rate_limited", "rcpt": "rate_limited", "data": "rate_limited"}),
    ("454 4.7.0 Temporary service failure", {"mail": "rate_limited", "rcpt": "rate_limited", "data": "rate_limited"}),
    ("550 5.1.1 No such user", {"mail": "sender_rejected", "rcpt": "recipient_rejected", "data": "message_rejected"}),
    ("550 5.4.5 Daily user sending limit exceeded", {"mail": "quota_exceeded", "rcpt": "quota_exceeded", "data": "quota_exceeded"}),
    ("552 5.3.4 Message size exceeds fixed limit", {"mail": "message_rejected", "rcpt": "message_rejected", "data": "message_rejected"}),
    ("553 5.1.8 Sender domain does not exist", {"mail": "sender_rejected", "rcpt": "recipient_rejected", "data": "message_rejected"}),
    ("554 5.7.1 Rejected by policy as spam", {"mail": "sender_rejected", "rcpt": "recipient_rejected", "data": "message_rejected"}),
]


class ScriptedHandler:
    """Answers one stage with a fixed reply; accepts everything else."""

    def __init__(self, stage: str, reply: str) -> None:
        self.stage, self.reply = stage, reply
        self.messages: list = []
        self.auth_attempts: list = []
        self.commands: list = []

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.stage == "mail":
            return self.reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.stage == "rcpt":
            return self.reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.stage == "data":
            return self.reply
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
@pytest.mark.parametrize(("reply", "expected"), REPLIES, ids=[r.split()[0] + "-" + r.split()[1] for r, _ in REPLIES])
def test_every_reply_at_every_stage(smtp_server, certs, stage, reply, expected):
    from backend.errors import ConnectError, RejectedError, TransportError
    from backend.transports.base import Envelope
    from backend.transports.smtp import SmtpTransport

    server = smtp_server("starttls", handler=ScriptedHandler(stage, reply), auth=False)
    t = SmtpTransport(SmtpSettings(host="127.0.0.1", port=server.port, security="starttls",
                                   ca_file=certs.ca_file, timeout=2))
    t.open()
    with pytest.raises(TransportError) as info:
        t.send(Envelope("me@example.com", ("a@example.org",)), b"Subject: x\r\n\r\nbody\r\n")
    t.close()
    code = int(reply.split()[0])
    assert info.value.code == code
    # 421 closes the session: reconnected once, then reported as a connection problem
    assert isinstance(info.value, ConnectError if code == 421 else RejectedError)
    assert info.value.category == expected[stage]
    assert info.value.transient == (code < 500)
    assert reply.split(" ", 2)[2] in str(info.value)  # the server's own words are kept


def test_tcp_timeout_is_told_apart_from_refused():
    from tests.servers import FullBacklog

    blocked = FullBacklog()
    try:
        result = run(port=blocked.port, security="starttls", timeout=1)
    finally:
        blocked.stop()
    assert statuses(result) == [("dns", "ok"), ("tcp", "failed")]
    assert result.error.category == "timeout"
    steps = " ".join(result.error.fix_steps())
    assert "firewall" in steps and "port 25" in steps
