"""Check links (backend/linkcheck.py) against real HTTP and HTTPS servers on 127.0.0.1."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend import linkcheck
from backend.linkcheck import MAX_AT_ONCE, check_links, distinct_links


class _Site(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, cert: tuple[str, str] | None = None, slow_s: float = 1.5, hold_s: float = 0.4) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.slow_s, self.hold_s = slow_s, hold_s
        self.lock = threading.Lock()
        self.in_flight = self.most_at_once = 0
        self.requests: list[tuple[str, str, str]] = []  # method, path, user agent
        if cert:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*cert)
            self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.port = self.server_address[1]
        self.scheme = "https" if cert else "http"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def handle_error(self, request, client_address) -> None:  # a client gone mid-answer (timeouts): quiet
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Site

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, location: str | None = None, body: bytes = b"hello") -> None:
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "session=1")
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802
        self._route()

    def do_GET(self) -> None:  # noqa: N802
        self._route()

    def _route(self) -> None:
        site, path = self.server, self.path
        with site.lock:
            site.requests.append((self.command, path, self.headers.get("User-Agent", "")))
        if path == "/ok" or path.startswith("/ok?"):
            self._answer(200)
        elif path == "/missing":
            self._answer(404)
        elif path == "/error":
            self._answer(500)
        elif path == "/away":  # the same server under another name: another domain
            self._answer(301, site.url("/ok", host="localhost"))
        elif path == "/inside":
            self._answer(302, "/ok")
        elif path == "/loop":
            self._answer(302, "/loop")
        elif path == "/nohead":
            self._answer(405 if self.command == "HEAD" else 200)
        elif path == "/resethead":  # HEAD: the connection closed without an answer
            if self.command == "HEAD":
                self.close_connection = True
                return
            self._answer(200)
        elif path.startswith("/slow"):
            time.sleep(site.slow_s)
            self._answer(200)
        elif path.startswith("/count/"):
            with site.lock:
                site.in_flight += 1
                site.most_at_once = max(site.most_at_once, site.in_flight)
            time.sleep(site.hold_s)
            with site.lock:
                site.in_flight -= 1
            self._answer(200)
        else:
            self._answer(404)


@pytest.fixture
def site() -> Iterator[_Site]:
    server = _Site()
    yield server
    server.shutdown()
    server.server_close()


def _by_url(report) -> dict[str, linkcheck.LinkResult]:
    return {r.url: r for r in report.links}


def test_each_kind_of_answer_is_reported(site):
    urls = [site.url(p) for p in ("/ok", "/missing", "/error", "/away", "/inside", "/nohead", "/loop")]
    got = _by_url(check_links(urls, timeout=5, total=15))
    ok, missing, error, away, inside, nohead, loop = (got[u] for u in urls)
    assert (ok.state, ok.status, ok.words) == ("ok", 200, "200 OK")
    assert (missing.state, missing.status) == ("broken", 404) and "404 Not Found" in missing.words
    assert (error.state, error.status) == ("broken", 500) and "500" in error.words
    assert away.state == "warn" and away.words == f"redirects to another domain: {site.url('/ok', 'localhost')}"
    assert away.final_url == site.url("/ok", "localhost")
    assert [h["status"] for h in away.hops] == [301, 200]
    assert inside.state == "ok" and "after 1 redirect" in inside.words  # within one site: fine
    assert nohead.state == "ok"
    assert loop.state == "broken" and "more than 10 redirects" in loop.words
    methods = [(m, p) for m, p, _ in site.requests if p == "/nohead"]
    assert methods == [("HEAD", "/nohead"), ("GET", "/nohead")]  # GET only once HEAD was refused
    assert all(ua.startswith("BulkMailer-LinkCheck/") for _, _, ua in site.requests)
    assert [m for m, p, _ in site.requests if p == "/ok"] == ["HEAD", "HEAD", "HEAD"]  # never a GET when HEAD works


def test_a_slow_link_times_out_and_the_total_timeout_leaves_the_rest(site):
    got = _by_url(check_links([site.url("/slow")], timeout=0.3, total=10))
    assert got[site.url("/slow")].state == "broken"
    assert got[site.url("/slow")].words.startswith("timeout: 127.0.0.1 did not answer in time")
    started = time.monotonic()
    report = check_links([site.url("/slow"), site.url("/slow?2")], timeout=5, total=0.5)
    assert time.monotonic() - started < 1.2  # the check ends at its total, not when the server answers
    assert [(r.state, r.words) for r in report.links] == [("not_checked", "not checked: time ran out")] * 2


def test_no_more_than_ten_requests_at_once(site):
    site.hold_s = 0.6
    urls = [site.url(f"/count/{i}") for i in range(25)]
    started = time.monotonic()
    report = check_links(urls, timeout=5, total=20)
    took = time.monotonic() - started
    assert [r.state for r in report.links] == ["ok"] * 25
    assert 5 <= site.most_at_once <= MAX_AT_ONCE  # in parallel, never more than ten at once
    assert took >= 3 * site.hold_s  # 25 requests, ten at a time: three rounds at least


def test_a_connection_reset_on_head_is_asked_again_with_get(site):
    result = check_links([site.url("/resethead")], timeout=3, total=5).links[0]
    assert (result.state, result.status) == ("ok", 200)
    assert [m for m, p, _ in site.requests if p == "/resethead"] == ["HEAD", "GET"]


def test_dns_failure_and_refused_connection():
    got = _by_url(check_links(["https://no-such-site.invalid/page", "http://127.0.0.1:9/"], timeout=2, total=5))
    assert got["https://no-such-site.invalid/page"].words.startswith("DNS failure: the name no-such-site.invalid")
    assert got["http://127.0.0.1:9/"].state == "broken" and "refused" in got["http://127.0.0.1:9/"].words


@pytest.mark.parametrize(("which", "words"), [
    ("untrusted", "is not from a trusted authority"),
    ("expired", "has expired"),
    ("wrong_host", "the certificate is for another site"),
])
def test_tls_errors_are_said_plainly(certs, which, words):
    server = _Site(cert=getattr(certs, which))
    try:
        result = check_links([server.url("/ok", "localhost")], ca_file=certs.ca_file, timeout=3, total=5).links[0]
    finally:
        server.shutdown()
        server.server_close()
    assert result.state == "broken" and result.words.startswith("TLS error:") and words in result.words


def test_https_with_a_trusted_certificate_is_fine_only_with_its_authority(certs):
    server = _Site(cert=certs.good)
    try:
        trusted = check_links([server.url("/ok")], ca_file=certs.ca_file, timeout=3, total=5).links[0]
        system_only = check_links([server.url("/ok")], timeout=3, total=5).links[0]  # verification stays on
    finally:
        server.shutdown()
        server.server_close()
    assert (trusted.state, trusted.status) == ("ok", 200)
    assert system_only.state == "broken" and "not from a trusted authority" in system_only.words


def test_what_is_skipped_and_why():
    html = ('<a href="mailto:me@example.com">mail me</a> <a href="{{unsubscribe}}">Unsubscribe</a> '
            '<a href="*|UNSUB|*">out</a> <a href="tel:+15551234">call</a> <a href="#top">top</a>')
    report = check_links(distinct_links(html), timeout=1, total=2)
    words = [r.words for r in report.links]
    assert words[0] == "skipped: a mailto: address, not a web page"
    assert "placeholder" in words[1] and "placeholder" in words[2]
    assert "tel:" in words[3] and "anchor" in words[4]
    assert all(r.state == "skipped" and not r.hops for r in report.links)


def test_per_recipient_links_are_marked_and_a_recipients_unsubscribe_link_is_not_followed(site):
    template = (f'<a href="{site.url("/ok")}?id={{{{ id }}}}">Your page</a> '
                f'<a href="{site.url("/ok")}?unsubscribe={{{{ id }}}}">Unsubscribe</a> <a href="{site.url("/ok")}">x</a>')
    built = template.replace("{{ id }}", "7")
    report = check_links(distinct_links(built, template), timeout=3, total=5)
    mine, unsubscribe, plain = report.links
    assert mine.per_recipient and mine.state == "ok" and "checked as the first recipient's" in mine.words
    assert unsubscribe.state == "skipped" and "unsubscribe them" in unsubscribe.words
    assert not plain.per_recipient and plain.words == "200 OK"
    assert sorted(p for _, p, _ in site.requests) == ["/ok", "/ok?id=7"]


def test_links_are_distinct():
    html = '<a href="https://a.example/">1</a><a href="https://a.example/">2</a><a href="//b.example/x">3</a>'
    assert [u for u, _, _ in distinct_links(html)] == ["https://a.example/", "https://b.example/x"]


def test_app_check_links_checks_the_first_recipients_message(site, certs):
    from backend.app import App
    from backend.inputs import AccountInput, MessageInput

    secure = _Site(cert=certs.good)
    try:
        app = App()
        app.import_recipients(("text", "email,id\nann@example.org,7\nbob@example.org,8\n"))
        html = (f'<a href="{site.url("/ok")}?id={{{{ id }}}}">Your page</a> <a href="{site.url("/missing")}">x</a> '
                f'<a href="{secure.url("/ok")}">secure</a> <a href="mailto:me@example.org">mail</a>')
        answer = app.check_links(AccountInput(ca_file=certs.ca_file), MessageInput(subject="Hi", html=html))
    finally:
        secure.shutdown()
        secure.server_close()
    states = {link["url"]: link["state"] for link in answer["links"]}
    assert states == {site.url("/ok") + "?id=7": "ok", site.url("/missing"): "broken", secure.url("/ok"): "ok",
                      "mailto:me@example.org": "skipped"}
    assert answer["broken"] == 1 and answer["counts"]["ok"] == 2
    assert answer["note"] == ("links with per-recipient values were checked as the first recipient's "
                              "(ann@example.org, line 2)")
    assert answer["summary"] == "4 links: 2 fine, 1 broken, 1 skipped"


def test_cli_check_links_and_send_dry_run_check_links(site, certs, tmp_path):
    from tests.test_cli import run_cli

    secure = _Site(cert=certs.good)
    good, bad = tmp_path / "good.html", tmp_path / "bad.html"
    good.write_text(f'<p>Our garden club news is on <a href="{secure.url("/ok", "localhost")}">the club page</a>.</p>')
    bad.write_text(f'<p>See <a href="{site.url("/missing")}">the page</a> and <a href="{site.url("/away")}">this</a>.</p>')
    try:
        fine = run_cli("check", "--html-file", str(good), "--subject", "The garden club's May letter", "--links",
                       "--ca-file", certs.ca_file, home=tmp_path / "h")
        untrusted = run_cli("check", "--html-file", str(good), "--subject", "The garden club's May letter", "--links",
                            home=tmp_path / "h")
    finally:
        secure.shutdown()
        secure.server_close()
    assert fine.returncode == 0, fine.stderr
    assert "Content check: Looks fine" in fine.stderr and "Links: 1 link: 1 fine" in fine.stderr
    assert untrusted.returncode == 1 and "TLS error: the certificate of localhost is not from a trusted" in untrusted.stderr
    broken = run_cli("check", "--html-file", str(bad), "--subject", "News", "--links", "--json", home=tmp_path / "h")
    assert broken.returncode == 1
    assert f"link broken   {site.url('/missing')}: 404 Not Found" in broken.stderr
    assert f"link look     {site.url('/away')}: redirects to another domain: {site.url('/ok', 'localhost')}" \
        in broken.stderr
    import json

    assert json.loads(broken.stdout)["links"]["broken"] == 1
    people = tmp_path / "p.csv"
    people.write_text("email\nann@example.org\n")
    dry = run_cli("send", "--host", "smtp.nowhere.invalid", "--from", "me@example.org", "--to-file", str(people),
                  "--subject", "News", "--html-file", str(bad), "--dry-run", "--check-links", home=tmp_path / "h")
    assert dry.returncode == 1 and "404 Not Found" in dry.stderr and "nothing sent" in dry.stderr
    real = run_cli("send", "--host", "smtp.nowhere.invalid", "--from", "me@example.org", "--to-file", str(people),
                   "--subject", "News", "--html-file", str(bad), "--check-links", home=tmp_path / "h")
    assert real.returncode == 2 and "--check-links goes with --dry-run" in real.stderr


def test_the_window_asks_through_the_bridge(site, tmp_path):
    from backend.credentials import EncryptedFileStore
    from bridge import Bridge
    from tests.conftest import offline_detect

    b = Bridge(deliver=lambda events: None, store=EncryptedFileStore(tmp_path / "s.enc"), detector=offline_detect)
    try:
        b.import_recipients_text({"text": "ann@example.org"})
        answer = b.check_links({"account": {"provider": "local-inbox", "from_address": "me@example.org"},
                                "message": {"subject": "Hi", "format": "html",
                                            "body": f'<a href="{site.url("/missing")}">x</a>'}})
    finally:
        b._shutdown()
    assert answer["ok"] is True, answer
    assert answer["data"]["broken"] == 1 and answer["data"]["links"][0]["words"] == "404 Not Found"


def test_a_text_only_message_has_its_addresses_checked(site):
    from backend.app import App
    from backend.inputs import AccountInput, MessageInput

    text = f"Hello,\nthe page: {site.url('/ok')} and the old one ({site.url('/missing')}).\n"
    answer = App().check_links(AccountInput(), MessageInput(subject="Hi", text=text))
    assert [(link["url"], link["state"]) for link in answer["links"]] == [
        (site.url("/ok"), "ok"), (site.url("/missing"), "broken")]
