"""Benchmark: the per-recipient path without a network: import, check, render to bytes.

    .venv/bin/python benchmarks/bench_core.py [N]

Prints seconds and rows per second for: loading an N-row CSV (validation and dedupe),
checking every row's template (what happens before Send), and building every message to
bytes (what the send loop does per recipient, and what --dry-run does).
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend import service  # noqa: E402
from backend.recipients import load_file  # noqa: E402


def timed(label: str, n: int, fn):
    started = time.perf_counter()
    result = fn()
    took = time.perf_counter() - started
    print(f"{label:<34} {took:7.2f} s  {n / took:10,.0f} rows/s")
    return result


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "people.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["Email", "First Name", "Company", "Code"])
            for i in range(n):
                w.writerow([f"user{i}@example{i % 97}.org", f"Jörg {i}", "ACME, Inc.", f"C{i:06d}"])
        imported = timed(f"load {n:,}-row CSV", n, lambda: load_file(path))
    draft = service.make_draft(
        imported,
        subject="Your code, {{ first_name }}",
        html='<p>Hi {{ first_name }},</p><p>Your code is <b>{{ code }}</b>.</p>'
             '<p><a href="https://example.com/c/{{ code }}">Open</a></p>',
        text=None,
        from_address="Me <me@example.com>",
    )
    problems = timed("check every row (before Send)", n, draft.problems)
    assert not problems
    timed("build every message to bytes", n, lambda: [draft.outgoing(r) for r in draft.recipients])
    return 0


if __name__ == "__main__":
    sys.exit(main())
