"""Template + recipient row -> message: Jinja2 sandbox, header checks, EmailMessage (policy SMTP)."""

from __future__ import annotations

import base64
import binascii
import email.errors
import email.policy
import email.utils
import functools
import logging
import random
import re
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import quoprimime
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nodes
from email_validator import EmailNotValidError, validate_email
from inscriptis import get_text
from inscriptis.model.config import ParserConfig
from jinja2.exceptions import SecurityError
from jinja2.filters import do_default, do_urlencode
from jinja2.sandbox import SandboxedEnvironment

from backend import authoring, sandbox
from backend.attachments import Attachment
from backend.errors import HeaderValueError, SettingsError, TemplateError
from backend.recipients import Recipient
from backend.sandbox import LimitedSandbox

log = logging.getLogger(__name__)

# policy.SMTP (CRLF, 78-column folding) with 7-bit bodies: set_content then picks
# quoted-printable or base64 for anything that is not short-lined ASCII, so no line passes
# 78/998 octets and the message survives servers without 8BITMIME.
POLICY = email.policy.SMTP.clone(cte_type="7bit")
# For messages whose addresses have non-ASCII local parts (RFC 6532): those go out raw in
# UTF-8 and the message must travel with SMTPUTF8. Bodies stay 7-bit all the same.
POLICY_UTF8 = POLICY.clone(utf8=True)

# Subject and text body are not HTML: escaping them would show "&amp;" to the reader.
MAX_RENDERED = sandbox.MAX_STRING  # characters one part of one message may grow to


_PLAIN_ENV = LimitedSandbox(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701
_HTML_ENV = LimitedSandbox(undefined=jinja2.StrictUndefined, autoescape=True)


class _UrlEncoded(str):
    """A value the template URL-encoded itself (| urlencode): not encoded a second time."""


def _url_finalize(value: Any) -> str:
    # finalize sees every {{ expression }}'s value, never the template's own text: the field
    # values are percent-encoded, the link around them stays as typed.
    if isinstance(value, _UrlEncoded):
        return value
    return urllib.parse.quote(str(value), safe="")


_URL_ENV = LimitedSandbox(  # noqa: S701 - a URL, not HTML; values are percent-encoded
    undefined=jinja2.StrictUndefined, autoescape=False, finalize=_url_finalize
)
_URL_ENV.filters["urlencode"] = lambda value: _UrlEncoded(do_urlencode(value))


def _default(value: Any, default_value: Any = "", boolean: bool = True) -> Any:
    """| default(x): x when the field is missing or empty (a blank cell is as good as none in a
    mail merge; Jinja's own default only covers a missing one unless told boolean=true)."""
    if isinstance(value, str) and not value.strip():
        return default_value
    return do_default(value, default_value, boolean)


for _env in (_PLAIN_ENV, _HTML_ENV, _URL_ENV):
    _env.filters["default"] = _env.filters["d"] = _default

_LABELS = {
    "subject": "subject",
    "html": "HTML body",
    "text": "text body",
    "unsubscribe": "unsubscribe address",
}

# Cc (C0, DEL, C1 incl. U+0085 NEL) plus the Unicode line/paragraph separators: anything a
# parser, a terminal or Python's own email package (CVE-2024-6923) might take as a line end.
# Lone surrogates (from undecodable bytes) cannot be encoded at all.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_CHAR_NAMES = {
    "\n": "a line break (\\n)",
    "\r": "a line break (\\r)",
    "\x00": "a NUL character (\\0)",
    "\t": "a tab (\\t)",
    "\x0b": "a vertical tab (\\x0b)",
    "\x0c": "a form feed (\\x0c)",
    "\x1b": "an escape character (\\x1b)",
    "\x7f": "a delete character (\\x7f)",
    "\x85": "a next-line character (U+0085)",
    "\u2028": "a line separator (U+2028)",
    "\u2029": "a paragraph separator (U+2029)",
}
# Mail programs decode RFC 2047 encoded words in names, so "=?utf-8?q?=0D=0ABcc:...?=" typed
# into a name would arrive as other text (Python's own folder even writes the CRLF out raw).
_ENCODED_WORD = re.compile(r"=\?.*\?=")
# Controls in a body would go out raw under 7bit; quoted-printable writes them as =XX.
_BODY_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNQUOTED_ANGLE = re.compile(r'^(?!".*"$).*[<>]')
_UNDEFINED = re.compile(r"'([^']+)' is undefined")

_INSCRIPTIS = ParserConfig(display_links=True, display_images=True)

_LINE_MAX = 78  # RFC 5322 "SHOULD" for every header line
_EW_LINE_MAX = 76  # RFC 2047: lines holding encoded words
_EW_OVERHEAD = len("=?utf-8?q??=")
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


class Template:
    """A message template compiled once: a subject plus an HTML body, a text body or both."""

    def __init__(self, subject: str, html: str | None = None, text: str | None = None) -> None:
        html = html if html and html.strip() else None
        text = text if text and text.strip() else None
        if html is None and text is None:
            raise TemplateError(
                "the message has no body: give an HTML body, a text body or both", field="body"
            )
        self.subject_source = subject
        self.html_source = html
        self.text_source = text
        self._subject, subject_fields = _compile(_PLAIN_ENV, subject or "", "subject")
        self._html, html_fields = _compile(_HTML_ENV, html, "html") if html else (None, set())
        self._text, text_fields = _compile(_PLAIN_ENV, text, "text") if text else (None, set())
        # range, dict, lipsum... are Jinja globals, not columns the list has to provide.
        self.fields: frozenset[str] = frozenset(
            (subject_fields | html_fields | text_fields) - set(_PLAIN_ENV.globals)
        )
        # The fields printed as they are somewhere (not every use wrapped in | default(...),
        # nor only tested by {% if %}): an empty value there shows as a gap in the message.
        self.bare_fields: frozenset[str] = frozenset().union(*(
            _bare_fields(env, source) for env, source in
            ((_PLAIN_ENV, subject or ""), (_HTML_ENV, html), (_PLAIN_ENV, text)) if source
        )) & self.fields
        # Parts that only print fields ("Hi {{ name }}"): check_all can tell from the values
        # alone that they render, without rendering them for each of 100,000 rows.
        self._plans = {
            "subject": _plain_plan(_PLAIN_ENV, subject or "", header=True),
            "html": _plain_plan(_HTML_ENV, html, header=False) if html else None,
            "text": _plain_plan(_PLAIN_ENV, text, header=False) if text else None,
        }
        # CSS in a <style> block goes into the elements: once here when values only fill in the
        # template (InlinePlan), else per message after rendering. No <style>: nothing is done.
        self.inlines_css = authoring.has_style_block(html)
        self._inline = authoring.inline_plan(html, _HTML_ENV) if html and self.inlines_css else None
        self._html_once = _compile(_HTML_ENV, self._inline.source, "html")[0] if self._inline else None

        self._text_plan: _TextPlan | None | bool = False  # False: not worked out yet

    def __repr__(self) -> str:
        return f"Template(subject={self.subject_source!r}, fields={sorted(self.fields)!r})"

    def plain_text(self, parts: Rendered, fields: Mapping[str, str]) -> str:
        """The text part of one message: the text body, else the HTML body as text.

        An HTML body that only prints fields is converted to text once per template, a marker
        where each field goes; each message then gets that text with its values put in (as
        converting its own HTML would give them back). Other HTML, and values that conversion
        could change (runs of spaces, line breaks, empty ones), are converted per message.
        """
        if parts.text is not None:
            return parts.text
        if self._text_plan is False:
            # The text of the final HTML: the inlined one (a style may hide an element).
            source = self._inline.source if self._inline else None if self.inlines_css else self.html_source
            self._text_plan = _text_plan(source) if self._plans["html"] is not None and source else None
        if isinstance(self._text_plan, _TextPlan):
            text = self._text_plan.fill(fields)
            if text is not None:
                return text
        return html_to_text(parts.html or "")


