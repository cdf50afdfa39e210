"""track for a Gmail API campaign, read through the Gmail API with the separate read-only sign-in
(gmail.readonly), against the local fake of Google (tests/fakegoogle.py).

A real campaign goes out through the fake's users.messages.send; messages of the corpus
(tests/bounces/) rewritten to its Message-IDs arrive in the fake's INBOX and SPAM; track, through
App and through the command line, must record them, read nothing twice, and never make a call
that changes the mailbox.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from backend import google_auth
from backend.app import App
from backend.credentials import EncryptedFileStore
from backend.errors import MailerError, OAuthError
from backend.inputs import AccountInput, MessageInput, SendOptions
from backend.mailbox.gmailapi import id_position
from tests.fakegoogle import CLIENT_SECRET, READ_SCOPE, SEND_SCOPE, client_json, play_browser
from tests.test_gmail_cli import cli, login
from tests.test_track import CORPUS, IN_JUNK, PLAN, corpus_address, rewritten

PASSPHRASE = "a long passphrase"
QUIET = "quiet@example.org"  # no message about them: stays sent


@pytest.fixture
def app(google, certs, tmp_path) -> App:
    return App(journal_path=tmp_path / "j.sqlite3", store=EncryptedFileStore(tmp_path / "s.enc"),
               open_browser=play_browser(certs.ca_file))


def sign_in(app: App, purpose: str) -> dict:
    app.google_sign_in(client_json().encode(), "the test's client", purpose, passphrase=PASSPHRASE)
    return app.wait_sign_in()


def send_campaign(app: App, google) -> tuple[str, dict[str, str]]:
    """A real Gmail API campaign to every corpus recipient; (its id, Message-ID of each)."""
    app.import_recipients(("text", "\n".join([*(corpus_address(n) for n in PLAN), QUIET])))
    outcome = app.start(*app.prepare(AccountInput(channel="gmail", from_address="The Sender"),
                                     MessageInput(subject="Hello", text="Hello there", delay_ms=0),
                                     SendOptions())).wait()
    assert outcome.counts == {"sent": len(PLAN) + 1}
    ids = {r.recipient.email: r.result.message_id for r in app.journal.rows(outcome.campaign)}
    assert sorted(ids.values()) == sorted(str(m.message["Message-ID"]) for m in google.sent)  # what Gmail got
    return outcome.campaign, ids


def fill(google, ids: dict[str, str]) -> None:
    google.put("INBOX", (CORPUS / "gmail-no-such-user.eml").read_bytes(), when=time.time() - 5 * 86400)  # too old
    for name in PLAN:
        google.put("SPAM" if name in IN_JUNK else "INBOX", rewritten(name, ids))
    google.put("INBOX", (CORPUS / "sendmail-user-unknown-rfc822.eml").read_bytes())  # about nobody of ours
    google.put("INBOX", (CORPUS / "unrelated-new-message.eml").read_bytes())


def test_track_reads_a_gmail_api_campaign_through_the_api_and_changes_nothing(app, google):
    google.page_size = 3  # several pages of messages.list
    sign_in(app, "api")
    cid, ids = send_campaign(app, google)

    # Not allowed yet: the error says both ways.
    with pytest.raises(MailerError) as implicit:
        app.track(cid)
    assert implicit.value.category == "invalid_settings"
    assert any("gmail login --read" in s for s in implicit.value.fix_steps())
    assert any("--provider gmail --user" in s and "app password" in s for s in implicit.value.fix_steps())
    with pytest.raises(OAuthError) as asked:
        app.track(cid, gmail_api=True)
    assert asked.value.category == "oauth_error" and "no Google sign-in for reading" in asked.value.message
    assert any("gmail login --read" in s for s in asked.value.fix_steps())
    assert google.reads == []

    # The sign-in for reading: a consent of its own, for gmail.readonly alone; the sending one stays.
    sending = app.google(PASSPHRASE).load().refresh_token
    assert sign_in(app, "read")["email"] == "sender@gmail.com"
    assert google.auth_requests[-1]["scope"].split() == ["openid", google_auth.SCOPE_EMAIL, READ_SCOPE]
    assert SEND_SCOPE not in google.auth_requests[-1]["scope"]
    assert app.google(PASSPHRASE).require("api").refresh_token == sending
    assert app.google(PASSPHRASE, reading=True).load().refresh_token != sending
    status = app.google_status()
    assert status["signed_in"] and status["read"] and status["read_email"] == "sender@gmail.com"
    with pytest.raises(OAuthError):  # the reading token cannot send
        app.google(PASSPHRASE, reading=True).require("api")

    fill(google, ids)
    sent_before = len(google.sent)
    outcome = app.track(cid)  # a Gmail API campaign, no mailbox given, the sign-in for reading exists

    assert outcome.mailbox == "sender@gmail.com (Gmail API)" and outcome.folders == ["INBOX", "SPAM"]
    assert outcome.read == len(PLAN) + 2  # not the message from before the campaign
    status_of = {r.email: r.status for r in app.results(cid)}
    for name, want in PLAN.items():
        assert status_of[corpus_address(name)] == want, name
    assert status_of[QUIET] == "sent"
    bounced = {corpus_address(n) for n, w in PLAN.items() if w == "bounced"}
    assert {b["email"] for b in outcome.bounced} == bounced
    assert {a for a, reason in app.suppression.all() if reason == "bounced"} == bounced
    assert outcome.summary().endswith("nothing changed in your mailbox")
    # Only list and get (raw) were called: SPAM with includeSpamTrash, each with q=after:<date>.
    lists = [r for r in google.reads if r["call"] == "list"]
    assert {r["labelIds"] for r in lists} == {"INBOX", "SPAM"} and len(lists) >= 4  # pages
    assert all(r["q"].startswith("after:") and r.get("includeSpamTrash") == ("true" if r["labelIds"] == "SPAM"
                                                                            else None) for r in lists)
    assert {r.get("format") for r in google.reads if r["call"] == "get"} == {"raw"}
    assert google.writes == [] and len(google.sent) == sent_before

    # A second run reads nothing it read before; a new message is read alone.
    again = app.track(cid)
    assert again.read == 0 and again.summary().startswith("0 bounced, 0 replied, 0 auto-replies, 0 messages read")
    google.put("INBOX", rewritten("ooo-en-auto-submitted.eml", {corpus_address("ooo-en-auto-submitted.eml"):
                                                                 "<none@example.com>"}))
    assert app.track(cid, gmail_api=True).read == 1
    # Asked to move the bounce notices: the reading sign-in cannot, and says so.
    late = corpus_address("postfix-delayed.eml")  # delayed before, now a bounce
    was = corpus_address("gmail-no-such-user.eml")
    google.put("INBOX", (CORPUS / "gmail-no-such-user.eml").read_text(encoding="utf-8").replace(was, late).replace(
        f"<orig-{was[1:3]}.bm@example.com>", ids[late]).encode())
    moved = app.track(cid, move_bounces=True)
    assert [b["email"] for b in moved.bounced] == [late] and moved.moved == 0
    assert "1 bounce notice in INBOX could not be moved" in moved.notes[0] and "can only read" in moved.notes[0]
    assert google.writes == []

    # With mailbox options, track reads over IMAP as before; with --gmail-api too, it is refused.
    with pytest.raises(MailerError, match="takes no mailbox options"):
        app.track(cid, AccountInput(provider="gmail", user="sender@gmail.com", password="x"), gmail_api=True)

    # Signing out removes both sign-ins; reading is no longer allowed.
    result = app.google_sign_out()
    assert result["revoked"] and result["read"]["revoked"] and len(google.revoked) == 2
    assert not app.google_status()["read"] and google_auth.saved_profile(reading=True) is None
    with pytest.raises(MailerError) as gone:
        app.track(cid)
    assert gone.value.category == "invalid_settings"


def test_ids_that_are_no_numbers_fall_back_to_arrival_times(app, google):
    google.id_style = "opaque"
    sign_in(app, "api")
    cid, ids = send_campaign(app, google)
    sign_in(app, "read")
    names = ["gmail-no-such-user.eml", "reply-threaded-en.eml"]
    for name in names:
        google.put("INBOX", rewritten(name, ids))
    assert id_position(google.mailbox[0].id) is None
    first = app.track(cid)
    assert first.read == 2 and {r.email: r.status for r in app.results(cid)}[corpus_address(names[0])] == "bounced"
    assert app.track(cid).read == 0
    google.put("SPAM", rewritten("ooo-de-x-autoreply.eml", ids))
    assert app.track(cid).read == 1
    assert google.writes == []
    google.revoke_all()  # the user removed the app's access: a 401, one renewal refused
    google.put("INBOX", rewritten("reply-unthreaded-re.eml", ids))
    with pytest.raises(OAuthError, match="invalid_grant") as revoked:
        app.track(cid)
    assert revoked.value.category == "oauth_error" and any("login --read" in s for s in revoked.value.fix_steps())


def test_the_sign_in_for_reading_must_be_the_sending_account_and_allow_reading(app, google):
    sign_in(app, "api")
    cid, _ = send_campaign(app, google)
    google.consent = "allow_without_read"
    with pytest.raises(OAuthError, match="view your email messages"):
        sign_in(app, "read")
    assert not app.google_status()["read"]
    google.consent, google.email = "allow", "someone.else@gmail.com"
    sign_in(app, "read")
    with pytest.raises(OAuthError, match="sent from sender@gmail.com") as other:
        app.track(cid)
    assert any("login --read" in s for s in other.value.fix_steps())
    assert google.reads == []


def test_gmail_login_read_and_track_on_the_command_line(google, certs, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULK_MAILER_")}
    env.update(google.endpoints())
    env.update({"BULK_MAILER_HOME": str(tmp_path / "home"), "REQUESTS_CA_BUNDLE": certs.ca_file,
                "BULK_MAILER_PASSPHRASE": PASSPHRASE, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    assert login(env, certs, tmp_path)[0].returncode == 0
    people = tmp_path / "people.txt"
    people.write_text("".join(corpus_address(n) + "\n" for n in PLAN))
    body = tmp_path / "b.txt"
    body.write_text("Hello there")
    sent = cli("send", "--channel", "gmail", "--to-file", str(people), "--subject", "Hello", "--text-file", str(body),
               "--delay-ms", "0", env=env)
    assert sent.returncode == 0, sent.stderr
    ids = {m.to: str(m.message["Message-ID"]) for m in google.sent}

    refused = cli("track", "latest", env=env)
    assert refused.returncode == 2 and "[invalid_settings]" in refused.stderr
    assert "gmail login --read" in refused.stderr and "--provider gmail --user" in refused.stderr
    assert "Reading bounces and replies through the Gmail API: not allowed" in cli("gmail", "status", env=env).stderr

    done, url = login(env, certs, tmp_path, "--read")
    assert done.returncode == 0, done.stderr
    assert "gmail.readonly" in url and "gmail.send" not in url
    assert "Signed in as sender@gmail.com for reading bounces and replies" in done.stderr
    status = cli("gmail", "status", "--json", env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["read"] is True
    assert "Reading bounces and replies through the Gmail API: allowed for sender@gmail.com" in status.stderr

    for name in PLAN:
        google.put("SPAM" if name in IN_JUNK else "INBOX", rewritten(name, ids))
    tracked = cli("track", "latest", "--json", env=env)
    assert tracked.returncode == 0, tracked.stderr
    data = json.loads(tracked.stdout)
    bounced = sum(w == "bounced" for w in PLAN.values())
    assert data["counts"]["bounced"] == bounced and data["counts"]["replied"] == 2 and data["read"] == len(PLAN)
    assert data["mailbox"] == "sender@gmail.com (Gmail API)" and data["mailbox_changed"] is False
    assert "read INBOX, SPAM of sender@gmail.com (Gmail API)" in tracked.stderr
    again = cli("track", "latest", "--gmail-api", env=env)
    assert again.returncode == 0 and "0 bounced, 0 replied, 0 auto-replies, 0 messages read" in again.stderr
    mixed = cli("track", "latest", "--gmail-api", "--provider", "gmail", "--user", "sender@gmail.com", env=env)
    assert mixed.returncode == 2 and "--gmail-api reads with the Google sign-in for reading" in mixed.stderr
    assert google.writes == []

    # logout --read removes only the reading sign-in; plain logout would remove both.
    out = cli("gmail", "logout", "--read", env=env)
    assert out.returncode == 0 and len(google.revoked) == 1
    assert cli("gmail", "status", env=env).returncode == 0  # still signed in to send
    gone = cli("track", "latest", "--gmail-api", env=env)
    assert gone.returncode == 2 and "[oauth_error]" in gone.stderr and "gmail login --read" in gone.stderr
    for secret in [CLIENT_SECRET, *google.issued]:
        assert secret not in done.stderr + tracked.stdout + tracked.stderr + status.stdout + out.stderr
