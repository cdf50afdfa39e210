"""Reading a campaign's bounces and replies through the Gmail API, read-only (gmail.readonly).

Only when the user chose it: a sign-in of its own with their own OAuth client
(``bulk-mailer gmail login --read``; see backend/google_auth.py for why). ``GmailReader`` has the
few calls the Tracker (backend/mailbox/track.py) makes of an IMAP client (open, folders,
examine, uids, peek, move, close), answered with two Gmail API calls only:

- ``users.messages.list`` with ``labelIds`` INBOX or SPAM (the two folders) and a ``q`` of
  ``after:<date>`` (the day before the campaign), page by page;
- ``users.messages.get`` with ``format=raw`` (the whole message, base64url), ``format=minimal``
  for its arrival time only in the fallback below.

It has no call that changes anything: no modify, trash, delete or insert, so no label or
UNREAD flag can change, whatever the Tracker asks (``move`` moves nothing and says so).

The read position: Gmail's message ids are hexadecimal numbers that grow with the time a
message reached the mailbox, so each id read as an int is the "UID" the Tracker keeps (folder
"UIDVALIDITY" 1). Should an id ever not be such a number, the folder falls back to positions
made of each message's arrival time (``internalDate``, ms) with a tie-breaker (UIDVALIDITY 2): the
Tracker then reads the folder since the campaign once more and goes on from there.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import re
from typing import Any

from backend.errors import ConnectError, OAuthError, TransportError
from backend.google_auth import (
    FIX_READ,
    HTTP_TIMEOUT_S,
    GoogleAccount,
    _clean,
    _http_session,
    google_error,
)
from backend.mailbox.imap import FETCH_LIMIT
from backend.redact import Redactor

log = logging.getLogger(__name__)

FOLDERS = ("INBOX", "SPAM")  # Gmail's labels for the two folders track reads
BY_ID, BY_TIME = 1, 2  # the "UIDVALIDITY" of each way of numbering a folder's messages
PAGE = 500  # ids per messages.list page (Gmail's largest)
_HEX_ID = re.compile(r"^[0-9a-f]{1,16}$")
_TIE = 1000  # positions by time: ms * _TIE + the order among messages of the same ms


def mailbox_name(email: str) -> str:
    """The key the journal keeps the read position under, and what the faces show."""
    return f"{email} (Gmail API)"


def id_position(message_id: str) -> int | None:
    """A Gmail message id as an increasing int, or None when it is not a hex number that fits."""
    if not _HEX_ID.match(message_id.lower()):
        return None
    value = int(message_id, 16)
    return value if value < 2**63 else None  # the journal keeps it as SQLite's 64-bit int


class GmailReader:
    """The signed-in mailbox (the sign-in for reading), read through the Gmail API, never changed."""

    def __init__(self, account: GoogleAccount, since: dt.date, *, timeout: float = HTTP_TIMEOUT_S,
                 session: Any = None) -> None:
        self.account = account
        self.since = since
        self.timeout = timeout
        self._session = session
        base = account.endpoints.api_base
        self.url = f"{base}/gmail/v1/users/me/messages"
        self.host = base.split("://", 1)[-1].split("/", 1)[0]
        self.redact = Redactor()
        self.email = ""
        self._label: str | None = None
        self._ids: dict[int, str] = {}  # position -> Gmail id, of the folder open now
        self._scheme = BY_ID

    @property
    def mailbox(self) -> str:
        return mailbox_name(self.email or self.account.require("read").email)

    # -- the Tracker's calls ---------------------------------------------------------------------

    def open(self) -> None:
        """Load the sign-in for reading and renew its access token if needed (OAuthError if none)."""
        token = self.account.require("read")
        self.email = token.email
        self.redact.add_token(token.refresh_token, token.email)
        self.redact.add_token(self.account.access_token(), token.email)
        if self._session is None:
            self._session = _http_session()

    def folders(self, want: str = "\\junk") -> list[tuple[set[str], str]]:
        """INBOX, and SPAM flagged as the Junk folder."""
        return [(set(), "INBOX"), ({"\\junk"}, "SPAM")]

    def examine(self, folder: str) -> int:
        """List the folder's messages since the day before the campaign; how they are numbered."""
        if folder not in FOLDERS:
            raise TransportError(f"Gmail API: no folder '{folder}' (only {' and '.join(FOLDERS)} are read)",
                                 category="imap_folder_not_found")
        self._label = folder
        listed = self._list(folder)
        positions = [id_position(i) for i in listed]
        if all(p is not None for p in positions):
            self._scheme = BY_ID
            self._ids = {p: i for p, i in zip(positions, listed, strict=True) if p is not None}
        else:
            log.info("Gmail message ids in %s are not numbers: numbering them by arrival time", folder)
            self._scheme = BY_TIME
            self._ids = {}
            by_ms: dict[int, list[str]] = {}
            for i in listed:
                by_ms.setdefault(self._arrived_ms(i), []).append(i)
            for ms, ids in by_ms.items():
                for n, i in enumerate(sorted(ids)[:_TIE]):
                    self._ids[ms * _TIE + n] = i
        return self._scheme

    def uids(self, *criteria: str) -> list[int]:
        """The positions of the folder open now: all listed ("SINCE" the campaign), or those after
        N ("UID", "N+1:*")."""
        found = sorted(self._ids)
        if len(criteria) == 2 and criteria[0] == "UID" and criteria[1].endswith(":*"):
            first = int(criteria[1].split(":", 1)[0])
            return [p for p in found if p >= first]
        return found

    def peek(self, uids: list[int], limit: int = FETCH_LIMIT) -> list[tuple[int, str | None, bytes]]:
        """(position, arrival time as IMAP writes it, the message's first limit bytes) of each;
        messages.get changes nothing (no UNREAD label is removed)."""
        out = []
        for uid in uids:
            ident = self._ids.get(uid)
            if ident is None:
                continue
            answer = self._get(f"{self.url}/{ident}", {"format": "raw"}, missing_ok=True)
            if answer is None:  # deleted since it was listed
                continue
            raw = answer.get("raw") if isinstance(answer, dict) else None
            if not isinstance(raw, str):
                log.warning("Gmail gave message %s without its raw form; skipped", ident)
                continue
            try:
                data = base64.urlsafe_b64decode(raw.rstrip("=") + "=" * (-len(raw.rstrip("=")) % 4))
            except (binascii.Error, ValueError):
                log.warning("Gmail gave message %s in a form that cannot be decoded; skipped", ident)
                continue
            out.append((uid, _internaldate(answer.get("internalDate")), data[:limit]))
        return out

    def move(self, folder: str, uids: list[int], to: str) -> int:
        """Nothing is moved: the sign-in for reading can only read (and this reader has no call
        that changes anything)."""
        log.info("the Gmail API sign-in for reading cannot move messages: %d bounce notice(s) stay in %s",
                 len(uids), folder)
        return 0

    def close(self) -> None:
        """Nothing to hang up: each call is one HTTPS request."""
        self._ids, self._label = {}, None

    # -- the two calls ---------------------------------------------------------------------------

    def _list(self, label: str) -> list[str]:
        """Every message id under the label since the day before the campaign (newest first, as Gmail lists)."""
        params: dict[str, Any] = {"labelIds": label, "q": f"after:{self.since:%Y/%m/%d}", "maxResults": PAGE}
        if label == "SPAM":
            params["includeSpamTrash"] = "true"  # without it Gmail leaves SPAM out of every list
        ids: list[str] = []
        seen_tokens: set[str] = set()
        while True:
            answer = self._get(self.url, params) or {}
            for m in answer.get("messages") or []:
                if isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"] not in ids:
                    ids.append(m["id"])
            token = answer.get("nextPageToken")
            if not isinstance(token, str) or not token or token in seen_tokens:
                return ids
            seen_tokens.add(token)
            params = {**params, "pageToken": token}

    def _arrived_ms(self, ident: str) -> int:
        answer = self._get(f"{self.url}/{ident}", {"format": "minimal"}, missing_ok=True) or {}
        try:
            return int(answer.get("internalDate"))
        except (TypeError, ValueError):
            return 0

    def _get(self, url: str, params: dict[str, Any], *, missing_ok: bool = False) -> dict[str, Any] | None:
        """GET with the access token; a 401 renews it once. Errors as MailerErrors."""
        response = self._request(url, params, self.account.access_token())
        if response.status_code == 401:
            log.info("Gmail answered 401: renewing the access token once")
            response = self._request(url, params, self.account.access_token(force_refresh=True))
        if response.status_code == 404 and missing_ok:
            return None
        if 200 <= response.status_code < 300:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if not isinstance(answer, dict):
                raise TransportError(f"Gmail API {self.host}: an answer that is not Gmail's (HTTP "
                                     f"{response.status_code}, not JSON): check BULK_MAILER_GOOGLE_API_BASE",
                                     category="server_error")
            return answer
        raise self._error(response)

    def _request(self, url: str, params: dict[str, Any], access_token: str) -> Any:
        import requests

        self.redact.add_token(access_token)
        try:
            return self._session.get(url, params=params, headers={"Authorization": f"Bearer {access_token}"},
                                     allow_redirects=False, timeout=(min(self.timeout, 15.0), self.timeout))
        except requests.exceptions.SSLError as exc:
            raise ConnectError(f"Gmail API {self.host}: the secure connection failed ({self.redact(_clean(exc))[:200]})",
                               category="certificate_invalid" if "CERTIFICATE" in str(exc).upper()
                               else "tls_handshake_failed") from None
        except requests.exceptions.Timeout:
            raise ConnectError(f"Gmail API {self.host}: no answer within {self.timeout:g} s",
                               category="timeout") from None
        except requests.exceptions.ConnectionError as exc:
            raise ConnectError(f"Gmail API {self.host}: could not connect ({self.redact(_clean(exc))[:200]})",
                               category="connection_refused") from None

    def _error(self, response: Any) -> Exception:
        status = int(response.status_code)
        message, reasons = google_error(response)
        text = f"Gmail API {status}: {self.redact(message)}" if message else f"Gmail API HTTP {status}"
        if status == 401:
            return OAuthError(f"Google no longer accepts the sign-in for reading of {self.email} ({text})",
                              code=status, fix=FIX_READ)
        if status == 403 and not reasons & {"ratelimitexceeded", "userratelimitexceeded", "quotaexceeded"}:
            return OAuthError(f"Google refused to let Bulk Mailer read {self.email or 'the mailbox'} ({text})",
                              code=status, fix=(
                                  "Enable the Gmail API in your Google Cloud project (APIs & Services > Library > "
                                  "Gmail API), and tick the box to view your email messages when signing in.",
                                  *FIX_READ))
        if status in (403, 429):
            return TransportError(f"Gmail asks to slow down ({text}); what was read so far is kept",
                                  category="rate_limited", code=status, fix=("Check again in a few minutes.",))
        if status >= 500:
            return TransportError(f"{text}; what was read so far is kept", category="server_error", code=status,
                                  fix=("Check again later.",))
        return TransportError(f"Gmail refused to list or read the mailbox ({text})", category="server_error",
                              code=status)


