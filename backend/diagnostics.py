"""Step-by-step connection diagnosis: DNS, TCP, TLS, certificate, EHLO, AUTH, sender, domain.

Each step says what it checked, how long it took and what it found; the first failure
stops the run and carries the error (category, cause, fix steps) of errors.py. The
SMTP transport does the talking, so the diagnosis sees exactly what a campaign would.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend.errors import ConnectError, MailerError, RejectedError, TransportError
from backend.settings import SECURITY_LABELS, SmtpSettings
from backend.transports.smtp import SmtpTransport, classify_reply

log = logging.getLogger(__name__)

TITLES = {
    "dns": "DNS",
    "tcp": "TCP connection",
    "tls": "TLS",
    "certificate": "Certificate",
    "ehlo": "Server capabilities (EHLO)",
    "auth": "Login (AUTH)",
    "sender": "Sender address",
    "domain": "Sender domain (MX, SPF, DMARC)",
}
# Which step a transport failure belongs to.
_STEP_OF = {
    "certificate_invalid": "certificate",
    "tls_handshake_failed": "tls",
    "tls_mode_mismatch": "tls",
    "auth_failed": "auth",
    "auth_not_offered": "auth",
    "plaintext_auth_refused": "auth",
}


@dataclass
class DiagStep:
    """One step of the diagnosis: ok, failed, warning (works, but mind this) or skipped."""

    name: str
    status: str
    detail: str
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return TITLES[self.name]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "status": self.status, "ok": self.status != "failed",
                "detail": self.detail, "seconds": round(self.seconds, 3), "data": self.data}


@dataclass
class Diagnosis:
    """All steps run, and the error of the step that failed (None when everything worked)."""

    steps: list[DiagStep]
    error: MailerError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self, provider: str | None = None) -> dict[str, Any]:
        return {"ok": self.ok, "steps": [s.as_dict() for s in self.steps],
                "error": self.error.describe(provider) if self.error else None}


class _Run:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.steps: list[DiagStep] = []
        self.clock = clock
        self.started = clock()

    def add(self, name: str, status: str, detail: str, **data: Any) -> DiagStep:
        now = self.clock()
        step = DiagStep(name, status, detail, now - self.started, data)
        self.started = now
        self.steps.append(step)
        log.info("diagnosis %s: %s: %s", name, status, detail)
        return step


def diagnose(
    settings: SmtpSettings,
    *,
    check_sender: bool = False,
    check_domain: bool = False,
    resolver: Any = None,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> Diagnosis:
    """Run the steps in order, stopping at the first failure; never raises MailerError."""
    run = _Run(clock)
    s = settings.validated()
    try:
        addresses = _dns(run, s)
        _tcp(run, s, addresses)
        transport = SmtpTransport(s)
        try:
            _session(run, s, transport, now)
            if check_sender:
                _sender(run, s, transport)
        finally:
            transport.close()
    except MailerError as exc:
        return Diagnosis(run.steps, exc)
    if check_domain:
        _domain(run, s, resolver)
    return Diagnosis(run.steps)


def _dns(run: _Run, s: SmtpSettings) -> list[str]:
    try:
        infos = socket.getaddrinfo(s.host, s.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        run.add("dns", "failed", f"'{s.host}' could not be resolved")
        raise ConnectError(
            f"the server name '{s.host}' could not be resolved ({getattr(exc, 'strerror', None) or exc})",
            category="dns_failure", host=s.host, port=s.port,
            fix=(f"The name checked was '{s.host}': compare it letter by letter with your provider's "
                 "documented SMTP server.",),
        ) from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    run.add("dns", "ok", f"{s.host} resolves to {', '.join(addresses)}", addresses=addresses)
    return addresses


def _tcp(run: _Run, s: SmtpSettings, addresses: list[str]) -> None:
    last: BaseException | None = None
    for address in addresses:
        try:
            with socket.create_connection((address, s.port), timeout=s.timeout):
                run.add("tcp", "ok", f"connected to {address} port {s.port}", address=address)
                return
        except OSError as exc:
            last = exc
    refused = isinstance(last, ConnectionRefusedError)
    if refused:
        run.add("tcp", "failed", f"port {s.port} refused the connection")
        raise ConnectError(f"port {s.port} refused the connection", category="connection_refused",
                           host=s.host, port=s.port) from last
    if isinstance(last, TimeoutError):
        run.add("tcp", "failed", f"no answer on port {s.port} within {s.timeout:g} s")
        fix = ()
        if s.port == 25:
            fix = ("Many internet providers block outgoing port 25: use 587 (STARTTLS) or 465 (SSL/TLS).",)
        raise ConnectError(f"no answer on port {s.port} within {s.timeout:g} s (a firewall or a blocked port "
                           "drops the connection silently)", category="timeout", host=s.host, port=s.port,
                           fix=fix) from last
    run.add("tcp", "failed", f"could not connect ({last})")
    raise ConnectError(f"could not connect ({last})", category="connection_refused", host=s.host, port=s.port) from last


def _session(run: _Run, s: SmtpSettings, transport: SmtpTransport, now: Callable[[], dt.datetime]) -> None:
    try:
        transport.open()
    except TransportError as exc:
        info = transport.info
        failed = _STEP_OF.get(exc.category)
        if failed is None:
            # A greeting that never came or a dropped session: for an encrypted setting the
            # encryption step is where it went wrong, else the first SMTP exchange.
            failed = "tls" if s.encrypted else "ehlo"
        reached = [step.name for step in info.steps if step.ok]
        if "tls" in reached or (s.security == "ssl" and "connect" in reached):
            _tls_ok(run, s, transport)
            _certificate(run, s, transport, now, None)
        if "ehlo" in reached:
            _ehlo(run, s, transport)
        if failed == "certificate":
            cert = _fetch_certificate(s)
            if "tls" not in [st.name for st in run.steps]:
                run.add("tls", "ok", "the TLS handshake reached the certificate check")
            _certificate(run, s, transport, now, cert, exc)
        else:
            run.add(failed, "failed", exc.message)
        raise
    if s.encrypted:
        _tls_ok(run, s, transport)
        _certificate(run, s, transport, now, None)
    else:
        run.add("tls", "skipped", "no encryption chosen: the connection is not encrypted")
        run.add("certificate", "skipped", "no TLS, no certificate")
    _ehlo(run, s, transport)
    info = transport.info
    if s.user:
        mech = " ".join(info.features.get("auth", "").split()) or "?"
        run.add("auth", "ok", f"logged in as {s.user} (server offers {mech})")
    else:
        run.add("auth", "skipped", "no username given: sending without login")


def _tls_ok(run: _Run, s: SmtpSettings, transport: SmtpTransport) -> None:
    info = transport.info
    how = "implicit TLS from the first byte" if s.security == "ssl" else "STARTTLS offered and accepted"
    run.add("tls", "ok", f"{info.tls_version or 'TLS'} {info.cipher or ''} ({how})".replace("  ", " "),
            version=info.tls_version, cipher=info.cipher, mode=SECURITY_LABELS[s.security])


def _certificate(
    run: _Run, s: SmtpSettings, transport: SmtpTransport, now: Callable[[], dt.datetime],
    der: bytes | None, error: MailerError | None = None,
) -> None:
    der = der or transport.info.certificate_der
    details = _describe_certificate(der) if der else {}
    if error is None:
        if not s.verify_certificates:
            run.add("certificate", "warning", "NOT verified (verification is turned off)", **details)
            return
        run.add("certificate", "ok", f"valid for {s.host}: {details.get('summary', '')}".rstrip(": "), **details)
        return
    detail = error.message
    if details:
        moment = now()
        before, after = details.get("not_before"), details.get("not_after")
        if before and after and not dt.datetime.fromisoformat(before) <= moment <= dt.datetime.fromisoformat(after):
            detail += (f". This computer's clock says {moment:%Y-%m-%d %H:%M} UTC; the certificate is valid "
                       f"from {before[:16]} to {after[:16]}")
        if details.get("names"):
            detail += f". It covers: {', '.join(details['names'])}"
        if details.get("self_signed"):
            detail += ". It is self-signed"
    run.add("certificate", "failed", detail, **details)


def _describe_certificate(der: bytes) -> dict[str, Any]:
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return {}
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    subject, issuer = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
    before = cert.not_valid_before_utc.isoformat()
    after = cert.not_valid_after_utc.isoformat()
    return {
        "subject": subject, "issuer": issuer, "not_before": before, "not_after": after, "names": names,
        "self_signed": subject == issuer,
        "summary": f"issued by {issuer} for {', '.join(names) or subject}, valid until {after[:10]}",
    }


def _fetch_certificate(s: SmtpSettings) -> bytes | None:
    """The server's certificate without verifying it, to explain why verification failed."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    smtp: smtplib.SMTP | None = None
    try:
        if s.security == "ssl":
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=min(s.timeout, 10), context=ctx,
                                    local_hostname="localhost")
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=min(s.timeout, 10), local_hostname="localhost")
            smtp.ehlo()
            smtp.starttls(context=ctx)
        sock = smtp.sock
        return sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
    except (smtplib.SMTPException, OSError):
        return None
    finally:
        if smtp is not None:
            smtp.close()


