"""The copy in Sent over IMAP, against a real Dovecot on 127.0.0.1 (tests/imapserver.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.app import App
from backend.errors import MailerError
from backend.inputs import AccountInput, MessageInput, SendOptions
from backend.mailbox.imap import (
    ImapClient,
    ImapSettings,
    choose_sent,
    decode_name,
    encode_name,
    parse_list,
)
from backend.mailbox.sent import SentCopies
from tests.servers import PASSWORD, USER, RecordingHandler


def imap_settings(server, certs, **kw) -> ImapSettings:
    return ImapSettings(**{"host": server.host, "port": server.port_ssl, "security": "ssl", "user": USER,
                           "password": PASSWORD, "ca_file": certs.ca_file, "timeout": 10, **kw})


def people(tmp_path: Path, n: int) -> Path:
    f = tmp_path / "people.txt"
    f.write_text("".join(f"p{i}@example.org\n" for i in range(n)))
    return f


def account(smtp, imap, certs, **kw) -> AccountInput:
    return AccountInput(**{"host": smtp.host, "port": smtp.port, "security": "starttls", "user": USER,
                           "password": PASSWORD, "from_address": "me@example.com", "ca_file": certs.ca_file,
                           "timeout": 10, "imap_host": imap.host, "imap_port": imap.port_ssl, **kw})


def send_with_app(tmp_path, acc, n=3, sent_copy="auto"):
    app = App(journal_path=tmp_path / "j.sqlite3")
    app.import_recipients(("file", str(people(tmp_path, n))))
    draft, plan = app.prepare(acc, MessageInput(subject="Hi", text="Hello", delay_ms=0), SendOptions(sent_copy=sent_copy))
    run = app.start(draft, plan)
    outcome = run.wait()
    return app, run, outcome


# -- discovery ----------------------------------------------------------------------------------


def test_sent_found_by_special_use(imap_server, certs):
    server = imap_server(special_use=True, sent_name="Envoyés")  # an unusual name: only the flag finds it
    client = ImapClient(imap_settings(server, certs))
    client.open()
    try:
        assert client.find_sent() == "Envoyés"
    finally:
        client.close()


def test_sent_found_by_name_without_special_use(imap_server, certs):
    server = imap_server(special_use=False)  # "Sent Items", no \Sent flag
    client = ImapClient(imap_settings(server, certs, security="starttls", port=server.port_starttls))
    client.open()
    try:
        folders = client.folders()
        assert not any("\\sent" in flags for flags, _ in folders)
        assert client.find_sent() == "Sent Items"
    finally:
        client.close()


def test_folder_names_and_list_parsing():
    assert encode_name("Éléments envoyés") == "&AMk-l&AOk-ments envoy&AOk-s"
    assert decode_name("Envoy&AOk-s") == "Envoyés" and decode_name("A &- B") == "A & B"
    lines = [b'(\\HasNoChildren) "/" INBOX', b'(\\HasNoChildren) "." "Gesendete Elemente"',
             (b'(\\HasNoChildren) "/" {9}', b'Sent Mail'), b'(\\Noselect) "/" Sent']
    assert choose_sent(parse_list(lines)) == "Sent Mail"  # \Noselect is no folder; order of names
    assert choose_sent(parse_list([b'(\\Sent) "/" "Mine"', b'() "/" Sent'])) == "Mine"
    assert choose_sent(parse_list([b'() "/" INBOX'])) is None


# -- filing: exactly one copy per message -------------------------------------------------------


@pytest.mark.parametrize("pipelining", [False, True])  # True: messages sent and collected on the way
def test_app_send_files_exactly_one_copy_each_and_again_none(imap_server, smtp_server, certs, tmp_path, pipelining):
    imap, smtp = imap_server(special_use=True), smtp_server("starttls", handler=RecordingHandler(pipelining=pipelining))
    app, run, outcome = send_with_app(tmp_path, account(smtp, imap, certs), n=4)
    assert outcome.counts["sent"] == 4
    sent_ids = sorted(r.message_id for r in app.results(outcome.campaign))
    in_sent = imap.messages("Sent", certs.ca_file)
    assert sorted(imap.message_ids("Sent", certs.ca_file)) == sent_ids
    assert all(b"\\Seen" in flags for flags, _ in in_sent)
    assert run.sent_copy["filed"] == 4 and run.sent_copy["folder"] == "Sent" and run.sent_copy["error"] is None
    assert set(app.journal.copies(outcome.campaign)) == set(sent_ids)
    # Filing the same messages again (a second run, a resume) searches first: nothing is doubled.
    spool = tmp_path / "again"
    copies = SentCopies(imap_settings(imap, certs), spool)
    for _, raw in in_sent:
        copies.keep(raw)
    assert copies.start().finish()["already"] == 4
    assert sorted(imap.message_ids("Sent", certs.ca_file)) == sent_ids
    assert imap.messages("INBOX", certs.ca_file) == []


def test_copy_filed_without_special_use(imap_server, smtp_server, certs, tmp_path):
    imap, smtp = imap_server(special_use=False), smtp_server("starttls")
    acc = account(smtp, imap, certs, imap_port=imap.port_starttls, imap_security="starttls")
    app, run, outcome = send_with_app(tmp_path, acc, n=2)
    assert len(imap.message_ids("Sent Items", certs.ca_file)) == 2 and run.sent_copy["folder"] == "Sent Items"


def test_never_and_auto_for_providers_that_file_their_own(imap_server, smtp_server, certs, tmp_path):
    imap, smtp = imap_server(), smtp_server("starttls")
    _, run, outcome = send_with_app(tmp_path, account(smtp, imap, certs), n=2, sent_copy="never")
    assert outcome.counts["sent"] == 2 and run.sent_copy is None
    assert imap.message_ids("Sent", certs.ca_file) == []
    app = App(journal_path=tmp_path / "j2.sqlite3")
    for provider in ("gmail", "google-workspace", "office365", "outlook"):
        acc = AccountInput(provider=provider, user="me@example.com", password="x", from_address="me@example.com")
        settings, local = app.smtp_settings(acc)
        assert app.sent_copy_settings(acc, settings, local, "auto") is None
        assert app.sent_copy_settings(acc, settings, local, "always").host in ("imap.gmail.com",
                                                                                "outlook.office365.com")
    yahoo = AccountInput(provider="yahoo", user="me@yahoo.com", password="x", from_address="me@yahoo.com")
    on = app.sent_copy_settings(yahoo, *app.smtp_settings(yahoo), "auto")
    assert (on.host, on.port, on.security) == ("imap.mail.yahoo.com", 993, "ssl")
    local = AccountInput(provider="local-inbox", from_address="me@example.com")
    assert app.sent_copy_settings(local, *app.smtp_settings(local), "auto") is None
    app.shutdown()


# -- failures: a warning, never a failed or doubled send -----------------------------------------


def run_cli(*args: str, home: Path, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("BULK_MAILER_")}
    full.update(BULK_MAILER_HOME=str(home), BULK_MAILER_PASSWORD=PASSWORD, **(env or {}))
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], capture_output=True, text=True,
                          env=full, timeout=90, **kw)


def cli_args(smtp, imap, certs, tmp_path, n=3, *extra: str) -> list[str]:
    body = tmp_path / "b.txt"
    body.write_text("Hello")
    return ["send", "--host", smtp.host, "--port", str(smtp.port), "--security", "starttls", "--user", USER,
            "--ca-file", certs.ca_file, "--from", "me@example.com", "--to-file", str(people(tmp_path, n)),
            "--subject", "Hi", "--text-file", str(body), "--imap-host", imap.host, "--imap-port",
            str(imap.port_ssl), *extra]


def test_cli_send_files_one_copy_each(imap_server, smtp_server, certs, tmp_path):
    imap, smtp = imap_server(), smtp_server("starttls")
    proc = run_cli(*cli_args(smtp, imap, certs, tmp_path, 3, "--delay-ms", "0"), home=tmp_path / "h")
    assert proc.returncode == 0, proc.stderr
    assert "Copies in Sent (Sent): 3 filed" in proc.stderr
    ids = imap.message_ids("Sent", certs.ca_file)
    assert len(ids) == len(set(ids)) == 3
    assert sorted(ids) == sorted(m.message["Message-ID"] for m in smtp.messages)


def test_wrong_imap_password_is_a_warning_with_fix_steps_and_no_password(imap_server, smtp_server, certs, tmp_path):
    imap, smtp = imap_server(), smtp_server("starttls")
    wrong = "Wr0ng-imap-pass-42"
    proc = run_cli(*cli_args(smtp, imap, certs, tmp_path, 2, "--delay-ms", "0"), home=tmp_path / "h",
                   env={"BULK_MAILER_IMAP_PASSWORD": wrong})
    assert proc.returncode == 0, proc.stderr  # the messages were sent
    assert len(smtp.messages) == 2
    assert "[imap_auth_failed]" in proc.stderr and "1. " in proc.stderr and "app password" in proc.stderr
    assert "not filed yet" in proc.stderr
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "h").rglob("*.log"))
    for text in (proc.stderr, proc.stdout, logs):
        assert wrong not in text and PASSWORD not in text
    assert imap.message_ids("Sent", certs.ca_file) == []


def test_untrusted_imap_certificate_refused_by_default(imap_server, certs):
    imap = imap_server(cert=certs.untrusted)
    with pytest.raises(MailerError) as caught:
        ImapClient(imap_settings(imap, certs)).open()
    assert caught.value.category == "certificate_invalid" and "certificate" in caught.value.message
    insecure = ImapClient(imap_settings(imap, certs, ca_file=None, verify_certificates=False))
    insecure.open()  # only when asked
    insecure.close()


def test_plaintext_login_never_sent(imap_server, certs):
    """STARTTLS mode on the SSL port's neighbour: a server without STARTTLS is refused before LOGIN."""
    imap = imap_server()
    with pytest.raises(MailerError) as caught:
        ImapClient(imap_settings(imap, certs, security="ssl", port=imap.port_starttls)).open()
    assert caught.value.category in ("imap_tls_failed", "imap_connection_failed")


