"""The `bulk-mailer` command line: argv <-> service.py, human lines on stderr, data on stdout."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import math
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, TextIO

from backend import __version__, paths, service
from backend.campaign import CampaignOutcome, Control, RateLimits, RetryPolicy
from backend.credentials import MIN_PASSPHRASE, default_store
from backend.diagnostics import diagnose
from backend.errors import CATEGORIES, MailerError, OAuthError, SettingsError
from backend.google_auth import (
    KEY_TOKEN,
    SCOPE_MAIL,
    SIGN_IN_TIMEOUT_S,
    GoogleAccount,
    OAuthClient,
    SignIn,
    TokenSource,
    saved_profile,
)
from backend.journal import Journal, repair_journal
from backend.presets import (
    GMAIL_API_LIMITS,
    MAX_CONNECTIONS,
    PRESETS,
    default_connections,
    gmail_api_limits,
)
from backend.recipients import load_file
from backend.settings import AUTH_MODES, SECURITY_LABELS, SECURITY_MODES, SmtpSettings, apply_preset
from backend.suppression import SuppressionList
from backend.transports.gmail import GmailTransport
from backend.transports.smtp import SmtpTransport

PASSWORD_ENV = "BULK_MAILER_PASSWORD"  # noqa: S105 (a variable name, not a secret)
PASSPHRASE_ENV = "BULK_MAILER_PASSPHRASE"  # noqa: S105 (a variable name: unlocks saved sign-ins)
EXIT_OK, EXIT_SOME_FAILED, EXIT_NOTHING_SENT = 0, 1, 2
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
CHANNELS = ("smtp", "gmail")

log = logging.getLogger("bulk_mailer")


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
    g.add_argument("--user", default="", help="login name, usually your full email address")
    g.add_argument("--password-stdin", action="store_true",
                   help=f"read the password from standard input (else from ${PASSWORD_ENV})")
    g.add_argument("--auth", choices=AUTH_MODES, default="password",
                   help="password (default), or xoauth2: log in to smtp.gmail.com with the Google sign-in "
                   "of `bulk-mailer gmail login --smtp` (no password)")
    tls = g.add_mutually_exclusive_group()
    tls.add_argument("--ca-file", help="also trust this CA certificate file (PEM)")
    tls.add_argument("--insecure-skip-verify", action="store_true",
                     help="do NOT verify the server's certificate (test servers only)")
    g.add_argument("--allow-plaintext-auth", action="store_true",
                   help="allow sending the password over an unencrypted connection")
    g.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server (default 30)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="bulk-mailer",
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

    send = sub.add_parser("send", help="send a campaign", description="Send one message to each recipient.")
    _account_options(send)
    send.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                      help="show every connection step, server reply and progress event")
    m = send.add_argument_group("message")
    send.add_argument("--channel", choices=CHANNELS, default="smtp",
                      help="smtp (default): through an SMTP server; gmail: through the Gmail API as the "
                      "account signed in with `bulk-mailer gmail login`")
    m.add_argument("--from", dest="from_address", help='sender, e.g. "Me <me@example.com>" (required for SMTP; '
                   "with --channel gmail the signed-in address, to which a name may be given)")
    m.add_argument("--reply-to", help="Reply-To address")
    m.add_argument("--to-file", required=True, help="recipients: .csv, .tsv, .xlsx or .txt (one address a line)")
    m.add_argument("--email-column", help="the column holding the address (name, or number from 1)")
    m.add_argument("--name-column", help="the column holding the name (for {{ name }} and the To line); "
                   "found by itself when it is called name, full name, or first and last name")
    m.add_argument("--subject", required=True, help='subject; may use fields: "Hello {{ name }}"')
    m.add_argument("--html-file", help="HTML body template")
    m.add_argument("--text-file", help="plain-text body template (made from the HTML when omitted)")
    r = send.add_argument_group("run")
    r.add_argument("--delay-ms", type=int, default=service.DEFAULT_DELAY_MS,
                   help="pause between messages in milliseconds (default 1000)")
    _connections_option(r)
    r.add_argument("--results", help="write one CSV row per recipient to this file")
    r.add_argument("--progress", choices=["jsonl", "bar", "none"],
                   help="jsonl: one progress event per line on stdout; bar: a progress bar on a "
                   "terminal (default when stderr is a terminal); none")
    r.add_argument("--dry-run", action="store_true", help="render every message and report problems; send nothing")
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

    campaigns = sub.add_parser("campaigns", help="list past and interrupted campaigns",
                               description="Every campaign in the journal, newest first, with its state and counts.")
    campaigns.add_argument("--json", action="store_true", help="print the list as JSON on stdout")

    export = sub.add_parser("export", help="write a campaign's results as CSV",
                            description="One row per recipient of the campaign, as --results writes them.")
    export.add_argument("campaign", help="the campaign id (bulk-mailer campaigns lists them)")
    export.add_argument("path", help="the CSV file to write")

    sub.add_parser("repair-journal", help="set a damaged campaign journal aside and save what can be read of it",
                   description="Rename the journal to journal.sqlite3.damaged-<time> (the next campaign starts "
                   "a new one) and write each campaign's readable rows as CSV into a folder beside it.")

    resume = sub.add_parser("resume", help="continue a paused, stopped or interrupted campaign",
                            description="Send to the recipients of a campaign that have not been sent to yet. "
                            "Recipients whose message was in flight when the app stopped are 'uncertain': "
                            "choose --resend-uncertain or --skip-uncertain.")
    resume.add_argument("campaign", help="the campaign id (bulk-mailer campaigns lists them)")
    choice = resume.add_mutually_exclusive_group()
    choice.add_argument("--resend-uncertain", action="store_true",
                        help="send again to the uncertain ones (they may get the message twice)")
    choice.add_argument("--skip-uncertain", action="store_true",
                        help="do not send to the uncertain ones (they may not have got it)")
    resume.add_argument("--password-stdin", action="store_true",
                        help=f"read the password from standard input (else from ${PASSWORD_ENV})")
    resume.add_argument("--results", help="write one CSV row per recipient of the campaign to this file")
    resume.add_argument("--progress", choices=["jsonl", "bar", "none"], help="as for send")
    resume.add_argument("--delay-ms", type=int, help="pause between messages (default: the campaign's)")
    _connections_option(resume, default_words="the campaign's")
    resume.add_argument("--now", action="store_true",
                        help="resume a campaign stopped by a quota before the time it can continue "
                        "(the server may refuse again)")
    _limit_options(resume, resume=True)
    _retry_options(resume, resume=True)

    gmail = sub.add_parser("gmail", help="sign in with Google for the Gmail API (or SMTP with OAuth2)",
                           description="Sign in with Google: the Gmail API channel (send --channel gmail) and "
                           "SMTP with OAuth2 (--auth xoauth2) use this sign-in instead of a password.")
    gsub = gmail.add_subparsers(dest="gmail_command", metavar="ACTION", required=True)
    login = gsub.add_parser("login", help="sign in with Google in the browser",
                            description="Run Google's sign-in in your browser with your own OAuth client "
                            "(a Desktop app client's JSON from Google Cloud Console); keep the token in the "
                            "system keyring or the encrypted file.")
    login.add_argument("--client-secrets", required=True, metavar="FILE",
                       help="the OAuth client JSON downloaded from Google Cloud Console (Desktop app type)")
    login.add_argument("--no-browser", action="store_true",
                       help="do not open a browser: print the authorization address on one line (stdout) and "
                       "wait for the answer on 127.0.0.1 (open it in a browser on this computer)")
    login.add_argument("--smtp", action="store_true",
                       help="also allow SMTP with OAuth2 (smtp.gmail.com, --auth xoauth2): asks for full mail "
                       "access (https://mail.google.com/), which Google requires for SMTP")
    gsub.add_parser("logout", help="revoke the Google sign-in and delete it here",
                    description="Revoke the sign-in at Google and delete the token and OAuth client saved here.")
    status = gsub.add_parser("status", help="who is signed in with Google",
                             description="Who is signed in, with which permissions and sending limits. Exit "
                             "code 0 when signed in, 2 when not.")
    status.add_argument("--json", action="store_true", help="print the status as JSON on stdout")

    verify = sub.add_parser("verify", help="test the connection and login",
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
    return parser


# -- settings from arguments -------------------------------------------------------------


def _read_password(args: argparse.Namespace, stdin: TextIO) -> str:
    if not args.user:
        return ""
    if args.password_stdin and stdin.isatty():
        password = getpass.getpass(f"Password for {args.user}: ")
    elif args.password_stdin:
        line = stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password.rstrip("\r")
    else:
        password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise UsageError(f"no password for '{args.user}': set {PASSWORD_ENV} or use --password-stdin")
    return password


def google_account(stdin: TextIO, *, optional: bool = False) -> GoogleAccount:
    """The saved Google sign-in; the passphrase (no system keyring) from $BULK_MAILER_PASSPHRASE
    or asked for on a terminal."""
    store = default_store()
    passphrase = None
    if store.needs_passphrase:
        passphrase = os.environ.get(PASSPHRASE_ENV) or None
        if passphrase is None and stdin.isatty():
            passphrase = getpass.getpass("Passphrase of saved passwords and sign-ins: ") or None
        if passphrase is None and not optional:
            raise UsageError(
                f"there is no system keyring here, so the Google sign-in is kept encrypted under a passphrase: "
                f"set {PASSPHRASE_ENV} (at least {MIN_PASSPHRASE} characters; the same every time)",
                category="invalid_settings")
    return GoogleAccount(store, passphrase)


def settings_from_args(args: argparse.Namespace, stdin: TextIO) -> SmtpSettings:
    """Build validated SmtpSettings from the account options (a preset fills the gaps)."""
    values: dict[str, Any] = {}
    if args.provider:
        values = apply_preset(args.provider, region=args.region, host=args.host, port=args.port,
                              security=args.security)
    else:
        if not args.host:
            raise SettingsError("host", "give --host (or --provider to use a preset)")
        security = args.security or ("ssl" if args.port == 465 else "starttls")
        values = {"host": args.host, "security": security, "port": args.port or DEFAULT_PORTS[security]}
    token_source = None
    if args.auth == "xoauth2":
        token_source = TokenSource(google_account(stdin), "smtp")
        args.user = args.user or token_source.email
    return SmtpSettings(
        **values,
        user=args.user,
        password="" if token_source is not None else _read_password(args, stdin),
        auth=args.auth,
        token_source=token_source,
        from_address=getattr(args, "from_address", "") or "",
        ca_file=args.ca_file,
        verify_certificates=not args.insecure_skip_verify,
        allow_plaintext_auth=args.allow_plaintext_auth,
        timeout=args.timeout,
    ).validated()


def _read_template(path: str | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} file '{path}' is not UTF-8 text (byte {exc.start})", category="file_error") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} file '{path}': {exc.strerror}", category="file_error") from None


def _check_writable(path: str) -> None:
    """Refuse a results path that cannot be written before anything is sent."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"--results '{path}' is a folder; give a file name", category="file_error")
    folder = target.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # missing folders are created when the file is written
    if not folder.is_dir():
        raise UsageError(f"--results: '{folder}' is not a folder", category="file_error")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"--results '{path}' cannot be written (permission denied)", category="file_error")
    if folder == target.absolute().parent:
        # Write access is not the whole story (a read-only or special file system): try it.
        try:
            fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".check")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise UsageError(f"--results '{path}' cannot be written ({exc.strerror or exc})",
                             category="file_error") from None


