"""Signing in with Google: the installed-app OAuth2 flow, the saved token, refresh and sign-out.

The flow is Google's installed-app flow as google-auth-oauthlib builds it (PKCE with S256, a
``state`` value, ``access_type=offline``), with the redirect caught by a listener of our own on
127.0.0.1: unlike ``InstalledAppFlow.run_local_server`` it can be cancelled, gives up after
five minutes, ignores stray requests (a favicon, a stale tab) and answers the browser with a
page that says what happened. The page opens in the system browser (Google refuses sign-in
inside embedded web views), never in the app's window.

Scopes: ``gmail.send`` for the Gmail API, plus ``openid`` and ``userinfo.email`` so the token
answer carries the signed-in address (users.getProfile would need a read scope, which
gmail.send does not give). SMTP with XOAUTH2 needs ``https://mail.google.com/`` (full mail
access: Google accepts nothing narrower for SMTP), asked for only when that path is chosen.

Reading bounces and replies through the Gmail API (purpose "read") needs ``gmail.readonly``, a
restricted scope: a public app may ask for it only after Google's verification and a yearly
security assessment, so it is asked for only with the user's own OAuth client, only when they
choose it, and in a sign-in of its own: its token is kept apart from the sending one (other
keys, another profile file), never replaces it, and signing out removes both.

The user's own OAuth client (the JSON from Google Cloud Console) and the token are kept in the
password store of backend.credentials (system keyring, or the passphrase-encrypted file); only
the address and the granted scopes, which are not secret, are kept in a plain file so the
window can say who is signed in before the store is unlocked. Nothing secret is logged: the
loggers of requests-oauthlib and oauthlib, which print token bodies at DEBUG, are capped at
WARNING here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import html
import json
import logging
import os
import threading
import time
import urllib.parse
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from backend import paths
from backend.credentials import MIN_PASSPHRASE, CredentialsError, PasswordStore
from backend.errors import OAuthError
from backend.redact import Redactor

log = logging.getLogger(__name__)

# Token bodies, client secrets and codes are printed by these at DEBUG; ours never are.
for _name in ("requests_oauthlib", "oauthlib", "google_auth_oauthlib", "google.auth", "google.oauth2",
              "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

AUTH_URI_ENV = "BULK_MAILER_GOOGLE_AUTH_URI"
TOKEN_URI_ENV = "BULK_MAILER_GOOGLE_TOKEN_URI"  # noqa: S105 (a variable name)
API_BASE_ENV = "BULK_MAILER_GOOGLE_API_BASE"
REVOKE_URI_ENV = "BULK_MAILER_GOOGLE_REVOKE_URI"

SCOPE_SEND = "https://www.googleapis.com/auth/gmail.send"
SCOPE_MAIL = "https://mail.google.com/"  # what Google requires for SMTP XOAUTH2
SCOPE_READ = "https://www.googleapis.com/auth/gmail.readonly"  # restricted: only with the user's own client
SCOPE_EMAIL = "https://www.googleapis.com/auth/userinfo.email"
IDENTITY_SCOPES = ("openid", SCOPE_EMAIL)
# the Gmail API (send only), SMTP with XOAUTH2 (full mail access), reading bounces and replies (read only)
PURPOSES = ("api", "smtp", "read")
SIGN_IN_TIMEOUT_S = 300.0
HTTP_TIMEOUT_S = 30.0
KEY_CLIENT = "google:oauth-client"
KEY_TOKEN = "google:oauth-token"  # noqa: S105 (the name it is saved under)
PROFILE_FILE = "google-account.json"
# The sign-in for reading, kept apart: it never replaces the sending one.
KEY_READ_CLIENT = "google:oauth-client-read"
KEY_READ_TOKEN = "google:oauth-token-read"  # noqa: S105 (the name it is saved under)
READ_PROFILE_FILE = "google-read.json"
CONSUMER_DOMAINS = ("gmail.com", "googlemail.com")
_ISSUERS = ("https://accounts.google.com", "accounts.google.com")

_FIX_SIGN_IN_AGAIN = "Sign in with Google again (in the window, or: bulk-mailer gmail login)."
FIX_READ = (
    "Allow reading with your own OAuth client (a separate sign-in, read only): bulk-mailer gmail login --read "
    "--client-secrets FILE.",
    "Or read over IMAP with an app password: bulk-mailer track ID --provider gmail --user you@gmail.com, with "
    "the app password in $BULK_MAILER_IMAP_PASSWORD (see docs/gmail.md).",
)
_FIX_DESKTOP_CLIENT = (
    "In Google Cloud Console > APIs & Services > Credentials, create an OAuth client ID of "
    "application type 'Desktop app', download its JSON and import that file."
)


@dataclass(frozen=True)
class Endpoints:
    """Where Google's OAuth and Gmail endpoints are: Google's own unless the environment says."""

    auth_uri: str = "https://accounts.google.com/o/oauth2/auth"
    token_uri: str = "https://oauth2.googleapis.com/token"  # noqa: S105 (an address)
    revoke_uri: str = "https://oauth2.googleapis.com/revoke"
    api_base: str = "https://gmail.googleapis.com"

    @classmethod
    def from_env(cls) -> Endpoints:
        """BULK_MAILER_GOOGLE_AUTH_URI, _TOKEN_URI, _REVOKE_URI and _API_BASE, else Google's."""
        d = cls()
        return cls(
            auth_uri=os.environ.get(AUTH_URI_ENV) or d.auth_uri,
            token_uri=os.environ.get(TOKEN_URI_ENV) or d.token_uri,
            revoke_uri=os.environ.get(REVOKE_URI_ENV) or d.revoke_uri,
            api_base=(os.environ.get(API_BASE_ENV) or d.api_base).rstrip("/"),
        )


