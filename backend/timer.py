"""The timer that runs `bulk-mailer run-due` every 5 minutes while the window is closed.

One per user, never system-wide: a systemd user timer on Linux
($XDG_CONFIG_HOME/systemd/user/bulk-mailer-run-due.{service,timer}), a launchd agent on macOS
(~/Library/LaunchAgents/com.bulkmailer.run-due.plist), a Task Scheduler task on Windows
("Bulk Mailer run-due"). `status()` says whether it is there and whether the scheduler runs it,
in one plain sentence; `install()` writes it over any earlier one; `remove()` takes it away.

When the scheduler cannot be asked (no user session bus, as in a container or over sudo),
the files are still written and the sentence says what to run by hand; only a file that
cannot be written or removed raises (TimerFileError, with the path and the fix).
While the computer sleeps nothing runs: the timer catches up when it wakes (systemd's
Persistent=true; launchd and Task Scheduler run at the next interval), and run-due sends only
what is within each campaign's send window.
"""

from __future__ import annotations

import os
import platform
import plistlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from backend.errors import MailerError
from backend.paths import HOME_ENV, atomic_write, log_dir

RUN_EVERY_MIN = 5
NAME = "bulk-mailer-run-due"
SERVICE = f"{NAME}.service"
TIMER = f"{NAME}.timer"
LABEL = "com.bulkmailer.run-due"
TASK = "Bulk Mailer run-due"
TIMEOUT_S = 15
UNIT_MODE = 0o644
ROOT = Path(__file__).resolve().parent.parent
_ENABLE = f"systemctl --user enable --now {TIMER}"
_WHAT = f"runs scheduled campaigns every {RUN_EVERY_MIN} minutes"

Run = Callable[..., subprocess.CompletedProcess]


class TimerFileError(MailerError):
    """A timer file could not be written or removed (.path names it)."""

    default_category = "file_error"

    def __init__(self, message: str, *, path: Path | str, fix: tuple[str, ...] = ()) -> None:
        super().__init__(message, fix=fix)
        self.path = str(path)


@dataclass(frozen=True)
class TimerStatus:
    kind: str  # "systemd" | "launchd" | "schtasks" | "none" (no supported scheduler here)
    installed: bool  # our unit/plist/task exists
    active: bool | None  # the scheduler reports it enabled/loaded (None: could not ask)
    where: list[str]  # files written (or the task name on Windows)
    command: list[str]  # the argv it runs
    words: str  # one plain sentence for the window and the command line
    remove_by_hand: list[str]  # the shell lines that remove it by hand

    def as_dict(self) -> dict:
        return asdict(self)


