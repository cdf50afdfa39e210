"""The app's log: every record capped (tracebacks included), the file 0600 and never a link."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from backend import logs, paths
from backend.logs import LOG_BYTES, LOG_FILE, MAX_RECORD_BYTES, cap_text, setup_logging


@pytest.fixture
def app_log(isolated_home):
    """setup_logging as the command line calls it; its handlers removed afterwards."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level

    def start(*args, **kw):
        setup_logging(*args, **kw)
        return paths.log_dir() / LOG_FILE

    yield start
    for handler in root.handlers[len(before):]:
        handler.close()
        root.removeHandler(handler)
    root.setLevel(level)


def records(text: str) -> list[str]:
    """The log's records: each starts with a time stamp at the beginning of a line."""
    out: list[str] = []
    for line in text.split("\n"):
        if line[:2] == "20" and line[4:5] == "-" and line[10:11] == " ":
            out.append(line)
        elif out:
            out[-1] += "\n" + line
    return out


def test_a_huge_message_and_a_huge_traceback_are_cut_to_the_cap(app_log):
    path = app_log("INFO")
    log = logging.getLogger("bulk_mailer.test")
    log.info("before")
    log.warning("a rendered template said: %s", "x" * 3_000_000)  # 3 MB in one record

    def deep(n: int) -> None:
        if n == 0:
            raise ValueError("y" * 8_000_000)  # an 8 MB exception text at the end of a deep traceback
        deep(n - 1)

    try:
        deep(200)
    except ValueError:
        log.exception("building the message failed")
    log.info("after")
    for handler in logging.getLogger().handlers:
        handler.flush()
    files = sorted(path.parent.glob(LOG_FILE + "*"))
    assert all(f.stat().st_size <= LOG_BYTES for f in files), [(f.name, f.stat().st_size) for f in files]
    text = "".join(f.read_text(encoding="utf-8") for f in reversed(files))
    found = records(text)
    assert [r.split(": ", 1)[1].strip() for r in found if r.endswith(("before", "after", "after\n"))] == [
        "before", "after"]
    big = [r for r in found if "bytes cut here" in r]
    assert len(big) == 2, [r[:200] for r in found]
    for record in found:
        assert len(record.encode()) <= MAX_RECORD_BYTES, len(record.encode())
    message, traceback = big
    assert "a rendered template said: xxxx" in message
    cut = int(message.split("[... ", 1)[1].split(" ", 1)[0])
    assert 2_900_000 < cut < 3_000_000  # the note says how much was cut
    # a traceback keeps its start and its end, where the error is named
    assert "Traceback (most recent call last)" in traceback and traceback.rstrip().endswith("y" * 100)


def test_cap_text_keeps_short_text_and_never_splits_a_character():
    assert cap_text("short") == "short"
    text = "é" * 100_000  # 200 000 bytes of two-byte characters
    capped = cap_text(text, 10_000)
    assert len(capped.encode("utf-8")) <= 10_000 and "\ufffd" not in capped
    assert "bytes cut here" in capped


def test_the_log_file_is_0600_even_with_a_permissive_umask(app_log):
    old = os.umask(0)
    try:
        path = app_log("INFO")
        logging.getLogger("bulk_mailer.test").info("hello")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_log_file_that_is_a_link_is_not_followed(app_log, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    victim.chmod(0o644)
    (paths.log_dir() / LOG_FILE).symlink_to(victim)
    app_log("INFO")
    logging.getLogger("bulk_mailer.test").warning("this must not reach the victim")
    assert victim.read_text() == "keep me\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    err = capsys.readouterr().err
    assert "cannot write the log file" in err and "symbolic link" in err and "rm " in err


def test_rotation_reopens_the_file_without_following_links(app_log, tmp_path):
    path = app_log("INFO")
    # this test's handler (an earlier test in the same process may have left its own)
    handler = next(h for h in logging.getLogger().handlers
                   if isinstance(h, logs.PrivateRotatingFileHandler) and Path(h.baseFilename) == Path(path))
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    logging.getLogger("bulk_mailer.test").info("first")
    # The file is swapped for a link while the app runs; the next open (as at each rotation) refuses it.
    path.unlink()
    path.symlink_to(victim)
    handler.close()
    with pytest.raises(paths.AppFileError, match="symbolic link"):
        handler._open()
    assert victim.read_text() == "keep me\n"
