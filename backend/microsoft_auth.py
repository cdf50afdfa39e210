"""Signing in with Microsoft: MSAL for Python as a public client, the saved token cache, refresh
and sign-out.

Two flows, both MSAL's: the authorization code flow with PKCE in the system browser, the answer
caught by a listener of our own on 127.0.0.1 (redirect URI http://localhost:<port>, which an app
registration's "Mobile and desktop applications" platform with http://localhost accepts on any
port), cancellable and given up after five minutes; and the device code flow for a machine
without a browser (a code to enter at microsoft.com/devicelogin on another device).

Permissions (delegated): Mail.Send and User.Read of Microsoft Graph (sendMail, the signed-in
address) and SMTP.Send of Exchange Online (SMTP with XOAUTH2), plus offline_access so the
sign-in lasts. Microsoft issues each access token for one service: the sign-in consents to both
and MSAL renews the other's token from the same refresh token.

The user supplies their own app registration's client id (or one is built in, in
BUILT_IN_CLIENT_ID or $BULK_MAILER_MICROSOFT_CLIENT_ID); a public client has no secret. MSAL's
token cache is kept in the password store of backend.credentials (system keyring, or the
passphrase-encrypted file), without its access tokens (they last an hour and are renewed);
only the address, account type, client id and tenant, which are not secret, are kept in a plain
file so the window can say who is signed in while the store is locked. MSAL's logger is capped
at WARNING: nothing it prints reaches the log.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import os
import re
import threading
import time
import warnings
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

from backend import paths
from backend.credentials import MIN_PASSPHRASE, CredentialsError, PasswordStore
from backend.errors import OAuthError
from backend.google_auth import SIGN_IN_TIMEOUT_S, _Listener, _Quiet, loopback_answer
from backend.microsoft_errors import REGISTER, SIGN_IN_AGAIN, clean, sign_in_error, smtp_refusal

log = logging.getLogger(__name__)
for _name in ("msal", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

AUTHORITY_ENV = "BULK_MAILER_MICROSOFT_AUTHORITY"
GRAPH_BASE_ENV = "BULK_MAILER_MICROSOFT_GRAPH_BASE"
CLIENT_ID_ENV = "BULK_MAILER_MICROSOFT_CLIENT_ID"
BUILT_IN_CLIENT_ID = ""  # a build may set its own app registration's client id here

SCOPE_MAIL_SEND = "https://graph.microsoft.com/Mail.Send"
SCOPE_USER_READ = "https://graph.microsoft.com/User.Read"
SCOPE_SMTP = "https://outlook.office.com/SMTP.Send"
SCOPES = {"graph": [SCOPE_MAIL_SEND, SCOPE_USER_READ], "smtp": [SCOPE_SMTP]}
PURPOSES = tuple(SCOPES)
TENANTS = ("common", "organizations", "consumers")
CONSUMER_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"  # personal Microsoft accounts' tenant id
HTTP_TIMEOUT_S = 30.0
KEY_CACHE = "microsoft:token-cache"
PROFILE_FILE = "microsoft-account.json"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}$")
_NEED_CLIENT_ID = (
    "Register an app in the Microsoft Entra admin center (entra.microsoft.com > App registrations > New "
    "registration), then give its 'Application (client) ID': bulk-mailer microsoft login --client-id ID.",
    REGISTER)


@dataclass(frozen=True)
class Endpoints:
    """Microsoft's sign-in (authority) and Graph addresses, unless the environment says."""

    authority: str = "https://login.microsoftonline.com"
    graph_base: str = "https://graph.microsoft.com"

    @classmethod
    def from_env(cls) -> Endpoints:
        """BULK_MAILER_MICROSOFT_AUTHORITY and _GRAPH_BASE, else Microsoft's."""
        d = cls()
        return cls((os.environ.get(AUTHORITY_ENV) or d.authority).rstrip("/"),
                   (os.environ.get(GRAPH_BASE_ENV) or d.graph_base).rstrip("/"))

    @property
    def microsoft(self) -> bool:
        return self.authority == Endpoints.authority


def check_client_id(client_id: str | None) -> str:
    """The client id given, configured or built in; OAuthError when none is valid."""
    value = (client_id or os.environ.get(CLIENT_ID_ENV) or BUILT_IN_CLIENT_ID or "").strip()
    if not value:
        raise OAuthError("Sign in with Microsoft needs the client id of your app registration",
                         category="microsoft_app", fix=_NEED_CLIENT_ID)
    if not _GUID.match(value):
        raise OAuthError(f"'{clean(value)[:60]}' is not a client id (a GUID such as "
                         "00000000-0000-0000-0000-000000000000)", category="microsoft_app", fix=_NEED_CLIENT_ID)
    return value.lower()