def _internaldate(ms: object) -> str | None:
    """Gmail's internalDate (ms since 1970, a string) as IMAP's INTERNALDATE is written."""
    try:
        moment = dt.datetime.fromtimestamp(int(str(ms)) / 1000, dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return moment.strftime("%d-%b-%Y %H:%M:%S +0000")


def sent_as(spec: dict[str, Any]) -> str:
    """The address a journaled campaign was sent from (its Google sign-in, else its login)."""
    return str((spec.get("gmail") or {}).get("email") or (spec.get("settings") or {}).get("user") or "")


def reader_for(account: GoogleAccount, spec: dict[str, Any], created: str | None) -> GmailReader:
    """The reader of a campaign's mailbox: the sign-in for reading, which must be the account the
    campaign was sent from (OAuthError with the fix otherwise)."""
    from backend.errors import SettingsError

    if (spec.get("settings") or {}).get("local_inbox"):
        raise SettingsError("provider", "this campaign went to the local test inbox: there is no mailbox to read "
                            "bounces and replies from")
    token = account.require("read")
    sender = sent_as(spec)
    if "@" in sender and sender.lower() != token.email.lower():
        raise OAuthError(f"the Google sign-in for reading is {token.email}, but this campaign was sent from {sender}: "
                         "its bounces and replies are in that mailbox", fix=(
                             f"Sign in for reading as {sender}: bulk-mailer gmail login --read --client-secrets FILE.",
                             *FIX_READ[1:]))
    try:
        began = dt.datetime.fromisoformat(created).date() if created else dt.datetime.now(dt.UTC).date()
    except ValueError:
        began = dt.datetime.now(dt.UTC).date()
    reader = GmailReader(account, began - dt.timedelta(days=1))
    reader.email = token.email
    return reader
