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
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from backend import cli_accounts, cli_checks, cli_schedule, cli_signature, paths
from backend.cli_parser import (
    EXIT_NOTHING_SENT,
    EXIT_OK,
    EXIT_SOME_FAILED,
    PASSPHRASE_ENV,
    PASSWORD_ENV,
    UsageError,
    build_parser,
)
from backend.errors import CATEGORIES, MailerError
from backend.inputs import (
    SECURITY_LABELS,
    AccountInput,
    MessageInput,
    NothingLeft,
    QuotaNotLifted,
    ResumeRequest,
    RowProblems,
    SendOptions,
    UncertainLeft,
)
from backend.logs import LOG_FILE, setup_logging
from backend.presets import GMAIL_API_LIMITS

if TYPE_CHECKING:
    from backend.app import App

log = logging.getLogger("bulk_mailer")


def _app(**kw: Any) -> App:
    """The core, loaded when a command runs: --help and a usage error answer without it."""
    from backend.app import App

    return App(**kw)


def _min_passphrase() -> int:
    from backend.app import MIN_PASSPHRASE

    return MIN_PASSPHRASE


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
            f"set {PASSPHRASE_ENV} (at least {_min_passphrase()} characters; the same every time)",
            category="invalid_settings")
    return app.use_passphrase(passphrase)


def _account(args: argparse.Namespace, stdin: TextIO, app: App, *, need_password: bool = True) -> AccountInput:
    """The account options as the core's input; the password from $BULK_MAILER_PASSWORD or stdin."""
    channel = getattr(args, "channel", "smtp")
    if args.auth == "xoauth2" or channel != "smtp":
        _passphrase(app, stdin, optional=not need_password)
    password = _read_password(args.user, args.password_stdin, stdin) \
        if need_password and args.auth == "password" and channel == "smtp" else ""
    return AccountInput(
        channel=channel, provider=args.provider, host=args.host or "", port=args.port, security=args.security,
        user=args.user, password=password, auth=args.auth, from_address=getattr(args, "from_address", "") or "",
        verify_certificates=not args.insecure_skip_verify, allow_plaintext_auth=args.allow_plaintext_auth,
        ca_file=args.ca_file, timeout=args.timeout, region=args.region,
        imap_host=getattr(args, "imap_host", None) or "", imap_port=getattr(args, "imap_port", None),
        imap_security=getattr(args, "imap_security", None))


def _options(args: argparse.Namespace, *, skip: bool = False) -> SendOptions:
    """Only the flags given: each replaces the default (the provider's, or the campaign's own)."""
    limits = {f"per_{n}": getattr(args, f"max_per_{n}") for n in ("second", "minute", "hour", "day")}
    retry = {"base_s": args.retry_base, "cap_s": args.retry_cap, "max_attempts": args.retry_attempts,
             "max_age_s": args.retry_max_age * 3600 if args.retry_max_age is not None else None,
             "max_failures_in_a_row": args.max_failures_in_a_row}
    return SendOptions(limits={k: v for k, v in limits.items() if v is not None},
                       retry={k: v for k, v in retry.items() if v is not None}, connections=args.connections,
                       delay_ms=args.delay_ms if args.command == "resume" else None, skip_problem_rows=skip,
                       sent_copy=getattr(args, "sent_copy", "auto"),
                       **({"schedule": cli_schedule.schedule_input(args)} if args.command == "send" else {}))


