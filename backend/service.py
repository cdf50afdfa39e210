"""The use cases, wired once: load, check, preview, verify, send, export. CLI and UI adapt these."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend import attachments, compose, paths
from backend.attachments import Attachment
from backend.campaign import (
    RESULT_FIELDS,
    CampaignOutcome,
    Control,
    Outgoing,
    RateLimiter,
    RateLimits,
    ResultRow,
    RetryPolicy,
    iso,
    run_campaign,
    utc_now,
)
from backend.errors import AttachmentError, MailerError, SettingsError, TemplateError
from backend.inputs import DEFAULT_DELAY_MS
from backend.journal import Journal
from backend.model import DEFAULT_MAX_FAILURES, SENT_STATUSES
from backend.recipients import ImportResult, Recipient
from backend.settings import SmtpSettings
from backend.transports.base import Envelope, Transport

log = logging.getLogger(__name__)



def new_campaign_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique campaign id such as 20261127-224619-3fa2."""
    now = now or utc_now()
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


@dataclass
class Draft:
    """Everything a campaign needs except the account: who, what, from whom, how fast."""

    imported: ImportResult
    template: compose.Template
    sender: compose.Sender
    delay_ms: int = DEFAULT_DELAY_MS
    reply_to: compose.Sender | None = None
    id: str = field(default_factory=new_campaign_id)
    # Recipients that will not be sent to (suppressed, or skipped for a problem), keyed by
    # (line, address): one pasted line can hold several recipients.
    excluded: dict[tuple[int, str], ResultRow] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)  # for everyone, loaded once
    attach_column: str | None = None  # per-recipient files: this column names them ...
    attach_dir: Path | None = None  # ... relative to this folder
    unsubscribe: compose.Unsubscribe | None = None
    # A follow-up: each address's earlier Message-IDs of the thread, oldest first (In-Reply-To, References).
    thread: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _skeletons: dict[tuple[Any, ...], compose.Skeleton] = field(default_factory=dict, repr=False, compare=False)

    @property
    def recipients(self) -> list[Recipient]:
        """The rows that will be sent to."""
        if not self.excluded:
            return self.imported.recipients
        return [r for r in self.imported.recipients if (r.line, r.email) not in self.excluded]

    def exclude(self, recipient: Recipient, reason: str, category: str | None = None) -> None:
        """Leave a recipient out of the run, reported as skipped with the reason."""
        self.excluded[(recipient.line, recipient.email)] = ResultRow(recipient.email, "skipped", category, None, reason,
                                                                     line=recipient.line)

    def problems(self, *, smtputf8: bool | None = None, size_limit: int | None = None,
                 recipients: list[Recipient] | None = None) -> list[MailerError]:
        """Every row whose message cannot be built (template, address, attachment), by line."""
        recipients = self.recipients if recipients is None else recipients
        found: list[MailerError] = list(compose.check_all(
            self.template, recipients, self.sender, reply_to=self.reply_to, unsubscribe=self.unsubscribe,
            smtputf8=smtputf8))
        if self.attach_column or self.attachments:
            found += attachments.check_attachments(recipients, self.attach_column, self.attach_dir,
                                                   self.attachments, size_limit=size_limit)
        return found

    def size_warning(self) -> str | None:
        """A warning when attachments make messages large enough to be refused or filtered."""
        if not (self.attachments or self.attach_column):
            return None
        return attachments.large_message_warning(attachments.planned_sizes(
            self.recipients, self.attach_column, self.attach_dir, self.attachments))

    def outgoing(self, recipient: Recipient, *, smtputf8: bool = False) -> Outgoing:
        """Render one recipient's message to bytes with its envelope."""
        own = attachments.row_attachments(recipient, self.attach_column, self.attach_dir) if self.attach_column else []
        skeleton = self.skeleton(smtputf8)
        thread = self.thread.get(recipient.email.lower(), ()) if self.thread else ()
        if skeleton is None:  # the sender cannot be used: render() says so, naming the row
            msg = compose.render(self.template, recipient, self.sender, reply_to=self.reply_to,
                                 attachments=[*self.attachments, *own], unsubscribe=self.unsubscribe,
                                 smtputf8=smtputf8, thread=thread)
            data, message_id = msg.as_bytes(), str(msg["Message-ID"])
        else:
            data, message_id = skeleton.build(recipient, own, thread=thread)
        return Outgoing(
            Envelope(self.sender.address, (compose.envelope_recipient(recipient, smtputf8=smtputf8),)),
            data,
            message_id,
        )

    def skeleton(self, smtputf8: bool) -> compose.Skeleton | None:
        """The campaign's message structure, built once (again only when the draft changed)."""
        key = (smtputf8, self.template, self.sender, self.reply_to, tuple(map(id, self.attachments)),
               self.unsubscribe)
        found = self._skeletons.get(key)
        if found is None:
            try:
                found = compose.Skeleton(self.template, self.sender, reply_to=self.reply_to,
                                         attachments=self.attachments, unsubscribe=self.unsubscribe,
                                         smtputf8=smtputf8)
            except MailerError:
                return None
            self._skeletons.clear()
            self._skeletons[key] = found
        return found


