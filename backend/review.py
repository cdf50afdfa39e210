"""Review & send: what a campaign is about to do, what is missing, and what may be a mistake.

One place decides it for every face: the window's step list and its Review & send step, and the
CLI's dry run. Nothing here connects to a server or changes anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

from backend import deliverability, service
from backend.errors import MailerError
from backend.google_auth import saved_profile
from backend.inputs import NotNow, RowProblems
from backend.microsoft_auth import saved_profile as microsoft_profile
from backend.model import RateLimits
from backend.plans import limits_with
from backend.presets import GMAIL_API_LIMITS, gmail_api_limits, microsoft_limits
from backend.settings import SECURITY_LABELS

CLIP_BYTES, UNSUBSCRIBE_FROM = deliverability.CLIP_BYTES, deliverability.UNSUBSCRIBE_FROM
STEP_NAMES = {"account": "Account", "recipients": "Recipients", "message": "Message", "review": "Review & send"}

@dataclass
class Notice:
    """Something that may be a mistake, though every message builds; fix: what one click does."""

    kind: str
    text: str
    fix: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "fix": self.fix}


@dataclass
class Review:
    """The answer for the step list and Review & send."""

    steps: dict[str, dict[str, str]] = field(default_factory=dict)
    missing: list[dict[str, str]] = field(default_factory=list)
    warnings: list[Notice] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    messages: int = 0
    through: str = ""
    host: str = ""
    sender: str = ""
    limits: str = "none"
    estimate_s: float | None = None
    check: deliverability.Report | None = None  # the content check; None until the message builds
    when: dict[str, Any] = field(default_factory=dict)  # the campaign's times (App.when)
    meter: dict[str, Any] = field(default_factory=dict)  # the account's last 24 hours (App.meter)

    def need(self, step: str, text: str) -> None:
        self.missing.append({"step": step, "text": text})

    def step(self, key: str, state: str, summary: str) -> None:
        self.steps[key] = {"name": STEP_NAMES[key], "state": state, "summary": summary}

    def as_dict(self) -> dict[str, Any]:
        ready = not self.missing and not self.problems and self.messages > 0
        n = f"{self.messages:,} message{'' if self.messages == 1 else 's'}"
        return {
            "steps": self.steps, "missing": self.missing, "ready": ready, "sendable": not self.missing,
            "warnings": [w.as_dict() for w in self.warnings], "problems": self.problems,
            "messages": self.messages, "through": self.through, "host": self.host, "sender": self.sender,
            "limits": self.limits, "estimate_s": self.estimate_s,
            "estimate": duration_words(self.estimate_s) if self.estimate_s is not None else "",
            "confirm": (f"Schedule {n} for {self.when['starts']} through {self.host} as {self.sender}?"
                        if self.when.get("at") else f"Send {n} through {self.host} as {self.sender}?") if ready else "",
            "when": self.when, "meter": self.meter,
            "verdict": self.check.verdict if self.check else "", "score": self.check.score if self.check else 0.0,
            "findings": self.check.as_dict()["findings"] if self.check else [],
        }


def estimate_seconds(n: int, delay_s: float, limits: RateLimits | None) -> float:
    """How long n messages take at least at the delay and the sending limits (the server's own
    time per message not counted): one message each interval, a day's limit waits for the next day."""
    if n <= 1:
        return 0.0
    interval = max(delay_s, 0.0)
    per_day = None
    for window, count in (limits.windows() if limits else []):
        if window >= 86400:
            per_day = count
        else:
            interval = max(interval, window / count)
    if per_day and n > per_day:
        days = math.ceil(n / per_day) - 1
        return days * 86400 + (n - 1 - days * int(per_day)) * interval
    return (n - 1) * interval


def duration_words(seconds: float) -> str:
    """"under a minute", "about 25 minutes", "about 3 hours 10 minutes", "about 2 days 4 hours"."""
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} minute{'' if minutes == 1 else 's'}"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        rest = f" {minutes} minute{'' if minutes == 1 else 's'}" if minutes else ""
        return f"about {hours} hour{'' if hours == 1 else 's'}{rest}"
    days, hours = divmod(hours, 24)
    rest = f" {hours} hour{'' if hours == 1 else 's'}" if hours else ""
    return f"about {days} day{'' if days == 1 else 's'}{rest}"