def scopes_for(purpose: str) -> list[str]:
    """The scopes asked for: the address, plus sending (API), full mail access (SMTP) or
    reading only (read)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    return [*IDENTITY_SCOPES, {"api": SCOPE_SEND, "smtp": SCOPE_MAIL, "read": SCOPE_READ}[purpose]]


def allows(scopes: tuple[str, ...] | list[str], purpose: str) -> bool:
    """Whether granted scopes cover a purpose (full mail access covers the others too)."""
    return (SCOPE_MAIL in scopes or (purpose == "api" and SCOPE_SEND in scopes)
            or (purpose == "read" and SCOPE_READ in scopes))


# -- the OAuth client ---------------------------------------------------------------------


@dataclass(frozen=True)
class OAuthClient:
    """The user's own OAuth client (Desktop app) from Google Cloud Console."""

    client_id: str
    client_secret: str = field(repr=False)
    project_id: str | None = None

    @classmethod
    def parse(cls, data: bytes | str, source: str = "the client file") -> OAuthClient:
        """Read the JSON Google Cloud Console downloads; OAuthError saying what is wrong."""
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise OAuthError(f"{source} is not an OAuth client file (it is not JSON)", fix=(
                _FIX_DESKTOP_CLIENT,)) from None
        if not isinstance(doc, dict):
            raise OAuthError(f"{source} is not an OAuth client file", fix=(_FIX_DESKTOP_CLIENT,))
        if "web" in doc and "installed" not in doc:
            raise OAuthError(
                f"{source} is for a 'Web application' client: Google would refuse the sign-in "
                "with redirect_uri_mismatch, since this app receives the answer on 127.0.0.1",
                fix=(_FIX_DESKTOP_CLIENT,))
        inner = doc.get("installed")
        if not isinstance(inner, dict):
            raise OAuthError(f"{source} has no 'installed' (Desktop app) client in it", fix=(_FIX_DESKTOP_CLIENT,))
        client_id = inner.get("client_id")
        secret = inner.get("client_secret")
        for name, value in (("client_id", client_id), ("client_secret", secret)):
            if not isinstance(value, str) or not value.strip() or any(c in value for c in "\r\n\0"):
                raise OAuthError(f"{source}: '{name}' is missing or not valid", fix=(_FIX_DESKTOP_CLIENT,))
        project = inner.get("project_id")
        return cls(client_id.strip(), secret.strip(), project if isinstance(project, str) else None)

    def config(self, endpoints: Endpoints) -> dict[str, Any]:
        """The client-secrets shape google-auth-oauthlib takes, with our endpoints.

        The endpoints come from the environment (or are Google's), never from the imported
        file: a file cannot send the user's sign-in anywhere else.
        """
        return {"installed": {
            "client_id": self.client_id, "client_secret": self.client_secret,
            "auth_uri": endpoints.auth_uri, "token_uri": endpoints.token_uri,
            "redirect_uris": ["http://127.0.0.1"],
        }}

    def to_json(self) -> str:
        return json.dumps({"client_id": self.client_id, "client_secret": self.client_secret,
                           "project_id": self.project_id})

    @classmethod
    def from_json(cls, text: str) -> OAuthClient:
        d = json.loads(text)
        return cls(d["client_id"], d["client_secret"], d.get("project_id"))


