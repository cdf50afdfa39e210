"""Review & send's Check links and Check sender domain, and the message preview's desktop and
375 px phone views in light and dark, in a real browser (Debian's chromium driven by Playwright,
browser mode): the links against HTTP servers on 127.0.0.1, the domain against the fake DNS
(tests/fakedns.py) that the web app's process asks."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dns.resolver
import pytest

from tests.fakedns import FakeDNS
from tests.uisteps import CHROMIUM, app_page, chromium, fill_message, paste_list, to

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)

KEY = '"v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtest"'


@pytest.fixture(scope="module")
def browser():
    with chromium(CHROMIUM) as b:
        yield b


@pytest.fixture
def page(browser, web_app):
    with app_page(browser, web_app[0].url, grant=("clipboard-read", "clipboard-write")) as pg:
        yield pg


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _route(self) -> None:
        if self.path == "/ok":
            time.sleep(0.6)  # long enough to see the check at work
        self.send_response(200 if self.path == "/ok" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET = _route  # noqa: N815


@pytest.fixture
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def dns_for_corp(monkeypatch):
    """The web app's process asks the fake DNS: corp.example.com's SPF covers Gmail; a key under k7 only."""
    server = FakeDNS({("corp.example.com.", "TXT"): ['"v=spf1 include:_spf.google.com -all"'],
                      ("_spf.google.com.", "TXT"): ['"v=spf1 ip4:64.233.160.0/19 ~all"'],
                      ("k7._domainkey.corp.example.com.", "TXT"): [KEY]})
    monkeypatch.setattr(dns.resolver, "default_resolver", server.resolver())
    yield server
    server.stop()


def campaign(page, site: str) -> None:
    paste_list(page, "ann@example.org\nbob@example.org")
    expect(page.locator("#recipients-summary")).to_contain_text("2 valid")
    fill_message(page, "Spring news", f'<p>Hello, see <a href="{site}/ok">the news</a> and '
                                      f'<a href="{site}/missing">the old page</a>.</p>')
    to(page, "Review & send")


def no_sideways_scroll(page) -> None:
    width = page.evaluate("[document.scrollingElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1], width


def test_check_links_shows_the_broken_one_and_the_summary_and_forgets_them_when_the_message_changes(page, site):
    campaign(page, site)
    button = page.get_by_role("button", name="Check links")
    expect(page.locator("#check-links-hint")).to_contain_text("at most 20 s")
    button.click()
    expect(page.locator("#links-result")).to_contain_text("Checking links… (up to 20 s)")
    expect(button).to_be_disabled()
    expect(page.locator("#links-summary")).to_have_text("2 links: 1 fine, 1 broken", timeout=25_000)
    expect(button).to_be_enabled()
    rows = page.locator("#link-rows li")
    expect(rows).to_have_count(1)  # the fine one is not listed
    broken = page.locator('#link-rows li[data-state="broken"]')
    expect(broken.locator(".link-url")).to_have_text(f"{site}/missing")
    expect(broken).to_contain_text("Broken")
    expect(broken).to_contain_text("404")
    assert page.locator("#links-result a").count() == 0  # addresses shown as text, never links
    # Another message: what was found about the old one goes.
    to(page, "Message")
    page.get_by_label("Message", exact=True).fill("<p>Nothing to follow.</p>")
    to(page, "Review & send")
    expect(page.locator("#links-result")).to_be_empty()


def test_check_sender_domain_lists_the_checks_with_a_fix_to_copy_and_both_results_fit(page, site, dns_for_corp):
    to(page, "Account")
    page.get_by_label("Provider").select_option(label="Gmail")
    page.get_by_label("From").fill("Me <me@corp.example.com>")
    campaign(page, site)
    expect(page.locator("#check-auth-hint")).to_contain_text("SPF, DKIM and DMARC")
    page.get_by_role("button", name="Check sender domain").click()
    expect(page.locator("#auth-head")).to_have_text("corp.example.com through Gmail (smtp.gmail.com)")
    spf = page.locator('#auth-rows li[data-check="spf"]')
    expect(spf).to_have_attribute("data-state", "ok")
    expect(spf.locator(".fix-text")).to_have_count(0)  # nothing to fix
    dkim = page.locator('#auth-rows li[data-check="dkim"]')
    expect(dkim).to_have_attribute("data-state", "fail")
    expect(dkim).to_contain_text("DKIM")
    fix = dkim.get_by_label("How to fix DKIM")
    expect(fix).to_have_js_property("readOnly", True)
    text = fix.input_value()
    assert "google._domainkey.corp.example.com" in text
    icon = dkim.locator(".auth-icon").evaluate("i => getComputedStyle(i).maskImage || getComputedStyle(i).webkitMaskImage")
    assert "cross.svg" in icon
    dkim.get_by_role("button", name="Copy how to fix DKIM").click()
    expect(dkim.locator(".copy-status")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == text
    # Both results at once, and still no sideways scroll at 1280x800.
    page.get_by_role("button", name="Check links").click()
    expect(page.locator("#links-summary")).to_contain_text("1 broken", timeout=25_000)
    no_sideways_scroll(page)
    # The selector the provider gave: DKIM found.
    page.get_by_label("Your DKIM selectors").fill("k7")
    page.get_by_role("button", name="Check sender domain").click()
    expect(dkim).to_have_attribute("data-state", "ok")
    expect(dkim).to_contain_text("k7._domainkey.corp.example.com")


# Inside a preview frame: its colour-scheme meta and the colour its text gets from it.
SCHEME = ("({meta: document.querySelector('meta[name=color-scheme]')?.content ?? null, "
          "text: getComputedStyle(document.querySelector('p') || document.body).color})")


def frame_of(page, selector: str):
    handle = page.locator(selector).element_handle()
    frame = handle.content_frame()
    frame.wait_for_load_state()
    return frame


def test_the_preview_shows_desktop_and_a_375_px_phone_side_by_side_light_and_dark(page, site):
    campaign(page, site)
    views = page.locator("#review-preview .preview-views")
    expect(views.locator("iframe")).to_have_count(2)
    desktop, narrow = "#review-preview iframe.frame-desktop", "#review-preview iframe.frame-narrow"
    assert page.locator(narrow).evaluate("f => f.clientWidth") == 375
    assert page.locator(narrow).get_attribute("sandbox") == "" == page.locator(desktop).get_attribute("sandbox")
    boxes = [page.locator(s).bounding_box() for s in (desktop, narrow)]
    assert boxes[0]["width"] > 375 and abs(boxes[0]["y"] - boxes[1]["y"]) < 2  # side by side
    assert frame_of(page, narrow).evaluate("innerWidth") == 375
    light = frame_of(page, narrow).evaluate(SCHEME)
    assert light == {"meta": None, "text": "rgb(0, 0, 0)"}, light
    page.locator("#review-preview .preview-narrow").get_by_label("Dark").check()
    expect(page.locator(narrow)).to_have_attribute("data-scheme", "dark")
    inside = frame_of(page, narrow)
    assert inside.evaluate(SCHEME) == {"meta": "dark", "text": "rgb(255, 255, 255)"}  # light text on dark
    assert frame_of(page, desktop).evaluate(SCHEME) == light
    # The choice stays when the review draws the preview again.
    to(page, "Message")
    to(page, "Review & send")
    expect(page.locator(narrow)).to_have_attribute("data-scheme", "dark")
    expect(page.locator("#review-preview .preview-narrow").get_by_label("Dark")).to_be_checked()
    # A window too narrow for both: stacked, and still no sideways scroll.
    page.set_viewport_size({"width": 700, "height": 800})
    boxes = [page.locator(s).bounding_box() for s in (desktop, narrow)]
    assert boxes[1]["y"] > boxes[0]["y"] + boxes[0]["height"] - 1
    no_sideways_scroll(page)
