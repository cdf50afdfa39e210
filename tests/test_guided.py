"""Issue 14's warnings before mistakes, in the core and its faces: empty fields the message
prints, and the same list sent again to the same account."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

import appwindow
from backend import compose, paths
from backend.app import LOCAL_INBOX, App
from backend.credentials import EncryptedFileStore
from backend.inbox import LocalInbox
from backend.inputs import AccountInput, MessageInput, SendOptions
from backend.recipients import parse_text
from tests.conftest import offline_detect
from tests.servers import PASSWORD
from tests.test_cli import account, run_cli

NAMES = "email,name\nann@example.org,Ann\nbob@example.org,\ncy@example.org,  \ndee@example.org,Dee\n"
INBOX = AccountInput(provider=LOCAL_INBOX, from_address="Me <me@example.com>")


@pytest.fixture
def app(tmp_path):
    made = App(inbox=LocalInbox(), store=EncryptedFileStore(tmp_path / "s.enc"), detector=offline_detect)
    yield made
    made.shutdown()


# -- A. empty fields ---------------------------------------------------------------------------


def test_an_empty_field_the_message_prints_is_a_warning_with_count_and_lines(app):
    app.import_recipients(("text", NAMES))
    found = app.check(INBOX, MessageInput(subject="Hi {{ name }}", text="Hello", delay_ms=0))
    assert found["problems"] == []
    assert found["warnings"] == ['2 recipients have an empty name (lines 3, 4): use a default, e.g. '
                                 '{{ name | default("there") }}, or skip them']


@pytest.mark.parametrize("subject, body", [
    ("Hi {{ name | default('there') }}", "Hello {{ name|d('you')|title }}"),
    ("Hi", "{% if name %}Dear {{ name }},{% endif %} {{ 'x' if not name else name }}"),
    ("Hi {{ email }}", "no fields"),
])
def test_no_warning_for_a_field_wrapped_in_a_default_or_tested(app, subject, body):
    app.import_recipients(("text", NAMES))
    assert app.check(INBOX, MessageInput(subject=subject, text=body, delay_ms=0))["warnings"] == []


def test_one_bare_use_among_defaulted_ones_still_warns():
    t = compose.Template("Hi {{ name | default('there') }}", text="Bye {{ name }}")
    assert t.bare_fields == {"name"}


def test_the_suggested_default_fills_an_empty_cell():
    row = parse_text(NAMES).recipients[1]
    t = compose.Template('Hi {{ name | default("there") }}', text="x")
    assert compose.render(t, row, compose.parse_sender("me@example.com"))["Subject"] == "Hi there"


def test_cli_dry_run_and_send_warn_and_strict_fields_refuses(smtp_server, certs, tmp_path):
    server = smtp_server("starttls")
    people = tmp_path / "p.csv"
    people.write_text(NAMES)
    body = tmp_path / "b.txt"
    body.write_text("Hello {{ name }}")
    common = ["--from", "me@example.com", "--to-file", str(people), "--subject", "Hi", "--text-file", str(body),
              "--delay-ms", "0"]
    words = "warning   2 recipients have an empty name (lines 3, 4): use a default"
    dry = run_cli("send", "--host", "smtp.nowhere.invalid", *common, "--dry-run", home=tmp_path / "h")
    assert dry.returncode == 0 and words in dry.stderr, dry.stderr
    strict = run_cli("send", *account(server, certs), *common, "--strict-fields",
                     env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert strict.returncode == 2 and "empty name" in strict.stderr and server.messages == [], strict.stderr
    sent = run_cli("send", *account(server, certs), *common, env={"BULK_MAILER_PASSWORD": PASSWORD},
                   home=tmp_path / "h")
    assert sent.returncode == 0 and words in sent.stderr, sent.stderr
    assert len(server.messages) == 4


# -- B. the same list sent again ----------------------------------------------------------------


def plain(server) -> AccountInput:
    return AccountInput(host=server.host, port=server.port, security="none", from_address="me@example.com",
                        timeout=5)


def test_a_practice_run_never_counts_and_a_real_send_asks_the_next_time(app, smtp_server):
    server = smtp_server("plain", auth=False)
    message = MessageInput(subject="Hi", text="Hello", delay_ms=0)
    app.import_recipients(("text", "a@example.org\nb@example.org\nreject550@example.org"))
    practice = app.prepare(INBOX, message, SendOptions())
    app.start(*practice).wait()
    assert len(app.inbox.messages()) == 3
    assert app.already_sent(INBOX) is None  # the local inbox: never asks
    assert app.already_sent(plain(server)) is None  # the practice run does not count for the real account
    app.start(*app.prepare(plain(server), message, SendOptions())).wait()
    assert len(server.messages) == 2
    earlier = app.already_sent(plain(server))
    assert earlier is not None and (earlier["sent"], earlier["total"], earlier["not_yet"]) == (2, 3, 1)
    # another list, or another account: no question
    other = smtp_server("plain", auth=False)
    assert app.already_sent(plain(other)) is None
    app.import_recipients(("text", "a@example.org\nnew@example.org"))
    assert app.already_sent(plain(server)) is None
    # the same list again: only those not yet sent
    app.import_recipients(("text", "a@example.org\nb@example.org\nreject550@example.org"))
    draft, plan = app.prepare(plain(server), message, SendOptions(skip_sent_in=earlier["campaign"]))
    assert [r.email for r in draft.recipients] == ["reject550@example.org"]
    app.start(draft, plan).wait()
    assert len(server.messages) == 2  # a and b did not get it twice


def test_a_campaign_older_than_30_days_does_not_ask(app, smtp_server):
    server = smtp_server("plain", auth=False)
    app.import_recipients(("text", "a@example.org"))
    run = app.start(*app.prepare(plain(server), MessageInput(subject="Hi", text="Hello", delay_ms=0), SendOptions()))
    run.wait()
    assert app.already_sent(plain(server)) is not None
    app.journal._db.execute("UPDATE campaigns SET created = '2020-01-01T00:00:00+00:00'")
    assert app.already_sent(plain(server)) is None


# -- D. the window always opens something -------------------------------------------------------


def test_without_a_usable_display_the_app_falls_back_to_browser_mode(tmp_path):
    """DISPLAY names a display that does not exist: Qt would abort (exit 134); the app says why
    and serves the same UI to the browser instead (BROWSER=true: the "browser" does nothing)."""
    root = Path(__file__).resolve().parents[1]
    number = next(n for n in range(99, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "PYTHONPATH")}
    env.update(DISPLAY=f":{number}", BROWSER="true", BULK_MAILER_HOME=str(tmp_path / "home"),
               QTWEBENGINE_CHROMIUM_FLAGS="--no-sandbox", PYTHONPATH=str(root))
    proc = subprocess.Popen([sys.executable, str(root / "bridge.py")], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(60)
        assert lines and lines[0].startswith("http://127.0.0.1:"), (lines, proc.poll())
        with urllib.request.urlopen(lines[0].strip(), timeout=10) as page:  # noqa: S310 (127.0.0.1)
            assert page.status == 200 and b"Bulk Mailer" in page.read()
        assert proc.poll() is None  # still serving
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    assert "the desktop window cannot start" in err and "Serving the app to your browser instead" in err, err
    if not shutil.which("ldd") or "=> not found" not in subprocess.run(
            ["ldd", str(Path(appwindow._xcb_plugin() or "/nonexistent"))], capture_output=True, text=True).stdout:
        assert f"no usable display :{number}" in err, err
    else:  # this machine lacks Qt's xcb libraries: they are named
        assert "these system packages are missing: " in err and "sudo apt install lib" in err, err


def test_missing_libraries_are_named_as_debian_packages():
    qt_says = ("qt.core.library: Cannot load library /x/libqxcb.so: libxcb-icccm.so.4: cannot open shared object "
               "file: No such file or directory\n"
               "\tlibxkbcommon-x11.so.0 => not found\n\tlibxcb-keysyms.so.1 => not found\n")
    assert appwindow.missing_packages(qt_says) == ["libxcb-icccm4", "libxkbcommon-x11-0", "libxcb-keysyms1"]


# -- E. drafts survive ----------------------------------------------------------------------------


def test_the_draft_is_kept_privately_restored_and_cleared(app, isolated_home):
    from backend.inputs import SavedDraft

    assert app.load_draft() is None
    saved = app.save_draft(SavedDraft(subject="Hi {{ name }}", body="<p>News</p>", format="html",
                                      unsubscribe=("https://example.com/u",),
                                      send={"delay": "250", "limit-day": "400", "password": "hunter2"}))
    again = App(inbox=LocalInbox(), store=EncryptedFileStore(isolated_home / "s.enc"))  # the next start
    draft = again.load_draft()
    assert draft == {"saved": saved["saved"], "send": {"delay": "250", "limit-day": "400"},
                     "message": {"subject": "Hi {{ name }}", "body": "<p>News</p>", "format": "html",
                                 "raw_html": False, "unsubscribe": ["https://example.com/u"]}, "restored": {}}
    found = paths.data_dir() / "draft.json"
    assert found.stat().st_mode & 0o077 == 0 and b"hunter2" not in found.read_bytes()
    found.write_text("{not json")  # a damaged draft is ignored, not fatal
    assert again.load_draft() is None
    again.save_draft(SavedDraft(subject="x"))
    again.clear_draft()
    assert again.load_draft() is None and not found.exists()


def test_the_draft_keeps_the_times_of_review_and_send(app, isolated_home):
    from backend.inputs import SavedDraft

    when = {"when": "later", "when-at": "2026-12-04T09:00", "when-tz": "America/New_York",
            "when-window": "mon-fri 08:00-18:00", "when-local": "yes", "when-local-time": "09:00",
            "when-default-tz": "Europe/Berlin"}
    app.save_draft(SavedDraft(subject="x", send={**when, "when-follow-ups": "not kept"}))
    again = App(inbox=LocalInbox(), store=EncryptedFileStore(isolated_home / "s.enc"))
    assert again.load_draft()["send"] == when


def test_the_draft_keeps_the_list_its_columns_and_the_attached_files(app, isolated_home, tmp_path):
    from backend.inputs import SavedDraft

    people = tmp_path / "people.csv"
    people.write_text("mail,who,nick\nann@example.org,Ann,Annie\nbob@example.org,Bob,Bobby\n", encoding="utf-8")
    report = tmp_path / "report.txt"
    report.write_text("numbers\n", encoding="utf-8")
    app.import_recipients(("file", str(people)), "mail", "nick")
    app.add_attachment_files([str(report)])
    app.save_draft(SavedDraft(subject="Hi"))
    again = App(inbox=LocalInbox(), store=EncryptedFileStore(isolated_home / "s.enc"))  # the next start
    restored = again.load_draft()["restored"]
    assert restored["list"] == again.imported.summary() and restored["attachments"] == ["report.txt"]
    assert [r.email for r in again.imported.recipients] == ["ann@example.org", "bob@example.org"]
    assert again.columns == ("mail", "nick") and restored["preview"]["name_column"] == "nick"
    assert [a.data for _, a in again.attachments] == [b"numbers\n"]
    # a pasted list, and a file that went away: said, not fatal
    again.import_recipients(("text", "cy@example.org\ndee@example.org"))
    again.save_draft(SavedDraft(subject="Hi"))
    report.unlink()
    third = App(inbox=LocalInbox(), store=EncryptedFileStore(isolated_home / "s.enc"))
    restored = third.load_draft()["restored"]
    assert [r.email for r in third.imported.recipients] == ["cy@example.org", "dee@example.org"]
    assert restored["attachments"] == [] and "report.txt" in restored["missing"][0]
    # Start a new campaign: the list and the files go with the draft
    third.clear_draft()
    assert third.imported is None and third.attachments == [] and third.load_draft() is None


# -- E. Review & send: the core decides what is missing, what goes where, how long ---------------


def test_review_lists_what_is_missing_step_by_step(app, smtp_server):
    from backend.review import review

    custom = AccountInput(provider="custom", host="", from_address="")
    r = review(app, custom, MessageInput(subject="", html=""), SendOptions()).as_dict()
    assert not r["ready"] and not r["sendable"] and r["confirm"] == ""
    assert {m["step"] for m in r["missing"]} == {"account", "recipients", "message"}
    assert [m["text"] for m in r["missing"] if m["step"] == "message"] == ["Enter a subject", "Write the message"]
    assert {k: s["state"] for k, s in r["steps"].items()} == {
        "account": "todo", "recipients": "todo", "message": "todo", "review": "todo"}
    # a server that was never tested: Send waits for Test connection
    server = smtp_server("plain", auth=False)
    app.import_recipients(("text", NAMES))
    message = MessageInput(subject="Hi {{ name | default('you') }}", text="Hello", delay_ms=1000)
    r = app.review(plain(server), message, SendOptions())
    assert [m["text"] for m in r["missing"]] == ["Test the connection (Account, Test connection)"]
    assert r["steps"]["account"] == {"name": "Account", "state": "attention",
                                     "summary": "127.0.0.1: not tested yet"}
    assert r["steps"]["recipients"]["summary"] == "4 valid recipients"
    app.verify(plain(server))
    r = app.review(plain(server), message, SendOptions(limits={"per_minute": 2}))
    assert r["ready"] and r["missing"] == [] and r["steps"]["account"]["state"] == "done"
    assert r["confirm"] == "Send 4 messages through 127.0.0.1 as me@example.com?"
    assert (r["messages"], r["limits"], r["estimate_s"], r["estimate"]) == (4, "2 a minute", 90.0, "about 2 minutes")
    # a campaign that went through an account proves it works on the next start too
    app.start(*app.prepare(plain(server), message, SendOptions())).wait()
    later = App(inbox=LocalInbox(), store=app.store, journal_path=app.journal.path, detector=offline_detect)
    try:
        assert later.tested(plain(server))
    finally:
        later.shutdown()


def test_review_counts_what_a_one_click_fix_leaves_out(app):
    app.import_recipients(("text", NAMES))
    message = MessageInput(subject="Hi {{ name }}", text="Hello", delay_ms=0)
    r = app.review(INBOX, message, SendOptions())
    [empty] = [w for w in r["warnings"] if w["kind"] == "empty_field"]
    assert empty["fix"] == {"field": "name", "lines": [3, 4], "default": '{{ name | default("there") }}'}
    assert r["confirm"] == "Send 4 messages through the local test inbox as me@example.com?"
    skipped = app.review(INBOX, message, SendOptions(skip_empty=("name",)))
    assert skipped["confirm"] == "Send 2 messages through the local test inbox as me@example.com?"
    assert skipped["warnings"][0]["text"] == "2 recipients have an empty name: left out, as you chose"
    # and the run leaves them out, as skipped with the reason
    draft, plan = app.prepare(INBOX, message, SendOptions(skip_empty=("name",)))
    assert [r.email for r in draft.recipients] == ["ann@example.org", "dee@example.org"]
    app.start(draft, plan).wait()
    rows = {r.email: r for r in app.results(app.history()[0]["id"])}
    assert rows["bob@example.org"].status == "skipped" and rows["bob@example.org"].error == "not sent: empty name"


def test_warnings_before_mistakes_links_size_text_part_unsubscribe(app):
    from backend.review import built_warnings

    app.import_recipients(("text", "\n".join(f"p{i}@example.org" for i in range(101))))
    body = '<p><a href="http://example.com/a">a</a> <img src="http://example.com/i.png"> ' + "x" * 110_000 + "</p>"
    kinds = {w["kind"]: w["text"] for w in app.review(INBOX, MessageInput(subject="S", html=body), SendOptions())["warnings"]}
    assert set(kinds) == {"http_link", "clipped", "no_unsubscribe"}
    assert kinds["http_link"].startswith("2 links in the message are not https (http://example.com/a, http://exa")
    assert "no unsubscribe link for a list of 101 recipients" in kinds["no_unsubscribe"]
    with_link = MessageInput(subject="S", html="<p>short</p>", unsubscribe=("https://example.com/u",))
    assert app.review(INBOX, with_link, SendOptions())["warnings"] == []
    # our messages always carry a text part; one without gets the warning
    html_only = (b"From: a@example.com\r\nTo: b@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
                 b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>hi</p>\r\n")
    assert [w.kind for w in built_warnings(html_only)] == ["no_text_part"]


@pytest.mark.parametrize("n, delay, limits, expected", [
    (1, 1.0, None, 0.0),
    (61, 1.0, None, 60.0),
    (3, 0.0, {"per_minute": 2}, 60.0),
    (1001, 0.0, {"per_day": 500}, 2 * 86400.0),
    (4, 0.1, {"per_second": 0.5}, 6.0),
])
def test_the_estimate_follows_the_delay_and_the_limits(n, delay, limits, expected):
    from backend.model import RateLimits
    from backend.review import duration_words, estimate_seconds

    assert estimate_seconds(n, delay, RateLimits(**limits) if limits else None) == pytest.approx(expected)
    assert [duration_words(s) for s in (5, 90, 3 * 3600 + 600, 2 * 86400 + 4 * 3600)] == [
        "under a minute", "about 2 minutes", "about 3 hours 10 minutes", "about 2 days 4 hours"]


def test_invalid_addresses_read_in_plain_words():
    found = parse_text("email\nbob@@example.com\nann@example\nx y@example.com\nplain\n")
    assert [(r.line, r.value, r.problem) for r in found.rejected] == [
        (2, "bob@@example.com", "more than one @"),
        (3, "ann@example", "the part after the @ has no dot (example.com?)"),
        (4, "x y@example.com", "it contains a space"),
        (5, "plain", "no @ (an address looks like name@example.com)")]
    assert str(found.rejected[0]) == "line 2: 'bob@@example.com' is not a valid email address: more than one @"
