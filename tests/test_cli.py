"""The `bulk-mailer` command end to end, in a subprocess, against real servers."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import PASSWORD, USER

BODY = '<p>Hello <b>{{ name }}</b>, your code is {{ code }}. <a href="https://example.com/x">Details</a></p>'


def run_cli(*args: str, env: dict | None = None, stdin: str | None = None, home: Path) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "BULK_MAILER_PASSWORD"}
    full_env["BULK_MAILER_HOME"] = str(home)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        capture_output=True, text=True, env=full_env, input=stdin, timeout=60,
    )


@pytest.fixture
def campaign_files(tmp_path: Path) -> dict[str, Path]:
    people = tmp_path / "people.csv"
    people.write_text(
        "email,name,code\n"
        "ann@example.org,Ann,A1\n"
        "bob@example.org,Bob <3,B2\n"
        "not-an-address,Nobody,X\n"
        "reject550@example.org,Rex,R5\n"
        "ANN@example.org,Ann again,A9\n",
        encoding="utf-8",
    )
    html = tmp_path / "body.html"
    html.write_text(BODY, encoding="utf-8")
    return {"people": people, "html": html, "results": tmp_path / "out" / "results.csv"}


def error_line(stderr: str) -> str:
    """The one line saying why (steps or skipped rows may come before it)."""
    lines = [line for line in stderr.splitlines() if line.startswith("bulk-mailer: error")]
    assert len(lines) == 1, stderr
    return lines[0]


def account(server, certs) -> list[str]:
    return ["--host", server.host, "--port", str(server.port), "--security", server.mode,
            "--user", USER, "--ca-file", certs.ca_file, "--timeout", "5"]


def test_send_end_to_end(smtp_server, certs, campaign_files, tmp_path):
    server = smtp_server("starttls")
    proc = run_cli(
        "send", *account(server, certs), "--from", "Me Sender <me@example.com>",
        "--to-file", str(campaign_files["people"]), "--subject", "Hello {{ name }}",
        "--html-file", str(campaign_files["html"]), "--delay-ms", "0",
        "--results", str(campaign_files["results"]), "--progress", "jsonl",
        env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "home",
    )
    assert proc.returncode == 1, proc.stderr  # one refused and one invalid row
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(e["recipient"], e["status"]) for e in events] == [
        ("ann@example.org", "sending"), ("ann@example.org", "sent"),
        ("bob@example.org", "sending"), ("bob@example.org", "sent"),
        ("reject550@example.org", "sending"), ("reject550@example.org", "failed"),
    ]
    assert events[-1]["category"] == "recipient_rejected" and events[-1]["code"] == 550
    # the server got exactly the two good messages, each with one To, no Bcc
    assert len(server.messages) == 2
    first = server.messages[0].message
    assert first.get_all("To") == ["ann@example.org"] or "ann@example.org" in first["To"]
    assert len(first.get_all("To")) == 1 and first["Bcc"] is None
    assert first["Subject"] == "Hello Ann"
    assert first["From"].addresses[0].display_name == "Me Sender"
    html_part = first.get_body(("html",)).get_content()
    text_part = first.get_body(("plain",)).get_content()
    assert "<b>Ann</b>" in html_part and "A1" in html_part
    assert "https://example.com/x" in text_part and "<b>" not in text_part
    bob_html = server.messages[1].message.get_body(("html",)).get_content()
    assert "Bob &lt;3" in bob_html  # values are escaped in HTML
    # stderr explains the failures in words
    assert "reject550@example.org" in proc.stderr and "recipient_rejected" in proc.stderr
    assert "line 4" in proc.stderr  # the invalid row, by line
    assert "duplicate" in proc.stderr and "line 6" in proc.stderr
    assert "Done: 2 sent, 1 failed" in proc.stderr
    assert PASSWORD not in proc.stderr + proc.stdout
    # results CSV: one row per recipient with the documented columns
    with campaign_files["results"].open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["email", "status", "category", "smtp_code", "error", "attempts", "sent_at", "message_id",
                             "line", "dsn_status", "notice", "notice_at"]
    # every line of the list has its row, in list order: the invalid one and the duplicate too
    assert [r["line"] for r in rows] == ["2", "3", "4", "5", "6"]
    by_email = {r["email"]: r for r in rows}
    assert by_email["ANN@example.org"]["status"] == "skipped"
    assert by_email["ANN@example.org"]["error"] == "duplicate of line 2: sent once, for that line"
    assert by_email["ann@example.org"]["status"] == "sent" and by_email["ann@example.org"]["message_id"].startswith("<")
    assert by_email["reject550@example.org"]["smtp_code"] == "550"
    assert by_email["not-an-address"]["category"] == "invalid_address"
    log_text = (tmp_path / "home" / "logs" / "bulk-mailer.log").read_text()
    assert PASSWORD not in log_text


def test_all_sent_exits_0_with_password_from_stdin(smtp_server, certs, tmp_path):
    server = smtp_server("ssl")
    people = tmp_path / "p.txt"
    people.write_text("x@example.org\ny@example.org\n")
    body = tmp_path / "b.txt"
    body.write_text("Hi {{ email }}")
    proc = run_cli("send", *account(server, certs), "--password-stdin", "--from", "me@example.com",
                   "--to-file", str(people), "--subject", "Hi", "--text-file", str(body), "--delay-ms", "0",
                   stdin=PASSWORD + "\n", home=tmp_path / "h")
    assert proc.returncode == 0, proc.stderr
    assert [m.rcpt_tos for m in server.messages] == [["x@example.org"], ["y@example.org"]]
    assert server.messages[0].message.get_content().strip() == "Hi x@example.org"


def test_wrong_password_exits_2_with_fix(smtp_server, certs, campaign_files, tmp_path):
    server = smtp_server("starttls")
    proc = run_cli("send", *account(server, certs), "--provider", "gmail", "--from", "me@example.com",
                   "--to-file", str(campaign_files["people"]), "--subject", "Hi",
                   "--html-file", str(campaign_files["html"]),
                   env={"BULK_MAILER_PASSWORD": "wrong-one"}, home=tmp_path / "h")
    assert proc.returncode == 2
    first = proc.stderr.splitlines()[0]
    assert "auth_failed" in proc.stderr and "535" in proc.stderr
    assert "app password" in proc.stderr.lower()  # Gmail's advice
    assert "wrong-one" not in proc.stderr
    assert server.messages == []
    assert first  # one clear first line


def test_missing_field_lists_every_row_and_sends_nothing(smtp_server, certs, campaign_files, tmp_path):
    server = smtp_server("starttls")
    proc = run_cli("send", *account(server, certs), "--from", "me@example.com",
                   "--to-file", str(campaign_files["people"]), "--subject", "Hi {{ nickname }}",
                   "--html-file", str(campaign_files["html"]),
                   env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert proc.returncode == 2
    assert "nickname" in proc.stderr
    problems = [line for line in proc.stderr.splitlines() if line.startswith("problem")]
    assert len(problems) == 1 and "lines 2, 3, 5:" in problems[0]  # one line per distinct problem
    assert server.messages == [] and server.handler.commands == []
    assert "--skip-bad-rows" in error_line(proc.stderr)


def test_skip_bad_rows_sends_the_others(smtp_server, certs, tmp_path):
    server = smtp_server("starttls")
    people = tmp_path / "p.csv"
    people.write_text("email,nick\na@example.org,Al\nb@example.org,\n")
    body = tmp_path / "b.txt"
    body.write_text("{{ nick }}{% if not nick %}{{ missing }}{% endif %}")
    results = tmp_path / "r.csv"
    proc = run_cli("send", *account(server, certs), "--from", "me@example.com", "--to-file", str(people),
                   "--subject", "Hi", "--text-file", str(body), "--delay-ms", "0", "--skip-bad-rows",
                   "--results", str(results), env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert proc.returncode == 1, proc.stderr
    assert [m.rcpt_tos for m in server.messages] == [["a@example.org"]]
    rows = {r["email"]: r for r in csv.DictReader(results.open(encoding="utf-8"))}
    assert rows["b@example.org"]["status"] == "skipped" and "line 3" in rows["b@example.org"]["error"]


def test_dry_run_connects_nowhere(campaign_files, tmp_path):
    proc = run_cli("send", "--host", "smtp.nowhere.invalid", "--from", "me@example.com",
                   "--to-file", str(campaign_files["people"]), "--subject", "Hello {{ name }}",
                   "--html-file", str(campaign_files["html"]), "--dry-run", home=tmp_path / "h")
    assert proc.returncode == 0, proc.stderr
    assert "Dry run: 3 of 3 messages render" in proc.stderr


def test_subject_with_newline_from_a_field_is_refused(smtp_server, certs, tmp_path):
    people = tmp_path / "p.csv"
    people.write_text('email,name\na@example.org,"Ann\r\nBcc: victim@example.net"\n')
    body = tmp_path / "b.txt"
    body.write_text("x")
    proc = run_cli("send", "--host", "localhost", "--from", "me@example.com", "--to-file", str(people),
                   "--subject", "Hi {{ name }}", "--text-file", str(body), "--dry-run", home=tmp_path / "h")
    assert proc.returncode == 2
    assert "line 2" in proc.stderr and "subject" in proc.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--host", "smtp.example.com", "--port", "465", "--security", "starttls"], "465"),
        (["--host", "smtp.example.com", "--port", "70000"], "port"),
        (["--host", "smtp://x"], "host"),
        (["--host", "localhost", "--user", "me@example.com"], "BULK_MAILER_PASSWORD"),
    ],
)
def test_bad_settings_exit_2_naming_the_field(args, words, tmp_path):
    proc = run_cli("verify", *args, home=tmp_path / "h")
    assert proc.returncode == 2
    assert words in proc.stderr.splitlines()[0]


def test_verify_json(smtp_server, certs, tmp_path):
    server = smtp_server("starttls")
    proc = run_cli("verify", *account(server, certs), "--json", env={"BULK_MAILER_PASSWORD": PASSWORD},
                   home=tmp_path / "h")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] and data["error"] is None
    assert [(s["name"], s["status"]) for s in data["steps"]] == [
        ("dns", "ok"), ("tcp", "ok"), ("tls", "ok"), ("certificate", "ok"), ("ehlo", "ok"), ("auth", "ok")]
    assert USER in data["steps"][-1]["detail"]
    assert "PLAIN" in data["steps"][4]["data"]["auth"]
    assert server.messages == []


def test_verify_certificate_failure_exit_2(smtp_server, certs, tmp_path):
    server = smtp_server("ssl", cert=certs.expired)
    proc = run_cli("verify", *account(server, certs), env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert proc.returncode == 2
    assert "certificate_invalid" in error_line(proc.stderr)
    assert "FAILED   Certificate" in proc.stderr and "It covers: localhost" in proc.stderr
    assert "expired" in proc.stderr


def test_insecure_flag_is_shown(smtp_server, certs, tmp_path):
    server = smtp_server("starttls", cert=certs.self_signed)
    proc = run_cli("verify", "--host", server.host, "--port", str(server.port), "--insecure-skip-verify",
                   home=tmp_path / "h")
    assert proc.returncode == 0, proc.stderr
    assert "certificate verification is OFF" in proc.stderr


def test_provider_preset_fills_settings(tmp_path):
    # Port 1 on loopback is closed: the preset's host is overridden, its security kept.
    proc = run_cli("verify", "--provider", "outlook", "--host", "127.0.0.1", "--port", "1", home=tmp_path / "h")
    assert proc.returncode == 2
    assert "connection_refused" in error_line(proc.stderr)


def test_help_and_version(tmp_path):
    proc = run_cli("--version", home=tmp_path / "h")
    assert proc.returncode == 0 and "bulk-mailer" in proc.stdout
    proc = run_cli("send", "--help", home=tmp_path / "h")
    assert "--password-stdin" in proc.stdout and "--password " not in proc.stdout


def test_bulk_mailer_home_takes_every_file(smtp_server, certs, campaign_files, tmp_path):
    server = smtp_server("starttls")
    fake_home = tmp_path / "user-home"
    fake_home.mkdir()
    env = {"HOME": str(fake_home), "XDG_CONFIG_HOME": str(fake_home / ".config"),
           "XDG_DATA_HOME": str(fake_home / ".local/share"), "XDG_STATE_HOME": str(fake_home / ".local/state"),
           "XDG_CACHE_HOME": str(fake_home / ".cache"), "BULK_MAILER_PASSWORD": PASSWORD}
    proc = run_cli("send", *account(server, certs), "--from", "me@example.com",
                   "--to-file", str(campaign_files["people"]), "--subject", "Hi",
                   "--html-file", str(campaign_files["html"]), "--delay-ms", "0",
                   env=env, home=tmp_path / "portable")
    assert proc.returncode == 1, proc.stderr
    assert list(fake_home.rglob("*")) == []
    assert (tmp_path / "portable" / "logs" / "bulk-mailer.log").is_file()


def test_progress_bar_when_asked(smtp_server, certs, campaign_files, tmp_path):
    server = smtp_server("starttls")
    proc = run_cli("send", *account(server, certs), "--from", "me@example.com",
                   "--to-file", str(campaign_files["people"]), "--subject", "Hi",
                   "--html-file", str(campaign_files["html"]), "--delay-ms", "0", "--progress", "bar",
                   env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert "[##############################] 3/3" in proc.stderr  # (text mode turns \r into \n)
    assert proc.stdout == ""


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "bulk-mailer"
    assert script.exists(), "install the project (make test does) so the console script exists"
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.startswith("bulk-mailer ")


def test_international_domain_goes_out_in_idna_form(smtp_server, certs, tmp_path):
    server = smtp_server("starttls")
    people = tmp_path / "p.csv"
    people.write_text("email,name\na@example.com,A\nuser@bücher.de,B\n", encoding="utf-8")
    body = tmp_path / "b.txt"
    body.write_text("Hi {{ name }}")
    proc = run_cli("send", *account(server, certs), "--from", "me@example.com", "--to-file", str(people),
                   "--subject", "Hi", "--text-file", str(body), "--delay-ms", "0",
                   env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert proc.returncode == 0, proc.stderr
    assert [m.rcpt_tos for m in server.messages] == [["a@example.com"], ["user@xn--bcher-kva.de"]]


def test_ctrl_c_stops_cleanly_with_summary_and_results(smtp_server, certs, tmp_path):
    import signal
    import time

    server = smtp_server("starttls")
    people = tmp_path / "p.txt"
    people.write_text("".join(f"p{i}@example.org\n" for i in range(20)))
    body = tmp_path / "b.txt"
    body.write_text("x")
    results = tmp_path / "r.csv"
    env = {k: v for k, v in os.environ.items() if k != "BULK_MAILER_PASSWORD"}
    env.update(BULK_MAILER_HOME=str(tmp_path / "h"), BULK_MAILER_PASSWORD=PASSWORD)
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "send", *account(server, certs), "--from", "me@example.com",
         "--to-file", str(people), "--subject", "Hi", "--text-file", str(body), "--delay-ms", "400",
         "--results", str(results)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 20
    while not server.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "internal error" not in err and "Done:" in err and "paused" in err and "bulk-mailer resume" in err
    rows = list(csv.DictReader(results.open(encoding="utf-8")))
    sent = [r for r in rows if r["status"] == "sent"]
    assert len(sent) == len(server.messages) >= 1
    # the journal's rows: the ones not sent yet are pending (resume sends them)
    assert len(rows) == 20 and all(r["status"] in ("sent", "pending") for r in rows)


def test_results_path_checked_before_sending(smtp_server, certs, campaign_files, tmp_path):
    server = smtp_server("starttls")
    proc = run_cli("send", *account(server, certs), "--from", "me@example.com",
                   "--to-file", str(campaign_files["people"]), "--subject", "Hi",
                   "--html-file", str(campaign_files["html"]), "--results", str(tmp_path),
                   env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert proc.returncode == 2
    assert "--results" in error_line(proc.stderr) and "folder" in error_line(proc.stderr)
    assert server.handler.commands == []


def test_only_uncertain_outcomes_do_not_claim_nothing_was_sent(smtp_server, certs, tmp_path):
    server = smtp_server("starttls")
    people = tmp_path / "p.txt"
    people.write_text("dropdata@example.org\n")
    body = tmp_path / "b.txt"
    body.write_text("x")
    proc = run_cli("send", *account(server, certs), "--from", "me@example.com", "--to-file", str(people),
                   "--subject", "Hi", "--text-file", str(body), "--timeout", "2",
                   env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert proc.returncode == 1, proc.stderr
    assert "uncertain" in proc.stderr


def test_login_required_stops_the_run(smtp_server, certs, campaign_files, tmp_path):
    server = smtp_server("starttls", auth_required=True)
    proc = run_cli("send", "--host", server.host, "--port", str(server.port), "--ca-file", certs.ca_file,
                   "--from", "me@example.com", "--to-file", str(campaign_files["people"]), "--subject", "Hi",
                   "--html-file", str(campaign_files["html"]), "--delay-ms", "0", home=tmp_path / "h")
    assert proc.returncode == 2, proc.stderr
    assert "requires login" in proc.stderr
    # Stopped at the first; nobody failed: the campaign can be resumed once login works.
    assert "0 sent, 0 failed, 3 not sent" in proc.stderr
    assert server.messages == []


def test_unwritable_home_is_a_warning_not_a_traceback(campaign_files, tmp_path):
    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("x")
    proc = run_cli("send", "--host", "localhost", "--from", "me@example.com",
                   "--to-file", str(campaign_files["people"]), "--subject", "Hi",
                   "--html-file", str(campaign_files["html"]), "--dry-run", home=blocker)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "cannot write the log file" in proc.stderr


def test_encoding_warning_is_shown(tmp_path):
    people = tmp_path / "p.csv"
    # UTF-8 with one stray Latin-1 byte on line 3
    people.write_bytes(b"email,name\na@example.org,J\xc3\xb6rg\nb@example.org,Ren\xe9\n")
    body = tmp_path / "b.txt"
    body.write_text("Hi {{ name }}")
    proc = run_cli("send", "--host", "localhost", "--from", "me@example.com", "--to-file", str(people),
                   "--subject", "Hi", "--text-file", str(body), "--dry-run", home=tmp_path / "h")
    assert proc.returncode == 0, proc.stderr
    assert "warning" in proc.stderr and "line 3" in proc.stderr


def test_debug_logs_show_the_conversation_but_no_secret(smtp_server, certs, campaign_files, tmp_path):
    import base64

    server = smtp_server("starttls")
    home = tmp_path / "h"
    common = ["--from", "me@example.com", "--to-file", str(campaign_files["people"]), "--subject", "Hi",
              "--html-file", str(campaign_files["html"]), "--delay-ms", "0"]
    bad = run_cli("--log-level", "DEBUG", "send", *account(server, certs), *common,
                  env={"BULK_MAILER_PASSWORD": "Wr0ng-Secret-9"}, home=home)
    good = run_cli("send", "--verbose", *account(server, certs), *common,
                   env={"BULK_MAILER_PASSWORD": PASSWORD}, home=home)
    assert bad.returncode == 2 and good.returncode == 1
    log_text = (home / "logs" / "bulk-mailer.log").read_text(encoding="utf-8")
    everything = log_text + bad.stderr + bad.stdout + good.stderr + good.stdout
    assert "RCPT reject550@example.org -> 550" in log_text  # the server's replies are logged
    assert "'status': 'sent'" in log_text and "debug:" in good.stderr  # events, and --verbose
    for secret in (PASSWORD, "Wr0ng-Secret-9"):
        forms = {
            secret,
            base64.b64encode(secret.encode()).decode(),
            base64.b64encode(f"\0{USER}\0{secret}".encode()).decode(),
        }
        for form in forms:
            assert form not in everything, form


def test_verify_detect_suggests_settings_for_an_address(tmp_path):
    proc = run_cli("verify", "--detect", "Me <me@gmail.com>", "--json", home=tmp_path / "h")
    assert proc.returncode == 0, proc.stderr
    (first, *_) = json.loads(proc.stdout)
    assert (first["host"], first["port"], first["security"], first["provider"]) == ("smtp.gmail.com", 587, "starttls", "gmail")
    assert "Gmail" in first["reason"]
    assert "--provider gmail" in proc.stderr and "1. smtp.gmail.com port 587" in proc.stderr
    bad = run_cli("verify", "--detect", "not an address", home=tmp_path / "h")
    assert bad.returncode == 2 and "from:" in error_line(bad.stderr)


def test_suppression_list_is_kept_and_applied(smtp_server, certs, campaign_files, tmp_path):
    server = smtp_server("starttls")
    never = tmp_path / "never.txt"
    never.write_text("# unsubscribed\nBOB@example.org\nnot an address\n")
    common = [*account(server, certs), "--from", "me@example.com", "--to-file", str(campaign_files["people"]),
              "--subject", "Hi", "--html-file", str(campaign_files["html"]), "--delay-ms", "0"]
    env = {"BULK_MAILER_PASSWORD": PASSWORD}
    first = run_cli("send", *common, "--suppress", str(never), "--results", str(tmp_path / "r1.csv"),
                    env=env, home=tmp_path / "h")
    assert "1 added" in first.stderr and "never.txt line 3" in first.stderr
    assert "suppressed bob@example.org" in first.stderr
    rows = {r["email"]: r for r in csv.DictReader((tmp_path / "r1.csv").open(encoding="utf-8"))}
    assert rows["bob@example.org"]["status"] == "skipped" and "suppressed" in rows["bob@example.org"]["error"]
    # a later campaign without --suppress still skips bob: the list is kept
    second = run_cli("send", *common, env=env, home=tmp_path / "h")
    assert "suppressed bob@example.org" in second.stderr
    assert all("bob@example.org" not in m.rcpt_tos for m in server.messages)
    assert sum(m.rcpt_tos == ["ann@example.org"] for m in server.messages) == 2


def test_preview_prints_one_rendered_message(campaign_files, tmp_path):
    proc = run_cli("send", "--host", "localhost", "--from", "Me <me@example.com>",
                   "--to-file", str(campaign_files["people"]), "--subject", "Hello {{ name }}",
                   "--html-file", str(campaign_files["html"]), "--preview", "2", home=tmp_path / "h")
    assert proc.returncode == 0, proc.stderr
    from email import message_from_string
    from email.policy import default

    msg = message_from_string(proc.stdout, policy=default)
    assert msg["Subject"] == "Hello Bob <3" and "bob@example.org" in msg["To"]
    assert "Bob &lt;3" in msg.get_body(("html",)).get_content()
    out_of_range = run_cli("send", "--host", "localhost", "--from", "me@example.com",
                           "--to-file", str(campaign_files["people"]), "--subject", "x",
                           "--html-file", str(campaign_files["html"]), "--preview", "9", home=tmp_path / "h")
    assert out_of_range.returncode == 2 and "from 1 to 3" in error_line(out_of_range.stderr)


def test_attachments_and_unsubscribe_end_to_end(smtp_server, certs, tmp_path):
    server = smtp_server("starttls")
    folder = tmp_path / "invoices"
    folder.mkdir()
    (folder / "ann.pdf").write_bytes(b"%PDF-1.4 ann")
    (tmp_path / "secret.txt").write_text("outside the folder")
    shared = tmp_path / "Programme été.pdf"
    shared.write_bytes(b"%PDF-1.4 shared")
    people = tmp_path / "p.csv"
    people.write_text("email,name,invoice\nann@example.org,Ann,ann.pdf\nbob@example.org,Bob,../secret.txt\n"
                      "cy@example.org,Cy,missing.pdf\n", encoding="utf-8")
    body = tmp_path / "b.html"
    body.write_text("<p>Hi {{ name }}</p>")
    common = [*account(server, certs), "--from", "me@example.com", "--to-file", str(people), "--subject", "Invoice",
              "--html-file", str(body), "--delay-ms", "0", "--attach", str(shared),
              "--attach-column", "invoice", "--attach-dir", str(folder),
              "--unsubscribe", "https://example.com/u?e={{ email }}", "--unsubscribe", "mailto:unsub@example.com"]
    refused = run_cli("send", *common, env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert refused.returncode == 2 and server.messages == []
    assert "line 3" in refused.stderr and "line 4" in refused.stderr  # outside the folder; missing
    proc = run_cli("send", *common, "--skip-bad-rows", env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert proc.returncode == 1, proc.stderr
    (got,) = server.messages
    msg = got.message
    files = {part.get_filename(): part.get_content() for part in msg.iter_attachments()}
    assert files == {"Programme été.pdf": b"%PDF-1.4 shared", "ann.pdf": b"%PDF-1.4 ann"}
    assert msg["List-Unsubscribe"] == "<https://example.com/u?e=ann%40example.org>, <mailto:unsub@example.com>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "outside the folder" not in got.data.decode("utf-8", "replace")


def test_several_addresses_on_one_line_are_each_accounted_for(smtp_server, certs, tmp_path):
    server = smtp_server("starttls")
    people = tmp_path / "line.txt"
    people.write_text('"=?utf-8?q?x?=" <a@example.org>, b@example.org, c@example.org\nd@example.org\n')
    body = tmp_path / "b.txt"
    body.write_text("Hi")
    results = tmp_path / "r.csv"
    proc = run_cli("send", *account(server, certs), "--from", "me@example.com", "--to-file", str(people),
                   "--subject", "Hi", "--text-file", str(body), "--delay-ms", "0", "--skip-bad-rows",
                   "--results", str(results), env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert proc.returncode == 1, proc.stderr
    assert sorted(m.rcpt_tos[0] for m in server.messages) == ["b@example.org", "c@example.org", "d@example.org"]
    rows = {r["email"]: r for r in csv.DictReader(results.open(encoding="utf-8"))}
    assert set(rows) == {"a@example.org", "b@example.org", "c@example.org", "d@example.org"}
    assert rows["a@example.org"]["status"] == "skipped" and "=?utf-8?q?x?=" in rows["a@example.org"]["error"]


def test_trial_runs_do_not_change_the_kept_suppression_list(campaign_files, tmp_path):
    never = tmp_path / "never.txt"
    never.write_text("ann@example.org\n")
    proc = run_cli("send", "--host", "localhost", "--from", "me@example.com", "--to-file", str(campaign_files["people"]),
                   "--subject", "Hi", "--html-file", str(campaign_files["html"]), "--dry-run",
                   "--suppress", str(never), home=tmp_path / "h")
    assert proc.returncode == 0 and "for this trial run only" in proc.stderr
    assert "suppressed ann@example.org" in proc.stderr
    kept = tmp_path / "h" / "data" / "suppression.txt"
    assert not kept.exists() or "ann@example.org" not in kept.read_text()


def test_only_suppressed_left_out_exits_0(smtp_server, certs, tmp_path):
    server = smtp_server("starttls")
    people = tmp_path / "p.txt"
    people.write_text("a@example.org\nb@example.org\n")
    never = tmp_path / "never.txt"
    never.write_text("b@example.org\n")
    body = tmp_path / "b.txt"
    body.write_text("x")
    proc = run_cli("send", *account(server, certs), "--from", "me@example.com", "--to-file", str(people),
                   "--subject", "Hi", "--text-file", str(body), "--delay-ms", "0", "--suppress", str(never),
                   env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert proc.returncode == 0, proc.stderr
    assert [m.rcpt_tos for m in server.messages] == [["a@example.org"]]


def test_daily_limit_counts_earlier_campaigns_of_the_account(smtp_server, certs, tmp_path):
    server = smtp_server("starttls")
    people = tmp_path / "p.txt"
    people.write_text("a@example.org\nb@example.org\n")
    body = tmp_path / "b.txt"
    body.write_text("x")
    common = ["send", *account(server, certs), "--from", "me@example.com", "--to-file", str(people),
              "--subject", "Hi", "--text-file", str(body), "--delay-ms", "0", "--max-per-day", "3"]
    first = run_cli(*common, env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert first.returncode == 0, first.stderr
    second = run_cli(*common, env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert second.returncode == 1, second.stderr
    assert "can continue after" in second.stderr and "1 sent" in second.stderr
    assert len(server.messages) == 3


def test_a_servers_quota_survives_a_restart(smtp_server, certs, tmp_path):
    server = smtp_server("starttls")
    people = tmp_path / "p.txt"
    people.write_text("a@example.org\nquotaonce@example.org\nc@example.org\n")
    body = tmp_path / "b.txt"
    body.write_text("x")
    env = {"BULK_MAILER_PASSWORD": PASSWORD}
    home = tmp_path / "h"
    first = run_cli("send", *account(server, certs), "--from", "me@example.com", "--to-file", str(people),
                    "--subject", "Hi", "--text-file", str(body), "--delay-ms", "0", env=env, home=home)
    assert first.returncode == 1, first.stderr
    campaign = first.stderr.split()[1]
    assert "can continue after" in first.stderr and "bulk-mailer resume " + campaign in first.stderr
    listing = run_cli("campaigns", "--json", home=home)
    (info,) = json.loads(listing.stdout)
    assert info["state"] == "paused" and info["counts"] == {"sent": 1, "deferred": 1, "pending": 1}
    lifts = dt.datetime.fromisoformat(info["resume_after"]) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=23) < lifts <= dt.timedelta(hours=24)

    # A new process (a restart) remembers the quota: it refuses to hammer the server before then.
    connections = server.handler.commands.count("EHLO")
    early = run_cli("resume", campaign, env=env, home=home)
    assert early.returncode == 2 and "can continue after" in early.stderr and "--now" in early.stderr
    assert server.handler.commands.count("EHLO") == connections and len(server.messages) == 1

    later = run_cli("resume", campaign, "--now", "--delay-ms", "0", env=env, home=home)
    assert later.returncode == 0, later.stderr
    assert sorted(m.rcpt_tos[0] for m in server.messages) == ["a@example.org", "c@example.org",
                                                              "quotaonce@example.org"]
    (info,) = json.loads(run_cli("campaigns", "--json", home=home).stdout)
    assert info["state"] == "finished" and info["resume_after"] is None and info["counts"] == {"sent": 3}


def test_retry_settings_from_the_command_line_and_kept_for_resume(smtp_server, certs, tmp_path):
    server = smtp_server("starttls")
    people = tmp_path / "p.txt"
    people.write_text("flaky9@example.org\na@example.org\n")
    body = tmp_path / "b.txt"
    body.write_text("x")
    env = {"BULK_MAILER_PASSWORD": PASSWORD}
    common = ["send", *account(server, certs), "--from", "me@example.com", "--to-file", str(people),
              "--subject", "Hi", "--text-file", str(body), "--delay-ms", "0"]
    bad = run_cli(*common, "--retry-base", "10", "--retry-cap", "5", env=env, home=tmp_path / "h")
    assert bad.returncode == 2 and "--retry-cap must be at least --retry-base" in bad.stderr
    assert server.messages == []
    proc = run_cli(*common, "--retry-base", "0.2", "--retry-cap", "0.5", "--retry-attempts", "2",
                   "--max-failures-in-a-row", "3", env=env, home=tmp_path / "h")
    assert proc.returncode == 1, proc.stderr
    assert "gave up after 2 attempts" in proc.stderr
    assert [m.rcpt_tos for m in server.messages] == [["a@example.org"]]
    refusals = [c for c in server.handler.commands if c == "RCPT flaky9@example.org"]
    assert len(refusals) == 2
    campaign = proc.stderr.split()[1]
    from backend.journal import Journal
    os.environ["BULK_MAILER_HOME"] = str(tmp_path / "h")
    try:
        spec = Journal().spec(campaign)
    finally:
        del os.environ["BULK_MAILER_HOME"]
    assert spec["retry"] == {"base_s": 0.2, "cap_s": 0.5, "max_attempts": 2, "max_age_s": 86400.0,
                             "max_failures_in_a_row": 3}


def test_failures_in_a_row_threshold_is_the_users(smtp_server, certs, tmp_path):
    server = smtp_server("starttls")
    people = tmp_path / "p.txt"
    people.write_text("reject550@example.org\nreject550@example.net\nreject550@example.com\nz@example.org\n")
    body = tmp_path / "b.txt"
    body.write_text("x")
    proc = run_cli("send", *account(server, certs), "--from", "me@example.com", "--to-file", str(people),
                   "--subject", "Hi", "--text-file", str(body), "--delay-ms", "0", "--max-failures-in-a-row", "2",
                   env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert proc.returncode == 2 and "2 messages in a row failed" in proc.stderr  # nothing sent
    assert server.messages == []


def test_the_next_send_announces_an_interrupted_campaign(smtp_server, certs, tmp_path, monkeypatch):
    import sqlite3

    from backend.journal import Journal
    from backend.recipients import Recipient

    monkeypatch.setenv("BULK_MAILER_HOME", str(tmp_path / "h"))
    journal = Journal()
    journal.create("20260101-000000-dead", account="x", spec={},
                   recipients=[Recipient("a@example.org", {}, 2), Recipient("b@example.org", {}, 3)])
    journal.mark_sending("20260101-000000-dead", 0)
    journal.close()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with sqlite3.connect(tmp_path / "h" / "data" / "journal.sqlite3") as db:  # its process is gone
        db.execute("UPDATE campaigns SET pid=?", (int(gone.stdout),))
    server = smtp_server("starttls")
    people = tmp_path / "p.txt"
    people.write_text("c@example.org\n")
    body = tmp_path / "b.txt"
    body.write_text("x")
    proc = run_cli("send", *account(server, certs), "--from", "me@example.com", "--to-file", str(people),
                   "--subject", "Hi", "--text-file", str(body), "--delay-ms", "0",
                   env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert proc.returncode == 0, proc.stderr
    assert ("Note: campaign 20260101-000000-dead was interrupted (1 not sent yet, 1 uncertain); continue it "
            "with: bulk-mailer resume 20260101-000000-dead") in proc.stderr


@pytest.mark.parametrize(("flag", "value"), [("--max-per-second", "nan"), ("--max-per-minute", "-5"),
                                             ("--max-per-day", "many"), ("--retry-base", "inf")])
def test_limits_that_mean_nothing_are_refused(smtp_server, certs, tmp_path, flag, value):
    server = smtp_server("starttls")
    people = tmp_path / "p.txt"
    people.write_text("a@example.org\n")
    proc = run_cli("send", *account(server, certs), "--from", "me@example.com", "--to-file", str(people),
                   "--subject", "Hi", "--text-file", str(people), flag, value,
                   env={"BULK_MAILER_PASSWORD": PASSWORD}, home=tmp_path / "h")
    assert proc.returncode == 2 and flag in proc.stderr and value in proc.stderr
    assert "Traceback" not in proc.stderr and server.messages == []
    assert "Campaign " not in proc.stderr  # refused before any campaign was recorded


def test_skipping_the_last_uncertain_one_finishes_the_campaign(tmp_path, monkeypatch):
    import sqlite3

    from backend.campaign import ResultRow
    from backend.journal import Journal
    from backend.recipients import Recipient

    monkeypatch.setenv("BULK_MAILER_HOME", str(tmp_path / "h"))
    journal = Journal()
    journal.create("20260101-000000-left", account="x", spec={"message": {
        "subject": "s", "html": None, "text": "t", "from": "me@example.com"}},
        recipients=[Recipient("a@example.org", {}, 2), Recipient("b@example.org", {}, 3)])
    journal.record("20260101-000000-left", sending=0)
    journal.mark_outcome("20260101-000000-left", 0, ResultRow("a@example.org", "sent", None, 250, None, 1, "t", "<a>"))
    journal.record("20260101-000000-left", sending=1)
    journal.close()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with sqlite3.connect(tmp_path / "h" / "data" / "journal.sqlite3") as db:
        db.execute("UPDATE campaigns SET pid=?", (int(gone.stdout),))
    done = run_cli("resume", "20260101-000000-left", "--skip-uncertain", home=tmp_path / "h")
    assert done.returncode == 0 and "nobody is left to send to; it is marked finished" in done.stderr
    (info,) = json.loads(run_cli("campaigns", "--json", home=tmp_path / "h").stdout)
    assert info["state"] == "finished" and info["counts"] == {"sent": 1, "skipped": 1}
    people = tmp_path / "p.txt"
    people.write_text("c@example.org\n")
    later = run_cli("send", "--host", "127.0.0.1", "--port", "1", "--security", "none", "--from", "me@example.com",
                    "--to-file", str(people), "--subject", "s", "--text-file", str(people), "--dry-run",
                    home=tmp_path / "h")
    assert "was interrupted" not in later.stderr  # nothing left to nag about


def test_no_abbreviated_flags_and_username_is_user(tmp_path):
    # --password is not --password-stdin: a password never goes on the command line.
    proc = run_cli("verify", "--host", "localhost", "--user", "me@example.com", "--password", "secret",
                   home=tmp_path / "h")
    assert proc.returncode == 2 and "unrecognized arguments: --password secret" in proc.stderr
    assert proc.stderr.startswith("usage: bulk-mailer verify")  # the subcommand's own usage
    proc = run_cli("verify", "--host", "localhost", "--username", "me@example.com", home=tmp_path / "h")
    assert proc.returncode == 2 and "no password for 'me@example.com'" in proc.stderr
    proc = run_cli("send", "--to", "x", home=tmp_path / "h")
    assert proc.returncode == 2 and "--to" in proc.stderr and "usage: bulk-mailer send" in proc.stderr


def test_campaigns_and_export_of_the_latest(smtp_server, certs, campaign_files, tmp_path):
    server = smtp_server("starttls")
    home = tmp_path / "home"
    proc = run_cli("send", *account(server, certs), "--from", "me@example.com", "--to-file",
                   str(campaign_files["people"]), "--subject", "Hello {{ name }}", "--html-file",
                   str(campaign_files["html"]), "--delay-ms", "0", env={"BULK_MAILER_PASSWORD": PASSWORD}, home=home)
    assert proc.returncode in (0, 1), proc.stderr
    listed = run_cli("campaigns", home=home)
    header, line = listed.stdout.splitlines()[:2]
    assert header.split()[:4] == ["CAMPAIGN", "STATE", "CREATED", "SUBJECT"] and "Hello {{ name }}" in line
    created = line.split()[2] + " " + line.split()[3]
    assert dt.datetime.strptime(created, "%Y-%m-%d %H:%M")  # local time, to the minute
    latest = run_cli("campaigns", "latest", "--json", home=home)
    (only,) = json.loads(latest.stdout)
    to_stdout = run_cli("export", "latest", "-", home=home)
    assert to_stdout.returncode == 0 and not (home / "-").exists() and not Path("-").exists()
    to_file = run_cli("export", only["id"], str(tmp_path / "r.csv"), home=home)
    assert to_file.returncode == 0 and (tmp_path / "r.csv").read_text(encoding="utf-8") == to_stdout.stdout
    assert to_stdout.stdout.splitlines()[0].startswith("email,status,category")