@dataclass(frozen=True)
class Sender:
    """Who a message is from (or who replies go to): an address and an optional name."""

    address: str
    name: str | None = None


@dataclass(frozen=True)
class Unsubscribe:
    """Where recipients unsubscribe: a mailto: address and/or an https:// link.

    Either may hold {{ fields }} (https://x.example/u?e={{ email }}); their values are
    percent-encoded. Build it with parse_unsubscribe, which checks both.
    """

    mailto: str | None = None
    url: str | None = None

    @property
    def fields(self) -> frozenset[str]:
        """The recipient columns the addresses use."""
        names: set[str] = set()
        for source in (self.url, self.mailto):
            if source:
                names |= _compile_uri(source)[1]
        return frozenset(names - set(_URL_ENV.globals))


@dataclass(frozen=True)
class Rendered:
    """One row's filled-in subject and bodies, before any MIME is built."""

    subject: str
    html: str | None
    text: str | None


def parse_sender(text: str, *, field: str = "from") -> Sender:
    """Parse and validate 'Me <me@example.com>' or 'me@example.com'; SettingsError if invalid."""
    if not isinstance(text, str) or not text.strip():
        raise SettingsError(field, "enter an address, for example Me <me@example.com>")
    bad = _FORBIDDEN.search(text)
    if bad:
        raise SettingsError(
            field, f"contains {_describe(bad.group())}; remove line breaks and control characters"
        )
    match = re.fullmatch(r"\s*(.*?)\s*<([^<>]*)>\s*", text)
    if match and not _UNQUOTED_ANGLE.search(match.group(1)):
        name, address = _unquote(match.group(1)), match.group(2).strip()
    elif "<" in text or ">" in text:
        raise SettingsError(field, f"{text!r} is not an address: the < and > do not match")
    else:
        name, address = "", text.strip()
    if _ENCODED_WORD.search(text):
        raise SettingsError(
            field, "contains an encoded word (=?...?=); type the name as plain text instead"
        )
    try:
        info = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise SettingsError(
            field, f"{address!r} is not a valid email address: {exc}", category="invalid_address"
        ) from exc
    # ascii_email has the IDNA (xn--) form of the domain: what the headers and SMTP need.
    return Sender(address=info.ascii_email or info.normalized, name=name or None)


def parse_unsubscribe(values: Iterable[str]) -> Unsubscribe | None:
    """Check 'mailto:...' and 'https://...' unsubscribe addresses (one of each at most).

    None when no value is given. http:// is refused: one-click unsubscribe (RFC 8058) needs
    https. Raises SettingsError (field 'unsubscribe') saying what is wrong.
    """
    if isinstance(values, str):
        values = [values]
    found: dict[str, str] = {}
    for raw in values:
        if not isinstance(raw, str):
            raise SettingsError("unsubscribe", "give the address as text")
        value = raw.strip()
        if not value:
            continue
        bad = _FORBIDDEN.search(value)
        if bad:
            raise SettingsError(
                "unsubscribe", f"contains {_describe(bad.group())}; remove it"
            )
        scheme, colon, rest = value.partition(":")
        scheme = scheme.lower()
        if scheme == "http":
            raise SettingsError(
                "unsubscribe",
                f"{value!r}: http:// links are refused, one-click unsubscribe (RFC 8058) needs "
                "https://; use the https:// address of the page",
            )
        if not colon or scheme not in ("mailto", "https"):
            raise SettingsError(
                "unsubscribe",
                f"{value!r} is neither a mailto: address nor an https:// link, for example "
                "mailto:unsubscribe@example.com or https://example.com/unsubscribe?id={{ email }}",
            )
        if scheme in found:
            raise SettingsError("unsubscribe", f"give one {scheme}: address, not two")
        value = f"{scheme}:{rest}"
        try:
            tmpl, names = _compile_uri(value)
        except TemplateError as exc:
            raise SettingsError("unsubscribe", exc.message) from exc
        # The link as typed must be valid around its fields: try it with a stand-in value.
        try:
            sample = _bounded_render(tmpl, dict.fromkeys(names, "x"))
        except Exception:  # noqa: BLE001 - depends on real values: checked per recipient
            sample = None
        if sample is not None:
            problem = _uri_problem(sample, scheme)
            if problem:
                raise SettingsError("unsubscribe", f"{value!r} {problem}")
        found[scheme] = value
    if not found:
        return None
    return Unsubscribe(mailto=found.get("mailto"), url=found.get("https"))


def render_parts(template: Template, recipient: Recipient) -> Rendered:
    """Fill in the subject and bodies for one recipient; TemplateError naming line and field."""
    fields = recipient.fields
    with sandbox.budget():  # one time budget for the whole message
        subject = _render(template._subject, "subject", fields, recipient.line)
        html = _render_html(template, fields, recipient.line) if template._html else None
        text = _render(template._text, "text", fields, recipient.line) if template._text else None
    return Rendered(subject, html, text)


def _render_html(template: Template, fields: Mapping[str, str], row: int) -> str:
    """The HTML body of one message, its CSS inlined (once for the template where it can be)."""
    if template._html_once is not None and template._inline is not None and template._inline.fits(fields):
        return _render(template._html_once, "html", fields, row)
    assert template._html is not None
    html = _render(template._html, "html", fields, row)
    if template.inlines_css:
        try:
            html = authoring.inline_css(html)
        except TemplateError as exc:
            raise TemplateError(exc.message, row=row, field="html") from exc
    return html


