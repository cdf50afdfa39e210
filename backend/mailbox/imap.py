"""IMAP over imaplib: encrypted always (SSL/TLS on 993 or STARTTLS on 143), certificates
verified as for SMTP, the Sent folder found, a message searched by Message-ID and appended.

Library exceptions (imaplib, ssl, socket) become MailerErrors here, with ``host:port`` and the
server's text scrubbed of the login's secrets (backend/redact.py).
"""

from __future__ import annotations

import base64
import dataclasses
import imaplib
import re
import socket
import ssl
from dataclasses import dataclass

from backend.errors import AuthError, ConnectError, SettingsError, TransportError
from backend.redact import Redactor
from backend.settings import tls_context

IMAP_SECURITY = ("ssl", "starttls")
DEFAULT_IMAP_PORTS = {"ssl": 993, "starttls": 143}

# Looked for, in this order, when no folder carries SPECIAL-USE \Sent (RFC 6154).
SENT_NAMES = (
    "Sent", "Sent Items", "Sent Messages", "Sent Mail", "INBOX.Sent", "INBOX/Sent", "INBOX.Sent Items",
    "INBOX.Sent Messages", "[Gmail]/Sent Mail", "[Google Mail]/Sent Mail",
    "Gesendet", "Gesendete Elemente", "Gesendete Objekte", "Envoyés", "Éléments envoyés", "Enviados",
    "Elementos enviados", "Inviati", "Posta inviata", "Verzonden items", "Verzonden",
)

# Looked for, in this order, when no folder carries SPECIAL-USE \Junk.
JUNK_NAMES = (
    "Junk", "Spam", "Junk E-mail", "Junk Email", "Junk Mail", "Bulk Mail", "[Gmail]/Spam", "[Google Mail]/Spam",
    "INBOX.Junk", "INBOX/Junk", "INBOX.Spam", "INBOX.spam", "Junk-E-Mail", "Spamverdacht", "Courrier indésirable",
    "Indésirables", "Correo no deseado", "Posta indesiderata", "Ongewenste e-mail",
)
FETCH_LIMIT = 262144  # bytes of each message read: the headers, the report and the original's headers

_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LIST_LINE = re.compile(r'^\((?P<flags>[^)]*)\)\s+(?P<delim>"(?:[^"\\]|\\.)*"|NIL)\s+(?P<name>.+)$', re.S)
_SAFE_ID = re.compile(r"^<[\x21-\x7e]+>$")


@dataclass(frozen=True)
class ImapSettings:
    """Where the mailbox is and how to log in; the password is never shown."""

    host: str
    port: int = 993
    security: str = "ssl"
    user: str = ""
    password: str = dataclasses.field(default="", repr=False)
    ca_file: str | None = None
    verify_certificates: bool = True
    timeout: float = 30.0
    provider: str | None = None

    def validated(self) -> ImapSettings:
        if not self.host.strip():
            raise SettingsError("imap_host", "give the IMAP server's name (--imap-host), e.g. imap.example.com")
        if self.security not in IMAP_SECURITY:
            raise SettingsError("imap_security", f"{self.security!r} is not one of ssl, starttls: the mailbox "
                                "is only reached over an encrypted connection")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise SettingsError("imap_port", f"{self.port!r} is not a port number between 1 and 65535")
        if (self.port, self.security) in ((993, "starttls"), (143, "ssl")):
            raise SettingsError("imap_security", f"port {self.port} speaks "
                                f"{'SSL/TLS' if self.port == 993 else 'STARTTLS'}: choose that, or the other port",
                                category="tls_mode_mismatch")
        if not self.user or _CONTROLS.search(self.user) or _CONTROLS.search(self.password):
            raise SettingsError("imap_user", "the mailbox needs a username and password without control characters")
        return dataclasses.replace(self, host=self.host.strip())


# -- modified UTF-7 (RFC 3501 5.1.3): how IMAP spells folder names ------------------------------


def decode_name(name: str) -> str:
    def one(m: re.Match[str]) -> str:
        body = m.group(1)
        if not body:
            return "&"
        raw = body.replace(",", "/")
        return base64.b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-16-be")

    return re.sub(r"&([A-Za-z0-9+,]*)-", one, name)


def encode_name(name: str) -> str:
    out, wide = [], []

    def flush() -> None:
        if wide:
            b64 = base64.b64encode("".join(wide).encode("utf-16-be")).decode("ascii").rstrip("=")
            out.append("&" + b64.replace("/", ",") + "-")
            wide.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            wide.append(ch)
    flush()
    return "".join(out)


