"""The send loop against real servers, with a fake clock and sleep."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from backend.campaign import Control, Outgoing, run_campaign
from backend.errors import TemplateError
from backend.recipients import Recipient
from backend.settings import SmtpSettings
from backend.transports.base import Envelope
from backend.transports.smtp import SmtpTransport
from tests.servers import PASSWORD, USER

FIXED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
EVENT_KEYS = {"type", "campaign", "current", "total", "recipient", "status", "category", "code", "error", "ts"}


def build(recipient: Recipient) -> Outgoing:
    if recipient.fields.get("broken"):
        raise TemplateError("field 'x' is missing", row=recipient.line, field="x")
    data = f"From: {USER}\r\nTo: {recipient.email}\r\nSubject: hi\r\n\r\nbody\r\n".encode()
    return Outgoing(Envelope(USER, (recipient.email,)), data, f"<{recipient.line}@example.com>")


def people(*emails: str, **fields) -> list[Recipient]:
    return [Recipient(e, dict(fields), i + 2) for i, e in enumerate(emails)]


def transport_for(server, certs, **kw) -> SmtpTransport:
    options = dict(host=server.host, port=server.port, security="starttls", user=USER,
                   password=PASSWORD, ca_file=certs.ca_file, timeout=2)
    options.update(kw)
    return SmtpTransport(SmtpSettings(**options))


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict] = []
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def test_events_results_and_delay(smtp_server, certs):
    server = smtp_server("starttls")
    rec = Recorder()
    recipients = people("a@example.org", "reject550@example.org", "c@example.org")
    out = run_campaign(recipients, build, transport_for(server, certs), campaign_id="c1",
                       on_event=rec.events.append, delay_s=0.25, sleep=rec.sleep, now=lambda: FIXED)
    assert out.ok and out.stopped is None
    assert [(e["recipient"], e["status"]) for e in rec.events] == [
        ("a@example.org", "sending"), ("a@example.org", "sent"),
        ("reject550@example.org", "sending"), ("reject550@example.org", "failed"),
        ("c@example.org", "sending"), ("c@example.org", "sent"),
    ]
    assert all(set(e) == EVENT_KEYS and e["type"] == "email-progress" for e in rec.events)
    assert [e["current"] for e in rec.events] == [1, 1, 2, 2, 3, 3]
    assert {e["total"] for e in rec.events} == {3}
    assert rec.events[0]["ts"] == "2026-01-02T03:04:05+00:00"
    failed = rec.events[3]
    assert (failed["category"], failed["code"]) == ("recipient_rejected", 550)
    assert "does not exist" in failed["error"]
    assert rec.sleeps == [0.25, 0.25]  # between messages, not after the last
    assert [r.status for r in out.results] == ["sent", "failed", "sent"]
    assert out.results[0].sent_at == "2026-01-02T03:04:05+00:00"
    assert out.results[0].message_id == "<2@example.com>"
    assert out.results[0].smtp_code == 250
    assert out.summary()["failed_by_category"] == {"recipient_rejected": 1}
    assert [m.rcpt_tos for m in server.messages] == [["a@example.org"], ["c@example.org"]]


def test_verify_failure_sends_nothing(smtp_server, certs):
    server = smtp_server("starttls")
    rec = Recorder()
    out = run_campaign(people("a@example.org", "b@example.org"), build,
                       transport_for(server, certs, password="nope"), campaign_id="c2",
                       on_event=rec.events.append, sleep=rec.sleep)
    assert not out.ok
    assert out.error is not None and out.error.category == "auth_failed"
    assert rec.events == [] and server.messages == []
    assert all(r.status == "skipped" and r.error.startswith("not sent:") for r in out.results)


class PasswordChangesMidRun(SmtpTransport):
    """A transport whose second connection is refused login, as after a password change."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.opens = 0

    def open(self) -> None:
        self.opens += 1
        if self.opens == 2:
            self.settings = type(self.settings)(**{**self.settings.__dict__, "password": "changed"})
        super().open()


