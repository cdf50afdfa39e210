"""THE send loop, written once: verify, send each, record results, emit progress, stop cleanly."""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import re
import threading
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from backend.errors import (
    AuthError,
    ConnectError,
    DiskFullError,
    MailerError,
    TransportError,
    UncertainDelivery,
)
from backend.model import (  # noqa: F401 (re-exported: the loop's own vocabulary)
    DEFAULT_MAX_FAILURES,
    RESULT_FIELDS,
    STATUSES,
    CampaignOutcome,
    Outgoing,
    RateLimits,
    ResultRow,
    RetryPolicy,
    iso,
    utc_now,
)
from backend.recipients import Recipient
from backend.transports.base import Envelope, Receipt, Transport

log = logging.getLogger(__name__)


class RateLimiter:
    """Sliding windows over send times: before each send, how long until no window overflows."""

    def __init__(self, limits: RateLimits, earlier: Sequence[float] = ()) -> None:
        self.windows = limits.windows()
        self._words = limits.words()
        self.longest = max((w for w, _ in self.windows), default=0.0)
        self.sent: list[float] = sorted(earlier)  # clock() times of sends, oldest first

    def wait_time(self, now: float) -> float:
        """Seconds to wait so that one more send keeps every window within its limit."""
        old = bisect.bisect_right(self.sent, now - self.longest)
        if old > 1024:  # forget what no window can see any more, now and then (amortised)
            del self.sent[:old]
        wait = 0.0
        for window, limit in self.windows:
            first = bisect.bisect_right(self.sent, now - window)
            inside = len(self.sent) - first
            if inside >= limit:
                # The send that must leave this window before one more fits in it.
                wait = max(wait, self.sent[first + inside - int(limit)] + window - now)
        return wait

    def binding(self, now: float) -> str:
        """Which limit makes the next send wait, in words ("30 a minute")."""
        worst, words = 0.0, ""
        for window, limit in self.windows:
            first = bisect.bisect_right(self.sent, now - window)
            inside = len(self.sent) - first
            if inside >= limit:
                wait = self.sent[first + inside - int(limit)] + window - now
                if wait >= worst:
                    worst, words = wait, self._words.get(window, f"{limit:g} in {window:g} s")
        return words

    def record(self, now: float) -> None:
        self.sent.append(now)


class Control:
    """Pause, resume and cancel a running campaign from any thread; the loop polls it."""

    def __init__(self) -> None:
        self._running = threading.Event()
        self._running.set()
        self._cancelled = threading.Event()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def cancel(self) -> None:
        self._cancelled.set()
        self._running.set()  # a paused loop must wake up to see the cancel

    @property
    def paused(self) -> bool:
        return not self._running.is_set() and not self._cancelled.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def wait(self, seconds: float) -> None:
        """The delay between messages; returns at once on cancel."""
        self._cancelled.wait(seconds)

    def checkpoint(self, on_pause: Callable[[bool], None] = lambda paused: None) -> bool:
        """Block while paused (telling on_pause); False when the campaign is cancelled."""
        if not self._running.is_set() and not self.cancelled:
            on_pause(True)
            self._running.wait()
            on_pause(False)
        return not self.cancelled


Record = Callable[[int | None, "tuple[int, ResultRow] | None"], None]


