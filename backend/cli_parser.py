"""The `bulk-mailer` command line's arguments: the argparse tree of every subcommand."""

from __future__ import annotations

import argparse
import math
from typing import Any

from backend import __version__
from backend.errors import MailerError
from backend.inputs import (
    AUTH_MODES,
    CHANNELS,
    DEFAULT_DELAY_MS,
    IMAP_SECURITY,
    SECURITY_MODES,
    SENT_COPY_MODES,
)
from backend.presets import MAX_CONNECTIONS, PRESETS

EXIT_OK, EXIT_SOME_FAILED, EXIT_NOTHING_SENT = 0, 1, 2  # every command: sent / some failed / nothing sent
PASSWORD_ENV = "BULK_MAILER_PASSWORD"  # noqa: S105 (a variable name, not a secret)
PASSPHRASE_ENV = "BULK_MAILER_PASSPHRASE"  # noqa: S105 (a variable name: unlocks saved sign-ins)


class UsageError(MailerError):
    """A command-line problem found after argparse (exit 2)."""


# -- argument parsing --------------------------------------------------------------------


def _account_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("account")
    g.add_argument("--provider", choices=list(PRESETS), metavar="NAME",
                   help="fill host, port and security from a preset: " + ", ".join(PRESETS))
    g.add_argument("--region", help="region for presets that need one (amazon-ses), e.g. eu-west-1")
    g.add_argument("--host", help="SMTP server name, e.g. smtp.example.com")
    g.add_argument("--port", type=int, help="SMTP port (default: 587 STARTTLS, 465 SSL/TLS, 25 none)")
    g.add_argument("--security", choices=SECURITY_MODES,
                   help="starttls (usually 587), ssl = implicit TLS (usually 465), none")
    g.add_argument("--user", "--username", dest="user", default="",
                   help="login name, usually your full email address")
    g.add_argument("--password-stdin", action="store_true",
                   help=f"read the password from standard input (else from ${PASSWORD_ENV})")
    g.add_argument("--auth", choices=AUTH_MODES, default="password",
                   help="password (default), or xoauth2: log in with a sign-in instead of a password: "
                   "smtp.gmail.com with `bulk-mailer gmail login --smtp`, --provider outlook or office365 with "
                   "`bulk-mailer microsoft login`")
    tls = g.add_mutually_exclusive_group()
    tls.add_argument("--ca-file", help="also trust this CA certificate file (PEM)")
    tls.add_argument("--insecure-skip-verify", action="store_true",
                     help="do NOT verify the server's certificate (test servers only)")
    g.add_argument("--allow-plaintext-auth", action="store_true",
                   help="allow sending the password over an unencrypted connection")
    g.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server (default 30)")


def _add(sub: Any, name: str, **kw: Any) -> argparse.ArgumentParser:
    """A subcommand's parser: no abbreviated flags, and its own usage with its errors."""
    made = sub.add_parser(name, allow_abbrev=False, **kw)
    made.set_defaults(subparser=made)
    return made


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="bulk-mailer", allow_abbrev=False,
        description="Send one personalised email to each person on a list through your SMTP account.",
        epilog="Exit codes: 0 every recipient sent, 1 some failed, 2 nothing sent. "
        f"The password comes from ${PASSWORD_ENV} or --password-stdin, never from a flag. "
        "With no command, bulk-mailer opens the window (with no display: serves it to your browser); "
        "bulk-mailer --web [--port N] [--no-browser] serves it to a browser (see bulk-mailer --web --help).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="level of the log file in the app's log folder (default INFO)")
    parser.add_argument("--verbose", action="store_true",
                        help="show every connection step, server reply and progress event on the "
                        "terminal (and log them); passwords are never shown")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _send_parser(sub)
    _history_parsers(sub)
    _resume_parser(sub)
    _gmail_parser(sub)
    _microsoft_parser(sub)
    _verify_parser(sub)
    _track_parser(sub)
    _check_parser(sub)
    _schedule_parsers(sub)
    _signature_parser(sub)
    return parser


