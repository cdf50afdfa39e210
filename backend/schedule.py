"""Time rules for scheduling, pure: no I/O but reading the zone database (zoneinfo, tzdata).

What a user writes (a date and time for "send later", a send window, a local delivery time, time
zone names) becomes exact instants here, and instants become words. Every datetime returned is
timezone-aware and in UTC; every datetime taken must be timezone-aware.

Daylight-saving rules, everywhere in this module:
- a wall-clock time that does not exist (the clocks go forward over it) is an error when the
  user typed it as a moment (``parse_at``); as a rule's time (a window's edge, a local delivery
  time) it moves to the end of the gap, the first moment that does exist;
- a wall-clock time that happens twice (the clocks go back over it) means the first of the two
  (``fold=0``).

Window hours and local delivery times are wall-clock times in their zone: on the days the clocks
change, an 00:00-06:00 window lasts 5 or 7 real hours.
"""

from __future__ import annotations

import bisect
import datetime as dt
import difflib
import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import tzlocal

from backend.errors import SettingsError

UTC = dt.UTC
DAY = dt.timedelta(days=1)
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
ZONE_EXAMPLES = "Europe/Berlin or America/New_York"
AT_EXAMPLES = ("give YYYY-MM-DD HH:MM such as 2026-12-04 09:00, or ISO 8601 with an offset such as "
               "2026-12-04T09:00:00+01:00")
WINDOW_EXAMPLES = "give days and hours such as mon-fri 08:00-18:00, mon,wed,fri 09:00-17:00 or daily 22:00-06:00"


# -- time zones -----------------------------------------------------------------------------------

# Files in the zone folder that are not zones of a place: the machine's own (a link that changes
# with the computer), the old default rules, and tzdata's "no zone set".
NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def _zone_names() -> dict[str, str]:
    """Every IANA zone name, by its lower-case spelling."""
    return {name.lower(): name for name in available_timezones() if name not in NOT_ZONES}


def _canonical(name: str) -> str | None:
    """The zone's IANA spelling (case-insensitive, spaces around trimmed), or None."""
    names = _zone_names()
    key = name.strip()
    if key in names.values():
        return key
    return names.get(key.lower())


def _zone_words(name: str) -> str:
    """Why `name` is not a time zone, with the closest real name when there is one."""
    if not name.strip():
        return f"no time zone given; give a name such as {ZONE_EXAMPLES}"
    names = _zone_names()
    typed = name.strip().lower().replace(" ", "_")
    # A city alone ("Berlin", "new york") names its zone.
    cities = [full for low, full in names.items() if low.rsplit("/", 1)[-1] == typed and "/" in low]
    close = cities or [names[low] for low in difflib.get_close_matches(typed, list(names), n=1, cutoff=0.8)]
    if close:
        return f"{name!r} is not a time zone; did you mean {sorted(close)[0]}? Give a name such as {ZONE_EXAMPLES}"
    return f"{name!r} is not a time zone; give a name such as {ZONE_EXAMPLES}"


def local_zone() -> str:
    """The computer's IANA zone name (Europe/Berlin), or "UTC" when it cannot be told."""
    try:
        name = tzlocal.get_localzone_name()
    except Exception:  # tzlocal raises several kinds on a broken configuration
        return "UTC"
    return (_canonical(name) if name else None) or "UTC"


def zone(name: str, field: str = "tz") -> ZoneInfo:
    """The time zone named `name` (IANA, case-insensitive); SettingsError(field) when there is none.

    ``zone(name).key`` is the name's canonical spelling, the one to store.
    """
    key = _canonical(name) if isinstance(name, str) else None
    if key is None:
        raise SettingsError(field, _zone_words(name if isinstance(name, str) else repr(name)))
    return ZoneInfo(key)


def _aware(moment: dt.datetime, what: str = "moment") -> dt.datetime:
    if not isinstance(moment, dt.datetime) or moment.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, not {moment!r}")
    return moment.astimezone(UTC)


# -- wall clock <-> instants ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Gap:
    at: dt.datetime       # the instant the clocks jump (UTC): the end of the gap
    wall_from: dt.datetime  # the wall time they jump from (naive)
    wall_to: dt.datetime    # the wall time they jump to (naive)


