"""`bulk-mailer gmail login/status/logout` and `send --channel gmail` in a subprocess, against
the local fake of Google (the test plays the browser with the address the CLI prints)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.fakegoogle import CLIENT_SECRET, client_json

PASSPHRASE = "a long passphrase"


@pytest.fixture
def env(google, certs, tmp_path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("BULK_MAILER_")}
    e.update(google.endpoints())
    e.update({"BULK_MAILER_HOME": str(tmp_path / "home"), "REQUESTS_CA_BUNDLE": certs.ca_file,
              "BULK_MAILER_PASSPHRASE": PASSPHRASE,
              # never the desktop's own keyring: the encrypted file under BULK_MAILER_HOME
              "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    return e


PROGRAM = [sys.executable, "-m", "backend.cli"]


def cli(*args: str, env: dict[str, str], timeout: float = 60, program: list[str] = PROGRAM) -> subprocess.CompletedProcess:
    return subprocess.run([*program, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def login(env: dict[str, str], certs, tmp_path: Path, *extra: str,
          program: list[str] = PROGRAM) -> tuple[subprocess.CompletedProcess, str]:
    """Run `gmail login --no-browser`, read the printed address and play the browser with it."""
    secrets_file = tmp_path / "client_secret.json"
    secrets_file.write_text(client_json())
    proc = subprocess.Popen([*program, "--verbose", "gmail", "login", "--client-secrets",
                             str(secrets_file), "--no-browser", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, stdin=subprocess.DEVNULL)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("https://127.0.0.1:"), (url, proc.stderr.read() if proc.poll() is not None else "")
        with requests.Session() as browser:
            consent = browser.get(url, verify=certs.ca_file, allow_redirects=False, timeout=10)
            assert consent.status_code == 302
            page = browser.get(consent.headers["Location"], timeout=10)  # the app's loopback listener
            assert "Signed in" in page.text
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, url + "\n" + out, err), url


def test_login_send_status_logout(google, env, certs, tmp_path):
    done, url = login(env, certs, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "redirect_uri=http%3A%2F%2F127.0.0.1%3A" in url and "code_challenge_method=S256" in url
    assert "Signed in as sender@gmail.com (Gmail)" in done.stderr and "500 recipients" in done.stderr

    status = cli("gmail", "status", "--json", env=env)
    assert status.returncode == 0 and "sender@gmail.com" in status.stderr
    assert json.loads(status.stdout)["email"] == "sender@gmail.com"

    people = tmp_path / "people.csv"
    people.write_text("email,name\nann@example.org,Ann\nprecondition400@example.org,Pat\nbob@example.org,Bob\n")
    body = tmp_path / "body.html"
    body.write_text("<p>Dear {{ name }}, the news.</p>")
    results = tmp_path / "results.csv"
    sent = cli("--verbose", "send", "--channel", "gmail", "--from", "The Sender", "--to-file", str(people),
               "--subject", "News for {{ name }}", "--html-file", str(body), "--delay-ms", "0",
               "--results", str(results), "--progress", "jsonl", env=env)
    assert sent.returncode == 1, sent.stderr  # one refused
    assert "through the Gmail API as sender@gmail.com" in sent.stderr
    events = [json.loads(line) for line in sent.stdout.splitlines()]
    assert [(e["recipient"], e["status"]) for e in events if e["status"] != "sending"] == [
        ("ann@example.org", "sent"), ("precondition400@example.org", "failed"), ("bob@example.org", "sent")]
    got = [m.message for m in google.sent]
    assert [m["To"].addresses[0].addr_spec for m in got] == ["ann@example.org", "bob@example.org"]
    assert [str(m["Subject"]) for m in got] == ["News for Ann", "News for Bob"]
    assert str(got[0]["From"]) == "The Sender <sender@gmail.com>"
    assert "Dear Bob, the news." in got[1].get_body(("html",)).get_content()
    rows = {r["email"]: r for r in csv.DictReader(results.open(encoding="utf-8"))}
    assert rows["precondition400@example.org"]["category"] == "message_rejected"
    assert rows["precondition400@example.org"]["smtp_code"] == "400"

    campaigns = json.loads(cli("campaigns", "--json", env=env).stdout)
    assert campaigns[0]["account"] == "sender@gmail.com (Gmail API)"

    out = cli("gmail", "logout", env=env)
    assert out.returncode == 0 and "revoked at Google" in out.stderr
    assert len(google.revoked) == 1
    assert cli("gmail", "status", env=env).returncode == 2

    # nothing secret in any output or in the log (written at DEBUG by --verbose)
    log_text = (tmp_path / "home" / "logs" / "bulk-mailer.log").read_text()
    everything = log_text + done.stdout + done.stderr + sent.stdout + sent.stderr + status.stdout + out.stderr
    for secret in [CLIENT_SECRET, *google.issued]:
        assert secret not in everything
    assert "DEBUG" in log_text  # the log was written at the most talkative level
    assert not any(CLIENT_SECRET.encode() in p.read_bytes() for p in (tmp_path / "home").rglob("*") if p.is_file())


def test_the_daily_limit_pauses_and_resume_continues_through_the_api(google, env, certs, tmp_path):
    assert login(env, certs, tmp_path)[0].returncode == 0
    people = tmp_path / "people.txt"
    people.write_text("a@example.org\nb@example.org\nc@example.org\n")
    body = tmp_path / "body.txt"
    body.write_text("Hello {{ email }}")
    google.daily_after = 1
    first = cli("send", "--channel", "gmail", "--to-file", str(people), "--subject", "Hi", "--text-file", str(body),
                "--delay-ms", "0", env=env)
    campaign = first.stderr.splitlines()[0].split()[1]
    assert "quota_exceeded" in first.stderr and f"bulk-mailer resume {campaign}" in first.stderr
    assert [m.to for m in google.sent] == ["a@example.org"]
    early = cli("resume", campaign, env=env)
    assert early.returncode == 2 and "can continue after" in early.stderr
    google.daily_after = None
    again = cli("resume", campaign, "--now", env=env)
    assert again.returncode == 0, again.stderr
    assert [m.to for m in google.sent] == ["a@example.org", "b@example.org", "c@example.org"]


def test_gmail_errors_on_the_command_line(google, env, certs, tmp_path):
    people = tmp_path / "p.txt"
    people.write_text("a@example.org\n")
    body = tmp_path / "b.txt"
    body.write_text("Hi")
    args = ("send", "--channel", "gmail", "--to-file", str(people), "--subject", "Hi", "--text-file", str(body))
    nobody = cli(*args, env=env)
    assert nobody.returncode == 2 and "[oauth_error]" in nobody.stderr and "gmail login" in nobody.stderr
    assert login(env, certs, tmp_path)[0].returncode == 0
    mixed = cli(*args, "--host", "smtp.example.com", "--user", "me@example.com", env=env)
    assert mixed.returncode == 2 and "--host, --user: SMTP settings do not go with --channel gmail" in mixed.stderr
    unverified = cli(*args, "--insecure-skip-verify", env=env)
    assert unverified.returncode == 2 and "--insecure-skip-verify: SMTP settings do not go" in unverified.stderr
    other = cli(*args, "--from", "someone@example.org", env=env)
    assert other.returncode == 2 and "sends as the signed-in account sender@gmail.com" in other.stderr
    locked = cli(*args, env={**env, "BULK_MAILER_PASSPHRASE": ""})
    assert locked.returncode == 2 and "BULK_MAILER_PASSPHRASE" in locked.stderr
    google.revoke_all()
    google.always_401 = True
    revoked = cli(*args, "--delay-ms", "0", env=env)
    assert revoked.returncode == 2 and "oauth_error" in revoked.stderr and "invalid_grant" in revoked.stderr
    assert google.sent == []
    bad = tmp_path / "web.json"
    bad.write_text(client_json(kind="web"))
    web = cli("gmail", "login", "--client-secrets", str(bad), "--no-browser", env=env)
    assert web.returncode == 2 and "[oauth_error]" in web.stderr and "Desktop app" in web.stderr


def test_smtp_with_the_google_sign_in(google, env, certs, tmp_path):
    from tests.servers import Server, XOAuth2Handler

    done, url = login(env, certs, tmp_path, "--smtp")
    assert done.returncode == 0, done.stderr
    assert "mail.google.com" in requests.utils.unquote(url) and "full mail access" in done.stderr
    server = Server("starttls", cert=certs.good, handler=XOAuth2Handler(accept=google.token_ok))
    try:
        account = ["--host", server.host, "--port", str(server.port), "--auth", "xoauth2", "--ca-file",
                   certs.ca_file, "--timeout", "5"]
        verify = cli("verify", *account, env=env)
        assert verify.returncode == 0, verify.stderr
        assert "logged in as sender@gmail.com" in verify.stderr
        people = tmp_path / "p.txt"
        people.write_text("x@example.org\n")
        body = tmp_path / "b.txt"
        body.write_text("Hi")
        sent = cli("send", *account, "--from", "sender@gmail.com", "--to-file", str(people), "--subject", "Hi",
                   "--text-file", str(body), env=env)
        assert sent.returncode == 0, sent.stderr
        assert [m.rcpt_tos for m in server.messages] == [["x@example.org"]]
        assert server.handler.xoauth2_logins == ["sender@gmail.com", "sender@gmail.com"]
    finally:
        server.stop()
    for secret in [CLIENT_SECRET, *google.issued]:
        assert secret not in verify.stderr + sent.stderr
