"""The command line's time commands: send's --at/--window/--local-time/--follow-up options,
`run-due`, `reschedule`, `cancel` and `timer` (a face of backend.cli, kept apart so each stays
thin). The rules are the core's (App.with_schedule, App.run_due, ...): this parses and words."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from backend.cli_parser import EXIT_OK, EXIT_SOME_FAILED, UsageError
from backend.inputs import FollowUpInput, ScheduleInput, whole_numbers

if TYPE_CHECKING:
    from backend.app import App


def _app() -> App:
    from backend.cli import _app as core  # the core, loaded when the command runs

    return core()


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} '{path}': {getattr(exc, 'strerror', None) or exc}",
                         category="file_error") from None


def follow_up(days: str, path: str, expire_days: float, step: int) -> FollowUpInput:
    """--follow-up DAYS FILE: the body from FILE (HTML when it ends in .html/.htm), its subject from
    a first line 'Subject: ...' when there is one."""
    try:
        after = float(days)
    except ValueError:
        raise UsageError(f"--follow-up {days} {path}: '{days}' is not a number of days") from None
    body = _read(path, f"follow-up {step} file")
    subject = ""
    first, _, rest = body.partition("\n")
    if first.lower().startswith("subject:"):
        subject, body = first.split(":", 1)[1].strip(), rest.lstrip("\r\n")
    html = Path(path).suffix.lower() in (".html", ".htm")
    return FollowUpInput(after_days=after, html=body if html else "", text="" if html else body, subject=subject,
                         expire_days=expire_days)


def schedule_input(args: argparse.Namespace) -> ScheduleInput:
    """send's time options as the core's ScheduleInput."""
    steps = tuple(follow_up(days, path, args.follow_up_expire, k)
                  for k, (days, path) in enumerate(args.follow_up or [], 1))
    return ScheduleInput(at=args.at, tz=args.tz, window=args.window, local_time=args.local_time,
                         default_tz=args.default_tz, tz_column=args.tz_column, follow_ups=steps,
                         warmup=warmup_steps(args.warm_up) if args.warm_up else ())


def warmup_steps(text: str) -> tuple[int, ...]:
    """--warm-up 20,40,80: the daily limits, day by day."""
    numbers = whole_numbers(text)
    if numbers is None:
        raise UsageError(f"--warm-up {text}: give whole numbers separated by commas, such as 20,40,80")
    return numbers


def _local(iso_time: str | None) -> str:
    return f"{dt.datetime.fromisoformat(iso_time).astimezone():%a %Y-%m-%d %H:%M}" if iso_time else ""


def scheduled_lines(started: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """What send --at says: the campaign id, when it starts, how it goes by itself."""
    saved = spec.get("schedule") or {}
    lines = [f"Campaign {started['campaign']}: {started['words']} ({started['total']} recipients)."]
    if saved.get("window_words"):
        lines.append(f"Send window: {saved['window_words']} ({saved['tz']}).")
    if saved.get("local_time"):
        lines.append(f"Each recipient at {saved['local_time']} in their time zone.")
    if saved.get("ends_about"):
        lines.append(f"Expected to end about {_local(saved['ends_about'])}.")
    lines.append("It goes by itself while the app is open or the timer is installed (bulk-mailer timer install); "
                 f"change it with bulk-mailer reschedule {started['campaign']}, or cancel it with bulk-mailer "
                 f"cancel {started['campaign']}.")
    return lines


def cmd_run_due(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    from backend.cli import _passphrase

    app = _app()
    done = app.run_due(passphrase=_passphrase(app, stdin, optional=True))
    if args.json:
        json.dump(done, out, ensure_ascii=False, default=str)
        out.write("\n")
    if not done:
        err.write("Nothing is due.\n")
    for item in done:
        what = f"follow-up {item['step']} of {item['campaign'].rsplit('-f', 1)[0]}" if item["kind"] == "follow-up" \
            else f"campaign {item['campaign']}"
        if item.get("skipped"):
            err.write(f"{what}: left to the process sending it ({item['skipped']})\n")
        elif item.get("error"):
            err.write(f"{what}: not sent: {item['error']['message']}\n")
        else:
            counts = ", ".join(f"{n} {k}" for k, n in sorted(item.get("counts", {}).items()) if n)
            err.write(f"{what}: {item['state']} ({counts})\n")
    return EXIT_SOME_FAILED if any(i.get("error") for i in done) else EXIT_OK


def cmd_reschedule(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    if not (args.at or args.subject is not None or args.html_file or args.text_file):
        raise UsageError("give what to change: --at, --subject, --html-file or --text-file")
    done = _app().reschedule(args.campaign, at=args.at, tz=args.tz, subject=args.subject,
                             html=_read(args.html_file, "HTML file") if args.html_file else None,
                             text=_read(args.text_file, "text file") if args.text_file else None)
    err.write(f"Campaign {done['campaign']}: {done['words']}.\n")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    done = _app().cancel_campaign(args.campaign)
    err.write(f"Campaign {done['campaign']}: cancelled; {done['skipped']} recipient(s) not sent"
              + (f", {done['follow_ups_cancelled']} follow-up(s) cancelled" if done["follow_ups_cancelled"] else "")
              + ".\n")
    return EXIT_OK


def cmd_timer(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    state = _app().timer(args.action)
    err.write(state["words"] + "\n")
    if args.action == "status" and state["installed"]:
        err.write("Remove it by hand with:\n" + "".join(f"  {line}\n" for line in state["remove_by_hand"]))
    return EXIT_OK
