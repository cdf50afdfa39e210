"""The `bulk-mailer` command line: argv -> backend.app.App -> human lines on stderr, data on stdout.

Every use case is App's; this module parses arguments into the core's inputs (backend.inputs),
reads the password and passphrase the terminal's way, and words the answers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, TextIO

from backend import __version__, paths
from backend.app import MIN_PASSPHRASE, SIGN_IN_TIMEOUT_S, App
from backend.errors import CATEGORIES, MailerError, OAuthError
from backend.inputs import (
    AUTH_MODES,
    CHANNELS,
    DEFAULT_DELAY_MS,
    SECURITY_LABELS,
    SECURITY_MODES,
    AccountInput,
    MessageInput,
    NothingLeft,
    QuotaNotLifted,
    ResumeRequest,
    RowProblems,
    SendOptions,
    UncertainLeft,
)
from backend.presets import GMAIL_API_LIMITS, MAX_CONNECTIONS, PRESETS

PASSWORD_ENV = "BULK_MAILER_PASSWORD"  # noqa: S105 (a variable name, not a secret)
PASSPHRASE_ENV = "BULK_MAILER_PASSPHRASE"  # noqa: S105 (a variable name: unlocks saved sign-ins)
EXIT_OK, EXIT_SOME_FAILED, EXIT_NOTHING_SENT = 0, 1, 2

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
    g.add_argument("--user", "--username", dest="user", default="",
                   help="login name, usually your full email address")
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
    _verify_parser(sub)
    return parser


def _send_parser(sub: Any) -> None:
    """send: the account, the message, the run."""
    send = _add(sub, "send", help="send a campaign", description="Send one message to each recipient.")
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
    r.add_argument("--delay-ms", type=int, default=DEFAULT_DELAY_MS,
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
    login.add_argument("--smtp", action="store_true",
                       help="also allow SMTP with OAuth2 (smtp.gmail.com, --auth xoauth2): asks for full mail "
                       "access (https://mail.google.com/), which Google requires for SMTP")
    _add(gsub, "logout", help="revoke the Google sign-in and delete it here",
                    description="Revoke the sign-in at Google and delete the token and OAuth client saved here.")
    status = _add(gsub, "status", help="who is signed in with Google",
                             description="Who is signed in, with which permissions and sending limits. Exit "
                             "code 0 when signed in, 2 when not.")
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


# -- the terminal's inputs -----------------------------------------------------------------


def _read_password(user: str, password_stdin: bool, stdin: TextIO) -> str:
    if not user:
        return ""
    if password_stdin and stdin.isatty():
        password = getpass.getpass(f"Password for {user}: ")
    elif password_stdin:
        line = stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password.rstrip("\r")
    else:
        password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise UsageError(f"no password for '{user}': set {PASSWORD_ENV} or use --password-stdin")
    return password


def _passphrase(app: App, stdin: TextIO, *, optional: bool = False) -> str | None:
    """The passphrase of the encrypted store (no system keyring): $BULK_MAILER_PASSPHRASE, or
    asked for on a terminal."""
    if not app.store.needs_passphrase:
        return None
    passphrase = os.environ.get(PASSPHRASE_ENV) or None
    if passphrase is None and stdin.isatty():
        passphrase = getpass.getpass("Passphrase of saved passwords and sign-ins: ") or None
    if passphrase is None and not optional:
        raise UsageError(
            f"there is no system keyring here, so the Google sign-in is kept encrypted under a passphrase: "
            f"set {PASSPHRASE_ENV} (at least {MIN_PASSPHRASE} characters; the same every time)",
            category="invalid_settings")
    return app.use_passphrase(passphrase)


def _account(args: argparse.Namespace, stdin: TextIO, app: App, *, need_password: bool = True) -> AccountInput:
    """The account options as the core's input; the password from $BULK_MAILER_PASSWORD or stdin."""
    channel = getattr(args, "channel", "smtp")
    if args.auth == "xoauth2" or channel == "gmail":
        _passphrase(app, stdin, optional=not need_password)
    password = _read_password(args.user, args.password_stdin, stdin) \
        if need_password and args.auth == "password" and channel == "smtp" else ""
    return AccountInput(
        channel=channel, provider=args.provider, host=args.host or "", port=args.port, security=args.security,
        user=args.user, password=password, auth=args.auth, from_address=getattr(args, "from_address", "") or "",
        verify_certificates=not args.insecure_skip_verify, allow_plaintext_auth=args.allow_plaintext_auth,
        ca_file=args.ca_file, timeout=args.timeout, region=args.region)


