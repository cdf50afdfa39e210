"""The transport seam: open(), send(envelope, message) -> Receipt, close(), and the two facts the
loop reads of an open transport (SMTPUTF8 support, the largest message accepted)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Envelope:
    """Who the message is from and to at the protocol level (MAIL FROM / RCPT TO)."""

    sender: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class Receipt:
    """The server's acceptance of one message: reply code and text."""

    code: int
    reply: str


class Transport(Protocol):
    """Hands finished messages to a mail system; raises backend.errors.TransportError."""

    @property
    def supports_smtputf8(self) -> bool:
        """Whether UTF-8 addresses and headers may be sent (known once open)."""

    @property
    def size_limit(self) -> int | None:
        """The largest message accepted, in bytes (known once open); None when none is stated."""

    def open(self) -> None:
        """Connect, secure and log in; raise ConnectError/AuthError with the cause."""

    def send(self, envelope: Envelope, message: bytes) -> Receipt:
        """Deliver one message; raise RejectedError, ConnectError or UncertainDelivery."""

    def close(self) -> None:
        """Say goodbye and release the connection; never raises."""
