"""Real SMTP servers on 127.0.0.1 for tests: aiosmtpd with TLS, AUTH and injected failures.

Failures are injected by the recipient's (or sender's) local part, so one campaign can meet
several of them:

    reject550@...    RCPT answered 550 5.1.1 (unknown user)
    defer451@...     RCPT answered 451 4.3.0 (try again later)
    flakyN@...       RCPT answered 451 4.7.1 the first N times, then accepted
    quota@...        RCPT answered 550 5.4.5 (daily sending limit)
    hourquota@...    RCPT answered 454 4.7.0 (an hourly quota)
    quotaonce@...    RCPT answered 550 5.4.5 the first time only
    close421@...     RCPT answered 421 4.7.0 and the connection closed (first time only)
    throttle421@...  RCPT answered 421 4.7.0 (too many messages: throttled), every time
    policy550@...    RCPT answered 550 5.7.1 (refused by the provider's policy)
    droprcpt@...     connection closed at RCPT without a reply (first time only)
    spam@...         DATA answered 554 5.7.1 after the final dot
    data421@...      DATA answered 421 after the final dot (first time only): not accepted
    ansi550@...      RCPT answered 550 with terminal escape codes in the text
    dropdata@...     connection closed after the final dot, without a reply
    silent@...       no answer at all after the final dot
    blocked@...      (as sender) MAIL answered 550 5.7.1
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

USER = "me@example.com"
PASSWORD = "s3cret-Passw0rd!"
UTF8_USER, UTF8_PASSWORD = "jörg@example.com", "pässwörd-ß-密码"
ACCOUNTS = {USER: PASSWORD, UTF8_USER: UTF8_PASSWORD}


def free_port() -> int:
    """A port nothing listens on right now (Controller(port=0) fails its own ready check)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    """One message as the server saw it: envelope and parsed content."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer_authenticated: str | None

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=default_policy)  # type: ignore[return-value]


@dataclass(eq=False)
class RecordingHandler:
    """Records every accepted message and every command seen; injects failures by local part."""

    messages: list[Received] = field(default_factory=list)
    auth_attempts: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    verbs: list[str] = field(default_factory=list)  # every command received, AUTH and STARTTLS too
    connections: int = 0
    once_done: set[str] = field(default_factory=set)
    tries: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    pipelining: bool = False  # offer PIPELINING (RFC 2920): clients then send MAIL, RCPT, DATA at once
    chunking: bool = False  # offer CHUNKING (RFC 3030, BDAT): RecordingSMTP.smtp_BDAT takes it
    sessions: list = field(default_factory=list)  # each client session that said EHLO, once

    def _once(self, key: str) -> bool:
        with self.lock:
            if key in self.once_done:
                return False
            self.once_done.add(key)
            return True

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.commands.append("EHLO")
        with self.lock:
            if not any(c is server for c in self.sessions):  # EHLO comes again after STARTTLS
                self.sessions.append(server)
        session.host_name = hostname
        if self.pipelining:
            responses = [*responses[:-1], "250-PIPELINING", responses[-1]]
        if self.chunking:
            responses = [*responses[:-1], "250-CHUNKING", responses[-1]]
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.commands.append(f"MAIL {address}")
        if address.split("@")[0] == "blocked":
            return "550 5.7.1 Sender address rejected: not owned by user"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.commands.append(f"RCPT {address}")
        local = address.split("@")[0]
        if local == "reject550":
            return "550 5.1.1 The email account that you tried to reach does not exist"
        if local == "defer451":
            return "451 4.3.0 Temporary local problem, try again later"
        if local.startswith("flaky"):  # flaky3@: refused with 451 the first 3 times
            with self.lock:
                self.tries[address] = self.tries.get(address, 0) + 1
                tries = self.tries[address]
            if tries <= int(local[5:] or 1):
                return "451 4.7.1 Greylisted, please try again later"
        if local == "ansi550":
            return "550 5.1.1 \x1b[31mno such user\x1b[0m\x07"
        if local == "quota":
            return "550 5.4.5 Daily user sending limit exceeded"
        if local == "quotaonce" and self._once(address):
            return "550 5.4.5 Daily user sending limit exceeded"
        if local == "hourquota":
            return "454 4.7.0 Hourly sending quota exceeded, try again later"
        if local == "throttle421":
            return "421 4.7.0 Too many messages from you, slow down"
        if local == "policy550":
            return "550 5.7.1 Message refused by policy: sender reputation"
        if local == "close421" and self._once(address):
            await server.push("421 4.7.0 Too many messages, closing connection")
            server.transport.close()
            await asyncio.sleep(3600)
        if local == "droprcpt" and self._once(address):
            server.transport.close()
            await asyncio.sleep(3600)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        local = envelope.rcpt_tos[0].split("@")[0] if envelope.rcpt_tos else ""
        if local == "spam":
            return "554 5.7.1 Message rejected as spam"
        if local == "data421" and self._once(envelope.rcpt_tos[0]):
            return "421 4.3.2 System shutting down, message not accepted"
        if local == "dropdata":
            server.transport.close()
            await asyncio.sleep(3600)
        if local == "silent":
            await asyncio.sleep(3600)
        with self.lock:
            self.messages.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content or envelope.content,
                    USER if session.authenticated else None,
                )
            )
        return "250 2.0.0 OK queued"


class RecordingSMTP(SMTP):
    """aiosmtpd's server, noting each connection and the verb of every command it receives."""

    def __init__(self, handler: RecordingHandler, *args, **kwargs) -> None:
        super().__init__(handler, *args, **kwargs)
        for verb, method in list(self._smtp_methods.items()):
            self._smtp_methods[verb] = self._noting(verb, method)

    def _noting(self, verb: str, method):
        @functools.wraps(method)
        async def noted(arg):
            if hasattr(self.event_handler, "verbs"):  # a test's own handler may not keep them
                self.event_handler.verbs.append(verb)
            return await method(arg)

        return noted

    def connection_made(self, transport) -> None:
        if hasattr(self.event_handler, "connections"):
            self.event_handler.connections += 1
        super().connection_made(transport)

    async def smtp_BDAT(self, arg: str) -> None:
        """RFC 3030's BDAT, which aiosmtpd lacks, for a handler with chunking=True: the chunk's
        bytes are read whatever happens (the client may have pipelined them), kept as they come
        (no dot-stuffing), and at LAST handed to handle_DATA like a DATA message. As Postfix
        does: no RCPT taken -> 554 and the transaction is over."""
        if not getattr(self.event_handler, "chunking", False):
            await self.push("500 Error: command not recognized")
            return
        words = arg.split()
        if not words or not words[0].isdigit() or len(words) > 2 or words[1:] not in ([], ["LAST"]):
            await self.push("501 5.5.4 Syntax: BDAT size [LAST]")
            return
        chunk = await self._reader.readexactly(int(words[0]))
        last = len(words) == 2
        if await self.check_helo_needed() or await self.check_auth_needed("BDAT"):
            return
        if self.envelope.mail_from is None:
            await self.push("503 5.5.1 Error: need MAIL command")
            return
        if not self.envelope.rcpt_tos:
            self._set_post_data_state()
            await self.push("554 5.5.1 Error: no valid recipients")
            return
        self._chunks = [*getattr(self, "_chunks", []), chunk]
        if not last:
            await self.push(f"250 2.0.0 Ok: {len(chunk)} bytes")
            return
        content, self._chunks = b"".join(self._chunks), []
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)


