"""Check links: follow each distinct link of a campaign's message and say which are broken.

Opt-in (it makes requests, so it is never part of the offline content check): each distinct web
link of the message as the first recipient gets it is asked for with HEAD (GET when the server
refuses HEAD: 405, 501, or a connection reset), at most MAX_AT_ONCE at a time, each request under
a per-link timeout and the whole check under a total timeout, after which what is left is
reported "not checked: time ran out".

Redirects are followed here, hop by hop (up to MAX_HOPS), so each hop is known. Certificates are
always verified: against the system's authorities, plus the account's ca_file when it has one
(as SMTP does). No cookies are kept; response bodies are not read.

Each link gets a state: ok, warn (redirects to another domain; not checked), broken (4xx/5xx,
TLS, DNS, refused, timeout, too many redirects) or skipped (mailto:, placeholders, a recipient's
unsubscribe link), with the reason in plain words.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import urllib3

from backend import __version__
from backend.deliverability import FIRST_TRIES, links_of, registrable_domain

MAX_AT_ONCE = 10  # requests in flight at once
MAX_HOPS = 10  # redirects followed per link
LINK_TIMEOUT = 8.0  # seconds for one request (connect, and each read)
TOTAL_TIMEOUT = 20.0  # seconds for the whole check
MAX_LINKS = 200  # distinct links checked; more are reported not checked
USER_AGENT = f"BulkMailer-LinkCheck/{__version__} (checking the links of an email before it is sent)"
_HEAD_REFUSED = (405, 501)
# Markers of a placeholder another service fills in ({{unsubscribe}}, *|UNSUB|*, %unsubscribe%, [unsubscribe]).
_PLACEHOLDERS = ("{{", "}}", "%7b%7b", "%7d%7d", "{%", "*|", "|*", "%%", "[unsubscribe", "[[")
_BARE_URL = re.compile(r"https?://[^\s<>\"')\]]+")
_UNSUBSCRIBE_WORDS = ("unsubscribe", "unsub", "opt-out", "optout", "opt_out", "abmelden", "desinscri", "désinscri")


@dataclass
class LinkResult:
    """One distinct link: its state (ok | warn | broken | skipped), the reason, the hops taken."""

    url: str
    state: str = "not_checked"
    words: str = "not checked: time ran out"
    status: int | None = None
    final_url: str | None = None
    hops: list[dict[str, Any]] = field(default_factory=list)  # [{"url", "status"}] each hop, in order
    per_recipient: bool = False  # the address has fields: checked as the first recipient's

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "state": self.state, "words": self.words, "status": self.status,
                "final_url": self.final_url, "hops": self.hops, "per_recipient": self.per_recipient}


@dataclass
class LinkReport:
    links: list[LinkResult] = field(default_factory=list)
    note: str = ""  # e.g. which recipient's message was checked
    seconds: float = 0.0

    @property
    def broken(self) -> int:
        return sum(1 for r in self.links if r.state == "broken")

    def as_dict(self) -> dict[str, Any]:
        counts = {s: sum(1 for r in self.links if r.state == s) for s in ("ok", "warn", "broken", "skipped",
                                                                        "not_checked")}
        return {"links": [r.as_dict() for r in self.links], "counts": counts, "broken": self.broken,
                "note": self.note, "seconds": round(self.seconds, 2), "summary": summary(counts)}


def summary(counts: dict[str, int]) -> str:
    """"12 links: 10 fine, 1 broken, 1 to look at" in words."""
    total = sum(counts.values())
    parts = [f"{counts['ok']} fine"]
    for key, word in (("broken", "broken"), ("warn", "to look at"), ("not_checked", "not checked"),
                      ("skipped", "skipped")):
        if counts.get(key):
            parts.append(f"{counts[key]} {word}")
    return f"{total} link{'' if total == 1 else 's'}: " + ", ".join(parts)


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Certificates always verified: the system's authorities, plus ca_file when given."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


def _host_base(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        return registrable_domain(host)


def _skip_reason(url: str, template_href: str | None, text: str) -> str | None:
    low = url.strip().lower()
    scheme = low.split(":", 1)[0] if ":" in low else ""
    if scheme == "mailto":
        return "skipped: a mailto: address, not a web page"
    if low.startswith("#") or scheme in ("tel", "sms", "cid", "javascript", "data", "vbscript", "file", "ftp"):
        return f"skipped: a {scheme or 'page anchor'}{':' if scheme else ''} link, not a web page to fetch"
    if any(mark in low for mark in _PLACEHOLDERS):
        return "skipped: a placeholder another service fills in when it sends, not an address yet"
    if scheme not in ("http", "https") and not low.startswith("//"):
        return "skipped: not an http(s) address"
    if _has_fields(template_href) and any(w in (low + " " + text.lower()) for w in _UNSUBSCRIBE_WORDS):
        return "skipped: a recipient's own unsubscribe link (following it could unsubscribe them)"
    return None


def distinct_links(html: str | None, template_html: str | None = None) -> list[tuple[str, str | None, str]]:
    """The message's distinct <a href> links in order: (url, the template's href at the same place
    when it could be paired, the link's text)."""
    shown = links_of(html or "")
    source = links_of(template_html or "") if template_html is not None else []
    paired = len(source) == len(shown)
    seen: dict[str, tuple[str, str | None, str]] = {}
    for i, (href, text) in enumerate(shown):
        url = href.strip()
        if url.startswith("//"):
            url = "https:" + url
        if not url:
            continue
        template_href = source[i][0] if paired else None
        if url not in seen or (_has_fields(template_href) and not _has_fields(seen[url][1])):
            seen[url] = (url, template_href, seen[url][2] if url in seen else text)
    return list(seen.values())