def _gap(naive: dt.datetime, zi: ZoneInfo) -> _Gap | None:
    """The gap `naive` falls in (a wall time that does not exist in zi), or None."""
    first = naive.replace(tzinfo=zi, fold=0).astimezone(UTC)
    if first.astimezone(zi).replace(tzinfo=None) == naive:
        return None
    other = naive.replace(tzinfo=zi, fold=1).astimezone(UTC)
    lo, hi = int(min(first, other).timestamp()), int(max(first, other).timestamp()) + 1

    def offset(ts: int) -> dt.timedelta:
        return dt.datetime.fromtimestamp(ts, UTC).astimezone(zi).utcoffset() or dt.timedelta(0)

    after = offset(hi)
    before = offset(lo)
    while hi - lo > 1:  # transitions fall on whole seconds: find the first second of the new offset
        mid = (lo + hi) // 2
        if offset(mid) == after:
            hi = mid
        else:
            lo = mid
    at = dt.datetime.fromtimestamp(hi, UTC)
    return _Gap(at, (at + before).replace(tzinfo=None), (at + after).replace(tzinfo=None))


def _resolve(naive: dt.datetime, zi: ZoneInfo) -> dt.datetime:
    """A rule's wall time as an instant (UTC): in a gap, the end of the gap; twice, the first."""
    gap = _gap(naive, zi)
    if gap is not None:
        return gap.at
    return naive.replace(tzinfo=zi, fold=0).astimezone(UTC)


def _wall(naive: dt.datetime) -> str:
    return naive.strftime("%Y-%m-%d %H:%M:%S" if naive.second or naive.microsecond else "%Y-%m-%d %H:%M")


def _clock(t: dt.time | dt.datetime) -> str:
    return t.strftime("%H:%M:%S" if t.second else "%H:%M")


# -- a moment typed by the user -------------------------------------------------------------------

_AT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ]\s*(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6}))?)?"
    r"\s*(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?"
)


def parse_at(text: str, tz: str | None = None, *, field: str = "at") -> dt.datetime:
    """The moment `text` names, in UTC.

    Accepted: ``YYYY-MM-DD HH:MM`` or ``YYYY-MM-DD HH:MM:SS`` (a ``T`` may replace the space), a
    wall-clock time in the zone `tz` (None or "": the computer's zone, ``local_zone()``); or ISO 8601
    with an offset or ``Z`` (``2026-12-04T09:00:00+01:00``), taken as it is (`tz` is not used).

    A wall time that does not exist in the zone (the clocks go forward over it) is refused with
    the times that do. A wall time that happens twice (the clocks go back over it) is the first of
    the two (``fold=0``): 2026-10-25 02:30 in Europe/Berlin is 00:30 UTC, not 01:30 UTC.
    """
    match = _AT.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise SettingsError(field, f"{text!r} is not a date and time; {AT_EXAMPLES}")
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = match.groups()
    try:
        naive = dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                            int((frac or "0").ljust(6, "0")))
    except ValueError as exc:
        raise SettingsError(field, f"{text!r} is not a real date and time ({exc}); {AT_EXAMPLES}") from None
    if zulu:
        return naive.replace(tzinfo=UTC)
    if sign:
        hours, minutes = int(off_h), int(off_m or 0)
        if hours > 23 or minutes > 59:
            raise SettingsError(field, f"{text!r} has an impossible offset from UTC; {AT_EXAMPLES}")
        offset = dt.timedelta(hours=hours, minutes=minutes) * (-1 if sign == "-" else 1)
        return naive.replace(tzinfo=dt.timezone(offset)).astimezone(UTC)
    zi = zone(tz or local_zone(), "tz")
    gap = _gap(naive, zi)
    if gap is not None:
        same_day = gap.wall_from.date() == gap.wall_to.date()
        jump_from = _clock(gap.wall_from) if same_day else _wall(gap.wall_from)
        jump_to = _clock(gap.wall_to) if same_day else _wall(gap.wall_to)
        raise SettingsError(field, f"{_wall(naive)} does not exist in {zi.key}: the clocks go forward from "
                                   f"{jump_from} to {jump_to} that night; give {jump_to} or later")
    return naive.replace(tzinfo=zi, fold=0).astimezone(UTC)


