"""Provider presets: SMTP host, port, security, sending limits, setup notes and fix advice.

Pure data and four look-ups, standard library only: ``backend.errors`` imports this module
(lazily, through ``backend.settings``), so nothing here may import it back.  Every number is
a provider's published limit as of 2025; where a provider publishes none, the field is None
and ``Limits.note`` says so.  ``Preset.advice`` is keyed by the error categories of
``backend.errors.CATEGORIES`` and adds provider-specific steps after the general ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class Limits:
    """A provider's sending limits; None where the provider does not publish the number."""

    per_day: int | None = None  # messages (or recipients) per day
    per_hour: int | None = None
    per_minute: int | None = None
    per_second: float | None = None
    recipients_per_message: int | None = None
    note: str = ""  # the limits in words, with what each number counts


@dataclass(frozen=True)
class Preset:
    """One provider's SMTP settings, limits, setup notes and per-category fix steps."""

    key: str
    name: str
    host: str  # may contain "{region}": fill it with preset_host()
    port: int
    security: str  # "starttls" | "ssl" | "none"
    domains: tuple[str, ...]  # address domains it serves; empty for services and business
    limits: Limits
    notes: tuple[str, ...]  # shown when the preset is chosen
    advice: Mapping[str, tuple[str, ...]] = field(hash=False)  # category -> extra fix steps
    username_hint: str = ""
    regions: tuple[str, ...] = ()
    default_region: str | None = None
    # SMTP connections a campaign opens at once by default: 1 for a mailbox (providers watch
    # for parallel logins), more for a sending service built for volume.
    connections: int = 1
    # The SPF include a domain publishes so the provider's servers may send for it (the
    # authentication check looks for it in the From domain's SPF chain); empty: not published.
    spf_include: tuple[str, ...] = ()
    # The DKIM selectors the provider signs a custom domain's mail with (<selector>._domainkey);
    # empty where each domain gets its own (the user names them).
    dkim_selectors: tuple[str, ...] = ()


def _preset(*, advice: dict[str, tuple[str, ...]], **kw: object) -> Preset:
    return Preset(advice=MappingProxyType(advice), **kw)  # type: ignore[arg-type]


# Steps shared by several presets -----------------------------------------------------------

_GOOGLE_APP_STEP = (
    "Use an app password, not your normal password (Google refuses it over SMTP): turn on "
    "2-Step Verification, then create one at Google Account > Security > 2-Step Verification "
    "> App passwords (myaccount.google.com/apppasswords) and paste its 16 letters; the spaces "
    "shown are not part of it."
)
_GOOGLE_OAUTH = (
    "Or switch this account to Sign in with Google (Gmail API), which needs no app password."
)
_GOOGLE_WEB_SIGNIN = (
    "If the reply mentions 534-5.7.9 or 534-5.7.14, or Google sent you a security alert, sign "
    "in at mail.google.com in a browser, confirm it was you, then try again."
)
_GOOGLE_OAUTH_STEPS = (
    "The OAuth client must be your own, of type 'Desktop app' (Google Cloud Console > APIs & "
    "Services > Credentials), in a project where the Gmail API is enabled.",
    "While the project's OAuth consent screen is in 'Testing', add your address as a test user; "
    "Google then ends each sign-in after 7 days, so sign in again or publish the app.",
)
_GOOGLE_PORT_465 = "If port 587 is blocked on your network, try port 465 with SSL/TLS."
_GOOGLE_ATTACHMENTS = (
    "Gmail refuses messages larger than 25 MB and attachments it considers dangerous, such as "
    ".exe, .bat, .js or .vbs files, even inside .zip archives."
)

_MS_TWO_STEP_NOTE = (
    "App passwords need two-step verification: account.microsoft.com > Security > Advanced "
    "security options > App passwords."
)

_MS_SIGN_IN = (
    "Sign in with Microsoft (in the window, or: bulk-mailer microsoft login) and send with it: SMTP "
    "with --auth xoauth2, or Microsoft Graph with --channel microsoft."
)
_OUTLOOK_LIMITS_NOTE = (
    "Outlook.com: about 300 recipients a day for a verified free account (new accounts start "
    "lower, 10 to 50) and 100 recipients per message; Microsoft does not publish the numbers and "
    "they grow with the account's reputation. Microsoft 365 subscribers get 5,000 a day. 30 a "
    "minute is Exchange's rate, which Outlook.com runs on."
)
_EXO_LIMITS_NOTE = (
    "Exchange Online: 10,000 recipients/day (a rolling 24 hours), 30 messages/minute, 500 "
    "recipients per message by default (an administrator can change it, up to 1,000); trial "
    "tenants 5,000 external recipients/day."
)
_MS_REPLIES = {
    "sender_rejected": (
        "'554 5.2.252 SendAsDenied': the From address is not your mailbox: send as the address you "
        "signed in with, or have an administrator grant you Send As permission for it.",
    ),
    "sending_restricted": (
        "'550 5.7.708 Access denied, traffic not accepted from this IP': Microsoft restricts sending "
        "from new or low-reputation Microsoft 365 tenants; an administrator must add a verified "
        "custom domain and ask Microsoft support to lift it.",
        "'550 5.1.8 Access denied, bad outbound sender' or 'OutboundSpamException': Microsoft has "
        "restricted the account for suspected spam; sign in at outlook.live.com (Outlook.com) or "
        "have an administrator release it (Microsoft Defender portal > Restricted entities).",
    ),
    "sender_authentication": (
        "'550 5.7.515 ... does not meet the required authentication level': since 5 May 2025 "
        "Outlook.com refuses mail from domains sending more than 5,000 a day without SPF, DKIM and "
        "DMARC aligned: publish all three for the From domain.",
    ),
    "microsoft_sign_in": (
        "Personal accounts: see the apps you allowed at account.live.com/consent/Manage; work or "
        "school accounts: myapplications.microsoft.com.",
    ),
}

_YAHOO_AUTH005 = (
    "After several failed logins Yahoo answers '535 5.7.0 (#AUTH005) Too many bad auth "
    "attempts': wait a while before trying again with the app password."
)

