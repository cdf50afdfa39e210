"""SMTP transport over smtplib: STARTTLS / implicit TLS / none, certificate checks, AUTH, reuse."""

from __future__ import annotations

import base64
import logging
import re
import smtplib
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass, field

from backend.attachments import server_size_limit
from backend.errors import (
    AuthError,
    ConnectError,
    OAuthError,
    RejectedError,
    TransportError,
    UncertainDelivery,
)
from backend.redact import Redactor
from backend.settings import SmtpSettings, tls_context
from backend.transports.base import Envelope, Receipt

log = logging.getLogger(__name__)

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_QUOTA_WORDS = re.compile(r"daily|quota|per day|sending limit exceeded|exceeded the limit", re.I)
_RATE_WORDS = re.compile(r"\brate\b|rate.?limit|too many|too fast|throttl|\blimit|slow down", re.I)
_UNVERIFIED = re.compile(r"\b(not verified|unverified)\b", re.I)
_LIMIT_WORD = re.compile(r"\blimit", re.I)
_EXCEEDED = re.compile(r"limit|exceeded|reached", re.I)
_GREYLIST_WORDS = re.compile(r"grey|gray|come back later|try again in", re.I)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_PROBE_TIMEOUT = 5.0
IN_FLIGHT = 2  # messages on the way at once on one connection when the server offers PIPELINING


@dataclass
class Step:
    """One stage of opening a connection, for `verify` output: what, whether it worked, detail."""

    name: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass
class ConnectionInfo:
    """What we learned while opening: TLS version and cipher, the certificate, EHLO features."""

    steps: list[Step] = field(default_factory=list)
    tls_version: str | None = None
    cipher: str | None = None
    certificate_subject: str | None = None
    certificate_issuer: str | None = None
    features: dict[str, str] = field(default_factory=dict)
    authenticated_as: str | None = None
    certificate_der: bytes | None = field(default=None, repr=False)


def ehlo_name(sock: socket.socket | None) -> str:
    """What we say in EHLO: our address as a literal ([192.0.2.1]), as mail clients do.

    smtplib's default asks DNS for this machine's full name (a reverse look-up that can take
    seconds when DNS is slow); the address literal is what RFC 5321 allows without a name.
    """
    try:
        address = sock.getsockname()[0] if sock is not None else "127.0.0.1"
    except OSError:
        address = "127.0.0.1"
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"


def _reply_text(resp: bytes | str | None) -> str:
    # Server text reaches terminals and spreadsheets: no escape sequences or control codes.
    if isinstance(resp, bytes):
        resp = resp.decode("utf-8", "replace")
    return " ".join(_CONTROLS.sub(" ", resp or "").split())


def classify_reply(code: int, text: str, stage: str) -> str:
    """The error category of a negative SMTP reply at MAIL, RCPT or DATA."""
    enhanced = _ENHANCED.match(text)
    status = ".".join(enhanced.groups()) if enhanced else ""
    if status in ("5.2.2", "4.2.2"):
        return "recipient_rejected"  # the recipient's mailbox is full: their quota, not ours
    if _UNVERIFIED.search(text):
        return "sender_rejected"  # e.g. Amazon SES: "Email address is not verified" after DATA
    if "mailbox" in text.lower() and _QUOTA_WORDS.search(text):
        return "recipient_rejected"  # the recipient's mailbox quota, not the sender's
    if status == "5.4.5" or (code >= 450 and _QUOTA_WORDS.search(text) and _EXCEEDED.search(text)):
        return "quota_exceeded"
    if code in (421, 454) and status.startswith("4.7") and _LIMIT_WORD.search(text):
        # "421 4.7.0 ... exceeded the configured limit": the account's allowance, not a hiccup;
        # retrying every recipient would only burn the list: pause until it lifts.
        return "quota_exceeded"
    if code == 421:
        limited = status.startswith("4.7") or _RATE_WORDS.search(text)
        return "rate_limited" if limited else "server_disconnected"
    if code in (530, 535) or status in ("5.7.0", "5.7.8") and "auth" in text.lower():
        return "auth_failed"
    if code == 451 and (status == "4.7.1" or _GREYLIST_WORDS.search(text)) and not _RATE_WORDS.search(text):
        return "greylisted"  # "come back later": the retry is the cure
    if code in (450, 452, 454) or (400 <= code < 500 and (status.startswith("4.7") or _RATE_WORDS.search(text))):
        return "rate_limited"
    if code in (552, 554) and status in ("5.3.4", "5.2.3"):
        return "message_rejected"
    if stage == "mail":
        return "sender_rejected"
    if stage == "rcpt":
        return "recipient_rejected"
    return "message_rejected"


