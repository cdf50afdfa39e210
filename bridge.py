"""The js_api bridge: the window's JavaScript calls these methods; events go back as CustomEvents.

Every public method takes one JSON object (or nothing) and answers
``{"ok": true, "data": ...}`` or ``{"ok": false, "error": {category, title, message, cause, fix}}``.
pywebview exposes every public attribute of the object it is given, so the window, threads
and services live in ``_underscored`` attributes. Campaigns run on one worker thread; their
events are queued and delivered in batches (at most ~20 deliveries a second) through one
constant JS template filled only with ``json.dumps``.

``main()`` is the ``bulk-mailer`` entry point: no subcommand opens the window, ``--web``
serves the same UI to a browser, anything else is handed to ``backend.cli``.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import functools
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from email import message_from_bytes
from pathlib import Path
from typing import Any

from backend import __version__, paths, service
from backend import settings as account_settings
from backend.attachments import Attachment, check_attachments, guess_content_type, load_attachments
from backend.campaign import CampaignOutcome, Control, RateLimits, RetryPolicy
from backend.credentials import CredentialsError, PasswordStore, account_key, default_store
from backend.diagnostics import diagnose
from backend.errors import CATEGORIES, MailerError, OAuthError, SettingsError
from backend.google_auth import (
    KEY_TOKEN,
    PURPOSES,
    SCOPE_MAIL,
    GoogleAccount,
    OAuthClient,
    SignIn,
    TokenSource,
    saved_profile,
)
from backend.inbox import LocalInbox
from backend.journal import Journal
from backend.presets import (
    MAX_CONNECTIONS,
    PRESETS,
    default_connections,
    gmail_api_limits,
    preset_host,
)
from backend.recipients import ImportResult, load_bytes, load_file, parse_text
from backend.settings import AUTH_MODES, SECURITY_LABELS, SECURITY_MODES, SmtpSettings
from backend.suppression import SuppressionList
from backend.templates import SavedTemplate, TemplateStore
from backend.transports.base import Envelope, Transport
from backend.transports.gmail import GmailTransport
from backend.transports.smtp import SmtpTransport

log = logging.getLogger("bulk_mailer.bridge")

FRONTEND = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parent)) / "frontend"
LOCAL_INBOX = "local-inbox"
EVENT_TYPES = ("email-progress", "campaign-state", "campaign-wait")
# The one JS template events are delivered with; only json.dumps output is ever put into it.
DISPATCH_JS = (
    "(function(events){for(var i=0;i<events.length;i++){"
    "window.dispatchEvent(new CustomEvent(events[i].type,{detail:events[i]}));}})(%s)"
)
MAX_TEXT = 5_000_000  # a pasted list or a message body
MAX_SHORT = 1000  # a host, a subject, an address
MAX_FILE = 50_000_000  # an uploaded recipient file, decoded
PREVIEW_ROWS = 100
PREVIEW_REJECTS = 500
_UNSUB_RE = re.compile(r"(?:\{\{.*?\}\}|[^\s,])+")
_PREVIEW_HEADERS = {"from", "to", "reply-to", "subject", "date", "list-unsubscribe", "list-unsubscribe-post"}
_INT_RE = re.compile(r"-?[0-9]{1,18}")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
FILE_TYPES = ("Recipient lists (*.csv;*.tsv;*.txt)", "All files (*.*)")
CLIENT_FILE_TYPES = ("Google OAuth client (*.json)", "All files (*.*)")
CHANNELS = ("smtp", "gmail")


class _Invalid(SettingsError):
    """A bridge argument of the wrong type, size or value."""


class _NotNow(MailerError):
    """An action that does not fit the current state (nothing imported, a run in progress)."""

    default_category = "action_unavailable"


# -- arguments ----------------------------------------------------------------------------


class Params:
    """Typed, bounded access to one call's JSON object; every failure names the field."""

    def __init__(self, raw: Any, prefix: str = "") -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise _Invalid(prefix.rstrip(".") or "params", "must be an object")
        self._raw, self._prefix = raw, prefix

    def _get(self, name: str, default: Any) -> Any:
        return self._raw.get(name, default)

    def _bad(self, name: str, message: str) -> _Invalid:
        return _Invalid(self._prefix + name, message)

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
    def method(self: Bridge, params: Any = None, *extra: Any) -> dict[str, Any]:
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


# -- the bridge ---------------------------------------------------------------------------


@dataclass
class _Plan:
    """How a run sends: its transport, what the journal keeps, its account label and limits."""

    transport: Callable[[], Transport]
    spec: dict[str, Any]
    account: str
    limits: RateLimits | None
    provider: str | None
    gmail: str | None = None  # the signed-in address, for a Gmail API run
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_failures_in_a_row: int = 20
    connections: int = 1  # transports (connections) sending at once; 1 for the Gmail API


@dataclass
class _Run:
    """The campaign on the worker thread (or the last one, for export)."""

    id: str
    total: int
    control: Control
    draft: service.Draft
    provider: str | None
    state: str = "running"
    error: dict[str, Any] | None = None
    counts: Counter[str] = field(default_factory=Counter)
    outcome: CampaignOutcome | None = None
    thread: threading.Thread | None = None
    checked: bool = False  # every row was checked when it started (no second pass)


