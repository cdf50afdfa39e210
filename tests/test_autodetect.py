"""Settings from the From address: presets, MX records (a fake DNS server) and TLS probes.

Everything talks to 127.0.0.1 only: a small UDP DNS server in a thread answers MX queries,
aiosmtpd servers stand in for smtp.example.test on "465" and "587", and connect_host maps
every probed name to 127.0.0.1 while the certificate is still checked against the name.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest

from backend import autodetect
from backend.autodetect import Suggestion, detect, provider_for_mx
from backend.errors import SettingsError
from backend.presets import PRESETS
from tests.conftest import Certs
from tests.servers import Server, free_port, listen_silently

HOST = "smtp.example.test"


# A fake DNS server --------------------------------------------------------------------------


class FakeDNS:
    """UDP DNS on 127.0.0.1: MX answers from ``zone``, NXDOMAIN for every other name."""

    def __init__(self, zone: dict[str, list[str]] | None = None) -> None:
        self.zone = {k.lower(): v for k, v in (zone or {}).items()}
        self.queries: list[tuple[str, str]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            self.queries.append((name, dns.rdatatype.to_text(question.rdtype)))
            if name not in self.zone:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.MX and self.zone[name]:
                response.answer.append(
                    dns.rrset.from_text(question.name, 300, "IN", "MX", *self.zone[name])
                )
            response.flags |= dns.flags.AA
            self.sock.sendto(response.to_wire(), peer)

    def resolver(self) -> dns.resolver.Resolver:
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = ["127.0.0.1"]
        r.port = self.port
        return r

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.sock.close()


@pytest.fixture
def fake_dns() -> Iterator[type[FakeDNS]]:
    started: list[FakeDNS] = []

    def make(zone: dict[str, list[str]] | None = None) -> FakeDNS:
        server = FakeDNS(zone)
        started.append(server)
        return server

    yield make  # type: ignore[misc]
    for server in started:
        server.stop()


class NoDNS(dns.resolver.Resolver):
    """A resolver that fails the test if it is ever asked anything."""

    def __init__(self) -> None:
        super().__init__(configure=False)
        self.nameservers = ["127.0.0.1"]
        self.port = free_port()

    def resolve(self, *args, **kwargs):  # type: ignore[override]
        raise AssertionError(f"DNS queried: {args}")


def unreachable_resolver() -> dns.resolver.Resolver:
    """A resolver pointed at a port where nothing listens."""
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = free_port()
    return r


def to_loopback(host: str) -> str:
    return "127.0.0.1"


def no_probes(domain: str) -> list[str]:
    raise AssertionError(f"probed {domain}")


# Certificates and SMTP servers --------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("autodetect-certs"), host=HOST)


@pytest.fixture
def server() -> Iterator[type[Server]]:
    started: list[Server] = []

    def make(mode: str, cert: tuple[str, str]) -> Server:
        s = Server(mode, cert=cert, auth=False)
        started.append(s)
        return s

    yield make  # type: ignore[misc]
    for s in started:
        s.stop()


# 1. Presets -----------------------------------------------------------------------------------


def test_known_domain_fills_the_preset_without_dns_or_probes() -> None:
    found = detect("Me <me@Gmail.com>", resolver=NoDNS(), probe_hosts=no_probes, timeout=0.1)
    gmail = PRESETS["gmail"]
    assert found == [
        Suggestion(
            host="smtp.gmail.com",
            port=587,
            security="starttls",
            provider="gmail",
            source="preset",
            reason="gmail.com is a Gmail address",
            notes=gmail.notes,
        )
    ]
    assert any("app password" in n for n in found[0].notes)


def test_preset_reason_reads_well() -> None:
    (s,) = detect("me@hotmail.com", resolver=NoDNS(), probe_hosts=no_probes)
    assert (s.provider, s.host, s.port, s.security) == ("outlook", "smtp-mail.outlook.com", 587, "starttls")
    assert s.reason == "hotmail.com is an Outlook.com / Hotmail address"
    (y,) = detect("me@yahoo.com", resolver=NoDNS(), probe_hosts=no_probes)
    assert (y.provider, y.port, y.security) == ("yahoo", 465, "ssl")


# 2. MX records --------------------------------------------------------------------------------


def test_mx_identifies_google_workspace(fake_dns) -> None:
    dns_server = fake_dns({"company.test": ["10 aspmx.l.google.com.", "20 alt1.aspmx.l.google.com."]})
    found = detect("Boss <boss@Company.test>", resolver=dns_server.resolver(), probe_hosts=no_probes)
    assert len(found) == 1
    s = found[0]
    assert (s.provider, s.source, s.host, s.port, s.security) == (
        "google-workspace", "mx", "smtp.gmail.com", 587, "starttls")
    assert "Google" in s.reason and "aspmx.l.google.com" in s.reason
    assert s.reason == "company.test's mail is handled by Google Workspace (MX aspmx.l.google.com)"
    assert s.notes == PRESETS["google-workspace"].notes
    assert dns_server.queries == [("company.test", "MX")]


def test_mx_identifies_office365_by_lowest_preference(fake_dns) -> None:
    dns_server = fake_dns({"contoso.test": [
        "20 backup.mx.example.net.",  # unknown provider, and less preferred anyway
        "0 contoso-test.mail.protection.outlook.com.",
    ]})
    found = detect("me@contoso.test", resolver=dns_server.resolver(), probe_hosts=no_probes)
    assert [(s.provider, s.host, s.source) for s in found] == [("office365", "smtp.office365.com", "mx")]
    assert "Microsoft 365" in found[0].reason
    assert "contoso-test.mail.protection.outlook.com" in found[0].reason


def test_two_providers_in_mx_give_two_suggestions(fake_dns) -> None:
    # A domain moving from Google to Microsoft: both offered, the preferred MX first.
    dns_server = fake_dns({"moving.test": ["5 moving-test.mail.protection.outlook.com.",
                                          "10 aspmx.l.google.com.", "20 alt2.aspmx.l.google.com."]})
    found = detect("me@moving.test", resolver=dns_server.resolver(), probe_hosts=no_probes)
    assert [s.provider for s in found] == ["office365", "google-workspace"]


@pytest.mark.parametrize(
    ("exchange", "key", "host"),
    [
        ("aspmx.l.google.com.", "google-workspace", "smtp.gmail.com"),
        ("ALT3.ASPMX.L.GOOGLE.COM", "google-workspace", "smtp.gmail.com"),
        ("smtp.google.com", "google-workspace", "smtp.gmail.com"),
        ("aspmx2.googlemail.com", "google-workspace", "smtp.gmail.com"),
        ("example-com.mail.protection.outlook.com", "office365", "smtp.office365.com"),
        ("example-com.olc.protection.outlook.com", "outlook", "smtp-mail.outlook.com"),
        ("mx.zoho.com", "zoho", "smtppro.zoho.com"),
        ("mx2.zoho.eu", "zoho", "smtppro.zoho.eu"),
        ("mx.zoho.com.au", "zoho", "smtppro.zoho.com.au"),
        ("in1-smtp.messagingengine.com", "fastmail", "smtp.fastmail.com"),
        ("mx01.mail.icloud.com", "icloud", "smtp.mail.me.com"),
        ("mta5.am0.yahoodns.net", "yahoo", "smtp.mail.yahoo.com"),
        ("mx00.emig.gmx.net", "gmx-net", "mail.gmx.net"),
        ("mxa.eu.mailgun.org", "mailgun", "smtp.eu.mailgun.org"),
        ("inbound-smtp.eu-west-1.amazonaws.com", "amazon-ses", "email-smtp.eu-west-1.amazonaws.com"),
    ],
)
def test_mx_host_to_preset(exchange: str, key: str, host: str) -> None:
    match = provider_for_mx(exchange)
    assert match is not None
    assert (match[0].key, match[1]) == (key, host)


@pytest.mark.parametrize(
    "exchange", ["mx.example.net", "notgoogle.com", "ec2-1-2-3-4.compute.amazonaws.com", "."]
)
def test_unknown_mx_host_is_no_provider(exchange: str) -> None:
    assert provider_for_mx(exchange) is None


def test_every_mx_rule_names_a_preset() -> None:
    assert {key for _, key in autodetect._MX_RULES} <= set(PRESETS)


# 3. Probing -----------------------------------------------------------------------------------


def test_probe_proposes_implicit_tls_first(fake_dns, server, certs: Certs) -> None:
    dns_server = fake_dns()  # NXDOMAIN for everything: no MX
    ssl_server = server("ssl", certs.good)
    starttls_server = server("starttls", certs.good)
    found = detect(
        "me@example.test",
        resolver=dns_server.resolver(),
        connect_host=to_loopback,  # mail.example.test too: its certificate check must fail
        ca_file=certs.ca_file,
        timeout=2.0,
        probe_ports=(("ssl", ssl_server.port), ("starttls", starttls_server.port)),
    )
    assert dns_server.queries == [("example.test", "MX")]
    assert found == [
        Suggestion(HOST, ssl_server.port, "ssl", None, "probe",
                   f"{HOST} answered on port {ssl_server.port} with SSL/TLS and a valid certificate"),
        Suggestion(HOST, starttls_server.port, "starttls", None, "probe",
                   f"{HOST} answered on port {starttls_server.port} with STARTTLS and a valid certificate"),
    ]


def test_wrong_host_certificate_is_not_proposed(fake_dns, server, certs: Certs) -> None:
    ssl_server = server("ssl", certs.wrong_host)
    starttls_server = server("starttls", certs.good)
    found = detect(
        "me@example.test",
        resolver=fake_dns().resolver(),
        probe_hosts=lambda d: [f"smtp.{d}"],
        connect_host=to_loopback,
        ca_file=certs.ca_file,
        timeout=2.0,
        probe_ports=(("ssl", ssl_server.port), ("starttls", starttls_server.port)),
    )
    assert [(s.port, s.security) for s in found] == [(starttls_server.port, "starttls")]


def test_untrusted_certificates_are_not_proposed(fake_dns, server, certs: Certs) -> None:
    ssl_server = server("ssl", certs.untrusted)
    starttls_server = server("starttls", certs.untrusted)
    ports = (("ssl", ssl_server.port), ("starttls", starttls_server.port))
    kw = dict(resolver=fake_dns().resolver(), connect_host=to_loopback, timeout=2.0, probe_ports=ports)
    assert detect("me@example.test", ca_file=certs.ca_file, **kw) == []


def test_probe_trusts_only_the_system_cas_without_ca_file(fake_dns, server, certs: Certs) -> None:
    ssl_server = server("ssl", certs.good)
    found = detect("me@example.test", resolver=fake_dns().resolver(), connect_host=to_loopback,
                   timeout=2.0, probe_ports=(("ssl", ssl_server.port),))
    assert found == []


def test_mode_mismatch_is_not_proposed(fake_dns, server, certs: Certs) -> None:
    # A STARTTLS server on the "465" port and an implicit-TLS one on the "587" port.
    ssl_server = server("ssl", certs.good)
    starttls_server = server("starttls", certs.good)
    found = detect(
        "me@example.test",
        resolver=fake_dns().resolver(),
        probe_hosts=lambda d: [f"smtp.{d}"],
        connect_host=to_loopback,
        ca_file=certs.ca_file,
        timeout=0.5,
        probe_ports=(("ssl", starttls_server.port), ("starttls", ssl_server.port)),
    )
    assert found == []


def test_silent_and_closed_ports_stay_within_the_timeout(fake_dns) -> None:
    silent, silent_port = listen_silently()
    try:
        started = time.monotonic()
        found = detect(
            "me@example.test",
            resolver=fake_dns().resolver(),
            connect_host=to_loopback,
            timeout=0.5,
            probe_ports=(("ssl", free_port()), ("starttls", silent_port)),
        )
        assert found == []
        assert time.monotonic() - started < 2.0
    finally:
        silent.close()


def test_mx_match_skips_probes_unless_asked(fake_dns, server, certs: Certs) -> None:
    dns_server = fake_dns({"example.test": ["10 in1-smtp.messagingengine.com."]})
    ssl_server = server("ssl", certs.good)
    kw = dict(resolver=dns_server.resolver(), connect_host=to_loopback, ca_file=certs.ca_file,
              timeout=2.0, probe_ports=(("ssl", ssl_server.port),))
    assert [s.source for s in detect("me@example.test", **kw)] == ["mx"]
    both = detect("me@example.test", always_probe=True, **kw)
    assert [(s.source, s.provider, s.host) for s in both] == [
        ("mx", "fastmail", "smtp.fastmail.com"), ("probe", None, HOST)]


def test_internationalised_domain_is_probed_in_idna_form(fake_dns) -> None:
    asked: list[str] = []

    def record(host: str) -> str:
        asked.append(host)
        return "127.0.0.1"

    dns_server = fake_dns()
    found = detect("me@Bücher.test", resolver=dns_server.resolver(), connect_host=record,
                   timeout=0.5, probe_ports=(("ssl", free_port()),))
    assert found == []
    assert dns_server.queries == [("xn--bcher-kva.test", "MX")]
    assert sorted(asked) == ["mail.xn--bcher-kva.test", "smtp.xn--bcher-kva.test"]


# 4. Bad input and broken DNS -------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["", "   ", "not an address", "me@", "@example.com", "me@exa mple.com", "me@-bad-.com",
     "Me <me@nodot>", "me@example..com"],
)
def test_invalid_address_is_a_from_settings_error(address: str) -> None:
    with pytest.raises(SettingsError) as info:
        detect(address, resolver=NoDNS(), probe_hosts=no_probes)
    assert info.value.field == "from"
    assert info.value.category == "invalid_address"


def test_unreadable_ca_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        detect("me@example.test", resolver=NoDNS(), probe_hosts=no_probes,
               ca_file=str(tmp_path / "missing.pem"))
    assert info.value.field == "ca_file"


def test_unreachable_dns_is_not_an_error(server, certs: Certs) -> None:
    started = time.monotonic()
    assert detect("me@example.test", resolver=unreachable_resolver(), connect_host=to_loopback,
                  timeout=0.3, probe_ports=(("ssl", free_port()),)) == []
    ssl_server = server("ssl", certs.good)
    found = detect("me@example.test", resolver=unreachable_resolver(), connect_host=to_loopback,
                   ca_file=certs.ca_file, timeout=0.3, probe_ports=(("ssl", ssl_server.port),))
    assert [(s.source, s.host) for s in found] == [("probe", HOST)]
    assert time.monotonic() - started < 3.0


def test_domain_without_mx_answer_falls_through_to_probes(fake_dns) -> None:
    dns_server = fake_dns({"nomx.test": []})  # the name exists, no MX: NOERROR, empty answer
    found = detect("me@nomx.test", resolver=dns_server.resolver(), connect_host=to_loopback,
                   timeout=0.5, probe_ports=(("ssl", free_port()),))
    assert found == []
    assert dns_server.queries == [("nomx.test", "MX")]