# The presets, in display order: mailbox providers (each consumer one next to its business
# sibling), then sending services -----------------------------------------------------------

_PRESET_LIST: tuple[Preset, ...] = (
    _preset(
        key="gmail",
        # source: support.google.com/a/answer/10685031 (SPF), support.google.com/a/answer/174126 (DKIM selector "google")
        spf_include=("_spf.google.com",),
        dkim_selectors=("google",),
        name="Gmail",
        host="smtp.gmail.com",
        port=587,
        security="starttls",
        domains=("gmail.com", "googlemail.com"),
        limits=Limits(
            per_day=500,
            note="500 recipients per rolling 24 hours for personal Gmail accounts; going over "
            "blocks sending for up to 24 hours. Google publishes no per-message recipient "
            "limit for personal accounts over SMTP.",
        ),
        username_hint="your full Gmail address",
        notes=(
            "Username: your full Gmail address.",
            "Use an app password (Google Account > Security > 2-Step Verification > App "
            "passwords); your normal password is refused.",
            "Or use Sign in with Google (Gmail API) instead of SMTP: no app password needed.",
            "The From address must be your Gmail address or one added under Gmail Settings > "
            "Accounts and Import > Send mail as; otherwise Gmail replaces it with your address.",
            "Limit: about 500 recipients a day. Port 465 with SSL/TLS also works.",
        ),
        advice={
            "auth_failed": (
                _GOOGLE_APP_STEP,
                "No 'App passwords' option? 2-Step Verification is off, the account is in "
                "Google's Advanced Protection Program or only uses security keys.",
                _GOOGLE_WEB_SIGNIN,
                _GOOGLE_OAUTH,
            ),
            "auth_not_offered": (
                "Use smtp.gmail.com port 587 with STARTTLS, or port 465 with SSL/TLS.",
            ),
            "timeout": (_GOOGLE_PORT_465,),
            "sender_rejected": (
                "Add the From address under Gmail Settings > Accounts and Import > Send mail "
                "as and confirm it; Gmail only sends as addresses verified there.",
            ),
            "message_rejected": (_GOOGLE_ATTACHMENTS,),
            "rate_limited": (
                "Gmail throttles fast senders (421 4.7.0 or 454 4.7.0 replies): increase the "
                "delay between messages and resume later.",
            ),
            "oauth_error": _GOOGLE_OAUTH_STEPS,
            "quota_exceeded": (
                "Gmail allows about 500 recipients per 24 hours for personal accounts and "
                "answers 550 5.4.5 when the limit is reached; sending stays blocked for up to "
                "24 hours. Resume the campaign the next day.",
            ),
        },
    ),
    _preset(
        key="google-workspace",
        # source: support.google.com/a/answer/10685031 (SPF), support.google.com/a/answer/174126 (DKIM selector "google")
        spf_include=("_spf.google.com",),
        dkim_selectors=("google",),
        name="Google Workspace",
        host="smtp.gmail.com",
        port=587,
        security="starttls",
        domains=(),
        limits=Limits(
            per_day=2000,
            recipients_per_message=100,
            note="2,000 messages/day per user (500 for trial accounts); 10,000 total and 3,000 "
            "external recipients/day; 100 recipients per message over SMTP.",
        ),
        username_hint="your full work address (you@yourcompany.com)",
        notes=(
            "Username: your full work address (you@yourcompany.com).",
            "Google no longer accepts your normal password from other apps: use an app "
            "password (Google Account > Security > 2-Step Verification > App passwords) if "
            "your administrator allows them, or Sign in with Google (Gmail API).",
            "Limits: 2,000 messages a day per user (500 on trial accounts), 100 recipients per "
            "message over SMTP.",
            "For larger volumes an administrator can set up Google's SMTP relay service "
            "(smtp-relay.gmail.com) in the Admin console: Apps > Google Workspace > Gmail > "
            "Routing > SMTP relay service.",
        ),
        advice={
            "auth_failed": (
                _GOOGLE_APP_STEP,
                "No 'App passwords' option? 2-Step Verification is off, or your "
                "administrator's settings (security keys only, Advanced Protection) rule app "
                "passwords out: ask your Google Workspace administrator.",
                _GOOGLE_WEB_SIGNIN,
                _GOOGLE_OAUTH,
            ),
            "auth_not_offered": (
                "Use smtp.gmail.com port 587 with STARTTLS, or port 465 with SSL/TLS.",
            ),
            "timeout": (_GOOGLE_PORT_465,),
            "sender_rejected": (
                "To send as another address (an alias or group), add it under Gmail Settings > "
                "Accounts > Send mail as, or ask your administrator.",
            ),
            "message_rejected": (_GOOGLE_ATTACHMENTS,),
            "rate_limited": (
                "Google throttles fast senders (421 4.7.0 or 454 4.7.0 replies): increase the "
                "delay between messages and resume later.",
            ),
            "oauth_error": _GOOGLE_OAUTH_STEPS + (
                "Your Workspace administrator may restrict which apps can use Google sign-in: ask "
                "them to allow your OAuth client (Admin console > Security > API controls).",
            ),
            "quota_exceeded": (
                "Google Workspace allows 2,000 messages and 10,000 recipients a day per user "
                "(500 messages on trial accounts); after that, sending is blocked for up to 24 "
                "hours. Resume the next day.",
                "For regular bulk mail, ask your administrator about the SMTP relay service "
                "(smtp-relay.gmail.com) or use a sending service.",
            ),
        },
    ),
    _preset(
        key="outlook",
        # source: learn.microsoft.com/defender-office-365/email-authentication-spf-configure and -dkim-configure
        spf_include=("spf.protection.outlook.com",),
        dkim_selectors=("selector1", "selector2"),
        name="Outlook.com / Hotmail",
        host="smtp-mail.outlook.com",
        port=587,
        security="starttls",
        domains=(
            "outlook.com",
            "hotmail.com",
            "live.com",
            "msn.com",
            "windowslive.com",
            "outlook.fr",
            "outlook.de",
            "outlook.es",
            "outlook.it",
            "hotmail.co.uk",
            "hotmail.fr",
            "hotmail.de",
            "hotmail.it",
            "hotmail.es",
            "live.co.uk",
            "live.fr",
            "live.de",
            "live.it",
            "live.nl",
            "live.ca",
            "live.com.au",
        ),
        limits=Limits(
            per_minute=30,
            per_day=300,
            recipients_per_message=100,
            note=_OUTLOOK_LIMITS_NOTE,
        ),
        username_hint="your full Outlook.com / Hotmail address",
        notes=(
            "Username: your full Outlook.com / Hotmail / Live address.",
            "Outlook.com stopped accepting passwords from third-party apps on 16 September "
            "2024: use Sign in with Microsoft (bulk-mailer microsoft login), then send through "
            "SMTP with it (--auth xoauth2) or through Microsoft Graph (--channel microsoft).",
            _MS_TWO_STEP_NOTE,
            "Microsoft documents port 587 with STARTTLS only; there is no SSL/TLS port 465.",
            "Outlook.com is for personal mail: bulk sending gets the account limited or blocked.",
        ),
        advice={
            "auth_failed": (
                _MS_SIGN_IN,
                "Outlook.com stopped accepting passwords from third-party apps on 16 September "
                "2024; an app password (account.microsoft.com > Security > Advanced security "
                "options > App passwords) works only for some older accounts.",
                "Sign in at outlook.live.com in a browser: if Microsoft asks you to verify the "
                "account or reports unusual activity, complete that first.",
            ),
            "tls_mode_mismatch": (
                "Outlook.com speaks STARTTLS on port 587; it has no SSL/TLS port 465.",
            ),
            "tls_handshake_failed": (
                "Use port 587 with STARTTLS; Outlook.com has no SSL/TLS port 465.",
            ),
            "rate_limited": (
                "Microsoft does not publish a per-minute limit for Outlook.com: leave several "
                "seconds between messages.",
            ),
            "quota_exceeded": (
                "A reply with 'OutboundSpamException' or 'ShowTierUpgrade' means Microsoft has "
                "limited the account for sending too much: sign in at outlook.live.com, complete "
                "any verification it asks for, and wait a day before resuming.",
                "Free accounts have lower daily limits than Microsoft 365 subscribers (5,000 "
                "recipients a day); split large lists over several days.",
            ),
            "message_rejected": (
                "'554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException' means Microsoft "
                "has blocked sending from the account as suspected spam: sign in at "
                "outlook.live.com and follow the steps to unblock it.",
            ),
            "smtp_auth_disabled": (_MS_SIGN_IN,),
            **_MS_REPLIES,
        },
    ),
    _preset(
        key="office365",
        # source: learn.microsoft.com/defender-office-365/email-authentication-spf-configure and -dkim-configure
        spf_include=("spf.protection.outlook.com",),
        dkim_selectors=("selector1", "selector2"),
        name="Microsoft 365 / Office 365",
        host="smtp.office365.com",
        port=587,
        security="starttls",
        domains=(),
        limits=Limits(
            per_day=10000,
            per_minute=30,
            recipients_per_message=500,
            note=_EXO_LIMITS_NOTE,
        ),
        username_hint="your full work or school address",
        notes=(
            "Username: your full work or school address.",
            "SMTP AUTH must be enabled for the mailbox by an administrator: Microsoft 365 admin "
            "center > Users > Active users > (you) > Mail > Manage email apps > Authenticated "
            "SMTP. It is off by default in newer tenants.",
            "Security defaults or Conditional Access policies in Microsoft Entra ID block "
            "password sign-in over SMTP; so does multi-factor authentication unless app "
            "passwords are allowed.",
            "Microsoft is retiring password (basic) authentication for SMTP AUTH in Exchange "
            "Online during 2026: use Sign in with Microsoft (bulk-mailer microsoft login), then "
            "send through SMTP with it (--auth xoauth2) or through Microsoft Graph (--channel "
            "microsoft), which needs no SMTP AUTH at all.",
            "Limits: 30 messages a minute and 10,000 recipients a day.",
        ),
        advice={
            **_MS_REPLIES,
            "auth_failed": (
                "'535 5.7.139 ... SmtpClientAuthentication is disabled': an administrator must "
                "enable Authenticated SMTP for your mailbox (Microsoft 365 admin center > Users "
                "> Active users > the user > Mail > Manage email apps) or for the organisation "
                "(Set-TransportConfig -SmtpClientAuthenticationDisabled $false).",
                "'535 5.7.139 ... basic authentication is disabled': security defaults or a "
                "Conditional Access policy block password sign-in; an administrator must allow "
                "it for this account, or the account needs OAuth.",
                "'550 5.7.30 Basic authentication is not supported for Client Submission': "
                "Microsoft has switched off password sign-in for SMTP: " + _MS_SIGN_IN,
                "If the account uses multi-factor authentication, your normal password is "
                "refused: use an app password if your administrator allows them.",
            ),
            "auth_not_offered": (
                "Exchange Online offers login only after STARTTLS: use smtp.office365.com port "
                "587 with STARTTLS.",
            ),
            "tls_handshake_failed": ("Exchange Online requires TLS 1.2 or newer.",),
            "sender_rejected": _MS_REPLIES["sender_rejected"] + (
                "'550 5.7.60 ... Client does not have permissions to send as this sender': the "
                "From address must be your own mailbox, or an administrator must grant you Send "
                "As permission for it (shared mailbox or group).",
                "'550 5.1.8 Access denied, bad outbound sender': Microsoft has restricted the "
                "account for suspected spam; an administrator must release it (Microsoft "
                "Defender portal > Restricted entities).",
            ),
            "rate_limited": (
                "Exchange Online allows 30 messages a minute: set the delay to at least 2 "
                "seconds between messages.",
            ),
            "quota_exceeded": (
                "'554 5.2.0 ... SubmissionQuotaExceededException' means the 10,000 recipients "
                "per 24 hours limit was reached: resume once the rolling 24-hour window allows.",
            ),
        },
    ),
    _preset(
        key="yahoo",
        # source: yahoo.com's own SPF record (v=spf1 redirect=_spf.mail.yahoo.com)
        spf_include=("_spf.mail.yahoo.com",),
        dkim_selectors=(),
        name="Yahoo Mail",
        host="smtp.mail.yahoo.com",
        port=465,
        security="ssl",
        domains=(
            "yahoo.com",
            "ymail.com",
            "rocketmail.com",
            "yahoo.co.uk",
            "yahoo.ie",
            "yahoo.fr",
            "yahoo.de",
            "yahoo.it",
            "yahoo.es",
            "yahoo.ca",
            "yahoo.com.au",
            "yahoo.co.nz",
            "yahoo.co.in",
            "yahoo.in",
            "yahoo.com.br",
            "yahoo.com.mx",
            "yahoo.com.ar",
            "yahoo.com.sg",
            "yahoo.com.ph",
        ),
        limits=Limits(
            note="Yahoo does not publish its SMTP sending limits; about 500 messages a day and "
            "100 recipients per message are commonly reported. Exceeding them blocks sending "
            "temporarily.",
        ),
        username_hint="your full Yahoo address",
        notes=(
            "Username: your full Yahoo address.",
            "Use an app password, not your Yahoo password: Yahoo Account Info > Account "
            "security > Generate app password (login.yahoo.com/account/security).",
            "Port 465 with SSL/TLS; port 587 with STARTTLS also works.",
            "Yahoo does not publish its sending limits (about 500 a day is commonly reported).",
        ),
        advice={
            "auth_failed": (
                "Yahoo refuses your normal password over SMTP: create an app password at Account "
                "Info > Account security > Generate app password (login.yahoo.com/account/"
                "security) and use it instead.",
                _YAHOO_AUTH005,
            ),
            "timeout": ("If port 465 is blocked, try port 587 with STARTTLS.",),
            "sender_rejected": ("The From address must be your Yahoo address.",),
            "rate_limited": (
                "Yahoo does not publish its rate limit: increase the delay between messages and "
                "resume later.",
            ),
            "quota_exceeded": (
                "Yahoo does not publish its daily limit (about 500 messages is commonly "
                "reported): wait 24 hours and resume, and send in smaller batches.",
            ),
        },
    ),
    _preset(
        key="icloud",
        # source: support.apple.com: the DNS records of a custom email domain with iCloud Mail (SPF include:icloud.com, DKIM sig1)
        spf_include=("icloud.com",),
        dkim_selectors=("sig1",),
        name="iCloud Mail",
        host="smtp.mail.me.com",
        port=587,
        security="starttls",
        domains=("icloud.com", "me.com", "mac.com"),
        limits=Limits(
            per_day=1000,
            recipients_per_message=500,
            note="1,000 messages and 1,000 recipients per day; up to 500 recipients per "
            "message (Apple's published limits).",
        ),
        username_hint="your full iCloud Mail address (name@icloud.com)",
        notes=(
            "Username: your full iCloud Mail address (for example name@icloud.com).",
            "Password: an app-specific password, not your Apple Account password. Create one "
            "at account.apple.com > Sign-In and Security > App-Specific Passwords (two-factor "
            "authentication must be on).",
            "The From address must be your iCloud address, an iCloud Mail alias or a custom "
            "email domain set up in iCloud+.",
            "Limits: 1,000 messages and 1,000 recipients a day.",
        ),
        advice={
            "auth_failed": (
                "Use an app-specific password from account.apple.com > Sign-In and Security > "
                "App-Specific Passwords, with your full iCloud address as the username.",
                "Changing your Apple Account password revokes every app-specific password: "
                "create a new one if you changed it recently.",
            ),
            "sender_rejected": (
                "The From address must be your iCloud address, an iCloud Mail alias or a custom "
                "email domain set up in iCloud+.",
            ),
            "rate_limited": (
                "Increase the delay between messages; Apple does not publish a rate limit.",
            ),
            "quota_exceeded": (
                "iCloud allows 1,000 messages and 1,000 recipients a day: wait 24 hours and "
                "resume.",
            ),
        },
    ),
    _preset(
        key="aol",
        name="AOL Mail",
        host="smtp.aol.com",
        port=465,
        security="ssl",
        domains=("aol.com", "aim.com"),
        limits=Limits(
            note="AOL does not publish its SMTP sending limits; about 500 messages a day is "
            "commonly reported.",
        ),
        username_hint="your full AOL address",
        notes=(
            "Username: your full AOL address.",
            "Use an app password, not your AOL password: AOL Account Info > Account security > "
            "Generate app password (login.aol.com/account/security).",
            "Port 465 with SSL/TLS; port 587 with STARTTLS also works.",
        ),
        advice={
            "auth_failed": (
                "AOL refuses your normal password over SMTP: create an app password at Account "
                "Info > Account security > Generate app password (login.aol.com/account/"
                "security) and use it instead.",
                "After several failed logins AOL answers '535 5.7.0 (#AUTH005) Too many bad "
                "auth attempts': wait a while before trying again with the app password.",
            ),
            "timeout": ("If port 465 is blocked, try port 587 with STARTTLS.",),
            "sender_rejected": ("The From address must be your AOL address.",),
            "quota_exceeded": (
                "AOL does not publish its daily limit: wait 24 hours and resume, and send in "
                "smaller batches.",
            ),
        },
    ),
    _preset(
        key="zoho",
        # source: zoho.com/mail/help/adminconsole/spf-configuration.html (zoho.eu, zoho.in for those data centres); the DKIM selector is the one chosen in Zoho's admin console
        spf_include=("zoho.com",),
        dkim_selectors=(),
        name="Zoho Mail",
        host="smtp.zoho.com",
        port=465,
        security="ssl",
        domains=("zoho.com", "zohomail.com"),
        limits=Limits(
            note="Zoho's limits depend on the plan and data centre and are not published as "
            "one number; free plans have the lowest.",
        ),
        username_hint="your full Zoho Mail address",
        notes=(
            "Username: your full Zoho Mail address.",
            "Use the host of your data centre: smtp.zoho.eu (EU), smtp.zoho.in (India), "
            "smtp.zoho.com.au (Australia), smtp.zoho.jp (Japan), smtp.zohocloud.ca (Canada); "
            "smtp.zoho.com elsewhere. Your data centre is the one your mail.zoho.* address "
            "opens on.",
            "Paid organisation accounts (your own domain) use smtppro.zoho.com (smtppro.zoho.eu, "
            "smtppro.zoho.in, ...).",
            "With two-factor authentication on, use an application-specific password (Zoho "
            "Accounts > Security > App Passwords).",
            "Port 465 with SSL/TLS; port 587 with STARTTLS also works.",
        ),
        advice={
            "auth_failed": (
                "Check the host matches your data centre (smtp.zoho.eu for EU accounts, "
                "smtp.zoho.in for India, ...; smtppro.zoho.* for paid organisation accounts): "
                "the wrong one refuses a correct password.",
                "With two-factor authentication on, create an application-specific password "
                "(Zoho Accounts > Security > App Passwords) and use it.",
                "Check that IMAP access is enabled in Zoho Mail Settings > Mail Accounts, and "
                "that your plan includes IMAP/POP/SMTP access (not every free plan does).",
            ),
            "sender_rejected": (
                "Zoho answers '553 Relaying disallowed' when the From address is not your "
                "account's address or an address added under Settings > Send Mail As.",
            ),
            "timeout": ("If port 465 is blocked, try port 587 with STARTTLS.",),
            "quota_exceeded": (
                "Zoho's daily limit depends on your plan: wait 24 hours and resume, or check "
                "the limit of your plan with Zoho.",
            ),
        },
    ),
    _preset(
        key="gmx",
        name="GMX (gmx.com)",
        host="mail.gmx.com",
        port=587,
        security="starttls",
        domains=("gmx.com", "gmx.us", "gmx.co.uk", "gmx.fr", "gmx.es"),
        limits=Limits(note="GMX does not publish SMTP sending limits for its accounts."),
        username_hint="your full GMX address",
        notes=(
            "Username: your full GMX address.",
            "Turn on 'Enable POP3 and IMAP access' in GMX webmail Settings > POP3 & IMAP: "
            "sending from other apps is refused until it is on.",
            "German, Austrian and Swiss accounts (gmx.de, gmx.net, gmx.at, gmx.ch) use "
            "mail.gmx.net: choose the 'GMX (gmx.net / gmx.de)' preset.",
            "With two-factor authentication on, use an application-specific password.",
        ),
        advice={
            "auth_failed": (
                "Turn on 'Enable POP3 and IMAP access' in GMX webmail Settings > POP3 & IMAP; "
                "GMX refuses logins from other apps until it is on.",
                "With two-factor authentication on, create an application-specific password "
                "in GMX's security settings and use it.",
                "gmx.de, gmx.net, gmx.at and gmx.ch addresses log in at mail.gmx.net, not "
                "mail.gmx.com.",
            ),
            "sender_rejected": ("The From address must be your GMX address.",),
        },
    ),
    _preset(
        key="gmx-net",
        name="GMX (gmx.net / gmx.de)",
        host="mail.gmx.net",
        port=587,
        security="starttls",
        domains=("gmx.de", "gmx.net", "gmx.at", "gmx.ch"),
        limits=Limits(note="GMX does not publish SMTP sending limits for its accounts."),
        username_hint="your full GMX address",
        notes=(
            "For gmx.de, gmx.net, gmx.at and gmx.ch addresses; gmx.com accounts use the "
            "'GMX (gmx.com)' preset.",
            "Username: your full GMX address.",
            "Turn on 'POP3 und IMAP Zugriff erlauben' (allow POP3 and IMAP access) in GMX "
            "webmail under E-Mail > Einstellungen > POP3/IMAP Abruf: sending from other apps "
            "is refused until it is on.",
            "With two-factor authentication on, use an application-specific password.",
        ),
        advice={
            "auth_failed": (
                "Turn on 'POP3 und IMAP Zugriff erlauben' in GMX webmail (E-Mail > "
                "Einstellungen > POP3/IMAP Abruf); GMX refuses logins from other apps until "
                "it is on.",
                "With two-factor authentication on, create an application-specific password "
                "in GMX's security settings and use it.",
            ),
            "sender_rejected": ("The From address must be your GMX address.",),
        },
    ),
    _preset(
        key="fastmail",
        # source: fastmail.help: DNS records for a custom domain (SPF, DKIM fm1-fm3)
        spf_include=("spf.messagingengine.com",),
        dkim_selectors=("fm1", "fm2", "fm3"),
        name="Fastmail",
        host="smtp.fastmail.com",
        port=465,
        security="ssl",
        domains=(
            "fastmail.com",
            "fastmail.fm",
            "fastmail.net",
            "fastmail.org",
            "fastmail.us",
            "fastmail.co.uk",
        ),
        limits=Limits(
            note="Fastmail's sending limits depend on the plan; they are not encoded here.",
        ),
        username_hint="your full Fastmail address",
        notes=(
            "Username: your full Fastmail address.",
            "Fastmail requires an app password for SMTP: create one in Fastmail Settings > "
            "Privacy & Security (app passwords) with SMTP access.",
            "Port 465 with SSL/TLS; port 587 with STARTTLS also works.",
        ),
        advice={
            "auth_failed": (
                "Your Fastmail login password does not work over SMTP: create an app password "
                "in Settings > Privacy & Security with SMTP access and use it.",
            ),
            "timeout": ("If port 465 is blocked, try port 587 with STARTTLS.",),
            "sender_rejected": (
                "The From address must be one of your Fastmail addresses, aliases or a custom "
                "domain set up in Fastmail.",
            ),
        },
    ),
    _preset(
        key="sendgrid",
        # source: docs.sendgrid.com: domain authentication (s1/s2._domainkey CNAMEs)
        spf_include=("sendgrid.net",),
        dkim_selectors=("s1", "s2"),
        connections=4,
        name="SendGrid",
        host="smtp.sendgrid.net",
        port=587,
        security="starttls",
        domains=(),
        limits=Limits(
            per_day=100,
            note="Free trial: 100 emails/day (since 2025 new accounts get a 60-day trial "
            "instead of a permanent free plan); paid plans set a monthly volume.",
        ),
        username_hint="apikey",
        notes=(
            "Username: the word apikey, exactly. Password: a SendGrid API key with the Mail "
            "Send permission (Settings > API Keys).",
            "The From address must be a verified Single Sender or on an authenticated domain "
            "(Settings > Sender Authentication).",
            "Ports 587, 25 and 2525 use STARTTLS; 465 uses SSL/TLS.",
            "Trial accounts: 100 emails a day.",
        ),
        advice={
            "auth_failed": (
                "The username is literally 'apikey' (not your login or email address); the "
                "password is the API key itself, which starts with 'SG.'.",
                "The key is shown only once when created: if you lost it, create a new one in "
                "Settings > API Keys with the Mail Send permission.",
            ),
            "sender_rejected": (
                "'550 The from address does not match a verified Sender Identity': verify the "
                "From address (Settings > Sender Authentication > Single Sender Verification) "
                "or authenticate its domain.",
            ),
            "timeout": (
                "If port 587 is blocked, SendGrid also accepts 2525 (STARTTLS) and 465 (SSL/TLS).",
            ),
            "quota_exceeded": (
                "'Maximum credits exceeded' means the plan's email allowance is used up: wait "
                "for it to renew or upgrade the plan (Settings > Account Details > Your "
                "Products).",
            ),
            "rate_limited": ("Increase the delay between messages and resume later.",),
        },
    ),
    _preset(
        key="mailgun",
        # source: documentation.mailgun.com: domain verification (the selector is in the domain's DNS records)
        spf_include=("mailgun.org",),
        dkim_selectors=("smtp", "krs", "pic"),
        connections=4,
        name="Mailgun",
        host="smtp.mailgun.org",
        port=587,
        security="starttls",
        domains=(),
        limits=Limits(
            per_day=100,
            note="Free plan: 100 emails/day; paid plans set a monthly volume. A sandbox "
            "domain delivers only to authorised recipients.",
        ),
        username_hint="the SMTP login of your sending domain (e.g. postmaster@mg.example.com)",
        notes=(
            "Username and password: the SMTP credentials of your sending domain (Send > "
            "Sending > Domain settings > SMTP credentials), not your Mailgun login or API key.",
            "Accounts in Mailgun's EU region use smtp.eu.mailgun.org.",
            "The From address must be on a verified sending domain. A sandbox domain only "
            "delivers to authorised recipients (at most 5).",
            "Ports 587, 25 and 2525 use STARTTLS; 465 uses SSL/TLS.",
        ),
        advice={
            "auth_failed": (
                "Use the SMTP credentials of the sending domain (Domain settings > SMTP "
                "credentials); they are per domain and differ from the API key. Reset the "
                "password there to get a new one.",
                "EU-region accounts must use smtp.eu.mailgun.org; US accounts smtp.mailgun.org.",
            ),
            "sender_rejected": (
                "The From address must be on a sending domain you added and verified in Mailgun "
                "(SPF and DKIM records in place).",
            ),
            "recipient_rejected": (
                "'Sandbox subdomains are for test purposes only': a sandbox domain delivers "
                "only to authorised recipients; add the address as an authorised recipient or "
                "send from your own verified domain.",
            ),
            "timeout": ("If port 587 is blocked, try 2525 (STARTTLS) or 465 (SSL/TLS).",),
            "quota_exceeded": (
                "The free plan allows 100 emails a day: wait for the next day or upgrade the plan.",
            ),
        },
    ),
    _preset(
        key="amazon-ses",
        # source: docs.aws.amazon.com/ses/latest/dg/send-email-authentication-spf.html; Easy DKIM selectors are generated per domain
        spf_include=("amazonses.com",),
        dkim_selectors=(),
        connections=4,
        name="Amazon SES",
        host="email-smtp.{region}.amazonaws.com",
        port=587,
        security="starttls",
        domains=(),
        limits=Limits(
            per_day=200,
            per_second=1.0,
            recipients_per_message=50,
            note="Sandbox: 200 messages per 24 hours, 1 message per second, and only to "
            "verified addresses; production quotas are set per account and Region (see the "
            "SES console). Up to 50 recipients per message.",
        ),
        username_hint="SMTP credentials from the SES console (not your IAM access keys)",
        regions=(
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
            "ca-central-1",
            "sa-east-1",
            "eu-west-1",
            "eu-west-2",
            "eu-west-3",
            "eu-central-1",
            "eu-south-1",
            "eu-north-1",
            "ap-south-1",
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-northeast-3",
            "ap-southeast-1",
            "ap-southeast-2",
            "ap-southeast-3",
            "af-south-1",
            "me-south-1",
            "il-central-1",
            "us-gov-west-1",
        ),
        default_region="us-east-1",
        notes=(
            "Choose the AWS Region where your sending identities are verified; the host is "
            "email-smtp.<region>.amazonaws.com.",
            "Use SMTP credentials created in the SES console (SMTP settings > Create SMTP "
            "credentials). They differ from IAM access keys: the SMTP password is derived from "
            "a secret key and only works in its Region.",
            "New accounts are in the sandbox: 200 messages per 24 hours, 1 message per second, "
            "and only to verified addresses. Request production access in the SES console.",
            "The From address (or its domain) must be a verified identity in the same Region.",
        ),
        advice={
            "auth_failed": (
                "'535 Authentication Credentials Invalid': use SMTP credentials from the SES "
                "console (SMTP settings > Create SMTP credentials), not an IAM access key and "
                "secret.",
                "SMTP credentials only work in their Region: check that the host's Region is "
                "the one the credentials were created for.",
                "The IAM user behind the credentials needs permission for ses:SendRawEmail.",
            ),
            "sender_rejected": (
                "'554 Message rejected: Email address is not verified': verify the From address "
                "or its domain under Identities in the SES console, in the same Region as the "
                "host.",
            ),
            "recipient_rejected": (
                "In the sandbox, SES only delivers to verified addresses: verify the recipient "
                "or request production access in the SES console.",
            ),
            "rate_limited": (
                "'454 Throttling failure: Maximum sending rate exceeded': set the delay to at "
                "least 1 second per message in the sandbox, or to your account's maximum send "
                "rate.",
            ),
            "quota_exceeded": (
                "'454 Throttling failure: Daily message quota exceeded': wait for the rolling "
                "24-hour window (200 messages in the sandbox), or request production access or "
                "a higher quota in the SES console.",
            ),
            "timeout": (
                "If port 587 is blocked, SES also accepts 2587 (STARTTLS) and 465 or 2465 "
                "(SSL/TLS).",
            ),
        },
    ),
    _preset(
        key="postmark",
        # source: postmarkapp.com support: SPF include spf.mtasv.net; the DKIM selector (<date>pm) is per sender signature
        spf_include=("spf.mtasv.net",),
        dkim_selectors=(),
        connections=4,
        name="Postmark",
        host="smtp.postmarkapp.com",
        port=587,
        security="starttls",
        domains=(),
        limits=Limits(
            recipients_per_message=50,
            note="Up to 50 recipients per message. The free developer plan includes 100 emails "
            "per month; Postmark publishes no daily limit.",
        ),
        username_hint="your Server API token (as both username and password)",
        notes=(
            "Username and password: your Server API token, the same value in both (Servers > "
            "your server > API Tokens).",
            "Postmark keeps bulk mail apart: for newsletters and other broadcasts use a "
            "Broadcast message stream and the host smtp-broadcasts.postmarkapp.com; "
            "smtp.postmarkapp.com is for transactional mail.",
            "The From address must be a confirmed Sender Signature or on a verified domain.",
            "Ports 587, 2525 and 25, all STARTTLS; Postmark has no SSL/TLS port 465.",
            "The free developer plan includes 100 emails a month.",
        ),
        advice={
            "auth_failed": (
                "Put the Server API token (Servers > your server > API Tokens) in both the "
                "username and the password; an Account API token does not work for sending.",
            ),
            "sender_rejected": (
                "The From address must be a confirmed Sender Signature or on a domain verified "
                "in Postmark (Sender Signatures).",
                "While Postmark has not yet approved your account, you can only send to "
                "addresses on the same domain as your From address.",
            ),
            "message_rejected": (
                "Bulk and marketing mail must go through a Broadcast message stream "
                "(smtp-broadcasts.postmarkapp.com), not the transactional stream.",
            ),
            "tls_mode_mismatch": (
                "Postmark speaks STARTTLS on ports 587, 2525 and 25; it has no port 465.",
            ),
            "timeout": (
                "If port 587 is blocked, try port 2525 with STARTTLS; Postmark has no port 465.",
            ),
            "quota_exceeded": (
                "The free developer plan allows 100 emails a month: upgrade the plan or wait "
                "for the next month.",
            ),
        },
    ),
    _preset(
        key="brevo",
        # source: help.brevo.com: authenticate your domain (SPF include spf.brevo.com, DKIM brevo1/brevo2, older mail._domainkey)
        spf_include=("spf.brevo.com",),
        dkim_selectors=("brevo1", "brevo2", "mail"),
        connections=4,
        name="Brevo (Sendinblue)",
        host="smtp-relay.brevo.com",
        port=587,
        security="starttls",
        domains=(),
        limits=Limits(
            per_day=300,
            note="Free plan: 300 emails/day; paid plans set a monthly volume.",
        ),
        username_hint="the SMTP login shown under SMTP & API > SMTP",
        notes=(
            "Username: the SMTP login shown in Brevo under Settings > SMTP & API > SMTP (not "
            "always your account email).",
            "Password: an SMTP key generated on that page, not your Brevo password and not an "
            "API key.",
            "The From address must be a verified sender or on an authenticated domain (Senders, "
            "Domains & Dedicated IPs).",
            "Ports 587 and 2525 use STARTTLS; 465 uses SSL/TLS. Free plan: 300 emails a day.",
        ),
        advice={
            "auth_failed": (
                "Use the SMTP login shown under Settings > SMTP & API > SMTP as the username and "
                "an SMTP key from that page as the password; your Brevo password and API keys "
                "do not work.",
                "If Brevo's 'Authorised IPs' security setting is on, add this computer's public "
                "IP address there.",
                "New accounts may need Brevo to activate SMTP sending first: check your Brevo "
                "dashboard or contact Brevo support.",
            ),
            "sender_rejected": (
                "Add and verify the From address (Senders, Domains & Dedicated IPs > Senders) "
                "or authenticate its domain.",
            ),
            "timeout": ("If port 587 is blocked, try 2525 (STARTTLS) or 465 (SSL/TLS).",),
            "quota_exceeded": (
                "The free plan allows 300 emails a day: wait for the next day or upgrade the plan.",
            ),
        },
    ),
)