def _date_words(local: dt.datetime | dt.date) -> str:
    return f"{DAY_NAMES[local.weekday()]} {local.day} {MONTH_NAMES[local.month - 1]}"


def when_words(moment: dt.datetime, tz: str | None = None) -> str:
    """`moment` on the wall clock of `tz` (None: the computer's), e.g. "Fri 4 Dec 2026 09:00 CET"."""
    local = _aware(moment).astimezone(zone(tz or local_zone()))
    return f"{_date_words(local)} {local.year} {local:%H:%M} {local.tzname()}"


def days_words(start: dt.datetime, end: dt.datetime, tz: str | None = None) -> str:
    """The day of `end` seen from `start` in `tz`: "today", "tomorrow" or "on Wed 9 Dec"
    (with the year when it is not `start`'s year)."""
    zi = zone(tz or local_zone())
    first = _aware(start, "start").astimezone(zi).date()
    last = _aware(end, "end").astimezone(zi).date()
    if last == first:
        return "today"
    if last == first + DAY:
        return "tomorrow"
    return f"on {_date_words(last)}" + (f" {last.year}" if last.year != first.year else "")


# -- clocks ---------------------------------------------------------------------------------------

_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def _time_of(hour: str, minute: str, second: str | None = None, *, allow_24: bool = False) -> dt.time | None:
    h, m, s = int(hour), int(minute), int(second or 0)
    if allow_24 and (h, m, s) == (24, 0, 0):
        return dt.time(0)
    if h > 23 or m > 59 or s > 59:
        return None
    return dt.time(h, m, s)


def parse_clock(text: str, field: str = "local_time") -> dt.time:
    """A time of day: "09:00", "9:00" or "09:00:30"."""
    match = _CLOCK.fullmatch(text.strip()) if isinstance(text, str) else None
    when = _time_of(*match.groups()) if match else None
    if when is None:
        raise SettingsError(field, f"{text!r} is not a time of day; give HH:MM such as 09:00")
    return when


# -- send windows ---------------------------------------------------------------------------------

_DAY_WORDS = {
    **{name: i for i, name in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))},
    **{name: i for i, name in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday",
                                         "saturday", "sunday"))},
    "tues": 1, "weds": 2, "thur": 3, "thurs": 3,
}
_DAY_GROUPS = {"daily": tuple(range(7)), "everyday": tuple(range(7)), "weekdays": tuple(range(5)),
               "weekends": (5, 6), "weekend": (5, 6)}
_HOURS = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_MIDNIGHT = dt.time(0)


def _parse_days(part: str, field: str) -> tuple[int, ...]:
    part = re.sub(r"\bevery\s+day\b", "daily", part)
    part = re.sub(r"\s*([-,])\s*", r"\1", part).strip(" ,")
    if not part:
        return tuple(range(7))
    days: set[int] = set()
    for piece in re.split(r"[,\s]+", part):
        if piece in _DAY_GROUPS:
            days.update(_DAY_GROUPS[piece])
            continue
        ends = piece.split("-")
        if len(ends) in (1, 2) and all(end in _DAY_WORDS for end in ends):
            first, last = _DAY_WORDS[ends[0]], _DAY_WORDS[ends[-1]]
            days.update((first + i) % 7 for i in range((last - first) % 7 + 1))  # fri-mon wraps
            continue
        if any(ch.isdigit() for ch in piece):
            raise SettingsError(field, f"{piece!r} is not a span of hours; give HH:MM-HH:MM such as 08:00-18:00 "
                                       "(22:00-06:00 crosses midnight)")
        raise SettingsError(field, f"{piece!r} is not a day of the week; give days such as mon-fri, "
                                   "mon,wed,fri, sat-sun or daily, then hours such as 08:00-18:00")
    return tuple(sorted(days))