_FLAGS = {"retry.base_s": "--retry-base", "retry.cap_s": "--retry-cap must be at least --retry-base",
          "retry.max_attempts": "--retry-attempts", "retry.max_age_s": "--retry-max-age must be more than 0 hours",
          "retry.max_failures_in_a_row": "--max-failures-in-a-row", "connections": "--connections",
          "at": "--at", "tz": "--tz", "window": "--window", "local_time": "--local-time", "default_tz": "--default-tz",
          "follow_ups": "--follow-up"}


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
        if event.get("type") == "sent-copy-warning":
            e = event["error"]
            self.line(f"warning: copy in Sent not filed [{e['category']}]: {e['message']}"
                      + ("; no more copies are filed in this run (the messages are still sent)" if event["stopped"]
                         else "") + "".join(f"\n  {n}. {step}" for n, step in enumerate(e["fix"], 1)))
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
    elif outcome.stopped == "scheduled_wait":
        rep.line(f"Waiting: {outcome.error.message}. It goes on by itself then while the app is open or the timer "
                 "is installed (bulk-mailer timer install), or with bulk-mailer run-due.")
        return
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
    app = _app()
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
    if args.imap:
        box = app.check_mailbox(_account(args, stdin, app), password=os.environ.get("BULK_MAILER_IMAP_PASSWORD", ""))
        print(f"Mailbox OK: {box['host']}:{box['port']} ({box['security']}) as {box['user']}; Sent folder: "
              f"{box['sent'] or 'none found'}; Junk folder: {box['junk'] or 'none found'}.", file=err)
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


def _refuse_smtp_flags_with_api(args: argparse.Namespace) -> None:
    smtp_only = [flag for flag, given in (("--host", args.host), ("--port", args.port), ("--user", args.user),
                                           ("--security", args.security), ("--auth", args.auth != "password"),
                                           ("--password-stdin", args.password_stdin),
                                           # Google's HTTPS is always verified with the system's
                                           # authorities: these would be silently ignored.
                                           ("--ca-file", args.ca_file),
                                           ("--insecure-skip-verify", args.insecure_skip_verify),
                                           ("--allow-plaintext-auth", args.allow_plaintext_auth)) if given]
    if args.channel == "microsoft" and (smtp_only or args.provider):
        raise UsageError(f"{', '.join(smtp_only) or '--provider'}: SMTP settings do not go with --channel microsoft, "
                         "which sends through Microsoft Graph as the account signed in with Microsoft")
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


def _bodies(args: argparse.Namespace) -> dict[str, Any]:
    """--html-file, --markdown-file (--markdown-html), --text-file read, as MessageInput's fields."""
    html, text = _read_template(args.html_file, "HTML"), _read_template(args.text_file, "text")
    markdown = _read_template(args.markdown_file, "Markdown")
    if html is None and text is None and markdown is None:
        raise UsageError("give --html-file or --text-file (or both), or --markdown-file")
    if html is not None and markdown is not None:
        raise UsageError("give --html-file or --markdown-file, not both: the Markdown is made into the HTML")
    return {"html": html, "text": text, "markdown": markdown, "raw_html": args.markdown_html,
            "signature": not getattr(args, "no_signature", False)}


def _message(args: argparse.Namespace) -> MessageInput:
    """The message options as the core's input (the template files read)."""
    bodies = _bodies(args)
    if args.channel != "smtp":
        _refuse_smtp_flags_with_api(args)
    elif not args.from_address:
        raise UsageError("give --from, the sender address (e.g. \"Me <me@example.com>\")")
    if args.attach_column and not args.attach_dir:
        raise UsageError("--attach-column needs --attach-dir (the folder the file names are relative to)")
    return MessageInput(subject=args.subject, **bodies, from_address=args.from_address or "",
                        reply_to=args.reply_to, attach=tuple(args.attach or ()), attach_column=args.attach_column,
                        attach_dir=args.attach_dir, unsubscribe=tuple(args.unsubscribe or ()), delay_ms=args.delay_ms)


