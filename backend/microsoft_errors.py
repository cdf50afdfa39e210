"""Microsoft's answers in plain words: sign-in (AADSTS) errors, SMTP replies of Exchange Online
and Outlook.com, and Microsoft Graph's error codes, each mapped to an error category of
backend.errors with the fix. Pure: no network, no state; the sign-in, the SMTP login and the
Graph transport raise what these return, so every face words a Microsoft failure the same way.
"""

from __future__ import annotations

import re

from backend.errors import OAuthError

SIGN_IN_AGAIN = "Sign in with Microsoft again (in the window, or: bulk-mailer microsoft login)."
REGISTER = (
    "In the Microsoft Entra admin center > App registrations > your app > Authentication: add the "
    "platform 'Mobile and desktop applications' with the redirect URI http://localhost, and set "
    "'Allow public client flows' to Yes."
)
_USE_GRAPH = ("Or send through Microsoft Graph instead of SMTP (Send through: Microsoft Graph, or "
              "send --channel microsoft): it needs no SMTP AUTH.")
_ADMIN_SMTP = ("An administrator must turn Authenticated SMTP on for your mailbox: Microsoft 365 admin "
               "center > Users > Active users > you > Mail > Manage email apps > Authenticated SMTP "
               "(or for the organisation: Set-TransportConfig -SmtpClientAuthenticationDisabled $false).")

# AADSTS code -> (category, what happened, fix steps)
_AADSTS: dict[int, tuple[str, str, tuple[str, ...]]] = {
    65001: ("microsoft_consent", "the permissions Bulk Mailer asks for were not granted (consent required)",
            ("Sign in with Microsoft again and accept the permissions (send mail as you, sign you in, "
             "keep access).",)),
    65004: ("microsoft_consent", "the permissions were declined on Microsoft's consent page",
            ("Sign in with Microsoft again and click Accept.",)),
    90094: ("microsoft_consent", "your organisation requires an administrator to approve Bulk Mailer",
            ("Ask your Microsoft 365 administrator to grant admin consent to your app registration "
             "(Entra admin center > App registrations > your app > API permissions > Grant admin "
             "consent), then sign in again.",)),
    90095: ("microsoft_consent", "your organisation requires an administrator to approve Bulk Mailer",
            ("Request approval on Microsoft's page, or ask your administrator to grant admin consent "
             "to the app (Entra admin center > Enterprise applications > Admin consent requests).",)),
    50011: ("microsoft_app", "the redirect URI does not match the app registration (redirect URI mismatch)",
            (REGISTER,)),
    500113: ("microsoft_app", "the app registration has no redirect URI for this sign-in", (REGISTER,)),
    7000218: ("microsoft_app", "the app registration is not a public client (it asks for a client secret)",
              ("In the Microsoft Entra admin center > App registrations > your app > Authentication > "
               "Advanced settings, set 'Allow public client flows' to Yes. Bulk Mailer never uses a "
               "client secret.", REGISTER)),
    700016: ("microsoft_app", "no app with this client id exists in the directory",
             ("Check the client id: the 'Application (client) ID' on your app registration's Overview "
              "page (bulk-mailer microsoft login --client-id ID).",
              "If the app was registered for one organisation only, sign in with --tenant <its tenant id>.")),
    50194: ("microsoft_app", "the app is registered for one organisation only, and 'common' was used",
            ("Sign in with --tenant <your tenant id> (the 'Directory (tenant) ID' on the app's Overview "
             "page), or set 'Supported account types' to include other organisations.",)),
    9002331: ("microsoft_app", "the app is registered for personal Microsoft accounts only",
              ("Sign in with --tenant consumers, or change the app's 'Supported account types' to "
               "include work or school accounts.",)),
    9002332: ("microsoft_app", "the app is registered for work or school accounts only",
              ("Sign in with a work or school account, or change the app's 'Supported account types' to "
               "include personal Microsoft accounts.",)),
    50020: ("microsoft_app", "this account does not belong to the organisation the app is registered in",
            ("Sign in with an account of that organisation, or use --tenant common with an app whose "
             "'Supported account types' include all organisations.",)),
    70000: ("microsoft_sign_in", "Microsoft refused the sign-in (invalid grant)", (SIGN_IN_AGAIN,)),
    70008: ("microsoft_sign_in", "the sign-in has expired (it was not used for 90 days, or was revoked)",
            (SIGN_IN_AGAIN,)),
    700082: ("microsoft_sign_in", "the sign-in has expired (it was not used for 90 days)", (SIGN_IN_AGAIN,)),
    50173: ("microsoft_sign_in", "the sign-in ended because the account's password was changed",
            (SIGN_IN_AGAIN,)),
    50076: ("microsoft_sign_in", "Microsoft asks for multi-factor authentication again", (SIGN_IN_AGAIN,)),
    53003: ("microsoft_sign_in", "a Conditional Access policy of your organisation blocked the sign-in",
            ("Ask your administrator which Conditional Access policy applies to Bulk Mailer's app "
             "registration.",)),
    70016: ("microsoft_sign_in", "the device code was not entered yet", (SIGN_IN_AGAIN,)),
    70020: ("microsoft_sign_in", "the device code expired before it was entered",
            ("Run bulk-mailer microsoft login --device-code again and enter the code within 15 minutes.",)),
    28000: ("microsoft_app", "the sign-in asked for permissions of two services at once", (SIGN_IN_AGAIN,)),
}
# OAuth error codes without an AADSTS number
_OAUTH: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "access_denied": ("microsoft_consent", "the sign-in was cancelled or access was denied in the browser",
                      ("Sign in with Microsoft again and click Accept on Microsoft's page.",)),
    "consent_required": _AADSTS[65001],
    "interaction_required": ("microsoft_sign_in", "Microsoft asks you to sign in again", (SIGN_IN_AGAIN,)),
    "invalid_grant": ("microsoft_sign_in", "Microsoft no longer accepts this sign-in (it expired or was revoked)",
                      (SIGN_IN_AGAIN,)),
    "invalid_client": ("microsoft_app", "Microsoft does not accept this app registration (invalid client)",
                       (REGISTER,)),
    "unauthorized_client": ("microsoft_app", "this app registration may not be used for this sign-in",
                            (REGISTER,)),
    "invalid_scope": ("microsoft_consent", "Microsoft refused the permissions asked for (invalid scope)",
                      ("In the app registration > API permissions, add the delegated Microsoft Graph "
                       "permissions Mail.Send, User.Read and offline_access, and SMTP.Send (Office 365 "
                       "Exchange Online, or in Microsoft Graph's list).",)),
    "expired_token": _AADSTS[70020],
    "authorization_declined": _AADSTS[65004],
}
_AADSTS_IN_TEXT = re.compile(r"AADSTS(\d{4,8})")