def quoted(name: str) -> str:
    """A folder name as an IMAP quoted string (modified UTF-7 inside)."""
    return '"' + encode_name(name).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(token: str) -> str:
    token = token.strip()
    if token.startswith('"') and token.endswith('"'):
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def parse_list(lines: list[object]) -> list[tuple[set[str], str]]:
    """LIST answers -> [(attributes lower-cased, decoded name)]; a literal name arrives as a tuple."""
    found = []
    for item in lines:
        if item is None:
            continue
        if isinstance(item, tuple):  # (b'(\\Sent) "/" {10}', b'Sent Items')
            text = item[0].decode("utf-8", "replace")
            text = re.sub(r"\{\d+\}$", "", text) + '"' + item[1].decode("utf-8", "replace").replace('"', '\\"') + '"'
        else:
            text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
        m = _LIST_LINE.match(text.strip())
        if m:
            flags = {f.lower() for f in m.group("flags").split()}
            found.append((flags, decode_name(_unquote(m.group("name")))))
    return found


def choose_special(folders: list[tuple[set[str], str]], flag: str, names: tuple[str, ...]) -> str | None:
    """The folder marked with this SPECIAL-USE flag, else the first of names present (any case)."""
    usable = [(f, n) for f, n in folders if "\\noselect" not in f and "\\nonexistent" not in f]
    for flags, name in usable:
        if flag in flags:
            return name
    by_lower = {n.lower(): n for _, n in usable}
    for wanted in names:
        if wanted.lower() in by_lower:
            return by_lower[wanted.lower()]
    return None


def choose_sent(folders: list[tuple[set[str], str]]) -> str | None:
    """The folder marked \\Sent, else the first of SENT_NAMES present (case-insensitive)."""
    return choose_special(folders, "\\sent", SENT_NAMES)


def choose_junk(folders: list[tuple[set[str], str]]) -> str | None:
    """The folder marked \\Junk, else the first of JUNK_NAMES present (case-insensitive)."""
    return choose_special(folders, "\\junk", JUNK_NAMES)


