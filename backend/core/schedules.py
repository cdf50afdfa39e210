"""Time, part of the App: campaigns that start later, wait for a send window or for each
recipient's local time, continue by themselves after a daily limit, and follow-ups that go to
those who did not reply; `run-due` (and the window's own ticker) sends whatever is due.

A mixin of backend.app.App: its methods use the App's state (self.journal, self.clock, ...).
Every process that sends a campaign claims it in the journal first (one statement decides), and
a follow-up's campaign id is fixed, so the window, the timer and the command line never send
one campaign, or one follow-up, twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from typing import Any

from backend import service
from backend.errors import MailerError, SettingsError
from backend.inputs import (
    MAX_FOLLOW_UPS,
    FollowUpInput,
    NothingLeft,
    ResumeRequest,
    ScheduleInput,
    UncertainLeft,
)
from backend.model import SENT_STATUSES, iso
from backend.recipients import ImportResult

log = logging.getLogger(__name__)

START_SLACK_S = 30  # a start this close to now is "now"
TICK_S = 30.0  # the window looks for due campaigns this often
MAX_AHEAD_DAYS = 366
# An auto-reply that says the address is gone for good ("no longer with the company", "my new
# address is ...") leaves the recipient out of follow-ups, as a reply does; other auto-replies
# (out of office) are no answer.
_MOVED = re.compile(r"no longer (?:with|at|work|employed|in use|active|monitored|valid)|has left|have left|"
                    r"new (?:e-?mail )?address|address (?:has )?changed|left the (?:company|organi[sz]ation)",
                    re.IGNORECASE)


def _schedule():  # type: ignore[no-untyped-def]
    from backend import schedule  # zoneinfo and tzlocal: loaded when a campaign has a time

    return schedule


def _when(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def _warmup_end(total: int, steps: list[int], start: dt.datetime, window: Any) -> dt.datetime:
    """When the last message of a warm-up goes: day k sends its step (the last step after)."""
    day, left = 0, total
    while True:
        left -= steps[min(day, len(steps) - 1)]
        if left <= 0:
            moment = start + dt.timedelta(days=day)
            return window.next_open(moment) if window is not None else moment
        day += 1


class Schedules:
    """Send later, send windows, local time, spreading over days, follow-ups (a part of App)."""

    # -- deciding a new campaign's times ---------------------------------------------------------

    def with_schedule(self, draft: service.Draft, plan: Any, s: ScheduleInput) -> Any:
        """The plan with its times (kept in its spec, so a restart or the timer knows them): the
        start, the send window, each recipient's delivery time, the follow-ups; checked, every
        problem naming its field or its line."""
        saved, due = self._times(s, draft, plan.limits.per_day if plan.limits else None, plan.account)
        plan.spec["schedule"], plan.due = saved, due
        if s.follow_ups:
            self._readable(plan.spec)
            plan.spec["follow_ups"] = [self._follow_up_spec(k, f) for k, f in enumerate(self._checked(s.follow_ups), 1)]
        return plan

    def _times(self, s: ScheduleInput, draft: service.Draft, per_day: int | None,
               account: str | None) -> tuple[dict[str, Any], dict[int, str]]:
        """The schedule a campaign keeps in its spec, and its recipients' delivery times."""
        sch, now = _schedule(), self.clock.now()
        tz = s.tz or sch.local_zone()
        sch.zone(tz, "tz")
        saved: dict[str, Any] = {"tz": tz, "continue": True}
        start = now
        if s.at:
            start = sch.parse_at(s.at, tz)
            if start < now - dt.timedelta(seconds=60):
                raise SettingsError("at", f"{sch.when_words(start, tz)} has passed; give a time from now on")
            if start > now + dt.timedelta(days=MAX_AHEAD_DAYS):
                raise SettingsError("at", "is more than a year ahead")
            if start > now + dt.timedelta(seconds=START_SLACK_S):
                saved["at"] = iso(start)
        window = sch.SendWindow.parse(s.window, tz) if s.window else None
        if window is not None:
            saved["window"], saved["window_words"] = window.as_spec(), window.words()
        if s.warmup:
            if len(s.warmup) > 60 or any(not 1 <= n <= 100_000 for n in s.warmup):
                raise SettingsError("warmup", "give up to 60 daily limits from 1 to 100000, such as 20, 40, 80")
            saved.update(warmup=list(s.warmup), warmup_start=iso(start))
        due: dict[int, str] = {}
        if s.local_time:
            rows = [(i, r.fields.get(s.tz_column), r.line) for i, r in enumerate(draft.recipients)]
            when, problems = sch.delivery_times(rows, s.local_time, s.default_tz or tz, start)
            if problems:
                more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
                raise SettingsError(s.tz_column, "; ".join(words for _, words in problems[:3]) + more)
            saved.update(local_time=f"{sch.parse_clock(s.local_time):%H:%M}", default_tz=s.default_tz or tz,
                         tz_column=s.tz_column)
            due = {i: iso(t) for i, t in when.items()}
        ends = sch.spread_end(len(draft.recipients), per_day, start, window=window,
                              sent_before=self._sent_last_day(account, start) if per_day and account else ())
        if s.warmup:
            ends = _warmup_end(len(draft.recipients), list(s.warmup), start, window)
        if due:
            ends = max(ends, max(dt.datetime.fromisoformat(t) for t in due.values()))
        saved["ends_about"] = iso(ends)
        return saved, due

    def when(self, s: ScheduleInput, draft: service.Draft, per_day: int | None, account: str | None) -> dict[str, Any]:
        """Review & send's words for the campaign's times: when it starts, its window, each
        recipient's local time, when it should end (a daily limit spreads it over days), the
        follow-ups; a problem in the times as `problem` (naming the field)."""
        sch = _schedule()
        try:
            saved, _ = self._times(s, draft, per_day, account)
            self._checked(s.follow_ups)
        except MailerError as exc:
            return {"problem": exc.message, "field": getattr(exc, "field", None), "zone": s.tz or sch.local_zone()}
        at, ends = _when(saved.get("at")), _when(saved["ends_about"])
        start = at or self.clock.now()
        return {"problem": None, "zone": saved["tz"], "at": saved.get("at"),
                "starts": f"{sch.when_words(at, saved['tz'])}" if at else "now",
                "window": saved.get("window_words"), "local_time": saved.get("local_time"),
                "ends_about": saved["ends_about"],
                "ends": sch.days_words(start, ends, saved["tz"]) if ends and ends - start > dt.timedelta(hours=1) else "",
                "follow_ups": [f"{f.after_days:g} day{'' if f.after_days == 1 else 's'} after, if no reply"
                               for f in s.follow_ups]}

    @staticmethod
    def _readable(spec: dict[str, Any]) -> None:
        """Follow-ups need the mailbox the replies come to (or the local test inbox, which nobody
        can reply to): refused now rather than never sent later."""
        from backend.presets import imap_server

        s = spec.get("settings") or {}
        if s.get("local_inbox") or spec.get("mailbox") or spec.get("sent_copy"):
            return
        if service.channel_of(spec) == "gmail":
            from backend.core.signins import _google

            if _google().saved_profile(reading=True):
                return
        elif imap_server(s.get("provider")) is not None and s.get("user"):
            return
        raise SettingsError("follow_ups", "a follow-up goes only to those who did not reply, so the app reads your "
                            "mailbox first: give its IMAP server (Account > Advanced, or --imap-host)"
                            + (", or allow reading bounces and replies with Google (bulk-mailer gmail login --read)"
                               if service.channel_of(spec) == "gmail" else ""))

    @staticmethod
    def _checked(follow_ups: tuple[FollowUpInput, ...]) -> tuple[FollowUpInput, ...]:
        if len(follow_ups) > MAX_FOLLOW_UPS:
            raise SettingsError("follow_ups", f"a campaign can have at most {MAX_FOLLOW_UPS} follow-ups")
        for k, f in enumerate(follow_ups, 1):
            if not 0 < f.after_days <= 90:
                raise SettingsError(f"follow_ups[{k}].after_days", "give a number of days from 1 to 90 "
                                    "(fractions allowed: 0.5 is 12 hours)")
            if not 0 <= f.expire_days <= 30:
                raise SettingsError(f"follow_ups[{k}].expire_days", "give a number of days from 0 to 30")
            if not (f.html.strip() or f.text.strip()):
                raise SettingsError(f"follow_ups[{k}].body", "write the follow-up's message")
            from backend import compose

            compose.Template(f.subject or "Re: x", html=f.html or None, text=f.text or None)  # errors name the field
        return follow_ups

    @staticmethod
    def _follow_up_spec(step: int, f: FollowUpInput) -> dict[str, Any]:
        return {"step": step, "after_days": f.after_days, "expire_days": f.expire_days, "subject": f.subject,
                "html": f.html, "text": f.text, "state": "waiting", "reason": None}

    def _sent_last_day(self, account: str, at: dt.datetime) -> list[dt.datetime]:
        since = iso(at - dt.timedelta(days=1))
        return [dt.datetime.fromisoformat(t) for t in self.journal.sent_since(account, since)]

    def meter(self, account: str | None, per_day: int | None) -> dict[str, Any]:
        """The account's messages of the last 24 hours (every campaign, from the journal) against
        its daily limit: shown before Send and while it sends."""
        if not account:  # the local test inbox: nothing leaves the computer, nothing counts
            return {"account": False, "sent": 0, "per_day": None, "left": None,
                    "words": "The local test inbox counts nothing: no message leaves this computer"}
        sent = len(self._sent_last_day(account, self.clock.now()))
        words = f"This account sent {sent:,} message{'' if sent == 1 else 's'} in the last 24 hours"
        words += f", of {per_day:,} a day" if per_day else " (no daily limit set)"
        return {"account": True, "sent": sent, "per_day": per_day, "left": max(per_day - sent, 0) if per_day else None,
                "words": words}

    def launch(self, draft: service.Draft, plan: Any) -> dict[str, Any]:
        """Start a prepared campaign now, or journal it as scheduled when its start is ahead."""
        at = (plan.spec.get("schedule") or {}).get("at")
        total = len(draft.recipients)
        if not at:
            run = self.start(draft, plan)
            return {"campaign": run.id, "total": run.total, "state": "running"}
        self._check_unattended(plan)
        with self._lock:
            service.record_new(draft, self.journal, plan.spec, account=plan.account, limits=plan.limits,
                               retry=plan.retry, max_failures_in_a_row=plan.max_failures_in_a_row,
                               state="scheduled", resume_after=at, due=plan.due)
        words = f"Scheduled for {_schedule().when_words(_when(at), plan.spec['schedule']['tz'])}"
        self.emit({"type": "campaign-state", "campaign": draft.id, "state": "scheduled", "total": total,
                   "at": at, "words": words, "summary": None, "error": None})
        return {"campaign": draft.id, "total": total, "state": "scheduled", "at": at, "words": words}

    def _check_unattended(self, plan: Any) -> None:
        """A campaign that starts later is sent without the user: its password must be saved."""
        s = plan.spec.get("settings") or {}
        if s.get("local_inbox") or not s.get("user") or s.get("auth") == "xoauth2":
            return
        try:
            self.password(s["user"], s["host"])
        except MailerError:
            raise SettingsError("password", "a campaign that starts later needs its password saved: tick Remember "
                                "password (or give --save-password) and schedule it again") from None

    # -- what is due ----------------------------------------------------------------------------

    def due(self, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """What is due now, oldest first: campaigns to start or continue, follow-ups to send."""
        now = now or self.clock.now()
        found: list[dict[str, Any]] = []
        for cid, state in self.journal.due_campaigns(iso(now)):
            if state in ("scheduled", "waiting"):
                found.append({"kind": "start" if state == "scheduled" else "continue", "campaign": cid})
            elif (self.journal.spec(cid).get("schedule") or {}).get("continue"):
                found.append({"kind": "continue", "campaign": cid})  # a daily limit lifted
        for cid in self.journal.waiting_follow_ups():
            step = self._step_due(cid, now)
            if step is not None:
                found.append({"kind": "follow-up", "campaign": cid, "step": step})
        return found

    def _step_due(self, cid: str, now: dt.datetime) -> int | None:
        """The follow-up step of a finished campaign that is due now (expired ones skipped)."""
        spec = self.journal.spec(cid)
        steps = spec.get("follow_ups") or []
        for k, step in enumerate(steps, 1):
            if step["state"] != "waiting":
                continue
            child = self._step_campaign(cid, k)
            if self._exists(child):
                continue  # started: its own campaign now
            before = cid if k == 1 else self._step_campaign(cid, k - 1)
            if k > 1 and not self._exists(before):
                if steps[k - 2]["state"] in ("skipped", "cancelled"):
                    step.update(state="skipped", reason=f"not sent: follow-up {k - 1} was not sent")
                    self._set_step(cid, k, step["state"], step["reason"])
                    continue
                return None
            if self.journal.state_of(before) != "finished":
                return None
            due = self._step_time(cid, k, before)
            if due is None or due > now:
                return None
            if _schedule().expired(due, now, step["expire_days"]):
                step.update(state="skipped", reason=f"not sent: its day ({_schedule().when_words(due)}) passed more "
                            f"than {step['expire_days']:g} day(s) ago while the app could not run")
                self._set_step(cid, k, step["state"], step["reason"])
                continue
            return k
        return None

    def _step_time(self, cid: str, k: int, before: str) -> dt.datetime | None:
        last = self.journal.last_sent(before)
        if last is None:
            return None
        spec = self.journal.spec(cid)
        window = (spec.get("schedule") or {}).get("window")
        sch = _schedule()
        return sch.follow_up_due(_when(last), spec["follow_ups"][k - 1]["after_days"],
                                 sch.SendWindow.from_spec(window) if window else None)

    @staticmethod
    def _step_campaign(cid: str, k: int) -> str:
        return f"{cid}-f{k}"

    def _exists(self, cid: str) -> bool:
        return self.journal.state_of(cid) is not None

    def _set_step(self, cid: str, k: int, state: str, reason: str | None) -> None:
        spec = self.journal.spec(cid)
        spec["follow_ups"][k - 1].update(state=state, reason=reason)
        self.journal.set_spec(cid, spec)

    # -- sending what is due --------------------------------------------------------------------

    def start_due(self, now: dt.datetime | None = None, passphrase: str | None = None) -> dict[str, Any] | None:
        """Start the first due campaign or follow-up on a worker thread, when nothing is being sent
        here; what was started (or why it could not be), or None when nothing is due."""
        if self.run is not None and self.run.active:
            return None
        for item in self.due(now):
            result = self._start_item(item, passphrase)
            if result.get("run") is not None:
                return result
            if result.get("error"):  # this one waits for the user; the others still go
                log.warning("due %s %s not started: %s", item["kind"], item["campaign"], result["error"]["message"])
        return None

    def run_due(self, now: dt.datetime | None = None, passphrase: str | None = None) -> list[dict[str, Any]]:
        """Send whatever is due, one after the other, and return what each did (run-due)."""
        done: list[dict[str, Any]] = []
        for item in self.due(now):
            result = self._start_item(item, passphrase)
            run = result.pop("run", None)
            if run is not None:
                try:
                    outcome = run.wait()
                    result.update(state=run.state, counts=dict(outcome.counts), campaign=run.id)
                except MailerError as exc:
                    result.update(state="failed", error=exc.describe(run.provider))
            done.append(result)
        return done

    def _start_item(self, item: dict[str, Any], passphrase: str | None) -> dict[str, Any]:
        result = dict(item)
        try:
            if item["kind"] == "follow-up":
                result["run"] = self.send_follow_up(item["campaign"], item["step"], passphrase=passphrase)
            else:
                result["run"] = self.resume(item["campaign"], ResumeRequest(uncertain="ask", now=True), passphrase)
            result["campaign"] = result["run"].id
        except NothingLeft:
            result["skipped"] = "nothing is left to send (another window or process sent it)"
        except UncertainLeft as exc:
            result["error"] = {"category": "action_unavailable", "message": f"{len(exc.uncertain)} recipient(s) are "
                               "uncertain (the app stopped while sending): decide in History, or with bulk-mailer "
                               f"resume {item['campaign']}, whether to send to them again"}
        except MailerError as exc:
            if exc.category == "action_unavailable":  # another process has it: it is not ours to send
                result["skipped"] = exc.message
            else:
                log.warning("due %s %s: %s", item["kind"], item["campaign"], exc.message)
                result["error"] = exc.describe()
        return result

    # -- follow-ups -----------------------------------------------------------------------------

    def send_follow_up(self, cid: str, k: int, passphrase: str | None = None) -> Any:
        """Follow-up step k of campaign cid: the mailbox read first (replies and bounces of the
        campaign and of its earlier steps, less than a minute before the first message), then
        sent, in each recipient's thread, to those who did not reply, bounce, move away or
        unsubscribe."""
        from backend.runs import Run

        spec = self.journal.spec(cid)
        step = spec["follow_ups"][k - 1]
        chain = [cid] + [self._step_campaign(cid, j) for j in range(1, k)]
        try:
            for past in chain:
                if not (self.journal.spec(past).get("settings") or {}).get("local_inbox"):
                    self.track(past, passphrase=passphrase)  # nothing can reply to the local test inbox
        except MailerError as exc:
            self._set_step(cid, k, "waiting", f"waiting: the mailbox could not be read for replies ({exc.message}); "
                           "tried again at the next chance")
            raise
        recipients, left_out = self._follow_up_recipients(chain)
        m = spec["message"]
        fields = sorted({f for r in recipients for f in r.fields}) or ["email"]
        imported = ImportResult(recipients, [], [], fields, "email", f"follow-up {k} of {cid}")
        draft = service.make_draft(imported, subject=step["subject"] or f"Re: {m['subject']}", html=step["html"] or None,
                                   text=step["text"] or None, from_address=m["from"], reply_to=m.get("reply_to"),
                                   delay_ms=spec.get("delay_ms", service.DEFAULT_DELAY_MS),
                                   unsubscribe=m.get("unsubscribe") or ())
        draft.id = self._step_campaign(cid, k)
        draft.thread = service.thread_map(self.journal, chain)
        for recipient, why in left_out:
            draft.imported.recipients.append(recipient)
            draft.exclude(recipient, why)
        child = {k2: v for k2, v in spec.items() if k2 not in ("follow_ups", "attempts_before", "deferred_until")}
        child.update(message={**m, "subject": draft.template.subject_source, "html": step["html"] or None,
                              "text": step["text"] or None, "attach": [], "kept_attachments": False},
                     follow_up_of=cid, step=k, thread_of=chain,
                     schedule={key: v for key, v in (spec.get("schedule") or {}).items()
                               if key in ("tz", "window", "window_words", "continue")})
        with self._lock:
            self.ensure_idle()
            plan = self._plan_from_spec(draft, child, ResumeRequest(use_current_settings=False), passphrase)
            plan.spec = child
            service.record_new(draft, self.journal, child, account=plan.account, limits=plan.limits,
                               retry=plan.retry, max_failures_in_a_row=plan.max_failures_in_a_row)
            self._set_step(cid, k, "started", None)
            run = Run(draft, plan, self.journal, self.emit, resume=(list(range(len(draft.recipients))), plan.account),
                      clock=self.clock)
            return self._start(run)

    def _follow_up_recipients(self, chain: list[str]) -> tuple[list[Any], list[tuple[Any, str]]]:
        """Who gets the next step: those the last step reached, less whoever replied, bounced,
        moved away (an auto-reply saying so) or is on the suppression list; and those left out, why."""
        gone: dict[str, str] = {}
        for past in chain:
            for row in self.journal.rows(past, ("replied", "bounced", "auto_replied")):
                status, address = row.result.status, row.recipient.email.lower()
                if status == "replied":
                    gone[address] = "not sent: replied"
                elif status == "bounced":
                    gone[address] = "not sent: the earlier message bounced"
                elif _MOVED.search(row.result.notice or ""):
                    gone.setdefault(address, "not sent: an auto-reply said the address is no longer used")
        keep, out = [], []
        for row in self.journal.rows(chain[-1], SENT_STATUSES):
            recipient = row.recipient
            why = gone.get(recipient.email.lower())
            if why is None and recipient.email in self.suppression:
                why = "not sent: on the suppression list"
            (out.append((recipient, why)) if why else keep.append(recipient))
        return keep, out

    # -- changing a scheduled campaign ----------------------------------------------------------

    def reschedule(self, cid: str, *, at: str | None = None, tz: str | None = None, subject: str | None = None,
                   html: str | None = None, text: str | None = None) -> dict[str, Any]:
        """Change a campaign that has not started: its time and/or its message."""
        cid = self.campaign_id(cid)
        info = self.journal.get(cid)
        if info.state != "scheduled":
            raise SettingsError("campaign", f"campaign {cid} is {info.state}: only a campaign that has not started "
                                "can be changed")
        spec = self.journal.spec(cid)
        sch, saved = _schedule(), spec["schedule"]
        start = None
        if at is not None:
            zone = tz or saved["tz"]
            when = sch.parse_at(at, zone)
            if when < self.clock.now() - dt.timedelta(seconds=60):
                raise SettingsError("at", f"{sch.when_words(when, zone)} has passed; give a time from now on")
            saved.update(at=iso(when), tz=zone)
            start = iso(when)
        if subject is not None or html is not None or text is not None:
            m = spec["message"]
            new = {**m, **{k: v for k, v in (("subject", subject), ("html", html), ("text", text)) if v is not None}}
            from backend import compose

            draft, _, _ = service.resume_draft(self.journal, cid)
            draft.template = compose.Template(new["subject"], html=new["html"] or None, text=new["text"] or None)
            problems = draft.problems()
            if problems:  # every row must still build (a field the list has not, a header with a line break)
                raise problems[0]
            spec["message"] = new
        due = self._shifted_due(cid, saved, start) if start and saved.get("local_time") else None
        if not self.journal.change_scheduled(cid, spec=spec, start=start, due=due):
            raise SettingsError("campaign", f"campaign {cid} has just started; it can no longer be changed")
        return {"campaign": cid, "at": saved.get("at"), "words": f"Scheduled for {sch.when_words(_when(saved['at']), saved['tz'])}"}

    def _shifted_due(self, cid: str, saved: dict[str, Any], start: str) -> dict[int, str | None]:
        rows = self.journal.rows(cid, ["pending"])
        sch = _schedule()
        due, _ = sch.delivery_times([(r.index, r.recipient.fields.get(saved.get("tz_column", "timezone")), r.recipient.line)
                                     for r in rows], saved["local_time"], saved["default_tz"], _when(start))
        return {i: iso(t) for i, t in due.items()}

    def cancel_campaign(self, cid: str) -> dict[str, Any]:
        """Cancel a campaign nobody is sending now (scheduled, waiting, paused), with the follow-ups
        it has not sent yet; a running one is cancelled through its run."""
        cid = self.campaign_id(cid)
        if self.run is not None and self.run.active and self.run.id == cid:
            self.control("cancel")
            return {"campaign": cid, "state": "cancelling"}
        info = self.journal.get(cid)
        skipped = 0
        if info.state not in ("finished", "cancelled", "failed"):
            skipped = self.journal.cancel_waiting(cid, "cancelled by the user")
            if skipped < 0:
                raise SettingsError("campaign", f"campaign {cid} is being sent by another window or process; "
                                    "cancel it there")
        spec = self.journal.spec(cid)
        stopped = 0
        for step in spec.get("follow_ups") or []:
            if step["state"] == "waiting":
                step.update(state="cancelled", reason="not sent: cancelled by the user")
                stopped += 1
        if stopped:
            self.journal.set_spec(cid, spec)
        return {"campaign": cid, "state": "cancelled", "skipped": max(skipped, 0), "follow_ups_cancelled": stopped}

    # -- what History shows of time ------------------------------------------------------------

    def times_of(self, cid: str, spec: dict[str, Any], state: str) -> dict[str, Any]:
        """A campaign's schedule as History shows it: start, window, end estimate, each
        follow-up step with its due time and counts."""
        saved = spec.get("schedule") or {}
        out: dict[str, Any] = {k: saved.get(k) for k in ("at", "tz", "window_words", "local_time", "ends_about")}
        out["follow_up_of"], out["step"] = spec.get("follow_up_of"), spec.get("step")
        if state == "scheduled":  # it can still be changed: History offers its message to edit
            m = spec.get("message") or {}
            out["message"] = {"subject": m.get("subject") or "", "body": m.get("html") or m.get("text") or "",
                              "format": "html" if m.get("html") else "text"}
        steps = []
        for k, step in enumerate(spec.get("follow_ups") or [], 1):
            child = self._step_campaign(cid, k)
            shown = {"step": k, "after_days": step["after_days"], "state": step["state"], "reason": step["reason"],
                     "campaign": None, "counts": {}, "due": None}
            state_now = self.journal.state_of(child)
            if state_now is not None:
                shown.update(campaign=child, counts=self.journal.counts(child), state=state_now)
            elif state == "finished" and step["state"] == "waiting":
                before = cid if k == 1 else self._step_campaign(cid, k - 1)
                due = self._step_time(cid, k, before) if self._exists(before) else None
                shown["due"] = iso(due) if due else None
            steps.append(shown)
        out["follow_ups"] = steps
        return out

    def timer(self, action: str) -> dict[str, Any]:
        """The timer that runs run-due every 5 minutes while the app is closed: status, install,
        remove; its state in one sentence and the lines that remove it by hand."""
        from backend import timer

        if action not in ("status", "install", "remove"):
            raise SettingsError("action", "give status, install or remove")
        return getattr(timer, action)().as_dict()

    # -- the window's ticker --------------------------------------------------------------------

    def keep_schedule(self, every_s: float = TICK_S) -> None:
        """While the app runs (the window), start what is due every `every_s` seconds."""
        if getattr(self, "_ticker", None) is not None:
            return
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(every_s):
                try:
                    self.start_due()
                except Exception:  # noqa: BLE001 - the ticker must outlive one bad campaign
                    log.exception("starting a due campaign failed")

        self._ticker = (stop, threading.Thread(target=tick, name="schedule", daemon=True))
        self._ticker[1].start()

    def stop_schedule(self) -> None:
        ticker = getattr(self, "_ticker", None)
        if ticker is not None:
            ticker[0].set()
            self._ticker = None

