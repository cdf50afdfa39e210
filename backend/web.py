"""Browser mode: bottle serves frontend/, the Bridge's methods (POST /api/<method>) and its
events (Server-Sent Events), on 127.0.0.1 only, guarded by a random per-run token.

The token never appears on a command line (every local user can read those): the browser is
opened on a private file (mode 0600, in a 0700 folder of the app's) that sends it on to the
app's address with a one-time code, which the page swaps for the token within CODE_TTL_S.
The address with the token itself is printed only to the user's own terminal.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import queue
import re
import secrets
import socket
import sys
import threading
import time
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

from backend import paths
from backend.errors import MailerError, SettingsError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
# Above the largest legitimate request: a recipient file of bridge.MAX_FILE (50 MB) sent as
# base64 (~67 MB). Anything bigger is refused before it is read.
MAX_BODY = 80_000_000
CODE_TTL_S = 30.0  # a launch code works once, and only this long after it was issued
LAUNCH_PREFIX = "open-"  # the launch pages' names in their folder
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


_SECRET_QUERY = re.compile(r"\b(token|code)=[^\s&\"]+")


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # an open event stream must not keep the process alive


class _QuietHandler(WSGIRequestHandler):
    timeout = 60  # an idle connection must not hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        # The event stream's request line carries the token (?token=...): never into the log.
        log.debug("http: %s", _SECRET_QUERY.sub(r"\1=...", format % args))


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
        self.clock = time.monotonic  # when launch codes were issued and are redeemed
        self._lock = threading.Lock()
        self._codes: dict[str, float] = {}  # one-time launch code -> when it was issued
        self._launch_pages: dict[str, Path] = {}  # launch code -> the private page carrying it
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
        """The address with a one-time code the page swaps for the token: it works once, and
        only within CODE_TTL_S of now. Still a secret until then: never put it on a command
        line (other local users can read those); the browser gets launch_page() instead."""
        self._forget_expired()
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = self.clock()
        return f"http://{HOST}:{self.port}/#code={code}"

    def launch_page(self, folder: Path) -> Path:
        """A page that sends the browser on to launch_url(), written to `folder` for this user
        only (file 0600, folder 0700, no link followed). Its name may go on a command line;
        it is deleted when its code is used, when the code expires, and at exit."""
        url = self.launch_url()
        code = url.split("#code=", 1)[1]
        remove_stale_pages(folder)
        page = write_private(folder, f"{LAUNCH_PREFIX}{secrets.token_hex(8)}.html", redirect_page(url))
        with self._lock:
            self._launch_pages[code] = page
        timer = threading.Timer(CODE_TTL_S + 1, self._forget_expired)
        timer.daemon = True
        timer.start()
        return page

    def forget_launch_pages(self) -> None:
        """Delete every launch page not yet used (at exit)."""
        with self._lock:
            pages = list(self._launch_pages.values())
            self._launch_pages.clear()
            self._codes.clear()
        for page in pages:
            page.unlink(missing_ok=True)

    def _forget_expired(self) -> None:
        now = self.clock()
        with self._lock:
            old = [code for code, issued in self._codes.items() if now - issued > CODE_TTL_S]
            for code in old:
                del self._codes[code]
            pages = [self._launch_pages.pop(code) for code in old if code in self._launch_pages]
        for page in pages:
            page.unlink(missing_ok=True)

    def _session(self) -> Any:
        self._check_host()
        params = self._params()
        code = params.get("code") if isinstance(params, dict) else None
        issued = None
        if isinstance(code, str):
            with self._lock:  # a code is spent by its first use, whatever the outcome
                issued = self._codes.pop(code, None)
                page = self._launch_pages.pop(code, None)
            if page is not None:
                page.unlink(missing_ok=True)
        if issued is None or self.clock() - issued > CODE_TTL_S:
            bottle.abort(403, "unknown, used or expired code")
        bottle.response.content_type = "application/json"
        return json.dumps({"token": self.token})

    def _body(self) -> bytes:
        request = bottle.request
        if "chunked" in (request.get_header("Transfer-Encoding") or "").lower():
            raise refusal(411, SettingsError("params", "the request has no Content-Length (chunked bodies "
                                             "are not accepted)"))
        size = request.content_length or 0
        if size > MAX_BODY:
            raise refusal(413, SettingsError(
                "params", f"the request is {size / 1e6:.1f} MB, more than the {MAX_BODY // 1_000_000} MB "
                "a request may carry", fix=("Use a recipient file of at most 50 MB: split a bigger "
                                            "list into several files and send them one after another.",)))
        if not (request.content_type or "").startswith("application/json"):
            raise refusal(415, SettingsError("params", "the request must be JSON (Content-Type: application/json)"))
        return request.body.read(MAX_BODY + 1)

    def _params(self) -> Any:
        """The request's JSON; anything that does not parse (broken, not UTF-8, or nested too
        deeply for the parser: a RecursionError) is a 400 in the bridge's error shape."""
        body = self._body()
        try:
            return json.loads(body or b"null")
        except RecursionError:
            problem = "is nested too deeply"
        except ValueError:  # broken JSON, or bytes that are not text
            problem = "is not valid JSON"
        log.info("http: refused a request to %s: its body %s", bottle.request.path, problem)
        raise refusal(400, SettingsError("params", f"the request {problem}; nothing was done"))

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
        html = links_open_nowhere(html)
        return in_dark(html) if bottle.request.query.get("dark") == "1" else html

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
        params = self._params()
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