def check_tenant(tenant: str | None) -> str:
    value = (tenant or "common").strip().lower()
    if value in TENANTS or _GUID.match(value) or _DOMAIN.match(value):
        return value
    raise OAuthError(f"'{clean(value)[:60]}' is not a tenant: give common, organizations, consumers, a tenant "
                     "id or a domain such as contoso.onmicrosoft.com", category="microsoft_app")


def _network_error(exc: BaseException, what: str) -> OAuthError:
    return OAuthError(f"could not reach Microsoft while {what} ({type(exc).__name__}: {clean(exc)[:200]})",
                      category="microsoft_sign_in", fix=(
                          "Check that this computer is online and that a firewall or proxy lets the app reach "
                          "login.microsoftonline.com and graph.microsoft.com.", "Then try again."))


def _client_app(client_id: str, tenant: str, endpoints: Endpoints, cache: Any = None) -> Any:
    """MSAL's public client for this app registration and tenant (a local authority in tests)."""
    import msal
    import requests

    try:
        return msal.PublicClientApplication(
            client_id, authority=f"{endpoints.authority}/{tenant}", token_cache=cache, timeout=HTTP_TIMEOUT_S,
            # Microsoft's own authority is validated; one named by the environment is taken as it is.
            validate_authority=endpoints.microsoft, instance_discovery=endpoints.microsoft)
    except requests.RequestException as exc:
        raise _network_error(exc, "finding the sign-in service") from None
    except ValueError as exc:
        raise OAuthError(f"Microsoft's sign-in service for tenant '{tenant}' cannot be used ({clean(exc)[:200]})",
                         category="microsoft_app", fix=("Check --tenant: common, organizations, consumers, or "
                                                        "your organisation's tenant id or domain.",)) from None


def _failed(result: dict[str, Any]) -> OAuthError:
    return sign_in_error(str(result.get("error") or "server_error"), result.get("error_description"),
                         [c for c in result.get("error_codes") or [] if isinstance(c, int)])


def _claims(result: dict[str, Any]) -> dict[str, Any]:
    claims = result.get("id_token_claims")
    if isinstance(claims, dict):
        return claims
    token = result.get("id_token") or ""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}


# -- the sign-in flows --------------------------------------------------------------------


class _Flow:
    """What both flows share: the MSAL app, the cache it fills, and the result."""

    purpose_scopes = SCOPES["graph"]

    def __init__(self, client_id: str, tenant: str, endpoints: Endpoints | None) -> None:
        import msal

        self.client_id, self.tenant = client_id, tenant
        self.endpoints = endpoints or Endpoints.from_env()
        self.cache = msal.SerializableTokenCache()
        self._app: Any = None
        self._cancelled = threading.Event()
        self.url: str | None = None
        self.user_code: str | None = None

    @property
    def app(self) -> Any:
        if self._app is None:
            self._app = _client_app(self.client_id, self.tenant, self.endpoints, self.cache)
        return self._app

    def cancel(self) -> None:
        self._cancelled.set()

    def _cancelled_error(self) -> OAuthError:
        return OAuthError("the sign-in was cancelled in Bulk Mailer", category="microsoft_sign_in",
                          fix=("Start Sign in with Microsoft again when you are ready.",))

    def _finish(self, result: dict[str, Any]) -> SignedIn:
        """The signed-in account from the token answer: its address, type and what it may do."""
        if "access_token" not in result:
            raise _failed(result)
        claims = _claims(result)
        accounts = self.app.get_accounts()
        if not accounts:
            raise OAuthError("Microsoft's answer did not say which account signed in", category="microsoft_sign_in",
                             fix=(SIGN_IN_AGAIN,))
        email = (claims.get("preferred_username") or claims.get("email") or accounts[0].get("username") or "")
        me = _me(self.endpoints, result["access_token"])
        email = str(me.get("mail") or me.get("userPrincipalName") or email).strip()
        if "@" not in email:
            raise OAuthError("Microsoft did not tell the signed-in address", category="microsoft_sign_in",
                             fix=(SIGN_IN_AGAIN,))
        granted = set(str(result.get("scope") or "").split())
        scopes = [s for s in SCOPES["graph"] if s in granted or s.rsplit("/", 1)[-1] in granted]
        smtp = self.app.acquire_token_silent_with_error(SCOPES["smtp"], accounts[0]) or {}
        if "access_token" in smtp:
            scopes.append(SCOPE_SMTP)
        consumer = claims.get("tid") == CONSUMER_TENANT
        return SignedIn(email, consumer, tuple(scopes), self.client_id, self.tenant, self.cache)


