"""The timer that runs `bulk-mailer run-due` every 5 minutes: real unit files in a temporary
home, checked by the real systemd-analyze and systemctl where they are present; launchctl and
schtasks (which cannot run here) through a recorder of the argv."""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from backend import timer
from backend.errors import MailerError
from backend.paths import HOME_ENV

ROOT = Path(__file__).resolve().parent.parent
UNREACHABLE = f"Written, but not started: systemctl --user is not reachable here; run: systemctl --user enable --now {timer.TIMER}"
INSTALLED = f"Installed: runs scheduled campaigns every 5 minutes (systemd user timer {timer.TIMER})."
needs_systemctl = pytest.mark.skipif(shutil.which("systemctl") is None, reason="systemctl is not on this machine")
needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not on this machine (Debian: apt-get install systemd)")


def _script(path: Path, body: str = "exit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(0o755)
    return path


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A user's home and config in tmp_path, a `bulk-mailer` in a venv whose path has a space and
    a %, and no way to reach a real user manager (the tests never touch this machine's timers)."""
    config, runtime = tmp_path / "config", tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={runtime}/bus")
    program = _script(tmp_path / "my venv 100%" / "bin" / "bulk-mailer")
    monkeypatch.setattr(sys, "executable", str(program.parent / "python"))
    return {"home": tmp_path / "home", "units": config / "systemd" / "user", "program": program,
            "runtime": runtime}


def linux(fn, env, **kw):
    return fn(system="Linux", home=env["home"], **kw)


# -- the command -------------------------------------------------------------------------------


def test_command_is_the_console_script_beside_python(env):
    assert timer.command() == [str(env["program"]), "run-due"]


def test_the_real_command_starts_bulk_mailer():
    argv = timer.command()
    assert argv[-1] == "run-due"
    done = subprocess.run([*argv[:-1], "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "usage: bulk-mailer" in done.stdout


def test_command_frozen_is_the_program_itself(env, monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert timer.command() == [sys.executable, "run-due"]


def test_command_on_path(tmp_path, monkeypatch):
    found = _script(tmp_path / "elsewhere" / "bulk-mailer")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python-without-script" / "python"))
    monkeypatch.setenv("PATH", str(found.parent))
    assert timer.command() == [str(found), "run-due"]


def test_command_falls_back_to_bridge_py_which_takes_the_subcommand(tmp_path, monkeypatch):
    python = sys.executable
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    argv = timer.command()
    assert argv == [str(tmp_path / "bin" / "python"), str(ROOT / "bridge.py"), "run-due"]
    # bridge.py run as a script hands its argv to the command line, as `bulk-mailer` does.
    done = subprocess.run([python, argv[1], "--help"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={**os.environ, "PATH": os.defpath})
    assert done.returncode == 0, done.stderr
    assert "usage: bulk-mailer" in done.stdout


# -- Linux: the systemd user timer ---------------------------------------------------------------


def test_status_before_install(env):
    st = linux(timer.status, env)
    assert (st.kind, st.installed, st.active, st.where, st.words) == ("systemd", False, False, [], "Not installed.")
    assert st.command == [str(env["program"]), "run-due"]


def test_install_writes_both_units(env):
    st = linux(timer.install, env)
    service, unit = env["units"] / timer.SERVICE, env["units"] / timer.TIMER
    assert st.installed and st.kind == "systemd"
    assert st.where == [str(service), str(unit)]
    for path in (service, unit):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    text = service.read_text(encoding="utf-8")
    home = os.environ[HOME_ENV]
    assert "\nType=oneshot\n" in text and "\nNice=10\n" in text and "\nDescription=Bulk Mailer" in text
    # The path with a space stays one word; % is doubled so systemd does not read a specifier.
    assert f'\nExecStart="{env["program"]}"'.replace("%", "%%") + ' "run-due"\n' in text
    assert f'\nEnvironment="{HOME_ENV}={home}"\n' in text
    assert st.command == [str(env["program"]), "run-due"]  # read back from the unit
    assert unit.read_text(encoding="utf-8").splitlines() == [
        "[Unit]", "Description=Bulk Mailer: send what is due, every 5 minutes", "",
        "[Timer]", "OnCalendar=*:0/5",
        "# A run missed while the computer was off or asleep happens when it is back.",
        "Persistent=true", "AccuracySec=30s", "", "[Install]", "WantedBy=timers.target"]


def test_no_environment_line_without_the_home_variable(env, monkeypatch):
    monkeypatch.delenv(HOME_ENV)
    linux(timer.install, env)
    assert "Environment=" not in (env["units"] / timer.SERVICE).read_text(encoding="utf-8")


def test_arguments_are_escaped_for_systemd(env, tmp_path, monkeypatch):
    # The bridge.py fallback: a program and an argument with $, %, quotes and a backslash.
    monkeypatch.setattr(sys, "executable", str(tmp_path / "py 1" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(timer, "ROOT", tmp_path / 'src $HOME 5% "q" \\b')
    st = linux(timer.install, env)
    text = (env["units"] / timer.SERVICE).read_text(encoding="utf-8")
    assert f'ExecStart="{tmp_path}/py 1/python" "{tmp_path}/src $$HOME 5%% \\"q\\" \\\\b/bridge.py" "run-due"' in text
    assert st.command == timer.command()


@pytest.mark.parametrize("bad", ['quo"te', "back\\slash", "new\nline"])
def test_a_program_path_systemd_cannot_run_is_refused_with_the_fix(env, tmp_path, monkeypatch, bad):
    program = tmp_path / bad / "bin" / "bulk-mailer"
    program.parent.mkdir(parents=True)
    _script(program)
    monkeypatch.setattr(sys, "executable", str(program.parent / "python"))
    with pytest.raises(timer.TimerFileError) as caught:
        linux(timer.install, env)
    assert caught.value.category == "file_error" and bad in caught.value.path
    assert "Move Bulk Mailer" in caught.value.fix_steps()[0]
    assert not (env["units"] / timer.SERVICE).exists()


def _verify(*units: Path, runtime: Path) -> subprocess.CompletedProcess:
    # --user checks them as the user manager would load them; it needs a runtime folder.
    return subprocess.run(["systemd-analyze", "--user", "verify", *map(str, units)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})


@needs_analyze
def test_the_units_pass_systemd_analyze_verify(env):
    linux(timer.install, env)
    done = _verify(env["units"] / timer.SERVICE, env["units"] / timer.TIMER, runtime=env["runtime"])
    assert done.returncode == 0, done.stderr
    assert timer.NAME not in done.stdout + done.stderr  # no warning about our units either


@needs_analyze
def test_systemd_analyze_verify_catches_broken_units(env, tmp_path):
    """The check above can fail: each of these breaks what install writes, and verify says so."""
    linux(timer.install, env)
    service = (env["units"] / timer.SERVICE).read_text(encoding="utf-8")
    unit = (env["units"] / timer.TIMER).read_text(encoding="utf-8")
    program = str(env["program"]).replace("%", "%%")
    broken = {
        "unquoted path with a space": (service.replace(f'"{program}"', program), unit),
        "program missing": (service.replace("bin/bulk-mailer", "bin/nope"), unit),
        "bad calendar": (service, unit.replace("*:0/5", "*:0/5 sometimes")),
        "misspelt key": (service.replace("Type=oneshot", "Typ=oneshot"), unit),
    }
    for why, (svc_text, timer_text) in broken.items():
        folder = tmp_path / why.replace(" ", "-")
        folder.mkdir()
        (folder / timer.SERVICE).write_text(svc_text, encoding="utf-8")
        (folder / timer.TIMER).write_text(timer_text, encoding="utf-8")
        done = _verify(folder / timer.SERVICE, folder / timer.TIMER, runtime=env["runtime"])
        assert done.returncode != 0 or timer.NAME in done.stderr, why


@needs_systemctl
def test_without_a_user_manager_the_status_says_what_to_run(env):
    st = linux(timer.install, env)
    assert st.installed and st.active is None
    assert st.words == UNREACHABLE
    assert linux(timer.status, env) == st


def test_without_systemctl_the_status_offers_cron(env, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    st = linux(timer.install, env)
    assert st.installed and st.active is None
    assert "systemctl is not on this computer" in st.words
    assert f"*/5 * * * * '{env['program']}' run-due" in st.words


def test_remove_deletes_the_units_and_install_twice_is_fine(env):
    first = linux(timer.install, env)
    texts = [Path(p).read_text(encoding="utf-8") for p in first.where]
    second = linux(timer.install, env)
    assert second == first and [Path(p).read_text(encoding="utf-8") for p in second.where] == texts
    assert sorted(p.name for p in env["units"].iterdir() if not p.is_dir()) == [timer.SERVICE, timer.TIMER]
    gone = linux(timer.remove, env)
    assert (gone.installed, gone.active, gone.where, gone.words) == (False, False, [], "Not installed.")
    assert not (env["units"] / timer.SERVICE).exists() and not (env["units"] / timer.TIMER).exists()
    assert not (env["units"] / "timers.target.wants" / timer.TIMER).is_symlink()
    assert linux(timer.remove, env).words == "Not installed."  # nothing left to remove is fine


def test_a_moved_program_is_told(env):
    linux(timer.install, env)
    env["program"].unlink()  # the release folder moved after the timer was installed
    st = linux(timer.status, env)
    assert st.installed
    assert st.words == f"Installed, but the program it runs is gone ({env['program']}): install the timer again."


def test_remove_by_hand_lines(env):
    st = linux(timer.status, env)
    service, unit = env["units"] / timer.SERVICE, env["units"] / timer.TIMER
    assert st.remove_by_hand == [f"systemctl --user disable --now {timer.TIMER}",
                                 f"rm -f {shlex.quote(str(service))} {shlex.quote(str(unit))}", "systemctl --user daemon-reload"]
    assert st.as_dict()["remove_by_hand"] == st.remove_by_hand


def test_a_folder_that_cannot_be_written_raises_with_the_path(env, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the config folder should be", encoding="utf-8")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocker))
    with pytest.raises(timer.TimerFileError) as caught:
        linux(timer.install, env)
    assert isinstance(caught.value, MailerError) and caught.value.category == "file_error"
    assert caught.value.path == str(blocker / "systemd" / "user" / timer.SERVICE)
    assert str(blocker / "systemd" / "user") in caught.value.fix_steps()[0]


def test_default_unit_folder_is_under_home(env, monkeypatch):
    monkeypatch.delenv("XDG_CONFIG_HOME")
    linux(timer.install, env)
    assert (env["home"] / ".config" / "systemd" / "user" / timer.TIMER).exists()


@pytest.fixture
def fake_systemctl(env, tmp_path, monkeypatch):
    """A reachable user manager: a `systemctl` first on PATH that records its argv and answers
    is-enabled/is-active from FAKE_ENABLED/FAKE_ACTIVE (as a logged-in desktop's would)."""
    log = tmp_path / "systemctl.log"
    _script(tmp_path / "fakebin" / "systemctl", f'echo "$*" >> "{log}"\n'
            'case "$2" in is-enabled) echo "$FAKE_ENABLED";; is-active) echo "$FAKE_ACTIVE";; esac\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'fakebin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ENABLED", "enabled")
    monkeypatch.setenv("FAKE_ACTIVE", "active")
    return log


def test_with_a_user_manager_install_enables_and_starts_it(env, fake_systemctl, monkeypatch):
    st = linux(timer.install, env)
    assert (st.installed, st.active, st.words) == (True, True, INSTALLED)
    assert fake_systemctl.read_text().splitlines() == [
        "--user daemon-reload", f"--user enable --now {timer.TIMER}",
        f"--user is-enabled {timer.TIMER}", f"--user is-active {timer.TIMER}"]
    monkeypatch.setenv("FAKE_ACTIVE", "inactive")
    st = linux(timer.status, env)
    assert st.active is False
    assert st.words == ("Written, but not started: systemctl --user reports the timer enabled and inactive; "
                        f"run: systemctl --user enable --now {timer.TIMER}")
    fake_systemctl.write_text("")
    linux(timer.remove, env)
    assert fake_systemctl.read_text().splitlines()[:2] == [f"--user disable --now {timer.TIMER}",
                                                            "--user daemon-reload"]


# -- macOS and Windows: the argv, recorded ----------------------------------------------------------


class Recorder:
    """Stands in for subprocess.run where launchctl/schtasks cannot run: records the argv,
    answers with the return code and output given for a verb."""

    def __init__(self, answers: dict[str, tuple[int, str]] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.answers = answers or {}

    def __call__(self, argv, **kw):
        assert kw["timeout"] == timer.TIMEOUT_S and kw["check"] is False
        self.calls.append(list(argv))
        code, out = self.answers.get(argv[1], (0, ""))
        return subprocess.CompletedProcess(argv, code, out, "")


def test_launchd_agent(env, tmp_path):
    rec = Recorder()
    st = timer.install(system="Darwin", home=tmp_path, run=rec)
    plist = tmp_path / "Library" / "LaunchAgents" / "com.bulkmailer.run-due.plist"
    agent = plistlib.loads(plist.read_bytes())
    log = str(Path(os.environ[HOME_ENV]) / "logs" / "run-due.log")
    assert agent == {"Label": "com.bulkmailer.run-due", "ProgramArguments": [str(env["program"]), "run-due"],
                     "StartInterval": 300, "RunAtLoad": False, "Nice": 10,
                     "EnvironmentVariables": {HOME_ENV: os.environ[HOME_ENV]},
                     "StandardOutPath": log, "StandardErrorPath": log}
    assert stat.S_IMODE(plist.stat().st_mode) == 0o644
    assert rec.calls == [["launchctl", "load", "-w", str(plist)], ["launchctl", "list", "com.bulkmailer.run-due"]]
    assert (st.kind, st.installed, st.active, st.where) == ("launchd", True, True, [str(plist)])
    assert st.words == "Installed: runs scheduled campaigns every 5 minutes (launchd agent com.bulkmailer.run-due)."
    rec.calls.clear()
    timer.install(system="Darwin", home=tmp_path, run=rec)  # again: unloaded first, as load refuses a loaded one
    assert rec.calls[0] == ["launchctl", "unload", str(plist)]
    rec.calls.clear()
    gone = timer.remove(system="Darwin", home=tmp_path, run=rec)
    assert rec.calls == [["launchctl", "unload", "-w", str(plist)]]
    assert not plist.exists() and (gone.installed, gone.words) == (False, "Not installed.")
    assert gone.remove_by_hand == [f"launchctl unload -w {shlex.quote(str(plist))}",
                                   f"rm -f {shlex.quote(str(plist))}"]


def test_launchd_not_loaded_says_what_to_run(env, tmp_path):
    st = timer.install(system="Darwin", home=tmp_path, run=Recorder({"list": (113, "")}))
    plist = tmp_path / "Library" / "LaunchAgents" / "com.bulkmailer.run-due.plist"
    assert st.installed and st.active is False
    assert st.words.endswith(f"run: launchctl load -w {shlex.quote(str(plist))}")


def test_task_scheduler(env):
    rec = Recorder({"/Query": (0, "TaskName: \\Bulk Mailer run-due\nStatus: Ready\n")})
    st = timer.install(system="Windows", run=rec)
    tr = f'"{env["program"]}" run-due'
    assert rec.calls == [
        ["schtasks", "/Create", "/F", "/SC", "MINUTE", "/MO", "5", "/TN", "Bulk Mailer run-due", "/TR", tr],
        ["schtasks", "/Query", "/TN", "Bulk Mailer run-due", "/FO", "LIST"]]
    assert (st.kind, st.installed, st.active, st.where) == ("schtasks", True, True, ["Bulk Mailer run-due"])
    assert st.words == 'Installed: runs scheduled campaigns every 5 minutes (Task Scheduler task "Bulk Mailer run-due").'
    rec = Recorder({"/Query": (1, "")})
    gone = timer.remove(system="Windows", run=rec)
    assert rec.calls[0] == ["schtasks", "/Delete", "/F", "/TN", "Bulk Mailer run-due"]
    assert (gone.installed, gone.words) == (False, "Not installed.")
    assert gone.remove_by_hand == ['schtasks /Delete /F /TN "Bulk Mailer run-due"']


def test_task_scheduler_refusal_is_told(env):
    rec = Recorder({"/Create": (1, "ERROR: Access is denied."), "/Query": (1, "")})
    st = timer.install(system="Windows", run=rec)
    assert not st.installed
    assert st.words.startswith("Not installed: schtasks could not create the task (ERROR: Access is denied.); run: schtasks /Create")


def test_other_systems_have_no_timer(env, tmp_path):
    st = timer.status(system="FreeBSD", home=tmp_path)
    assert (st.kind, st.installed, st.active) == ("none", False, None)
    assert "cron" in st.words
    with pytest.raises(MailerError) as caught:
        timer.install(system="FreeBSD", home=tmp_path)
    assert caught.value.category == "action_unavailable"
