"""The js_api bridge: the window's JavaScript calls these methods; events go back as CustomEvents.

Every public method takes one JSON object (or nothing) and answers
``{"ok": true, "data": ...}`` or ``{"ok": false, "error": {category, title, message, cause, fix}}``.
A method parses the page's JSON into the core's typed inputs (backend.inputs), calls the one
App (backend.app) and words the answer; the use cases live there, shared with browser mode and
the command line. pywebview exposes every public attribute of the object it is given, so the
window and the App live in ``_underscored`` attributes. Events are queued and delivered in
batches (at most ~20 deliveries a second) through one constant JS template filled only with
``json.dumps``.

``main()`` is the ``bulk-mailer`` entry point: no subcommand opens the window, ``--web``
serves the same UI to a browser, anything else is handed to ``backend.cli``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from backend import __version__, paths
from backend.errors import MailerError, internal_error
from backend.inputs import (
    AUTH_MODES,
    BODY_FORMATS,
    CHANNELS,
    DEFAULT_DELAY_MS,
    DRAFT_SEND_FIELDS,
    SECURITY_MODES,
    CheckFailed,
    NotNow,
    ResumeRequest,
    RowProblems,
    SavedDraft,
    SettingsChanged,
    UncertainLeft,
)
from backend.jsonapi import (
    MAX_SHORT,
    MAX_TEXT,
    EventPump,
    Invalid,
    Params,
    Previews,
    account_input,
    api,
    imap_input,
    message_input,
    send_options,
    unsubscribe_values,
)
from backend.presets import MAX_CONNECTIONS, PRESETS

log = logging.getLogger("bulk_mailer.bridge")

FRONTEND = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parent)) / "frontend"
EVENT_TYPES = ("email-progress", "campaign-state", "campaign-wait", "import-progress", "sent-copy",
               "sent-copy-warning", "track-progress", "track-change", "resend-left-out")
# The one JS template events are delivered with; only json.dumps output is ever put into it.
DISPATCH_JS = (
    "(function(events){for(var i=0;i<events.length;i++){"
    "window.dispatchEvent(new CustomEvent(events[i].type,{detail:events[i]}));}})(%s)"
)
MAX_FILE = 50_000_000  # an uploaded recipient file, decoded
PREVIEW_ROWS = 100
PREVIEW_REJECTS = 500
FILE_TYPES = ("Recipient lists (*.csv;*.tsv;*.txt;*.xlsx)", "All files (*.*)")
CLIENT_FILE_TYPES = ("Google OAuth client (*.json)", "All files (*.*)")


# -- the bridge ---------------------------------------------------------------------------


class Bridge:
    """What the page may ask of Python. Only the methods marked @api are public."""

    def __init__(self, *, native_dialogs: bool = False, app: Any = None, inbox: Any = None,
                 store: Any = None, deliver: Callable[[list[dict[str, Any]]], None] | None = None,
                 detector: Callable[[str], list[Any]] | None = None,
                 open_browser: Callable[[str], Any] | None = None) -> None:
        self._window: Any = None
        self._native_dialogs = native_dialogs
        self._pump = EventPump(deliver or self._deliver_to_window)
        from backend.app import App  # loaded here: `bulk-mailer send --help` goes without it
        self._app = app or App(inbox=inbox, store=store, detector=detector, open_browser=open_browser)
        self._app.emit = self._emit
        self._previews = Previews()  # id -> HTML, served at /preview/<id>

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
            raise NotNow(refusal)
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
        run = self._app.run
        if run is None or not run.active:
            return True
        stop = self._window.create_confirmation_dialog(
            "A campaign is still sending",
            "OK: stop after the current message (the rest can be sent later from History). "
            "Cancel: keep sending in the background; Bulk Mailer closes when the campaign ends.")
        # On the GUI thread: stop (or not), and close once the worker has ended, without freezing.
        if stop:
            run.control.cancel()
        else:
            self._window.hide()
        threading.Thread(target=lambda: (run.thread.join(120 if stop else None), self._window.destroy()),
                         name="close-window", daemon=True).start()
        return False

    def _shutdown(self) -> None:
        self._app.shutdown()
        self._pump.close()

    def _answer(self, fn: Callable[..., Any], params: Any, extra: tuple[Any, ...]) -> dict[str, Any]:
        name = fn.__name__
        try:
            if extra:
                raise Invalid("params", f"{name} takes one object, not {1 + len(extra)} arguments")
            return {"ok": True, "data": fn(self, Params(params))}
        except MailerError as exc:
            log.info("%s: [%s] %s", name, exc.category, exc.message)
            return {"ok": False, "error": self._word_error(exc, self._provider_of(params))}
        except Exception:
            log.exception("unexpected error in bridge method %s", name)
            return {"ok": False, "error": internal_error(f"An unexpected error happened in {name}; nothing was sent by it.")}

    @staticmethod
    def _word_error(exc: MailerError, provider: str | None) -> dict[str, Any]:
        """The error shape, with the data the page shows: the rows, steps or settings it is about."""
        error = exc.describe(provider)
        if isinstance(exc, RowProblems):
            error["steps"], error["row_count"] = exc.rows(), len({p["line"] for p in exc.rows(len(exc.problems))})
        elif isinstance(exc, CheckFailed):
            error["steps"] = exc.steps
        elif isinstance(exc, UncertainLeft):
            error["steps"] = [{"line": r.recipient.line, "field": "uncertain", "message": r.recipient.email}
                              for r in exc.uncertain[:1000]]
        elif isinstance(exc, SettingsChanged):
            error["settings"] = {"was": exc.was, "now": exc.now}
        return error

    @staticmethod
    def _provider_of(params: Any) -> str | None:
        if isinstance(params, dict) and isinstance(params.get("account"), dict):
            if params["account"].get("channel") == "gmail":
                return "gmail"  # Google's advice (OAuth client, test users) goes with its errors
            provider = params["account"].get("provider")
            if isinstance(provider, str) and provider in PRESETS:
                return provider
        return None

    # -- the page's JSON as the core's inputs ---------------------------------------------

    @staticmethod
    def _b64(p: Params, name: str, limit: int) -> bytes:
        encoded = p.str(name, max_len=limit * 4 // 3 + 4, required=True)
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(name, "is not valid base64") from None

    def _phrase(self, p: Params) -> str | None:
        return p.str("passphrase", max_len=MAX_SHORT) or None

    # -- account --------------------------------------------------------------------------

    @api
    def app_info(self, p: Params) -> dict[str, Any]:
        """Version, provider presets, error categories, what this mode can do."""
        return self._app.info(native_dialogs=self._native_dialogs)

    @api
    def load_settings(self, p: Params) -> dict[str, Any]:
        """The saved settings, or the first-start defaults (the local test inbox)."""
        return self._app.load_settings()

    @api
    def save_settings(self, p: Params) -> dict[str, Any]:
        """Save the non-secret settings (and the password in the password store when asked)."""
        a, m = p.obj("account"), p.obj("message")
        account = {
            "provider": a.str("provider") or None, "host": a.str("host").strip(),
            "port": a.int("port", 587, 1, 65535), "security": a.choice("security", SECURITY_MODES, "starttls"),
            "user": a.str("user").strip(), "from_address": a.str("from_address"),
            "verify_certificates": a.bool("verify_certificates", True),
            "allow_plaintext_auth": a.bool("allow_plaintext_auth", False), "region": a.str("region") or None,
            "channel": a.choice("channel", CHANNELS, "smtp"), "auth": a.choice("auth", AUTH_MODES, "password"),
            "max_per_minute": a.int("max_per_minute", 0, 0, 10_000) or None, "sent_copy": a.bool("sent_copy", True),
            **imap_input(a)}
        message = {"subject": m.str("subject", max_len=MAX_SHORT), "body": m.str("body", max_len=MAX_TEXT),
                   "format": m.choice("format", BODY_FORMATS, "html"), "raw_html": m.bool("raw_html"),
                   "unsubscribe": unsubscribe_values(m),
                   "delay_ms": m.int("delay_ms", DEFAULT_DELAY_MS, 0, 3_600_000),
                   "connections": m.int("connections", 0, 0, MAX_CONNECTIONS) or None}
        return self._app.save_settings(account, message, remember=p.bool("remember_settings"),
                                       remember_password=p.bool("remember_password"), password=p.str("password"),
                                       passphrase=self._phrase(p))

    @api
    def forget_password(self, p: Params) -> dict[str, Any]:
        """Delete the saved password of the account."""
        a = p.obj("account")
        self._app.forget_password(a.str("user"), a.str("host"), self._phrase(p))
        return {}

    @api
    def test_connection(self, p: Params) -> dict[str, Any]:
        """Diagnose step by step: DNS, TCP, TLS, certificate, EHLO, login (and optional checks)."""
        return self._app.verify(account_input(p), check_sender=p.bool("check_sender"),
                                check_domain=p.bool("check_domain"), passphrase=self._phrase(p))

    @api
    def detect_settings(self, p: Params) -> dict[str, Any]:
        """Suggest server settings for an address: presets, then MX records, then probing."""
        import dataclasses

        return {"suggestions": [dataclasses.asdict(s) for s in self._app.detect(p.str("address", required=True))]}

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
        return self._app.google_status()

    @api
    def google_sign_in(self, p: Params) -> dict[str, Any] | None:
        """Import the OAuth client file (native dialog, or its content from the page), then run
        Google's sign-in in the system browser on a background thread; google_status follows it."""
        self._app.ensure_idle()
        purpose = p.choice("purpose", ("api", "smtp", "read"), "api")
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
                raise Invalid("client", f"'{chosen[0]}' cannot be read ({exc.strerror})") from None
            source = f"'{Path(chosen[0]).name}'"
        url = self._app.google_sign_in(data, source, purpose, passphrase=self._phrase(p))
        return {"state": "waiting", "url": url, "purpose": purpose}

    @api
    def google_cancel_sign_in(self, p: Params) -> dict[str, Any]:
        """Stop waiting for the browser."""
        self._app.google_cancel_sign_in()
        return {"state": "cancelling"}

    @api
    def google_sign_out(self, p: Params) -> dict[str, Any]:
        """Revoke the Google sign-in at Google and delete it (and the OAuth client) here."""
        return self._app.google_sign_out(self._phrase(p))

    @api
    def microsoft(self, p: Params) -> dict[str, Any]:
        """Sign in with Microsoft: status; sign_in (client id, tenant, device code: in the system
        browser, or a code for another device); cancel; sign_out. microsoft_status follows it."""
        action = p.choice("action", ("status", "sign_in", "cancel", "sign_out"), "status")
        if action == "sign_in":
            return self._app.microsoft_sign_in(p.str("client_id").strip() or None, p.str("tenant").strip() or None,
                                               device_code=p.bool("device_code"), passphrase=self._phrase(p))
        if action == "cancel":
            self._app.microsoft_cancel_sign_in()
        return self._app.microsoft_sign_out(self._phrase(p)) if action == "sign_out" else self._app.microsoft_status()

    # -- recipients -----------------------------------------------------------------------

    def _preview(self, imported: Any) -> dict[str, Any]:
        return self._app.list_preview(imported, PREVIEW_ROWS, PREVIEW_REJECTS)

    def _import(self, source: tuple[str, Any], p: Params) -> dict[str, Any]:
        return self._preview(self._app.import_recipients(source, p.column("email_column"), p.column("name_column")))

    @api
    def choose_recipients_file(self, p: Params) -> dict[str, Any] | None:
        """Pick a CSV/TSV/TXT/XLSX with the native dialog and import it; None when cancelled."""
        chosen = self._dialog("OPEN", file_types=FILE_TYPES)
        return self._import(("file", chosen[0]), p) if chosen else None

    @api
    def import_recipients_data(self, p: Params) -> dict[str, Any]:
        """Import a file's content sent by the page (browser mode's file field)."""
        name = Path(p.str("name", required=True)).name or "upload.csv"
        return self._import(("data", (self._b64(p, "data_base64", MAX_FILE), name)), p)

    @api
    def import_recipients_text(self, p: Params) -> dict[str, Any]:
        """Import pasted addresses or a pasted table."""
        return self._import(("text", p.str("text", max_len=MAX_TEXT, required=True)), p)

    @api
    def cancel_import(self, p: Params) -> dict[str, Any]:
        """Stop the list import under way (the list read before stays)."""
        self._app.cancel_import()
        return {}

    @api
    def set_email_column(self, p: Params) -> dict[str, Any]:
        """Read the last list again with another email column."""
        return self._preview(self._app.reread_recipients(email_column=p.column("column")))

    @api
    def set_name_column(self, p: Params) -> dict[str, Any]:
        """Read the last list again with another name column (none: found automatically)."""
        return self._preview(self._app.reread_recipients(name_column=p.column("column")))

    # -- compose --------------------------------------------------------------------------

    @api
    def check_message(self, p: Params) -> dict[str, Any]:
        """Review & send: each step's state, what is missing, warnings, problem rows by line."""
        return self._app.review(account_input(p), message_input(p), send_options(p))

    @api
    def check_links(self, p: Params) -> dict[str, Any]:
        """Check links (it makes requests): each link of the first recipient's message followed."""
        return self._app.check_links(account_input(p), message_input(p))

    @api
    def check_authentication(self, p: Params) -> dict[str, Any]:
        """SPF, DKIM, DMARC and the bulk-sender rule for the From domain and this account (asks DNS)."""
        return self._app.check_authentication(account_input(p), message_input(p), limits=send_options(p).limits,
                                              selectors=tuple(p.str("dkim_selectors").replace(",", " ").split()))

    @api
    def preview_message(self, p: Params) -> dict[str, Any]:
        """Recipient N's message as it would be sent (1-based N)."""
        shown = self._app.preview(account_input(p), message_input(p), p.int("index", 1, 1, 10**9))
        shown.pop("raw")
        shown["html_url"] = self._register_preview(shown["html"])
        return shown

    @api
    def send_test(self, p: Params) -> dict[str, Any]:
        """Send recipient N's version to the From address."""
        return self._app.send_test(account_input(p), message_input(p), p.int("index", 1, 1, 10**9),
                                   self._phrase(p))

    # -- campaigns ------------------------------------------------------------------------

    @api
    def start_campaign(self, p: Params) -> dict[str, Any]:
        """Check everything, then start sending on the worker thread."""
        self._app.ensure_idle()
        draft, plan = self._app.prepare(account_input(p), message_input(p), send_options(p),
                                        passphrase=self._phrase(p))
        return self._app.launch(draft, plan)  # sent now, or journaled as scheduled when its time is ahead

    @api
    def reschedule(self, p: Params) -> dict[str, Any]:
        """Change a scheduled campaign before it starts: its time and/or its message."""
        m = p.obj("message")
        return self._app.reschedule(p.str("campaign", required=True), at=p.str("at") or None, tz=p.str("tz") or None,
                                    subject=m.str("subject") if m.has("subject") else None,
                                    html=m.str("html", max_len=2_000_000) if m.has("html") else None,
                                    text=m.str("text", max_len=2_000_000) if m.has("text") else None)

    @api
    def cancel_scheduled(self, p: Params) -> dict[str, Any]:
        """Cancel a scheduled or waiting campaign (History) and its follow-ups not sent yet."""
        return self._app.cancel_campaign(p.str("campaign", required=True))

    @api
    def timer(self, p: Params) -> dict[str, Any]:
        """The timer that sends scheduled campaigns while the app is closed: status, install, remove."""
        return self._app.timer(p.choice("action", ("status", "install", "remove"), "status"))

    @api
    def already_sent(self, p: Params) -> dict[str, Any]:
        """Whether this list went to this account in the last 30 days (the core decides)."""
        return {"campaign": self._app.already_sent(account_input(p))}

    @api
    def draft(self, p: Params) -> dict[str, Any]:
        """The campaign being written: save it as typed (never a password), load it at start, or
        clear it (Start a new campaign)."""
        action = p.choice("action", ("save", "load", "clear"), "load")
        if action == "save":
            m, send = p.obj("draft").obj("message"), p.obj("draft").obj("send")
            return self._app.save_draft(SavedDraft(
                subject=m.str("subject", max_len=MAX_TEXT), body=m.str("body", max_len=MAX_TEXT),
                format=m.choice("format", BODY_FORMATS, "html"), raw_html=m.bool("raw_html"),
                unsubscribe=tuple(unsubscribe_values(m)),
                send={k: send.str(k, max_len=40) for k in DRAFT_SEND_FIELDS if send.has(k)}))
        return {"draft": self._app.load_draft() if action == "load" else self._app.clear_draft()}

    @api
    def signature(self, p: Params) -> dict[str, Any]:
        """The account's signature (Account): load it, or save it (both parts empty: none)."""
        if p.choice("action", ("load", "save"), "load") == "load":
            return self._app.account_signature(account_input(p))
        return self._app.save_signature(account_input(p), p.str("html", max_len=MAX_SHORT * 100),
                                        p.str("text", max_len=MAX_SHORT * 100))

    @api
    def check_replies(self, p: Params) -> dict[str, Any]:
        """Bounces and replies read from the mailbox: one campaign (History's button), or (no id)
        every campaign the automatic check is due for."""
        kw = {"password": p.str("password"), "passphrase": self._phrase(p), "move_bounces": p.bool("move_bounces")}
        if not p.str("id"):
            return {"checked": self._app.track_due(**kw)}
        out = self._app.track(p.str("id"), **kw)
        return {"checked": [{**out.as_dict(), "summary": out.summary()}]}

    @api
    def campaign_details(self, p: Params) -> dict[str, Any]:
        """One past campaign and every line's result (the first 5,000)."""
        return self._app.details(p.str("id", required=True))

    @api
    def resume_past_campaign(self, p: Params) -> dict[str, Any]:
        """Continue an interrupted, paused, stopped or failed campaign with the recipients not
        sent yet; with the account settings now in the form when the user chose them."""
        current = account_input(p) if p.has("account") else None
        use = p.bool("use_current_settings") if p.has("use_current_settings") else None
        req = ResumeRequest(uncertain=p.choice("uncertain", ("ask", "resend", "skip"), "ask"), now=p.bool("now"),
                            account=current, use_current_settings=use)
        run = self._app.resume(p.str("id", required=True), req, self._phrase(p))
        return {"campaign": run.id, "total": run.total}

    @api
    def resend_campaign(self, p: Params) -> dict[str, Any]:
        """A follow-up campaign to a past campaign's failed (and optionally uncertain) recipients."""
        run = self._app.resend(p.str("id", required=True), include_uncertain=p.bool("include_uncertain"),
                               account=account_input(p) if p.has("account") else None,
                               passphrase=self._phrase(p))
        return {"campaign": run.id, "total": run.total, "left_out": run.left_out}

    @api
    def campaign_history(self, p: Params) -> dict[str, Any]:
        """Past campaigns, newest first (a campaign whose app was killed shows 'interrupted')."""
        return {"campaigns": self._app.history()[:200]}

    @api
    def pause_campaign(self, p: Params) -> dict[str, Any]:
        """Hold after the current message."""
        return {"state": self._app.control("pause")}

    @api
    def resume_campaign(self, p: Params) -> dict[str, Any]:
        """Continue a paused campaign."""
        return {"state": self._app.control("resume")}

    @api
    def cancel_campaign(self, p: Params) -> dict[str, Any]:
        """Stop after the current message; the rest can be sent later (History)."""
        return {"state": self._app.control("cancel")}

    @api
    def campaign_state(self, p: Params) -> dict[str, Any]:
        """The current (or last) campaign's state and counts."""
        return self._app.state()

    @api
    def export_results(self, p: Params) -> dict[str, Any] | None:
        """A campaign's results as CSV (the last one's, or the one named): every line of its list,
        as the journal has them. Saved via the native dialog, or returned as text."""
        given = p.str("id") or (self._app.finished.id if self._app.finished is not None else None)
        if given is None:
            raise NotNow("there are no results yet: run a campaign first")
        cid = self._app.campaign_id(given)
        filename = f"results-{cid}.csv"
        if self._has_dialogs:
            chosen = self._dialog("SAVE", save_filename=filename)
            return {"path": self._app.export(cid, chosen[0])[0]} if chosen else None
        return {"filename": filename, "csv": self._app.export(cid)[0]}

    def _register_preview(self, html: str | None) -> str | None:
        return self._previews.add(html)

    def _preview_html(self, pid: str) -> str | None:
        return self._previews.get(pid)

    # -- attachments ----------------------------------------------------------------------

    def _attachment_list(self) -> dict[str, Any]:
        return {"attachments": [{"id": i, "filename": a.filename, "size": len(a.data),
                                 "content_type": a.content_type} for i, a in self._app.attachments]}

    @api
    def choose_attachments(self, p: Params) -> dict[str, Any]:
        """Add files for everyone with the native dialog (the page never names a path)."""
        chosen = self._dialog("OPEN", allow_multiple=True)
        if chosen:
            self._app.add_attachment_files(chosen)
        return self._attachment_list()

    @api
    def add_attachment_data(self, p: Params) -> dict[str, Any]:
        """Add a file for everyone from its content (browser mode's file field)."""
        self._app.add_attachment_data(Path(p.str("name", required=True)).name, self._b64(p, "data_base64", MAX_FILE))
        return self._attachment_list()

    @api
    def remove_attachment(self, p: Params) -> dict[str, Any]:
        """Remove one of the files for everyone."""
        self._app.remove_attachment(p.str("id", required=True))
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
        self._app.attach_dir = Path(chosen[0])
        return {"folder": chosen[0]}

    @api
    def set_attachment_column(self, p: Params) -> dict[str, Any]:
        """Choose the column naming each recipient's own files (none: off); check them all."""
        return self._app.set_attachment_column(p.column("column"))

    # -- suppression list -----------------------------------------------------------------

    @api
    def suppression_list(self, p: Params) -> dict[str, Any]:
        """The addresses never mailed, with their reasons (the first 1000)."""
        entries = self._app.suppression.all()
        return {"count": len(entries), "entries": [{"email": e, "reason": r} for e, r in entries[:1000]]}

    @api
    def suppression_add(self, p: Params) -> dict[str, Any]:
        """Add pasted addresses (one a line, or separated by commas/spaces) to the list."""
        return self._app.suppression_add(p.str("text", max_len=MAX_TEXT, required=True),
                                         p.str("reason", "added by hand", max_len=200))

    @api
    def suppression_remove(self, p: Params) -> dict[str, Any]:
        """Take an address off the list."""
        return {"removed": self._app.suppression.remove(p.str("email", required=True))}

    # -- saved templates ------------------------------------------------------------------

    @api
    def template_list(self, p: Params) -> dict[str, Any]:
        """Saved templates by name."""
        return {"templates": self._app.template_list()}

    @api
    def template_save(self, p: Params) -> dict[str, Any]:
        """Save the message as a named template (overwrite only when asked)."""
        m = p.obj("message")
        name = self._app.template_save(
            p.str("name", required=True), subject=m.str("subject", max_len=MAX_SHORT),
            body=m.str("body", max_len=MAX_TEXT), fmt=m.choice("format", BODY_FORMATS, "html"),
            raw_html=m.bool("raw_html"), unsubscribe=unsubscribe_values(m), overwrite=p.bool("overwrite"))
        return {"name": name}

    @api
    def template_load(self, p: Params) -> dict[str, Any]:
        """A saved template's message fields."""
        return self._app.template_load(p.str("name", required=True))

    @api
    def template_rename(self, p: Params) -> dict[str, Any]:
        """Rename a saved template."""
        return {"name": self._app.templates.rename(p.str("old", required=True), p.str("new", required=True)).name}

    @api
    def template_delete(self, p: Params) -> dict[str, Any]:
        """Delete a saved template."""
        self._app.templates.delete(p.str("name", required=True))
        return {}

    @api
    def template_export(self, p: Params) -> dict[str, Any] | None:
        """A template as a file: saved via the native dialog, or returned as JSON text."""
        name = p.str("name", required=True)
        filename = self._app.template_filename(name)
        if self._has_dialogs:
            chosen = self._dialog("SAVE", save_filename=filename)
            return {"path": self._app.template_export(name, chosen[0])} if chosen else None
        return {"filename": filename, "json": self._app.template_export(name)}

    @api
    def template_import(self, p: Params) -> dict[str, Any] | None:
        """Import a template file chosen with the native dialog."""
        chosen = self._dialog("OPEN")
        if not chosen:
            return None
        return {"template": self._app.template_import(Path(chosen[0]), overwrite=p.bool("overwrite"))}

    @api
    def template_import_data(self, p: Params) -> dict[str, Any]:
        """Import a template file's content sent by the page (browser mode)."""
        return {"template": self._app.template_import(self._b64(p, "data_base64", MAX_TEXT),
                                                      overwrite=p.bool("overwrite"))}

    # -- local test inbox -----------------------------------------------------------------

    @api
    def inbox_list(self, p: Params) -> dict[str, Any]:
        """Messages the local test inbox received, newest first."""
        inbox = self._app.inbox
        return {"messages": [m.summary() for m in inbox.messages()[:1000]], "host": inbox.host, "port": inbox.port}

    @api
    def inbox_message(self, p: Params) -> dict[str, Any]:
        """One received message with headers and bodies."""
        found = self._app.inbox.get(p.int("id", 0, 0, 2**53))
        if found is None:
            raise Invalid("id", "no such message in the local test inbox")
        detail = found.detail()
        detail["html_url"] = self._register_preview(detail.get("html"))
        return detail

    @api
    def inbox_clear(self, p: Params) -> dict[str, Any]:
        """Empty the local test inbox."""
        self._app.inbox.clear()
        return {}


