"""Saved passwords: the OS keyring when a real one exists, else a passphrase-encrypted file.

keyring without a desktop session falls back to a backend that raises, and keyrings.alt
would store passwords in plain text, so the keyring is used only when
``keyring.core.recommended`` says the backend is a real one. Otherwise passwords live in
``secrets.enc``: Fernet (AES-128-CBC + HMAC-SHA256) under a key derived with scrypt from a
passphrase the user sets once; file mode 0600, replaced atomically, never read or written
through a symbolic link.

The file does not say which accounts have a saved password: the whole mapping is inside the
encrypted token, and beside it only keyed HMACs of the account names (so has() needs no
passphrase). Someone holding the file can test a guessed account name against them, but
cannot list the names. Files of version 1 (names in clear) are read as before and rewritten
as version 2 at the next save or delete.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from backend import paths
from backend.errors import MailerError

try:
    import fcntl
except ImportError:  # Windows: the in-process lock only
    fcntl = None  # type: ignore[assignment]

_FILE_LOCK = threading.Lock()

log = logging.getLogger(__name__)

SERVICE = "bulk-mailer"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MIN_PASSPHRASE = 8


class CredentialsError(MailerError):
    """A saved password cannot be stored or read (locked, wrong passphrase, damaged file)."""

    default_category = "invalid_settings"


class PasswordStore(Protocol):
    kind: str
    needs_passphrase: bool

    def save(self, account: str, password: str, passphrase: str | None = None) -> None: ...
    def load(self, account: str, passphrase: str | None = None) -> str | None: ...
    def delete(self, account: str, passphrase: str | None = None) -> None: ...
    def has(self, account: str) -> bool: ...


def account_key(user: str, host: str) -> str:
    """The name a password is saved under: one per login on one server."""
    return f"smtp:{user}@{host}"


class KeyringStore:
    """The desktop's own keyring (Secret Service, macOS Keychain, Windows Credential Locker)."""

    kind = "system"
    needs_passphrase = False

    def __init__(self, backend: object) -> None:
        self._backend = backend

    def save(self, account: str, password: str, passphrase: str | None = None) -> None:
        try:
            self._backend.set_password(SERVICE, account, password)  # type: ignore[attr-defined]
        except Exception as exc:
            raise CredentialsError(f"the system keyring could not save the password: {exc}") from None

    def load(self, account: str, passphrase: str | None = None) -> str | None:
        try:
            return self._backend.get_password(SERVICE, account)  # type: ignore[attr-defined]
        except Exception as exc:
            raise CredentialsError(f"the system keyring could not be read: {exc}") from None

    def delete(self, account: str, passphrase: str | None = None) -> None:
        import keyring.errors

        try:
            self._backend.delete_password(SERVICE, account)  # type: ignore[attr-defined]
        except keyring.errors.PasswordDeleteError:
            pass

    def has(self, account: str) -> bool:
        try:
            return self.load(account) is not None
        except Exception as exc:  # a locked or broken keyring is a message, not a crash
            raise CredentialsError(f"the system keyring could not be read: {exc}") from None


