"""The JSON-call plumbing of the window and browser mode: one call's JSON object as typed,
bounded values (every failure names the field), and events delivered to the page in batches."""

from __future__ import annotations

import functools
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from backend.errors import SettingsError
from backend.inputs import (
    AUTH_MODES,
    BODY_FORMATS,
    CHANNELS,
    DEFAULT_DELAY_MS,
    LOCAL_INBOX,
    MAX_FOLLOW_UPS,
    SECURITY_MODES,
    AccountInput,
    FollowUpInput,
    MessageInput,
    ScheduleInput,
    SendOptions,
    whole_numbers,
)
from backend.presets import MAX_CONNECTIONS, PRESETS

log = logging.getLogger("bulk_mailer.bridge")

MAX_SHORT = 1000  # a host, a subject, an address
MAX_TEXT = 5_000_000  # a pasted list or a message body
_INT_RE = re.compile(r"-?[0-9]{1,18}")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


class Invalid(SettingsError):
    """A call's argument of the wrong type, size or value."""


class Params:
    """Typed, bounded access to one call's JSON object; every failure names the field."""

    def __init__(self, raw: Any, prefix: str = "") -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise Invalid(prefix.rstrip(".") or "params", "must be an object")
        self._raw, self._prefix = raw, prefix

    def _get(self, name: str, default: Any) -> Any:
        return self._raw.get(name, default)

    def _bad(self, name: str, message: str) -> Invalid:
        return Invalid(self._prefix + name, message)

    def str(self, name: str, default: str = "", *, max_len: int = MAX_SHORT, required: bool = False) -> str:
        value = self._get(name, None)
        if value is None:
            if required:
                raise self._bad(name, "is required")
            return default
        if not isinstance(value, str):
            raise self._bad(name, "must be text")
        if len(value) > max_len:
            raise self._bad(name, f"is too long (at most {max_len} characters)")
        if _SURROGATE_RE.search(value):
            raise self._bad(name, "holds characters that are not valid text")
        if required and not value.strip():
            raise self._bad(name, "is required")
        return value

    def int(self, name: str, default: int, lo: int, hi: int) -> int:
        value = self._get(name, None)
        if value is None or value == "":
            return default
        if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
            value = int(value.strip())
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self._bad(name, f"must be a whole number from {lo} to {hi}")
        return value

    def bool(self, name: str, default: bool = False) -> bool:
        value = self._get(name, None)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._bad(name, "must be true or false")
        return value

    def choice(self, name: str, choices: Sequence[str], default: str | None = None) -> str:
        value = self._get(name, None)
        if value is None and default is not None:
            return default
        if not isinstance(value, str) or value not in choices:
            raise self._bad(name, f"must be one of: {', '.join(choices)}")
        return value

    def number(self, name: str, lo: float, hi: float, *, whole: bool = False) -> float | None:
        """A number in [lo, hi], or None when absent or empty."""
        value = self._get(name, None)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise self._bad(name, "must be a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi \
                or value != value or (whole and not float(value).is_integer()):
            raise self._bad(name, f"must be a {'whole ' if whole else ''}number from {lo:g} to {hi:g}")
        return int(value) if whole else float(value)

    def has(self, name: str) -> bool:
        return self._get(name, None) is not None

    def obj(self, name: str) -> Params:
        return Params(self._get(name, None), f"{self._prefix}{name}.")

    def objects(self, name: str, most: int) -> list[Params]:
        """A list of at most `most` objects, each named by its place (follow_ups[1].body)."""
        raw = self._get(name, [])
        if not isinstance(raw, list) or len(raw) > most:
            raise self._bad(name, f"give a list of at most {most}")
        return [Params(item, f"{self._prefix}{name}[{k}].") for k, item in enumerate(raw, 1)]

    def column(self, name: str) -> str | None:
        value = self._get(name, None)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self._bad(name, "must be a column name or number")
        return str(value)[:MAX_SHORT]


def api(fn: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    """Make a bridge method: one JSON argument in, {ok, data|error} out, never a traceback."""

    @functools.wraps(fn)
    def method(self: Any, params: Any = None, *extra: Any) -> dict[str, Any]:
        return self._answer(fn, params, extra)

    method.__bridge_api__ = True  # type: ignore[attr-defined]
    return method


# -- event delivery -----------------------------------------------------------------------


class EventPump:
    """Queues events from any thread and delivers them in batches, at most one per interval.

    Within a batch, a recipient's 'sending' is dropped when its outcome follows, so a fast
    run costs ~20 deliveries a second while every final status still arrives.
    """

    def __init__(self, deliver: Callable[[list[dict[str, Any]]], None], interval: float = 0.05) -> None:
        self._deliver = deliver
        self._interval = interval
        self._queue: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._closed = False
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="event-pump", daemon=True)
        self._thread.start()

    def ready(self) -> None:
        """The page can receive events now; queued ones go out."""
        self._ready.set()
        with self._cond:
            self._cond.notify()

    def put(self, event: dict[str, Any]) -> None:
        with self._cond:
            self._queue.append(event)
            self._idle.clear()
            self._cond.notify()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far was delivered (when ready)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._ready.set()
        self._thread.join(5)

    @staticmethod
    def coalesce(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop each 'sending' whose recipient's outcome is in the same batch."""
        settled = {(e.get("campaign"), e.get("current")) for e in events
                   if e.get("type") == "email-progress" and e.get("status") != "sending"}
        return [e for e in events if not (e.get("type") == "email-progress" and e.get("status") == "sending"
                                          and (e.get("campaign"), e.get("current")) in settled)]

    def _run(self) -> None:
        while True:
            self._ready.wait()
            with self._cond:
                while not self._queue and not self._closed:
                    self._idle.set()
                    self._cond.wait()
                batch, self._queue = self._queue, []
                closed = self._closed
            if batch:
                try:
                    self._deliver(self.coalesce(batch))
                except Exception:
                    log.exception("delivering %d events failed", len(batch))
            with self._cond:
                if not self._queue:
                    self._idle.set()
            if closed:
                return
            time.sleep(self._interval)


class Previews:
    """HTML shown in the page's sandboxed preview frame, by a random id (the last 32 kept)."""

    def __init__(self, keep: int = 32) -> None:
        self._html: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep

    def add(self, html: str | None) -> str | None:
        """The URL the page loads it from (/preview/<id>); None for no HTML."""
        if html is None:
            return None
        pid = secrets.token_urlsafe(32)
        with self._lock:
            self._html[pid] = html
            while len(self._html) > self._keep:
                self._html.popitem(last=False)
        return f"/preview/{pid}"

    def get(self, pid: str) -> str | None:
        with self._lock:
            return self._html.get(pid)


# Unsubscribe values as typed in one field: split between addresses, never inside a {{ field }}.
_UNSUB_RE = re.compile(r"(?:\{\{.*?\}\}|[^\s,])+")


def unsubscribe_values(m: Params) -> list[str]:
    """The message's unsubscribe field (a list, or one string as typed): at most two values."""
    raw = m._get("unsubscribe", None)
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = _UNSUB_RE.findall(raw) if raw.strip() else []
    if not isinstance(raw, list) or not all(isinstance(x, str) and len(x) <= MAX_SHORT for x in raw) or len(raw) > 2:
        raise Invalid("message.unsubscribe", "must be up to two addresses: an https:// link and/or a mailto:")
    return list(raw)


def send_options(p: Params) -> SendOptions:
    """The Send section's limits, retries, connections and times (absent: the defaults)."""
    limits: dict[str, Any] = {}
    if p.has("limits"):  # every field replaces the provider's: an empty one means no limit
        q = p.obj("limits")
        limits = {"per_second": q.number("per_second", 0, 10_000)}
        limits.update({k: q.number(k, 0, n, whole=True) for k, n in
                       (("per_minute", 10_000_000), ("per_hour", 10_000_000), ("per_day", 100_000_000))})
    per_minute = p.obj("account").int("max_per_minute", 0, 0, 10_000)
    if per_minute and p.obj("account").str("channel") == "gmail" and not p.has("limits"):
        limits["per_minute"] = per_minute  # the Gmail API's own field in Account
    retry: dict[str, Any] = {}
    if p.has("retry"):
        q = p.obj("retry")
        age = q.number("max_age_h", 0.1, 24 * 30)
        retry = {"base_s": q.number("base_s", 1, 86_400), "cap_s": q.number("cap_s", 1, 7 * 86_400),
                 "max_attempts": q.number("max_attempts", 1, 100, whole=True),
                 "max_age_s": age * 3600 if age is not None else None,
                 "max_failures_in_a_row": q.number("max_failures_in_a_row", 0, 1_000_000, whole=True)}
    connections = p.int("connections", 0, 0, MAX_CONNECTIONS) or None
    return SendOptions(limits=limits, retry=retry, connections=connections,
                       skip_problem_rows=p.bool("skip_problem_rows"), skip_sent_in=p.str("skip_sent_in") or None,
                       skip_empty=tuple(f for f in p.str("skip_empty").split(",") if f),
                       sent_copy="auto" if p.obj("account").bool("sent_copy", True) else "never",
                       schedule=schedule_input(p.obj("schedule")))


def schedule_input(q: Params) -> ScheduleInput:
    """{"at", "tz", "window", "local_time", "default_tz", "tz_column", "follow_ups": [{"after_days",
    "subject", "body", "format": "html"|"text", "expire_days"}]} as the core's ScheduleInput."""
    steps = []
    for f in q.objects("follow_ups", MAX_FOLLOW_UPS):
        body = f.str("body", max_len=2_000_000)
        html = f.choice("format", ("html", "text"), "text") == "html"
        steps.append(FollowUpInput(after_days=f.number("after_days", 0.01, 90) or 0, subject=f.str("subject"),
                                   html=body if html else "", text="" if html else body,
                                   expire_days=f.number("expire_days", 0, 30) if f.has("expire_days") else 2.0))
    return ScheduleInput(at=q.str("at") or None, tz=q.str("tz") or None, window=q.str("window") or None,
                         local_time=q.str("local_time") or None, default_tz=q.str("default_tz") or None,
                         tz_column=q.str("tz_column") or "timezone", follow_ups=tuple(steps),
                         warmup=_numbers(q, "warmup"))


def _numbers(q: Params, name: str) -> tuple[int, ...]:
    """"20, 40, 80" (as typed) as whole numbers; the field named when one is not."""
    numbers = whole_numbers(q.str(name))
    if numbers is None:
        raise q._bad(name, "give whole numbers separated by commas, such as 20, 40, 80")
    return numbers


def account_input(p: Params) -> AccountInput:
    """The account the page sends (its password beside it, never saved here)."""
    a = p.obj("account")
    provider = a.str("provider") or None
    if provider is not None and provider not in (LOCAL_INBOX, "custom") and provider not in PRESETS:
        raise Invalid("account.provider", f"unknown provider '{provider}'")
    channel = a.choice("channel", CHANNELS, "smtp")
    return AccountInput(
        channel=channel, provider=provider, host=a.str("host").strip(),  # the core says when it is missing
        port=a.int("port", 587, 1, 65535), security=a.choice("security", SECURITY_MODES, "starttls"),
        user=a.str("user").strip(), password=p.str("password"), auth=a.choice("auth", AUTH_MODES, "password"),
        from_address=a.str("from_address"), verify_certificates=a.bool("verify_certificates", True),
        allow_plaintext_auth=a.bool("allow_plaintext_auth", False), timeout=a.int("timeout", 30, 1, 600),
        region=a.str("region") or None, **imap_input(a))


def imap_input(a: Params) -> dict[str, Any]:
    """The mailbox's IMAP server (empty: the provider's)."""
    return {"imap_host": a.str("imap_host").strip(), "imap_port": a.int("imap_port", 0, 0, 65535) or None,
            "imap_security": a.choice("imap_security", ("ssl", "starttls"), "ssl")}


def message_input(p: Params) -> MessageInput:
    """The message the page sends: subject, body in its format (html, text or markdown, with
    raw_html: raw HTML allowed in the Markdown), signature (the account's, default true), From,
    unsubscribe, pace."""
    m = p.obj("message")
    body = m.str("body", max_len=MAX_TEXT)
    fmt = m.choice("format", BODY_FORMATS, "html")
    return MessageInput(subject=m.str("subject", max_len=MAX_SHORT), html=body if fmt == "html" else None,
                        text=body if fmt == "text" else None, markdown=body if fmt == "markdown" else None,
                        raw_html=m.bool("raw_html"), signature=m.bool("signature", True),
                        from_address=p.str("from_address") or p.obj("account").str("from_address"),
                        unsubscribe=tuple(unsubscribe_values(m)),
                        delay_ms=p.int("delay_ms", DEFAULT_DELAY_MS, 0, 3_600_000))
