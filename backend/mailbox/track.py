"""Bounces and replies of a campaign, read from the user's own mailbox and matched through the journal.

``Tracker.run()`` logs in over IMAP (or, for a Gmail account whose user chose it, reads through
the Gmail API with a read-only sign-in: backend/mailbox/gmailapi.py, the same few calls), opens INBOX and the Junk folder with EXAMINE (read-only: no
flag can change, nothing can be moved or deleted) and reads the messages not read before for
this campaign with ``BODY.PEEK`` (never sets \\Seen). Each message is classified
(backend/mailbox/bounces.py) and matched to a recipient of the campaign:

- by the original Message-ID (the journal keeps each recipient's), else
- a bounce by its Final-Recipient (or Original-Recipient), a reply by its From, among the
  campaign's recipients whose message went out before the notice arrived (a bounce within
  BOUNCE_WINDOW of it).

Then: a permanent failure makes the recipient ``bounced`` (status code and diagnostic kept) and
puts the address on the suppression list (reason "bounced"); a transient or delayed notice is
recorded on the row and changes no status, except that an ``uncertain`` recipient becomes
``sent`` (it went out); a reply makes it ``replied`` (with its date and first 200 characters), an
auto-reply ``auto_replied``. Which UIDs of each folder (with its UIDVALIDITY) were read is kept
in the journal, so the next run reads only new messages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend.journal import Journal, JournalRow
from backend.mailbox.bounces import Failure, Notice, classify
from backend.mailbox.imap import ImapClient, ImapSettings, choose_junk

log = logging.getLogger(__name__)

BOUNCE_WINDOW = dt.timedelta(days=30)  # a bounce matched by address arrives within this of the send
CLOCK_SLACK = dt.timedelta(minutes=10)  # clocks of two servers may differ by this much
BATCH = 50  # messages fetched at once
# What each kind of notice may change, and from which statuses.
FROM_FOR = {"bounced": ("sent", "uncertain", "auto_replied"), "replied": ("sent", "uncertain", "auto_replied"),
            "auto_replied": ("sent", "uncertain"), "sent": ("uncertain",)}


# Where "move bounce notices to a Bulk Mailer folder" puts them (created when missing).
MOVE_TO = "Bulk Mailer"


@dataclass
class TrackOutcome:
    """What one run of track read and changed."""

    campaign: str
    mailbox: str
    folders: list[str] = field(default_factory=list)
    read: int = 0  # messages read
    bounced: list[dict[str, Any]] = field(default_factory=list)
    replied: list[dict[str, Any]] = field(default_factory=list)
    auto_replied: list[dict[str, Any]] = field(default_factory=list)
    delayed: list[dict[str, Any]] = field(default_factory=list)  # transient and delayed notices, recorded
    now_sent: list[str] = field(default_factory=list)  # uncertain recipients a notice proved sent
    suppressed: list[str] = field(default_factory=list)
    unmatched: int = 0  # bounces and replies about no recipient of this campaign
    moved: int = 0  # bounce notices moved to the Bulk Mailer folder (only when asked)
    notes: list[str] = field(default_factory=list)  # what the user should know (a move that could not be done)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["counts"] = {k: len(getattr(self, k)) for k in ("bounced", "replied", "auto_replied", "delayed",
                                                         "now_sent", "suppressed")}
        d["mailbox_changed"] = self.moved > 0
        return d

    def summary(self) -> str:
        """'3 bounced, 2 replied, 1 auto-reply, 40 messages read, nothing changed in your mailbox'."""
        parts = [f"{len(self.bounced)} bounced", f"{len(self.replied)} replied",
                 f"{len(self.auto_replied)} auto-repl{'y' if len(self.auto_replied) == 1 else 'ies'}"]
        if self.delayed:
            parts.append(f"{len(self.delayed)} delayed")
        if self.now_sent:
            parts.append(f"{len(self.now_sent)} uncertain now known sent")
        parts.append(f"{self.read} message{'' if self.read == 1 else 's'} read")
        if self.moved:
            return ", ".join(parts) + f", {self.moved} bounce notice{'' if self.moved == 1 else 's'} moved to {MOVE_TO}"
        return ", ".join(parts) + ", nothing changed in your mailbox"


def _parse_iso(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _internaldate(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.strptime(value.strip(), "%d-%b-%Y %H:%M:%S %z").astimezone(dt.UTC)
    except ValueError:
        return None


def mailbox_key(settings: ImapSettings) -> str:
    return f"{settings.user}@{settings.host}:{settings.port}"


class Matcher:
    """A campaign's recipients, found by Message-ID and by address; decides what a notice changes."""

    def __init__(self, rows: list[JournalRow], created: str | None = None) -> None:
        self.by_id = {r.result.message_id: r for r in rows if r.result.message_id}
        self.by_email: dict[str, list[JournalRow]] = {}
        for r in rows:
            # An uncertain one (the app died while it was on its way) has no time sent: it counts
            # as sent when the campaign began.
            if r.result.sent_at or r.result.status == "uncertain":
                self.by_email.setdefault(r.recipient.email.lower(), []).append(r)
        self.status = {r.index: r.result.status for r in rows}
        sent = [_parse_iso(r.result.sent_at) for r in rows if r.result.sent_at]
        self.first_sent = min((s for s in sent if s), default=None)
        if self.first_sent is None and any(r.result.status == "uncertain" for r in rows):
            self.first_sent = _parse_iso(created)
        self._began = self.first_sent

    def by_message_id(self, notice: Notice) -> JournalRow | None:
        return next((self.by_id[m] for m in notice.message_ids if m in self.by_id), None)

    def by_address(self, address: str | None, when: dt.datetime | None, window: dt.timedelta | None) -> JournalRow | None:
        """The recipient with this address whose message went out last before `when` (and within window)."""
        best = None
        for r in self.by_email.get((address or "").lower(), []):
            sent = _parse_iso(r.result.sent_at) or self._began
            if sent is None or (when is not None and sent > when + CLOCK_SLACK):
                continue
            if when is not None and window is not None and when - sent > window:
                continue
            if best is None or sent > (_parse_iso(best.result.sent_at) or sent):
                best = r
        return best


