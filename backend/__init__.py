"""Bulk Mailer's UI-agnostic core: settings, recipients, compose, transports, the send loop."""

from __future__ import annotations


def _version() -> str:
    """The version in pyproject.toml: from the installed package's metadata, else the file itself.

    The frozen app carries both (build.spec copies the metadata and pyproject.toml), so the
    number shown by `bulk-mailer --version` and in the window is never typed twice.
    """
    from importlib import metadata

    try:
        return metadata.version("bulk-mailer")
    except metadata.PackageNotFoundError:
        pass
    return _version_from_pyproject()


def _version_from_pyproject() -> str:
    import sys
    import tomllib
    from pathlib import Path

    root = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parent.parent))
    try:
        with open(root / "pyproject.toml", "rb") as fh:
            return str(tomllib.load(fh)["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "0+unknown"


__version__ = _version()