class SmtpTransport:
    """One SMTP account: a connection opened once, reused for every message, reopened once."""

    def __init__(self, settings: SmtpSettings, *, local_hostname: str | None = None,
                 in_flight: int = IN_FLIGHT) -> None:
        self.settings = settings.validated()
        self._local_hostname = local_hostname or self.settings.helo_name
        self._smtp: smtplib.SMTP | None = None
        self.in_flight = in_flight  # 1: one message at a time, as without PIPELINING
        self._flights: deque[_Flight] = deque()  # submitted, outcome not yet collected; oldest first
        self._out: list[tuple[bytes, _Flight | None]] = []  # written at the next read (one write)
        # A BDAT message goes out before the previous one's replies are read: if that one was
        # refused, its transaction may still be open on the server; an RSET goes first then.
        self._rset_due = False
        self.info = ConnectionInfo()
        # Every text a server sends passes here before it is kept: a reply may echo the password.
        self.redact = Redactor(self.settings.user, self.settings.password)

    def reply_text(self, resp: bytes | str | None) -> str:
        """A server's reply as one clean line, scrubbed of the login's secrets (redact.py)."""
        if isinstance(resp, bytes):
            resp = resp.decode("utf-8", "replace")
        return self.redact(_reply_text(self.redact(resp or "")))

    # -- opening -------------------------------------------------------------------------

    def _err(self, cls: type[TransportError], message: str, category: str, code: int | None = None, fix: tuple[str, ...] = ()) -> TransportError:
        s = self.settings
        return cls(message, category=category, code=code, host=s.host, port=s.port, fix=fix)

    def _step(self, name: str, started: float, ok: bool, detail: str = "") -> None:
        self.info.steps.append(Step(name, ok, detail, round(time.monotonic() - started, 3)))
        log.debug("%s:%s %s %s: %s", self.settings.host, self.settings.port, name, "ok" if ok else "FAILED", detail)

    def open(self) -> None:
        """Connect, secure, EHLO and log in; raise ConnectError or AuthError saying why."""
        self._release()  # messages on their way stay: they go again on the new connection
        self.info = ConnectionInfo()
        s = self.settings
        started = time.monotonic()
        try:
            smtp = self._connect()
        except TransportError as exc:
            self._step("connect", started, False, exc.message)
            raise
        self._step("connect", started, True, f"connected to {s.host}:{s.port}")
        try:
            self._secure_and_login(smtp)
        except BaseException:
            self._abort(smtp)
            raise
        self._smtp = smtp
        sock = smtp.sock
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Several messages share a write and a round trip: none may wait for an ACK (Nagle).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        try:
            ctx = tls_context(s)
            if s.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, local_hostname=self._local_hostname or "localhost", timeout=s.timeout,
                    context=ctx,
                )
                self._note_tls(smtp)
            else:
                smtp = smtplib.SMTP(s.host, s.port, local_hostname=self._local_hostname or "localhost",
                                    timeout=s.timeout)
            if not self._local_hostname:
                smtp.local_hostname = ehlo_name(smtp.sock)
        except ssl.SSLCertVerificationError as exc:
            raise self._certificate_error(exc) from exc
        except ssl.SSLError as exc:
            plain = self._plain_smtp_offer()
            if plain is not None:
                if plain == "starttls":
                    fix = (f"Port {s.port} speaks STARTTLS: choose Security STARTTLS for this port "
                           "(or port 465 with SSL/TLS).",)
                else:
                    fix = (f"Port {s.port} offers no encryption at all. If this is your provider's "
                           "server, use its encrypted port instead (587 with STARTTLS or 465 with "
                           "SSL/TLS).",
                           "Only for a trusted relay on your own network or computer: choose Security None.")
                raise self._err(ConnectError, f"port {s.port} speaks plain SMTP, not SSL/TLS",
                                "tls_mode_mismatch", fix=fix) from exc
            raise self._err(ConnectError, f"TLS handshake failed: {exc}", "tls_handshake_failed") from exc
        except socket.gaierror as exc:
            raise self._err(ConnectError, f"the server name could not be resolved ({exc.strerror or exc})", "dns_failure") from exc
        except UnicodeError as exc:  # the IDNA codec refuses empty or over-long labels
            raise self._err(ConnectError, f"the server name is not a valid host name ({exc})", "dns_failure") from exc
        except ConnectionRefusedError as exc:
            raise self._err(ConnectError, "connection refused", "connection_refused") from exc
        except TimeoutError as exc:
            raise self._err(ConnectError, f"no answer within {s.timeout:g} s while connecting", "timeout") from exc
        except smtplib.SMTPServerDisconnected as exc:
            # A TLS server waits silently for our handshake; a plain client waits for a greeting.
            if s.security != "ssl" and self._speaks_tls():
                raise self._err(
                    ConnectError,
                    f"port {s.port} speaks SSL/TLS (implicit TLS), "
                    + ("not STARTTLS" if s.security == "starttls" else "not unencrypted SMTP"),
                    "tls_mode_mismatch",
                    fix=(f"Port {s.port} speaks SSL/TLS: choose Security SSL/TLS for this port "
                         "(or port 587 with STARTTLS).",),
                ) from exc
            if isinstance(exc.__context__, TimeoutError):
                raise self._err(ConnectError, f"no greeting from the server within {s.timeout:g} s", "timeout") from exc
            raise self._err(ConnectError, f"the server closed the connection before greeting ({exc})", "server_disconnected") from exc
        except smtplib.SMTPConnectError as exc:
            text = self.reply_text(exc.smtp_error)
            code = exc.smtp_code
            if code == 421:
                category, fix = classify_reply(code, text, "connect"), ("Wait a few minutes and try again.",)
            else:
                category = "connection_refused"
                fix = ("The server answered but refuses to talk to this computer: its reply above says why. "
                       "Often this computer's internet address is on a spam blocklist (common for home and "
                       "cloud connections): send through your provider's server on port 587 or 465 instead.",)
            raise self._err(ConnectError, f"the server refused the session: {code} {text}", category,
                            code=code, fix=fix) from None  # smtplib's exception holds the raw reply
        except OSError as exc:
            raise self._err(ConnectError, f"could not connect ({exc.strerror or exc})", "connection_refused") from exc
        return smtp

    def _secure_and_login(self, smtp: smtplib.SMTP) -> None:
        s = self.settings
        started = time.monotonic()
        try:
            code, resp = smtp.ehlo()
            if code != 250:
                code, resp = smtp.helo()
                if code != 250:
                    raise self._err(ConnectError, f"the server refused EHLO and HELO: {code} {self.reply_text(resp)}", "server_disconnected", code=code)
            if s.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise self._err(
                        ConnectError,
                        "the server does not offer STARTTLS, so the connection cannot be encrypted",
                        "tls_handshake_failed",
                        fix=("Choose SSL/TLS if the server offers it (usually port 465).",
                             "Only for a trusted local relay: choose Security None."),
                    )
                code, resp = smtp.starttls(context=tls_context(s))
                self._note_tls(smtp)
                self._step("tls", started, True, f"{self.info.tls_version} {self.info.cipher}")
                started = time.monotonic()
                smtp.ehlo()
            self.info.features = {name: self.reply_text(value) for name, value in smtp.esmtp_features.items()}
            self._step("ehlo", started, True, " ".join(sorted(self.info.features)))
        except ssl.SSLCertVerificationError as exc:
            raise self._certificate_error(exc) from exc
        except ssl.SSLError as exc:
            raise self._err(ConnectError, f"TLS handshake failed: {exc}", "tls_handshake_failed") from exc
        except smtplib.SMTPResponseException as exc:
            text = self.reply_text(exc.smtp_error)
            raise self._err(ConnectError, f"STARTTLS refused: {exc.smtp_code} {text}", "tls_handshake_failed", code=exc.smtp_code) from None
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise self._disconnected(exc, "while setting up the session") from exc
        if s.user:
            self._login(smtp)

    def _login(self, smtp: smtplib.SMTP) -> None:
        s = self.settings
        started = time.monotonic()
        if not s.encrypted and not s.allow_plaintext_auth:
            # Checked before any AUTH command: smtplib would happily send the password in clear.
            what = "the Google sign-in's token" if s.auth == "xoauth2" else "the password"
            raise self._err(AuthError, f"refusing to send {what} over an unencrypted connection", "plaintext_auth_refused")
        if not smtp.has_extn("auth"):
            raise self._err(AuthError, "the server offers no login method (AUTH) on this connection", "auth_not_offered")
        if s.auth == "xoauth2":
            self._login_xoauth2(smtp, started)
            return
        try:
            if s.user.isascii() and s.password.isascii():
                smtp.login(s.user, s.password)
            else:
                self._login_utf8(smtp)
        except smtplib.SMTPAuthenticationError as exc:
            text = self.reply_text(exc.smtp_error)
            fix: tuple[str, ...] = ()
            if "application-specific password" in text.lower() or "app password" in text.lower():
                fix = ("The server asks for an app password: create one in your account's security "
                       "settings and use it instead of your normal password.",)
            self._step("auth", started, False, f"{exc.smtp_code} {text}")
            raise self._err(AuthError, f"login as '{s.user}' refused: {exc.smtp_code} {text}", "auth_failed", code=exc.smtp_code, fix=fix) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise self._err(AuthError, "the server offers no login method (AUTH)", "auth_not_offered") from exc
        except smtplib.SMTPException as exc:
            if isinstance(exc, smtplib.SMTPServerDisconnected):
                raise self._disconnected(exc, "during login") from exc
            offered = smtp.esmtp_features.get("auth", "").strip() or "none"
            raise self._err(AuthError, f"no login method in common with the server (it offers: {offered})", "auth_not_offered") from exc
        except OSError as exc:
            raise self._disconnected(exc, "during login") from exc
        self.info.authenticated_as = s.user
        self._step("auth", started, True, f"logged in as {s.user}")

    def _login_xoauth2(self, smtp: smtplib.SMTP, started: float) -> None:
        """AUTH XOAUTH2 with the Google sign-in's access token; one renewal if it is refused."""
        s = self.settings
        who = getattr(s.token_source, "provider", "Google")  # whose sign-in: Google's or Microsoft's
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        if "XOAUTH2" not in offered:
            raise self._err(AuthError, "the server does not offer login with OAuth2 (XOAUTH2; it offers: "
                            f"{' '.join(offered) or 'none'})", "auth_not_offered",
                            fix=(f"Sign in with {who} works over SMTP with {who}'s own servers only; use a "
                                 "password for other servers.",))
        last: smtplib.SMTPAuthenticationError | None = None
        for renew in (False, True):
            token = s.token_source.access_token(force_refresh=renew)
            self.redact.add_token(token, s.user)  # before the server can echo it

            def answer(challenge: bytes | None = None, token: str = token) -> str:
                # Google answers a refused token with a 334 challenge (JSON saying why), to
                # which the client replies with an empty line; then 535 follows.
                return "" if challenge else f"user={s.user}\x01auth=Bearer {token}\x01\x01"

            try:
                smtp.auth("XOAUTH2", answer, initial_response_ok=True)
            except smtplib.SMTPAuthenticationError as exc:
                last = exc
                continue
            except smtplib.SMTPServerDisconnected as exc:
                raise self._disconnected(exc, "during login") from exc
            except (smtplib.SMTPException, OSError) as exc:
                raise self._disconnected(exc, "during login") from exc
            self.info.authenticated_as = s.user
            self._step("auth", started, True, f"logged in as {s.user} with {who} (XOAUTH2)")
            return
        assert last is not None
        text = self.reply_text(last.smtp_error)
        self._step("auth", started, False, f"{last.smtp_code} {text}")
        refusal = getattr(s.token_source, "refusal", None)  # the provider's reading of its answer, if any
        category, fix = refusal(last.smtp_code, text) if refusal else ("oauth_error", (
            f"Check that the username is the address you signed in with ({s.user}).",
            "Sign in with Google again for SMTP: Google requires full mail access "
            "(https://mail.google.com/) for SMTP."))
        raise self._err(OAuthError, f"login as '{s.user}' with {who} refused: {last.smtp_code} {text}", category,
                        code=last.smtp_code, fix=fix)

    def _login_utf8(self, smtp: smtplib.SMTP) -> None:
        """AUTH PLAIN with UTF-8 (RFC 4616); smtplib encodes credentials as ASCII only."""
        s = self.settings
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        if "PLAIN" not in offered:
            raise smtplib.SMTPException("non-ASCII credentials need AUTH PLAIN")
        blob = base64.b64encode(b"\0" + s.user.encode() + b"\0" + s.password.encode()).decode("ascii")
        code, resp = smtp.docmd("AUTH", "PLAIN " + blob)
        if code != 235:
            raise smtplib.SMTPAuthenticationError(code, resp)

    def _note_tls(self, smtp: smtplib.SMTP) -> None:
        sock = smtp.sock
        if isinstance(sock, ssl.SSLSocket):
            self.info.tls_version = sock.version()
            cipher = sock.cipher()
            self.info.cipher = cipher[0] if cipher else None
            self.info.certificate_der = sock.getpeercert(binary_form=True)
            cert = sock.getpeercert() or {}
            self.info.certificate_subject = _dn(cert.get("subject"))
            self.info.certificate_issuer = _dn(cert.get("issuer"))

    def _certificate_error(self, exc: ssl.SSLCertVerificationError) -> TransportError:
        reason = exc.verify_message or str(exc)
        low = reason.lower()
        host = self.settings.host
        if "expired" in low or "not yet valid" in low:
            plain = f"the certificate {'has expired' if 'expired' in low else 'is not valid yet'}"
            fix = ("The certificate's dates do not cover the current time: check this computer's "
                   f"date and time (it says {time.strftime('%Y-%m-%d %H:%M %Z')}); if it is right, "
                   "the server's certificate must be renewed by its administrator.",)
        elif "hostname" in low or "ip address mismatch" in low:
            plain = f"the certificate is not issued for '{host}'"
            fix = (f"The certificate is not issued for '{host}': use the host name the "
                   "certificate names (your provider's documented SMTP server name).",)
        elif "self-signed" in low or "self signed" in low:
            plain = "the certificate is self-signed"
            fix = ("The server signed its own certificate: if it is your company's server, add "
                   "that certificate or its authority with --ca-file.",)
        else:
            plain = "the certificate is issued by an authority this computer does not trust"
            fix = ("Add the certificate of the authority that issued it with --ca-file (ask the "
                   "server's administrator for it).",)
        return self._err(ConnectError, f"certificate not valid: {plain} ({reason})", "certificate_invalid", fix=fix)

    def _disconnected(self, exc: BaseException, when: str) -> TransportError:
        if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
            return self._err(ConnectError, f"no answer within {self.settings.timeout:g} s {when}", "timeout")
        return self._err(ConnectError, f"the server closed the connection {when}", "server_disconnected")

    def _plain_smtp_offer(self) -> str | None:
        """If the port speaks plain SMTP: 'starttls' when it offers STARTTLS, else 'none'."""
        probe: smtplib.SMTP | None = None
        try:
            probe = smtplib.SMTP(self.settings.host, self.settings.port, timeout=_PROBE_TIMEOUT,
                                 local_hostname=self._local_hostname or "localhost")
            probe.ehlo()
            return "starttls" if probe.has_extn("starttls") else "none"
        except (smtplib.SMTPException, OSError, UnicodeError):
            return None
        finally:
            if probe is not None:
                probe.close()

    def _speaks_tls(self) -> bool:
        """Whether the port completes a TLS handshake (so it wants implicit TLS)."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection((self.settings.host, self.settings.port), timeout=_PROBE_TIMEOUT) as raw, ctx.wrap_socket(raw, server_hostname=self.settings.host):
                return True
        except (OSError, ssl.SSLError):
            return False

    # -- sending -------------------------------------------------------------------------

    def send(self, envelope: Envelope, message: bytes) -> Receipt:
        """Deliver one message, reopening the connection once if the server dropped it."""
        try:
            return self._send_once(envelope, message)
        except ConnectError as exc:
            if exc.category not in ("server_disconnected", "timeout") and exc.code != 421:
                raise
            log.info("reconnecting after: %s", exc.message)
            self.close()
            return self._send_once(envelope, message)

    def _send_once(self, envelope: Envelope, message: bytes) -> Receipt:
        if self._smtp is None:
            self.open()
        smtp = self._smtp
        assert smtp is not None
        if not self._flights and self._chunks(envelope):
            # CHUNKING: MAIL, RCPT and BDAT with the message in one write, one round trip. No
            # resend inside: send()'s one reconnect is the only retry, as on the DATA path.
            self._submit(envelope, message, resend=False)
            return self.collect()
        options = self._mail_options(smtp, envelope, message)
        if self._rset_due:  # a BDAT message before it was refused: its transaction may be open
            self._reset(smtp)
            self._rset_due = False
            if self._smtp is None:
                raise self._err(ConnectError, "the server closed the connection before the message was sent",
                                "server_disconnected")
        try:
            if smtp.has_extn("pipelining"):
                self._envelope_pipelined(smtp, envelope, options)
            else:
                self._command(smtp, "mail", lambda sender: smtp.mail(sender, options), envelope.sender)
                for rcpt in envelope.recipients:
                    self._command(smtp, "rcpt", smtp.rcpt, rcpt)
                self._command(smtp, "data", smtp.docmd, "data", expect=354)
        except RejectedError:
            self._reset(smtp)
            raise
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._abort(smtp)
            raise self._disconnected(exc, "before the message was sent") from exc
        body = _LEADING_DOT.sub(b"..", message)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        try:
            smtp.send(body + b".\r\n")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # The final dot never arrived, so the server cannot have accepted the message.
            self._abort(smtp)
            raise self._disconnected(exc, "while sending the message") from exc
        try:
            code, resp = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._abort(smtp)
            timed_out = isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError)
            what = (f"no answer within {self.settings.timeout:g} s" if timed_out
                    else "the connection dropped")
            raise self._err(
                UncertainDelivery,
                f"{what} after the whole message was sent; it may or may not have been delivered",
                "timeout" if timed_out else "server_disconnected",
            ) from exc
        text = self.reply_text(resp)
        log.debug("%s:%s end of DATA -> %s %s", self.settings.host, self.settings.port, code, text)
        if code != 250:
            if code == 421:
                # The server refused the message and is closing: not delivered, safe to retry.
                self._abort(smtp)
                raise self._err(ConnectError, f"the server is closing the session: {code} {text}",
                                classify_reply(code, text, "data"), code=code)
            self._reset(smtp)
            raise self._err(RejectedError, f"message refused: {code} {text}", classify_reply(code, text, "data"), code=code)
        return Receipt(code, text)

    @property
    def supports_smtputf8(self) -> bool:
        """Whether the server offered SMTPUTF8 on the open connection (False before open())."""
        return "smtputf8" in self.info.features

    @property
    def size_limit(self) -> int | None:
        """The SIZE the server stated in EHLO (None before open(), or when it states none)."""
        return server_size_limit(self.info.features)

    def _mail_options(self, smtp: smtplib.SMTP, envelope: Envelope, message: bytes) -> list[str]:
        """MAIL FROM options: SMTPUTF8 (+ BODY=8BITMIME) for UTF-8 addresses or headers."""
        # smtplib.mail() switches command_encoding to UTF-8 for SMTPUTF8; rset() switches it
        # back, but a message sent without error is never followed by RSET.
        smtp.command_encoding = "ascii"
        end = message.find(b"\r\n\r\n")
        head = message[:end] if end >= 0 else message
        addresses = (envelope.sender, *envelope.recipients)
        if all(a.isascii() for a in addresses) and head.isascii():
            return []
        if not smtp.has_extn("smtputf8"):
            address = next((a for a in addresses if not a.isascii()), None)
            if address is None:
                what = "the message has non-ASCII addresses in its headers"
            elif not address.rpartition("@")[0].isascii():
                what = f"the address {address} has non-ASCII characters before the @"
            else:
                what = f"the address {address} has non-ASCII characters"
            raise self._err(
                RejectedError,
                f"{what}; the server does not offer SMTPUTF8, so it cannot be sent to",
                "invalid_address",
            )
        return ["SMTPUTF8", "BODY=8BITMIME"] if smtp.has_extn("8bitmime") else ["SMTPUTF8"]

    def _envelope_pipelined(self, smtp: smtplib.SMTP, envelope: Envelope, options: list[str]) -> None:
        """MAIL, RCPT and DATA in one write, then their replies in order (RFC 2920).

        One round trip instead of one per command. Every reply is read before a refusal is
        raised, so the session stays in step; a DATA accepted after a refusal is ended empty.
        """
        if "SMTPUTF8" in options:
            smtp.command_encoding = "utf-8"  # as smtplib.mail() does for SMTPUTF8
        steps = [("mail", envelope.sender, f"mail FROM:{_quoteaddr(envelope.sender)}"
                  + "".join(" " + o for o in options))]
        steps += [("rcpt", r, f"rcpt TO:{_quoteaddr(r)}") for r in envelope.recipients]
        steps.append(("data", "data", "data"))
        smtp.send("".join(line + "\r\n" for _, _, line in steps))
        refused, data_taken = self._envelope_replies(smtp, [(stage, arg) for stage, arg, _ in steps])
        if data_taken:
            smtp.send(".\r\n")  # RFC 2920: the server took DATA though nothing can go: end it
            smtp.getreply()
        if isinstance(refused, AuthError):
            self._reset(smtp)
        if refused is not None:
            raise refused

    def _command(self, smtp: smtplib.SMTP, stage: str, fn, arg: str, expect: int = 250) -> None:
        code, resp = fn(arg)
        try:
            self._check(smtp, stage, arg, code, resp, expect)
        except AuthError:
            self._reset(smtp)
            raise

    def _check(self, smtp: smtplib.SMTP, stage: str, arg: str, code: int, resp: bytes, expect: int) -> None:
        """Raise what a reply to an envelope command means, unless it is the one expected."""
        if log.isEnabledFor(logging.DEBUG):  # only envelope commands pass here, never AUTH
            log.debug("%s:%s %s %s -> %s %s", self.settings.host, self.settings.port, stage.upper(),
                      arg, code, self.reply_text(resp))
        ok = code == expect or (stage == "rcpt" and code == 251)
        if ok:
            return
        text = self.reply_text(resp)
        if code == 421:
            # The server is closing the session: reconnecting is the remedy, not a rejection.
            self._abort(smtp)
            raise self._err(ConnectError, f"the server is closing the session: {code} {text}",
                            classify_reply(code, text, stage), code=code)
        if code == -1:
            self._abort(smtp)
            raise self._err(ConnectError, "the server closed the connection", "server_disconnected")
        what = {"mail": f"sender {arg}", "rcpt": f"recipient {arg}", "data": "message"}[stage]
        category = classify_reply(code, text, stage)
        if category == "auth_failed":
            needs = "requires login" if not self.settings.user else "refused the login for sending"
            raise self._err(AuthError, f"the server {needs}: {code} {text}", "auth_failed", code=code,
                            fix=("Enter the username and password of the account (--user and the password).",)
                            if not self.settings.user else ())
        raise self._err(RejectedError, f"{what} refused: {code} {text}", category, code=code)

    def _reset(self, smtp: smtplib.SMTP) -> None:
        try:
            code, _ = smtp.rset()
            if code == 250:
                return
        except (smtplib.SMTPException, OSError):
            pass
        self._abort(smtp)

    def _abort(self, smtp: smtplib.SMTP) -> None:
        try:
            smtp.close()
        finally:
            if self._smtp is smtp:
                self._smtp = None

    # -- several messages on the way (RFC 2920) -----------------------------------------------

    @property
    def pipeline_depth(self) -> int:
        """How many messages may be on the way at once on the open connection (1 before open()).

        With PIPELINING, message n+1's MAIL, RCPT and DATA are written with message n's final
        dot, before n's reply is read: one round trip a message instead of two. DATA must wait
        for its 354 before the message follows, so at most 2 whatever in_flight says. With
        CHUNKING nothing waits for a 354 (BDAT carries the message): in_flight as set.
        """
        smtp = self._smtp
        if smtp is None or self.in_flight < 2 or not smtp.has_extn("pipelining"):
            return 1
        return self.in_flight if smtp.has_extn("chunking") else min(self.in_flight, 2)

    @property
    def uses_bdat(self) -> bool:
        """Whether messages go with BDAT (RFC 3030) on the open connection: the server offers
        CHUNKING and PIPELINING. Otherwise DATA, as before."""
        smtp = self._smtp
        return smtp is not None and smtp.has_extn("chunking") and smtp.has_extn("pipelining")

    def _chunks(self, envelope: Envelope) -> bool:
        # One recipient only: MAIL, RCPT and BDAT go together, so with several recipients the
        # server would deliver to those it took while another was refused; DATA keeps such a
        # message all or nothing (every RCPT reply is read before the message goes).
        return self.uses_bdat and len(envelope.recipients) == 1

    def submit(self, envelope: Envelope, message: bytes) -> None:
        """Start one message; collect() gives its outcome later, in the order submitted.

        Raises at once, for this message only, what is known before anything is written (a
        connection that cannot be opened, an address the server cannot take).
        """
        self._submit(envelope, message, resend=True)

    def _submit(self, envelope: Envelope, message: bytes, *, resend: bool) -> None:
        if self._smtp is None:
            self.open()
        smtp = self._smtp
        assert smtp is not None
        options = self._mail_options(smtp, envelope, message)
        flight = _Flight(envelope, message, options)
        flight.resent = not resend  # True: not sent again on a new connection if this one drops
        self._flights.append(flight)
        # Nothing may follow a DATA before its 354: the previous envelope's replies come first,
        # once every message before it has had its replies read (they come in order).
        while flight.state == "queued" and self._smtp is not None:
            waiting = next((f for f in self._flights if f.state == "envelope"), None)
            if waiting is None:
                self._write_next()
            elif all(f.state == "done" for f in self._flights if f is not waiting
                     and self._flights.index(f) < self._flights.index(waiting)):
                self._step_flight(waiting)
            else:
                return  # left queued: collect() writes it when its turn comes
        if flight.state == "chunk" and self._smtp is not None:
            # Out now (journaled as 'sending' already): the server starts on it at once.
            try:
                self._flush(self._smtp)
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                self._broken(exc, None)

    def collect(self) -> Receipt:
        """The outcome of the oldest message submitted: its Receipt, or the error for it alone
        (RejectedError, ConnectError: not delivered, UncertainDelivery: the dot went out)."""
        flight = self._flights[0]
        while flight.state != "done":
            if flight.state == "queued":
                # Its connection dropped before it went out: sent once more on a new one.
                if self._smtp is None:
                    try:
                        self.open()
                    except TransportError as exc:
                        for f in self._flights:
                            if f.state == "queued":
                                f.finish(exc)
                        break
                self._write_next()
                continue
            self._step_flight(flight)
        self._flights.popleft()
        # The next message's envelope replies follow this one's on the wire: read them now, so
        # its body goes out with the next message's envelope (one round trip a message).
        following = self._flights[0] if self._flights else None
        if following is not None and following.state == "envelope" and self._smtp is not None:
            self._step_flight(following)
        if flight.error is not None:
            raise flight.error
        assert flight.receipt is not None
        return flight.receipt

    def _write_next(self) -> None:
        """Queue the envelope of the first message not yet written (none is waiting for 354);
        with CHUNKING, the whole message: MAIL, RCPT, then BDAT <size> LAST and its bytes."""
        for f in self._flights:
            if f.state == "queued":
                steps = [("rset", "", "RSET")] if self._rset_due else []
                steps.append(("mail", f.envelope.sender, f"mail FROM:{_quoteaddr(f.envelope.sender)}"
                              + "".join(" " + o for o in f.options)))
                steps += [("rcpt", r, f"rcpt TO:{_quoteaddr(r)}") for r in f.envelope.recipients]
                encoding = "utf-8" if "SMTPUTF8" in f.options else "ascii"
                if self._chunks(f.envelope):
                    # BDAT carries the bytes as they are: no dot-stuffing, no final dot. With
                    # BINARYMIME not asked for, the message is still the 7bit/8bit MIME that
                    # compose.py made, in CRLF lines (policy SMTP), so the server gets the very
                    # bytes DATA would leave after un-stuffing, the CRLF DATA adds included.
                    body = f.message if f.message.endswith(b"\r\n") else f.message + b"\r\n"
                    steps.append(("bdat", "message", f"BDAT {len(body)} LAST"))
                    head = "".join(line + "\r\n" for _, _, line in steps).encode(encoding)
                    self._out.append((head + body, f))  # the server may have it once written
                    f.state = "chunk"
                    self._rset_due = True  # until its replies say its transaction is over
                else:
                    steps.append(("data", "data", "data"))
                    self._out.append(("".join(line + "\r\n" for _, _, line in steps).encode(encoding), None))
                    f.state = "envelope"
                    self._rset_due = False  # its 354 is awaited: it ends cleanly or is RSET
                f.steps = [(stage, arg) for stage, arg, _ in steps]
                return

    def _flush(self, smtp: smtplib.SMTP) -> None:
        if not self._out:
            return
        out, self._out = self._out, []
        for _, flight in out:
            if flight is not None:
                flight.dot_written = True  # from here on the server may have it
        smtp.sock.sendall(b"".join(data for data, _ in out))

    def _step_flight(self, flight: _Flight) -> None:
        """Read the replies that move one message on: its envelope's, or its final one."""
        smtp = self._smtp
        assert smtp is not None
        try:
            self._flush(smtp)
            if flight.state == "envelope":
                self._read_envelope(smtp, flight)
            elif flight.state == "chunk":
                self._read_chunked(smtp, flight)
            else:
                self._read_final(smtp, flight)
        except TransportError as exc:  # 421 at a command: the server closes the session
            self._broken(exc, flight)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._broken(exc, flight)

    def _envelope_replies(self, smtp: smtplib.SMTP, steps: list[tuple[str, str]]) -> tuple[TransportError | None, bool]:
        """Read the replies to a pipelined MAIL, RCPT... and DATA in order: the first refusal, and
        whether the server took DATA after it anyway (then it must be ended empty)."""
        refused: TransportError | None = None
        data_taken = False
        for stage, arg in steps:
            code, resp = smtp.getreply()
            if stage == "rset":
                if code in (421, -1):
                    self._check(smtp, stage, arg, code, resp, 250)  # raises: the session is over
                continue
            if refused is None:
                try:
                    self._check(smtp, stage, arg, code, resp, 354 if stage == "data" else 250)
                except (RejectedError, AuthError) as exc:
                    refused = exc
            elif stage == "data" and code == 354:
                data_taken = True
        return refused, data_taken

    def _read_envelope(self, smtp: smtplib.SMTP, flight: _Flight) -> None:
        refused, accepted_data = self._envelope_replies(smtp, flight.steps)
        if refused is None:
            body = _LEADING_DOT.sub(b"..", flight.message)
            if not body.endswith(b"\r\n"):
                body += b"\r\n"
            self._out.append((body + b".\r\n", flight))
            flight.state = "body"
            # Out now, not with the next envelope: its reply is the one the loop waits for next,
            # and the journal's commit for the next message need not come before it.
            self._flush(smtp)
        else:
            # RFC 2920: a DATA taken after a refusal is ended empty; RSET clears the transaction
            # before the next message's MAIL. Their replies are read and set aside.
            flight.error = refused
            self._out.append(((b".\r\n" if accepted_data else b"") + b"RSET\r\n", None))
            flight.skip = 2 if accepted_data else 1
            flight.state = "skip"
        self._write_next()

    def _read_final(self, smtp: smtplib.SMTP, flight: _Flight) -> None:
        if flight.state == "skip":
            for _ in range(flight.skip):
                smtp.getreply()
            flight.finish(flight.error)
            return
        try:
            code, resp = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._lost_after_dot(exc, flight)
            return
        self._final_reply(flight, code, resp, "DATA")

    def _lost_after_dot(self, exc: BaseException, flight: _Flight) -> None:
        timed_out = isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError)
        what = f"no answer within {self.settings.timeout:g} s" if timed_out else "the connection dropped"
        flight.finish(self._err(
            UncertainDelivery, f"{what} after the whole message was sent; it may or may not have been delivered",
            "timeout" if timed_out else "server_disconnected"))
        self._broken(exc, None)

    def _read_chunked(self, smtp: smtplib.SMTP, flight: _Flight) -> None:
        """Read the replies to a message sent with BDAT: [RSET,] MAIL, RCPT, BDAT, in order.

        The message went out whole with its envelope, so a lost connection leaves it uncertain;
        a refusal of MAIL or RCPT is its outcome (the server then refuses the BDAT as well,
        having read and dropped its bytes, RFC 3030); the BDAT reply is its final reply.
        """
        refused: TransportError | None = None
        for stage, arg in flight.steps:
            try:
                code, resp = smtp.getreply()
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                self._lost_after_dot(exc, flight)
                return
            if code == 421:
                text = self.reply_text(resp)
                if refused is not None:
                    flight.finish(refused)
                self._closing(smtp, flight, self._err(
                    ConnectError, f"the server is closing the session: {code} {text}",
                    classify_reply(code, text, "data" if stage == "bdat" else stage), code=code))
                return
            if stage == "rset":
                if code == -1:
                    self._check(smtp, stage, arg, code, resp, 250)  # raises: the session is over
                continue
            if stage == "bdat":
                if refused is None:
                    self._final_reply(flight, code, resp, "BDAT")
                else:
                    log.debug("%s:%s BDAT after a refusal -> %s %s", self.settings.host, self.settings.port,
                              code, self.reply_text(resp))
                    flight.finish(refused)
                if flight.state == "done" and not any(f.state in ("chunk", "envelope", "body", "skip")
                                                      for f in self._flights):
                    self._rset_due = flight.error is not None  # the last one written: its transaction is over
                return
            if refused is None:
                try:
                    self._check(smtp, stage, arg, code, resp, 250)
                except (RejectedError, AuthError) as exc:
                    refused = exc

    def _closing(self, smtp: smtplib.SMTP, flight: _Flight, error: TransportError) -> None:
        """A 421 to a BDAT message: not delivered. The server closes after it (RFC 5321), so
        it took nothing written behind: those go once more. One that answers on instead is
        read on as usual (nothing is sent twice), this message deferred to a later try."""
        behind = any(f.state == "chunk" for f in self._flights if f is not flight)
        if behind:
            try:
                more = smtp.file.peek(1) if smtp.file is not None else b""
            except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
                more = b""  # closed with what followed unread (a reset): it was not taken
            except OSError as exc:
                # Neither a reply nor the end: what it did with those behind is unknown.
                if flight.state != "done":
                    flight.finish(error)
                self._broken(exc, None)
                return
            if more:
                if flight.state != "done":
                    flight.finish(error)
                return
        self._broken(error, flight, delivered=False)

    def _final_reply(self, flight: _Flight, code: int, resp: bytes, command: str) -> None:
        """Settle a message by the reply to its final dot (DATA) or to its BDAT LAST."""
        text = self.reply_text(resp)
        log.debug("%s:%s end of %s -> %s %s", self.settings.host, self.settings.port, command, code, text)
        if code == 250:
            flight.finish(None, Receipt(code, text))
        elif code == 421:
            # Refused, and the server is closing: not delivered, so it may go once more.
            self._broken(self._err(ConnectError, f"the server is closing the session: {code} {text}",
                                   classify_reply(code, text, "data"), code=code), flight, delivered=False)
        else:
            flight.finish(self._err(RejectedError, f"message refused: {code} {text}",
                                    classify_reply(code, text, "data"), code=code))

    def _broken(self, exc: BaseException, current: _Flight | None, *, delivered: bool | None = None) -> None:
        """The connection is gone: settle every message on it by what the server may have.

        A message whose final dot (or BDAT LAST) was written is uncertain, unless the server
        refused it with 421 (delivered=False: then those written behind it were not taken
        either); one the server cannot have (not written whole) goes once more on a new
        connection, or fails with the error, after one reconnect, as send() does."""
        if self._smtp is not None:
            self._abort(self._smtp)
        self._out = []
        error = exc if isinstance(exc, TransportError) else self._disconnected(exc, "before the message was sent")
        behind = False  # past the current one: written after the 421, never read by the server
        for f in self._flights:
            behind = behind or f is current
            if f.state == "done":
                continue
            if f.state == "skip":
                f.finish(f.error)  # refused already: the lost RSET changes nothing
                continue
            may_have = f.dot_written and not (behind and delivered is False)
            if may_have:
                f.finish(self._err(UncertainDelivery, "the connection dropped after the whole message was sent; "
                                   "it may or may not have been delivered", "server_disconnected"))
            elif f.resent:
                f.finish(error)
            else:
                f.resent, f.state, f.dot_written = True, "queued", False
        log.info("connection lost with %d message(s) on the way: %s", len(self._flights),
                 getattr(error, "message", error))

    def close(self) -> None:
        """Send QUIT if connected and release the socket; never raises."""
        self._flights.clear()
        self._release()

    def _release(self) -> None:
        smtp, self._smtp = self._smtp, None
        self._out = []
        self._rset_due = False
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()