class EncryptedFileStore:
    """Passwords in one file encrypted under a passphrase (no usable keyring on this system)."""

    kind = "encrypted-file"
    needs_passphrase = True

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.data_dir() / "secrets.enc"

    def _header(self) -> dict[str, object] | None:
        try:
            raw = paths.read_private(self.path)  # never through a link
        except FileNotFoundError:
            return None
        except paths.AppFileError as exc:
            raise CredentialsError(exc.message, fix=exc.extra_fix) from None
        except OSError as exc:
            raise CredentialsError(f"the saved passwords file {self.path} cannot be read ({exc.strerror})") from None
        try:
            header = json.loads(raw)
            if not isinstance(header, dict) or header.get("version") not in (1, 2):
                raise ValueError("unknown format")
            base64.b64decode(header["salt"], validate=True)
            if header["version"] == 2:
                base64.b64decode(header["index_key"], validate=True)
            if not isinstance(header.get("accounts") or [], list):
                raise ValueError("accounts is not a list")
            return header
        except (ValueError, KeyError, TypeError):
            raise CredentialsError(
                f"the saved passwords file {self.path} is damaged; forget the saved password and save it again"
            ) from None

    @staticmethod
    def _fernet(passphrase: str, salt: bytes) -> Fernet:
        kdf = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
        return Fernet(base64.urlsafe_b64encode(kdf.derive(passphrase.encode("utf-8"))))

    def _read_all(self, passphrase: str | None) -> tuple[dict[str, str], bytes | None]:
        header = self._header()
        if header is None:
            return {}, None
        if not passphrase:
            raise CredentialsError("the saved password is locked: enter the passphrase", fix=(
                "Enter the passphrase you chose when you saved the password.",
                "Forgot it? Forget the saved password and enter the password again.",
            ))
        salt = base64.b64decode(header["salt"])  # type: ignore[arg-type]
        try:
            plain = self._fernet(passphrase, salt).decrypt(str(header["token"]).encode("ascii"))
            data = json.loads(plain)
        except (InvalidToken, ValueError, UnicodeError):
            raise CredentialsError(
                "the passphrase is wrong, or the saved passwords file was changed",
                fix=("Retype the passphrase.",
                     "If you forgot it or the file was damaged, forget the saved password and save it again."),
            ) from None
        if not isinstance(data, dict):
            raise CredentialsError(f"the saved passwords file {self.path} is damaged")
        return {str(k): str(v) for k, v in data.items()}, salt

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One read-modify-write at a time, across threads and processes (window and CLI):
        two saves at once must not lose one of them."""
        with _FILE_LOCK:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = paths.open_private(f"{self.path}.lock", os.O_CREAT | os.O_RDWR)
            except paths.AppFileError as exc:
                raise CredentialsError(exc.message, fix=exc.extra_fix) from None
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    @staticmethod
    def _tag(index_key: bytes, account: str) -> str:
        return hmac.new(index_key, account.encode("utf-8"), hashlib.sha256).hexdigest()

    def _listed(self, header: dict[str, object], account: str) -> bool:
        """Whether the file holds a password for account (from the header, no passphrase)."""
        listed = header.get("accounts") or []
        if header.get("version") == 1:
            return account in listed  # type: ignore[operator]
        key = base64.b64decode(str(header["index_key"]))
        return self._tag(key, account) in listed  # type: ignore[operator]

    def _write_all(self, data: dict[str, str], passphrase: str, salt: bytes | None) -> None:
        salt = salt or secrets.token_bytes(16)
        header = self._header()
        old_key = header.get("index_key") if header and header.get("version") == 2 else None
        index_key = base64.b64decode(str(old_key)) if old_key else secrets.token_bytes(32)
        token = self._fernet(passphrase, salt).encrypt(json.dumps(data).encode("utf-8"))
        blob = json.dumps({"version": 2, "kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
                           "salt": base64.b64encode(salt).decode("ascii"), "token": token.decode("ascii"),
                           "index_key": base64.b64encode(index_key).decode("ascii"),
                           # keyed HMACs, not names: has() needs no passphrase, the file lists nobody
                           "accounts": sorted(self._tag(index_key, name) for name in data)})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            paths.atomic_write(self.path, blob.encode("ascii"))  # mode 0600; the old file stays on failure
        except OSError as exc:
            raise CredentialsError(
                f"the saved passwords file {self.path} cannot be written ({exc.strerror or exc}); "
                "the passwords saved before are unchanged") from None

    def save(self, account: str, password: str, passphrase: str | None = None) -> None:
        if not passphrase or len(passphrase) < MIN_PASSPHRASE:
            raise CredentialsError(
                f"choose a passphrase of at least {MIN_PASSPHRASE} characters to protect the saved password",
                fix=("There is no system keyring here, so the password is saved encrypted under a "
                     "passphrase you choose; you enter it once per start of the app.",),
            )
        with self._locked():
            data, salt = self._read_all(passphrase)
            data[account] = password
            self._write_all(data, passphrase, salt)

    def load(self, account: str, passphrase: str | None = None) -> str | None:
        if self._header() is None:
            return None
        data, _ = self._read_all(passphrase)
        return data.get(account)

    def delete(self, account: str, passphrase: str | None = None) -> None:
        """Forget one account's password; the others stay (that needs the passphrase)."""
        header = self._header()
        if header is None or not self._listed(header, account):
            return
        if len(header.get("accounts") or []) == 1:  # type: ignore[arg-type]
            self.path.unlink(missing_ok=True)  # the only one: no passphrase needed
            return
        if not passphrase:
            raise CredentialsError(
                "enter the passphrase to forget this password (other saved passwords stay)",
                fix=("Enter the passphrase you chose when you saved the password.",),
            )
        with self._locked():
            data, salt = self._read_all(passphrase)
            data.pop(account, None)
            self._write_all(data, passphrase, salt)

    def has(self, account: str) -> bool:
        header = self._header()
        return header is not None and self._listed(header, account)


def default_store() -> PasswordStore:
    """The keyring when it is a real one, else the encrypted file."""
    try:
        import keyring
        import keyring.core

        backend = keyring.get_keyring()
        if keyring.core.recommended(backend):
            return KeyringStore(backend)
    except Exception:  # a broken keyring setup must not stop the app
        log.warning("no usable system keyring; using the encrypted file")
    return EncryptedFileStore()
