"""The Gmail API channel against a local fake of Google (tests/fakegoogle.py): sign-in with
PKCE through a loopback redirect, token refresh and revocation, campaigns sent through
users.messages.send, every error Google answers with, and SMTP with XOAUTH2."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from backend import google_auth, service
from backend.campaign import Control, RetryPolicy
from backend.credentials import EncryptedFileStore
from backend.errors import OAuthError
from backend.google_auth import GoogleAccount, OAuthClient, SignIn, TokenSource
from backend.journal import Journal
from backend.recipients import parse_text
from backend.settings import SmtpSettings
from backend.transports.base import Envelope
from backend.transports.gmail import GmailTransport
from backend.transports.smtp import SmtpTransport
from tests.fakegoogle import (
    CLIENT_ID,
    CLIENT_SECRET,
    MAIL_SCOPE,
    SEND_SCOPE,
    FakeGoogle,
    client_json,
    play_browser,
)
from tests.servers import Server, XOAuth2Handler

PASSPHRASE = "correct horse battery"


def sign_in(fake: FakeGoogle, certs, purpose: str = "api", *, client: str | None = None, timeout_s: float = 10,
            seen: list[str] | None = None):
    flow = SignIn(OAuthClient.parse(client or client_json()), purpose,
                  open_browser=play_browser(certs.ca_file, record=seen), timeout_s=timeout_s)
    flow.start()
    return flow.wait()


@pytest.fixture
def account(google, certs, tmp_path) -> GoogleAccount:
    acct = GoogleAccount(EncryptedFileStore(tmp_path / "secrets.enc"), PASSPHRASE)
    token, _ = sign_in(google, certs)
    acct.save(OAuthClient.parse(client_json()), token)
    return acct


def draft_for(text: str, account: GoogleAccount, subject: str = "Hello {{ name | default('you') }}",
              delay_ms: int = 0):
    imported = parse_text(text)
    return service.make_draft(imported, subject=subject, html="<p>Hi <b>{{ name | default('you') }}</b>, code {{ code | default('-') }}</p>",
                              text=None, from_address=service.gmail_sender("Sender Name", account.email),
                              delay_ms=delay_ms)


class FakeClock:
    """The loop's clock and sleep: waits are recorded and pass at once."""

    def __init__(self) -> None:
        self.t = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.t += seconds


# -- signing in -----------------------------------------------------------------------------


def test_sign_in_uses_pkce_a_loopback_redirect_and_only_the_send_scope(google, certs):
    seen: list[str] = []
    token, claims = sign_in(google, certs, seen=seen)
    assert token.email == "sender@gmail.com" and not token.workspace
    assert SEND_SCOPE in token.scopes and MAIL_SCOPE not in token.scopes
    assert token.refresh_token.startswith("1//") and token.access_token.startswith("ya29.")
    auth = google.auth_requests[0]
    assert auth["code_challenge_method"] == "S256" and len(auth["code_challenge"]) == 43
    assert auth["redirect_uri"].startswith("http://127.0.0.1:")
    assert set(auth["scope"].split()) == {"openid", "https://www.googleapis.com/auth/userinfo.email", SEND_SCOPE}
    assert auth["access_type"] == "offline" and auth["state"]
    assert google.token_requests == [{"grant_type": "authorization_code"}]
    assert claims["aud"] == CLIENT_ID
    assert seen and seen[0].startswith(google.base)


def test_the_fake_checks_the_pkce_verifier(google, certs):
    flow = SignIn(OAuthClient.parse(client_json()), "api", open_browser=play_browser(certs.ca_file))
    flow.start()
    flow._flow.code_verifier = "x" * 64  # not the one whose challenge went to Google
    with pytest.raises(OAuthError) as caught:
        flow.wait()
    assert caught.value.category == "oauth_error" and "invalid_grant" in caught.value.message


def test_a_workspace_account_is_recognised(google, certs):
    google.email, google.hd = "ann@company.example", "company.example"
    token, _ = sign_in(google, certs)
    assert token.workspace and token.email == "ann@company.example"