def web_face(bridge: Bridge) -> Any:
    """The bridge as browser mode serves it: its API methods by name, its previews, its events."""
    from backend import web

    bridge._app.keep_schedule()  # while the app is open, what is due goes by itself
    return web.Face(methods={n: getattr(bridge, n) for n in bridge._api_names()}, preview=bridge._preview_html,
                    ready=bridge._pump.ready, shutdown=bridge._shutdown, owner=bridge)


# -- entry point --------------------------------------------------------------------------


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
    webapp, server, _ = web.start(lambda deliver: web_face(bridge), FRONTEND, for_window=True)
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
    if args[:1] == ["--probe-window"]:  # the frozen app's child that tries Qt (appwindow.window_problem)
        return __import__("appwindow").probe_main()
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
    from backend.logs import setup_logging

    setup_logging()
    import appwindow

    display = appwindow.has_display()
    problem = appwindow.window_problem() if sys.platform == "linux" and display and not ns.web else None
    if ns.self_test:
        return appwindow.self_test(open_window, problem)
    if ns.web or (not ns.window and not display) or problem:
        # The window always opens something: without it, the same app in the browser.
        print(f"bulk-mailer: {problem}. Serving the app to your browser instead." if problem else
              "" if ns.web else "No display found: serving the app to your browser instead.", file=sys.stderr)
        return _serve(ns)
    return open_window()


def _serve(ns: Any) -> int:
    """Browser mode until Ctrl-C (the address printed on standard output)."""
    from backend import web

    try:
        return web.serve(lambda deliver: web_face(Bridge(native_dialogs=False, deliver=deliver)), FRONTEND,
                         port=ns.port, open_browser=not ns.no_browser)
    except OSError as exc:  # the port is taken, or not ours to use
        print(f"bulk-mailer: error [action_unavailable]: cannot serve on 127.0.0.1:{ns.port or 'a free port'} "
              f"({exc.strerror or exc})", file=sys.stderr)
        if ns.port:
            print("  1. Choose another port with --port, or leave --port out to use a free one.", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