def limits_words(limits: RateLimits | None) -> str:
    words = list(limits.words().values()) if limits else []
    return ", ".join(words) if words else "none"


def content_check(draft: service.Draft, *, relay: str | None = None) -> tuple[list[Notice], deliverability.Report]:
    """Every warning about the message and the list, and the content check's report: empty fields
    (with their one-click fix), then the deliverability rules' findings (large messages, links that
    are not https, a body Gmail clips, no text part, no unsubscribe link on a large list, ...).
    Findings scoring under deliverability.WARNING_FROM are tips: in the report, not warnings."""
    out: list[Notice] = []
    for empty in service.empty_fields(draft):
        out.append(Notice("empty_field", empty.words(), {
            "field": empty.field, "lines": list(empty.lines),
            "default": f'{{{{ {empty.field} | default("there") }}}}'}))
    report = deliverability.check_draft(draft, relay=relay)
    out += [Notice(f.rule.id, f.reason) for f in report.findings if f.rule.score >= deliverability.WARNING_FROM]
    return out, report


def content_warnings(draft: service.Draft, *, relay: str | None = None) -> list[Notice]:
    """The warnings of content_check."""
    return content_check(draft, relay=relay)[0]


def built_warnings(data: bytes) -> list[Notice]:
    """Warnings read from one built message's body: an HTML body Gmail clips, HTML without a text part."""
    report = deliverability.check_message(data)
    return [Notice(f.rule.id, f.reason) for f in report.findings if f.rule.id in ("clipped", "no_text_part")]


def review(app: Any, a: Any, m: Any, options: Any) -> Review:
    """The step list and Review & send for this session's campaign (app: the App)."""
    from backend.app import LOCAL_INBOX

    r = Review()
    sender = m.from_address or a.from_address
    base: RateLimits | None = None
    relay: str | None = None  # the SMTP server the mail goes through (the content check's free-mail rule)
    if a.channel == "microsoft":
        profile = microsoft_profile()
        r.host = r.through = "Microsoft Graph"
        base = service.rate_limits(microsoft_limits(bool((profile or {}).get("consumer", True)))[1])
        if profile is None:
            r.need("account", "Sign in with Microsoft")
            r.step("account", "attention", "Microsoft Graph: not signed in")
        else:
            sender = service.gmail_sender(sender, profile["email"], "Microsoft Graph")
            r.step("account", "done", f"Microsoft Graph as {profile['email']}")
    elif a.channel != "gmail" and a.provider == LOCAL_INBOX:
        r.host = r.through = "the local test inbox"
        r.step("account", "done", "Local test inbox: nothing leaves this computer")
    elif a.channel == "gmail":
        profile = saved_profile()
        r.host = r.through = "the Gmail API"
        base = service.rate_limits(GMAIL_API_LIMITS[gmail_api_limits(bool((profile or {}).get("workspace")))[0]])
        if profile is None:
            r.need("account", "Sign in with Google")
            r.step("account", "attention", "Gmail API: not signed in")
        else:
            sender = service.gmail_sender(sender, profile["email"])
            r.step("account", "done", f"Gmail API as {profile['email']}")
    else:
        try:
            settings, _ = app.smtp_settings(a, need_password=False)
        except MailerError as exc:
            r.need("account", _words(exc))
            r.step("account", "todo" if not a.host else "attention", "Choose a provider or enter the server")
        else:
            r.host = relay = settings.host
            r.through = f"{settings.host}:{settings.port} ({SECURITY_LABELS.get(settings.security, settings.security)})"
            base = service.preset_limits(settings.provider)
            login = f" as {settings.user}" if settings.user else ""
            if app.tested(a):
                r.step("account", "done", f"{settings.host}{login}")
            else:
                r.need("account", "Test the connection (Account, Test connection)")
                r.step("account", "attention", f"{settings.host}{login}: not tested yet")
    if not sender.strip():
        r.need("account", "Enter the From address")
        if r.steps.get("account", {}).get("state") == "done":
            r.step("account", "attention", "No From address")
    r.sender = parseaddr(sender)[1] or sender.strip()
    try:
        r.limits = limits_words(limits_with(base, options.limits))
        limits = limits_with(base, options.limits)
    except MailerError:
        limits = base
    _recipients_step(app, r)
    draft = _message_step(app, r, m, sender, options, a)
    if draft is not None:
        r.messages = len(draft.recipients)
        warnings, r.check = content_check(draft, relay=relay)
        r.warnings += warnings
        r.estimate_s = estimate_seconds(r.messages, draft.delay_ms / 1000, limits)
        r.when = app.when(options.schedule, draft, limits.per_day if limits else None, app.account_key(a))
        r.meter = app.meter(app.account_key(a), limits.per_day if limits else None)
        if r.when["problem"]:
            r.need("review", f"When: {r.when['problem']}")
    run = app.run
    if run is not None and run.active:
        r.step("review", "attention", "Sending…")
    elif r.missing or r.problems:
        n = len(r.missing) + (1 if r.problems else 0)
        r.step("review", "attention" if app.imported else "todo", f"{n} thing{'' if n == 1 else 's'} to do first")
    else:
        r.step("review", "todo", f"Ready: {r.messages:,} message{'' if r.messages == 1 else 's'}")
    return r