def run_campaign(
    recipients: Sequence[Recipient],
    build: Callable[[Recipient], Outgoing],
    transport: Transport | Sequence[Transport],
    *,
    campaign_id: str,
    on_event: Callable[[dict[str, Any]], None] = lambda event: None,
    control: Control | None = None,
    on_pause: Callable[[bool], None] = lambda paused: None,
    record: Record | None = None,
    on_wait: Callable[[dict[str, Any]], None] = lambda wait: None,
    max_failures_in_a_row: int = DEFAULT_MAX_FAILURES,
    retry: RetryPolicy | None = None,
    limiter: RateLimiter | None = None,
    max_wait_s: float = 3600.0,
    initially_due: dict[int, float] | None = None,
    attempts_before: dict[int, int] | None = None,
    delay_s: float = 1.0,
    gate: Callable[[dt.datetime], dt.datetime] | None = None,
    hold_s: float | None = None,
    guard: Callable[[], MailerError | None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Any] | None = None,
    now: Callable[[], dt.datetime] = utc_now,
) -> CampaignOutcome:
    """Verify the connection, then send to each recipient in order, one event per change.

    transport: one Transport, or several (a pool: one connection each, sending side by side;
    the first is the one verified before anything is sent). record(sending, outcome) commits
    to the journal, in one transaction, the recipient about to be sent (before MAIL FROM) and
    the outcome of the previous one on the same connection; nobody hears of an outcome before
    it is committed. The rate limiter, the delay, pause and cancel act across the pool.
    on_wait hears of every wait longer than a second that is not the fixed delay: a sending
    limit or a retry's backoff ({"type": "campaign-wait", "until": ISO, "seconds", "reason"}).
    gate (a send window): the first moment at or after a wall-clock time when sending is allowed.
    hold_s: with a schedule, a wait for the window or a recipient's delivery time longer than this
    stops the run as 'waiting' (WaitHalt, with the time it can go on) instead of holding the app;
    the recipients' delivery times are the initially_due of those not tried yet.
    guard: asked every GUARD_EVERY_S between messages; a MailerError it returns stops the run (the
    campaign's bounce rate). 3 policy refusals or throttling answers among the last 20 stop it too.
    """
    transports = list(transport) if isinstance(transport, list | tuple) else [transport]
    control = control or Control()
    total = len(recipients)
    results = [ResultRow(r.email, line=r.line) for r in recipients]
    for i, n in (attempts_before or {}).items():  # tries in earlier runs count towards the limit
        results[i].attempts = n
    started = clock()
    outcome = CampaignOutcome(campaign_id, ok=True, results=results)

    try:
        transports[0].open()
    except MailerError as exc:
        log.warning("campaign %s: connection check failed: %s", campaign_id, exc.message)
        for row in results:
            row.error = f"not sent: {exc.message}"
        outcome.ok, outcome.error, outcome.stopped = False, exc, exc.category
        outcome.counts = Counter(r.status for r in results)
        outcome.duration_s = clock() - started
        return outcome

    run = _Pool(
        recipients, results, outcome, build, control=control, on_event=on_event, on_pause=on_pause,
        record=record, on_wait=on_wait, max_failures_in_a_row=max_failures_in_a_row, retry=retry or RetryPolicy(),
        limiter=limiter, max_wait_s=max_wait_s, waiting=dict(initially_due or {}), delay_s=delay_s,
        clock=clock, wait=sleep or control.wait, now=now)
    run.gate, run.hold_s, run.guard = gate, hold_s, guard
    extra = transports[1:max(1, min(len(transports), total))]
    threads = [threading.Thread(target=run.work, args=(t, k + 2, True), name=f"{campaign_id}-conn{k + 2}",
                                daemon=True) for k, t in enumerate(extra)]
    try:
        for thread in threads:
            thread.start()
        run.work(transports[0], 1, False)
        for thread in threads:
            thread.join()
    finally:
        for t in transports:
            t.close()
    if run.crashed is not None:
        raise run.crashed  # as on one connection: the caller marks the campaign interrupted

    reason = "stopped by the user; resume the campaign to send it" if outcome.stopped == "cancelled" else None
    if outcome.error is not None:
        reason = f"run stopped: {outcome.error.message}"
    for row in results:
        if row.status == "skipped" and row.error is None and reason:
            row.error = f"not sent: {reason}"
        elif row.status == "deferred" and reason:
            row.error = f"{row.error} (not retried: {reason})"
    outcome.counts = Counter(r.status for r in results)
    outcome.duration_s = clock() - started
    log.info("campaign %s finished: %s", campaign_id, dict(outcome.counts))
    return outcome


