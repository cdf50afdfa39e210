"""Secrets out of server text: what a server says back is scrubbed before it is kept or shown.

A server may echo what it was sent (``535 bad credentials AGF1c2VyAHBhc3M= (pass)``); its
reply then becomes an error message, a journal reason, a results CSV cell, a log line and
``verify --json`` output. Every text that comes from a server goes through a Redactor built
from the secrets of that login before it is turned into an error or a receipt.

The forms looked for: the password as it is (and with its spaces collapsed, and URL-encoded);
AUTH PLAIN's base64 of ``\\0user\\0password`` (and with the user as authorisation identity);
AUTH LOGIN's base64 of the password and of the username; an OAuth access or refresh token
as it is and in base64; SMTP XOAUTH2's base64 of ``user=...\\x01auth=Bearer ...\\x01\\x01``.
Base64 forms are matched with or without their ``=`` padding and in the URL-safe alphabet.
A form shorter than MIN_LOOSE characters is replaced only where it stands alone (not inside
a longer word), so a very short password does not blank every digit of a reply.
"""

from __future__ import annotations

import base64
import re
import threading
import urllib.parse

PASSWORD = "[password]"  # noqa: S105 (a label, not a secret)
USERNAME = "[username]"
TOKEN = "[token]"  # noqa: S105 (a label, not a secret)
MIN_LOOSE = 6
_WORD = r"A-Za-z0-9+/_.=@\-"


def _b64_forms(raw: bytes) -> list[str]:
    std = base64.b64encode(raw).decode("ascii")
    forms = [std, std.rstrip("=")]
    url = base64.urlsafe_b64encode(raw).decode("ascii")
    if url != std:
        forms += [url, url.rstrip("=")]
    return forms


class Redactor:
    """The secrets of one login and every form they travel in; calling it scrubs a text.

    Thread-safe: a transport adds the OAuth tokens it uses while other threads read.
    """

    def __init__(self, user: str = "", password: str = "", tokens: tuple[str, ...] | list[str] = ()) -> None:
        self._lock = threading.Lock()
        self._forms: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None
        self.user = user or ""
        if password:
            self.add_password(self.user, password)
        for token in tokens:
            self.add_token(token, self.user)

    # -- what to look for ----------------------------------------------------------------

    def _add(self, form: str, label: str) -> None:
        if form and form not in self._forms:
            self._forms[form] = label
            self._pattern = None

    def add_password(self, user: str, password: str) -> None:
        """The password and its AUTH PLAIN / AUTH LOGIN forms (and the username's LOGIN form)."""
        if not password:
            return
        with self._lock:
            pw, usr = password.encode("utf-8"), (user or "").encode("utf-8")
            for form in (password, " ".join(password.split()), urllib.parse.quote(password, safe=""),
                         urllib.parse.quote_plus(password)):
                self._add(form, PASSWORD)
            for raw in (pw, b"\0" + usr + b"\0" + pw, usr + b"\0" + usr + b"\0" + pw):
                for form in _b64_forms(raw):
                    self._add(form, PASSWORD)
            if usr:
                for form in _b64_forms(usr):
                    self._add(form, USERNAME)

    def add_token(self, token: str | None, user: str = "") -> None:
        """An OAuth access or refresh token, as it is, in base64 and in its XOAUTH2 string."""
        if not token:
            return
        with self._lock:
            self._add(token, TOKEN)
            self._add(urllib.parse.quote(token, safe=""), TOKEN)
            for form in _b64_forms(token.encode("utf-8")):
                self._add(form, TOKEN)
            user = user or self.user
            if user:
                for form in _b64_forms(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()):
                    self._add(form, TOKEN)

    # -- scrubbing -------------------------------------------------------------------------

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._forms:
                parts = []
                for form in sorted(self._forms, key=len, reverse=True):  # longest first
                    escaped = re.escape(form)
                    parts.append(escaped if len(form) >= MIN_LOOSE else f"(?<![{_WORD}]){escaped}(?![{_WORD}])")
                self._pattern = re.compile("|".join(parts))
            return self._pattern

    def __call__(self, text: str) -> str:
        """text with every form of the secrets replaced by [password], [username] or [token]."""
        pattern = self._compiled()
        if pattern is None or not text:
            return text
        forms = self._forms
        return pattern.sub(lambda m: forms.get(m.group(0), PASSWORD), text)

    def __bool__(self) -> bool:
        return bool(self._forms)


def scrub(text: str, *, user: str = "", password: str = "", tokens: tuple[str, ...] | list[str] = ()) -> str:
    """One-off scrubbing of text (see Redactor)."""
    return Redactor(user, password, tokens)(text)
