"""Run in a subprocess by test_window.py: open the real pywebview window and drive it from JS.

Prints one JSON line with what the page saw, then closes the window. One window per process:
a second webview.start() in one process crashes Qt.
"""

from __future__ import annotations

import faulthandler
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
        result["inbox"] = [m.summary()["subject"] for m in bridge._app.inbox.messages()]
    except Exception as exc:  # reported to the test, which fails with it
        result["error"] = repr(exc)
    finally:
        report(window, result)


def report(window, result: dict) -> None:
    """Print the one JSON line for the test, then close the window."""
    print(json.dumps(result), flush=True)
    # Closing must not hang; if it does, every thread's stack goes to stderr for the test.
    faulthandler.dump_traceback_later(60, exit=True)
    window.destroy()


def _js(window, script: str):
    return window.evaluate_js(script)


def _until(window, script: str, seconds: float = 30):
    """Poll a JS expression until it is truthy; its value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = _js(window, script)
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {script}")


def _click(window, selector: str) -> None:
    _js(window, f"document.querySelector({json.dumps(selector)}).click(); true")


def _fill(window, selector: str, value: str) -> None:
    _js(window, f"""(function () {{ var el = document.querySelector({json.dumps(selector)}); el.value = {json.dumps(value)};
        el.dispatchEvent(new Event('input', {{bubbles: true}})); el.dispatchEvent(new Event('change', {{bubbles: true}}));
        return true; }})()""")


def walk(window, bridge: Bridge) -> None:
    """One campaign through the four steps, by the buttons a user clicks: Next, Next, Next, Send."""
    result: dict = {"views": []}
    try:
        if not window.events.loaded.wait(60):
            raise RuntimeError("the page did not load")
        _until(window, "document.body.dataset.ready === 'true'")
        view = "document.body.dataset.view"
        result["views"].append(_js(window, view))
        _click(window, 'section[data-view="account"] .step-next')
        result["views"].append(_js(window, view))
        _fill(window, "#paste", "email,name\nann@example.org,Ann\nbob@example.org,Bob")
        _click(window, "#use-paste")
        _until(window, "document.querySelector('#recipients-summary').textContent.indexOf('2 valid') >= 0")
        _click(window, 'section[data-view="recipients"] .step-next')
        result["views"].append(_js(window, view))
        _fill(window, "#subject", "Hi {{ name }}")
        _fill(window, "#message", "<p>Hello {{ name }}</p>")
        _click(window, 'section[data-view="message"] .step-next')
        result["views"].append(_js(window, view))
        _until(window, "!!document.querySelector('#review-ready') && !document.querySelector('#send').disabled")
        result["steps"] = _js(window, "Array.from(document.querySelectorAll('.nav-step')).map(function (s) "
                                      "{ return [s.dataset.step, s.dataset.state, s.querySelector('.step-summary-text').textContent]; })")
        _click(window, "#send")
        result["confirm"] = _until(window, "document.querySelector('#send-confirm') && "
                                           "document.querySelector('#send-confirm .confirm-question').textContent")
        _click(window, "#confirm-send")
        _until(window, "document.body.dataset.campaignState === 'finished'")
        result["state_line"] = _js(window, "document.querySelector('#send-state').textContent")
        result["inbox"] = [m.summary()["subject"] for m in bridge._app.inbox.messages()]
    except Exception as exc:  # reported to the test, which fails with it
        result["error"] = repr(exc)
    finally:
        report(window, result)


class _Recorder(BaseHTTPRequestHandler):
    """Another origin on 127.0.0.1: records every request that reaches it."""

    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<title>elsewhere</title>")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


JS_ESCAPE = """
(function (o) {
  function add(tag, attrs) { var e = document.createElement(tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]); document.body.appendChild(e); }
  add('img', {src: o + '/image.png'});
  add('link', {rel: 'stylesheet', href: o + '/style.css'});
  add('script', {src: o + '/script.js'});
  add('iframe', {src: o + '/frame.html'});
  try { new FontFace('Elsewhere', 'url(' + o + '/font.woff2)').load().catch(function () {}); } catch (e) {}
  fetch(o + '/fetch').catch(function () {});
  setTimeout(function () { location.href = o + '/navigated.html'; }, 300);
  return true;
})(%s)
"""


def guard(window, bridge: Bridge) -> None:
    """Try to load from and navigate to another origin; report what got through."""
    result: dict = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    other = f"http://127.0.0.1:{server.server_port}"
    try:
        if not window.events.loaded.wait(60):
            raise RuntimeError("the page did not load")
        deadline = time.monotonic() + 30
        while window.evaluate_js("document.body.dataset.ready") != "true":
            if time.monotonic() > deadline:
                raise RuntimeError("the UI did not get ready")
            time.sleep(0.05)
        result["origin"] = window.evaluate_js("location.origin")
        window.evaluate_js("window.__marker = 'still the same page'; true")
        window.evaluate_js(JS_ESCAPE % json.dumps(other))
        time.sleep(2.5)
        result["after_origin"] = window.evaluate_js("location.origin")
        result["marker"] = window.evaluate_js("window.__marker || null")
        result["title"] = window.evaluate_js("document.title")
        result["hits"] = list(_Recorder.hits)
    except Exception as exc:
        result["error"] = repr(exc)
    finally:
        server.shutdown()
        print(json.dumps(result), flush=True)
        # Closing must not hang; if it does, every thread's stack goes to stderr for the test.
        faulthandler.dump_traceback_later(60, exit=True)
        window.destroy()


def strict_csp(window, bridge: Bridge) -> None:
    """With the browser-mode policy (no 'unsafe-eval'): does pywebview's bridge still come up?"""
    result: dict = {}
    try:
        result["loaded"] = window.events.loaded.wait(60)
        time.sleep(3)  # time enough for the UI to start if it can
        result["api_type"] = window.run_js(
            "typeof (window.pywebview && window.pywebview.api && window.pywebview.api.app_info)")
        result["ready"] = window.run_js("document.body.dataset.ready || 'no'")
        try:
            result["eval"] = window.evaluate_js("1 + 1")
        except Exception as exc:  # pywebview's evaluate_js wraps the script in eval()
            result["eval_error"] = repr(exc)
    except Exception as exc:
        result["error"] = repr(exc)
    finally:
        print(json.dumps(result), flush=True)
        # Closing must not hang; if it does, every thread's stack goes to stderr for the test.
        faulthandler.dump_traceback_later(60, exit=True)
        window.destroy()


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "campaign"
    if mode == "strict-csp":
        from backend import web

        web.WINDOW_CSP = web.CSP
    bridge = Bridge(native_dialogs=True, inbox=LocalInbox(), store=EncryptedFileStore())
    return open_window(bridge, on_started={"campaign": drive, "guard": guard, "strict-csp": strict_csp,
                                                 "steps": walk}[mode])


if __name__ == "__main__":
    sys.exit(main())