class _Pool:
    """One run's shared state: which recipient goes next, on whichever connection is free.

    Each connection's worker asks next() for a recipient (one worker at a time: the delay,
    the rate limiter, pause and the order of the list hold across the pool), sends it, and
    records the outcome. An outcome that ends a recipient (sent, failed) is committed with
    the same connection's next 'sending' mark, or alone before any wait: one commit per
    message, and at most one recipient per connection in flight (uncertain after a crash).
    """

    def __init__(self, recipients: Sequence[Recipient], results: list[ResultRow], outcome: CampaignOutcome,
                 build: Callable[[Recipient], Outgoing], *, control: Control,
                 on_event: Callable[[dict[str, Any]], None], on_pause: Callable[[bool], None],
                 record: Record | None, on_wait: Callable[[dict[str, Any]], None],
                 max_failures_in_a_row: int, retry: RetryPolicy,
                 limiter: RateLimiter | None, max_wait_s: float, waiting: dict[int, float], delay_s: float,
                 clock: Callable[[], float], wait: Callable[[float], Any],
                 now: Callable[[], dt.datetime]) -> None:
        self.recipients, self.results, self.outcome, self.build = recipients, results, outcome, build
        self.control, self.on_event, self.on_pause = control, on_event, on_pause
        self.record, self.on_wait = record, on_wait
        self.max_failures, self.retry, self.limiter, self.max_wait_s = max_failures_in_a_row, retry, limiter, max_wait_s
        self.waiting, self.delay_s, self.clock, self.wait, self.now = waiting, delay_s, clock, wait, now
        self.total = len(recipients)
        self.state = threading.Lock()  # the fields below
        self.changed = threading.Condition(self.state)
        self.dispatch = threading.Lock()  # one worker at a time picks the next recipient
        self.emitting = threading.Lock()  # events leave one at a time, each recipient's in order
        self.cursor = 0  # the first pass over the list
        self.returned: list[int] = []  # taken back before sending (a cancel or pause): next in line
        self.dispatched = 0
        self.in_flight = 0
        self.due: dict[int, float] = {}  # deferred recipient -> clock() time of its next attempt
        # clock() time of each recipient's first attempt (for the retry policy's age limit);
        # an array, not a dict: 8 bytes a recipient on a list of 100,000.
        self.first_try = array("d", [-1.0]) * self.total
        self.failures_in_a_row = 0
        self.uncertain_in_a_row = 0
        self.halted = False
        self.crashed: BaseException | None = None  # what stopped a connection unexpectedly
        self.gate: Callable[[dt.datetime], dt.datetime] | None = None  # a send window
        self.answers: deque[bool] = deque(maxlen=POLICY_WINDOW)  # the last answers: a policy refusal?
        self.guard: Callable[[], MailerError | None] | None = None  # asked every GUARD_EVERY_S
        self.guarded_at = -GUARD_EVERY_S
        self.hold_s: float | None = None  # a scheduled wait longer than this stops the run ('waiting')

    # -- events and the journal ---------------------------------------------------------

    def emit(self, i: int, status: str, row: ResultRow | None = None) -> None:
        event = {
            "type": "email-progress",
            "campaign": self.outcome.campaign,
            "current": i + 1,
            "total": self.total,
            "recipient": self.recipients[i].email,
            "status": status,
            "category": row.category if row else None,
            "code": row.smtp_code if row else None,
            "error": row.error if row else None,
            "ts": iso(self.now()),
        }
        log.debug("event %s", event)
        with self.emitting:
            self.on_event(event)

    def commit(self, sending: int | None, pending: list[int]) -> bool:
        """Commit a 'sending' mark and/or the outcome held back in pending, then tell of them.

        False when a cancel or a pause came as the held-back outcome was told: 'sending' is
        taken back then (its mark undone, nothing sent), so they act after that message, as
        they would have without the holding back.
        """
        while len(pending) > 1:
            # Outcomes of several messages on their way on one connection: the older ones first.
            older = pending.pop(0)
            try:
                if self.record is not None:
                    self.record(None, (older, self.results[older]))
            except DiskFullError:
                pending.insert(0, older)
                raise
            self.emit(older, self.results[older].status, self.results[older])
        done = pending.pop() if pending else None
        if self.record is not None and (sending is not None or done is not None):
            try:
                self.record(sending, (done, self.results[done]) if done is not None else None)
            except DiskFullError:
                if done is not None:
                    pending.append(done)  # still to be recorded: tried again as the run stops
                raise
        if done is not None:
            self.emit(done, self.results[done].status, self.results[done])
            if sending is not None and (self.control.cancelled or self.control.paused):
                if self.record is not None:
                    row = self.results[sending]
                    # Back to what the journal had: pending (a first try) or deferred (a retry).
                    self.record(None, (sending, replace(row, status="pending") if row.status == "skipped" else row))
                return False
        if sending is not None:
            self.emit(sending, "sending")
        return True

    def announce_wait(self, seconds: float, reason: str) -> None:
        if seconds >= 1.0:
            until = self.now() + dt.timedelta(seconds=seconds)
            self.on_wait({"type": "campaign-wait", "campaign": self.outcome.campaign, "until": iso(until),
                          "seconds": round(seconds, 1), "reason": reason})

    # -- the workers ---------------------------------------------------------------------

    def work(self, transport: Transport, number: int, must_open: bool) -> None:
        """One connection's loop: next recipient, send, record; until none is left."""
        if must_open:
            try:
                transport.open()
            except MailerError as exc:
                # The server may allow fewer connections than asked: the others carry on.
                log.warning("campaign %s: connection %d could not be opened (%s); sending on the others",
                            self.outcome.campaign, number, exc.message)
                return
        pending: list[int] = []  # outcomes not yet committed: one, or one per message on the way
        # A transport that pipelines (SmtpTransport on a server offering PIPELINING) takes the
        # next message before the last one's outcome is read: flights are those on their way,
        # each committed as 'sending' before its MAIL FROM.
        depth = getattr(transport, "pipeline_depth", 1) if hasattr(transport, "submit") else 1
        flights: deque[int] | None = deque() if depth > 1 else None
        sending = False
        try:
            while True:
                if flights and len(flights) >= depth:
                    self.collect_one(transport, flights, pending)
                    continue
                i = self.next(lambda: self.commit(None, pending), ready_only=bool(flights))
                if i is _LATER:  # the next one must wait: read what is on its way first
                    assert flights
                    self.collect_one(transport, flights, pending)
                    continue
                if i is None:
                    break
                sending = True
                self.attempt(i, transport, pending, flights)
                sending = False
            while flights:
                self.collect_one(transport, flights, pending)
            self.commit(None, pending)
        except DiskFullError as exc:
            # The journal cannot record more: the run pauses (every connection stops before its
            # next message), keeping what is recorded; it is resumed once there is room.
            if not isinstance(self.outcome.error, DiskFullError):  # said once
                log.warning("campaign %s: %s", self.outcome.campaign, exc.message)
            while flights:  # their outcomes are read, and recorded with the held-back one
                i = flights.popleft()
                _deliver(self.results[i], transport.collect, self.now)  # type: ignore[attr-defined]
                pending.append(i)
                with self.state:
                    self.in_flight -= 1
            with self.state:
                if sending:
                    self.in_flight -= 1
                self.changed.notify_all()
            self.stop(exc)
            self.settle(pending)
        except BaseException as exc:  # a bug or the journal failing: stop every connection
            log.exception("campaign %s: connection %d stopped unexpectedly", self.outcome.campaign, number)
            with self.state:
                self.crashed = self.crashed or exc
                self.halted = True
                # Messages on their way stay 'sending' in the journal: uncertain, never resent blindly.
                self.in_flight -= (1 if sending else 0) + len(flights or ())
                self.changed.notify_all()

    def settle(self, pending: list[int]) -> None:
        """Record the outcome held back on a connection as its run pauses for a full disk.

        The journal has made room by then if it can (its WAL written again from the start);
        if not, the recipient stays 'sending' there and is listed as uncertain: never silently
        lost or sent twice.
        """
        try:
            self.commit(None, pending)
        except DiskFullError as exc:
            for i in pending:
                log.warning("campaign %s: the outcome for %s (%s) could not be recorded (%s); the journal "
                            "lists it as uncertain", self.outcome.campaign, self.recipients[i].email,
                            self.results[i].status, exc.message)

    def next(self, before_wait: Callable[[], None], ready_only: bool = False) -> Any:
        """The next recipient to send to, after any wait (delay, limit, backoff, pause); None: stop.

        ready_only (messages are on their way on this connection): _LATER instead of any wait,
        so their outcomes are read before it."""
        if ready_only:
            if not self.dispatch.acquire(blocking=False):
                return _LATER
        elif not self.dispatch.acquire(timeout=0.005):
            before_wait()  # another connection is choosing, maybe waiting: tell what we know first
            self.dispatch.acquire()
        try:
            waited_delay = False
            while True:
                if self.halted:
                    return None
                if self.control.paused:
                    if ready_only:
                        return _LATER
                    before_wait()
                if not self.control.checkpoint(self.on_pause):
                    self.stop_cancelled()
                    return None
                with self.state:
                    kind, i, wait_s = self.pick()
                if kind == "done":
                    return None
                if ready_only and (kind == "idle" or wait_s > 0 or (
                        kind in ("first", "returned") and self.dispatched and self.delay_s > 0)):
                    return _LATER
                if kind == "idle":  # others are sending: their outcome may make one due
                    before_wait()
                    with self.state:
                        if self.in_flight:
                            self.changed.wait(0.1)
                    continue
                if kind in ("first", "returned") and self.dispatched and self.delay_s > 0 and not waited_delay:
                    before_wait()
                    self.wait(self.delay_s)
                    waited_delay = True
                    continue
                if wait_s > 0:
                    delivery = self.results[i].attempts == 0  # not tried yet: its local delivery time
                    if delivery and self.hold_s is not None and wait_s > self.hold_s:
                        if self.wait_for_flights(before_wait):
                            continue
                        self.stop(_wait_halt(self.now() + dt.timedelta(seconds=wait_s), "local delivery time"))
                        return None
                    before_wait()
                    self.announce_wait(wait_s, f"delivery at {self.recipients[i].email}'s local time" if delivery
                                       else f"retrying {self.recipients[i].email} (the server asked to try later)")
                    self.wait(wait_s)
                    continue
                if self.guard is not None and self.clock() - self.guarded_at >= GUARD_EVERY_S:
                    self.guarded_at = self.clock()
                    halt = self.guard()
                    if halt is not None:
                        self.stop(halt)
                        return None
                if self.gate is not None:
                    moment = self.now()
                    gap = (self.gate(moment) - moment).total_seconds()
                    if gap > 0:
                        if ready_only:
                            return _LATER
                        if self.hold_s is not None and gap > self.hold_s:
                            if self.wait_for_flights(before_wait):
                                continue
                            self.stop(_wait_halt(moment + dt.timedelta(seconds=gap), "send window"))
                            return None
                        before_wait()
                        self.announce_wait(gap, "send window")
                        self.wait(gap)
                        continue
                if self.limiter is not None:
                    pause = self.limiter.wait_time(self.clock())
                    if pause > self.max_wait_s:
                        # A day's quota: do not hold the app for hours; stop and say when it can go on.
                        self.stop(_quota_halt("the sending limit of this account is reached", pause, self.now()))
                        return None
                    if pause > 0:
                        if ready_only:
                            return _LATER
                        before_wait()
                        self.announce_wait(pause, f"sending limit: {self.limiter.binding(self.clock())}")
                        self.wait(pause)
                        if self.control.cancelled:
                            continue
                    self.limiter.record(self.clock())
                with self.state:
                    if kind == "first":
                        self.cursor += 1
                    elif kind == "returned":
                        self.returned.remove(i)
                    else:
                        del self.due[i]
                    self.dispatched += 1
                    self.in_flight += 1
                    if self.first_try[i] < 0:
                        self.first_try[i] = self.clock()
                return i
        finally:
            self.dispatch.release()

    def wait_for_flights(self, before_wait: Callable[[], None]) -> bool:
        """Before the run stops to wait: True (ask again) while messages are still on their way."""
        with self.state:
            if not self.in_flight:
                return False
        before_wait()
        with self.state:
            if self.in_flight:
                self.changed.wait(0.1)
        return True

    def pick(self) -> tuple[str, int, float]:
        """(returned|first|due|idle|done, recipient, seconds until it is due); under self.state."""
        while self.cursor < self.total and self.cursor in self.waiting:
            # Deferred in an earlier run: not before its time, after the first pass.
            self.due[self.cursor] = self.waiting[self.cursor]
            if self.first_try[self.cursor] < 0:
                self.first_try[self.cursor] = self.clock()
            self.cursor += 1
        if self.returned:
            return "returned", self.returned[0], 0.0
        if self.cursor < self.total:
            return "first", self.cursor, 0.0
        if self.due:
            i = min(self.due, key=self.due.__getitem__)
            return "due", i, max(0.0, self.due[i] - self.clock())
        return ("idle", -1, 0.0) if self.in_flight else ("done", -1, 0.0)

    def stop(self, halt: MailerError) -> None:
        with self.state:
            if not self.halted and self.outcome.stopped is None:
                _stop(self.outcome, halt)
            self.halted = True

    def stop_cancelled(self) -> None:
        with self.state:
            if self.outcome.stopped is None:
                self.outcome.stopped = "cancelled"
            self.halted = True

    def attempt(self, i: int, transport: Transport, pending: list[int], flights: deque[int] | None = None) -> None:
        """Send to recipient i on this connection and settle its row.

        flights: the connection pipelines (the transport's submit() and collect()); recipient i is
        submitted and added there, its row settled when collect_one() reads its outcome."""
        row = self.results[i]
        row.attempts += 1
        marked = False
        message_id = row.message_id

        def before_send() -> None:
            nonlocal marked
            if not self.commit(i, pending):  # committed as 'sending' before MAIL FROM
                raise _TakenBack
            marked = True

        send = transport.send if flights is None else transport.submit  # type: ignore[attr-defined]
        try:
            halt, asked = _send_one(self.recipients[i], row, self.build, send, self.now, before_send)
        except (_TakenBack, DiskFullError) as exc:
            # Not sent: its 'sending' mark was taken back, or could not be recorded at all.
            row.attempts -= 1
            row.message_id = message_id
            with self.state:
                if row.status == "deferred":
                    self.due[i] = self.clock()  # a retry: due again at once
                else:
                    self.returned.append(i)  # first in line again
                self.in_flight -= 1
                self.changed.notify_all()
            if isinstance(exc, DiskFullError):
                if not isinstance(self.outcome.error, DiskFullError):  # said once
                    log.warning("campaign %s: %s", self.outcome.campaign, exc.message)
                self.stop(exc)  # the held-back outcome is recorded as the worker stops
            return
        if halt is _SUBMITTED:
            assert flights is not None
            flights.append(i)  # on its way: collect_one() settles it
            return
        if not marked:  # the message could not be built: nothing was in flight
            self.commit(None, pending)
            self.emit(i, "sending")
        self.conclude(i, halt, asked, pending)

    def collect_one(self, transport: Transport, flights: deque[int], pending: list[int]) -> None:
        """Read the outcome of the oldest message on the way on a pipelined connection, settle it."""
        i = flights.popleft()
        halt, asked = _deliver(self.results[i], transport.collect, self.now)  # type: ignore[attr-defined]
        self.conclude(i, halt, asked, pending)

    def conclude(self, i: int, halt: MailerError | None, asked: float | None, pending: list[int]) -> None:
        """Settle recipient i's row after its attempt: retry or give up, stop the run if it must."""
        row = self.results[i]
        if halt is not None and halt.category == "quota_exceeded" and not isinstance(halt, QuotaHalt):
            # The server's quota: stop, and say when to come back (its own word, else a guess
            # from the reply: a daily quota lifts within a day, a short-term one within the hour).
            halt = _quota_halt(halt.message, asked or quota_wait_s(halt.message), self.now(), code=row.smtp_code)
        due_at = None
        with self.state:
            if halt is not None and row.status == "deferred":
                # The run stops with this recipient not sent: due again when the run is resumed
                # (a quota's recipient not before the quota lifts).
                row.next_attempt = halt.resume_after if isinstance(halt, QuotaHalt) else None
            elif row.status == "deferred":
                age = self.clock() - self.first_try[i]
                delay = max(self.retry.delay(row.attempts), asked or 0.0)  # never sooner than asked
                if row.attempts >= self.retry.max_attempts or age + delay > self.retry.max_age_s:
                    row.status = "failed"
                    row.error = f"gave up after {row.attempts} attempts: {row.error}"
                else:
                    due_at = self.clock() + delay
                    row.next_attempt = iso(self.now() + dt.timedelta(seconds=delay))
            else:
                row.next_attempt = None
            self.failures_in_a_row = self.failures_in_a_row + 1 if row.status == "failed" else 0
            failures = self.failures_in_a_row
            self.uncertain_in_a_row = self.uncertain_in_a_row + 1 if row.status == "uncertain" else 0
            uncertain = self.uncertain_in_a_row
        if halt is None and uncertain >= MAX_UNCERTAIN_IN_A_ROW:
            # The server keeps failing after it has the message (an outage, a broken link):
            # each more one is a message the user must decide about; stop and let them.
            halt = MailerError(
                f"{uncertain} messages in a row may or may not have been delivered (the last: {row.error}); "
                "the campaign is stopped until the server works again: resume it then, and choose "
                "what to do with the uncertain ones", category=row.category or "server_disconnected")
        with self.state:
            self.answers.append(policy_answer(row))
            refusals = sum(self.answers)
        if halt is None and refusals >= POLICY_PAUSE_AT:
            halt = _guard_halt(f"{refusals} of the last {len(self.answers)} answers were policy refusals or "
                               f"throttling (the last: {row.error})")
        if halt is None and self.max_failures and failures >= self.max_failures:
            # Something is wrong for everyone (a block, a policy): stop before burning the list.
            halt = MailerError(
                f"{failures} messages in a row failed (the last: {row.error}); the campaign "
                "is stopped so the rest of the list is not burnt; fix the cause and resume it",
                category=row.category or "message_rejected")
        pending.append(i)
        if halt is not None or row.status not in ("sent", "failed"):
            self.commit(None, pending)  # rare or final: committed and told at once
        with self.state:
            if due_at is not None and halt is None:
                self.due[i] = due_at
            self.in_flight -= 1
            self.changed.notify_all()
        if halt is not None:
            self.stop(halt)