class Bridge:
    """What the page may ask of Python. Only the methods marked @api are public."""

    def __init__(
        self,
        *,
        native_dialogs: bool = False,
        inbox: LocalInbox | None = None,
        store: PasswordStore | None = None,
        deliver: Callable[[list[dict[str, Any]]], None] | None = None,
        detector: Callable[[str], list[Any]] | None = None,
        open_browser: Callable[[str], Any] | None = None,
    ) -> None:
        self._window: Any = None
        # Google's sign-in page opens in the system browser (never in the app's own web view,
        # which Google refuses); tests pass a function that plays the browser.
        self._open_browser = open_browser
        self._sign_in: SignIn | None = None
        self._sign_in_state: dict[str, Any] = {"state": "idle", "url": None, "error": None, "purpose": None}
        self._detector = detector  # tests pass one that never leaves 127.0.0.1
        self._native_dialogs = native_dialogs
        self._inbox = inbox if inbox is not None else LocalInbox()
        self._store = store if store is not None else default_store()
        self._pump = EventPump(deliver or self._deliver_to_window)
        self._lock = threading.Lock()
        self._run: _Run | None = None
        self._finished: _Run | None = None  # the last run with results, for export during the next
        self._imported: ImportResult | None = None
        self._source: tuple[str, Any] | None = None  # how to re-read the list with another column
        self._columns: tuple[str | None, str | None] = (None, None)  # email and name column chosen
        self._passphrase: str | None = None  # kept in memory for this run of the app only
        self._suppression = SuppressionList()
        self._journal_db: Journal | None = None
        self._deferred_until: dict[int, str] = {}  # for the run being resumed
        self._attempts_before: dict[int, int] = {}  # its recipients' tries in earlier runs
        self._attachments: list[tuple[str, Attachment]] = []  # files for everyone, with an id
        self._attach_column: str | None = None
        self._previews: OrderedDict[str, str] = OrderedDict()  # id -> HTML, served at /preview/<id>
        self._lock_previews = threading.Lock()
        self._attach_dir: Path | None = None
        self._templates = TemplateStore()

    # -- plumbing (private: pywebview exposes only public names) --------------------------

    @property
    def _has_dialogs(self) -> bool:
        return self._native_dialogs and self._window is not None

    def _dialog(self, kind: str, *, refusal: str = "there is no native file dialog in browser mode; use "
                "the file field", **options: Any) -> list[str] | None:
        """The paths the user picked in a native dialog (OPEN, SAVE or FOLDER); None if cancelled.

        File paths reach Python only this way, never from the page.
        """
        if not self._has_dialogs:
            raise _NotNow(refusal)
        import webview

        chosen = self._window.create_file_dialog(getattr(webview.FileDialog, kind), **options)
        if not chosen:
            return None
        return [str(c) for c in (chosen if isinstance(chosen, list | tuple) else [chosen])]

    @classmethod
    def _api_names(cls) -> list[str]:
        return sorted(n for n in dir(cls) if getattr(getattr(cls, n), "__bridge_api__", False))

    def _attach_window(self, window: Any) -> None:
        self._window = window
        window.events.loaded += self._pump.ready
        window.events.closing += self._on_closing

    def _deliver_to_window(self, batch: list[dict[str, Any]]) -> None:
        if self._window is not None:
            self._window.evaluate_js(DISPATCH_JS % json.dumps(batch))

    def _emit(self, event: dict[str, Any]) -> None:
        assert event.get("type") in EVENT_TYPES
        self._pump.put(event)

    def _on_closing(self) -> bool:
        run = self._run
        if run is None or run.state not in ("running", "paused"):
            return True
        ok = self._window.create_confirmation_dialog(
            "Cancel the campaign?",
            "A campaign is still sending. Closing the window cancels it after the current message; "
            "the recipients not yet sent are reported as not sent.",
        )
        if ok:
            # This runs on the GUI thread: cancel, and close once the worker has stopped,
            # instead of freezing the window while waiting for it.
            run.control.cancel()

            def close_when_stopped() -> None:
                if run.thread is not None:
                    run.thread.join(120)
                self._window.destroy()

            threading.Thread(target=close_when_stopped, name="close-window", daemon=True).start()
        return False

    def _shutdown(self) -> None:
        if self._sign_in is not None:
            self._sign_in.cancel()  # the loopback listener stops within a fraction of a second
        run = self._run
        if run is not None and run.thread is not None and run.thread.is_alive():
            run.control.cancel()
            run.thread.join(60)
        self._pump.close()
        self._inbox.stop()

    def _answer(self, fn: Callable[..., Any], params: Any, extra: tuple[Any, ...]) -> dict[str, Any]:
        name = fn.__name__
        try:
            if extra:
                raise _Invalid("params", f"{name} takes one object, not {1 + len(extra)} arguments")
            data = fn(self, Params(params))
            return {"ok": True, "data": data}
        except MailerError as exc:
            provider = self._provider_of(params)
            error = exc.describe(provider)
            steps = getattr(exc, "steps", None)
            if steps is not None:
                error["steps"] = steps
            log.info("%s: [%s] %s", name, exc.category, exc.message)
            return {"ok": False, "error": error}
        except Exception:
            log.exception("unexpected error in bridge method %s", name)
            return {"ok": False, "error": {
                "category": "internal_error",
                "title": "Something went wrong",
                "message": f"An unexpected error happened in {name}; nothing was sent by it.",
                "cause": "This is a bug in Bulk Mailer.",
                "fix": [f"The details are in the log file in {paths.log_dir()}; please report it."],
            }}

    @staticmethod
    def _provider_of(params: Any) -> str | None:
        if isinstance(params, dict) and isinstance(params.get("account"), dict):
            if params["account"].get("channel") == "gmail":
                return "gmail"  # Google's advice (OAuth client, test users) goes with its errors
            provider = params["account"].get("provider")
            if isinstance(provider, str) and provider in PRESETS:
                return provider
        return None

    # -- account --------------------------------------------------------------------------

    def _account(self, p: Params, *, need_password: bool = True) -> SmtpSettings:
        a = p.obj("account")
        provider = a.str("provider") or None
        if provider == LOCAL_INBOX:
            port = self._inbox.start()
            return SmtpSettings(host=self._inbox.host, port=port, security="none",
                                from_address=a.str("from_address"), timeout=10).validated()
        if provider is not None and provider != "custom" and provider not in PRESETS:
            raise _Invalid("account.provider", f"unknown provider '{provider}'")
        user = a.str("user").strip()
        host = a.str("host", required=True).strip()
        auth = a.choice("auth", AUTH_MODES, "password")
        password = ""
        token_source = None
        if auth == "xoauth2":
            token_source = TokenSource(self._google(p), "smtp")
            user = user or token_source.email
        elif user and need_password:
            password = self._password(p, user, host)
        return SmtpSettings(
            host=host,
            port=a.int("port", 587, 1, 65535),
            security=a.choice("security", SECURITY_MODES, "starttls"),
            user=user,
            password=password,
            auth=auth,
            token_source=token_source,
            from_address=a.str("from_address"),
            verify_certificates=a.bool("verify_certificates", True),
            allow_plaintext_auth=a.bool("allow_plaintext_auth", False),
            provider=provider if provider in PRESETS else None,
            timeout=a.int("timeout", 30, 1, 600),
        ).validated()

    def _google(self, p: Params) -> GoogleAccount:
        """The saved Google sign-in, unlocked with the passphrase given now or earlier."""
        given = p.str("passphrase", max_len=MAX_SHORT)
        passphrase = given or self._passphrase
        if given and self._store.needs_passphrase:
            self._store.load(KEY_TOKEN, given)  # a wrong passphrase is refused here, not kept
            self._passphrase = given
        return GoogleAccount(self._store, passphrase)

    @staticmethod
    def _channel(p: Params) -> str:
        return p.obj("account").choice("channel", CHANNELS, "smtp")

    def _password(self, p: Params, user: str, host: str) -> str:
        password = p.str("password", max_len=MAX_SHORT)
        if password:
            return password
        passphrase = p.str("passphrase", max_len=MAX_SHORT) or self._passphrase
        key = account_key(user, host)
        if self._store.has(key):
            saved = self._store.load(key, passphrase)
            if saved:
                if passphrase:
                    self._passphrase = passphrase
                return saved
        raise _Invalid("password", f"enter the password for '{user}'")

    @api
    def app_info(self, p: Params) -> dict[str, Any]:
        """Version, provider presets, error categories, what this mode can do."""
        providers = [{
            "key": LOCAL_INBOX, "name": "Local test inbox", "host": self._inbox.host,
            "port": self._inbox.start(), "security": "none",
            "notes": ["A mail server on this computer that keeps every message it receives, for "
                      "trying a campaign without sending real mail. No username or password."],
            "limits_note": "", "username_hint": "", "regions": [], "default_region": None, "advice": {},
            "connections": 1,
        }]
        for preset in PRESETS.values():
            providers.append({
                "key": preset.key, "name": preset.name, "host": preset_host(preset),
                "port": preset.port, "security": preset.security, "notes": list(preset.notes),
                "limits_note": preset.limits.note, "username_hint": preset.username_hint,
                "limits": {k: getattr(preset.limits, k) for k in ("per_second", "per_minute", "per_hour", "per_day")},
                "regions": list(preset.regions), "default_region": preset.default_region,
                "advice": {k: list(v) for k, v in preset.advice.items()},
                "connections": preset.connections,
            })
        return {
            "version": __version__,
            "native_dialogs": self._native_dialogs,
            "providers": providers,
            "categories": {c.name: {"title": c.title, "cause": c.cause, "fix": list(c.fix)} for c in CATEGORIES.values()},
            "security_modes": [{"value": m, "label": SECURITY_LABELS[m]} for m in SECURITY_MODES],
            "inbox": {"host": self._inbox.host, "port": self._inbox.port},
            "max_connections": MAX_CONNECTIONS,
            "password_store": self._store.kind,
        }

    @api
    def load_settings(self, p: Params) -> dict[str, Any]:
        """The saved settings, or the first-start defaults (the local test inbox)."""
        saved = account_settings.load_saved()
        account = {"provider": LOCAL_INBOX, "host": self._inbox.host, "port": self._inbox.start(),
                   "security": "none", "user": "", "from_address": "Me <me@example.com>",
                   "verify_certificates": True, "allow_plaintext_auth": False, "region": None,
                   "channel": "smtp", "auth": "password", "max_per_minute": None}
        message = {"subject": "Hello {{ name | default('there') }}",
                   "body": "<p>Hi {{ name | default('there') }},</p>\n<p>...</p>",
                   "format": "html", "delay_ms": service.DEFAULT_DELAY_MS, "unsubscribe": [], "connections": None}
        if saved:
            account.update({k: v for k, v in (saved.get("account") or {}).items() if k in account})
            message.update({k: v for k, v in (saved.get("message") or {}).items() if k in message})
            if account["provider"] == LOCAL_INBOX:
                account["port"] = self._inbox.port
        remember_password = bool(saved and saved.get("remember_password"))
        key = account_key(str(account.get("user") or ""), str(account.get("host") or ""))
        store_error = None
        try:
            has_saved = bool(account.get("user")) and self._store.has(key)
        except CredentialsError as exc:  # the settings still load; the password is re-entered
            has_saved, store_error = False, exc.message
        return {
            "account": account,
            "message": message,
            "remember_settings": bool(saved and saved.get("remember_settings")),
            "remember_password": remember_password,
            "has_saved_password": has_saved,
            "password_locked": has_saved and self._store.needs_passphrase and self._passphrase is None,
            "first_start": saved is None,
            "password_store_error": store_error,
        }

    @api
    def save_settings(self, p: Params) -> dict[str, Any]:
        """Save the non-secret settings (and the password in the password store when asked)."""
        a = p.obj("account")
        m = p.obj("message")
        remember = p.bool("remember_settings")
        remember_password = p.bool("remember_password")
        account = {
            "provider": a.str("provider") or None, "host": a.str("host").strip(),
            "port": a.int("port", 587, 1, 65535), "security": a.choice("security", SECURITY_MODES, "starttls"),
            "user": a.str("user").strip(), "from_address": a.str("from_address"),
            "verify_certificates": a.bool("verify_certificates", True),
            "allow_plaintext_auth": a.bool("allow_plaintext_auth", False), "region": a.str("region") or None,
            "channel": self._channel(p), "auth": a.choice("auth", AUTH_MODES, "password"),
            "max_per_minute": self._per_minute(a),
        }
        message = {"subject": m.str("subject", max_len=MAX_SHORT), "body": m.str("body", max_len=MAX_TEXT),
                   "format": m.choice("format", ("html", "text"), "html"),
                   "unsubscribe": self._unsubscribe_values(m),
                   "delay_ms": m.int("delay_ms", service.DEFAULT_DELAY_MS, 0, 3_600_000),
                   "connections": m.int("connections", 0, 0, MAX_CONNECTIONS) or None}
        previous = account_settings.load_saved() or {}
        data: dict[str, Any] = {"remember_settings": remember, "remember_password": remember_password}
        if remember:
            data.update({"account": account, "message": message})
        account_settings.save(data)
        key = account_key(account["user"], account["host"])
        password = p.str("password")
        if remember_password and account["user"] and password:
            passphrase = p.str("passphrase") or self._passphrase
            self._store.save(key, password, passphrase)
            if passphrase:
                self._passphrase = passphrase
        elif not remember_password and previous.get("remember_password") and account["user"]:
            # The box was ticked before and is not now: forget this account's password only.
            self._store.delete(key, p.str("passphrase") or self._passphrase)
        return {"has_saved_password": bool(account["user"]) and self._store.has(key)}

    @api
    def forget_password(self, p: Params) -> dict[str, Any]:
        """Delete the saved password of the account."""
        a = p.obj("account")
        self._store.delete(account_key(a.str("user").strip(), a.str("host").strip()),
                           p.str("passphrase") or self._passphrase)
        return {}

    @api
    def test_connection(self, p: Params) -> dict[str, Any]:
        """Diagnose step by step: DNS, TCP, TLS, certificate, EHLO, login (and optional checks)."""
        if self._channel(p) == "gmail":
            account = self._google(p)
            token = account.require("api")
            started = time.monotonic()
            account.access_token(force_refresh=True)  # Google confirms the sign-in is still good
            step = {"name": "auth", "title": "Google sign-in", "status": "ok", "ok": True,
                    "detail": f"Google renewed the sign-in of {token.email}: the Gmail API will accept it",
                    "seconds": round(time.monotonic() - started, 3)}
            return {"steps": [step], "verify_certificates": True, "authenticated_as": token.email,
                    "channel": "gmail"}
        settings = self._account(p)
        result = diagnose(settings, check_sender=p.bool("check_sender"), check_domain=p.bool("check_domain"))
        steps = [step.as_dict() for step in result.steps]
        if result.error is not None:
            result.error.steps = steps  # type: ignore[attr-defined]
            raise result.error
        return {"steps": steps, "verify_certificates": settings.verify_certificates,
                "authenticated_as": settings.user or None}

    @api
    def detect_settings(self, p: Params) -> dict[str, Any]:
        """Suggest server settings for an address: presets, then MX records, then probing."""
        import dataclasses

        from backend.autodetect import detect

        address = p.str("address", required=True)
        found = (self._detector or detect)(address)
        return {"suggestions": [dataclasses.asdict(s) for s in found]}

    @api
    def open_log_folder(self, p: Params) -> dict[str, Any]:
        """Show the log folder in the system's file manager (window mode); always say where it is."""
        folder = paths.log_dir()
        opened = False
        if self._native_dialogs:
            import webbrowser

            opened = webbrowser.open(folder.as_uri())
        return {"path": str(folder), "opened": opened}

    # -- Sign in with Google ----------------------------------------------------------------

    @api
    def google_status(self, p: Params) -> dict[str, Any]:
        """Who is signed in with Google (readable while the store is locked), the sign-in under
        way (waiting, signed_in, failed, cancelled) and the Gmail API limits."""
        profile = saved_profile()
        scopes = list((profile or {}).get("scopes") or [])
        key, lim = gmail_api_limits(bool((profile or {}).get("workspace")))
        return {
            "signed_in": profile is not None, "email": (profile or {}).get("email"),
            "workspace": bool((profile or {}).get("workspace")), "smtp": SCOPE_MAIL in scopes,
            "locked": self._store.needs_passphrase and self._passphrase is None,
            "sign_in": dict(self._sign_in_state),
            "limits": {"preset": key, "per_day": lim.per_day, "per_minute": lim.per_minute, "note": lim.note},
        }

    @api
    def google_sign_in(self, p: Params) -> dict[str, Any] | None:
        """Import the OAuth client file (native dialog, or its content from the page), then run
        Google's sign-in in the system browser on a background thread; google_status follows it."""
        self._ensure_idle()  # a running campaign keeps the sign-in it started with
        purpose = p.choice("purpose", PURPOSES, "api")
        if p.str("client_data_base64", max_len=200_000):
            data, source = self._b64(p, "client_data_base64", 150_000), "the chosen file"
        else:
            chosen = self._dialog("OPEN", file_types=CLIENT_FILE_TYPES,
                                  refusal="choose the OAuth client file with the file field")
            if not chosen:
                return None
            try:
                data = Path(chosen[0]).read_bytes()[:150_000]
            except OSError as exc:
                raise _Invalid("client", f"'{chosen[0]}' cannot be read ({exc.strerror})") from None
            source = f"'{Path(chosen[0]).name}'"
        client = OAuthClient.parse(data, source)
        account = self._google(p)
        account.check_store()  # the passphrase is checked before the browser opens
        if self._sign_in is not None:
            self._sign_in.cancel()
        import webbrowser

        flow = SignIn(client, purpose, open_browser=self._open_browser or webbrowser.open)
        url = flow.start()
        self._sign_in = flow
        self._sign_in_state = {"state": "waiting", "url": url, "error": None, "purpose": purpose}

        def wait() -> None:
            try:
                token, _ = flow.wait()
                account.save(client, token)
                state: dict[str, Any] = {"state": "signed_in", "url": None, "error": None, "email": token.email}
            except MailerError as exc:
                cancelled = "cancelled in Bulk Mailer" in exc.message
                state = {"state": "cancelled" if cancelled else "failed", "url": None, "error": exc.describe()}
            except Exception:
                log.exception("Google sign-in failed unexpectedly")
                state = {"state": "failed", "url": None, "error": {
                    "category": "internal_error", "title": "Something went wrong",
                    "message": "The Google sign-in stopped because of an unexpected error.",
                    "cause": "This is a bug in Bulk Mailer.",
                    "fix": [f"The details are in the log file in {paths.log_dir()}."]}}
            if self._sign_in is flow:  # a newer sign-in may have replaced this one
                self._sign_in_state = {**state, "purpose": purpose}

        threading.Thread(target=wait, name="google-sign-in", daemon=True).start()
        return {"state": "waiting", "url": url, "purpose": purpose}

    @api
    def google_cancel_sign_in(self, p: Params) -> dict[str, Any]:
        """Stop waiting for the browser."""
        if self._sign_in is None or self._sign_in_state.get("state") != "waiting":
            raise _NotNow("no Google sign-in is waiting")
        self._sign_in.cancel()
        return {"state": "cancelling"}

    @api
    def google_sign_out(self, p: Params) -> dict[str, Any]:
        """Revoke the Google sign-in at Google and delete it (and the OAuth client) here."""
        self._ensure_idle()
        result = self._google(p).sign_out()
        self._sign_in_state = {"state": "idle", "url": None, "error": None, "purpose": None}
        return result

    # -- recipients -----------------------------------------------------------------------

    def _preview(self, imported: ImportResult, source: tuple[str, Any]) -> dict[str, Any]:
        self._imported, self._source = imported, source
        columns = imported.columns or [f for f in imported.fields if f != "email"]
        _, suppressed = self._suppression.apply(imported.recipients)
        return {
            "source": imported.source,
            "summary": imported.summary(),
            "counts": {"valid": len(imported.recipients), "invalid": len(imported.rejected),
                       "duplicates": len(imported.duplicates), "suppressed": len(suppressed)},
            "suppressed": [{"line": r.line, "email": r.email, "reason": why} for r, why in suppressed[:PREVIEW_REJECTS]],
            "name_column": imported.name_column,
            "columns": columns,
            "email_column": imported.email_column,
            "fields": list(imported.fields),
            "encoding": imported.encoding,
            "warnings": list(imported.warnings),
            "rejected": [{"line": r.line, "value": r.value[:200], "reason": r.reason} for r in imported.rejected[:PREVIEW_REJECTS]],
            "duplicates": [{"line": d.line, "email": d.email, "first_line": d.first_line} for d in imported.duplicates[:PREVIEW_REJECTS]],
            "rows": [{"line": r.line, "email": r.email, "fields": r.fields} for r in imported.recipients[:PREVIEW_ROWS]],
        }

    @api
    def choose_recipients_file(self, p: Params) -> dict[str, Any] | None:
        """Pick a CSV/TSV/TXT with the native dialog and import it; None when cancelled."""
        chosen = self._dialog("OPEN", file_types=FILE_TYPES)
        if not chosen:
            return None
        path = chosen[0]
        return self._preview(*self._load(("file", path), p.column("email_column"), p.column("name_column")))

    @api
    def import_recipients_data(self, p: Params) -> dict[str, Any]:
        """Import a file's content sent by the page (browser mode's file field)."""
        name = Path(p.str("name", required=True)).name or "upload.csv"
        data = self._b64(p, "data_base64", MAX_FILE)
        return self._preview(*self._load(("data", (data, name)), p.column("email_column"), p.column("name_column")))

    @api
    def import_recipients_text(self, p: Params) -> dict[str, Any]:
        """Import pasted addresses or a pasted table."""
        text = p.str("text", max_len=MAX_TEXT, required=True)
        return self._preview(*self._load(("text", text), p.column("email_column"), p.column("name_column")))

    def _load(self, source: tuple[str, Any], email_column: str | None,
              name_column: str | None) -> tuple[ImportResult, tuple[str, Any]]:
        kind, value = source
        if kind == "file":
            imported = load_file(value, email_column=email_column, name_column=name_column)
        elif kind == "data":
            imported = load_bytes(value[0], value[1], email_column=email_column, name_column=name_column)
        else:
            imported = parse_text(value, email_column=email_column, name_column=name_column)
        self._columns = (email_column, name_column)
        return imported, source

    @api
    def set_email_column(self, p: Params) -> dict[str, Any]:
        """Read the last list again with another email column."""
        if self._source is None:
            raise _NotNow("import a recipient list first")
        return self._preview(*self._load(self._source, p.column("column"), self._columns[1]))

    @api
    def set_name_column(self, p: Params) -> dict[str, Any]:
        """Read the last list again with another name column (none: found automatically)."""
        if self._source is None:
            raise _NotNow("import a recipient list first")
        return self._preview(*self._load(self._source, self._columns[0], p.column("column")))

    # -- compose --------------------------------------------------------------------------

    def _recipients(self) -> ImportResult:
        if self._imported is None or not self._imported.recipients:
            raise _NotNow("add recipients first: paste addresses or import a file")
        return self._imported

    def _draft(self, p: Params, from_address: str) -> service.Draft:
        m = p.obj("message")
        body = m.str("body", max_len=MAX_TEXT)
        fmt = m.choice("format", ("html", "text"), "html")
        subject = m.str("subject", max_len=MAX_SHORT)
        if not subject.strip():
            raise _Invalid("message.subject", "enter a subject")
        if not body.strip():
            raise _Invalid("message.body", "write the message")
        draft = service.make_draft(
            self._recipients(), subject=subject,
            html=body if fmt == "html" else None, text=body if fmt == "text" else None,
            from_address=from_address,
            delay_ms=p.int("delay_ms", service.DEFAULT_DELAY_MS, 0, 3_600_000),
            attach_column=self._attach_column, attach_dir=self._attach_dir,
            unsubscribe=self._unsubscribe_values(m),
        )
        draft.attachments = [a for _, a in self._attachments]
        service.apply_suppression(draft, self._suppression)  # preview and checks see who gets it
        return draft

    @staticmethod
    def _problems(problems: list[Any]) -> list[dict[str, Any]]:
        return [{"line": e.row, "field": e.field, "message": e.message} for e in problems[:1000]]

    def _from_address(self, p: Params) -> str:
        return p.str("from_address") or p.obj("account").str("from_address")

    def _checked_sender(self, p: Params) -> str:
        """The From for checks and previews: with the Gmail API, the signed-in address (known
        without unlocking the store)."""
        if self._channel(p) != "gmail":
            return self._from_address(p)
        profile = saved_profile()
        if profile is None:
            raise OAuthError("sign in with Google first: the Gmail API sends as the signed-in account",
                             fix=("Click Sign in with Google in the Account section.",))
        return service.gmail_sender(self._from_address(p), profile["email"])

    @api
    def check_message(self, p: Params) -> dict[str, Any]:
        """Every row whose message cannot be built, by line and field."""
        draft = self._draft(p, self._checked_sender(p))
        warning = draft.size_warning()
        return {"problems": self._problems(draft.problems()), "warnings": [warning] if warning else []}

    @api
    def preview_message(self, p: Params) -> dict[str, Any]:
        """Recipient N's message as it would be sent (1-based N)."""
        draft = self._draft(p, self._checked_sender(p))
        total = len(draft.recipients)
        index = p.int("index", 1, 1, max(total, 1))
        out = draft.outgoing(draft.recipients[index - 1], smtputf8=True)
        msg = message_from_bytes(out.data, policy=email.policy.default)
        html = msg.get_body(("html",))
        text = msg.get_body(("plain",))
        return {
            "index": index, "total": total, "to": str(msg["To"]), "from": str(msg["From"]),
            "subject": str(msg["Subject"]),
            "headers": [[k, str(v)] for k, v in msg.items() if k.lower() in _PREVIEW_HEADERS],
            "html": html.get_content() if html is not None else None,
            "html_url": self._register_preview(html.get_content() if html is not None else None),
            "text": text.get_content() if text is not None else None,
            "attachments": [{"filename": a.get_filename(), "content_type": a.get_content_type(),
                             "size": len(a.get_payload(decode=True) or b"")} for a in msg.iter_attachments()],
            "size": len(out.data),
        }

    @api
    def send_test(self, p: Params) -> dict[str, Any]:
        """Send recipient N's version to the From address."""
        self._ensure_idle()
        if self._channel(p) == "gmail":
            account = self._google(p)
            draft = self._draft(p, service.gmail_sender(self._from_address(p), account.require("api").email))
            transport: Transport = GmailTransport(account)
        else:
            settings = self._account(p)
            draft = self._draft(p, settings.from_address or self._from_address(p))
            transport = SmtpTransport(settings)
        index = p.int("index", 1, 1, max(len(draft.recipients), 1))
        original = draft.recipients[index - 1]
        me = type(original)(draft.sender.address, {**original.fields}, original.line)
        out = draft.outgoing(me, smtputf8=isinstance(transport, GmailTransport))
        try:
            transport.open()
            transport.send(Envelope(draft.sender.address, (draft.sender.address,)), out.data)
        finally:
            transport.close()
        return {"to": draft.sender.address, "message_id": out.message_id}

    # -- campaigns ------------------------------------------------------------------------

    def _ensure_idle(self) -> None:
        run = self._run
        if run is not None and run.state in ("running", "paused"):
            raise _NotNow("a campaign is running; wait for it to finish or cancel it")

    @api
    def start_campaign(self, p: Params) -> dict[str, Any]:
        """Check everything, then start sending on the worker thread."""
        with self._lock:
            self._ensure_idle()
            if self._channel(p) == "gmail":
                account = self._google(p)
                token = account.require("api")
                draft = self._draft(p, service.gmail_sender(self._from_address(p), token.email))
                plan = self._gmail_plan(draft, account, self._per_minute(p.obj("account")))
            else:
                settings = self._account(p)
                draft = self._draft(p, settings.from_address or self._from_address(p))
                plan = self._smtp_plan(draft, settings)
            problems = draft.problems()
            if problems and p.bool("skip_problem_rows"):
                service.exclude_problem_rows(draft, problems)
                problems = []
            if problems:
                err = SettingsError("message", f"{len(problems)} row(s) cannot be built; first: {problems[0].message}",
                                    category="template_error")
                err.steps = self._problems(problems)  # type: ignore[attr-defined]
                raise err
            if not draft.recipients:
                raise _NotNow("no recipient is left to send to")
            if p.has("limits"):  # the Send section's fields, for either channel
                plan.limits = self._chosen_limits(p, plan.provider)
            plan.retry, plan.max_failures_in_a_row = self._chosen_retry(p)
            self._set_connections(p, plan, default_connections(plan.provider))
            run = _Run(draft.id, len(draft.recipients), Control(), draft, plan.provider, checked=True)
            run.thread = threading.Thread(target=self._work, args=(run, draft, plan),
                                          name=f"campaign-{draft.id}", daemon=True)
            self._run = run
            run.thread.start()
        return {"campaign": run.id, "total": run.total}

    def _smtp_plan(self, draft: service.Draft, settings: SmtpSettings) -> _Plan:
        spec = service.campaign_spec(draft, settings)
        spec["settings"]["local_inbox"] = (settings.host, settings.port) == (self._inbox.host, self._inbox.port)
        return _Plan(lambda: SmtpTransport(settings), spec,
                     f"{settings.user or '(no login)'} @ {settings.host}:{settings.port}",
                     self._limits(settings.provider), settings.provider)

    @staticmethod
    def _gmail_plan(draft: service.Draft, account: GoogleAccount, per_minute: int | None) -> _Plan:
        token = account.require("api")
        key, lim = gmail_api_limits(token.workspace)
        limits = RateLimits(per_minute=per_minute or lim.per_minute, per_day=lim.per_day)
        return _Plan(lambda: GmailTransport(account), service.campaign_spec(draft, None, gmail=token.email),
                     f"{token.email} (Gmail API)", limits, key, gmail=token.email)

    @staticmethod
    def _per_minute(a: Params) -> int | None:
        """The Gmail API campaign's messages-per-minute limit (None: the API's 150)."""
        value = a.int("max_per_minute", 0, 0, 10_000)
        return value or None

    def _work(self, run: _Run, draft: service.Draft, plan: _Plan,
              resume: tuple[list[int], str] | None = None) -> None:
        self._state_event(run)

        def on_event(event: dict[str, Any]) -> None:
            if event["status"] != "sending":
                run.counts[event["status"]] += 1
            self._emit(event)

        def on_pause(paused: bool) -> None:
            run.state = "paused" if paused else "running"
            self._state_event(run)

        error: dict[str, Any] | None = None
        try:
            outcome = service.send(
                draft, [plan.transport() for _ in range(plan.connections)], on_event=on_event, control=run.control,
                on_pause=on_pause, journal=self._journal(), spec=plan.spec,
                account=resume[1] if resume else plan.account,
                indices=resume[0] if resume else None, limits=plan.limits, on_wait=self._emit,
                retry=plan.retry, max_failures_in_a_row=plan.max_failures_in_a_row,
                deferred_until=self._deferred_until if resume else None,
                attempts_before=self._attempts_before if resume else None, checked=run.checked)
            run.outcome = outcome
            if not outcome.ok:
                run.state = "failed"
            elif outcome.stopped == "cancelled":
                run.state = "cancelled"
            else:
                run.state = "finished"
            if outcome.error is not None:
                error = outcome.error.describe(run.provider)
            run.counts = Counter(outcome.counts)
        except MailerError as exc:
            run.state, error = "failed", exc.describe(run.provider)
        except Exception:
            log.exception("campaign %s crashed", run.id)
            run.state = "failed"
            error = {"category": "internal_error", "title": "Something went wrong",
                     "message": "The campaign stopped because of an unexpected error.",
                     "cause": "This is a bug in Bulk Mailer.",
                     "fix": [f"The details are in the log file in {paths.log_dir()}."]}
        run.error = error
        if run.outcome is not None:
            self._finished = run
        self._state_event(run, error)

    @staticmethod
    def _set_connections(p: Params, plan: _Plan, default: int) -> None:
        """The Send section's Connections (or a resume's), into the plan and its journal spec.
        The Gmail API sends on one (a pool of one)."""
        if plan.gmail is not None:
            plan.connections = 1
            return
        plan.connections = p.int("connections", default, 1, MAX_CONNECTIONS)
        plan.spec["connections"] = plan.connections

    @staticmethod
    def _limits(provider: str | None) -> RateLimits | None:
        """The provider preset's published limits."""
        return service.preset_limits(provider)

    @staticmethod
    def _chosen_retry(p: Params) -> tuple[RetryPolicy, int]:
        """The page's Retries fields, else the defaults."""
        if not p.has("retry"):
            return RetryPolicy(), 20
        q = p.obj("retry")
        base = q.number("base_s", 1, 86_400) or 60.0
        cap = q.number("cap_s", 1, 7 * 86_400) or 3600.0
        if cap < base:
            raise _Invalid("retry.cap_s", "must be at least the first retry's wait")
        policy = RetryPolicy(base_s=base, cap_s=cap,
                             max_attempts=int(q.number("max_attempts", 1, 100, whole=True) or 5),
                             max_age_s=(q.number("max_age_h", 0.1, 24 * 30) or 24.0) * 3600)
        failures = q.number("max_failures_in_a_row", 0, 1_000_000, whole=True)
        return policy, int(20 if failures is None else failures)

    def _chosen_limits(self, p: Params, provider: str | None) -> RateLimits | None:
        """The limits the page sent (its Sending limits fields), else the provider's."""
        if not p.has("limits"):
            return self._limits(provider)
        q = p.obj("limits")
        return RateLimits(per_second=q.number("per_second", 0, 10_000) or None,
                          per_minute=int(q.number("per_minute", 0, 10_000_000, whole=True) or 0) or None,
                          per_hour=int(q.number("per_hour", 0, 10_000_000, whole=True) or 0) or None,
                          per_day=int(q.number("per_day", 0, 100_000_000, whole=True) or 0) or None)

    def _journal(self) -> Journal:
        # Opened on first use: the history of window campaigns lives with the CLI's.
        if self._journal_db is None:
            self._journal_db = Journal()
        return self._journal_db

    @api
    def campaign_details(self, p: Params) -> dict[str, Any]:
        """One past campaign and every recipient's result (the first 5,000)."""
        journal = self._journal()
        cid = p.str("id", required=True)
        info = journal.get(cid)
        rows = journal.rows(cid)
        return {"campaign": info.as_dict(), "rows": [
            {"line": r.recipient.line, **r.result.as_dict()} for r in rows[:5000]]}

    def _plan_from_spec(self, p: Params, draft: service.Draft, spec: dict[str, Any]) -> _Plan:
        """The plan of a journaled campaign: the same channel and account as before."""
        if service.channel_of(spec) == "gmail":
            account = self._google(p)
            email = account.require("api").email
            was = (spec.get("gmail") or {}).get("email") or ""
            if email.lower() != was.lower():
                raise _NotNow(f"this campaign was sent as {was}, but you are signed in with Google as {email}: "
                              f"sign in as {was} to continue it")
            return self._as_before(self._gmail_plan(draft, account, self._per_minute(p.obj("account"))), spec)
        saved = {k: v for k, v in spec["settings"].items() if k != "local_inbox"}
        if spec["settings"].get("local_inbox"):
            saved.update(host=self._inbox.host, port=self._inbox.start())  # a new port every run
        if saved.get("auth") == "xoauth2":
            saved.update(password="", token_source=TokenSource(self._google(p), "smtp"))
        else:
            saved["password"] = self._password(p, saved["user"], saved["host"]) if saved.get("user") else ""
        settings = SmtpSettings(**saved).validated()
        plan = self._as_before(self._smtp_plan(draft, settings), spec)
        plan.spec = spec  # resuming keeps the campaign's spec as the journal has it
        self._set_connections(p, plan, plan.connections)  # the campaign's, unless asked otherwise
        return plan

    @staticmethod
    def _as_before(plan: _Plan, spec: dict[str, Any]) -> _Plan:
        """A resumed or follow-up run keeps the campaign's own limits and retry settings."""
        if "limits" in spec:
            plan.limits = service.limits_from_spec(spec)
        plan.retry, plan.max_failures_in_a_row = service.retry_from_spec(spec)
        if plan.gmail is None:  # the Gmail API sends on one
            plan.connections = int(spec.get("connections") or default_connections(plan.provider))
        return plan

    def _start_from_journal(self, draft: service.Draft, plan: _Plan,
                            resume: tuple[list[int], str] | None) -> dict[str, Any]:
        """Run a past campaign's rest (resume) or a follow-up of it."""
        if not draft.recipients:
            raise _NotNow("nobody is left to send to in that campaign")
        run = _Run(draft.id, len(draft.recipients), Control(), draft, plan.provider)
        run.thread = threading.Thread(target=self._work, args=(run, draft, plan, resume),
                                      name=f"campaign-{draft.id}", daemon=True)
        self._run = run
        run.thread.start()
        return {"campaign": run.id, "total": run.total}

    @api
    def resume_past_campaign(self, p: Params) -> dict[str, Any]:
        """Continue an interrupted, paused or stopped campaign with the recipients not sent yet."""
        with self._lock:
            self._ensure_idle()
            journal = self._journal()
            cid = p.str("id", required=True)
            info = journal.get(cid)
            if info.state == "running":
                raise _NotNow("that campaign is still running in another window or process")
            lifts = service.quota_lifts(info.resume_after)
            if lifts and not p.bool("now"):
                raise _NotNow(f"a sending quota stopped this campaign; it can continue after {lifts}: resume it "
                              "then, or try now anyway (the server may refuse again)")
            # Ours from here on (another window or the command line is refused), and every row
            # is read after the claim: nothing sent meanwhile by another run is sent again.
            journal.claim(cid)
            try:
                choice = p.choice("uncertain", ("ask", "resend", "skip"), "ask")
                uncertain = journal.rows(cid, ["uncertain"])
                if uncertain and choice == "ask":
                    err = _NotNow(f"{len(uncertain)} recipient(s) may or may not have got the message (the app stopped "
                                  "while sending to them): choose to send to them again or to skip them")
                    err.steps = [{"line": r.recipient.line, "field": "uncertain", "message": r.recipient.email}  # type: ignore[attr-defined]
                                 for r in uncertain[:1000]]
                    raise err
                if choice == "resend":
                    journal.reset(cid, ["uncertain"])
                elif choice == "skip":
                    journal.skip(cid, "uncertain", "not resent: it may or may not have arrived")
                draft, indices, spec = service.resume_draft(journal, cid)
                if not draft.recipients:  # e.g. the uncertain ones skipped: it is done
                    info = replace(info, state="finished", reason=None, resume_after=None)
                    raise _NotNow("nobody is left to send to in that campaign; it is marked finished")
                plan = self._plan_from_spec(p, draft, spec)
                self._deferred_until = service.due_times(spec, info.resume_after if p.bool("now") else None)
                self._attempts_before = spec.get("attempts_before") or {}
                return self._start_from_journal(draft, plan, (indices, info.account))
            except BaseException:
                journal.set_state(cid, info.state, info.reason, info.resume_after)  # as it was, or finished
                raise

    @api
    def resend_campaign(self, p: Params) -> dict[str, Any]:
        """A follow-up campaign to a past campaign's failed (and optionally uncertain) recipients."""
        with self._lock:
            self._ensure_idle()
            journal = self._journal()
            cid = p.str("id", required=True)
            statuses = ["failed"] + (["uncertain"] if p.bool("include_uncertain") else [])
            rows = journal.rows(cid, statuses)
            spec = journal.spec(cid)
            m = spec["message"]
            recipients = [r.recipient for r in rows]
            fields = sorted({k for r in recipients for k in r.fields}) or ["email"]
            imported = ImportResult(recipients, [], [], fields, "email", f"follow-up of {cid}")
            draft = service.make_draft(
                imported, subject=m["subject"], html=m["html"], text=m["text"], from_address=m["from"],
                delay_ms=spec.get("delay_ms", service.DEFAULT_DELAY_MS), reply_to=m.get("reply_to"),
                attach=m.get("attach") or (), attach_column=m.get("attach_column"), attach_dir=m.get("attach_dir"),
                unsubscribe=m.get("unsubscribe") or ())
            draft.attachments += [a for _, a in self._attachments] if m.get("uploaded_attachments") else []
            service.apply_suppression(draft, self._suppression)
            return self._start_from_journal(draft, self._plan_from_spec(p, draft, spec), None)

    @api
    def campaign_history(self, p: Params) -> dict[str, Any]:
        """Past campaigns, newest first (a campaign whose app was killed shows 'interrupted')."""
        return {"campaigns": [c.as_dict() for c in self._journal().campaigns()[:200]]}

    def _state_event(self, run: _Run, error: dict[str, Any] | None = None) -> None:
        self._emit({
            "type": "campaign-state", "campaign": run.id, "state": run.state, "total": run.total,
            "summary": run.outcome.summary() if run.outcome is not None else None, "error": error,
        })

    def _control(self, action: str) -> dict[str, Any]:
        run = self._run
        if run is None or run.state not in ("running", "paused"):
            raise _NotNow("no campaign is running")
        getattr(run.control, action)()
        return {"state": "cancelling" if action == "cancel" else ("paused" if action == "pause" else "running")}

    @api
    def pause_campaign(self, p: Params) -> dict[str, Any]:
        """Hold after the current message."""
        return self._control("pause")

    @api
    def resume_campaign(self, p: Params) -> dict[str, Any]:
        """Continue a paused campaign."""
        return self._control("resume")

    @api
    def cancel_campaign(self, p: Params) -> dict[str, Any]:
        """Stop after the current message; the rest are reported as not sent."""
        return self._control("cancel")

    @api
    def campaign_state(self, p: Params) -> dict[str, Any]:
        """The current (or last) campaign's state and counts."""
        run = self._run
        if run is None:
            return {"campaign": None, "state": "idle", "total": 0, "counts": {}, "summary": None, "error": None}
        return {"campaign": run.id, "state": run.state, "total": run.total, "counts": dict(run.counts),
                "summary": run.outcome.summary() if run.outcome is not None else None, "error": run.error}

    @api
    def export_results(self, p: Params) -> dict[str, Any] | None:
        """The last campaign's results as CSV: saved via the native dialog, or returned as text."""
        run = self._run if self._run is not None and self._run.outcome is not None else self._finished
        if run is None or run.outcome is None:
            raise _NotNow("there are no results yet: run a campaign first")
        rows = service.result_rows(run.outcome, run.draft)
        filename = f"results-{run.id}.csv"
        if self._has_dialogs:
            chosen = self._dialog("SAVE", save_filename=filename)
            return {"path": str(service.write_results_csv(chosen[0], rows))} if chosen else None
        return {"filename": filename, "csv": service.results_csv_text(rows)}

    def _register_preview(self, html: str | None) -> str | None:
        if html is None:
            return None
        pid = secrets.token_urlsafe(32)
        with self._lock_previews:
            self._previews[pid] = html
            while len(self._previews) > 32:
                self._previews.popitem(last=False)
        return f"/preview/{pid}"

    def _preview_html(self, pid: str) -> str | None:
        with self._lock_previews:
            return self._previews.get(pid)

    # -- attachments ----------------------------------------------------------------------

    def _attachment_list(self) -> dict[str, Any]:
        return {"attachments": [{"id": i, "filename": a.filename, "size": len(a.data),
                                 "content_type": a.content_type} for i, a in self._attachments]}

    @api
    def choose_attachments(self, p: Params) -> dict[str, Any]:
        """Add files for everyone with the native dialog (the page never names a path)."""
        chosen = self._dialog("OPEN", allow_multiple=True)
        if chosen:
            loaded = load_attachments(chosen)
            self._attachments += [(secrets.token_hex(8), a) for a in loaded]
        return self._attachment_list()

    @api
    def add_attachment_data(self, p: Params) -> dict[str, Any]:
        """Add a file for everyone from its content (browser mode's file field)."""
        name = Path(p.str("name", required=True)).name
        data = self._b64(p, "data_base64", MAX_FILE)
        self._attachments.append((secrets.token_hex(8), Attachment(name, guess_content_type(name), data)))
        return self._attachment_list()

    @api
    def remove_attachment(self, p: Params) -> dict[str, Any]:
        """Remove one of the files for everyone."""
        ident = p.str("id", required=True)
        self._attachments = [(i, a) for i, a in self._attachments if i != ident]
        return self._attachment_list()

    @api
    def list_attachments(self, p: Params) -> dict[str, Any]:
        """The files for everyone."""
        return self._attachment_list()

    @api
    def choose_attachment_folder(self, p: Params) -> dict[str, Any] | None:
        """Pick the folder per-recipient file names are relative to (native dialog only)."""
        chosen = self._dialog(
            "FOLDER", refusal="per-recipient files need the desktop window (a folder cannot be chosen in a browser)")
        if not chosen:
            return None
        self._attach_dir = Path(chosen[0])
        return {"folder": str(self._attach_dir)}

    @api
    def set_attachment_column(self, p: Params) -> dict[str, Any]:
        """Choose the column naming each recipient's own files (none: off); check them all."""
        column = p.column("column")
        imported = self._recipients()
        if column is not None and column not in imported.fields:
            raise _Invalid("column", f"there is no column '{column}'")
        self._attach_column = column
        problems: list[Any] = []
        if column and self._attach_dir is not None:
            problems = check_attachments(imported.recipients, column, self._attach_dir, ())
        return {"column": column, "folder": str(self._attach_dir) if self._attach_dir else None,
                "problems": self._problems(problems)}

    # -- suppression list -----------------------------------------------------------------

    @api
    def suppression_list(self, p: Params) -> dict[str, Any]:
        """The addresses never mailed, with their reasons (the first 1000)."""
        entries = self._suppression.all()
        return {"count": len(entries), "entries": [{"email": e, "reason": r} for e, r in entries[:1000]]}

    @api
    def suppression_add(self, p: Params) -> dict[str, Any]:
        """Add pasted addresses (one a line, or separated by commas/spaces) to the list."""
        text = p.str("text", max_len=MAX_TEXT, required=True)
        reason = p.str("reason", "added by hand", max_len=200)
        pieces: list[str] = []
        line_of: list[int] = []  # the pasted line of each piece, for the report
        for number, line in enumerate(text.splitlines(), 1):
            for piece in re.split(r"[\s,;]+", line):
                if piece:
                    pieces.append(piece)
                    line_of.append(number)
        added = self._suppression.add(pieces, reason=reason)
        return {"added": int(added), "already": added.already,
                "invalid": [{"line": line_of[n - 1] if 0 < n <= len(line_of) else n, "value": v, "reason": why}
                            for n, v, why in added.invalid]}

    @api
    def suppression_remove(self, p: Params) -> dict[str, Any]:
        """Take an address off the list."""
        return {"removed": self._suppression.remove(p.str("email", required=True))}

    # -- saved templates ------------------------------------------------------------------

    def _template_from(self, name: str, p: Params) -> SavedTemplate:
        m = p.obj("message")
        return SavedTemplate(
            name=name, subject=m.str("subject", max_len=MAX_SHORT), body=m.str("body", max_len=MAX_TEXT),
            format=m.choice("format", ("html", "text"), "html"),
            unsubscribe=[u for u in self._unsubscribe_values(m)],
            attachments=[a.filename for _, a in self._attachments],  # names: files are added again
        )

    @staticmethod
    def _unsubscribe_values(m: Params) -> list[str]:
        raw = m._get("unsubscribe", None)
        if raw is None:
            return []
        if isinstance(raw, str):
            # Split between addresses, not inside a {{ field }} of the link.
            raw = _UNSUB_RE.findall(raw) if raw.strip() else []
        if not isinstance(raw, list) or not all(isinstance(x, str) and len(x) <= MAX_SHORT for x in raw) or len(raw) > 2:
            raise _Invalid("message.unsubscribe", "must be up to two addresses: an https:// link and/or a mailto:")
        return list(raw)

    @api
    def template_list(self, p: Params) -> dict[str, Any]:
        """Saved templates by name."""
        return {"templates": [{"name": t.name, "subject": t.subject, "format": t.format, "updated": t.updated}
                              for t in self._templates.list()]}

    @api
    def template_save(self, p: Params) -> dict[str, Any]:
        """Save the message as a named template (overwrite only when asked)."""
        saved = self._templates.save(self._template_from(p.str("name", required=True), p),
                                     overwrite=p.bool("overwrite"))
        return {"name": saved.name}

    @api
    def template_load(self, p: Params) -> dict[str, Any]:
        """A saved template's message fields."""
        t = self._templates.get(p.str("name", required=True))
        return {"name": t.name, "message": {"subject": t.subject, "body": t.body, "format": t.format,
                                            "unsubscribe": list(t.unsubscribe)},
                "attachments": list(t.attachments)}

    @api
    def template_rename(self, p: Params) -> dict[str, Any]:
        """Rename a saved template."""
        renamed = self._templates.rename(p.str("old", required=True), p.str("new", required=True))
        return {"name": renamed.name}

    @api
    def template_delete(self, p: Params) -> dict[str, Any]:
        """Delete a saved template."""
        self._templates.delete(p.str("name", required=True))
        return {}

    @api
    def template_export(self, p: Params) -> dict[str, Any] | None:
        """A template as a file: saved via the native dialog, or returned as JSON text."""
        name = p.str("name", required=True)
        t = self._templates.get(name)
        filename = re.sub(r"[^\w.-]+", "-", t.name).strip("-") + ".bmtemplate.json"
        if self._has_dialogs:
            chosen = self._dialog("SAVE", save_filename=filename)
            return {"path": str(self._templates.export(name, Path(chosen[0])))} if chosen else None
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            out = self._templates.export(name, Path(tmp) / filename)
            return {"filename": filename, "json": Path(out).read_text(encoding="utf-8")}

    @api
    def template_import(self, p: Params) -> dict[str, Any] | None:
        """Import a template file chosen with the native dialog."""
        chosen = self._dialog("OPEN")
        if not chosen:
            return None
        t = self._templates.import_file(Path(chosen[0]), overwrite=p.bool("overwrite"))
        return {"template": {"name": t.name, "subject": t.subject, "format": t.format}}

    @api
    def template_import_data(self, p: Params) -> dict[str, Any]:
        """Import a template file's content sent by the page (browser mode)."""
        import tempfile

        data = self._b64(p, "data_base64", MAX_TEXT)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "import.json"
            path.write_bytes(data)
            t = self._templates.import_file(path, overwrite=p.bool("overwrite"))
        return {"template": {"name": t.name, "subject": t.subject, "format": t.format}}

    @staticmethod
    def _b64(p: Params, name: str, limit: int) -> bytes:
        encoded = p.str(name, max_len=limit * 4 // 3 + 4, required=True)
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _Invalid(name, "is not valid base64") from None

    # -- local test inbox -----------------------------------------------------------------

    @api
    def inbox_list(self, p: Params) -> dict[str, Any]:
        """Messages the local test inbox received, newest first."""
        return {"messages": [m.summary() for m in self._inbox.messages()[:1000]],
                "host": self._inbox.host, "port": self._inbox.port}

    @api
    def inbox_message(self, p: Params) -> dict[str, Any]:
        """One received message with headers and bodies."""
        found = self._inbox.get(p.int("id", 0, 0, 2**53))
        if found is None:
            raise _Invalid("id", "no such message in the local test inbox")
        detail = found.detail()
        detail["html_url"] = self._register_preview(detail.get("html"))
        return detail

    @api
    def inbox_clear(self, p: Params) -> dict[str, Any]:
        """Empty the local test inbox."""
        self._inbox.clear()
        return {}


# -- entry point --------------------------------------------------------------------------


def _has_display() -> bool:
    if sys.platform != "linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM") in ("offscreen", "minimal"))


