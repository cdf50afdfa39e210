"""`bulk-mailer microsoft login/status/logout` and `send --channel microsoft` in a subprocess,
against the local fake of Microsoft (the test plays the browser with the address the CLI prints,
or enters the device code)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.fakemicrosoft import CLIENT_ID

PASSPHRASE = "a long passphrase"
PROGRAM = [sys.executable, "-m", "backend.cli"]


@pytest.fixture
def env(microsoft, certs, tmp_path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("BULK_MAILER_")}
    e.update(microsoft.environment())
    e.update({"BULK_MAILER_HOME": str(tmp_path / "home"), "REQUESTS_CA_BUNDLE": certs.ca_file,
              "BULK_MAILER_PASSPHRASE": PASSPHRASE, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    return e


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*PROGRAM, *args], capture_output=True, text=True, env=env, timeout=60,
                          stdin=subprocess.DEVNULL)


def login(env: dict[str, str], certs, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([*PROGRAM, "microsoft", "login", "--client-id", CLIENT_ID, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL)
    try:
        first = proc.stdout.readline().split()
        assert first and first[0].startswith("https://127.0.0.1:"), proc.stderr.read() if proc.poll() else first
        with requests.Session() as browser:
            if "--device-code" in extra:
                assert browser.get(first[0], params={"code": first[1]}, verify=certs.ca_file, timeout=10).ok
            else:
                consent = browser.get(first[0], verify=certs.ca_file, allow_redirects=False, timeout=10)
                assert consent.status_code == 302
                assert "Signed in" in browser.get(consent.headers["Location"], timeout=10).text
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_login_send_status_logout(microsoft, env, certs, tmp_path):
    done = login(env, certs, "--no-browser")
    assert done.returncode == 0, done.stderr
    assert f"Signed in as {microsoft.email}" in done.stderr and "--provider office365 --auth xoauth2" in done.stderr
    status = cli("microsoft", "status", "--json", env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["email"] == microsoft.email
    assert "10,000 recipients/day" in status.stderr
    (tmp_path / "to.csv").write_text("email,name\nann@example.org,Ann\nlimit429@example.org,Lim\n")
    (tmp_path / "body.txt").write_text("Hi {{ name }}")
    sent = cli("send", "--channel", "microsoft", "--to-file", str(tmp_path / "to.csv"), "--subject", "Hi {{ name }}",
               "--text-file", str(tmp_path / "body.txt"), "--from", "Sender Name", "--delay-ms", "0",
               "--retry-base", "0.2", env=env)
    assert sent.returncode == 0, sent.stderr
    assert "Microsoft Graph" in sent.stderr and len(microsoft.sent) == 2
    refused = cli("send", "--channel", "microsoft", "--host", "smtp.example.org", "--to-file", str(tmp_path / "to.csv"),
                  "--subject", "x", "--text-file", str(tmp_path / "body.txt"), env=env)
    assert refused.returncode == 2 and "--channel microsoft" in refused.stderr
    microsoft.always_403 = True
    (tmp_path / "one.csv").write_text("email,name\nbob@example.org,Bob\n")
    failed = cli("send", "--channel", "microsoft", "--to-file", str(tmp_path / "one.csv"), "--subject", "x",
                 "--text-file", str(tmp_path / "body.txt"), env=env)
    assert failed.returncode == 2 and "Mail.Send" in failed.stderr, failed.stderr
    out = cli("microsoft", "logout", env=env)
    assert out.returncode == 0 and "deleted here" in out.stderr
    assert cli("microsoft", "status", env=env).returncode == 2
    for path in Path(env["BULK_MAILER_HOME"]).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(t.encode() in data for t in microsoft.issued if len(t) > 20), path


def test_login_with_a_device_code(microsoft, env, certs):
    done = login(env, certs, "--device-code")
    assert done.returncode == 0, done.stderr
    assert "enter the code" in done.stderr and f"Signed in as {microsoft.email}" in done.stderr


def test_login_without_a_client_id_says_how_to_register(microsoft, env):
    done = cli("microsoft", "login", "--no-browser", env=env)
    assert done.returncode == 2 and "Entra admin center" in done.stderr and "http://localhost" in done.stderr
