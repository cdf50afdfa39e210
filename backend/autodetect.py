"""Account settings from the From address: provider presets, then MX records, then probing.

``detect("me@example.com")`` returns suggestions, best first, each saying where it came from
in plain words; the window and ``bulk-mailer verify --detect`` show them and the user confirms
one.  Three steps, each used only when the one before found nothing:

1. preset: the address domain is one a preset serves (gmail.com, outlook.com, ...); no network.
2. mx: the domain's MX records point at a known provider (aspmx.l.google.com -> Google
   Workspace, *.mail.protection.outlook.com -> Microsoft 365, ...).
3. probe: smtp.<domain> and mail.<domain> are tried on 465 (SSL/TLS) and 587 (STARTTLS), all at
   once with short timeouts; every candidate that answers SMTP over TLS with a certificate that
   verifies for its name is proposed.

DNS failures (no such domain, no answer, timeout, no usable name server) are not errors: that
step yields nothing and the reason is logged at INFO.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import parseaddr

import dns.exception
import dns.resolver
from email_validator import EmailNotValidError, validate_email

from backend.errors import SettingsError
from backend.presets import PRESETS, Preset, preset_for_domain, preset_host

log = logging.getLogger(__name__)

SECURITIES = ("ssl", "starttls")
# (security, port) in preference order: implicit TLS first, as RFC 8314 recommends.
DEFAULT_PROBE_PORTS: tuple[tuple[str, int], ...] = (("ssl", 465), ("starttls", 587))
_SECURITY_WORDS = {"ssl": "SSL/TLS", "starttls": "STARTTLS"}
_MAX_REPLY_LINES = 100  # a real EHLO reply has a dozen; more is not an SMTP server


@dataclass(frozen=True)
class Suggestion:
    """One proposed set of account settings and, in plain words, why it is proposed."""

    host: str
    port: int
    security: str  # "starttls" | "ssl"
    provider: str | None  # preset key, or None for a probed server
    source: str  # "preset" | "mx" | "probe"
    reason: str
    notes: tuple[str, ...] = ()  # the preset's setup notes (app passwords etc.), if any


# MX host suffixes -> preset key, most specific first.  A rule matches the MX host itself or
# any name under it.  Only rules whose key exists in PRESETS are used.
_MX_RULES: tuple[tuple[str, str], ...] = (
    ("aspmx.l.google.com", "google-workspace"),
    ("google.com", "google-workspace"),
    ("googlemail.com", "google-workspace"),
    ("olc.protection.outlook.com", "outlook"),  # Outlook.com with a personal domain
    ("mail.protection.outlook.com", "office365"),
    ("mx.microsoft", "office365"),  # Exchange Online's newer (DNSSEC) MX names
    ("zoho.com", "zoho"),
    ("zoho.eu", "zoho"),
    ("zoho.in", "zoho"),
    ("zoho.com.au", "zoho"),
    ("zoho.jp", "zoho"),
    ("zoho.sa", "zoho"),
    ("zohocloud.ca", "zoho"),
    ("messagingengine.com", "fastmail"),
    ("mail.icloud.com", "icloud"),
    ("mx-aol.mail.gm0.yahoodns.net", "aol"),
    ("yahoodns.net", "yahoo"),
    ("gmx.net", "gmx-net"),
    ("gmx.de", "gmx-net"),
    ("gmx.com", "gmx"),
    ("mailgun.org", "mailgun"),
    ("amazonaws.com", "amazon-ses"),  # inbound-smtp.<region>.amazonaws.com only, see below
)
_ZOHO_DC = re.compile(r"(?:^|\.)(zoho\.(?:com\.au|com|eu|in|jp|sa)|zohocloud\.ca)$")
_SES_INBOUND = re.compile(r"(?:^|\.)inbound-smtp\.([a-z0-9-]+)\.amazonaws\.com$")


def provider_for_mx(exchange: str) -> tuple[Preset, str] | None:
    """The preset and SMTP host for a domain whose mail an MX host receives, or None."""
    name = exchange.strip().rstrip(".").lower()
    for suffix, key in _MX_RULES:
        if not (name == suffix or name.endswith("." + suffix)) or key not in PRESETS:
            continue
        preset = PRESETS[key]
        if key == "zoho":
            # A domain on Zoho is an organisation account: smtppro.<its data centre>.
            match = _ZOHO_DC.search(name)
            return preset, f"smtppro.{match.group(1)}" if match else preset.host
        if key == "mailgun":
            return preset, "smtp.eu.mailgun.org" if name.endswith(".eu.mailgun.org") else preset.host
        if key == "amazon-ses":
            ses = _SES_INBOUND.search(name)
            if ses is None or ses.group(1) not in preset.regions:
                return None  # some other AWS host, not SES receiving mail
            return preset, preset_host(preset, ses.group(1))
        return preset, preset_host(preset)
    return None


def detect(
    address: str,
    *,
    resolver: dns.resolver.Resolver | None = None,
    probe_hosts: Callable[[str], list[str]] | None = None,
    connect_host: Callable[[str], str] | None = None,
    ca_file: str | None = None,
    timeout: float = 5.0,
    probe_ports: Iterable[tuple[str, int]] = DEFAULT_PROBE_PORTS,
    always_probe: bool = False,
) -> list[Suggestion]:
    """Suggested account settings for a From address, best first; [] when nothing is found.

    ``address`` is "me@example.com" or "Me <me@example.com>"; an invalid one raises
    SettingsError("from", ...).  ``resolver`` defaults to the system's; ``probe_hosts`` maps
    the (IDNA, ASCII) domain to the host names to probe (default smtp.<domain>,
    mail.<domain>); ``connect_host`` maps a host name to the address to connect to (the
    certificate is still checked against the name); ``ca_file`` adds a trusted CA to the
    system's; ``probe_ports`` lists (security, port) in preference order; ``timeout`` bounds
    the DNS look-up and each probe (probes run at once).  With ``always_probe`` the probes
    also run when the MX records already named a provider, and come after that suggestion.
    """
    domain, shown = _domain_of(address)
    ports = _check_ports(probe_ports)
    context = _tls_context(ca_file)

    preset = preset_for_domain(domain)
    if preset is not None:
        return [
            Suggestion(
                host=preset_host(preset),
                port=preset.port,
                security=preset.security,
                provider=preset.key,
                source="preset",
                reason=f"{shown} is {_article(preset.name)} {preset.name} address",
                notes=preset.notes,
            )
        ]

    found = _from_mx(domain, shown, resolver, timeout)
    if found and not always_probe:
        return found
    hosts = probe_hosts(domain) if probe_hosts is not None else [f"smtp.{domain}", f"mail.{domain}"]
    return found + _probe_all(hosts, ports, connect_host or (lambda host: host), context, timeout)


# The address ----------------------------------------------------------------------------------


def _domain_of(address: str) -> tuple[str, str]:
    """(ASCII/IDNA domain for DNS and host names, the domain as the user reads it)."""
    if not isinstance(address, str) or not address.strip():
        raise SettingsError("from", "type your email address first", category="invalid_address")
    _, addr = parseaddr(address)
    try:
        # parseaddr also "repairs" input ("me@exa mple.com" -> "me@example.com"): only accept
        # an address that appears as typed.
        if not addr or addr not in address:
            raise EmailNotValidError("it is not of the form name@domain")
        # test_environment lets *.test through: reserved, never in real DNS, used by our tests.
        info = validate_email(
            addr, check_deliverability=False, allow_smtputf8=True, test_environment=True
        )
    except (EmailNotValidError, ValueError) as exc:  # ValueError: any odd IDNA/Unicode error
        raise SettingsError(
            "from", f"{address!r} is not a valid email address: {exc}", category="invalid_address"
        ) from exc
    return info.ascii_domain.lower(), info.domain.lower()


def _article(name: str) -> str:
    return "an" if name[:1].lower() in "aeiou" else "a"


# MX records -----------------------------------------------------------------------------------


def _from_mx(
    domain: str, shown: str, resolver: dns.resolver.Resolver | None, timeout: float
) -> list[Suggestion]:
    """One suggestion per known provider among the domain's MX hosts, lowest preference first."""
    try:
        resolver = resolver or dns.resolver.Resolver()
        answer = resolver.resolve(domain, "MX", lifetime=timeout, search=False)
    except (dns.exception.DNSException, OSError) as exc:
        # NXDOMAIN, NoAnswer, LifetimeTimeout, NoNameservers, no resolver configuration.
        log.info("autodetect: no MX records for %s: %s", domain, exc.__class__.__name__)
        return []
    records = sorted(answer, key=lambda r: (r.preference, r.exchange.to_text()))
    exchanges = [r.exchange.to_text(omit_final_dot=True).lower() for r in records]
    log.info("autodetect: MX records for %s: %s", domain, ", ".join(exchanges) or "none")
    out: list[Suggestion] = []
    for exchange in exchanges:
        if not exchange or exchange == ".":  # a "null MX" (RFC 7505): the domain takes no mail
            continue
        match = provider_for_mx(exchange)
        if match is None or any(s.provider == match[0].key for s in out):
            continue
        preset, host = match
        out.append(
            Suggestion(
                host=host,
                port=preset.port,
                security=preset.security,
                provider=preset.key,
                source="mx",
                reason=f"{shown}'s mail is handled by {preset.name} (MX {exchange})",
                notes=preset.notes,
            )
        )
    return out