def _check_parser(sub: Any) -> None:
    """check: the offline content check of a message."""
    check = _add(sub, "check", help="check a message for what sends mail to spam (offline); its links and the "
                 "domain's authentication on request",
                 description="Run the content check on a message, with no network: each rule that fires is "
                 "printed with the reason and the fix, then the verdict: Looks fine, Worth a look or Likely "
                 "spam (the rules: docs/deliverability.md). Exit code 0 for Looks fine, 1 for Worth a look or "
                 "Likely spam (or a broken link with --links, a failed check with --auth), 2 when the input "
                 "cannot be read. send --dry-run prints the same verdict. --links and --auth make requests "
                 "(the web sites linked; DNS): see docs/authentication.md.")
    _body_options(check)
    check.add_argument("--subject", default="", help="the subject (may use fields)")
    check.add_argument("--to-file", help="the recipient list: its size (unsubscribe rule) and each row's "
                       "subject (default: one sample recipient)")
    check.add_argument("--from", dest="from_address", default="", help="the sender address")
    check.add_argument("--host", help="the SMTP server the mail would go through (free-mail From rule; with "
                       "--auth, a relay whose addresses SPF must cover)")
    check.add_argument("--attach", metavar="FILE", action="append", help="an attachment (repeat for several)")
    check.add_argument("--unsubscribe", metavar="URI", action="append",
                       help="List-Unsubscribe address, as for send")
    check.add_argument("--json", action="store_true", help="print the verdict, score and findings as JSON on stdout "
                       "(with --links and --auth, their answers under \"links\" and \"authentication\")")
    net = check.add_argument_group("checks that make requests")
    net.add_argument("--links", action="store_true",
                     help="follow each distinct link of the first recipient's message (HEAD, else GET; ten at a "
                     "time, 20 s in all) and report broken ones, redirects to another domain and TLS errors")
    net.add_argument("--ca-file", help="with --links: also trust this CA certificate file (PEM); the system's "
                     "authorities are always used, certificates always verified")
    net.add_argument("--auth", action="store_true",
                     help="check the --from domain's SPF, DKIM and DMARC in DNS for the way the mail is sent "
                     "(--provider, --host or --channel), and the bulk-sender rules for the --to-file list")
    net.add_argument("--provider", choices=list(PRESETS), metavar="NAME",
                     help="with --auth: the provider the mail goes through (its SPF include, DKIM selectors)")
    net.add_argument("--channel", choices=CHANNELS, default="smtp",
                     help="with --auth: gmail (the Gmail API) or microsoft (Microsoft Graph) instead of SMTP")
    net.add_argument("--dkim-selector", metavar="NAME", action="append",
                     help="with --auth: a DKIM selector of yours to look for (repeat for several)")
    net.add_argument("--delay-ms", type=int, default=DEFAULT_DELAY_MS,
                     help="with --auth: the pause between messages (the daily pace of the bulk-sender rule)")


def _body_options(p: Any) -> None:
    p.add_argument("--html-file", help="HTML body template (CSS in a <style> block is inlined into the elements)")
    p.add_argument("--markdown-file", metavar="FILE", help="the body written in Markdown (CommonMark, tables): made "
                   "into the HTML template, {{ fields }} kept; instead of --html-file")
    p.add_argument("--markdown-html", action="store_true",
                   help="allow raw HTML in the Markdown (by default it is shown as text)")
    p.add_argument("--text-file", help="plain-text body template (made from the HTML when omitted; alone: a "
                   "plain-text-only message)")


def _signature_parser(sub: Any) -> None:
    """signature: the account's signature, added below each message's body."""
    sig = _add(sub, "signature", help="show, set or clear the account's signature",
               description="Each account (an SMTP login on a server, or the Google or Microsoft sign-in with "
               "--channel) has one signature, HTML and text, added below the body "
               "of every message sent through it (send --no-signature leaves it out). Either part may use "
               "{{ fields }}; the one not given is made from the other.")
    sig.add_argument("action", choices=("show", "set", "clear"), help="show (as JSON with --json), set, clear")
    _account_options(sig)
    sig.add_argument("--channel", choices=CHANNELS, default="smtp",
                     help="smtp (default), gmail or microsoft: the signed-in account's signature")
    sig.add_argument("--html-file", help="set: the HTML signature")
    sig.add_argument("--text-file", help="set: the text signature")
    sig.add_argument("--json", action="store_true", help="show: print it as JSON on stdout")