def test_auth_failure_mid_run_stops_at_once(smtp_server, certs):
    server = smtp_server("starttls")
    rec = Recorder()
    t = PasswordChangesMidRun(SmtpSettings(host=server.host, port=server.port, user=USER,
                                           password=PASSWORD, ca_file=certs.ca_file, timeout=2))
    recipients = people("a@example.org", "droprcpt@example.org", "c@example.org", "d@example.org")
    out = run_campaign(recipients, build, t, campaign_id="c3", on_event=rec.events.append, sleep=rec.sleep)
    # The refused login's recipient got nothing: due again when the run is resumed, not failed.
    assert [r.status for r in out.results] == ["sent", "deferred", "skipped", "skipped"]
    assert out.results[1].category == "auth_failed" and out.results[1].next_attempt is None
    assert out.stopped == "auth_failed"
    assert out.results[2].error.startswith("not sent: run stopped")
    assert [e["recipient"] for e in rec.events if e["status"] == "sending"] == recipients_emails(recipients[:2])


def recipients_emails(rs):
    return [r.email for r in rs]


def test_cancel_between_messages(smtp_server, certs):
    server = smtp_server("starttls")
    control = Control()
    rec = Recorder()

    def on_event(event):
        rec.events.append(event)
        if event["status"] == "sent" and event["current"] == 2:
            control.cancel()

    out = run_campaign(people(*(f"p{i}@example.org" for i in range(5))), build, transport_for(server, certs),
                       campaign_id="c4", on_event=on_event, control=control, delay_s=5)
    assert out.stopped == "cancelled"
    assert [r.status for r in out.results] == ["sent", "sent", "skipped", "skipped", "skipped"]
    assert out.results[4].error == "not sent: stopped by the user; resume the campaign to send it"
    assert len(server.messages) == 2


def test_uncertain_and_template_error_do_not_stop_the_run(smtp_server, certs):
    server = smtp_server("starttls")
    recipients = people("dropdata@example.org") + [Recipient("b@example.org", {"broken": "1"}, 9)] + people("c@example.org")
    out = run_campaign(recipients, build, transport_for(server, certs, timeout=1), campaign_id="c5",
                       sleep=lambda s: None)
    assert [r.status for r in out.results] == ["uncertain", "failed", "sent"]
    assert out.results[1].category == "template_error" and "line 9" in out.results[1].error
    assert out.summary()["uncertain"] == 1


def test_server_gone_mid_run_stops_with_reason(smtp_server, certs):
    server = smtp_server("starttls")
    recipients = people("a@example.org", "b@example.org", "c@example.org")

    def on_event(event):
        if event["status"] == "sent" and event["current"] == 1:
            server.stop()

    out = run_campaign(recipients, build, transport_for(server, certs, timeout=1), campaign_id="c6",
                       on_event=on_event, sleep=lambda s: None)
    statuses = [r.status for r in out.results]
    assert statuses[0] == "sent" and statuses[1] == "deferred" and statuses[2] == "skipped"
    assert out.results[1].category in ("connection_refused", "server_disconnected", "timeout")
    assert out.stopped == out.results[1].category


@pytest.mark.parametrize("total", [0, 1])
def test_small_runs(smtp_server, certs, total):
    server = smtp_server("starttls")
    rec = Recorder()
    out = run_campaign(people(*["a@example.org"][:total]), build, transport_for(server, certs),
                       campaign_id="c7", sleep=rec.sleep)
    assert out.ok and rec.sleeps == [] and len(server.messages) == total


def test_pause_holds_between_messages_until_resumed(smtp_server, certs):
    server = smtp_server("starttls")
    control = Control()
    pauses: list[bool] = []
    resumed = threading.Event()

    def on_event(event):
        if event["status"] == "sent" and event["current"] == 1:
            control.pause()
            # resume from another thread once the loop reports it is holding
            threading.Thread(target=lambda: (resumed.wait(5), control.resume())).start()

    def on_pause(paused):
        pauses.append(paused)
        if paused:
            assert len(server.messages) == 1  # nothing sent while paused
            resumed.set()

    out = run_campaign(people("a@example.org", "b@example.org", "c@example.org"), build,
                       transport_for(server, certs), campaign_id="c8", on_event=on_event,
                       control=control, on_pause=on_pause, sleep=lambda s: None)
    assert pauses == [True, False]
    assert [r.status for r in out.results] == ["sent", "sent", "sent"]