def _days_words(days: tuple[int, ...]) -> str:
    if len(days) == 7:
        return "Daily"
    chosen = set(days)
    # Start after a day that is not chosen, so that a run across Sunday (Fri-Mon) stays whole.
    first = 0 if not {0, 6} <= chosen else next(d for d in range(7) if d not in chosen) + 1
    runs: list[list[int]] = []
    for i in range(7):
        d = (first + i) % 7
        if d not in chosen:
            continue
        if runs and (runs[-1][-1] + 1) % 7 == d:
            runs[-1].append(d)
        else:
            runs.append([d])
    return ",".join(DAY_NAMES[r[0]] if len(r) == 1 else f"{DAY_NAMES[r[0]]}-{DAY_NAMES[r[-1]]}" for r in runs)


@dataclass(frozen=True)
class SendWindow:
    """Days of the week and hours when a campaign may send, on the wall clock of `tz`.

    `days` are the days an opening starts (0 = Monday .. 6 = Sunday). `end` <= `start` means the
    opening crosses midnight and ends the next day (``fri 22:00-06:00`` closes Saturday 06:00);
    00:00-00:00 (written ``mon-fri`` or ``00:00-24:00``) is the whole day. Edges are wall-clock
    times: an edge inside a daylight-saving gap moves to the end of the gap, an edge that happens
    twice is the first.
    """

    days: tuple[int, ...]
    start: dt.time
    end: dt.time
    tz: str

    def __post_init__(self) -> None:
        days = tuple(sorted(set(self.days)))
        if not days or not all(isinstance(d, int) and 0 <= d <= 6 for d in days):
            raise ValueError(f"days must be weekdays 0..6, at least one: {self.days!r}")
        for t in (self.start, self.end):
            if not isinstance(t, dt.time) or t.tzinfo is not None or t.second or t.microsecond:
                raise ValueError(f"window times are naive whole minutes: {t!r}")
        if self.start == self.end != _MIDNIGHT:
            raise ValueError("a window's start and end differ, or are both 00:00 (whole days)")
        object.__setattr__(self, "days", days)
        object.__setattr__(self, "tz", zone(self.tz, "tz").key)

    # -- text and journal forms --

    @classmethod
    def parse(cls, text: str, tz: str | None = None, *, field: str = "window") -> SendWindow:
        """ "mon-fri 08:00-18:00", "Mon,Wed,Fri 9:00-17:00", "fri-mon 09:00-17:00" (ranges wrap),
        "daily 22:00-06:00" or "22:00-06:00" (every day), "sat-sun" (whole days), "weekdays",
        "weekends"; full day names too, any case. `tz` None: the computer's zone."""
        if not isinstance(text, str) or not text.strip():
            raise SettingsError(field, f"no send window given; {WINDOW_EXAMPLES}")
        norm = text.strip().lower().replace("\u2013", "-").replace("\u2014", "-")
        spans = list(_HOURS.finditer(norm))
        if len(spans) > 1:
            raise SettingsError(field, f"{text!r} has more than one span of hours; give one, such as 08:00-18:00")
        start = end = _MIDNIGHT
        days_part = norm
        if spans:
            span = spans[0]
            start_t = _time_of(span[1], span[2])
            end_t = _time_of(span[3], span[4], allow_24=True)
            if start_t is None or end_t is None:
                raise SettingsError(field, f"{span[0]!r} is not a span of hours: times run from 00:00 to 24:00; "
                                           "give HH:MM-HH:MM such as 08:00-18:00")
            if start_t == end_t != _MIDNIGHT:
                raise SettingsError(field, f"{span[0]!r} opens and closes at the same time; give two different "
                                           "times such as 08:00-18:00")
            start, end = start_t, end_t
            days_part = norm[:span.start()] + " " + norm[span.end():]
        days = _parse_days(days_part, field)
        return cls(days, start, end, zone(tz or local_zone(), "tz").key)

    def _hours_words(self) -> str:
        if self.start == self.end == _MIDNIGHT:
            return ""
        end = "24:00" if self.end == _MIDNIGHT else _clock(self.end)
        return f"{_clock(self.start)}-{end}"

    def words(self) -> str:
        """The canonical text: "Mon-Fri 08:00-18:00"; ``parse(words(), tz)`` gives the same window."""
        return " ".join(p for p in (_days_words(self.days), self._hours_words()) if p)

    def as_spec(self) -> dict[str, Any]:
        """JSON-able, for the journal."""
        return {"days": list(self.days), "start": _clock(self.start),
                "end": "24:00" if self.end == _MIDNIGHT else _clock(self.end), "tz": self.tz}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> SendWindow:
        try:
            start = _time_of(*spec["start"].split(":"))
            end = _time_of(*spec["end"].split(":"), allow_24=True)
            if start is None or end is None:
                raise ValueError("hours out of range")
            return cls(tuple(spec["days"]), start, end, spec["tz"])
        except SettingsError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SettingsError("window", f"the stored send window {spec!r} cannot be read ({exc}); "
                                          f"set the window again ({WINDOW_EXAMPLES})") from None

    # -- instants --

    @property
    def always_open(self) -> bool:
        return len(self.days) == 7 and self.start == self.end == _MIDNIGHT

    def _opening(self, day: dt.date, zi: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
        opens = _resolve(dt.datetime.combine(day, self.start), zi)
        end_day = day if self.end > self.start else day + DAY
        return opens, _resolve(dt.datetime.combine(end_day, self.end), zi)

    def _spans(self, moment: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """The window's openings from the day before `moment` on, adjacent ones joined (UTC)."""
        zi = ZoneInfo(self.tz)
        day = moment.astimezone(zi).date() - DAY
        current: tuple[dt.datetime, dt.datetime] | None = None
        for _ in range(400):
            if day.weekday() in self.days:
                opens, closes = self._opening(day, zi)
                if opens < closes:
                    if current is not None and opens <= current[1]:
                        current = (current[0], max(current[1], closes))
                    else:
                        if current is not None:
                            yield current
                        current = (opens, closes)
            day += DAY
        raise RuntimeError(f"send window {self.words()} in {self.tz} never opens")  # pragma: no cover

    def _first_span(self, moment: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        return next(span for span in self._spans(moment) if span[1] > moment)

    def is_open(self, moment: dt.datetime) -> bool:
        moment = _aware(moment)
        return self.always_open or self._first_span(moment)[0] <= moment

    def next_open(self, moment: dt.datetime) -> dt.datetime:
        """`moment` itself (in UTC) when the window is open then, else the window's next opening."""
        moment = _aware(moment)
        if self.always_open:
            return moment
        return max(self._first_span(moment)[0], moment)

    def closes_at(self, moment: dt.datetime) -> dt.datetime | None:
        """When the opening that holds `moment` ends (adjacent openings count as one: a Mon-Fri
        whole-day window open on Monday closes Saturday 00:00). None when the window is closed at
        `moment`, and when it never closes (every day, all day)."""
        moment = _aware(moment)
        if self.always_open:
            return None
        opens, closes = self._first_span(moment)
        return closes if opens <= moment else None


# -- the recipient's local time -------------------------------------------------------------------

def local_delivery(local_time: str | dt.time, tz: str, start: dt.datetime) -> dt.datetime:
    """The first moment at or after `start` when it is `local_time` on the wall clock of `tz`: a
    message "at 09:00 in the recipient's zone" goes within a day of `start` (24 h, or 25 on the
    night the clocks go back), at each recipient's 09:00. Where that wall time does not exist that
    day (the clocks go forward over it), the end of the gap; where it happens twice, the first."""
    clock = local_time if isinstance(local_time, dt.time) else parse_clock(local_time)
    clock = clock.replace(tzinfo=None)
    zi = zone(tz)
    start = _aware(start, "start")
    day = start.astimezone(zi).date()
    while True:
        when = _resolve(dt.datetime.combine(day, clock), zi)
        if when >= start:
            return when
        day += DAY


def delivery_times(rows: Sequence[tuple[int, str | None, int]], local_time: str | dt.time,
                   default_tz: str | None, start: dt.datetime
                   ) -> tuple[dict[int, dt.datetime], list[tuple[int, str]]]:
    """When each row's message goes, at `local_time` in the row's zone.

    rows: (index, the row's time zone column or None/"", the row's line in the list). A row
    without a zone takes `default_tz` (None: the computer's zone). Returns ({index: when (UTC)},
    [(line, "line 7: 'Mars/Base' is not a time zone; ...")]); rows with a problem are left out of
    the dict. A bad `local_time` or `default_tz` concerns every row: SettingsError.
    """
    clock = local_time if isinstance(local_time, dt.time) else parse_clock(local_time)
    default = zone(default_tz if default_tz else local_zone(), "tz").key
    start = _aware(start, "start")
    due: dict[int, dt.datetime] = {}
    problems: list[tuple[int, str]] = []
    memo: dict[str, dt.datetime | str] = {}
    for index, tz_name, line in rows:
        name = (tz_name or "").strip() or default
        if name not in memo:
            key = _canonical(name)
            memo[name] = _zone_words(name) if key is None else local_delivery(clock, key, start)
        got = memo[name]
        if isinstance(got, str):
            problems.append((line, f"line {line}: {got}"))
        else:
            due[index] = got
    return due, problems


def delivery_order(due: dict[int, dt.datetime]) -> list[int]:
    """The indices by delivery time, then by index: time-zone order, east first."""
    return sorted(due, key=lambda index: (due[index], index))


# -- spreading over days --------------------------------------------------------------------------

def spread_end(total: int, per_day: int | None, start: dt.datetime, *, sent_before: Sequence[dt.datetime] = (),
               window: SendWindow | None = None) -> dt.datetime:
    """An estimate of when the last of `total` messages goes, when at most `per_day` may go in any
    rolling 24 hours.

    Sends of the last 24 hours before `start` (`sent_before`, this account's) count. Delays between
    messages are ignored: a batch goes at `start` (or the window's next opening), the next batch
    when the oldest counted sends are 24 hours old, and so on; with a window, a batch that falls
    outside it waits for its next opening (a window closing during a batch is not modelled).
    `per_day` None or 0: no limit, so `start` (or the window's next opening).
    """
    start = _aware(start, "start")
    open_until: dt.datetime | None = None

    def opened(moment: dt.datetime) -> dt.datetime:
        nonlocal open_until
        if window is None or (open_until is not None and moment < open_until):
            return moment  # inside the opening found last time (moments only grow)
        moment = window.next_open(moment)
        open_until = window.closes_at(moment) or dt.datetime.max.replace(tzinfo=UTC)
        return moment

    moment = opened(start)
    if total <= 0 or not per_day:
        return moment
    if per_day < 0:
        raise ValueError(f"per_day must be 0 or more, not {per_day}")
    # The sends that count, oldest first: [moment, how many].
    counted: list[list[Any]] = []
    for sent in sorted(min(_aware(s, "sent_before"), start) for s in sent_before):
        if sent > start - DAY:
            if counted and counted[-1][0] == sent:
                counted[-1][1] += 1
            else:
                counted.append([sent, 1])
    in_flight = sum(n for _, n in counted)
    left = total
    head = 0  # counted[head:] are the sends still within 24 hours of `moment`
    while True:
        while head < len(counted) and counted[head][0] + DAY <= moment:
            in_flight -= counted[head][1]
            head += 1
        room = per_day - in_flight
        if room > 0:
            batch = min(room, left)
            left -= batch
            if left == 0:
                return moment
            if counted and counted[-1][0] == moment:
                counted[-1][1] += batch
            else:
                bisect.insort(counted, [moment, batch], lo=head)
            in_flight += batch
        moment = opened(counted[head][0] + DAY)


# -- follow-ups -----------------------------------------------------------------------------------

def follow_up_due(previous_done: dt.datetime, delay_days: float, window: SendWindow | None = None) -> dt.datetime:
    """When a follow-up step is due: `delay_days` (of 24 hours) after the previous step was done,
    then the window's next opening, if there is a window."""
    if not isinstance(delay_days, int | float) or not delay_days >= 0:
        raise SettingsError("delay", f"{delay_days!r} is not a number of days; give 0 or more, such as 3")
    due = _aware(previous_done, "previous_done") + dt.timedelta(days=delay_days)
    return window.next_open(due) if window is not None else due


def expired(due: dt.datetime, now: dt.datetime, expire_days: float) -> bool:
    """True when `now` is more than `expire_days` after `due`: too late to send."""
    return _aware(now, "now") > _aware(due, "due") + dt.timedelta(days=expire_days)


def zone_names() -> list[str]:
    """Every IANA zone name a user may pick, sorted (the page's time-zone lists)."""
    return sorted(name for name in _zone_names().values() if "/" in name and not name.startswith(("Etc/", "SystemV/")))