def _send_parser(sub: Any) -> None:
    """send: the account, the message, the run."""
    send = _add(sub, "send", help="send a campaign", description="Send one message to each recipient.")
    _account_options(send)
    send.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                      help="show every connection step, server reply and progress event")
    m = send.add_argument_group("message")
    send.add_argument("--channel", choices=CHANNELS, default="smtp",
                      help="smtp (default): through an SMTP server; gmail: through the Gmail API as the "
                      "account signed in with `bulk-mailer gmail login`; microsoft: through Microsoft Graph as "
                      "the account signed in with `bulk-mailer microsoft login`")
    m.add_argument("--from", dest="from_address", help='sender, e.g. "Me <me@example.com>" (required for SMTP; '
                   "with --channel gmail the signed-in address, to which a name may be given)")
    m.add_argument("--reply-to", help="Reply-To address")
    m.add_argument("--to-file", required=True, help="recipients: .csv, .tsv, .xlsx or .txt (one address a line)")
    m.add_argument("--email-column", help="the column holding the address (name, or number from 1)")
    m.add_argument("--name-column", help="the column holding the name (for {{ name }} and the To line); "
                   "found by itself when it is called name, full name, or first and last name")
    m.add_argument("--subject", required=True, help='subject; may use fields: "Hello {{ name }}"')
    _body_options(m)
    m.add_argument("--no-signature", action="store_true",
                   help="leave out the account's signature (bulk-mailer signature set), added below the body by default")
    r = send.add_argument_group("run")
    r.add_argument("--delay-ms", type=int, default=DEFAULT_DELAY_MS,
                   help="pause between messages in milliseconds (default 1000)")
    _connections_option(r)
    r.add_argument("--results", help="write one CSV row per recipient to this file")
    r.add_argument("--progress", choices=["jsonl", "bar", "none"],
                   help="jsonl: one progress event per line on stdout; bar: a progress bar on a "
                   "terminal (default when stderr is a terminal); none")
    r.add_argument("--dry-run", action="store_true", help="render every message and report problems; send nothing")
    r.add_argument("--check-links", action="store_true",
                   help="with --dry-run: also follow each link of the message (it makes requests; exit 1 when "
                   "one is broken); the trust store is the system's plus --ca-file")
    m.add_argument("--attach", metavar="FILE", action="append",
                   help="attach this file to every message (repeat for several)")
    m.add_argument("--attach-column", metavar="NAME",
                   help="a column naming each recipient's own files (several separated by ;)")
    m.add_argument("--attach-dir", metavar="DIR",
                   help="the folder the --attach-column file names are relative to; nothing outside it is sent")
    m.add_argument("--unsubscribe", metavar="URI", action="append",
                   help="List-Unsubscribe address: mailto:... and/or https://... (one-click; may use "
                   "{{ email }}); repeat for both")
    m.add_argument("--suppress", metavar="FILE",
                   help="addresses never to mail (one a line): added to the kept suppression list, "
                   "which every campaign skips")
    _limit_options(send)
    _retry_options(send)
    r.add_argument("--preview", type=int, metavar="N",
                   help="print recipient N's message (from 1) exactly as it would be sent, and exit")
    r.add_argument("--skip-bad-rows", action="store_true",
                   help="send to the rows whose message can be built; list the others and leave them out")
    r.add_argument("--strict-fields", action="store_true",
                   help="a field the message uses (without | default) that is empty for some rows is an "
                   "error, not a warning: nothing is sent")
    _when_options(send)
    c = send.add_argument_group("copy in Sent (IMAP)")
    c.add_argument("--sent-copy", choices=SENT_COPY_MODES, default="auto",
                   help="file a copy of each sent message in the account's Sent folder over IMAP, once (found by "
                   "Message-ID). auto (default): on where the IMAP server is known (the provider's, or "
                   "--imap-host), off for gmail, google-workspace, office365 and outlook (their servers file "
                   "one) and for the local test inbox; always; never")
    _imap_options(c)


