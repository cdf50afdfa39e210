"""The app's folders and files: the user's own, never written through a link; secrets.enc
names no account.

The tests run as root here; the ones about a normal user fork and switch to a throwaway uid
(os.setuid in the child), in a home under /tmp that the uid owns.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import tempfile
import traceback
from pathlib import Path

import pytest

from backend import paths, settings
from backend.credentials import CredentialsError, EncryptedFileStore
from backend.suppression import SuppressionList

USER_UID = 54321  # a uid no account uses
PASSPHRASE = "a long test passphrase"


def victim(tmp_path: Path) -> Path:
    """A file standing for /etc/passwd: mode 0644, content that must stay."""
    path = tmp_path / "passwd"
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    path.chmod(0o644)
    return path


def untouched(path: Path) -> bool:
    return path.read_text() == "root:x:0:0:root:/root:/bin/bash\n" and stat.S_IMODE(path.stat().st_mode) == 0o644


# -- links planted in the app's folder (as root, the attack's worst case) ------------------------


def test_a_journal_that_is_a_link_is_refused_and_its_target_untouched(tmp_path):
    target = victim(tmp_path)
    journal = paths.data_dir() / "journal.sqlite3"
    journal.symlink_to(target)
    with pytest.raises(paths.AppFileError) as caught:
        paths.safe_file(journal)
    assert caught.value.category == "file_error"
    assert str(journal) in caught.value.message and "symbolic link" in caught.value.message
    assert any(f"rm '{journal}'" in step for step in caught.value.fix_steps())
    assert untouched(target)


def test_a_link_among_the_journals_companions_is_refused(tmp_path):
    target = victim(tmp_path)
    journal = paths.data_dir() / "journal.sqlite3"
    (paths.data_dir() / "journal.sqlite3-wal").symlink_to(target)
    with pytest.raises(paths.AppFileError, match="journal.sqlite3-wal is a symbolic link"):
        paths.safe_file(journal)
    assert untouched(target)


def test_a_hard_link_is_refused(tmp_path):
    target = paths.data_dir() / "other"
    target.write_text("x")
    os.link(target, paths.data_dir() / "journal.sqlite3")
    with pytest.raises(paths.AppFileError, match="hard links"):
        paths.safe_file(paths.data_dir() / "journal.sqlite3")


def test_safe_file_creates_a_0600_file_whatever_the_umask():
    old = os.umask(0)
    try:
        path = paths.safe_file(paths.data_dir() / "journal.sqlite3")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.is_file() and not path.is_symlink()
    path.chmod(0o644)  # an older file left readable: tightened on the open file
    paths.safe_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["secrets.enc", "secrets.enc.lock"])
def test_the_password_file_and_its_lock_are_never_links(tmp_path, name):
    target = victim(tmp_path)
    (paths.data_dir() / name).symlink_to(target)
    store = EncryptedFileStore()
    with pytest.raises(CredentialsError, match="symbolic link"):
        store.save("smtp:me@example.com@smtp.example.com", "pw", PASSPHRASE)
    assert untouched(target)


def test_the_suppression_list_is_never_written_through_a_link(tmp_path):
    target = victim(tmp_path)
    (paths.data_dir() / "suppression.txt").symlink_to(target)
    with pytest.raises(paths.AppFileError, match="symbolic link"):
        SuppressionList().add("someone@example.org", "unsubscribed")
    assert untouched(target)


def test_settings_that_are_a_link_are_not_read_and_a_save_replaces_the_link(tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"account": {"host": "planted.example"}}))
    settings.settings_path().symlink_to(target)
    assert settings.load_saved() == {}
    settings.save({"account": {"host": "smtp.example.com"}})
    assert not settings.settings_path().is_symlink()
    assert json.loads(target.read_text()) == {"account": {"host": "planted.example"}}
    assert stat.S_IMODE(settings.settings_path().stat().st_mode) == 0o600


def test_a_template_folder_others_may_write_is_refused():
    from backend.templates import SavedTemplate, TemplateStore

    folder = paths.data_dir() / "templates"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(paths.AppFileError, match="can be changed by other users") as caught:
        TemplateStore().save(SavedTemplate("welcome", "Hi", "Hello", "text"))
    assert f"chmod 700 '{folder}'" in " ".join(caught.value.fix_steps())
    assert list(folder.iterdir()) == []


# -- folders: the user's own, as a normal user ---------------------------------------------------


def as_user(uid: int, home: Path, check) -> str:
    """Run check() in a forked child switched to uid with BULK_MAILER_HOME=home; its outcome as
    text: 'ok: <value>' or '<ErrorClass>: <message> | <fix steps>'."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        try:
            os.setgid(uid)
            os.setgroups([])
            os.setuid(uid)
            os.environ[paths.HOME_ENV] = str(home)
            try:
                text = f"ok: {check()}"
            except paths.AppFileError as exc:
                text = f"AppFileError: {exc.message} | {' '.join(exc.fix_steps())}"
            except Exception as exc:  # noqa: BLE001 (reported to the parent)
                text = f"{type(exc).__name__}: {exc} {traceback.format_exc()}"
            os.write(write, text.encode())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.fixture
