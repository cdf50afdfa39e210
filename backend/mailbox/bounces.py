"""What a message in the user's mailbox says about a campaign: a bounce, a reply, an auto-reply.

``classify(raw)`` reads one message (bytes) and returns a ``Notice``:

- ``bounce``: a delivery status notification. The standard form (RFC 3464: a
  ``message/delivery-status`` part, per recipient its Action, Status, Final-Recipient,
  Original-Recipient and Diagnostic-Code) is read first with the standard library. Only when it
  finds nothing, and the message looks like a notice from a mail system (MAILER-DAEMON,
  postmaster, "Undeliverable", "failure notice"...), flufl.bounce's detectors (old Exchange,
  qmail, Yahoo, Sendmail, Exim, Postfix text notices) name the addresses. Each failed address
  is ``permanent`` (5.x.x), ``transient`` (4.x.x, given up) or ``delayed`` (still trying).
- ``auto_reply``: RFC 3834 (Auto-Submitted other than "no"), X-Autoreply, X-Autorespond,
  Precedence bulk/junk/list, an empty Return-Path, or an out-of-office subject (English,
  German, French, Spanish, Italian, Dutch, Portuguese, Scandinavian).
- ``reply``: a person's message answering one of ours (In-Reply-To / References), or one whose
  subject says it is an answer (Re:, AW:, RE:, Sv:, ...). Matching to the campaign decides.
- ``unrelated``: anything else.

The original message's Message-ID comes from the attached ``message/rfc822`` or
``text/rfc822-headers`` part, else from a copy of its headers quoted in the text; a reply's
from In-Reply-To and References. A reply's text is kept to its first 200 characters.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser

MAX_EXCERPT = 200
KINDS = ("bounce", "reply", "auto_reply", "unrelated")
SEVERITIES = ("permanent", "transient", "delayed")

_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_SMTP_CODE = re.compile(r"(?<!\d)([245]\d\d)(?:[ -]|$)")
_ID = re.compile(r"<[^<>\s@]+@[^<>\s]+>")
_INLINE_ID = re.compile(r"^[ \t>]*Message-ID:[ \t]*(<[^<>\s]+>)", re.I | re.M)
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_COPY_BEGINS = re.compile(r"^\s*(-{2,}|original message|received:|return-path:)", re.I)

_DAEMONS = re.compile(r"^(mailer-daemon|mail-daemon|maildaemon|postmaster|mailer|mail\.daemon|"
                      r"mdaemon|bounces?|mail delivery (sub)?system)\b", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status )?notification|delivery failure|delivery has failed|"
    r"failure notice|returned mail|mail delivery failed|non.?deliver|nondeliverable|delivery problem|"
    r"could not be delivered|couldn't be delivered|not delivered|delivery delayed|delayed mail|"
    r"warning: could not send|message not delivered|unzustellbar|non remis|no se puede entregar|"
    r"delivery status", re.I)
_DELAY_WORDS = re.compile(
    r"delayed|delay|not yet been delivered|has not been delivered yet|will (continue|keep) (to )?try|"
    r"still trying|will retry|will be retried|warning:|no action is required", re.I)
_OUT_OF_OFFICE = re.compile(
    r"out of (the )?office|automatic reply|auto(matic)?[- ]?reply|autoreply|auto[- ]?response|"
    r"away from (the |my )?office|on (annual )?leave|on vacation|vacation reply|^vacation\b|"
    r"abwesenheit|abwesend|automatische antwort|nicht im b[üu]ro|"
    r"absence|absent|r[ée]ponse automatique|message d'absence|"
    r"respuesta autom[áa]tica|fuera de (la )?oficina|ausente|"
    r"risposta automatica|fuori (sede|ufficio)|"
    r"afwezig|automatisch antwoord|resposta autom[áa]tica|"
    r"autosvar|fr[åa]nvar|frav[æa]r|poissa|automaattinen vastaus", re.I)
_REPLY_SUBJECT = re.compile(r"^\s*(re|aw|antw|sv|vs|r|rif|ref|rv|res|odp|vá|atb)\s*(\[\d+\])?\s*:", re.I)
_QUOTE_HEAD = re.compile(
    r"^\s*(on .{1,200}wrote:|am .{1,200}schrieb .{0,80}:|le .{1,200}a [ée]crit\s*:|el .{1,200}escribi[óo]\s*:|"
    r"-{2,}\s*(original message|urspr[üu]ngliche nachricht|message d'origine|mensaje original)\s*-{2,}|"
    r"from:\s.+|von:\s.+|de\s?:\s.+)\s*$", re.I | re.M)


@dataclass(frozen=True)
class Failure:
    """One address a delivery status notification is about."""

    recipient: str  # Final-Recipient (lower case)
    severity: str  # permanent, transient or delayed
    status: str | None = None  # the enhanced status code, 5.1.1
    diagnostic: str | None = None  # Diagnostic-Code text (or the heuristic's line)
    action: str | None = None  # failed, delayed
    original_recipient: str | None = None
    smtp_code: int | None = None  # the SMTP reply code in the diagnostic, 550


@dataclass(frozen=True)
class Notice:
    """What one message says: its kind, the original Message-IDs it points to, and details."""

    kind: str
    message_ids: tuple[str, ...] = ()
    failures: tuple[Failure, ...] = ()
    sender: str | None = None  # From's address (lower case)
    date: str | None = None  # Date, ISO UTC
    subject: str = ""
    excerpt: str | None = None  # a reply's first 200 characters
    standard: bool = False  # an RFC 3464 report (else found by the heuristic)
    reasons: tuple[str, ...] = field(default=(), compare=False)  # why it was classed so

    @property
    def severity(self) -> str | None:
        """The strongest of the failures: permanent, transient, delayed (None: not a bounce)."""
        found = {f.severity for f in self.failures}
        return next((s for s in SEVERITIES if s in found), None)

    @property
    def label(self) -> str:
        """permanent / transient / delayed for a bounce, else the kind."""
        return (self.severity or "bounce") if self.kind == "bounce" else self.kind


# -- small helpers -------------------------------------------------------------------------------


def _clean(text: object, limit: int = 500) -> str:
    return " ".join(_CONTROLS.sub(" ", str(text or "")).split())[:limit]


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # noqa: BLE001 (a header the policy cannot parse)
        value = None
    if value is None:
        raw = msg.get_all(name, failobj=[]) if hasattr(msg, "get_all") else []
        value = raw[0] if raw else ""
    return _clean(value, 2000)


def _typed_value(value: str) -> str:
    """'rfc822; user@example.org' -> 'user@example.org'; 'smtp; 550 ...' -> '550 ...'."""
    value = _clean(value, 2000)
    if ";" in value:
        kind, rest = value.split(";", 1)
        if re.fullmatch(r"[A-Za-z0-9-]{1,20}", kind.strip()):
            value = rest.strip()
    return value


def _address(value: str) -> str | None:
    value = _typed_value(value)
    m = _ADDRESS.search(value)
    return m.group(0).lower().rstrip(".") if m else None


def _status(value: str | None) -> str | None:
    m = _STATUS.search(value or "")
    return ".".join(m.groups()) if m else None


def _smtp_code(value: str | None) -> int | None:
    m = _SMTP_CODE.search((value or "").strip())
    return int(m.group(1)) if m else None


def _iso_date(value: str) -> str | None:
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds")


def _ids(*values: str) -> tuple[str, ...]:
    seen: list[str] = []
    for value in values:
        for mid in _ID.findall(value or ""):
            if mid not in seen:
                seen.append(mid)
    return tuple(seen)


def _text_of(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        payload = None
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except LookupError:
            return payload.decode("utf-8", "replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _body_parts(msg: Message) -> list[Message]:
    """The message's own text parts (not those of attached messages)."""
    out: list[Message] = []

    def walk(part: Message) -> None:
        ctype = part.get_content_type()
        if ctype.startswith("message/") or ctype == "text/rfc822-headers":
            return
        if part.is_multipart():
            for sub in part.get_payload():
                walk(sub)
        elif ctype in ("text/plain", "text/html"):
            out.append(part)

    walk(msg)
    return out


