"""App: the composition root. Every use case once, as a short method; the window, browser mode
and the command line parse their input into backend.inputs, call these and word the answer.

It owns the journal, the password store, the suppression list, the templates, the local test
inbox, the imported list and attachments of this session, the Google sign-in under way and the
campaign being sent. Events (progress, state, waits) go to the ``emit`` callback it is given.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.policy
import logging
import secrets
import threading
import time
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend import __version__, deliverability, plans, review, service
from backend import settings as account_settings
from backend.attachments import Attachment, check_attachments, guess_content_type, load_attachments
from backend.credentials import (
    MIN_PASSPHRASE,
    CredentialsError,
    PasswordStore,
    account_key,
    default_store,
)
from backend.diagnostics import diagnose
from backend.errors import CATEGORIES, MailerError, OAuthError, SettingsError
from backend.inputs import (
    AccountInput,
    CheckFailed,
    MessageInput,
    NothingLeft,
    NotNow,
    QuotaNotLifted,
    ResumeRequest,
    RowProblems,
    SendOptions,
    SettingsChanged,
    UncertainLeft,
)
from backend.journal import Journal, repair_journal
from backend.microsoft_auth import (
    MicrosoftAccount,
    MicrosoftTokenSource,
)
from backend.microsoft_auth import saved_profile as microsoft_profile
from backend.model import (
    DEFAULT_MAX_FAILURES,
    SENT_STATUSES,
    Clock,
    ResultRow,
    RetryPolicy,
    iso,
    utc_now,
)
from backend.presets import (
    MAX_CONNECTIONS,
    PRESETS,
    preset_host,
)
from backend.recipients import ImportResult, load_bytes, load_file, parse_text
from backend.runs import Run
from backend.settings import SECURITY_LABELS, SECURITY_MODES, SmtpSettings, apply_preset
from backend.suppression import SuppressionList
from backend.templates import TemplateStore
from backend.transports.base import Envelope, Transport
from backend.transports.smtp import SmtpTransport

if TYPE_CHECKING:  # loaded when used: a campaign over SMTP needs neither Google nor the local inbox
    from backend.google_auth import GoogleAccount, SignIn
    from backend.inbox import LocalInbox

from backend.core.drafts import DEFAULT_BODY, DEFAULT_SUBJECT, Drafts
from backend.core.library import Library
from backend.core.mailbox import Mailbox
from backend.core.schedules import Schedules
from backend.core.signatures import Signatures
from backend.core.signins import SignIns, _google
from backend.inputs import LOCAL_INBOX

log = logging.getLogger(__name__)
__all__ = ["MIN_PASSPHRASE", "App", "LOCAL_INBOX"]  # and SIGN_IN_TIMEOUT_S, read through __getattr__


def __getattr__(name: str) -> Any:
    if name == "SIGN_IN_TIMEOUT_S":
        return _google().SIGN_IN_TIMEOUT_S
    raise AttributeError(name)

SENT_AGAIN_DAYS = 30  # the same list to the same account within this many days: ask first
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
MICROSOFT_PROVIDERS = ("outlook", "office365")  # SMTP with XOAUTH2 there logs in with the Microsoft sign-in
MICROSOFT_SMTP_HOSTS = ("smtp.office365.com", "smtp-mail.outlook.com")
_PREVIEW_HEADERS = {"from", "to", "reply-to", "subject", "date", "list-unsubscribe", "list-unsubscribe-post"}


def left_to_send(counts: dict[str, int]) -> int:
    """Recipients of a journaled campaign not sent yet (pending or deferred)."""
    return counts.get("pending", 0) + counts.get("deferred", 0)


def resumable(state: str, counts: dict[str, int]) -> bool:
    """Whether a journaled campaign can be resumed: not running, and someone is left to send to
    or uncertain."""
    return state != "running" and bool(left_to_send(counts) + counts.get("uncertain", 0))


def campaign_dict(info: Any) -> dict[str, Any]:
    """A journaled campaign as the faces show it, with what the core decides about it."""
    d = info.as_dict()
    d["left_to_send"] = left_to_send(info.counts)
    d["resumable"] = resumable(info.state, info.counts)
    d["quota_lifts"] = service.quota_lifts(info.resume_after)
    return d


class App(SignIns, Drafts, Mailbox, Library, Schedules, Signatures):
    """Bulk Mailer's use cases, shared by every face."""

    def __init__(self, *, inbox: LocalInbox | None = None, store: PasswordStore | None = None,
                 emit: Callable[[dict[str, Any]], None] = lambda event: None,
                 detector: Callable[[str], list[Any]] | None = None,
                 open_browser: Callable[[str], Any] | None = None, journal_path: Path | None = None,
                 clock: Clock | None = None) -> None:
        self._inbox = inbox  # made on first use: aiosmtpd is loaded then
        self._store = store  # opened on first use: a command that needs no secret works without it
        self.emit = emit
        self.clock = clock or Clock()  # tests pass a fake one: schedules, limits and delays without waiting
        self._detector = detector  # tests pass one that never leaves 127.0.0.1
        # Google's sign-in page opens in the system browser (never in an embedded web view,
        # which Google refuses); tests pass a function that plays the browser.
        self._open_browser = open_browser
        self._journal_path = journal_path
        self._journal_db: Journal | None = None
        self._suppression: SuppressionList | None = None
        self._templates: TemplateStore | None = None
        self._lock = threading.Lock()
        self.run: Run | None = None
        self.finished: Run | None = None  # the last run with results
        self._passphrase: str | None = None  # kept in memory for this run of the app only
        self._sign_in: SignIn | None = None
        self.sign_in_state: dict[str, Any] = {"state": "idle", "url": None, "error": None, "purpose": None}
        self._sign_in_done = threading.Event()
        self._sign_in_error: MailerError | None = None
        # this session's list and files (the window's; the command line imports once)
        self.imported: ImportResult | None = None
        self._source: tuple[str, Any] | None = None
        self._import_cancel = threading.Event()
        self.columns: tuple[str | None, str | None] = (None, None)
        self.attachments: list[tuple[str, Attachment]] = []
        self.attach_column: str | None = None
        self.attach_dir: Path | None = None
        self._attachment_paths: dict[str, str] = {}  # attachment id -> the file it was read from
        self._tested: set[str] = set()  # accounts whose connection test passed in this session
        self._tracked_at: dict[str, float] = {}  # campaign -> when its mailbox was last read (monotonic)

    # -- what the app has ------------------------------------------------------------------

    @property
    def journal(self) -> Journal:
        # Opened on first use: every face's campaigns share one history.
        if self._journal_db is None:
            self._journal_db = Journal(self._journal_path)
        return self._journal_db

    @property
    def store(self) -> PasswordStore:
        if self._store is None:
            self._store = default_store()
        return self._store

    @property
    def templates(self) -> TemplateStore:
        if self._templates is None:
            self._templates = TemplateStore()
        return self._templates

    @property
    def suppression(self) -> SuppressionList:
        if self._suppression is None:
            self._suppression = SuppressionList()
        return self._suppression

    @property
    def inbox(self) -> LocalInbox:
        """The local test inbox (an SMTP server on 127.0.0.1, started when first used)."""
        if self._inbox is None:
            from backend.inbox import LocalInbox

            self._inbox = LocalInbox()
        return self._inbox

    def shutdown(self) -> None:
        self.stop_schedule()
        if self._sign_in is not None:
            self._sign_in.cancel()  # the loopback listener stops within a fraction of a second
        run = self.run
        if run is not None and run.thread.is_alive():
            run.control.cancel()
            run.thread.join(60)
        if self._inbox is not None:
            self._inbox.stop()

    def info(self, *, native_dialogs: bool = False) -> dict[str, Any]:
        """Version, provider presets (host rules, limits, advice), error categories, modes."""
        providers = [{
            "key": LOCAL_INBOX, "name": "Local test inbox", "host": self.inbox.host, "port": self.inbox.start(),
            "security": "none",
            "notes": ["A mail server on this computer that keeps every message it receives, for "
                      "trying a campaign without sending real mail. No username or password."],
            "limits_note": "", "username_hint": "", "regions": [], "default_region": None, "advice": {},
            "connections": 1, "hosts": {},
        }]
        for preset in PRESETS.values():
            providers.append({
                "key": preset.key, "name": preset.name, "host": preset_host(preset), "port": preset.port,
                "security": preset.security, "notes": list(preset.notes), "limits_note": preset.limits.note,
                "username_hint": preset.username_hint,
                "limits": {k: getattr(preset.limits, k) for k in ("per_second", "per_minute", "per_hour", "per_day")},
                "regions": list(preset.regions), "default_region": preset.default_region,
                "hosts": {r: preset_host(preset, r) for r in preset.regions},
                "advice": {k: list(v) for k, v in preset.advice.items()}, "connections": preset.connections,
            })
        from backend import schedule  # the zones for the page's time-zone fields

        zones = {"local": schedule.local_zone(), "names": schedule.zone_names()}
        return {
            "zones": zones,
            "version": __version__, "native_dialogs": native_dialogs, "providers": providers,
            "categories": {c.name: {"title": c.title, "cause": c.cause, "fix": list(c.fix)} for c in CATEGORIES.values()},
            "security_modes": [{"value": m, "label": SECURITY_LABELS[m]} for m in SECURITY_MODES],
            "default_ports": DEFAULT_PORTS, "inbox": {"host": self.inbox.host, "port": self.inbox.port},
            "max_connections": MAX_CONNECTIONS, "password_store": self.store.kind,
            "retry_defaults": {**dataclasses.asdict(RetryPolicy()), "max_failures_in_a_row": DEFAULT_MAX_FAILURES},
        }

    # -- secrets ---------------------------------------------------------------------------

    def use_passphrase(self, given: str | None) -> str | None:
        """The passphrase of the encrypted store: the one given now (checked, then kept for this
        run of the app) or the one given earlier."""
        if given and self.store.needs_passphrase and given != self._passphrase and self.store.has(_google().KEY_TOKEN):
            self.store.load(_google().KEY_TOKEN, given)  # a wrong passphrase is refused here, not kept
        if given:
            self._passphrase = given
        return self._passphrase

    @property
    def locked(self) -> bool:
        return self.store.needs_passphrase and self._passphrase is None

    def google(self, passphrase: str | None = None, *, reading: bool = False) -> GoogleAccount:
        """The saved Google sign-in (reading: the one for reading bounces and replies), unlocked
        with the passphrase given now or earlier."""
        return _google().GoogleAccount(self.store, self.use_passphrase(passphrase), reading=reading)

    def microsoft(self, passphrase: str | None = None) -> MicrosoftAccount:
        """The saved Microsoft sign-in, unlocked with the passphrase given now or earlier."""
        return MicrosoftAccount(self.store, self.use_passphrase(passphrase))

    def token_source(self, provider: str | None, host: str, passphrase: str | None = None) -> Any:
        """What SMTP's XOAUTH2 login uses: the Microsoft sign-in for Outlook.com and Microsoft
        365, else the Google one."""
        if provider in MICROSOFT_PROVIDERS or host.lower() in MICROSOFT_SMTP_HOSTS:
            return MicrosoftTokenSource(self.microsoft(passphrase))
        return _google().TokenSource(self.google(passphrase), "smtp")

    def password(self, user: str, host: str, given: str = "", passphrase: str | None = None) -> str:
        """The password given now, else the one saved for this account."""
        if given:
            return given
        key = account_key(user, host)
        phrase = passphrase or self._passphrase
        if self.store.has(key):
            saved = self.store.load(key, phrase)
            if saved:
                if passphrase:
                    self._passphrase = passphrase
                return saved
        raise SettingsError("password", f"enter the password for '{user}'")

    def keep_password(self, a: AccountInput, passphrase: str | None = None) -> bool:
        """Save the password given for this SMTP account in the password store (a campaign that
        starts later, or goes on by itself, is sent without the user); False when there is none."""
        settings, _ = self.smtp_settings(a, need_password=False)
        if not (settings.user and a.password):
            return False
        self.store.save(account_key(settings.user, settings.host), a.password, passphrase or self._passphrase)
        if passphrase:
            self._passphrase = passphrase
        return True

    def smtp_settings(self, a: AccountInput, *, need_password: bool = True,
                      passphrase: str | None = None) -> tuple[SmtpSettings, bool]:
        """Validated SMTP settings (a preset fills what is not given); whether it is the local inbox."""
        if a.provider == LOCAL_INBOX:
            return SmtpSettings(host=self.inbox.host, port=self.inbox.start(), security="none",
                                from_address=a.from_address, timeout=10).validated(), True
        if a.provider not in (None, "", "custom") and a.provider not in PRESETS:
            raise SettingsError("provider", f"unknown provider '{a.provider}'")
        if a.provider in PRESETS:
            values = apply_preset(a.provider, region=a.region, host=a.host or None, port=a.port,
                                  security=a.security)
        else:
            if not a.host.strip():
                raise SettingsError("host", "give the SMTP server's host name (or choose a provider)")
            security = a.security or ("ssl" if a.port == 465 else "starttls")
            values = {"host": a.host.strip(), "security": security, "port": a.port or DEFAULT_PORTS[security]}
        user, password, token_source = a.user.strip(), "", None
        if a.auth == "xoauth2":
            token_source = self.token_source(a.provider, str(values["host"]), passphrase)
            user = user or token_source.email
        elif user and need_password:
            password = self.password(user, str(values["host"]), a.password, passphrase)
        return SmtpSettings(**values, user=user, password=password, auth=a.auth, token_source=token_source,
                            from_address=a.from_address, ca_file=a.ca_file,
                            verify_certificates=a.verify_certificates, allow_plaintext_auth=a.allow_plaintext_auth,
                            timeout=a.timeout).validated(), False

    # -- settings --------------------------------------------------------------------------

    def load_settings(self) -> dict[str, Any]:
        """The saved settings, or the first-start defaults (the local test inbox)."""
        saved = account_settings.load_saved()
        account = {"provider": LOCAL_INBOX, "host": self.inbox.host, "port": self.inbox.start(),
                   "security": "none", "user": "", "from_address": "Me <me@example.com>",
                   "verify_certificates": True, "allow_plaintext_auth": False, "region": None,
                   "channel": "smtp", "auth": "password", "max_per_minute": None, "sent_copy": True,
                   "imap_host": "", "imap_port": None, "imap_security": "ssl"}
        message = {"subject": DEFAULT_SUBJECT, "body": DEFAULT_BODY,
                   "format": "html", "raw_html": False, "delay_ms": service.DEFAULT_DELAY_MS, "unsubscribe": [],
                   "connections": None}
        if saved:
            account.update({k: v for k, v in (saved.get("account") or {}).items() if k in account})
            message.update({k: v for k, v in (saved.get("message") or {}).items() if k in message})
            if account["provider"] == LOCAL_INBOX:
                account["port"] = self.inbox.port
        key = account_key(str(account.get("user") or ""), str(account.get("host") or ""))
        store_error = None
        try:
            has_saved = bool(account.get("user")) and self.store.has(key)
        except CredentialsError as exc:  # the settings still load; the password is re-entered
            has_saved, store_error = False, exc.message
        return {"account": account, "message": message,
                "remember_settings": bool(saved and saved.get("remember_settings")),
                "remember_password": bool(saved and saved.get("remember_password")),
                "has_saved_password": has_saved, "password_locked": has_saved and self.locked,
                "first_start": saved is None, "password_store_error": store_error}

    def save_settings(self, account: dict[str, Any], message: dict[str, Any], *, remember: bool,
                      remember_password: bool, password: str = "", passphrase: str | None = None) -> dict[str, Any]:
        """Save the non-secret settings; the password goes to the password store when asked."""
        previous = account_settings.load_saved() or {}
        data: dict[str, Any] = {"remember_settings": remember, "remember_password": remember_password}
        if previous.get("signatures"):
            data["signatures"] = previous["signatures"]  # kept by save_signature, whatever is remembered
        if remember:
            data.update({"account": account, "message": message})
        account_settings.save(data)
        key = account_key(account["user"], account["host"])
        phrase = passphrase or self._passphrase
        if remember_password and account["user"] and password:
            self.store.save(key, password, phrase)
            if passphrase:
                self._passphrase = passphrase
        elif not remember_password and previous.get("remember_password") and account["user"]:
            self.store.delete(key, phrase)  # the box was ticked before and is not now
        return {"has_saved_password": bool(account["user"]) and self.store.has(key)}

    # -- connection ------------------------------------------------------------------------

    def verify(self, a: AccountInput, *, check_sender: bool = False, check_domain: bool = False,
               passphrase: str | None = None) -> dict[str, Any]:
        """Diagnose step by step (DNS, TCP, TLS, certificate, EHLO, login); CheckFailed with every
        step when one fails."""
        if a.channel == "gmail":
            account = self.google(passphrase)
            token = account.require("api")
            started = time.monotonic()
            account.access_token(force_refresh=True)  # Google confirms the sign-in is still good
            step = {"name": "auth", "title": "Google sign-in", "status": "ok", "ok": True,
                    "detail": f"Google renewed the sign-in of {token.email}: the Gmail API will accept it",
                    "seconds": round(time.monotonic() - started, 3)}
            return {"steps": [step], "verify_certificates": True, "authenticated_as": token.email,
                    "channel": "gmail"}
        if a.channel == "microsoft":
            return self._verify_microsoft(passphrase)
        settings, _ = self.smtp_settings(a, passphrase=passphrase)
        result = diagnose(settings, check_sender=check_sender, check_domain=check_domain)
        if result.error is not None:
            raise CheckFailed(result.error, [step.as_dict() for step in result.steps])
        self._tested.add(plans.smtp_account_key(settings))
        return {"steps": [step.as_dict() for step in result.steps], "verify_certificates": settings.verify_certificates,
                "authenticated_as": settings.user or None}

    def _verify_microsoft(self, passphrase: str | None) -> dict[str, Any]:
        account = self.microsoft(passphrase)
        email = account.require("graph")["email"]
        started = time.monotonic()
        account.access_token("graph", force_refresh=True)  # Microsoft confirms the sign-in is still good
        step = {"name": "auth", "title": "Microsoft sign-in", "status": "ok", "ok": True,
                "detail": f"Microsoft renewed the sign-in of {email}: Microsoft Graph will accept it",
                "seconds": round(time.monotonic() - started, 3)}
        return {"steps": [step], "verify_certificates": True, "authenticated_as": email, "channel": "microsoft"}

    def tested(self, a: AccountInput) -> bool:
        """Whether this account is known to work: its connection test passed in this session, or a
        campaign sent through it before (the local test inbox and Gmail API need no test)."""
        key = self.account_key(a)
        if key is None or a.channel in ("gmail", "microsoft"):
            return True
        return key in self._tested or any(c.account == key and c.counts.get("sent") for c in self.journal.campaigns())

    def diagnose(self, a: AccountInput, *, check_sender: bool = False, check_domain: bool = False) -> Any:
        """The connection check's full result (for a face that prints every step itself)."""
        settings, _ = self.smtp_settings(a)
        return settings, diagnose(settings, check_sender=check_sender, check_domain=check_domain)

    def detect(self, address: str, ca_file: str | None = None) -> list[Any]:
        """Server settings for an address: presets, then MX records, then probing."""
        from backend.autodetect import detect

        return self._detector(address) if self._detector else detect(address, ca_file=ca_file)

    # -- recipients ------------------------------------------------------------------------

    def import_recipients(self, source: tuple[str, Any], email_column: str | None = None,
                          name_column: str | None = None) -> ImportResult:
        """Read a list: ("file", path), ("data", (bytes, name)) or ("text", pasted text); its
        progress goes out as import-progress events and cancel_import() stops it."""
        kind, value = source
        self._import_cancel.clear()
        hooks = {"email_column": email_column, "name_column": name_column, "cancelled": self._import_cancel.is_set,
                 "progress": lambda done, total: self.emit({"type": "import-progress", "done": done, "total": total})}
        if kind == "file":
            imported = load_file(value, **hooks)
        elif kind == "data":
            imported = load_bytes(value[0], value[1], **hooks)
        else:
            imported = parse_text(value, **hooks)
        self.imported, self._source, self.columns = imported, source, (email_column, name_column)
        return imported

    def cancel_import(self) -> None:
        """Stop the import under way (it raises ImportCancelled; the list read before stays)."""
        self._import_cancel.set()

    def list_preview(self, imported: ImportResult, rows: int = 100, rejects: int = 500) -> dict[str, Any]:
        """What a face shows of an import (bounded whatever the list holds), suppressed ones included."""
        shown = imported.preview(rows, rejects)
        suppressed = self.suppressed(imported)
        shown["counts"]["suppressed"] = len(suppressed)
        shown["suppressed"] = [{"line": r.line, "email": r.email, "reason": why} for r, why in suppressed[:rejects]]
        return shown

    def reread_recipients(self, *, email_column: str | None | bool = False,
                          name_column: str | None | bool = False) -> ImportResult:
        """Read the last list again with another email or name column (False: keep it)."""
        if self._source is None:
            raise NotNow("import a recipient list first")
        email_col = self.columns[0] if email_column is False else email_column
        name_col = self.columns[1] if name_column is False else name_column
        return self.import_recipients(self._source, email_col, name_col)  # type: ignore[arg-type]

    def suppressed(self, imported: ImportResult) -> list[tuple[Any, str]]:
        return self.suppression.apply(imported.recipients)[1]

    # -- attachments (this session's files for everyone, and per-recipient files) ----------

    def add_attachment_files(self, files: list[str]) -> None:
        for path, attachment in zip(files, load_attachments(files), strict=True):
            key = secrets.token_hex(8)
            self.attachments.append((key, attachment))
            self._attachment_paths[key] = str(Path(path).resolve())  # kept in the draft

    def add_attachment_data(self, name: str, data: bytes) -> None:
        """A file for everyone from its content (browser mode's file field)."""
        self.attachments.append((secrets.token_hex(8), Attachment(name, guess_content_type(name), data)))

    def remove_attachment(self, attachment_id: str) -> None:
        self.attachments = [(i, a) for i, a in self.attachments if i != attachment_id]

    def set_attachment_column(self, column: str | None) -> dict[str, Any]:
        """The column naming each recipient's own files (None: off); every row's files checked."""
        imported = self.imported
        if imported is None or not imported.recipients:
            raise NotNow("add recipients first: paste addresses or import a file")
        if column is not None and column not in imported.fields:
            raise SettingsError("column", f"there is no column '{column}'")
        self.attach_column = column
        problems: list[MailerError] = []
        if column and self.attach_dir is not None:
            problems = check_attachments(imported.recipients, column, self.attach_dir, ())
        return {"column": column, "folder": str(self.attach_dir) if self.attach_dir else None,
                "problems": RowProblems(problems).rows() if problems else []}

    # -- drafts, checks, previews ----------------------------------------------------------

    def sender(self, a: AccountInput, m: MessageInput, *, signed_in: bool = False) -> str:
        """The From of a campaign: as given for SMTP; for the Gmail API, the signed-in address
        (known without unlocking the store) with the name given."""
        from_address = m.from_address or a.from_address
        if a.channel == "microsoft":
            return self._microsoft_sender(from_address)
        if a.channel != "gmail":
            return from_address
        profile = _google().saved_profile()
        if profile is None:
            raise OAuthError("sign in with Google first: the Gmail API sends as the signed-in account",
                             fix=("Click Sign in with Google in the Account section, or run "
                                  "bulk-mailer gmail login --client-secrets FILE.",))
        return service.gmail_sender(from_address, profile["email"])

    @staticmethod
    def _microsoft_sender(from_address: str) -> str:
        profile = microsoft_profile()
        if profile is None:
            raise OAuthError("sign in with Microsoft first: Microsoft Graph sends as the signed-in account",
                             category="microsoft_sign_in", fix=("Click Sign in with Microsoft in the Account "
                                                                "section, or run bulk-mailer microsoft login.",))
        return service.gmail_sender(from_address, profile["email"], "Microsoft Graph")

    def draft(self, m: MessageInput, from_address: str, imported: ImportResult | None = None, *,
              suppress: bool = True, account: AccountInput | None = None) -> service.Draft:
        """The campaign's draft from this session's list and files, the suppression list applied
        (suppress=False only for a dry run when the list cannot be read); the body as sent through
        account (Markdown converted, its signature added: App.message_bodies)."""
        imported = imported or self.imported
        if imported is None or not imported.recipients:
            raise NotNow("add recipients first: paste addresses or import a file")
        if not m.subject.strip():
            raise SettingsError("message.subject", "enter a subject")
        if not m.written:
            raise SettingsError("message.body", "write the message")
        html, text = self.message_bodies(m, account)
        draft = service.make_draft(
            imported, subject=m.subject, html=html, text=text, from_address=from_address,
            delay_ms=m.delay_ms, reply_to=m.reply_to, attach=m.attach,
            attach_column=m.attach_column or self.attach_column, attach_dir=m.attach_dir or self.attach_dir,
            unsubscribe=m.unsubscribe)
        draft.attachments += [a for _, a in self.attachments]
        if suppress:
            service.apply_suppression(draft, self.suppression)  # preview and checks see who gets it
        return draft

    def check(self, a: AccountInput, m: MessageInput) -> dict[str, Any]:
        """Every row whose message cannot be built (each with its own category), and warnings."""
        draft = self.draft(m, self.sender(a, m), account=a)
        problems = draft.problems()
        return {"problems": RowProblems(problems).rows() if problems else [], "warnings": self.warnings(draft)}

    def warnings(self, draft: service.Draft, *, strict_fields: bool = False, a: AccountInput | None = None) -> list[str]:
        """What may be a mistake though every message builds (review.content_warnings: large
        messages, empty fields, http links, ...); empty fields are an error with strict_fields."""
        if strict_fields:
            service.strict_fields(draft)
        return [w.text for w in review.content_warnings(draft, relay=self.relay(a))]

    def relay(self, a: AccountInput | None) -> str | None:
        """The SMTP server account a's mail goes through; None for the Gmail API, the local test
        inbox, or settings that cannot be read."""
        if a is None or a.channel == "gmail" or a.provider == LOCAL_INBOX:
            return None
        try:
            return self.smtp_settings(a, need_password=False)[0].host
        except MailerError:
            return a.host or None

    def content_check(self, draft: service.Draft, a: AccountInput | None = None) -> dict[str, Any]:
        """The offline content check of a campaign: {"verdict", "score", "findings"}."""
        return deliverability.check_draft(draft, relay=self.relay(a)).as_dict()

    def check_content(self, m: MessageInput, *, to_file: str | None = None, relay: str | None = None) -> dict[str, Any]:
        """`bulk-mailer check`: the content check of a message for the list in to_file (else one
        sample recipient with every field the message uses), sent from m.from_address (else a
        placeholder) through relay. Rows whose message cannot be built are RowProblems."""
        return deliverability.check_draft(self.draft_to_check(m, to_file), relay=relay).as_dict()

    def draft_to_check(self, m: MessageInput, to_file: str | None = None, *, imported: ImportResult | None = None,
                       strict: bool = True) -> service.Draft:
        """The draft the checks read: for the list in to_file (else imported, else one sample
        recipient with every field the message uses), from m.from_address (else a placeholder);
        rows whose message cannot be built are RowProblems when strict."""
        html, text = self.message_bodies(m)
        if to_file:
            imported = self.import_recipients(("file", to_file))
        elif imported is None or not imported.recipients:
            imported = deliverability.sample_list(m.subject, html, text)
        draft = service.make_draft(imported, subject=m.subject, html=html, text=text,
                                   from_address=m.from_address or "you@example.com", reply_to=m.reply_to,
                                   attach=m.attach, unsubscribe=m.unsubscribe)
        if not draft.recipients:
            raise SettingsError("to_file", "the list has no valid address to check the message for")
        problems = draft.problems() if strict else []
        if problems:
            raise RowProblems(problems)
        return draft

    def check_links(self, a: AccountInput, m: MessageInput, *, to_file: str | None = None,
                    **timeouts: float) -> dict[str, Any]:
        """Check links (it makes requests): each distinct link of the first recipient's message (of
        to_file's list, else this session's, else a sample recipient's) followed, certificates checked
        against the system's authorities and a.ca_file. {"links", "counts", "broken", "note", ...}."""
        if not ((m.html or "").strip() or (m.text or "").strip()):
            raise SettingsError("message.body", "write the message")
        m = dataclasses.replace(m, from_address=m.from_address or a.from_address)
        return self.link_check(self.draft_to_check(m, to_file, imported=self.imported, strict=False), a,
                               **timeouts)

    def check_authentication(self, a: AccountInput, m: MessageInput, *, selectors: tuple[str, ...] = (),
                             resolver: Any = None, to_file: str | None = None,
                             limits: dict[str, Any] | None = None) -> dict[str, Any]:
        """SPF, DKIM, DMARC and the bulk-sender rule for the From domain and the way account a sends
        (it asks DNS): {"domain", "path", "state", "checks": [{check, name, state, words, fix}]}."""
        from backend import authcheck

        return authcheck.for_campaign(self, a, m, selectors=selectors, resolver=resolver, to_file=to_file,
                                      limits=limits)

    def link_check(self, draft: service.Draft, a: AccountInput | None = None, **timeouts: float) -> dict[str, Any]:
        """The link check of a campaign's draft (send --dry-run --check-links)."""
        from backend import linkcheck

        return linkcheck.check_draft(draft, ca_file=a.ca_file if a else None, **timeouts).as_dict()

    def review(self, a: AccountInput, m: MessageInput, options: SendOptions) -> dict[str, Any]:
        """The step list and Review & send: each step's state and summary, what is missing, the
        number of messages, the server, limits and duration, warnings, the confirmation."""
        return review.review(self, a, m, options).as_dict()

    def dry_run(self, draft: service.Draft) -> list[MailerError]:
        """Build every message as it would be sent, without connecting; every problem."""
        return service.dry_run(draft)

    def preview(self, a: AccountInput, m: MessageInput, index: int) -> dict[str, Any]:
        """Recipient N's message (1-based) as it would be sent, taken apart for showing."""
        draft = self.draft(m, self.sender(a, m), account=a)
        total = len(draft.recipients)
        if not 1 <= index <= max(total, 1):
            raise SettingsError("index", f"there are {total} recipients to send to; give a number from 1 to {total}")
        out = draft.outgoing(draft.recipients[index - 1], smtputf8=True)
        msg = message_from_bytes(out.data, policy=email.policy.default)
        html, text = msg.get_body(("html",)), msg.get_body(("plain",))
        return {
            "index": index, "total": total, "to": str(msg["To"]), "from": str(msg["From"]),
            "subject": str(msg["Subject"]),
            "headers": [[k, str(v)] for k, v in msg.items() if k.lower() in _PREVIEW_HEADERS],
            "html": html.get_content() if html is not None else None,
            "text": text.get_content() if text is not None else None,
            "attachments": [{"filename": x.get_filename(), "content_type": x.get_content_type(),
                             "size": len(x.get_payload(decode=True) or b"")} for x in msg.iter_attachments()],
            "size": len(out.data), "raw": out.data,
        }

    def send_test(self, a: AccountInput, m: MessageInput, index: int, passphrase: str | None = None) -> dict[str, Any]:
        """Send recipient N's version to the From address."""
        self.ensure_idle()
        transport: Transport
        if a.channel == "gmail":
            account = self.google(passphrase)
            draft = self.draft(m, service.gmail_sender(m.from_address or a.from_address, account.require("api").email),
                               account=a)
            from backend.transports.gmail import GmailTransport

            transport = GmailTransport(account)
        elif a.channel == "microsoft":
            ms = self.microsoft(passphrase)
            ms.require("graph")
            draft = self.draft(m, self._microsoft_sender(m.from_address or a.from_address), account=a)
            from backend.transports.graph import GraphTransport

            transport = GraphTransport(ms)
        else:
            settings, _ = self.smtp_settings(a, passphrase=passphrase)
            draft = self.draft(m, settings.from_address or m.from_address or a.from_address, account=a)
            transport = SmtpTransport(settings)
        index = min(max(index, 1), max(len(draft.recipients), 1))
        original = draft.recipients[index - 1]
        me = type(original)(draft.sender.address, {**original.fields}, original.line)
        out = draft.outgoing(me, smtputf8=a.channel in ("gmail", "microsoft"))
        try:
            transport.open()
            transport.send(Envelope(draft.sender.address, (draft.sender.address,)), out.data)
        finally:
            transport.close()
        return {"to": draft.sender.address, "message_id": out.message_id}

    # -- campaigns -------------------------------------------------------------------------

    def ensure_idle(self) -> None:
        if self.run is not None and self.run.active:
            raise NotNow("a campaign is running; wait for it to finish or cancel it")

    def plan(self, a: AccountInput, draft_for: Callable[[str], service.Draft], *, attach: tuple[str, ...] = (),
             passphrase: str | None = None, sent_copy: str = "auto") -> tuple[service.Draft, plans.Plan]:
        """The draft (made once the sender is known) and how it is sent, for either channel."""
        if a.channel == "gmail":
            account = self.google(passphrase)
            token = account.require("api")
            draft = draft_for(token.email)
            if draft.sender.address.lower() != token.email.lower():  # signed in again as someone else
                raise OAuthError(f"the saved sign-in is for {token.email}, not {draft.sender.address}",
                                 fix=("Sign in again with Google.",))
            return draft, plans.gmail_plan(draft, account, token.email, token.workspace, provider=a.provider,
                                           attach=attach)
        if a.channel == "microsoft":
            ms = self.microsoft(passphrase)
            profile = ms.require("graph")
            draft = draft_for(profile["email"])
            return draft, plans.graph_plan(draft, ms, profile["email"], bool(profile.get("consumer")), attach=attach)
        settings, local = self.smtp_settings(a, passphrase=passphrase)
        imap = self.sent_copy_settings(a, settings, local, sent_copy)
        draft = draft_for(settings.from_address)
        plan = plans.with_sent_copy(plans.smtp_plan(draft, settings, local_inbox=local, attach=attach), imap)
        return draft, plans.with_mailbox(plan, imap or self._mailbox_of(a, settings, local))

    def prepare(self, a: AccountInput, m: MessageInput, options: SendOptions, *, draft: service.Draft | None = None,
                passphrase: str | None = None) -> tuple[service.Draft, plans.Plan]:
        """Everything a new campaign needs, checked: the draft (made here, or the one given; rows
        that cannot be built refused, or left out when asked) and its plan."""
        def draft_for(signed_in: str) -> service.Draft:
            if draft is not None:
                return draft
            sender = service.gmail_sender(m.from_address or a.from_address, signed_in) if a.channel == "gmail" \
                else self._microsoft_sender(m.from_address or a.from_address) if a.channel == "microsoft" \
                else (m.from_address or a.from_address)
            return self.draft(m, sender, account=a)

        draft, plan = self.plan(a, draft_for, attach=m.attach, passphrase=passphrase, sent_copy=options.sent_copy)
        if options.skip_sent_in:
            self._skip_sent(draft, options.skip_sent_in)
        if options.skip_empty:
            service.exclude_empty(draft, options.skip_empty)
        problems = draft.problems()
        if problems and options.skip_problem_rows:
            service.exclude_problem_rows(draft, problems)
        elif problems:
            raise RowProblems(problems)
        if not draft.recipients:
            raise NothingLeft("no recipient is left to send to")
        return draft, self.with_schedule(draft, plans.with_options(plan, options), options.schedule)

    def account_key(self, a: AccountInput) -> str | None:
        """The journal's key of an account (what the daily quota and "already sent" count by);
        None for the local test inbox, or when the settings are not complete yet."""
        if a.channel == "gmail":
            profile = _google().saved_profile()
            return plans.gmail_account_key(profile["email"]) if profile else None
        if a.channel == "microsoft":
            ms = microsoft_profile()
            return plans.microsoft_account_key(ms["email"]) if ms else None
        if a.provider == LOCAL_INBOX:
            return None
        try:
            return plans.smtp_account_key(self.smtp_settings(a, need_password=False)[0])
        except MailerError:
            return None

    def already_sent(self, a: AccountInput, *, days: int = SENT_AGAIN_DAYS) -> dict[str, Any] | None:
        """The newest campaign of the last `days` days that sent this session's list (the same
        addresses) through the same account, or None. A run into the local test inbox is a
        practice run: it never counts."""
        key = self.account_key(a)
        if key is None or self.imported is None or not self.imported.recipients:
            return None
        now = {r.email.lower() for r in self.imported.recipients}
        since = iso(utc_now() - dt.timedelta(days=days))
        for info in self.journal.campaigns():  # newest first
            if info.account != key or info.created < since:
                continue
            if (self.journal.spec(info.id).get("settings") or {}).get("local_inbox"):
                continue
            rows = self.journal.rows(info.id)
            listed = {r.recipient.email.lower() for r in rows}
            meant = {r.recipient.email.lower() for r in rows if r.result.status != "skipped"}
            sent = {r.recipient.email.lower() for r in rows if r.result.status in SENT_STATUSES}
            if sent and now <= listed and meant <= now:
                return {"campaign": info.id, "created": info.created, "account": info.account,
                        "sent": len(sent & now), "total": len(now), "not_yet": len(now - sent)}
        return None

    def _skip_sent(self, draft: service.Draft, cid: str) -> None:
        """Leave out whoever campaign cid already sent to (Send only to those not yet sent)."""
        sent = {r.recipient.email.lower() for r in self.journal.rows(self.campaign_id(cid), SENT_STATUSES)}
        for recipient in [r for r in draft.recipients if r.email.lower() in sent]:
            draft.exclude(recipient, f"not sent: already sent in campaign {cid}")

    def start(self, draft: service.Draft, plan: plans.Plan) -> Run:
        """Send a prepared campaign on a worker thread."""
        with self._lock:
            self.ensure_idle()
            return self._start(Run(draft, plan, self.journal, self.emit, checked=True, deferred_until=plan.due or None,
                                   clock=self.clock))

    def _start(self, run: Run) -> Run:
        run.meter = self.meter(run.plan.account, run.plan.limits.per_day if run.plan.limits else None)
        self.run = run
        self.finished = run
        return run.start()

    def control(self, action: str) -> str:
        """pause, resume or cancel the running campaign."""
        if self.run is None or not self.run.active:
            raise NotNow("no campaign is running")
        return self.run.control_action(action)

    def state(self) -> dict[str, Any]:
        if self.run is None:
            return {"campaign": None, "state": "idle", "total": 0, "counts": {}, "summary": None, "error": None}
        return self.run.snapshot()

    # -- the journal: history, export, resume, follow-up ----------------------------------

    def history(self) -> list[dict[str, Any]]:
        """Past campaigns, newest first (one whose app was killed is 'interrupted'); whether each
        has a mailbox to read bounces and replies from (not a practice run into the local inbox)."""
        out = []
        for c in self.journal.campaigns():
            spec = self.journal.spec(c.id)
            d, practice = campaign_dict(c), bool((spec.get("settings") or {}).get("local_inbox"))
            d["trackable"], d["account_words"] = not practice, "Local test inbox" if practice else c.account
            d["times"] = self.times_of(c.id, spec, c.state)
            out.append(d)
        return out

    def campaign_id(self, given: str) -> str:
        """A campaign id, or 'latest' for the newest."""
        if given != "latest":
            return self.journal.get(given).id
        found = self.journal.campaigns()
        if not found:
            raise NothingLeft("there are no campaigns yet")
        return found[0].id

    def details(self, cid: str, limit: int = 5000) -> dict[str, Any]:
        info = self.journal.get(self.campaign_id(cid))
        return {"campaign": campaign_dict(info), "rows": [r.as_dict() for r in self.results(info.id)[:limit]]}

    def results(self, cid: str) -> list[ResultRow]:
        """A campaign's results: the journal's rows, one per line of its list (invalid, duplicate,
        suppressed and problem rows as skipped with their reason), in list order."""
        rows = [row.result for row in self.journal.rows(self.campaign_id(cid))]
        return sorted(rows, key=lambda r: r.line if r.line is not None else float("inf"))

    def export(self, cid: str, path: str | None = None) -> tuple[str, int]:
        """The results CSV: written to path (atomically), or returned as text (path None)."""
        rows = self.results(cid)
        if path is None:
            return service.results_csv_text(rows), len(rows)
        return str(service.write_results_csv(path, rows)), len(rows)

    def repair_journal(self) -> list[str]:
        """Set a damaged journal aside (new campaigns get a new one) and save what can be read of
        it as results CSVs beside it; what was done, in lines."""
        self.ensure_idle()
        if self._journal_db is not None:
            self._journal_db.close()
            self._journal_db = None
        return repair_journal(self._journal_path).lines()

    def settings_of(self, spec: dict[str, Any]) -> str:
        s = spec.get("settings") or {}
        return "the local test inbox" if s.get("local_inbox") else f"{s.get('host')}:{s.get('port')}"

    def _plan_from_spec(self, draft: service.Draft, spec: dict[str, Any], req: ResumeRequest,
                        passphrase: str | None) -> plans.Plan:
        """The plan of a journaled campaign: the same channel and account as before, or the
        account settings given now when the user chose them."""
        if service.channel_of(spec) == "gmail":
            account = self.google(passphrase)
            token = account.require("api")
            was = (spec.get("gmail") or {}).get("email") or ""
            if token.email.lower() != was.lower():
                raise OAuthError(f"this campaign was sent as {was}, but you are signed in with Google as "
                                 f"{token.email}", fix=(f"Sign in with Google as {was} and resume again.",))
            plan = plans.gmail_plan(draft, account, token.email, token.workspace)
            plan.spec = spec
            return plans.as_before(plan, spec)
        if service.channel_of(spec) == "microsoft":
            ms = self.microsoft(passphrase)
            email, was = ms.require("graph")["email"], (spec.get("microsoft") or {}).get("email") or ""
            if email.lower() != was.lower():
                raise OAuthError(f"this campaign was sent as {was}, but you are signed in with Microsoft as {email}",
                                 category="microsoft_sign_in", fix=(f"Sign in with Microsoft as {was} and resume again.",))
            plan = plans.graph_plan(draft, ms, email, ms.consumer)
            plan.spec = spec
            return plans.as_before(plan, spec)
        if req.account is not None and req.use_current_settings is not False and self._use_current(spec, req):
            settings, local = self.smtp_settings(req.account, passphrase=passphrase)
            fresh = plans.smtp_plan(draft, settings, local_inbox=local)
            spec["settings"] = fresh.spec["settings"]
            self.journal.set_spec(draft.id, {k: v for k, v in spec.items()
                                             if k not in ("attempts_before", "deferred_until")})
            return self._sent_copy_as_before(plans.as_before(dataclasses.replace(fresh, spec=spec), spec), spec,
                                             settings, req.options.sent_copy)
        saved = {k: v for k, v in spec["settings"].items() if k != "local_inbox"}
        if spec["settings"].get("local_inbox"):
            saved.update(host=self.inbox.host, port=self.inbox.start())  # a new port every run
        if saved.get("auth") == "xoauth2":
            saved.update(password="", token_source=self.token_source(saved.get("provider"), saved["host"], passphrase))
        else:
            # The password given now only goes to the server it was given for.
            mine = req.account is not None and (req.account.user, req.account.host) == (saved["user"], saved["host"])
            given = req.account.password if mine and req.account is not None else ""
            saved["password"] = self.password(saved["user"], saved["host"], given, passphrase) if saved.get("user") else ""
        settings = SmtpSettings(**saved).validated()
        plan = plans.smtp_plan(draft, settings, local_inbox=bool(spec["settings"].get("local_inbox")))
        plan.spec = spec  # resuming keeps the campaign's spec as the journal has it
        return self._sent_copy_as_before(plans.as_before(plan, spec), spec, settings, req.options.sent_copy)

    def _use_current(self, spec: dict[str, Any], req: ResumeRequest) -> bool:
        """Whether to resume with the account settings given now: when they differ from the
        campaign's, only if the user said so (else SettingsChanged asks)."""
        assert req.account is not None
        a, s = req.account, spec.get("settings") or {}
        if a.channel != "smtp":
            return False  # a campaign keeps its channel
        if a.provider == LOCAL_INBOX:
            differs, now = not s.get("local_inbox"), "the local test inbox"
        else:
            mine = self.smtp_settings(a, need_password=False)[0]
            now = f"{mine.host}:{mine.port}"
            differs = bool(s.get("local_inbox")) or any(
                getattr(mine, k) != s.get(k) for k in ("host", "port", "security", "user"))
        if not differs:
            return False
        if req.use_current_settings is None:
            raise SettingsChanged(self.settings_of(spec), now)
        return req.use_current_settings

    def resume(self, cid: str, req: ResumeRequest, passphrase: str | None = None) -> Run:
        """Continue an interrupted, paused, stopped or failed campaign with the recipients not
        sent yet; one implementation for every face."""
        with self._lock:
            self.ensure_idle()
            journal = self.journal
            info = journal.get(self.campaign_id(cid))
            cid = info.id
            if info.state == "running":
                raise NotNow(f"campaign {cid} is still running in another window or process")
            if not resumable(info.state, info.counts):
                raise NothingLeft(f"campaign {cid} is {info.state}; nothing is left to send")
            lifts = service.quota_lifts(info.resume_after)
            if lifts and not req.now:
                raise QuotaNotLifted(cid, lifts)
            # Ours from here on (another window or process is refused), and every row is read
            # after the claim: nothing sent meanwhile by another run is sent again.
            journal.claim(cid)
            try:
                return self._resume_claimed(info, req, passphrase)
            except BaseException:
                if journal.get(cid).state == "running":
                    journal.set_state(cid, info.state, info.reason, info.resume_after)  # as it was
                raise

    def _resume_claimed(self, info: Any, req: ResumeRequest, passphrase: str | None) -> Run:
        journal, cid = self.journal, info.id
        uncertain = journal.rows(cid, ["uncertain"])
        if uncertain and req.uncertain == "ask":
            raise UncertainLeft(uncertain)
        if req.uncertain == "resend":
            journal.reset(cid, ["uncertain"])
        elif req.uncertain == "skip":
            journal.skip(cid, "uncertain", "not resent: it may or may not have arrived")
        draft, indices, spec = service.resume_draft(journal, cid)
        if not draft.recipients:  # e.g. the uncertain ones skipped: it is done
            journal.set_state(cid, "finished")
            raise NothingLeft(f"campaign {cid}: nobody is left to send to; it is marked finished", finished=True)
        if req.options.delay_ms is not None:
            draft.delay_ms = req.options.delay_ms
        plan = plans.with_options(self._plan_from_spec(draft, spec, req, passphrase), req.options)
        deferred = service.due_times(spec, info.resume_after if req.now else None)
        return self._start(Run(draft, plan, journal, self.emit, resume=(indices, info.account), clock=self.clock,
                               deferred_until=deferred, attempts_before=spec.get("attempts_before") or {}))

    def resend(self, cid: str, *, include_uncertain: bool = False, account: AccountInput | None = None,
               passphrase: str | None = None) -> Run:
        """A follow-up campaign to a past campaign's failed (and optionally uncertain) recipients."""
        with self._lock:
            self.ensure_idle()
            cid = self.campaign_id(cid)
            statuses = ["failed"] + (["uncertain"] if include_uncertain else [])
            rows = self.journal.rows(cid, statuses)
            spec = self.journal.spec(cid)
            m = spec["message"]
            recipients = [r.recipient for r in rows]
            fields = sorted({k for r in recipients for k in r.fields}) or ["email"]
            imported = ImportResult(recipients, [], [], fields, "email", f"follow-up of {cid}")
            draft = service.make_draft(
                imported, subject=m["subject"], html=m["html"], text=m["text"], from_address=m["from"],
                delay_ms=spec.get("delay_ms", service.DEFAULT_DELAY_MS), reply_to=m.get("reply_to"),
                attach=m.get("attach") or (), attach_column=m.get("attach_column"), attach_dir=m.get("attach_dir"),
                unsubscribe=m.get("unsubscribe") or ())
            draft.attachments += [a for _, a in self.attachments] if m.get("uploaded_attachments") else []
            # Bounced recipients are never failed ones (a bounce came after the server accepted
            # the message), and they are on the suppression list: both are left out, and said so.
            suppressed = service.apply_suppression(draft, self.suppression)
            bounced = len(self.journal.rows(cid, ["bounced"]))
            left_out = {"bounced": bounced, "suppressed": suppressed,
                        "words": f"left out: {bounced} bounced address{'es' if bounced != 1 else ''} and "
                                 f"{suppressed} on the suppression list"}
            if not draft.recipients:
                raise NothingLeft(f"nobody is left to send to in that campaign ({left_out['words']})")
            req = ResumeRequest(account=account, use_current_settings=False)
            plan = self._plan_from_spec(draft, {**spec, "settings": spec.get("settings")}, req, passphrase)
            plan.spec = {k: v for k, v in spec.items() if k not in ("attempts_before", "deferred_until")}
            run = Run(draft, plan, self.journal, self.emit, clock=self.clock)
            run.left_out = left_out
            self.emit({"type": "resend-left-out", "campaign": run.id, "of": cid, **left_out})
            return self._start(run)