def clean(text: object) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())[:300]


def sign_in_error(error: str, description: str | None = None, codes: list[int] | tuple[int, ...] = ()) -> OAuthError:
    """An OAuthError for a Microsoft identity platform error answer (error, error_description,
    error_codes), with its category and fix."""
    number = next((int(c) for c in codes if isinstance(c, int)), None)
    if number is None and description:
        m = _AADSTS_IN_TEXT.search(description)
        number = int(m.group(1)) if m else None
    known = _AADSTS.get(number) if number is not None else None
    known = known or _OAUTH.get(error)
    first_line = clean((description or "").splitlines()[0] if description else "")
    detail = f" ({first_line})" if first_line else (f" ({clean(error)})" if error else "")
    if known is None:
        return OAuthError(f"Microsoft sign-in failed{detail}", category="microsoft_sign_in", fix=(SIGN_IN_AGAIN,))
    category, words, fix = known
    return OAuthError(f"Microsoft sign-in: {words}{detail}", category=category, fix=fix)


# -- SMTP (smtp.office365.com, smtp-mail.outlook.com) ------------------------------------------


def smtp_refusal(code: int, text: str, *, oauth: bool) -> tuple[str, tuple[str, ...]]:
    """The category and fix of Microsoft's answer to a login (AUTH), with OAuth2 or a password."""
    low = text.lower()
    if "5.7.139" in text or "5.7.30" in text or "basic authentication is" in low:
        if "smtpclientauthentication" in low or "smtp auth" in low:
            return "smtp_auth_disabled", (_ADMIN_SMTP, _USE_GRAPH)
        if oauth:
            return "smtp_auth_disabled", (_ADMIN_SMTP, _USE_GRAPH)
        return "basic_auth_disabled", (
            "Microsoft no longer accepts a password here: Sign in with Microsoft (in the window, or: "
            "bulk-mailer microsoft login), then log in with it (--auth xoauth2).", _USE_GRAPH)
    if "5.7.3" in text and oauth:
        return "microsoft_sign_in", (
            "Microsoft refused the sign-in's token for SMTP: check that the username is the address "
            "you signed in with, and that the app registration has the delegated permission SMTP.Send.",
            SIGN_IN_AGAIN, _ADMIN_SMTP, _USE_GRAPH)
    if oauth:
        return "microsoft_sign_in", (SIGN_IN_AGAIN, _USE_GRAPH)
    return "auth_failed", ("If the account has no password login any more, Sign in with Microsoft (in the window, "
                           "or: bulk-mailer microsoft login) and log in with it (--auth xoauth2).",)


# What Microsoft's servers answer to MAIL, RCPT or DATA, with the fix; found in the reply text.
SMTP_REPLIES: tuple[tuple[str, str, str], ...] = (
    ("5.2.252", "sender_rejected",
     "'554 5.2.252 SendAsDenied': the From address is not your mailbox: send as the address you signed in "
     "with, or have an administrator grant you Send As permission for it."),
    ("5.7.60", "sender_rejected",
     "'550 5.7.60 ... does not have permissions to send as this sender': use your own address in From, or "
     "have an administrator grant you Send As permission."),
    ("5.7.708", "sending_restricted",
     "'550 5.7.708 Access denied, traffic not accepted from this IP': Microsoft restricts sending from new "
     "or low-reputation Microsoft 365 tenants; an administrator must add a verified custom domain and "
     "contact Microsoft support to lift it."),
    ("5.7.515", "sender_authentication",
     "'550 5.7.515 Access denied, sending domain ... does not meet the required authentication level': "
     "Outlook.com requires SPF, DKIM and DMARC (aligned) from senders of more than 5,000 messages a day: "
     "publish all three for the From domain."),
)


def reply_advice(text: str) -> tuple[str, str] | None:
    """(category, fix) for a Microsoft SMTP reply to MAIL/RCPT/DATA it names, else None."""
    for status, category, fix in SMTP_REPLIES:
        if status in text:
            return category, fix
    return None


# -- Microsoft Graph ----------------------------------------------------------------------------

MAIL_SEND_FIX = (
    "In the app registration > API permissions, add the delegated Microsoft Graph permission Mail.Send, "
    "then sign in with Microsoft again and accept it.")
