"""The offline content check: what in a message makes spam filters, mail apps or recipients
distrust it, found before sending, with no network.

One table, RULES: each rule has an id, a name, what it looks for, why it matters, the fix, a
score and a check over a prepared View of the message (subject, HTML, text part, headers,
attachments, list size, sender and relay). The findings' scores add up to a verdict: "Looks
fine", "Worth a look" or "Likely spam". docs/deliverability.md is generated from this table
(tools/gen_rules_docs.py), so the rules and their documentation never disagree.

A campaign is checked once on its first recipient's message as it would be sent (the rules on
the body, links, headers and attachments: the template is the same for everyone); only what
depends on each row's fields is checked row by row: the subject rules, when the subject uses
fields, and the types of each recipient's own attachments.

Spam-phrase lists are in English: the app's interface is English only.
"""

from __future__ import annotations

import binascii
import bisect
import io
import ipaddress
import itertools
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy
from email.utils import parseaddr, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

# Gmail shows "[Message clipped]" past this many bytes of HTML; the rest is one click away.
CLIP_BYTES = 102 * 1024
# Over this many recipients a list without an unsubscribe link is asking for spam reports.
UNSUBSCRIBE_FROM = 100
SUBJECT_MAX = 78  # characters: RFC 5322's line length, and what inboxes show at most
TEXT_PER_IMAGE = 100  # characters of text per image below which a message is image-heavy
LARGE_ATTACHMENT = 10 * 1024 * 1024  # one file over this is refused by many servers
# The verdict: a total below LOOKS_FINE_BELOW "Looks fine", from LIKELY_SPAM_FROM "Likely spam".
LOOKS_FINE_BELOW = 2.0
LIKELY_SPAM_FROM = 5.0
VERDICTS = ("Looks fine", "Worth a look", "Likely spam")
# A finding scoring at least this is a warning in Review & send; below, a tip.
WARNING_FROM = 1.0

SHORTENERS = frozenset({
    "bit.ly", "bitly.com", "tinyurl.com", "goo.gl", "t.co", "ow.ly", "is.gd", "buff.ly", "rebrand.ly",
    "cutt.ly", "shorturl.at", "tiny.cc", "rb.gy", "s.id", "v.gd", "t.ly", "lnkd.in", "short.io", "bl.ink",
    "soo.gd", "clck.ru", "qr.ae", "adf.ly", "shorte.st",
})
# Free-mail domains and the servers that may send for them: through any other relay the
# domain's SPF/DMARC (p=reject at Yahoo and AOL, quarantine at Gmail and Outlook) fails.
FREEMAIL: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("gmail.com", "googlemail.com"), ("gmail.com", "google.com", "googlemail.com")),
    **dict.fromkeys(("outlook.com", "hotmail.com", "live.com", "msn.com", "hotmail.co.uk", "outlook.de"),
                    ("outlook.com", "office365.com", "live.com", "hotmail.com")),
    **dict.fromkeys(("yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de", "ymail.com", "rocketmail.com"),
                    ("yahoo.com",)),
    **dict.fromkeys(("aol.com",), ("aol.com",)),
    **dict.fromkeys(("icloud.com", "me.com", "mac.com"), ("me.com", "icloud.com")),
    **dict.fromkeys(("gmx.com", "gmx.net", "gmx.de"), ("gmx.com", "gmx.net")),
    **dict.fromkeys(("web.de",), ("web.de",)),
    **dict.fromkeys(("mail.ru", "inbox.ru", "list.ru", "bk.ru"), ("mail.ru",)),
    **dict.fromkeys(("yandex.ru", "yandex.com", "ya.ru"), ("yandex.ru", "yandex.net", "yandex.com")),
    **dict.fromkeys(("proton.me", "protonmail.com"), ("protonmail.ch", "proton.me")),
    **dict.fromkeys(("zoho.com", "zohomail.com"), ("zoho.com", "zoho.eu")),
}
EXECUTABLE = frozenset({
    "exe", "com", "scr", "pif", "bat", "cmd", "msi", "msp", "dll", "cpl", "js", "jse", "vbs", "vbe", "wsf", "wsh",
    "hta", "ps1", "psm1", "jar", "lnk", "reg", "scf", "iso", "img", "vhd", "app", "sh", "apk",
})
MACRO = frozenset({"docm", "dotm", "xlsm", "xltm", "xlam", "pptm", "potm", "ppam", "ppsm", "sldm"})
ARCHIVE = frozenset({"zip", "jar"})
# Phrases spam filters score, a few dozen of the well-known ones (English: the app's language).
SPAM_PHRASES = (
    "act now", "100% free", "100% guaranteed", "apply now", "as seen on", "buy now", "call now",
    "cash bonus", "click here", "click below", "congratulations", "double your", "earn money", "easy money",
    "extra cash", "final notice", "free access", "free gift", "free money", "free trial", "get paid",
    "guaranteed", "increase sales", "limited time", "lowest price", "make money", "million dollars",
    "miracle", "no catch", "no cost", "no credit check", "no obligation", "once in a lifetime", "order now",
    "risk-free", "risk free", "special promotion", "this is not spam", "urgent", "winner", "you have been selected",
    "you're a winner", "you are a winner", "work from home", "act immediately", "100% satisfied", "best price",
    "cheap", "dear friend", "earn extra", "instant access", "lose weight", "no fees", "offer expires",
    "pre-approved", "viagra", "casino", "bitcoin opportunity", "wire transfer", "claim your",
)
# Run over lower-cased text: much faster than re.IGNORECASE.
_PHRASES_LOWER = re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(p) for p in SPAM_PHRASES) + r")(?![\w-])")
_HTTP = re.compile(r"""\b(?:href|src)\s*=\s*["']?\s*(http://[^"'\s>]+)""", re.IGNORECASE)
_DOMAIN_TEXT = re.compile(r"^(?:https?://)?(?:www\.)?((?:[a-z0-9-]+\.)+[a-z]{2,})(?:[/?#:]\S*)?$", re.IGNORECASE)
_MSGID = re.compile(r"^\s*<[^<>@\s]+@[^<>@\s]+>\s*$")
_HIDDEN = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden|mso-hide\s*:\s*all", re.IGNORECASE)
_TINY = re.compile(r"font-size\s*:\s*(?:0*[01](?:\.\d+)?|0?\.\d+)(?:px|pt|em|rem)?\s*(?:;|$|!)", re.IGNORECASE)
_WHITE = re.compile(r"(?:^|[;\s])color\s*:\s*(?:#fff(?:fff)?\b|white\b|rgb\(\s*255\s*,\s*255\s*,\s*255\s*\))",
                    re.IGNORECASE)