class Tracker:
    """One run of track for one campaign: read the new messages, apply what they say."""

    def __init__(self, journal: Journal, campaign: str, settings: ImapSettings | None, *,
                 suppress: Callable[[list[str]], Any] = lambda addresses: None,
                 emit: Callable[[dict[str, Any]], None] = lambda event: None,
                 client: Callable[[Any], Any] = ImapClient, move_bounces: bool = False,
                 mailbox: str | None = None) -> None:
        """settings: the IMAP mailbox; or None with client (a factory called with None) and the
        mailbox's key, for the Gmail API reader."""
        self.journal, self.campaign, self.settings = journal, campaign, settings
        self._suppress, self._emit, self._client_of = suppress, emit, client
        self.move_bounces = move_bounces  # only when asked: the one change track ever makes
        assert mailbox is not None or settings is not None
        self.outcome = TrackOutcome(campaign, mailbox or mailbox_key(settings))  # type: ignore[arg-type]

    def run(self) -> TrackOutcome:
        matcher = Matcher(self.journal.rows(self.campaign), self.journal.get(self.campaign).created)
        if matcher.first_sent is None:
            return self.outcome  # nothing went out: nothing to read for it
        client = self._client_of(self.settings)
        client.open()
        try:
            folders = ["INBOX"]
            junk = choose_junk(client.folders("\\junk"))
            if junk and junk.upper() != "INBOX":
                folders.append(junk)
            for folder in folders:
                self._read(client, folder, matcher)
        finally:
            client.close()
        return self.outcome

    def _read(self, client: ImapClient, folder: str, matcher: Matcher) -> None:
        uidvalidity = client.examine(folder)
        self.outcome.folders.append(folder)
        key = self.outcome.mailbox
        done = self.journal.mailbox_read(self.campaign, key, folder)
        if done is not None and done[0] == uidvalidity:
            last = done[1]
            uids = [u for u in client.uids("UID", f"{last + 1}:*") if u > last]
        else:  # never read, or renumbered: every message since the day before the first send
            assert matcher.first_sent is not None
            since = (matcher.first_sent - dt.timedelta(days=1)).strftime("%d-%b-%Y")
            last = 0
            uids = client.uids("SINCE", since)
        bounces: list[int] = []  # notices that made a recipient of this campaign bounced
        for start in range(0, len(uids), BATCH):
            chunk = uids[start:start + BATCH]
            for uid, arrived, raw in client.peek(chunk):
                self.outcome.read += 1
                before = len(self.outcome.bounced)
                try:
                    self._apply(classify(raw), _internaldate(arrived), matcher)
                except Exception:  # one odd message never stops the rest
                    log.exception("message %s in %s could not be matched", uid, folder)
                if len(self.outcome.bounced) > before:
                    bounces.append(uid)
            last = max(last, *chunk)
            self.journal.set_mailbox_read(self.campaign, key, folder, uidvalidity, last)
            self._emit({"type": "track-progress", "campaign": self.campaign, "folder": folder,
                        "read": self.outcome.read})
        if done is None or done[0] != uidvalidity:
            self.journal.set_mailbox_read(self.campaign, key, folder, uidvalidity, last)
        if self.move_bounces and bounces:
            moved = client.move(folder, bounces, MOVE_TO)
            self.outcome.moved += moved
            if moved < len(bounces):
                self.outcome.notes.append(f"{len(bounces) - moved} bounce notice{'' if len(bounces) - moved == 1 else 's'} "
                                          f"in {folder} could not be moved to {MOVE_TO}" + (
                                              ": the Gmail API sign-in for reading can only read; move them "
                                              "over IMAP (--provider gmail --user ...)" if self.settings is None
                                              else ""))

    # -- what a notice changes --------------------------------------------------------------------

    def _apply(self, notice: Notice, arrived: dt.datetime | None, m: Matcher) -> None:
        when = arrived or _parse_iso(notice.date)
        at = notice.date or (arrived.isoformat(timespec="seconds") if arrived else None)
        if notice.kind == "bounce":
            self._bounce(notice, when, at, m)
        elif notice.kind in ("reply", "auto_reply", "unrelated"):
            self._reply(notice, when, at, m)

    def _bounce(self, notice: Notice, when: dt.datetime | None, at: str | None, m: Matcher) -> None:
        row = m.by_message_id(notice)
        pairs: list[tuple[JournalRow, Failure]] = []
        if row is not None:
            email_ = row.recipient.email.lower()
            mine = [f for f in notice.failures if email_ in (f.recipient, f.original_recipient)]
            if mine or len(notice.failures) == 1:  # one failure: a forwarding address of this recipient
                pairs.append((row, (mine or list(notice.failures))[0]))
        else:
            for f in notice.failures:
                found = m.by_address(f.recipient, when, BOUNCE_WINDOW) or \
                    m.by_address(f.original_recipient, when, BOUNCE_WINDOW)
                if found is not None:
                    pairs.append((found, f))
        if not pairs:
            self.outcome.unmatched += 1
            return
        for row, f in pairs:
            words = f.diagnostic or (f"status {f.status}" if f.status else "")
            if f.severity == "permanent":
                item = {"email": row.recipient.email, "status": f.status, "diagnostic": f.diagnostic, "at": at}
                if self._change(m, row, "bounced", {"smtp_code": f.smtp_code, "error": words or "bounced",
                                                    "dsn_status": f.status, "notice": f"bounced: {words}"[:500],
                                                    "notice_at": at}):
                    self.outcome.bounced.append(item)
                if m.status[row.index] == "bounced":
                    self._suppress([row.recipient.email])
                    if row.recipient.email not in self.outcome.suppressed:
                        self.outcome.suppressed.append(row.recipient.email)
                continue
            # transient or delayed: recorded, no status changes (an uncertain one went out)
            columns = {"dsn_status": f.status, "notice": f"{f.severity}: {words}"[:500], "notice_at": at}
            was = m.status[row.index]
            if was in ("bounced", "replied"):
                continue
            if was == "uncertain":
                if self._change(m, row, "sent", columns):
                    self.outcome.now_sent.append(row.recipient.email)
            else:
                self.journal.apply_notices(self.campaign, [(row.index, was, (was,), columns)])
            self.outcome.delayed.append({"email": row.recipient.email, "severity": f.severity, "status": f.status,
                                         "diagnostic": f.diagnostic, "at": at})

    def _reply(self, notice: Notice, when: dt.datetime | None, at: str | None, m: Matcher) -> None:
        row = m.by_message_id(notice)
        if row is None:
            # From a recipient, after their message went out: an answer even without threading.
            row = m.by_address(notice.sender, when, None)
        if row is None:
            if notice.kind != "unrelated":
                self.outcome.unmatched += 1
            return
        status = "auto_replied" if notice.kind == "auto_reply" else "replied"
        was = m.status[row.index]
        item = {"email": row.recipient.email, "at": at, "excerpt": notice.excerpt}
        if self._change(m, row, status, {"notice": notice.excerpt, "notice_at": at}):
            getattr(self.outcome, status).append(item)
            if was == "uncertain":
                self.outcome.now_sent.append(row.recipient.email)

    def _change(self, m: Matcher, row: JournalRow, status: str, columns: dict[str, Any]) -> bool:
        was = m.status[row.index]
        if was not in FROM_FOR[status]:
            return False
        changed = self.journal.apply_notices(self.campaign, [(row.index, status, FROM_FOR[status], columns)])
        if changed:
            m.status[row.index] = status
            self._emit({"type": "track-change", "campaign": self.campaign, "email": row.recipient.email,
                        "current": row.index + 1, "was": was, "now": status})
        return bool(changed)



