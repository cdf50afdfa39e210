"""Campaigns with a time, driven through the core with a fake clock and a real SMTP server:
send later (also across a restart), a send window that closes mid-campaign and opens again,
each recipient's local time, a list larger than the daily limit spread over three days,
run-due and the window together, and changing or cancelling a campaign before it starts."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from backend.app import App
from backend.errors import SettingsError
from backend.inputs import AccountInput, MessageInput, ScheduleInput, SendOptions
from backend.model import Clock

UTC = dt.UTC
ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    """Time that moves only when a run waits (or the test says so)."""

    def __init__(self, start: dt.datetime) -> None:
        self.t, self.mono = start, 1000.0
        self.lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self.lock:
            return self.t

    def monotonic(self) -> float:
        with self.lock:
            return self.mono

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.t += dt.timedelta(seconds=seconds)
            self.mono += seconds

    def to(self, moment: dt.datetime) -> None:
        self.advance((moment - self.now()).total_seconds())

    def clock(self) -> Clock:
        return Clock(self.now, self.monotonic, self.sleep)


def relay(server) -> AccountInput:
    return AccountInput(host=server.host, port=server.port, security="none", from_address="me@example.com",
                        timeout=5)


def make_app(tmp_path: Path, clock: FakeClock) -> App:
    return App(journal_path=tmp_path / "journal.sqlite3", clock=clock.clock())


def people(n: int, zones: list[str] | None = None) -> str:
    head = "email,name" + (",timezone" if zones else "") + "\n"
    return head + "".join(f"p{i:04d}@example.org,P{i}" + (f",{zones[i % len(zones)]}" if zones else "") + "\n"
                          for i in range(n))


MESSAGE = MessageInput(subject="Hello {{ name }}", text="Hi {{ name }}", delay_ms=0)


def schedule(app: App, server, n: int = 3, *, zones: list[str] | None = None, **when) -> dict:
    app.import_recipients(("text", people(n, zones)))
    draft, plan = app.prepare(relay(server), MESSAGE, SendOptions(schedule=ScheduleInput(**when)))
    return app.launch(draft, plan)


def sent_to(server) -> Counter:
    return Counter(m.rcpt_tos[0] for m in server.messages)


def test_a_scheduled_campaign_starts_at_its_time_not_before_also_after_a_restart(smtp_server, tmp_path):
    server = smtp_server("plain", auth=False)
    clock = FakeClock(dt.datetime(2026, 12, 7, 6, 0, tzinfo=UTC))
    app = make_app(tmp_path, clock)
    started = schedule(app, server, at="2026-12-07 09:00", tz="Europe/Berlin")  # 08:00 UTC
    assert started["state"] == "scheduled" and started["words"].startswith("Scheduled for Mon 7 Dec")
    cid = started["campaign"]
    (listed,) = app.history()
    assert listed["state"] == "scheduled" and listed["times"]["at"] == "2026-12-07T08:00:00+00:00"
    assert app.run_due() == [] and server.messages == []  # 07:00 Berlin: not yet
    clock.to(dt.datetime(2026, 12, 7, 7, 59, 30, tzinfo=UTC))
    assert app.run_due() == [] and server.messages == []
    app.shutdown()

    # The app closed and started again (a new App on the same journal): it still knows.
    app = make_app(tmp_path, clock)
    clock.to(dt.datetime(2026, 12, 7, 8, 0, 5, tzinfo=UTC))
    (done,) = app.run_due()
    assert done["campaign"] == cid and done["state"] == "finished" and done["counts"] == {"sent": 3}
    assert sent_to(server) == Counter({f"p{i:04d}@example.org": 1 for i in range(3)})
    assert app.run_due() == []  # nothing twice
    app.shutdown()


def test_scheduled_campaign_can_be_changed_or_cancelled_until_it_starts(smtp_server, tmp_path):
    server = smtp_server("plain", auth=False)
    clock = FakeClock(dt.datetime(2026, 12, 7, 6, 0, tzinfo=UTC))
    app = make_app(tmp_path, clock)
    cid = schedule(app, server, at="2026-12-07 09:00", tz="Europe/Berlin")["campaign"]
    changed = app.reschedule(cid, at="2026-12-07 10:30", subject="Changed {{ name }}")
    assert changed["at"] == "2026-12-07T09:30:00+00:00"
    clock.to(dt.datetime(2026, 12, 7, 8, 30, tzinfo=UTC))
    assert app.run_due() == []  # the old time means nothing now
    with pytest.raises(SettingsError, match="has passed"):
        app.reschedule(cid, at="2026-12-07 08:00")
    clock.to(dt.datetime(2026, 12, 7, 9, 31, tzinfo=UTC))
    (done,) = app.run_due()
    assert done["counts"] == {"sent": 3}
    assert {m.message["Subject"] for m in server.messages} == {"Changed P0", "Changed P1", "Changed P2"}
    with pytest.raises(SettingsError, match="only a campaign that has not started"):
        app.reschedule(cid, subject="Too late")

    other = schedule(app, server, at="2026-12-08 09:00", tz="Europe/Berlin")["campaign"]
    assert app.cancel_campaign(other)["skipped"] == 3
    clock.to(dt.datetime(2026, 12, 9, 9, 0, tzinfo=UTC))
    assert app.run_due() == [] and len(server.messages) == 3
    assert {r.status for r in app.results(other)} == {"skipped"}
    app.shutdown()


def test_a_send_window_closes_mid_campaign_and_opens_again(smtp_server, tmp_path):
    server = smtp_server("plain", auth=False)
    # Friday 17:58 in Berlin (16:58 UTC); the window closes at 18:00 and opens Monday 08:00.
    clock = FakeClock(dt.datetime(2026, 12, 11, 16, 58, tzinfo=UTC))
    app = make_app(tmp_path, clock)
    events: list[dict] = []
    app.emit = events.append
    app.import_recipients(("text", people(5)))
    draft, plan = app.prepare(relay(server), MessageInput(subject="Hi", text="Hi", delay_ms=60_000),
                              SendOptions(schedule=ScheduleInput(window="mon-fri 08:00-18:00", tz="Europe/Berlin")))
    run = app.start(draft, plan)
    run.wait()
    assert run.state == "waiting" and len(server.messages) == 2  # 17:58 and 17:59; 18:00 is closed
    info = app.journal.get(run.id)
    assert info.state == "waiting" and info.resume_after == "2026-12-14T07:00:00+00:00"
    assert "next message at Mon" in info.reason and "(send window)" in info.reason
    assert app.run_due() == []  # Saturday: still closed
    clock.to(dt.datetime(2026, 12, 14, 7, 0, 1, tzinfo=UTC))
    (done,) = app.run_due()
    assert done["kind"] == "continue" and done["state"] == "finished"
    assert sent_to(server) == Counter({f"p{i:04d}@example.org": 1 for i in range(5)})
    times = sorted(r.sent_at for r in app.results(run.id))
    assert times[:2] == ["2026-12-11T16:58:00+00:00", "2026-12-11T16:59:00+00:00"]
    assert times[2] == "2026-12-14T07:00:01+00:00"
    app.shutdown()


def test_each_recipient_at_nine_in_their_own_time_zone_in_time_zone_order(smtp_server, tmp_path):
    server = smtp_server("plain", auth=False)
    clock = FakeClock(dt.datetime(2026, 12, 7, 7, 0, tzinfo=UTC))  # 08:00 in Berlin
    app = make_app(tmp_path, clock)
    zones = ["America/New_York", "Asia/Tokyo", "Europe/Berlin", ""]  # "" takes the default: Europe/London
    app.import_recipients(("text", people(4, zones)))
    draft, plan = app.prepare(relay(server), MESSAGE, SendOptions(schedule=ScheduleInput(
        local_time="09:00", default_tz="Europe/London", tz="Europe/Berlin")))
    run = app.start(draft, plan)
    run.wait()
    for _ in range(24 * 12):  # run-due every 5 minutes, as the timer does
        clock.advance(300)
        app.run_due()
    got = {r.email: r.sent_at for r in app.results(run.id)}
    assert got == {"p0002@example.org": "2026-12-07T08:00:00+00:00",   # Berlin 09:00
                   "p0003@example.org": "2026-12-07T09:00:00+00:00",   # London 09:00
                   "p0000@example.org": "2026-12-07T14:00:00+00:00",   # New York 09:00
                   "p0001@example.org": "2026-12-08T00:00:00+00:00"}   # Tokyo 09:00, the next day
    assert [m.rcpt_tos[0] for m in server.messages] == ["p0002@example.org", "p0003@example.org",
                                                        "p0000@example.org", "p0001@example.org"]
    app.shutdown()


def test_local_time_names_the_line_of_a_bad_time_zone(smtp_server, tmp_path):
    server = smtp_server("plain", auth=False)
    app = make_app(tmp_path, FakeClock(dt.datetime(2026, 12, 7, 7, 0, tzinfo=UTC)))
    app.import_recipients(("text", people(3, ["Europe/Berlin", "Mars/Olympus", "Europe/Paris"])))
    with pytest.raises(SettingsError) as caught:
        app.prepare(relay(server), MESSAGE, SendOptions(schedule=ScheduleInput(local_time="09:00")))
    assert "line 3" in caught.value.message and "Mars/Olympus" in caught.value.message
    assert caught.value.field == "timezone"
    app.shutdown()


def test_twelve_hundred_at_five_hundred_a_day_end_on_day_three_with_nobody_twice(smtp_server, tmp_path):
    server = smtp_server("plain", auth=False)
    day1 = dt.datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    clock = FakeClock(day1)
    app = make_app(tmp_path, clock)
    app.import_recipients(("text", people(1200)))
    draft, plan = app.prepare(relay(server), MESSAGE, SendOptions(limits={"per_day": 500}))
    assert plan.spec["schedule"]["ends_about"].startswith("2026-12-09T09:00")  # the estimate: day 3
    run = app.start(draft, plan)
    run.wait()
    info = app.journal.get(run.id)
    assert info.state == "paused" and info.counts == {"sent": 500, "pending": 700}
    for _ in range(3 * 24 * 4):  # run-due every 15 minutes for three days
        clock.advance(900)
        app.run_due()
    last = max(r.sent_at for r in app.results(run.id))
    assert last.startswith("2026-12-09T09:")
    by_day = Counter(r.sent_at[:10] for r in app.results(run.id))
    assert by_day == {"2026-12-07": 500, "2026-12-08": 500, "2026-12-09": 200}
    assert len(server.messages) == 1200 and max(sent_to(server).values()) == 1
    assert app.journal.get(run.id).state == "finished"
    app.shutdown()


def test_run_due_and_the_window_at_once_send_each_recipient_once(smtp_server, tmp_path):
    """The window's ticker (start_due) and the timer's run-due in another process, at the same
    moment, on the same due campaigns: each recipient gets one message."""
    server = smtp_server("plain", auth=False)
    app = App()  # the journal in BULK_MAILER_HOME, as the command line's
    clock_now = dt.datetime.now(UTC)
    for _ in range(3):
        app.import_recipients(("text", people(40)))
        draft, plan = app.prepare(relay(server), MessageInput(subject="Hi", text="Hi", delay_ms=0),
                                  SendOptions(schedule=ScheduleInput(at=(clock_now + dt.timedelta(minutes=2))
                                                                     .isoformat(timespec="seconds"))))
        assert app.launch(draft, plan)["state"] == "scheduled"
    # Due now: their start moved into the past, as time passing would.
    import sqlite3

    with sqlite3.connect(app.journal.path) as db:
        db.execute("UPDATE campaigns SET resume_after=? WHERE state='scheduled'",
                   ((clock_now - dt.timedelta(minutes=1)).isoformat(timespec="seconds"),))
    ids = {c["id"] for c in app.history()}
    other = subprocess.Popen([sys.executable, "-m", "backend.cli", "run-due", "--json"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mine = []
    while other.poll() is None:
        started = app.start_due()
        if started:
            mine.append(started["campaign"])
            app.run.wait()
    out, errors = other.communicate(timeout=60)
    assert other.returncode == 0, errors
    while (started := app.start_due()):
        mine.append(started["campaign"])
        app.run.wait()
    theirs = [d["campaign"] for d in json.loads(out) if not d.get("skipped")]
    assert sent_to(server) == Counter({f"p{i:04d}@example.org": 3 for i in range(40)})
    assert len(server.messages) == 120
    assert not set(mine) & set(theirs) and set(mine) | set(theirs) == ids
    assert all(c["state"] == "finished" for c in app.history())
    app.shutdown()


def test_send_at_from_the_command_line_returns_at_once_and_is_listed_as_scheduled(smtp_server, tmp_path):
    server = smtp_server("plain", auth=False)
    people_file, body = tmp_path / "people.csv", tmp_path / "body.txt"
    people_file.write_text(people(3))
    body.write_text("Hi {{ name }}")
    at = (dt.datetime.now(UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    done = cli("send", "--host", server.host, "--port", str(server.port), "--security", "none",
               "--from", "me@example.com", "--to-file", str(people_file), "--subject", "Hi", "--text-file", str(body),
               "--at", at, "--tz", "UTC", "--window", "mon-sun 00:00-24:00")
    assert done.returncode == 0, done.stderr
    assert "Scheduled for" in done.stderr and "bulk-mailer cancel" in done.stderr
    assert server.messages == []
    listed = json.loads(cli("campaigns", "--json").stdout)
    (campaign,) = listed
    assert campaign["state"] == "scheduled" and campaign["times"]["at"].startswith(at.replace(" ", "T"))
    assert cli("run-due").stderr.strip() == "Nothing is due."
    moved = cli("reschedule", campaign["id"], "--at", "2020-01-01 00:00", "--tz", "UTC")
    assert moved.returncode == 2 and "has passed" in moved.stderr
    gone = cli("cancel", campaign["id"])
    assert gone.returncode == 0 and "3 recipient(s) not sent" in gone.stderr
    assert json.loads(cli("campaigns", "--json").stdout)[0]["state"] == "cancelled"


def test_a_campaign_that_starts_later_needs_its_password_saved(smtp_server, certs, tmp_path):
    from tests.servers import PASSWORD, USER

    server = smtp_server("starttls")
    people_file, body = tmp_path / "people.csv", tmp_path / "body.txt"
    people_file.write_text(people(2))
    body.write_text("Hi")
    at = (dt.datetime.now(UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M")
    env = {**os.environ, "BULK_MAILER_PASSWORD": PASSWORD, "BULK_MAILER_PASSPHRASE": "a long passphrase"}
    args = [sys.executable, "-m", "backend.cli", "send", "--host", server.host, "--port", str(server.port),
            "--user", USER, "--ca-file", certs.ca_file, "--from", USER, "--to-file", str(people_file),
            "--subject", "Hi", "--text-file", str(body), "--at", at]
    refused = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "needs its password saved" in refused.stderr
    assert "--save-password" in refused.stderr
    done = subprocess.run([*args, "--save-password"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Password saved" in done.stderr and "Scheduled for" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout


def test_across_daylight_saving_changes_the_window_and_local_times_keep_the_wall_clock(smtp_server, tmp_path):
    server = smtp_server("plain", auth=False)
    # Friday 23 Oct 2026, 17:59 in Berlin (summer time, UTC+2); the clocks go back on Sunday the 25th.
    clock = FakeClock(dt.datetime(2026, 10, 23, 15, 59, tzinfo=UTC))
    app = make_app(tmp_path, clock)
    app.import_recipients(("text", people(3)))
    draft, plan = app.prepare(relay(server), MessageInput(subject="Hi", text="Hi", delay_ms=60_000),
                              SendOptions(schedule=ScheduleInput(window="mon-fri 08:00-18:00", tz="Europe/Berlin")))
    run = app.start(draft, plan)
    run.wait()
    # Monday 08:00 in Berlin is now 07:00 UTC (winter time), not 06:00.
    assert app.journal.get(run.id).resume_after == "2026-10-26T07:00:00+00:00"
    clock.to(dt.datetime(2026, 10, 26, 6, 30, tzinfo=UTC))
    assert app.run_due() == []
    clock.to(dt.datetime(2026, 10, 26, 7, 0, tzinfo=UTC))
    app.run_due()
    assert sorted(r.sent_at for r in app.results(run.id)) == [
        "2026-10-23T15:59:00+00:00", "2026-10-26T07:00:00+00:00", "2026-10-26T07:01:00+00:00"]

    # New York's clocks go back on 1 Nov 2026: 09:00 there is 13:00 UTC on the 31st, 14:00 UTC on the 1st.
    clock.to(dt.datetime(2026, 10, 31, 13, 30, tzinfo=UTC))
    app.import_recipients(("text", people(2, ["America/New_York", "Europe/Berlin"])))
    draft, plan = app.prepare(relay(server), MESSAGE, SendOptions(schedule=ScheduleInput(local_time="09:00")))
    run = app.start(draft, plan)
    run.wait()
    for _ in range(12 * 26):  # the night of the change is 25 hours long in New York
        clock.advance(300)
        app.run_due()
    assert {r.email: r.sent_at for r in app.results(run.id)} == {
        "p0000@example.org": "2026-11-01T14:00:00+00:00",   # 09:00 EST
        "p0001@example.org": "2026-11-01T08:00:00+00:00"}   # 09:00 CET (Berlin changed on 25 Oct)
    app.shutdown()