class RecordingController(Controller):
    def factory(self) -> SMTP:
        return RecordingSMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class XOAuth2Handler(RecordingHandler):
    """A RecordingHandler whose server also offers AUTH XOAUTH2, as smtp.gmail.com does.

    `accept(user, token)` says whether a bearer token is good for that user; a refused token
    gets Google's answer: a 334 challenge with a JSON reason, then 535 after the client's
    empty reply.
    """

    accept: object = None
    xoauth2_logins: list[str] = field(default_factory=list)

    async def auth_XOAUTH2(self, server, args):
        if len(args) < 2:
            blob = await server.challenge_auth("")
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                return AuthResult(success=False, handled=False, message="501 5.5.2 Cannot Decode response")
        parts = dict(p.split("=", 1) for p in blob.decode("utf-8", "replace").split("\x01") if "=" in p)
        user, auth = parts.get("user", ""), parts.get("auth", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if self.accept is not None and self.accept(user, token):
            self.xoauth2_logins.append(user)
            return AuthResult(success=True, auth_data=user)
        reason = json.dumps({"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"})
        await server.challenge_auth(reason)
        return AuthResult(success=False, handled=False,
                          message="535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
                          "535 5.7.8  https://support.google.com/mail/?p=BadCredentials")


def authenticator(handler: RecordingHandler, accounts: dict[str, str] | None = None):
    """Accept the accounts (default ACCOUNTS) only; a failure must be handled=False or the client hangs."""

    def check(server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            handler.auth_attempts.append(login)
            if (ACCOUNTS if accounts is None else accounts).get(login) == auth_data.password.decode():
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    return check


class Server:
    """A running aiosmtpd server: mode plain, starttls or ssl; stop() when done."""

    def __init__(
        self,
        mode: str = "starttls",
        *,
        cert: tuple[str, str] | None = None,
        auth: bool = True,
        auth_require_tls: bool = True,
        handler: RecordingHandler | None = None,
        auth_required: bool = False,
        smtputf8: bool = True,
        accounts: dict[str, str] | None = None,
        authenticate=None,
    ) -> None:
        self.mode = mode
        self.handler = handler or RecordingHandler()
        self.host = "127.0.0.1"
        self.port = free_port()
        ctx = None
        if cert is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*cert)
        kwargs: dict = {"hostname": self.host, "port": self.port, "ready_timeout": 5.0}
        # RFC 6531 UTF-8 addresses and headers; aiosmtpd's Controller offers it by default.
        kwargs["enable_SMTPUTF8"] = smtputf8
        if auth:
            # authenticate: aiosmtpd's authenticator signature, to answer logins another way
            kwargs["authenticator"] = authenticate or authenticator(self.handler, accounts)
            kwargs["auth_required"] = auth_required
        if mode == "ssl":
            kwargs["ssl_context"] = ctx
            kwargs["auth_require_tls"] = False  # already encrypted; aiosmtpd only counts STARTTLS
        elif mode == "starttls":
            kwargs["tls_context"] = ctx
            kwargs["require_starttls"] = True
            kwargs["auth_require_tls"] = auth_require_tls
        else:
            kwargs["auth_require_tls"] = auth_require_tls
        self.controller = RecordingController(self.handler, **kwargs)
        self.controller.start()

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    @property
    def sessions(self) -> int:
        """How many client sessions said EHLO to this server (one per connection used)."""
        return len(self.handler.sessions)

    def stop(self) -> None:
        if self.controller._thread is not None:
            self.controller.stop()


def listen_silently() -> tuple[socket.socket, int]:
    """A socket that accepts connections and never says anything (a timeout at greeting)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, sock.getsockname()[1]


class GreetingServer:
    """Answers every connection with one fixed greeting line, then closes (e.g. 554, 421)."""

    def __init__(self, reply: str) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.reply = reply.encode() + b"\r\n"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def stop(self) -> None:
        self.sock.close()


class FullBacklog:
    """A port whose accept queue is full: the kernel drops new SYNs, so connects time out.

    The loopback way to meet a TCP connect timeout (a firewall that drops packets)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port), timeout=2)

    def stop(self) -> None:
        self.filler.close()
        self.sock.close()
