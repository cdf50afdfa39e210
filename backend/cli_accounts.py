"""The command line's sign-in commands: `gmail login|status|logout` and `microsoft
login|status|logout` (a face of backend.cli, kept apart so each stays thin)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from backend.cli_parser import EXIT_NOTHING_SENT, EXIT_OK, UsageError
from backend.errors import OAuthError

if TYPE_CHECKING:
    from backend.app import App


def _app() -> App:
    from backend.cli import _app as core  # the core, loaded when the command runs

    return core()


def _sign_in_timeout() -> float:
    from backend.app import SIGN_IN_TIMEOUT_S

    return float(SIGN_IN_TIMEOUT_S)


def _passphrase(app: App, stdin: TextIO, *, optional: bool = False) -> str | None:
    from backend.cli import _passphrase as ask  # the one prompt of the command line

    return ask(app, stdin, optional=optional)


def cmd_gmail(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    return {"login": _gmail_login, "logout": _gmail_logout, "status": _gmail_status}[args.gmail_command](
        args, stdin, out, err)


def _gmail_login(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    path = Path(args.client_secrets)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --client-secrets '{path}': {exc.strerror or exc}", category="file_error") from None
    app = _app()
    passphrase = _passphrase(app, stdin)
    purpose = "smtp" if args.smtp else "read" if args.read else "api"
    url = app.google_sign_in(data, f"'{path}'", purpose, passphrase=passphrase, open_browser=not args.no_browser)
    minutes = f"{_sign_in_timeout() / 60:g}"
    if args.no_browser:
        print(f"Open this address in a browser on this computer and allow access (waiting up to {minutes} minutes; "
              "Ctrl-C cancels):", file=err, flush=True)
        out.write(url + "\n")
        out.flush()
    else:
        print(f"Your browser shows Google's sign-in; allow access there (waiting up to {minutes} minutes; "
              "Ctrl-C cancels). If no browser opened, open:", file=err)
        print(url, file=err, flush=True)
    if purpose != "api":
        print({"smtp": "Asking for full mail access (https://mail.google.com/): Google requires it for SMTP.",
               "read": "Asking only to view your email (gmail.readonly), for track."}[purpose], file=err)
    try:
        state = app.wait_sign_in()
    except KeyboardInterrupt:
        app.google_cancel_sign_in()
        raise OAuthError("the sign-in was cancelled (Ctrl-C)", fix=("Run bulk-mailer gmail login again.",)) from None
    status = app.google_status()
    if args.read:
        print(f"Signed in as {state['email']} for reading bounces and replies (track).", file=err)
        return EXIT_OK
    kind = "Google Workspace" if status["workspace"] else "Gmail"
    print(f"Signed in as {state['email']} ({kind}): send with --channel gmail"
          + (" or --provider gmail --auth xoauth2" if args.smtp else "") + ".", file=err)
    print(f"Limits: {status['limits']['note']}", file=err)
    return EXIT_OK


def _gmail_logout(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    app = _app()
    status = app.google_status()
    if not (status["read"] if args.read else status["signed_in"] or status["read"]) and not app.has_google_token():
        print("Nobody is signed in with Google" + (" for reading." if args.read else "."), file=err)
        return EXIT_OK
    result = app.google_sign_out(_passphrase(app, stdin), reading_only=args.read)
    if result["read"] and not args.read and result["read"]["email"]:
        print(f"The sign-in for reading of {result['read']['email']} was removed too.", file=err)
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
    status = _app().google_status()
    if args.json:
        out.write(json.dumps({"signed_in": status["signed_in"], **status["profile"], "read": status["read"],
                              "read_email": status["read_email"]}) + "\n")
    reading = "Reading bounces and replies through the Gmail API: " + (
        f"allowed for {status['read_email']} (view only)." if status["read"] else "not allowed (gmail login --read).")
    if not status["signed_in"]:
        print("Not signed in with Google: bulk-mailer gmail login --client-secrets FILE", file=err)
        print(reading, file=err)
        return EXIT_NOTHING_SENT
    what = ("the Gmail API and SMTP (full mail access)" if status["smtp"]
            else "the Gmail API (permission to send only)")
    print(f"Signed in with Google as {status['email']} for {what}, since {status['signed_in_at'] or '?'}.", file=err)
    print(reading, file=err)
    print(f"Limits: {status['limits']['note']}", file=err)
    return EXIT_OK


def cmd_microsoft(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    app = _app()
    if args.microsoft_command == "status":
        status = app.microsoft_status()
        if args.json:
            out.write(json.dumps({"signed_in": status["signed_in"], **status["profile"]}) + "\n")
        if not status["signed_in"]:
            print("Not signed in with Microsoft: bulk-mailer microsoft login --client-id ID", file=err)
            return EXIT_NOTHING_SENT
    elif args.microsoft_command == "logout":
        result = app.microsoft_sign_out(_passphrase(app, stdin, optional=True))
        print(f"Signed out of {result['email']}: the sign-in was deleted here. To withdraw Bulk Mailer's access "
              f"at Microsoft too, remove it at {result['apps_page']}." if result["email"]
              else "Nobody is signed in with Microsoft.", file=err)
        return EXIT_OK
    else:
        return _microsoft_login(app, args, stdin, out, err)
    what = " and ".join(w for w, ok in (("Microsoft Graph", status["graph"]), ("SMTP", status["smtp"])) if ok)
    print(f"Signed in with Microsoft as {status['email']} ({'personal' if status['consumer'] else 'work or school'} "
          f"account) for {what or 'nothing yet'}, since {status['signed_in_at'] or '?'}.", file=err)
    print(f"Limits: {status['limits']['note']}", file=err)
    return EXIT_OK


def _microsoft_login(app: App, args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    started = app.microsoft_sign_in(args.client_id, args.tenant, device_code=args.device_code,
                                    passphrase=_passphrase(app, stdin), open_browser=not args.no_browser)
    minutes = f"{_sign_in_timeout() / 60:g}"
    if args.device_code:
        print(started["message"] or f"Open {started['url']} and enter the code {started['user_code']}.", file=err)
        out.write(f"{started['url']} {started['user_code']}\n")
    elif args.no_browser:
        print(f"Open this address in a browser on this computer and sign in (waiting up to {minutes} minutes; "
              "Ctrl-C cancels):", file=err, flush=True)
        out.write(started["url"] + "\n")
    else:
        print(f"Your browser shows Microsoft's sign-in (waiting up to {minutes} minutes; Ctrl-C cancels). If no "
              f"browser opened, open:\n{started['url']}", file=err)
    out.flush()
    try:
        state = app.wait_sign_in()
    except KeyboardInterrupt:
        app.microsoft_cancel_sign_in()
        raise OAuthError("the sign-in was cancelled (Ctrl-C)", category="microsoft_sign_in",
                         fix=("Run bulk-mailer microsoft login again.",)) from None
    status = app.microsoft_status()
    provider = "outlook" if status["consumer"] else "office365"
    print(f"Signed in as {state['email']}: send with --channel microsoft"
          + (f" or --provider {provider} --auth xoauth2" if status["smtp"] else "") + ".", file=err)
    print(f"Limits: {status['limits']['note']}", file=err)
    return EXIT_OK
