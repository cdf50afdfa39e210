"""Microsoft Graph transport: POST /me/sendMail with the MIME message, as the signed-in account.

The message is the same MIME compose.py builds for SMTP, sent base64-encoded with Content-Type
text/plain, as Graph requires for MIME; Graph files the copy in Sent Items itself. A request is
at most 4 MB, so a message whose base64 is larger is refused before sending (the campaign
loop reads ``size_limit``; send() checks again and names both sizes). Graph's answers become
the exception tree of backend.errors here, once:

    202                                         sent
    429 (Retry-After), 503 with Retry-After,    ApiThrottled rate_limited: deferred, tried again
    MailboxConcurrency / ApplicationThrottled
    403/429 quota words (SubmissionQuotaExceeded) ApiThrottled quota_exceeded (the run pauses)
    401 (after one token renewal)               OAuthError microsoft_sign_in (stops the run)
    403 ErrorAccessDenied, missing Mail.Send    OAuthError microsoft_consent (stops the run)
    400/404/413 and others                      ApiRejected (the recipient fails)
    500, 502, 504, a drop after the request     UncertainDelivery (never resent blindly)

Each POST is made once: the HTTP client retries nothing by itself.
"""

from __future__ import annotations

import base64
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
from backend.microsoft_auth import HTTP_TIMEOUT_S, MicrosoftAccount
from backend.microsoft_errors import MAIL_SEND_FIX, SIGN_IN_AGAIN, clean, reply_advice
from backend.redact import Redactor
from backend.transports.base import Envelope, Receipt
from backend.transports.gmail import _HANDSHAKE, LONG_WAIT_S, _before_sending, _reason, _retry_after

log = logging.getLogger(__name__)

GRAPH_MAX_REQUEST = 4 * 1024 * 1024  # Graph's limit on one request's body
GRAPH_MAX_MESSAGE = GRAPH_MAX_REQUEST // 4 * 3  # the largest message whose base64 fits in it
_THROTTLE_CODES = {"applicationthrottled", "mailboxconcurrency", "toomanyrequests", "activitylimitreached"}
_QUOTA_WORDS = re.compile(r"submissionquotaexceeded|quota exceeded|sending limit|recipient rate limit", re.I)
_ACCESS_CODES = {"erroraccessdenied", "accessdenied", "authorization_requestdenied", "forbidden"}
_RECIPIENT_WORDS = re.compile(r"recipient|invalid.*address|ErrorInvalidRecipients", re.I)


@dataclass
class GraphInfo:
    """What the campaign loop reads of an open transport (as of SMTP's ConnectionInfo)."""

    features: dict[str, str] = field(default_factory=lambda: {"size": str(GRAPH_MAX_MESSAGE)})
    authenticated_as: str | None = None


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


