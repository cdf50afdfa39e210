"""Browser mode: bottle serves frontend/, the Bridge's methods (POST /api/<method>) and its
events (Server-Sent Events), on 127.0.0.1 only, guarded by a random per-run token."""

from __future__ import annotations

import hmac
import json
import logging
import queue
import re
import secrets
import socket
import threading
import webbrowser
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bottle

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
MAX_BODY = 80_000_000  # an uploaded recipient file, base64
# A message preview: its own inline styles and embedded images, nothing else (no scripts, no
# remote images or fonts that would tell a sender the preview was opened), framed only by us.
PREVIEW_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
               "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-src 'self' about: data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
# The desktop window's page: the same, plus 'unsafe-eval' for pywebview's own JavaScript, which
# builds window.pywebview.api with `new Function` and runs every evaluate_js (our event
# deliveries) through eval(); without it the bridge never appears (tests/test_window.py shows
# it). Our own code uses neither. No 'unsafe-inline' anywhere.
WINDOW_CSP = CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-eval'")


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # an open event stream must not keep the process alive


class _QuietHandler(WSGIRequestHandler):
    timeout = 60  # an idle connection must not hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        log.debug("http: " + format, *args)


class Subscribers:
    """Event batches fanned out to every open event stream."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: list[queue.Queue[list[dict[str, Any]] | None]] = []

    def deliver(self, batch: list[dict[str, Any]]) -> None:
        with self._lock:
            for q in self._queues:
                q.put(batch)

    def add(self) -> queue.Queue[list[dict[str, Any]] | None]:
        q: queue.Queue[list[dict[str, Any]] | None] = queue.Queue()
        with self._lock:
            self._queues.append(q)
        return q

    def remove(self, q: queue.Queue[list[dict[str, Any]] | None]) -> None:
        with self._lock:
            if q in self._queues:
                self._queues.remove(q)

    def close(self) -> None:
        with self._lock:
            for q in self._queues:
                q.put(None)


@dataclass(frozen=True)
class Face:
    """What browser mode serves, handed over at construction: the API's methods by name (one
    JSON object in, a JSON-able answer out), previews by id, and the event pump's start and end."""

    methods: dict[str, Callable[[Any], Any]]
    preview: Callable[[str], str | None]
    ready: Callable[[], None]
    shutdown: Callable[[], None]
    owner: Any = None  # the object behind it (the window's Bridge)


class WebApp:
    """The bottle app around one Face; `url` carries the token in its fragment."""

    def __init__(self, face: Face, frontend: Path, subscribers: Subscribers, token: str | None = None,
                 *, for_window: bool = False) -> None:
        self.face = face
        self.bridge = face.owner
        # Only the window's page gets 'unsafe-eval' (see WINDOW_CSP); a browser's does not.
        self.csp = WINDOW_CSP if for_window else CSP
        self.frontend = frontend
        self.subscribers = subscribers
        self.token = token or secrets.token_urlsafe(32)
        self.port = 0
        self.app = bottle.Bottle()
        self._codes: set[str] = set()
        self.app.route("/", "GET", self._index)
        self.app.route("/session", "POST", self._session)
        self.app.route("/api/events", "GET", self._events)
        self.app.route("/preview/<pid>", "GET", self._preview)
        self.app.route("/api/<method>", "POST", self._call)
        self.app.route("/<path:path>", "GET", self._static)
        self.app.add_hook("after_request", self._headers)
        self._methods = set(face.methods)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/#token={self.token}"

    def launch_url(self) -> str:
        """A URL for the browser's command line (readable by other local users): a one-time
        code the page swaps for the token, so the token itself never appears there."""
        code = secrets.token_urlsafe(32)
        self._codes.add(code)
        return f"http://{HOST}:{self.port}/#code={code}"

    def _session(self) -> Any:
        self._check_host()
        try:
            code = json.loads(self._body()).get("code")
        except (ValueError, AttributeError):
            code = None
        if not isinstance(code, str) or code not in self._codes:
            bottle.abort(403, "unknown or used code")
        self._codes.discard(code)
        bottle.response.content_type = "application/json"
        return json.dumps({"token": self.token})

    def _body(self) -> bytes:
        request = bottle.request
        if "chunked" in (request.get_header("Transfer-Encoding") or "").lower():
            bottle.abort(411, "a Content-Length is required")
        if (request.content_length or 0) > MAX_BODY:
            bottle.abort(413, "request too large")
        if not (request.content_type or "").startswith("application/json"):
            bottle.abort(415, "JSON only")
        return request.body.read(MAX_BODY + 1)

    def _headers(self) -> None:
        r = bottle.response
        preview = bottle.request.path.startswith("/preview/")
        r.set_header("Content-Security-Policy", PREVIEW_CSP if preview else self.csp)
        r.set_header("X-Content-Type-Options", "nosniff")
        r.set_header("Referrer-Policy", "no-referrer")
        r.set_header("Cache-Control", "no-store")
        r.set_header("X-Frame-Options", "SAMEORIGIN" if preview else "DENY")

    def _preview(self, pid: str) -> Any:
        # The id is a random 32-byte secret handed only to the page that asked for the preview.
        self._check_host()
        html = self.face.preview(pid)
        if html is None:
            bottle.abort(404, "no such preview")
        bottle.response.content_type = "text/html; charset=utf-8"
        return links_open_nowhere(html)

    def _check_host(self) -> None:
        # A page on another site that rebinds its DNS name to 127.0.0.1 still sends its own Host.
        host = bottle.request.get_header("Host", "")
        if host not in (f"{HOST}:{self.port}", f"localhost:{self.port}"):
            bottle.abort(403, "wrong host")

    def _check_token(self, given: str | None) -> None:
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            bottle.abort(403, "missing or wrong token")

    def _index(self) -> Any:
        self._check_host()
        return bottle.static_file("index.html", root=str(self.frontend))

    def _static(self, path: str) -> Any:
        self._check_host()
        return bottle.static_file(path, root=str(self.frontend))

    def _call(self, method: str) -> Any:
        self._check_host()
        self._check_token(bottle.request.get_header("X-Token"))
        if method not in self._methods:
            bottle.abort(404, "no such method")
        body = self._body()
        try:
            params = json.loads(body or b"null")
        except ValueError:
            params = "not JSON"  # answered as a structured error by the bridge
        result = self.face.methods[method](params)
        bottle.response.content_type = "application/json"
        return json.dumps(result)

    def _events(self) -> Iterator[bytes]:
        self._check_host()
        self._check_token(bottle.request.query.get("token"))
        bottle.response.content_type = "text/event-stream"
        bottle.response.set_header("X-Accel-Buffering", "no")
        q = self.subscribers.add()

        def stream() -> Iterator[bytes]:
            try:
                yield b": connected\n\n"
                while True:
                    try:
                        batch = q.get(timeout=15)
                    except queue.Empty:
                        yield b": keep-alive\n\n"
                        continue
                    if batch is None:
                        return
                    yield b"data: " + json.dumps(batch).encode() + b"\n\n"
            finally:
                self.subscribers.remove(q)

        return stream()


