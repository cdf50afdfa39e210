"""Sign in with Google and a campaign through the Gmail API in a real browser (Debian's
chromium, browser mode), against the local fake of Google."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.fakegoogle import CLIENT_SECRET, client_json, play_browser
from tests.uisteps import fill_message, pace, paste_list, to

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)


@pytest.fixture
def page(google, certs, tmp_path):
    from backend import web
    from backend.credentials import EncryptedFileStore
    from backend.inbox import LocalInbox
    from bridge import FRONTEND, Bridge, web_face
    from tests.conftest import offline_detect

    inbox = LocalInbox()
    opened: list[str] = []
    webapp, server, _ = web.start(
        lambda deliver: web_face(Bridge(inbox=inbox, store=EncryptedFileStore(tmp_path / "s.enc"), deliver=deliver,
                               detector=offline_detect, open_browser=play_browser(certs.ca_file, record=opened))),
        FRONTEND)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        pg.goto(webapp.url)
        pg.wait_for_selector('body[data-ready="true"]', timeout=10_000)
        yield pg, opened
        browser.close()
    web.stop(webapp, server)
    inbox.stop()
    assert errors == [], errors


def test_sign_in_with_google_then_send_through_the_gmail_api(page, google, tmp_path):
    pg, opened = page
    expect = sync_api.expect
    client = tmp_path / "client_secret.json"
    client.write_text(client_json())
    pg.get_by_label("Gmail API (Sign in with Google)").check()
    expect(pg.get_by_label("Host")).to_be_hidden()
    expect(pg.locator("#google-status")).to_have_text("Not signed in with Google.")
    expect(pg.locator("#google-scope-note")).to_contain_text("permission to send email only")
    pg.get_by_label("Passphrase").fill("ui passphrase 1")
    with pg.expect_file_chooser() as chooser:
        pg.get_by_role("button", name="Sign in with Google").click()
    chooser.value.set_files(str(client))
    status = pg.locator("#google-status")
    expect(status).to_have_text("Signed in with Google as sender@gmail.com (Gmail API).", timeout=15_000)
    assert opened and opened[0].startswith(google.base)  # the system browser got Google's page
    expect(pg.get_by_label("From")).to_have_value("sender@gmail.com")
    expect(pg.locator("#gmail-limits")).to_contain_text("500 recipients")
    # The Send section's limits are now the Gmail API's.
    expect(pg.locator("#limits-summary")).to_have_text("150 a minute, 500 a day")
    pg.get_by_label("From").fill("Newsletter Team")
    pg.get_by_role("button", name="Test connection").click()
    expect(pg.locator("#connection-result")).to_contain_text("Google sign-in works", timeout=10_000)

    expect(pg.locator('.nav-step[data-step="account"] .step-summary')).to_contain_text(
        "Gmail API as sender@gmail.com")
    paste_list(pg, "email,name\nann@example.org,Ann\nbob@example.org,Bob")
    expect(pg.locator("#recipients-summary")).to_contain_text("2 valid")
    fill_message(pg, "Hello {{ name }}", "<p>Hi <b>{{ name }}</b></p>")
    pace(pg)
    pg.get_by_role("button", name="Send", exact=True).click()
    expect(pg.locator("#send-confirm")).to_contain_text("Send 2 messages through the Gmail API as sender@gmail.com?")
    pg.get_by_role("button", name="Yes, send").click()
    expect(pg.locator('#log tr[data-status="sent"]')).to_have_count(2, timeout=15_000)
    expect(pg.locator("#send-state")).to_have_text("Finished: 2 sent.", timeout=10_000)
    got = [m.message for m in google.sent]
    assert [m["To"].addresses[0].addr_spec for m in got] == ["ann@example.org", "bob@example.org"]
    assert [str(m["Subject"]) for m in got] == ["Hello Ann", "Hello Bob"]
    assert str(got[0]["From"]) == "Newsletter Team <sender@gmail.com>"
    assert "<b>Bob</b>" in got[1].get_body(("html",)).get_content()
    assert CLIENT_SECRET not in pg.content()

    to(pg, "Account")
    pg.get_by_role("button", name="Sign out").click()
    expect(pg.locator("#google-progress")).to_contain_text("revoked at Google", timeout=10_000)
    expect(status).to_have_text("Not signed in with Google.")
    assert len(google.revoked) == 1


def test_a_denied_sign_in_shows_the_fix(page, google, tmp_path):
    pg, _ = page
    expect = sync_api.expect
    google.consent = "deny"
    client = tmp_path / "client_secret.json"
    client.write_text(client_json())
    pg.get_by_label("Gmail API (Sign in with Google)").check()
    pg.get_by_label("Passphrase").fill("ui passphrase 1")
    pg.get_by_label("Google OAuth client file").set_input_files(str(client))
    progress = pg.locator("#google-progress")
    expect(progress.locator('.error-box[data-category="oauth_error"]')).to_have_count(1, timeout=15_000)
    expect(progress).not_to_contain_text("oauth_error")  # no category codes in the window's sentences
    expect(progress).to_contain_text("click Allow")
    expect(pg.locator("#google-status")).to_have_text("Not signed in with Google.")


def test_smtp_with_google_asks_for_the_broader_scope(page, google, tmp_path):
    pg, _ = page
    expect = sync_api.expect
    client = tmp_path / "client_secret.json"
    client.write_text(client_json())
    pg.get_by_label("Provider").select_option("gmail")
    pg.get_by_label("Log in with Google instead of a password (OAuth2)").check()
    expect(pg.get_by_label("Password", exact=True)).to_be_hidden()
    expect(pg.locator("#smtp-oauth-hint")).to_contain_text("https://mail.google.com/")
    pg.get_by_label("Passphrase").fill("ui passphrase 1")
    pg.get_by_label("Google OAuth client file").set_input_files(str(client))
    expect(pg.locator("#google-status")).to_have_text("Signed in with Google as sender@gmail.com (Gmail API and SMTP).",
                                                       timeout=15_000)
    assert "https://mail.google.com/" in google.auth_requests[0]["scope"].split()
    pg.get_by_label("Provider").select_option("outlook")
    expect(pg.locator("#google-block")).to_be_hidden()
    expect(pg.get_by_label("Password", exact=True)).to_be_visible()