PRESETS: dict[str, Preset] = {p.key: p for p in _PRESET_LIST}

# The Gmail API channel (Sign in with Google): the same daily sending limits as Gmail's SMTP,
# and the API's own rate limit: 15,000 quota units per user per minute, 100 per message sent.
GMAIL_API_LIMITS: Mapping[str, Limits] = MappingProxyType({
    "gmail": Limits(
        per_day=500, per_minute=150,
        note="500 recipients per rolling 24 hours for personal Gmail accounts (going over blocks "
        "sending for up to 24 hours); the Gmail API allows 150 messages a minute per user "
        "(15,000 quota units, 100 per message).",
    ),
    "google-workspace": Limits(
        per_day=2000, per_minute=150,
        note="2,000 messages per day per user (500 on trial accounts); the Gmail API allows 150 "
        "messages a minute per user (15,000 quota units, 100 per message).",
    ),
})


def gmail_api_limits(workspace: bool) -> tuple[str, Limits]:
    """The Gmail API limits of a personal (gmail.com) or a Google Workspace account."""
    key = "google-workspace" if workspace else "gmail"
    return key, GMAIL_API_LIMITS[key]

# Sign in with Microsoft (SMTP with OAuth2, or Microsoft Graph): the mailbox's own limits,
# Outlook.com's for a personal Microsoft account, Exchange Online's for a work or school one.
# Graph also allows 4 requests at once per mailbox (MailboxConcurrency): one connection is used.
MICROSOFT_LIMITS: Mapping[str, Limits] = MappingProxyType({
    "outlook": Limits(per_day=300, per_minute=30, recipients_per_message=100, note=_OUTLOOK_LIMITS_NOTE),
    "office365": Limits(per_day=10000, per_minute=30, recipients_per_message=500, note=_EXO_LIMITS_NOTE),
})


