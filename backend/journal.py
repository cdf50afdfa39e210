"""The campaign journal: every campaign and every recipient's state in SQLite, crash-safe.

A recipient is committed as `sending` before MAIL FROM and its outcome right after the
server's reply (WAL, synchronous=FULL), so after a crash or kill -9 the journal says who got
the message, who did not, and who was in flight: those are `uncertain`, listed for the user to
resend or skip, never resent blindly.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend import paths
from backend.errors import MailerError
from backend.model import ResultRow, iso, utc_now
from backend.recipients import Recipient

SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    state TEXT NOT NULL,           -- running, paused, finished, cancelled, failed, interrupted
    reason TEXT,
    account TEXT NOT NULL,         -- user@host:port, for the history list
    spec TEXT NOT NULL,            -- JSON: settings (no password) and message, to resume
    pid INTEGER,
    host TEXT,
    resume_after TEXT              -- stopped by a quota: not before this time (ISO)
);
CREATE TABLE IF NOT EXISTS recipients (
    campaign TEXT NOT NULL REFERENCES campaigns(id),
    idx INTEGER NOT NULL,
    email TEXT NOT NULL,
    line INTEGER NOT NULL,
    fields TEXT NOT NULL,          -- JSON
    status TEXT NOT NULL,          -- pending, sending, sent, failed, skipped, uncertain, deferred
    category TEXT,
    smtp_code INTEGER,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    sent_at TEXT,
    message_id TEXT,
    next_attempt TEXT,             -- a deferred recipient's next try (wall clock, ISO)
    updated TEXT NOT NULL,
    PRIMARY KEY (campaign, idx)
);
CREATE INDEX IF NOT EXISTS recipients_status ON recipients(campaign, status);
"""

# Columns added after the first release of the schema: added to an older journal on open.
_LATER_COLUMNS = {"campaigns": {"resume_after": "TEXT", "pid_start": "TEXT"}, "recipients": {"next_attempt": "TEXT"}}

class JournalError(MailerError):
    """The journal cannot be read or written, or a campaign is not in it."""

    default_category = "file_error"


@dataclass(frozen=True)
class CampaignInfo:
    """One campaign in the history: id, when, which account, state, counts per status."""

    id: str
    created: str
    updated: str
    state: str
    reason: str | None
    account: str
    counts: dict[str, int]
    resume_after: str | None = None  # a quota stopped it: when it can continue
    subject: str | None = None  # the message's subject (its template)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "created": self.created, "updated": self.updated, "state": self.state,
                "reason": self.reason, "account": self.account, "counts": self.counts,
                "total": sum(self.counts.values()), "resume_after": self.resume_after, "subject": self.subject}


@dataclass(frozen=True)
class JournalRow:
    """A recipient as the journal has it."""

    index: int
    recipient: Recipient
    result: ResultRow


