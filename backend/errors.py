"""Every failure the app can meet, as an exception tree and as a plain-words category.

    MailerError                      anything we raise on purpose; has .category and .describe()
    +-- InputError                   the user's input cannot be used; nothing was sent
    |   +-- SettingsError            an account setting is invalid (.field names it)
    |   +-- RecipientFileError       a recipient file cannot be read at all (.path)
    |   +-- TemplateError            a template fails to compile or render (.row, .field)
    |   +-- HeaderValueError         CR/LF/NUL or another control in a header value (.row, .field)
    |   +-- AttachmentError          an attachment cannot be read or is refused
    +-- DiskFullError                the disk is full: a run pauses, nothing is lost (.folder)
    +-- TransportError               talking to the server went wrong (.code, .host, .port)
        +-- ConnectError             DNS, refused, timed out, dropped, TLS, certificate
        +-- AuthError                auth_failed, auth_not_offered, plaintext_auth_refused
        |   +-- OAuthError           oauth_error: Google sign-in failed, was cancelled or revoked
        +-- RejectedError            the server answered MAIL/RCPT/DATA with an error code
        |   +-- ApiRejected          an HTTP API refused the message (4xx: final, not retried)
        +-- ApiThrottled             an HTTP API asked to slow down or hit a quota (429, 403)
        +-- UncertainDelivery        the connection dropped after the message's final dot (or
                                     an HTTP API failed after receiving the request): the
                                     server may or may not have accepted it

Library exceptions (smtplib, ssl, socket, requests, oauthlib) are translated to these only at the transport
boundary, with ``raise ... from exc`` and ``host:port`` in the message.  The categories and
their causes and fix steps live here, once; the CLI, the UI and the docs read them from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Category:
    """A kind of failure: a short title, the cause in plain words, numbered fix steps."""

    name: str
    title: str
    cause: str
    fix: tuple[str, ...]


def _c(name: str, title: str, cause: str, *fix: str) -> Category:
    return Category(name, title, cause, tuple(fix))


CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in (
        _c(
            "auth_failed",
            "Wrong username or password",
            "The server refused the username and password.",
            "Check the username: most providers want the full email address.",
            "Retype the password; if your account uses two-step verification, the normal "
            "password will not work over SMTP: create an app password and use that instead.",
            "Check that SMTP access is enabled for the mailbox in the provider's settings.",
        ),
        _c(
            "auth_not_offered",
            "The server does not offer login",
            "The server did not offer any login method (AUTH) on this connection. Many servers "
            "only offer it after the connection is encrypted.",
            "Choose Security STARTTLS (usually port 587) or SSL/TLS (usually port 465).",
            "If this is a relay that needs no login, leave the username empty.",
        ),
        _c(
            "plaintext_auth_refused",
            "Password would be sent unencrypted",
            "The connection is not encrypted, so the password would travel in clear text. "
            "Bulk Mailer refuses to send it.",
            "Choose Security STARTTLS (usually port 587) or SSL/TLS (usually port 465).",
            "Only for a trusted local relay: allow login over an unencrypted connection "
            "explicitly (--allow-plaintext-auth).",
        ),
        _c(
            "connection_refused",
            "Connection refused",
            "The server's address was reached, but nothing accepted a connection on that port.",
            "Check the port: 587 (STARTTLS) and 465 (SSL/TLS) are the usual ones, 25 is often "
            "blocked for home connections.",
            "Check the host name for typos.",
            "If the server is your own, check that it is running and listening on that port.",
        ),
        _c(
            "timeout",
            "The server did not answer in time",
            "No answer came before the time limit: a firewall, a blocked outbound port or a "
            "wrong port usually causes this.",
            "Check the port: 587 (STARTTLS) and 465 (SSL/TLS) are the usual ones.",
            "Many internet providers and networks block port 25; use 587 or 465.",
            "Check that a firewall, antivirus or VPN is not blocking the app's outgoing "
            "connections.",
            "Try again later: the server may be overloaded.",
        ),
        _c(
            "dns_failure",
            "Server name not found",
            "The server's host name could not be resolved to an address.",
            "Check the host name for typos (for example smtp.gmail.com).",
            "Check that this computer is online and can resolve names.",
        ),
        _c(
            "tls_handshake_failed",
            "Secure connection failed",
            "The encrypted (TLS) connection could not be set up.",
            "Match the security to the port: 465 = SSL/TLS, 587 = STARTTLS.",
            "If the server is old, it may only offer outdated TLS versions that are no longer "
            "allowed; ask its administrator to update it.",
        ),
        _c(
            "tls_mode_mismatch",
            "Security setting does not match the port",
            "The server speaks a different security mode on this port than the one chosen.",
            "Port 465 speaks SSL/TLS: choose SSL/TLS.",
            "Port 587 (and 25) speak STARTTLS: choose STARTTLS.",
        ),
        _c(
            "certificate_invalid",
            "The server's certificate is not valid",
            "The server's certificate could not be verified: it is self-signed or from an "
            "unknown authority, expired, or issued for another host name.",
            "Check the host name: use the name the certificate was issued for (for example "
            "smtp.gmail.com, not an IP address or alias).",
            "Check this computer's date and time: a wrong clock makes valid certificates look "
            "expired.",
            "For a company server with its own certificate authority, add its CA file "
            "(--ca-file).",
            "Only for a test server you control: skip verification explicitly "
            "(--insecure-skip-verify).",
        ),
        _c(
            "sender_rejected",
            "Sender address refused",
            "The server refused the From address.",
            "Use the address of the account you log in with, or an alias the provider has "
            "verified for it.",
            "Check the From address for typos.",
        ),
        _c(
            "recipient_rejected",
            "Recipient refused",
            "The server refused this recipient's address.",
            "Check the address for typos; the mailbox may not exist any more.",
            "If many recipients are refused, the provider may be limiting you: slow down and "
            "try again later.",
        ),
        _c(
            "message_rejected",
            "Message refused",
            "The server refused the message itself, often as spam, for its size or for policy.",
            "Read the server's reply below for the reason.",
            "Avoid spam-like content, large attachments and many links; send from an address "
            "whose domain has SPF and DKIM set up.",
        ),
        _c(
            "rate_limited",
            "Sending too fast",
            "The server is limiting how fast this account may send.",
            "Increase the delay between messages.",
            "Wait a while and resume; the limit usually resets within minutes to an hour.",
        ),
        _c(
            "quota_exceeded",
            "Daily sending limit reached",
            "The account has reached its provider's sending limit for the day.",
            "Wait until the limit resets (usually 24 hours) and resume.",
            "Split large lists over several days, or use a sending service made for bulk mail.",
        ),
        _c(
            "account_protection",
            "Paused to protect your account",
            "Several of the last answers were policy refusals (5.7.x) or throttling (4.7.x), or too many of "
            "the campaign's messages bounced: the provider may be about to limit or suspend the account, "
            "and sending on would make it worse.",
            "Read the refusals in the results (the server's own words say why).",
            "Wait a few hours (a day for Gmail, Outlook or Yahoo) before resuming the campaign.",
            "Check the content check and the warnings in Review & send, and clean the list of old or "
            "bought addresses.",
            "Send to fewer people a day (a lower daily limit, or the warm-up option) when you resume.",
        ),
        _c(
            "scheduled_wait",
            "Waiting for its time",
            "The campaign waits: its send window is closed, or the next recipients' local delivery time "
            "has not come yet.",
            "Nothing to do: it continues by itself at the time shown, while the app is open or the "
            "timer that runs scheduled campaigns is installed (Review & send, or bulk-mailer timer install).",
            "To send the rest now instead, resume it with --now (or Resume in History).",
        ),
        _c(
            "greylisted",
            "Delayed by the recipient's server (greylisting)",
            "The recipient's server turns away mail from senders it has not seen before for a few "
            "minutes, to filter spam. Real servers try again later and are then accepted.",
            "Send to this recipient again after 5 to 30 minutes; it is normally accepted then.",
            "Nothing is wrong with your settings or your message.",
        ),
        _c(
            "server_disconnected",
            "The server closed the connection",
            "The server closed the connection unexpectedly.",
            "Try again; if it keeps happening, increase the delay between messages.",
            "Check that the security setting matches the port (465 = SSL/TLS, 587 = STARTTLS).",
        ),
        _c(
            "invalid_address",
            "Invalid email address",
            "The address is not a valid email address.",
            "Correct the address in the recipient list (or the From field) and try again.",
        ),
        _c(
            "template_error",
            "The message could not be built",
            "The subject or message could not be filled in for this recipient.",
            "Check that every {{ field }} used in the message is a column of the recipient "
            "list, spelled the same way, or give it a default: {{ name | default('there') }}.",
            "Remove line breaks and control characters from the subject and from names.",
        ),
        _c(
            "attachment_error",
            "Attachment problem",
            "An attachment could not be read or is not allowed.",
            "Check that the file exists, is readable and is inside the attachments folder.",
        ),
        _c(
            "oauth_error",
            "Google sign-in failed",
            "Signing in with Google did not complete or is no longer valid.",
            "Sign in again (Sign in with Google in the window, or bulk-mailer gmail login).",
            "Check that the OAuth client file comes from your Google Cloud project, is of type "
            "Desktop app, and that the Gmail API is enabled in that project.",
        ),
        _c(
            "microsoft_sign_in",
            "Microsoft sign-in failed",
            "Signing in with Microsoft did not complete, has expired or was revoked.",
            "Sign in with Microsoft again (in the window, or bulk-mailer microsoft login).",
        ),
        _c(
            "microsoft_consent",
            "Microsoft permissions not granted",
            "The permissions Bulk Mailer asks for (send mail as you, sign you in, keep access) were "
            "not granted, or the organisation requires an administrator to approve the app.",
            "Sign in with Microsoft again and click Accept on Microsoft's page.",
            "Check the app registration's API permissions: the delegated Microsoft Graph permissions "
            "Mail.Send, User.Read and offline_access, and SMTP.Send for SMTP.",
            "In an organisation, ask an administrator to grant admin consent to the app registration "
            "(Microsoft Entra admin center > App registrations > the app > API permissions).",
        ),
        _c(
            "microsoft_app",
            "The Microsoft app registration is not set up for this",
            "The app registration (client id) used to sign in does not allow this sign-in: a wrong "
            "client id, platform, redirect URI, account type or tenant.",
            "In the Microsoft Entra admin center > App registrations > the app > Authentication: add "
            "the platform 'Mobile and desktop applications' with the redirect URI http://localhost "
            "and set 'Allow public client flows' to Yes.",
            "Check the client id (the app's 'Application (client) ID') and that 'Supported account "
            "types' include the account you sign in with.",
        ),
        _c(
            "smtp_auth_disabled",
            "SMTP login is turned off for this mailbox",
            "Microsoft answered 535 5.7.139 (or 5.7.30): authenticated SMTP (SMTP AUTH) is disabled "
            "for the mailbox or the whole organisation, whatever the sign-in.",
            "An administrator must turn Authenticated SMTP on: Microsoft 365 admin center > Users > "
            "Active users > the user > Mail > Manage email apps.",
            "Or send through Microsoft Graph (Send through: Microsoft Graph, or send --channel "
            "microsoft), which needs no SMTP AUTH.",
        ),
        _c(
            "basic_auth_disabled",
            "Microsoft no longer accepts a password here",
            "Microsoft has turned off password (basic) authentication for this account: only "
            "Sign in with Microsoft (OAuth) works.",
            "Sign in with Microsoft (in the window, or bulk-mailer microsoft login), then send with "
            "it: SMTP with --auth xoauth2, or --channel microsoft.",
        ),
        _c(
            "sending_restricted",
            "Microsoft restricts sending from this account",
            "Microsoft has limited or blocked sending from this account or tenant (a new tenant, "
            "suspected spam, or a reputation limit).",
            "Read Microsoft's reply below for the code; an administrator can see restricted users in "
            "the Microsoft Defender portal > Restricted entities.",
        ),
        _c(
            "sender_authentication",
            "The sender's domain is not authenticated",
            "The recipient's provider requires SPF, DKIM and DMARC from bulk senders and the From "
            "domain does not pass them (Outlook.com: 550 5.7.515).",
            "Publish SPF and DKIM records for the From domain and a DMARC policy (p=none at least) "
            "aligned with them, or send from the provider's own address.",
        ),
        _c(
            "server_error",
            "The server failed while handling the message",
            "The server answered with an internal error (HTTP 5xx) after it had received the "
            "message, so it may or may not have been sent.",
            "Look in the Sent folder of the account before sending to this recipient again.",
            "Try again later: Google's outages are listed at www.google.com/appsstatus.",
        ),
        _c(
            "imap_auth_failed",
            "The mailbox (IMAP) refused the login",
            "The IMAP server, where the copy in Sent is filed, refused the username and "
            "password. The message itself was sent; only its copy in Sent is missing.",
            "Check that IMAP access is turned on for the mailbox in the provider's settings.",
            "Use the same username as for sending (usually the full email address); if the "
            "mailbox has its own password, set BULK_MAILER_IMAP_PASSWORD.",
            "If the account uses two-step verification, the normal password will not work over "
            "IMAP: create an app password and use that instead.",
            "Or turn the copy off: --sent-copy never (or untick Keep a copy in Sent).",
        ),
        _c(
            "imap_connection_failed",
            "The mailbox (IMAP) could not be reached",
            "The IMAP server, where the copy in Sent is filed, could not be reached or closed "
            "the connection. The message itself was sent; only its copy in Sent is missing.",
            "Check the IMAP server's name and port: 993 (SSL/TLS) and 143 (STARTTLS) are the "
            "usual ones (--imap-host, --imap-port, --imap-security).",
            "Check that a firewall, antivirus or VPN is not blocking the app's outgoing "
            "connections to that port.",
            "Resume the campaign later: copies not filed yet are filed then.",
        ),
        _c(
            "imap_tls_failed",
            "Secure connection to the mailbox (IMAP) failed",
            "The encrypted connection to the IMAP server could not be set up, or the server "
            "offers no encryption; Bulk Mailer never sends a password over an unencrypted "
            "connection.",
            "Match the security to the port: 993 = SSL/TLS, 143 = STARTTLS "
            "(--imap-security ssl|starttls).",
            "If the server's certificate comes from a company authority, add its CA file "
            "(--ca-file).",
        ),
        _c(
            "imap_folder_not_found",
            "No Sent folder found",
            "The mailbox has no folder marked as Sent (SPECIAL-USE \\Sent) and none of the usual "
            "names (Sent, Sent Items, Sent Messages, INBOX.Sent, [Gmail]/Sent Mail, ...).",
            "Open the mailbox in webmail or a mail program once: most create the Sent folder "
            "then.",
            "Or turn the copy off: --sent-copy never (or untick Keep a copy in Sent).",
        ),
        _c(
            "invalid_settings",
            "Invalid setting",
            "A setting is missing or not valid.",
            "Correct the setting named in the message and try again.",
        ),
        _c(
            "action_unavailable",
            "Not possible right now",
            "This action does not fit what the app is doing at the moment.",
            "Do what the message says first, then try again.",
        ),
        _c(
            "internal_error",
            "Something went wrong",
            "An unexpected error happened inside Bulk Mailer.",
            "The details are in the log file (bulk-mailer.log in the app's log folder); "
            "please report it.",
        ),
        _c(
            "file_error",
            "File problem",
            "A file could not be read or written.",
            "Check the path and that the file is readable (or the folder writable).",
        ),
    )
}


MAX_RETRY_AFTER_S = 7 * 24 * 3600.0


class MailerError(Exception):
    """Base of every error we raise on purpose; carries a category and optional details."""

    default_category = "invalid_settings"

    def __init__(self, message: str, *, category: str | None = None, fix: tuple[str, ...] | list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.category = category or self.default_category
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown error category {self.category!r}")
        self.extra_fix: tuple[str, ...] = tuple(fix or ())

    def fix_steps(self, provider: str | None = None) -> list[str]:
        """Specific steps first, then the category's general steps, then the provider's."""
        from backend.presets import provider_advice  # presets imports nothing of ours

        steps = list(self.extra_fix)
        steps += [s for s in CATEGORIES[self.category].fix if s not in steps]
        if provider:
            steps += [s for s in provider_advice(provider, self.category) if s not in steps]
        return steps

    def describe(self, provider: str | None = None) -> dict[str, Any]:
        """The bridge/CLI error shape: category, message, cause, fix steps."""
        cat = CATEGORIES[self.category]
        return {
            "category": self.category,
            "title": cat.title,
            "message": self.message,
            "cause": cat.cause,
            "fix": self.fix_steps(provider),
        }


class InputError(MailerError):
    """The user's input cannot be used as it is; nothing was sent."""