def make_draft(
    imported: ImportResult,
    *,
    subject: str,
    html: str | None,
    text: str | None,
    from_address: str,
    delay_ms: int = DEFAULT_DELAY_MS,
    reply_to: str | None = None,
    attach: Sequence[str | os.PathLike[str]] = (),
    attach_column: str | None = None,
    attach_dir: str | os.PathLike[str] | None = None,
    unsubscribe: Sequence[str] = (),
) -> Draft:
    """Compile the template, check the sender, load shared attachments; errors name the field."""
    if not isinstance(delay_ms, int) or isinstance(delay_ms, bool) or not 0 <= delay_ms <= 3_600_000:
        raise SettingsError("delay_ms", "must be a whole number of milliseconds from 0 to 3600000")
    template = compose.Template(subject, html=html, text=text)
    sender = compose.parse_sender(from_address)
    reply = compose.parse_sender(reply_to, field="reply_to") if reply_to else None
    if attach_column and attach_dir is None:
        raise SettingsError("attach_dir", "per-recipient attachments need the folder their paths are relative to")
    if attach_column and attach_column not in imported.fields:
        raise SettingsError("attach_column", f"there is no column '{attach_column}'; the columns are: "
                            + ", ".join(imported.columns or imported.fields))
    folder = Path(attach_dir) if attach_dir is not None else None
    if folder is not None and not folder.is_dir():
        raise SettingsError("attach_dir", f"'{folder}' is not a folder")
    return Draft(imported, template, sender, delay_ms=delay_ms, reply_to=reply,
                 attachments=attachments.load_attachments(list(attach)) if attach else [],
                 attach_column=attach_column or None, attach_dir=folder,
                 unsubscribe=compose.parse_unsubscribe(list(unsubscribe)) if unsubscribe else None)


def dry_run(draft: Draft) -> list[MailerError]:
    """Build every message as it would be sent, without connecting; return every problem."""
    problems: list[MailerError] = []
    for recipient in draft.recipients:
        try:
            draft.outgoing(recipient, smtputf8=True)  # whether the server offers it is not known yet
        except (TemplateError, AttachmentError) as exc:
            problems.append(exc)
    return problems


