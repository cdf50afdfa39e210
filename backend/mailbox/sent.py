"""A copy of each sent message in the account's Sent folder, filed once.

After a transport has sent a message, ``CopyingTransport`` hands its bytes to ``SentCopies``,
which keeps them in the campaign's spool folder (0600) and files them from a thread of its
own: SEARCH HEADER Message-ID in the Sent folder, APPEND with \\Seen only when it is not there.
So a copy is never filed twice (a second run, a resume, a retry all search first), the send
never waits for the mailbox, and a failure to file is a warning: the send itself stands. What a
killed run left in the spool is filed when the campaign is resumed.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.errors import MailerError
from backend.mailbox.imap import ImapClient, ImapSettings
from backend.transports.base import Envelope, Receipt, Transport

log = logging.getLogger(__name__)

MODES = ("auto", "always", "never")
# Their submission servers file a copy in Sent themselves: a second one would be a duplicate.
FILES_ITS_OWN = frozenset({"gmail", "google-workspace", "office365", "outlook"})
_FINAL = {"imap_auth_failed", "imap_folder_not_found", "imap_tls_failed", "certificate_invalid",
          "tls_mode_mismatch", "invalid_settings"}
_GIVE_UP_AFTER = 3  # connection failures in a row before the run stops trying
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]+>)", re.I | re.M)


def message_id_of(data: bytes) -> str | None:
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    m = _MESSAGE_ID.search(head)
    return m.group(1).decode("ascii", "replace") if m else None


class SentCopies:
    """Files the messages of one run in Sent: keep() from the senders, a thread files them."""

    def __init__(self, settings: ImapSettings, spool: Path, *, emit: Callable[[dict[str, Any]], None] = lambda e: None,
                 mark: Callable[[list[tuple[str, str]]], None] = lambda filed: None,
                 client: Callable[[ImapSettings], ImapClient] = ImapClient) -> None:
        self.settings, self.spool, self._emit, self._mark, self._client_of = settings, spool, emit, mark, client
        self.filed = self.already = self.failed = 0
        self.folder: str | None = None
        self.error: MailerError | None = None
        self._done: list[tuple[str, str]] = []
        self._all: list[tuple[str, str]] = []  # marked again at the end: a row's outcome may be committed after its copy
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._client: ImapClient | None = None
        self._failures = 0
        self._disabled = False
        self._n = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="sent-copies", daemon=True)

    # -- the senders' side ----------------------------------------------------------------

    def keep(self, data: bytes) -> None:
        """A message just sent: kept in the spool, filed soon. Never raises."""
        try:
            mid = message_id_of(data)
            if mid is None:
                return
            with self._lock:
                self._n += 1
                name = f"{time.time_ns():020d}-{self._n:06d}-{mid.encode().hex()}.eml"
            self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.spool / (name + ".part"), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(self.spool / (name + ".part"), self.spool / name)
            self._wake.set()
        except Exception:  # the send stands whatever happens to its copy
            log.exception("a sent message could not be kept for its copy in Sent")

    # -- the filer ----------------------------------------------------------------------------

    def start(self) -> SentCopies:
        self._thread.start()
        return self

    def finish(self, timeout: float = 120.0) -> dict[str, Any]:
        """File what is left (within timeout), stop, and say what was done."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        self._done = list(self._all)
        self._record()
        summary = self.summary()
        self._emit({"type": "sent-copy", **summary})
        return summary

    def summary(self) -> dict[str, Any]:
        left = len(self._pending())
        return {"folder": self.folder, "filed": self.filed, "already": self.already, "left": left,
                "error": self.error.describe(self.settings.provider) if self.error is not None else None}

    def _pending(self) -> list[Path]:
        try:
            return sorted(p for p in self.spool.iterdir() if p.suffix == ".eml")
        except OSError:
            return []

    def _work(self) -> None:
        try:
            while True:
                self._wake.wait(1.0)
                self._wake.clear()
                if not self._disabled:
                    self.file_pending()
                if self._stopping.is_set() and (self._disabled or not self._pending()):
                    break
                if self._stopping.is_set() and self._failures:
                    time.sleep(min(2.0 * self._failures, 5.0))
        except Exception:
            log.exception("filing copies in Sent stopped unexpectedly")
        finally:
            if self._client is not None:
                self._client.close()

    def file_pending(self) -> None:
        for path in self._pending():
            if self._disabled:
                return
            mid = bytes.fromhex(path.name.split("-", 2)[2][:-4]).decode("ascii", "replace")
            try:
                client = self._connected()
                assert self.folder is not None
                if client.has_message(self.folder, mid):
                    self.already += 1
                else:
                    client.append(self.folder, path.read_bytes())
                    self.filed += 1
                self._failures = 0
                self._done.append((mid, self.folder))
                self._all.append((mid, self.folder))
                path.unlink()
            except MailerError as exc:
                self._failed(exc)
                return
            except OSError as exc:
                log.warning("a copy for Sent could not be read: %s", exc)
                self.failed += 1
                return
            if len(self._done) >= 50:
                self._record()
        self._record()  # a killed run keeps what it filed (the end of a run marks everything again)

    def _connected(self) -> ImapClient:
        if self._client is None or self._client._imap is None:
            client = self._client_of(self.settings)
            client.open()
            self._client = client
            if self.folder is None:
                self.folder = client.find_sent()
        return self._client

    def _failed(self, exc: MailerError) -> None:
        self.failed += 1
        self._failures += 1
        first = self.error is None or self.error.category != exc.category
        self.error = exc
        if self._client is not None:
            self._client.close()
            self._client = None
        if exc.category in _FINAL or self._failures >= _GIVE_UP_AFTER:
            self._disabled = True
        log.warning("copy in Sent not filed: %s", exc.message)
        if first or self._disabled:
            self._emit({"type": "sent-copy-warning", "error": exc.describe(self.settings.provider),
                        "stopped": self._disabled})

    def _record(self) -> None:
        done, self._done = self._done, []
        if not done:
            return
        try:
            self._mark(done)
        except Exception:
            log.exception("the journal could not record the copies filed in Sent")


class CopyingTransport:
    """A transport whose sent messages are also handed to SentCopies (the loop sees the seam)."""

    def __init__(self, inner: Transport, copies: SentCopies) -> None:
        self.inner, self.copies = inner, copies
        self._on_way: deque[bytes] = deque()  # submitted to a pipelining inner transport

    @property
    def supports_smtputf8(self) -> bool:
        return self.inner.supports_smtputf8

    @property
    def size_limit(self) -> int | None:
        return self.inner.size_limit

    def open(self) -> None:
        self.inner.open()

    def send(self, envelope: Envelope, message: bytes) -> Receipt:
        receipt = self.inner.send(envelope, message)
        self.copies.keep(message)
        return receipt

    def submit(self, envelope: Envelope, message: bytes) -> None:
        """A pipelining inner transport: the message is kept once collect() says it was sent."""
        self.inner.submit(envelope, message)  # type: ignore[attr-defined]
        self._on_way.append(message)

    def collect(self) -> Receipt:
        message = self._on_way.popleft()
        receipt = self.inner.collect()  # type: ignore[attr-defined]
        self.copies.keep(message)
        return receipt

    def close(self) -> None:
        self._on_way.clear()
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # anything else a face or test reads of the transport
        return getattr(self.inner, name)