@pytest.mark.parametrize(("setup", "words", "fix_words"), [
    (lambda g: setattr(g, "consent", "deny"), "cancelled or access was denied", "click Allow"),
    (lambda g: setattr(g, "consent", "allow_without_send"), "not granted", "tick the box"),
    (lambda g: setattr(g, "token_error", "redirect_uri_mismatch"), "redirect_uri_mismatch", "Desktop app"),
])
def test_sign_in_failures_are_oauth_errors_with_the_fix(google, certs, setup, words, fix_words):
    setup(google)
    with pytest.raises(OAuthError) as caught:
        sign_in(google, certs)
    err = caught.value
    assert err.category == "oauth_error" and words in err.message
    assert any(fix_words in step for step in err.fix_steps())


def test_a_wrong_client_secret_is_invalid_client(google, certs):
    with pytest.raises(OAuthError) as caught:
        sign_in(google, certs, client=client_json(secret="not-the-secret"))
    assert "invalid_client" in caught.value.message
    assert any("Download the client's JSON again" in s for s in caught.value.fix_steps())
    assert "not-the-secret" not in json.dumps(caught.value.describe())


def test_an_unknown_client_gets_an_error_page_and_the_wait_ends_with_the_fix(google, certs):
    seen: list[str] = []
    started = time.monotonic()
    with pytest.raises(OAuthError) as caught:
        sign_in(google, certs, client=client_json(client_id="nobody.apps.googleusercontent.com"), timeout_s=1.5,
                seen=seen)
    assert time.monotonic() - started < 10
    assert any("invalid_client" in s for s in seen)  # what the user saw in the browser
    err = caught.value
    assert err.category == "oauth_error" and "no answer from the browser within" in err.message
    fix = " ".join(err.fix_steps())
    assert "redirect_uri_mismatch" in fix and "invalid_client" in fix and "Desktop app" in fix


def test_the_sign_in_waits_five_minutes_by_default_and_can_be_cancelled(google, certs):
    flow = SignIn(OAuthClient.parse(client_json()), "api", open_browser=None)
    assert flow.timeout_s == 300
    flow.start()
    import threading
    threading.Timer(0.3, flow.cancel).start()
    started = time.monotonic()
    with pytest.raises(OAuthError) as caught:
        flow.wait()
    assert time.monotonic() - started < 5 and "cancelled" in caught.value.message


def test_a_connection_that_dribbles_cannot_hold_up_a_cancel(google, certs):
    import socket
    import threading

    flow = SignIn(OAuthClient.parse(client_json()), "api", open_browser=None)
    flow.start()
    port = int(flow.redirect_uri.rsplit(":", 1)[1].strip("/"))
    stop = threading.Event()

    def dribble() -> None:  # another local program, one byte a second for half a minute
        with socket.create_connection(("127.0.0.1", port)) as s:
            for ch in b"GET /?state=forged&code=x HTTP/1.1\r\n":
                if stop.wait(1.0):
                    return
                s.send(bytes([ch]))

    threading.Thread(target=dribble, daemon=True).start()
    time.sleep(0.5)
    threading.Timer(0.5, flow.cancel).start()
    started = time.monotonic()
    with pytest.raises(OAuthError, match="cancelled"):
        flow.wait()
    waited = time.monotonic() - started
    stop.set()
    assert waited < 4  # the dribble goes on for half a minute: the cancel did not wait for it


def test_a_stray_request_to_the_loopback_listener_is_ignored(google, certs):
    import threading

    import requests
    flow = SignIn(OAuthClient.parse(client_json()), "api", open_browser=None, timeout_s=10)
    url = flow.start()
    answers: list[int] = []

    def browser() -> None:
        answers.append(requests.get(flow.redirect_uri + "favicon.ico", timeout=5).status_code)
        answers.append(requests.get(flow.redirect_uri + "?code=forged&state=wrong", timeout=5).status_code)
        play_browser(certs.ca_file)(url)

    threading.Thread(target=browser, daemon=True).start()
    token, _ = flow.wait()
    assert answers == [400, 400] and token.email == "sender@gmail.com"


@pytest.mark.parametrize(("doc", "words"), [
    (client_json(kind="web"), "Web application"),
    ("not json", "not JSON"),
    ('{"installed": {"client_id": "x"}}', "client_secret"),
])
def test_a_bad_client_file_is_refused_before_anything_starts(doc, words):
    with pytest.raises(OAuthError) as caught:
        OAuthClient.parse(doc, "'client.json'")
    assert words in caught.value.message and "'client.json'" in caught.value.message
    assert any("Desktop app" in s for s in caught.value.fix_steps())