def _ehlo(run: _Run, s: SmtpSettings, transport: SmtpTransport) -> None:
    features = transport.info.features
    size = features.get("size", "").strip()
    caps = {
        "size_limit": int(size) if size.isdigit() and int(size) > 0 else None,
        "auth": features.get("auth", "").upper().split(),
        "smtputf8": "smtputf8" in features,
        "pipelining": "pipelining" in features,
        "8bitmime": "8bitmime" in features,
        "starttls": "starttls" in features,
    }
    parts = []
    if caps["size_limit"]:
        parts.append(f"messages up to {caps['size_limit'] / 1_000_000:.0f} MB")
    parts.append("login: " + (" ".join(caps["auth"]) if caps["auth"] else "none offered"))
    parts += [name.upper() for name in ("smtputf8", "pipelining", "8bitmime") if caps[name]]
    run.add("ehlo", "ok", "; ".join(parts), **caps)


def _sender(run: _Run, s: SmtpSettings, transport: SmtpTransport) -> None:
    from email.utils import parseaddr

    address = parseaddr(s.from_address)[1]
    if not address:
        run.add("sender", "skipped", "no From address to check")
        return
    smtp = transport._smtp
    assert smtp is not None
    try:
        code, resp = smtp.mail(address)
        smtp.rset()
    except (smtplib.SMTPException, OSError) as exc:
        run.add("sender", "failed", f"the connection broke while checking {address}")
        raise ConnectError(f"the connection broke while checking the sender: {transport.reply_text(str(exc))}",
                           category="server_disconnected", host=s.host, port=s.port) from None
    text = transport.reply_text(resp)  # scrubbed of the login's secrets
    if code != 250:
        run.add("sender", "failed", f"MAIL FROM:<{address}> refused: {code} {text}")
        raise RejectedError(f"sender {address} refused: {code} {text}", category=classify_reply(code, text, "mail"),
                            code=code, host=s.host, port=s.port)
    run.add("sender", "ok", f"MAIL FROM:<{address}> accepted ({code}); nothing was sent")