@functools.lru_cache(maxsize=64)
def html_to_text(html: str) -> str:
    """Readable plain text for an HTML body, links kept as [text](url), scripts/styles dropped."""
    # Cached: a body without fields (or with few values) is converted once, not per recipient.
    return get_text(html, _INSCRIPTIS).strip("\n") + "\n"


def render(
    template: Template,
    recipient: Recipient,
    sender: Sender,
    *,
    reply_to: Sender | str | None = None,
    message_id_domain: str | None = None,
    now: datetime | None = None,
    attachments: Sequence[Attachment] = (),
    unsubscribe: Unsubscribe | None = None,
    smtputf8: bool = False,
    thread: Sequence[str] = (),
) -> EmailMessage:
    """Build one recipient's message; TemplateError/HeaderValueError naming line and field.

    attachments: files added after the text (multipart/mixed), base64, the names RFC 2231
    encoded where not ASCII. unsubscribe: List-Unsubscribe (+ -Post for an https link).
    smtputf8: the server offers SMTPUTF8, so addresses with non-ASCII before the @ may be
    used; such a message has UTF-8 headers (RFC 6532) and must be sent with SMTPUTF8.
    """
    row = recipient.line
    parts = render_parts(template, recipient)
    _check_header(parts.subject, "subject", row, "subject")
    from_addr = _sender_address(sender, row, "from", smtputf8=smtputf8)
    to_addr = _recipient_address(recipient, smtputf8=smtputf8)
    assert to_addr is not None  # build=True always returns one
    reply_addr = None
    if reply_to is not None:
        if isinstance(reply_to, str):
            reply_to = _parse_reply_to(reply_to)
        reply_addr = _sender_address(reply_to, row, "reply_to", smtputf8=smtputf8)
    domain = message_id_domain or from_addr.domain
    _check_header(domain, "Message-ID domain", row, "message_id")
    unsubscribe_uris = _unsubscribe_uris(unsubscribe, recipient.fields, row)
    addresses = [a for a in (from_addr, to_addr, reply_addr) if a is not None]

    utf8 = not all(a.addr_spec.isascii() for a in addresses)
    msg = EmailMessage(policy=POLICY_UTF8 if utf8 else POLICY)
    msg["From"] = _address_header("From", from_addr)
    msg["To"] = _address_header("To", to_addr)
    if reply_addr is not None:
        msg["Reply-To"] = _address_header("Reply-To", reply_addr)
    msg["Subject"] = _subject_header(parts.subject)
    when = now or datetime.now().astimezone()
    msg["Date"] = email.utils.format_datetime(when if when.tzinfo else when.astimezone())
    msg["Message-ID"] = email.utils.make_msgid(domain=domain)
    if thread:
        msg["In-Reply-To"], msg["References"] = _thread_values(thread)
    if unsubscribe_uris:
        msg["List-Unsubscribe"] = _list_unsubscribe_header(unsubscribe_uris)
        if any(uri.startswith("https:") for uri in unsubscribe_uris):
            # RFC 8058 one-click: the receiver POSTs this body to the https link.
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["MIME-Version"] = "1.0"
    text = template.plain_text(parts, recipient.fields)
    msg.set_content(text, subtype="plain", charset="utf-8", cte=_cte(text))
    if parts.html is not None:
        msg.add_alternative(parts.html, subtype="html", charset="utf-8", cte=_cte(parts.html))
    for attachment in attachments:
        if not isinstance(attachment, Attachment):
            raise TypeError(f"attachments must be Attachment objects, not {type(attachment).__name__}")
        # Attachment checked the name (no controls, no encoded words) and the type when made.
        msg.add_attachment(
            attachment.data,
            maintype=attachment.maintype,
            subtype=attachment.subtype,
            filename=attachment.filename,
            cte="base64",
        )
    for part in msg.walk():
        if part is not msg:
            # EmailMessage.set_content stamps MIME-Version on sub-parts too; it belongs on top only.
            del part["MIME-Version"]
    return msg


