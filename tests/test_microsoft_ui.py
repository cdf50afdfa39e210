"""Sign in with Microsoft and a campaign through Microsoft Graph, in the window's four steps
(browser mode, Debian's chromium), against the local fake of Microsoft (tests/fakemicrosoft.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.fakemicrosoft import CLIENT_ID, play_browser
from tests.uisteps import fill_message, pace, paste_list, to

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)


@pytest.fixture
def page(microsoft, certs, tmp_path, isolated_home):
    from backend import web
    from backend.credentials import EncryptedFileStore
    from backend.inbox import LocalInbox
    from bridge import FRONTEND, Bridge, web_face
    from tests.conftest import offline_detect

    inbox = LocalInbox()
    webapp, server, _ = web.start(
        lambda deliver: web_face(Bridge(inbox=inbox, store=EncryptedFileStore(tmp_path / "s.enc"), deliver=deliver,
                                        detector=offline_detect, open_browser=play_browser(certs.ca_file))),
        FRONTEND)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        pg = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        pg.goto(webapp.url)
        pg.wait_for_selector('body[data-ready="true"]', timeout=10_000)
        pg.set_default_timeout(30_000)
        yield pg
        browser.close()
        assert errors == [], errors
    web.stop(webapp, server)
    inbox.stop()


def test_sign_in_with_microsoft_then_send_through_graph(page, microsoft):
    expect = sync_api.expect
    page.get_by_label("Microsoft Graph (Sign in with Microsoft)").check()
    expect(page.get_by_label("Host")).to_be_hidden()
    status = page.locator("#microsoft-status")
    expect(status).to_have_text("Not signed in with Microsoft.")
    page.get_by_label("Application (client) ID").fill(CLIENT_ID)
    page.get_by_label("Directory (tenant)").fill("organizations")
    page.get_by_label("Passphrase").fill("ui passphrase 1")
    page.get_by_role("button", name="Sign in with Microsoft").click()
    expect(status).to_contain_text(f"Signed in with Microsoft as {microsoft.email} (work or school account",
                                   timeout=15_000)
    expect(page.get_by_label("From")).to_have_value(microsoft.email)
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#connection-result .ok-line")).to_have_text(
        f"Microsoft sign-in works: sending through Microsoft Graph as {microsoft.email}.", timeout=10_000)
    expect(page.locator('.nav-step[data-step="account"] .step-summary')).to_contain_text("Done.")
    expect(page.locator("#limits-summary")).to_contain_text("30 a minute")
    paste_list(page, "email,name\nann@example.org,Ann\nbob@example.org,Bob")
    fill_message(page, "Hello {{ name }}", "<p>Hi {{ name }}</p>")
    pace(page)
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#send-confirm")).to_contain_text("Send 2 messages through")
    page.get_by_role("button", name="Yes, send").click()
    expect(page.locator("#send-state")).to_have_text("Finished: 2 sent.", timeout=15_000)
    assert [s.message["To"].addresses[0].addr_spec for s in microsoft.sent] == ["ann@example.org", "bob@example.org"]
    to(page, "Account")
    page.get_by_role("button", name="Sign out of Microsoft").click()
    expect(status).to_have_text("Not signed in with Microsoft.")
    expect(page.locator("#microsoft-progress")).to_contain_text("Signed out here")


def test_a_refused_consent_shows_the_fix(page, microsoft):
    expect = sync_api.expect
    microsoft.consent = "deny"
    page.get_by_label("Provider").select_option("office365")
    page.get_by_label("Log in with Microsoft instead of a password (OAuth2)").check()
    expect(page.get_by_label("Password", exact=True)).to_be_hidden()
    page.get_by_label("Application (client) ID").fill(CLIENT_ID)
    page.get_by_label("Passphrase").fill("ui passphrase 1")
    page.get_by_role("button", name="Sign in with Microsoft").click()
    progress = page.locator("#microsoft-progress")
    expect(progress.locator('.error-box[data-category="microsoft_consent"]')).to_have_count(1, timeout=15_000)
    expect(page.locator("#microsoft-status")).to_have_text("Not signed in with Microsoft.")