def send(
    draft: Draft,
    transport: Transport | Sequence[Transport],
    *,
    on_event: Callable[[dict[str, Any]], None] = lambda event: None,
    control: Control | None = None,
    on_pause: Callable[[bool], None] = lambda paused: None,
    sleep: Callable[[float], Any] | None = None,
    skip_problem_rows: bool = False,
    journal: Journal | None = None,
    account: str = "",
    spec: dict[str, Any] | None = None,
    indices: Sequence[int] | None = None,
    limits: RateLimits | None = None,
    retry: RetryPolicy | None = None,
    clock: Callable[[], float] | None = None,
    deferred_until: dict[int, str] | None = None,
    attempts_before: dict[int, int] | None = None,
    on_wait: Callable[[dict[str, Any]], None] = lambda wait: None,
    max_failures_in_a_row: int = DEFAULT_MAX_FAILURES,
    checked: bool = False,
    now: Callable[[], dt.datetime] = utc_now,
    gate: Callable[[dt.datetime], dt.datetime] | None = None,
    hold_s: float | None = None,
) -> CampaignOutcome:
    """Run the campaign; refuses to start while a row cannot be built, unless told to skip those.

    With a journal, every recipient is committed as 'sending' before MAIL FROM and its outcome
    right after the reply. `indices` are the journal rows of draft.recipients when resuming.
    transport: one, or a pool of several (one connection each).
    """
    # checked: the caller has just checked every row and refused or left out the bad ones
    # (a second pass over 100,000 rows would only delay the first message by seconds).
    problems = [] if checked else draft.problems(smtputf8=None)
    if problems and not skip_problem_rows:
        first = problems[0]
        raise TemplateError(
            f"{len({p.row for p in problems})} row(s) cannot be built, first: {first.message}",
            field=first.field,
        )
    if problems:
        exclude_problem_rows(draft, problems)
    log.info("campaign %s: %d recipients", draft.id, len(draft.recipients))
    first = transport[0] if isinstance(transport, list | tuple) else transport

    built: dict[int, str] = {}  # id(recipient) -> the Message-ID of its message being sent

    def build(recipient: Recipient) -> Outgoing:
        # Read per message: once open, the transport knows whether the server offers SMTPUTF8
        # and how large a message it accepts (every connection of a pool goes to one server).
        out = draft.outgoing(recipient, smtputf8=first.supports_smtputf8)
        built[id(recipient)] = out.message_id
        limit = first.size_limit
        if limit and len(out.data) > limit:
            raise AttachmentError(
                f"line {recipient.line}: the message is {len(out.data) / 1e6:.1f} MB and the server accepts "
                f"at most {limit / 1e6:.1f} MB; send smaller attachments or a download link")
        return out

    recipients = draft.recipients
    hooks: dict[str, Any] = {}
    if journal is not None:
        if indices is None:
            record_new(draft, journal, spec, account=account, limits=limits, retry=retry,
                       max_failures_in_a_row=max_failures_in_a_row, due=deferred_until)
            indices = range(len(recipients))
        else:
            journal.claim(draft.id)
        rows = list(indices)

        def record(sending: int | None, done: tuple[int, ResultRow] | None) -> None:
            # The Message-ID goes with the 'sending' mark: a message left uncertain by a crash
            # is still found by its bounce or its reply (track).
            journal.record(draft.id, sending=rows[sending] if sending is not None else None,
                           outcome=(rows[done[0]], done[1]) if done is not None else None,
                           sending_id=built.get(id(recipients[sending])) if sending is not None else None)

        hooks = {"record": record}
    limiter = None
    limits = warmup_limits(limits, spec, now())
    if limits is not None and limits.windows():
        earlier: list[float] = []
        if journal is not None and limits.per_day:
            # A day's quota counts what this account sent earlier today, in any run.
            wall, mono = now(), (clock or time.monotonic)()
            since = iso(wall - dt.timedelta(days=1))
            earlier = [mono - (wall - dt.datetime.fromisoformat(t)).total_seconds()
                       for t in journal.sent_since(account, since)]
        limiter = RateLimiter(limits, earlier)
    due: dict[int, float] = {}
    if deferred_until:
        # Wall-clock times from the journal, as times on the loop's clock.
        wall, tick = now(), (clock or time.monotonic)()
        due = {pos: tick + max(0.0, (dt.datetime.fromisoformat(at) - wall).total_seconds())
               for pos, at in deferred_until.items()}
    try:
        outcome = run_campaign(
            recipients,
            build,
            transport,
            campaign_id=draft.id,
            on_event=on_event,
            control=control,
            on_pause=on_pause,
            delay_s=draft.delay_ms / 1000,
            sleep=sleep,
            limiter=limiter,
            retry=retry,
            initially_due=due,
            attempts_before=attempts_before,
            on_wait=on_wait,
            max_failures_in_a_row=max_failures_in_a_row,
            now=now,
            guard=_bounce_guard(journal, draft.id) if journal is not None else None,
            gate=gate,
            hold_s=hold_s,
            **({"clock": clock} if clock is not None else {}),
            **hooks,
        )
    except BaseException:
        if journal is not None:
            # A message between its 'sending' mark and its outcome may have gone out: uncertain,
            # listed at the resume, never silently skipped or resent.
            journal.mark_interrupted(draft.id, "the run stopped unexpectedly")
        raise
    if journal is not None:
        journal.set_state(draft.id, *_journal_state(outcome), resume_after=outcome.resume_after)
    return outcome