def _when_options(send: argparse.ArgumentParser) -> None:
    w = send.add_argument_group("when (docs/scheduling.md)")
    w.add_argument("--at", metavar="TIME", help='start then instead of now: "2026-12-04 09:00" (in --tz, else this '
                   "computer's time zone) or ISO 8601 with an offset; send returns at once with the campaign id, "
                   "and the campaign goes by itself (window open, or the timer: bulk-mailer timer install)")
    w.add_argument("--tz", metavar="ZONE", help="the time zone of --at and --window, e.g. Europe/Berlin "
                   "(default: this computer's)")
    w.add_argument("--window", metavar="DAYS HOURS", help='send only then, e.g. "mon-fri 08:00-18:00"; outside it '
                   "the campaign waits (and goes on by itself)")
    w.add_argument("--local-time", metavar="HH:MM", help="deliver at this time in each recipient's time zone "
                   "(the --tz-column column, else --default-tz), within 24 hours of the start")
    w.add_argument("--tz-column", default="timezone", metavar="NAME",
                   help="the column with each recipient's time zone (IANA name, e.g. America/New_York; default timezone)")
    w.add_argument("--default-tz", metavar="ZONE", help="the time zone of a row without one (default: --tz)")
    w.add_argument("--follow-up", nargs=2, action="append", metavar=("DAYS", "FILE"),
                   help="a follow-up DAYS days after, to those who did not reply (nor bounce or unsubscribe), in "
                   "the same thread; FILE is its body (.html or text), its first line may be 'Subject: ...' "
                   "(default: Re: and the subject). Repeat for up to 3 steps")
    w.add_argument("--warm-up", nargs="?", const="20,40,80,160,320,640,1000", metavar="N,N,...",
                   help="a new account or domain: at most this many messages the first day, the second, ... (the "
                   "last number after that); the rest goes on by itself the next days. Without numbers: "
                   "20,40,80,160,320,640,1000")
    w.add_argument("--save-password", action="store_true",
                   help="save the password given in the password store (the system keyring, else the encrypted "
                   "file), as the window's Remember password: needed by --at and by a campaign that goes on by "
                   "itself (run-due)")
    w.add_argument("--follow-up-expire", type=_count(float), default=2.0, metavar="DAYS",
                   help="skip a follow-up that could not go within DAYS days of its day (default 2)")


def _schedule_parsers(sub: Any) -> None:
    """run-due, reschedule, cancel, timer: campaigns with a time."""
    due = _add(sub, "run-due", help="send whatever is due now (scheduled campaigns, windows, follow-ups) and exit",
               description="Send what is due: scheduled campaigns whose time has come, campaigns waiting for their "
               "send window or their recipients' local time, campaigns that stopped at a daily limit that has "
               "lifted, follow-ups whose day has come (the mailbox is read for replies first). A campaign another "
               "window or process is sending is left to it. The timer (bulk-mailer timer install) runs this "
               "every 5 minutes. Exit code 0 when everything due went (or nothing was due), 1 when something "
               "due could not go.")
    due.add_argument("--json", action="store_true", help="print what was done as JSON on stdout")
    again = _add(sub, "reschedule", help="change a scheduled campaign before it starts (its time, its message)",
                 description="Change a campaign that has not started yet: its start and/or its message.")
    again.add_argument("campaign", help="the campaign id (bulk-mailer campaigns lists them)")
    again.add_argument("--at", metavar="TIME", help="the new start, as for send --at")
    again.add_argument("--tz", metavar="ZONE", help="the time zone of --at (default: the campaign's)")
    again.add_argument("--subject", help="the new subject")
    again.add_argument("--html-file", help="the new HTML body")
    again.add_argument("--text-file", help="the new plain-text body")
    cancel = _add(sub, "cancel", help="cancel a scheduled or waiting campaign and its follow-ups",
                  description="Cancel a campaign nobody is sending now (scheduled, waiting for its window, stopped "
                  "at a limit), and the follow-ups it has not sent yet; its recipients not sent yet are listed "
                  "as skipped. Nothing already sent changes.")
    cancel.add_argument("campaign", help="the campaign id, or latest")
    timer = _add(sub, "timer", help="install, remove or show the timer that runs run-due every 5 minutes",
                 description="A timer for your user only (systemd user timer on Linux, launchd agent on macOS, Task "
                 "Scheduler on Windows) runs bulk-mailer run-due every 5 minutes, so scheduled campaigns go while "
                 "the app is closed. Nothing runs while the computer sleeps; it catches up when it wakes.")
    timer.add_argument("action", choices=["install", "remove", "status"])


