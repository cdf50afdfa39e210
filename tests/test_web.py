"""Browser mode's HTTP surface: token, host check, API calls and the event stream."""

from __future__ import annotations

import http.client
import json
import re
import threading
from pathlib import Path

import pytest


@pytest.fixture
def served(web_app):
    return web_app[0]


def request(webapp, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", webapp.port, timeout=10)
    hdrs = {"Host": f"127.0.0.1:{webapp.port}", **(headers or {})}
    conn.request(method, path, body=body, headers=hdrs)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def api(webapp, method, params=None, token=None):
    return request(webapp, "POST", f"/api/{method}", json.dumps(params or {}),
                   {"Content-Type": "application/json", "X-Token": token or webapp.token})


def test_url_carries_the_token_in_the_fragment(served):
    assert served.url == f"http://127.0.0.1:{served.port}/#token={served.token}"
    assert len(served.token) >= 32


def test_index_and_assets_with_security_headers(served):
    resp, body = request(served, "GET", "/")
    assert resp.status == 200 and b"<html" in body.lower()
    csp = resp.getheader("Content-Security-Policy")
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert resp.getheader("X-Content-Type-Options") == "nosniff"
    resp, _ = request(served, "GET", "/../../etc/passwd")
    assert resp.status in (403, 404)


@pytest.mark.parametrize("token", ["", "wrong"])
def test_api_needs_the_token(served, token):
    resp, _ = request(served, "POST", "/api/app_info", "{}", {"Content-Type": "application/json", "X-Token": token})
    assert resp.status == 403


def test_api_refuses_other_hosts_and_non_json(served):
    resp, _ = request(served, "POST", "/api/app_info", "{}",
                      {"Host": "evil.example", "Content-Type": "application/json", "X-Token": served.token})
    assert resp.status == 403
    resp, _ = request(served, "POST", "/api/app_info", "a=b",
                      {"Content-Type": "application/x-www-form-urlencoded", "X-Token": served.token})
    assert resp.status == 415
    resp, _ = api(served, "_shutdown")
    assert resp.status == 404


def test_api_call_and_bad_json(served):
    resp, body = api(served, "app_info")
    data = json.loads(body)
    assert resp.status == 200 and data["ok"] and data["data"]["native_dialogs"] is False
    resp, body = request(served, "POST", "/api/import_recipients_text", "{not json",
                         {"Content-Type": "application/json", "X-Token": served.token})
    assert resp.status == 400 and json.loads(body)["ok"] is False


ERROR_SHAPE = {"category", "title", "message", "cause", "fix"}


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000,
                                  b'{"text": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
                                  b"{not json", b'{"text": "\xc3\x28"}'],
                         ids=["deep-list", "deep-field", "broken", "not-utf8"])
def test_json_that_does_not_parse_is_a_structured_400_not_a_traceback(served, capfd, body):
    resp, data = request(served, "POST", "/api/import_recipients_text", body,
                         {"Content-Type": "application/json", "X-Token": served.token})
    answer = json.loads(data)
    assert resp.status == 400 and resp.getheader("Content-Type") == "application/json"
    assert answer["ok"] is False and set(answer["error"]) == ERROR_SHAPE
    assert answer["error"]["message"].startswith("params: the request ")
    resp, data = request(served, "POST", "/session", body, {"Content-Type": "application/json"})
    assert resp.status == 400 and json.loads(data)["ok"] is False
    assert capfd.readouterr().err == ""  # no traceback, nothing at all
    assert api(served, "app_info")[0].status == 200  # and the server carries on


def test_a_body_over_the_limit_is_a_structured_413_before_it_is_read(served):
    from backend import web
    from bridge import MAX_FILE

    assert web.MAX_BODY > (MAX_FILE + 2) // 3 * 4 + 100_000  # a recipient file of MAX_FILE, in base64, fits
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    conn.putrequest("POST", "/api/import_recipients_data", skip_host=True)
    for name, value in (("Host", f"127.0.0.1:{served.port}"), ("Content-Type", "application/json"),
                        ("X-Token", served.token), ("Content-Length", str(web.MAX_BODY + 1))):
        conn.putheader(name, value)
    conn.endheaders()
    conn.send(b'{"data_base64": "' + b"A" * 65_536)  # the rest never comes: the answer must not wait for it
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    conn.close()
    assert resp.status == 413 and answer["ok"] is False and set(answer["error"]) == ERROR_SHAPE
    assert "80.0 MB" in answer["error"]["message"] and "80 MB" in answer["error"]["message"]