def _has_fields(href: str | None) -> bool:
    return href is not None and ("{{" in href or "{%" in href)


class _Checker:
    def __init__(self, ca_file: str | None, timeout: float, deadline: float,
                 clock: Callable[[], float]) -> None:
        self.pool = urllib3.PoolManager(
            num_pools=50, maxsize=MAX_AT_ONCE, block=False, ssl_context=tls_context(ca_file),
            headers={"User-Agent": USER_AGENT, "Accept": "*/*"}, retries=False)
        self.timeout = timeout
        self.deadline = deadline
        self.clock = clock

    def _ask(self, method: str, url: str) -> tuple[int, str | None]:
        left = max(0.05, min(self.timeout, self.deadline - self.clock()))
        response = self.pool.request(method, url, redirect=False, retries=False, preload_content=False,
                                     timeout=urllib3.Timeout(connect=left, read=left))
        try:
            return response.status, response.headers.get("Location")
        finally:
            response.close()  # the body is never read
            response.release_conn()

    def request(self, url: str) -> tuple[int, str | None]:
        """(status, Location) for one hop: HEAD, GET when HEAD is refused."""
        try:
            status, location = self._ask("HEAD", url)
        except urllib3.exceptions.ProtocolError:  # the connection reset on HEAD: some servers do
            status, location = _HEAD_REFUSED[0], None
        if status in _HEAD_REFUSED:
            status, location = self._ask("GET", url)
        return status, location

    def check(self, result: LinkResult) -> None:
        url = result.url
        start_base = _host_base(url)
        try:
            for _ in range(MAX_HOPS + 1):
                if self.clock() >= self.deadline:
                    result.state, result.words = "not_checked", "not checked: time ran out"
                    return
                status, location = self.request(url)
                result.hops.append({"url": url, "status": status})
                if 300 <= status < 400 and location:
                    url = urljoin(url, location)
                    continue
                break
            else:
                result.state = "broken"
                result.words = f"more than {MAX_HOPS} redirects (a loop?): the page never arrives"
                return
        except Exception as exc:  # noqa: BLE001 - every failure is the link's finding, worded
            if isinstance(exc, _TIMEOUTS) and self.clock() >= self.deadline - 0.05:  # cut short by the total
                result.state, result.words, result.hops = "not_checked", "not checked: time ran out", []
                return
            result.state, result.words = "broken", failure_words(exc, url)
            result.final_url = url
            return
        result.status, result.final_url = status, url
        moved = len(result.hops) > 1
        if status >= 400:
            result.state = "broken"
            where = f" (after redirects, at {url})" if moved else ""
            result.words = f"{status} {_REASONS.get(status, 'error')}{where}"
        elif moved and _host_base(url) != start_base:
            result.state = "warn"
            result.words = f"redirects to another domain: {url}"
        else:
            result.state = "ok"
            result.words = f"{status} {_REASONS.get(status, 'OK')}" + (f" (after {len(result.hops) - 1} "
                                                                       f"redirect{'s' if len(result.hops) > 2 else ''})"
                                                                       if moved else "")
            if url.startswith("http:") and result.url.startswith("https:"):
                result.state, result.words = "warn", f"redirects from https to an unencrypted http:// page: {url}"