def _imap_options(c: Any) -> None:
    c.add_argument("--imap-host", help="the mailbox's IMAP server (default: the provider's), e.g. imap.example.com; "
                   "same username and password as for sending (or $BULK_MAILER_IMAP_PASSWORD)")
    c.add_argument("--imap-port", type=int, help="IMAP port (default: 993 SSL/TLS, 143 STARTTLS)")
    c.add_argument("--imap-security", choices=IMAP_SECURITY,
                   help="ssl = implicit TLS (usually 993), starttls (usually 143); never unencrypted")


def _track_parser(sub: Any) -> None:
    """track: bounces and replies read from the mailbox, read-only."""
    track = _add(sub, "track", help="read a campaign's bounces and replies from your mailbox (read-only)",
                 description="Read the new messages in INBOX and the Junk folder over IMAP, read-only (nothing is "
                 "marked read, moved or deleted), and record bounces (bounced: the address goes on the suppression "
                 "list), replies (replied) and automatic replies (auto_replied) of the campaign's recipients. "
                 "Without account options, the campaign's own mailbox (where it filed copies in Sent, else its "
                 "provider's IMAP server); the password from $BULK_MAILER_IMAP_PASSWORD, $BULK_MAILER_PASSWORD "
                 "or --password-stdin, else the saved one. A second run reads only new messages.")
    track.add_argument("campaign", help="the campaign id (bulk-mailer campaigns lists them), or latest")
    _account_options(track)
    _imap_options(track.add_argument_group("mailbox (IMAP)"))
    track.add_argument("--gmail-api", action="store_true",
                       help="read through the Gmail API with the sign-in for reading (bulk-mailer gmail login "
                       "--read), read-only; the default for a Gmail API campaign once that sign-in exists and no "
                       "mailbox options are given")
    track.add_argument("--move-bounces", action="store_true",
                       help="move the bounce notices it matched to a 'Bulk Mailer' folder (created when missing); "
                       "the one change track makes in your mailbox, and only when asked")
    track.add_argument("--json", action="store_true", help="print what was read and changed as JSON on stdout")


def _history_parsers(sub: Any) -> None:
    """campaigns and export: the journal."""
    campaigns = _add(sub, "campaigns", help="list past and interrupted campaigns",
                               description="Every campaign in the journal, newest first, with its state and counts.")
    campaigns.add_argument("campaign", nargs="?", help="show only this campaign (an id, or latest)")
    campaigns.add_argument("--json", action="store_true", help="print the list as JSON on stdout")

    export = _add(sub, "export", help="write a campaign's results as CSV",
                            description="One row per recipient of the campaign, as --results writes them.")
    export.add_argument("campaign", help="the campaign id (bulk-mailer campaigns lists them), or latest")
    export.add_argument("path", help="the CSV file to write, or - for standard output")


def _resume_parser(sub: Any) -> None:
    """resume: a journaled campaign, as it was or with the account options given."""
    _add(sub, "repair-journal", help="set a damaged campaign journal aside and save what can be read of it",
         description="Rename the journal to journal.sqlite3.damaged-<time> (the next campaign starts "
         "a new one) and write each campaign's readable rows as CSV into a folder beside it.")

    resume = _add(sub, "resume", help="continue a paused, stopped or interrupted campaign",
                            description="Send to the recipients of a campaign that have not been sent to yet. "
                            "Recipients whose message was in flight when the app stopped are 'uncertain': "
                            "choose --resend-uncertain or --skip-uncertain.")
    resume.add_argument("campaign", help="the campaign id (bulk-mailer campaigns lists them), or latest")
    choice = resume.add_mutually_exclusive_group()
    choice.add_argument("--resend-uncertain", action="store_true",
                        help="send again to the uncertain ones (they may get the message twice)")
    choice.add_argument("--skip-uncertain", action="store_true",
                        help="do not send to the uncertain ones (they may not have got it)")
    _account_options(resume)
    resume.add_argument("--use-current-settings", action="store_true",
                        help="resume with the account options given here (as for send) instead of the "
                        "campaign's own settings, e.g. a corrected host, port or security")
    resume.add_argument("--results", help="write one CSV row per recipient of the campaign to this file")
    resume.add_argument("--progress", choices=["jsonl", "bar", "none"], help="as for send")
    resume.add_argument("--sent-copy", choices=SENT_COPY_MODES, default="auto",
                        help="auto or always (default: as the campaign did: its copies in Sent are filed, "
                        "those a stopped run left too); never: file none")
    resume.add_argument("--delay-ms", type=int, help="pause between messages (default: the campaign's)")
    _connections_option(resume, default_words="the campaign's")
    resume.add_argument("--now", action="store_true",
                        help="resume a campaign stopped by a quota before the time it can continue "
                        "(the server may refuse again)")
    _limit_options(resume, resume=True)
    _retry_options(resume, resume=True)