def user_home():
    """A home under /tmp owned by the throwaway uid (tmp_path's parents are root's, mode 0700)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to a throwaway user (run as a normal user, the other tests apply)")
    base = Path(tempfile.mkdtemp(prefix="bm-user-", dir="/tmp"))
    os.chown(base, USER_UID, USER_UID)
    base.chmod(0o755)
    yield base / "home"
    shutil.rmtree(base)


def test_a_normal_user_gets_private_folders(user_home):
    outcome = as_user(USER_UID, user_home, lambda: oct(stat.S_IMODE(paths.data_dir().stat().st_mode)))
    assert outcome == "ok: 0o700"


def test_an_app_folder_owned_by_another_user_is_refused(user_home):
    data = user_home / "data"
    data.mkdir(parents=True)  # made by root: another user than the throwaway one
    os.chown(user_home, USER_UID, USER_UID)
    outcome = as_user(USER_UID, user_home, paths.data_dir)
    assert outcome.startswith(f"AppFileError: the app's folder {data} belongs to another user (uid 0"), outcome
    assert f"chown -R {USER_UID} '{data}'" in outcome and paths.HOME_ENV in outcome


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777], ids=lambda m: f"{m:04o}")
def test_an_app_folder_others_may_write_is_refused(user_home, mode):
    data = user_home / "data"
    data.mkdir(parents=True)
    for p in (user_home, data):
        os.chown(p, USER_UID, USER_UID)
    data.chmod(mode)
    outcome = as_user(USER_UID, user_home, paths.data_dir)
    assert outcome.startswith(f"AppFileError: the app's folder {data} can be changed by other users "
                              f"(mode {mode:04o})"), outcome
    assert f"chmod 700 '{data}'" in outcome


def test_a_normal_users_journal_link_is_refused(user_home):
    def plant_and_open():
        target = paths.data_dir().parent / "mine.txt"
        target.write_text("keep")
        target.chmod(0o644)
        (paths.data_dir() / "journal.sqlite3").symlink_to(target)
        try:
            paths.safe_file(paths.data_dir() / "journal.sqlite3")
        finally:
            assert target.read_text() == "keep" and stat.S_IMODE(target.stat().st_mode) == 0o644
        return "opened"

    user_home.mkdir()
    os.chown(user_home, USER_UID, USER_UID)
    outcome = as_user(USER_UID, user_home, plant_and_open)
    assert outcome.startswith("AppFileError: ") and "journal.sqlite3 is a symbolic link" in outcome, outcome


# -- secrets.enc names no account -----------------------------------------------------------------


ACCOUNTS = ["smtp:ann.distinctive@example.com@smtp.example.com", "oauth:gmail:bob.distinctive@gmail.com"]


def names_in(data: bytes) -> list[str]:
    found = []
    for account in ACCOUNTS:
        for part in (account, account.split(":")[-1], account.split("@")[0].split(":")[-1]):
            if part.encode() in data or base64.b64encode(part.encode()) in data:
                found.append(part)
    return found


def test_the_password_file_names_no_account(tmp_path):
    store = EncryptedFileStore(tmp_path / "secrets.enc")
    for n, account in enumerate(ACCOUNTS):
        store.save(account, f"password {n}", PASSPHRASE)
    data = (tmp_path / "secrets.enc").read_bytes()
    assert names_in(data) == []
    assert all(store.has(a) for a in ACCOUNTS) and not store.has("smtp:carl@example.com@smtp.example.com")
    assert store.load(ACCOUNTS[1], PASSPHRASE) == "password 1"
    store.delete(ACCOUNTS[0], PASSPHRASE)
    assert not store.has(ACCOUNTS[0]) and store.has(ACCOUNTS[1])
    assert names_in((tmp_path / "secrets.enc").read_bytes()) == []
    store.delete(ACCOUNTS[1])  # the last one: no passphrase needed, the file goes
    assert not (tmp_path / "secrets.enc").exists()


def write_version_1(path: Path, data: dict[str, str]) -> None:
    """A secrets.enc as the app wrote it before: the account names in clear beside the token."""
    salt = os.urandom(16)
    token = EncryptedFileStore._fernet(PASSPHRASE, salt).encrypt(json.dumps(data).encode())
    path.write_text(json.dumps({"version": 1, "kdf": "scrypt", "n": 2**15, "r": 8, "p": 1,
                                "salt": base64.b64encode(salt).decode(), "token": token.decode(),
                                "accounts": sorted(data)}))
    path.chmod(0o600)


def test_an_old_password_file_is_read_and_rewritten_without_names(tmp_path):
    path = tmp_path / "secrets.enc"
    write_version_1(path, {ACCOUNTS[0]: "old password", ACCOUNTS[1]: "old token"})
    store = EncryptedFileStore(path)
    assert names_in(path.read_bytes())  # the old format lists them
    assert store.has(ACCOUNTS[0]) and store.load(ACCOUNTS[0], PASSPHRASE) == "old password"
    store.save("smtp:carl.distinctive@example.com@smtp.example.com", "new", PASSPHRASE)  # the next write
    data = path.read_bytes()
    assert names_in(data) == [] and b"carl.distinctive" not in data
    assert json.loads(data)["version"] == 2
    assert store.load(ACCOUNTS[1], PASSPHRASE) == "old token" and store.has(ACCOUNTS[0])