def test_cancel_while_paused_ends_the_run(smtp_server, certs):
    server = smtp_server("starttls")
    control = Control()

    def on_event(event):
        if event["status"] == "sent":
            control.pause()

    def on_pause(paused):
        if paused:
            threading.Timer(0.05, control.cancel).start()

    out = run_campaign(people("a@example.org", "b@example.org"), build, transport_for(server, certs),
                       campaign_id="c9", on_event=on_event, control=control, on_pause=on_pause,
                       sleep=lambda s: None)
    assert out.stopped == "cancelled"
    assert [r.status for r in out.results] == ["sent", "skipped"]
    assert len(server.messages) == 1


def test_message_over_the_server_size_limit_is_not_sent(smtp_server, certs):
    from backend import service
    from backend.attachments import Attachment
    from backend.recipients import parse_text

    server = smtp_server("starttls")
    draft = service.make_draft(parse_text("a@example.org\nb@example.org"), subject="Hi", html=None, text="x",
                               from_address="me@example.com", delay_ms=0)
    t = transport_for(server, certs)
    t.open()
    limit = int(t.info.features["size"])
    t.close()
    draft.attachments = [Attachment("big.bin", "application/octet-stream", b"\0" * (limit // 4 * 3 + 1000))]
    out = service.send(draft, transport_for(server, certs), sleep=lambda s: None)
    assert [r.status for r in out.results] == ["failed", "failed"]
    assert out.results[0].category == "attachment_error" and "server accepts at most" in out.results[0].error
    assert server.messages == []


@pytest.mark.parametrize(("local", "hours"), [("quota", 24), ("hourquota", 1)])
def test_a_servers_quota_stops_the_run_and_says_when_it_can_continue(smtp_server, certs, local, hours):
    server = smtp_server("starttls")
    at = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    out = run_campaign(people("a@example.org", f"{local}@example.org", "c@example.org"), build,
                       transport_for(server, certs), campaign_id="q", sleep=lambda s: None, now=lambda: at)
    # The quota's recipient got nothing: it waits for the quota, like the rest of the list.
    assert [r.status for r in out.results] == ["sent", "deferred", "skipped"]
    assert out.stopped == "quota_exceeded" and "not sent: run stopped" in out.results[2].error
    lifted = at + dt.timedelta(hours=hours)
    assert dt.datetime.fromisoformat(out.resume_after) == lifted
    assert out.results[1].next_attempt == out.resume_after
    assert f"{lifted.astimezone():%Y-%m-%d %H:%M}" in out.error.message and "can continue after" in out.error.message
    assert out.summary()["resume_after"] == out.resume_after and out.summary()["deferred"] == 1


def test_a_quota_reply_that_says_when_is_believed(smtp_server, certs):
    from backend.errors import RejectedError

    class SaysWhen:
        def open(self):
            pass

        def close(self):
            pass

        def send(self, envelope, message):
            raise RejectedError("daily limit reached", category="quota_exceeded", code=429, retry_after=90.0)

    at = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    out = run_campaign(people("a@example.org"), build, SaysWhen(), campaign_id="w", sleep=lambda s: None,
                       now=lambda: at)
    assert dt.datetime.fromisoformat(out.resume_after) == at + dt.timedelta(seconds=90)


def test_a_temporary_refusal_waits_at_least_as_long_as_the_server_asked(certs):
    from backend.campaign import RetryPolicy
    from backend.errors import RejectedError
    from backend.transports.base import Receipt

    class SlowDown:
        calls = 0

        def open(self):
            pass

        def close(self):
            pass

        def send(self, envelope, message):
            SlowDown.calls += 1
            if SlowDown.calls == 1:
                raise RejectedError("slow down", category="rate_limited", code=429, retry_after=500.0)
            return Receipt(250, "ok")

    clock = FakeClock()
    out = run_campaign(people("a@example.org"), build, SlowDown(), campaign_id="s", clock=clock,
                       sleep=clock.sleep, retry=RetryPolicy(base_s=10, jitter=0))
    assert [r.status for r in out.results] == ["sent"]
    assert clock.sleeps == [500.0]  # the server's 500 s, not the policy's 10 s


def test_many_failures_in_a_row_stop_the_run(smtp_server, certs):
    server = smtp_server("starttls")
    emails = ["a@example.org"] + ["reject550@example.org"] * 4 + ["z@example.org"]
    recipients = [Recipient(e, {}, i + 2) for i, e in enumerate(emails)]
    out = run_campaign(recipients, build, transport_for(server, certs), campaign_id="f",
                       sleep=lambda s: None, max_failures_in_a_row=3)
    assert [r.status for r in out.results] == ["sent", "failed", "failed", "failed", "skipped", "skipped"]
    assert out.stopped == "recipient_rejected" and "3 messages in a row failed" in out.error.message
    assert [m.rcpt_tos for m in server.messages] == [["a@example.org"]]


class FakeClock:
    """A clock that only moves when the loop sleeps: backoff tests are instant and exact."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def test_temporary_refusals_are_retried_with_backoff(smtp_server, certs):
    from backend.campaign import RetryPolicy

    server = smtp_server("starttls")
    clock = FakeClock()
    rec = Recorder()
    policy = RetryPolicy(base_s=60, cap_s=600, max_attempts=5, jitter=0.2)
    out = run_campaign(people("a@example.org", "flaky2@example.org", "c@example.org"), build,
                       transport_for(server, certs), campaign_id="r", on_event=rec.events.append,
                       delay_s=1, clock=clock, sleep=clock.sleep, retry=policy)
    assert [r.status for r in out.results] == ["sent", "sent", "sent"]
    assert out.results[1].attempts == 3
    flaky = [(e["status"], e["code"]) for e in rec.events if e["recipient"].startswith("flaky")]
    assert flaky == [("sending", None), ("deferred", 451), ("sending", None), ("deferred", 451),
                     ("sending", None), ("sent", 250)]
    backoffs = [s for s in clock.sleeps if s > 1]
    assert len(backoffs) == 2
    assert 60 * 0.8 - 2 <= backoffs[0] <= 60 * 1.2 and 120 * 0.8 <= backoffs[1] <= 120 * 1.2
    assert [m.rcpt_tos for m in server.messages] == [["a@example.org"], ["c@example.org"], ["flaky2@example.org"]]


def test_gives_up_after_max_attempts_and_5xx_is_final(smtp_server, certs):
    from backend.campaign import RetryPolicy

    server = smtp_server("starttls")
    clock = FakeClock()
    out = run_campaign(people("flaky9@example.org", "reject550@example.org"), build, transport_for(server, certs),
                       campaign_id="g", delay_s=0, clock=clock, sleep=clock.sleep,
                       retry=RetryPolicy(base_s=10, cap_s=40, max_attempts=4, jitter=0))
    assert [r.status for r in out.results] == ["failed", "failed"]
    assert out.results[0].attempts == 4 and out.results[0].error.startswith("gave up after 4 attempts")
    assert out.results[1].attempts == 1  # 550: no retry
    assert clock.sleeps == [10, 20, 40]


def test_rate_limits_never_exceed_any_window(smtp_server, certs):
    from backend.campaign import RateLimiter, RateLimits

    server = smtp_server("starttls")
    clock = FakeClock()
    sends: list[float] = []

    def on_event(event):
        if event["status"] == "sent":
            sends.append(clock())

    limiter = RateLimiter(RateLimits(per_second=2, per_minute=5))
    out = run_campaign(people(*(f"p{i}@example.org" for i in range(12))), build, transport_for(server, certs),
                       campaign_id="rl", on_event=on_event, delay_s=0, clock=clock, sleep=clock.sleep,
                       limiter=limiter)
    assert out.counts["sent"] == 12
    for window, limit in ((1.0, 2), (60.0, 5)):
        for t in sends:
            assert sum(1 for u in sends if t - window < u <= t) <= limit, (window, sends)
    assert sends[-1] - sends[0] >= 120  # 12 messages at 5 a minute need at least two more minutes


def test_every_long_wait_is_announced_with_its_time_and_reason(smtp_server, certs):
    from backend.campaign import RateLimiter, RateLimits, RetryPolicy

    server = smtp_server("starttls")
    clock = FakeClock()
    waits: list[dict] = []
    at = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    out = run_campaign(people("a@example.org", "b@example.org", "flaky1@example.org"), build,
                       transport_for(server, certs), campaign_id="w", delay_s=0.5, clock=clock,
                       sleep=clock.sleep, limiter=RateLimiter(RateLimits(per_minute=2)), on_wait=waits.append,
                       retry=RetryPolicy(base_s=300, jitter=0), now=lambda: at)
    assert out.counts["sent"] == 3
    limit = [w for w in waits if w["reason"].startswith("sending limit")]
    retry = [w for w in waits if w["reason"].startswith("retrying")]
    assert limit and limit[0]["reason"] == "sending limit: 2 a minute" and limit[0]["campaign"] == "w"
    assert 59 <= limit[0]["seconds"] <= 60.5
    assert dt.datetime.fromisoformat(limit[0]["until"]) == at + dt.timedelta(seconds=limit[0]["seconds"])
    assert retry and "flaky1@example.org" in retry[0]["reason"]
    assert all(w["seconds"] >= 1 for w in waits)  # the fixed 0.5 s delay is not announced


def test_a_day_quota_counts_earlier_sends_and_stops_with_a_time(smtp_server, certs):
    from backend.campaign import RateLimiter, RateLimits

    server = smtp_server("starttls")
    clock = FakeClock()
    earlier = [clock() - 3600 * h for h in (1, 2, 3)]  # sent in an earlier run today
    limiter = RateLimiter(RateLimits(per_day=4), earlier=earlier)
    out = run_campaign(people("a@example.org", "b@example.org", "c@example.org"), build,
                       transport_for(server, certs), campaign_id="dq", delay_s=0, clock=clock,
                       sleep=clock.sleep, limiter=limiter)
    assert [r.status for r in out.results] == ["sent", "skipped", "skipped"]
    assert out.stopped == "quota_exceeded" and "can continue after" in out.error.message
    assert len(server.messages) == 1


def test_a_recipient_deferred_in_an_earlier_run_waits_for_its_time(smtp_server, certs):
    server = smtp_server("starttls")
    clock = FakeClock()
    sent_at: dict[str, float] = {}

    def on_event(event):
        if event["status"] == "sent":
            sent_at[event["recipient"]] = clock()

    out = run_campaign(people("late@example.org", "b@example.org"), build, transport_for(server, certs),
                       campaign_id="w", on_event=on_event, delay_s=0, clock=clock, sleep=clock.sleep,
                       initially_due={0: clock() + 300})
    assert [r.status for r in out.results] == ["sent", "sent"]
    assert sent_at["b@example.org"] < sent_at["late@example.org"]
    assert sent_at["late@example.org"] >= 1000 + 300  # not before its stored time
    assert [m.rcpt_tos for m in server.messages] == [["b@example.org"], ["late@example.org"]]


def test_cancel_while_the_last_one_waits_for_a_limit_is_a_cancel(smtp_server, certs):
    from backend.campaign import RateLimiter, RateLimits

    server = smtp_server("starttls")
    control = Control()
    clock = FakeClock()

    def sleep(seconds):
        if seconds > 1:
            control.cancel()  # the user cancels during the wait; the wait ends early
        else:
            clock.sleep(seconds)

    out = run_campaign(people("a@example.org", "b@example.org"), build, transport_for(server, certs),
                       campaign_id="cl", control=control, delay_s=0, clock=clock, sleep=sleep,
                       limiter=RateLimiter(RateLimits(per_minute=1)))
    assert out.stopped == "cancelled"
    assert [r.status for r in out.results] == ["sent", "skipped"]
    assert out.results[1].error == "not sent: stopped by the user; resume the campaign to send it"


def test_three_uncertain_in_a_row_stop_the_run(smtp_server, certs):
    server = smtp_server("starttls")
    recipients = people("dropdata@example.org", "dropdata@example.net", "dropdata@example.com", "z@example.org")
    out = run_campaign(recipients, build, transport_for(server, certs, timeout=1), campaign_id="u3",
                       sleep=lambda s: None)
    assert [r.status for r in out.results] == ["uncertain", "uncertain", "uncertain", "skipped"]
    assert out.stopped == "server_disconnected"
    assert "3 messages in a row may or may not have been delivered" in out.error.message