class _LinkTags(HTMLParser):
    """Finds where each link (<a>, <area>) start tag of a document is, with its attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, int, str, list[tuple[str, str | None]]]] = []  # line, col, tag, attrs

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("a", "area"):
            line, col = self.getpos()
            self.found.append((line, col, tag, attrs))

    handle_startendtag = handle_starttag


def links_open_nowhere(html: str) -> str:
    """A message's HTML for its preview, every link aimed at a new window (target=_blank).

    The preview frame is sandboxed without allow-popups or allow-top-navigation, so such a
    link opens nothing when clicked, and the preview stays as it is (a link to the frame
    itself would otherwise replace the preview). Only the targets change: the message looks
    the same, and what is sent is never touched.
    """
    parser = _LinkTags()
    try:
        parser.feed(html)
        parser.close()
    except AssertionError:  # html.parser gives up on some broken markup: then change nothing
        return html
    if not parser.found:
        return html
    starts = [0] + [m.end() for m in re.finditer("\n", html)]  # html.parser counts lines by \n
    out, done = [], 0
    for line, col, tag, attrs in parser.found:
        begin, end = starts[line - 1] + col, -1
        quote = None  # the tag ends at the first '>' outside quotes
        for i in range(begin, len(html)):
            ch = html[i]
            if quote:
                quote = None if ch == quote else quote
            elif ch in "\"'":
                quote = ch
            elif ch == ">":
                end = i
                break
        if end < begin:
            break
        kept = "".join(f' {name}="{escape(value, quote=True)}"' if value is not None else f" {name}"
                       for name, value in attrs if name not in ("target", "rel"))
        out.append(html[done:begin] + f'<{tag}{kept} target="_blank" rel="noopener noreferrer">')
        done = end + 1
    out.append(html[done:])
    return "".join(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start(face_factory: Callable[[Callable[[list[dict[str, Any]]], None]], Face], frontend: Path, port: int = 0, *,
          for_window: bool = False) -> tuple[WebApp, WSGIServer, threading.Thread]:
    """Start serving on a background thread (browser mode, tests, and the window's pages);
    face_factory(deliver) makes the Face, given where events go."""
    subscribers = Subscribers()
    face = face_factory(subscribers.deliver)
    webapp = WebApp(face, frontend, subscribers, for_window=for_window)
    server = make_server(HOST, port or _free_port(), webapp.app, server_class=_Server, handler_class=_QuietHandler)
    webapp.port = server.server_port
    if not for_window:  # the window's pump starts when its page has loaded
        face.ready()
    thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    thread.start()
    return webapp, server, thread


def stop(webapp: WebApp, server: WSGIServer) -> None:
    """Stop serving and close event streams."""
    webapp.subscribers.close()
    server.shutdown()
    server.server_close()
    webapp.face.shutdown()


def serve(bridge_factory: Any, frontend: Path, *, port: int = 0, open_browser: bool = True) -> int:
    """Serve until Ctrl-C, printing the URL (with its token) on one line."""
    webapp, server, thread = start(bridge_factory, frontend, port)
    print(webapp.url, flush=True)
    if open_browser:
        webbrowser.open(webapp.launch_url())
    try:
        thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        stop(webapp, server)
    return 0