# -- the token ----------------------------------------------------------------------------


@dataclass
class GoogleToken:
    """A signed-in account: its address, the granted scopes and the tokens (never logged)."""

    email: str
    scopes: tuple[str, ...]
    refresh_token: str = field(repr=False)
    access_token: str | None = field(default=None, repr=False)
    expiry: str | None = None  # ISO, UTC
    workspace: bool = False  # a Google Workspace account (the id token names its domain)

    def to_json(self) -> str:
        return json.dumps({"email": self.email, "scopes": list(self.scopes), "refresh_token": self.refresh_token,
                           "access_token": self.access_token, "expiry": self.expiry,
                           "workspace": self.workspace})

    @classmethod
    def from_json(cls, text: str) -> GoogleToken:
        d = json.loads(text)
        return cls(d["email"], tuple(d.get("scopes") or ()), d["refresh_token"], d.get("access_token"),
                   d.get("expiry"), bool(d.get("workspace")))

    def expired(self, now: dt.datetime | None = None, margin_s: float = 120.0) -> bool:
        """True when there is no access token or it ends within the margin."""
        if not self.access_token or not self.expiry:
            return True
        now = now or dt.datetime.now(dt.UTC)
        return dt.datetime.fromisoformat(self.expiry) - now < dt.timedelta(seconds=margin_s)


def _id_token_claims(id_token: str | None, client_id: str) -> dict[str, Any]:
    """The claims of the id token received from the token endpoint.

    It came straight from the token endpoint over a verified TLS connection, which OpenID
    Connect Core 3.1.3.7 accepts in place of checking its signature; the audience is checked.
    """
    if not id_token:
        raise OAuthError("Google's answer did not say which account signed in (no id token)",
                         fix=("Sign in again and allow Bulk Mailer to see your email address.",))
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        raise OAuthError("Google's answer carried an id token that cannot be read") from None
    if not isinstance(claims, dict) or claims.get("aud") != client_id or claims.get("iss") not in _ISSUERS:
        raise OAuthError("Google's answer carried an id token for another app")
    if not isinstance(claims.get("email"), str) or claims.get("email_verified") is False:
        raise OAuthError("Google did not tell the signed-in address", fix=(
            "Sign in again and allow Bulk Mailer to see your email address.",))
    return claims


# -- classifying failures -----------------------------------------------------------------

