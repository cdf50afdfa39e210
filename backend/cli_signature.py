"""The command line's `signature` command: show, set or clear the account's signature (a face of
backend.cli, kept apart so each stays thin). The rules are the core's (App.save_signature)."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from backend.cli_parser import EXIT_OK, UsageError


def cmd_signature(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    from backend.cli import _account, _app, _read_template  # the core, loaded when the command runs

    app = _app()
    account = _account(args, stdin, app, need_password=False)
    if args.action == "set":
        html, text = _read_template(args.html_file, "HTML"), _read_template(args.text_file, "text")
        if not (html or "").strip() and not (text or "").strip():
            raise UsageError("give --html-file and/or --text-file with the signature (clear removes it)")
        found = app.save_signature(account, html or "", text or "")
        err.write(f"Signature saved for {found['key']}: added below every message sent through it "
                  "(send --no-signature leaves it out)\n")
    elif args.action == "clear":
        found = app.save_signature(account, "", "")
        err.write(f"Signature cleared for {found['key']}\n")
    else:
        found = app.account_signature(account)
        if args.json:
            json.dump(found, out, ensure_ascii=False)
            out.write("\n")
        elif found["html"] or found["text"]:
            out.write(f"HTML:\n{found['html'] or '(made from the text)'}\n\nText:\n{found['text'] or '(made from the HTML)'}\n")
        else:
            err.write(f"No signature for {found['key']}\n")
    return EXIT_OK
