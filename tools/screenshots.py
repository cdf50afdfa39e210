"""Take docs/screenshots/: each step of a first campaign (light theme) and Review & send in the
dark theme, in browser mode driven by Playwright in Debian's chromium (`make screenshot`).

Everything goes to a local test inbox on 127.0.0.1 in a throwaway data folder; Check links
follows links to a web server on 127.0.0.1 and Check sender domain asks the tests' fake DNS
(tests/fakedns.py). Not part of the tests: it makes the pictures the README walks through.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
LIST = ("email,name,city\nann@example.org,Ann,Oslo\nbob@example.org,Bob,Lyon\ncarol@example.org,,Porto\n"
        "dave@example.org,Dave,Turin\nbob@@example.org,Bobby,Graz\n")


def main() -> int:
    os.environ["BULK_MAILER_HOME"] = tempfile.mkdtemp(prefix="bm-shots-")
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import sync_playwright

    from backend import web
    from backend.credentials import EncryptedFileStore
    from backend.inbox import LocalInbox
    from bridge import FRONTEND, Bridge, web_face

    OUT.mkdir(parents=True, exist_ok=True)
    site, fake = local_site(), local_dns()
    inbox = LocalInbox()
    webapp, server, _ = web.start(lambda deliver: web_face(Bridge(inbox=inbox, store=EncryptedFileStore(),
                                                                  deliver=deliver)), FRONTEND)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            for scheme in ("light", "dark"):
                page = browser.new_page(viewport={"width": 1280, "height": 800}, color_scheme=scheme)
                page.goto(webapp.url)
                page.wait_for_selector('body[data-ready="true"]', timeout=20_000)
                walk(page, scheme)
                page.close()
            browser.close()
    finally:
        web.stop(webapp, server)
        site.shutdown()
        fake.stop()
    for path in sorted(OUT.glob("*.png")):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


SITE = ""  # the local web server's address, for the links Check links follows


def local_site():
    """A web server on 127.0.0.1: /meetup is there, anything else is 404."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_HEAD(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/meetup" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD  # noqa: N815

    global SITE
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    SITE = f"http://127.0.0.1:{server.server_address[1]}"
    return server


def local_dns():
    """The tests' fake DNS as this process's resolver: example.com's SPF lists 127.0.0.1, no DKIM key."""
    import dns.resolver

    from tests.fakedns import FakeDNS

    fake = FakeDNS({("example.com.", "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"']})
    dns.resolver.default_resolver = fake.resolver()
    return fake


def shot(page, name: str) -> None:
    page.wait_for_timeout(1200)  # the step list's summaries arrive a moment after typing
    page.screenshot(path=str(OUT / f"{name}.png"))


def walk(page, scheme: str) -> None:
    nav = page.get_by_role("navigation")
    if scheme == "light":
        shot(page, "1-account")
    nav.get_by_role("button", name="Recipients", exact=True).click()
    page.get_by_label("Paste addresses").fill(LIST)
    page.get_by_role("button", name="Use pasted addresses").click()
    page.locator("#recipients-summary").get_by_text("valid").first.wait_for()
    if scheme == "light":
        shot(page, "2-recipients")
    nav.get_by_role("button", name="Message", exact=True).click()
    page.get_by_label("Subject").fill("Our spring meetup, {{ name }}")
    page.get_by_label("Message", exact=True).fill(
        "<p>Hi {{ name }},</p>\n<p>You are invited to our spring meetup in {{ city }} on 12 April.</p>\n"
        "<p>See you there,<br>Me</p>")
    if scheme == "light":
        shot(page, "3-message")
    nav.get_by_role("button", name="Review & send", exact=True).click()
    page.locator("#review-summary").wait_for()
    page.locator("#review-preview iframe").first.wait_for()
    shot(page, "4-review" if scheme == "light" else "4-review-dark")
    if scheme == "light":
        checks_shot(page)
        schedule_shot(page)
        page.get_by_role("button", name="Send", exact=True).click()
        page.get_by_role("button", name="Yes, send").click()
        page.locator('#log tr[data-status="sent"]').nth(2).wait_for(timeout=30_000)
        page.locator("#summary").wait_for()
        # From Send down: the progress, the summary and the log (the checks above push them down).
        page.locator(".send-actions").evaluate("row => { row.scrollIntoView({block: 'start'}); window.scrollBy(0, -12); }")
        shot(page, "5-sent")
        nav.get_by_role("button", name="History", exact=True).click()
        page.locator("#history-list tr").first.wait_for()
        shot(page, "6-history")


def checks_shot(page) -> None:
    """Check links and Check sender domain after a link to a page that is there and one that is
    not went into the message (taken out again for the shots that follow)."""
    nav = page.get_by_role("navigation")
    nav.get_by_role("button", name="Message", exact=True).click()
    body = page.get_by_label("Message", exact=True)
    kept = body.input_value()
    body.fill(kept.replace("spring meetup", f'<a href="{SITE}/meetup">spring meetup</a>', 1)
              + f'\n<p>Last year\'s <a href="{SITE}/photos-2025">photos</a>.</p>')
    nav.get_by_role("button", name="Review & send", exact=True).click()
    page.get_by_role("button", name="Check links").click()
    page.locator("#links-summary").wait_for(timeout=30_000)
    page.get_by_role("button", name="Check sender domain").click()
    page.locator("#auth-head").wait_for(timeout=30_000)
    page.wait_for_timeout(600)
    page.locator("#review-checks").evaluate("box => { box.scrollIntoView({block: 'start'}); window.scrollBy(0, -12); }")
    page.screenshot(path=str(OUT / "4-review-checks.png"))
    nav.get_by_role("button", name="Message", exact=True).click()
    page.get_by_label("Message", exact=True).fill(kept)
    nav.get_by_role("button", name="Review & send", exact=True).click()
    page.evaluate("window.scrollTo(0, 0)")


def schedule_shot(page) -> None:
    """Review & send's When filled in (tomorrow 09:00 in New York, a window, a follow-up), then
    back to Send now for the shots that follow."""
    page.get_by_label("Schedule", exact=True).check()
    page.get_by_label("Time zone", exact=True).select_option("America/New_York")
    page.locator("#when-more > summary").click()
    page.get_by_label("Send window").fill("mon-fri 08:00-18:00")
    page.locator("#follow-ups-box > summary").click()
    page.get_by_role("button", name="Add a follow-up").click()
    page.get_by_label("Follow-up 1 Message").fill("<p>Hi {{ name }}, just checking you saw the invitation.</p>")
    page.locator("#when-summary dt").first.wait_for()
    page.wait_for_timeout(1200)
    page.locator("#when-box").evaluate("box => { box.scrollIntoView({block: 'start'}); window.scrollBy(0, -12); }")
    page.screenshot(path=str(OUT / "4-review-schedule.png"))
    page.get_by_role("button", name="Remove follow-up 1").click()
    page.get_by_label("Send window").fill("")
    page.get_by_label("Send now").check()
    page.locator("#when-more > summary").click()
    page.locator("#follow-ups-box > summary").click()
    page.evaluate("window.scrollTo(0, 0)")


if __name__ == "__main__":
    sys.exit(main())