@dataclass
class SignedIn:
    """A finished sign-in: who, which kind of account, the permissions, and MSAL's cache."""

    email: str
    consumer: bool
    scopes: tuple[str, ...]
    client_id: str
    tenant: str
    cache: Any


def _me(endpoints: Endpoints, access_token: str) -> dict[str, Any]:
    """Graph's /me (the mailbox's address); {} when it cannot be read (the id token serves)."""
    import requests

    try:
        r = requests.get(f"{endpoints.graph_base}/v1.0/me", headers={"Authorization": f"Bearer {access_token}"},
                         timeout=HTTP_TIMEOUT_S, allow_redirects=False)
        return r.json() if r.status_code == 200 else {}
    except (requests.RequestException, ValueError):
        return {}


class SignIn(_Flow):
    """The authorization code flow with PKCE: start() listens on 127.0.0.1 and opens the system
    browser; wait() returns the SignedIn. cancel() from any thread makes wait() raise."""

    def __init__(self, client_id: str, tenant: str = "common", *, endpoints: Endpoints | None = None,
                 open_browser: Callable[[str], Any] | None = webbrowser.open,
                 timeout_s: float = SIGN_IN_TIMEOUT_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(client_id, tenant, endpoints)
        self._open_browser = open_browser
        self.timeout_s = timeout_s
        self._clock = clock
        self._server: WSGIServer | None = None
        self._flow: dict[str, Any] = {}
        self._answer: dict[str, str] | None = None
        self._answer_lock = threading.Lock()
        self.redirect_uri: str | None = None

    def start(self) -> str:
        self._server = make_server("127.0.0.1", 0, self._wsgi, server_class=_Listener, handler_class=_Quiet)
        self._server.timeout = 0.2
        self.redirect_uri = f"http://localhost:{self._server.server_port}"
        try:
            # Consent to both services at once; the code is redeemed for Graph's scopes. The answer
            # comes in the query of a GET to 127.0.0.1 (form_post would need a page of ours).
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "response_mode", UserWarning)
                self._flow = self.app.initiate_auth_code_flow(SCOPES["graph"] + SCOPES["smtp"],
                                                              redirect_uri=self.redirect_uri, prompt="select_account")
        except Exception:
            self._server.server_close()
            raise
        self.url = self._flow["auth_uri"]
        log.info("Microsoft sign-in started; waiting for the browser on %s", self.redirect_uri)
        if self._open_browser is not None:
            try:
                self._open_browser(self.url)
            except Exception as exc:  # no browser: the address is shown to open by hand
                log.warning("could not open the browser: %s", exc)
        return self.url

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        return loopback_answer(environ, start_response, self._flow.get("state"), "Microsoft", self._keep)

    def _keep(self, got: dict[str, str]) -> None:
        with self._answer_lock:
            if self._answer is None:  # the first answer counts
                self._answer = got

    def wait(self) -> SignedIn:
        if self._server is None:
            self.start()
        server = self._server
        assert server is not None
        deadline = self._clock() + self.timeout_s
        try:
            while self._answer is None:
                if self._cancelled.is_set():
                    raise self._cancelled_error()
                if self._clock() > deadline:
                    raise OAuthError(
                        f"no answer from the browser within {self.timeout_s / 60:g} minutes: the sign-in was not "
                        "completed", category="microsoft_sign_in", fix=(
                            "Start the sign-in again and finish it in the browser within 5 minutes.",
                            "If Microsoft showed an error page (AADSTS...), its number says what is wrong with the "
                            "app registration: " + REGISTER,
                            "On a computer without a browser, use the device code: bulk-mailer microsoft login "
                            "--device-code."))
                server.handle_request()
        finally:
            server.server_close()
        answer = self._answer
        if "error" in answer:
            raise sign_in_error(answer["error"], answer.get("error_description"))
        import requests

        try:
            result = self.app.acquire_token_by_auth_code_flow(self._flow, answer, scopes=SCOPES["graph"])
        except (ValueError, RuntimeError) as exc:  # a state, nonce or flow mismatch: not our answer
            raise OAuthError(f"the browser's answer does not match this sign-in ({clean(exc)[:100]})",
                             category="microsoft_sign_in", fix=(SIGN_IN_AGAIN,)) from None
        except requests.RequestException as exc:
            raise _network_error(exc, "finishing the sign-in") from None
        return self._finish(result)


