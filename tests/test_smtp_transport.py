"""The SMTP transport against real aiosmtpd servers: TLS modes, certificates, AUTH, failures."""

from __future__ import annotations

import socket

import pytest

from backend.errors import AuthError, ConnectError, RejectedError, SettingsError, UncertainDelivery
from backend.settings import SmtpSettings
from backend.transports.base import Envelope
from backend.transports.smtp import SmtpTransport, classify_reply
from tests.servers import PASSWORD, USER, UTF8_PASSWORD, UTF8_USER, free_port, listen_silently

MSG = b"From: me@example.com\r\nTo: a@example.org\r\nSubject: hi\r\n\r\n.leading dot\r\nbody\r\n"


def settings(server, certs, **kw) -> SmtpSettings:
    base = dict(
        host=server.host if server else "127.0.0.1",
        port=server.port if server else 1,
        security=server.mode if server and server.mode != "plain" else "none",
        user=USER,
        password=PASSWORD,
        ca_file=certs.ca_file,
        timeout=3,
    )
    base.update(kw)
    return SmtpSettings(**base)


def send_one(transport: SmtpTransport, to: str, msg: bytes = MSG):
    return transport.send(Envelope(USER, (to,)), msg)


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_sends_over_tls_with_auth(smtp_server, certs, mode):
    server = smtp_server(mode)
    t = SmtpTransport(settings(server, certs))
    t.open()
    assert t.info.tls_version and t.info.tls_version.startswith("TLS")
    receipt = send_one(t, "a@example.org")
    t.close()
    assert receipt.code == 250
    (got,) = server.messages
    assert got.rcpt_tos == ["a@example.org"]
    assert got.peer_authenticated == USER
    # dot-stuffing undone by the server: the body arrives as written
    assert b"\r\n.leading dot\r\n" in got.data.replace(b"\n", b"\r\n").replace(b"\r\r", b"\r")


def test_one_connection_reused_for_many_messages(smtp_server, certs):
    server = smtp_server("starttls")
    t = SmtpTransport(settings(server, certs))
    t.open()
    for i in range(5):
        send_one(t, f"r{i}@example.org")
    t.close()
    assert len(server.messages) == 5
    assert server.handler.commands.count("EHLO") == 2  # once before, once after STARTTLS


def test_wrong_password_is_auth_failed(smtp_server, certs):
    server = smtp_server("starttls")
    t = SmtpTransport(settings(server, certs, password="wrong"))
    with pytest.raises(AuthError) as info:
        t.open()
    assert info.value.category == "auth_failed"
    assert info.value.code == 535
    assert "wrong" not in str(info.value) and PASSWORD not in str(info.value)
    assert f"127.0.0.1:{server.port}" in str(info.value)


def test_plaintext_auth_refused_before_any_auth_command(smtp_server, certs):
    server = smtp_server("plain", auth_require_tls=False)
    t = SmtpTransport(settings(server, certs, security="none", port=server.port))
    with pytest.raises(AuthError) as info:
        t.open()
    assert info.value.category == "plaintext_auth_refused"
    assert server.handler.auth_attempts == []


def test_plaintext_auth_allowed_explicitly(smtp_server, certs):
    server = smtp_server("plain", auth_require_tls=False)
    t = SmtpTransport(settings(server, certs, security="none", allow_plaintext_auth=True))
    t.open()
    send_one(t, "a@example.org")
    t.close()
    assert server.handler.auth_attempts == [USER]
    assert server.messages[0].peer_authenticated == USER


def test_auth_not_offered(smtp_server, certs):
    server = smtp_server("plain", auth=True, auth_require_tls=True)
    t = SmtpTransport(settings(server, certs, security="none", allow_plaintext_auth=True))
    with pytest.raises(AuthError) as info:
        t.open()
    assert info.value.category == "auth_not_offered"


def test_starttls_missing_is_never_skipped(smtp_server, certs):
    server = smtp_server("plain", auth_require_tls=False)
    t = SmtpTransport(settings(server, certs, security="starttls"))
    with pytest.raises(ConnectError) as info:
        t.open()
    assert info.value.category == "tls_handshake_failed"
    assert "STARTTLS" in str(info.value)
    assert server.handler.auth_attempts == [] and server.messages == []


def test_implicit_tls_against_starttls_port(smtp_server, certs):
    server = smtp_server("starttls")
    t = SmtpTransport(settings(server, certs, security="ssl"))
    with pytest.raises(ConnectError) as info:
        t.open()
    assert info.value.category == "tls_mode_mismatch"
    assert any("STARTTLS" in step for step in info.value.fix_steps())