def campaign_mailbox(spec: dict[str, Any], password: Callable[[str, str], str]) -> ImapSettings:
    """The mailbox a journaled campaign's bounces and replies come back to: where it filed its
    copies in Sent, else the mailbox kept with it, else its provider's IMAP server, with the sending login. password(user,
    smtp host) gives the password ($BULK_MAILER_IMAP_PASSWORD, else the one saved)."""
    from backend.errors import SettingsError
    from backend.presets import imap_server

    s = spec.get("settings") or {}
    kept = spec.get("sent_copy") or spec.get("mailbox")
    if s.get("local_inbox"):
        raise SettingsError("provider", "this campaign went to the local test inbox: there is no mailbox to read "
                            "bounces and replies from")
    if kept:
        values = {k: kept[k] for k in ("host", "port", "security", "user", "ca_file", "verify_certificates",
                                       "provider") if k in kept}
    else:
        known = imap_server(s.get("provider"))
        if known is None or not s.get("user"):
            raise SettingsError("imap_host", "this campaign's account has no known IMAP server: give the mailbox's "
                                "server and login (--imap-host imap.example.com --user you@example.com, or "
                                "--provider)")
        values = {"host": known[0], "port": known[1], "security": known[2], "user": s["user"],
                  "ca_file": s.get("ca_file"), "verify_certificates": s.get("verify_certificates", True),
                  "provider": s.get("provider")}
    secret = password(str(values["user"]), str(s.get("host") or values["host"]))
    return ImapSettings(**values, password=secret, timeout=float(s.get("timeout") or 30.0)).validated()


def check_mailbox(settings: ImapSettings, client: Callable[[ImapSettings], ImapClient] = ImapClient) -> dict[str, Any]:
    """Log in to the mailbox and find its folders, changing nothing: what `verify --imap` and the
    window's mailbox check show. Raises the categorised MailerError of a failure."""
    import time

    from backend.mailbox.imap import choose_sent

    started = time.monotonic()
    c = client(settings)
    c.open()
    try:
        c.examine("INBOX")
        folders = c.folders("\\junk")
        everything = c.folders()
        return {"host": settings.host, "port": settings.port, "security": settings.security, "user": settings.user,
                "inbox": True, "sent": choose_sent(everything), "junk": choose_junk(folders),
                "seconds": round(time.monotonic() - started, 3)}
    finally:
        c.close()
