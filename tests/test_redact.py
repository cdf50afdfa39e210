"""A server that echoes the password (or a token) back: the echo is scrubbed before the app keeps,
logs or shows it, on every path a reply takes (log, journal, results CSV, verify --json)."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from backend.credentials import EncryptedFileStore
from backend.errors import AuthError, OAuthError, TransportError
from backend.google_auth import GoogleAccount, OAuthClient
from backend.redact import Redactor
from backend.settings import SmtpSettings
from backend.transports.base import Envelope
from backend.transports.gmail import GmailTransport
from backend.transports.smtp import SmtpTransport
from tests.fakegoogle import client_json
from tests.servers import PASSWORD, USER, RecordingHandler, XOAuth2Handler
from tests.test_cli import run_cli
from tests.test_gmail import PASSPHRASE, sign_in

TOKEN = "ya29.a0Echo-Distinctive-Access-Token_7c1e"  # noqa: S105 (a test credential)


def b64(data: str) -> str:
    return base64.b64encode(data.encode()).decode()


def password_forms(user: str = USER, password: str = PASSWORD) -> dict[str, bytes]:
    """Every form a password travels in, as AUTH PLAIN and AUTH LOGIN send it."""
    forms = {
        "password": password,
        "password, URL-encoded": urllib.parse.quote(password, safe=""),
        "AUTH PLAIN": b64(f"\0{user}\0{password}"),
        "AUTH PLAIN unpadded": b64(f"\0{user}\0{password}").rstrip("="),
        "AUTH PLAIN with authzid": b64(f"{user}\0{user}\0{password}"),
        "AUTH LOGIN password": b64(password),
        "AUTH LOGIN username": b64(user),
    }
    return {name: form.encode() for name, form in forms.items()}


def token_forms(user: str, token: str) -> dict[str, bytes]:
    forms = {"token": token, "token, base64": b64(token),
             "XOAUTH2": b64(f"user={user}\x01auth=Bearer {token}\x01\x01")}
    return {name: form.encode() for name, form in forms.items()}


def leaks(blobs: dict[str, bytes], forms: dict[str, bytes]) -> list[tuple[str, str]]:
    return [(where, name) for where, data in blobs.items() for name, form in forms.items() if form in data]


def echo_of(login: str, password: str) -> str:
    """A 535 reply repeating the credentials in every form they were sent in."""
    return (f"535 5.7.8 bad credentials {b64(chr(0) + login + chr(0) + password)} "
            f"{b64(password)} {b64(login)} {b64(login + chr(0) + login + chr(0) + password)} "
            f"({password}) [{urllib.parse.quote(password, safe='')}]")


class EchoingServer(RecordingHandler):
    """Accepts the first login, then answers MAIL with a 535 echoing the credentials (a row's
    reason, in the journal and the results); every later login is refused with the same echo."""

    def __init__(self) -> None:
        super().__init__()
        self.logins: list[tuple[str, str]] = []

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        if len(self.logins) == 1:
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False, message=echo_of(*self.logins[-1]))

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        return echo_of(*self.logins[-1])


# -- the scrubbing itself ----------------------------------------------------------------------


def test_every_form_of_the_password_and_token_is_replaced():
    redact = Redactor(USER, PASSWORD)
    redact.add_token(TOKEN)
    text = " ".join(f.decode() for f in (*password_forms().values(), *token_forms(USER, TOKEN).values()))
    text += " " + base64.urlsafe_b64encode(PASSWORD.encode()).decode()
    clean = redact(text)
    assert leaks({"scrubbed": clean.encode()}, {**password_forms(), **token_forms(USER, TOKEN)}) == []
    assert "[password]" in clean and "[username]" in clean and "[token]" in clean


def test_a_short_password_is_replaced_only_where_it_stands_alone():
    redact = Redactor("a@example.org", "5")
    assert redact("535 5.7.8 refused 5 (5)") == "535 5.7.8 refused [password] ([password])"


# -- SMTP, end to end through the command line ------------------------------------------------


@pytest.mark.parametrize("mode", ["starttls", "plain"])
def test_a_server_echoing_the_password_leaves_it_nowhere(smtp_server, certs, tmp_path, mode):
    echo = EchoingServer()
    kw = {} if mode == "starttls" else {"auth_require_tls": False}
    server = smtp_server(mode, handler=echo, authenticate=echo.authenticate, **kw)
    home = tmp_path / "home"
    people = tmp_path / "people.csv"
    people.write_text("email,name\nann@example.org,Ann\nbob@example.org,Bob\n")
    results = tmp_path / "results.csv"
    body = tmp_path / "body.txt"
    body.write_text("Hello {{ name }}")
    account = ["--host", server.host, "--port", str(server.port), "--user", USER, "--timeout", "5"]
    account += (["--security", "starttls", "--ca-file", certs.ca_file] if mode == "starttls"
                else ["--security", "none", "--allow-plaintext-auth"])
    env = {"BULK_MAILER_PASSWORD": PASSWORD}
    send = run_cli("--log-level", "DEBUG", "--verbose", "send", *account, "--from", USER, "--to-file", str(people),
                   "--subject", "Hi", "--text-file", str(body), "--delay-ms", "0", "--results", str(results),
                   "--progress", "jsonl", env=env, home=home)
    verify = run_cli("--log-level", "DEBUG", "verify", *account, "--json", env=env, home=home)
    assert send.returncode == 2 and verify.returncode != 0, (send.stderr[-600:], verify.stderr[-600:])
    assert len(echo.logins) >= 2 and echo.logins[0] == (USER, PASSWORD)  # the echo had the real thing

    answer = json.loads(verify.stdout)
    assert answer["error"]["category"] == "auth_failed"
    assert "bad credentials [password] [password] [username]" in answer["error"]["message"]
    assert "([password])" in answer["error"]["message"]
    files = {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    journal = [name for name in files if "journal.sqlite3" in name]
    assert journal and any(name.endswith("bulk-mailer.log") for name in files), (sorted(files), send.stderr[-800:])
    assert b"bad credentials [password]" in files["results.csv"]  # the reason is kept, scrubbed
    assert b"bad credentials [password]" in b"".join(files[name] for name in journal)
    outputs = {"send stdout": send.stdout.encode(), "send stderr": send.stderr.encode(),
               "verify stdout": verify.stdout.encode(), "verify stderr": verify.stderr.encode()}
    assert leaks({**files, **outputs}, password_forms()) == []
    assert leaks({"probe": f"<{b64(chr(0) + USER + chr(0) + PASSWORD)}>".encode()}, password_forms())


# -- OAuth tokens: SMTP XOAUTH2 and the Gmail API ------------------------------------------------


class EchoingXOAuth2(XOAuth2Handler):
    """smtp.gmail.com's XOAUTH2, but its refusal repeats the string it was sent."""

    async def auth_XOAUTH2(self, server, args):
        blob = args[1] if len(args) > 1 else ""
        token = base64.b64decode(blob).decode().split("Bearer ", 1)[-1].rstrip("\x01")
        return AuthResult(success=False, handled=False,
                          message=f"535 5.7.8 token refused: {blob} {token} {b64(token)}")