def test_starttls_against_implicit_tls_port(smtp_server, certs):
    server = smtp_server("ssl")
    t = SmtpTransport(settings(server, certs, security="starttls", timeout=1.5))
    with pytest.raises(ConnectError) as info:
        t.open()
    assert info.value.category == "tls_mode_mismatch"
    assert any("SSL/TLS" in step for step in info.value.fix_steps())


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
@pytest.mark.parametrize(
    ("which", "words"),
    [
        ("self_signed", "self-signed"),
        ("untrusted", "does not trust"),
        ("expired", "expired"),
        ("wrong_host", "not issued for"),
    ],
)
def test_bad_certificates_are_refused(smtp_server, certs, mode, which, words):
    ca_file = certs.ca_file
    server = smtp_server(mode, cert=getattr(certs, which))
    t = SmtpTransport(settings(server, certs, ca_file=ca_file))
    with pytest.raises(ConnectError) as info:
        t.open()
    assert info.value.category == "certificate_invalid"
    assert words.lower() in str(info.value).lower()
    assert server.handler.auth_attempts == []
    if which == "expired":
        assert "date and time" in info.value.fix_steps()[0]


def test_skip_verification_only_when_asked(smtp_server, certs):
    server = smtp_server("starttls", cert=certs.self_signed)
    t = SmtpTransport(settings(server, certs, ca_file=None, verify_certificates=False))
    t.open()
    send_one(t, "a@example.org")
    t.close()
    assert len(server.messages) == 1


def test_connection_refused():
    t = SmtpTransport(SmtpSettings(host="127.0.0.1", port=free_port(), security="starttls", timeout=3))
    with pytest.raises(ConnectError) as info:
        t.open()
    assert info.value.category == "connection_refused"


def test_timeout_on_silent_server():
    sock, port = listen_silently()
    try:
        t = SmtpTransport(SmtpSettings(host="127.0.0.1", port=port, security="starttls", timeout=1))
        with pytest.raises(ConnectError) as info:
            t.open()
    finally:
        sock.close()
    assert info.value.category == "timeout"


def test_unresolvable_host():
    t = SmtpTransport(SmtpSettings(host="smtp.nowhere.invalid", port=587, timeout=3))
    with pytest.raises(ConnectError) as info:
        t.open()
    assert info.value.category == "dns_failure"
    assert "smtp.nowhere.invalid" in str(info.value)


@pytest.mark.parametrize(
    ("to", "category", "code"),
    [
        ("reject550@example.org", "recipient_rejected", 550),
        ("defer451@example.org", "recipient_rejected", 451),
        ("quota@example.org", "quota_exceeded", 550),
        ("spam@example.org", "message_rejected", 554),
    ],
)
def test_rejections_are_classified_and_connection_survives(smtp_server, certs, to, category, code):
    server = smtp_server("starttls")
    t = SmtpTransport(settings(server, certs))
    t.open()
    with pytest.raises(RejectedError) as info:
        send_one(t, to)
    assert (info.value.category, info.value.code) == (category, code)
    assert info.value.transient == (code < 500)
    send_one(t, "fine@example.org")  # RSET kept the session usable
    t.close()
    assert [m.rcpt_tos for m in server.messages] == [["fine@example.org"]]
    assert server.handler.commands.count("EHLO") == 2


def test_sender_rejected(smtp_server, certs):
    server = smtp_server("starttls")
    t = SmtpTransport(settings(server, certs))
    t.open()
    with pytest.raises(RejectedError) as info:
        t.send(Envelope("blocked@example.com", ("a@example.org",)), MSG)
    assert info.value.category == "sender_rejected"


@pytest.mark.parametrize("to", ["close421@example.org", "droprcpt@example.org"])
def test_reconnects_once_after_421_or_drop(smtp_server, certs, to):
    server = smtp_server("starttls")
    t = SmtpTransport(settings(server, certs))
    t.open()
    send_one(t, to)
    send_one(t, "next@example.org")
    t.close()
    assert [m.rcpt_tos for m in server.messages] == [[to], ["next@example.org"]]


@pytest.mark.parametrize("to", ["dropdata@example.org", "silent@example.org"])
def test_drop_after_final_dot_is_uncertain_not_resent(smtp_server, certs, to):
    server = smtp_server("starttls")
    t = SmtpTransport(settings(server, certs, timeout=1))
    t.open()
    with pytest.raises(UncertainDelivery):
        send_one(t, to)
    data_commands = [c for c in server.handler.commands if c == f"RCPT {to}"]
    assert len(data_commands) == 1  # not retried blindly
    send_one(t, "after@example.org")  # the next message opens a new connection
    t.close()
    assert [m.rcpt_tos for m in server.messages] == [["after@example.org"]]