def test_the_endpoints_default_to_googles(monkeypatch):
    for name in ("AUTH_URI", "TOKEN_URI", "REVOKE_URI", "API_BASE"):
        monkeypatch.delenv(f"BULK_MAILER_GOOGLE_{name}", raising=False)
    e = google_auth.Endpoints.from_env()
    assert (e.auth_uri, e.token_uri, e.revoke_uri, e.api_base) == (
        "https://accounts.google.com/o/oauth2/auth", "https://oauth2.googleapis.com/token",
        "https://oauth2.googleapis.com/revoke", "https://gmail.googleapis.com")


# -- the token: stored, refreshed, revoked --------------------------------------------------


def test_the_token_is_kept_encrypted_and_the_profile_holds_no_secret(account, google, tmp_path):
    token = account.load()
    raw = (tmp_path / "secrets.enc").read_bytes()
    assert token.refresh_token.encode() not in raw and CLIENT_SECRET.encode() not in raw
    profile = google_auth.profile_path().read_text()
    assert "sender@gmail.com" in profile and token.refresh_token not in profile and CLIENT_SECRET not in profile
    again = GoogleAccount(EncryptedFileStore(tmp_path / "secrets.enc"), PASSPHRASE)
    assert again.load().refresh_token == token.refresh_token
    with pytest.raises(Exception, match="passphrase"):
        GoogleAccount(EncryptedFileStore(tmp_path / "secrets.enc"), "wrong passphrase").load()


def test_an_expired_access_token_is_refreshed_on_open(account, google):
    token = account.load()
    token.expiry = "2000-01-01T00:00:00+00:00"
    old = token.access_token
    GmailTransport(account).open()
    assert {"grant_type": "refresh_token"} in google.token_requests
    assert account.load().access_token != old


def test_sign_out_revokes_at_google_and_deletes_here(account, google, tmp_path):
    refresh = account.load().refresh_token
    result = account.sign_out()
    assert result == {"email": "sender@gmail.com", "revoked": True, "problem": None}
    assert google.revoked == [refresh]
    store = EncryptedFileStore(tmp_path / "secrets.enc")
    assert not store.has(google_auth.KEY_TOKEN) and not store.has(google_auth.KEY_CLIENT)
    assert google_auth.saved_profile() is None
    with pytest.raises(OAuthError, match="nobody is signed in"):
        GoogleAccount(store, PASSPHRASE).load()


def test_a_revoked_sign_in_stops_the_campaign_with_oauth_error(account, google):
    google.revoke_all()
    account.load().expiry = "2000-01-01T00:00:00+00:00"
    draft = draft_for("a@example.org", account)
    outcome = service.send(draft, GmailTransport(account))
    assert not outcome.ok and outcome.error.category == "oauth_error"
    assert "invalid_grant" in outcome.error.message
    assert any("Sign in with Google again" in s for s in outcome.error.fix_steps())
    assert google.sent == []


# -- campaigns through the API ----------------------------------------------------------------


def test_a_campaign_goes_out_through_messages_send(account, google, tmp_path):
    draft = draft_for("email,name,code\nann@example.org,Ann,A1\nbob@example.org,Bob <3,B2\n"
                      "chloé@exämple.org,Chloé,C3\n", account)
    events: list[dict] = []
    journal = Journal()
    outcome = service.send(draft, GmailTransport(account), on_event=events.append, journal=journal,
                           spec=service.campaign_spec(draft, None, gmail=account.email),
                           account=f"{account.email} (Gmail API)")
    assert outcome.ok and outcome.counts == {"sent": 3}
    assert [(e["recipient"], e["status"]) for e in events if e["status"] != "sending"] == [
        ("ann@example.org", "sent"), ("bob@example.org", "sent"), ("chloé@exämple.org", "sent")]
    got = [m.message for m in google.sent]
    assert [m["To"].addresses[0].addr_spec for m in got][:2] == ["ann@example.org", "bob@example.org"]
    assert [str(m["Subject"]) for m in got] == ["Hello Ann", "Hello Bob <3", "Hello Chloé"]
    assert got[0]["From"].addresses[0].addr_spec == "sender@gmail.com"
    assert got[0]["From"].addresses[0].display_name == "Sender Name"
    assert "<b>Ann</b>" in got[0].get_body(("html",)).get_content()
    assert "Bob &lt;3" in got[1].get_body(("html",)).get_content()
    assert "Hi Ann, code A1" in " ".join(got[0].get_body(("plain",)).get_content().split())
    assert len({m["Message-ID"] for m in got}) == 3
    rows = {r.email: r for r in outcome.results}
    assert rows["ann@example.org"].smtp_code == 200 and rows["ann@example.org"].sent_at
    assert service.channel_of(journal.spec(draft.id)) == "gmail"
    assert journal.spec(draft.id)["gmail"] == {"email": "sender@gmail.com"}
    assert journal.get(draft.id).state == "finished"