def record_new(draft: Draft, journal: Journal, spec: dict[str, Any] | None, *, account: str,
               limits: RateLimits | None, retry: RetryPolicy | None, max_failures_in_a_row: int,
               state: str = "running", resume_after: str | None = None, due: dict[int, str] | None = None) -> None:
    """Journal a new campaign with everything a resume needs (its limits and retry settings, the
    files added in the window); state 'scheduled' for one that starts later. due: recipients'
    delivery times (their local time), by position."""
    # A resumed run keeps the campaign's limits and retry settings.
    spec = {**(spec or {}), "limits": limits_spec(limits),
            "retry": retry_spec(retry or RetryPolicy(), max_failures_in_a_row)}
    message = spec.get("message") or {}
    if message.get("uploaded_attachments"):
        # Files added in the window exist only in memory: keep a copy with the
        # campaign, so it can be resumed (or followed up) after a restart.
        listed = list(message.get("attach") or [])
        kept = keep_attachments(draft.id, draft.attachments[len(listed):])
        spec["message"] = {**message, "attach": listed + kept, "uploaded_attachments": False,
                           "kept_attachments": True}
    journal.create(draft.id, account=account, spec=spec, recipients=draft.recipients,
                   excluded=left_out_rows(draft), state=state, resume_after=resume_after, due=due)


BOUNCE_PAUSE_RATE, BOUNCE_PAUSE_MIN = 0.05, 20  # bounced / sent that pauses a campaign, and from how many sent


def _bounce_guard(journal: Journal, campaign_id: str) -> Callable[[], MailerError | None]:
    """The run's guard: more than 5% of the campaign's sent messages bounced (as the mailbox
    check found while it runs) pauses it, before the provider acts on the account."""
    def guard() -> MailerError | None:
        counts = journal.counts(campaign_id)
        sent, bounced = sum(counts.get(s, 0) for s in SENT_STATUSES), counts.get("bounced", 0)
        if sent >= BOUNCE_PAUSE_MIN and bounced > BOUNCE_PAUSE_RATE * sent:
            return MailerError(f"the campaign is paused to protect your account: {bounced} of the {sent} messages "
                               f"sent so far bounced ({bounced / sent:.0%}; above 5% providers start to limit "
                               "an account)", category="account_protection")
        return None
    return guard