def test_events_stream_carries_a_campaign(served):
    resp, _ = request(served, "GET", "/api/events?token=wrong")
    assert resp.status == 403
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    conn.request("GET", f"/api/events?token={served.token}", headers={"Host": f"127.0.0.1:{served.port}"})
    stream = conn.getresponse()
    assert stream.getheader("Content-Type").startswith("text/event-stream")
    assert stream.readline() == b": connected\n"
    stream.readline()
    got: list[dict] = []
    done = threading.Event()

    def read():
        for line in stream:
            if line.startswith(b"data: "):
                got.extend(json.loads(line[6:]))
                if any(e["type"] == "campaign-state" and e["state"] == "finished" for e in got):
                    done.set()
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    api(served, "import_recipients_text", {"text": "a@example.org\nb@example.org"})
    _, body = api(served, "start_campaign", {"account": {"provider": "local-inbox", "from_address": "me@example.com"},
                                             "message": {"subject": "Hi", "body": "Hello", "format": "text"},
                                             "delay_ms": 0})
    assert json.loads(body)["ok"], body
    assert done.wait(10)
    conn.close()
    sent = [e["recipient"] for e in got if e["type"] == "email-progress" and e["status"] == "sent"]
    assert sent == ["a@example.org", "b@example.org"]


def test_launch_code_is_single_use_and_yields_the_token(served):
    url = served.launch_url()
    assert served.token not in url and "#code=" in url
    code = url.split("#code=")[1]
    resp, body = request(served, "POST", "/session", json.dumps({"code": code}), {"Content-Type": "application/json"})
    assert resp.status == 200 and json.loads(body)["token"] == served.token
    resp, _ = request(served, "POST", "/session", json.dumps({"code": code}), {"Content-Type": "application/json"})
    assert resp.status == 403


def test_chunked_bodies_are_refused(served):
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    conn.putrequest("POST", "/api/app_info", skip_host=True)
    conn.putheader("Host", f"127.0.0.1:{served.port}")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("X-Token", served.token)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"2\r\n{}\r\n0\r\n\r\n")
    assert conn.getresponse().status == 411
    conn.close()


def test_previews_are_served_with_their_own_strict_policy(served):
    bridge = served.bridge
    url = bridge._register_preview('<p style="color:red">x</p><script>alert(1)</script>')
    resp, body = request(served, "GET", url)
    assert resp.status == 200 and b'style="color:red"' in body
    csp = resp.getheader("Content-Security-Policy")
    assert "style-src 'unsafe-inline'" in csp and "script-src" not in csp and "default-src 'none'" in csp
    assert "sandbox" in csp and resp.getheader("X-Frame-Options") == "SAMEORIGIN"
    resp, _ = request(served, "GET", "/preview/not-a-known-id")
    assert resp.status == 404
    # the app page itself stays strict
    resp, _ = request(served, "GET", "/")
    assert "unsafe-inline" not in resp.getheader("Content-Security-Policy")


def directives(csp: str) -> dict[str, str]:
    return {d.split()[0]: d.strip() for d in csp.split(";") if d.strip()}


def test_window_policy_differs_from_the_browser_one_only_by_unsafe_eval_in_scripts():
    from backend import web

    window, browser = directives(web.WINDOW_CSP), directives(web.CSP)
    assert "unsafe-inline" not in web.WINDOW_CSP + web.CSP
    assert window["script-src"] == "script-src 'self' 'unsafe-eval'"
    assert {k: v for k, v in window.items() if k != "script-src"} == {
        k: v for k, v in browser.items() if k != "script-src"}
    assert browser["default-src"] == "default-src 'self'" and browser["object-src"] == "object-src 'none'"
    face = web.Face(methods={}, preview=lambda pid: None, ready=lambda: None, shutdown=lambda: None)
    assert web.WebApp(face, Path("."), web.Subscribers(), for_window=True).csp == web.WINDOW_CSP