# -- a killed run, resumed: still exactly one copy each -----------------------------------------


def test_killed_and_resumed_campaign_files_each_copy_once(imap_server, smtp_server, certs, tmp_path):
    imap, smtp = imap_server(), smtp_server("starttls")
    home = tmp_path / "h"
    full = {k: v for k, v in os.environ.items() if not k.startswith("BULK_MAILER_")}
    full.update(BULK_MAILER_HOME=str(home), BULK_MAILER_PASSWORD=PASSWORD)
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli",
                             *cli_args(smtp, imap, certs, tmp_path, 8, "--delay-ms", "300")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full)
    deadline = time.monotonic() + 30
    while len(smtp.messages) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert 3 <= len(smtp.messages) < 8
    resumed = run_cli("resume", "latest", "--resend-uncertain", home=home)
    assert resumed.returncode == 0, resumed.stderr
    ids = imap.message_ids("Sent", certs.ca_file)
    assert len(ids) == len(set(ids))  # never twice
    sent_rows = {m.message["Message-ID"] for m in smtp.messages}
    assert set(ids) <= sent_rows
    # every message the journal says was sent has its copy (a kill between the SMTP reply and
    # its spooling can lose one copy: that message is then 'uncertain', resent with a new id)
    app = App(journal_path=home / "data" / "journal.sqlite3")
    cid = app.campaign_id("latest")
    recorded = {r.message_id for r in app.results(cid) if r.status == "sent"}
    assert len(recorded) == 8 and recorded <= set(ids)
    marked = set(app.journal.copies(cid))
    assert marked <= recorded and len(marked) >= 8 - 3


def test_window_checkbox_keeps_a_copy_or_not(imap_server, smtp_server, certs, tmp_path):
    """The window's "Keep a copy in Sent" (account.sent_copy) reaches the core through the bridge."""
    from backend.jsonapi import Params, send_options

    imap, smtp = imap_server(), smtp_server("starttls")
    for ticked, expected in ((False, None), (True, imap.port_ssl)):
        page = {"account": {"host": smtp.host, "port": smtp.port, "security": "starttls", "sent_copy": ticked}}
        options = send_options(Params(page))  # what the window's start_campaign reads
        app = App(journal_path=tmp_path / "j.sqlite3")
        settings, local = app.smtp_settings(account(smtp, imap, certs))
        found = app.sent_copy_settings(account(smtp, imap, certs), settings, local, options.sent_copy)
        assert (found.port if found else None) == expected