def microsoft_limits(consumer: bool) -> tuple[str, Limits]:
    """The limits of a personal Microsoft account (Outlook.com) or a work or school one."""
    key = "outlook" if consumer else "office365"
    return key, MICROSOFT_LIMITS[key]


_BY_DOMAIN: dict[str, Preset] = {d: p for p in _PRESET_LIST for d in p.domains}


def get_preset(key: str) -> Preset:
    """The preset named ``key`` (case-insensitive); ValueError listing the valid keys."""
    preset = PRESETS.get(str(key).strip().lower())
    if preset is None:
        raise ValueError(f"unknown provider {key!r}; choose one of: {', '.join(PRESETS)}")
    return preset


def preset_host(preset: Preset, region: str | None = None) -> str:
    """The preset's host with ``{region}`` filled (default region if None); ValueError if unknown.

    A region given for a preset without regions is ignored.
    """
    if "{region}" not in preset.host:
        return preset.host
    chosen = (region or "").strip().lower() or preset.default_region
    if chosen not in preset.regions:
        raise ValueError(
            f"unknown region {region!r} for {preset.name}; choose one of: {', '.join(preset.regions)}"
        )
    return preset.host.format(region=chosen)


def preset_for_domain(domain: str) -> Preset | None:
    """The preset serving an address domain (case-insensitive; a full address also works)."""
    domain = domain.strip().rpartition("@")[2].strip().rstrip(".").lower()
    return _BY_DOMAIN.get(domain)