_LATER: Any = object()  # _Pool.next(ready_only=True): the next recipient must wait
_SUBMITTED = MailerError("submitted")  # _deliver(): the message is on its way, its outcome comes later


class _TakenBack(Exception):
    """A recipient about to be sent was taken back: a cancel or a pause came first."""


class QuotaHalt(MailerError):
    """A quota stopped the run; .resume_after says when it can continue (ISO, UTC)."""

    default_category = "quota_exceeded"

    def __init__(self, message: str, resume_after: str, code: int | None = None) -> None:
        super().__init__(message)
        self.resume_after = resume_after
        self.code = code


class WaitHalt(QuotaHalt):
    """The run stopped to wait for its send window or a recipient's delivery time; it goes on
    by itself at .resume_after (the campaign is 'waiting', not paused by anyone)."""

    default_category = "scheduled_wait"


def _wait_halt(when: dt.datetime, why: str) -> WaitHalt:
    return WaitHalt(f"next message at {when.astimezone():%a %H:%M} ({why})", iso(when))


def quota_wait_s(reply: str) -> float:
    """How long a server's quota reply probably holds when the server did not say: a day for a
    daily limit (Gmail's 5.4.5, "daily", "per day", "24 hour"), else an hour."""
    text = reply.lower()
    daily = ("5.4.5", "daily", "per day", "24 hour", "24h", "day")
    return 24 * 3600.0 if any(word in text for word in daily) else 3600.0