@pytest.mark.parametrize(
    ("code", "text", "stage", "category"),
    [
        (550, "5.4.5 Daily user sending limit exceeded", "rcpt", "quota_exceeded"),
        (421, "4.7.0 Try again later, closing connection", "mail", "rate_limited"),
        (421, "4.7.0 Message submission rate for this client has exceeded the configured limit", "mail",
         "quota_exceeded"),
        (454, "4.7.0 Hourly sending limit reached", "rcpt", "quota_exceeded"),
        (454, "4.7.0 Too many login attempts", "rcpt", "rate_limited"),
        (550, "5.1.1 User unknown", "rcpt", "recipient_rejected"),
        (553, "5.7.1 Sender not allowed", "mail", "sender_rejected"),
        (552, "5.3.4 Message size exceeds fixed limit", "data", "message_rejected"),
        (530, "5.7.0 Authentication required", "mail", "auth_failed"),
        (451, "4.7.1 Greylisting in action, please come back later", "rcpt", "greylisted"),
        (451, "4.7.1 Please try again in 300 seconds", "rcpt", "greylisted"),
        (450, "4.2.1 The user you are trying to contact is receiving mail too quickly", "rcpt", "rate_limited"),
        (452, "4.5.3 Too many recipients", "rcpt", "rate_limited"),
        (454, "4.7.0 Temporary authentication failure", "mail", "rate_limited"),
        (451, "4.7.0 Rate limit exceeded", "rcpt", "rate_limited"),
        (551, "5.1.6 User has moved", "rcpt", "recipient_rejected"),
        (553, "5.1.3 Invalid recipient address", "rcpt", "recipient_rejected"),
        (553, "5.7.1 Sender address rejected", "mail", "sender_rejected"),
        (554, "5.7.1 Message rejected as spam", "data", "message_rejected"),
        (552, "5.2.2 Mailbox full", "rcpt", "recipient_rejected"),
        (451, "4.3.0 Temporary local problem", "rcpt", "recipient_rejected"),
        (454, "Throttling failure: Daily message quota exceeded.", "rcpt", "quota_exceeded"),
        (554, "Message rejected: Email address is not verified.", "data", "sender_rejected"),
        (552, "Requested mail action aborted: mailbox quota exceeded", "rcpt", "recipient_rejected"),
    ],
)
def test_classify_reply(code, text, stage, category):
    assert classify_reply(code, text, stage) == category


def test_no_socket_left_open_after_close(smtp_server, certs):
    server = smtp_server("ssl")
    t = SmtpTransport(settings(server, certs))
    t.open()
    sock = t._smtp.sock
    t.close()
    assert sock.fileno() == -1
    with pytest.raises(OSError):
        sock.send(b"x")
    t.close()  # idempotent
    assert isinstance(socket.socket, type)


def test_utf8_credentials_use_auth_plain_in_utf8(smtp_server, certs):
    server = smtp_server("starttls")
    t = SmtpTransport(settings(server, certs, user=UTF8_USER, password=UTF8_PASSWORD))
    t.open()
    send_one(t, "a@example.org")
    t.close()
    assert server.handler.auth_attempts == [UTF8_USER]
    wrong = SmtpTransport(settings(server, certs, user=UTF8_USER, password="pässwörd-falsch"))
    with pytest.raises(AuthError) as info:
        wrong.open()
    assert info.value.category == "auth_failed" and "falsch" not in str(info.value)


def test_421_after_final_dot_is_retried_once(smtp_server, certs):
    server = smtp_server("starttls")
    t = SmtpTransport(settings(server, certs))
    t.open()
    send_one(t, "data421@example.org")
    t.close()
    assert [m.rcpt_tos for m in server.messages] == [["data421@example.org"]]


def test_control_codes_in_replies_are_removed(smtp_server, certs):
    server = smtp_server("starttls")
    t = SmtpTransport(settings(server, certs))
    t.open()
    with pytest.raises(RejectedError) as info:
        send_one(t, "ansi550@example.org")
    t.close()
    assert "\x1b" not in str(info.value) and "\x07" not in str(info.value)
    assert "no such user" in str(info.value)


def test_login_required_but_not_given_is_an_auth_error(smtp_server, certs):
    server = smtp_server("starttls", auth_required=True)
    t = SmtpTransport(settings(server, certs, user="", password=""))
    t.open()
    with pytest.raises(AuthError) as info:
        send_one(t, "a@example.org")
    t.close()
    assert info.value.category == "auth_failed" and "requires login" in str(info.value)
    assert info.value.code == 530


@pytest.mark.parametrize("host", ["smtp..example.com", "x" * 64 + ".example.com"])
def test_bad_host_labels_are_settings_errors(host):
    with pytest.raises(SettingsError) as info:
        SmtpTransport(SmtpSettings(host=host, port=587))
    assert info.value.field == "host"


def test_implicit_tls_against_a_plain_port_without_starttls_says_so(smtp_server, certs):
    server = smtp_server("plain", auth=False)
    t = SmtpTransport(settings(server, certs, security="ssl", user="", password=""))
    with pytest.raises(ConnectError) as info:
        t.open()
    assert info.value.category == "tls_mode_mismatch"
    first = info.value.fix_steps()[0]
    assert "no encryption" in first and "choose Security STARTTLS" not in first
