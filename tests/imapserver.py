"""A real IMAP server for tests: Debian's Dovecot (dovecot-imapd) on 127.0.0.1, started by the
tests with a throwaway configuration, a passwd-file user and a Maildir.

    server = Dovecot(cert=certs.good, special_use=True).start()
    server.port_ssl, server.port_starttls    implicit TLS and STARTTLS listeners
    server.messages("Sent")                  every message in a folder, as bytes
    server.stop()

Run as root (CI), the master drops its helpers to Debian's own ``dovecot`` and ``dovenull``
users (Dovecot refuses to run its login process, or mail access, as root); the Maildir then
lives in a folder of its own under /tmp owned by ``dovecot``. Run as anyone else, every
process stays that user. ``special_use`` puts SPECIAL-USE \\Sent on the folder "Sent";
without it the account's sent folder is a plain "Sent Items".
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers import (  # the SMTP test server's login: IMAP uses it too
    PASSWORD,
    USER,
    free_port,
)

DOVECOT = "/usr/sbin/dovecot"


def available() -> bool:
    return os.path.exists(DOVECOT)


class Dovecot:
    def __init__(self, *, cert: tuple[str, str], special_use: bool = True, sent_name: str | None = None,
                 user: str = USER, password: str = PASSWORD) -> None:
        self.cert, self.special_use = cert, special_use
        self.sent_name = sent_name or ("Sent" if special_use else "Sent Items")
        self.user, self.password = user, password
        self.root = Path(tempfile.mkdtemp(prefix="bm-dovecot-"))
        self.port_ssl, self.port_starttls = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.host = "127.0.0.1"

    def _config(self) -> str:
        r = self.root
        root_run = os.geteuid() == 0
        me = pwd.getpwuid(os.geteuid()).pw_name
        internal, login = ("dovecot", "dovenull") if root_run else (me, me)
        sent = f'"{self.sent_name}"' if " " in self.sent_name else self.sent_name
        special = "    special_use = \\Sent\n" if self.special_use else ""
        return f"""
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
info_log_path = {r}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.cert[0]}
ssl_key = <{self.cert[1]}
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
auth_mechanisms = plain login
mail_location = maildir:{r}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {r}/passwd
}}
userdb {{
  driver = static
  args = home={r}/mail/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox {sent} {{
{special}    auto = create
  }}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {self.port_starttls}
  }}
  inet_listener imaps {{
    port = {self.port_ssl}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap {{
  user = {internal}
}}
"""

    def start(self) -> Dovecot:
        r = self.root
        for sub in ("run", "state", "mail"):
            (r / sub).mkdir()
        # Passwords in a passwd-file are "user:{SCHEME}password"; no ':' in the test ones.
        (r / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        conf = r / "dovecot.conf"
        conf.write_text(self._config())
        if os.geteuid() == 0:
            r.chmod(0o755)  # the helpers (another user) read their sockets and the cert paths
            shutil.chown(r / "mail", "dovecot", "dovecot")
            for part in (self.cert[0], self.cert[1]):
                os.chmod(part, 0o644)  # read by the master (root) at start, only under tmp
        self.proc = subprocess.Popen([DOVECOT, "-c", str(conf), "-F"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''} "
                                   f"{self.log()}")
            try:
                with socket.create_connection((self.host, self.port_starttls), 0.5) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("dovecot did not start: " + self.log())

    def log(self) -> str:
        try:
            return (self.root / "dovecot.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- looking in -------------------------------------------------------------------------

    def client(self, ca_file: str) -> imaplib.IMAP4_SSL:
        ctx = ssl.create_default_context(cafile=ca_file)
        m = imaplib.IMAP4_SSL(self.host, self.port_ssl, ssl_context=ctx, timeout=10)
        m.login(self.user, self.password)
        return m

    def messages(self, folder: str, ca_file: str) -> list[tuple[bytes, bytes]]:
        """Every message in a folder: (its flags, its bytes)."""
        m = self.client(ca_file)
        try:
            typ, _ = m.select(f'"{folder}"', readonly=True)
            assert typ == "OK", folder
            _, data = m.search(None, "ALL")
            out = []
            for num in data[0].split():
                _, parts = m.fetch(num, "(FLAGS BODY.PEEK[])")
                out.append((parts[0][0], parts[0][1]))
            return out
        finally:
            m.logout()

    def message_ids(self, folder: str, ca_file: str) -> list[str]:
        from email import message_from_bytes

        return [str(message_from_bytes(raw)["Message-ID"]) for _, raw in self.messages(folder, ca_file)]
