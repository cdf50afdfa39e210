"""Gmail API transport: users.messages.send with the signed-in account's OAuth2 token.

The message is the same MIME compose.py builds for SMTP, sent as ``{"raw": base64url}``.
Google's answers are translated here, once, into the exception tree of backend.errors:

    429, 403 rateLimitExceeded / userRateLimitExceeded    ApiThrottled rate_limited (Retry-After)
    403/429 dailyLimitExceeded, quotaExceeded, ...         ApiThrottled quota_exceeded (stops the run)
    400 failedPrecondition, invalid recipients, 4xx        ApiRejected (the recipient fails)
    401 (after one token refresh), 403 missing scope       OAuthError oauth_error (stops the run)
    5xx, a timeout or a drop after the request went out    UncertainDelivery (never resent blindly)
    no connection before anything was sent                 ConnectError

Each POST is made once: the HTTP client retries nothing by itself.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from backend.errors import (
    ApiRejected,
    ApiThrottled,
    ConnectError,
    OAuthError,
    TransportError,
    UncertainDelivery,
)
from backend.google_auth import HTTP_TIMEOUT_S, GoogleAccount, _clean, _http_session
from backend.google_auth import google_error as _google_error
from backend.redact import Redactor
from backend.transports.base import Envelope, Receipt

log = logging.getLogger(__name__)

GMAIL_MAX_BYTES = 25 * 1024 * 1024  # Gmail refuses larger messages
LONG_WAIT_S = 3600.0
_RATE_REASONS = {"ratelimitexceeded", "userratelimitexceeded", "toomanyrequests", "rate_limit_exceeded"}
# TLS errors that can only happen while the connection is being set up (nothing sent yet).
_HANDSHAKE = re.compile(r"CERTIFICATE|WRONG_VERSION_NUMBER|HANDSHAKE|UNSUPPORTED_PROTOCOL|NO_PROTOCOLS|"
                        r"UNKNOWN_PROTOCOL|TLSV1_ALERT_PROTOCOL_VERSION|hostname|doesn't match", re.I)
_QUOTA_REASONS = {"dailylimitexceeded", "quotaexceeded", "dailylimitexceededunreg", "sendinglimitexceeded"}
_SCOPE_REASONS = {"insufficientpermissions", "access_token_scope_insufficient", "accessnotconfigured",
                  "service_disabled", "forbidden_scope"}
_RETRY_AFTER_IN_TEXT = re.compile(r"retry after (\d{4}-\d\d-\d\dT[0-9:.]+Z?)", re.I)
_RECIPIENT_WORDS = re.compile(r"recipient|to header|invalid to|address", re.I)


@dataclass
class GmailInfo:
    """What the campaign loop reads of an open transport (as of SMTP's ConnectionInfo)."""

    features: dict[str, str] = field(default_factory=lambda: {"size": str(GMAIL_MAX_BYTES)})
    authenticated_as: str | None = None


class GmailTransport:
    """One signed-in Gmail account; open() makes sure the token is valid, send() posts one message."""

    supports_smtputf8 = True  # Gmail takes RFC 6532 (UTF-8) headers and addresses
    size_limit = GMAIL_MAX_BYTES

    def __init__(self, account: GoogleAccount, *, timeout: float = HTTP_TIMEOUT_S, session: Any = None) -> None:
        self.account = account
        self.timeout = timeout
        self._session = session or _http_session()
        self.info = GmailInfo()
        base = account.endpoints.api_base
        self.send_url = f"{base}/gmail/v1/users/me/messages/send"
        self.host = base.split("://", 1)[-1].split("/", 1)[0]
        # Google's answers pass here before they become errors: they may echo a token.
        self.redact = Redactor()

    def open(self) -> None:
        """Load the sign-in and renew the access token if it is about to end (OAuthError if not)."""
        token = self.account.require("api")
        self.redact.add_token(token.refresh_token, token.email)
        self.redact.add_token(self.account.access_token(), token.email)
        self.info = GmailInfo(authenticated_as=token.email)

    def close(self) -> None:
        """Nothing to hang up: each message is one HTTPS request."""

    @property
    def email(self) -> str:
        return self.account.require("api").email

    def send(self, envelope: Envelope, message: bytes) -> Receipt:
        """POST the message; a 401 renews the token once and posts again (401: nothing was sent)."""
        raw = base64.urlsafe_b64encode(message).decode("ascii")
        body = json.dumps({"raw": raw})
        response = self._post(body, self.account.access_token())
        if response.status_code == 401:
            log.info("Gmail answered 401: renewing the access token once")
            response = self._post(body, self.account.access_token(force_refresh=True))
        if 200 <= response.status_code < 300:
            try:
                answer = response.json()
                ident = self.redact(_clean(answer.get("id") or "")[:200]) if isinstance(answer, dict) else ""
            except ValueError:
                ident = ""
            if not ident:
                # Not Gmail's answer to a send (a proxy's page, a wrong API address): whether
                # the message went anywhere is unknown; never count it as sent.
                raise UncertainDelivery(f"{self.host}: an answer {response.status_code} without a Gmail message "
                                        "id; the message may or may not have been sent", category="server_error",
                                        code=response.status_code)
            log.debug("Gmail accepted the message for %s: id %s", ",".join(envelope.recipients), ident)
            return Receipt(200, f"sent, Gmail message id {ident}")
        if 300 <= response.status_code < 400:
            raise UncertainDelivery(f"{self.host}: Gmail answered a redirect ({response.status_code}) after the message "
                                    "was sent; it may or may not have been sent: check BULK_MAILER_GOOGLE_API_BASE",
                                    category="server_error", code=response.status_code)
        raise self._error(response, envelope)

    def _post(self, body: str, access_token: str) -> Any:
        import requests

        self.redact.add_token(access_token)
        headers = {"Authorization": f"Bearer {access_token}", "Content-Type": "application/json"}
        try:
            return self._session.post(self.send_url, data=body, headers=headers, allow_redirects=False,
                                      timeout=(min(self.timeout, 15.0), self.timeout))
        except requests.exceptions.SSLError as exc:
            if _HANDSHAKE.search(str(exc)):  # the connection was never set up: nothing was sent
                raise ConnectError(f"{self.host}: the secure connection failed ({self._reason(exc)})",
                                   category="certificate_invalid" if "CERTIFICATE" in str(exc).upper()
                                   else "tls_handshake_failed") from None
            # A TLS error while the answer was read: the message went out.
            raise UncertainDelivery(
                f"{self.host}: the secure connection broke after the message was sent ({self._reason(exc)}); it may "
                "or may not have been delivered", category="server_disconnected") from None
        except requests.exceptions.ConnectTimeout:
            raise ConnectError(f"{self.host}: no connection within {min(self.timeout, 15.0):g} s; nothing was sent",
                               category="timeout") from None
        except requests.exceptions.ReadTimeout:
            raise UncertainDelivery(
                f"{self.host}: no answer within {self.timeout:g} s after the message was sent; it may or "
                "may not have been delivered", category="timeout") from None
        except requests.exceptions.ConnectionError as exc:
            if _before_sending(exc):
                dns = "NameResolution" in repr(exc) or "getaddrinfo" in repr(exc)
                raise ConnectError(f"{self.host}: could not connect ({self._reason(exc)}); nothing was sent",
                                   category="dns_failure" if dns else "connection_refused") from None
            raise UncertainDelivery(
                f"{self.host}: the connection dropped after the message was sent ({self._reason(exc)}); it may "
                "or may not have been delivered", category="server_disconnected") from None

    def _reason(self, exc: BaseException) -> str:
        return self.redact(_reason(exc))

    def _error(self, response: Any, envelope: Envelope) -> TransportError:
        status = int(response.status_code)
        message, reasons = _google_error(response)
        message = self.redact(message)
        text = f"Gmail API {status}: {message}" if message else f"Gmail API HTTP {status}"
        wait = _retry_after(response.headers.get("Retry-After"), message)
        cls, category = classify(status, message, reasons, wait)
        who = ", ".join(envelope.recipients)
        if category == "quota_exceeded":
            return ApiThrottled(f"Gmail's sending limit for the account is reached ({text})",
                                category=category, code=status, retry_after=wait)
        if category == "rate_limited":
            return ApiThrottled(f"Gmail asks to slow down ({text})", category=category, code=status, retry_after=wait)
        if cls is OAuthError and status == 401:
            return OAuthError(f"Google no longer accepts the sign-in of {self.account.email} ({text})", code=status,
                              fix=("Sign in with Google again (in the window, or: bulk-mailer gmail login).",))
        if cls is OAuthError:
            return OAuthError(f"Google refused access to the Gmail API ({text})", code=status, fix=(
                "Enable the Gmail API in your Google Cloud project (APIs & Services > Library > Gmail API), "
                "then sign in again.",
                "When signing in, tick the box that lets Bulk Mailer send email on your behalf."))
        if cls is UncertainDelivery:
            return UncertainDelivery(f"{text} after it received the message; it may or may not have been sent",
                                     category=category, code=status)
        if category == "recipient_rejected":
            return ApiRejected(f"Gmail refused the recipient {who} ({text})", category=category, code=status)
        if status == 413:
            return ApiRejected(f"the message is too large for Gmail ({text})", category=category, code=status)
        return ApiRejected(f"Gmail refused to send the message to {who} ({text})", category=category, code=status)


def classify(status: int, message: str, reasons: set[str], wait: float | None = None) -> tuple[type, str]:
    """The exception class and category of a Gmail API error answer (status, Google's message,
    its lower-cased reasons, the wait it asked for)."""
    # Gmail answers its daily sending limit with a 429 "retry after <tomorrow>" too: a wait
    # of hours is a quota that stops the run, not a pause to sit out.
    long_wait = wait is not None and wait > LONG_WAIT_S
    if reasons & _QUOTA_REASONS or (status in (403, 429) and long_wait):
        return ApiThrottled, "quota_exceeded"
    # A per-minute throttle ("Quota exceeded for ... 'Queries per minute per user'") names
    # itself by its reason: back off and retry. Words alone decide only without a reason.
    if reasons & _RATE_REASONS:
        return ApiThrottled, "rate_limited"
    if status in (403, 429) and not reasons & _RATE_REASONS and re.search(r"daily|sending limit", message, re.I):
        return ApiThrottled, "quota_exceeded"
    if status == 429:
        return ApiThrottled, "rate_limited"
    if status == 401:
        return OAuthError, "oauth_error"
    if status == 403 and (reasons & _SCOPE_REASONS or re.search(r"scope|not been used|disabled", message, re.I)):
        return OAuthError, "oauth_error"
    if status >= 500:
        return UncertainDelivery, "server_error"
    if status == 400 and "failedprecondition" not in reasons and _RECIPIENT_WORDS.search(message):
        return ApiRejected, "recipient_rejected"
    return ApiRejected, "message_rejected"


def _retry_after(header: str | None, message: str) -> float | None:
    """Seconds to wait: the Retry-After header (seconds or a date), else a 'Retry after <time>'
    in Google's message; None when neither says."""
    now = dt.datetime.now(dt.UTC)
    if header:
        header = header.strip()
        if header.isdigit():
            return float(header)
        try:
            when = email.utils.parsedate_to_datetime(header)
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            return max(0.0, (when - now).total_seconds())
        except (TypeError, ValueError):
            pass
    m = _RETRY_AFTER_IN_TEXT.search(message or "")
    if m:
        try:
            when = dt.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            return max(0.0, (when - now).total_seconds())
        except ValueError:
            return None
    return None


def _before_sending(exc: BaseException) -> bool:
    """Whether a requests ConnectionError happened before the request went out (no connection)."""
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, NewConnectionError | NameResolutionError | ConnectionRefusedError):
            return True
        stack += [getattr(e, "reason", None), e.__cause__, e.__context__, *(a for a in getattr(e, "args", ())
                                                                             if isinstance(a, BaseException))]
    return False


def _reason(exc: BaseException) -> str:
    return _clean(exc)[:200]