def cmd_send(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    rep = Reporter(args.progress or ("bar" if err.isatty() else "none"), out, err)
    message = _message(args)
    app = _app(emit=rep.event)
    trial = args.dry_run or args.preview is not None
    if args.check_links and not args.dry_run:
        raise UsageError("--check-links goes with --dry-run (it checks the links before a real send)")
    account = _account(args, stdin, app, need_password=not trial)
    sender = app.sender(account, message)  # the Gmail API: the signed-in address (store still locked)
    imported = app.import_recipients(("file", args.to_file), args.email_column, args.name_column)
    if args.results and not args.dry_run:
        _check_writable(args.results, "--results")
    draft = app.draft(message, sender, imported, suppress=_suppression(app, args, rep, trial), account=account)
    _echo_list(imported, draft, rep)
    if not trial:
        rep.line(f"Campaign {draft.id}")
    for warning in app.warnings(draft, strict_fields=args.strict_fields, a=account):
        rep.line(f"warning   {warning}")
    if not draft.recipients:
        raise UsageError(f"no recipients left to send to in '{args.to_file}' ({imported.summary()}"
                         f"{', ' + str(len(draft.excluded)) + ' suppressed' if draft.excluded else ''})",
                         category="invalid_address")
    if trial:
        return _trial(app, args, rep, out, draft, account)
    if args.save_password and app.keep_password(account, _passphrase(app, stdin)):
        rep.line(f"Password saved for {account.user} ({'system keyring' if not app.store.needs_passphrase else 'encrypted file'})")
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


def _trial(app: App, args: argparse.Namespace, rep: Reporter, out: TextIO, draft: Any, account: AccountInput) -> int:
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
    rep.line(cli_checks.verdict_words(app.content_check(draft, account)) + "; details: bulk-mailer check")
    broken = args.check_links and cli_checks.print_links(app.link_check(draft, account), rep.err)
    ok = len(draft.recipients) - len({p.row for p in problems})
    rep.line(f"Dry run: {ok} of {len(draft.recipients)} messages render; {len(problems)} problem(s); nothing sent.")
    return EXIT_NOTHING_SENT if problems else EXIT_SOME_FAILED if broken else EXIT_OK


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
    if plan.gmail or plan.microsoft:
        rep.line(f"Sending to {n} recipient{'' if n == 1 else 's'} ({imported.summary()}) through "
                 f"{'the Gmail API' if plan.gmail else 'Microsoft Graph'} as {draft.sender.address}")
    else:
        s = plan.spec["settings"]
        rep.line(f"Sending to {n} recipient{'' if n == 1 else 's'} ({imported.summary()}) via "
                 f"{plan.where()} ({_security_words(s['security'])})"
                 + (f" on {plan.connections} connections" if plan.connections > 1 else ""))
        if not s["verify_certificates"]:
            rep.line("WARNING: certificate verification is OFF (--insecure-skip-verify).")
        if plan.sent_copy is not None:
            rep.line(f"Filing a copy of each message in Sent on {plan.sent_copy.host}:{plan.sent_copy.port} (IMAP)")
    rep.line(app.meter(plan.account, plan.limits.per_day if plan.limits else None)["words"] + ".")
    started = app.launch(draft, plan)
    if started["state"] == "scheduled":
        for line in cli_schedule.scheduled_lines(started, plan.spec):
            rep.line(line)
        return EXIT_OK
    run = app.run
    outcome = _wait(run, rep)
    _copies_words(run, rep)
    return _finish(app, args, rep, err, outcome, draft, imported, plan.provider)


def _copies_words(run: Any, rep: Reporter) -> None:
    done = run.sent_copy
    if done:
        rep.line(f"Copies in Sent ({done['folder'] or 'folder not found'}): {done['filed']} filed"
                 + (f", {done['already']} already there" if done["already"] else "")
                 + (f", {done['left']} not filed yet (filed when the campaign is resumed)" if done["left"] else ""))


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
    if outcome.stopped == "scheduled_wait" and not counts.get("failed"):
        return EXIT_OK  # on its way: the rest goes when its window opens or its recipients' time comes
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
    app = _app()
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
        if c["state"] == "scheduled" and c["times"].get("at"):
            extra += f"  (starts {_local(c['times']['at'])})"
        elif c["quota_lifts"] and c["state"] != "waiting":
            extra += f"  (can continue after {c['quota_lifts']})"
        print(f"{c['id']:<21} {c['state']:<11} {_local(c['created']):<16}  {subject:<30}  {c['account']}  "
              f"{counts}{extra}", file=out)
    return EXIT_OK


def cmd_export(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    app = _app()
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


def _resume_account(args: argparse.Namespace, stdin: TextIO, app: App, spec: dict[str, Any]) -> AccountInput:
    """The account options given (--use-current-settings), else the campaign's account with the
    password read the terminal's way."""
    saved = spec.get("settings") or {}
    if spec.get("channel") in ("gmail", "microsoft") or saved.get("auth") == "xoauth2":
        _passphrase(app, stdin)
    if args.use_current_settings:
        return _account(args, stdin, app)
    uses_password = saved.get("user") and saved.get("auth") != "xoauth2"
    return AccountInput(user=saved.get("user") or "", host=saved.get("host") or "",
                        password=_read_password(saved["user"], args.password_stdin, stdin) if uses_password else "")


def cmd_repair_journal(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    print("\n".join(_app().repair_journal()), file=err)
    return EXIT_OK


def cmd_resume(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    if args.results:
        _check_writable(args.results, "--results")
    rep = Reporter(args.progress or ("bar" if err.isatty() else "none"), out, err)
    app = _app(emit=rep.event)
    given = [f"--{f.replace('_', '-')}" for f in _ACCOUNT_FLAGS if getattr(args, f) not in (None, "", False)]
    if given and not args.use_current_settings:
        raise UsageError(f"{', '.join(given)}: add --use-current-settings to resume with these account settings "
                         "instead of the campaign's")
    cid = app.campaign_id(args.campaign)
    account = _resume_account(args, stdin, app, app.journal.spec(cid))
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
    _copies_words(run, rep)
    return _finish(app, args, rep, err, outcome, run.draft, run.draft.imported, run.provider)


def cmd_track(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    app = _app()
    imap_env = os.environ.get("BULK_MAILER_IMAP_PASSWORD", "")
    named = bool(args.provider or args.host or args.imap_host)
    if named and args.gmail_api:
        raise UsageError("--gmail-api reads with the Google sign-in for reading: leave out --provider, --host, --imap-host")
    account = _account(args, stdin, app, need_password=not imap_env) if named else None
    password = "" if named else imap_env or (_read_password(args.user or "the mailbox", args.password_stdin, stdin)
                                             if args.password_stdin or os.environ.get(PASSWORD_ENV) else "")
    outcome = app.track(args.campaign, account, password=password, passphrase=_passphrase(app, stdin, optional=True),
                        move_bounces=args.move_bounces, gmail_api=args.gmail_api)
    if args.json:
        json.dump(outcome.as_dict(), out, ensure_ascii=False)
        out.write("\n")
    err.write(f"Campaign {outcome.campaign}: read {', '.join(outcome.folders) or 'nothing'} of {outcome.mailbox}\n")
    for what, rows in (("bounced", outcome.bounced), ("replied", outcome.replied),
                       ("auto-reply", outcome.auto_replied), ("delayed", outcome.delayed)):
        for row in rows:
            detail = row.get("status") or ""
            detail += f" {row.get('diagnostic') or row.get('excerpt') or ''}"
            err.write(f"  {what}: {row['email']}  {' '.join(detail.split())[:120]}\n")
    if outcome.suppressed:
        err.write(f"Added to the suppression list (reason bounced): {len(outcome.suppressed)}\n")
    err.write("".join(f"Note: {note}\n" for note in outcome.notes))
    err.write(outcome.summary() + "\n")
    return EXIT_OK


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
                   "resume": cmd_resume, "gmail": cli_accounts.cmd_gmail, "microsoft": cli_accounts.cmd_microsoft,
                   "repair-journal": cmd_repair_journal, "track": cmd_track, "check": cli_checks.cmd_check,
                   "run-due": cli_schedule.cmd_run_due, "reschedule": cli_schedule.cmd_reschedule,
                   "cancel": cli_schedule.cmd_cancel, "timer": cli_schedule.cmd_timer,
                   "signature": cli_signature.cmd_signature}[args.command]
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