def _plain_text(msg: Message) -> str:
    parts = _body_parts(msg)
    for part in parts:
        if part.get_content_type() == "text/plain":
            return _text_of(part)
    for part in parts:
        try:
            from inscriptis import get_text
            return get_text(re.sub(r"(?is)<blockquote.*?</blockquote>", " ", _text_of(part)))
        except Exception:  # noqa: BLE001 (a page that does not parse: tags stripped)
            return re.sub(r"<[^>]+>", " ", _text_of(part))
    return ""


def _excerpt(msg: Message) -> str | None:
    text = _plain_text(msg)
    m = _QUOTE_HEAD.search(text)
    if m:
        text = text[:m.start()]
    lines = [line for line in text.splitlines() if not line.lstrip().startswith(">")]
    cut = _clean(" ".join(lines), MAX_EXCERPT)
    return cut or None


# -- the original message ------------------------------------------------------------------------


def _attached_ids(msg: Message) -> tuple[str, ...]:
    """Message-IDs of the attached original (message/rfc822 or text/rfc822-headers)."""
    found: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        head: Message | None = None
        if ctype == "message/rfc822":
            inner = part.get_payload()
            head = inner[0] if isinstance(inner, list) and inner else None
        elif ctype == "text/rfc822-headers":
            head = HeaderParser().parsestr(_text_of(part).lstrip())
        if head is not None:
            for mid in _ids(_header(head, "Message-ID")):
                if mid not in found:
                    found.append(mid)
    return tuple(found)