class _Flight:
    """One message submitted on a pipelined connection, and how far it has got.

    queued (envelope not written) -> envelope (MAIL, RCPT, DATA written) -> body (the message and
    its dot queued or written) -> done; or skip (refused: the replies to an empty DATA end and
    RSET still to be read) -> done. With CHUNKING: queued -> chunk (MAIL, RCPT, BDAT LAST and the
    message queued or written at once) -> done.
    """

    __slots__ = ("dot_written", "envelope", "error", "message", "options", "receipt", "resent", "skip", "state",
                 "steps")

    def __init__(self, envelope: Envelope, message: bytes, options: list[str]) -> None:
        self.envelope, self.message, self.options = envelope, message, options
        self.state = "queued"
        self.steps: list[tuple[str, str]] = []
        self.error: TransportError | None = None
        self.receipt: Receipt | None = None
        self.dot_written = False
        self.resent = False
        self.skip = 0

    def finish(self, error: TransportError | None, receipt: Receipt | None = None) -> None:
        self.state, self.error, self.receipt = "done", error, receipt


# A plain address, which smtplib.quoteaddr() (a full RFC 2822 parse) would only put in <>.
_PLAIN_ADDR = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")


def _quoteaddr(address: str) -> str:
    """<address> for MAIL FROM / RCPT TO, as smtplib.quoteaddr() writes it, without its parse."""
    return f"<{address}>" if _PLAIN_ADDR.fullmatch(address) else smtplib.quoteaddr(address)


def _dn(parts: object) -> str | None:
    if not parts:
        return None
    try:
        return ", ".join(f"{k}={v}" for rdn in parts for k, v in rdn)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return str(parts)
