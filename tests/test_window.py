"""The real pywebview window (Qt WebEngine, offscreen) loads the UI and talks to the bridge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("webview")
pytest.importorskip("PyQt6.QtWebEngineWidgets")


def test_window_loads_ui_calls_bridge_and_receives_progress(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "BULK_MAILER_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "tests.window_driver"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from the window (exit {proc.returncode}): {proc.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert "error" not in result, result["error"]
    assert result["title"] == "Bulk Mailer"
    for label in ("Provider", "Host", "Port", "Security", "Username", "Password", "From", "Subject",
                  "Message", "Delay (ms)", "Paste addresses"):
        assert label in result["labels"]
    assert result["imported"]["ok"] and result["imported"]["data"]["counts"]["valid"] == 2
    assert result["started"]["ok"], result["started"]
    sent = [(e["recipient"], e["status"]) for e in result["events"] if e["status"] != "sending"]
    assert sent == [("a@example.org", "sent"), ("b@example.org", "sent")]
    assert result["states"][-1] == "finished"
    assert sorted(result["inbox"]) == ["Hi Ann", "Hi Bob"]


def run_driver(tmp_path, *args: str) -> tuple[dict, subprocess.CompletedProcess]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "BULK_MAILER_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "tests.window_driver", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from the window (exit {proc.returncode}): {proc.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert "error" not in result, result["error"]
    return result, proc


def test_window_loads_nothing_from_and_never_navigates_to_another_origin(tmp_path):
    # The page adds an image, a style sheet, a script, a frame, a font and a fetch from another
    # origin (a server on another port of 127.0.0.1 that records every request), then sets
    # location.href to it. Nothing reaches that server and the window keeps the app's page.
    result, proc = run_driver(tmp_path, "guard")
    assert result["hits"] == []
    assert result["after_origin"] == result["origin"]
    assert result["marker"] == "still the same page" and result["title"] == "Bulk Mailer"
    assert "refused to navigate the window to http://127.0.0.1:" in proc.stderr


def test_pywebview_needs_unsafe_eval_and_nothing_else_gets_it(tmp_path):
    # Why the window's policy allows 'unsafe-eval': under the browser-mode policy pywebview's
    # injected script cannot build window.pywebview.api and evaluate_js is refused, so the UI
    # never starts.
    result, _ = run_driver(tmp_path, "strict-csp")
    assert result["loaded"] is True
    assert result["api_type"] == "undefined" and result["ready"] == "no"
    assert "EvalError" in result["eval_error"] and "unsafe-eval" in result["eval_error"]


def test_self_test_option_opens_the_window_and_asks_the_bridge(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "BULK_MAILER_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "bridge", "--self-test"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    result = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    assert proc.returncode == 0 and result["ok"] is True, (result, proc.stderr[-2000:])
    assert result["bridge_ok"] and result["version_shown"] == f"version {result['version']}"
    assert result["resource_origins"] == [result["origin"]]


def test_one_campaign_through_the_four_steps_in_the_real_window(tmp_path):
    result, _ = run_driver(tmp_path, "steps")
    assert result["views"] == ["account", "recipients", "message", "review"]
    assert [(key, state) for key, state, _ in result["steps"]] == [
        ("account", "done"), ("recipients", "done"), ("message", "done"), ("review", "todo")]
    assert result["steps"][1][2] == "2 valid recipients"
    assert result["confirm"] == "Send 2 messages through the local test inbox as me@example.com?"
    assert result["state_line"] == "Finished: 2 sent."
    assert sorted(result["inbox"]) == ["Hi Ann", "Hi Bob"]
