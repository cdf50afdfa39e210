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
    assert result["started"]["ok"]
    sent = [(e["recipient"], e["status"]) for e in result["events"] if e["status"] != "sending"]
    assert sent == [("a@example.org", "sent"), ("b@example.org", "sent")]
    assert result["states"][-1] == "finished"
    assert sorted(result["inbox"]) == ["Hi Ann", "Hi Bob"]