def _words(exc: Any) -> str:
    """An error's message as a checklist line: without the field name in front, capitalised."""
    text = exc.message
    field_name = getattr(exc, "field", None)
    if field_name and text.startswith(f"{field_name}: "):
        text = text[len(field_name) + 2:]
    return text[:1].upper() + text[1:]


def _recipients_step(app: Any, r: Review) -> None:
    imported = app.imported
    if imported is None:
        r.need("recipients", "Add recipients: paste addresses or import a file")
        r.step("recipients", "todo", "No list yet")
        return
    valid = len(imported.recipients)
    parts = [f"{valid:,} valid recipient{'' if valid == 1 else 's'}"]
    if imported.rejected:
        parts.append(f"{len(imported.rejected):,} invalid")
    if imported.duplicates:
        parts.append(f"{len(imported.duplicates):,} duplicate{'' if len(imported.duplicates) == 1 else 's'}")
    if not valid:
        r.need("recipients", "The list has no valid address")
    r.step("recipients", "done" if valid else "attention", ", ".join(parts))


def _message_step(app: Any, r: Review, m: Any, sender: str, options: Any, a: Any = None) -> service.Draft | None:

    subject, body = m.subject.strip(), m.written
    if not subject:
        r.need("message", "Enter a subject")
    if not body:
        r.need("message", "Write the message")
    if not subject or not body:
        r.step("message", "attention" if subject or body else "todo", "No subject yet" if not subject else "No message yet")
        return None
    shown = subject if len(subject) <= 60 else subject[:59] + "…"
    try:
        draft = app.draft(m, sender or "you@example.com", account=a)
    except NotNow:
        r.step("message", "done", f"“{shown}”")
        return None
    except MailerError as exc:
        step = "account" if (getattr(exc, "field", "") or "").startswith("from") else "message"
        r.need(step, _words(exc))
        r.step("message", "attention" if step == "message" else "done", f"“{shown}”")
        return None
    if options.skip_empty:
        for empty in service.empty_fields(draft):
            if empty.field in options.skip_empty:
                n = len(empty.lines)
                r.warnings.append(Notice("empty_field", f"{n} recipient{' has' if n == 1 else 's have'} an empty "
                                          f"{empty.field}: left out, as you chose", {
                                              "field": empty.field, "lines": list(empty.lines), "skipped": True,
                                              "default": f'{{{{ {empty.field} | default("there") }}}}'}))
        service.exclude_empty(draft, options.skip_empty)
    problems = draft.problems()
    if problems and options.skip_problem_rows:
        service.exclude_problem_rows(draft, problems)
        problems = []
    if problems:
        r.problems = RowProblems(problems).rows()
        lines = {getattr(p, "row", None) for p in problems}
        n = len(lines)
        r.step("message", "attention", f"{n:,} message{'' if n == 1 else 's'} cannot be built")
    else:
        r.step("message", "done", f"“{shown}”")
    return draft