_TOKEN_ERRORS: dict[str, tuple[str, tuple[str, ...]]] = {
    "invalid_client": (
        "Google does not accept this OAuth client (invalid_client): it was deleted, or its "
        "secret was changed",
        ("Download the client's JSON again from Google Cloud Console > APIs & Services > "
         "Credentials and import it (Sign in with Google, or gmail login --client-secrets).",
         _FIX_DESKTOP_CLIENT),
    ),
    "redirect_uri_mismatch": (
        "Google refused the address the sign-in returns to (redirect_uri_mismatch)",
        (_FIX_DESKTOP_CLIENT,
         "A 'Web application' client cannot be used: its redirect addresses do not include "
         "this computer's 127.0.0.1."),
    ),
    "invalid_grant": (
        "Google no longer accepts this sign-in (invalid_grant): it was revoked, expired, or "
        "the password of the account was changed",
        (_FIX_SIGN_IN_AGAIN,
         "If the Cloud project's consent screen is in 'Testing', Google ends sign-ins after 7 "
         "days: publish the app (or sign in again each week)."),
    ),
    "access_denied": (
        "the sign-in was cancelled or access was denied in the browser",
        ("Sign in again and click Allow on Google's page, with the box to send email on your "
         "behalf ticked.",
         "If Google says the app is not verified or access is blocked, add your address as a test "
         "user on the OAuth consent screen of your Cloud project."),
    ),
    "unauthorized_client": (
        "this OAuth client may not be used for this sign-in (unauthorized_client)",
        (_FIX_DESKTOP_CLIENT,),
    ),
    "invalid_scope": (
        "Google refused the permissions asked for (invalid_scope)",
        ("Enable the Gmail API in your Cloud project (APIs & Services > Library > Gmail API) and "
         "sign in again.",),
    ),
}


def oauth_error(code: str, description: str | None = None) -> OAuthError:
    """An OAuthError for an OAuth error code (RFC 6749), with the fix in plain words."""
    known = _TOKEN_ERRORS.get(code)
    detail = f" ({_clean(description)})" if description else ""
    if known is None:
        return OAuthError(f"Google sign-in failed: {_clean(code)}{detail}", fix=(_FIX_SIGN_IN_AGAIN,))
    text, fix = known
    return OAuthError(text + detail, fix=fix)


def _clean(text: object) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())[:300]


def google_error(response: Any) -> tuple[str, set[str]]:
    """The error message and the reasons of a Google API error body (JSON), cleaned for display."""
    try:
        err = response.json().get("error")
    except (ValueError, AttributeError):
        return _clean(response.text or "")[:300], set()
    if isinstance(err, str):  # an OAuth-style {"error": "invalid_token"}
        return _clean(err), {err.lower()}
    if not isinstance(err, dict):
        return "", set()
    reasons = {str(e.get("reason", "")).lower() for e in err.get("errors") or [] if isinstance(e, dict)}
    reasons |= {str(d.get("reason", "")).lower() for d in err.get("details") or [] if isinstance(d, dict)}
    if err.get("status"):
        reasons.add(str(err["status"]).lower())
    reasons.discard("")
    return _clean(err.get("message") or "")[:300], reasons


def _http_session() -> Any:
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = "bulk-mailer"
    return session


def _network_error(exc: BaseException, what: str) -> OAuthError:
    return OAuthError(f"could not reach Google while {what} ({type(exc).__name__}: {_clean(exc)[:200]})", fix=(
        "Check that this computer is online and that a firewall or proxy lets the app reach Google.",
        "Then try again.",
    ))


# -- the sign-in flow ---------------------------------------------------------------------


class _Quiet(WSGIRequestHandler):
    timeout = 5  # a connection that says nothing must not hold up the wait (or its cancel)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        # The request line holds the authorization code: never written anywhere.
        pass