class Skeleton:
    """The MIME structure of a campaign's messages, built once; build() fills in one recipient.

    What is the same for everyone (From, Reply-To, the part headers, the shared attachments
    encoded to base64) is made into bytes here; per recipient only the subject, To, bodies,
    Date, Message-ID, unsubscribe links and the recipient's own attachments are rendered and
    encoded. The bytes mean exactly what render() builds with the email package (the same
    header folding, checks and transfer encodings; tests compare the two), at a fraction of
    the cost. Raises what render() raises, when the sender or Reply-To cannot be used.
    """

    def __init__(
        self,
        template: Template,
        sender: Sender,
        *,
        reply_to: Sender | str | None = None,
        attachments: Sequence[Attachment] = (),
        unsubscribe: Unsubscribe | None = None,
        smtputf8: bool = False,
        message_id_domain: str | None = None,
    ) -> None:
        self.template = template
        self.unsubscribe = unsubscribe
        self.smtputf8 = smtputf8
        self._sender, self._reply_to = sender, reply_to
        from_addr = _sender_address(sender, None, "from", smtputf8=smtputf8)
        if isinstance(reply_to, str):
            reply_to = _parse_reply_to(reply_to)
        reply_addr = _sender_address(reply_to, None, "reply_to", smtputf8=smtputf8) if reply_to else None
        self.domain = message_id_domain or from_addr.domain
        _check_header(self.domain, "Message-ID domain", None, "message_id")
        self._ascii_senders = all(a.addr_spec.isascii() for a in (from_addr, reply_addr) if a is not None)
        self._from = _header_bytes(_address_header("From", from_addr))
        self._reply = _header_bytes(_address_header("Reply-To", reply_addr)) if reply_addr else b""
        self._shared = [_attachment_part(a) for a in attachments]
        self._date: tuple[int, bytes] = (-1, b"")

    def build(self, recipient: Recipient, attachments: Sequence[Attachment] = (), *,
              now: datetime | None = None, thread: Sequence[str] = ()) -> tuple[bytes, str]:
        """One recipient's message as bytes, and its Message-ID; errors name line and field.

        attachments: the recipient's own files, after the shared ones. now: the Date.
        thread: the Message-IDs of the earlier messages of a follow-up's thread, oldest first
        (In-Reply-To the last, References all).
        """
        try:
            return self._build(recipient, attachments, now, thread)
        except (TemplateError, HeaderValueError):
            raise
        except Exception:  # noqa: BLE001 - the email package says it best: let it build this one
            log.exception("line %s: building the message the short way failed", recipient.line)
            msg = render(self.template, recipient, self._sender, reply_to=self._reply_to,
                         attachments=[*(a for a, _ in self._shared), *attachments],
                         unsubscribe=self.unsubscribe, smtputf8=self.smtputf8,
                         message_id_domain=self.domain, now=now, thread=thread)
            return msg.as_bytes(), str(msg["Message-ID"])

    def _build(self, recipient: Recipient, attachments: Sequence[Attachment],
               now: datetime | None, thread: Sequence[str] = ()) -> tuple[bytes, str]:
        row, fields = recipient.line, recipient.fields
        parts = render_parts(self.template, recipient)
        _check_header(parts.subject, "subject", row, "subject")
        name = fields.get("name") or ""
        addr = recipient.email
        _check_phrase(name, "recipient's name", row, "name")
        _check_phrase(addr, "recipient's address", row, "to")
        name, addr = name.strip(), addr.strip()
        if _PLAIN_ADDRESS.fullmatch(addr):
            to_lines = _fold_address("To", name, addr)  # what Address() would give back
        else:
            to_addr = _recipient_address(recipient, smtputf8=self.smtputf8)
            assert to_addr is not None
            to_lines = _fold_address("To", to_addr.display_name, to_addr.addr_spec)
        uris = _unsubscribe_uris(self.unsubscribe, fields, row)
        message_id = email.utils.make_msgid(domain=self.domain)
        head = [self._from, _lines_bytes(to_lines), self._reply,
                _lines_bytes(_fold_unstructured("Subject", parts.subject)),
                self._date_header(now), b"Message-ID: " + message_id.encode("ascii") + b"\r\n"]
        if thread:
            replying, references = _thread_values(thread)
            head += [_lines_bytes(_fold_unstructured("In-Reply-To", replying)),
                     _lines_bytes(_fold_unstructured("References", references))]
        if uris:
            head.append(_header_bytes(_list_unsubscribe_header(uris)))
            if any(uri.startswith("https:") for uri in uris):
                head.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
        head.append(b"MIME-Version: 1.0\r\n")
        text = self.template.plain_text(parts, fields)
        body = [_text_part("plain", text)]
        if parts.html is not None:
            body.append(_text_part("html", parts.html))
        files = [p for _, p in self._shared] + [_attachment_part(a)[1] for a in attachments]
        if len(body) == 1 and not files:
            return b"".join(head) + body[0], message_id
        if len(body) > 1 and files:
            body = [_multipart("alternative", body)]
        top = _multipart("mixed" if files else "alternative", body + files)
        return b"".join(head) + top, message_id

    def _date_header(self, now: datetime | None) -> bytes:
        if now is not None:
            when = now if now.tzinfo else now.astimezone()
            return f"Date: {email.utils.format_datetime(when)}\r\n".encode("ascii")
        # The same Date for every message of a second: formatted once a second, not per message.
        second = int(time.time())
        if self._date[0] != second:
            when = datetime.fromtimestamp(second).astimezone()
            self._date = (second, f"Date: {email.utils.format_datetime(when)}\r\n".encode("ascii"))
        return self._date[1]


def _lines_bytes(lines: Sequence[str]) -> bytes:
    # Our folded lines are ASCII except a UTF-8 address (RFC 6532, sent with SMTPUTF8).
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _header_bytes(header: _FoldedHeader) -> bytes:
    return _lines_bytes(header.lines)


_LINE_BREAKS = re.compile(r"\r\n|\r|\n")
_BOUNDARY_DIGITS = len(repr(sys.maxsize - 1))


def _crlf(payload: str) -> bytes:
    """A payload's lines as the generator writes them: each line break as CRLF."""
    lines = _LINE_BREAKS.split(payload)
    return "".join(line + "\r\n" for line in lines[:-1]).encode("ascii") + lines[-1].encode("ascii")


def _encode_text(text: str, cte: str | None) -> tuple[str, str]:
    """(transfer encoding, payload): the choice email.contentmanager makes under POLICY."""
    lines = text.encode("utf-8").splitlines()
    limit = POLICY.max_line_length
    if cte is None:
        if max((len(x) for x in lines), default=0) <= limit:
            normal = b"\n".join(lines) + b"\n"
            if normal.isascii():
                return "7bit", normal.decode("ascii")
        sniff = b"\r\n".join(lines[:10]) + b"\r\n"
        sniff_qp = quoprimime.body_encode(sniff.decode("latin-1"), limit)
        if len(sniff_qp) > len(binascii.b2a_base64(sniff)):
            cte = "base64"
        else:
            cte = "quoted-printable"
            if len(lines) <= 10:
                return cte, sniff_qp
    if cte == "quoted-printable":
        return cte, quoprimime.body_encode((b"\n".join(lines) + b"\n").decode("latin-1"), limit)
    data = b"\r\n".join(lines) + b"\r\n"
    step = limit // 4 * 3
    return "base64", "".join(binascii.b2a_base64(data[i:i + step]).decode("ascii")
                             for i in range(0, len(data), step))


def _text_part(subtype: str, text: str) -> bytes:
    cte, payload = _encode_text(text, _cte(text))
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
            .encode("ascii") + _crlf(payload))


def _attachment_part(attachment: Attachment) -> tuple[Attachment, bytes]:
    if not isinstance(attachment, Attachment):
        raise TypeError(f"attachments must be Attachment objects, not {type(attachment).__name__}")
    # The email package encodes the file and its name (RFC 2231) as render() does; once per file.
    part = MIMEPart(policy=POLICY)
    part.set_content(attachment.data, maintype=attachment.maintype, subtype=attachment.subtype,
                     filename=attachment.filename, cte="base64")
    if "content-disposition" not in part:
        part["Content-Disposition"] = "attachment"
    return attachment, part.as_bytes(policy=POLICY)


def _multipart(subtype: str, parts: list[bytes]) -> bytes:
    """A multipart/* part: headers and the parts between boundaries, as the generator lays it out."""
    while True:
        boundary = "=" * 15 + f"%0{_BOUNDARY_DIGITS}d" % random.randrange(sys.maxsize) + "=="  # noqa: S311
        marker = b"--" + boundary.encode("ascii")
        if not any(marker in part for part in parts):
            break
    header = f'Content-Type: multipart/{subtype}; boundary="{boundary}"'
    if len(header) > _LINE_MAX:
        header = f'Content-Type: multipart/{subtype};\r\n boundary="{boundary}"'
    out = [header.encode("ascii"), b"\r\n\r\n", marker, b"\r\n", parts[0]]
    for part in parts[1:]:
        out += [b"\r\n", marker, b"\r\n", part]
    out += [b"\r\n", marker, b"--\r\n"]
    return b"".join(out)


