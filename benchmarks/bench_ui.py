"""Benchmark: a campaign of N recipients (default 10,000) watched in the real UI.

Prints how many event deliveries reached the page (the bridge batches them; the most in any
one second), the campaign's rate, the page's frame times while the activity log filled and
while scrolling it from top to bottom afterwards (requestAnimationFrame gaps: median, p95,
max), the log's rows, the counters and the summary at the end, and the page's JS heap.
Browser mode, Debian's chromium driven by Playwright; everything on 127.0.0.1. The server is
Postfix's smtp-sink when installed (`make bench` installs it), sent to on --connections
connections, else the app's local test inbox (about 400 messages a second).

    .venv/bin/python benchmarks/bench_ui.py [N] [--connections 4] [--server sink|inbox]
"""

from __future__ import annotations

import argparse
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
from bridge import FRONTEND, Bridge, web_face  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_send import SMTP_SINK, Sink  # noqa: E402

WATCH = """
window.__frames = []; window.__deliveries = 0; window.__events = 0;
(function tick(last) { requestAnimationFrame(function (now) {
  window.__frames.push(now - last); tick(now); }); })(performance.now());
"""


SCROLL = """
async () => {
  const box = document.querySelector('#log-scroll');
  const gaps = [];
  box.scrollTop = 0;
  await new Promise((r) => requestAnimationFrame(r));
  const steps = 300;
  let last = performance.now();
  for (let i = 1; i <= steps; i++) {
    box.scrollTop = (box.scrollHeight - box.clientHeight) * i / steps;
    await new Promise((r) => requestAnimationFrame(r));
    const now = performance.now();
    gaps.push(now - last);
    last = now;
  }
  const rendered = document.querySelectorAll('#log tr:not(.spacer)');
  const lastRow = rendered[rendered.length - 1];
  return { gaps, rendered: rendered.length, last: lastRow ? lastRow.dataset.current : null };
}
"""


def gaps_line(frames: list[float]) -> str:
    frames = sorted(frames)
    if not frames:
        return "no frames"
    p95 = frames[int(len(frames) * 0.95)]
    return f"median {statistics.median(frames):.1f} ms, p95 {p95:.1f} ms, max {frames[-1]:.1f} ms over {len(frames)} frames"


def main() -> int:
    parser = argparse.ArgumentParser(description="A campaign watched in the real UI.")
    parser.add_argument("n", nargs="?", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--server", choices=["sink", "inbox"],
                        default="sink" if Path(SMTP_SINK).exists() else "inbox")
    args = parser.parse_args()
    n = args.n
    deliveries: list[float] = []
    events = 0

    def counting(deliver):
        def wrapped(batch):
            nonlocal events
            deliveries.append(time.monotonic())
            events += len(batch)
            deliver(batch)
        return wrapped

    home = tempfile.mkdtemp(prefix="bm-bench-")
    inbox = LocalInbox(limit=n + 10)
    sink = Sink() if args.server == "sink" else None
    webapp, server, _ = web.start(
        lambda deliver: web_face(Bridge(inbox=inbox, store=EncryptedFileStore(Path(home) / "s.enc"), deliver=counting(deliver))),
        FRONTEND,
    )
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                               "--enable-precise-memory-info"])
            # bypass_csp: Playwright's wait_for_function evaluates strings, which the page's CSP forbids
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
            page.goto(webapp.url)
            page.wait_for_selector('body[data-ready="true"]')
            if sink is not None:
                page.get_by_label("Provider").select_option(label="Custom server")
                page.get_by_label("Host").fill("127.0.0.1")
                page.get_by_label("Port").fill(str(sink.port))
                page.get_by_label("Security").select_option(label="None")
                page.get_by_label("Username").fill("")
                page.get_by_label("From").fill("me@example.com")
            page.evaluate("""text => { const el = document.querySelector('#paste'); el.value = text;
                el.dispatchEvent(new Event('input', {bubbles: true})); }""",
                          "\n".join(f"user{i}@example.org" for i in range(n)))
            page.click("#use-paste")
            page.wait_for_function("document.querySelector('#recipients-summary').textContent.includes('valid')",
                                   timeout=120_000)
            page.fill("#subject", "Hello {{ email }}")
            page.fill("#message", "<p>Hi {{ email }}</p>")
            page.fill("#delay", "0")
            page.fill("#connections", str(args.connections if sink is not None else 1))
            page.evaluate(WATCH)
            started = time.perf_counter()
            page.click("#send")
            page.wait_for_function("document.body.dataset.campaignState === 'finished'", timeout=1_800_000)
            page.wait_for_function(
                f"Number(document.querySelector('#log-table').getAttribute('aria-rowcount')) >= {n + 1}",
                timeout=120_000)
            elapsed = time.perf_counter() - started
            frames = page.evaluate("window.__frames")
            rows = int(page.evaluate("document.querySelector('#log-table').getAttribute('aria-rowcount')")) - 1
            counts = page.evaluate("document.querySelector('#counts').textContent")
            summary = page.evaluate("document.querySelector('#summary .summary-counts').textContent")
            heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0")
            time.sleep(3)  # the run's last work (journal, summary, garbage collection) settles first
            scrolled = page.evaluate(SCROLL)
            browser.close()
    finally:
        web.stop(webapp, server)
        if sink is not None:
            sink.stop()
    t0 = deliveries[0] if deliveries else 0
    busiest = max((sum(1 for t in deliveries if s <= t < s + 1) for s in deliveries), default=0)
    where = (f"smtp-sink, {args.connections} connections" if sink is not None
             else f"the local test inbox, received {len(inbox.messages())}")
    print(f"recipients            {n}  ({where})")
    print(f"campaign + UI time    {elapsed:.1f} s  ({n / elapsed:.0f} messages/s end to end)")
    print(f"event deliveries      {len(deliveries)}  ({events} events, {len(deliveries) / elapsed:.1f} deliveries/s "
          f"on average, {busiest} in the busiest second; span {deliveries[-1] - t0 if deliveries else 0:.1f} s)")
    print(f"log rows at the end   {rows}  (rows rendered as elements after scrolling: {scrolled['rendered']}, "
          f"last one #{scrolled['last']})")
    print(f"counters              {counts.strip()}")
    print(f"summary               {summary.strip()}")
    print(f"frame gaps, sending   {gaps_line(frames[1:])}")
    print(f"frame gaps, scrolling {gaps_line(scrolled['gaps'])} (top to bottom in 300 steps)")
    print(f"page JS heap          {heap / 2**20:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