def _options(args: argparse.Namespace, *, skip: bool = False) -> SendOptions:
    """Only the flags given: each replaces the default (the provider's, or the campaign's own)."""
    limits = {f"per_{n}": getattr(args, f"max_per_{n}") for n in ("second", "minute", "hour", "day")}
    retry = {"base_s": args.retry_base, "cap_s": args.retry_cap, "max_attempts": args.retry_attempts,
             "max_age_s": args.retry_max_age * 3600 if args.retry_max_age is not None else None,
             "max_failures_in_a_row": args.max_failures_in_a_row}
    return SendOptions(limits={k: v for k, v in limits.items() if v is not None},
                       retry={k: v for k, v in retry.items() if v is not None}, connections=args.connections,
                       delay_ms=args.delay_ms if args.command == "resume" else None, skip_problem_rows=skip)


_FLAGS = {"retry.base_s": "--retry-base", "retry.cap_s": "--retry-cap must be at least --retry-base",
          "retry.max_attempts": "--retry-attempts", "retry.max_age_s": "--retry-max-age must be more than 0 hours",
          "retry.max_failures_in_a_row": "--max-failures-in-a-row", "connections": "--connections"}


def _read_template(path: str | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} file '{path}' is not UTF-8 text (byte {exc.start})", category="file_error") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} file '{path}': {exc.strerror}", category="file_error") from None


def _check_writable(path: str, flag: str = "") -> None:
    """Refuse a results path that cannot be written before anything is sent."""
    if path == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{flag} '{path}' is a folder; give a file name".lstrip(), category="file_error")
    folder = target.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # missing folders are created when the file is written
    if not folder.is_dir():
        raise UsageError(f"{flag}: '{folder}' is not a folder", category="file_error")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"{flag} '{path}' cannot be written (permission denied)", category="file_error")
    if folder == target.absolute().parent:
        # Write access is not the whole story (a read-only or special file system): try it.
        try:
            fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".check")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise UsageError(f"{flag} '{path}' cannot be written ({exc.strerror or exc})", category="file_error") from None


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
        if event.get("type") != "email-progress":
            return  # state and wait events are the window's
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


def _print_summary(outcome: Any, rep: Reporter, provider: str | None) -> None:
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
        for n, step in enumerate(MailerError(cat.title, category=category).fix_steps(provider), 1):
            rep.line(f"   {n}. {step}")


# -- commands ----------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    app = App()
    if args.detect:
        return _detect(app, args, out, err)
    if args.check_sender and not args.from_address:
        raise UsageError("--check-sender needs --from (the address to check)")
    settings, result = app.diagnose(_account(args, stdin, app), check_sender=args.check_sender,
                                    check_domain=args.check_domain)
    if not settings.verify_certificates:
        print("WARNING: certificate verification is OFF (--insecure-skip-verify).", file=err)
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