def test_every_gmail_error_gets_its_status_and_uncertain_ones_are_not_resent(account, google):
    google.slow_s = 2.5
    addresses = ["ok1@example.org", "limit429@example.org", "rate403@example.org", "precondition400@example.org",
                 "badrcpt400@example.org", "boom500@example.org", "slow@example.org", "ok2@example.org"]
    draft = draft_for("\n".join(addresses), account)
    events: list[dict] = []
    fake = FakeClock()
    at: dict[tuple[str, str], float] = {}

    def on_event(e: dict) -> None:
        events.append(e)
        at[(e["recipient"].split("@")[0], e["status"])] = fake.t

    outcome = service.send(draft, GmailTransport(account, timeout=1.0), on_event=on_event, sleep=fake.sleep,
                           clock=fake.clock, retry=RetryPolicy(base_s=1.0, jitter=0.0))
    rows = {r.email.split("@")[0]: r for r in outcome.results}
    assert {k: r.status for k, r in rows.items()} == {
        "ok1": "sent", "limit429": "sent", "rate403": "sent", "precondition400": "failed",
        "badrcpt400": "failed", "boom500": "uncertain", "slow": "uncertain", "ok2": "sent"}
    assert (rows["limit429"].attempts, rows["rate403"].attempts) == (2, 2)
    # Retry-After: 7 honoured over the 1 s backoff; the 403 without one waits the backoff
    assert at[("limit429", "sent")] - at[("limit429", "deferred")] == 7.0
    assert at[("rate403", "sent")] - at[("rate403", "deferred")] == 1.0
    assert (rows["precondition400"].category, rows["precondition400"].smtp_code) == ("message_rejected", 400)
    assert (rows["badrcpt400"].category, rows["badrcpt400"].smtp_code) == ("recipient_rejected", 400)
    assert (rows["boom500"].category, rows["boom500"].smtp_code) == ("server_error", 500)
    assert rows["slow"].category == "timeout" and rows["slow"].attempts == 1
    assert rows["boom500"].attempts == 1
    seen = [e["status"] for e in events if e["recipient"].startswith("limit429")]
    assert seen == ["sending", "deferred", "sending", "sent"]
    first_deferred = next(e for e in events if e["status"] == "deferred")
    assert first_deferred["category"] == "rate_limited" and first_deferred["code"] == 429
    # the fake received each uncertain message exactly once, and every sent one once
    time.sleep(2.0)  # the slow request finishes on the fake's side
    received = [m.to for m in google.sent]
    assert received.count("boom500@example.org") == 1 and received.count("slow@example.org") == 1
    assert sorted(received) == sorted(["ok1@example.org", "limit429@example.org", "rate403@example.org",
                                       "boom500@example.org", "slow@example.org", "ok2@example.org"])


def test_a_per_minute_quota_is_backed_off_not_a_day_long_pause(account, google):
    draft = draft_for("minute429@example.org\nb@example.org", account)
    fake = FakeClock()
    outcome = service.send(draft, GmailTransport(account), sleep=fake.sleep, clock=fake.clock,
                           retry=RetryPolicy(base_s=30.0, jitter=0.0))
    assert outcome.stopped is None and outcome.resume_after is None
    assert [(r.status, r.attempts) for r in outcome.results] == [("sent", 2), ("sent", 1)]
    assert sorted(m.to for m in google.sent) == ["b@example.org", "minute429@example.org"]