class Tokens:
    """What a Google sign-in gives SMTP: a fresh access token."""

    def access_token(self, force_refresh: bool = False) -> str:
        return TOKEN


def test_an_smtp_server_echoing_the_xoauth2_string_leaves_no_token(smtp_server):
    server = smtp_server("starttls", handler=EchoingXOAuth2())
    settings = SmtpSettings(server.host, server.port, "starttls", user=USER, verify_certificates=False,
                            auth="xoauth2", token_source=Tokens(), timeout=5)
    transport = SmtpTransport(settings)
    with pytest.raises(OAuthError) as caught:
        transport.open()
    steps = " ".join(step.detail for step in transport.info.steps)
    assert "token refused: [token] [token] [token]" in caught.value.message
    assert leaks({"error": caught.value.message.encode(), "steps": steps.encode(),
                  "describe": json.dumps(caught.value.describe()).encode()}, token_forms(USER, TOKEN)) == []


def test_a_gmail_answer_echoing_the_token_leaves_no_token(google, certs, tmp_path):
    account = GoogleAccount(EncryptedFileStore(tmp_path / "secrets.enc"), PASSPHRASE)
    token, _ = sign_in(google, certs)
    account.save(OAuthClient.parse(client_json()), token)
    transport = GmailTransport(account)
    transport.open()
    access = account.access_token()
    with pytest.raises(TransportError) as caught:
        transport.send(Envelope("sender@gmail.com", ["echo400@example.org"]),
                       b"To: echo400@example.org\r\nSubject: x\r\n\r\nhi\r\n")
    assert "for token [token] ([token])" in caught.value.message
    assert leaks({"error": caught.value.message.encode()}, token_forms(token.email, access)) == []
    assert not isinstance(caught.value, AuthError)