_TIMEOUTS = (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.ReadTimeoutError, TimeoutError)
_REASONS = {200: "OK", 204: "No Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
            400: "Bad Request", 401: "Unauthorized (needs a login)", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 410: "Gone", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def failure_words(exc: BaseException, url: str) -> str:
    """A request's failure in plain words: DNS, refused, timeout, TLS (which kind), reset."""
    host = urlsplit(url).hostname or url
    e = urllib3.exceptions
    if isinstance(exc, e.NameResolutionError):
        return f"DNS failure: the name {host} is not found (a typo, or the site is gone)"
    if isinstance(exc, e.NewConnectionError):
        return f"cannot connect to {host}: the connection was refused or the site is down"
    if isinstance(exc, (e.ConnectTimeoutError, e.ReadTimeoutError, TimeoutError)):
        return f"timeout: {host} did not answer in time"
    if isinstance(exc, e.SSLError):
        return tls_words(exc, host)
    if isinstance(exc, (e.ProtocolError, ConnectionError)):
        return f"the connection to {host} broke off before an answer"
    if isinstance(exc, (e.LocationParseError, ValueError)):
        return f"not a valid web address ({exc})"
    return f"could not be fetched ({type(exc).__name__})"


def tls_words(exc: BaseException, host: str) -> str:
    """A certificate failure as its recipients would meet it in the browser."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__context__ or cause.__cause__ or (cause.args[0] if cause.args and
                                                         isinstance(cause.args[0], BaseException) else None)
    text = str(getattr(cause, "verify_message", "") or exc).lower()
    if "expired" in text:
        return f"TLS error: the certificate of {host} has expired; browsers warn visitors away"
    if "hostname" in text or "mismatch" in text or "doesn't match" in text or "not valid for" in text:
        return f"TLS error: the certificate is for another site, not {host}; browsers warn visitors away"
    if "self-signed" in text or "self signed" in text or "issuer" in text or "unknown ca" in text:
        return (f"TLS error: the certificate of {host} is not from a trusted authority (self-signed or an "
                "unknown issuer); browsers warn visitors away")
    if cause is not None:
        return f"TLS error: the certificate of {host} is invalid ({getattr(cause, 'verify_message', '') or cause})"
    return f"TLS error: a secure connection to {host} could not be made"


def check_links(links: Sequence[tuple[str, str | None, str]] | Iterable[str], *, ca_file: str | None = None,
                timeout: float = LINK_TIMEOUT, total: float = TOTAL_TIMEOUT,
                clock: Callable[[], float] = time.monotonic) -> LinkReport:
    """Follow each link (an URL, or (url, template href, text) from distinct_links)."""
    started = clock()
    rows = [(x, None, "") if isinstance(x, str) else x for x in links]
    results = []
    todo: list[LinkResult] = []
    for url, template_href, text in rows:
        result = LinkResult(url, per_recipient=_has_fields(template_href))
        results.append(result)
        skip = _skip_reason(url, template_href, text)
        if skip:
            result.state, result.words = "skipped", skip
        elif len(todo) >= MAX_LINKS:
            result.words = f"not checked: only the first {MAX_LINKS} links are followed"
        else:
            todo.append(result)
    if todo:
        checker = _Checker(ca_file, timeout, started + total, clock)
        pool = ThreadPoolExecutor(max_workers=MAX_AT_ONCE, thread_name_prefix="linkcheck")
        futures = [pool.submit(checker.check, r) for r in todo]
        wait(futures, timeout=max(0.0, started + total - clock()))
        pool.shutdown(wait=False, cancel_futures=True)
        for future, r in zip(futures, todo, strict=True):
            if not future.done():  # still under way: its answer comes too late to count
                r.state, r.words, r.hops = "not_checked", "not checked: time ran out", []
    for r in results:
        if r.per_recipient and r.state not in ("skipped",):
            r.words += " (its address has fields: checked as the first recipient's)"
    return LinkReport(results, seconds=clock() - started)


def check_draft(draft: Any, *, ca_file: str | None = None, timeout: float = LINK_TIMEOUT,
                total: float = TOTAL_TIMEOUT) -> LinkReport:
    """The links of a campaign (a service.Draft): those of the first recipient's message that
    builds; links whose address has fields are checked as that recipient's."""
    from backend.deliverability import view_of_message

    for recipient in draft.recipients[:FIRST_TRIES]:
        try:
            data = draft.outgoing(recipient, smtputf8=True).data
            break
        except Exception:  # noqa: BLE001, S112 - a row that cannot be built is a problem, listed apart
            continue
    else:
        return LinkReport(note="no message could be built to read its links")
    view = view_of_message(data)
    if view.html is None:  # a text-only message: its bare addresses
        links = [(url, None, "") for url in dict.fromkeys(_BARE_URL.findall(view.text or ""))]
    else:
        links = distinct_links(view.html, draft.template.html_source)
    report = check_links(links, ca_file=ca_file, timeout=timeout, total=total)
    if any(r.per_recipient for r in report.links):
        report.note = (f"links with per-recipient values were checked as the first recipient's "
                       f"({recipient.email}, line {recipient.line})")
    return report
