"""The window's side of the Gmail API channel: the Bridge signs in with Google (the system
browser played by the test), sends a campaign through the fake Gmail API, and signs out."""

from __future__ import annotations

import base64

import pytest

from backend.credentials import EncryptedFileStore
from backend.inbox import LocalInbox
from bridge import Bridge
from tests.conftest import offline_detect
from tests.fakegoogle import CLIENT_SECRET, client_json, play_browser
from tests.test_bridge import ok, wait_for

PASSPHRASE = "bridge passphrase"
MESSAGE = {"subject": "Hi {{ name }}", "body": "<p>Hello {{ name }}</p>", "format": "html"}


@pytest.fixture
def gmail_bridge(google, certs, tmp_path):
    inbox = LocalInbox()
    events: list[dict] = []
    b = Bridge(inbox=inbox, store=EncryptedFileStore(tmp_path / "s.enc"), deliver=events.extend,
               detector=offline_detect, open_browser=play_browser(certs.ca_file))
    b._pump.ready()
    yield b, events
    b._shutdown()
    inbox.stop()


def client_b64(kind: str = "installed") -> str:
    return base64.b64encode(client_json(kind).encode()).decode()


def sign_in(b: Bridge, **extra) -> dict:
    started = ok(b.google_sign_in({"client_data_base64": client_b64(), "passphrase": PASSPHRASE, **extra}))
    assert started["state"] == "waiting" and started["url"].startswith("https://127.0.0.1:")
    wait_for(lambda: ok(b.google_status())["sign_in"]["state"] != "waiting")
    return ok(b.google_status())


def test_sign_in_send_and_sign_out_through_the_bridge(gmail_bridge, google):
    b, events = gmail_bridge
    before = ok(b.google_status())
    assert before["signed_in"] is False and before["limits"]["per_day"] == 500
    status = sign_in(b)
    assert status["signed_in"] and status["email"] == "sender@gmail.com" and not status["smtp"]
    assert status["sign_in"]["state"] == "signed_in"
    ok(b.import_recipients_text({"text": "email,name\nann@example.org,Ann\nbob@example.org,Bob\n"}))
    account = {"channel": "gmail", "from_address": "Ann's Sender", "max_per_minute": 100}
    conn = ok(b.test_connection({"account": account}))
    assert conn["authenticated_as"] == "sender@gmail.com"
    ok(b.start_campaign({"account": account, "message": MESSAGE, "delay_ms": 0}))
    wait_for(lambda: ok(b.campaign_state())["state"] in ("finished", "failed", "cancelled"))
    state = ok(b.campaign_state())
    assert state["state"] == "finished" and state["counts"] == {"sent": 2}
    assert [str(m.message["Subject"]) for m in google.sent] == ["Hi Ann", "Hi Bob"]
    assert str(google.sent[0].message["From"]) == "Ann's Sender <sender@gmail.com>"
    history = ok(b.campaign_history())["campaigns"]
    assert history[0]["account"] == "sender@gmail.com (Gmail API)"
    b._pump.flush()
    assert all(CLIENT_SECRET not in str(e) for e in events)
    out = ok(b.google_sign_out({"passphrase": PASSPHRASE}))
    assert out["revoked"] is True and len(google.revoked) == 1
    assert ok(b.google_status())["signed_in"] is False
    refused = b.start_campaign({"account": account, "message": MESSAGE, "delay_ms": 0})
    assert refused["ok"] is False and refused["error"]["category"] == "oauth_error"


def test_sign_in_failures_reach_the_window_as_oauth_error(gmail_bridge, google):
    b, _ = gmail_bridge
    google.consent = "deny"
    status = sign_in(b)
    assert status["sign_in"]["state"] == "failed" and status["signed_in"] is False
    err = status["sign_in"]["error"]
    assert err["category"] == "oauth_error" and "denied" in err["message"] and err["fix"]
    web = b.google_sign_in({"client_data_base64": client_b64("web"), "passphrase": PASSPHRASE})
    assert web["ok"] is False and "Web application" in web["error"]["message"]
    b._app._passphrase = None  # a new start of the app: the passphrase is not known yet
    locked = b.google_sign_in({"client_data_base64": client_b64()})
    assert locked["ok"] is False and "passphrase" in locked["error"]["message"]
    short = b.google_sign_in({"client_data_base64": client_b64(), "passphrase": "short"})
    assert short["ok"] is False and "at least 8 characters" in short["error"]["message"]


def test_a_sign_in_can_be_cancelled_from_the_window(google, certs, tmp_path):
    inbox = LocalInbox()
    b = Bridge(inbox=inbox, store=EncryptedFileStore(tmp_path / "s.enc"), deliver=lambda batch: None,
               detector=offline_detect, open_browser=lambda url: True)  # nobody answers in the browser
    try:
        ok(b.google_sign_in({"client_data_base64": client_b64(), "passphrase": PASSPHRASE}))
        assert ok(b.google_status())["sign_in"]["state"] == "waiting"
        ok(b.google_cancel_sign_in())
        wait_for(lambda: ok(b.google_status())["sign_in"]["state"] != "waiting", timeout=5)
        assert ok(b.google_status())["sign_in"]["state"] == "cancelled"
        assert b.google_cancel_sign_in()["ok"] is False
    finally:
        b._shutdown()
        inbox.stop()


def test_smtp_with_google_from_the_window(gmail_bridge, google, certs, monkeypatch):
    from tests.servers import Server, XOAuth2Handler

    b, _ = gmail_bridge
    assert sign_in(b, purpose="smtp")["smtp"] is True
    server = Server("starttls", cert=certs.good, handler=XOAuth2Handler(accept=google.token_ok))
    try:
        ok(b.import_recipients_text({"text": "x@example.org"}))
        account = {"channel": "smtp", "provider": None, "host": "localhost", "port": server.port,
                   "security": "starttls", "auth": "xoauth2", "from_address": "sender@gmail.com"}
        monkeypatch.setenv("SSL_CERT_FILE", certs.ca_file)  # the window has no CA field: trust the test CA
        ok(b.start_campaign({"account": account, "message": MESSAGE, "delay_ms": 0}))
        wait_for(lambda: ok(b.campaign_state())["state"] in ("finished", "failed", "cancelled"))
        state = ok(b.campaign_state())
        assert state["counts"] == {"sent": 1}, state
        assert server.handler.xoauth2_logins == ["sender@gmail.com"]
    finally:
        server.stop()
