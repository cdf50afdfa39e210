"""Review & send's When and History's scheduled campaigns in a real browser (Debian's chromium
driven by Playwright, browser mode): send later in a chosen time zone, change the time, cancel;
a follow-up reaching the core; a run waiting for its send window; the timer installed and
removed in a throwaway config folder."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.uisteps import CHROMIUM, app_page, chromium, fill_message, pace, paste_list, to

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with chromium(CHROMIUM) as b:
        yield b


@pytest.fixture
def page(browser, web_app):
    with app_page(browser, web_app[0].url) as pg:
        yield pg


def journal():
    """What the core has journaled (a second App on the same data folder, as the CLI would be)."""
    from backend.app import App

    app = App()
    try:
        return {c["id"]: c for c in app.history()}, app.journal
    finally:
        app.shutdown()


def no_sideways_scroll(page) -> None:
    width = page.evaluate("[document.scrollingElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1], (page.evaluate("document.body.dataset.view"), width)


def ready_campaign(page, subject: str = "Spring news") -> None:
    page.get_by_label("From").fill("Me <me@example.com>")
    paste_list(page, "ann@example.org\nbob@example.org")
    expect(page.locator("#recipients-summary")).to_contain_text("2 valid")
    fill_message(page, subject, "<p>Hello</p>")
    pace(page)


def test_schedule_change_the_time_and_cancel(page, web_app):
    _, inbox = web_app
    ready_campaign(page)
    send = page.get_by_role("button", name="Send", exact=True)
    expect(send).to_be_enabled()
    # Schedule: tomorrow 09:00 in a zone chosen from the list (the computer's is the default)
    page.get_by_label("Schedule", exact=True).check()
    zone = page.get_by_label("Time zone", exact=True)
    from backend import schedule as core_schedule

    expect(zone).to_have_value(core_schedule.local_zone())  # the computer's zone, said so
    expect(zone.locator("option:checked")).to_have_text(f"{core_schedule.local_zone()} (this computer)")
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    page.get_by_label("Date and time").fill(f"{tomorrow:%Y-%m-%d}T09:00")
    zone.select_option("America/New_York")
    starts = page.locator("#when-summary")
    expect(starts).to_contain_text(re.compile(rf"Starts\w{{3}} {tomorrow.day} \w{{3}} {tomorrow.year} 09:00 E[SD]T"))
    # one a day: the second message goes the day after, and Review says when it should end
    page.locator("#limits-box > summary").click()
    page.get_by_label("Per day").fill("1")
    expect(starts).to_contain_text(re.compile(r"Endsabout (tomorrow|\w{3} \d+ \w{3})"))
    schedule = page.get_by_role("button", name="Schedule", exact=True)
    expect(schedule).to_be_enabled()
    schedule.click()
    confirm = page.locator("#send-confirm")
    expect(confirm).to_contain_text(re.compile(
        r"^Schedule 2 messages for \w{3} \d+ \w{3} \d{4} 09:00 E[SD]T through the local test inbox as me@example\.com\?"))
    page.get_by_role("button", name="Yes, schedule").click()
    status = page.locator("#send-status")
    expect(status).to_contain_text("Scheduled for")
    expect(status).to_contain_text("it goes by itself while the app is open or the timer is installed")
    expect(page.locator(".progress-row")).to_be_hidden()
    expect(page.locator("#send-state")).to_have_text("")
    assert inbox.messages() == []
    found, _ = journal()
    (cid, c), = found.items()
    wanted = dt.datetime(tomorrow.year, tomorrow.month, tomorrow.day, 9, 0, tzinfo=ZoneInfo("America/New_York"))
    assert c["state"] == "scheduled" and dt.datetime.fromisoformat(c["times"]["at"]) == wanted
    # History: "Scheduled for" its time, in its zone
    to(page, "History")
    row = page.locator(f'#history-list tr[data-id="{cid}"]')
    expect(row.locator(".history-state")).to_contain_text("Scheduled for")
    expect(row.locator(".history-state")).to_contain_text("09:00 (America/New_York). Ends about ")
    expect(row.get_by_role("button", name=re.compile("^Resume"))).to_have_count(0)
    no_sideways_scroll(page)
    # Change time: the day after, 10:30 in Berlin
    row.get_by_role("button", name=re.compile("^Change time")).click()
    form = page.locator("#history-reschedule")
    expect(form.get_by_label("New date and time")).to_be_focused()
    expect(form.get_by_label("New date and time")).to_have_value(f"{tomorrow:%Y-%m-%d}T09:00")
    later = tomorrow + dt.timedelta(days=1)
    form.get_by_label("New date and time").fill(f"{later:%Y-%m-%d}T10:30")
    form.get_by_label("Time zone").select_option("Europe/Berlin")
    form.get_by_role("button", name="Save the new time").click()
    expect(page.locator("#history-status")).to_contain_text("Scheduled for")
    expect(row.locator(".history-state")).to_contain_text("10:30 (Europe/Berlin)")
    found, _ = journal()
    moved = dt.datetime(later.year, later.month, later.day, 10, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert dt.datetime.fromisoformat(found[cid]["times"]["at"]) == moved and found[cid]["times"]["tz"] == "Europe/Berlin"
    # a time that has passed is refused, with the reason, and nothing changes
    row.get_by_role("button", name=re.compile("^Change time")).click()
    page.get_by_label("New date and time").fill("2020-01-01T09:00")
    page.get_by_role("button", name="Save the new time").click()
    expect(page.locator("#history-time-problem")).to_contain_text("has passed")
    page.get_by_role("button", name="Keep the time").click()
    # Change message: its subject and body, before it goes
    row.get_by_role("button", name=re.compile("^Change message")).click()
    edit = page.locator("#history-edit-message")
    expect(edit.get_by_label("New subject")).to_be_focused()
    expect(edit.get_by_label("New subject")).to_have_value("Spring news")
    expect(edit.get_by_label("New message (HTML)")).to_have_value("<p>Hello</p>")
    edit.get_by_label("New subject").fill("Spring news, {{ missing_field }}")
    edit.get_by_role("button", name="Save the message").click()
    expect(page.locator("#history-message-problem")).not_to_be_empty()  # a field the list has not: refused
    edit.get_by_label("New subject").fill("Spring news, changed")
    edit.get_by_label("New message (HTML)").fill("<p>Hello again</p>")
    edit.get_by_role("button", name="Save the message").click()
    expect(page.locator("#history-status")).to_contain_text("Message changed; scheduled for")
    _, j = journal()
    assert j.spec(cid)["message"]["subject"] == "Spring news, changed"
    assert j.spec(cid)["message"]["html"] == "<p>Hello again</p>"
    # Cancel: asked first (Keep it is the safe default), then cancelled
    row.get_by_role("button", name=re.compile("^Cancel")).click()
    expect(page.locator("#history-cancel-confirm")).to_contain_text("Cancel “Spring news, changed” (scheduled for")
    expect(page.get_by_role("button", name="Keep it")).to_be_focused()
    page.get_by_role("button", name="Yes, cancel it").click()
    expect(page.locator("#history-status")).to_contain_text("Cancelled: 2 recipients not sent.")
    expect(row.locator(".history-state")).to_have_text("Cancelled")
    found, _ = journal()
    assert found[cid]["state"] == "cancelled"
    assert inbox.messages() == []


def test_a_follow_up_from_the_form_reaches_the_core(page, web_app):
    _, inbox = web_app
    ready_campaign(page, "Meetup")
    to(page, "Review & send")
    page.locator("#follow-ups-box summary").click()
    add = page.get_by_role("button", name="Add a follow-up")
    add.click()
    add.click()
    first = page.locator(".follow-up").nth(0)
    expect(first.locator("legend")).to_have_text("Follow-up 1")
    expect(page.get_by_label("Follow-up 1 Days after")).to_have_value("3")
    expect(page.get_by_label("Follow-up 1 Skip if late by more than (days)")).to_have_value("2")
    expect(page.get_by_label("Follow-up 1 Subject")).to_have_attribute("placeholder", "Re: Meetup")
    # two follow-ups open: nothing scrolls sideways at 1280x800
    no_sideways_scroll(page)
    # an empty follow-up message is a problem shown by its field, and Send waits
    expect(page.locator("#when-problem")).to_contain_text("write the follow-up's message")
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_disabled()
    page.get_by_role("button", name="Remove follow-up 2").click()
    expect(page.locator(".follow-up")).to_have_count(1)
    page.get_by_label("Follow-up 1 Days after").fill("4")
    page.get_by_label("Follow-up 1 Message").fill("<p>Did you see it?</p>")
    summary = page.locator("#when-summary")
    expect(summary).to_contain_text("Follow-up 14 days after, if no reply")
    expect(page.locator("#when-problem")).to_be_hidden()
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#send-confirm")).to_contain_text("Send 2 messages")
    page.get_by_role("button", name="Yes, send").click()
    expect(page.locator("#send-state")).to_have_text("Finished: 2 sent.", timeout=15_000)
    assert len(inbox.messages()) == 2
    found, jr = journal()
    (cid, c), = found.items()
    step = jr.spec(cid)["follow_ups"][0]
    assert (step["after_days"], step["expire_days"], step["subject"], step["html"]) == (4, 2, "", "<p>Did you see it?</p>")
    to(page, "History")
    row = page.locator(f'#history-list tr[data-id="{cid}"]')
    steps = page.locator(f'#history-list tr[data-steps-of="{cid}"] .history-steps')
    expect(steps).to_contain_text(re.compile(r"^Follow-up 1: 4 days after — due \w{3}, "))
    row.get_by_role("button", name=re.compile("^Cancel follow-ups")).click()
    page.get_by_role("button", name="Yes, cancel the follow-ups").click()
    expect(steps).to_have_text("Follow-up 1: 4 days after — not sent: cancelled by the user")
    expect(row.get_by_role("button", name=re.compile("^Cancel follow-ups"))).to_have_count(0)


def test_a_run_outside_its_send_window_waits_and_says_until_when(page, web_app):
    _, inbox = web_app
    ready_campaign(page, "Window")
    to(page, "Review & send")
    page.locator("#when-more summary").click()
    # a window the core cannot read: said next to the field, and Send waits
    page.get_by_label("Send window").fill("someday")
    problem = page.locator("#when-problem")
    expect(problem).to_contain_text("When: ")
    expect(page.get_by_label("Send window")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_disabled()
    assert page.evaluate("document.querySelector('#when-window').nextElementSibling.id") == "when-problem"
    now = dt.datetime.now()
    opens, closes = now + dt.timedelta(hours=2), now + dt.timedelta(hours=3)
    page.get_by_label("Send window").fill(f"daily {opens:%H}:00-{closes:%H}:00")
    expect(page.locator("#when-more-summary")).to_have_text(f"daily {opens:%H}:00-{closes:%H}:00")
    expect(page.locator("#when-summary")).to_contain_text("Send window")
    page.get_by_role("button", name="Send", exact=True).click()
    page.get_by_role("button", name="Yes, send").click()
    state = page.locator("#send-state")
    expect(state).to_have_text(re.compile(rf"^Waiting: next message at \w{{3}} {opens:%H}:00 \(send window\); it goes by "
                                          r"itself while the app is open or the timer is installed\.$"), timeout=15_000)
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled()  # not "still sending"
    expect(page.get_by_role("button", name="Pause")).to_be_disabled()
    assert inbox.messages() == []
    to(page, "History")
    row = page.locator("#history-list tr").first
    expect(row.locator(".history-state")).to_contain_text("Waiting: next message at")
    row.get_by_role("button", name=re.compile("^Cancel")).click()
    page.get_by_role("button", name="Yes, cancel it").click()
    expect(row.locator(".history-state")).to_have_text("Cancelled")
    to(page, "Review & send")  # the Send section no longer says it waits
    expect(state).to_have_text("Cancelled.")


def test_warm_up_limits_the_first_day_and_the_meter_counts_the_account(page, web_app):
    _, inbox = web_app
    page.get_by_label("From").fill("Me <me@example.com>")
    paste_list(page, "\n".join(f"p{i}@example.org" for i in range(5)))
    expect(page.locator("#recipients-summary")).to_contain_text("5 valid")
    fill_message(page, "Warm", "<p>Hello</p>")
    pace(page)
    to(page, "Review & send")
    expect(page.locator("#review-summary")).to_contain_text("Last 24 hours")
    page.locator("#when-more summary").click()
    page.get_by_label("Warm up a new account").check()
    page.get_by_label("At most this many a day, day by day").fill("2, 4")
    expect(page.locator("#when-more-summary")).to_contain_text("warm-up")
    expect(page.locator("#when-summary")).to_contain_text("Ends")  # 2 today, 3 tomorrow
    page.get_by_role("button", name="Send", exact=True).click()
    page.get_by_role("button", name="Yes, send").click()
    expect(page.locator("#send-state")).not_to_have_text(re.compile("^Sending"), timeout=15_000)
    for _ in range(100):  # the run records its state as it ends
        history, j = journal()
        (campaign,) = history.values()
        if campaign["state"] != "running":
            break
        page.wait_for_timeout(100)
    assert campaign["counts"] == {"sent": 2, "pending": 3} and campaign["state"] == "paused"
    assert j.spec(campaign["id"])["schedule"]["warmup"] == [2, 4]
    assert len(inbox.messages()) == 2


def test_the_timer_is_installed_and_removed_from_the_window(page, tmp_path, monkeypatch):
    # Never this machine's own config or user manager: everything under tmp_path.
    config, runtime = tmp_path / "config", tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(tmp_path / "userhome"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={runtime}/bus")
    to(page, "Review & send")
    page.locator("#timer-box > summary").click()
    words = page.locator("#timer-status")
    expect(words).to_have_text("Not installed.")
    page.get_by_role("button", name="Install timer").click()
    expect(words).to_contain_text("Written, but not started")
    units = config / "systemd" / "user"
    assert (units / "bulk-mailer-run-due.timer").exists() and (units / "bulk-mailer-run-due.service").exists()
    by_hand = page.locator("#timer-by-hand")
    by_hand.locator("summary").click()
    expect(by_hand).to_contain_text("systemctl --user disable --now bulk-mailer-run-due.timer")
    page.get_by_role("button", name="Remove timer").click()
    expect(words).to_have_text("Not installed.")
    expect(page.get_by_role("button", name="Install timer")).to_be_visible()
    assert not (units / "bulk-mailer-run-due.timer").exists()