def command() -> list[str]:
    """The argv that runs `bulk-mailer run-due` outside the window, as this program is installed."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "run-due"]
    beside = Path(sys.executable).parent  # a venv's bin/ (Scripts\ on Windows)
    for name in ("bulk-mailer", "bulk-mailer.exe"):
        if (beside / name).is_file():
            return [str((beside / name).absolute()), "run-due"]
    found = shutil.which("bulk-mailer")
    if found:
        return [str(Path(found).absolute()), "run-due"]
    return [sys.executable, str(ROOT / "bridge.py"), "run-due"]  # bridge.main is `bulk-mailer`


def status(*, system: str | None = None, home: Path | None = None, run: Run = subprocess.run) -> TimerStatus:
    """Whether the timer is installed here and whether the scheduler runs it."""
    kind, home = _kind(system), home or Path.home()
    if kind == "systemd":
        return _systemd_status(home, run)
    if kind == "launchd":
        return _launchd_status(home, run)
    if kind == "schtasks":
        return _schtasks_status(run)
    return _none_status(system)


def install(*, system: str | None = None, home: Path | None = None, run: Run = subprocess.run) -> TimerStatus:
    """Install (or write over) the timer and start it; the status says if starting failed."""
    kind, home = _kind(system), home or Path.home()
    if kind == "systemd":
        return _systemd_install(home, run)
    if kind == "launchd":
        return _launchd_install(home, run)
    if kind == "schtasks":
        return _schtasks_install(run)
    raise MailerError(_none_status(system).words, category="action_unavailable",
                      fix=(f"Add this line to your crontab (crontab -e): {_cron_line()}",))


def remove(*, system: str | None = None, home: Path | None = None, run: Run = subprocess.run) -> TimerStatus:
    """Stop the timer and delete it; nothing to remove is fine."""
    kind, home = _kind(system), home or Path.home()
    if kind == "systemd":
        return _systemd_remove(home, run)
    if kind == "launchd":
        return _launchd_remove(home, run)
    if kind == "schtasks":
        return _schtasks_remove(run)
    return _none_status(system)


# -- shared ---------------------------------------------------------------------------------


def _kind(system: str | None) -> str:
    return {"Linux": "systemd", "Darwin": "launchd", "Windows": "schtasks"}.get(system or platform.system(), "none")


def _cron_line() -> str:
    return f"*/{RUN_EVERY_MIN} * * * * {shlex.join(command())}"


def _none_status(system: str | None) -> TimerStatus:
    words = (f"Not available: Bulk Mailer installs its timer on Linux (systemd), macOS and Windows, not on "
             f"{system or platform.system() or 'this system'}; run it from cron instead: {_cron_line()}")
    return TimerStatus("none", False, None, [], command(), words, [])


def _program_gone(argv: list[str]) -> str:
    """The words when the installed timer runs a program that is no longer there (a moved folder)."""
    if argv and os.path.isabs(argv[0]) and not os.path.exists(argv[0]):
        return f"Installed, but the program it runs is gone ({argv[0]}): install the timer again."
    return ""


def _call(run: Run, argv: list[str]) -> subprocess.CompletedProcess | None:
    """Run a scheduler's command; None when it cannot be run at all (missing, timed out)."""
    try:
        return run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
                   creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
    except (OSError, subprocess.SubprocessError):
        return None


def _write(path: Path, data: bytes) -> None:
    """Replace path with data all at once (temporary file, fsync, os.replace), mode 0644."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, UNIT_MODE)
    except OSError as exc:
        raise TimerFileError(f"could not write the timer file {path}: {exc.strerror or exc}", path=path,
                             fix=(f"Check that the folder {path.parent} is yours and writable "
                                  f"(ls -ld '{path.parent}'), then install the timer again.",)) from None


def _delete(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise TimerFileError(f"could not remove the timer file {path}: {exc.strerror or exc}", path=path,
                             fix=(f"Remove it by hand: rm -f '{path}'.",)) from None


# -- Linux: systemd user timer ----------------------------------------------------------------


def unit_dir(home: Path) -> Path:
    """Where systemd looks for this user's units: $XDG_CONFIG_HOME/systemd/user."""
    config = os.environ.get("XDG_CONFIG_HOME", "")
    return (Path(config) if os.path.isabs(config) else home / ".config") / "systemd" / "user"


def _systemd_escape(value: str, *, dollar: bool, program: bool = False) -> str:
    """One double-quoted word for a unit file: backslash and quote escaped, % (specifiers)
    doubled, and $ doubled where systemd expands variables (the arguments of ExecStart=; the
    program's own path is taken literally, and systemd refuses quotes and backslashes in it)."""
    bad = "\"'\\" if program else ""
    if any(ord(c) < 32 or ord(c) == 127 or c in bad for c in value):
        what = "a quote, a backslash or a control character" if program else "a line break or control character"
        raise TimerFileError(f"the path {value!r} has {what}, which a systemd unit cannot run", path=value,
                             fix=("Move Bulk Mailer (or the folder named by BULK_MAILER_HOME) to a folder whose "
                                  "name has none, then install the timer again.",))
    value = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return '"' + (value.replace("$", "$$") if dollar and not program else value) + '"'


def render_service(argv: list[str]) -> str:
    lines = ["[Unit]", "Description=Bulk Mailer: send what is due (scheduled campaigns, send windows, follow-ups)",
             "", "[Service]", "Type=oneshot",
             "ExecStart=" + " ".join(_systemd_escape(a, dollar=True, program=not i) for i, a in enumerate(argv))]
    home_env = os.environ.get(HOME_ENV, "").strip()
    if home_env:
        lines.append("Environment=" + _systemd_escape(f"{HOME_ENV}={home_env}", dollar=False))
    lines.append("Nice=10")
    return "\n".join(lines) + "\n"