def _inline_ids(msg: Message) -> tuple[str, ...]:
    """Message-ID lines of a copy of the original quoted in the notice's text."""
    own = _header(msg, "Message-ID")
    found = []
    for part in _body_parts(msg):
        for mid in _INLINE_ID.findall(_text_of(part)):
            if mid != own and mid not in found:
                found.append(mid)
    return tuple(found)


# -- RFC 3464 --------------------------------------------------------------------------------------


def _dsn_blocks(msg: Message) -> list[Message] | None:
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            if isinstance(payload, list):
                return [p for p in payload if isinstance(p, Message)]
            if isinstance(payload, str):  # some parsers leave it as text: blocks split by blank lines
                blocks = re.split(r"\r?\n[ \t]*\r?\n", payload.strip())
                return [HeaderParser().parsestr(b.strip() + "\n") for b in blocks if b.strip()]
    return None


def _severity(action: str, status: str | None, words: str) -> str | None:
    action = action.lower()
    if action in ("delivered", "relayed", "expanded"):
        return None
    if action == "delayed":
        return "delayed"
    if status and status.startswith("5"):
        return "permanent"
    if status and status.startswith("4"):
        return "delayed" if action != "failed" and _DELAY_WORDS.search(words) else "transient"
    if action == "failed":
        return "permanent"
    return None


def _standard(msg: Message) -> list[Failure] | None:
    """Failures of an RFC 3464 report; None when the message has no delivery-status part."""
    blocks = _dsn_blocks(msg)
    if blocks is None:
        return None
    failures = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        recipient = _address(_header(block, "Final-Recipient")) or _address(_header(block, "Original-Recipient"))
        if recipient is None:
            continue
        action = _header(block, "Action").split()[0].lower() if _header(block, "Action") else ""
        diagnostic = _typed_value(_header(block, "Diagnostic-Code")) or None
        status = _status(_header(block, "Status")) or _status(diagnostic)
        severity = _severity(action, status, _header(msg, "Subject"))
        if severity is None:
            continue
        failures.append(Failure(recipient, severity, status, diagnostic, action or None,
                                _address(_header(block, "Original-Recipient")), _smtp_code(diagnostic)))
    return failures


# -- the heuristic: notices without a delivery-status part --------------------------------------


def _looks_like_a_notice(msg: Message) -> bool:
    sender = _header(msg, "From")
    name, address = email.utils.parseaddr(sender)
    local = address.split("@")[0] if address else sender
    return bool(_DAEMONS.search(local) or _DAEMONS.search(name or "")
                or _BOUNCE_SUBJECT.search(_header(msg, "Subject"))
                or msg.get_content_type() == "multipart/report")


def _line_about(text: str, address: str) -> str | None:
    """The notice's words about one address: the lines from where it is named (the mention
    that gives a code, else the last), up to the copy of the original."""
    lines = text.splitlines()
    chunks = []
    for i, line in enumerate(lines):
        if address in line.lower():
            chunk = []
            for x in lines[i:i + 5]:
                if chunk and (_COPY_BEGINS.search(x) or not x.strip()) and len(chunk) > 1:
                    break
                if x.strip():
                    chunk.append(x.strip())
            chunks.append(_clean(" ".join(chunk), 300))
    coded = [c for c in chunks if _STATUS.search(c) or _SMTP_CODE.search(c)]
    return coded[0] if coded else (chunks[-1] if chunks else None)


# Forms flufl.bounce does not know: the line that starts the list of failed addresses. The
# addresses are those in the next few lines (until the copy of the original begins).
_MORE_FORMS = (
    re.compile(r"following recipient\(s\) cannot be reached", re.I),  # Exchange 2003
    re.compile(r"could not be delivered to the following (recipient|address)", re.I),
    re.compile(r"delivery (has )?failed to these recipients", re.I),  # Exchange 2007+ text only
)