def open_window(bridge: Bridge | None = None, *, on_started: Callable[[Any, Bridge], None] | None = None) -> int:
    """Open the desktop window (blocks until it is closed)."""
    import webview

    if sys.platform == "linux":
        os.environ.setdefault("QT_API", "pyqt6")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # Qt WebEngine's Chromium refuses to start its sandbox as root.
            flags = os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "")
            if "--no-sandbox" not in flags:
                os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = (flags + " --no-sandbox").strip()
    from backend import web

    bridge = bridge or Bridge(native_dialogs=True)
    # The window's pages come from the app's own server on 127.0.0.1 (as in browser mode), so
    # previews can be served with a policy of their own; the page talks to Python through the
    # js_api bridge, not HTTP (it has no token).
    webapp, server, _ = web.start(lambda deliver: bridge, FRONTEND, for_window=True)
    origin = f"http://{web.HOST}:{webapp.port}"
    if sys.platform == "linux":
        import appwindow

        appwindow.guard_qt(origin)  # nothing but the app's own origin loads or navigates
    window = webview.create_window(
        f"Bulk Mailer {__version__}", url=f"{origin}/", js_api=bridge,
        width=1280, height=860, min_size=(800, 600), text_select=True,
    )
    bridge._attach_window(window)
    try:
        webview.start(
            on_started, (window, bridge) if on_started else None,
            gui="qt" if sys.platform == "linux" else None, private_mode=True,
            icon=str(FRONTEND / "icon.png") if (FRONTEND / "icon.png").exists() else None,
        )
    finally:
        web.stop(webapp, server)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`bulk-mailer`: the window; `--web` the browser UI; a subcommand the command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] not in ("--web", "--window", "--self-test", "--install-desktop-entry"):
        from backend import cli

        return cli.main(args)
    import argparse

    parser = argparse.ArgumentParser(prog="bulk-mailer", description="Bulk Mailer desktop app. "
                                     "Subcommands (send, verify, ...): bulk-mailer --help.")
    parser.add_argument("--web", action="store_true", help="serve the UI to a browser on 127.0.0.1")
    parser.add_argument("--window", action="store_true", help="open the desktop window (the default)")
    parser.add_argument("--port", type=int, default=0, help="with --web: the port (default: a free one)")
    parser.add_argument("--no-browser", action="store_true", help="with --web: do not open a browser")
    parser.add_argument("--self-test", action="store_true", help="open the window, check that the UI loads "
                        "and answers, print the result as one JSON line and close (exit 1 if it failed)")
    parser.add_argument("--install-desktop-entry", action="store_true",
                        help="add Bulk Mailer with its icon to your desktop's application menu (Linux)")
    ns = parser.parse_args(args)
    if ns.install_desktop_entry:
        from backend import desktop_entry

        return desktop_entry.main()
    from backend.cli import setup_logging

    setup_logging()
    if ns.self_test:
        import appwindow

        result: dict[str, Any] = {"ok": False}
        open_window(on_started=lambda window, bridge: appwindow.self_check(window, result))
        return 0 if result.get("ok") else 1
    if ns.web or (not ns.window and not _has_display()):
        from backend import web

        if not ns.web:
            print("No display found: serving the app to your browser instead.", file=sys.stderr)
        try:
            return web.serve(lambda deliver: Bridge(native_dialogs=False, deliver=deliver), FRONTEND,
                             port=ns.port, open_browser=not ns.no_browser)
        except OSError as exc:  # the port is taken, or not ours to use
            print(f"bulk-mailer: error [connection_refused]: cannot serve on 127.0.0.1:{ns.port or 'a free port'} "
                  f"({exc.strerror or exc})", file=sys.stderr)
            if ns.port:
                print("  1. Choose another port with --port, or leave --port out to use a free one.",
                      file=sys.stderr)
            return 2
    return open_window()


if __name__ == "__main__":
    sys.exit(main())
