"""The Linux desktop entry: put Bulk Mailer with its icon into the user's application menu.

`bulk-mailer --install-desktop-entry` writes packaging/linux/bulk-mailer.desktop (with Exec
pointing at this very program, wherever its folder was unpacked) to
$XDG_DATA_HOME/applications and the icon to $XDG_DATA_HOME/icons/hicolor, for this user only.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

NAME = "bulk-mailer"
# Characters that make an Exec argument need quotes (Desktop Entry Specification, "The Exec key").
_RESERVED = re.compile(r"[\s\"'\\><~|&;$*?#()`]")


def root() -> Path:
    """The app's files: the unpacked bundle of the frozen app, else the source tree."""
    return Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parent.parent))


def template() -> Path:
    return root() / "packaging" / "linux" / f"{NAME}.desktop"


def program() -> Path:
    """The `bulk-mailer` executable to start from the menu."""
    if getattr(sys, "frozen", False):
        return Path(sys.executable).resolve()
    script = Path(sys.executable).parent / NAME  # the console script beside the venv's python
    if script.exists():
        return script.absolute()
    found = shutil.which(NAME)
    if found is None:
        raise FileNotFoundError(f"cannot find the {NAME} program to start from the menu")
    return Path(found).resolve()


def exec_quote(arg: str) -> str:
    """One Exec argument, quoted by the spec's rules, then escaped as a desktop-file string."""
    arg = arg.replace("%", "%%")
    if _RESERVED.search(arg):
        arg = '"' + re.sub(r'(["`$\\])', r"\\\1", arg) + '"'
    return arg.replace("\\", "\\\\")


def render(exe: Path) -> str:
    """The desktop entry with Exec and TryExec naming exe."""
    lines = []
    for line in template().read_text(encoding="utf-8").splitlines():
        if line.startswith("Exec="):
            line = "Exec=" + exec_quote(str(exe))
        elif line.startswith("TryExec="):
            line = "TryExec=" + str(exe).replace("\\", "\\\\")
        lines.append(line)
    return "\n".join(lines) + "\n"


def install(exe: Path | None = None, data_home: Path | None = None) -> list[Path]:
    """Write the entry and the icons; return the files written."""
    exe = exe or program()
    if data_home is None:
        data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    icons = root() / "frontend"
    targets = [
        (data_home / "applications" / f"{NAME}.desktop", render(exe).encode("utf-8")),
        (data_home / "icons" / "hicolor" / "scalable" / "apps" / f"{NAME}.svg", (icons / "icon.svg").read_bytes()),
        (data_home / "icons" / "hicolor" / "256x256" / "apps" / f"{NAME}.png", (icons / "icon.png").read_bytes()),
    ]
    for path, data in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o644)
        os.replace(tmp, path)
    return [path for path, _ in targets]


def main() -> int:
    """`bulk-mailer --install-desktop-entry`: install and say where."""
    try:
        written = install()
    except OSError as exc:
        print(f"bulk-mailer: error: could not install the desktop entry: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"installed {path}")
    print("Bulk Mailer is now in your application menu (log out and in if it does not show yet).")
    return 0