def test_an_answer_that_is_not_gmails_is_never_counted_as_sent(account, google):
    draft = draft_for("noid200@example.org\nmoved302@example.org\nok@example.org", account)
    outcome = service.send(draft, GmailTransport(account), sleep=lambda s: None)
    rows = {r.email.split("@")[0]: r for r in outcome.results}
    assert rows["noid200"].status == "uncertain" and "without a Gmail message id" in rows["noid200"].error
    assert rows["moved302"].status == "uncertain" and "redirect" in rows["moved302"].error
    assert rows["ok"].status == "sent"


def test_a_tls_error_after_the_message_went_out_is_uncertain(account, certs):
    """A TLS server that reads the whole POST, then breaks the stream: the message went out."""
    import json as _json
    import socket
    import ssl
    import threading

    from backend.errors import UncertainDelivery
    from backend.google_auth import Endpoints
    from backend.transports.base import Envelope

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*certs.good)
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[str] = []

    def serve() -> None:
        raw, _ = listener.accept()
        conn = ctx.wrap_socket(raw, server_side=True)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
        while len(body) < length:
            body += conn.recv(65536)
        received.append(_json.loads(body)["raw"])
        os.write(conn.fileno(), b"\x17\x03\x03\x00\x10" + b"garbage-garbage!")  # a broken TLS record
        time.sleep(0.5)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()

    class Signed:
        endpoints = Endpoints(api_base=f"https://127.0.0.1:{listener.getsockname()[1]}")
        email = "sender@gmail.com"

        def access_token(self, force_refresh=False):
            return "token"

        def require(self, purpose):
            return self

    import requests

    session = requests.Session()
    session.verify = certs.ca_file
    with pytest.raises(UncertainDelivery, match="broke after the message was sent"):
        GmailTransport(Signed(), session=session, timeout=5).send(
            Envelope("sender@gmail.com", ("a@example.org",)), b"Subject: hi\r\n\r\nbody\r\n")
    assert len(received) == 1
    listener.close()


def test_the_daily_limit_stops_the_run_until_it_resets(account, google):
    draft = draft_for("a@example.org\ndaily403@example.org\nc@example.org", account)
    journal = Journal()
    outcome = service.send(draft, GmailTransport(account), journal=journal,
                           spec=service.campaign_spec(draft, None, gmail=account.email))
    rows = {r.email: r for r in outcome.results}
    assert rows["a@example.org"].status == "sent"
    assert rows["daily403@example.org"].status == "deferred" and rows["daily403@example.org"].category == "quota_exceeded"
    assert rows["c@example.org"].status == "skipped" and rows["c@example.org"].attempts == 0
    assert outcome.stopped == "quota_exceeded" and outcome.resume_after
    import datetime as dt
    hours = (dt.datetime.fromisoformat(outcome.resume_after) - dt.datetime.now(dt.UTC)).total_seconds() / 3600
    assert 23 < hours <= 24
    assert journal.get(draft.id).state == "paused" and journal.get(draft.id).resume_after == outcome.resume_after
    assert [m.to for m in google.sent] == ["a@example.org"]


def test_a_401_renews_the_token_once_and_a_second_401_asks_to_sign_in_again(account, google):
    transport = GmailTransport(account)
    transport.open()
    msg = b"From: sender@gmail.com\r\nTo: expire401@example.org\r\nSubject: x\r\n\r\nbody\r\n"
    receipt = transport.send(Envelope("sender@gmail.com", ("expire401@example.org",)), msg)
    assert receipt.code == 200 and {"grant_type": "refresh_token"} in google.token_requests
    assert [m.to for m in google.sent] == ["expire401@example.org"]
    google.always_401 = True
    draft = draft_for("a@example.org\nb@example.org", account)
    outcome = service.send(draft, GmailTransport(account))
    assert outcome.stopped == "oauth_error" and outcome.error.code == 401
    assert [r.status for r in outcome.results] == ["deferred", "skipped"]
    assert any("Sign in with Google again" in s for s in outcome.error.fix_steps())
    assert len(google.sent) == 1