def _quota_halt(what: str, wait_s: float, at: dt.datetime, code: int | None = None) -> QuotaHalt:
    when = at + dt.timedelta(seconds=wait_s)
    local = when.astimezone()
    return QuotaHalt(f"{what}; the campaign can continue after {local:%Y-%m-%d %H:%M} (resume it then)",
                     iso(when), code)


def _stop(outcome: CampaignOutcome, halt: MailerError) -> None:
    outcome.stopped, outcome.error = halt.category, halt
    if isinstance(halt, QuotaHalt):
        outcome.resume_after = halt.resume_after


def _send_one(
    recipient: Recipient,
    row: ResultRow,
    build: Callable[[Recipient], Outgoing],
    send: Callable[[Envelope, bytes], Receipt | None],
    now: Callable[[], dt.datetime],
    before_send: Callable[[], None] = lambda: None,
) -> tuple[MailerError | None, float | None]:
    """Send to one recipient, filling its row; return an error that must stop the run and the
    seconds the server asked to wait before trying again (None when it did not say).

    send: a transport's send(), or its submit() (returns None: the outcome comes later, and
    (_SUBMITTED, None) is returned)."""
    try:
        out = build(recipient)
    except MailerError as exc:
        _fill(row, "failed", exc)
        return None, None
    except Exception as exc:  # a bug must not lose the results of the whole run
        log.exception("building the message for line %s failed", recipient.line)
        _fill(row, "failed", MailerError(f"the message could not be built: {exc!r}", category="internal_error"))
        return None, None
    row.message_id = out.message_id
    before_send()  # committed as 'sending' before MAIL FROM: a crash now leaves it uncertain
    return _deliver(row, lambda: send(out.envelope, out.data), now, recipient.line)


