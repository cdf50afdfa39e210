"""The command line shared by the doc generators: write the document, or --check that it is fresh."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def main(argv: list[str] | None, *, description: str, output: Path, generate: Callable[[], str],
         regenerate: str) -> int:
    """Write `output` from `generate()`; with --check, exit 1 when the file on disk differs."""
    name = f"docs/{output.name}"
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help=f"exit 1 if {name} is not up to date; write nothing")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else None
        if current != text:
            print(f"{name} is out of date: run {regenerate}", file=sys.stderr)
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8", newline="\n")
    print(f"wrote {output}")
    return 0