_BACKGROUND = re.compile(r"background", re.IGNORECASE)
_TWO_LEVEL = frozenset({"co.uk", "org.uk", "ac.uk", "com.au", "net.au", "co.nz", "co.jp", "com.br", "co.in",
                        "co.za", "com.mx", "com.tr", "com.cn"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
                   "wbr", "param"})
_ACTIVE = frozenset({"form", "script", "iframe", "object", "embed", "applet", "input", "button", "textarea"})
_UNSEEN = frozenset({"script", "style", "head", "title", "noscript", "template"})
FIRST_TRIES = 50  # rows tried for one whose message builds, when the first cannot be
PREHEADER_CHARS = 150  # a hidden preheader line is common; more hidden text than this is not


# -- the prepared view ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FileInfo:
    """An attachment as the rules see it: its name, size and (for archives) its bytes."""

    filename: str
    size: int
    data: bytes | None = None

    @property
    def extension(self) -> str:
        return self.filename.rsplit(".", 1)[-1].lower() if "." in self.filename else ""


class _Reader(HTMLParser):
    """One pass over the HTML: links with their text, images, active content, seen and hidden text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[list[str]] = []  # [href, text]
        self.images: list[dict[str, str | None]] = []
        self.active: list[str] = []
        self.seen: list[str] = []
        self.hidden: list[str] = []  # display:none text (a preheader is allowed)
        self.disguised: list[str] = []  # tiny or white-on-nothing text
        self._stack: list[tuple[str, str | None, bool]] = []  # tag, hidden kind, has a background
        self._link: list[str] | None = None
        self._unseen = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag in _ACTIVE:
            self.active.append(f"<{tag}>")
        events = sorted(k for k in a if k.startswith("on"))
        if events:
            self.active.append(f"{events[0]}=")
        if tag == "img":
            self.images.append({"src": a.get("src", ""), "alt": a.get("alt") if "alt" in a else None,
                                "width": a.get("width", ""), "height": a.get("height", "")})
        if tag == "a" and "href" in a:
            self._link = [a["href"].strip(), ""]
            self.links.append(self._link)
        if tag in _VOID:
            return
        if tag in _UNSEEN:
            self._unseen += 1
        style = a.get("style", "")
        parent_kind, parent_bg = (self._stack[-1][1], self._stack[-1][2]) if self._stack else (None, False)
        background = parent_bg or bool(_BACKGROUND.search(style)) or "bgcolor" in a
        kind = parent_kind
        if kind is None:
            if _HIDDEN.search(style) or "hidden" in a:
                kind = "hidden"
            else:
                white = _WHITE.search(style) or a.get("color", "").lower() in ("#fff", "#ffffff", "white")
                if _TINY.search(style) or (white and not background):
                    kind = "disguised"
        self._stack.append((tag, kind, background))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._link = None
        if tag in _VOID:
            return
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                for closed, _, _ in self._stack[i:]:
                    if closed in _UNSEEN:
                        self._unseen -= 1
                del self._stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if self._unseen > 0:
            return
        kind = self._stack[-1][1] if self._stack else None
        if kind == "hidden":
            self.hidden.append(data)
        elif kind == "disguised":
            self.disguised.append(data)
        else:
            self.seen.append(data)
            if self._link is not None:
                self._link[1] += data


@dataclass
class View:
    """The message as the rules read it; made by view_of_message (or by hand for one rule)."""

    subject: str | None = ""
    html: str | None = None
    text: str | None = None  # the plain-text part, None when the message has none
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    attachments: list[FileInfo] = field(default_factory=list)
    recipients: int = 1
    sender: str = ""  # the From address
    relay: str | None = None  # the SMTP server sent through; None: the provider's own (Gmail API), or not known
    html_base64: bool = False  # the HTML part's transfer encoding is base64
    size_note: str | None = None  # the campaign's own note on large messages (per-recipient files)
    _parsed: _Reader | None = field(default=None, repr=False)

    @property
    def parsed(self) -> _Reader:
        if self._parsed is None:
            self._parsed = _Reader()
            if self.html:
                self._parsed.feed(self.html)
                self._parsed.close()
        return self._parsed

    @property
    def seen_text(self) -> str:
        return " ".join(" ".join(self.parsed.seen).split())

    @property
    def real_images(self) -> list[dict[str, str | None]]:
        """Images, tracking pixels (1x1 or 0x0) left out."""
        return [i for i in self.parsed.images
                if not (str(i["width"]).strip() in ("0", "1") and str(i["height"]).strip() in ("0", "1"))]


def view_of_message(data: bytes, *, recipients: int = 1, relay: str | None = None,
                    size_note: str | None = None, own_files: Iterable[str] = ()) -> View:
    """The View of one built message (its bytes as they would be sent)."""
    msg = message_from_bytes(data, policy=default_policy)
    html_part, text_part = msg.get_body(("html",)), msg.get_body(("plain",))  # type: ignore[attr-defined]
    html = _content(html_part)
    files = []
    for part in msg.iter_attachments():  # type: ignore[attr-defined]
        payload = part.get_payload(decode=True) or b""
        name = part.get_filename() or ""
        files.append(FileInfo(name, len(payload), payload if name.lower().endswith(tuple(ARCHIVE)) else None))
    files += [FileInfo(name, 0) for name in own_files]
    headers = {k.lower(): str(v) for k, v in msg.items()}
    return View(
        subject=str(msg["Subject"]) if msg["Subject"] is not None else None,
        html=html, text=_content(text_part) if text_part is not None else None, headers=headers,
        attachments=files, recipients=recipients, sender=parseaddr(headers.get("from", ""))[1], relay=relay,
        html_base64=html_part is not None and str(html_part.get("Content-Transfer-Encoding", "")).lower() == "base64",
        size_note=size_note)


def _content(part: Any) -> str | None:
    if part is None:
        return None
    try:
        return str(part.get_content())
    except (LookupError, ValueError, binascii.Error):
        raw = part.get_payload(decode=True) or b""
        return raw.decode("utf-8", "replace")


# -- the rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One thing the check looks for. check(view) -> the reason in plain words, or None."""

    id: str
    name: str
    looks_for: str
    why: str
    fix: str
    score: float
    check: Callable[[View], str | None] = field(repr=False, compare=False)
    per_row: bool = False  # reads only the subject: checked for every row when the subject has fields


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _shown(items: Sequence[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _host(href: str) -> str:
    try:
        return (urlsplit(href).hostname or "").lower().rstrip(".")
    except ValueError:
        return ""


def _base(host: str) -> str:
    """The registrable part of a host name, near enough: example.co.uk, example.com."""
    labels = host.lower().rstrip(".").split(".")
    n = 3 if len(labels) >= 3 and ".".join(labels[-2:]) in _TWO_LEVEL else 2
    return ".".join(labels[-n:])


registrable_domain = _base  # for the link check: a redirect within one site is not a move elsewhere


def links_of(html: str) -> list[tuple[str, str]]:
    """Every <a href> of an HTML body with its visible text, in order (as the rules read them)."""
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return [(href, text) for href, text in reader.links]


def _web_links(view: View) -> list[str]:
    return [href for href, _ in view.parsed.links if href.lower().startswith(("http:", "https:", "//"))]


def no_text_part(v: View) -> str | None:
    if v.html is not None and v.text is None:
        return ("the message has no plain-text part: some mail apps and spam filters expect one next to the "
                "HTML")
    return None


def short_text_part(v: View) -> str | None:
    if v.html is None or v.text is None:
        return None
    seen, text = len(v.seen_text), len(" ".join(v.text.split()))
    if seen >= 200 and text < seen * 0.3:
        return (f"the plain-text part has {text:,} characters while the HTML shows {seen:,}: a text part that "
                "says much less than the HTML looks like a decoy to filters")
    return None


def image_only(v: View) -> str | None:
    images, words = len(v.real_images), len(v.seen_text)
    if images and words < 60:
        return (f"the message is {_plural(images, 'image')} with {words} characters of text: spam hides its "
                "words in pictures, so filters distrust such mail, and most apps do not show images at first")
    return None


def image_heavy(v: View) -> str | None:
    images, words = len(v.real_images), len(v.seen_text)
    if images and words >= 60 and words < TEXT_PER_IMAGE * images:
        return (f"{_plural(images, 'image')} for {words:,} characters of text: a low text-to-image ratio "
                f"(aim for at least {TEXT_PER_IMAGE} characters of text per image)")
    return None


def clipped(v: View) -> str | None:
    if v.html is None:
        return None
    size = len(v.html.encode("utf-8", "replace"))
    if size > CLIP_BYTES:
        return (f"the message body is {size / 1024:,.0f} KB: Gmail shows only the first 102 KB and hides the "
                "rest behind \"[Message clipped]\"; shorten it or link to the long part")
    return None


def bad_message_id(v: View) -> str | None:
    value = v.headers.get("message-id")
    if value is None:
        return "the message has no Message-ID header"
    if not _MSGID.match(value):
        return f"the Message-ID {value[:80]!r} is not of the form <unique@domain>"
    return None


def bad_date(v: View) -> str | None:
    value = v.headers.get("date")
    if value is None:
        return "the message has no Date header"
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        when = None
    if when is None or when.tzinfo is None:
        return f"the Date {value[:60]!r} cannot be read (or has no time zone)"
    return None


_NOT_UPPER = bytes(b for b in range(256) if not 65 <= b <= 90)
_NOT_LETTER = bytes(b for b in range(256) if not (65 <= b <= 90 or 97 <= b <= 122))


def _letters(text: str) -> tuple[int, int]:
    """(letters, capitals) in text; at C speed for ASCII (the per-row subject rules run 100,000 times)."""
    if text.isascii():
        raw = text.encode("ascii")
        return len(raw.translate(None, _NOT_LETTER)), len(raw.translate(None, _NOT_UPPER))
    letters = [c for c in text if c.isalpha()]
    return len(letters), sum(1 for c in letters if c.isupper())


def caps_subject(v: View) -> str | None:
    n, upper = _letters(v.subject or "")
    if n >= 10 and upper >= 0.7 * n:
        return f"the subject is in capitals ({upper} of {n} letters): it reads as shouting"
    return None


def exclaim_subject(v: View) -> str | None:
    subject = v.subject or ""
    if "!!" in subject or subject.count("!") >= 3 or "?!" in subject:
        return f"the subject has {subject.count('!')} exclamation marks"
    return None


def spam_subject(v: View) -> str | None:
    found = sorted({m.group() for m in _PHRASES_LOWER.finditer((v.subject or "").lower())})
    if found:
        return f"the subject says {_shown([repr(p) for p in found])}: words spam filters score"
    return None


def spam_body(v: View) -> str | None:
    body = v.seen_text if v.html is not None else (v.text or "")
    found = sorted({m.group() for m in _PHRASES_LOWER.finditer(body.lower())})
    if len(found) >= 2:
        return f"the message says {_shown([repr(p) for p in found])}: phrases spam filters score"
    return None


def empty_subject(v: View) -> str | None:
    if v.subject is not None and not v.subject.strip():
        return "the subject is empty"
    return None


def long_subject(v: View) -> str | None:
    n = len(v.subject or "")
    if n > SUBJECT_MAX:
        return f"the subject is {n} characters: inboxes cut it at about 40 to 78"
    return None


def url_shortener(v: View) -> str | None:
    found = sorted({h for h in map(_host, _web_links(v))
                    if h in SHORTENERS or any(h.endswith("." + s) for s in SHORTENERS)})
    if found:
        return f"links through a URL shortener ({_shown(found)}) hide where they go"
    return None


def mismatched_link(v: View) -> str | None:
    found = []
    for href, text in v.parsed.links:
        shown = _DOMAIN_TEXT.match(" ".join(text.split()))
        host = _host(href)
        if shown and host and _base(shown.group(1)) != _base(host):
            found.append(f"{shown.group(1)} -> {host}")
    if found:
        return (f"{_plural(len(found), 'link')} {'shows' if len(found) == 1 else 'show'} one site and "
                f"{'goes' if len(found) == 1 else 'go'} to another ({_shown(found)})")
    return None


def http_link(v: View) -> str | None:
    http = sorted({m.group(1) for m in _HTTP.finditer(v.html or "")})
    if http:
        n = len(http)
        return (f"{n} link{'' if n == 1 else 's'} in the message {'is' if n == 1 else 'are'} not https "
                f"({_shown(http)}): mail apps mark them as not secure, and spam filters notice; use https:// "
                "where the site has it")
    return None


def ip_link(v: View) -> str | None:
    found = []
    for href in _web_links(v) + [str(i["src"] or "") for i in v.parsed.images]:
        host = _host(href).strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            continue
        found.append(host)
    if found:
        return f"links to a bare IP address ({_shown(sorted(set(found)))}): a hallmark of phishing"
    return None


def script_link(v: View) -> str | None:
    found = sorted({href.split(":", 1)[0].lower() + ":" for href, _ in v.parsed.links
                    if re.match(r"\s*(?:javascript|data|vbscript):", href, re.IGNORECASE)})
    if found:
        return f"links that run code or carry data instead of going to a page ({', '.join(found)})"
    return None


def active_content(v: View) -> str | None:
    found = sorted(set(v.parsed.active))
    if found:
        return (f"the body has {_shown(found)}: mail apps remove forms and scripts, and filters treat them as "
                "an attack")
    return None


def hidden_text(v: View) -> str | None:
    disguised = " ".join(" ".join(v.parsed.disguised).split())
    hidden = " ".join(" ".join(v.parsed.hidden).split())
    if disguised:
        return f"text made invisible with a tiny or white font ({disguised[:40]!r}...)"
    if len(hidden) > PREHEADER_CHARS:
        return f"{len(hidden):,} characters of text hidden with display:none (more than a preheader)"
    return None


def base64_html(v: View) -> str | None:
    if v.html_base64 and v.html:
        ascii_share = sum(1 for c in v.html if c.isascii()) / len(v.html)
        if ascii_share >= 0.9:
            return "the HTML part is base64-encoded though it is plain ASCII: spam does this to hide its words"
    return None


def missing_alt(v: View) -> str | None:
    bare = [str(i["src"] or "")[-40:] or "(no src)" for i in v.real_images if i["alt"] is None]
    if bare:
        return f"{_plural(len(bare), 'image')} without alt text ({_shown(bare, 2)})"
    return None


def executable_attachment(v: View) -> str | None:
    found = sorted({f.filename for f in v.attachments if f.extension in EXECUTABLE})
    if found:
        return f"attached programs or scripts ({_shown(found)}): refused by Gmail and most servers"
    return None


def archive_with_executable(v: View) -> str | None:
    found = []
    for f in v.attachments:
        if f.extension in ARCHIVE and f.data:
            try:
                with zipfile.ZipFile(io.BytesIO(f.data)) as z:
                    inner = [n for n in z.namelist() if n.rsplit(".", 1)[-1].lower() in EXECUTABLE | MACRO]
            except (zipfile.BadZipFile, OSError, ValueError):
                continue
            if inner:
                found.append(f"{f.filename}: {_shown(inner, 2)}")
    if found:
        return f"archives holding programs or macro files ({_shown(found, 2)})"
    return None


def macro_attachment(v: View) -> str | None:
    found = sorted({f.filename for f in v.attachments if f.extension in MACRO})
    if found:
        return f"Office files with macros ({_shown(found)}): blocked or quarantined by many servers"
    return None


def large_attachment(v: View) -> str | None:
    if v.size_note:
        return v.size_note
    big = [f for f in v.attachments if f.size > LARGE_ATTACHMENT]
    if big:
        largest = max(big, key=lambda f: f.size)
        return (f"{_plural(len(big), 'attachment')} over {LARGE_ATTACHMENT // 2**20} MB (largest: {largest.filename}, "
                f"{largest.size / 2**20:.1f} MB): large attachments are often rejected or land in spam; consider "
                "sharing a link instead")
    return None


def no_unsubscribe(v: View) -> str | None:
    if v.recipients > UNSUBSCRIBE_FROM and "list-unsubscribe" not in v.headers:
        return (f"no unsubscribe link for a list of {v.recipients:,} recipients: Gmail, Yahoo and Outlook expect "
                "one from bulk senders; add one under Unsubscribe link in Message (--unsubscribe)")
    return None


def freemail_relay(v: View) -> str | None:
    domain = v.sender.rpartition("@")[2].lower()
    own = FREEMAIL.get(domain)
    relay = (v.relay or "").lower().rstrip(".")
    if own and relay and not any(relay == s or relay.endswith("." + s) for s in own):
        return (f"the From address is at {domain}, a free-mail domain, but the mail goes through {relay}: "
                f"{domain}'s SPF and DMARC do not cover that server")
    return None


RULES: tuple[Rule, ...] = (
    Rule("no_text_part", "No text part", "An HTML message with no plain-text alternative.",
         "Some mail apps show only text, and filters score HTML-only mail as typical of spam.",
         "Leave the text body empty to have one made from the HTML, or write one.", 1.0, no_text_part),
    Rule("short_text_part", "Text part much shorter than the HTML",
         "A plain-text part with less than 30% of the text the HTML shows.",
         "A token text part next to a full HTML body is a known trick to pass filters that read only the text.",
         "Let the app make the text part from the HTML, or write the whole message in it.", 1.0, short_text_part),
    Rule("image_only", "Image-only message", "Images with under 60 characters of text around them.",
         "Filters cannot read words in images and treat such mail as spam; most apps hide images until asked.",
         "Write the message as text and use images only to illustrate it.", 2.5, image_only),
    Rule("image_heavy", "Image-heavy message", f"Fewer than {TEXT_PER_IMAGE} characters of text per image.",
         "A low text-to-image ratio is scored by filters, and the message is empty while images are blocked.",
         "Add text, or use fewer images.", 1.0, image_heavy),
    Rule("clipped", "Body over 102 KB", "An HTML body larger than 102 KB.",
         "Gmail clips the message there: the rest, often with the unsubscribe link, is hidden.",
         "Shorten the HTML (inline styles repeated on every element add up) or link to the long part.", 1.0,
         clipped),
    Rule("bad_message_id", "Missing or broken Message-ID", "No Message-ID header, or one not like <id@domain>.",
         "Filters score messages without a proper Message-ID; ours always have one.",
         "Send with Bulk Mailer's own messages; a message built elsewhere needs a Message-ID.", 1.0,
         bad_message_id),
    Rule("bad_date", "Missing or broken Date", "No Date header, or one that cannot be read.",
         "A missing or malformed Date is a classic spam sign; ours always have one.",
         "Send with Bulk Mailer's own messages; a message built elsewhere needs an RFC 5322 Date.", 1.0, bad_date),
    Rule("caps_subject", "ALL-CAPS subject", "A subject with at least 10 letters, 70% or more in capitals.",
         "Capitals read as shouting and are scored by every filter.", "Write the subject in sentence case.", 1.5,
         caps_subject, per_row=True),
    Rule("exclaim_subject", "\"!!!\" in the subject", "Two exclamation marks in a row, \"?!\", or three in all.",
         "Stacked exclamation marks are scored as spam.", "Use one exclamation mark at most.", 1.0,
         exclaim_subject, per_row=True),
    Rule("spam_subject", "Spammy phrase in the subject",
         "Phrases such as \"free money\", \"act now\" or \"winner\" in the subject (an English list).",
         "Filters score these phrases most in the subject.", "Say what the message is about in plain words.", 1.5,
         spam_subject, per_row=True),
    Rule("spam_body", "Spammy phrases in the body", "Two or more phrases from the same list in the message's text.",
         "Each phrase adds to the filter's score; several together tip it.",
         "Rephrase the offers: say what it is and what it costs.", 1.0, spam_body),
    Rule("empty_subject", "Empty subject", "A subject that is empty or only spaces.",
         "Messages without a subject are opened less and scored by filters.", "Give the message a subject.", 1.5,
         empty_subject, per_row=True),
    Rule("long_subject", "Subject over 78 characters", f"A subject longer than {SUBJECT_MAX} characters.",
         "Inboxes cut it short, and very long subjects are a spam sign.", "Shorten the subject to under 60 "
         "characters.", 1.0, long_subject, per_row=True),
    Rule("url_shortener", "URL shortener", "Links through bit.ly, tinyurl.com, t.co and other shorteners.",
         "Shorteners hide the destination and are blocked by many filters, since spammers use them.",
         "Link to the page itself.", 2.0, url_shortener),
    Rule("mismatched_link", "Link text shows another site",
         "A link whose text is a web address on one domain and whose href goes to another.",
         "This is how phishing disguises links; filters check for it.",
         "Make the link text the real address, or words (\"Read the article\").", 2.5, mismatched_link),
    Rule("http_link", "http:// link", "Links and images with http:// addresses.",
         "Mail apps mark them as not secure, and filters notice.", "Use https:// where the site has it.", 1.0,
         http_link),
    Rule("ip_link", "Link to an IP address",
         "Links or images whose address is a bare IP such as http://203.0.113.5/.",
         "Real sites use names; IP links are a hallmark of phishing.", "Link to the site's name.", 2.5, ip_link),
    Rule("script_link", "javascript: or data: link", "Links starting with javascript:, vbscript: or data:.",
         "They run code or carry hidden content; mail apps remove them and filters flag them.",
         "Link to a web page instead.", 2.5, script_link),
    Rule("active_content", "Form or script in the body",
         "<form>, <script>, <iframe>, <object>, <embed>, input fields or on...= event attributes.",
         "Mail apps strip them, and filters treat them as an attack.",
         "Link to a form on your site instead.", 2.0, active_content),
    Rule("hidden_text", "Hidden text", "Text in tiny or white fonts, or more than a preheader's worth "
         f"({PREHEADER_CHARS} characters) hidden with display:none.",
         "Hiding text from the reader is a way to fool filters, and they look for it.",
         "Remove the hidden text; keep a short preheader at most.", 2.0, hidden_text),
    Rule("base64_html", "Base64-encoded HTML", "An HTML part sent in base64 though it is plain ASCII text.",
         "Spam encodes its body to hide the words from simple filters; filters score it.",
         "Send the HTML as it is (Bulk Mailer does).", 1.0, base64_html),
    Rule("missing_alt", "Image without alt text", "Images (not 1x1 tracking pixels) with no alt attribute.",
         "While images are blocked, alt text is all the reader sees; screen readers need it.",
         "Give each image a short alt text (alt=\"\" for decoration).", 0.5, missing_alt),
    Rule("executable_attachment", "Program or script attached",
         "Attachments such as .exe, .js, .vbs, .bat, .scr, .msi, .jar, .iso.",
         "Gmail and most servers refuse them outright; they are the way malware travels.",
         "Share the file through a download link.", 3.0, executable_attachment),
    Rule("archive_with_executable", "Archive with a program inside",
         "A .zip attachment holding programs, scripts or macro files.",
         "Servers open archives and refuse them as they would the program itself.",
         "Share the file through a download link.", 3.0, archive_with_executable),
    Rule("macro_attachment", "Office file with macros", "Attachments such as .docm, .xlsm, .pptm.",
         "Macros are a common way malware spreads; many servers quarantine such files.",
         "Save as .docx, .xlsx or .pdf.", 2.0, macro_attachment),
    Rule("size", "Very large attachments",
         f"An attachment over {LARGE_ATTACHMENT // 2**20} MB, or messages large with attachments.",
         "Large messages are refused by many servers (often at 10 to 25 MB) and land in spam.",
         "Share large files through a link.", 1.0, large_attachment),
    Rule("no_unsubscribe", "No unsubscribe link on a list",
         f"A list of more than {UNSUBSCRIBE_FROM} recipients and no List-Unsubscribe header.",
         "Gmail, Yahoo and Outlook require a one-click unsubscribe from bulk senders; without it people "
         "press \"Report spam\".", "Add an unsubscribe link (Message, Unsubscribe link; or --unsubscribe).", 2.0,
         no_unsubscribe),
    Rule("freemail_relay", "Free-mail From through a relay",
         "A From address at gmail.com, yahoo.com, outlook.com and the like, sent through another server.",
         "The free-mail domain's SPF and DMARC do not cover your relay: Yahoo and AOL reject such mail, "
         "Gmail and Outlook send it to spam.", "Send from an address on a domain you own (with SPF and DKIM for "
         "the relay), or through the free-mail provider's own server.", 2.5, freemail_relay),
)
RULES_BY_ID = {r.id: r for r in RULES}


# -- findings and the verdict --------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    rule: Rule
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.id, "name": self.rule.name, "score": self.rule.score, "reason": self.reason,
                "fix": self.rule.fix}


def verdict(score: float) -> str:
    """The words for a total score."""
    if score < LOOKS_FINE_BELOW:
        return VERDICTS[0]
    return VERDICTS[1] if score < LIKELY_SPAM_FROM else VERDICTS[2]


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    @property
    def score(self) -> float:
        return round(sum(f.rule.score for f in self.findings), 2)

    @property
    def verdict(self) -> str:
        return verdict(self.score)

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "score": self.score, "findings": [f.as_dict() for f in self.findings]}