def _deliver(row: ResultRow, send: Callable[[], Receipt | None], now: Callable[[], dt.datetime],
             line: int | None = None) -> tuple[MailerError | None, float | None]:
    """Fill the row with what send() brought (a receipt or an error); (halt, seconds asked)."""
    try:
        receipt = send()
    except UncertainDelivery as exc:
        _fill(row, "uncertain", exc)
        return None, None
    except MailerError as exc:
        asked = getattr(exc, "retry_after", None)
        # A temporary refusal (4xx), or a session the server closed again right after the
        # reconnect (before DATA: nothing was delivered), is tried again later; 5xx is final.
        dropped = isinstance(exc, ConnectError) and exc.category in ("server_disconnected", "rate_limited")
        transient = isinstance(exc, TransportError) and exc.transient and (exc.code is not None or dropped)
        if dropped:
            _fill(row, "deferred", exc)
            return None, asked
        # Login refused or required, a daily quota reached (it will not lift for the next
        # recipient either), or the server unreachable after the transport's one reconnect:
        # every later message would fail the same way, so stop; resume later. This message was
        # not delivered: it stays due for the resumed run, not failed.
        if isinstance(exc, AuthError | ConnectError) or exc.category in _STOPPERS:
            _fill(row, "deferred", exc)
            return exc, asked
        _fill(row, "deferred" if transient else "failed", exc)
        return None, asked
    except Exception as exc:
        # Unknown state of the connection and of this message: say so and stop.
        log.exception("sending to line %s (%s) failed unexpectedly", line, row.email)
        err = MailerError(f"unexpected error while sending, the message may or may not have "
                          f"been delivered: {exc!r}", category="internal_error")
        _fill(row, "uncertain", err)
        return err, None
    if receipt is None:
        return _SUBMITTED, None
    row.status = "sent"
    row.smtp_code = receipt.code
    row.sent_at = iso(now())
    return None, None