# -- output ------------------------------------------------------------------------------


class Reporter:
    """Human lines on stderr (a live bar on a terminal); JSON lines on stdout when asked."""

    def __init__(self, mode: str, out: TextIO, err: TextIO) -> None:
        self.mode, self.out, self.err = mode, out, err
        self._bar_shown = False
        self._sent = self._failed = 0
        self._furthest = 0  # on several connections outcomes arrive a little out of order

    def line(self, text: str) -> None:
        self._clear_bar()
        print(text, file=self.err, flush=True)

    def event(self, event: dict[str, Any]) -> None:
        if self.mode == "jsonl":
            self.out.write(json.dumps(event, ensure_ascii=False) + "\n")
            self.out.flush()
        status = event["status"]
        if status == "sent":
            self._sent += 1
        elif status == "deferred":
            self.line(f"deferred  {event['recipient']}  [{event['category']} {event['code']}] {event['error']}; "
                      "not sent yet: tried again later in this run, or when the campaign is resumed")
        elif status in ("failed", "uncertain"):
            self._failed += 1
            detail = " ".join(str(x) for x in (event["category"], event["code"]) if x)
            self.line(f"{status:<9} {event['recipient']}  [{detail}] {event['error']}")
        if self.mode == "bar" and status != "sending":
            self._furthest = max(self._furthest, event["current"])
            self._draw(self._furthest, event["total"])

    def _draw(self, current: int, total: int) -> None:
        width = 30
        filled = int(width * current / total) if total else width
        self.err.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {current}/{total}  "
                       f"sent {self._sent}  failed {self._failed}")
        self.err.flush()
        self._bar_shown = True

    def _clear_bar(self) -> None:
        if self._bar_shown:
            self.err.write("\r\x1b[K")
            self._bar_shown = False