# Probing --------------------------------------------------------------------------------------


def _check_ports(probe_ports: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    ports = [(str(sec), int(port)) for sec, port in probe_ports]
    for sec, port in ports:
        if sec not in SECURITIES or not 0 < port < 65536:
            raise ValueError(f"bad probe port {(sec, port)!r}: security must be ssl or starttls")
    return ports


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The system's trusted CAs (plus ca_file), hostname checks on: what sending will use."""
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(
                "ca_file", f"cannot read the CA file {ca_file!r}: {exc}", category="file_error"
            ) from exc
    return context


def _probe_all(
    hosts: list[str],
    ports: list[tuple[str, int]],
    connect_host: Callable[[str], str],
    context: ssl.SSLContext,
    timeout: float,
) -> list[Suggestion]:
    """Probe every (host, security, port) at once; the ones that worked, in preference order."""
    candidates = [(host.rstrip(".").lower(), sec, port) for host in hosts for sec, port in ports]
    results: list[Suggestion | None] = [None] * len(candidates)

    def run(i: int, host: str, security: str, port: int) -> None:
        try:
            results[i] = _probe(host, security, port, connect_host, context, timeout)
        except Exception:  # a bug must not kill detection; it is logged with its traceback
            log.exception("autodetect: probing %s:%s failed unexpectedly", host, port)

    threads = [
        threading.Thread(target=run, args=(i, *c), name=f"probe-{c[0]}:{c[2]}", daemon=True)
        for i, c in enumerate(candidates)
    ]
    for t in threads:
        t.start()
    # Each probe keeps to its own deadline; name resolution inside create_connection does not,
    # so stop waiting a little after the deadline and leave stragglers (daemon threads) behind.
    deadline = time.monotonic() + timeout + 0.5
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [r for r in list(results) if r is not None]


def _probe(
    host: str,
    security: str,
    port: int,
    connect_host: Callable[[str], str],
    context: ssl.SSLContext,
    timeout: float,
) -> Suggestion | None:
    """A Suggestion if host:port speaks SMTP over TLS with a certificate valid for host."""
    deadline = time.monotonic() + timeout

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("probe deadline passed")
        return remaining

    try:
        target = connect_host(host)
        sock: socket.socket = socket.create_connection((target, port), timeout=left())
    except (OSError, UnicodeError) as exc:
        log.info("autodetect: %s:%s (%s): no connection: %s", host, port, security, exc)
        return None
    try:
        sock.settimeout(left())
        if security == "ssl":
            sock = context.wrap_socket(sock, server_hostname=host)
            sock.settimeout(left())
            _expect(sock, 220, left)
        else:
            _expect(sock, 220, left)
            local = sock.getsockname()[0]
            literal = f"[IPv6:{local}]" if ":" in local else f"[{local}]"
            sock.sendall(f"EHLO {literal}\r\n".encode())
            lines = _expect(sock, 250, left)
            if not any(line[4:].strip().upper().split(" ")[:1] == ["STARTTLS"] for line in lines):
                log.info("autodetect: %s:%s does not offer STARTTLS", host, port)
                return None
            sock.sendall(b"STARTTLS\r\n")
            _expect(sock, 220, left)
            sock.settimeout(left())
            sock = context.wrap_socket(sock, server_hostname=host)
        try:
            sock.settimeout(min(1.0, left()))
            sock.sendall(b"QUIT\r\n")
        except OSError:
            pass  # politeness only
    except ssl.SSLCertVerificationError as exc:
        log.info("autodetect: %s:%s (%s): certificate not valid: %s", host, port, security,
                 exc.verify_message or exc)
        return None
    except (OSError, ValueError) as exc:  # TLS errors, timeouts, resets, garbage replies
        log.info("autodetect: %s:%s (%s): %s: %s", host, port, security,
                 exc.__class__.__name__, exc)
        return None
    finally:
        sock.close()
    log.info("autodetect: %s:%s answered with %s and a valid certificate", host, port, security)
    return Suggestion(
        host=host,
        port=port,
        security=security,
        provider=None,
        source="probe",
        reason=f"{host} answered on port {port} with {_SECURITY_WORDS[security]} and a valid "
        "certificate",
    )


def _expect(sock: socket.socket, code: int, left: Callable[[], float]) -> list[str]:
    """Read one (possibly multi-line) SMTP reply; ValueError unless its code is ``code``."""
    lines: list[str] = []
    buffer = b""
    while True:
        while b"\n" not in buffer:
            if len(buffer) > 2048:
                raise ValueError("reply line too long: not an SMTP server")
            sock.settimeout(left())
            chunk = sock.recv(1)  # byte by byte: nothing read past the reply (STARTTLS follows)
            if not chunk:
                raise ConnectionResetError("the server closed the connection")
            buffer += chunk
        raw, _, buffer = buffer.partition(b"\n")
        line = raw.rstrip(b"\r").decode("ascii", "replace")
        lines.append(line)
        if not (len(line) >= 3 and line[:3].isdigit()) or len(lines) > _MAX_REPLY_LINES:
            raise ValueError(f"unexpected reply {line[:80]!r}: not an SMTP server")
        if line[3:4] != "-":
            break
    if int(lines[-1][:3]) != code:
        raise ValueError(f"expected {code}, got {lines[-1][:80]!r}")
    return lines