def test_pause_and_resume_work_for_gmail(account, google):
    draft = draft_for("\n".join(f"p{i}@example.org" for i in range(4)), account)
    control = Control()
    seen: list[str] = []

    def on_event(e: dict) -> None:
        if e["status"] == "sent":
            seen.append(e["recipient"])
            if len(seen) == 2:
                control.cancel()

    journal = Journal()
    outcome = service.send(draft, GmailTransport(account), on_event=on_event, control=control, journal=journal,
                           spec=service.campaign_spec(draft, None, gmail=account.email))
    assert outcome.stopped == "cancelled" and outcome.counts["sent"] == 2
    again, indices, spec = service.resume_draft(journal, draft.id)
    assert service.channel_of(spec) == "gmail"
    second = service.send(again, GmailTransport(account), journal=journal, indices=indices)
    assert second.counts == {"sent": 2}
    assert [m.to for m in google.sent] == [f"p{i}@example.org" for i in range(4)]


def test_the_from_is_the_signed_in_address(account):
    assert service.gmail_sender(None, "me@gmail.com") == "me@gmail.com"
    assert service.gmail_sender("Me Myself <ME@gmail.com>", "me@gmail.com") == "Me Myself <me@gmail.com>"
    with pytest.raises(Exception, match="sends as the signed-in account me@gmail.com"):
        service.gmail_sender("other@example.org", "me@gmail.com")