def _print_error(exc: MailerError, err: TextIO, provider: str | None) -> None:
    d = exc.describe(provider)
    print(f"bulk-mailer: error [{d['category']}]: {d['message']}", file=err)
    print(f"  {d['title']}. {d['cause']}", file=err)
    for n, step in enumerate(d["fix"], 1):
        print(f"  {n}. {step}", file=err)


def _security_words(security: str) -> str:
    return "no encryption" if security == "none" else SECURITY_LABELS[security]


def _print_problems(problems: list[Any], rep: Reporter) -> None:
    """One line per distinct problem with the rows it hits, not one line per row."""
    groups: dict[tuple[str | None, str], list[int | None]] = {}
    for p in problems:
        text = re.sub(r"^line \d+: ", "", p.message)
        groups.setdefault((p.field, text), []).append(p.row)
    for (_, text), rows in groups.items():
        known = sorted({r for r in rows if r is not None})
        where = _line_list(known)
        rep.line(f"problem   {where + ': ' if where else ''}{text}")


def _line_list(lines: list[int], show: int = 8) -> str:
    if not lines:
        return ""
    shown = ", ".join(str(n) for n in lines[:show])
    more = f" and {len(lines) - show} more" if len(lines) > show else ""
    return f"line{'s' if len(lines) > 1 else ''} {shown}{more}"


def _print_summary(outcome: CampaignOutcome, rep: Reporter, provider: str | None) -> None:
    s = outcome.summary()
    parts = [f"{s['sent']} sent", f"{s['failed']} failed"]
    if s["uncertain"]:
        parts.append(f"{s['uncertain']} uncertain (may have arrived; check before resending)")
    if s["skipped"] + s["deferred"]:
        parts.append(f"{s['skipped'] + s['deferred']} not sent")
    rep.line(f"Done: {', '.join(parts)} of {s['total']} in {s['duration_s']:.1f} s.")
    if outcome.stopped == "cancelled":
        rep.line(f"The campaign is paused; the recipients marked 'not sent' got nothing yet. "
                 f"Continue with: bulk-mailer resume {outcome.campaign}")
    elif outcome.error is not None:
        rep.line(f"Stopped early: {outcome.error.message}")
        if outcome.resume_after:
            rep.line(f"Continue then with: bulk-mailer resume {outcome.campaign}")
    stop_category = outcome.error.category if outcome.error is not None else None
    by_category = dict(s["failed_by_category"])
    if stop_category and stop_category not in by_category and outcome.ok:
        by_category[stop_category] = 1  # the stop's own advice, though its recipient stays due
    for category, count in by_category.items():
        cat = CATEGORIES[category]
        rep.line(f"{count} x {category}: {cat.title}. {cat.cause}")
        fix = MailerError(cat.title, category=category).fix_steps(provider)
        for n, step in enumerate(fix, 1):
            rep.line(f"   {n}. {step}")


