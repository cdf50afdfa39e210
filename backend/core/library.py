"""What the user keeps between campaigns: the suppression list and the saved templates, part
of the App.

A mixin of backend.app.App: its methods use the App's state (self.journal, self.store, ...).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from backend.suppression import SuppressionList
from backend.templates import SavedTemplate


class Library:
    """What the user keeps between campaigns (a part of App)."""

    # -- suppression -----------------------------------------------------------------------

    def suppression_add(self, text: str, reason: str = "added by hand") -> dict[str, Any]:
        """Add pasted addresses (one a line, or separated by commas, semicolons or spaces)."""
        pieces: list[str] = []
        line_of: list[int] = []  # the pasted line of each piece, for the report
        for number, line in enumerate(text.splitlines(), 1):
            for piece in re.split(r"[\s,;]+", line):
                if piece:
                    pieces.append(piece)
                    line_of.append(number)
        added = self.suppression.add(pieces, reason=reason)
        return {"added": int(added), "already": added.already,
                "invalid": [{"line": line_of[n - 1] if 0 < n <= len(line_of) else n, "value": v, "reason": why}
                            for n, v, why in added.invalid]}

    def suppression_for_trial(self) -> SuppressionList:
        """A copy of the kept list for a trial run (dry run, preview), which must not change it."""
        trial = Path(tempfile.mkdtemp(prefix="bm-suppress-")) / "suppression.txt"
        if self.suppression.path.exists():
            shutil.copyfile(self.suppression.path, trial)
        self._suppression = SuppressionList(trial)
        return self._suppression

    # -- saved templates -------------------------------------------------------------------

    def template_list(self) -> list[dict[str, Any]]:
        return [{"name": t.name, "subject": t.subject, "format": t.format, "updated": t.updated}
                for t in self.templates.list()]

    def template_save(self, name: str, *, subject: str, body: str, fmt: str, unsubscribe: list[str],
                      overwrite: bool = False, raw_html: bool = False) -> str:
        """Save the message as a named template (the attachments by name: files are added again)."""
        saved = self.templates.save(SavedTemplate(
            name=name, subject=subject, body=body, format=fmt, unsubscribe=list(unsubscribe), raw_html=raw_html,
            attachments=[a.filename for _, a in self.attachments]), overwrite=overwrite)
        return saved.name

    def template_load(self, name: str) -> dict[str, Any]:
        t = self.templates.get(name)
        return {"name": t.name, "message": {"subject": t.subject, "body": t.body, "format": t.format,
                                            "raw_html": t.raw_html, "unsubscribe": list(t.unsubscribe)},
                "attachments": list(t.attachments)}

    def template_filename(self, name: str) -> str:
        return re.sub(r"[^\w.-]+", "-", self.templates.get(name).name).strip("-") + ".bmtemplate.json"

    def template_export(self, name: str, path: str | None = None) -> str:
        """Write a template file to path (its path), or return the file's JSON text (path None)."""
        if path is not None:
            return str(self.templates.export(name, Path(path)))
        with tempfile.TemporaryDirectory() as tmp:
            out = self.templates.export(name, Path(tmp) / self.template_filename(name))
            return Path(out).read_text(encoding="utf-8")

    def template_import(self, source: Path | bytes, *, overwrite: bool = False) -> dict[str, Any]:
        """Import a template file (a path, or its content)."""
        if isinstance(source, bytes):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "import.json"
                path.write_bytes(source)
                t = self.templates.import_file(path, overwrite=overwrite)
        else:
            t = self.templates.import_file(source, overwrite=overwrite)
        return {"name": t.name, "subject": t.subject, "format": t.format}