# IMAP servers of the mailbox providers (the copy in Sent): host, port, security. The sending
# services have no mailbox.
IMAP_SERVERS: Mapping[str, tuple[str, int, str]] = MappingProxyType({
    "gmail": ("imap.gmail.com", 993, "ssl"),
    "google-workspace": ("imap.gmail.com", 993, "ssl"),
    "outlook": ("outlook.office365.com", 993, "ssl"),
    "office365": ("outlook.office365.com", 993, "ssl"),
    "yahoo": ("imap.mail.yahoo.com", 993, "ssl"),
    "icloud": ("imap.mail.me.com", 993, "ssl"),
    "aol": ("imap.aol.com", 993, "ssl"),
    "zoho": ("imap.zoho.com", 993, "ssl"),
    "gmx": ("imap.gmx.com", 993, "ssl"),
    "gmx-net": ("imap.gmx.net", 993, "ssl"),
    "fastmail": ("imap.fastmail.com", 993, "ssl"),
})

_GOOGLE_IMAP = (
    "Turn IMAP on in Gmail: Settings (the gear) > See all settings > Forwarding and POP/IMAP > "
    "IMAP access > Enable IMAP, then Save Changes (Google Workspace: your administrator may "
    "have to allow IMAP in the Admin console).",
    "IMAP needs an app password, not your normal password: Google Account > Security > "
    "2-Step Verification > App passwords (myaccount.google.com/apppasswords).",
    "Gmail files a copy of every message sent through smtp.gmail.com in Sent by itself: the "
    "copy over IMAP is not needed there (--sent-copy auto leaves it off).",
)
IMAP_ADVICE: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "gmail": {"imap_auth_failed": _GOOGLE_IMAP},
    "google-workspace": {"imap_auth_failed": _GOOGLE_IMAP},
    "yahoo": {"imap_auth_failed": (
        "Yahoo needs an app password for IMAP: Account Info > Account Security > Generate app password.",)},
    "aol": {"imap_auth_failed": (
        "AOL needs an app password for IMAP: Account Info > Account Security > Generate app password.",)},
    "icloud": {"imap_auth_failed": (
        "iCloud needs an app-specific password for IMAP: account.apple.com > Sign-In and Security > "
        "App-Specific Passwords.",)},
    "outlook": {"imap_auth_failed": (
        "Outlook.com may turn IMAP off: Outlook settings > Mail > Forwarding and IMAP > Let devices "
        "and apps use IMAP.", _MS_TWO_STEP_NOTE)},
    "office365": {"imap_auth_failed": (
        "Your administrator may have turned IMAP off for the mailbox (Microsoft 365 admin center > "
        "Users > Mail > Email apps > IMAP).",)},
    "zoho": {"imap_auth_failed": (
        "Turn IMAP on in Zoho Mail: Settings > Mail Accounts > IMAP Access.",)},
})


def imap_server(key: str | None) -> tuple[str, int, str] | None:
    """A provider's IMAP host, port and security; None for a sending service or an unknown key."""
    return IMAP_SERVERS.get(str(key or "").strip().lower())


def provider_advice(key: str | None, category: str) -> list[str]:
    """Provider-specific fix steps for an error category; [] for an unknown key or category."""
    if not key:
        return []
    preset = PRESETS.get(str(key).strip().lower())
    if preset is None:
        return []
    return list(preset.advice.get(category, ())) + list(IMAP_ADVICE.get(preset.key, {}).get(category, ()))


MAX_CONNECTIONS = 16


def default_connections(key: str | None) -> int:
    """How many SMTP connections a campaign opens when the user does not say: the preset's
    number, else 1 (an unknown server: the safe choice; a relay that allows more is set by hand)."""
    preset = PRESETS.get(key or "")
    return preset.connections if preset is not None else 1
