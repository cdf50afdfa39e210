"""The built release folder (dist/bulk-mailer/, `make dist`) works on its own.

The session fixture runs `make dist`, which rebuilds only when a file the folder is made from
changed (a fresh clone builds it once, in well under a minute here). The frozen program then
sends a campaign to a real SMTP server on 127.0.0.1 through its command line, and opens its
real window offscreen (`--self-test`), which loads the UI and answers a bridge call.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.servers import PASSWORD, USER

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist" / "bulk-mailer"
PROGRAM = DIST / "bulk-mailer"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def frozen() -> Path:
    """dist/bulk-mailer/bulk-mailer, built (or rebuilt when stale) by `make dist`."""
    proc = subprocess.run(["make", "--no-print-directory", "dist"], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, f"make dist failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert PROGRAM.is_file() and os.access(PROGRAM, os.X_OK)
    return PROGRAM


def run_frozen(program: Path, *args: str, home: Path, env: dict | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    # The frozen program must not lean on this checkout or its virtual environment.
    clean = {k: v for k, v in os.environ.items()
             if k not in ("BULK_MAILER_PASSWORD", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    clean.update({"BULK_MAILER_HOME": str(home), "PATH": "/usr/bin:/bin", **(env or {})})
    return subprocess.run([str(program), *args], capture_output=True, text=True, env=clean,
                          cwd=home.parent, timeout=timeout)


def test_version_is_the_package_version(frozen, tmp_path):
    proc = run_frozen(frozen, "--version", home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"bulk-mailer {VERSION}"


def test_frozen_command_line_sends_a_campaign(frozen, smtp_server, certs, tmp_path):
    server = smtp_server("starttls")
    people = tmp_path / "people.csv"
    people.write_text("email,name\nann@example.org,Ann\nbob@example.org,Bob\ncy@example.org,Cy\n")
    body = tmp_path / "body.html"
    body.write_text("<p>Hello {{ name }}</p>")
    results = tmp_path / "results.csv"
    proc = run_frozen(
        frozen, "send", "--host", server.host, "--port", str(server.port), "--security", "starttls",
        "--ca-file", certs.ca_file, "--user", USER, "--from", "Me <me@example.com>",
        "--to-file", str(people), "--subject", "Hi {{ name }}", "--html-file", str(body),
        "--delay-ms", "0", "--results", str(results), "--progress", "jsonl",
        home=tmp_path / "home", env={"BULK_MAILER_PASSWORD": PASSWORD},
    )
    assert proc.returncode == 0, proc.stderr
    got = sorted((m.rcpt_tos[0], m.message["Subject"], m.peer_authenticated) for m in server.messages)
    assert got == [("ann@example.org", "Hi Ann", USER), ("bob@example.org", "Hi Bob", USER),
                   ("cy@example.org", "Hi Cy", USER)]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert sorted(e["recipient"] for e in events if e["status"] == "sent") == [
        "ann@example.org", "bob@example.org", "cy@example.org"]
    with results.open(newline="") as fh:
        assert [row["status"] for row in csv.DictReader(fh)] == ["sent"] * 3
    assert PASSWORD not in proc.stdout + proc.stderr


def test_frozen_program_schedules_with_its_own_time_zones(frozen, smtp_server, tmp_path):
    """The release folder's zones (tzdata) serve when the system's are not there."""
    server = smtp_server("plain", auth=False)
    people, body = tmp_path / "people.csv", tmp_path / "body.txt"
    people.write_text("email,timezone\nann@example.org,Asia/Tokyo\n")
    body.write_text("Hi")
    today = dt.date.today()
    day = dt.date(today.year + ((today.month, today.day) >= (1, 5)), 1, 5)  # the next 5 January: EST, within a year
    proc = run_frozen(frozen, "send", "--host", server.host, "--port", str(server.port), "--security", "none",
                      "--from", "me@example.com", "--to-file", str(people), "--subject", "Hi", "--text-file", str(body),
                      "--at", f"{day:%Y-%m-%d} 09:00", "--tz", "America/New_York", "--local-time", "09:00",
                      home=tmp_path / "home", env={"PYTHONTZPATH": str(tmp_path / "no-zones-here")})
    assert proc.returncode == 0, proc.stderr
    assert f"Scheduled for {day:%a} {day.day} Jan {day.year} 09:00 EST" in proc.stderr and server.messages == []


def test_frozen_verify_refuses_an_untrusted_certificate(frozen, smtp_server, certs, tmp_path):
    server = smtp_server("ssl", cert=certs.untrusted)
    proc = run_frozen(frozen, "verify", "--host", server.host, "--port", str(server.port),
                      "--security", "ssl", "--user", USER, "--ca-file", certs.ca_file,
                      home=tmp_path / "home", env={"BULK_MAILER_PASSWORD": PASSWORD})
    assert proc.returncode == 2
    assert "certificate_invalid" in proc.stderr
    assert server.handler.auth_attempts == []


def test_frozen_window_loads_the_ui_and_answers_the_bridge(frozen, tmp_path):
    proc = run_frozen(frozen, "--self-test", home=tmp_path / "home",
                      env={"QT_QPA_PLATFORM": "offscreen"}, timeout=180)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no self-test result (exit {proc.returncode}): {proc.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert proc.returncode == 0 and result["ok"], result
    assert result["frozen"] is True and result["title"] == "Bulk Mailer"
    assert result["bridge_ok"] and result["bridge_version"] == VERSION
    assert result["version_shown"] == f"version {VERSION}"
    # everything the page loaded came from the app's own server on 127.0.0.1
    assert result["origin"].startswith("http://127.0.0.1:")
    assert result["resource_origins"] == [result["origin"]]


def test_release_folder_holds_what_is_used_and_not_the_rest(frozen):
    from PyInstaller.archive.readers import CArchiveReader

    internal = DIST / "_internal"
    for name in ("bulk-mailer.desktop", "bulk-mailer.svg", "bulk-mailer.png"):
        assert (DIST / name).is_file(), name
    assert (internal / "frontend" / "index.html").is_file()
    qt = internal / "PyQt6" / "Qt6"
    assert (qt / "libexec" / "QtWebEngineProcess").is_file()
    assert [p.name for p in (qt / "translations").rglob("*") if p.is_file()] == ["en-US.pak"]
    assert not (qt / "resources" / "qtwebengine_devtools_resources.pak").exists()
    assert not (qt / "qml").exists()
    files = {p.name for p in internal.rglob("*")}
    for unused in ("libgtk-3.so.0", "libQt6Pdf.so.6", "libQt6Quick3D.so.6", "libQt6Multimedia.so.6",
                   "libqgtk3.so", "libqpdf.so", "libqvnc.so"):
        assert unused not in files, unused
    assert not any(n.startswith(("_tkinter", "libtk", "libtcl")) for n in files)
    modules = set(CArchiveReader(str(frozen)).open_embedded_archive("PYZ.pyz").toc)
    assert {"bridge", "appwindow", "backend.cli", "webview.platforms.qt", "backend.schedule", "backend.timer",
            "backend.core.schedules"} <= modules
    assert (internal / "tzdata" / "zoneinfo" / "America" / "New_York").is_file()  # zones on any system
    unwanted = ("webview.platforms.gtk", "webview.platforms.cef", "webview.platforms.winforms",
                "webview.platforms.edgechromium", "webview.platforms.cocoa", "tkinter", "pytest",
                "hypothesis", "playwright", "trustme", "PyQt6.QtQml", "PyQt6.QtQuick", "PyQt5", "PySide6")
    assert not [m for m in modules if m.startswith(unwanted)]


def test_frozen_program_installs_its_desktop_entry(frozen, tmp_path):
    data_home = tmp_path / "share"
    proc = run_frozen(frozen, "--install-desktop-entry", home=tmp_path / "home",
                      env={"XDG_DATA_HOME": str(data_home)})
    assert proc.returncode == 0, proc.stderr
    entry = (data_home / "applications" / "bulk-mailer.desktop").read_text()
    assert f"Exec={frozen}\n" in entry and "Icon=bulk-mailer\n" in entry
    svg = data_home / "icons" / "hicolor" / "scalable" / "apps" / "bulk-mailer.svg"
    assert svg.read_bytes() == (ROOT / "frontend" / "icon.svg").read_bytes()


def test_frozen_program_signs_in_with_google_and_sends_through_the_gmail_api(frozen, google, certs, tmp_path):
    from tests.test_gmail_cli import PASSPHRASE, cli, login

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BULK_MAILER_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(google.endpoints())
    env.update({"BULK_MAILER_HOME": str(tmp_path / "home"), "REQUESTS_CA_BUNDLE": certs.ca_file,
                "BULK_MAILER_PASSPHRASE": PASSPHRASE, "PATH": "/usr/bin:/bin",
                "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    done, _ = login(env, certs, tmp_path, program=[str(frozen)])
    assert done.returncode == 0, done.stderr
    people = tmp_path / "people.csv"
    people.write_text("email\nann@example.org\n")
    sent = cli("send", "--channel", "gmail", "--to-file", str(people), "--subject", "Frozen",
               "--text-file", str(people), "--delay-ms", "0", env=env, program=[str(frozen)])
    assert sent.returncode == 0, sent.stderr
    assert [m.to for m in google.sent] == ["ann@example.org"] and str(google.sent[0].message["Subject"]) == "Frozen"