def render_timer() -> str:
    return "\n".join([
        "[Unit]", f"Description=Bulk Mailer: send what is due, every {RUN_EVERY_MIN} minutes", "",
        "[Timer]", f"OnCalendar=*:0/{RUN_EVERY_MIN}",
        "# A run missed while the computer was off or asleep happens when it is back.",
        "Persistent=true", "AccuracySec=30s", "",
        "[Install]", "WantedBy=timers.target", ""])


def _unit_files(home: Path) -> tuple[Path, Path, Path]:
    folder = unit_dir(home)
    return folder / SERVICE, folder / TIMER, folder / "timers.target.wants" / TIMER


def _systemctl(run: Run, *args: str) -> subprocess.CompletedProcess | None:
    exe = shutil.which("systemctl")
    return _call(run, [exe, "--user", *args]) if exe else None


def _systemd_status(home: Path, run: Run) -> TimerStatus:
    service, timer, _ = _unit_files(home)
    where = [str(p) for p in (service, timer) if p.exists()]
    by_hand = [f"systemctl --user disable --now {TIMER}",
               f"rm -f {shlex.quote(str(service))} {shlex.quote(str(timer))}", "systemctl --user daemon-reload"]
    if len(where) < 2:
        return TimerStatus("systemd", False, False, where, command(), "Not installed.", by_hand)
    argv = _read_exec_start(service)
    if not shutil.which("systemctl"):
        words = ("Written, but not started: systemctl is not on this computer (the timer needs systemd); run it "
                 f"from cron instead: {_cron_line()}")
        return TimerStatus("systemd", True, None, where, argv, words, by_hand)
    enabled, running = (_first_word(_systemctl(run, verb, TIMER)) for verb in ("is-enabled", "is-active"))
    if not running:
        active, words = None, f"Written, but not started: systemctl --user is not reachable here; run: {_ENABLE}"
    elif enabled in ("enabled", "enabled-runtime") and running == "active":
        active, words = True, f"Installed: {_WHAT} (systemd user timer {TIMER})."
    else:
        active = False
        words = (f"Written, but not started: systemctl --user reports the timer {enabled or 'unknown'} and "
                 f"{running}; run: {_ENABLE}")
    return TimerStatus("systemd", True, active, where, argv, _program_gone(argv) or words, by_hand)


def _first_word(done: subprocess.CompletedProcess | None) -> str:
    """is-enabled/is-active's answer ("enabled", "active", ...); "" when systemctl could not ask."""
    words = (done.stdout or "").split() if done is not None else []
    return words[0] if words else ""


def _read_exec_start(service: Path) -> list[str]:
    """The argv an installed service runs (shlex reads systemd's double-quoted words back)."""
    try:
        text = service.read_text(encoding="utf-8")
    except OSError:
        return command()
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            words = [w.replace("%%", "%") for w in shlex.split(line.removeprefix("ExecStart="))]
            return words[:1] + [w.replace("$$", "$") for w in words[1:]]
    return command()


def _systemd_install(home: Path, run: Run) -> TimerStatus:
    service, timer, _ = _unit_files(home)
    _write(service, render_service(command()).encode("utf-8"))
    _write(timer, render_timer().encode("utf-8"))
    if _systemctl(run, "daemon-reload") is not None:
        _systemctl(run, "enable", "--now", TIMER)
    return _systemd_status(home, run)


def _systemd_remove(home: Path, run: Run) -> TimerStatus:
    service, timer, wants = _unit_files(home)
    _systemctl(run, "disable", "--now", TIMER)
    if wants.is_symlink():  # disable removes it; when systemctl could not, we do
        _delete(wants)
    _delete(timer)
    _delete(service)
    _systemctl(run, "daemon-reload")
    return _systemd_status(home, run)


# -- macOS: launchd agent ---------------------------------------------------------------------


