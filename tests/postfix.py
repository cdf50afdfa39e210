"""A real Postfix smtpd for tests, which offers CHUNKING (BDAT, RFC 3030) as Postfix does since
3.4; Postfix's smtp-sink, which the other tests use, offers PIPELINING but not CHUNKING.

    server = Postfix().start()
    server.port          smtpd as configured by Postfix: PIPELINING, CHUNKING, SMTPUTF8, SIZE
    server.port_data     the same smtpd without CHUNKING (smtpd_discard_ehlo_keywords): DATA
    server.messages()    every message received, as the bytes the client sent (LF line ends)
    server.stop()

A private instance: its own configuration, queue and data folders under /tmp, its master started
with -c and -d (not through the `postfix` command, which only runs the system's configuration).
smtpd hands each message to a before-queue filter (smtpd_proxy_filter), here smtp-sink with
-d, which writes each one to a file: nothing is queued or delivered. Failures by recipient, as
in tests/servers.py: reject550@ (550 at RCPT), defer451@ (451 at RCPT), spam@ (554 at DATA or
BDAT). Postfix's master runs only as root (CI runs the tests as root); available() says so.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers import free_port

MASTER = "/usr/lib/postfix/sbin/master"
SMTP_SINK = "/usr/sbin/smtp-sink"


def available() -> bool:
    return os.geteuid() == 0 and os.access(MASTER, os.X_OK) and os.access(SMTP_SINK, os.X_OK)


class Postfix:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bm-postfix-"))
        self.host = "127.0.0.1"
        self.port, self.port_data, self.sink_port = free_port(), free_port(), free_port()
        self.master: subprocess.Popen[bytes] | None = None
        self.sink: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        r = self.root
        r.chmod(0o755)  # mkdtemp's 0700 keeps Postfix's own user out of its queue
        (r / "etc").mkdir()
        (r / "etc" / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {r}/queue
data_directory = {r}/data
mail_owner = postfix
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.test
mydestination =
mynetworks = 127.0.0.0/8
biff = no
smtpd_banner = $myhostname ESMTP
smtpd_proxy_filter = 127.0.0.1:{self.sink_port}
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_recipient_access inline:{{
    {{reject550@example.org = 550 5.1.1 no such user}},
    {{defer451@example.org = 451 4.3.0 try again later}} }}, permit_mynetworks, reject
smtpd_data_restrictions = check_recipient_access inline:{{ {{spam@example.org = 554 5.7.1 rejected as spam}} }}
""")
        (r / "etc" / "master.cf").write_text(f"""\
127.0.0.1:{self.port} inet n - n - - smtpd
127.0.0.1:{self.port_data} inet n - n - - smtpd -o smtpd_discard_ehlo_keywords=chunking
rewrite unix - - n - - trivial-rewrite
anvil unix - - n - 1 anvil
proxymap unix - - n - - proxymap
""")
        for sub in ("queue/pid", "queue/private", "queue/public", "data"):
            (r / sub).mkdir(parents=True)
        shutil.chown(r / "queue", "postfix")
        for sub in ("queue/pid", "queue/private", "queue/public", "data"):
            shutil.chown(r / sub, "postfix")
        (r / "dump").mkdir()
        (r / "dump").chmod(0o777)  # smtp-sink writes as nobody

    def start(self) -> Postfix:
        self._write_config()
        self.sink = subprocess.Popen(  # noqa: S603
            [SMTP_SINK, "-u", "nobody", "-d", f"{self.root}/dump/m.", f"127.0.0.1:{self.sink_port}", "64"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.master = subprocess.Popen(  # noqa: S603
            [MASTER, "-c", str(self.root / "etc"), "-d"], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        for port in (self.sink_port, self.port, self.port_data):
            while True:
                try:
                    socket.create_connection((self.host, port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or self.master.poll() is not None:
                        self.stop()
                        raise RuntimeError("Postfix did not start") from None
                    time.sleep(0.05)
        return self

    def messages(self) -> list[tuple[str, bytes]]:
        """(recipient, message) for each message received, oldest first: the bytes after
        smtp-sink's and smtpd's own headers, lines ended with LF (as smtp-sink writes them)."""
        found = []
        for path in sorted((self.root / "dump").iterdir(), key=lambda p: p.stat().st_mtime_ns):
            data = path.read_bytes()
            rcpt = re.search(rb"^X-Rcpt-Args: <([^>]*)>", data, re.M)
            # smtp-sink's X- lines and Received, then smtpd's Received, each with folded lines
            lines = data.split(b"\n")
            i = next(i for i, line in enumerate(lines) if line.startswith(b"Received:"))
            for _ in range(2):
                assert lines[i].startswith(b"Received:"), lines[i]
                i += 1
                while lines[i].startswith((b"\t", b" ")):
                    i += 1
            body = b"\n".join(lines[i:])
            assert body.endswith(b"\n\n"), body[-20:]  # smtp-sink adds an empty line
            found.append(((rcpt.group(1) if rcpt else b"").decode(), body[:-1]))
        return found

    def stop(self) -> None:
        for proc in (self.master, self.sink):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        # the master's children (smtpd, trivial-rewrite...) end as it does; give them a moment
        time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)
