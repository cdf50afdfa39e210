"""The version's single source, and the Linux desktop entry (checked, and installed for a user)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import backend
from backend import desktop_entry

ROOT = Path(__file__).resolve().parent.parent
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
ENTRY = ROOT / "packaging" / "linux" / "bulk-mailer.desktop"


def test_version_comes_from_pyproject_everywhere(monkeypatch):
    assert backend.__version__ == VERSION
    proc = subprocess.run([sys.executable, "-m", "bridge", "--version"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.strip() == f"bulk-mailer {VERSION}"
    # without installed metadata (a frozen app missing it, a bare checkout) pyproject.toml answers
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    assert backend._version() == VERSION
    monkeypatch.setattr(sys, "_MEIPASS", str(ROOT / "frontend"), raising=False)  # no pyproject.toml there
    assert backend._version() == "0+unknown"


def read_entry(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    assert parser.sections() == ["Desktop Entry"]
    return dict(parser["Desktop Entry"])


def validate(path: Path) -> None:
    tool = shutil.which("desktop-file-validate")
    if tool is None:
        pytest.skip("desktop-file-validate is not installed (.ci/run installs desktop-file-utils)")
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout + proc.stderr


def test_desktop_entry_is_valid_and_names_the_icon():
    entry = read_entry(ENTRY)
    assert entry["Type"] == "Application" and entry["Name"] == "Bulk Mailer"
    assert entry["Exec"] == "bulk-mailer" and entry["Terminal"] == "false"
    assert entry["Icon"] == "bulk-mailer" and "Email;" in entry["Categories"]
    assert (ROOT / "frontend" / "icon.svg").is_file() and (ROOT / "frontend" / "icon.png").is_file()
    validate(ENTRY)


@pytest.mark.parametrize("folder", ["plain", "with space", 'odd "$`\\ %chars'])
def test_installing_the_entry_points_exec_at_the_program(tmp_path, folder):
    exe = tmp_path / folder / "bulk-mailer"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    written = desktop_entry.install(exe, tmp_path / "share")
    desktop = tmp_path / "share" / "applications" / "bulk-mailer.desktop"
    assert desktop in written
    assert (tmp_path / "share/icons/hicolor/scalable/apps/bulk-mailer.svg").read_bytes() == \
        (ROOT / "frontend" / "icon.svg").read_bytes()
    assert (tmp_path / "share/icons/hicolor/256x256/apps/bulk-mailer.png").is_file()
    entry = read_entry(desktop)
    # undo the desktop-file string escape, then the Exec quoting: the path comes back whole
    exec_value = entry["Exec"].replace("\\\\", "\\")
    if exec_value.startswith('"'):
        exec_value = exec_value[1:-1].replace('\\"', '"').replace("\\`", "`").replace("\\$", "$")
        exec_value = exec_value.replace("\\\\", "\\")
    assert exec_value.replace("%%", "%") == str(exe)
    validate(desktop)


def test_dist_folder_and_make_target_are_wired():
    makefile = (ROOT / "Makefile").read_text()
    assert "dist: dist/bulk-mailer/bulk-mailer" in makefile and "--install-desktop-entry" in makefile
    spec = (ROOT / "build.spec").read_text()
    assert 'f"{NAME}.desktop"' in spec and "copy_metadata(\"bulk-mailer\")" in spec