class _Listener(ThreadingMixIn, WSGIServer):
    """Each connection on a thread of its own: one that dribbles bytes cannot hold up the wait,
    its 5-minute limit or its cancel."""

    allow_reuse_address = False  # the port is ours alone while we wait
    daemon_threads = True
    block_on_close = False


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Bulk Mailer</title></head>
<body style="font-family:sans-serif;max-width:36em;margin:3em auto"><h1>{title}</h1><p>{text}</p></body></html>"""


def loopback_answer(environ: dict[str, Any], start_response: Callable[..., Any], state: str | None, who: str,
                    keep: Callable[[dict[str, str]], None]) -> list[bytes]:
    """A sign-in's redirect back to 127.0.0.1 (Google's or Microsoft's): keep(answer) when it is
    the answer of this sign-in (its state, a code or an error), and a page saying what happened."""
    got = {k: v[0] for k, v in urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).items() if v}
    if environ.get("PATH_INFO", "/") != "/" or got.get("state") != state or not ("code" in got or "error" in got):
        # A favicon, a stale tab, or a forged answer: not ours, keep waiting.
        title, text, status = "Not this sign-in", ("This page does not belong to the sign-in that "
                                                   "Bulk Mailer is waiting for."), "400 Bad Request"
    else:
        keep(got)
        if "code" in got:
            title, text, status = "Signed in", "You can close this tab and go back to Bulk Mailer.", "200 OK"
        else:
            title, text, status = "Not signed in", (f"{who} answered: " + got["error"]
                                                    + ". Go back to Bulk Mailer for what to do."), "200 OK"
    body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode("utf-8")
    start_response(status, [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer")])
    return [body]


class SignIn:
    """One run of the installed-app flow: start() opens the browser, wait() returns the token.

    open_browser is webbrowser.open in the app (tests pass a function that plays the browser);
    cancel() from any thread makes wait() raise OAuthError at once.
    """

    def __init__(self, client: OAuthClient, purpose: str = "api", *, endpoints: Endpoints | None = None,
                 open_browser: Callable[[str], Any] | None = webbrowser.open,
                 timeout_s: float = SIGN_IN_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.purpose = purpose
        self.scopes = scopes_for(purpose)
        self.endpoints = endpoints or Endpoints.from_env()
        self._open_browser = open_browser
        self.timeout_s = timeout_s
        self._clock = clock
        self._cancelled = threading.Event()
        self._server: WSGIServer | None = None
        self._flow: Any = None
        self._state = ""
        self._answer: dict[str, str] | None = None
        self._answer_lock = threading.Lock()
        self.url: str | None = None
        self.redirect_uri: str | None = None

    def start(self) -> str:
        """Listen on 127.0.0.1, build the authorization URL, open the browser; return the URL."""
        from google_auth_oauthlib.flow import InstalledAppFlow

        self._server = make_server("127.0.0.1", 0, self._app, server_class=_Listener, handler_class=_Quiet)
        self._server.timeout = 0.2
        self.redirect_uri = f"http://127.0.0.1:{self._server.server_port}/"
        self._flow = InstalledAppFlow.from_client_config(
            self.client.config(self.endpoints), scopes=self.scopes, redirect_uri=self.redirect_uri)
        url, self._state = self._flow.authorization_url(access_type="offline", prompt="consent")
        self.url = url
        log.info("Google sign-in started; waiting for the browser on %s", self.redirect_uri)
        if self._open_browser is not None:
            try:
                self._open_browser(url)
            except Exception as exc:  # no browser: the URL is shown to open by hand
                log.warning("could not open the browser: %s", exc)
        return url

    def cancel(self) -> None:
        self._cancelled.set()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        return loopback_answer(environ, start_response, self._state, "Google", self._keep)

    def _keep(self, got: dict[str, str]) -> None:
        with self._answer_lock:
            if self._answer is None:  # the first answer counts
                self._answer = got

    def wait(self) -> tuple[GoogleToken, Any]:
        """Wait for the browser's answer, then swap the code for tokens: (token, id claims)."""
        if self._server is None:
            self.start()
        server = self._server
        assert server is not None
        deadline = self._clock() + self.timeout_s
        try:
            while self._answer is None:
                if self._cancelled.is_set():
                    raise OAuthError("the sign-in was cancelled in Bulk Mailer", fix=(
                        "Start Sign in with Google again when you are ready.",))
                if self._clock() > deadline:
                    minutes = self.timeout_s / 60
                    raise OAuthError(
                        f"no answer from the browser within {minutes:g} minute{'s' if minutes != 1 else ''}: "
                        "the sign-in was not completed", fix=(
                            "Start the sign-in again and finish it in the browser within 5 minutes.",
                            "If Google showed an error page instead of asking for permission: "
                            "'redirect_uri_mismatch' means the client is not a Desktop app client, "
                            "'invalid_client' that it was deleted or mistyped. " + _FIX_DESKTOP_CLIENT,
                            "If the browser did not open, open the address shown by Bulk Mailer by hand "
                            "in a browser on this computer."))
                server.handle_request()
        finally:
            server.server_close()
        answer = self._answer
        if "error" in answer:
            raise oauth_error(answer["error"], answer.get("error_description"))
        return self._exchange(answer["code"])

    def _exchange(self, code: str) -> tuple[GoogleToken, Any]:
        from oauthlib.oauth2.rfc6749.errors import OAuth2Error
        from requests import RequestException

        try:
            try:
                token = self._flow.fetch_token(code=code, timeout=HTTP_TIMEOUT_S)
            except Warning as changed:
                # Granular consent: Google may grant fewer scopes than asked; judged below.
                token = getattr(changed, "token", None)
                if token is None:
                    raise
        except OAuth2Error as exc:
            raise oauth_error(exc.error or "server_error", exc.description) from None
        except RequestException as exc:
            raise _network_error(exc, "finishing the sign-in") from None
        return token_from_response(dict(token), self.client, self.purpose)


