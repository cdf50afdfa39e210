"""The built-in local test inbox: an SMTP server on 127.0.0.1 that keeps what it receives."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import socket
import threading
from collections import deque
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller

HOST = "127.0.0.1"
MAX_MESSAGE = 30 * 1024 * 1024  # bytes; what big providers accept, a bound for local senders
DEFAULT_LIMIT = 5000  # messages kept; the oldest go first so a big test run cannot exhaust memory


@dataclass(frozen=True)
class InboxMessage:
    """One received message: envelope, raw bytes, arrival time."""

    id: int
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    received: dt.datetime

    def parsed(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=default_policy)  # type: ignore[return-value]

    def summary(self) -> dict[str, Any]:
        """List view: who, subject, when, size."""
        msg = self.parsed()
        return {
            "id": self.id,
            "from": str(msg.get("From", self.mail_from)),
            "to": ", ".join(self.rcpt_tos),
            "subject": str(msg.get("Subject", "")),
            "date": self.received.isoformat(timespec="seconds"),
            "size": len(self.data),
        }

    def detail(self) -> dict[str, Any]:
        """Full view: headers, the HTML and text bodies decoded."""
        msg = self.parsed()
        html = msg.get_body(("html",))
        text = msg.get_body(("plain",))
        return {
            **self.summary(),
            "headers": [[k, str(v)] for k, v in msg.items()],
            "html": html.get_content() if html is not None else None,
            "text": text.get_content() if text is not None else None,
        }


class _Handler:
    def __init__(self, inbox: LocalInbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.inbox._store(envelope.mail_from, tuple(envelope.rcpt_tos), envelope.original_content or envelope.content)
        return "250 2.0.0 Stored in the local test inbox"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class LocalInbox:
    """A plain SMTP server on 127.0.0.1 (no TLS, no login) keeping the last `limit` messages."""

    def __init__(self, port: int = 0, limit: int = DEFAULT_LIMIT) -> None:
        self.host = HOST
        self.port = port
        self._messages: deque[InboxMessage] = deque(maxlen=limit)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> int:
        """Start listening (once); return the port."""
        if self._controller is None:
            port = self.port or _free_port()
            # aiosmtpd logs every command at INFO (and message content at DEBUG): keep it quiet.
            logging.getLogger("mail.log").setLevel(logging.WARNING)
            controller = Controller(_Handler(self), hostname=self.host, port=port, ready_timeout=10,
                                    data_size_limit=MAX_MESSAGE)
            controller.start()
            self.port, self._controller = port, controller
        return self.port

    def stop(self) -> None:
        """Stop listening; received messages stay readable."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def _store(self, mail_from: str, rcpt_tos: tuple[str, ...], data: bytes) -> None:
        with self._lock:
            self._messages.append(InboxMessage(next(self._ids), mail_from, rcpt_tos, data, dt.datetime.now(dt.UTC)))

    def messages(self) -> list[InboxMessage]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._messages))

    def get(self, message_id: int) -> InboxMessage | None:
        with self._lock:
            return next((m for m in self._messages if m.id == message_id), None)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