def _detect(app: App, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    found = app.detect(args.detect, ca_file=args.ca_file)
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


def _refuse_smtp_flags_with_gmail(args: argparse.Namespace) -> None:
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


def _suppression(app: App, args: argparse.Namespace, rep: Reporter, trial: bool) -> bool:
    """Load the kept suppression list (a trial run works on a copy); whether it could be read."""
    try:
        app.suppression.reload()
    except OSError as exc:
        # Sending without the list could mail someone who unsubscribed: only a dry run goes on.
        if not args.dry_run:
            raise UsageError(f"the suppression list cannot be read ({exc.strerror or exc}); nothing was sent",
                             category="file_error") from None
        rep.line(f"warning   the suppression list cannot be read ({exc.strerror or exc})")
        return False
    if args.suppress:
        report = (app.suppression_for_trial() if trial else app.suppression).import_file(args.suppress)
        kept = "for this trial run only" if trial else "kept for every campaign"
        rep.line(f"suppression list: {report.summary()} from {args.suppress} ({kept})")
        for line, value, reason in report.invalid:
            rep.line(f"skipped   {args.suppress} line {line}: {value!r}: {reason}")
    return True


def _message(args: argparse.Namespace) -> MessageInput:
    """The message options as the core's input (the template files read)."""
    html, text = _read_template(args.html_file, "HTML"), _read_template(args.text_file, "text")
    if html is None and text is None:
        raise UsageError("give --html-file or --text-file (or both)")
    if args.channel == "gmail":
        _refuse_smtp_flags_with_gmail(args)
    elif not args.from_address:
        raise UsageError("give --from, the sender address (e.g. \"Me <me@example.com>\")")
    if args.attach_column and not args.attach_dir:
        raise UsageError("--attach-column needs --attach-dir (the folder the file names are relative to)")
    return MessageInput(subject=args.subject, html=html, text=text, from_address=args.from_address or "",
                        reply_to=args.reply_to, attach=tuple(args.attach or ()), attach_column=args.attach_column,
                        attach_dir=args.attach_dir, unsubscribe=tuple(args.unsubscribe or ()), delay_ms=args.delay_ms)


def cmd_send(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    rep = Reporter(args.progress or ("bar" if err.isatty() else "none"), out, err)
    message = _message(args)
    app = App(emit=rep.event)
    trial = args.dry_run or args.preview is not None
    account = _account(args, stdin, app, need_password=not trial)
    sender = app.sender(account, message)  # the Gmail API: the signed-in address (store still locked)
    imported = app.import_recipients(("file", args.to_file), args.email_column, args.name_column)
    if args.results and not args.dry_run:
        _check_writable(args.results, "--results")
    draft = app.draft(message, sender, imported, suppress=_suppression(app, args, rep, trial))
    _echo_list(imported, draft, rep)
    if not trial:
        rep.line(f"Campaign {draft.id}")
    warning = draft.size_warning()
    if warning:
        rep.line(f"warning   {warning}")
    if not draft.recipients:
        raise UsageError(f"no recipients left to send to in '{args.to_file}' ({imported.summary()}"
                         f"{', ' + str(len(draft.excluded)) + ' suppressed' if draft.excluded else ''})",
                         category="invalid_address")
    if trial:
        return _trial(app, args, rep, out, draft)
    return _send(app, args, rep, err, account, message, draft, imported)


def _echo_list(imported: Any, draft: Any, rep: Reporter) -> None:
    """What reading the list found: warnings, invalid and duplicate lines, suppressed addresses."""
    for warning in imported.warnings:
        rep.line(f"warning   {warning}")
    for bad in imported.rejected:
        rep.line(f"skipped   line {bad.line}: {bad.reason}")
    for dup in imported.duplicates:
        rep.line(f"duplicate line {dup.line}: {dup.email} (already on line {dup.first_line}; sent once)")
    for row in draft.excluded.values():
        rep.line(f"suppressed {row.email}: {row.error}")


def _trial(app: App, args: argparse.Namespace, rep: Reporter, out: TextIO, draft: Any) -> int:
    """--preview N: recipient N's message as it would be sent; --dry-run: every problem."""
    if args.preview is not None:
        if not 1 <= args.preview <= len(draft.recipients):
            raise UsageError(f"--preview {args.preview}: there are {len(draft.recipients)} recipients to send to; "
                             f"give a number from 1 to {len(draft.recipients)}")
        # Whether the server offers SMTPUTF8 is not known without connecting: assume it does.
        out.write(draft.outgoing(draft.recipients[args.preview - 1], smtputf8=True).data.decode("utf-8", "replace"))
        out.flush()
        return EXIT_OK
    problems = app.dry_run(draft)
    _print_problems(problems, rep)
    ok = len(draft.recipients) - len({p.row for p in problems})
    rep.line(f"Dry run: {ok} of {len(draft.recipients)} messages render; {len(problems)} problem(s); nothing sent.")
    return EXIT_NOTHING_SENT if problems else EXIT_OK


def _send(app: App, args: argparse.Namespace, rep: Reporter, err: TextIO, account: AccountInput,
          message: MessageInput, draft: Any, imported: Any) -> int:
    before = len(draft.recipients)
    try:
        draft, plan = app.prepare(account, message, _options(args, skip=args.skip_bad_rows), draft=draft)
    except RowProblems as exc:
        _print_problems(exc.problems, rep)
        raise UsageError(f"{len({p.row for p in exc.problems})} row(s) cannot be built; fix them (see above), or "
                         "add --skip-bad-rows to send to the others", category=exc.category) from None
    except NothingLeft:
        raise UsageError("no row is left to send to", category="template_error") from None
    if len(draft.recipients) < before:
        rep.line(f"Skipping {before - len(draft.recipients)} row(s) that cannot be built (--skip-bad-rows); "
                 "they are reported as not sent.")
    for past in app.interrupted():
        # the app died while it was sending, and something is left: say so at once
        rep.line(f"Note: campaign {past['id']} was interrupted ({past['left_to_send']} not sent yet, "
                 f"{past['counts'].get('uncertain', 0)} uncertain); continue it with: bulk-mailer resume {past['id']}")
    n = len(draft.recipients)
    if plan.gmail:
        rep.line(f"Sending to {n} recipient{'' if n == 1 else 's'} ({imported.summary()}) through the Gmail API "
                 f"as {draft.sender.address}")
    else:
        s = plan.spec["settings"]
        rep.line(f"Sending to {n} recipient{'' if n == 1 else 's'} ({imported.summary()}) via "
                 f"{plan.where()} ({_security_words(s['security'])})"
                 + (f" on {plan.connections} connections" if plan.connections > 1 else ""))
        if not s["verify_certificates"]:
            rep.line("WARNING: certificate verification is OFF (--insecure-skip-verify).")
    outcome = _wait(app.start(draft, plan), rep)
    return _finish(app, args, rep, err, outcome, draft, imported, plan.provider)


def _wait(run: Any, rep: Reporter) -> Any:
    """The run's outcome; Ctrl-C pauses after the current message."""
    return run.wait(on_interrupt=lambda: rep.line("Pausing after the current message (Ctrl-C again does not "
                                                  "skip this)..."))


def _finish(app: App, args: argparse.Namespace, rep: Reporter, err: TextIO, outcome: Any, draft: Any, imported: Any,
            provider: str | None) -> int:
    """Results file, summary and exit code of a send or resume."""
    if args.results:
        try:
            written, _ = app.export(outcome.campaign, args.results)
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


def _local(iso_time: str | None) -> str:
    return f"{dt.datetime.fromisoformat(iso_time).astimezone():%Y-%m-%d %H:%M}" if iso_time else ""


def cmd_campaigns(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    app = App()
    found = app.history()
    if args.campaign:
        wanted = app.campaign_id(args.campaign)
        found = [c for c in found if c["id"] == wanted]
    if args.json:
        out.write(json.dumps(found) + "\n")
        return EXIT_OK
    if not found:
        print("No campaigns yet.", file=err)
        return EXIT_OK
    print(f"{'CAMPAIGN':<21} {'STATE':<11} {'CREATED':<16}  {'SUBJECT':<30}  ACCOUNT  COUNTS", file=out)
    for c in found:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(c["counts"].items()))
        subject = (c.get("subject") or "").replace("\n", " ")
        subject = subject if len(subject) <= 30 else subject[:29] + "…"
        extra = f"  ({c['reason']})" if c["reason"] else ""
        if c["quota_lifts"]:
            extra += f"  (can continue after {c['quota_lifts']})"
        print(f"{c['id']:<21} {c['state']:<11} {_local(c['created']):<16}  {subject:<30}  {c['account']}  "
              f"{counts}{extra}", file=out)
    return EXIT_OK


def cmd_export(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    app = App()
    cid = app.campaign_id(args.campaign)
    if args.path == "-":
        text, count = app.export(cid)
        out.write(text)
        out.flush()
        print(f"{count} rows of campaign {cid} written to standard output", file=err)
        return EXIT_OK
    _check_writable(args.path)
    written, count = app.export(cid, args.path)
    print(f"{count} rows of campaign {cid} written to {written}", file=err)
    return EXIT_OK


_ACCOUNT_FLAGS = ("provider", "region", "host", "port", "security", "user", "ca_file", "insecure_skip_verify",
                  "allow_plaintext_auth")


def cmd_resume(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    if args.results:
        _check_writable(args.results, "--results")
    rep = Reporter(args.progress or ("bar" if err.isatty() else "none"), out, err)
    app = App(emit=rep.event)
    given = [f"--{f.replace('_', '-')}" for f in _ACCOUNT_FLAGS if getattr(args, f) not in (None, "", False)]
    if given and not args.use_current_settings:
        raise UsageError(f"{', '.join(given)}: add --use-current-settings to resume with these account settings "
                         "instead of the campaign's")
    cid = app.campaign_id(args.campaign)
    spec = app.journal.spec(cid)
    uses_password = (spec.get("settings") or {}).get("user") and (spec.get("settings") or {}).get("auth") != "xoauth2"
    account = _account(args, stdin, app) if args.use_current_settings else AccountInput(
        password=_read_password(spec["settings"]["user"], args.password_stdin, stdin) if uses_password else "")
    if spec.get("channel") == "gmail" or (spec.get("settings") or {}).get("auth") == "xoauth2":
        _passphrase(app, stdin)
    uncertain = "resend" if args.resend_uncertain else "skip" if args.skip_uncertain else "ask"
    req = ResumeRequest(uncertain=uncertain, now=args.now, account=account,
                        use_current_settings=bool(args.use_current_settings),
                        options=_options(args))
    try:
        run = app.resume(cid, req)
    except UncertainLeft as exc:
        for row in exc.uncertain:
            print(f"uncertain {row.recipient.email} (line {row.recipient.line}): {row.result.error}", file=err)
        raise UsageError(f"{len(exc.uncertain)} recipient(s) may or may not have got the message (listed above): "
                         "add --resend-uncertain or --skip-uncertain", category="action_unavailable") from None
    except NothingLeft as exc:
        if not exc.finished:
            raise
        print(f"Campaign {cid}: nobody is left to send to; it is marked finished.", file=err)
        return EXIT_OK
    except QuotaNotLifted as exc:
        raise UsageError(f"campaign {exc.campaign} was stopped by a sending quota and can continue after {exc.lifts}; "
                         "resume it then, or add --now to try anyway", category="action_unavailable") from None
    rep.line(f"Campaign {run.id}: resuming with {run.total} recipient(s) not sent yet"
             + (f" through {run.plan.where()}" if args.use_current_settings else ""))
    outcome = _wait(run, rep)
    return _finish(app, args, rep, err, outcome, run.draft, run.draft.imported, run.provider)


def cmd_gmail(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    return {"login": _gmail_login, "logout": _gmail_logout, "status": _gmail_status}[args.gmail_command](
        args, stdin, out, err)


def _gmail_login(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    path = Path(args.client_secrets)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --client-secrets '{path}': {exc.strerror or exc}", category="file_error") from None
    app = App()
    passphrase = _passphrase(app, stdin)
    url = app.google_sign_in(data, f"'{path}'", "smtp" if args.smtp else "api", passphrase=passphrase,
                             open_browser=not args.no_browser)
    minutes = f"{SIGN_IN_TIMEOUT_S / 60:g}"
    if args.no_browser:
        print(f"Open this address in a browser on this computer and allow access (waiting up to {minutes} minutes; "
              "Ctrl-C cancels):", file=err, flush=True)
        out.write(url + "\n")
        out.flush()
    else:
        print(f"Your browser shows Google's sign-in; allow access there (waiting up to {minutes} minutes; "
              "Ctrl-C cancels). If no browser opened, open:", file=err)
        print(url, file=err, flush=True)
    if args.smtp:
        print("Asking for full mail access (https://mail.google.com/): Google requires it for SMTP.", file=err)
    try:
        state = app.wait_sign_in()
    except KeyboardInterrupt:
        app.google_cancel_sign_in()
        raise OAuthError("the sign-in was cancelled (Ctrl-C)", fix=("Run bulk-mailer gmail login again.",)) from None
    status = app.google_status()
    kind = "Google Workspace" if status["workspace"] else "Gmail"
    print(f"Signed in as {state['email']} ({kind}): send with --channel gmail"
          + (" or --provider gmail --auth xoauth2" if args.smtp else "") + ".", file=err)
    print(f"Limits: {status['limits']['note']}", file=err)
    return EXIT_OK


def _gmail_logout(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    app = App()
    if not app.google_status()["signed_in"] and not app.has_google_token():
        print("Nobody is signed in with Google.", file=err)
        return EXIT_OK
    result = app.google_sign_out(_passphrase(app, stdin))
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
    status = App().google_status()
    if args.json:
        out.write(json.dumps({"signed_in": status["signed_in"], **status["profile"]}) + "\n")
    if not status["signed_in"]:
        print("Not signed in with Google: bulk-mailer gmail login --client-secrets FILE", file=err)
        return EXIT_NOTHING_SENT
    what = ("the Gmail API and SMTP (full mail access)" if status["smtp"]
            else "the Gmail API (permission to send only)")
    print(f"Signed in with Google as {status['email']} for {what}, since {status['signed_in_at'] or '?'}.", file=err)
    print(f"Limits: {status['limits']['note']}", file=err)
    return EXIT_OK


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
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse would answer with the top-level usage: the subcommand's is the useful one
        (getattr(args, "subparser", None) or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help(err)
        return EXIT_NOTHING_SENT
    setup_logging(args.log_level, verbose_to=err if args.verbose else None)
    started = time.monotonic()
    try:
        command = {"send": cmd_send, "verify": cmd_verify, "campaigns": cmd_campaigns, "export": cmd_export,
                   "resume": cmd_resume, "gmail": cmd_gmail}[args.command]
        return command(args, stdin, out, err)
    except MailerError as exc:
        log.warning("%s failed: [%s] %s", args.command, exc.category, exc.message)
        field = getattr(exc, "field", None)
        if field in _FLAGS:  # a rule of the core, worded with the flag that broke it
            words = _FLAGS[field]
            exc = UsageError(words if " " in words else f"{words} {exc.message.split(': ', 1)[-1]}")
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