def test_secrets_never_reach_logs_events_or_errors(google, certs, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    logging.getLogger().setLevel(logging.DEBUG)
    acct = GoogleAccount(EncryptedFileStore(tmp_path / "s.enc"), PASSPHRASE)
    token, _ = sign_in(google, certs)
    acct.save(OAuthClient.parse(client_json()), token)
    token.expiry = "2000-01-01T00:00:00+00:00"  # forces a refresh
    draft = draft_for("a@example.org\nboom500@example.org\nprecondition400@example.org", acct)
    events: list[dict] = []
    journal = Journal()
    outcome = service.send(draft, GmailTransport(acct), on_event=events.append, journal=journal,
                           spec=service.campaign_spec(draft, None, gmail=acct.email), account="sweep")
    service.write_results_csv(tmp_path / "export.csv", [row.result for row in journal.rows(draft.id)])
    google.revoke_all()
    acct.load().expiry = "2000-01-01T00:00:00+00:00"
    with pytest.raises(OAuthError) as caught:
        GmailTransport(acct).open()
    secrets = [CLIENT_SECRET, *google.issued]
    assert len(secrets) >= 5  # the secret, a code, a refresh token and two access tokens
    blob = caplog.text + json.dumps(events) + json.dumps([r.as_dict() for r in outcome.results])
    blob += json.dumps(caught.value.describe()) + repr(token) + repr(acct.load())
    for secret in secrets:
        assert secret not in blob
    assert "refresh_token" not in caplog.text and "code_verifier" not in caplog.text
    # Every file the app wrote (journal and its WAL, profile, settings, logs, the export), raw
    # bytes: no secret in any of them; the encrypted store is the one place they live.
    from backend import paths

    files = [f for root in {paths.data_dir(), paths.config_dir(), paths.log_dir(), tmp_path}
             for f in root.rglob("*") if f.is_file() and f.name != "s.enc"]
    assert any(f.name.startswith("journal.sqlite3") for f in files) and (tmp_path / "export.csv") in files
    for f in files:
        raw = f.read_bytes()
        for secret in secrets:
            assert secret.encode() not in raw, f


# -- SMTP with XOAUTH2 ----------------------------------------------------------------------


@pytest.fixture
def xoauth2_server(google, certs):
    handler = XOAuth2Handler(accept=lambda user, token: google.token_ok(user, token))
    server = Server("starttls", cert=certs.good, handler=handler)
    yield server
    server.stop()


def smtp_with_google(server, certs, account: GoogleAccount) -> SmtpSettings:
    return SmtpSettings(host=server.host, port=server.port, security="starttls", user=account.email,
                        auth="xoauth2", token_source=TokenSource(account, "smtp"), ca_file=certs.ca_file,
                        timeout=5)


def test_smtp_xoauth2_with_the_same_google_sign_in(google, certs, tmp_path, xoauth2_server):
    acct = GoogleAccount(EncryptedFileStore(tmp_path / "s.enc"), PASSPHRASE)
    token, _ = sign_in(google, certs, "smtp")
    assert MAIL_SCOPE in token.scopes
    acct.save(OAuthClient.parse(client_json()), token)
    assert set(google.auth_requests[0]["scope"].split()) >= {MAIL_SCOPE}
    google.expire_access_tokens()  # the first login is refused, renewed once, then accepted
    draft = service.make_draft(parse_text("x@example.org\ny@example.org"), subject="Hi", html=None,
                               text="Hello {{ email }}", from_address=acct.email, delay_ms=0)
    outcome = service.send(draft, SmtpTransport(smtp_with_google(xoauth2_server, certs, acct)))
    assert outcome.counts == {"sent": 2}
    assert [m.rcpt_tos for m in xoauth2_server.messages] == [["x@example.org"], ["y@example.org"]]
    assert xoauth2_server.handler.xoauth2_logins == ["sender@gmail.com"]
    assert {"grant_type": "refresh_token"} in google.token_requests


def test_smtp_xoauth2_needs_the_full_mail_scope(account, certs, xoauth2_server):
    transport = SmtpTransport(smtp_with_google(xoauth2_server, certs, account))
    with pytest.raises(OAuthError) as caught:
        transport.open()
    assert "Gmail API only" in caught.value.message
    assert any("gmail login --smtp" in s for s in caught.value.fix_steps())
    assert xoauth2_server.messages == []


def test_smtp_xoauth2_refused_twice_is_oauth_error(google, certs, tmp_path):
    acct = GoogleAccount(EncryptedFileStore(tmp_path / "s.enc"), PASSPHRASE)
    token, _ = sign_in(google, certs, "smtp")
    acct.save(OAuthClient.parse(client_json()), token)
    server = Server("starttls", cert=certs.good, handler=XOAuth2Handler(accept=lambda user, token: False))
    try:
        with pytest.raises(OAuthError) as caught:
            SmtpTransport(smtp_with_google(server, certs, acct)).open()
    finally:
        server.stop()
    assert caught.value.code == 535 and "with Google refused" in caught.value.message
    assert token.access_token not in caught.value.message


def test_xoauth2_is_never_sent_unencrypted(google, certs, tmp_path, smtp_server):
    acct = GoogleAccount(EncryptedFileStore(tmp_path / "s.enc"), PASSPHRASE)
    token, _ = sign_in(google, certs, "smtp")
    acct.save(OAuthClient.parse(client_json()), token)
    server = smtp_server("plain", auth_require_tls=False)
    settings = SmtpSettings(host=server.host, port=server.port, security="none", user=acct.email, auth="xoauth2",
                            token_source=TokenSource(acct, "smtp"), timeout=5)
    with pytest.raises(Exception) as caught:
        SmtpTransport(settings).open()
    assert caught.value.category == "plaintext_auth_refused" and "token" in caught.value.message


def test_workspace_and_consumer_presets_have_gmail_api_limits():
    from backend.presets import gmail_api_limits

    assert gmail_api_limits(False)[1].per_day == 500
    assert gmail_api_limits(True)[1].per_day == 2000
    assert gmail_api_limits(True)[1].per_minute == gmail_api_limits(False)[1].per_minute == 150


def test_no_client_secret_or_env_file_is_read_from_the_app_folder(tmp_path):
    """The OAuth client comes only from the file the user imports: a client_secret*.json or a
    .env lying in the folder the app runs from is never read (and none is committed)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    assert not list(root.glob("client_secret*.json")) and not (root / ".env").exists()
    (tmp_path / "client_secret.json").write_text(client_json())
    (tmp_path / ".env").write_text(f"GOOGLE_CLIENT_SECRET={CLIENT_SECRET}\nBULK_MAILER_PASSWORD=planted\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULK_MAILER_")}
    env.update({"BULK_MAILER_HOME": str(tmp_path / "home"), "PYTHONPATH": str(root),
                "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    status = subprocess.run([sys.executable, "-m", "backend.cli", "gmail", "status"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 2 and "Not signed in with Google" in status.stderr
    assert not (tmp_path / "home").exists() or not any(
        CLIENT_SECRET.encode() in f.read_bytes() for f in (tmp_path / "home").rglob("*") if f.is_file())
