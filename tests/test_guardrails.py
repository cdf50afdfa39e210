"""The account's guardrails, against a real SMTP server's injected answers: a pause after 3 policy
refusals (5.7.x) or throttling answers (4.7.x) among the last 20, not for greylisting; a pause
when more than 5% of the campaign's messages bounced; the warm-up's growing daily limits; the
meter of the last 24 hours."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from backend.app import App
from backend.inputs import AccountInput, MessageInput, ResumeRequest, ScheduleInput, SendOptions
from tests.test_scheduling import FakeClock

UTC = dt.UTC


def relay(server) -> AccountInput:
    return AccountInput(host=server.host, port=server.port, security="none", from_address="me@example.com",
                        timeout=5)


def campaign(app: App, server, addresses: list[str], **options) -> str:
    app.import_recipients(("text", "\n".join(addresses) + "\n"))
    draft, plan = app.prepare(relay(server), MessageInput(subject="Hi", text="Hi", delay_ms=0),
                              SendOptions(**options))
    app.launch(draft, plan)
    app.run.wait()
    return app.run.id


def test_three_policy_refusals_among_the_last_twenty_pause_the_campaign(smtp_server, tmp_path):
    server = smtp_server("plain", auth=False)
    app = App(journal_path=tmp_path / "journal.sqlite3")
    people = [f"p{i}@example.org" for i in range(5)] + ["spam@a.example", "p5@example.org", "policy550@b.example",
                                                        "p6@example.org", "spam@c.example"] + \
        [f"q{i}@example.org" for i in range(10)]
    cid = campaign(app, server, people)
    info = app.journal.get(cid)
    assert info.state == "stopped" and "paused to protect your account" in info.reason
    assert "3 of the last 10 answers were policy refusals or throttling" in info.reason and "5.7.1" in info.reason
    assert info.counts == {"sent": 7, "failed": 3, "pending": 10}
    state = app.state()
    assert state["error"]["category"] == "account_protection" and state["error"]["title"] == \
        "Paused to protect your account"
    assert any("Wait a few hours" in step for step in state["error"]["fix"])
    # Resumed by the user: the rest go (the count starts again).
    app.resume(cid, ResumeRequest(account=relay(server))).wait()
    assert app.journal.get(cid).counts == {"sent": 17, "failed": 3}
    app.shutdown()


def test_throttling_answers_pause_it_and_greylisting_does_not(smtp_server, tmp_path):
    server = smtp_server("plain", auth=False)
    app = App(journal_path=tmp_path / "journal.sqlite3")
    grey = campaign(app, server, ["flaky1@a.example", "flaky1@b.example", "flaky1@c.example", "ok@example.org"],
                    retry={"base_s": 1, "cap_s": 1})
    assert app.journal.get(grey).state == "finished"  # 451 4.7.1 greylisting, then accepted: no pause
    throttled = campaign(app, server, ["policy550@a.example", "ok1@example.org", "throttle421@b.example",
                                       "ok2@example.org", "throttle421@c.example", "later@example.org"],
                         retry={"base_s": 1, "cap_s": 1})
    info = app.journal.get(throttled)
    assert info.state == "stopped" and "paused to protect your account" in info.reason
    assert "4.7.0" in info.reason and info.counts.get("pending") == 1  # later@ is not sent
    assert "5.7.1" in app.journal.rows(throttled)[0].result.error
    app.shutdown()


def test_more_than_five_percent_bounced_pauses_the_campaign(smtp_server, tmp_path):
    server = smtp_server("plain", auth=False)
    clock = FakeClock(dt.datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    app = App(journal_path=tmp_path / "journal.sqlite3", clock=clock.clock())
    seen: list[dict] = []

    def emit(event: dict) -> None:
        # The mailbox check (every 10 minutes while the window is open) finds 2 bounces among the
        # first 30 sent: as track records them.
        seen.append(event)
        if event.get("status") == "sent" and event["current"] == 30:
            rows = app.journal.rows(event["campaign"])[:2]
            app.journal.apply_notices(event["campaign"], [(r.index, "bounced", ("sent",), {}) for r in rows])

    app.emit = emit
    app.import_recipients(("text", "".join(f"p{i:03d}@example.org\n" for i in range(100))))
    draft, plan = app.prepare(relay(server), MessageInput(subject="Hi", text="Hi", delay_ms=1000), SendOptions())
    run = app.start(draft, plan)
    run.wait()
    info = app.journal.get(run.id)
    assert info.state == "stopped" and "2 of the 30 messages sent so far bounced (7%" in info.reason
    assert "above 5%" in info.reason
    sent = info.counts.get("sent", 0) + info.counts.get("bounced", 0)
    assert 30 <= sent <= 30 + 30  # asked every 30 seconds of sending (a message a second here)
    assert info.counts["pending"] == 100 - sent
    app.shutdown()


def test_warm_up_sends_twenty_then_forty_a_day_and_goes_on_by_itself(smtp_server, tmp_path):
    server = smtp_server("plain", auth=False)
    clock = FakeClock(dt.datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    app = App(journal_path=tmp_path / "journal.sqlite3", clock=clock.clock())
    app.import_recipients(("text", "".join(f"p{i:03d}@example.org\n" for i in range(100))))
    draft, plan = app.prepare(relay(server), MessageInput(subject="Hi", text="Hi", delay_ms=0),
                              SendOptions(schedule=ScheduleInput(warmup=(20, 40))))
    assert plan.spec["schedule"]["ends_about"].startswith("2026-12-09T09:00")  # 20 + 40 + 40
    run = app.start(draft, plan)
    run.wait()
    assert app.journal.get(run.id).counts == {"sent": 20, "pending": 80}
    for _ in range(3 * 24 * 4):
        clock.advance(900)
        app.run_due()
    by_day = Counter(r.sent_at[:10] for r in app.results(run.id))
    assert by_day == {"2026-12-07": 20, "2026-12-08": 40, "2026-12-09": 40}
    assert len(server.messages) == 100 and max(Counter(m.rcpt_tos[0] for m in server.messages).values()) == 1
    app.shutdown()


def test_the_meter_counts_every_campaign_of_the_account_in_the_last_24_hours(smtp_server, tmp_path):
    server = smtp_server("plain", auth=False)
    clock = FakeClock(dt.datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    app = App(journal_path=tmp_path / "journal.sqlite3", clock=clock.clock())
    campaign(app, server, [f"a{i}@example.org" for i in range(7)], limits={"per_day": 50})
    clock.advance(3600)
    campaign(app, server, [f"b{i}@example.org" for i in range(5)], limits={"per_day": 50})
    app.import_recipients(("text", "c@example.org\n"))
    review = app.review(relay(server), MessageInput(subject="Hi", text="Hi"), SendOptions(limits={"per_day": 50}))
    assert review["meter"]["sent"] == 12 and review["meter"]["left"] == 38
    assert review["meter"]["words"] == "This account sent 12 messages in the last 24 hours, of 50 a day"
    clock.advance(23.5 * 3600)  # the first campaign is now more than a day old
    assert app.meter(app.account_key(relay(server)), 50)["sent"] == 5
    app.shutdown()


def test_the_local_test_inbox_is_not_metered(tmp_path):
    from backend.app import LOCAL_INBOX
    from backend.inbox import LocalInbox

    app = App(inbox=LocalInbox(), journal_path=tmp_path / "journal.sqlite3")
    app.import_recipients(("text", "a@example.org\n"))
    review = app.review(AccountInput(provider=LOCAL_INBOX, from_address="me@example.com"),
                        MessageInput(subject="Hi", text="Hi"), SendOptions())
    assert review["meter"]["account"] is False and "no message leaves this computer" in review["meter"]["words"]
    app.shutdown()
