"""The command line's checks before sending: `check` (the offline content check, and on request
--links and --auth, which make requests) and send --dry-run --check-links (a face of backend.cli,
kept apart so each stays thin). The rules are the core's (App.check_content, App.check_links,
App.check_authentication): this parses and words."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, TextIO

from backend.cli_parser import EXIT_OK, EXIT_SOME_FAILED, UsageError
from backend.inputs import AccountInput, MessageInput, RowProblems

if TYPE_CHECKING:
    from backend.app import App


def cmd_check(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    from backend.cli import _app, _bodies

    given = args.html_file or args.text_file or args.markdown_file
    if not given and not args.auth:
        raise UsageError("give --html-file, --markdown-file or --text-file, or --auth to check only the domain")
    if args.links and not given:
        raise UsageError("--links needs the message: give --html-file, --markdown-file or --text-file")
    bodies = _bodies(args) if given else {"html": None, "text": None}
    html, text = bodies.get("html") or bodies.get("markdown"), bodies.get("text")
    message = MessageInput(subject=args.subject, **bodies, from_address=args.from_address,
                           attach=tuple(args.attach or ()), unsubscribe=tuple(args.unsubscribe or ()),
                           delay_ms=args.delay_ms)
    app, failed = _app(), False
    report: dict[str, Any] = {}
    if html is not None or text is not None:
        report = _content(app, args, message, out, err)
        failed = report["verdict"] != "Looks fine"
    if args.links:
        report["links"] = app.check_links(AccountInput(ca_file=args.ca_file), message, to_file=args.to_file)
        failed |= print_links(report["links"], err)
    if args.auth:
        if not args.from_address:
            raise UsageError("--auth needs --from (the address whose domain is checked)")
        account = AccountInput(channel=args.channel, provider=args.provider, host=args.host or "",
                               from_address=args.from_address, user=args.from_address)
        report["authentication"] = app.check_authentication(account, message, selectors=tuple(args.dkim_selector or ()),
                                                            to_file=args.to_file)
        failed |= print_authentication(report["authentication"], err)
    if args.json:
        json.dump(report, out, ensure_ascii=False)
        out.write("\n")
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _content(app: App, args: argparse.Namespace, message: MessageInput, out: TextIO, err: TextIO) -> dict[str, Any]:
    from backend.cli import Reporter, _print_problems

    try:
        report = app.check_content(message, to_file=args.to_file, relay=args.host)
    except RowProblems as exc:
        _print_problems(exc.problems, Reporter("none", out, err))
        raise UsageError(f"{len({p.row for p in exc.problems})} row(s) cannot be built; fix them (see above)",
                         category=exc.category) from None
    for f in report["findings"]:
        err.write(f"{f['score']:>4}  {f['name']} [{f['rule']}]: {f['reason']}\n      fix: {f['fix']}\n")
    err.write(verdict_words(report) + "\n")
    return report


def verdict_words(report: dict[str, Any]) -> str:
    n = len(report["findings"])
    return f"Content check: {report['verdict']} (score {report['score']:g}, {n} finding{'' if n == 1 else 's'})"


_LINK_LABEL = {"broken": "broken ", "warn": "look   ", "skipped": "skipped", "not_checked": "not checked"}


def print_links(report: dict[str, Any], err: TextIO) -> bool:
    """Each link that is not simply fine, then the counts; True when a link is broken."""
    for link in report["links"]:
        if link["state"] != "ok":
            words = link["words"].removeprefix("skipped: ").removeprefix("not checked: ")
            err.write(f"link {_LINK_LABEL[link['state']]}  {link['url']}: {words}\n")
    if report["note"]:
        err.write(f"Note: {report['note']}\n")
    err.write(f"Links: {report['summary']} ({report['seconds']:g} s)\n")
    return bool(report["broken"])


def print_authentication(answer: dict[str, Any], err: TextIO) -> bool:
    """The checklist, each line with its fix; True when a check fails."""
    for c in answer["checks"]:
        err.write(f"{c['state']:<7}  {c['name']}: {c['words']}\n")
        if c["fix"] and c["state"] != "ok":
            err.write(f"         fix: {c['fix']}\n")
    failing = sum(1 for c in answer["checks"] if c["state"] == "fail")
    where = f"{answer['domain']} through {answer['path']}" if answer["domain"] else answer["path"]
    err.write(f"Authentication ({where}): " + (f"{failing} to fix" if failing else "nothing to fix") + "\n")
    return bool(failing)
