"""The campaign journal: every campaign and every recipient's state in SQLite, crash-safe.

A recipient is committed as `sending` before MAIL FROM and its outcome right after the
server's reply (WAL, synchronous=FULL), so after a crash or kill -9 the journal says who got
the message, who did not, and who was in flight: those are `uncertain`, listed for the user to
resend or skip, never resent blindly.

Storage that fails is a MailerError, never a crash: a damaged file is JournalDamaged (set it
aside with repair_journal(), which reads what it can row by row); a full disk is DiskFullError,
which pauses a run (a 1 MB reserve beside the journal is given back so the outcomes in flight
and the campaign's state can still be recorded; the WAL is checkpointed and cut at the next
open). The journal and its -wal/-shm are never opened through a symbolic link.
"""

from __future__ import annotations

import errno
import functools
import itertools
import json
import logging
import math
import os
import re
import shutil
import socket
import sqlite3
import stat
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from backend import paths
from backend.errors import DiskFullError, MailerError
from backend.model import SENT_STATUSES, ResultRow, iso, utc_now
from backend.recipients import Recipient

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    state TEXT NOT NULL,           -- scheduled, running, waiting, paused, finished, cancelled, failed, interrupted
    reason TEXT,
    account TEXT NOT NULL,         -- user@host:port, for the history list
    spec TEXT NOT NULL,            -- JSON: settings (no password) and message, to resume
    pid INTEGER,
    host TEXT,
    resume_after TEXT              -- scheduled, waiting or stopped by a quota: not before this time (ISO)
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
CREATE TABLE IF NOT EXISTS mailbox_reads (  -- track: the messages of each mailbox folder read so far
    campaign TEXT NOT NULL,
    mailbox TEXT NOT NULL,         -- user@host:port
    folder TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,  -- the folder's UIDVALIDITY: another one means its UIDs were renumbered
    last_uid INTEGER NOT NULL,     -- every message up to this UID has been read
    updated TEXT NOT NULL,
    PRIMARY KEY (campaign, mailbox, folder)
);
"""

# Columns added after the first release of the schema: added to an older journal on open.
_LATER_COLUMNS = {"campaigns": {"resume_after": "TEXT", "pid_start": "TEXT"},
                  "recipients": {"next_attempt": "TEXT", "sent_copy": "TEXT", "dsn_status": "TEXT", "notice": "TEXT",
                                 "notice_at": "TEXT"}}

class JournalError(MailerError):
    """The journal cannot be read or written, or a campaign is not in it."""

    default_category = "file_error"


class JournalDamaged(JournalError):
    """The journal file is damaged (SQLite: malformed, or not a database); .path names it."""

    def __init__(self, path: Path, detail: str) -> None:
        name = path.name
        super().__init__(
            f"the campaign journal {path} is damaged ({detail}): the campaigns in it cannot be listed, "
            "sent or resumed as they are; new campaigns work again once it is set aside",
            fix=(f"Close the app's window and any other bulk-mailer command, then set the damaged journal "
                 f"aside: bulk-mailer repair-journal. It renames {name} to {name}.damaged-<date and time> and "
                 "writes what can still be read of each campaign to CSV files in a folder beside it.",
                 "Then send as usual: a new campaign starts a new journal. The campaigns of the damaged one "
                 "cannot be resumed; their CSV files say who was sent to (status sent), so a new campaign "
                 "can go to the others.",
                 f"Without the command: rename {path} (and {name}-wal beside it, if there is one) yourself; "
                 "the next campaign starts a new journal.",
                 "A damaged file often comes from a failing disk or a power cut while writing: check the "
                 "disk, and keep a copy of the app's data folder."))
        self.path = path


SQLITE_CORRUPT, SQLITE_FULL, SQLITE_NOTADB = 11, 13, 26
RESERVE_BYTES = 1 << 20  # kept aside on the journal's disk for its last words when the disk fills
_WAL_HEADROOM_PAGES = 256  # beyond the auto-checkpoint's WAL, for the database to grow into


def _failure(exc: BaseException) -> str | None:
    """'damaged', 'full' or None: what a SQLite or OS error says about the journal file."""
    if isinstance(exc, OSError):
        return "full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else None
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    base = code & 0xFF if isinstance(code, int) else None
    text = str(exc).lower()
    if base in (SQLITE_CORRUPT, SQLITE_NOTADB) or "malformed" in text or "not a database" in text:
        return "damaged"
    if base == SQLITE_FULL or "database or disk is full" in text:
        return "full"
    return None


_DIED = "the app stopped while this campaign was sending"
_F = TypeVar("_F", bound=Callable[..., Any])


def _guarded(method: _F) -> _F:
    """A damaged file or a full disk, met anywhere in the method, becomes a clear MailerError."""

    @functools.wraps(method)
    def run(self: Journal, *args: Any, **kw: Any) -> Any:
        try:
            return method(self, *args, **kw)
        except (sqlite3.Error, OSError) as exc:
            better = self._translate(exc)
            if better is None:
                raise
            raise better from exc

    return run  # type: ignore[return-value]


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


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _refuse_link(path: Path) -> None:
    """JournalError when path is a symbolic link (the app never opens its files through one)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise JournalError(
            f"the campaign journal file {path} is a symbolic link: refused, so the file it points to is "
            "neither opened nor changed",
            fix=(f"Remove the link {path} (the next campaign starts a new journal), or put the real "
                 "journal file in its place.",
                 "If you did not make this link, another program or user changed the app's data folder: "
                 "check who can write to it."))


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
        self._needed = 4096 * (1000 + _WAL_HEADROOM_PAGES) + RESERVE_BYTES  # free space to ask for when the disk is full
        try:
            self._open()
        except JournalError:
            self._close_quietly()
            raise
        except (OSError, sqlite3.Error) as exc:
            better = self._translate(exc)
            self._close_quietly()
            if better is not None:
                raise better from exc
            raise JournalError(f"the campaign journal {self.path} cannot be opened: {exc}") from None

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass

    def _open(self) -> None:
        # Never through a link: a journal linked to another file (/etc/passwd) would have that
        # file's mode changed and be opened by SQLite as ours.
        for extra in ("", "-wal", "-shm"):
            _refuse_link(Path(f"{self.path}{extra}"))
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # made a link since the check above
                _refuse_link(self.path)
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise JournalError(f"the campaign journal {self.path} is not a regular file; move it away",
                                   category="file_error")
            if st.st_nlink > 1:
                raise JournalError(
                    f"the campaign journal {self.path} has other names (hard links): refused, it may be "
                    "another file; move it away (the next campaign starts a new journal)")
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)  # the file opened above, never a path that could be swapped
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            now = os.stat(self.path, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                self._db.close()
                raise JournalError(f"the campaign journal {self.path} was replaced while it was being opened; "
                                   "refused (another program is changing the app's data folder)")
        finally:
            os.close(fd)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        for table, columns in _LATER_COLUMNS.items():
            have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        page = self._db.execute("PRAGMA page_size").fetchone()[0]
        wal_pages = self._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        self._needed = page * (max(wal_pages, 0) + _WAL_HEADROOM_PAGES) + RESERVE_BYTES
        # A WAL left large by a full disk (or a crash) is folded into the file and cut to nothing
        # when space has returned; a short wait only, another process may be sending.
        self._checkpoint("TRUNCATE")
        self._keep_reserve()

    @property
    def reserve_path(self) -> Path:
        return Path(f"{self.path}-reserve")

    def _keep_reserve(self) -> None:
        """Keep RESERVE_BYTES of the disk for the journal's last words (best effort).

        When the disk fills, the reserve is given back: the WAL can then be folded into the
        file (pages split during the run need room there) and the outcomes in flight and the
        campaign's state recorded. Made again once the disk has room (at an open, a new run).
        """
        target = self.reserve_path
        try:
            if os.path.lexists(target):
                _refuse_link(target)
                return
            if shutil.disk_usage(self.path.parent).free < 2 * RESERVE_BYTES:
                return  # not now: taking the last of the space would only make the disk fill sooner
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                         0o600)
        except (OSError, JournalError) as exc:
            log.info("journal reserve not made: %s", exc)
            return
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            else:
                os.write(fd, b"\0" * RESERVE_BYTES)
            os.fsync(fd)
        except OSError as exc:
            log.info("journal reserve not made: %s", exc)
            target.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def _give_back_reserve(self) -> bool:
        try:
            _refuse_link(self.reserve_path)
            self.reserve_path.unlink()
        except (OSError, JournalError):
            return False
        log.warning("the disk holding %s is full: the journal's reserve of %d bytes is given back",
                    self.path.parent, RESERVE_BYTES)
        return True

    def _checkpoint(self, mode: str) -> None:
        try:
            self._db.execute("PRAGMA busy_timeout=200")
            try:
                busy, frames, done = self._db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
                log.debug("journal checkpoint (%s): busy %s, %s of %s frames", mode, busy, done, frames)
            finally:
                self._db.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as exc:  # busy, or still no room: the next one tries again
            log.info("journal checkpoint (%s) not done: %s", mode, exc)

    def _translate(self, exc: BaseException) -> MailerError | None:
        """The MailerError a damaged file or a full disk means (None for other errors)."""
        kind = _failure(exc)
        if kind == "damaged":
            return JournalDamaged(self.path, str(exc))
        if kind != "full":
            return None
        folder = self.path.parent
        try:
            free = f"{shutil.disk_usage(folder).free / 1e6:.1f} MB free"
        except OSError:
            free = "no room left"
        if hasattr(self, "_db"):
            # What is in the WAL goes into the file, and the WAL is written again from its start
            # by the next transaction: room for the last outcomes and the campaign's state.
            with self._lock:
                if self._db.in_transaction:  # left open by the failed statement: nothing of it is kept
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                self._give_back_reserve()
                self._checkpoint("RESTART")
        needed = math.ceil(self._needed / 1e6)
        return DiskFullError(
            f"the disk holding {folder} is full ({free}): the campaign journal {self.path.name} cannot "
            f"record more. A campaign that was sending is paused, with every result recorded so far "
            f"kept; free at least {needed} MB there and resume it",
            folder=str(folder), needed=self._needed,
            fix=(f"Free at least {needed} MB on the disk holding {folder}: delete or move files there "
                 "(or empty the trash).",
                 "Then resume the campaign (bulk-mailer resume <campaign>, or Resume in History): "
                 "nobody recorded as sent is sent to again."))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: Iterable[Any] = ()) -> None:
        with self._lock:
            self._db.execute(sql, tuple(args))

    # -- campaigns ----------------------------------------------------------------------------

    @_guarded
    def create(self, campaign_id: str, *, account: str, spec: dict[str, Any], recipients: list[Recipient],
               excluded: Iterable[ResultRow] = (), state: str = "running", resume_after: str | None = None,
               due: dict[int, str] | None = None) -> None:
        """Record a new campaign: every recipient pending, the left-out ones skipped.

        state 'scheduled': nobody sends it until resume_after (its start); due: a recipient's
        delivery time (its local time), kept as its next attempt."""
        now = iso(utc_now())
        base, due = len(recipients), due or {}
        mine = state == "running"
        # Generated as inserted: 100,000 rows never sit in memory twice.
        rows = itertools.chain(
            ((campaign_id, i, r.email, r.line, json.dumps(r.fields, ensure_ascii=False), "pending", None,
              None, None, 0, None, None, due.get(i), now) for i, r in enumerate(recipients)),
            ((campaign_id, base + j, x.email, x.line or 0, "{}", "skipped", x.category, None, x.error, 0, None,
              None, None, now) for j, x in enumerate(excluded)))
        with self._lock:
            if self._db.execute("SELECT 1 FROM campaigns WHERE id=?", (campaign_id,)).fetchone():
                # A follow-up's id is fixed: the window and the timer cannot both start it.
                raise JournalError(f"campaign {campaign_id} has been started already", category="action_unavailable")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO campaigns(id, created, updated, state, reason, account, spec, pid, host, pid_start, "
                    "resume_after) VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)",
                    (campaign_id, now, now, state, account, json.dumps(spec, ensure_ascii=False),
                     os.getpid() if mine else None, socket.gethostname() if mine else None,
                     _process_start(os.getpid()) if mine else None, resume_after))
                self._db.executemany("INSERT INTO recipients(campaign, idx, email, line, fields, status, category, smtp_code, "
                                     "error, attempts, sent_at, message_id, next_attempt, updated) "
                                     "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise JournalError(f"campaign {campaign_id} has been started already",
                                   category="action_unavailable") from None
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back already (a full disk)
                    self._db.execute("ROLLBACK")
                raise
            # The new rows go into the file now, while there is room: should the disk fill during
            # the run, folding the WAL back in then only rewrites pages the file already has, so
            # the last outcomes and the campaign's state can still be recorded.
            self._checkpoint("TRUNCATE")
        self._keep_reserve()

    @_guarded
    def claim(self, campaign_id: str) -> None:
        """This process now runs the campaign (resume); JournalError when another one does.

        One statement decides, so two resumes at once (the window and the command line) cannot
        both send the rest. Claiming again from the process that holds it is fine.
        """
        self.recover_dead()
        self._keep_reserve()  # given back when the disk filled: made again if there is room now
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
                  resume_after: str | None = None) -> bool:
        """Record a campaign's state; False when the disk is full (it stays as it was: a run that
        stopped then reads as interrupted once its process is gone, and resumes the same way)."""
        try:
            self._set_state(campaign_id, state, reason, resume_after)
        except DiskFullError as exc:
            log.warning("campaign %s: state %s not recorded: %s", campaign_id, state, exc.message)
            return False
        return True

    @_guarded
    def _set_state(self, campaign_id: str, state: str, reason: str | None, resume_after: str | None) -> None:
        self._write("UPDATE campaigns SET state=?, reason=?, resume_after=?, updated=? WHERE id=?",
                    (state, reason, resume_after, iso(utc_now()), campaign_id))

    @_guarded
    def change_scheduled(self, campaign_id: str, *, spec: dict[str, Any] | None = None, start: str | None = None,
                         due: dict[int, str | None] | None = None) -> bool:
        """Edit a campaign that has not started (its message, its start, its recipients' delivery
        times), in one transaction; False when it is no longer scheduled (it started meanwhile)."""
        now = iso(utc_now())
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "UPDATE campaigns SET spec=COALESCE(?, spec), resume_after=COALESCE(?, resume_after), updated=? "
                    "WHERE id=? AND state='scheduled'",
                    (json.dumps(spec, ensure_ascii=False) if spec is not None else None, start, now, campaign_id))
                if cur.rowcount and due is not None:
                    self._db.executemany("UPDATE recipients SET next_attempt=?, updated=? WHERE campaign=? AND idx=? "
                                         "AND status='pending'",
                                         [(at, now, campaign_id, i) for i, at in due.items()])
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return bool(cur.rowcount)

    @_guarded
    def cancel_waiting(self, campaign_id: str, reason: str) -> int:
        """Cancel a campaign nobody is sending (scheduled, waiting, paused): its pending
        recipients skipped with the reason; -1 when it is being sent (cancel the run instead)."""
        now = iso(utc_now())
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute("UPDATE campaigns SET state='cancelled', reason=?, resume_after=NULL, updated=? "
                                       "WHERE id=? AND state != 'running'", (reason, now, campaign_id))
                skipped = -1
                if cur.rowcount:
                    skipped = self._db.execute(
                        "UPDATE recipients SET status='skipped', error=?, next_attempt=NULL, updated=? "
                        "WHERE campaign=? AND status IN ('pending', 'deferred')",
                        (f"not sent: {reason}", now, campaign_id)).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return skipped

    @_guarded
    def due_campaigns(self, now: str) -> list[tuple[str, str]]:
        """(id, state) of the campaigns nobody sends whose time has come (scheduled, waiting for a
        window or a local time, paused by a daily limit), oldest first."""
        with self._lock:
            return [(r[0], r[1]) for r in self._db.execute(
                "SELECT id, state FROM campaigns WHERE state IN ('scheduled', 'waiting', 'paused') AND "
                "resume_after IS NOT NULL AND julianday(resume_after) <= julianday(?) ORDER BY created, id",
                (now,)).fetchall()]

    @_guarded
    def waiting_follow_ups(self) -> list[str]:
        """Finished campaigns with a follow-up step not sent yet, oldest first (found in SQL: the
        window asks every 30 seconds, and a history of campaigns need not be read for it)."""
        with self._lock:
            found = self._db.execute(
                "SELECT id FROM campaigns WHERE state='finished' AND json_type(spec, '$.follow_ups') = 'array' "
                "AND EXISTS (SELECT 1 FROM json_each(campaigns.spec, '$.follow_ups') "
                "WHERE json_extract(value, '$.state') = 'waiting') ORDER BY created, id").fetchall()
        return [row[0] for row in found]

    @_guarded
    def state_of(self, campaign_id: str) -> str | None:
        """A campaign's recorded state (None: no such campaign), without the history's counts."""
        with self._lock:
            found = self._db.execute("SELECT state FROM campaigns WHERE id=?", (campaign_id,)).fetchone()
        return found[0] if found else None

    @_guarded
    def counts(self, campaign_id: str) -> dict[str, int]:
        """How many of the campaign's recipients are in each status."""
        with self._lock:
            return dict(self._db.execute("SELECT status, COUNT(*) FROM recipients WHERE campaign=? GROUP BY status",
                                         (campaign_id,)).fetchall())

    @_guarded
    def last_sent(self, campaign_id: str) -> str | None:
        """When the campaign's last message went out (ISO), or None."""
        with self._lock:
            found = self._db.execute("SELECT MAX(sent_at) FROM recipients WHERE campaign=? AND sent_at IS NOT NULL",
                                     (campaign_id,)).fetchone()
        return found[0] if found else None

    @_guarded
    def set_spec(self, campaign_id: str, spec: dict[str, Any]) -> None:
        """Replace what a campaign is resumed with (the account settings the user corrected)."""
        self._write("UPDATE campaigns SET spec=?, updated=? WHERE id=?",
                    (json.dumps(spec, ensure_ascii=False), iso(utc_now()), campaign_id))

    @_guarded
    def spec(self, campaign_id: str) -> dict[str, Any]:
        with self._lock:
            found = self._db.execute("SELECT spec FROM campaigns WHERE id=?", (campaign_id,)).fetchone()
        if found is None:
            raise JournalError(f"there is no campaign '{campaign_id}' (bulk-mailer campaigns lists them)",
                               category="invalid_settings")
        return json.loads(found[0])

    @_guarded
    def campaigns(self) -> list[CampaignInfo]:
        """Every campaign, newest first; an active one whose process is gone is 'interrupted'."""
        dead = set(self.recover_dead())
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
        listed = []
        for r in rows:
            info = CampaignInfo(r[0], r[1], r[2], r[3], r[4], r[5], dict(counts.get(r[0], {})), r[6], r[7])
            if r[0] in dead and r[3] == "running":  # a full disk kept recover_dead from writing it
                count = info.counts
                if count.get("sending"):
                    count["uncertain"] = count.get("uncertain", 0) + count.pop("sending")
                info = CampaignInfo(info.id, info.created, info.updated, "interrupted", _DIED, info.account,
                                    count, info.resume_after, info.subject)
            listed.append(info)
        return listed

    def get(self, campaign_id: str) -> CampaignInfo:
        for info in self.campaigns():
            if info.id == campaign_id:
                return info
        raise JournalError(f"there is no campaign '{campaign_id}' (bulk-mailer campaigns lists them)",
                           category="invalid_settings")

    @_guarded
    def recover_dead(self) -> list[str]:
        """Campaigns left running by a process that died: in-flight rows become uncertain."""
        with self._lock:
            active = self._db.execute(
                "SELECT id, pid, host, pid_start FROM campaigns WHERE state = 'running'").fetchall()
        dead = [cid for cid, pid, host, started in active if not _alive(pid, host, started)]
        for cid in dead:
            try:
                self.mark_interrupted(cid, _DIED)
            except DiskFullError as exc:  # listed as interrupted all the same; written when there is room
                log.warning("campaign %s: %s", cid, exc.message)
        return dead

    @_guarded
    def mark_interrupted(self, campaign_id: str, reason: str) -> int:
        """Rows in flight become uncertain (the server may have the message); return how many."""
        now = iso(utc_now())
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "UPDATE recipients SET status='uncertain', category='server_disconnected', updated=?, "
                    "error='the app stopped while this message was being sent: it may or may not have arrived' "
                    "WHERE campaign=? AND status='sending'", (now, campaign_id))
                self._db.execute("UPDATE campaigns SET state='interrupted', reason=?, updated=? WHERE id=?",
                                 (reason, now, campaign_id))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return cur.rowcount

    @_guarded
    def sent_since(self, account: str, since: str) -> list[str]:
        """When this account's messages were sent since an ISO time (for daily quotas across runs)."""
        with self._lock:
            found = self._db.execute(
                "SELECT r.sent_at FROM recipients r JOIN campaigns c ON c.id = r.campaign "  # noqa: S608 (placeholders)
                f"WHERE c.account = ? AND r.status IN ({','.join('?' * len(SENT_STATUSES))}) "
                "AND r.sent_at >= ? ORDER BY r.sent_at", (account, *SENT_STATUSES, since)).fetchall()
        return [row[0] for row in found]

    # -- recipients ---------------------------------------------------------------------------

    def mark_sending(self, campaign_id: str, index: int) -> None:
        """Committed before MAIL FROM: a crash from here on leaves this row uncertain."""
        self.record(campaign_id, sending=index)

    def mark_outcome(self, campaign_id: str, index: int, row: ResultRow) -> None:
        """Committed right after the server's reply."""
        self.record(campaign_id, outcome=(index, row))

    @_guarded
    def mark_copies(self, campaign_id: str, filed: list[tuple[str, str]]) -> None:
        """Record the copies filed in Sent: (Message-ID, folder) of sent messages."""
        if filed:
            now = iso(utc_now())
            self._group_commit([("UPDATE recipients SET sent_copy=?, updated=? WHERE campaign=? AND message_id=?",
                                 (folder, now, campaign_id, mid)) for mid, folder in filed])

    @_guarded
    def copies(self, campaign_id: str) -> dict[str, str]:
        """Message-ID -> Sent folder of the campaign's messages filed in Sent."""
        with self._lock:
            found = self._db.execute("SELECT message_id, sent_copy FROM recipients WHERE campaign=? AND "
                                     "sent_copy IS NOT NULL", (campaign_id,)).fetchall()
        return dict(found)

    @_guarded
    def record(self, campaign_id: str, *, sending: int | None = None,
               outcome: tuple[int, ResultRow] | None = None, sending_id: str | None = None) -> None:
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
            ops.append(("UPDATE recipients SET status='sending', attempts=attempts+1, "
                        "message_id=COALESCE(?, message_id), updated=? WHERE campaign=? AND idx=?",
                        (sending_id, now, campaign_id, sending)))
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

    @_guarded
    def reset(self, campaign_id: str, statuses: Iterable[str]) -> int:
        """Put rows of these statuses back to pending (resend uncertain/failed); return how many."""
        wanted = tuple(statuses)
        marks = ",".join("?" * len(wanted))
        with self._lock:
            cur = self._db.execute(
                "UPDATE recipients SET status='pending', error=NULL, category=NULL, smtp_code=NULL "  # noqa: S608
                f"WHERE campaign=? AND status IN ({marks})", (campaign_id, *wanted))
            return cur.rowcount

    @_guarded
    def skip(self, campaign_id: str, status: str, reason: str) -> int:
        with self._lock:
            cur = self._db.execute("UPDATE recipients SET status='skipped', error=? WHERE campaign=? AND status=?",
                                   (reason, campaign_id, status))
            return cur.rowcount

    @_guarded
    def rows(self, campaign_id: str, statuses: Iterable[str] | None = None) -> list[JournalRow]:
        """The campaign's recipients in order (optionally only these statuses)."""
        sql = ("SELECT idx, email, line, fields, status, category, smtp_code, error, attempts, sent_at, message_id, "
               "next_attempt, dsn_status, notice, notice_at FROM recipients WHERE campaign=?")
        args: list[Any] = [campaign_id]
        if statuses is not None:
            wanted = tuple(statuses)
            sql += f" AND status IN ({','.join('?' * len(wanted))})"  # noqa: S608 (placeholders only)
            args += wanted
        with self._lock:
            found = self._db.execute(sql + " ORDER BY idx", args).fetchall()
        return [JournalRow(idx, Recipient(email, json.loads(fields), line),
                           ResultRow(email, status, category, code, error, attempts, sent_at, message_id,
                                     next_attempt=nxt, line=line or None, dsn_status=dsn, notice=notice,
                                     notice_at=notice_at))
                for idx, email, line, fields, status, category, code, error, attempts, sent_at, message_id, nxt,
                dsn, notice, notice_at in found]

    # -- what the mailbox said (track) ----------------------------------------------------------

    @_guarded
    def apply_notices(self, campaign_id: str, changes: Iterable[tuple[int, str, tuple[str, ...], dict[str, Any]]]) -> int:
        """Record what bounce notices and replies said, in one transaction: per row (index, new
        status, the statuses it may change from, other columns); a row whose status has changed
        meanwhile is left as it is. Returns the rows changed."""
        allowed = {"smtp_code", "error", "dsn_status", "notice", "notice_at"}
        ops = []
        now = iso(utc_now())
        for index, status, was, columns in changes:
            names = [k for k in columns if k in allowed]
            sets = "".join(f", {k}=?" for k in names)
            ops.append((f"UPDATE recipients SET status=?{sets}, updated=? WHERE campaign=? AND idx=? "  # noqa: S608
                        f"AND status IN ({','.join('?' * len(was))})",
                        (status, *(columns[k] for k in names), now, campaign_id, index, *was)))
        changed = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in ops:
                    changed += self._db.execute(sql, args).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return changed

    @_guarded
    def mailbox_read(self, campaign_id: str, mailbox: str, folder: str) -> tuple[int, int] | None:
        """(UIDVALIDITY, last UID read) of a folder for this campaign, or None: never read."""
        with self._lock:
            found = self._db.execute("SELECT uidvalidity, last_uid FROM mailbox_reads WHERE campaign=? AND "
                                     "mailbox=? AND folder=?", (campaign_id, mailbox, folder)).fetchone()
        return (int(found[0]), int(found[1])) if found else None

    @_guarded
    def set_mailbox_read(self, campaign_id: str, mailbox: str, folder: str, uidvalidity: int, last_uid: int) -> None:
        self._write("INSERT INTO mailbox_reads(campaign, mailbox, folder, uidvalidity, last_uid, updated) "
                    "VALUES (?,?,?,?,?,?) ON CONFLICT(campaign, mailbox, folder) DO UPDATE SET "
                    "uidvalidity=excluded.uidvalidity, last_uid=excluded.last_uid, updated=excluded.updated",
                    (campaign_id, mailbox, folder, uidvalidity, last_uid, iso(utc_now())))


