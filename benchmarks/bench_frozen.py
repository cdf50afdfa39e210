"""Benchmark: the release folder's size and the frozen window's time from start to a loaded UI.

Builds dist/bulk-mailer/ with `make dist` when it is missing or stale, then prints the folder's
size (total, and its largest parts) and starts `bulk-mailer --self-test` N times offscreen
(QT_QPA_PLATFORM=offscreen): the time from starting the program until the page has loaded
and come back from its first bridge calls (app_info, load_settings), and until the process
has exited. The first start is reported apart (cold file cache, after a build it is warm).

    .venv/bin/python benchmarks/bench_frozen.py [N]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist" / "bulk-mailer"
PROGRAM = DIST / "bulk-mailer"


def size(path: Path) -> int:
    """Bytes of the files under path (symbolic links count as themselves, not their target)."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_symlink() or p.is_file())


def start_once(home: Path) -> tuple[float, float]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "BULK_MAILER_HOME": str(home)}
    started = time.time()
    proc = subprocess.run([str(PROGRAM), "--self-test"], capture_output=True, text=True, env=env,  # noqa: S603
                          timeout=120)
    ended = time.time()
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    if proc.returncode != 0 or not result.get("ok"):
        raise SystemExit(f"the self-test failed (exit {proc.returncode}): {result} {proc.stderr[-2000:]}")
    return result["ui_ready_at"] - started, ended - started


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    subprocess.run(["make", "--no-print-directory", "dist"], cwd=ROOT, check=True)  # noqa: S603, S607
    mb = 1024 * 1024
    internal = DIST / "_internal"
    qt = internal / "PyQt6" / "Qt6"
    parts = {
        "Qt WebEngine (libQt6WebEngineCore)": size(qt / "lib" / "libQt6WebEngineCore.so.6"),
        "other Qt libraries and ICU": size(qt / "lib") - size(qt / "lib" / "libQt6WebEngineCore.so.6"),
        "Qt WebEngine resources and plugins": size(qt) - size(qt / "lib"),
        "PyQt6 bindings": size(internal / "PyQt6") - size(qt),
        "everything else (Python, libraries, UI)": size(DIST) - size(internal / "PyQt6"),
    }
    print(f"release folder        {size(DIST) / mb:.0f} MB  ({DIST.relative_to(ROOT)})")
    for name, value in parts.items():
        print(f"  {name:38s} {value / mb:6.1f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        times = [start_once(Path(tmp) / f"home{i}") for i in range(runs + 1)]
    first, rest = times[0], times[1:]
    ui = [t[0] for t in rest]
    total = [t[1] for t in rest]
    print(f"first start           UI loaded {first[0]:.2f} s, exited {first[1]:.2f} s")
    print(f"start to loaded UI    median {statistics.median(ui):.2f} s, min {min(ui):.2f} s, "
          f"max {max(ui):.2f} s over {len(ui)} starts")
    print(f"start to exit         median {statistics.median(total):.2f} s (self-test: load, ask, close)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
