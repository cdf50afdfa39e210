"""The desktop window's own rules and its self-check.

``guard_qt(origin)`` makes Qt WebEngine load nothing but the app's own pages: every request
to another origin is blocked (scripts, styles, fonts, images, frames), and a navigation of the
window or of a frame to another origin is refused, so the page can never be replaced by a
remote one. The Content-Security-Policy says the same; this holds even if the page's policy
were lost. New windows (target=_blank, window.open) are pywebview's: they open in the system
browser, and the sandboxed message previews cannot ask for them.

``self_check`` is ``bulk-mailer --self-test``: it opens the real window, waits until the UI
has loaded and talked to Python, asks the bridge once more from the page, prints one JSON line
and closes. It takes no input, so it opens nothing to anyone.
"""

from __future__ import annotations

import ctypes.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("bulk_mailer.window")

# Schemes a page of the app uses without a request leaving it: inline images (img-src data:),
# empty frames, object URLs, and Qt's built-in QWebChannel script.
_LOCAL_SCHEMES = ("data:", "about:", "blob:", "qrc:")
_origin = [""]  # the app's origin, for the guard (one window per process)


def allowed_url(url: str, origin: str) -> bool:
    """True for the app's own origin (exactly: scheme, host and port) and local-only schemes."""
    return url.startswith(_LOCAL_SCHEMES) or url == origin or url.startswith(origin + "/")


def guard_qt(origin: str) -> None:
    """Install the request and navigation guard into pywebview's Qt backend (before start)."""
    from webview.platforms import qt as qt_platform

    view = qt_platform.BrowserView
    _origin[0] = origin
    if getattr(view.WebPage, "_bulk_mailer_guarded", False):
        return
    # Methods set on pywebview's own classes (before any page exists), not subclasses: its code
    # names these classes in super() calls. PyQt calls a Python method of that name in place
    # of Qt's virtual one.
    passthrough = view.RequestInterceptor.interceptRequest

    def intercept_request(self: Any, info: Any) -> None:
        url = info.requestUrl().toString()
        if not allowed_url(url, _origin[0]):
            log.warning("blocked a request to another origin: %.200s", url)
            info.block(True)
            return
        passthrough(self, info)

    def accept_navigation_request(self: Any, url: Any, kind: Any, is_main_frame: bool) -> bool:
        target = url.toString()
        if allowed_url(target, _origin[0]):
            return True
        log.warning("refused to navigate %s to %.200s", "the window" if is_main_frame else "a frame", target)
        return False

    view.RequestInterceptor.interceptRequest = intercept_request
    view.WebPage.acceptNavigationRequest = accept_navigation_request
    view.WebPage._bulk_mailer_guarded = True


# -- bulk-mailer --self-test ---------------------------------------------------------------

_ASK_BRIDGE = (
    "window.__selfTest = null;"
    "window.pywebview.api.app_info().then(function (r) { window.__selfTest = r; },"
    " function (e) { window.__selfTest = {ok: false, error: {message: String(e)}}; }); true"
)
_ORIGINS = (
    "Array.from(new Set(performance.getEntriesByType('resource')"
    ".map(function (e) { return new URL(e.name).origin; })))"
)


def _poll(window: Any, script: str, deadline: float) -> Any:
    while time.monotonic() < deadline:
        value = window.evaluate_js(script)
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for: {script}")


def self_test(open_window: Any, problem: str | None) -> int:
    """bulk-mailer --self-test: 0 when the window opened and the UI answered; a window that
    cannot start fails it, saying why, in the same JSON line."""
    result: dict[str, Any] = {"ok": False, "error": problem}
    if problem:
        print(json.dumps(result), flush=True)
    else:
        open_window(on_started=lambda window, bridge: self_check(window, result))
    return 0 if result.get("ok") else 1


def self_check(window: Any, result: dict[str, Any], *, timeout: float = 60.0) -> None:
    """Run by webview.start on its own thread: fill result, print it as JSON, close the window."""
    from backend import __version__

    deadline = time.monotonic() + timeout
    try:
        if not window.events.loaded.wait(timeout):
            raise TimeoutError("the page did not load")
        # app.js sets data-ready once app_info and load_settings came back over the bridge.
        _poll(window, "document.body && document.body.dataset.ready === 'true'", deadline)
        result["ui_ready_at"] = time.time()
        window.evaluate_js(_ASK_BRIDGE)
        answer = _poll(window, "window.__selfTest", deadline)
        result.update({
            "title": window.evaluate_js("document.title"),
            "origin": window.evaluate_js("location.origin"),
            "resource_origins": window.evaluate_js(_ORIGINS),
            "version_shown": window.evaluate_js("document.getElementById('version').textContent"),
            "bridge_ok": bool(answer.get("ok")),
            "bridge_version": (answer.get("data") or {}).get("version"),
            "version": __version__,
            "frozen": bool(getattr(sys, "frozen", False)),
        })
        result["ok"] = (result["bridge_ok"] and result["bridge_version"] == __version__
                        and __version__ in (result["version_shown"] or ""))
    except Exception as exc:  # reported in the JSON line and by the exit code
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        print(json.dumps(result), flush=True)
        window.destroy()