def check_all(
    template: Template,
    recipients: Iterable[Recipient],
    sender: Sender,
    *,
    reply_to: Sender | str | None = None,
    unsubscribe: Unsubscribe | None = None,
    smtputf8: bool | None = False,
) -> list[TemplateError]:
    """Render every row without building MIME; return every problem, each naming line and field.

    smtputf8: whether the server offers SMTPUTF8; None when not known yet (addresses with
    non-ASCII before the @ are then accepted here and decided per recipient when sending).
    """
    problems: list[TemplateError] = []
    # The sender is the same for every row: report it once, not once per row.
    for who, field in ((sender, "from"), (reply_to, "reply_to")):
        if who is None:
            continue
        try:
            _sender_address(
                parse_sender(who, field=field) if isinstance(who, str) else who,
                None,
                field,
                smtputf8=smtputf8,
            )
        except SettingsError as exc:
            problems.append(TemplateError(exc.message, field=field, category=exc.category))
        except TemplateError as exc:
            problems.append(exc)
    parts = [(t, p, template._plans[p]) for t, p in ((template._html, "html"), (template._text, "text")) if t]
    subject_plan = template._plans["subject"]
    # A part that ran out of time for one row is not rendered again for the next rows:
    # 100,000 rows of 2 s each would be days. The first row's error says what went wrong.
    timed_out: set[str] = set()
    for recipient in recipients:
        row, fields = recipient.line, recipient.fields
        if "subject" not in timed_out and (subject_plan is None or not _renders(subject_plan, fields)):
            try:
                subject = _render(template._subject, "subject", fields, row)
                _check_header(subject, "subject", row, "subject")
            except TemplateError as exc:
                problems.append(exc)
                if isinstance(exc.__cause__, sandbox.TimeBudgetExceeded):
                    timed_out.add("subject")
        for tmpl, part, plan in parts:
            if part in timed_out or (plan is not None and _renders(plan, fields)):
                continue
            try:
                _render(tmpl, part, fields, row)
            except TemplateError as exc:
                problems.append(exc)
                if isinstance(exc.__cause__, sandbox.TimeBudgetExceeded):
                    timed_out.add(part)
        try:
            _recipient_address(recipient, build=False, smtputf8=smtputf8)
        except TemplateError as exc:
            problems.append(exc)
        try:
            _unsubscribe_uris(unsubscribe, fields, row)
        except TemplateError as exc:
            problems.append(exc)
    return problems


# --- templates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _PlainPlan:
    """A template part that only prints fields: its names (once per use), literal length, and
    whether it is a header (its values must hold no line break or control character)."""

    names: tuple[str, ...]
    literal: int
    header: bool


_DEFAULTS = ("default", "d")


def _bare_fields(env: SandboxedEnvironment, source: str) -> set[str]:
    """Fields whose value is used as it is at least once: a use inside | default(...) or inside
    an {% if %} that tests the same field (or the test itself) does not count."""
    found: set[str] = set()

    def walk(node: jinja2.nodes.Node, guarded: frozenset[str]) -> None:
        if isinstance(node, jinja2.nodes.Filter) and node.name in _DEFAULTS:
            for child in node.iter_child_nodes(exclude=("node",)):
                walk(child, guarded)
            return  # what default() wraps is never printed empty
        if isinstance(node, jinja2.nodes.If | jinja2.nodes.CondExpr):
            tested = frozenset(n.name for n in (node.test, *node.test.find_all(jinja2.nodes.Name))
                               if isinstance(n, jinja2.nodes.Name))
            for child in node.iter_child_nodes(exclude=("test",)):
                walk(child, guarded | tested)
            return
        if isinstance(node, jinja2.nodes.Name) and node.ctx == "load" and node.name not in guarded:
            found.add(node.name)
        for child in node.iter_child_nodes():
            walk(child, guarded)

    try:
        walk(env.parse(source), frozenset())
    except jinja2.TemplateSyntaxError:
        return set()
    return found


def _plain_plan(env: SandboxedEnvironment, source: str, *, header: bool) -> _PlainPlan | None:
    """The plan of a part made of text and {{ field }} only; None for anything else (filters,
    tests, loops, ...), which check_all renders row by row."""
    try:
        ast = env.parse(source)
    except jinja2.TemplateSyntaxError:
        return None
    names: list[str] = []
    literal = 0
    for node in ast.body:
        if not isinstance(node, jinja2.nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, jinja2.nodes.TemplateData):
                if (_FORBIDDEN if header else _SURROGATE).search(child.data):
                    return None
                literal += len(child.data)
            elif isinstance(child, jinja2.nodes.Name) and child.ctx == "load":
                names.append(child.name)
            else:
                return None
    return _PlainPlan(tuple(names), literal, header)


_MARKER = "QzxMark{}KramXzq"  # letters and digits: HTML-to-text conversion leaves them as they are
_MARKERS = re.compile(r"QzxMark(\d+)KramXzq")
_ENTITY = re.compile(r"&(#\d+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);?")
# Tables are laid out to the width of their cells' text and <pre> keeps every space: there a
# value's own length shapes the text around it, so those bodies are converted per message.
_LAYOUT_TAGS = re.compile(r"<\s*(table|pre|textarea)\b", re.I)


class _TextPlan:
    """An HTML body's text converted once: literal text between the fields' places."""

    __slots__ = ("names", "pieces")

    def __init__(self, pieces: list[str], names: list[str]) -> None:
        self.pieces, self.names = pieces, names

    def fill(self, fields: Mapping[str, str]) -> str | None:
        """This recipient's text; None when a value could come out of conversion changed."""
        out = [self.pieces[0]]
        for name, piece in zip(self.names, self.pieces[1:], strict=True):
            value = fields.get(name)
            # Conversion collapses runs of white space, trims them at line ends and drops an
            # empty paragraph: only values it gives back as they are fill the text made once.
            # It also reads a character reference ("&amp;") in the text as the character.
            if not isinstance(value, str) or not value or " ".join(value.split()) != value \
                    or not value.isprintable() or ("&" in value and _ENTITY.search(value)):
                return None
            out += (value, piece)
        return "".join(out)


