"""A local stand-in for Google's OAuth and Gmail endpoints (bottle, HTTPS on 127.0.0.1).

Speaks what the app uses of Google: the authorization endpoint (with a consent decision the
test chooses), the token endpoint (authorization_code with PKCE S256 checked, refresh_token),
the revocation endpoint, users.getProfile and users.messages.send, which base64url-decodes
each raw message and records it; and, for reading, users.messages.list (labelIds, q=after:<date>
or after:<epoch seconds>, includeSpamTrash, pages of `page_size`) and users.messages.get
(format raw, base64url, or minimal) over a mailbox the test fills with `put(label, raw)`. The
list and get need gmail.readonly (or full mail access), as Google's do. Every call that would
change the mailbox (modify, trash, delete, insert, import, batchModify, ...) is answered and
recorded in `writes`, so a test can prove none was made.

Failures of messages.send are injected by the recipient's local part, as tests/servers.py does
for SMTP:

    limit429@...       429 with Retry-After: 7 (first time only)
    rate403@...        403 rateLimitExceeded (first time only)
    daily403@...       403 dailyLimitExceeded
    precondition400@.. 400 failedPrecondition
    badrcpt400@...     400 Invalid To header
    expire401@...      401 (first time only): the access token is dropped, as when it expires
    boom500@...        500 after the message was received (and recorded)
    echo400@...        400 whose message echoes the bearer token, raw and in base64
    slow@...           answers only after `slow_s` seconds (recorded when it arrived)

Switches on the instance inject the OAuth failures: `consent` ("allow", "deny",
"allow_without_send"), `token_error` (an error code the token endpoint answers with),
`always_401`, and `revoke_all()` (a refresh token revoked by the user). `consent`
"allow_without_read" leaves gmail.readonly out; `id_style` "opaque" gives messages ids that are no
hex numbers.
"""

from __future__ import annotations

import base64
import datetime as dt
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
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bottle
import requests

from tests.servers import free_port

CLIENT_ID = "1234-test.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-fake-client-secret-4321"  # noqa: S105 (a test fixture)
SEND_SCOPE = "https://www.googleapis.com/auth/gmail.send"
MAIL_SCOPE = "https://mail.google.com/"
READ_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"


def client_json(kind: str = "installed", client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> str:
    """A client file as Google Cloud Console downloads it."""
    return json.dumps({kind: {
        "client_id": client_id, "project_id": "bulk-mailer-test", "client_secret": secret,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "redirect_uris": ["http://localhost"]}})


@dataclass
class SentMessage:
    """One message users.messages.send received."""

    raw: bytes
    token: str

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.raw, policy=default_policy)  # type: ignore[return-value]

    @property
    def to(self) -> str:
        return str(self.message["To"])


@dataclass
class StoredMessage:
    """One message in the fake mailbox."""

    id: str
    labels: list[str]
    raw: bytes
    internal_ms: int


@dataclass
class Grant:
    email: str
    scopes: list[str]
    client_id: str
    revoked: bool = False


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass


