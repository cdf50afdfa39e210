"""The application core, driven directly: every use case once, and the faces agreeing on it."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.app import LOCAL_INBOX, App
from backend.credentials import EncryptedFileStore
from backend.inbox import LocalInbox
from backend.inputs import (
    AccountInput,
    MessageInput,
    NothingLeft,
    ResumeRequest,
    RowProblems,
    SendOptions,
    SettingsChanged,
)
from tests.conftest import offline_detect
from tests.servers import PASSWORD, USER, free_port

LIST = ("email,name,file\n"
        "ann@example.org,Ann,\n"
        "not-an-address,Bad,\n"
        "bob@example.org,Bob,\n"
        "ann@example.org,Ann again,\n"
        "gone@example.org,Gone,\n"
        "reject550@example.org,Rex,\n")


@pytest.fixture
def app(tmp_path):
    made = App(inbox=LocalInbox(), store=EncryptedFileStore(tmp_path / "s.enc"), detector=offline_detect)
    yield made
    made.shutdown()


def smtp(server, certs, **kw) -> AccountInput:
    return AccountInput(host=server.host, port=server.port, security=server.mode, user=USER, password=PASSWORD,
                        ca_file=certs.ca_file, timeout=5, from_address="Me <me@example.com>", **kw)


MESSAGE = MessageInput(subject="Hi {{ name }}", text="Hello {{ name }}", delay_ms=0)


def finish(run) -> dict:
    run.wait()
    return run.snapshot()


def test_every_use_case_once_through_the_local_inbox(app, tmp_path):
    inbox = AccountInput(provider=LOCAL_INBOX, from_address="Me <me@example.com>")
    assert app.info()["providers"][0]["key"] == LOCAL_INBOX
    assert app.load_settings()["first_start"] is True
    assert app.verify(inbox)["steps"]
    assert app.detect("someone@gmail.com")[0].provider == "gmail"
    imported = app.import_recipients(("text", LIST))
    assert len(imported.recipients) == 4 and len(imported.rejected) == 1 and len(imported.duplicates) == 1
    app.suppression_add("gone@example.org", "asked to be removed")
    assert app.check(inbox, MESSAGE)["problems"] == []
    shown = app.preview(inbox, MESSAGE, 1)
    assert shown["subject"] == "Hi Ann" and shown["total"] == 3  # gone@ is suppressed
    assert app.send_test(inbox, MESSAGE, 2)["to"] == "me@example.com"
    draft, plan = app.prepare(inbox, MESSAGE, SendOptions())
    assert plan.account.endswith(f"{app.inbox.host}:{app.inbox.port}") and plan.connections == 1
    state = finish(app.start(draft, plan))
    assert state["state"] == "finished" and state["counts"]["sent"] == 3
    (past,) = app.history()
    assert past["subject"] == "Hi {{ name }}" and past["resumable"] is False and past["left_to_send"] == 0
    text, count = app.export("latest")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert count == 6 and [r["line"] for r in rows] == ["2", "3", "4", "5", "6", "7"]
    assert {r["status"] for r in rows if r["line"] in ("3", "5", "6")} == {"skipped"}
    with pytest.raises(NothingLeft):
        app.resume("latest", ResumeRequest())
    assert app.template_save("welcome", subject="Hi", body="x", fmt="text", unsubscribe=[]) == "welcome"
    assert app.template_load("welcome")["message"]["subject"] == "Hi"
    assert "Hi" in app.template_export("welcome")
    assert app.details("latest")["campaign"]["id"] == past["id"]


def test_each_row_problem_keeps_its_own_category_and_fix(app, tmp_path):
    (tmp_path / "files").mkdir()
    app.import_recipients(("text", "email,file\nann@example.org,../secret.txt\nbob@example.org,{{ oops\n"))
    app.attach_dir = tmp_path / "files"
    message = MessageInput(subject="Hi {{ nosuchfield }}", text="x", attach_column="file",
                           attach_dir=str(tmp_path / "files"))
    with pytest.raises(RowProblems) as caught:
        app.prepare(AccountInput(provider=LOCAL_INBOX, from_address="me@example.com"), message, SendOptions())
    categories = {p["category"] for p in caught.value.rows()}
    assert {"template_error", "attachment_error"} <= categories
    attachment = next(p for p in caught.value.rows() if p["category"] == "attachment_error")
    assert not any("{{ field }}" in step for step in attachment["fix"])  # not the template advice


def test_resume_with_corrected_settings_after_a_wrong_port(app, smtp_server, certs):
    server = smtp_server("starttls")
    app.import_recipients(("text", "ann@example.org\nbob@example.org\n"))
    wrong = AccountInput(host="127.0.0.1", port=free_port(), security="starttls", user=USER, password=PASSWORD,
                         ca_file=certs.ca_file, timeout=5, from_address="me@example.com")
    state = finish(app.start(*app.prepare(wrong, MESSAGE, SendOptions())))
    assert state["state"] == "failed" and state["error"]["category"] == "connection_refused"
    (past,) = app.history()
    assert past["resumable"] and past["left_to_send"] == 2
    right = smtp(server, certs)
    with pytest.raises(SettingsChanged) as asked:
        app.resume(past["id"], ResumeRequest(account=right))
    assert asked.value.now == f"127.0.0.1:{server.port}" and asked.value.was == f"127.0.0.1:{wrong.port}"
    assert app.history()[0]["state"] == "failed"  # asking changed nothing
    state = finish(app.resume(past["id"], ResumeRequest(account=right, use_current_settings=True)))
    assert state["state"] == "finished" and len(server.messages) == 2
    assert app.journal.spec(past["id"])["settings"]["port"] == server.port  # kept for the next resume


def run_cli(*args: str, home: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "BULK_MAILER_PASSWORD"}
    full.update(BULK_MAILER_HOME=str(home), BULK_MAILER_PASSWORD=PASSWORD, **(env or {}))
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], capture_output=True, text=True,
                          env=full, timeout=60)


def test_the_cli_resumes_with_corrected_settings(smtp_server, certs, tmp_path, isolated_home):
    server = smtp_server("starttls")
    people, body = tmp_path / "p.txt", tmp_path / "b.txt"
    people.write_text("ann@example.org\nbob@example.org\n")
    body.write_text("Hello")
    wrong = ["--host", "127.0.0.1", "--port", str(free_port()), "--security", "starttls", "--user", USER,
             "--ca-file", certs.ca_file, "--timeout", "5"]
    sent = run_cli("send", *wrong, "--from", "me@example.com", "--to-file", str(people), "--subject", "Hi",
                   "--text-file", str(body), "--delay-ms", "0", home=isolated_home)
    assert sent.returncode == 2 and "connection_refused" in sent.stderr
    right = ["--host", server.host, "--port", str(server.port), "--security", "starttls", "--user", USER,
             "--ca-file", certs.ca_file, "--timeout", "5"]
    refused = run_cli("resume", "latest", *right, home=isolated_home)
    assert refused.returncode == 2 and "--use-current-settings" in refused.stderr and not server.messages
    resumed = run_cli("resume", "latest", "--use-current-settings", *right, home=isolated_home)
    assert resumed.returncode == 0, resumed.stderr
    assert len(server.messages) == 2 and f"127.0.0.1:{server.port}" in resumed.stderr


def _blank_run_columns(text: str) -> str:
    """The CSV with the columns that differ between two runs of one campaign (time, id) emptied."""
    rows = list(csv.reader(io.StringIO(text)))
    at, mid = rows[0].index("sent_at"), rows[0].index("message_id")
    for row in rows[1:]:
        row[at] = row[mid] = ""
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def test_the_window_and_the_cli_give_the_same_results(smtp_server, certs, tmp_path, isolated_home):
    """One list (an invalid, a duplicate, a suppressed line, a refused recipient) sent from the
    window's API and from the command line: the same export, byte for byte, and one quota key."""
    from bridge import Bridge

    server = smtp_server("plain", auth=False)  # a relay on this machine: no login, no TLS
    people, body = tmp_path / "people.csv", tmp_path / "body.txt"
    people.write_text(LIST)
    body.write_text("Hello {{ name }}")
    b = Bridge(inbox=LocalInbox(), store=EncryptedFileStore(tmp_path / "s.enc"), deliver=lambda batch: None)
    try:
        assert b.suppression_add({"text": "gone@example.org", "reason": "asked to be removed"})["ok"]
        assert b.import_recipients_text({"text": LIST})["ok"]
        account = {"provider": "custom", "host": server.host, "port": server.port, "security": "none",
                   "from_address": "me@example.com", "timeout": 5}
        started = b.start_campaign({"account": account, "delay_ms": 0,
                                    "message": {"subject": "Hi {{ name }}", "body": "Hello {{ name }}",
                                                "format": "text"}})
        assert started["ok"], started
        b._app.run.wait()
        window_csv = b.export_results({})["data"]["csv"]
    finally:
        b._shutdown()
    cli = run_cli("send", "--host", server.host, "--port", str(server.port), "--security", "none",
                  "--from", "me@example.com", "--to-file", str(people),
                  "--subject", "Hi {{ name }}", "--text-file", str(body), "--delay-ms", "0", home=isolated_home)
    assert cli.returncode == 1, cli.stderr  # one refused, one invalid
    exported = run_cli("export", "latest", "-", home=isolated_home)
    assert exported.returncode == 0, exported.stderr
    assert _blank_run_columns(exported.stdout) == _blank_run_columns(window_csv)
    assert "reject550@example.org,failed,recipient_rejected,550" in window_csv
    listed = App().history()
    assert len(listed) == 2 and listed[0]["account"] == listed[1]["account"]
    since = "2000-01-01T00:00:00+00:00"
    assert len(App().journal.sent_since(listed[0]["account"], since)) == 4  # one quota: 2 sent by each


def test_an_import_reports_progress_and_can_be_cancelled_keeping_the_list_before(app):
    from backend.recipients import ImportCancelled

    events: list[dict] = []
    app.emit = events.append
    kept = app.import_recipients(("text", "\n".join(f"p{i}@example.org" for i in range(5000))))
    done = [e for e in events if e["type"] == "import-progress"]
    assert done and done[-1]["done"] == done[-1]["total"] and len(kept.recipients) == 5000

    def cancel_on_progress(event: dict) -> None:
        if event["type"] == "import-progress":
            app.cancel_import()  # as the page's Cancel import button does, from another call

    app.emit = cancel_on_progress
    with pytest.raises(ImportCancelled) as caught:
        app.import_recipients(("text", "\n".join(f"q{i}@example.org" for i in range(50_000))))
    assert caught.value.category == "file_error" and "cancelled" in caught.value.message
    assert app.imported is kept  # the list read before stays
    assert len(app.list_preview(kept)["rows"]) == 100
