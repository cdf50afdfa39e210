"""Run in a subprocess by test_window.py: open the real pywebview window and drive it from JS.

Prints one JSON line with what the page saw, then closes the window. One window per process:
a second webview.start() in one process crashes Qt.
"""

from __future__ import annotations

import json
import sys
import time

from backend.credentials import EncryptedFileStore
from backend.inbox import LocalInbox
from bridge import Bridge, open_window

JS_SETUP = """
window.__got = []; window.__states = [];
window.addEventListener('email-progress', function (e) { window.__got.push(e.detail); });
window.addEventListener('campaign-state', function (e) { window.__states.push(e.detail.state); });
window.__imported = null; window.__started = null;
window.pywebview.api.import_recipients_text({text: 'email,name\\na@example.org,Ann\\nb@example.org,Bob'})
  .then(function (r) {
    window.__imported = r;
    return window.pywebview.api.start_campaign({
      account: {provider: 'local-inbox', from_address: 'Me <me@example.com>'},
      message: {subject: 'Hi {{ name }}', body: '<p>Hello {{ name }}</p>', format: 'html'},
      delay_ms: 0});
  }).then(function (r) { window.__started = r; });
true
"""


def drive(window, bridge: Bridge) -> None:
    result: dict = {}
    started = time.monotonic()
    try:
        if not window.events.loaded.wait(60):
            raise RuntimeError("the page did not load")
        result["load_seconds"] = round(time.monotonic() - started, 2)
        result["title"] = window.evaluate_js("document.title")
        result["labels"] = window.evaluate_js(
            "Array.from(document.querySelectorAll('label')).map(function (l) { return l.textContent.trim(); })")
        window.evaluate_js(JS_SETUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = window.evaluate_js("window.__states")
            if states and states[-1] in ("finished", "failed", "cancelled"):
                break
            time.sleep(0.1)
        result["imported"] = window.evaluate_js("window.__imported")
        result["started"] = window.evaluate_js("window.__started")
        result["events"] = window.evaluate_js("window.__got")
        result["states"] = window.evaluate_js("window.__states")
        result["inbox"] = [m.summary()["subject"] for m in bridge._inbox.messages()]
    except Exception as exc:  # reported to the test, which fails with it
        result["error"] = repr(exc)
    finally:
        print(json.dumps(result), flush=True)
        window.destroy()


def main() -> int:
    bridge = Bridge(native_dialogs=True, inbox=LocalInbox(), store=EncryptedFileStore())
    return open_window(bridge, on_started=drive)


if __name__ == "__main__":
    sys.exit(main())