_STOPPERS = ("auth_failed", "quota_exceeded")
MAX_UNCERTAIN_IN_A_ROW = 3  # "may or may not have arrived" is the user's call: not many at once
# The account's guardrail: this many policy refusals (5.7.x) or throttling answers (4.7.x, not
# greylisting) among the last POLICY_WINDOW answers pause the campaign before the provider
# suspends the account.
POLICY_WINDOW, POLICY_PAUSE_AT = 20, 3
GUARD_EVERY_S = 30.0  # how often the run asks its guard (the campaign's bounce rate) between messages
_POLICY = re.compile(r"(?<![\d.])[45]\.7\.\d{1,3}(?![\d.])")


def policy_answer(row: ResultRow) -> bool:
    """Whether a recipient's last answer was a policy refusal or throttling (5.7.x, 4.7.x), not
    greylisting (a retry cures that)."""
    return row.status != "sent" and row.category != "greylisted" and bool(_POLICY.search(row.error or ""))


def _guard_halt(what: str) -> MailerError:
    return MailerError(f"the campaign is paused to protect your account: {what}", category="account_protection")


def _fill(row: ResultRow, status: str, exc: MailerError) -> None:
    row.status = status
    row.category = exc.category
    row.smtp_code = exc.code if isinstance(exc, TransportError) else None
    row.error = exc.message