def token_from_response(token: dict[str, Any], client: OAuthClient, purpose: str) -> tuple[GoogleToken, Any]:
    """A GoogleToken from the token endpoint's answer; OAuthError if it lacks what we need."""
    granted = token.get("scope") or []
    scopes = tuple(granted.split() if isinstance(granted, str) else granted)
    if not allows(scopes, purpose):
        what = {"api": "send email on your behalf", "read": "view your email messages (to read bounces and replies)",
                }.get(purpose, "read, compose, send and delete your email (needed for SMTP)")
        raise OAuthError(f"the permission to {what} was not granted", fix=(
            "Sign in again and tick the box next to that permission on Google's page.",))
    refresh = token.get("refresh_token")
    if not refresh:
        raise OAuthError("Google gave no refresh token, so the sign-in would end within an hour",
                         fix=("Remove Bulk Mailer at myaccount.google.com/permissions, then sign in again.",))
    claims = _id_token_claims(token.get("id_token"), client.client_id)
    expires = token.get("expires_in")
    expiry = None
    if isinstance(expires, int | float):
        expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=float(expires))).isoformat(timespec="seconds")
    email = claims["email"]
    workspace = bool(claims.get("hd")) or email.rpartition("@")[2].lower() not in CONSUMER_DOMAINS
    return GoogleToken(email, scopes, refresh, token.get("access_token"), expiry, workspace), claims


# -- the signed-in account ----------------------------------------------------------------


def profile_path(reading: bool = False) -> Path:
    return paths.config_dir() / (READ_PROFILE_FILE if reading else PROFILE_FILE)


def saved_profile(reading: bool = False) -> dict[str, Any] | None:
    """Who is signed in (address, scopes; nothing secret), or None: readable while locked.
    reading: the sign-in for reading bounces and replies, not the sending one."""
    try:
        data = json.loads(profile_path(reading).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("email"), str) else None


