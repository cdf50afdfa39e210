"""backend/schedule.py: the time rules, checked against real zone data (zoneinfo + tzdata).

Expected instants are worked out by hand from the zones' rules: Europe/Berlin is CET (+1) in
winter and CEST (+2) from the last Sunday of March to the last Sunday of October (2026-10-25,
2027-03-28, at 01:00 UTC); America/New_York is EST (-5) and EDT (-4) from the second Sunday of
March to the first Sunday of November (2026-11-01, 2027-03-14, at 02:00 local).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import available_timezones

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.errors import SettingsError
from backend.schedule import (
    SendWindow,
    days_words,
    delivery_order,
    delivery_times,
    expired,
    follow_up_due,
    local_delivery,
    local_zone,
    parse_at,
    parse_clock,
    spread_end,
    when_words,
    zone,
)

ROOT = Path(__file__).resolve().parent.parent
UTC = dt.UTC
H = dt.timedelta(hours=1)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def window(text: str, tz: str = "Europe/Berlin") -> SendWindow:
    return SendWindow.parse(text, tz)


# -- parse_at -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "tz", "expected"), [
    ("2026-12-04 09:00", "Europe/Berlin", utc(2026, 12, 4, 8, 0)),
    ("2026-12-04 09:00:30", "Europe/Berlin", utc(2026, 12, 4, 8, 0, 30)),
    ("2026-12-04T09:00", "Europe/Berlin", utc(2026, 12, 4, 8, 0)),
    ("  2026-07-04 9:00 ", "America/New_York", utc(2026, 7, 4, 13, 0)),
    ("2026-07-04 09:00", "Europe/Berlin", utc(2026, 7, 4, 7, 0)),
    ("2026-12-04 09:00", "asia/tokyo", utc(2026, 12, 4, 0, 0)),
    # ISO 8601 with an offset or Z: taken as it is, the zone given is not used.
    ("2026-12-04T09:00:00+01:00", "Asia/Tokyo", utc(2026, 12, 4, 8, 0)),
    ("2026-12-04T09:00:00-05:00", "Europe/Berlin", utc(2026, 12, 4, 14, 0)),
    ("2026-12-04T09:00:00Z", "America/New_York", utc(2026, 12, 4, 9, 0)),
    ("2026-12-04T09:00:00.250+0530", None, utc(2026, 12, 4, 3, 30, 0, 250000)),
])
def test_parse_at_formats(text: str, tz: str | None, expected: dt.datetime) -> None:
    got = parse_at(text, tz)
    assert got == expected
    assert got.tzinfo is UTC


@pytest.mark.parametrize("text", ["tomorrow 9am", "2026-12-04", "04.12.2026 09:00", "2026-12-04 09", "", "2026-12-04 09:00 CET"])
def test_parse_at_refuses_other_text_naming_the_field_and_value(text: str) -> None:
    with pytest.raises(SettingsError) as err:
        parse_at(text, "Europe/Berlin")
    assert err.value.field == "at"
    assert f"{text!r} is not a date and time" in err.value.message
    assert "YYYY-MM-DD HH:MM" in err.value.message
    with pytest.raises(SettingsError) as err:
        parse_at(text, "Europe/Berlin", field="schedule")
    assert err.value.field == "schedule"
    assert err.value.message.startswith("schedule: ")


def test_parse_at_refuses_impossible_dates_and_offsets() -> None:
    with pytest.raises(SettingsError, match=r"'2026-02-30 09:00' is not a real date and time"):
        parse_at("2026-02-30 09:00", "UTC")
    with pytest.raises(SettingsError, match=r"'2026-12-04 24:00' is not a real date"):
        parse_at("2026-12-04 24:00", "UTC")
    with pytest.raises(SettingsError, match="impossible offset"):
        parse_at("2026-12-04T09:00+25:00")


def test_parse_at_refuses_a_bad_zone_as_the_tz_field() -> None:
    with pytest.raises(SettingsError) as err:
        parse_at("2026-12-04 09:00", "Europe/Berln")
    assert err.value.field == "tz"
    assert "did you mean Europe/Berlin?" in err.value.message


def test_parse_at_refuses_a_time_the_clocks_skip() -> None:
    with pytest.raises(SettingsError) as err:
        parse_at("2027-03-28 02:30", "Europe/Berlin")
    assert err.value.field == "at"
    assert err.value.message == (
        "at: 2027-03-28 02:30 does not exist in Europe/Berlin: the clocks go forward from 02:00 to 03:00 "
        "that night; give 03:00 or later")
    with pytest.raises(SettingsError) as err:
        parse_at("2027-03-14 02:30", "America/New_York")
    assert err.value.message == (
        "at: 2027-03-14 02:30 does not exist in America/New_York: the clocks go forward from 02:00 to 03:00 "
        "that night; give 03:00 or later")
    with pytest.raises(SettingsError, match="2027-03-14 02:00 does not exist"):
        parse_at("2027-03-14 02:00", "America/New_York")
    # The edges of the gap exist.
    assert parse_at("2027-03-28 03:00", "Europe/Berlin") == utc(2027, 3, 28, 1, 0)
    assert parse_at("2027-03-28 01:59:59", "Europe/Berlin") == utc(2027, 3, 28, 0, 59, 59)
    assert parse_at("2027-03-14 03:00", "America/New_York") == utc(2027, 3, 14, 7, 0)


def test_parse_at_takes_the_first_of_a_time_that_happens_twice() -> None:
    # 02:30 happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET): the first.
    assert parse_at("2026-10-25 02:30", "Europe/Berlin") == utc(2026, 10, 25, 0, 30)
    # 01:30 happens at 05:30 UTC (EDT) and again at 06:30 UTC (EST).
    assert parse_at("2026-11-01 01:30", "America/New_York") == utc(2026, 11, 1, 5, 30)
    assert parse_at("2026-10-25 03:00", "Europe/Berlin") == utc(2026, 10, 25, 2, 0)


def run_with_tz(tz: str, code: str) -> str:
    env = {**os.environ, "TZ": tz, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                          check=True)
    return done.stdout.strip()


def test_the_computers_zone_is_the_default() -> None:
    code = ("from backend.schedule import local_zone, parse_at, SendWindow; "
            "print(local_zone(), parse_at('2026-12-04 09:00').isoformat(), parse_at('2026-12-04 10:00', '').isoformat(), "
            "SendWindow.parse('mon-fri').tz)")
    assert run_with_tz("Asia/Tokyo", code) == "Asia/Tokyo 2026-12-04T00:00:00+00:00 2026-12-04T01:00:00+00:00 Asia/Tokyo"
    assert run_with_tz("America/New_York", code) == ("America/New_York 2026-12-04T14:00:00+00:00 "
                                                     "2026-12-04T15:00:00+00:00 America/New_York")
    assert local_zone() in available_timezones()


# -- zone -----------------------------------------------------------------------------------------

def test_zone_suggests_the_name_meant() -> None:
    with pytest.raises(SettingsError) as err:
        zone("Europe/Berln")
    assert err.value.field == "tz"
    assert err.value.message == ("tz: 'Europe/Berln' is not a time zone; did you mean Europe/Berlin? "
                                 "Give a name such as Europe/Berlin or America/New_York")
    with pytest.raises(SettingsError, match="did you mean America/New_York"):
        zone("New York", field="timezone")
    with pytest.raises(SettingsError, match="did you mean Asia/Tokyo"):
        zone("Tokyo")


@pytest.mark.parametrize("name", ["Mars/Base", "", "   ", "../../etc/passwd", "/etc/localtime", "Europe", "localtime", "Factory", "posixrules"])
def test_zone_refuses_what_is_not_a_zone(name: str) -> None:
    with pytest.raises(SettingsError) as err:
        zone(name, field="timezone")
    assert err.value.field == "timezone"
    assert "give a name such as Europe/Berlin or America/New_York" in err.value.message
    if name.strip():
        assert f"{name!r} is not a time zone" in err.value.message


def test_zone_takes_any_case_and_gives_the_canonical_name() -> None:
    assert zone("europe/berlin").key == "Europe/Berlin"
    assert zone(" America/New_York ").key == "America/New_York"
    assert zone("UTC").key == "UTC"


# -- when_words, days_words -----------------------------------------------------------------------

def test_when_words() -> None:
    assert when_words(utc(2026, 12, 4, 8, 0), "Europe/Berlin") == "Fri 4 Dec 2026 09:00 CET"
    assert when_words(utc(2026, 7, 4, 13, 0), "America/New_York") == "Sat 4 Jul 2026 09:00 EDT"
    assert when_words(utc(2026, 12, 4, 8, 0), "Asia/Tokyo") == "Fri 4 Dec 2026 17:00 JST"
    with pytest.raises(ValueError, match="timezone-aware"):
        when_words(dt.datetime(2026, 12, 4, 8, 0), "UTC")


def test_days_words() -> None:
    start = parse_at("2026-12-07 09:00", "Europe/Berlin")  # a Monday
    assert days_words(start, start + 8 * H, "Europe/Berlin") == "today"
    assert days_words(start, start + 24 * H, "Europe/Berlin") == "tomorrow"
    assert days_words(start, start + 48 * H, "Europe/Berlin") == "on Wed 9 Dec"
    assert days_words(start, parse_at("2027-01-02 10:00", "Europe/Berlin"), "Europe/Berlin") == "on Sat 2 Jan 2027"
    # The day is the zone's: 23:30 UTC is already tomorrow in Berlin.
    late = utc(2026, 12, 7, 22, 30)
    assert days_words(late, late + H, "Europe/Berlin") == "tomorrow"
    assert days_words(late, late + H, "UTC") == "today"


# -- send windows: parsing ------------------------------------------------------------------------

WORKDAYS = (0, 1, 2, 3, 4)
ALL = (0, 1, 2, 3, 4, 5, 6)


@pytest.mark.parametrize(("text", "days", "start", "end"), [
    ("mon-fri 08:00-18:00", WORKDAYS, dt.time(8), dt.time(18)),
    ("Mon-Fri 8:00-18:00", WORKDAYS, dt.time(8), dt.time(18)),
    ("MONDAY - Friday 08:00 - 18:00", WORKDAYS, dt.time(8), dt.time(18)),
    ("08:00-18:00 mon-fri", WORKDAYS, dt.time(8), dt.time(18)),
    ("weekdays 08:00-18:00", WORKDAYS, dt.time(8), dt.time(18)),
    ("mon,wed,fri 09:00-17:00", (0, 2, 4), dt.time(9), dt.time(17)),
    ("Mon, Wednesday, fri 09:00-17:00", (0, 2, 4), dt.time(9), dt.time(17)),
    ("sat-sun 10:00-12:00", (5, 6), dt.time(10), dt.time(12)),
    ("fri-mon 09:00-17:00", (0, 4, 5, 6), dt.time(9), dt.time(17)),
    ("sun-sun 09:30-17:45", (6,), dt.time(9, 30), dt.time(17, 45)),
    ("daily 08:00-18:00", ALL, dt.time(8), dt.time(18)),
    ("every day 08:00-18:00", ALL, dt.time(8), dt.time(18)),
    ("08:00-18:00", ALL, dt.time(8), dt.time(18)),
    ("22:00-06:00", ALL, dt.time(22), dt.time(6)),
    ("mon-fri", WORKDAYS, dt.time(0), dt.time(0)),
    ("mon-fri 00:00-24:00", WORKDAYS, dt.time(0), dt.time(0)),
    ("mon-fri 18:00-24:00", WORKDAYS, dt.time(18), dt.time(0)),
    ("mon-fri 08:00\u201318:00", WORKDAYS, dt.time(8), dt.time(18)),
])
def test_window_parse_variants(text: str, days: tuple[int, ...], start: dt.time, end: dt.time) -> None:
    assert window(text) == SendWindow(days, start, end, "Europe/Berlin")


@pytest.mark.parametrize(("text", "words"), [
    ("mon-fry 08:00-18:00", "'mon-fry' is not a day of the week"),
    ("mon-fri 8-18", "'8-18' is not a span of hours"),
    ("mon-fri 08:00", "'08:00' is not a span of hours"),
    ("mon-fri 25:00-18:00", "'25:00-18:00' is not a span of hours"),
    ("mon-fri 08:00-24:30", "'08:00-24:30' is not a span of hours"),
    ("mon-fri 08:00-08:00", "'08:00-08:00' opens and closes at the same time"),
    ("mon-fri 08:00-12:00 13:00-18:00", "more than one span of hours"),
    ("", "no send window given"),
    ("holidays", "'holidays' is not a day of the week"),
])
def test_window_parse_errors_name_the_bad_part(text: str, words: str) -> None:
    with pytest.raises(SettingsError) as err:
        window(text)
    assert err.value.field == "window"
    assert words in err.value.message
    with pytest.raises(SettingsError) as err:
        SendWindow.parse(text, "UTC", field="send_window")
    assert err.value.field == "send_window"


def test_window_parse_refuses_a_bad_zone() -> None:
    with pytest.raises(SettingsError) as err:
        window("mon-fri 08:00-18:00", "Europe/Berln")
    assert err.value.field == "tz"
    assert "did you mean Europe/Berlin" in err.value.message


@pytest.mark.parametrize(("text", "words"), [
    ("mon-fri 08:00-18:00", "Mon-Fri 08:00-18:00"),
    ("Monday,TUESDAY,wed,thu,fri 8:00-18:00", "Mon-Fri 08:00-18:00"),
    ("fri-mon 09:00-17:00", "Fri-Mon 09:00-17:00"),
    ("sun,mon,tue,thu 09:00-17:00", "Thu,Sun-Tue 09:00-17:00"),
    ("mon,wed,fri 09:00-17:00", "Mon,Wed,Fri 09:00-17:00"),
    ("sat-sun 10:00-12:00", "Sat-Sun 10:00-12:00"),
    ("sun", "Sun"),
    ("daily 22:00-06:00", "Daily 22:00-06:00"),
    ("mon-fri", "Mon-Fri"),
    ("daily", "Daily"),
    ("mon-fri 08:00-24:00", "Mon-Fri 08:00-24:00"),
])
def test_window_words_round_trip(text: str, words: str) -> None:
    w = window(text, "America/New_York")
    assert w.words() == words
    assert SendWindow.parse(w.words(), "America/New_York") == w
    spec = json.loads(json.dumps(w.as_spec()))
    assert SendWindow.from_spec(spec) == w


def test_window_spec_shape_and_bad_specs() -> None:
    assert window("fri-mon 09:00-24:00").as_spec() == {"days": [0, 4, 5, 6], "start": "09:00", "end": "24:00",
                                                        "tz": "Europe/Berlin"}
    for bad in ({}, {"days": [9], "start": "09:00", "end": "17:00", "tz": "UTC"},
                {"days": [1], "start": "9", "end": "17:00", "tz": "UTC"},
                {"days": [1], "start": "09:00", "end": "25:00", "tz": "UTC"},
                {"days": [1], "start": "09:00", "end": "17:00", "tz": "Mars/Base"}):
        with pytest.raises(SettingsError):
            SendWindow.from_spec(bad)


# -- send windows: instants -----------------------------------------------------------------------

def test_window_across_a_weekend() -> None:
    w = window("mon-fri 08:00-18:00")
    friday_late = utc(2026, 12, 4, 16, 59)  # Fri 17:59 CET
    assert w.is_open(friday_late)
    assert w.next_open(friday_late) == friday_late
    assert w.closes_at(friday_late) == utc(2026, 12, 4, 17, 0)
    closing = utc(2026, 12, 4, 17, 0)  # Fri 18:00 CET: closed (openings are half-open)
    assert not w.is_open(closing)
    assert w.closes_at(closing) is None
    for moment in (closing, utc(2026, 12, 5, 11, 0), utc(2026, 12, 7, 6, 59, 59)):
        assert w.next_open(moment) == utc(2026, 12, 7, 7, 0)  # Mon 08:00 CET
    assert w.is_open(utc(2026, 12, 7, 7, 0))
    # Aware moments in any zone give UTC instants.
    tokyo = dt.datetime(2026, 12, 5, 9, 0, tzinfo=zone("Asia/Tokyo"))
    assert w.next_open(tokyo) == utc(2026, 12, 7, 7, 0)
    assert w.next_open(tokyo).tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        w.is_open(dt.datetime(2026, 12, 5, 9, 0))


def test_window_across_midnight() -> None:
    w = window("daily 22:00-06:00")
    assert w.is_open(utc(2026, 12, 4, 22, 30))  # 23:30 CET
    assert w.closes_at(utc(2026, 12, 4, 22, 30)) == utc(2026, 12, 5, 5, 0)
    assert w.is_open(utc(2026, 12, 5, 2, 0))  # 03:00, opened the evening before
    assert w.closes_at(utc(2026, 12, 5, 2, 0)) == utc(2026, 12, 5, 5, 0)
    assert not w.is_open(utc(2026, 12, 5, 5, 0))
    assert w.next_open(utc(2026, 12, 5, 5, 0)) == utc(2026, 12, 5, 21, 0)
    # The day named is the day the opening starts: Friday night runs into Saturday.
    fri = window("fri 22:00-06:00")
    assert fri.is_open(utc(2026, 12, 5, 4, 0))  # Sat 05:00
    assert not fri.is_open(utc(2026, 12, 5, 22, 0))  # Sat 23:00
    assert fri.next_open(utc(2026, 12, 5, 22, 0)) == utc(2026, 12, 11, 21, 0)


def test_whole_days_join_into_one_opening() -> None:
    w = window("mon-fri")
    wednesday = utc(2026, 12, 2, 11, 0)
    assert w.is_open(wednesday)
    assert w.closes_at(wednesday) == utc(2026, 12, 4, 23, 0)  # Sat 00:00 CET
    assert w.next_open(utc(2026, 12, 5, 11, 0)) == utc(2026, 12, 6, 23, 0)  # Mon 00:00 CET
    always = window("daily")
    assert always.is_open(wednesday) and always.next_open(wednesday) == wednesday
    assert always.closes_at(wednesday) is None


def test_window_opening_after_the_berlin_changes() -> None:
    w = window("mon-fri 08:00-18:00")
    # Summer (CEST, +2): Monday 19 October opens at 06:00 UTC.
    assert w.next_open(utc(2026, 10, 17, 12, 0)) == utc(2026, 10, 19, 6, 0)
    # The clocks go back on Sunday 25 October: Monday 26 opens at 07:00 UTC and closes 17:00 UTC.
    assert w.next_open(utc(2026, 10, 24, 12, 0)) == utc(2026, 10, 26, 7, 0)
    assert w.closes_at(utc(2026, 10, 26, 7, 0)) == utc(2026, 10, 26, 17, 0)
    assert not w.is_open(utc(2026, 10, 26, 6, 30))  # 07:30 CET
    # Winter (CET, +1): Friday 26 March 2027 opens 07:00 UTC; after Sunday 28, Monday 29 at 06:00 UTC.
    assert w.next_open(utc(2027, 3, 26, 6, 30)) == utc(2027, 3, 26, 7, 0)
    assert w.next_open(utc(2027, 3, 27, 12, 0)) == utc(2027, 3, 29, 6, 0)
    assert w.is_open(utc(2027, 3, 29, 6, 30))  # 08:30 CEST


def test_window_hours_are_wall_clock_on_the_berlin_change_nights() -> None:
    night = window("daily 22:00-06:00")
    # Sat 24 Oct 22:00 CEST (20:00 UTC) to Sun 06:00 CET (05:00 UTC): 9 real hours.
    assert night.next_open(utc(2026, 10, 24, 12, 0)) == utc(2026, 10, 24, 20, 0)
    assert night.closes_at(utc(2026, 10, 24, 20, 0)) == utc(2026, 10, 25, 5, 0)
    # Sat 27 Mar 22:00 CET (21:00 UTC) to Sun 06:00 CEST (04:00 UTC): 7 real hours.
    assert night.next_open(utc(2027, 3, 27, 12, 0)) == utc(2027, 3, 27, 21, 0)
    assert night.closes_at(utc(2027, 3, 27, 21, 0)) == utc(2027, 3, 28, 4, 0)
    early = window("sun 00:00-06:00")
    assert early.closes_at(early.next_open(utc(2026, 10, 24, 12, 0))) - utc(2026, 10, 24, 22, 0) == 7 * H
    assert early.next_open(utc(2027, 3, 27, 12, 0)) == utc(2027, 3, 27, 23, 0)
    assert early.closes_at(utc(2027, 3, 27, 23, 0)) == utc(2027, 3, 28, 4, 0)  # 5 real hours


def test_window_edges_in_a_gap_or_a_fold() -> None:
    # 02:30 does not exist on 28 March 2027 in Berlin: the window opens at the end of the gap, 03:00 CEST.
    gap = window("sun 02:30-05:00")
    assert gap.next_open(utc(2027, 3, 27, 12, 0)) == utc(2027, 3, 28, 1, 0)
    assert not gap.is_open(utc(2027, 3, 28, 0, 59, 59))
    assert gap.closes_at(utc(2027, 3, 28, 1, 0)) == utc(2027, 3, 28, 3, 0)
    # 02:30 happens twice on 25 October 2026: the first (CEST, 00:30 UTC); 04:00 CET is 03:00 UTC.
    fold = window("sun 02:30-04:00")
    assert fold.next_open(utc(2026, 10, 24, 12, 0)) == utc(2026, 10, 25, 0, 30)
    assert fold.closes_at(utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 25, 3, 0)
    # New York: 02:00 does not exist on 14 March 2027 (opens 03:00 EDT = 07:00 UTC) ...
    ny_gap = window("sun 02:00-04:00", "America/New_York")
    assert ny_gap.next_open(utc(2027, 3, 13, 12, 0)) == utc(2027, 3, 14, 7, 0)
    assert ny_gap.closes_at(utc(2027, 3, 14, 7, 0)) == utc(2027, 3, 14, 8, 0)
    # ... and 01:30 happens twice on 1 November 2026 (first: EDT, 05:30 UTC; 03:00 EST = 08:00 UTC).
    ny_fold = window("sun 01:30-03:00", "America/New_York")
    assert ny_fold.next_open(utc(2026, 10, 31, 12, 0)) == utc(2026, 11, 1, 5, 30)
    assert ny_fold.closes_at(utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 1, 8, 0)


def test_window_opening_after_the_new_york_changes() -> None:
    w = window("mon-fri 09:00-17:00", "America/New_York")
    assert w.next_open(utc(2026, 10, 24, 12, 0)) == utc(2026, 10, 26, 13, 0)  # EDT
    assert w.next_open(utc(2026, 10, 31, 12, 0)) == utc(2026, 11, 2, 14, 0)  # EST, after 1 Nov
    assert w.closes_at(utc(2026, 11, 2, 14, 0)) == utc(2026, 11, 2, 22, 0)
    assert w.next_open(utc(2027, 3, 12, 12, 0)) == utc(2027, 3, 12, 14, 0)  # Fri, EST
    assert w.next_open(utc(2027, 3, 13, 12, 0)) == utc(2027, 3, 15, 13, 0)  # Mon, EDT, after 14 Mar
    assert not w.is_open(utc(2027, 3, 15, 12, 59))


PROPERTY_WINDOWS = [
    window("mon-fri 08:00-18:00"),
    window("daily 22:00-06:00", "America/New_York"),
    window("sun 02:30-05:00"),
    window("sun 01:30-03:00", "America/New_York"),
    window("sat-sun", "Asia/Tokyo"),
    window("fri-mon 09:00-24:00", "America/New_York"),
    window("daily 01:45-02:15", "Australia/Lord_Howe"),  # a half-hour change at 02:00
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(moment=st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2028, 1, 1),
                           timezones=st.just(UTC)),
       w=st.sampled_from(PROPERTY_WINDOWS))
def test_next_open_is_the_first_open_moment(moment: dt.datetime, w: SendWindow) -> None:
    opens = w.next_open(moment)
    assert opens >= moment
    assert w.is_open(opens)
    closes = w.closes_at(opens)
    assert closes is None or closes > opens
    if opens > moment:
        assert not w.is_open(opens - dt.timedelta(seconds=1))
    probe = moment
    while probe < opens:
        assert not w.is_open(probe), (w, moment, probe, opens)
        probe += dt.timedelta(minutes=15)


# -- local delivery -------------------------------------------------------------------------------

def test_local_delivery_from_a_berlin_start() -> None:
    start = parse_at("2026-12-03 12:00", "Europe/Berlin")  # 11:00 UTC
    got = {tz: local_delivery("09:00", tz, start) for tz in ("Asia/Tokyo", "America/New_York", "Europe/Berlin")}
    assert got == {"Asia/Tokyo": utc(2026, 12, 4, 0, 0), "America/New_York": utc(2026, 12, 3, 14, 0),
                   "Europe/Berlin": utc(2026, 12, 4, 8, 0)}
    for tz, when in got.items():
        assert start <= when < start + 24 * H
        assert when.astimezone(zone(tz)).time() == dt.time(9, 0)
    # At or after: the start itself when it is the hour.
    assert local_delivery(dt.time(9), "Europe/Berlin", utc(2026, 12, 4, 8, 0)) == utc(2026, 12, 4, 8, 0)
    assert local_delivery("9:00", "Europe/Berlin", utc(2026, 12, 4, 8, 0, 1)) == utc(2026, 12, 5, 8, 0)


def test_local_delivery_on_change_days() -> None:
    # 02:30 does not exist on 14 March 2027 in New York: the end of the gap, 03:00 EDT.
    assert local_delivery("02:30", "America/New_York", utc(2027, 3, 13, 12, 0)) == utc(2027, 3, 14, 7, 0)
    # 02:30 happens twice on 25 October 2026 in Berlin: the first.
    assert local_delivery("02:30", "Europe/Berlin", utc(2026, 10, 24, 12, 0)) == utc(2026, 10, 25, 0, 30)
    assert local_delivery("09:00", "Europe/Berlin", utc(2026, 10, 24, 12, 0)) == utc(2026, 10, 25, 8, 0)
    assert local_delivery("09:00", "Europe/Berlin", utc(2027, 3, 27, 9, 0)) == utc(2027, 3, 28, 7, 0)
    assert local_delivery("09:00", "America/New_York", utc(2026, 10, 31, 14, 0)) == utc(2026, 11, 1, 14, 0)


def test_parse_clock() -> None:
    assert parse_clock("09:00") == dt.time(9)
    assert parse_clock(" 9:05 ") == dt.time(9, 5)
    assert parse_clock("09:00:30") == dt.time(9, 0, 30)
    for bad in ("9", "9am", "24:00", "09:60", ""):
        with pytest.raises(SettingsError) as err:
            parse_clock(bad)
        assert err.value.field == "local_time"
        assert f"{bad!r} is not a time of day; give HH:MM such as 09:00" in err.value.message


def test_delivery_times_and_order() -> None:
    start = parse_at("2026-12-03 12:00", "Europe/Berlin")
    rows = [(0, "Asia/Tokyo", 2), (1, "", 3), (2, None, 4), (3, "Mars/Base", 5), (4, "america/new_york", 6),
            (5, "Europe/Berln", 7)]
    due, problems = delivery_times(rows, "09:00", "Europe/Berlin", start)
    assert due == {0: utc(2026, 12, 4, 0, 0), 1: utc(2026, 12, 4, 8, 0), 2: utc(2026, 12, 4, 8, 0),
                   4: utc(2026, 12, 3, 14, 0)}
    assert problems == [
        (5, "line 5: 'Mars/Base' is not a time zone; give a name such as Europe/Berlin or America/New_York"),
        (7, "line 7: 'Europe/Berln' is not a time zone; did you mean Europe/Berlin? Give a name such as "
            "Europe/Berlin or America/New_York"),
    ]
    assert delivery_order(due) == [4, 0, 1, 2]
    # Another default moves the rows without a zone only.
    due_ny, _ = delivery_times(rows, dt.time(9), "America/New_York", start)
    assert due_ny[1] == due_ny[2] == utc(2026, 12, 3, 14, 0) and due_ny[0] == due[0]
    assert delivery_order(due_ny) == [1, 2, 4, 0]
    with pytest.raises(SettingsError) as err:
        delivery_times(rows, "09:00", "Mars/Base", start)
    assert err.value.field == "tz"
    with pytest.raises(SettingsError) as err:
        delivery_times(rows, "nine", "UTC", start)
    assert err.value.field == "local_time"


# -- spreading over days --------------------------------------------------------------------------

MONDAY_9 = utc(2026, 12, 7, 8, 0)  # Mon 7 Dec 2026 09:00 CET


def test_spread_1200_at_500_a_day_ends_on_day_3() -> None:
    end = spread_end(1200, 500, MONDAY_9)
    assert end == MONDAY_9 + 48 * H
    assert days_words(MONDAY_9, end, "Europe/Berlin") == "on Wed 9 Dec"
    assert spread_end(1000, 500, MONDAY_9) == MONDAY_9 + 24 * H
    assert spread_end(1001, 500, MONDAY_9) == MONDAY_9 + 48 * H
    assert spread_end(500, 500, MONDAY_9) == MONDAY_9
    assert spread_end(0, 500, MONDAY_9) == MONDAY_9
    assert spread_end(10_000, None, MONDAY_9) == spread_end(10_000, 0, MONDAY_9) == MONDAY_9


def test_spread_counts_the_sends_of_the_last_24_hours() -> None:
    # 300 sent 18 h before (they count), 100 sent 30 h before (they do not).
    before = [MONDAY_9 - 18 * H] * 300 + [MONDAY_9 - 30 * H] * 100
    # 200 go at once; the other 300 when the 300 are 24 h old, 6 h after the start.
    assert spread_end(500, 500, MONDAY_9, sent_before=before) == MONDAY_9 + 6 * H
    assert spread_end(200, 500, MONDAY_9, sent_before=before) == MONDAY_9
    # A full day's quota spent one hour ago: the first message waits 23 h.
    assert spread_end(1, 500, MONDAY_9, sent_before=[MONDAY_9 - H] * 500) == MONDAY_9 + 23 * H
    # Sends one a minute over the last 500 minutes free one place a minute.
    trickle = [MONDAY_9 - dt.timedelta(minutes=m) for m in range(1, 501)]
    assert spread_end(10, 500, MONDAY_9, sent_before=trickle) == MONDAY_9 + 24 * H - dt.timedelta(minutes=491)


def test_spread_waits_for_the_window() -> None:
    w = window("mon-fri 08:00-18:00")
    friday_9 = utc(2026, 12, 4, 8, 0)
    # Fri 500; Saturday's batch waits for Monday 08:00 CET (07:00 UTC); the last 200 on Tuesday 08:00.
    end = spread_end(1200, 500, friday_9, window=w)
    assert end == utc(2026, 12, 8, 7, 0)
    assert days_words(friday_9, end, "Europe/Berlin") == "on Tue 8 Dec"
    assert spread_end(1000, 500, friday_9, window=w) == utc(2026, 12, 7, 7, 0)
    # A start outside the window begins at its next opening, with or without a limit.
    saturday = utc(2026, 12, 5, 10, 0)
    assert spread_end(10, None, saturday, window=w) == utc(2026, 12, 7, 7, 0)
    assert spread_end(10, 500, saturday, window=w) == utc(2026, 12, 7, 7, 0)


def test_spread_of_a_large_list_is_quick() -> None:
    import time

    trickle = [MONDAY_9 - dt.timedelta(minutes=m) for m in range(1, 2001)]
    began = time.perf_counter()
    end = spread_end(100_000, 2000, MONDAY_9, sent_before=trickle, window=window("mon-fri 08:00-18:00"))
    assert time.perf_counter() - began < 5
    assert end > MONDAY_9 + 49 * 24 * H  # 50 days of sending, weekends excluded: more than 7 weeks


# -- follow-ups -----------------------------------------------------------------------------------

def test_follow_up_due() -> None:
    done = utc(2026, 12, 1, 10, 0)
    assert follow_up_due(done, 3) == utc(2026, 12, 4, 10, 0)
    assert follow_up_due(done, 0.5) == utc(2026, 12, 1, 22, 0)
    assert follow_up_due(done, 0) == done
    # Wed 16:00 UTC + 3 days is Saturday: the window moves it to Monday 08:00 CET.
    w = window("mon-fri 08:00-18:00")
    assert follow_up_due(utc(2026, 12, 2, 16, 0), 3, w) == utc(2026, 12, 7, 7, 0)
    assert follow_up_due(utc(2026, 12, 1, 10, 0), 1, w) == utc(2026, 12, 2, 10, 0)
    for bad in (-1, float("nan"), "3"):
        with pytest.raises(SettingsError) as err:
            follow_up_due(done, bad)  # type: ignore[arg-type]
        assert err.value.field == "delay"


def test_expired() -> None:
    due = utc(2026, 12, 4, 10, 0)
    assert not expired(due, due, 2)
    assert not expired(due, due + 48 * H, 2)
    assert expired(due, due + 48 * H + dt.timedelta(seconds=1), 2)
    assert expired(due, due + dt.timedelta(hours=13), 0.5)
    assert not expired(due, due - 72 * H, 0)
