"""Bulk Mailer's UI-agnostic core: settings, recipients, compose, transports, the send loop."""

from __future__ import annotations


def _version() -> str:
    """The version in pyproject.toml: from the installed package's metadata, else the file itself.

    The frozen app carries both (build.spec copies the metadata and pyproject.toml), so the
    number shown by `bulk-mailer --version` and in the window is never typed twice.
    """
    # pyproject.toml first when it is beside the package (a checkout, the frozen app): reading it
    # is quicker than importing importlib.metadata, which every command would pay for.
    found = _version_from_pyproject()
    if found is not None:
        return found
    from importlib import metadata

    try:
        return metadata.version("bulk-mailer")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _version_from_pyproject() -> str | None:
    import sys
    import tomllib
    from pathlib import Path

    root = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parent.parent))
    try:
        with open(root / "pyproject.toml", "rb") as fh:
            project = tomllib.load(fh)["project"]
    except (OSError, KeyError, ValueError):
        return None
    return str(project["version"]) if project.get("name") == "bulk-mailer" and "version" in project else None


__version__ = _version()