class DeviceSignIn(_Flow):
    """The device code flow: start() asks Microsoft for a code (shown to the user, with the page
    to enter it on); wait() polls until it is entered, cancelled or expired."""

    def __init__(self, client_id: str, tenant: str = "common", *, endpoints: Endpoints | None = None) -> None:
        super().__init__(client_id, tenant, endpoints)
        self._flow: dict[str, Any] = {}
        self.message = ""

    def start(self) -> str:
        import requests

        try:
            flow = self.app.initiate_device_flow(SCOPES["graph"] + SCOPES["smtp"])
        except requests.RequestException as exc:
            raise _network_error(exc, "asking for a device code") from None
        if "user_code" not in flow:
            raise _failed(flow)
        self._flow = flow
        self.url, self.user_code = flow.get("verification_uri"), flow["user_code"]
        self.message = clean(flow.get("message") or f"Open {self.url} and enter the code {self.user_code}")
        log.info("Microsoft device code sign-in started (code shown to the user)")
        return str(self.url)

    def cancel(self) -> None:
        super().cancel()
        self._flow["expires_at"] = 0  # MSAL's polling stops within a second

    def wait(self) -> SignedIn:
        import requests

        if not self._flow:
            self.start()
        try:
            result = self.app.acquire_token_by_device_flow(self._flow)
        except requests.RequestException as exc:
            raise _network_error(exc, "waiting for the device code") from None
        if self._cancelled.is_set():
            raise self._cancelled_error()
        return self._finish(result)


# -- the signed-in account ----------------------------------------------------------------


def profile_path() -> Path:
    return paths.config_dir() / PROFILE_FILE


def saved_profile() -> dict[str, Any] | None:
    """Who is signed in (address, account type, permissions, client id; nothing secret), or None."""
    try:
        data = json.loads(profile_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("email"), str) else None


def _kept(cache_text: str) -> str:
    """MSAL's cache as kept: without access tokens (an hour's worth; renewed from the refresh
    token), so it stays small enough for every system keyring."""
    data = json.loads(cache_text)
    data.pop("AccessToken", None)
    return json.dumps(data, separators=(",", ":"))


