"""Shared fixtures: throwaway certificates, real SMTP servers on 127.0.0.1, an isolated home."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.servers import Server

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}
_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect


def _is_loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded_getaddrinfo(host, *args, **kwargs):
    # Names other than loopback are answered "not found" here, as a resolver answers for
    # *.invalid, without asking the machine's resolver: tests send nothing off this machine.
    if host is None or _is_loopback(host if isinstance(host, str) else host.decode()):
        return _real_getaddrinfo(host, *args, **kwargs)
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (tests resolve loopback only)")


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise AssertionError(f"a test tried to connect to {address!r}: only 127.0.0.1 is allowed")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process network traffic stays on this machine (subprocesses get loopback hosts only)."""
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """A command run in the test process (cli.main) adds its log file's handler to the root
    logger: taken away after the test, so no later test writes into this one's folder."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every file the app writes goes under a temporary BULK_MAILER_HOME."""
    home = tmp_path / "home"
    monkeypatch.setenv("BULK_MAILER_HOME", str(home))
    monkeypatch.delenv("BULK_MAILER_PASSWORD", raising=False)
    return home


class Certs:
    """A test CA and certificates issued by it (good, expired, wrong host) plus a self-signed one."""

    def __init__(self, root: Path, host: str | None = None) -> None:
        self.root = root
        self.ca = trustme.CA()
        self.ca_file = str(root / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        self.good = self._issue("good", self.ca, "localhost", "127.0.0.1")
        now = dt.datetime.now(dt.UTC)
        self.expired = self._issue(
            "expired", self.ca, "localhost", "127.0.0.1",
            not_before=now - dt.timedelta(days=60), not_after=now - dt.timedelta(days=1),
        )
        self.wrong_host = self._issue("wronghost", self.ca, "mail.other.example")
        self.untrusted = self._issue("untrusted", trustme.CA(), "localhost", "127.0.0.1")
        self.self_signed = self._self_signed("selfsigned", "localhost")
        if host:  # certificates for a named test host (settings detection probes it by name)
            self.good = self._issue("named", self.ca, host)
            self.wrong_host = self._issue("named-wronghost", self.ca, "other." + host)
            self.untrusted = self._issue("named-untrusted", trustme.CA(), host)

    def _self_signed(self, name: str, host: str) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256())
        )
        chain, keyfile = self.root / f"{name}.pem", self.root / f"{name}.key"
        chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        keyfile.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return str(chain), str(keyfile)

    def _issue(self, name: str, ca: trustme.CA, *hosts: str, **kw) -> tuple[str, str]:
        cert = ca.issue_cert(*hosts, **kw)
        chain, key = self.root / f"{name}.pem", self.root / f"{name}.key"
        chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        key.write_bytes(cert.private_key_pem.bytes())
        return str(chain), str(key)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def smtp_server(certs: Certs) -> Iterator[Callable[..., Server]]:
    """Factory: smtp_server(mode='starttls'|'ssl'|'plain', cert=..., auth=..., ...)."""
    started: list[Server] = []

    def make(mode: str = "starttls", **kw) -> Server:
        if mode != "plain":
            kw.setdefault("cert", certs.good)
        server = Server(mode, **kw)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def offline_detect(address: str) -> list:
    """Settings detection that never leaves 127.0.0.1: presets only (no DNS, no probes)."""
    import dns.resolver

    from backend.autodetect import detect

    dead = dns.resolver.Resolver(configure=False)
    dead.nameservers = ["127.0.0.1"]
    dead.port = 9  # discard: nothing answers
    dead.lifetime = 0.2
    return detect(address, resolver=dead, probe_hosts=lambda domain: [])


@pytest.fixture
def web_app(tmp_path: Path):
    """Browser mode on 127.0.0.1 around a real Bridge with its own local inbox: (webapp, inbox)."""
    from backend import web
    from backend.credentials import EncryptedFileStore
    from backend.inbox import LocalInbox
    from bridge import FRONTEND, Bridge, web_face

    inbox = LocalInbox()
    webapp, server, _ = web.start(
        lambda deliver: web_face(Bridge(inbox=inbox, store=EncryptedFileStore(tmp_path / "s.enc"), deliver=deliver,
                               detector=offline_detect)),
        FRONTEND,
    )
    yield webapp, inbox
    web.stop(webapp, server)


@pytest.fixture
def google(certs: Certs, monkeypatch: pytest.MonkeyPatch):
    """The local fake of Google's OAuth and Gmail endpoints (tests/fakegoogle.py), with the app's
    environment pointed at it and its certificate authority trusted."""
    from tests.fakegoogle import FakeGoogle

    fake = FakeGoogle(certs.good).start()
    for key, value in fake.endpoints().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certs.ca_file)
    yield fake
    fake.stop()


@pytest.fixture
def imap_server(certs: Certs):
    """Factory: a real Dovecot on 127.0.0.1 (tests/imapserver.py). imap_server(special_use=True)
    has a SPECIAL-USE \\Sent folder "Sent"; special_use=False a plain "Sent Items"."""
    from tests import imapserver

    if not imapserver.available():
        pytest.skip("Dovecot is not installed: apt-get install dovecot-imapd (.ci/run does)")
    started: list[imapserver.Dovecot] = []

    def make(**kw) -> imapserver.Dovecot:
        kw.setdefault("cert", certs.good)
        server = imapserver.Dovecot(**kw).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def microsoft(certs: Certs, monkeypatch: pytest.MonkeyPatch):
    """The local fake of the Microsoft identity platform and Graph (tests/fakemicrosoft.py), with
    the app's environment pointed at it and its certificate authority trusted."""
    from tests.fakemicrosoft import FakeMicrosoft

    fake = FakeMicrosoft(certs.good).start()
    for key, value in fake.environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certs.ca_file)
    monkeypatch.delenv("BULK_MAILER_MICROSOFT_CLIENT_ID", raising=False)
    yield fake
    fake.stop()