def _domain(run: _Run, s: SmtpSettings, resolver: Any) -> None:
    from email.utils import parseaddr

    import dns.exception
    import dns.resolver

    address = parseaddr(s.from_address)[1]
    domain = address.rpartition("@")[2].strip().lower()
    if not domain:
        run.add("domain", "skipped", "no From address to check")
        return
    res = resolver or dns.resolver.Resolver()

    def txt(name: str) -> list[str] | None:
        try:
            answer = res.resolve(name, "TXT", lifetime=5)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]

    try:
        try:
            mx = sorted((r.preference, str(r.exchange).rstrip(".")) for r in res.resolve(domain, "MX", lifetime=5))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            mx = []
        spf = [t for t in (txt(domain) or []) if t.lower().startswith("v=spf1")]
        dmarc = [t for t in (txt(f"_dmarc.{domain}") or []) if t.lower().startswith("v=dmarc1")]
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.exception.DNSException, OSError) as exc:
        run.add("domain", "skipped", f"DNS could not be asked about {domain} ({type(exc).__name__}); "
                "the check needs a working DNS")
        return
    notes = []
    if not mx:
        notes.append(f"{domain} has no MX record: replies to your mail cannot be delivered")
    if not spf:
        notes.append(f"{domain} has no SPF record: receivers cannot tell which servers may send for it, "
                     "so your mail is more likely to land in spam")
    if not dmarc:
        notes.append(f"{domain} has no DMARC record: Gmail and Yahoo require one from bulk senders")
    found = [f"MX {', '.join(h for _, h in mx)}" if mx else None, "SPF found" if spf else None,
             "DMARC found" if dmarc else None]
    detail = "; ".join([f for f in found if f] + notes)
    run.add("domain", "warning" if notes else "ok", detail, mx=[h for _, h in mx], spf=spf, dmarc=dmarc,
            notes=notes)