def _gmail_parser(sub: Any) -> None:
    """gmail login, logout and status."""
    gmail = _add(sub, "gmail", help="sign in with Google for the Gmail API (or SMTP with OAuth2)",
                           description="Sign in with Google: the Gmail API channel (send --channel gmail) and "
                           "SMTP with OAuth2 (--auth xoauth2) use this sign-in instead of a password.")
    gsub = gmail.add_subparsers(dest="gmail_command", metavar="ACTION", required=True)
    login = _add(gsub, "login", help="sign in with Google in the browser",
                            description="Run Google's sign-in in your browser with your own OAuth client "
                            "(a Desktop app client's JSON from Google Cloud Console); keep the token in the "
                            "system keyring or the encrypted file.")
    login.add_argument("--client-secrets", required=True, metavar="FILE",
                       help="the OAuth client JSON downloaded from Google Cloud Console (Desktop app type)")
    login.add_argument("--no-browser", action="store_true",
                       help="do not open a browser: print the authorization address on one line (stdout) and "
                       "wait for the answer on 127.0.0.1 (open it in a browser on this computer)")
    kind = login.add_mutually_exclusive_group()
    kind.add_argument("--smtp", action="store_true",
                      help="also allow SMTP with OAuth2 (smtp.gmail.com, --auth xoauth2): asks for full mail "
                      "access (https://mail.google.com/), which Google requires for SMTP")
    kind.add_argument("--read", action="store_true",
                      help="a separate sign-in that lets track read bounces and replies through the Gmail API: "
                      "asks only to view your email (gmail.readonly, a restricted scope: use your own OAuth "
                      "client); the sending sign-in stays as it is")
    logout = _add(gsub, "logout", help="revoke the Google sign-in and delete it here",
                  description="Revoke the sign-ins at Google (sending and reading) and delete the tokens and "
                  "OAuth clients saved here.")
    logout.add_argument("--read", action="store_true",
                        help="remove only the sign-in for reading; the sending one stays")
    status = _add(gsub, "status", help="who is signed in with Google",
                             description="Who is signed in, with which permissions and sending limits. Exit "
                             "code 0 when signed in, 2 when not.")
    status.add_argument("--json", action="store_true", help="print the status as JSON on stdout")


def _microsoft_parser(sub: Any) -> None:
    """microsoft login, logout and status."""
    ms = _add(sub, "microsoft", help="sign in with Microsoft for Microsoft Graph (or SMTP with OAuth2)",
              description="Sign in with Microsoft (Outlook.com, Hotmail, Live, Microsoft 365): the Microsoft Graph "
              "channel (send --channel microsoft) and SMTP with OAuth2 (--provider outlook or office365 --auth "
              "xoauth2) use this sign-in instead of a password.")
    msub = ms.add_subparsers(dest="microsoft_command", metavar="ACTION", required=True)
    login = _add(msub, "login", help="sign in with Microsoft in the browser (or with a device code)",
                 description="Run Microsoft's sign-in (MSAL, a public client: no secret) with your app registration's "
                 "client id; keep the sign-in in the system keyring or the encrypted file.")
    login.add_argument("--client-id", metavar="ID", help="the 'Application (client) ID' of your app registration "
                       "(default: the last one used, or $BULK_MAILER_MICROSOFT_CLIENT_ID)")
    login.add_argument("--tenant", default="common", help="common (default), organizations, consumers, or your "
                       "organisation's tenant id or domain")
    how = login.add_mutually_exclusive_group()
    how.add_argument("--no-browser", action="store_true", help="do not open a browser: print the sign-in address "
                     "on one line (stdout) and wait for the answer on 127.0.0.1")
    how.add_argument("--device-code", action="store_true", help="sign in on another device: print the page and "
                     "the code to enter there (for a computer without a browser)")
    _add(msub, "logout", help="delete the Microsoft sign-in here",
         description="Delete the Microsoft sign-in (its refresh token included) saved here.")
    status = _add(msub, "status", help="who is signed in with Microsoft",
                  description="Who is signed in, with which permissions and sending limits. Exit code 0 when "
                  "signed in, 2 when not.")
    status.add_argument("--json", action="store_true", help="print the status as JSON on stdout")


