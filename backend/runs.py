"""One campaign on a worker thread: its state and counts, pause/resume/cancel, and a wait that
gives a terminal its Ctrl-C (pause after the current message)."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from backend import service
from backend.campaign import Control
from backend.errors import MailerError, internal_error
from backend.journal import Journal
from backend.mailbox.sent import CopyingTransport, SentCopies
from backend.model import CampaignOutcome, Clock
from backend.plans import Plan

log = logging.getLogger(__name__)

ACTIVE = ("running", "paused")


class Run:
    """A campaign being sent (or the last one sent) by this process."""

    def __init__(self, draft: service.Draft, plan: Plan, journal: Journal, emit: Callable[[dict[str, Any]], None],
                 *, resume: tuple[list[int], str] | None = None, deferred_until: dict[int, str] | None = None,
                 attempts_before: dict[int, int] | None = None, checked: bool = False,
                 clock: Clock | None = None) -> None:
        self.id, self.total, self.draft, self.plan = draft.id, len(draft.recipients), draft, plan
        self.provider = plan.provider
        self.control = Control()
        self.state = "running"
        self.error: dict[str, Any] | None = None
        self.exception: BaseException | None = None  # raised again by wait()
        self.counts: Counter[str] = Counter()
        self.outcome: CampaignOutcome | None = None
        self.sent_copy: dict[str, Any] | None = None  # what filing the copies in Sent did
        self.left_out: dict[str, Any] | None = None  # a resend: bounced and suppressed addresses left out
        # The account's last 24 hours as the run began (App.meter): with counts["sent"], the meter while it sends.
        self.meter: dict[str, Any] | None = None
        self._journal, self._emit = journal, emit
        self._resume, self._deferred, self._attempts, self._checked = resume, deferred_until, attempts_before, checked
        self._clock = clock or Clock()
        self._done = threading.Event()
        self.thread = threading.Thread(target=self._work, name=f"campaign-{draft.id}", daemon=True)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def start(self) -> Run:
        self.thread.start()
        return self

    def control_action(self, action: str) -> str:
        """pause, resume or cancel; the state it leads to."""
        getattr(self.control, action)()
        return {"cancel": "cancelling", "pause": "paused"}.get(action, "running")

    def snapshot(self) -> dict[str, Any]:
        return {"campaign": self.id, "state": self.state, "total": self.total, "counts": dict(self.counts),
                "meter": self.meter,
                "summary": self.outcome.summary() if self.outcome is not None else None, "error": self.error,
                "sent_copy": self.sent_copy, "left_out": self.left_out}

    def wait(self, on_interrupt: Callable[[], None] = lambda: None) -> CampaignOutcome:
        """Block until the run ends; Ctrl-C cancels after the current message (the campaign can be
        resumed). Raises what stopped the run, if anything did."""
        # Wait on our own event: a Ctrl-C that interrupts Thread.join can leave is_alive() False
        # while the worker still runs.
        while not self._done.is_set():
            try:
                self._done.wait(0.2)
            except KeyboardInterrupt:
                if not self.control.cancelled:
                    on_interrupt()
                self.control.cancel()
        self.thread.join()
        if self.exception is not None:
            raise self.exception
        assert self.outcome is not None
        return self.outcome

    def _state_event(self) -> None:
        self._emit({"type": "campaign-state", "campaign": self.id, "state": self.state, "total": self.total,
                    "summary": self.outcome.summary() if self.outcome is not None else None, "error": self.error,
                    "meter": self.meter})

    def _on_event(self, event: dict[str, Any]) -> None:
        if event["status"] != "sending":
            self.counts[event["status"]] += 1
        self._emit(event)

    def _on_pause(self, paused: bool) -> None:
        self.state = "paused" if paused else "running"
        self._state_event()

    def _work(self) -> None:
        self._state_event()
        plan, resume = self.plan, self._resume
        copies = None
        try:
            transports = plan.transports()
            if plan.sent_copy is not None:
                # Each message sent is filed in Sent by a thread of its own; what a killed run
                # left in the campaign's spool is filed first.
                journal = self._journal
                copies = SentCopies(plan.sent_copy, service.campaign_files_dir(self.id) / "sent-copies",
                                    emit=self._emit, mark=lambda filed: journal.mark_copies(self.id, filed)).start()
                transports = [CopyingTransport(t, copies) for t in transports]
            outcome = service.send(
                self.draft, transports, on_event=self._on_event, control=self.control,
                on_pause=self._on_pause, journal=self._journal, spec=plan.spec,
                account=resume[1] if resume else plan.account, indices=resume[0] if resume else None,
                limits=plan.limits, on_wait=self._emit, retry=plan.retry,
                max_failures_in_a_row=plan.max_failures_in_a_row, deferred_until=self._deferred,
                attempts_before=self._attempts, checked=self._checked, now=self._clock.now,
                clock=self._clock.monotonic, sleep=self._clock.sleep, **service.timing(plan.spec))
            self.outcome = outcome
            self.state = "failed" if not outcome.ok else {"cancelled": "cancelled", "scheduled_wait": "waiting"}.get(
                outcome.stopped or "", "finished")
            if outcome.error is not None:
                self.error = outcome.error.describe(self.provider)
            self.counts = Counter(outcome.counts)
        except MailerError as exc:
            self.state, self.error, self.exception = "failed", exc.describe(self.provider), exc
        except BaseException as exc:
            log.exception("campaign %s crashed", self.id)
            self.state, self.exception = "failed", exc
            self.error = internal_error("The campaign stopped because of an unexpected error.")
        finally:
            if copies is not None:
                try:
                    self.sent_copy = copies.finish()
                except Exception:
                    log.exception("campaign %s: filing the copies in Sent failed", self.id)
            self._done.set()
        self._state_event()