def _text_plan(html: str | None) -> _TextPlan | None:
    """The text of an HTML body of text and {{ field }} only, with markers for the fields;
    None when that cannot stand for each message's own conversion."""
    if not html or _LAYOUT_TAGS.search(html) or _MARKERS.search(html):
        return None
    try:
        ast = _HTML_ENV.parse(html)
    except jinja2.TemplateSyntaxError:
        return None
    marked: list[str] = []
    order: dict[str, int] = {}
    uses: Counter[str] = Counter()
    for node in ast.body:
        if not isinstance(node, jinja2.nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, jinja2.nodes.TemplateData):
                marked.append(child.data)
            elif isinstance(child, jinja2.nodes.Name) and child.ctx == "load":
                marked.append(_MARKER.format(order.setdefault(child.name, len(order))))
                uses[child.name] += 1
            else:
                return None
    try:
        text = get_text("".join(marked), _INSCRIPTIS).strip("\n") + "\n"
    except Exception:  # noqa: BLE001 - then each message is converted, as before
        return None
    names = {i: name for name, i in order.items()}
    parts = _MARKERS.split(text)
    pieces, found = parts[0::2], [names.get(int(i), "") for i in parts[1::2]]
    # Each use must show once as it was written: one hidden (a style, a comment) or doubled
    # (an image's alt text and its link) could change the text in ways values would show.
    if Counter(found) != uses:
        return None
    return _TextPlan(pieces, found)


def _renders(plan: _PlainPlan, fields: Mapping[str, str]) -> bool:
    """True when the part surely renders for these values (and, for a header, passes the header
    check); False means only "render it to find out", which gives the exact error."""
    size = plan.literal
    bad = _FORBIDDEN if plan.header else _SURROGATE
    for name in plan.names:
        value = fields.get(name)
        if not isinstance(value, str) or bad.search(value):
            return False
        size += 6 * len(value)  # HTML escaping makes a character at most 6 ("&#39;" and the like)
    return size <= MAX_RENDERED


def _compile(env: SandboxedEnvironment, source: str, part: str) -> tuple[jinja2.Template, set[str]]:
    try:
        ast = env.parse(source)
        return env.from_string(ast), jinja2.meta.find_undeclared_variables(ast)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"the {_LABELS[part]} template has an error on its line {exc.lineno}: {exc.message}",
            field=part,
        ) from exc


def _render(tmpl: jinja2.Template, part: str, fields: Mapping[str, str], row: int) -> str:
    try:
        out = _bounded_render(tmpl, fields)
    except jinja2.UndefinedError as exc:
        match = _UNDEFINED.fullmatch(str(exc))
        if match and match.group(1) not in fields:
            name = match.group(1)
            raise TemplateError(
                f"{_LABELS[part]}: field '{name}' is not a column of the recipient list "
                f"(columns: {_columns(fields)}); check the spelling, or give it a default: "
                f"{{{{ {name} | default('') }}}}",
                row=row,
                field=name,
            ) from exc
        raise TemplateError(
            f"the {_LABELS[part]} could not be filled in: {exc}", row=row, field=part
        ) from exc
    except sandbox.LimitExceeded as exc:
        raise TemplateError(
            f"the {_LABELS[part]} {exc}",
            row=row,
            field=part,
            fix=(
                f"Check the {_LABELS[part]} for a very large number (a width, a repeat count, "
                "an exponent) or a loop that runs too many times; templates from others may "
                "be built to exhaust the computer.",
            ),
        ) from exc
    except SecurityError as exc:
        raise TemplateError(
            f"the {_LABELS[part]} uses something templates are not allowed to do: {exc}",
            row=row,
            field=part,
        ) from exc
    except Exception as exc:  # any template runtime failure is the template's, not a crash
        raise TemplateError(
            f"the {_LABELS[part]} could not be filled in: {type(exc).__name__}: {exc}",
            row=row,
            field=part,
        ) from exc

    bad = None if out.isascii() else _SURROGATE.search(out)  # isascii: a flag of the string, no scan
    if bad:
        # Text decoded with errors="surrogateescape" cannot be written as UTF-8.
        raise TemplateError(
            f"the {_LABELS[part]} contains {_describe(bad.group())} at character {bad.start() + 1}",
            row=row,
            field=part,
        )
    return out


def _bounded_render(tmpl: jinja2.Template, fields: Mapping[str, str]) -> str:
    # Render piece by piece so a loop cannot build gigabytes before anyone notices, within
    # the time budget (shared with the message's other parts when render_parts set one).
    pieces: list[str] = []
    size = 0
    with sandbox.budget():
        for piece in tmpl.generate(fields):
            size += len(piece)
            if size > MAX_RENDERED:
                raise sandbox.LimitExceeded(
                    f"would be longer than {MAX_RENDERED:,} characters, which is too large: the "
                    f"limit is {MAX_RENDERED:,} characters"
                )
            pieces.append(piece)
    return "".join(pieces)


def _columns(fields: Mapping[str, str]) -> str:
    names = list(fields)
    if not names:
        return "none"
    more = f", ... ({len(names)} in all)" if len(names) > 20 else ""
    return ", ".join(names[:20]) + more


# --- headers -----------------------------------------------------------------------------


def _describe(ch: str) -> str:
    if "\ud800" <= ch <= "\udfff":
        return f"an undecodable character (U+{ord(ch):04X})"
    return _CHAR_NAMES.get(ch) or f"a control character (U+{ord(ch):04X})"


def _check_header(value: str, what: str, row: int | None, field: str) -> None:
    bad = _FORBIDDEN.search(value)
    if bad:
        raise HeaderValueError(
            f"the {what} contains {_describe(bad.group())} at character {bad.start() + 1}; "
            "line breaks and control characters are not allowed in email headers",
            row=row,
            field=field,
        )


def _check_phrase(value: str, what: str, row: int | None, field: str) -> None:
    _check_header(value, what, row, field)
    if _ENCODED_WORD.search(value):
        raise HeaderValueError(
            f"the {what} {value!r} contains an encoded word (=?...?=), which mail programs "
            "would decode into different text; write the name as plain text",
            row=row,
            field=field,
        )