_OPENINGS = tuple(re.compile(p, re.IGNORECASE) for p in (r"<head\b[^>]*>", r"<html\b[^>]*>", r"<!doctype[^>]*>"))
DARK_META = '<meta name="color-scheme" content="dark">'


def in_dark(html: str) -> str:
    """The preview as a mail app in dark mode shows it: the document's colour scheme dark (a
    message without colours of its own gets a dark background and light text; one that sets
    its own keeps them, as mail apps do). The meta goes first in <head> (after <head>, else
    <html>, else the doctype), where the first one counts; nothing else of the message changes."""
    for opening in _OPENINGS:
        found = opening.search(html, 0, 20_000)
        if found:
            return html[:found.end()] + DARK_META + html[found.end():]
    return DARK_META + html


def refusal(status: int, error: MailerError) -> bottle.HTTPResponse:
    """An HTTP error answered in the bridge's shape ({"ok": false, "error": {...}}), so the page
    shows it like any other error."""
    return bottle.HTTPResponse(json.dumps({"ok": False, "error": error.describe()}), status,
                               {"Content-Type": "application/json"})


def redirect_page(url: str) -> bytes:
    """A page that replaces itself with `url` at once (a script, and a meta refresh for a
    browser without scripts), with a link for a browser that does neither."""
    script = json.dumps(url).replace("<", "\\u003c").replace(">", "\\u003e")
    link = escape(url, quote=True)
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8">\n'
            f'<meta http-equiv="refresh" content="0;url={link}">\n<title>Bulk Mailer</title>\n'
            f"<script>window.location.replace({script});</script>\n</head>\n"
            f'<body><p>Opening Bulk Mailer&hellip; <a href="{link}">Continue</a></p></body></html>\n').encode()


def write_private(folder: Path, name: str, data: bytes) -> Path:
    """Write a new file `name` in `folder` that only this user can read (0600, in a folder of
    this user's set to 0700). Neither the folder nor the file may be a link, and the file must
    not exist yet (O_EXCL): nothing planted there is followed or reused."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    new = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    if os.name == "nt":  # a user's own profile folder; no links to follow, no modes to set
        with os.fdopen(os.open(folder / name, new | getattr(os, "O_BINARY", 0), 0o600), "wb") as fh:
            fh.write(data)
        return folder / name
    dfd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(dfd).st_uid != os.geteuid():
            raise MailerError(f"The folder {folder} belongs to another user, so a page written there "
                              "could be read or replaced by them.", category="file_error",
                              fix=(f"Remove {folder} (Bulk Mailer creates it again for you alone).",))
        os.fchmod(dfd, 0o700)
        fd = os.open(name, new, 0o600, dir_fd=dfd)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except BaseException:
            os.unlink(name, dir_fd=dfd)
            raise
    finally:
        os.close(dfd)
    return folder / name


def remove_stale_pages(folder: Path) -> None:
    """Delete launch pages left by runs that ended without cleaning up (their codes are long
    expired); pages of other runs still within their time are left alone."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not (entry.name.startswith(LAUNCH_PREFIX) and entry.name.endswith(".html")):
            continue
        try:
            if time.time() - entry.stat(follow_symlinks=False).st_mtime > 2 * CODE_TTL_S:
                os.unlink(entry.path)
        except OSError:
            pass


def open_browser_on(webapp: WebApp, folder: Path | None = None, browser: Any = webbrowser.open) -> bool:
    """Open the user's browser on a private launch page (only its file name goes on the
    browser's command line), in `folder`, by default the app's data folder's "launch".
    False, with a word on stderr, when no browser could be started."""
    try:
        page = webapp.launch_page(folder or paths.data_dir() / "launch")
    except (OSError, MailerError) as exc:
        print(f"bulk-mailer: could not write the page that opens your browser ({exc}); "
              "open the address above in your browser.", file=sys.stderr)
        return False
    if browser(page.as_uri()):
        return True
    print("bulk-mailer: no browser could be started: open the address above in your browser.", file=sys.stderr)
    return False


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
    """Stop serving, close event streams and delete launch pages not used."""
    webapp.forget_launch_pages()
    webapp.subscribers.close()
    server.shutdown()
    server.server_close()
    webapp.face.shutdown()


def serve(bridge_factory: Any, frontend: Path, *, port: int = 0, open_browser: bool = True,
          launch_folder: Path | None = None) -> int:
    """Serve until Ctrl-C. The address with the token is printed on one line to stdout (the
    user's own terminal) for when no browser opens; the browser is given only the name of a
    private launch page (in launch_folder, by default the app's data folder's "launch")."""
    webapp, server, thread = start(bridge_factory, frontend, port)
    print(webapp.url, flush=True)
    try:
        if open_browser:
            open_browser_on(webapp, launch_folder)
        thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        stop(webapp, server)
    return 0