class GoogleAccount:
    """The signed-in Google account: client and token in the password store, refreshed here.

    reading=True is the separate sign-in for reading bounces and replies (gmail.readonly): its
    own keys in the store and its own profile file."""

    def __init__(self, store: PasswordStore, passphrase: str | None = None, *,
                 endpoints: Endpoints | None = None, session: Any = None, reading: bool = False) -> None:
        self._store = store
        self.reading = reading
        self.key_token, self.key_client = (KEY_READ_TOKEN, KEY_READ_CLIENT) if reading else (KEY_TOKEN, KEY_CLIENT)
        self._passphrase = passphrase
        self.endpoints = endpoints or Endpoints.from_env()
        self._session = session or _http_session()
        self._lock = threading.Lock()
        self._token: GoogleToken | None = None
        self._client: OAuthClient | None = None

    # -- the store ---------------------------------------------------------------------

    def check_store(self) -> None:
        """Raise CredentialsError now if the token could not be saved (locked, short passphrase)."""
        if not self._store.needs_passphrase:
            return
        if not self._passphrase:
            raise CredentialsError("enter the passphrase that protects saved passwords and sign-ins", fix=(
                "There is no system keyring here: the Google sign-in is saved encrypted under a "
                "passphrase (the one for saved passwords, or a new one of at least "
                f"{MIN_PASSPHRASE} characters).",))
        if len(self._passphrase) < MIN_PASSPHRASE:
            raise CredentialsError(f"choose a passphrase of at least {MIN_PASSPHRASE} characters")
        self._store.load(self.key_token, self._passphrase)  # a wrong passphrase fails here, before the browser

    def save(self, client: OAuthClient, token: GoogleToken) -> None:
        """Keep a new sign-in (replacing any earlier one)."""
        self._store.save(self.key_client, client.to_json(), self._passphrase)
        self._store.save(self.key_token, token.to_json(), self._passphrase)
        with self._lock:
            self._client, self._token = client, token
        paths.atomic_write(profile_path(self.reading), json.dumps({
            "email": token.email, "scopes": list(token.scopes), "workspace": token.workspace,
            "client_id": client.client_id,
            "signed_in": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}).encode("utf-8"))
        log.info("signed in with Google as %s (scopes: %s)", token.email, " ".join(token.scopes))

    def load(self) -> GoogleToken:
        """The saved token; OAuthError when nobody is signed in, CredentialsError when locked."""
        with self._lock:
            if self._token is not None:
                return self._token
        raw_token = self._store.load(self.key_token, self._passphrase)
        raw_client = self._store.load(self.key_client, self._passphrase)
        if (not raw_token or not raw_client) and self.reading:
            raise OAuthError("reading bounces and replies through the Gmail API is not allowed: there is no "
                             "Google sign-in for reading", fix=FIX_READ)
        if not raw_token or not raw_client:
            raise OAuthError("nobody is signed in with Google", fix=(
                "Sign in with Google first (in the window, or: bulk-mailer gmail login --client-secrets FILE).",))
        try:
            token, client = GoogleToken.from_json(raw_token), OAuthClient.from_json(raw_client)
        except (ValueError, KeyError, TypeError):
            raise OAuthError("the saved Google sign-in is damaged", fix=(_FIX_SIGN_IN_AGAIN,)) from None
        with self._lock:
            self._token, self._client = token, client
        return token

    @property
    def email(self) -> str:
        return self.load().email

    def require(self, purpose: str) -> GoogleToken:
        """The token, if it allows the purpose; OAuthError with the fix otherwise."""
        token = self.load()
        if not allows(token.scopes, purpose):
            if purpose == "smtp":
                raise OAuthError(f"{token.email} signed in for the Gmail API only (permission to send), "
                                 "which SMTP does not accept", fix=(
                                     "Sign in again for SMTP (the window's SMTP sign-in, or: bulk-mailer "
                                     "gmail login --smtp): Google requires full mail access for SMTP.",
                                     "Or send through the Gmail API, which needs only permission to send."))
            if purpose == "read":
                raise OAuthError(f"the sign-in of {token.email} does not allow reading mail", fix=FIX_READ)
            raise OAuthError(f"the sign-in of {token.email} does not allow sending", fix=(_FIX_SIGN_IN_AGAIN,))
        return token

    # -- tokens ------------------------------------------------------------------------

    def access_token(self, force_refresh: bool = False) -> str:
        """A valid access token, refreshed (and saved) when it ends within two minutes."""
        token = self.load()
        with self._lock:
            if force_refresh or token.expired():
                self._refresh(token)
            assert token.access_token is not None
            return token.access_token

    def _refresh(self, token: GoogleToken) -> None:
        import google.auth.exceptions
        import google.auth.transport.requests
        import google.oauth2.credentials

        client = self._client
        assert client is not None
        creds = google.oauth2.credentials.Credentials(
            None, refresh_token=token.refresh_token, token_uri=self.endpoints.token_uri,
            client_id=client.client_id, client_secret=client.client_secret)
        try:
            creds.refresh(google.auth.transport.requests.Request(self._session))
        except google.auth.exceptions.RefreshError as exc:
            data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
            code = data.get("error") if isinstance(data.get("error"), str) else None
            if code is None:
                text = str(exc.args[0]) if exc.args else ""
                code = text.split(":", 1)[0].strip() if ":" in text else "server_error"
            # Google's words may echo what it was sent: no token or client secret past here.
            redact = Redactor(tokens=(token.refresh_token, token.access_token or "", client.client_secret or ""))
            description = data.get("error_description")
            error = oauth_error(redact(str(code)), redact(str(description)) if description else None)
            if self.reading:  # the sign-in to do again is the one for reading
                raise OAuthError(error.message, fix=FIX_READ) from None
            raise error from None
        except google.auth.exceptions.TransportError as exc:
            raise _network_error(exc, "renewing the sign-in") from None
        token.access_token = creds.token
        if creds.expiry is not None:
            token.expiry = creds.expiry.replace(tzinfo=dt.UTC).isoformat(timespec="seconds")
        log.info("renewed the Google access token of %s", token.email)
        try:
            saved = self._store.load(self.key_token, self._passphrase)
            if saved and GoogleToken.from_json(saved).refresh_token != token.refresh_token:
                # Someone signed in again (maybe as another account) since this run started:
                # the renewed token serves this run only and must not overwrite theirs.
                log.info("the saved Google sign-in changed meanwhile; the renewed token is not saved")
                return
            self._store.save(self.key_token, token.to_json(), self._passphrase)
        except (ValueError, KeyError, TypeError):
            log.warning("the saved Google sign-in is damaged; the renewed token is not saved")
        except CredentialsError as exc:  # the next run refreshes again: nothing lost
            log.warning("the renewed Google token could not be saved: %s", exc.message)

    # -- signing out -------------------------------------------------------------------

    def sign_out(self) -> dict[str, Any]:
        """Revoke the token at Google, then delete it and the client here; says what happened."""
        email = None
        revoked: bool | None = None
        problem = None
        try:
            token = self.load()
        except OAuthError:
            token = None
        if token is not None:
            email = token.email
            try:
                r = self._session.post(self.endpoints.revoke_uri, data={"token": token.refresh_token},
                                       headers={"Content-Type": "application/x-www-form-urlencoded"},
                                       timeout=HTTP_TIMEOUT_S)
                # 400 invalid_token: it was already revoked or expired; either way it is dead.
                revoked = r.status_code == 200 or (r.status_code == 400 and "invalid_token" in r.text)
                if not revoked:
                    problem = f"Google answered HTTP {r.status_code} to the revocation"
            except Exception as exc:
                revoked, problem = False, f"could not reach Google to revoke the sign-in ({type(exc).__name__})"
        for key in (self.key_token, self.key_client):
            self._store.delete(key, self._passphrase)
        profile_path(self.reading).unlink(missing_ok=True)
        with self._lock:
            self._token = self._client = None
        log.info("signed out of Google%s%s; revoked: %s", " (reading)" if self.reading else "",
                 f" ({email})" if email else "", revoked)
        return {"email": email, "revoked": revoked, "problem": problem}


class TokenSource:
    """What SMTP's XOAUTH2 login needs: the address and a fresh access token."""

    def __init__(self, account: GoogleAccount, purpose: str = "smtp") -> None:
        self.account = account
        self.purpose = purpose

    @property
    def email(self) -> str:
        return self.account.require(self.purpose).email

    def access_token(self, force_refresh: bool = False) -> str:
        self.account.require(self.purpose)
        return self.account.access_token(force_refresh)