def _verify_parser(sub: Any) -> None:
    """verify: the connection check (or --detect)."""
    verify = _add(sub, "verify", help="test the connection and login",
                            description="Connect, secure the connection, EHLO and log in; send nothing.")
    _account_options(verify)
    verify.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show every connection step and server reply")
    verify.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    verify.add_argument("--from", dest="from_address", default="", help="the sender address (for the checks below)")
    verify.add_argument("--check-sender", action="store_true",
                        help="also try MAIL FROM with the --from address (then RSET; nothing is sent)")
    verify.add_argument("--check-domain", action="store_true",
                        help="also look up the --from domain's MX, SPF and DMARC records")
    verify.add_argument("--detect", metavar="ADDRESS",
                        help="suggest server settings for this address (presets, MX records, probing)")
    verify.add_argument("--imap", action="store_true",
                        help="also log in to the mailbox over IMAP (the provider's server or --imap-host; read-only) "
                        "and name its Sent and Junk folders: what the copy in Sent and track use")
    _imap_options(verify.add_argument_group("mailbox (IMAP)"))


def _connections(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_CONNECTIONS:
        raise argparse.ArgumentTypeError(f"give a whole number from 1 to {MAX_CONNECTIONS}")
    return n


def _connections_option(p: Any, default_words: str = "the --provider's, else 1") -> None:
    p.add_argument("--connections", type=_connections, metavar="N",
                   help=f"send on N connections at once (1-{MAX_CONNECTIONS}; default: {default_words}: 1 for "
                   "mailbox providers, 4 for sending services); more is faster where the server allows it")


def _count(kind: type) -> Any:
    """An argparse type: a finite number >= 0 of that kind (a limit of nan or -5 would mean none)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {'whole ' if kind is int else ''}number") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"'{text}' must be 0 (no limit) or more")
        return value
    return parse


def _limit_options(p: argparse.ArgumentParser, resume: bool = False) -> None:
    g = p.add_argument_group("sending limits (default: " + (
        "the campaign's own" if resume else "the --provider's published limits") + "; 0 = none)")
    g.add_argument("--max-per-second", type=_count(float), metavar="N", help="at most N messages a second")
    g.add_argument("--max-per-minute", type=_count(int), metavar="N", help="at most N messages a minute")
    g.add_argument("--max-per-hour", type=_count(int), metavar="N", help="at most N messages an hour")
    g.add_argument("--max-per-day", type=_count(int), metavar="N",
                   help="at most N messages in 24 hours, counting earlier campaigns of the same account")


def _retry_options(p: argparse.ArgumentParser, resume: bool = False) -> None:
    g = p.add_argument_group("retries of temporary refusals (4xx, dropped connections)" + (
        "; default: the campaign's own, else as below" if resume else ""))
    g.add_argument("--retry-base", type=_count(float), metavar="S", help="first retry after S seconds (default 60)")
    g.add_argument("--retry-cap", type=_count(float), metavar="S",
                   help="longest wait between two tries, in seconds (default 3600)")
    g.add_argument("--retry-attempts", type=_count(int), metavar="N", help="at most N tries per recipient (default 5)")
    g.add_argument("--retry-max-age", type=_count(float), metavar="H",
                   help="give up on a recipient H hours after its first try (default 24)")
    g.add_argument("--max-failures-in-a-row", type=_count(int), metavar="N",
                   help="stop the campaign after N failed recipients in a row (default 20; 0 = never)")