def check(view: View, rules: Iterable[Rule] = RULES) -> Report:
    """Every rule over one view."""
    found = []
    for rule in rules:
        reason = rule.check(view)
        if reason:
            found.append(Finding(rule, reason))
    return Report(found)


def check_message(data: bytes, **kw: Any) -> Report:
    """Every rule over one built message (kw: as view_of_message)."""
    return check(view_of_message(data, **kw))


def check_draft(draft: Any, *, relay: str | None = None) -> Report:
    """A campaign's check (draft: a service.Draft): every rule on the first recipient's message
    as it would be sent (the first whose message builds: the others are problems, listed apart),
    then the rules that depend on each row's fields, row by row."""
    recipients = draft.recipients
    if not recipients:
        return Report()
    data = None
    for recipient in recipients[:FIRST_TRIES]:  # the first row whose message builds
        try:
            data = draft.outgoing(recipient, smtputf8=True).data
            break
        except Exception:  # noqa: BLE001, S112 - a row that cannot be built is a problem, listed apart
            continue
    if data is None:
        return Report()
    view = view_of_message(data, recipients=len(recipients), relay=relay, size_note=draft.size_warning())
    report = check(view)
    template = draft.template
    if _uses_fields(template.subject_source or ""):
        report.findings = [f for f in report.findings if not f.rule.per_row]
        report.findings[0:0] = _per_row_subjects(template, recipients)
    if draft.attach_column:
        _own_files(report, draft.attach_column, recipients)
    order = {r.id: i for i, r in enumerate(RULES)}
    report.findings.sort(key=lambda f: order[f.rule.id])
    return report