def test_page_meta_policy_and_files_name_no_other_site():
    from bridge import FRONTEND

    index = (FRONTEND / "index.html").read_text()
    meta = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', index).group(1)
    assert "unsafe-inline" not in meta and "default-src 'self'" in meta
    # Nothing the page loads is named by a full address: no CDN script, style sheet or font.
    for path in FRONTEND.rglob("*"):
        if path.suffix in (".html", ".css", ".js"):
            text = path.read_text()
            assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), path.name
            assert not re.search(r"""(@import|url\()\s*["']?(https?:)?//""", text), path.name
            assert not re.search(r"""\bimport\b[^;\n]*["'](https?:)?//""", text), path.name


def test_previews_aim_every_link_at_a_blocked_new_window(served):
    from backend.web import links_open_nowhere

    html = ('<p>x</p>\r\n<a href="https://e.example/?a=1&amp;b=2" target=_self>A</a>'
            "<div><a\nhref='/' title=\"a>b\" target=_top>B</a><area href=x target=_parent/></div>"
            "<style>a{color:red}</style><script>var s='<a href=/>';</script><!-- <a href=/> -->")
    out = links_open_nowhere(html)
    assert out.count('target="_blank" rel="noopener noreferrer"') == 3
    assert "_self" not in out and "_top" not in out and "_parent" not in out
    assert '<a href="https://e.example/?a=1&amp;b=2" target="_blank"' in out
    assert 'title="a&gt;b"' in out and "<style>a{color:red}</style>" in out
    assert "var s='<a href=/>';" in out and "<!-- <a href=/> -->" in out  # not links
    assert links_open_nowhere("<p>no links</p>") == "<p>no links</p>"
    url = served.bridge._register_preview('<a href="/">home</a>')
    _, body = request(served, "GET", url)
    assert body == b'<a href="/" target="_blank" rel="noopener noreferrer">home</a>'