# -- a damaged journal: set it aside, read what can be read -------------------------------------


@dataclass
class Salvage:
    """What could be read of a (damaged) journal, row by row."""

    source: Path
    campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> created, state, account
    rows: dict[str, list[ResultRow]] = field(default_factory=dict)  # campaign id -> rows, in list order
    lost: int = 0  # rows that could not be read (on damaged pages)
    complete: bool = True  # False: the end of a table could not be found, more may have been lost

    @property
    def read(self) -> int:
        return sum(len(rows) for rows in self.rows.values())


_PROBE_PAST_END = 5000  # rowids tried past the last one found when a table's end cannot be read


def _probe(db: sqlite3.Connection, table: str, columns: str) -> tuple[list[tuple[Any, ...]], int, bool]:
    """Every readable row of table, one rowid at a time: (rows, rowids unreadable, end known).

    A damaged page fails the rows on it (and the lookups it leads to); the others still read.
    """
    try:
        top = db.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0  # noqa: S608 (our names)
    except sqlite3.DatabaseError:
        top = None
    found: list[tuple[Any, ...]] = []
    bad, rowid, since, bad_since = 0, 0, 0, 0
    while True:
        rowid += 1
        if top is not None and rowid > top:
            break
        if top is None and since >= _PROBE_PAST_END:
            bad -= bad_since  # failures past the last row found: counted as the unknown end instead
            break
        try:
            row = db.execute(f"SELECT {columns} FROM {table} WHERE rowid=?", (rowid,)).fetchone()  # noqa: S608
        except sqlite3.DatabaseError:
            bad, since, bad_since = bad + 1, since + 1, bad_since + 1
            continue
        if row is None:
            since += 1
            continue
        found.append(row)
        since = bad_since = 0
    return found, bad, top is not None