# -- can the window open here? ---------------------------------------------------------------

PROBE_FLAG = "--probe-window"
PROBE_TIMEOUT_S = 30.0
# "libxcb-icccm.so.4: cannot open shared object file", or ldd's "libxcb-icccm.so.4 => not found"
_MISSING_LIB = re.compile(r"(lib[\w.+-]+?)\.so\.(\d+)(?:\.[\d.]*)?(?::\s*cannot open shared object file| => not found)")
# Qt 6.5+: "xcb-cursor0 or libxcb-cursor0 is needed to load the Qt xcb platform plugin"
_NEEDED = re.compile(r"\b(lib[\w-]+?\d+) is needed to load the Qt (\w+) platform plugin")


def has_display() -> bool:
    """Whether a window could be shown at all (Linux: a display, or Qt's offscreen platform)."""
    if sys.platform != "linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM") in ("offscreen", "minimal"))


def probe_main() -> int:
    """In a child process: start Qt's GUI as the window would (the platform plugin, WebEngine's
    libraries). Qt aborts the process when it cannot: the parent sees the exit code."""
    from PyQt6.QtWidgets import QApplication

    QApplication([sys.argv[0]])
    from PyQt6 import QtWebEngineWidgets  # noqa: F401 - its libraries must load too

    return 0


def debian_package(library: str, version: str) -> str:
    """Debian's package for a shared library: libxcb-icccm.so.4 -> libxcb-icccm4,
    libxkbcommon-x11.so.0 -> libxkbcommon-x11-0."""
    return f"{library}{'-' if library[-1].isdigit() else ''}{version}"


def missing_packages(output: str, plugin: Path | None = None) -> list[str]:
    """The packages Qt's messages (and ldd on its platform plugin) say are missing, in order."""
    # Qt says this whenever xcb fails to load, also when the library is there: only if it is not.
    found = [m.group(1) for m in _NEEDED.finditer(output)
             if not ctypes.util.find_library(re.sub(r"^lib|-?\d+$", "", m.group(1)))]
    text = output
    ldd = shutil.which("ldd")
    if plugin is not None and plugin.exists() and ldd:
        try:  # every library the plugin lacks (the loader's message names only the first)
            text += subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=10).stdout  # noqa: S603
        except (OSError, subprocess.SubprocessError):
            pass
    found += [debian_package(m.group(1), m.group(2)) for m in _MISSING_LIB.finditer(text)]
    return list(dict.fromkeys(found))


def _xcb_plugin() -> Path | None:
    try:
        import PyQt6
    except ImportError:
        return None
    return Path(PyQt6.__file__).parent / "Qt6" / "plugins" / "platforms" / "libqxcb.so"


def window_problem(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the desktop window can start here; else why not, in words, naming the packages
    to install when Qt tells. Qt aborts the process it fails in, so it is tried in a child."""
    if getattr(sys, "frozen", False):
        command = [sys.executable, PROBE_FLAG]
    else:
        command = [sys.executable, "-c", "import sys, appwindow; sys.exit(appwindow.probe_main())"]
    env = {**os.environ, "QT_DEBUG_PLUGINS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parent), *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,  # noqa: S603
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"the desktop window did not start within {timeout:.0f} s"
    except OSError as exc:
        return f"the desktop window cannot start ({exc.strerror or exc})"
    if done.returncode == 0:
        return None
    output = done.stdout + done.stderr
    said = "\n".join(line for line in output.splitlines() if not line.startswith(("qt.core.", " ", "{", "}")))
    log.warning("the window cannot start (exit %s): %s", done.returncode, said[-3000:])
    platform = os.environ.get("QT_QPA_PLATFORM") or "xcb"
    packages = missing_packages(output, _xcb_plugin() if platform.startswith("xcb") else None)
    if packages:
        return ("the desktop window cannot start: these system packages are missing: " + " ".join(packages)
                + f" (on Debian or Ubuntu: sudo apt install {' '.join(packages)})")
    display = re.search(r"could not connect to display ?(\S*)", output)
    if display:
        return f"the desktop window cannot start: there is no usable display {display.group(1)}".rstrip()
    if "ModuleNotFoundError" in output or "ImportError" in output:
        return "the desktop window cannot start: Qt (PyQt6 and PyQt6-WebEngine) is not installed"
    last = [line for line in output.splitlines() if line.strip() and not line.startswith("qt.")]
    return "the desktop window cannot start" + (f": {last[-1].strip()[:300]}" if last else "")
