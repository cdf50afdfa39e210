"""Typed requests the faces build and the core takes, and typed outcomes the faces word.

A face (the window's bridge, browser mode, the command line) parses its own input into these,
calls ``backend.app.App`` and words what comes back; no rule is written in a face.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.errors import MailerError
from backend.settings import AUTH_MODES, SECURITY_LABELS, SECURITY_MODES  # noqa: F401 (for the faces)

DEFAULT_DELAY_MS = 1000
CHANNELS = ("smtp", "gmail", "microsoft")
LOCAL_INBOX = "local-inbox"  # the provider key of the app's own test inbox
UNCERTAIN_CHOICES = ("ask", "resend", "skip")
LIMIT_KEYS = ("per_second", "per_minute", "per_hour", "per_day")
SENT_COPY_MODES = ("auto", "always", "never")
IMAP_SECURITY = ("ssl", "starttls")
BODY_FORMATS = ("html", "text", "markdown")  # how a message body is written
RETRY_KEYS = ("base_s", "cap_s", "max_attempts", "max_age_s", "max_failures_in_a_row")


@dataclass(frozen=True)
class AccountInput:
    """The account a campaign goes through: an SMTP server, the Google sign-in (channel gmail) or the
    Microsoft sign-in through Microsoft Graph (channel microsoft).

    ``password`` is the one given now; empty means the saved one (if any). It is never shown.
    """

    channel: str = "smtp"
    provider: str | None = None
    host: str = ""
    port: int | None = None
    security: str | None = None
    user: str = ""
    password: str = field(default="", repr=False)
    auth: str = "password"
    from_address: str = ""
    verify_certificates: bool = True
    allow_plaintext_auth: bool = False
    ca_file: str | None = None
    timeout: float = 30.0
    region: str | None = None
    # The mailbox where a copy of each message is filed in Sent (IMAP); the provider's when empty.
    imap_host: str = ""
    imap_port: int | None = None
    imap_security: str | None = None  # ssl | starttls


@dataclass(frozen=True)
class MessageInput:
    """What is sent: subject and bodies (templates), sender, attachments, unsubscribe, pace.

    The body is HTML (html), plain text (text; sent as one text/plain part), both, or Markdown
    (markdown: converted to the HTML once per campaign; raw HTML in it is escaped unless
    raw_html). signature: add the account's saved signature below the body (when it has one).
    """

    subject: str
    html: str | None = None
    text: str | None = None
    markdown: str | None = None
    raw_html: bool = False
    signature: bool = True
    from_address: str = ""
    reply_to: str | None = None
    attach: tuple[str, ...] = ()  # files for everyone, by path (the window adds its own in memory)
    attach_column: str | None = None
    attach_dir: str | None = None
    unsubscribe: tuple[str, ...] = ()
    delay_ms: int = DEFAULT_DELAY_MS

    @property
    def written(self) -> bool:
        """Whether a body was written at all (in any format)."""
        return any((b or "").strip() for b in (self.html, self.text, self.markdown))


MAX_FOLLOW_UPS = 3


def whole_numbers(text: str) -> tuple[int, ...] | None:
    """"20, 40, 80" (a warm-up's daily limits as typed) as numbers; None when one is not a whole number."""
    try:
        return tuple(int(n) for n in text.replace(" ", "").split(",") if n)
    except ValueError:
        return None
WARMUP_STEPS = (20, 40, 80, 160, 320, 640, 1000)  # the warm-up option's default ladder, a day each


@dataclass(frozen=True)
class FollowUpInput:
    """A follow-up step: sent `after_days` after the step before it to those who did not reply
    (nor bounce, nor unsubscribe); skipped when it could not go within `expire_days` of its day."""

    after_days: float
    html: str = ""
    text: str = ""
    subject: str = ""  # "": "Re: " and the campaign's subject, in the same thread
    expire_days: float = 2.0


@dataclass(frozen=True)
class ScheduleInput:
    """When a campaign's messages go: later, within a send window, at each recipient's local
    time, followed up. Times are in `tz` (None: the computer's zone)."""

    at: str | None = None  # start then ("2026-12-04 09:00" or ISO 8601 with an offset); None: now
    tz: str | None = None
    window: str | None = None  # "mon-fri 08:00-18:00": outside it the campaign waits
    local_time: str | None = None  # "09:00": each recipient when it is 09:00 where they are
    default_tz: str | None = None  # the zone of a row without one in its timezone column
    tz_column: str = "timezone"
    follow_ups: tuple[FollowUpInput, ...] = ()
    warmup: tuple[int, ...] = ()  # a new account's daily limits, day by day (20, 40, 80, ...); then the last


@dataclass(frozen=True)
class SendOptions:
    """How a run sends. Each given limit or retry value replaces the default's (the provider's, or a
    resumed campaign's own); a limit of 0 or None means none."""

    limits: dict[str, float | int | None] = field(default_factory=dict)
    retry: dict[str, float | int | None] = field(default_factory=dict)
    connections: int | None = None
    delay_ms: int | None = None  # a resume's new pace (None: the campaign's)
    skip_problem_rows: bool = False
    skip_sent_in: str | None = None  # a campaign id: leave out whoever it already sent to
    skip_empty: tuple[str, ...] = ()  # fields: leave out the rows where one of them is empty
    # A copy of each sent message in the account's Sent folder over IMAP: auto (off where the
    # provider's server files one itself, and for the local test inbox), always, never.
    sent_copy: str = "auto"
    schedule: ScheduleInput = field(default_factory=ScheduleInput)


# The Send section's fields a draft keeps, as the page has them (text; checked when sending).
DRAFT_SEND_FIELDS = ("delay", "connections", "limit-second", "limit-minute", "limit-hour", "limit-day",
                     "retry-base", "retry-cap", "retry-attempts", "retry-max-age", "max-failures",
                     # Review & send's When: send now or later, its time and zone, window, local time
                     "when", "when-at", "when-tz", "when-window", "when-local", "when-local-time", "when-default-tz",
                     "when-warmup", "when-warmup-steps")


@dataclass(frozen=True)
class SavedDraft:
    """The campaign being written, kept as the user types so it survives a restart: the
    message and the Send settings. Never a password."""

    subject: str = ""
    body: str = ""
    format: str = "html"  # html | text | markdown
    raw_html: bool = False  # markdown: raw HTML in it allowed
    unsubscribe: tuple[str, ...] = ()
    send: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResumeRequest:
    """Continue a journaled campaign: what to do with uncertain recipients, whether to go before
    a quota lifts, and (optionally) the account settings to use instead of the campaign's."""

    uncertain: str = "ask"
    now: bool = False
    account: AccountInput | None = None
    use_current_settings: bool | None = None  # None: refuse with SettingsChanged when they differ
    options: SendOptions = field(default_factory=SendOptions)


# -- outcomes the faces word ------------------------------------------------------------------


class NotNow(MailerError):
    """An action that does not fit the current state (nothing imported, a run in progress)."""

    default_category = "action_unavailable"


class QuotaNotLifted(NotNow):
    """A campaign stopped by a sending quota, resumed before the time the quota lifts."""

    def __init__(self, campaign: str, lifts: str) -> None:
        super().__init__(f"a sending quota stopped campaign {campaign}; it can continue after {lifts}: resume it "
                         "then, or try now anyway (the server may refuse again)")
        self.campaign, self.lifts = campaign, lifts


class RowProblems(MailerError):
    """Rows whose message cannot be built; each problem keeps its own category, line and fix."""

    def __init__(self, problems: Sequence[MailerError]) -> None:
        rows = len({getattr(p, "row", None) for p in problems})
        first = problems[0]
        super().__init__(f"{rows} row(s) cannot be built; first: {first.message}", category=first.category,
                         fix=first.extra_fix)
        self.problems = list(problems)

    def rows(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Each problem as data: line, field, message, category and its own fix steps."""
        return [{"line": getattr(p, "row", None), "field": getattr(p, "field", None), "message": p.message,
                 "category": p.category, "fix": p.fix_steps()} for p in self.problems[:limit]]


class UncertainLeft(MailerError):
    """A resume met recipients that may or may not have got the message: the user chooses."""

    default_category = "action_unavailable"

    def __init__(self, rows: Sequence[Any]) -> None:
        super().__init__(f"{len(rows)} recipient(s) may or may not have got the message (the app stopped while "
                         "sending to them): choose to send to them again or to skip them")
        self.uncertain = list(rows)  # journal rows: .recipient (email, line), .result (error)


class NothingLeft(MailerError):
    """Nobody is left to send to; ``finished`` when the campaign was marked finished for it."""

    default_category = "action_unavailable"

    def __init__(self, message: str, *, finished: bool = False) -> None:
        super().__init__(message)
        self.finished = finished


class SettingsChanged(MailerError):
    """The account settings given differ from the campaign's: resume with which?"""

    default_category = "action_unavailable"

    def __init__(self, was: str, now: str) -> None:
        super().__init__(f"this campaign was sent through {was}; the settings now given are {now}: "
                         "choose whether to resume with the settings now given")
        self.was, self.now = was, now


class CheckFailed(MailerError):
    """A connection check failed at one of its steps; ``steps`` lists every step's result."""

    def __init__(self, error: MailerError, steps: list[dict[str, Any]]) -> None:
        super().__init__(error.message, category=error.category, fix=error.extra_fix)
        self.error, self.steps = error, steps