_WHAT = {
    "to": ("recipient's name", "recipient's address", "name"),
    "from": ("sender name", "sender address", "from"),
    "reply_to": ("Reply-To name", "Reply-To address", "reply_to"),
}
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ATOM_PHRASE = re.compile(rf"{_ATEXT}(?: {_ATEXT})*")
# A plain dot-atom address, which Address() always accepts: check_all skips building one.
_PLAIN_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def _address(
    name: str,
    addr: str,
    row: int | None,
    field: str,
    *,
    build: bool = True,
    smtputf8: bool | None = False,
) -> Address | None:
    """Check a display name and an address; return the headerregistry Address for them.

    smtputf8: True/None allow non-ASCII before the @ (None: not known yet, only checking).
    """
    name_what, addr_what, name_field = _WHAT[field]
    _check_phrase(name, name_what, row, name_field)
    _check_phrase(addr, addr_what, row, field)
    # Checked before stripping: a trailing "\n" is refused, not quietly dropped.
    name, addr = name.strip(), addr.strip()
    if not addr.isascii():
        # An internationalised domain goes out in its xn-- form; a non-ASCII local part
        # needs SMTPUTF8 and UTF-8 headers (RFC 6531/6532).
        try:
            info = validate_email(addr, check_deliverability=False, allow_smtputf8=True)
        except EmailNotValidError as exc:
            raise TemplateError(
                f"the {addr_what} {addr!r} cannot be used: {exc}",
                row=row,
                field=field,
                category="invalid_address",
            ) from exc
        if info.ascii_email is None:
            if smtputf8 is False:
                raise TemplateError(
                    f"the {addr_what} {addr!r} has non-ASCII characters before the @; the "
                    "server does not offer SMTPUTF8, so it cannot be sent to",
                    row=row,
                    field=field,
                    category="invalid_address",
                )
            if not build:
                return None
            # Address(addr_spec=...) refuses non-ASCII local parts: give the parts instead.
            # The domain goes in its xn-- form, which every server can route.
            return Address(display_name=name, username=info.local_part, domain=info.ascii_domain)
        addr = info.ascii_email
    if not build and _PLAIN_ADDRESS.fullmatch(addr):
        return None
    local, at, domain = addr.rpartition("@")
    try:
        if not (local and at and domain):
            raise ValueError("it needs a name, an @ and a domain")
        return Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError, email.errors.HeaderParseError) as exc:
        raise TemplateError(
            f"the {addr_what} {addr!r} is not a valid email address: {exc}",
            row=row,
            field=field,
            category="invalid_address",
        ) from exc


def _sender_address(
    sender: Sender, row: int | None, field: str, *, smtputf8: bool | None = False
) -> Address:
    addr = _address(sender.name or "", sender.address, row, field, smtputf8=smtputf8)
    assert addr is not None  # build=True always returns one
    return addr


def envelope_recipient(recipient: Recipient, *, smtputf8: bool = False) -> str:
    """The address for RCPT TO: the domain in its IDNA (xn--) form.

    With smtputf8 (the server offers SMTPUTF8) a non-ASCII local part is kept in UTF-8;
    without it such an address raises TemplateError (invalid_address) naming the line.
    """
    if recipient.email.isascii():
        return recipient.email
    addr = _recipient_address(recipient, smtputf8=smtputf8)
    assert addr is not None
    return addr.addr_spec


def _recipient_address(
    recipient: Recipient, *, build: bool = True, smtputf8: bool | None = False
) -> Address | None:
    name = recipient.fields.get("name") or ""
    return _address(name, recipient.email, recipient.line, "to", build=build, smtputf8=smtputf8)


@functools.lru_cache(maxsize=32)
def _parse_reply_to(text: str) -> Sender:
    return parse_sender(text, field="reply_to")


def _unquote(name: str) -> str:
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return re.sub(r"\\(.)", r"\1", name[1:-1])
    return name


# --- List-Unsubscribe ---------------------------------------------------------------------

MAX_URI = 900  # characters; with "List-Unsubscribe: <...>," a line stays under 998 octets
# RFC 3986's characters: no space, no <>, no quotes, no braces, nothing outside ASCII.
_URI_CHAR = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")


@functools.lru_cache(maxsize=32)
def _compile_uri(source: str) -> tuple[jinja2.Template, frozenset[str]]:
    tmpl, names = _compile(_URL_ENV, source, "unsubscribe")
    return tmpl, frozenset(names)


def _uri_problem(uri: str, scheme: str) -> str | None:
    """Why uri is not a usable mailto:/https: unsubscribe address, or None when it is."""
    if len(uri) > MAX_URI:
        return f"is {len(uri):,} characters long; at most {MAX_URI} fit in the header"
    for ch in uri:
        if not _URI_CHAR.fullmatch(ch):
            if ch == " ":
                what = "a space (write it as %20)"
            elif ch.isascii() and ch.isprintable():
                what = f"the character {ch!r}, which is not allowed in a link"
            elif ch.isprintable():
                what = f"the character {ch!r}; write it percent-encoded (UTF-8, e.g. é as %C3%A9)"
            else:
                what = _describe(ch)
            return f"contains {what}"
    if _BAD_PERCENT.search(uri):
        return "contains a % that does not start a %XX escape"
    if scheme == "mailto":
        if not uri.lower().startswith("mailto:"):
            return "does not start with mailto:"
        address, _, _query = uri[len("mailto:"):].partition("?")
        address = urllib.parse.unquote(address)
        if not address:
            return "has no address after mailto:"
        if "," in address:
            return "names several addresses; give one"
        try:
            validate_email(address, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError as exc:
            return f"does not hold a valid email address ({address!r}: {exc})"
        return None
    try:
        parts = urllib.parse.urlsplit(uri)  # raises on a bad [IPv6] host
    except ValueError as exc:
        return f"is not a valid link ({exc})"
    if parts.scheme.lower() != "https":
        return "is not an https:// link"
    if "@" in parts.netloc:
        return "contains a user name or password before the host; refused"
    if not parts.hostname or not (
        _HOST.fullmatch(parts.hostname) or parts.netloc.startswith("[")
    ):
        return "has no valid host name after https://"
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return "has an invalid port number"
    return None


def _unsubscribe_uris(
    unsubscribe: Unsubscribe | None, fields: Mapping[str, str], row: int
) -> list[str]:
    """The https link then the mailto address, filled in for one row and checked again."""
    if unsubscribe is None:
        return []
    uris = []
    for source, scheme in ((unsubscribe.url, "https"), (unsubscribe.mailto, "mailto")):
        if not source:
            continue
        tmpl, _ = _compile_uri(source)
        uri = _render(tmpl, "unsubscribe", fields, row)
        problem = _uri_problem(uri, scheme)
        if problem:
            shown = uri if len(uri) <= 200 else uri[:200] + "..."
            raise TemplateError(
                f"the unsubscribe address for this recipient, {shown!r}, {problem}",
                row=row,
                field="unsubscribe",
            )
        uris.append(uri)
    return uris


def _list_unsubscribe_header(uris: list[str]) -> _FoldedHeader:
    # Folded only between the <...> entries, never inside a link: not every reader drops
    # whitespace inside the brackets as RFC 2369 asks. MAX_URI keeps a line under 998.
    value = ", ".join(f"<{uri}>" for uri in uris)
    tokens = [f"<{uri}>," for uri in uris[:-1]] + [f"<{uris[-1]}>"]
    return _FoldedHeader("List-Unsubscribe", value, _lay_out("List-Unsubscribe: ", tokens, _LINE_MAX))


class _FoldedHeader(str):
    """A header value we folded ourselves: str() is the value, fold() our lines verbatim."""

    # EmailPolicy.header_store_parse keeps any value whose .name matches as-is, and _fold
    # calls its .fold(policy=...): documented hooks for a header object of our own.
    def __new__(cls, name: str, value: str, lines: list[str]) -> _FoldedHeader:
        self = super().__new__(cls, value)
        self.name = name
        self.lines = tuple(lines)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, str(self), list(self.lines)), self.__dict__)

    def fold(self, *, policy: email.policy.Policy) -> str:
        return policy.linesep.join(self.lines) + policy.linesep