def salvage(path: Path) -> Salvage:
    """Read what can be read from a journal file, skipping damaged pages, without writing to it."""
    out = Salvage(path)
    try:
        db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise JournalError(f"{path} cannot be opened at all: {exc}") from None
    try:
        try:
            found, _, _ = _probe(db, "campaigns", "id, created, state, account")
        except sqlite3.DatabaseError as exc:  # the schema itself is unreadable
            raise JournalError(f"nothing can be read from {path}: {exc}") from None
        for cid, created, state, account in found:
            if isinstance(cid, str):
                out.campaigns[cid] = {"created": created, "state": state, "account": account}
        rows, bad, end_known = _probe(
            db, "recipients",
            "campaign, idx, email, status, category, smtp_code, error, attempts, sent_at, message_id, line")
        out.lost, out.complete = bad, end_known
        kept: dict[str, list[tuple[int, ResultRow]]] = {}
        for cid, idx, email, status, category, code, error, attempts, sent_at, message_id, line in rows:
            if not (isinstance(cid, str) and isinstance(idx, int) and isinstance(email, str)):
                out.lost += 1  # a row torn by the damage
                continue
            kept.setdefault(cid, []).append(
                (idx, ResultRow(email, str(status), category, code, error, attempts or 0, sent_at, message_id,
                                line=line or None)))
        for cid, pairs in kept.items():
            out.rows[cid] = [row for _, row in sorted(pairs, key=lambda p: p[0])]
            out.campaigns.setdefault(cid, {"created": None, "state": "unknown", "account": None})
    finally:
        db.close()
    return out