def warmup_limits(limits: RateLimits | None, spec: dict[str, Any] | None, now: dt.datetime) -> RateLimits | None:
    """The daily limit of a campaign with a warm-up: the day's step (20, 40, 80, ... from its
    start), never above the limit it has without one."""
    saved = (spec or {}).get("schedule") or {}
    steps = saved.get("warmup")
    if not steps:
        return limits
    day = max(0, int((now - dt.datetime.fromisoformat(saved["warmup_start"])).total_seconds() // 86400))
    allowed = int(steps[min(day, len(steps) - 1)])
    per_day = min(limits.per_day, allowed) if limits is not None and limits.per_day else allowed
    return dataclasses.replace(limits or RateLimits(), per_day=per_day)


HOLD_S = 300.0  # a scheduled wait longer than this stops the run ('waiting'): run-due's period


def timing(spec: dict[str, Any] | None) -> dict[str, Any]:
    """A campaign's send window (gate) and how long a run holds for it or for a recipient's
    local time before it stops as 'waiting' (hold_s); nothing for an unscheduled campaign."""
    schedule = (spec or {}).get("schedule") or {}
    if not (schedule.get("window") or schedule.get("local_time")):
        return {}
    from backend.schedule import SendWindow

    window = SendWindow.from_spec(schedule["window"]) if schedule.get("window") else None
    return {"gate": window.next_open if window else None, "hold_s": HOLD_S}


def _journal_state(outcome: CampaignOutcome) -> tuple[str, str | None]:
    """What the history says of a finished run; 'paused', 'waiting' and 'stopped' runs can be resumed."""
    if outcome.stopped == "scheduled_wait":
        return "waiting", outcome.error.message if outcome.error else None
    if not outcome.ok:
        return "failed", outcome.error.message if outcome.error else None
    if outcome.stopped == "cancelled":
        return "paused", "stopped by the user; resume to send to the rest"
    if outcome.resume_after and outcome.error is not None:
        return "paused", outcome.error.message  # a quota: it lifts by itself
    if outcome.stopped:
        return "stopped", outcome.error.message if outcome.error else outcome.stopped
    return "finished", None


def campaign_spec(draft: Draft, settings: SmtpSettings | None, *, attach: Sequence[str] = (),
                  gmail: str | None = None, microsoft: str | None = None) -> dict[str, Any]:
    """What resuming needs besides the password: the channel, account settings and the message
    (no secrets). `gmail` / `microsoft` is the signed-in address of a Gmail API / Microsoft Graph
    campaign (then no settings)."""
    unsub = draft.unsubscribe
    return {
        "channel": "gmail" if gmail else "microsoft" if microsoft else "smtp",
        "gmail": {"email": gmail} if gmail else None,
        **({"microsoft": {"email": microsoft}} if microsoft else {}),
        "settings": {k: getattr(settings, k) for k in (
            "host", "port", "security", "user", "from_address", "ca_file", "verify_certificates",
            "allow_plaintext_auth", "timeout", "provider", "auth")} if settings is not None else None,
        "message": {
            "subject": draft.template.subject_source, "html": draft.template.html_source,
            "text": draft.template.text_source,
            "from": f"{draft.sender.name} <{draft.sender.address}>" if draft.sender.name else draft.sender.address,
            "reply_to": draft.reply_to.address if draft.reply_to else None,
            "unsubscribe": [u for u in ((unsub.url, unsub.mailto) if unsub else ()) if u],
            "attach": [str(Path(a).resolve()) for a in attach],
            "uploaded_attachments": len(draft.attachments) > len(attach),
            "attach_column": draft.attach_column,
            "attach_dir": str(draft.attach_dir) if draft.attach_dir else None,
        },
        "delay_ms": draft.delay_ms,
    }


_LIMIT_KEYS = ("per_second", "per_minute", "per_hour", "per_day")


def campaign_files_dir(campaign_id: str) -> Path:
    """Where a campaign's own copies of the files attached in the window are kept."""
    return paths.data_dir() / "campaign-files" / campaign_id


def keep_attachments(campaign_id: str, files: Sequence[Attachment]) -> list[str]:
    """Write the attachments under campaign_files_dir (folders 0700, files 0600); their paths."""
    kept = []
    for n, attachment in enumerate(files, 1):
        folder = campaign_files_dir(campaign_id) / str(n)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for part in (folder.parent.parent, folder.parent, folder):
            # never through a link: the mode is set on the folder opened without following one
            fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                os.fchmod(fd, 0o700)
            finally:
                os.close(fd)
        target = folder / attachment.filename
        paths.atomic_write(target, attachment.data)
        kept.append(str(target))
    return kept


def retry_spec(retry: RetryPolicy, max_failures_in_a_row: int) -> dict[str, Any]:
    return {"base_s": retry.base_s, "cap_s": retry.cap_s, "max_attempts": retry.max_attempts,
            "max_age_s": retry.max_age_s, "max_failures_in_a_row": max_failures_in_a_row}


def retry_from_spec(spec: dict[str, Any]) -> tuple[RetryPolicy, int]:
    """The retry policy and failure threshold a campaign ran with (defaults for older ones)."""
    saved = dict(spec.get("retry") or {})
    failures = int(saved.pop("max_failures_in_a_row", DEFAULT_MAX_FAILURES))
    return RetryPolicy(**{k: v for k, v in saved.items() if k in ("base_s", "cap_s", "max_attempts", "max_age_s")}), failures


def rate_limits(published: Any) -> RateLimits | None:
    """A provider's published limits (presets.Limits) as the limits the loop keeps."""
    if published is None:
        return None
    return RateLimits(**{k: getattr(published, k) for k in _LIMIT_KEYS})


def preset_limits(provider: str | None) -> RateLimits | None:
    """The provider preset's published limits; None for a server without a preset."""
    from backend.presets import PRESETS

    return rate_limits(PRESETS[provider].limits) if provider in PRESETS else None


def limits_spec(limits: RateLimits | None) -> dict[str, Any]:
    """The limits a campaign ran with, for the journal (a resumed run keeps them)."""
    return {k: getattr(limits, k) if limits else None for k in _LIMIT_KEYS}


def limits_from_spec(spec: dict[str, Any]) -> RateLimits:
    saved = spec.get("limits") or {}
    return RateLimits(**{k: saved.get(k) for k in _LIMIT_KEYS})


def quota_lifts(resume_after: str | None) -> str | None:
    """The local time a quota-stopped campaign can continue, while that is still ahead."""
    if not resume_after:
        return None
    when = dt.datetime.fromisoformat(resume_after)
    return f"{when.astimezone():%Y-%m-%d %H:%M}" if when > utc_now() else None


def due_times(spec: dict[str, Any], skip_quota: str | None = None) -> dict[int, str]:
    """When each deferred recipient of a resumed campaign may be tried; with skip_quota (the
    campaign's resume_after), the quota's own recipient is due at once (resuming "now")."""
    return {pos: at for pos, at in (spec.get("deferred_until") or {}).items() if at != skip_quota}


def resume_draft(journal: Journal, campaign_id: str) -> tuple[Draft, list[int], dict[str, Any]]:
    """The draft of a journaled campaign's pending recipients, their journal rows, the spec.

    spec["deferred_until"] maps a position in draft.recipients to the ISO time a deferred
    recipient may be tried again (its backoff survives the restart).
    """
    spec = journal.spec(campaign_id)
    m = spec["message"]
    if m.get("uploaded_attachments"):
        raise SettingsError("attachments", "this campaign's attachments were added in the window by an older "
                            "version that did not keep them; send the rest as a new campaign")
    pending = journal.rows(campaign_id, ["pending", "deferred"])
    recipients = [row.recipient for row in pending]
    fields = sorted({k for r in recipients for k in r.fields}) or ["email"]
    imported = ImportResult(recipients, [], [], fields, "email", f"campaign {campaign_id}")
    draft = make_draft(imported, subject=m["subject"], html=m["html"], text=m["text"], from_address=m["from"],
                       delay_ms=spec.get("delay_ms", DEFAULT_DELAY_MS), reply_to=m.get("reply_to"),
                       attach=m.get("attach") or (), attach_column=m.get("attach_column"),
                       attach_dir=m.get("attach_dir"), unsubscribe=m.get("unsubscribe") or ())
    draft.id = campaign_id
    if spec.get("thread_of"):  # a follow-up: a reply in each recipient's thread
        draft.thread = thread_map(journal, spec["thread_of"])
    spec["attempts_before"] = {pos: row.result.attempts for pos, row in enumerate(pending) if row.result.attempts}
    # A deferred recipient's next try, and a pending one's delivery time (its local time).
    spec["deferred_until"] = {pos: row.result.next_attempt for pos, row in enumerate(pending)
                              if row.result.next_attempt}
    return draft, [row.index for row in pending], spec


def thread_map(journal: Journal, campaigns: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each address's Message-IDs in these campaigns (a campaign and its earlier follow-ups, in
    order): the thread a follow-up replies in."""
    thread: dict[str, list[str]] = {}
    for cid in campaigns:
        for row in journal.rows(cid, (*SENT_STATUSES, "uncertain")):
            if row.result.message_id:
                thread.setdefault(row.recipient.email.lower(), []).append(row.result.message_id)
    return {k: tuple(v) for k, v in thread.items()}


def gmail_sender(from_address: str | None, email: str, service: str = "Gmail") -> str:
    """The From of a Gmail API campaign: the signed-in address, with the name given, if any.

    `from_address` may be a name alone. Gmail sends as the signed-in account; a different
    address in From would be replaced by Gmail (or refused), so it is refused here, before
    anything is sent.
    """
    if not from_address or not from_address.strip():
        return email
    if "@" not in from_address and "<" not in from_address:  # just a name
        from_address = f"{from_address.strip()} <{email}>"
    sender = compose.parse_sender(from_address)
    if sender.address.lower() != email.lower():
        raise SettingsError("from", f"{service} sends as the signed-in account {email}, not {sender.address}: "
                            f"leave From empty or use {email} (a name may go with it)")
    if not sender.name:
        return email
    from email.headerregistry import Address

    return str(Address(display_name=sender.name, addr_spec=email))


def channel_of(spec: dict[str, Any]) -> str:
    """A journaled campaign's channel: 'gmail', 'microsoft' or 'smtp' (campaigns from before
    channels: smtp)."""
    return spec["channel"] if spec.get("channel") in ("gmail", "microsoft") else "smtp"


def apply_suppression(draft: Draft, suppression: Any) -> int:
    """Leave out every recipient on the suppression list; return how many."""
    _, suppressed = suppression.apply(draft.recipients)
    for recipient, reason in suppressed:
        draft.exclude(recipient, f"not sent: {reason}")
    return len(suppressed)


@dataclass(frozen=True)
class EmptyField:
    """A field the message prints as it is (no | default) that is empty for some recipients."""

    field: str
    lines: tuple[int, ...]

    def words(self, show: int = 8) -> str:
        n = len(self.lines)
        shown = ", ".join(map(str, self.lines[:show])) + (f" and {n - show} more" if n > show else "")
        who = "1 recipient has" if n == 1 else f"{n} recipients have"
        return (f"{who} an empty {self.field} (line{'' if n == 1 else 's'} {shown}): use a default, e.g. "
                f"{{{{ {self.field} | default(\"there\") }}}}, or skip them")


def empty_fields(draft: Draft) -> list[EmptyField]:
    """Fields used in the subject or body, not wrapped in | default(...), that are empty (or only
    blanks) for some of the recipients sent to; a field the list lacks is a problem, not this."""
    columns = set(draft.imported.fields)
    found = []
    for name in sorted(draft.template.bare_fields & columns):
        lines = tuple(r.line for r in draft.recipients if not str(r.fields.get(name) or "").strip())
        if lines:
            found.append(EmptyField(name, lines))
    return found


def exclude_empty(draft: Draft, names: Sequence[str]) -> int:
    """Skip them: leave out the rows where a field the message prints is empty; return how many."""
    left_out = 0
    for recipient in list(draft.recipients):
        empty = [n for n in names if not str(recipient.fields.get(n) or "").strip()]
        if empty:
            draft.exclude(recipient, f"not sent: empty {empty[0]}")
            left_out += 1
    return left_out


def strict_fields(draft: Draft) -> None:
    """--strict-fields: an empty field the message prints is an error, not a warning."""
    found = empty_fields(draft)
    if found:
        raise TemplateError(
            "; ".join(e.words() for e in found), field=found[0].field,
            fix=(f"Give a default in the template, e.g. {{{{ {found[0].field} | default(\"there\") }}}}.",
                 "Or fill in the empty cells in the list, or send without --strict-fields to send as it is."))


def exclude_problem_rows(draft: Draft, problems: Sequence[MailerError]) -> int:
    """Leave the recipients whose message cannot be built out of the run; return how many."""
    lines = {getattr(p, "row", None) for p in problems}
    excluded = 0
    for recipient in [r for r in draft.recipients if r.line in lines]:
        # Checked one by one: a pasted line can hold several recipients, not all of them broken.
        own = draft.problems(smtputf8=None, recipients=[recipient])
        if own:
            draft.exclude(recipient, f"not sent: {own[0].message}", own[0].category)
            excluded += 1
    return excluded


def left_out_rows(draft: Draft) -> list[ResultRow]:
    """The lines of the list nobody is sent to for: left out of the run (suppressed, or a
    problem), one per invalid address and one per duplicate line (sent once, to its first line)."""
    rows = list(draft.excluded.values())
    for bad in draft.imported.rejected:
        rows.append(ResultRow(bad.value, "skipped", "invalid_address", None, f"line {bad.line}: {bad.reason}",
                              line=bad.line))
    for dup in draft.imported.duplicates:
        rows.append(ResultRow(dup.email, "skipped", None, None,
                              f"duplicate of line {dup.first_line}: sent once, for that line", line=dup.line))
    return rows


def result_rows(outcome: CampaignOutcome, draft: Draft) -> list[ResultRow]:
    """A run's rows and the lines left out of it, each with its line in the list, in list order
    (the journal keeps the same rows: App.results reads them from there)."""
    rows = list(outcome.results) + left_out_rows(draft)
    return sorted(rows, key=lambda r: r.line if r.line is not None else float("inf"))


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    # A spreadsheet would run "=HYPERLINK(...)" from a server reply: neutralise formulas.
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def _csv_rows(rows: list[ResultRow]) -> Iterator[list[Any]]:
    yield list(RESULT_FIELDS)
    for row in rows:
        d = row.as_dict()
        yield [_cell(d[k]) for k in RESULT_FIELDS]


def results_csv_text(rows: list[ResultRow]) -> str:
    """Result rows as CSV text (browser mode hands it to the page as a download)."""
    buf = io.StringIO()
    csv.writer(buf).writerows(_csv_rows(rows))
    return buf.getvalue()


def write_results_csv(path: str | os.PathLike[str], rows: list[ResultRow]) -> Path:
    """Write result rows as CSV atomically (a crash never leaves half a file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    paths.atomic_write(target, results_csv_text(rows).encode("utf-8"))
    return target


def describe_error(exc: MailerError, provider: str | None = None) -> dict[str, Any]:
    """The error shape every adapter shows: category, message, cause, fix steps."""
    return exc.describe(provider)
