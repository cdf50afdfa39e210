"""Data shared by the send loop, the journal and the faces: results, outcomes, limits, clocks."""

from __future__ import annotations

import datetime as dt
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.errors import MailerError
from backend.transports.base import Envelope

STATUSES = ("sending", "sent", "failed", "deferred", "skipped", "uncertain", "bounced", "replied", "auto_replied")
# Sent, and what the mailbox said after (track): the message went out, so it counts as sent
# for quotas and for "already sent".
SENT_STATUSES = ("sent", "bounced", "replied", "auto_replied")
DEFAULT_MAX_FAILURES = 20  # failed recipients in a row that stop a campaign (0: never)
RESULT_FIELDS = ("email", "status", "category", "smtp_code", "error", "attempts", "sent_at", "message_id", "line",
                 "dsn_status", "notice", "notice_at")


def utc_now() -> dt.datetime:
    """The wall clock, in UTC; passed in so tests can fix it."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Clock:
    """Time as runs and the scheduler read it; tests pass a fake one that moves when slept on."""

    now: Callable[[], dt.datetime] = utc_now  # the wall clock (UTC): journal times, schedules
    monotonic: Callable[[], float] = time.monotonic  # the loop's clock: delays, limits, backoff
    sleep: Callable[[float], Any] | None = None  # None: the run's own wait (pause and cancel wake it)


def iso(moment: dt.datetime) -> str:
    """ISO-8601 with seconds and timezone, as events and results carry it."""
    return moment.isoformat(timespec="seconds")


@dataclass(frozen=True)
class Outgoing:
    """One rendered message ready for a transport."""

    envelope: Envelope
    data: bytes
    message_id: str


@dataclass(slots=True)
class ResultRow:
    """The outcome for one recipient: one row of the results CSV."""

    email: str
    status: str = "skipped"
    category: str | None = None
    smtp_code: int | None = None
    error: str | None = None
    attempts: int = 0
    sent_at: str | None = None
    message_id: str | None = None
    next_attempt: str | None = field(default=None, kw_only=True)  # a deferred one's (not a results column)
    line: int | None = field(default=None, kw_only=True)  # the row's line in the recipient list
    # What the mailbox said after sending (track): a bounce's status code (5.1.1), the notice in
    # words (a bounce's diagnostic, a delay, a reply's first 200 characters), and its date.
    dsn_status: str | None = field(default=None, kw_only=True)
    notice: str | None = field(default=None, kw_only=True)
    notice_at: str | None = field(default=None, kw_only=True)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CampaignOutcome:
    """What a run did: per-recipient rows, whether it could start, why it stopped early."""

    campaign: str
    ok: bool
    results: list[ResultRow]
    error: MailerError | None = None
    stopped: str | None = None
    resume_after: str | None = None  # a quota stopped the run: when it can continue (ISO)
    duration_s: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        """Counts per status, failures per category, duration and rate."""
        categories = Counter(r.category for r in self.results if r.status in ("failed", "uncertain") and r.category)
        sent = self.counts.get("sent", 0)
        return {
            "campaign": self.campaign,
            "total": len(self.results),
            **{s: self.counts.get(s, 0) for s in ("sent", "failed", "uncertain", "skipped", "deferred")},
            **{s: self.counts[s] for s in ("bounced", "replied", "auto_replied") if self.counts.get(s)},
            "failed_by_category": dict(categories),
            "stopped": self.stopped,
            "resume_after": self.resume_after,
            "duration_s": round(self.duration_s, 3),
            "rate_per_s": round(sent / self.duration_s, 2) if self.duration_s > 0 else None,
        }


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a temporarily refused recipient again: exponential backoff with jitter."""

    base_s: float = 60.0
    cap_s: float = 3600.0
    max_attempts: int = 5
    max_age_s: float = 24 * 3600.0
    jitter: float = 0.2  # +-20 %, so many deferred recipients do not all come back at once

    def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds before attempt number attempts+1."""
        plain = min(self.cap_s, self.base_s * 2 ** max(attempts - 1, 0))
        return plain * (1 + self.jitter * (2 * rand() - 1))


@dataclass(frozen=True)
class RateLimits:
    """How many messages an account may send per second, minute, hour and day (None: no limit)."""

    per_second: float | None = None
    per_minute: int | None = None
    per_hour: int | None = None
    per_day: int | None = None

    def windows(self) -> list[tuple[float, float]]:
        """(window seconds, whole number of messages in it) for each limit set; a fractional
        rate per second becomes its whole equivalent (0.5 a second: 1 in 2 s)."""
        pairs = [(1.0, self.per_second), (60.0, self.per_minute), (3600.0, self.per_hour), (86400.0, self.per_day)]
        out = []
        for window, n in pairs:
            if n:
                whole = max(1, math.floor(n))
                out.append((window * whole / n, float(whole)))
        return out

    def words(self) -> dict[float, str]:
        """Each window's limit as the user set it ("0.5 a second"), by window length."""
        names = (("per_second", "a second"), ("per_minute", "a minute"), ("per_hour", "an hour"),
                 ("per_day", "a day"))
        windows = iter(self.windows())
        return {next(windows)[0]: f"{getattr(self, k):g} {name}" for k, name in names if getattr(self, k)}