def plist_path(home: Path) -> Path:
    return home / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def render_plist(argv: list[str]) -> bytes:
    log = str(log_dir() / "run-due.log")
    agent: dict = {"Label": LABEL, "ProgramArguments": argv, "StartInterval": RUN_EVERY_MIN * 60,
                   "RunAtLoad": False, "Nice": 10, "StandardOutPath": log, "StandardErrorPath": log}
    home_env = os.environ.get(HOME_ENV, "").strip()
    if home_env:
        agent["EnvironmentVariables"] = {HOME_ENV: home_env}
    return plistlib.dumps(agent)


def _launchd_status(home: Path, run: Run) -> TimerStatus:
    plist = plist_path(home)
    by_hand = [f"launchctl unload -w {shlex.quote(str(plist))}", f"rm -f {shlex.quote(str(plist))}"]
    if not plist.exists():
        return TimerStatus("launchd", False, False, [], command(), "Not installed.", by_hand)
    try:
        argv = list(plistlib.loads(plist.read_bytes()).get("ProgramArguments") or command())
    except (OSError, plistlib.InvalidFileException, ValueError):
        argv = command()
    load = f"launchctl load -w {shlex.quote(str(plist))}"
    done = _call(run, ["launchctl", "list", LABEL])
    if done is None:
        active, words = None, f"Written, but not started: launchctl is not reachable here; run: {load}"
    elif done.returncode == 0:
        active, words = True, f"Installed: {_WHAT} (launchd agent {LABEL})."
    else:
        active, words = False, f"Written, but not started: launchd has not loaded {LABEL}; run: {load}"
    return TimerStatus("launchd", True, active, [str(plist)], argv, _program_gone(argv) or words, by_hand)


def _launchd_install(home: Path, run: Run) -> TimerStatus:
    plist = plist_path(home)
    if plist.exists():  # load refuses an agent that is already loaded
        _call(run, ["launchctl", "unload", str(plist)])
    _write(plist, render_plist(command()))
    _call(run, ["launchctl", "load", "-w", str(plist)])
    return _launchd_status(home, run)


def _launchd_remove(home: Path, run: Run) -> TimerStatus:
    plist = plist_path(home)
    if plist.exists():
        _call(run, ["launchctl", "unload", "-w", str(plist)])
    _delete(plist)
    return _launchd_status(home, run)


# -- Windows: Task Scheduler ------------------------------------------------------------------


def task_command(argv: list[str]) -> str:
    """schtasks /TR's command line: each argument quoted by Windows's rules where needed."""
    return subprocess.list2cmdline(argv)


def _schtasks_status(run: Run, note: str = "") -> TimerStatus:
    by_hand = [f'schtasks /Delete /F /TN "{TASK}"']
    done = _call(run, ["schtasks", "/Query", "/TN", TASK, "/FO", "LIST"])
    if done is None:
        words = note or "Not installed: Task Scheduler (schtasks) is not reachable here."
        return TimerStatus("schtasks", False, None, [], command(), words, by_hand)
    if done.returncode != 0:
        return TimerStatus("schtasks", False, False, [], command(), note or "Not installed.", by_hand)
    if "Disabled" in (done.stdout or ""):
        words = f'Written, but not started: the task "{TASK}" is disabled; run: schtasks /Change /ENABLE /TN "{TASK}"'
        return TimerStatus("schtasks", True, False, [TASK], command(), words, by_hand)
    words = f'Installed: {_WHAT} (Task Scheduler task "{TASK}").'
    return TimerStatus("schtasks", True, True, [TASK], command(), words, by_hand)


def _schtasks_install(run: Run) -> TimerStatus:
    create = ["schtasks", "/Create", "/F", "/SC", "MINUTE", "/MO", str(RUN_EVERY_MIN), "/TN", TASK,
              "/TR", task_command(command())]
    done = _call(run, create)
    note = ""
    if done is None or done.returncode != 0:
        said = ((done.stderr or done.stdout or "").strip().splitlines() or [""])[0] if done else ""
        note = (f"Not installed: schtasks could not create the task{f' ({said})' if said else ''}; run: "
                f"{subprocess.list2cmdline(create)}")
    return _schtasks_status(run, note)


def _schtasks_remove(run: Run) -> TimerStatus:
    _call(run, ["schtasks", "/Delete", "/F", "/TN", TASK])
    return _schtasks_status(run)
