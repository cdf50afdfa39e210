"""Each account's signature (HTML and text), kept with the saved settings, and the message's
bodies as sent: Markdown converted, the signature added below (backend.authoring), part of the App.

A mixin of backend.app.App: its methods use the App's state (self.smtp_settings, ...).
"""

from __future__ import annotations

from typing import Any

from backend import authoring
from backend import settings as account_settings
from backend.credentials import account_key
from backend.errors import MailerError, OAuthError
from backend.inputs import LOCAL_INBOX, AccountInput, MessageInput


class Signatures:
    """Signatures by account (a part of App)."""

    def signature_key(self: Any, a: AccountInput) -> str:
        """What a signature is kept under: the password store's key of an SMTP login (user@host),
        the signed-in address of the Gmail API or Microsoft Graph, or the local test inbox."""
        if a.channel in ("gmail", "microsoft"):
            from backend.core.signins import _google
            from backend.microsoft_auth import saved_profile

            profile = _google().saved_profile() if a.channel == "gmail" else saved_profile()
            if profile is None:
                who = "Google" if a.channel == "gmail" else "Microsoft"
                raise OAuthError(f"sign in with {who} first: the signature is kept for the signed-in account",
                                 fix=(f"Click Sign in with {who} in the Account section.",))
            return f"{a.channel}:{profile['email'].lower()}"
        if a.provider == LOCAL_INBOX:
            return LOCAL_INBOX
        settings, _ = self.smtp_settings(a, need_password=False)
        return account_key(settings.user, settings.host)

    def signature(self: Any, key: str) -> dict[str, str]:
        """The signature kept under key: {"html", "text"} (empty strings when there is none)."""
        saved = (account_settings.load_saved() or {}).get("signatures") or {}
        found = saved.get(key) if isinstance(saved, dict) else None
        found = found if isinstance(found, dict) else {}
        return {"html": str(found.get("html") or ""), "text": str(found.get("text") or "")}

    def account_signature(self: Any, a: AccountInput) -> dict[str, str]:
        """Account a's signature, with the key it is kept under: {"key", "html", "text"}."""
        key = self.signature_key(a)
        return {"key": key, **self.signature(key)}

    def save_signature(self: Any, a: AccountInput, html: str, text: str) -> dict[str, str]:
        """Keep account a's signature (both empty: none); {"key", "html", "text"}. Its fields are
        checked like the message's: a mistake is reported when the message is made."""
        sig = authoring.check_signature(html, text)
        key = self.signature_key(a)
        data = account_settings.load_saved() or {}
        kept = data.get("signatures") if isinstance(data.get("signatures"), dict) else {}
        kept = dict(kept)
        if sig:
            kept[key] = {"html": sig.html, "text": sig.text}
        else:
            kept.pop(key, None)
        account_settings.save({**data, "signatures": kept})
        return {"key": key, "html": sig.html if sig else "", "text": sig.text if sig else ""}

    def _signature_of(self: Any, a: AccountInput | None) -> authoring.Signature | None:
        if a is None:
            return None
        try:
            key = self.signature_key(a)
        except MailerError:  # settings not complete yet, or not signed in: the sender check says so
            return None
        found = self.signature(key)
        return authoring.Signature(found["html"], found["text"]) or None

    def message_bodies(self: Any, m: MessageInput, a: AccountInput | None = None) -> tuple[str | None, str | None]:
        """(HTML template, text template) of m as sent through account a: Markdown converted,
        the account's signature added when m.signature."""
        if (m.markdown or "").strip():
            html: str | None = authoring.markdown_to_html(m.markdown or "", raw_html=m.raw_html)
        else:
            html = m.html
        return authoring.signed(html, m.text, self._signature_of(a) if m.signature else None)
