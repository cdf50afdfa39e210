"""Security properties end to end: secrets never written anywhere, secret files safe on disk,
TLS verified by default on every path, STARTTLS never skipped, no password in clear."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import threading
import urllib.parse
from pathlib import Path

import pytest

from backend import paths
from backend.credentials import CredentialsError, EncryptedFileStore
from backend.inbox import LocalInbox
from backend.settings import SmtpSettings
from bridge import Bridge
from tests import servers
from tests.conftest import offline_detect
from tests.test_bridge import finished, ok, wait_for
from tests.test_cli import account, run_cli

SWEEP_USER = "sweep@example.com"
SWEEP_PASSWORD = "Zq7!sweep-Distinctive-Pa55word-9f3e"  # noqa: S105 (a test credential)
OAUTH_TOKEN = "ya29.a0AfB_bySweepDistinctiveOAuthToken-4b2c9e7d1f0a"  # noqa: S105
PASSPHRASE = "a long sweep passphrase"


def secret_forms() -> dict[str, bytes]:
    """Every form the secrets could be written in: as they are, URL-encoded, and as they go
    over the wire (AUTH PLAIN's and AUTH LOGIN's base64, the OAuth token's XOAUTH2 string)."""
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    forms = {
        "password": SWEEP_PASSWORD,
        "password, URL-encoded": urllib.parse.quote(SWEEP_PASSWORD, safe=""),
        "AUTH PLAIN": b64(f"\0{SWEEP_USER}\0{SWEEP_PASSWORD}"),
        "AUTH PLAIN with authzid": b64(f"{SWEEP_USER}\0{SWEEP_USER}\0{SWEEP_PASSWORD}"),
        "AUTH LOGIN password": b64(SWEEP_PASSWORD),
        "OAuth token": OAUTH_TOKEN,
        "OAuth token, base64": b64(OAUTH_TOKEN),
        "XOAUTH2": b64(f"user={SWEEP_USER}\x01auth=Bearer {OAUTH_TOKEN}\x01\x01"),
    }
    return {name: form.encode() for name, form in forms.items()}


def find_secrets(blobs: dict[str, bytes]) -> list[tuple[str, str]]:
    return [(where, name) for where, data in blobs.items() for name, form in secret_forms().items()
            if form in data]


@pytest.fixture
def debug_log(isolated_home):
    """The app's own logging at DEBUG into its log file, as `--log-level DEBUG` sets it up."""
    from backend.cli import setup_logging

    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    setup_logging("DEBUG")
    yield paths.log_dir()
    for handler in root.handlers[len(before):]:
        handler.close()
        root.removeHandler(handler)
    root.setLevel(level)


def test_no_secret_in_any_log_export_journal_setting_or_event(
        debug_log, isolated_home, smtp_server, certs, tmp_path, monkeypatch):
    good = smtp_server("starttls")  # knows the sweep account
    stranger = smtp_server("starttls", accounts={})  # the same server software, refusing every login
    monkeypatch.setitem(servers.ACCOUNTS, SWEEP_USER, SWEEP_PASSWORD)
    outputs: dict[str, bytes] = {}

    # -- the window's path: the bridge, with the password saved encrypted ----------------------
    events: list[dict] = []
    inbox = LocalInbox()
    b = Bridge(inbox=inbox, deliver=events.extend, detector=offline_detect, store=EncryptedFileStore())
    b._pump.ready()
    answers: list[dict] = []
    try:
        acct = {"provider": "custom", "host": good.host, "port": good.port, "security": "starttls",
                "user": SWEEP_USER, "from_address": f"Sweep <{SWEEP_USER}>", "verify_certificates": False}
        answers.append(ok_answer(b.save_settings({
            "account": acct, "message": {"subject": "s", "body": "b"}, "remember_settings": True,
            "remember_password": True, "password": SWEEP_PASSWORD, "passphrase": PASSPHRASE})))
        b._app.store.save(f"oauth:gmail:{SWEEP_USER}", OAUTH_TOKEN, PASSPHRASE)  # an OAuth token, stored
        answers.append(ok_answer(b.import_recipients_text(
            {"text": "email,name\nann@example.org,Ann\nreject550@example.org,Rex\nbob@example.org,Bob\n"})))
        message = {"subject": "Hi {{ name }}", "body": "<p>Hello {{ name }}</p>", "format": "html"}
        # failing: the right password sent to a server that refuses it
        wrong = {**acct, "port": stranger.port}
        answers.append(b.test_connection({"account": wrong, "password": SWEEP_PASSWORD}))
        answers.append(b.start_campaign({"account": wrong, "password": SWEEP_PASSWORD, "message": message,
                                         "delay_ms": 0}))
        wait_for(lambda: finished(b))
        assert ok(b.campaign_state())["state"] == "failed"
        # succeeding (one recipient refused): the password comes from the encrypted store
        answers.append(ok_answer(b.test_connection({"account": acct})))
        answers.append(ok_answer(b.start_campaign({"account": acct, "message": message, "delay_ms": 0})))
        wait_for(lambda: finished(b))
        b._pump.flush()
        assert ok(b.campaign_state())["counts"] == {"sent": 2, "failed": 1}
        export = ok(b.export_results())
        (tmp_path / "window-export.csv").write_text(export["csv"])
        answers += [b.campaign_history(), b.load_settings(), b.app_info()]
        assert len(good.messages) == 2 and stranger.messages == []

        # -- the command line's path, at DEBUG with --verbose ------------------------------------
        common = ["--from", SWEEP_USER, "--to-file", str(write_people(tmp_path)), "--subject", "Hi",
                  "--html-file", str(write_body(tmp_path)), "--delay-ms", "0", "--progress", "jsonl"]
        cli_account = ["--user", SWEEP_USER, "--ca-file", certs.ca_file, "--security", "starttls",
                       "--host", good.host, "--timeout", "5"]
        env = {"BULK_MAILER_PASSWORD": SWEEP_PASSWORD}
        runs = {
            "cli failing": run_cli("--log-level", "DEBUG", "--verbose", "send", *cli_account, "--port",
                                   str(stranger.port), *common, env=env, home=isolated_home),
            "cli succeeding": run_cli("--log-level", "DEBUG", "--verbose", "send", *cli_account, "--port",
                                      str(good.port), *common, "--results", str(tmp_path / "cli-results.csv"),
                                      env=env, home=isolated_home),
            "cli verify": run_cli("--log-level", "DEBUG", "verify", *cli_account, "--port", str(good.port),
                                  "--json", env=env, home=isolated_home),
        }
        assert [r.returncode for r in runs.values()] == [2, 1, 0], {k: r.stderr[-800:] for k, r in runs.items()}
        cid = json.loads(run_cli("campaigns", "--json", home=isolated_home).stdout)[0]["id"]
        runs["cli export"] = run_cli("export", cid, str(tmp_path / "cli-export.csv"), home=isolated_home)
        assert runs["cli export"].returncode == 0
        for name, proc in runs.items():
            outputs[f"{name} stdout"] = proc.stdout.encode()
            outputs[f"{name} stderr"] = proc.stderr.encode()
        assert len(stranger.handler.auth_attempts) >= 3  # the password really was tried there

        # -- everything written, read raw, while the journal is still open -----------------------
        files = {str(p.relative_to(tmp_path)): p.read_bytes()
                 for p in tmp_path.rglob("*") if p.is_file() and "certs" not in p.parts}
        data = paths.data_dir()
        assert (data / "journal.sqlite3-wal").exists(), "the write-ahead log must be part of the search"
        assert b"ann@example.org" in files[str((data / "journal.sqlite3-wal").relative_to(tmp_path))] + \
            files[str((data / "journal.sqlite3").relative_to(tmp_path))]
        log_text = (debug_log / "bulk-mailer.log").read_text()
        assert "DEBUG" in log_text and "RCPT reject550@example.org -> 550" in log_text  # debug level was on
        for expected in ("config/settings.json", "data/secrets.enc", "window-export.csv", "cli-results.csv",
                         "cli-export.csv", "logs/bulk-mailer.log"):
            assert any(name.endswith(expected) for name in files), expected
        captured = {
            **files, **outputs,
            "events": json.dumps(events).encode(),
            "bridge answers": json.dumps(answers).encode(),
        }
        assert find_secrets(captured) == []
        # the search can find them: the server was told the password, and the store keeps the token
        assert b._app.store.load(f"oauth:gmail:{SWEEP_USER}", PASSPHRASE) == OAUTH_TOKEN
        assert find_secrets({"probe": f"x{SWEEP_PASSWORD}y".encode()}) == [("probe", "password")]
        # what holds recipients or secrets is for this user only
        for path in (data / "secrets.enc", data / "journal.sqlite3", data / "journal.sqlite3-wal",
                     paths.config_dir() / "settings.json"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        for folder in (paths.config_dir(), paths.data_dir(), paths.log_dir()):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    finally:
        b._shutdown()


def ok_answer(answer: dict) -> dict:
    assert answer["ok"], answer
    return answer


def write_people(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    path.write_text("email,name\nann@example.org,Ann\nreject550@example.org,Rex\n")
    return path


def write_body(tmp_path: Path) -> Path:
    path = tmp_path / "body.html"
    path.write_text("<p>Hello {{ name }}</p>")
    return path


# -- the encrypted password file ---------------------------------------------------------------


def test_secret_file_is_0600_even_with_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        store = EncryptedFileStore(tmp_path / "deep" / "secrets.enc")
        store.save("k", "v", PASSPHRASE)
        store.save("k2", "v2", PASSPHRASE)
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_secret_file_is_replaced_whole_never_rewritten_in_place(tmp_path):
    store = EncryptedFileStore(tmp_path / "secrets.enc")
    store.save("a", "first", PASSPHRASE)
    inode = store.path.stat().st_ino
    store.save("b", "second", PASSPHRASE)
    assert store.path.stat().st_ino != inode  # a new file took the old one's name
    # no temporary file left; the lock file is empty
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secrets.enc", "secrets.enc.lock"]
    assert (tmp_path / "secrets.enc.lock").stat().st_size == 0


def test_a_crash_while_saving_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    store = EncryptedFileStore(tmp_path / "secrets.enc")
    store.save("a", "first", PASSPHRASE)
    before = store.path.read_bytes()

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(CredentialsError) as info:
        store.save("b", "second", PASSPHRASE)
    assert "cannot be written" in str(info.value) and "unchanged" in str(info.value)
    monkeypatch.undo()
    assert store.path.read_bytes() == before
    assert store.load("a", PASSPHRASE) == "first" and store.load("b", PASSPHRASE) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secrets.enc", "secrets.enc.lock"]


def test_readers_never_see_half_a_secret_file(tmp_path, monkeypatch):
    import backend.credentials as credentials

    monkeypatch.setattr(credentials, "SCRYPT_N", 2**10)  # many saves in little time
    store = EncryptedFileStore(tmp_path / "secrets.enc")
    store.save("k0", "v" * 5000, PASSPHRASE)
    stop = threading.Event()
    seen: list[str] = []

    def read() -> None:
        while not stop.is_set():
            blob = json.loads(store.path.read_bytes())  # raises on a partial file
            seen.append(blob["accounts"][-1])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(1, 60):
            store.save(f"k{i:02d}", "v" * 5000, PASSPHRASE)
    finally:
        stop.set()
        reader.join()
    assert seen and store.load("k59", PASSPHRASE) == "v" * 5000


def _tamper(kind: str, blob: dict, other: dict) -> str:
    token = blob["token"]
    if kind == "flipped byte":
        middle = len(token) // 2
        blob["token"] = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1:]
    elif kind == "truncated":
        blob["token"] = token[:-20]
    elif kind == "other salt":
        blob["salt"] = other["salt"]
    elif kind == "token from another file":
        blob["token"] = other["token"]
    elif kind == "other version":
        blob["version"] = 99  # a future format this version cannot read
    elif kind == "not JSON":
        return "garbage"
    return json.dumps(blob)


@pytest.mark.parametrize(("kind", "words"), [
    ("flipped byte", "was changed"), ("truncated", "was changed"), ("other salt", "was changed"),
    ("token from another file", "was changed"), ("other version", "damaged"), ("not JSON", "damaged"),
])
def test_a_tampered_secret_file_is_refused_with_a_clear_error(tmp_path, kind, words):
    store = EncryptedFileStore(tmp_path / "secrets.enc")
    store.save(f"smtp:{SWEEP_USER}@h.example", SWEEP_PASSWORD, PASSPHRASE)
    other = EncryptedFileStore(tmp_path / "other.enc")
    other.save(f"smtp:{SWEEP_USER}@h.example", "attacker's choice", PASSPHRASE)
    blob, other_blob = json.loads(store.path.read_text()), json.loads(other.path.read_text())
    store.path.write_text(_tamper(kind, blob, other_blob))
    with pytest.raises(CredentialsError) as info:
        store.load(f"smtp:{SWEEP_USER}@h.example", PASSPHRASE)
    assert words in info.value.message and SWEEP_PASSWORD not in info.value.message
    # the window says the same, as a structured error, and sends nothing
    b = Bridge(inbox=LocalInbox(), store=store, detector=offline_detect)
    try:
        answer = b.test_connection({"account": {"provider": "custom", "host": "h.example", "user": SWEEP_USER},
                                    "passphrase": PASSPHRASE})
    finally:
        b._shutdown()
    assert answer["ok"] is False and words in answer["error"]["message"]
    assert answer["error"]["category"] == "invalid_settings"


# -- TLS: verified by default everywhere, STARTTLS never skipped, no password in clear ---------

BAD_CERTS = ["untrusted", "expired", "wrong_host"]


def test_verification_and_refusing_clear_passwords_are_the_defaults():
    settings = SmtpSettings(host="smtp.example.com", port=587)
    assert settings.verify_certificates is True and settings.allow_plaintext_auth is False
    b = Bridge(inbox=LocalInbox(), store=EncryptedFileStore(), detector=offline_detect)
    try:
        from backend.jsonapi import account_input  # what the window's calls read

        given = account_input(_params({"account": {"provider": "custom", "host": "smtp.example.com"}}))
        built, _ = b._app.smtp_settings(given, need_password=False)
    finally:
        b._shutdown()
    assert built.verify_certificates is True and built.allow_plaintext_auth is False
    from backend.cli import build_parser

    args = build_parser().parse_args(["verify", "--host", "smtp.example.com"])
    assert args.insecure_skip_verify is False and args.allow_plaintext_auth is False


def _params(raw: dict):
    from bridge import Params

    return Params(raw)


def no_secrets_sent(server) -> None:
    verbs = server.handler.verbs
    assert "AUTH" not in verbs and "MAIL" not in verbs and "RCPT" not in verbs and "DATA" not in verbs, verbs
    assert server.handler.auth_attempts == [] and server.messages == []


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
@pytest.mark.parametrize("which", BAD_CERTS)
def test_bad_certificates_stop_sending_and_verifying(smtp_server, certs, tmp_path, mode, which):
    server = smtp_server(mode, cert=getattr(certs, which))
    env = {"BULK_MAILER_PASSWORD": servers.PASSWORD}
    sent = run_cli("send", *account(server, certs), "--from", servers.USER, "--to-file", str(write_people(tmp_path)),
                   "--subject", "Hi", "--html-file", str(write_body(tmp_path)), "--delay-ms", "0",
                   env=env, home=tmp_path / "home")
    assert sent.returncode == 2 and "certificate_invalid" in sent.stderr, sent.stderr
    verified = run_cli("verify", *account(server, certs), env=env, home=tmp_path / "home")
    assert verified.returncode == 2 and "certificate_invalid" in verified.stderr
    b = Bridge(inbox=LocalInbox(), store=EncryptedFileStore(tmp_path / "s.enc"), detector=offline_detect)
    try:
        answer = b.test_connection({"account": {"provider": "custom", "host": server.host, "port": server.port,
                                                "security": mode, "user": servers.USER},
                                    "password": servers.PASSWORD})
    finally:
        b._shutdown()
    assert answer["error"]["category"] == "certificate_invalid"
    no_secrets_sent(server)


def test_starttls_is_never_skipped_on_any_path(smtp_server, certs, tmp_path):
    server = smtp_server("plain", auth_require_tls=False)  # offers AUTH, but no STARTTLS
    env = {"BULK_MAILER_PASSWORD": servers.PASSWORD}
    for command in ("send", "verify"):
        extra = (["--from", servers.USER, "--to-file", str(write_people(tmp_path)), "--subject", "Hi",
                  "--html-file", str(write_body(tmp_path))] if command == "send" else [])
        proc = run_cli(command, "--host", server.host, "--port", str(server.port), "--security", "starttls",
                       "--user", servers.USER, "--timeout", "5", *extra, env=env, home=tmp_path / "home")
        assert proc.returncode == 2 and "tls_handshake_failed" in proc.stderr and "STARTTLS" in proc.stderr, proc.stderr
    b = Bridge(inbox=LocalInbox(), store=EncryptedFileStore(tmp_path / "s.enc"), detector=offline_detect)
    try:
        answer = b.test_connection({"account": {"provider": "custom", "host": server.host, "port": server.port,
                                                "security": "starttls", "user": servers.USER},
                                    "password": servers.PASSWORD})
    finally:
        b._shutdown()
    assert answer["error"]["category"] == "tls_handshake_failed"
    assert "EHLO" in server.handler.verbs and "STARTTLS" not in server.handler.verbs
    no_secrets_sent(server)


def test_no_password_in_clear_without_the_explicit_opt_in(smtp_server, tmp_path):
    server = smtp_server("plain", auth_require_tls=False)  # would accept AUTH in clear
    env = {"BULK_MAILER_PASSWORD": servers.PASSWORD}
    plain = ["--host", server.host, "--port", str(server.port), "--security", "none", "--user", servers.USER,
             "--timeout", "5"]
    send = ["--from", servers.USER, "--to-file", str(write_people(tmp_path)), "--subject", "Hi",
            "--html-file", str(write_body(tmp_path)), "--delay-ms", "0"]
    for args in (["send", *plain, *send], ["verify", *plain]):
        proc = run_cli(*args, env=env, home=tmp_path / "home")
        assert proc.returncode == 2 and "plaintext_auth_refused" in proc.stderr, proc.stderr
    b = Bridge(inbox=LocalInbox(), store=EncryptedFileStore(tmp_path / "s.enc"), detector=offline_detect)
    try:
        acct = {"provider": "custom", "host": server.host, "port": server.port, "security": "none",
                "user": servers.USER}
        assert b.test_connection({"account": acct, "password": servers.PASSWORD})["error"]["category"] == \
            "plaintext_auth_refused"
        no_secrets_sent(server)
        # with the opt-in, and only then, the server sees AUTH
        ok(b.test_connection({"account": {**acct, "allow_plaintext_auth": True}, "password": servers.PASSWORD}))
    finally:
        b._shutdown()
    assert server.handler.verbs.count("AUTH") == 1 and server.handler.auth_attempts == [servers.USER]


def test_saves_from_many_threads_at_once_lose_nothing(tmp_path):
    import threading

    from backend.credentials import EncryptedFileStore

    store = EncryptedFileStore(tmp_path / "secrets.enc")
    store.save("first", "one", "a long passphrase")

    def save(n: int) -> None:
        EncryptedFileStore(tmp_path / "secrets.enc").save(f"user{n}", f"pw{n}", "a long passphrase")

    threads = [threading.Thread(target=save, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in range(6):
        assert store.load(f"user{n}", "a long passphrase") == f"pw{n}"
    assert store.load("first", "a long passphrase") == "one"
