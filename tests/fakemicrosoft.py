"""A local stand-in for the Microsoft identity platform and Microsoft Graph (bottle, HTTPS on
127.0.0.1), and an SMTP handler that accepts only AUTH XOAUTH2 with its tokens.

Speaks what MSAL and the app use: the tenant's OpenID configuration, the authorization endpoint
(a consent decision the test chooses), the token endpoint (authorization_code with PKCE S256
checked, refresh_token, device_code; one service's scopes per token, as Microsoft issues them,
AADSTS28000 otherwise), the device code endpoint and the page that takes the code, Graph's /me
and /me/sendMail (MIME as base64 text/plain), which records each message.

sendMail failures are injected by the recipient's local part:

    limit429@...   429 with Retry-After: 2 (first time only)
    busy429@...    429 ApplicationThrottled, MailboxConcurrency (first time only)
    unavail503@... 503 with Retry-After: 1 (first time only)
    denied403@...  403 ErrorAccessDenied
    expire401@...  401 (first time only): the access tokens are dropped, as when they expire
    boom500@...    500 after the message was received (and recorded)
    echo400@...    400 whose message echoes the bearer token

Switches: `consent` ("allow", "deny", "allow_without_send"), `token_error` ((error,
description, [codes]) the token endpoint answers with), `always_403`, `revoke_all()`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any
from wsgiref.simple_server import make_server

import bottle
import requests
from aiosmtpd.smtp import AuthResult

from tests.fakegoogle import _Quiet, _Server
from tests.servers import XOAuth2Handler, free_port

CLIENT_ID = "0b7c2a3e-1d2f-4e5a-9b8c-7d6e5f4a3b2c"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CONSUMER_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
MAIL_SEND = "https://graph.microsoft.com/Mail.Send"
USER_READ = "https://graph.microsoft.com/User.Read"
SMTP_SEND = "https://outlook.office.com/SMTP.Send"
_OIDC = {"openid", "profile", "offline_access", "email"}


def _resource(scope: str) -> str:
    return scope.rsplit("/", 1)[0] if "://" in scope else "https://graph.microsoft.com"


@dataclass
class Sent:
    raw: bytes
    token: str
    content_type: str

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.raw, policy=default_policy)  # type: ignore[return-value]

    @property
    def to(self) -> str:
        return str(self.message["To"])


@dataclass
class Grant:
    email: str
    scopes: list[str]
    revoked: bool = False


@dataclass
class FakeMicrosoft:
    """FakeMicrosoft(cert).start(); environment() points the app here."""

    cert: tuple[str, str]
    email: str = "sender@contoso.example"
    consumer: bool = False
    consent: str = "allow"
    token_error: tuple[str, str, list[int]] | None = None
    always_403: bool = False
    access_ttl: int = 3600
    sent: list[Sent] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    auth_requests: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: dict[str, dict[str, Any]] = {}
        self.devices: dict[str, dict[str, Any]] = {}  # device_code -> {user_code, approved, scopes}
        self.refresh: dict[str, Grant] = {}
        self.access: dict[str, tuple[Grant, list[str], float]] = {}
        self.once: set[str] = set()
        self.issued: list[str] = []  # every code, access and refresh token handed out
        self.port = free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        app = bottle.Bottle()
        app.route("/<tenant>/v2.0/.well-known/openid-configuration", "GET", self._config)
        app.route("/<tenant>/oauth2/v2.0/authorize", "GET", self._authorize)
        app.route("/<tenant>/oauth2/v2.0/token", "POST", self._token)
        app.route("/<tenant>/oauth2/v2.0/devicecode", "POST", self._devicecode)
        app.route("/device", "GET", self._device_page)
        app.route("/v1.0/me", "GET", self._me)
        app.route("/v1.0/me/sendMail", "POST", self._send)
        self.app = app

    @property
    def tid(self) -> str:
        return CONSUMER_TENANT if self.consumer else TENANT_ID

    def start(self) -> FakeMicrosoft:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*self.cert)
        self.server = make_server("127.0.0.1", self.port, self.app, server_class=_Server, handler_class=_Quiet)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def environment(self) -> dict[str, str]:
        return {"BULK_MAILER_MICROSOFT_AUTHORITY": self.base, "BULK_MAILER_MICROSOFT_GRAPH_BASE": self.base}

    def revoke_all(self) -> None:
        with self.lock:
            for grant in self.refresh.values():
                grant.revoked = True
            self.access.clear()

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access.clear()

    def token_ok(self, user: str, token: str, scope: str = SMTP_SEND) -> bool:
        with self.lock:
            found = self.access.get(token)
        return (found is not None and found[2] > time.time() and not found[0].revoked
                and found[0].email.lower() == user.lower() and scope in found[1])

    def _once(self, key: str) -> bool:
        with self.lock:
            if key in self.once:
                return False
            self.once.add(key)
            return True

    @staticmethod
    def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
        bottle.response.status = status
        bottle.response.content_type = "application/json"
        for k, v in (headers or {}).items():
            bottle.response.set_header(k, v)
        return json.dumps(body)

    def _aad_error(self, error: str, description: str, codes: list[int]) -> str:
        return self._json(400, {"error": error, "error_description": description, "error_codes": codes,
                                "timestamp": "2026-01-01 00:00:00Z", "trace_id": secrets.token_hex(8)})

    # -- identity platform ---------------------------------------------------------------

    def _config(self, tenant: str) -> Any:
        b = f"{self.base}/{tenant}/oauth2/v2.0"
        return self._json(200, {"authorization_endpoint": f"{b}/authorize", "token_endpoint": f"{b}/token",
                                "device_authorization_endpoint": f"{b}/devicecode",
                                "issuer": f"{self.base}/{self.tid}/v2.0", "tenant_region_scope": "EU"})

    def _authorize(self, tenant: str) -> Any:
        q = dict(bottle.request.query.decode().items())
        self.auth_requests.append(q)
        if q.get("client_id") != CLIENT_ID:
            bottle.response.status = 400
            return "<h1>AADSTS700016: Application with identifier was not found in the directory.</h1>"
        redirect = q.get("redirect_uri", "")
        if not redirect.startswith("http://localhost:"):
            bottle.response.status = 400
            return "<h1>AADSTS50011: The redirect URI specified in the request does not match.</h1>"
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            bottle.response.status = 400
            return "<h1>AADSTS9002325: Proof Key for Code Exchange is required.</h1>"
        state = q.get("state", "")
        if self.consent == "deny":
            bottle.redirect(f"{redirect}?" + urllib.parse.urlencode({
                "error": "access_denied", "error_description": "AADSTS65004: User declined to consent.",
                "state": state}), 302)
        scopes = [s for s in q.get("scope", "").split() if s not in _OIDC]
        if self.consent == "allow_without_send":
            scopes = [s for s in scopes if s not in (MAIL_SEND, SMTP_SEND)]
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.issued.append(code)
            self.codes[code] = {"challenge": q["code_challenge"], "redirect_uri": redirect, "scopes": scopes,
                                "nonce": q.get("nonce")}
        bottle.redirect(f"{redirect}?{urllib.parse.urlencode({'code': code, 'state': state})}", 302)

    def _id_token(self, nonce: str | None = None) -> str:
        def b64(d: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
        now = int(time.time())
        claims = {"iss": f"{self.base}/{self.tid}/v2.0", "aud": CLIENT_ID, "tid": self.tid, "oid": "00000000-aaaa",
                  "sub": "fake-subject", "preferred_username": self.email, "name": "Test Sender",
                  "iat": now, "nbf": now, "exp": now + 3600, "ver": "2.0"}
        if nonce:
            claims["nonce"] = nonce
        return f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(claims)}.{secrets.token_urlsafe(32)}"

    def _tokens(self, grant: Grant, asked: list[str], *, new_refresh: bool = True, nonce: str | None = None) -> str:
        wanted = [s for s in asked if s not in _OIDC]
        if len({_resource(s) for s in wanted}) > 1:
            return self._aad_error("invalid_request", "AADSTS28000: Provided value for the input parameter scope "
                                   "is not valid because it contains more than one resource.", [28000])
        if not set(wanted) <= set(grant.scopes):
            return self._aad_error("invalid_grant", "AADSTS65001: The user or administrator has not consented to "
                                   "use the application.", [65001])
        access = "EwB" + secrets.token_urlsafe(40)
        body: dict[str, Any] = {"token_type": "Bearer", "scope": " ".join(wanted), "expires_in": self.access_ttl,
                                "ext_expires_in": self.access_ttl, "access_token": access,
                                "id_token": self._id_token(nonce),
                                "client_info": base64.urlsafe_b64encode(json.dumps(
                                    {"uid": "00000000-aaaa", "utid": self.tid}).encode()).decode().rstrip("=")}
        with self.lock:
            self.access[access] = (grant, wanted, time.time() + self.access_ttl)
            self.issued.append(access)
            if new_refresh:
                refresh = "M.C5" + secrets.token_urlsafe(48)
                self.refresh[refresh] = grant
                self.issued.append(refresh)
                body["refresh_token"] = refresh
        return self._json(200, body)

    def _token(self, tenant: str) -> Any:
        form = dict(bottle.request.forms.decode().items())
        self.token_requests.append({"grant_type": form.get("grant_type", ""), "scope": form.get("scope", "")})
        if form.get("client_id") != CLIENT_ID:
            return self._aad_error("unauthorized_client", "AADSTS700016: Application not found.", [700016])
        if "client_secret" in form:
            return self._aad_error("invalid_request", "a public client sends no secret", [90014])
        if self.token_error:
            return self._aad_error(*self.token_error)
        asked = form.get("scope", "").split()
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            with self.lock:
                entry = self.codes.pop(form.get("code", ""), None)
            if entry is None:
                return self._aad_error("invalid_grant", "AADSTS70000: The code was already redeemed.", [70000])
            if form.get("redirect_uri") != entry["redirect_uri"]:
                return self._aad_error("invalid_grant", "AADSTS50011: The redirect URI does not match.", [50011])
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if digest != entry["challenge"]:
                return self._aad_error("invalid_grant", "AADSTS501481: The Code_Verifier does not match.", [501481])
            return self._tokens(Grant(self.email, entry["scopes"]), asked, nonce=entry["nonce"])
        if grant_type == "refresh_token":
            with self.lock:
                grant = self.refresh.get(form.get("refresh_token", ""))
            if grant is None or grant.revoked:
                return self._aad_error("invalid_grant", "AADSTS70008: The refresh token has expired or is invalid "
                                       "due to sign-in frequency checks.", [70008])
            return self._tokens(grant, asked)
        if grant_type == "urn:ietf:params:oauth:grant-type:device_code":
            with self.lock:
                device = self.devices.get(form.get("device_code", ""))
            if device is None:
                return self._aad_error("expired_token", "AADSTS70020: The provided value is expired.", [70020])
            if not device["approved"]:
                return self._aad_error("authorization_pending", "AADSTS70016: pending", [70016])
            with self.lock:
                self.devices.pop(form["device_code"], None)
            scopes = [s for s in device["scopes"] if s not in _OIDC]
            first = _resource(scopes[0])
            return self._tokens(Grant(self.email, scopes), asked or [s for s in scopes if _resource(s) == first])
        return self._aad_error("unsupported_grant_type", "AADSTS70003", [70003])

    def _devicecode(self, tenant: str) -> Any:
        form = dict(bottle.request.forms.decode().items())
        if form.get("client_id") != CLIENT_ID:
            return self._aad_error("unauthorized_client", "AADSTS700016: Application not found.", [700016])
        user_code, device_code = secrets.token_hex(4).upper(), secrets.token_urlsafe(32)
        with self.lock:
            self.devices[device_code] = {"user_code": user_code, "approved": False,
                                         "scopes": form.get("scope", "").split()}
            self.issued.append(device_code)
        return self._json(200, {"device_code": device_code, "user_code": user_code,
                                "verification_uri": f"{self.base}/device", "expires_in": 900, "interval": 1,
                                "message": f"To sign in, use a web browser to open the page {self.base}/device and "
                                           f"enter the code {user_code} to authenticate."})

    def _device_page(self) -> Any:
        code = bottle.request.query.get("code", "")
        with self.lock:
            for device in self.devices.values():
                if device["user_code"] == code:
                    device["approved"] = True
                    return "<h1>You have signed in.</h1>"
        bottle.response.status = 400
        return "<h1>That code did not work.</h1>"

    # -- Graph ---------------------------------------------------------------------------

    def _grant(self) -> tuple[Grant | None, list[str], str]:
        header = bottle.request.get_header("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with self.lock:
            found = self.access.get(token)
        if found is None or found[2] < time.time() or found[0].revoked:
            return None, [], token
        return found[0], found[1], token

    def _graph_error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> str:
        return self._json(status, {"error": {"code": code, "message": message, "innerError": {
            "request-id": secrets.token_hex(8)}}}, headers)

    def _me(self) -> Any:
        grant, scopes, _ = self._grant()
        if grant is None:
            return self._graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
        if USER_READ not in scopes:
            return self._graph_error(403, "Authorization_RequestDenied", "Insufficient privileges.")
        return self._json(200, {"mail": grant.email, "userPrincipalName": grant.email, "displayName": "Test Sender"})

    def _send(self) -> Any:
        grant, scopes, token = self._grant()
        if grant is None:
            return self._graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is "
                                     "expired.")
        if MAIL_SEND not in scopes or self.always_403:
            return self._graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        content_type = bottle.request.get_header("Content-Type", "")
        if content_type.split(";")[0].strip() != "text/plain":
            return self._graph_error(400, "ErrorMimeContentInvalid", "MIME content must be text/plain base64.")
        body = bottle.request.body.read()
        if len(body) > 4 * 1024 * 1024:
            return self._graph_error(413, "RequestBodyTooLarge", "The request body is too large.")
        try:
            data = base64.b64decode(body, validate=True)
        except ValueError:
            return self._graph_error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME "
                                     "content.")
        msg = message_from_bytes(data, policy=default_policy)
        to = msg["To"].addresses[0].addr_spec if msg["To"] else ""
        local = to.split("@")[0]
        if local == "limit429" and self._once(to):
            return self._graph_error(429, "TooManyRequests", "Too many requests.", {"Retry-After": "2"})
        if local == "busy429" and self._once(to):
            return self._graph_error(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.")
        if local == "unavail503" and self._once(to):
            return self._graph_error(503, "ServiceUnavailable", "Service unavailable.", {"Retry-After": "1"})
        if local == "denied403":
            return self._graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        if local == "expire401" and self._once(to):
            self.expire_access_tokens()
            return self._graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed.")
        if local == "echo400":
            return self._graph_error(400, "ErrorInvalidRecipients", f"Invalid recipient for token {token}")
        with self.lock:
            self.sent.append(Sent(data, token, content_type))
        if local == "boom500":
            return self._graph_error(500, "ErrorInternalServerError", "An internal server error occurred.")
        bottle.response.status = 202
        bottle.response.set_header("request-id", secrets.token_hex(8))
        return ""


def play_browser(ca_file: str, *, record: list[str] | None = None) -> Any:
    """A stand-in for webbrowser.open: GET the authorization URL (the consent is the fake's
    decision) and follow its redirect to the app's loopback address, in a thread."""

    def follow(url: str) -> None:
        if record is not None:
            record.append(url)
        with requests.Session() as s:
            r = s.get(url, verify=ca_file, allow_redirects=False, timeout=10)
            if r.status_code in (301, 302, 303) and r.headers.get("Location"):
                s.get(r.headers["Location"], timeout=10)
            elif record is not None:
                record.append(f"error page {r.status_code}: {r.text}")

    def open_browser(url: str) -> bool:
        threading.Thread(target=follow, args=(url,), daemon=True).start()
        return True

    return open_browser


def enter_device_code(fake: FakeMicrosoft, url: str, user_code: str, ca_file: str) -> None:
    """The user on another device: open the page and enter the code."""
    requests.get(url, params={"code": user_code}, verify=ca_file, timeout=10).raise_for_status()


@dataclass
class MicrosoftSmtpHandler(XOAuth2Handler):
    """smtp.office365.com as far as login goes: AUTH XOAUTH2 only, with the fake's SMTP.Send
    tokens; a refused token gets `refusal` (Exchange Online's 535 5.7.3 by default)."""

    refusal: str = "535 5.7.3 Authentication unsuccessful [SN4PR0201CA0045.namprd02.prod.outlook.com]"

    async def auth_XOAUTH2(self, server, args):
        try:
            blob = base64.b64decode(args[1], validate=True) if len(args) > 1 else b""
        except ValueError:
            return AuthResult(success=False, handled=False, message="501 5.5.2 Cannot Decode response")
        parts = dict(p.split("=", 1) for p in blob.decode("utf-8", "replace").split("\x01") if "=" in p)
        user, auth = parts.get("user", ""), parts.get("auth", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if self.accept is not None and self.accept(user, token):
            self.xoauth2_logins.append(user)
            return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False, message=self.refusal)