def _subject_header(subject: str) -> _FoldedHeader:
    return _FoldedHeader("Subject", subject, _fold_unstructured("Subject", subject))


def _address_header(name: str, address: Address) -> _FoldedHeader:
    # Python 3.11 folds a long quoted display name without its quotes: a name such as
    # "x...x, Sales: evil@example" would turn into a group or extra addresses. Fold here.
    header = _FoldedHeader(
        name, str(address), _fold_address(name, address.display_name, address.addr_spec)
    )
    header.addresses = (address,)  # what callers of msg["To"].addresses expect
    return header


_MESSAGE_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+>")


def _thread_values(thread: Sequence[str]) -> tuple[str, str]:
    """In-Reply-To and References of a reply to the last of these Message-IDs (oldest first)."""
    ids = [m.strip() for m in thread]
    for m in ids:
        if not _MESSAGE_ID.fullmatch(m):
            raise HeaderValueError(f"{m!r} is not a Message-ID", field="thread")
    return ids[-1], " ".join(ids)


def _fold_unstructured(name: str, value: str) -> list[str]:
    """Lines (without CRLF) for 'Name: value' that unfold and decode back to value exactly."""
    # Python 3.11's folder loses or adds spaces between encoded words ("Köln,Düsseldorf"),
    # and sends "=?...?=" typed by the user raw, to be decoded by every reader: fold here.
    prefix = f"{name}: "
    if value.isascii() and "=?" not in value:
        lines = _fold_ascii(prefix, value)
        if lines is not None:
            return lines
    # Every character, spaces included, sits inside an encoded word, and decoders drop the
    # whitespace between adjacent encoded words: the folds add nothing.
    return _lay_out(prefix, _encoded_words(value, _EW_LINE_MAX - len(prefix)), _EW_LINE_MAX)


def _fold_ascii(prefix: str, value: str) -> list[str] | None:
    if len(prefix) + len(value) <= _LINE_MAX:
        return [prefix + value]
    # Fold only before the first space of a run and only where text follows, so no line is
    # blank and deleting each CRLF gives the value back.
    end = len(value.rstrip(" "))
    cuts = [i for i in range(1, end) if value[i] == " " and value[i - 1] != " "]
    lines: list[str] = []
    start, room = 0, _LINE_MAX - len(prefix)
    while len(value) - start > room:
        fits = [c for c in cuts if start < c <= start + room]
        if not fits:
            return None  # a word too long for one line: encoded words can split it
        lines.append(value[start : fits[-1]])
        start, room = fits[-1], _LINE_MAX
    lines.append(value[start:])
    lines[0] = prefix + lines[0]
    return lines


def _fold_address(name: str, display: str, addr_spec: str) -> list[str]:
    """Lines for 'Name: display <addr>': atoms as they are, else quoted, else encoded words."""
    prefix = f"{name}: "
    if not display:
        return [prefix + addr_spec]
    angle = f"<{addr_spec}>"
    if display.isascii():
        if _ATOM_PHRASE.fullmatch(display):
            tokens = display.split(" ")
        else:
            tokens = ['"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"']
        if len(prefix) + max(len(t) for t in tokens) <= _LINE_MAX:
            return _lay_out(prefix, [*tokens, angle], _LINE_MAX)
    words = _encoded_words(display, _EW_LINE_MAX - len(prefix))
    return _lay_out(prefix, [*words, angle], _EW_LINE_MAX)


def _lay_out(prefix: str, tokens: list[str], limit: int) -> list[str]:
    """Tokens joined by single spaces, each space turned into a fold where a line is full."""
    lines = [prefix + tokens[0]]
    for token in tokens[1:]:
        if len(lines[-1]) + 1 + len(token) <= limit:
            lines[-1] += " " + token
        else:
            lines.append(" " + token)
    return lines


def _encoded_words(value: str, first_room: int) -> list[str]:
    """value as RFC 2047 UTF-8 encoded words: the first fits first_room, the rest a line each."""
    chars = [ch.encode("utf-8") for ch in value]
    q_cost = [sum(1 if b in _Q_SAFE or b == 0x20 else 3 for b in ch) for ch in chars]
    total = sum(len(ch) for ch in chars)
    use_q = sum(q_cost) <= -(-total // 3) * 4  # whichever is shorter, as Python does
    words: list[str] = []
    chunk: list[bytes] = []
    q_len = n_bytes = 0
    room = first_room - _EW_OVERHEAD
    for ch, cost in zip(chars, q_cost, strict=True):
        new_q, new_n = q_len + cost, n_bytes + len(ch)
        if chunk and (new_q if use_q else -(-new_n // 3) * 4) > room:
            words.append(_encoded_word(b"".join(chunk), use_q))
            chunk, room = [], _EW_LINE_MAX - 1 - _EW_OVERHEAD
            new_q, new_n = cost, len(ch)
        chunk.append(ch)
        q_len, n_bytes = new_q, new_n
    if chunk or not words:
        words.append(_encoded_word(b"".join(chunk), use_q))
    return words


def _encoded_word(data: bytes, use_q: bool) -> str:
    # Q keeps only letters, digits and !*+-/ literal: the set RFC 2047 allows in a phrase
    # (display name) as well as in unstructured text.
    if use_q:
        text = "".join("_" if b == 0x20 else chr(b) if b in _Q_SAFE else f"={b:02X}" for b in data)
        return f"=?utf-8?q?{text}?="
    return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="


def _cte(body: str) -> str | None:
    return "quoted-printable" if _BODY_CONTROL.search(body) else None