def _process_start(pid: int) -> str | None:
    """When a process started (Linux: its start time in clock ticks since boot, with the boot
    id), so a pid that was reused by another process is not taken for ours; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return f"{boot}:{fields[19]}" if len(fields) > 19 else None


def _alive(pid: int | None, host: str | None, started: str | None = None) -> bool:
    if not pid or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    # The same number, but another process (a reboot, a container's pid 1): ours is gone.
    return not (started and _process_start(pid) not in (None, started))


class _Ticket:
    """Statements waiting for a group commit, and how it went."""

    __slots__ = ("done", "error", "ops")

    def __init__(self, ops: list[tuple[str, tuple[Any, ...]]]) -> None:
        self.ops = ops
        self.done = False
        self.error: BaseException | None = None


class Journal:
    """The journal file (data_dir()/journal.sqlite3, mode 0600); safe to share between threads."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.data_dir() / "journal.sqlite3"
        self._lock = threading.Lock()
        self._queue: list[_Ticket] = []  # waiting for the next group commit
        self._queue_changed = threading.Condition()
        self._committing = False
        self.commits = 0  # transactions committed by record(): fewer than its calls when grouped
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
            os.chmod(self.path, 0o600)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            for table, columns in _LATER_COLUMNS.items():
                have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
                for name, kind in columns.items():
                    if name not in have:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"the campaign journal {self.path} cannot be opened: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: Iterable[Any] = ()) -> None:
        with self._lock:
            self._db.execute(sql, tuple(args))

    # -- campaigns ----------------------------------------------------------------------------

    def create(self, campaign_id: str, *, account: str, spec: dict[str, Any], recipients: list[Recipient],
               excluded: Iterable[ResultRow] = ()) -> None:
        """Record a new campaign: every recipient pending, the left-out ones skipped."""
        now = iso(utc_now())
        base = len(recipients)
        # Generated as inserted: 100,000 rows never sit in memory twice.
        rows = itertools.chain(
            ((campaign_id, i, r.email, r.line, json.dumps(r.fields, ensure_ascii=False), "pending", None,
              None, None, 0, None, None, None, now) for i, r in enumerate(recipients)),
            ((campaign_id, base + j, x.email, x.line or 0, "{}", "skipped", x.category, None, x.error, 0, None,
              None, None, now) for j, x in enumerate(excluded)))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO campaigns(id, created, updated, state, reason, account, spec, pid, host, pid_start) "
                    "VALUES (?, ?, ?, 'running', NULL, ?, ?, ?, ?, ?)",
                    (campaign_id, now, now, account, json.dumps(spec, ensure_ascii=False), os.getpid(),
                     socket.gethostname(), _process_start(os.getpid())))
                self._db.executemany("INSERT INTO recipients VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def claim(self, campaign_id: str) -> None:
        """This process now runs the campaign (resume); JournalError when another one does.

        One statement decides, so two resumes at once (the window and the command line) cannot
        both send the rest. Claiming again from the process that holds it is fine.
        """
        self.recover_dead()
        me, host = os.getpid(), socket.gethostname()
        with self._lock:
            cur = self._db.execute(
                "UPDATE campaigns SET state='running', reason=NULL, pid=?, host=?, pid_start=?, updated=? "
                "WHERE id=? AND (state != 'running' OR (pid=? AND host=?))",
                (me, host, _process_start(me), iso(utc_now()), campaign_id, me, host))
        if cur.rowcount == 0:
            raise JournalError(f"campaign {campaign_id} is being sent by another window or process; "
                               "wait for it to finish", category="action_unavailable")

    def set_state(self, campaign_id: str, state: str, reason: str | None = None,
                  resume_after: str | None = None) -> None:
        self._write("UPDATE campaigns SET state=?, reason=?, resume_after=?, updated=? WHERE id=?",
                    (state, reason, resume_after, iso(utc_now()), campaign_id))

    def set_spec(self, campaign_id: str, spec: dict[str, Any]) -> None:
        """Replace what a campaign is resumed with (the account settings the user corrected)."""
        self._write("UPDATE campaigns SET spec=?, updated=? WHERE id=?",
                    (json.dumps(spec, ensure_ascii=False), iso(utc_now()), campaign_id))

    def spec(self, campaign_id: str) -> dict[str, Any]:
        with self._lock:
            found = self._db.execute("SELECT spec FROM campaigns WHERE id=?", (campaign_id,)).fetchone()
        if found is None:
            raise JournalError(f"there is no campaign '{campaign_id}' (bulk-mailer campaigns lists them)",
                               category="invalid_settings")
        return json.loads(found[0])

    def campaigns(self) -> list[CampaignInfo]:
        """Every campaign, newest first; an active one whose process is gone is 'interrupted'."""
        self.recover_dead()
        with self._lock:
            rows = self._db.execute(
                "SELECT id, created, updated, state, reason, account, resume_after, "
                "json_extract(spec, '$.message.subject') FROM campaigns "
                "ORDER BY created DESC, id DESC"
            ).fetchall()
            counts: dict[str, Counter[str]] = {}
            for cid, status, n in self._db.execute(
                    "SELECT campaign, status, COUNT(*) FROM recipients GROUP BY campaign, status"):
                counts.setdefault(cid, Counter())[status] = n
        return [CampaignInfo(r[0], r[1], r[2], r[3], r[4], r[5], dict(counts.get(r[0], {})), r[6], r[7]) for r in rows]

    def get(self, campaign_id: str) -> CampaignInfo:
        for info in self.campaigns():
            if info.id == campaign_id:
                return info
        raise JournalError(f"there is no campaign '{campaign_id}' (bulk-mailer campaigns lists them)",
                           category="invalid_settings")

    def recover_dead(self) -> list[str]:
        """Campaigns left running by a process that died: in-flight rows become uncertain."""
        with self._lock:
            active = self._db.execute(
                "SELECT id, pid, host, pid_start FROM campaigns WHERE state = 'running'").fetchall()
        dead = [cid for cid, pid, host, started in active if not _alive(pid, host, started)]
        for cid in dead:
            self.mark_interrupted(cid, "the app stopped while this campaign was sending")
        return dead

    def mark_interrupted(self, campaign_id: str, reason: str) -> int:
        """Rows in flight become uncertain (the server may have the message); return how many."""
        now = iso(utc_now())
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute(
                "UPDATE recipients SET status='uncertain', category='server_disconnected', updated=?, "
                "error='the app stopped while this message was being sent: it may or may not have arrived' "
                "WHERE campaign=? AND status='sending'", (now, campaign_id))
            self._db.execute("UPDATE campaigns SET state='interrupted', reason=?, updated=? WHERE id=?",
                             (reason, now, campaign_id))
            self._db.execute("COMMIT")
            return cur.rowcount

    def sent_since(self, account: str, since: str) -> list[str]:
        """When this account's messages were sent since an ISO time (for daily quotas across runs)."""
        with self._lock:
            found = self._db.execute(
                "SELECT r.sent_at FROM recipients r JOIN campaigns c ON c.id = r.campaign "
                "WHERE c.account = ? AND r.status = 'sent' AND r.sent_at >= ? ORDER BY r.sent_at",
                (account, since)).fetchall()
        return [row[0] for row in found]

    # -- recipients ---------------------------------------------------------------------------

    def mark_sending(self, campaign_id: str, index: int) -> None:
        """Committed before MAIL FROM: a crash from here on leaves this row uncertain."""
        self.record(campaign_id, sending=index)

    def mark_outcome(self, campaign_id: str, index: int, row: ResultRow) -> None:
        """Committed right after the server's reply."""
        self.record(campaign_id, outcome=(index, row))

    def record(self, campaign_id: str, *, sending: int | None = None,
               outcome: tuple[int, ResultRow] | None = None) -> None:
        """Commit one recipient's outcome and/or the next one's 'sending' mark, in one transaction.

        Returns once committed (WAL, synchronous=FULL). Calls from several threads (one per
        connection) that arrive while a commit is under way are committed together in the
        next one: one fsync for all of them, each caller still waiting for its own.
        """
        now = iso(utc_now())
        ops: list[tuple[str, tuple[Any, ...]]] = []
        if outcome is not None:
            index, row = outcome
            ops.append(("UPDATE recipients SET status=?, category=?, smtp_code=?, error=?, sent_at=?, "
                        "message_id=?, next_attempt=?, updated=? WHERE campaign=? AND idx=?",
                        (row.status, row.category, row.smtp_code, row.error, row.sent_at, row.message_id,
                         row.next_attempt, now, campaign_id, index)))
        if sending is not None:
            ops.append(("UPDATE recipients SET status='sending', attempts=attempts+1, updated=? "
                        "WHERE campaign=? AND idx=?", (now, campaign_id, sending)))
        if ops:
            self._group_commit(ops)

    def _group_commit(self, ops: list[tuple[str, tuple[Any, ...]]]) -> None:
        ticket = _Ticket(ops)
        with self._queue_changed:
            self._queue.append(ticket)
            while not ticket.done and self._committing:
                self._queue_changed.wait()
            if ticket.done:  # a commit led by another thread took it
                if ticket.error is not None:
                    raise ticket.error
                return
            # Lead: commit everything queued so far, ours included.
            batch, self._queue = self._queue, []
            self._committing = True
        error: BaseException | None = None
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for t in batch:
                        for sql, args in t.ops:
                            self._db.execute(sql, args)
                    self._db.execute("COMMIT")
                    self.commits += 1
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
        except BaseException as exc:
            error = exc
        finally:
            with self._queue_changed:
                for t in batch:
                    t.done, t.error = True, error
                self._committing = False
                self._queue_changed.notify_all()
        if error is not None:
            raise error

    def reset(self, campaign_id: str, statuses: Iterable[str]) -> int:
        """Put rows of these statuses back to pending (resend uncertain/failed); return how many."""
        wanted = tuple(statuses)
        marks = ",".join("?" * len(wanted))
        with self._lock:
            cur = self._db.execute(
                "UPDATE recipients SET status='pending', error=NULL, category=NULL, smtp_code=NULL "  # noqa: S608
                f"WHERE campaign=? AND status IN ({marks})", (campaign_id, *wanted))
            return cur.rowcount

    def skip(self, campaign_id: str, status: str, reason: str) -> int:
        with self._lock:
            cur = self._db.execute("UPDATE recipients SET status='skipped', error=? WHERE campaign=? AND status=?",
                                   (reason, campaign_id, status))
            return cur.rowcount

    def rows(self, campaign_id: str, statuses: Iterable[str] | None = None) -> list[JournalRow]:
        """The campaign's recipients in order (optionally only these statuses)."""
        sql = ("SELECT idx, email, line, fields, status, category, smtp_code, error, attempts, sent_at, message_id, "
               "next_attempt FROM recipients WHERE campaign=?")
        args: list[Any] = [campaign_id]
        if statuses is not None:
            wanted = tuple(statuses)
            sql += f" AND status IN ({','.join('?' * len(wanted))})"  # noqa: S608 (placeholders only)
            args += wanted
        with self._lock:
            found = self._db.execute(sql + " ORDER BY idx", args).fetchall()
        return [JournalRow(idx, Recipient(email, json.loads(fields), line),
                           ResultRow(email, status, category, code, error, attempts, sent_at, message_id,
                                     next_attempt=nxt, line=line or None))
                for idx, email, line, fields, status, category, code, error, attempts, sent_at, message_id, nxt
                in found]