def _uses_fields(source: str) -> bool:
    return "{{" in source or "{%" in source


def _subject_renderer(template: Any) -> Callable[[dict[str, str]], str | None]:
    """row fields -> the subject: by joining pieces when the subject only prints fields, else by
    rendering it (None when it cannot be: that is a problem the row check lists)."""
    from backend import compose

    plan = compose._plain_plan(compose._PLAIN_ENV, template.subject_source, header=True)
    if plan is not None:
        import jinja2.nodes

        fmt = []  # the subject as a str.format pattern: C speed, where the per-row cost is
        for node in compose._PLAIN_ENV.parse(template.subject_source).body:
            for child in node.nodes:  # type: ignore[attr-defined]
                if isinstance(child, jinja2.nodes.TemplateData):
                    fmt.append(child.data.replace("{", "{{").replace("}", "}}"))
                else:
                    fmt.append("{" + child.name + "}")  # type: ignore[attr-defined]
        pattern = "".join(fmt)

        def joined(fields: dict[str, str]) -> str | None:
            try:
                return pattern.format_map(fields)
            except (KeyError, ValueError, IndexError, AttributeError):
                return None
        return joined

    def rendered(fields: dict[str, str]) -> str | None:
        try:
            return compose._bounded_render(template._subject, fields)
        except Exception:  # noqa: BLE001 - listed as the row's problem elsewhere
            return None
    return rendered