# -- commands ----------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    if args.detect:
        return _detect(args, out, err)
    settings = settings_from_args(args, stdin)
    if args.check_sender and not settings.from_address:
        raise UsageError("--check-sender needs --from (the address to check)")
    if not settings.verify_certificates:
        print("WARNING: certificate verification is OFF (--insecure-skip-verify).", file=err)
    result = diagnose(settings, check_sender=args.check_sender, check_domain=args.check_domain)
    if args.json:
        out.write(json.dumps(result.as_dict(settings.provider)) + "\n")
    marks = {"ok": "ok", "failed": "FAILED", "warning": "warning", "skipped": "skipped"}
    for step in result.steps:
        print(f"{marks[step.status]:<8} {step.title:<31} {step.detail} ({step.seconds:.2f} s)", file=err)
    if result.error is not None:
        _print_error(result.error, err, settings.provider)
        return EXIT_NOTHING_SENT
    who = f" as {settings.user}" if settings.user else " (no login)"
    print(f"Connection OK: {settings.host}:{settings.port} ({_security_words(settings.security)}){who}.", file=err)
    return EXIT_OK


def _detect(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from backend.autodetect import detect

    found = detect(args.detect, ca_file=args.ca_file)
    if args.json:
        out.write(json.dumps([vars(s) | {"notes": list(s.notes)} for s in found]) + "\n")
    if not found:
        print(f"No settings found for {args.detect}: ask your provider for its SMTP server, port and "
              "security, or pick a --provider.", file=err)
        return EXIT_NOTHING_SENT
    for n, s in enumerate(found, 1):
        print(f"{n}. {s.host} port {s.port} {_security_words(s.security)}"
              f"{' (' + s.provider + ')' if s.provider else ''}: {s.reason}", file=err)
    best = found[0]
    flag = f"--provider {best.provider}" if best.provider else f"--host {best.host} --port {best.port} --security {best.security}"
    print(f"To use the first: bulk-mailer verify {flag} --user {args.detect}", file=err)
    return EXIT_OK


def cmd_send(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    progress = args.progress or ("bar" if err.isatty() else "none")
    rep = Reporter(progress, out, err)
    html = _read_template(args.html_file, "HTML")
    text = _read_template(args.text_file, "text")
    if html is None and text is None:
        raise UsageError("give --html-file or --text-file (or both)")
    gmail = args.channel == "gmail"
    if gmail:
        smtp_only = [flag for flag, given in (("--host", args.host), ("--port", args.port), ("--user", args.user),
                                               ("--security", args.security), ("--auth", args.auth != "password"),
                                               ("--password-stdin", args.password_stdin),
                                               # Google's HTTPS is always verified with the system's
                                               # authorities: these would be silently ignored.
                                               ("--ca-file", args.ca_file),
                                               ("--insecure-skip-verify", args.insecure_skip_verify),
                                               ("--allow-plaintext-auth", args.allow_plaintext_auth)) if given]
        if smtp_only or (args.provider and args.provider not in GMAIL_API_LIMITS):
            what = ", ".join(smtp_only) or f"--provider {args.provider}"
            raise UsageError(f"{what}: SMTP settings do not go with --channel gmail, which sends as the account "
                             "signed in with Google (--provider gmail or google-workspace may choose the limits)")
        profile = saved_profile()  # readable while the store is locked: enough for a dry run
        if profile is None:
            raise OAuthError("nobody is signed in with Google", fix=(
                "Sign in first: bulk-mailer gmail login --client-secrets FILE",))
        from_address = service.gmail_sender(args.from_address, profile["email"])
    elif not args.from_address:
        raise UsageError("give --from, the sender address (e.g. \"Me <me@example.com>\")")
    else:
        from_address = args.from_address
    imported = load_file(args.to_file, email_column=args.email_column, name_column=args.name_column)
    if args.attach_column and not args.attach_dir:
        raise UsageError("--attach-column needs --attach-dir (the folder the file names are relative to)")
    draft = service.make_draft(imported, subject=args.subject, html=html, text=text,
                               from_address=from_address, delay_ms=args.delay_ms,
                               reply_to=args.reply_to, attach=args.attach or (),
                               attach_column=args.attach_column, attach_dir=args.attach_dir,
                               unsubscribe=args.unsubscribe or ())
    if not args.dry_run and args.preview is None:
        rep.line(f"Campaign {draft.id}")
    warning = draft.size_warning()
    if warning:
        rep.line(f"warning   {warning}")
    trial = args.dry_run or args.preview is not None
    settings = None if trial or gmail else settings_from_args(args, stdin)
    account = None
    if gmail and not trial:
        account = google_account(stdin)
        email = account.require("api").email
        if email.lower() != draft.sender.address.lower():  # signed in again as someone else
            raise OAuthError(f"the saved sign-in is for {email}, not {draft.sender.address}",
                             fix=("Sign in again: bulk-mailer gmail login --client-secrets FILE",))
    if args.results and not args.dry_run:
        _check_writable(args.results)

    try:
        suppression: SuppressionList | None = SuppressionList()
    except OSError as exc:
        # Sending without the list could mail someone who unsubscribed: only a dry run goes on.
        if not args.dry_run:
            raise UsageError(f"the suppression list cannot be read ({exc.strerror or exc}); nothing was sent",
                             category="file_error") from None
        rep.line(f"warning   the suppression list cannot be read ({exc.strerror or exc})")
        suppression = None
    if args.suppress and suppression is not None:
        if args.dry_run or args.preview is not None:
            # A trial run must not change the kept list: use a copy for this run only.
            import shutil
            import tempfile

            trial = Path(tempfile.mkdtemp(prefix="bm-suppress-")) / "suppression.txt"
            if suppression.path.exists():
                shutil.copyfile(suppression.path, trial)
            suppression = SuppressionList(trial)
        report = suppression.import_file(args.suppress)
        kept = "for this trial run only" if args.dry_run or args.preview is not None else "kept for every campaign"
        rep.line(f"suppression list: {report.summary()} from {args.suppress} ({kept})")
        for line, value, reason in report.invalid:
            rep.line(f"skipped   {args.suppress} line {line}: {value!r}: {reason}")
    for warning in imported.warnings:
        rep.line(f"warning   {warning}")
    for bad in imported.rejected:
        rep.line(f"skipped   line {bad.line}: {bad.reason}")
    for dup in imported.duplicates:
        rep.line(f"duplicate line {dup.line}: {dup.email} (already on line {dup.first_line}; sent once)")
    if suppression is not None and service.apply_suppression(draft, suppression):
        for row in draft.excluded.values():
            rep.line(f"suppressed {row.email}: {row.error}")
    if not draft.recipients:
        raise UsageError(f"no recipients left to send to in '{args.to_file}' ({imported.summary()}"
                         f"{', ' + str(len(draft.excluded)) + ' suppressed' if draft.excluded else ''})",
                         category="invalid_address")

    if args.preview is not None:
        recipients = draft.recipients
        if not 1 <= args.preview <= len(recipients):
            raise UsageError(f"--preview {args.preview}: there are {len(recipients)} recipients to send to; "
                             f"give a number from 1 to {len(recipients)}")
        # Whether the server offers SMTPUTF8 is not known without connecting: assume it does.
        out.write(draft.outgoing(recipients[args.preview - 1], smtputf8=True).data.decode("utf-8", "replace"))
        out.flush()
        return EXIT_OK

    if args.dry_run:
        problems = service.dry_run(draft)
        _print_problems(problems, rep)
        ok = len(draft.recipients) - len({p.row for p in problems})
        rep.line(f"Dry run: {ok} of {len(draft.recipients)} messages render; {len(problems)} problem(s); nothing sent.")
        return EXIT_NOTHING_SENT if problems else EXIT_OK

    problems = draft.problems()
    if problems:
        _print_problems(problems, rep)
        rows = len({p.row for p in problems})
        if not args.skip_bad_rows:
            raise UsageError(f"{rows} row(s) cannot be built; fix them (see above), or add --skip-bad-rows "
                             "to send to the others", category="template_error")
        rows = service.exclude_problem_rows(draft, problems)
        rep.line(f"Skipping {rows} row(s) that cannot be built (--skip-bad-rows); they are reported as not sent.")
        if not draft.recipients:
            raise UsageError("no row is left to send to", category="template_error")

    n = len(draft.recipients)
    journal = Journal()
    for past in journal.campaigns():
        left = past.counts.get("pending", 0) + past.counts.get("deferred", 0)
        if past.state == "interrupted" and left + past.counts.get("uncertain", 0):
            # the app died while it was sending, and something is left: say so at once
            rep.line(f"Note: campaign {past.id} was interrupted ({left} not sent yet, "
                     f"{past.counts.get('uncertain', 0)} uncertain); continue it with: bulk-mailer resume {past.id}")
    if account is not None:
        provider, _ = gmail_api_limits(account.load().workspace)
        provider = args.provider if args.provider in GMAIL_API_LIMITS else provider
        rep.line(f"Sending to {n} recipient{'' if n == 1 else 's'} ({imported.summary()}) through the Gmail API "
                 f"as {draft.sender.address}")
        outcome = _run_in_worker(rep, draft.id, lambda control: service.send(
            draft, GmailTransport(account), on_event=rep.event, control=control, journal=journal,
            account=f"{draft.sender.address} (Gmail API)",
            spec=service.campaign_spec(draft, None, attach=args.attach or (), gmail=draft.sender.address),
            limits=_limits(args, provider, GMAIL_API_LIMITS), **_retry(args, None), checked=True))
        return _finish(args, rep, err, outcome, draft, imported, provider)
    assert settings is not None
    connections = args.connections or default_connections(settings.provider)
    rep.line(f"Sending to {n} recipient{'' if n == 1 else 's'} ({imported.summary()}) via "
             f"{settings.host}:{settings.port} ({_security_words(settings.security)})"
             + (f" on {connections} connections" if connections > 1 else ""))
    if not settings.verify_certificates:
        rep.line("WARNING: certificate verification is OFF (--insecure-skip-verify).")

    spec = service.campaign_spec(draft, settings, attach=args.attach or ())
    spec["connections"] = connections
    outcome = _run_in_worker(rep, draft.id, lambda control: service.send(
        draft, _pool(settings, connections), on_event=rep.event, control=control, journal=journal,
        account=f"{settings.user or '(no login)'} @ {settings.host}:{settings.port}",
        spec=spec, limits=_limits(args, settings.provider), **_retry(args, None), checked=True))
    return _finish(args, rep, err, outcome, draft, imported, settings.provider)


def cmd_campaigns(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    found = Journal().campaigns()
    if args.json:
        out.write(json.dumps([c.as_dict() for c in found]) + "\n")
        return EXIT_OK
    if not found:
        print("No campaigns yet.", file=err)
    for c in found:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(c.counts.items()))
        print(f"{c.id}  {c.state:<11} {c.created}  {c.account}  {counts}"
              + (f"  ({c.reason})" if c.reason else ""), file=out)
    return EXIT_OK


def cmd_export(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    journal = Journal()
    journal.get(args.campaign)
    rows = [row.result for row in journal.rows(args.campaign)]
    _check_writable(args.path)
    written = service.write_results_csv(args.path, rows)
    print(f"{len(rows)} rows written to {written}", file=err)
    return EXIT_OK


def cmd_repair_journal(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    print("\n".join(repair_journal().lines()), file=err)
    return EXIT_OK


def cmd_resume(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    if args.results:
        _check_writable(args.results)
    journal = Journal()
    info = journal.get(args.campaign)
    if info.state == "running":
        raise UsageError(f"campaign {args.campaign} is still running in another process", category="action_unavailable")
    if info.state == "finished" and not info.counts.get("uncertain"):
        raise UsageError(f"campaign {args.campaign} is finished; nothing is left to send", category="action_unavailable")
    waiting = service.quota_lifts(info.resume_after)
    if waiting and not args.now:
        raise UsageError(f"campaign {args.campaign} was stopped by a sending quota and can continue after "
                         f"{waiting}; resume it then, or add --now to try anyway",
                         category="action_unavailable")
    # Ours from here on (a second resume, in the window or here, is refused), and every row is
    # read after the claim: nothing another run sent meanwhile is sent again.
    journal.claim(args.campaign)
    try:
        uncertain = journal.rows(args.campaign, ["uncertain"])
        if uncertain and not (args.resend_uncertain or args.skip_uncertain):
            for row in uncertain:
                print(f"uncertain {row.recipient.email} (line {row.recipient.line}): {row.result.error}", file=err)
            raise UsageError(f"{len(uncertain)} recipient(s) may or may not have got the message (listed above): "
                             "add --resend-uncertain or --skip-uncertain", category="action_unavailable")
        if args.resend_uncertain:
            journal.reset(args.campaign, ["uncertain"])
        elif args.skip_uncertain:
            journal.skip(args.campaign, "uncertain", "not resent: it may or may not have arrived (--skip-uncertain)")
        draft, indices, spec = service.resume_draft(journal, args.campaign)
        if args.delay_ms is not None:
            draft.delay_ms = args.delay_ms
        # --now: the quota's own recipient goes at once, with the rest.
        spec["deferred_until"] = service.due_times(spec, info.resume_after if args.now else None)
        if not draft.recipients:  # e.g. the uncertain ones skipped: nothing more to do, it is done
            journal.set_state(args.campaign, "finished")
            print(f"Campaign {args.campaign}: nobody is left to send to; it is marked finished.", file=err)
            return EXIT_OK
        connections = args.connections or spec.get("connections") or \
            default_connections((spec.get("settings") or {}).get("provider"))
        transports, provider, limits = _resume_transport(args, spec, stdin, connections)
    except BaseException:
        journal.set_state(args.campaign, info.state, info.reason, info.resume_after)  # as it was
        raise
    rep = Reporter(args.progress or ("bar" if err.isatty() else "none"), out, err)
    rep.line(f"Campaign {draft.id}: resuming with {len(draft.recipients)} recipient(s) not sent yet")
    outcome = _run_in_worker(rep, draft.id, lambda control: service.send(
        draft, transports, on_event=rep.event, control=control, journal=journal, indices=indices,
        account=info.account, limits=limits, deferred_until=spec.get("deferred_until"),
        attempts_before=spec.get("attempts_before"), **_retry(args, spec)))
    return _finish(args, rep, err, outcome, draft, draft.imported, provider,
                   rows=lambda: [row.result for row in journal.rows(args.campaign)])


def _resume_transport(args: argparse.Namespace, spec: dict[str, Any], stdin: TextIO,
                      connections: int = 1) -> tuple[list[Any], str | None, RateLimits]:
    """The transports (one per connection; one for the Gmail API), provider and limits a
    journaled campaign was sent with (SMTP or Gmail API)."""
    if service.channel_of(spec) == "gmail":
        account = google_account(stdin)
        token = account.require("api")
        was = (spec.get("gmail") or {}).get("email") or ""
        if token.email.lower() != was.lower():
            raise OAuthError(f"this campaign was sent as {was}, but the Google sign-in here is for {token.email}",
                             fix=(f"Sign in as {was} (bulk-mailer gmail login) and resume again.",))
        provider, _ = gmail_api_limits(token.workspace)
        return [GmailTransport(account)], provider, _limits(args, provider, GMAIL_API_LIMITS, _saved_limits(spec))
    saved = dict(spec["settings"])
    token_source = None
    if saved.get("auth") == "xoauth2":
        token_source = TokenSource(google_account(stdin), "smtp")
        password = ""
    else:
        ns = argparse.Namespace(user=saved.get("user") or "", password_stdin=args.password_stdin)
        password = _read_password(ns, stdin)
    settings = SmtpSettings(**{**saved, "password": password, "token_source": token_source}).validated()
    return (_pool(settings, connections), settings.provider,
            _limits(args, saved.get("provider"), saved=_saved_limits(spec)))


def _saved_limits(spec: dict[str, Any]) -> RateLimits | None:
    """The limits a journaled campaign ran with (None for one journaled before they were kept)."""
    return service.limits_from_spec(spec) if "limits" in spec else None


def cmd_gmail(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    return {"login": _gmail_login, "logout": _gmail_logout, "status": _gmail_status}[args.gmail_command](
        args, stdin, out, err)


def _gmail_login(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    path = Path(args.client_secrets)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --client-secrets '{path}': {exc.strerror or exc}", category="file_error") from None
    client = OAuthClient.parse(data, f"'{path}'")
    account = google_account(stdin)
    account.check_store()  # a wrong passphrase fails now, not after the browser
    purpose = "smtp" if args.smtp else "api"
    import webbrowser

    flow = SignIn(client, purpose, open_browser=None if args.no_browser else webbrowser.open)
    url = flow.start()
    if args.no_browser:
        print("Open this address in a browser on this computer and allow access "
              f"(waiting up to {SIGN_IN_TIMEOUT_S / 60:g} minutes; Ctrl-C cancels):", file=err, flush=True)
        out.write(url + "\n")
        out.flush()
    else:
        print("Your browser shows Google's sign-in; allow access there (waiting up to "
              f"{SIGN_IN_TIMEOUT_S / 60:g} minutes; Ctrl-C cancels). If no browser opened, open:", file=err)
        print(url, file=err, flush=True)
    if args.smtp:
        print("Asking for full mail access (https://mail.google.com/): Google requires it for SMTP.", file=err)
    try:
        token, _ = flow.wait()
    except KeyboardInterrupt:
        raise OAuthError("the sign-in was cancelled (Ctrl-C)", fix=("Run bulk-mailer gmail login again.",)) from None
    account.save(client, token)
    key, limits = gmail_api_limits(token.workspace)
    kind = "Google Workspace" if token.workspace else "Gmail"
    print(f"Signed in as {token.email} ({kind}): send with --channel gmail"
          + (" or --provider gmail --auth xoauth2" if args.smtp else "") + ".", file=err)
    print(f"Limits: {limits.note}", file=err)
    return EXIT_OK


def _gmail_logout(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    if saved_profile() is None and not default_store().has(KEY_TOKEN):
        print("Nobody is signed in with Google.", file=err)
        return EXIT_OK
    result = google_account(stdin).sign_out()
    who = result["email"] or "Google"
    if result["revoked"]:
        print(f"Signed out of {who}: the sign-in was revoked at Google and deleted here.", file=err)
    elif result["revoked"] is None:
        print("The saved Google sign-in was deleted.", file=err)
    else:
        print(f"Signed out of {who} here, but {result['problem']}: remove Bulk Mailer's access at "
              "myaccount.google.com/permissions.", file=err)
    return EXIT_OK


def _gmail_status(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    profile = saved_profile()
    if args.json:
        out.write(json.dumps({"signed_in": profile is not None, **(profile or {})}) + "\n")
    if profile is None:
        print("Not signed in with Google: bulk-mailer gmail login --client-secrets FILE", file=err)
        return EXIT_NOTHING_SENT
    scopes = profile.get("scopes") or []
    what = ("the Gmail API and SMTP (full mail access)" if SCOPE_MAIL in scopes
            else "the Gmail API (permission to send only)")
    _, limits = gmail_api_limits(bool(profile.get("workspace")))
    print(f"Signed in with Google as {profile['email']} for {what}, since {profile.get('signed_in', '?')}.", file=err)
    print(f"Limits: {limits.note}", file=err)
    return EXIT_OK


def _limits(args: argparse.Namespace, provider: str | None, table: Any = None, saved: Any = None) -> RateLimits:
    """Sending limits: the flags, else the campaign's own (resume), else the provider's."""
    if saved is not None:
        base = saved
    elif table is not None:
        base = service.rate_limits(table.get(provider))
    else:
        base = service.preset_limits(provider)
    given = {f"per_{n}": getattr(args, f"max_per_{n}", None) for n in ("second", "minute", "hour", "day")}
    return replace(base or RateLimits(), **{k: v for k, v in given.items() if v is not None})


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


def _pool(settings: SmtpSettings, n: int) -> list[SmtpTransport]:
    """One transport (one connection) for each of the n connections of a campaign."""
    return [SmtpTransport(settings) for _ in range(n)]


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


def _retry(args: argparse.Namespace, spec: dict[str, Any] | None) -> dict[str, Any]:
    """The retry policy: the flags, else the campaign's own (resume), else the defaults."""
    policy, failures = service.retry_from_spec(spec or {})
    given = {"base_s": args.retry_base, "cap_s": args.retry_cap, "max_attempts": args.retry_attempts,
             "max_age_s": args.retry_max_age * 3600 if args.retry_max_age is not None else None}
    values = {k: v if v is not None else getattr(policy, k) for k, v in given.items()}
    if args.max_failures_in_a_row is not None:
        failures = args.max_failures_in_a_row
    checks = [(values["base_s"] > 0, "--retry-base", "must be more than 0 seconds"),
              (values["cap_s"] >= values["base_s"], "--retry-cap", "must be at least --retry-base"),
              (values["max_attempts"] >= 1, "--retry-attempts", "must be at least 1"),
              (values["max_age_s"] > 0, "--retry-max-age", "must be more than 0 hours"),
              (failures >= 0, "--max-failures-in-a-row", "must be 0 or more")]
    for fine, flag, words in checks:
        if not fine:
            raise UsageError(f"{flag} {words}")
    return {"retry": RetryPolicy(**values), "max_failures_in_a_row": failures}


def _run_in_worker(rep: Reporter, campaign_id: str, run: Any) -> CampaignOutcome:
    """Run the campaign on a worker thread; Ctrl-C pauses after the current message."""
    control = Control()
    box: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["outcome"] = run(control)
        except BaseException as exc:  # handed to the main thread, which reports it
            box["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=work, name=f"campaign-{campaign_id}")
    worker.start()
    # Wait on our own event: a Ctrl-C that interrupts Thread.join can leave is_alive() False
    # while the worker still runs.
    while not done.is_set():
        try:
            done.wait(0.2)
        except KeyboardInterrupt:
            if not control.cancelled:
                rep.line("Pausing after the current message (Ctrl-C again does not skip this)...")
            control.cancel()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["outcome"]


def _finish(args: argparse.Namespace, rep: Reporter, err: TextIO, outcome: CampaignOutcome,
            draft: service.Draft, imported: Any, provider: str | None, rows: Any = None) -> int:
    """Results file, summary and exit code of a send or resume."""
    if args.results:
        try:
            written = service.write_results_csv(
                args.results, rows() if rows is not None else service.result_rows(outcome, draft))
            rep.line(f"Results written to {written}")
        except OSError as exc:
            rep.line(f"bulk-mailer: error [file_error]: could not write the results to '{args.results}': "
                     f"{exc.strerror or exc}; the summary below is all there is.")
    if not outcome.ok:
        assert outcome.error is not None
        _print_error(outcome.error, err, provider)
        return EXIT_NOTHING_SENT
    _print_summary(outcome, rep, provider)
    if imported.rejected:
        rep.line(f"{len(imported.rejected)} row(s) of the list had no valid address and were not sent "
                 "(listed above as 'skipped'); that is why the exit code is 1.")
    counts = outcome.counts
    if counts.get("sent", 0) == 0 and counts.get("uncertain", 0) == 0:
        return EXIT_NOTHING_SENT
    # Suppressed addresses were left out on purpose: everyone who should get it did.
    left_out = [row for row in draft.excluded.values() if "suppressed" not in (row.error or "")]
    if counts.get("sent", 0) == len(outcome.results) and not imported.rejected and not left_out:
        return EXIT_OK
    return EXIT_SOME_FAILED


LOG_FILE = "bulk-mailer.log"
LOG_BYTES, LOG_BACKUPS = 5_000_000, 5


def setup_logging(level: str = "INFO", *, verbose_to: TextIO | None = None) -> None:
    """Log to a rotating bulk-mailer.log in the log folder; --verbose also to the terminal."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    try:
        handler: logging.Handler = RotatingFileHandler(
            paths.log_dir() / LOG_FILE, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
    except OSError as exc:
        home = os.environ.get(paths.HOME_ENV)
        where = f"{paths.HOME_ENV}={home}" if home else "the log folder"
        print(f"bulk-mailer: warning: cannot write the log file ({where}): {exc.strerror or exc}; "
              "logging to the terminal only", file=sys.stderr)
        handler = logging.StreamHandler(sys.stderr)
        level = "WARNING" if level in ("DEBUG", "INFO") and verbose_to is None else level
    handler.setFormatter(fmt)
    root.addHandler(handler)
    if verbose_to is not None:
        terminal = logging.StreamHandler(verbose_to)
        terminal.setFormatter(logging.Formatter("debug: %(name)s: %(message)s"))
        root.addHandler(terminal)
        level = "DEBUG"
    root.setLevel(level)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd (the local inbox)


def main(argv: Sequence[str] | None = None, *, stdin: TextIO | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    """Entry point of the `bulk-mailer` console script; returns the exit code."""
    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(err)
        return EXIT_NOTHING_SENT
    setup_logging(args.log_level, verbose_to=err if args.verbose else None)
    started = time.monotonic()
    try:
        command = {"send": cmd_send, "verify": cmd_verify, "campaigns": cmd_campaigns, "export": cmd_export,
                   "resume": cmd_resume, "gmail": cmd_gmail, "repair-journal": cmd_repair_journal}[args.command]
        return command(args, stdin, out, err)
    except MailerError as exc:
        log.warning("%s failed: [%s] %s", args.command, exc.category, exc.message)
        _print_error(exc, err, getattr(args, "provider", None))
        return EXIT_NOTHING_SENT
    except Exception:
        log.exception("unexpected error in %s", args.command)
        print(f"bulk-mailer: internal error; details are in {paths.log_dir() / LOG_FILE}", file=err)
        return EXIT_NOTHING_SENT
    finally:
        log.debug("%s took %.2f s", args.command, time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())