@dataclass
class FakeGoogle:
    """Start with FakeGoogle(certs).start(); endpoints() gives the app's environment."""

    cert: tuple[str, str]
    email: str = "sender@gmail.com"
    hd: str | None = None  # a Workspace domain in the id token
    consent: str = "allow"
    token_error: str | None = None
    always_401: bool = False
    access_ttl: int = 3600
    slow_s: float = 3.0
    daily_after: int | None = None  # after this many messages, every send hits the daily limit
    sent: list[SentMessage] = field(default_factory=list)
    page_size: int = 100  # messages.list answers at most this many ids a page (and maxResults)
    id_style: str = "hex"  # "hex" as Gmail's, or "opaque"
    mailbox: list[StoredMessage] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)  # any call that would change the mailbox
    reads: list[dict[str, str]] = field(default_factory=list)  # the list and get calls, with their query
    revoked: list[str] = field(default_factory=list)
    requests_seen: list[str] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    auth_requests: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: dict[str, dict[str, Any]] = {}
        self.refresh: dict[str, Grant] = {}
        self.access: dict[str, tuple[Grant, float]] = {}
        self.once: set[str] = set()
        self.issued: list[str] = []  # every code, access and refresh token handed out
        self.port = free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        app = bottle.Bottle()
        app.route("/o/oauth2/auth", "GET", self._authorize)
        app.route("/token", "POST", self._token)
        app.route("/revoke", "POST", self._revoke)
        app.route("/gmail/v1/users/me/profile", "GET", self._profile)
        app.route("/gmail/v1/users/me/messages/send", "POST", self._send)
        app.route("/gmail/v1/users/me/messages", "GET", self._list)
        app.route("/gmail/v1/users/me/messages/<ident>", "GET", self._get)
        app.route("/gmail/v1/<rest:path>", ["POST", "PUT", "PATCH", "DELETE"], self._write)
        self.app = app

    # -- running ---------------------------------------------------------------------------

    def start(self) -> FakeGoogle:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*self.cert)
        self.server = make_server("127.0.0.1", self.port, self.app, server_class=_Server, handler_class=_Quiet)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def endpoints(self) -> dict[str, str]:
        """The environment that points the app here."""
        return {"BULK_MAILER_GOOGLE_AUTH_URI": f"{self.base}/o/oauth2/auth",
                "BULK_MAILER_GOOGLE_TOKEN_URI": f"{self.base}/token",
                "BULK_MAILER_GOOGLE_REVOKE_URI": f"{self.base}/revoke",
                "BULK_MAILER_GOOGLE_API_BASE": self.base}

    def revoke_all(self) -> None:
        """The user removed the app's access at myaccount.google.com: every token is dead."""
        with self.lock:
            for grant in self.refresh.values():
                grant.revoked = True
            self.access.clear()

    def token_ok(self, user: str, token: str, scope: str = MAIL_SCOPE) -> bool:
        """Whether an access token is live, for that user, with that scope (SMTP XOAUTH2)."""
        with self.lock:
            found = self.access.get(token)
        return (found is not None and found[1] > time.time() and not found[0].revoked
                and found[0].email.lower() == user.lower() and scope in found[0].scopes)

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access.clear()

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

    @staticmethod
    def _api_error(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> str:
        return FakeGoogle._json(status, {"error": {"code": status, "message": message, "errors": [
            {"domain": "global", "reason": reason, "message": message}]}}, headers)

    # -- OAuth -----------------------------------------------------------------------------

    def _authorize(self) -> Any:
        q = dict(bottle.request.query.decode().items())
        self.auth_requests.append(q)
        if q.get("client_id") != CLIENT_ID:
            bottle.response.status = 401
            return "<h1>Error 401: invalid_client</h1><p>The OAuth client was not found.</p>"
        redirect = q.get("redirect_uri", "")
        if not redirect.startswith(("http://127.0.0.1:", "http://localhost:")):
            bottle.response.status = 400
            return "<h1>Error 400: redirect_uri_mismatch</h1>"
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            bottle.response.status = 400
            return "<h1>Error 400: invalid_request</h1><p>PKCE required.</p>"
        state = q.get("state", "")
        if self.consent == "deny":
            bottle.redirect(f"{redirect}?{urllib.parse.urlencode({'error': 'access_denied', 'state': state})}", 302)
        scopes = q.get("scope", "").split()
        if self.consent == "allow_without_send":
            scopes = [s for s in scopes if s not in (SEND_SCOPE, MAIL_SCOPE)]
        if self.consent == "allow_without_read":
            scopes = [s for s in scopes if s != READ_SCOPE]
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.issued.append(code)
            self.codes[code] = {"challenge": q["code_challenge"], "redirect_uri": redirect, "scopes": scopes,
                                "client_id": q["client_id"]}
        bottle.redirect(f"{redirect}?{urllib.parse.urlencode({'code': code, 'state': state, 'scope': ' '.join(scopes)})}",
                        302)

    def _client_ok(self, form: dict[str, str]) -> bool:
        auth = bottle.request.auth  # HTTP Basic (requests-oauthlib's default) or the body
        client_id, secret = auth if auth else (form.get("client_id"), form.get("client_secret"))
        return client_id == CLIENT_ID and secret == CLIENT_SECRET

    def _id_token(self, client_id: str) -> str:
        def b64(d: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
        claims = {"iss": "https://accounts.google.com", "aud": client_id, "sub": "110169484474386276334",
                  "email": self.email, "email_verified": True, "iat": int(time.time()), "exp": int(time.time()) + 3600}
        if self.hd:
            claims["hd"] = self.hd
        return f"{b64({'alg': 'RS256', 'kid': 'fake', 'typ': 'JWT'})}.{b64(claims)}.{secrets.token_urlsafe(32)}"

    def _issue(self, grant: Grant) -> str:
        access = "ya29." + secrets.token_urlsafe(32)
        with self.lock:
            self.access[access] = (grant, time.time() + self.access_ttl)
            self.issued.append(access)
        return access

    def _token(self) -> Any:
        form = dict(bottle.request.forms.decode().items())
        self.token_requests.append({k: v for k, v in form.items() if k in ("grant_type",)})
        if not self._client_ok(form):
            return self._json(401, {"error": "invalid_client", "error_description": "The OAuth client was not found."})
        if self.token_error:
            return self._json(400, {"error": self.token_error, "error_description": "injected by the test"})
        if form.get("grant_type") == "authorization_code":
            with self.lock:
                entry = self.codes.pop(form.get("code", ""), None)
            if entry is None:
                return self._json(400, {"error": "invalid_grant", "error_description": "Malformed auth code."})
            if form.get("redirect_uri") != entry["redirect_uri"]:
                return self._json(400, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"})
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if digest != entry["challenge"]:
                return self._json(400, {"error": "invalid_grant", "error_description": "Invalid code verifier."})
            grant = Grant(self.email, entry["scopes"], entry["client_id"])
            refresh = "1//" + secrets.token_urlsafe(32)
            with self.lock:
                self.refresh[refresh] = grant
                self.issued.append(refresh)
            return self._json(200, {"access_token": self._issue(grant), "expires_in": self.access_ttl,
                                    "refresh_token": refresh, "scope": " ".join(grant.scopes),
                                    "token_type": "Bearer", "id_token": self._id_token(entry["client_id"])})
        if form.get("grant_type") == "refresh_token":
            with self.lock:
                grant = self.refresh.get(form.get("refresh_token", ""))
            if grant is None or grant.revoked:
                return self._json(400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
            return self._json(200, {"access_token": self._issue(grant), "expires_in": self.access_ttl,
                                    "scope": " ".join(grant.scopes), "token_type": "Bearer"})
        return self._json(400, {"error": "unsupported_grant_type"})

    def _revoke(self) -> Any:
        token = bottle.request.forms.get("token", "")
        with self.lock:
            grant = self.refresh.get(token)
            if grant is None or grant.revoked:
                return self._json(400, {"error": "invalid_token", "error_description": "Token expired or revoked"})
            grant.revoked = True
            self.revoked.append(token)
            for access, (g, _) in list(self.access.items()):
                if g is grant:
                    del self.access[access]
        return self._json(200, {})

    # -- Gmail -----------------------------------------------------------------------------

    def _grant(self) -> tuple[Grant | None, str]:
        header = bottle.request.get_header("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with self.lock:
            found = self.access.get(token)
        if found is None or found[1] < time.time() or found[0].revoked:
            return None, token
        return found[0], token

    def _unauthorized(self) -> str:
        return self._json(401, {"error": {"code": 401, "message": "Request had invalid authentication credentials.",
                                          "status": "UNAUTHENTICATED"}},
                          {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})

    def _profile(self) -> Any:
        grant, _ = self._grant()
        if grant is None:
            return self._unauthorized()
        if MAIL_SCOPE not in grant.scopes:  # as Google: gmail.send alone may not read the profile
            return self._api_error(403, "insufficientPermissions", "Request had insufficient authentication scopes.")
        return self._json(200, {"emailAddress": grant.email, "messagesTotal": 0, "threadsTotal": 0, "historyId": "1"})

    def _send(self) -> Any:
        grant, token = self._grant()
        self.requests_seen.append("send")
        if grant is None or self.always_401:
            return self._unauthorized()
        if SEND_SCOPE not in grant.scopes and MAIL_SCOPE not in grant.scopes:
            return self._api_error(403, "insufficientPermissions", "Request had insufficient authentication scopes.")
        try:
            raw = json.loads(bottle.request.body.read())["raw"]
            data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (ValueError, KeyError, TypeError):
            return self._api_error(400, "invalidArgument", "'raw' RFC822 payload message string or uploading "
                                   "message via /upload/* URL required")
        msg = message_from_bytes(data, policy=default_policy)
        to = msg["To"].addresses[0].addr_spec if msg["To"] else ""
        local = to.split("@")[0]
        if local == "limit429" and self._once(to):
            return self._api_error(429, "rateLimitExceeded", "Too many requests", {"Retry-After": "7"})
        if local == "minute429" and self._once(to):  # Google's per-minute quota answer
            return self._api_error(429, "rateLimitExceeded", "Quota exceeded for quota metric 'Queries' and limit "
                                   "'Queries per minute per user' of service 'gmail.googleapis.com'")
        if local == "rate403" and self._once(to):
            return self._api_error(403, "userRateLimitExceeded", "User Rate Limit Exceeded")
        if local == "daily403" or (self.daily_after is not None and len(self.sent) >= self.daily_after):
            return self._api_error(403, "dailyLimitExceeded", "Daily Limit Exceeded")
        if local == "precondition400":
            return self._api_error(400, "failedPrecondition", "Precondition check failed.")
        if local == "echo400":  # a server that repeats what it was sent
            return self._api_error(400, "invalidArgument", f"Invalid To header for token {token} "
                                   f"({base64.b64encode(token.encode()).decode()})")
        if local == "badrcpt400":
            return self._api_error(400, "invalidArgument", "Invalid To header")
        if local == "expire401" and self._once(to):
            self.expire_access_tokens()
            return self._unauthorized()
        with self.lock:
            self.sent.append(SentMessage(data, token))
        if local == "boom500":
            return self._api_error(500, "backendError", "Backend Error")
        if local == "noid200":  # a 200 that is not Gmail's answer (a proxy's page)
            return self._json(200, {"ok": True})
        if local == "moved302":
            bottle.response.status = 302
            bottle.response.set_header("Location", "/elsewhere")
            return ""
        if local == "slow":
            time.sleep(self.slow_s)
        return self._json(200, {"id": secrets.token_hex(8), "threadId": secrets.token_hex(8), "labelIds": ["SENT"]})


    # -- reading -----------------------------------------------------------------------------

    def put(self, label: str, raw: bytes, when: float | None = None) -> str:
        """A message arrives in the mailbox under a label (INBOX or SPAM); its id."""
        ms = int((time.time() if when is None else when) * 1000)
        with self.lock:
            n = len(self.mailbox)
            ident = (f"{(ms << 20) | n:016x}" if self.id_style == "hex"
                     else f"msg-{secrets.token_urlsafe(9)}")
            self.mailbox.append(StoredMessage(ident, [label, "UNREAD"], raw, ms))
        return ident

    def _reader(self) -> tuple[Grant | None, str | None]:
        grant, _ = self._grant()
        if grant is None:
            return None, self._unauthorized()
        if READ_SCOPE not in grant.scopes and MAIL_SCOPE not in grant.scopes:
            return None, self._api_error(403, "insufficientPermissions",
                                         "Request had insufficient authentication scopes.")
        return grant, None

    def _list(self) -> Any:
        q = dict(bottle.request.query.decode().items())
        self.reads.append({"call": "list", **q})
        _, refused = self._reader()
        if refused is not None:
            return refused
        after = 0
        for term in q.get("q", "").split():
            if term.startswith("after:"):
                value = term[6:]
                if value.isdigit():
                    after = int(value) * 1000
                else:
                    y, m, d = (int(x) for x in value.split("/"))
                    after = int(dt.datetime(y, m, d, tzinfo=dt.UTC).timestamp() * 1000)
            elif term:
                return self._api_error(400, "invalidArgument", f"the fake does not know the query term {term}")
        spam_too = q.get("includeSpamTrash") == "true"
        with self.lock:
            found = [m for m in reversed(self.mailbox)  # newest first, as Gmail lists
                     if (not q.get("labelIds") or q["labelIds"] in m.labels) and m.internal_ms >= after
                     and (spam_too or not {"SPAM", "TRASH"} & set(m.labels))]
        size = min(self.page_size, int(q.get("maxResults") or 100))
        start = int(q.get("pageToken") or 0)
        page = found[start:start + size]
        body: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if page:
            body["messages"] = [{"id": m.id, "threadId": m.id} for m in page]
        if start + size < len(found):
            body["nextPageToken"] = str(start + size)
        return self._json(200, body)

    def _get(self, ident: str) -> Any:
        q = dict(bottle.request.query.decode().items())
        self.reads.append({"call": "get", "id": ident, **q})
        _, refused = self._reader()
        if refused is not None:
            return refused
        with self.lock:
            m = next((m for m in self.mailbox if m.id == ident), None)
        if m is None:
            return self._api_error(404, "notFound", "Requested entity was not found.")
        body = {"id": m.id, "threadId": m.id, "labelIds": list(m.labels), "snippet": "",
                "internalDate": str(m.internal_ms), "sizeEstimate": len(m.raw), "historyId": "1"}
        if q.get("format", "full") == "raw":
            body["raw"] = base64.urlsafe_b64encode(m.raw).decode()
        elif q.get("format") != "minimal":
            return self._api_error(400, "invalidArgument", "the fake answers format raw or minimal only")
        return self._json(200, body)

    def _write(self, rest: str) -> Any:
        self.writes.append(f"{bottle.request.method} {rest}")
        return self._api_error(403, "forbidden", "the fake records this call and changes nothing")


def play_browser(ca_file: str, *, record: list[str] | None = None) -> Any:
    """A stand-in for webbrowser.open: in a thread, GET the authorization URL (the consent is
    the fake's decision) and follow its redirect to the app's loopback address."""

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
