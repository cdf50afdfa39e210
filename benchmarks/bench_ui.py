"""Benchmark: a 10,000-recipient campaign to the local test inbox, watched in the real UI.

Prints how many event deliveries reached the page (the bridge batches them), the campaign's
rate, and the page's frame times while the activity log filled (requestAnimationFrame gaps:
median, p95, max), plus the number of log rows at the end. Browser mode, Debian's chromium
driven by Playwright; everything on 127.0.0.1.

    .venv/bin/python benchmarks/bench_ui.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from backend import web  # noqa: E402
from backend.credentials import EncryptedFileStore  # noqa: E402
from backend.inbox import LocalInbox  # noqa: E402
from bridge import FRONTEND, Bridge  # noqa: E402

WATCH = """
window.__frames = []; window.__deliveries = 0; window.__events = 0;
(function tick(last) { requestAnimationFrame(function (now) {
  window.__frames.push(now - last); tick(now); }); })(performance.now());
"""


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    deliveries = 0
    events = 0

    def counting(deliver):
        def wrapped(batch):
            nonlocal deliveries, events
            deliveries += 1
            events += len(batch)
            deliver(batch)
        return wrapped

    home = tempfile.mkdtemp(prefix="bm-bench-")
    inbox = LocalInbox(limit=n + 10)
    webapp, server, _ = web.start(
        lambda deliver: Bridge(inbox=inbox, store=EncryptedFileStore(Path(home) / "s.enc"), deliver=counting(deliver)),
        FRONTEND,
    )
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            # bypass_csp: Playwright's wait_for_function evaluates strings, which the page's CSP forbids
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
            page.goto(webapp.url)
            page.wait_for_selector('body[data-ready="true"]')
            page.evaluate("""text => { const el = document.querySelector('#paste'); el.value = text;
                el.dispatchEvent(new Event('input', {bubbles: true})); }""",
                          "\n".join(f"user{i}@example.org" for i in range(n)))
            page.click("#use-paste")
            page.wait_for_function("document.querySelector('#recipients-summary').textContent.includes('valid')")
            page.fill("#subject", "Hello {{ email }}")
            page.fill("#message", "<p>Hi {{ email }}</p>")
            page.fill("#delay", "0")
            page.evaluate(WATCH)
            started = time.perf_counter()
            page.click("#send")
            page.wait_for_function("document.body.dataset.campaignState === 'finished'", timeout=600_000)
            page.wait_for_function(f"document.querySelectorAll('#log tr').length >= {n}", timeout=120_000)
            elapsed = time.perf_counter() - started
            frames = page.evaluate("window.__frames")
            rows = page.evaluate("document.querySelectorAll('#log tr').length")
            browser.close()
    finally:
        web.stop(webapp, server)
    frames = sorted(frames[1:])
    p95 = frames[int(len(frames) * 0.95)] if frames else 0
    print(f"recipients            {n}")
    print(f"received by inbox     {len(inbox.messages())}")
    print(f"campaign + UI time    {elapsed:.1f} s  ({n / elapsed:.0f} messages/s end to end)")
    print(f"event deliveries      {deliveries}  ({events} events, {deliveries / elapsed:.1f} deliveries/s)")
    print(f"log rows at the end   {rows}")
    print(f"frame gaps            median {statistics.median(frames):.1f} ms, p95 {p95:.1f} ms, "
          f"max {frames[-1]:.1f} ms over {len(frames)} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
