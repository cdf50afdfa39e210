"""The draft: the campaign being written survives a restart (message, Send settings, the
list, its columns and the attached files' paths; never a password), part of the App.

A mixin of backend.app.App: its methods use the App's state (self.journal, self.store, ...).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from backend import paths
from backend.credentials import account_key
from backend.errors import MailerError
from backend.inputs import (
    BODY_FORMATS,
    DRAFT_SEND_FIELDS,
    SavedDraft,
)
from backend.model import iso, utc_now

log = logging.getLogger("backend.app")


# The first start's example message (Message is filled with it; it is no draft of the user's).
DEFAULT_SUBJECT = "Hello {{ name | default('there') }}"
DEFAULT_BODY = ("<p>Hi {{ name | default('there') }},</p>\n<p>Write your message here: each person gets their own "
                "copy, with their name above.</p>\n<p>Best wishes,<br>Me</p>")
# A pasted list is kept in the draft up to this many characters (a file: its path).
DRAFT_TEXT_MAX = 2_000_000


class Drafts:
    """The draft (a part of App)."""

    # -- the draft: what is being written survives a restart ----------------------------

    @staticmethod
    def _draft_path() -> Path:
        return paths.data_dir() / "draft.json"

    def save_draft(self, d: SavedDraft) -> dict[str, Any]:
        """Keep the campaign being written (the message and the Send settings; never a
        password), replaced at once: a crash leaves the previous one."""
        saved, inputs = iso(utc_now()), self._draft_inputs()
        written = (d.subject.strip() or d.body.strip()) and (d.subject, d.body) != (DEFAULT_SUBJECT, DEFAULT_BODY)
        if not (written or inputs):  # nothing of the user's yet (empty, or the first-start example)
            self._draft_path().unlink(missing_ok=True)
            return {"saved": None}
        data = {"saved": saved, "message": {"subject": d.subject, "body": d.body, "format": d.format,
                                            "raw_html": bool(d.raw_html), "unsubscribe": list(d.unsubscribe)},
                "send": {k: v for k, v in d.send.items() if k in DRAFT_SEND_FIELDS}, **inputs}
        paths.atomic_write(self._draft_path(), json.dumps(data, ensure_ascii=False).encode("utf-8"))
        return {"saved": saved}

    def _draft_inputs(self) -> dict[str, Any]:
        """This session's list (its file's path, or the pasted text up to DRAFT_TEXT_MAX), its
        column choices and the attached files' paths, for the draft."""
        out: dict[str, Any] = {}
        kind, value = self._source or ("", None)
        if kind == "file" or (kind == "text" and len(value) <= DRAFT_TEXT_MAX):
            out["list"] = {"kind": kind, "value": str(value), "columns": list(self.columns),
                           "attach_column": self.attach_column,
                           "attach_dir": str(self.attach_dir) if self.attach_dir else None}
        files = [self._attachment_paths[i] for i, _ in self.attachments if i in self._attachment_paths]
        if files:
            out["attachments"] = files
        return out

    def _restore_inputs(self, data: dict[str, Any]) -> dict[str, Any]:
        """The draft's list and files read again at start (once, when this session has none); what
        cannot be read any more is said, never raised."""
        restored: dict[str, Any] = {}
        listed = data.get("list") or {}
        if self.imported is None and listed.get("kind") in ("file", "text"):
            email_col, name_col = (list(listed.get("columns") or []) + [None, None])[:2]
            try:
                self.import_recipients((listed["kind"], str(listed["value"])), email_col, name_col)
                if listed.get("attach_dir"):
                    self.attach_dir = Path(listed["attach_dir"])
                if listed.get("attach_column"):
                    self.set_attachment_column(str(listed["attach_column"]))
                restored["list"] = self.imported.summary() if self.imported else None
                restored["preview"] = self.list_preview(self.imported) if self.imported else None
            except MailerError as exc:
                restored["list_error"] = exc.message
        elif self.imported is not None:  # the page was reloaded: this session's list, as it is
            restored["list"] = self.imported.summary()
            restored["preview"] = self.list_preview(self.imported)
        if not self.attachments and data.get("attachments"):
            for path in [str(p) for p in data.get("attachments") or []]:
                try:
                    self.add_attachment_files([path])
                except MailerError as exc:
                    restored.setdefault("missing", []).append(exc.message)
            restored["attachments"] = [a.filename for _, a in self.attachments]
        return restored

    def load_draft(self) -> dict[str, Any] | None:
        """The draft kept last time, or None (none, or one that cannot be read: it is ignored)."""
        try:
            data = json.loads(paths.read_private(self._draft_path()))
            m, send = data["message"], data.get("send") or {}
            return {"saved": str(data["saved"]),
                    "message": {"subject": str(m["subject"]), "body": str(m["body"]),
                                "format": m.get("format") if m.get("format") in BODY_FORMATS else "html",
                                "raw_html": m.get("raw_html") is True,
                                "unsubscribe": [str(u) for u in m.get("unsubscribe") or []][:2]},
                    "send": {k: str(v) for k, v in send.items() if k in DRAFT_SEND_FIELDS},
                    "restored": self._restore_inputs(data)}
        except FileNotFoundError:
            return None
        except (OSError, MailerError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("the saved draft cannot be read, so it is not restored: %s", exc)
            return None

    def clear_draft(self) -> None:
        """Start a new campaign: the kept draft goes, with this session's list and files."""
        self._draft_path().unlink(missing_ok=True)
        self.imported, self._source, self.columns = None, None, (None, None)
        self.attachments, self._attachment_paths = [], {}
        self.attach_column, self.attach_dir = None, None

    def forget_password(self, user: str, host: str, passphrase: str | None = None) -> None:
        self.store.delete(account_key(user.strip(), host.strip()), passphrase or self._passphrase)