_FETCH_HEAD = re.compile(rb"UID (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')


class ImapClient:
    """One logged-in IMAP session; every failure a MailerError naming host:port."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings.validated()
        self.redact = Redactor(self.settings.user, self.settings.password)
        self._imap: imaplib.IMAP4 | None = None
        self._selected: str | None = None

    def text(self, value: object) -> str:
        if isinstance(value, list | tuple):
            value = b" ".join(v for v in value if isinstance(v, bytes)) or str(value)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return self.redact(" ".join(_CONTROLS.sub(" ", self.redact(str(value))).split()))[:300]

    def _err(self, cls: type[TransportError], message: str, category: str, fix: tuple[str, ...] = ()) -> TransportError:
        s = self.settings
        return cls(f"IMAP {message}", category=category, host=s.host, port=s.port, fix=fix)

    # -- opening ----------------------------------------------------------------------------

    def open(self) -> None:
        """Connect (SSL/TLS or STARTTLS) and log in; refuses to log in unencrypted."""
        self.close()
        s = self.settings
        try:
            ctx = tls_context(s)
            if s.security == "ssl":
                imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(s.host, s.port, ssl_context=ctx, timeout=s.timeout)
            else:
                imap = imaplib.IMAP4(s.host, s.port, timeout=s.timeout)
                if "STARTTLS" not in imap.capabilities:
                    _shut(imap)
                    raise self._err(ConnectError, "server offers no STARTTLS, so the password cannot be sent "
                                    "encrypted; refused", "imap_tls_failed",
                                    fix=("Choose --imap-security ssl with port 993 if the server offers it.",))
                imap.starttls(ssl_context=ctx)
        except TransportError:
            raise
        except ssl.SSLCertVerificationError as exc:
            raise self._err(ConnectError, f"certificate not trusted: {exc.verify_message or exc}",
                            "certificate_invalid") from None
        except ssl.SSLError as exc:
            raise self._err(ConnectError, f"TLS handshake failed: {exc}", "imap_tls_failed") from None
        except socket.gaierror as exc:
            raise self._err(ConnectError, f"server name not found ({exc.strerror or exc})",
                            "imap_connection_failed") from None
        except TimeoutError:
            raise self._err(ConnectError, f"no answer within {s.timeout:g} s", "imap_connection_failed") from None
        except ConnectionRefusedError:
            raise self._err(ConnectError, "connection refused", "imap_connection_failed") from None
        except (imaplib.IMAP4.error, OSError, EOFError) as exc:
            raise self._err(ConnectError, f"could not connect: {self.text(str(exc))}",
                            "imap_connection_failed") from None
        try:
            self._login(imap)
        except BaseException:
            _shut(imap)
            raise
        self._imap = imap

    def _login(self, imap: imaplib.IMAP4) -> None:
        s = self.settings
        if "LOGINDISABLED" in imap.capabilities:
            raise self._err(AuthError, "server refuses login on this connection (LOGINDISABLED)", "imap_tls_failed")
        try:
            if "AUTH=PLAIN" in imap.capabilities:  # UTF-8 usernames and passwords work here
                secret = b"\0" + s.user.encode() + b"\0" + s.password.encode()
                imap.authenticate("PLAIN", lambda _challenge: secret)
            else:
                imap.login(s.user, s.password)
        except imaplib.IMAP4.abort as exc:
            raise self._err(ConnectError, f"connection lost during login: {self.text(str(exc))}",
                            "imap_connection_failed") from None
        except imaplib.IMAP4.error as exc:
            said = self.text(str(exc))
            fix: tuple[str, ...] = ()
            if re.search(r"application-specific|app password|web login|enable imap|imap.*disabled", said, re.I):
                fix = ("The server asks for an app password, or for IMAP to be turned on: see the steps below.",)
            raise self._err(AuthError, f"login as '{s.user}' refused: {said}", "imap_auth_failed", fix=fix) from None
        except (OSError, EOFError) as exc:
            raise self._err(ConnectError, f"connection lost during login ({exc})", "imap_connection_failed") from None

    def _call(self, what: str, fn, *args):  # type: ignore[no-untyped-def]
        imap = self._imap
        if imap is None:
            raise self._err(ConnectError, "not connected", "imap_connection_failed")
        try:
            typ, data = fn(*args)
        except imaplib.IMAP4.abort as exc:
            self.close()
            raise self._err(ConnectError, f"connection lost during {what}: {self.text(str(exc))}",
                            "imap_connection_failed") from None
        except imaplib.IMAP4.error as exc:
            raise self._err(TransportError, f"{what} refused: {self.text(str(exc))}", "imap_connection_failed") from None
        except (OSError, EOFError) as exc:
            self.close()
            raise self._err(ConnectError, f"connection lost during {what} ({exc})", "imap_connection_failed") from None
        return typ, data

    # -- folders and messages ---------------------------------------------------------------

    def folders(self, want: str = "\\sent") -> list[tuple[set[str], str]]:
        """The mailbox's folders with their attributes: those with SPECIAL-USE flags when one of
        them carries the flag wanted, else every folder."""
        imap = self._imap
        assert imap is not None
        if "SPECIAL-USE" in imap.capabilities:
            typ, data = self._call("LIST (SPECIAL-USE)", imap._simple_command, "LIST", "(SPECIAL-USE)", '""', '"*"')
            special = parse_list(imap._untagged_response(typ, data, "LIST")[1]) if typ == "OK" else []
            if any(want in f for f, _ in special):
                return special
        typ, data = self._call("LIST", imap.list, '""', '"*"')
        return parse_list(data or []) if typ == "OK" else []

    def find_sent(self) -> str:
        """The Sent folder: SPECIAL-USE \\Sent, else the usual names; imap_folder_not_found."""
        found = choose_sent(self.folders())
        if found is None:
            raise self._err(TransportError, "mailbox has no Sent folder", "imap_folder_not_found")
        return found

    def has_message(self, folder: str, message_id: str) -> bool:
        """Whether a message with this Message-ID is in the folder (SEARCH HEADER)."""
        imap = self._imap
        assert imap is not None
        if not _SAFE_ID.match(message_id) or '"' in message_id or "\\" in message_id:
            raise self._err(TransportError, "cannot search for this Message-ID", "imap_connection_failed")
        if self._selected != folder:
            typ, data = self._call("EXAMINE", imap.select, quoted(folder), True)
            if typ != "OK":
                raise self._err(TransportError, f"folder '{folder}' cannot be opened: {self.text(data)}",
                                "imap_folder_not_found")
            self._selected = folder
        else:
            self._call("NOOP", imap.noop)  # new messages (appended since) become visible
        typ, data = self._call("SEARCH", imap.search, None, "HEADER", "Message-ID", f'"{message_id}"')
        if typ != "OK":
            raise self._err(TransportError, f"SEARCH refused: {self.text(data)}", "imap_connection_failed")
        return bool(data and data[0] and data[0].split())

    # -- reading, never changing (track) -----------------------------------------------------

    def examine(self, folder: str) -> int:
        """Open a folder read-only (EXAMINE: nothing in it can change, no flag is set); its UIDVALIDITY."""
        imap = self._imap
        assert imap is not None
        typ, data = self._call("EXAMINE", imap.select, quoted(folder), True)
        if typ != "OK":
            raise self._err(TransportError, f"folder '{folder}' cannot be opened: {self.text(data)}",
                            "imap_folder_not_found")
        self._selected = folder
        _, found = imap.response("UIDVALIDITY")
        try:
            return int(found[0]) if found and found[0] else 0
        except (TypeError, ValueError):
            return 0

    def uids(self, *criteria: str) -> list[int]:
        """UID SEARCH in the folder open now: the UIDs found, in order."""
        imap = self._imap
        assert imap is not None
        typ, data = self._call("UID SEARCH", imap.uid, "SEARCH", *criteria)
        if typ != "OK":
            raise self._err(TransportError, f"SEARCH refused: {self.text(data)}", "imap_connection_failed")
        return sorted(int(x) for x in b" ".join(d for d in data if d).split() if x.isdigit())

    def peek(self, uids: list[int], limit: int = FETCH_LIMIT) -> list[tuple[int, str | None, bytes]]:
        """(UID, INTERNALDATE, the message's first limit bytes) of each, read with BODY.PEEK: the
        server sets no flag (\\Seen stays as it was)."""
        imap = self._imap
        assert imap is not None
        if not uids:
            return []
        typ, data = self._call("UID FETCH", imap.uid, "FETCH", ",".join(str(u) for u in uids),
                               f"(UID INTERNALDATE BODY.PEEK[]<0.{limit}>)")
        if typ != "OK":
            raise self._err(TransportError, f"FETCH refused: {self.text(data)}", "imap_connection_failed")
        out = []
        for item in data or []:
            if isinstance(item, tuple) and len(item) >= 2:
                uid, when = _FETCH_HEAD.search(item[0]), _INTERNALDATE.search(item[0])
                if uid:
                    out.append((int(uid.group(1)), when.group(1).decode("ascii", "replace") if when else None,
                                bytes(item[1])))
        return out

    def move(self, folder: str, uids: list[int], to: str) -> int:
        """Move these messages of a folder to another (created if missing): UID MOVE (RFC 6851),
        else COPY, then \\Deleted and UID EXPUNGE of exactly these (UIDPLUS); a server with neither
        keeps them where they were (copied only): never an EXPUNGE of the user's other messages.
        How many left the folder."""
        imap = self._imap
        assert imap is not None and uids
        self._call("CREATE", imap.create, quoted(to))  # NO when it exists: fine
        typ, data = self._call("SELECT", imap.select, quoted(folder), False)
        if typ != "OK":
            raise self._err(TransportError, f"folder '{folder}' cannot be opened: {self.text(data)}",
                            "imap_folder_not_found")
        self._selected = folder
        which = ",".join(str(u) for u in uids)
        # Asked now: what a server lists before the login (imaplib's .capabilities) often lacks MOVE.
        _, listed = self._call("CAPABILITY", imap.capability)
        said = b" ".join(x for x in listed or [] if isinstance(x, bytes)).decode("ascii", "replace")
        caps = {c.upper() for c in said.split()} | {c.upper() for c in imap.capabilities}
        if "MOVE" in caps:
            typ, data = self._call("UID MOVE", imap.uid, "MOVE", which, quoted(to))
            return len(uids) if typ == "OK" else 0
        typ, data = self._call("UID COPY", imap.uid, "COPY", which, quoted(to))
        if typ != "OK" or "UIDPLUS" not in caps:
            return 0
        self._call("UID STORE", imap.uid, "STORE", which, "+FLAGS.SILENT", r"(\Deleted)")
        typ, _ = self._call("UID EXPUNGE", imap.uid, "EXPUNGE", which)
        return len(uids) if typ == "OK" else 0

    def append(self, folder: str, data: bytes) -> None:
        """File a message in the folder, marked read (\\Seen)."""
        imap = self._imap
        assert imap is not None
        typ, answer = self._call("APPEND", imap.append, quoted(folder), r"(\Seen)", None, data)
        if typ != "OK":
            raise self._err(TransportError, f"APPEND to '{folder}' refused: {self.text(answer)}",
                            "imap_connection_failed")

    def close(self) -> None:
        imap, self._imap, self._selected = self._imap, None, None
        if imap is not None:
            try:
                imap.logout()
            except Exception:  # noqa: BLE001 (closing: nothing to report)
                _shut(imap)


def _shut(imap: imaplib.IMAP4) -> None:
    try:
        imap.shutdown()
    except Exception:  # noqa: BLE001, S110
        pass