def set_aside(path: Path | None = None) -> Path:
    """Rename the journal (and its WAL) to journal.sqlite3.damaged-<UTC time>: the next campaign
    starts a new journal. Returns the new name. Links are renamed, never followed."""
    path = path or paths.data_dir() / "journal.sqlite3"
    if not os.path.lexists(path):
        raise JournalError(f"there is no journal at {path}", category="action_unavailable")
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while os.path.lexists(target):
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    os.rename(path, target)
    if os.path.lexists(f"{path}-wal"):  # committed transactions not yet in the file: they go with it
        os.rename(f"{path}-wal", f"{target}-wal")
    Path(f"{path}-shm").unlink(missing_ok=True)  # an index of the WAL, rebuilt when opened
    return target


@dataclass
class Repair:
    """What repair_journal() did: where the journal went, what was read of it, and where to."""

    moved_to: Path
    folder: Path
    salvage: Salvage
    files: dict[str, Path]

    def lines(self) -> list[str]:
        s = self.salvage
        said = [f"The journal was moved to {self.moved_to}; the next campaign starts a new journal.",
                f"Read {s.read} recipient row(s) of {len(self.files)} "
                f"campaign(s) into {self.folder}"
                + (f"; {s.lost} row(s) were on damaged pages and could not be read" if s.lost else "")
                + ("" if s.complete else "; the end of the list could not be found, a few more may be missing")
                + "."]
        for cid, target in self.files.items():
            info = s.campaigns.get(cid, {})
            counts = Counter(row.status for row in s.rows.get(cid, []))
            said.append(f"  {cid} ({info.get('state')}, {info.get('account') or 'account unknown'}): "
                        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + f" -> {target.name}")
        return said


def _file_name(campaign_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", campaign_id)[:120] or "campaign"


def repair_journal(path: Path | None = None) -> Repair:
    """Set the journal aside and write what can be read of each campaign as a results CSV
    (the columns `export` writes) into a folder beside it, mode 0700."""
    from backend.service import results_csv_text  # service imports this module

    moved = set_aside(path)
    got = salvage(moved)
    folder = moved.with_name(f"{moved.name}-read")
    folder.mkdir(mode=0o700)
    files: dict[str, Path] = {}
    for cid, rows in got.rows.items():
        target = folder / f"{_file_name(cid)}.csv"
        paths.atomic_write(target, results_csv_text(rows).encode("utf-8"))
        files[cid] = target
    return Repair(moved, folder, got, files)