class SettingsError(InputError):
    """An account setting is invalid; .field names it (host, port, security, ...)."""

    def __init__(self, field: str, message: str, **kw: Any) -> None:
        super().__init__(f"{field}: {message}", **kw)
        self.field = field


class RecipientFileError(InputError):
    """A recipient file cannot be read at all (missing, empty, no email column)."""

    default_category = "file_error"


class TemplateError(InputError):
    """A template fails to compile or to render for a row (.row is the file line, .field)."""

    default_category = "template_error"

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None, **kw: Any) -> None:
        where = f"line {row}: " if row is not None else ""
        super().__init__(where + message, **kw)
        self.row = row
        self.field = field


class HeaderValueError(TemplateError):
    """A header value (subject, a name, an address) holds CR, LF, NUL or another control."""


class AttachmentError(InputError):
    """An attachment cannot be read or is refused."""

    default_category = "attachment_error"


class DiskFullError(MailerError):
    """The disk holding .folder is full (SQLITE_FULL, ENOSPC): a campaign pauses, keeping what it
    recorded; .needed is the free space (bytes) to make before resuming."""

    default_category = "file_error"

    def __init__(self, message: str, *, folder: str, needed: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.folder = folder
        self.needed = needed


class TransportError(MailerError):
    """Talking to the server failed; .code is the SMTP reply code when there was one."""

    default_category = "server_disconnected"

    def __init__(
        self,
        message: str,
        *,
        category: str | None = None,
        code: int | None = None,
        host: str | None = None,
        port: int | None = None,
        fix: tuple[str, ...] | list[str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        if host is not None:
            message = f"{host}:{port}: {message}"
        super().__init__(message, category=category, fix=fix)
        self.code = code
        self.host = host
        self.port = port
        # Seconds the server asked us to wait (an HTTP Retry-After, a quota's reset time);
        # None when it did not say.
        # A server's word is capped (a week) and sanitised: its number feeds date arithmetic.
        if retry_after is not None and not (retry_after >= 0 and math.isfinite(retry_after)):
            retry_after = None
        self.retry_after = min(retry_after, MAX_RETRY_AFTER_S) if retry_after is not None else None

    @property
    def transient(self) -> bool:
        """A 4xx reply or a dropped/timed-out connection: trying again later may work."""
        if self.code is not None:
            return 400 <= self.code < 500
        return self.category in {"timeout", "server_disconnected", "rate_limited"}


class ConnectError(TransportError):
    """The connection could not be opened, secured or kept (DNS, TCP, TLS, certificate)."""


class AuthError(TransportError):
    """Login failed or was refused; a campaign stops at once on this."""

    default_category = "auth_failed"


class RejectedError(TransportError):
    """The server answered MAIL FROM, RCPT TO or DATA with an error reply."""

    default_category = "message_rejected"


class OAuthError(AuthError):
    """Google sign-in failed, was cancelled, timed out or was revoked; .fix says what to do."""

    default_category = "oauth_error"


class _HttpStatus:
    """HTTP's reading of a status code, unlike SMTP's: a 4xx is final except a rate limit."""

    category: str
    code: int | None

    @property
    def transient(self) -> bool:
        return self.category in ("rate_limited", "quota_exceeded") or self.code == 429 or (self.code or 0) >= 500


class ApiRejected(_HttpStatus, RejectedError):
    """An HTTP API refused this message (400, 404, 413, ...): sending it again will not help."""


class ApiThrottled(_HttpStatus, TransportError):
    """An HTTP API asked to slow down (429, 403 rate limits) or hit a quota; .retry_after says
    how long it asked to wait, when it did."""

    default_category = "rate_limited"


class UncertainDelivery(TransportError):
    """The connection broke after the whole message was sent; it may have been delivered."""

    default_category = "server_disconnected"


def internal_error(what: str) -> dict[str, Any]:
    """The error shape of a bug: the details go to the log, never to the page or terminal."""
    from backend import paths

    return {"category": "internal_error", "title": CATEGORIES["internal_error"].title, "message": what,
            "cause": "This is a bug in Bulk Mailer.",
            "fix": [f"The details are in the log file in {paths.log_dir()}; please report it."]}


def category_names() -> list[str]:
    """All category names, for docs and for the UI's lookup of fix steps."""
    return list(CATEGORIES)
