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
    assert web.WebApp(type("B", (), {"_api_names": staticmethod(list)})(), Path("."), web.Subscribers(),
                      for_window=True).csp == web.WINDOW_CSP


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