class GraphTransport:
    """One signed-in Microsoft account; open() makes sure the token is valid, send() posts one message."""

    supports_smtputf8 = True  # Exchange Online takes UTF-8 headers and addresses
    size_limit = GRAPH_MAX_MESSAGE

    def __init__(self, account: MicrosoftAccount, *, timeout: float = HTTP_TIMEOUT_S, session: Any = None) -> None:
        import requests

        self.account = account
        self.timeout = timeout
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = "bulk-mailer"
        self.info = GraphInfo()
        base = account.endpoints.graph_base
        self.send_url = f"{base}/v1.0/me/sendMail"
        self.host = base.split("://", 1)[-1].split("/", 1)[0]
        self.redact = Redactor()  # Graph's answers may echo a token

    def open(self) -> None:
        """Load the sign-in and renew the access token if it is about to end (OAuthError if not)."""
        profile = self.account.require("graph")
        self.redact.add_token(self.account.access_token("graph"), profile["email"])
        self.info = GraphInfo(authenticated_as=profile["email"])

    def close(self) -> None:
        """Nothing to hang up: each message is one HTTPS request."""

    @property
    def email(self) -> str:
        return str(self.account.require("graph")["email"])

    def send(self, envelope: Envelope, message: bytes) -> Receipt:
        """POST the message; a 401 renews the token once and posts again (401: nothing was sent)."""
        body = base64.b64encode(message)
        if len(body) > GRAPH_MAX_REQUEST:
            raise ApiRejected(
                f"the message is {_mb(len(message))} ({_mb(len(body))} as Graph takes it) and Microsoft Graph accepts "
                f"at most {_mb(GRAPH_MAX_REQUEST)} per request: send it through SMTP (Send through: SMTP, "
                "--auth xoauth2) or with smaller attachments", category="attachment_error", code=413)
        response = self._post(body, self.account.access_token("graph"))
        if response.status_code == 401:
            log.info("Graph answered 401: renewing the access token once")
            response = self._post(body, self.account.access_token("graph", force_refresh=True))
        if response.status_code == 202 or response.status_code == 200:
            ident = clean(response.headers.get("request-id") or "")[:80]
            return Receipt(202, f"accepted by Microsoft Graph{', request id ' + ident if ident else ''}")
        if 200 <= response.status_code < 400:
            # Not Graph's answer to sendMail (a proxy's page, a wrong address): whether the
            # message went anywhere is unknown; never counted as sent.
            raise UncertainDelivery(f"{self.host}: an answer {response.status_code} that is not Graph's 202; the "
                                    "message may or may not have been sent: check BULK_MAILER_MICROSOFT_GRAPH_BASE",
                                    category="server_error", code=response.status_code)
        raise self._error(response, envelope)

    def _post(self, body: bytes, access_token: str) -> Any:
        import requests

        self.redact.add_token(access_token)
        headers = {"Authorization": f"Bearer {access_token}", "Content-Type": "text/plain"}
        try:
            return self._session.post(self.send_url, data=body, headers=headers, allow_redirects=False,
                                      timeout=(min(self.timeout, 15.0), self.timeout))
        except requests.exceptions.SSLError as exc:
            if _HANDSHAKE.search(str(exc)):
                raise ConnectError(f"{self.host}: the secure connection failed ({self.redact(_reason(exc))})",
                                   category="certificate_invalid" if "CERTIFICATE" in str(exc).upper()
                                   else "tls_handshake_failed") from None
            raise UncertainDelivery(f"{self.host}: the secure connection broke after the message was sent "
                                    f"({self.redact(_reason(exc))}); it may or may not have been delivered",
                                    category="server_disconnected") from None
        except requests.exceptions.ConnectTimeout:
            raise ConnectError(f"{self.host}: no connection within {min(self.timeout, 15.0):g} s; nothing was sent",
                               category="timeout") from None
        except requests.exceptions.ReadTimeout:
            raise UncertainDelivery(f"{self.host}: no answer within {self.timeout:g} s after the message was sent; it "
                                    "may or may not have been delivered", category="timeout") from None
        except requests.exceptions.ConnectionError as exc:
            if _before_sending(exc):
                dns = "NameResolution" in repr(exc) or "getaddrinfo" in repr(exc)
                raise ConnectError(f"{self.host}: could not connect ({self.redact(_reason(exc))}); nothing was sent",
                                   category="dns_failure" if dns else "connection_refused") from None
            raise UncertainDelivery(f"{self.host}: the connection dropped after the message was sent "
                                    f"({self.redact(_reason(exc))}); it may or may not have been delivered",
                                    category="server_disconnected") from None

    def _error(self, response: Any, envelope: Envelope) -> TransportError:
        status = int(response.status_code)
        code, message = graph_error(response)
        message = self.redact(message)
        text = f"Microsoft Graph {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
        wait = _retry_after(response.headers.get("Retry-After"), "")
        cls, category = classify(status, code, message, wait, retry_after_given=wait is not None)
        who = ", ".join(envelope.recipients)
        if category == "quota_exceeded":
            return ApiThrottled(f"the mailbox's sending limit is reached ({text})", category=category, code=status,
                                retry_after=wait)
        if category == "rate_limited":
            return ApiThrottled(f"Microsoft Graph asks to slow down ({text})", category=category, code=status,
                                retry_after=wait)
        if category == "microsoft_sign_in":
            return OAuthError(f"Microsoft no longer accepts the sign-in of {self.account.email} ({text})",
                              category=category, code=status, fix=(SIGN_IN_AGAIN,))
        if category == "microsoft_consent":
            return OAuthError(f"Microsoft Graph refused to send as {self.account.email} ({text})", category=category,
                              code=status, fix=(MAIL_SEND_FIX, "In an organisation, an administrator may have to "
                                                "grant consent, or allow the mailbox to send (it may be disabled "
                                                "or have no Exchange Online licence)."))
        if cls is UncertainDelivery:
            return UncertainDelivery(f"{text} after it received the message; it may or may not have been sent",
                                     category=category, code=status)
        advice = reply_advice(message)
        if advice:
            return ApiRejected(f"Microsoft refused to send the message to {who} ({text})", category=advice[0],
                               code=status, fix=(advice[1],))
        if category == "recipient_rejected":
            return ApiRejected(f"Microsoft Graph refused the recipient {who} ({text})", category=category, code=status)
        return ApiRejected(f"Microsoft Graph refused to send the message to {who} ({text})", category=category,
                           code=status)


def classify(status: int, code: str, message: str, wait: float | None = None, *,
             retry_after_given: bool = False) -> tuple[type, str]:
    """The exception class and category of a Graph error answer (status, Graph's error code and
    message, the wait it asked for)."""
    low = code.lower()
    if _QUOTA_WORDS.search(code + " " + message) or (status == 429 and wait is not None and wait > LONG_WAIT_S):
        return ApiThrottled, "quota_exceeded"
    if status == 429 or low in _THROTTLE_CODES or "mailboxconcurrency" in message.lower():
        return ApiThrottled, "rate_limited"
    if status == 503 and retry_after_given:  # Graph's throttling answer: nothing was processed
        return ApiThrottled, "rate_limited"
    if status == 401:
        return OAuthError, "microsoft_sign_in"
    if status == 403 and (low in _ACCESS_CODES or re.search(r"access ?denied|scope|permission|consent", message, re.I)):
        return OAuthError, "microsoft_consent"
    if status >= 500:
        return UncertainDelivery, "server_error"
    if status == 413:
        return ApiRejected, "attachment_error"
    if status == 400 and _RECIPIENT_WORDS.search(code + " " + message):
        return ApiRejected, "recipient_rejected"
    return ApiRejected, "message_rejected"


def graph_error(response: Any) -> tuple[str, str]:
    """Graph's error code and message, cleaned for display."""
    try:
        err = response.json().get("error")
    except (ValueError, AttributeError):
        return "", clean(response.text or "")[:300]
    if isinstance(err, str):
        return clean(err)[:80], ""
    if not isinstance(err, dict):
        return "", ""
    return clean(err.get("code") or "")[:80], clean(err.get("message") or "")[:300]
