"""Sign in with Google and with Microsoft: the use cases of the account's OAuth sign-ins
(started, followed, cancelled, signed out), part of the App.

A mixin of backend.app.App: its methods use the App's state (self.journal, self.store, ...).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from backend.errors import MailerError, OAuthError, internal_error
from backend.inputs import NotNow
from backend.microsoft_auth import KEY_CACHE as MICROSOFT_CACHE
from backend.microsoft_auth import (
    DeviceSignIn,
    MicrosoftAccount,
    check_client_id,
    check_tenant,
)
from backend.microsoft_auth import SignIn as MicrosoftSignIn
from backend.microsoft_auth import saved_profile as microsoft_profile
from backend.presets import (
    gmail_api_limits,
    microsoft_limits,
)

if TYPE_CHECKING:  # loaded when used: a campaign over SMTP needs neither Google nor the local inbox
    from backend.google_auth import GoogleAccount, OAuthClient, SignIn


log = logging.getLogger("backend.app")


def _google() -> Any:
    """backend.google_auth, imported on first use (Google's sign-in and the Gmail API only)."""
    from backend import google_auth

    return google_auth


class SignIns:
    """Sign in with Google and with Microsoft (a part of App)."""

    # -- Sign in with Google ---------------------------------------------------------------

    def google_status(self) -> dict[str, Any]:
        profile = _google().saved_profile()
        scopes = list((profile or {}).get("scopes") or [])
        key, lim = gmail_api_limits(bool((profile or {}).get("workspace")))
        return {"signed_in": profile is not None, "email": (profile or {}).get("email"),
                "workspace": bool((profile or {}).get("workspace")), "smtp": _google().SCOPE_MAIL in scopes,
                "signed_in_at": (profile or {}).get("signed_in"), "locked": self.locked, "profile": profile or {},
                "sign_in": dict(self.sign_in_state), "read": _google().saved_profile(reading=True) is not None,
                "read_email": (_google().saved_profile(reading=True) or {}).get("email"),
                "limits": {"preset": key, "per_day": lim.per_day, "per_minute": lim.per_minute, "note": lim.note}}

    def google_sign_in(self, client_data: bytes, source: str, purpose: str, *, passphrase: str | None = None,
                       open_browser: bool = True) -> str:
        """Start Google's sign-in in the system browser (or not: the face shows the address);
        the sign-in is saved when it completes. Returns the address; google_status follows it
        and wait_sign_in() blocks until it ends."""
        self.ensure_idle()  # a running campaign keeps the sign-in it started with
        client = _google().OAuthClient.parse(client_data, source)
        account = self.google(passphrase, reading=purpose == "read")
        account.check_store()  # the passphrase is checked before the browser opens
        if self._sign_in is not None:
            self._sign_in.cancel()
        import webbrowser

        flow = _google().SignIn(client, purpose, open_browser=(self._open_browser or webbrowser.open) if open_browser else None)
        url = flow.start()
        self._sign_in, self._sign_in_error = flow, None
        self._sign_in_done.clear()
        self.sign_in_state = {"state": "waiting", "url": url, "error": None, "purpose": purpose}
        threading.Thread(target=self._finish_sign_in, args=(flow, client, account, purpose),
                         name="google-sign-in", daemon=True).start()
        return url

    def _finish_sign_in(self, flow: SignIn, client: OAuthClient, account: GoogleAccount, purpose: str) -> None:
        def done() -> dict[str, Any]:
            token, _ = flow.wait()
            account.save(client, token)
            return {"email": token.email, "workspace": token.workspace}

        self._finish(flow, done, "Google", purpose)

    def _finish(self, flow: Any, done: Callable[[], dict[str, Any]], who: str, purpose: str) -> None:
        """A sign-in's end, on its thread: signed in (what done() says), cancelled or failed."""
        error: MailerError | None = None
        try:
            state: dict[str, Any] = {"state": "signed_in", "url": None, "error": None, **done()}
        except MailerError as exc:
            cancelled = "cancelled in Bulk Mailer" in exc.message
            state, error = {"state": "cancelled" if cancelled else "failed", "url": None, "error": exc.describe()}, exc
        except Exception:
            log.exception("%s sign-in failed unexpectedly", who)
            state = {"state": "failed", "url": None,
                     "error": internal_error(f"The {who} sign-in stopped because of an unexpected error.")}
            error = OAuthError(f"the {who} sign-in stopped because of an unexpected error", category="internal_error")
        if self._sign_in is flow:  # a newer sign-in may have replaced this one
            self.sign_in_state, self._sign_in_error = {**state, "purpose": purpose}, error
            self._sign_in_done.set()

    def wait_sign_in(self) -> dict[str, Any]:
        """Block until the sign-in under way ends; its state (raises what made it fail)."""
        while not self._sign_in_done.wait(0.2):
            pass
        if self._sign_in_error is not None:
            raise self._sign_in_error
        return dict(self.sign_in_state)

    def has_google_token(self) -> bool:
        return self.store.has(_google().KEY_TOKEN) or self.store.has(_google().KEY_READ_TOKEN)

    def google_cancel_sign_in(self) -> None:
        if self._sign_in is None or self.sign_in_state.get("state") != "waiting":
            raise NotNow("no Google sign-in is waiting")
        self._sign_in.cancel()

    def google_sign_out(self, passphrase: str | None = None, *, reading_only: bool = False) -> dict[str, Any]:
        """Revoke the Google sign-ins at Google and delete them (and the OAuth client) here: the
        one for reading, and (unless reading_only) the sending one; "read" says what became of the first."""
        self.ensure_idle()
        read = None
        if _google().saved_profile(reading=True) is not None or self.store.has(_google().KEY_READ_TOKEN):
            read = self.google(passphrase, reading=True).sign_out()
        if reading_only or (_google().saved_profile() is None and not self.store.has(_google().KEY_TOKEN)):
            return {**(read or {"email": None, "revoked": None, "problem": None}), "signed_in": False, "read": read}
        result = {**self.google(passphrase).sign_out(), "read": read}
        self.sign_in_state = {"state": "idle", "url": None, "error": None, "purpose": None}
        return result

    # -- Sign in with Microsoft ------------------------------------------------------------

    def microsoft_status(self) -> dict[str, Any]:
        """Who is signed in with Microsoft (readable while the store is locked), what the sign-in
        allows, the limits that apply, and the sign-in under way."""
        profile = microsoft_profile() or {}
        key, lim = microsoft_limits(bool(profile.get("consumer", True)))
        scopes = list(profile.get("scopes") or [])
        return {"signed_in": bool(profile), "email": profile.get("email"), "consumer": bool(profile.get("consumer")),
                "graph": any(s.endswith("/Mail.Send") for s in scopes), "smtp": any(s.endswith("/SMTP.Send") for s in scopes),
                "signed_in_at": profile.get("signed_in"), "locked": self.locked, "profile": profile,
                "provider": key, "sign_in": dict(self.sign_in_state),
                "limits": {"preset": key, "per_day": lim.per_day, "per_minute": lim.per_minute, "note": lim.note}}

    def microsoft_sign_in(self, client_id: str | None = None, tenant: str | None = None, *, device_code: bool = False,
                          passphrase: str | None = None, open_browser: bool = True) -> dict[str, Any]:
        """Start Microsoft's sign-in: in the system browser (or not: the face shows the address),
        or with a device code. Returns {url, user_code, message}; microsoft_status follows it and
        wait_sign_in() blocks until it ends."""
        self.ensure_idle()
        client_id = check_client_id(client_id or (microsoft_profile() or {}).get("client_id"))
        tenant = check_tenant(tenant)
        account = self.microsoft(passphrase)
        account.check_store()  # the passphrase is checked before the browser opens
        if self._sign_in is not None:
            self._sign_in.cancel()
        import webbrowser

        flow: Any = DeviceSignIn(client_id, tenant) if device_code else MicrosoftSignIn(
            client_id, tenant, open_browser=(self._open_browser or webbrowser.open) if open_browser else None)
        url = flow.start()
        self._sign_in, self._sign_in_error = flow, None
        self._sign_in_done.clear()
        started = {"url": url, "user_code": flow.user_code, "message": getattr(flow, "message", "") or None}
        self.sign_in_state = {"state": "waiting", "error": None, "purpose": "microsoft", **started}
        threading.Thread(target=self._finish_microsoft, args=(flow, account), name="microsoft-sign-in",
                         daemon=True).start()
        return started

    def _finish_microsoft(self, flow: Any, account: MicrosoftAccount) -> None:
        def done() -> dict[str, Any]:
            signed = flow.wait()
            account.save(signed)
            return {"email": signed.email, "consumer": signed.consumer}

        self._finish(flow, done, "Microsoft", "microsoft")

    def has_microsoft_token(self) -> bool:
        return self.store.has(MICROSOFT_CACHE)

    def microsoft_cancel_sign_in(self) -> None:
        self.google_cancel_sign_in()  # one sign-in waits at a time, Google's or Microsoft's

    def microsoft_sign_out(self, passphrase: str | None = None) -> dict[str, Any]:
        """Delete the Microsoft sign-in (MSAL's cache, refresh token included) here."""
        self.ensure_idle()
        if microsoft_profile() is None and not self.store.has(MICROSOFT_CACHE):
            return {"email": None, "revoked": None, "signed_in": False, "apps_page": None}
        result = self.microsoft(passphrase).sign_out()
        self.sign_in_state = {"state": "idle", "url": None, "error": None, "purpose": None}
        return result