class MicrosoftAccount:
    """The signed-in Microsoft account: MSAL's cache in the password store, tokens renewed here."""

    def __init__(self, store: PasswordStore, passphrase: str | None = None, *,
                 endpoints: Endpoints | None = None) -> None:
        self._store = store
        self._passphrase = passphrase
        self.endpoints = endpoints or Endpoints.from_env()
        self._lock = threading.Lock()
        self._app: Any = None
        self._cache: Any = None
        self._kept_text: str | None = None
        self._profile: dict[str, Any] | None = None

    def check_store(self) -> None:
        """Raise CredentialsError now if the sign-in could not be saved (locked, short passphrase)."""
        if not self._store.needs_passphrase:
            return
        if not self._passphrase:
            raise CredentialsError("enter the passphrase that protects saved passwords and sign-ins", fix=(
                "There is no system keyring here: the Microsoft sign-in is saved encrypted under a passphrase "
                f"(the one for saved passwords, or a new one of at least {MIN_PASSPHRASE} characters).",))
        if len(self._passphrase) < MIN_PASSPHRASE:
            raise CredentialsError(f"choose a passphrase of at least {MIN_PASSPHRASE} characters")
        self._store.load(KEY_CACHE, self._passphrase)

    def save(self, signed: SignedIn) -> None:
        """Keep a new sign-in (replacing any earlier one)."""
        text = _kept(signed.cache.serialize())
        self._store.save(KEY_CACHE, text, self._passphrase)
        profile = {"email": signed.email, "consumer": signed.consumer, "scopes": list(signed.scopes),
                   "client_id": signed.client_id, "tenant": signed.tenant,
                   "signed_in": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        paths.atomic_write(profile_path(), json.dumps(profile).encode("utf-8"))
        with self._lock:
            self._app, self._cache, self._kept_text, self._profile = None, None, text, profile
        log.info("signed in with Microsoft as %s (%s account)", signed.email,
                 "personal" if signed.consumer else "work or school")

    def load(self) -> dict[str, Any]:
        """The profile of the saved sign-in; OAuthError when nobody is signed in."""
        with self._lock:
            if self._app is not None and self._profile is not None:
                return self._profile
        profile = saved_profile()
        text = self._store.load(KEY_CACHE, self._passphrase)
        if not profile or not text:
            raise OAuthError("nobody is signed in with Microsoft", category="microsoft_sign_in", fix=(
                "Sign in with Microsoft first (in the window, or: bulk-mailer microsoft login).",))
        import msal

        cache = msal.SerializableTokenCache()
        try:
            cache.deserialize(text)
        except ValueError:
            raise OAuthError("the saved Microsoft sign-in is damaged", category="microsoft_sign_in",
                             fix=(SIGN_IN_AGAIN,)) from None
        app = _client_app(str(profile.get("client_id")), str(profile.get("tenant") or "common"), self.endpoints, cache)
        with self._lock:
            self._app, self._cache, self._kept_text, self._profile = app, cache, text, profile
        return profile

    @property
    def email(self) -> str:
        return str(self.load()["email"])

    @property
    def consumer(self) -> bool:
        return bool(self.load().get("consumer"))

    def require(self, purpose: str) -> dict[str, Any]:
        """The profile, if the sign-in allows the purpose (graph or smtp); OAuthError otherwise."""
        profile = self.load()
        if not set(SCOPES[purpose]) <= set(profile.get("scopes") or ()):
            what = ("send mail through SMTP (SMTP.Send)" if purpose == "smtp"
                    else "send mail through Microsoft Graph (Mail.Send)")
            raise OAuthError(f"the Microsoft sign-in of {profile['email']} does not allow Bulk Mailer to {what}",
                             category="microsoft_consent", fix=(
                                 "Add that delegated permission to your app registration (API permissions), then "
                                 "sign in with Microsoft again and accept it.",))
        return profile

    def access_token(self, purpose: str, force_refresh: bool = False) -> str:
        """A valid access token for Graph or SMTP, renewed by MSAL (and the cache saved) as needed."""
        import requests

        self.load()
        with self._lock:
            app = self._app
            accounts = app.get_accounts()
            if not accounts:
                raise OAuthError("the saved Microsoft sign-in is damaged", category="microsoft_sign_in",
                                 fix=(SIGN_IN_AGAIN,))
            try:
                result = app.acquire_token_silent_with_error(SCOPES[purpose], accounts[0], force_refresh=force_refresh)
            except requests.RequestException as exc:
                raise _network_error(exc, "renewing the sign-in") from None
            if not result or "access_token" not in result:
                raise _failed(result or {"error": "interaction_required"})
            self._keep()
            return str(result["access_token"])

    def _keep(self) -> None:
        """Save MSAL's cache when its refresh token changed (never just for a new access token)."""
        text = _kept(self._cache.serialize())
        if text == self._kept_text:
            return
        try:
            if self._store.load(KEY_CACHE, self._passphrase) != self._kept_text:
                # Someone signed in again since this run started: theirs stays.
                log.info("the saved Microsoft sign-in changed meanwhile; the renewed one is not saved")
                return
            self._store.save(KEY_CACHE, text, self._passphrase)
            self._kept_text = text
            log.info("renewed the Microsoft sign-in of %s", (self._profile or {}).get("email"))
        except CredentialsError as exc:  # the next run renews again: nothing lost
            log.warning("the renewed Microsoft sign-in could not be saved: %s", exc.message)

    def sign_out(self) -> dict[str, Any]:
        """Forget the sign-in here: the cache (refresh token included) and the profile. Microsoft
        offers public clients no revocation; the user removes the app's access on their account page."""
        profile = saved_profile() or {}
        self._store.delete(KEY_CACHE, self._passphrase)
        profile_path().unlink(missing_ok=True)
        with self._lock:
            self._app = self._cache = self._kept_text = self._profile = None
        log.info("signed out of Microsoft%s", f" ({profile.get('email')})" if profile.get("email") else "")
        consumer = profile.get("consumer")
        page = ("account.live.com/consent/Manage" if consumer else "myapplications.microsoft.com")
        return {"email": profile.get("email"), "revoked": None, "apps_page": page}


class MicrosoftTokenSource:
    """What SMTP's XOAUTH2 login takes (the address and a fresh access token for SMTP.Send), and
    Microsoft's reading of a refused login."""

    provider = "Microsoft"

    def __init__(self, account: MicrosoftAccount) -> None:
        self.account = account

    @property
    def email(self) -> str:
        return str(self.account.require("smtp")["email"])

    def access_token(self, force_refresh: bool = False) -> str:
        self.account.require("smtp")
        return self.account.access_token("smtp", force_refresh)

    @staticmethod
    def refusal(code: int, text: str) -> tuple[str, tuple[str, ...]]:
        return smtp_refusal(code, text, oauth=True)
