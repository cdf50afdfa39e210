"""The user's own mailbox around a campaign: where the copy in Sent goes, and the bounces and
replies read back from it (track), part of the App.

A mixin of backend.app.App: its methods use the App's state (self.journal, self.store, ...).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from typing import Any

from backend import plans, service
from backend.core.signins import _google
from backend.errors import MailerError, SettingsError
from backend.inputs import AccountInput
from backend.mailbox import gmailapi, track
from backend.mailbox.imap import DEFAULT_IMAP_PORTS, ImapSettings
from backend.mailbox.sent import FILES_ITS_OWN
from backend.mailbox.sent import MODES as SENT_COPY_MODES
from backend.model import iso, utc_now
from backend.presets import imap_server
from backend.settings import SmtpSettings

# The window reads each campaign's bounces and replies by itself for this long after it was sent,
# at most this often.
TRACK_DAYS, TRACK_EVERY_S = 3, 600


class Mailbox:
    """The user's own mailbox around a campaign (a part of App)."""

    # -- the copy in Sent: where it goes --------------------------------------------------

    def _mailbox_of(self, a: AccountInput, settings: SmtpSettings, local: bool) -> ImapSettings | None:
        """The account's mailbox where one is known (the IMAP server given, or the provider's), kept
        with the campaign so its bounces and replies can be read later, copy in Sent or not."""
        try:
            return self.sent_copy_settings(a, settings, local, "always") if not local else None
        except MailerError:
            return None

    def sent_copy_settings(self, a: AccountInput, settings: SmtpSettings, local: bool,
                           mode: str = "auto") -> ImapSettings | None:
        """Where a copy of each sent message is filed in Sent, or None. auto: off for the local
        test inbox and where the provider's server files one itself (Gmail, Microsoft 365), on
        where the IMAP server is known (the provider's, or the one given)."""
        if mode not in SENT_COPY_MODES:
            raise SettingsError("sent_copy", f"{mode!r} is not one of {', '.join(SENT_COPY_MODES)}")
        if mode == "never":
            return None
        known = imap_server(settings.provider) if not local else None
        host = a.imap_host.strip() or (known[0] if known else "")
        if mode == "auto" and (local or settings.provider in FILES_ITS_OWN or not host):
            return None
        if not host:
            raise SettingsError("imap_host", "a copy in Sent needs the mailbox's IMAP server: give --imap-host "
                                "(e.g. imap.example.com), or choose --sent-copy never")
        if settings.auth == "xoauth2":
            raise SettingsError("sent_copy", "with Sign in with Google, Gmail files the copy in Sent itself: "
                                "choose --sent-copy auto or never")
        return self._imap_settings(a, settings, host, known)

    @staticmethod
    def _imap_settings(a: AccountInput, settings: SmtpSettings, host: str,
                       known: tuple[str, int, str] | None) -> ImapSettings:
        security = a.imap_security or (known[2] if known and not a.imap_host.strip() else None) \
            or ("starttls" if a.imap_port == 143 else "ssl")
        port = a.imap_port or (known[1] if known and not a.imap_host.strip() else DEFAULT_IMAP_PORTS.get(security, 993))
        password = os.environ.get("BULK_MAILER_IMAP_PASSWORD") or settings.password
        return ImapSettings(host=host, port=port, security=security, user=settings.user, password=password,
                            ca_file=settings.ca_file, verify_certificates=settings.verify_certificates,
                            timeout=settings.timeout, provider=settings.provider).validated()

    @staticmethod
    def _sent_copy_as_before(plan: plans.Plan, spec: dict[str, Any], settings: SmtpSettings,
                             mode: str) -> plans.Plan:
        """A resumed campaign files its copies where it did (never: not any more)."""
        kept = spec.get("sent_copy")
        if not kept or mode == "never" or plan.gmail is not None or plan.microsoft is not None:
            return plans.with_sent_copy(plan, None)
        password = os.environ.get("BULK_MAILER_IMAP_PASSWORD") or settings.password
        return plans.with_sent_copy(plan, ImapSettings(**kept, password=password, timeout=settings.timeout).validated())

    # -- after sending: bounces and replies from the user's own mailbox ------------------------

    def track_settings(self, cid: str, account: AccountInput | None = None, *, password: str = "",
                       passphrase: str | None = None) -> ImapSettings:
        """The mailbox to read for a campaign: the account given (its provider's IMAP server or
        --imap-host), else the campaign's own (where it filed copies in Sent, else its provider's).
        The password: the one given, $BULK_MAILER_IMAP_PASSWORD, else the one saved."""
        imap_env = os.environ.get("BULK_MAILER_IMAP_PASSWORD", "")
        if account is not None and (account.provider or account.host.strip() or account.imap_host.strip()):
            settings, local = self.smtp_settings(
                dataclasses.replace(account, password=account.password or password or imap_env),
                passphrase=passphrase)
            known = imap_server(settings.provider) if not local else None
            host = account.imap_host.strip() or (known[0] if known else "")
            if local or not host:
                raise SettingsError("imap_host", "reading bounces and replies needs the mailbox's IMAP server: give "
                                    "--imap-host (e.g. imap.example.com) or a --provider that has one")
            return self._imap_settings(account, settings, host, known)
        spec = self.journal.spec(cid)
        if service.channel_of(spec) == "gmail":
            raise SettingsError("imap_host", "a Gmail API campaign's mailbox is read over IMAP with an app password "
                                "(--provider gmail --user you@gmail.com, the app password in "
                                "$BULK_MAILER_IMAP_PASSWORD), or through the Gmail API after a sign-in for reading "
                                "(bulk-mailer gmail login --read)", fix=gmailapi.FIX_READ)
        if service.channel_of(spec) == "microsoft":
            raise SettingsError("imap_host", "a Microsoft Graph campaign's mailbox is read over IMAP: give --provider "
                                "outlook (or office365) --user you@example.com, and the password or app password in "
                                "$BULK_MAILER_IMAP_PASSWORD")

        def secret(user: str, host: str) -> str:
            return password or imap_env or self.password(user, host, "", passphrase)

        return track.campaign_mailbox(spec, secret)

    def check_mailbox(self, a: AccountInput, *, password: str = "", passphrase: str | None = None) -> dict[str, Any]:
        """Log in to the account's mailbox over IMAP (read-only) and name its INBOX, Sent and Junk
        folders: `verify --imap`, and the window's check before "Check replies and bounces"."""
        if not (a.provider or a.host.strip() or a.imap_host.strip()):
            raise SettingsError("imap_host", "give the mailbox's IMAP server (--imap-host) or a --provider")
        return track.check_mailbox(self.track_settings("", a, password=password, passphrase=passphrase))

    def track(self, cid: str, account: AccountInput | None = None, *, password: str = "",
              passphrase: str | None = None, move_bounces: bool = False, gmail_api: bool = False) -> track.TrackOutcome:
        """Read a campaign's bounces and replies from INBOX and Junk (read-only: EXAMINE and
        BODY.PEEK, no flag set, nothing moved or deleted) and record them in the journal; bounced
        addresses go on the suppression list. A second run reads only new messages. Through the
        Gmail API (read-only sign-in) when asked, or for a Gmail API campaign when that sign-in
        exists and no mailbox is given."""
        cid = self.campaign_id(cid)
        self._tracked_at[cid] = time.monotonic()  # tried: the automatic check waits its interval
        suppress = lambda addresses: self.suppression.add(addresses, reason="bounced")  # noqa: E731
        spec = self.journal.spec(cid)
        if gmail_api or (account is None and service.channel_of(spec) == "gmail" and _google().saved_profile(reading=True)):
            if account is not None:
                raise SettingsError("gmail_api", "reading through the Gmail API takes no mailbox options: leave out "
                                    "--provider, --host, --user and --imap-*, or leave out --gmail-api to read over IMAP")
            reader = gmailapi.reader_for(self.google(passphrase, reading=True), spec, self.journal.get(cid).created)
            return track.Tracker(self.journal, cid, None, client=lambda _: reader, mailbox=reader.mailbox,
                                 emit=self.emit, move_bounces=move_bounces, suppress=suppress).run()
        settings = self.track_settings(cid, account, password=password, passphrase=passphrase)
        return track.Tracker(self.journal, cid, settings, emit=self.emit, move_bounces=move_bounces,
                             suppress=suppress).run()

    def track_due(self, *, password: str = "", passphrase: str | None = None,
                  move_bounces: bool = False) -> list[dict[str, Any]]:
        """The window's automatic check: every campaign that sent something in the last 3 days
        (not into the local test inbox), each at most every 10 minutes; a campaign whose mailbox
        cannot be read is reported with its error, never raised."""
        since, now, out = iso(utc_now() - dt.timedelta(days=TRACK_DAYS)), time.monotonic(), []
        for info in self.journal.campaigns():
            last = self._tracked_at.get(info.id)
            if (info.created < since or (last is not None and now - last < TRACK_EVERY_S)
                    or not any(info.counts.get(k) for k in ("sent", "bounced", "replied", "auto_replied"))
                    or (self.journal.spec(info.id).get("settings") or {}).get("local_inbox")):
                continue
            try:
                outcome = self.track(info.id, password=password, passphrase=passphrase, move_bounces=move_bounces)
            except MailerError as exc:
                out.append({"campaign": info.id, "error": exc.describe()})
            else:
                out.append({**outcome.as_dict(), "summary": outcome.summary()})
        return out

    def interrupted(self) -> list[dict[str, Any]]:
        """Campaigns the app died in while sending, with something left: to announce at once."""
        return [c for c in self.history() if c["state"] == "interrupted" and c["resumable"]]