def _phrases_at(low: str) -> Iterator[int]:
    """Where a spam phrase starts in lower-cased text: str.find per phrase, which scans megabytes
    far faster than one regular expression of 60 alternatives."""
    for phrase in SPAM_PHRASES:
        at = low.find(phrase)
        while at != -1:
            end = at + len(phrase)
            if (at == 0 or not _WORDISH(low[at - 1])) and (end == len(low) or not _WORDISH(low[end])):
                yield at
            at = low.find(phrase, at + 1)


def _WORDISH(ch: str) -> bool:  # noqa: N802 - read as a character class
    return ch.isalnum() or ch in "_-"


def _plain_subject(s: str) -> bool:
    """True when none of the subject rules but the phrase rule can fire: the quick test run
    on each of 100,000 subjects before the rules themselves."""
    if not 0 < len(s) <= SUBJECT_MAX or "!!" in s or "?!" in s or s.count("!") >= 3 or not s.strip():
        return False
    n, upper = _letters(s)
    return n < 10 or upper < 0.7 * n


class _Subject:
    """A view of the subject alone: what the per-row rules read."""

    __slots__ = ("subject",)

    def __init__(self, subject: str) -> None:
        self.subject = subject


def _per_row_subjects(template: Any, recipients: Sequence[Any]) -> list[Finding]:
    """The subject rules over every row's subject, each distinct subject checked once; the
    phrase rule in one pass of its pattern over all of them."""
    rules = [r for r in RULES if r.per_row and r.id != "spam_subject"]
    render = _subject_renderer(template)
    index: dict[str, int] = {}
    row_of: list[int] = []  # recipient i -> its subject's index, -1 when it does not render
    for recipient in recipients:
        subject = render(recipient.fields)
        row_of.append(-1 if subject is None else index.setdefault(subject, len(index)))
    subjects = list(index)
    fired: list[list[tuple[Rule, str]]] = [[] for _ in subjects]
    for i, subject in enumerate(subjects):
        if _plain_subject(subject):
            continue
        view = _Subject(subject)
        for rule in rules:
            why = rule.check(view)  # type: ignore[arg-type]
            if why:
                fired[i].append((rule, why))
    spam = RULES_BY_ID["spam_subject"]
    joined = "\n".join(subjects).lower()
    starts = list(itertools.accumulate((len(x) + 1 for x in subjects), initial=0))
    hit = {bisect.bisect_right(starts, at) - 1 for at in _phrases_at(joined)}
    for i in sorted(hit):
        why = spam.check(_Subject(subjects[i]))  # type: ignore[arg-type]
        if why:
            fired[i].append((spam, why))
    if not any(fired):
        return []
    rows: dict[str, list[int]] = {}
    first: dict[str, str] = {}
    for recipient, i in zip(recipients, row_of, strict=True):
        if i >= 0 and fired[i]:
            for rule, why in fired[i]:
                rows.setdefault(rule.id, []).append(recipient.line)
                first.setdefault(rule.id, why)
    out = []
    for rule in RULES:
        lines = rows.get(rule.id)
        if lines:
            where = "" if len(lines) == len(recipients) else f" (for {_plural(len(lines), 'recipient')}, " \
                f"line{'' if len(lines) == 1 else 's'} {_shown([str(n) for n in lines], 5)})"
            out.append(Finding(rule, first[rule.id] + where))
    return out


def _own_files(report: Report, column: str, recipients: Sequence[Any]) -> None:
    """Each recipient's own attachments (named in the list): their types, row by row."""
    names = {name.strip() for r in recipients for name in str(r.fields.get(column) or "").split(";") if name.strip()}
    view = View(attachments=[FileInfo(n.replace("\\", "/").rsplit("/", 1)[-1], 0) for n in sorted(names)])
    have = {f.rule.id for f in report.findings}
    for rule in (RULES_BY_ID["executable_attachment"], RULES_BY_ID["macro_attachment"]):
        reason = rule.check(view)
        if reason and rule.id not in have:
            report.findings.append(Finding(rule, reason))


def sample_list(subject: str, html: str | None, text: str | None) -> Any:
    """A one-recipient list for checking a message without one: every field the message uses
    filled with its own name (a field "name" is "Name")."""
    from backend import compose
    from backend.recipients import ImportResult, Recipient

    fields = sorted(compose.Template(subject or "", html=html, text=text).fields - {"email"})
    row = Recipient("recipient@example.com", {"email": "recipient@example.com",
                                              **{f: f.replace("_", " ").title() for f in fields}}, 1)
    return ImportResult([row], [], [], ["email", *fields], "email", "a sample recipient")