def _more_forms(text: str) -> set[str]:
    lines = text.splitlines()
    found: set[str] = set()
    for i, line in enumerate(lines):
        if any(form.search(line) for form in _MORE_FORMS):
            for after in lines[i + 1:i + 12]:
                if _COPY_BEGINS.search(after):
                    break
                found.update(a.lower().rstrip(".") for a in _ADDRESS.findall(after))
    return found


def _heuristic(msg: Message) -> list[Failure]:
    from flufl.bounce import all_failures

    compat = email.message_from_bytes(msg.as_bytes(policy=email.policy.compat32), policy=email.policy.compat32)
    try:
        temporary, permanent = all_failures(compat)
    except Exception:  # noqa: BLE001 (a detector that trips on an odd message finds nothing)
        temporary, permanent = frozenset(), frozenset()
    text = "\n".join(_text_of(p) for p in _body_parts(msg))
    if not temporary and not permanent:
        permanent = frozenset(a.encode() for a in _more_forms(text))
    subject = _header(msg, "Subject")
    delayed = bool(_DELAY_WORDS.search(subject) or re.search(r"will (continue|keep) (to )?try|still trying|"
                                                              r"will retry|not yet been delivered", text, re.I))
    own = {email.utils.parseaddr(_header(msg, h))[1].lower() for h in ("From", "To")}
    failures = []
    for raw, severity in [*((a, "permanent") for a in permanent), *((a, "transient") for a in temporary)]:
        address = _address(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
        if address is None or address in own or any(f.recipient == address for f in failures):
            continue
        about = _line_about(text, address) or ""
        window = text[text.lower().find(address):][:600] if address in text.lower() else text
        status = _status(about) or _status(window)
        if status and status.startswith("5"):
            severity = "permanent"
        elif status and status.startswith("4") or severity == "transient":
            severity = "delayed" if delayed else "transient"
        failures.append(Failure(address, severity, status, about or None, None, None,
                                _smtp_code(re.sub(r"^.*?" + re.escape(address) + r"\W*", "", about, flags=re.I))
                                or _smtp_code(window.split("\n", 1)[-1])))
    return failures


# -- the whole ---------------------------------------------------------------------------------------


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def _auto_reasons(msg: Message) -> list[str]:
    why = []
    auto = _header(msg, "Auto-Submitted").split(";")[0].strip().lower()
    if auto and auto != "no":
        why.append(f"Auto-Submitted: {auto}")
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Vacation"):
        if _header(msg, name) and _header(msg, name).lower() not in ("no", "false", "0"):
            why.append(name)
    precedence = _header(msg, "Precedence").lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        why.append(f"Precedence: {precedence}")
    if _header(msg, "Return-Path").replace(" ", "") == "<>":
        why.append("empty Return-Path")
    if _OUT_OF_OFFICE.search(_header(msg, "Subject")):
        why.append("out-of-office subject")
    return why


def classify(raw: bytes) -> Notice:
    """One message (bytes) -> what it says about a campaign; never raises for a bad message."""
    try:
        msg = parse(raw)
    except Exception:  # noqa: BLE001 (unreadable: nothing to say)
        return Notice("unrelated", reasons=("unreadable",))
    subject = _header(msg, "Subject")
    sender = (email.utils.parseaddr(_header(msg, "From"))[1] or "").lower() or None
    date = _iso_date(_header(msg, "Date"))
    originals = _attached_ids(msg) or _inline_ids(msg)

    standard = _standard(msg)
    if standard:
        return Notice("bounce", originals, tuple(standard), sender, date, subject, standard=True,
                      reasons=("RFC 3464 delivery-status",))
    if standard is None and _looks_like_a_notice(msg):
        found = _heuristic(msg)
        if found:
            return Notice("bounce", originals, tuple(found), sender, date, subject,
                          reasons=("heuristic",))
    if standard is not None or (_looks_like_a_notice(msg) and _DAEMONS.search(sender or "")):
        return Notice("unrelated", originals, (), sender, date, subject, reasons=("a report about no failure",))

    threaded = _ids(_header(msg, "In-Reply-To"), _header(msg, "References"))
    auto = _auto_reasons(msg)
    if auto:
        return Notice("auto_reply", threaded, (), sender, date, subject, _excerpt(msg), reasons=tuple(auto))
    if threaded or _REPLY_SUBJECT.search(subject):
        return Notice("reply", threaded, (), sender, date, subject, _excerpt(msg),
                      reasons=("threaded" if threaded else "reply subject",))
    return Notice("unrelated", (), (), sender, date, subject, _excerpt(msg))