def test_a_port_in_use_is_a_clear_error_not_a_traceback(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        proc = subprocess.run([sys.executable, "-c", "import bridge, sys; sys.exit(bridge.main(sys.argv[1:]))",
                               "--web", "--port", str(port), "--no-browser"], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "BULK_MAILER_HOME": str(tmp_path / "home")},
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    finally:
        taken.close()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"cannot serve on 127.0.0.1:{port}" in proc.stderr and "Choose another port" in proc.stderr


def redeem(webapp, code):
    return request(webapp, "POST", "/session", json.dumps({"code": code}), {"Content-Type": "application/json"})


def test_launch_codes_expire_30_seconds_after_they_are_issued(served):
    import time

    from backend.web import CODE_TTL_S

    assert CODE_TTL_S <= 30
    fresh, stale = (served.launch_url().split("#code=")[1] for _ in range(2))
    served.clock = lambda: time.monotonic() + 29
    resp, body = redeem(served, fresh)
    assert resp.status == 200 and json.loads(body)["token"] == served.token
    served.clock = lambda: time.monotonic() + 31
    resp, body = redeem(served, stale)
    assert resp.status == 403 and served.token.encode() not in body
    served.clock = time.monotonic
    assert redeem(served, stale)[0].status == 403  # spent by the late attempt too


def launch_target(page_text: str) -> str:
    import html

    return html.unescape(re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', page_text).group(1))


def test_the_launch_page_is_private_holds_a_code_not_the_token_and_is_gone_after_use(served, tmp_path):
    import os
    import stat
    import time

    folder = tmp_path / "launch"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    left = folder / "open-0000000000000000.html"  # a page of a run that ended without cleaning up
    left.write_text("old")
    os.utime(left, (time.time() - 3600, time.time() - 3600))
    page = served.launch_page(folder)
    assert not left.exists()
    st, dst = page.stat(), folder.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and stat.S_IMODE(dst.st_mode) == 0o700
    assert st.st_uid == dst.st_uid == os.geteuid()
    text = page.read_text()
    url = launch_target(text)
    assert url.startswith(f"http://127.0.0.1:{served.port}/#code=") and "location.replace(" in text
    code = url.split("#code=")[1]
    assert served.token not in text and code not in page.as_uri() and served.token not in page.as_uri()
    assert redeem(served, code)[0].status == 200
    assert not page.exists()  # deleted by its use
    assert redeem(served, code)[0].status == 403
    unused = served.launch_page(folder)
    unused_code = launch_target(unused.read_text()).split("#code=")[1]
    served.forget_launch_pages()  # what stop() does at exit
    assert list(folder.iterdir()) == [] and redeem(served, unused_code)[0].status == 403


def test_launch_pages_follow_no_link_and_use_no_folder_of_another_user(served, tmp_path):
    import os

    from backend.errors import MailerError
    from backend.web import write_private

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "linked").symlink_to(elsewhere)
    with pytest.raises(OSError):
        served.launch_page(tmp_path / "linked")
    assert list(elsewhere.iterdir()) == []
    folder = tmp_path / "launch"
    folder.mkdir(mode=0o700)
    (folder / "planted.html").symlink_to(elsewhere / "target")
    with pytest.raises(FileExistsError):
        write_private(folder, "planted.html", b"x")
    assert not (elsewhere / "target").exists()
    if os.geteuid() == 0:  # only root can give a folder to another user
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        with pytest.raises(MailerError) as caught:
            served.launch_page(theirs)
        assert caught.value.category == "file_error" and "another user" in caught.value.message
        assert list(theirs.iterdir()) == []


FAKE_BROWSER = '''#!{python}
# Plays the user's browser: records its command line, then loads what it was given as a browser
# would (a page on disk is read and its refresh followed) and swaps the launch code for the token.
import html, http.client, json, os, re, stat, sys, time, urllib.parse
record = {{"argv": sys.argv[1:]}}
time.sleep(0.5)  # a browser takes a while to start, its command line readable all along
target = sys.argv[1]
url = target
if target.startswith("file:"):
    path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
    record["page"] = path
    record["mode"] = stat.S_IMODE(os.stat(path).st_mode)
    record["folder_mode"] = stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)
    text = open(path).read()
    url = html.unescape(re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', text).group(1))
parts = urllib.parse.urlsplit(url)
record["url"] = url
code = urllib.parse.parse_qs(parts.fragment).get("code", [""])[0]
headers = {{"Host": parts.netloc, "Content-Type": "application/json"}}
def call(method, path, body=None, extra=None):
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request(method, path, body=body, headers={{**headers, **(extra or {{}})}})
    resp = conn.getresponse()
    return resp.status, resp.read()
record["index"], _ = call("GET", "/")
record["session"], body = call("POST", "/session", json.dumps({{"code": code}}))
record["token"] = json.loads(body)["token"] if record["session"] == 200 else None
if record["token"]:
    record["api"], _ = call("POST", "/api/app_info", "{{}}", {{"X-Token": record["token"]}})
if "page" in record:
    record["page_left_after_use"] = os.path.exists(record["page"])
with open(os.environ["FAKE_BROWSER_RECORD"] + ".part", "w") as fh:
    json.dump(record, fh)
os.replace(os.environ["FAKE_BROWSER_RECORD"] + ".part", os.environ["FAKE_BROWSER_RECORD"])
time.sleep(0.5)
'''

# Another local user's process: reads every command line under the test's process, as fast as it
# can, and redeems at once any code (or uses any token) it finds there.
WATCHER = r'''
import http.client, json, os, re, sys, time
ancestor, stop = sys.argv[1], sys.argv[2]
me = str(os.getpid())
secret = re.compile(r"(code|token)=([A-Za-z0-9_-]{20,})")
where = re.compile(r"127\.0\.0\.1:(\d+)")
seen, attempts, passes = set(), [], 0
def parent(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[1]
    except (OSError, IndexError):
        return None
def ours(pid):  # only the test's own processes: others on this machine are none of our business
    for _ in range(64):
        pid = parent(pid)
        if pid in (None, "0"):
            return False
        if pid == ancestor:
            return True
    return False
def steal(kind, value, port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    host = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json"}
    if kind == "code":
        conn.request("POST", "/session", json.dumps({"code": value}), host)
    else:
        conn.request("POST", "/api/load_settings", "{}", {**host, "X-Token": value})
    resp = conn.getresponse()
    resp.read()
    return resp.status
while not os.path.exists(stop):
    passes += 1
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if not cmd or cmd in seen or not ours(pid):
            continue
        seen.add(cmd)
        port = where.search(cmd)
        for kind, value in secret.findall(cmd):
            status = steal(kind, value, int(port.group(1))) if port else None
            attempts.append({"kind": kind, "value": value, "status": status})
    time.sleep(0.002)
print(json.dumps({"seen": sorted(seen), "attempts": attempts, "passes": passes}))
'''


def test_a_local_watcher_of_command_lines_gets_nothing_from_the_browser_launch(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    home = tmp_path / "home"
    browser = tmp_path / "fake-browser"
    browser.write_text(FAKE_BROWSER.format(python=sys.executable))
    browser.chmod(0o755)
    record, stop = tmp_path / "browser.json", tmp_path / "stop-watching"
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(os.getpid()), str(stop)],
                               stdout=subprocess.PIPE, text=True)
    env = {**os.environ, "BULK_MAILER_HOME": str(home), "BROWSER": str(browser),
           "FAKE_BROWSER_RECORD": str(record)}
    app = subprocess.Popen([sys.executable, "-c", "import bridge, sys; sys.exit(bridge.main(sys.argv[1:]))", "--web"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        printed = app.stdout.readline().strip()  # the user's own terminal
        deadline = time.monotonic() + 60
        while not record.exists() and time.monotonic() < deadline and app.poll() is None:
            time.sleep(0.05)
        time.sleep(0.7)  # the browser lives on a little: let the watcher look once more
    finally:
        app.send_signal(signal.SIGINT)
        _, err = app.communicate(timeout=30)
        stop.touch()
        seen = json.loads(watcher.communicate(timeout=30)[0])
    got = json.loads(record.read_text())
    token = printed.split("#token=")[1]
    code = got["url"].split("#code=")[1]
    # The real browser got in: the page led it to a working session.
    assert got["session"] == 200 and got["token"] == token and got["api"] == 200, (got, err)
    # The watcher saw the browser's command line, and there was nothing in it to use.
    assert seen["passes"] > 10 and any(str(browser) in cmd for cmd in seen["seen"]), seen
    assert seen["attempts"] == [], seen
    assert not any(token in cmd or code in cmd for cmd in seen["seen"])
    assert got["argv"] == [Path(got["page"]).as_uri()] and Path(got["page"]).is_relative_to(home)
    assert got["mode"] == 0o600 and got["folder_mode"] == 0o700
    assert got["page_left_after_use"] is False
    assert not any(Path(got["page"]).parent.iterdir())
    assert app.returncode == 0 and "Traceback" not in err and token not in err and code not in err


def test_the_request_log_never_holds_the_token(served, caplog):
    import logging
    import time

    caplog.set_level(logging.DEBUG, logger="backend.web")
    # (an event stream's line is logged when the stream ends: these end at once)
    assert request(served, "GET", f"/?token={served.token}")[0].status == 200
    assert request(served, "GET", f"/api/events?x=1&token={served.token[:-1]}&y=2")[0].status == 403
    deadline = time.monotonic() + 5  # the server logs a request just after its answer is out
    while "/api/events?" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "GET /?token=... HTTP" in caplog.text and "/api/events?x=1&token=...&y=2" in caplog.text
    assert served.token[:-1] not in caplog.text


def test_when_no_browser_starts_the_user_is_told_on_stderr_without_a_secret(served, tmp_path, capsys):
    from backend.web import open_browser_on

    opened: list[str] = []
    assert open_browser_on(served, tmp_path / "launch", browser=lambda uri: opened.append(uri) or False) is False
    assert opened[0].startswith("file://") and "code=" not in opened[0]
    (tmp_path / "blocked").write_text("a file where the folder would go")
    assert open_browser_on(served, tmp_path / "blocked", browser=opened.append) is False and len(opened) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("open the address above in your browser") == 2
    assert served.token not in err and "code=" not in err


def test_a_dark_preview_gets_a_dark_colour_scheme_first_and_nothing_else(served):
    from backend.web import DARK_META, in_dark

    assert in_dark("<p>x</p>") == DARK_META + "<p>x</p>"
    page = '<!DOCTYPE html><html lang="en"><HEAD><meta name="color-scheme" content="light"></HEAD><body>x</body></html>'
    assert in_dark(page) == page.replace("<HEAD>", "<HEAD>" + DARK_META)
    assert in_dark("<!doctype html><header>x</header>") == "<!doctype html>" + DARK_META + "<header>x</header>"
    url = served.bridge._register_preview('<p style="color:red">x</p>')
    _, light = request(served, "GET", url)
    resp, dark = request(served, "GET", url + "?dark=1")
    assert light == b'<p style="color:red">x</p>' and dark == DARK_META.encode() + light
    assert "sandbox" in resp.getheader("Content-Security-Policy")  # as strict as the light one
