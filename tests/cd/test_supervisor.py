"""The process supervisor against a real supervisord: programs that outlive their caller, come
back after a crash, stop with their signal and grace, rotate their logs and keep secrets."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from shipyard.cd.router.client import RouterClient
from shipyard.cd.router.errors import RouterError
from shipyard.cd.supervisor import (
    SOCKET_PATH_LIMIT,
    InvalidProgram,
    ProgramFailed,
    ProgramNotFound,
    ProgramSpec,
    ProgramState,
    Supervisor,
    SupervisorError,
    SupervisorUnavailable,
)
from shipyard.core.process import pid_alive
from shipyard.core.state import StateDir

PATIENCE = 30.0  # seconds: only ever an upper bound for waiting on something to happen


def wait_for(condition: Callable[[], bool], timeout: float = PATIENCE) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def daemons(supervisor: Supervisor) -> list[psutil.Process]:
    """The live supervisord processes that run this state directory's config."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "supervisor.supervisord" in cmdline and str(supervisor.config_path) in cmdline:
            try:
                if process.status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
            except psutil.NoSuchProcess:
                continue
    return found


def for_root(root: Path) -> Supervisor:
    """The supervisor of a state directory at ``root``."""
    return Supervisor.for_state(StateDir(root=root, repo_root=None, git_common_dir=None))


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    """The supervisor of a fresh state directory; shut down, with everything it ran, afterwards."""
    sv = for_root(tmp_path / "state")
    yield sv
    programs = [s.pid for s in sv.list() if s.pid] if sv.is_running() else []
    sv.shutdown()
    for leftover in daemons(sv):  # only if shutdown failed: never leave a daemon behind
        leftover.kill()
    assert not daemons(sv)
    assert not [pid for pid in programs if pid_alive(pid)]


@pytest.fixture
def script(tmp_path: Path) -> Callable[[str, str], list[str]]:
    """Write a Python program to a file; return the argv that runs it."""

    def write(name: str, source: str) -> list[str]:
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return [sys.executable, "-u", str(path)]

    return write


SLEEPER = """
    import time
    print("up", flush=True)
    while True:
        time.sleep(1)
"""


def spec(name: str, argv: list[str], cwd: Path, **settings: Any) -> ProgramSpec:
    """A program spec."""
    return ProgramSpec(name=name, argv=argv, cwd=cwd, **settings)


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# The daemon


def test_ensure_running_starts_the_daemon_once(supervisor: Supervisor) -> None:
    assert not supervisor.is_running()
    supervisor.ensure_running()
    supervisor.ensure_running()
    assert supervisor.is_running()
    assert len(daemons(supervisor)) == 1
    config = supervisor.config_path.read_text()
    assert "files = programs/*.conf" in config
    assert str(supervisor.socket_path) in config
    assert len(os.fsencode(supervisor.socket_path)) <= SOCKET_PATH_LIMIT  # whatever tmp_path is
    assert stat.S_ISSOCK(supervisor.socket_path.stat().st_mode)
    assert supervisor.pidfile.read_text().strip() == str(daemons(supervisor)[0].pid)
    assert supervisor.list() == []


def test_concurrent_callers_share_one_daemon(supervisor: Supervisor) -> None:
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from shipyard.cd.supervisor import Supervisor
        from shipyard.core.state import StateDir
        state = StateDir(root=Path({str(supervisor.state.root)!r}), repo_root=None,
                         git_common_dir=None)
        Supervisor.for_state(state).ensure_running()
        """
    )
    callers = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE) for _ in range(4)
    ]
    errors = [caller.communicate(timeout=60)[1] for caller in callers]
    assert [caller.returncode for caller in callers] == [0, 0, 0, 0], errors
    assert len(daemons(supervisor)) == 1
    assert supervisor.is_running()


def test_a_short_state_directory_keeps_its_socket_inside() -> None:
    root = Path(tempfile.mkdtemp(prefix="sy-", dir="/tmp"))  # short whatever the basetemp is
    try:
        sv = for_root(root / "state")
        assert sv.socket_path == sv.home / "supervisor.sock"
    finally:
        root.rmdir()


def test_a_deep_state_directory_gets_a_short_socket(tmp_path: Path) -> None:
    sv = for_root(tmp_path / ("deep-" * 25) / "state")
    assert str(sv.socket_path).startswith("/tmp/shipyard-")
    assert len(os.fsencode(sv.socket_path)) < 100
    assert for_root(tmp_path / ("deep-" * 25) / "state").socket_path == sv.socket_path
    try:
        sv.ensure_running()
        assert sv.is_running()
        assert stat.S_IMODE(sv.socket_path.parent.stat().st_mode) == 0o700
    finally:
        sv.shutdown()
    assert not daemons(sv)
    assert not sv.socket_path.parent.exists()  # the folder in /tmp goes with the daemon


def test_a_daemon_that_cannot_start_says_why(supervisor: Supervisor) -> None:
    supervisor.logfile.mkdir(parents=True)  # supervisord cannot open its log
    with pytest.raises(SupervisorError, match="did not start") as raised:
        supervisor.ensure_running()
    assert "Is a directory" in str(raised.value)
    assert not daemons(supervisor)


def test_calls_without_a_daemon_say_it_is_not_running(supervisor: Supervisor) -> None:
    with pytest.raises(SupervisorUnavailable, match="not running"):
        supervisor.status("web")
    supervisor.remove("web")  # nothing to remove: no error
    supervisor.shutdown()  # nothing to shut down: no error


# ---------------------------------------------------------------------------------------------
# Programs


def test_a_program_outlives_the_process_that_added_it(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    port = free_port()
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from shipyard.cd.supervisor import ProgramSpec, Supervisor
        from shipyard.core.state import StateDir
        state = StateDir(root=Path({str(supervisor.state.root)!r}), repo_root=None,
                         git_common_dir=None)
        argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
        cwd = Path({str(tmp_path)!r})
        spec = ProgramSpec(name="web", argv=argv, cwd=cwd, start_secs=0)
        Supervisor.for_state(state).add(spec)
        """
    )
    (tmp_path / "index.html").write_text("served by a supervised program\n")
    caller = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert caller.returncode == 0, caller.stderr.decode()

    status = supervisor.status("web")
    assert status.state is ProgramState.RUNNING
    assert status.running
    assert status.pid is not None
    [daemon] = daemons(supervisor)
    assert psutil.Process(status.pid).ppid() == daemon.pid

    def served() -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as reply:
                return bytes(reply.read())
        except urllib.error.URLError:
            return None  # not listening yet

    assert wait_for(lambda: served() is not None)
    assert served() == b"served by a supervised program\n"
    assert status.stdout_log == supervisor.log_path("web")
    assert status.stderr_log == supervisor.log_path("web", "stderr")
    assert [s.name for s in supervisor.list()] == ["web"]


def test_a_killed_program_is_restarted(
    supervisor: Supervisor, tmp_path: Path, script: Callable[[str, str], list[str]]
) -> None:
    first = supervisor.add(spec("worker", script("sleeper", SLEEPER), tmp_path, start_secs=0))
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)

    def restarted() -> bool:
        now = supervisor.status("worker")
        return now.state is ProgramState.RUNNING and now.pid not in (None, first.pid)

    assert wait_for(restarted)
    assert not pid_alive(first.pid)


def test_restart_starts_a_new_process(
    supervisor: Supervisor, tmp_path: Path, script: Callable[[str, str], list[str]]
) -> None:
    first = supervisor.add(spec("worker", script("sleeper", SLEEPER), tmp_path, start_secs=0))
    again = supervisor.restart("worker")
    assert again.state is ProgramState.RUNNING
    assert again.pid != first.pid
    assert first.pid is not None and not pid_alive(first.pid)


def test_remove_stops_with_the_configured_signal_and_lets_it_finish(
    supervisor: Supervisor, tmp_path: Path, script: Callable[[str, str], list[str]]
) -> None:
    marker, ready = tmp_path / "marker", tmp_path / "ready"
    argv = script(
        "graceful",
        f"""
        import signal, sys, time
        from pathlib import Path
        marker = Path({str(marker)!r})
        ready = Path({str(ready)!r})
        def stop(number, frame):
            marker.write_text(signal.Signals(number).name + "\\n")
            time.sleep(0.5)  # finish in-flight work within the grace period
            with marker.open("a") as out:
                out.write("finished\\n")
            sys.exit(0)
        signal.signal(signal.SIGUSR1, stop)
        signal.signal(signal.SIGTERM, lambda *_: marker.write_text("SIGTERM\\n"))
        ready.touch()
        while True:
            time.sleep(1)
        """,
    )
    status = supervisor.add(
        spec("graceful", argv, tmp_path, stop_signal=signal.SIGUSR1, stop_grace_s=20, start_secs=0)
    )
    assert wait_for(ready.exists)  # its handlers are in place
    supervisor.remove("graceful")
    assert marker.read_text() == "SIGUSR1\nfinished\n"
    assert status.pid is not None and not pid_alive(status.pid)
    with pytest.raises(ProgramNotFound):
        supervisor.status("graceful")
    assert not (supervisor.programs_dir / "graceful.conf").exists()
    assert not (supervisor.programs_dir / "graceful.env").exists()


def test_a_program_that_ignores_its_stop_signal_is_killed_with_its_children(
    supervisor: Supervisor, tmp_path: Path, script: Callable[[str, str], list[str]]
) -> None:
    marker = tmp_path / "marker"
    argv = script(
        "stubborn",
        f"""
        import signal, subprocess, sys, time
        from pathlib import Path
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        Path({str(marker)!r}).write_text(str(child.pid))  # once it ignores SIGTERM
        while True:
            time.sleep(1)
        """,
    )
    status = supervisor.add(spec("stubborn", argv, tmp_path, stop_grace_s=1, start_secs=0))
    assert wait_for(lambda: marker.exists() and marker.read_text() != "")
    child = int(marker.read_text())
    assert pid_alive(child)
    supervisor.remove("stubborn")
    assert status.pid is not None and not pid_alive(status.pid)
    assert wait_for(lambda: not pid_alive(child))


def test_remove_without_waiting_is_tidied_up_later(
    supervisor: Supervisor, tmp_path: Path, script: Callable[[str, str], list[str]]
) -> None:
    supervisor.add(spec("old", script("sleeper", SLEEPER), tmp_path, start_secs=0))
    supervisor.remove("old", wait=False)
    assert not (supervisor.programs_dir / "old.conf").exists()
    assert wait_for(lambda: supervisor.status("old").state is ProgramState.STOPPED)
    supervisor.add(spec("new", script("sleeper", SLEEPER), tmp_path, start_secs=0))
    assert [s.name for s in supervisor.list()] == ["new"]


def test_add_replaces_a_program_of_the_same_name(
    supervisor: Supervisor, tmp_path: Path, script: Callable[[str, str], list[str]]
) -> None:
    seen = tmp_path / "seen"
    argv = script(
        "colour",
        f"""
        import os, time
        from pathlib import Path
        Path({str(seen)!r}).write_text(os.environ["COLOUR"])
        while True:
            time.sleep(1)
        """,
    )
    first = supervisor.add(spec("app", argv, tmp_path, env={"COLOUR": "blue"}, start_secs=0))
    assert wait_for(lambda: seen.exists() and seen.read_text() == "blue")
    second = supervisor.add(spec("app", argv, tmp_path, env={"COLOUR": "green"}, start_secs=0))
    assert second.pid != first.pid
    assert wait_for(lambda: seen.read_text() == "green")
    assert first.pid is not None and not pid_alive(first.pid)
    assert [s.name for s in supervisor.list()] == ["app"]


def test_logs_are_rotated(
    supervisor: Supervisor, tmp_path: Path, script: Callable[[str, str], list[str]]
) -> None:
    log = supervisor.log_path("chatty")
    # Each chunk is written only once the previous one is in the log, so that supervisord sees
    # them one by one (it would otherwise read them in one piece and rotate once).
    argv = script(
        "chatty",
        f"""
        import sys, time
        from pathlib import Path
        log = Path({str(log)!r})
        def logged(needle):
            for path in (log, log.with_name(log.name + ".1")):
                try:
                    if needle in path.read_text():
                        return True
                except FileNotFoundError:
                    pass
            return False
        for number in range(8):
            sys.stderr.write(f"warning {{number}}\\n")
            sys.stdout.write(f"chunk {{number:02d}} " + "x" * 3000 + "\\n")
            sys.stdout.flush()
            while not logged(f"chunk {{number:02d}} "):
                time.sleep(0.01)
        while True:
            time.sleep(1)
        """,
    )
    supervisor.add(spec("chatty", argv, tmp_path, log_max_bytes=4096, log_backups=2, start_secs=0))
    backups = [log.with_name(log.name + ".1"), log.with_name(log.name + ".2")]

    def everything_written() -> bool:
        try:
            return all(path.exists() for path in backups) and any(
                "chunk 07 " in path.read_text() for path in (log, backups[0])
            )
        except FileNotFoundError:  # between supervisord's rename and its new log
            return False

    assert wait_for(everything_written)
    assert not log.with_name(log.name + ".3").exists()
    assert not any("chunk 00 " in path.read_text() for path in (log, *backups))  # rotated out
    assert supervisor.log_path("chatty", "stderr").exists()


def test_secrets_reach_the_program_but_no_config_or_log(
    supervisor: Supervisor, tmp_path: Path, script: Callable[[str, str], list[str]]
) -> None:
    secret = "s3cr3t-Token-4f1c9a7e"
    seen = tmp_path / "seen.json"
    argv = script(
        "reader",
        f"""
        import json, os, time
        from pathlib import Path
        names = ("API_TOKEN", "GREETING", "PATH")
        part = Path({str(seen)!r} + ".part")  # whole or not there: never read half-written
        part.write_text(json.dumps({{n: os.environ.get(n) for n in names}}))
        part.replace({str(seen)!r})
        print("started without printing secrets", flush=True)
        while True:
            time.sleep(1)
        """,
    )
    greeting = "hello ; #world 100% \"quoted\" 'single', a=b"
    program = spec(
        "reader",
        argv,
        tmp_path,
        env={"GREETING": greeting},
        secret_env={"API_TOKEN": secret},
        start_secs=0,
    )
    assert secret not in repr(program)
    status = supervisor.add(program)
    assert wait_for(seen.exists)
    assert json.loads(seen.read_text())["API_TOKEN"] == secret
    assert json.loads(seen.read_text())["GREETING"] == greeting
    assert json.loads(seen.read_text())["PATH"]

    env_file = supervisor.programs_dir / "reader.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    for path in supervisor.state.root.rglob("*"):
        if path.is_file() and path != env_file:
            assert secret.encode() not in path.read_bytes(), path
    assert status.pid is not None
    assert secret not in " ".join(psutil.Process(status.pid).cmdline())


@pytest.mark.parametrize("line_break", [False, True], ids=["in-config", "in-env-file"])
def test_argv_reaches_the_program_exactly(
    supervisor: Supervisor,
    tmp_path: Path,
    script: Callable[[str, str], list[str]],
    line_break: bool,
) -> None:
    seen = tmp_path / "argv.json"
    argv = script(
        "echo_argv",
        f"""
        import json, sys, time
        from pathlib import Path
        part = Path({str(seen)!r} + ".part")  # whole or not there: never read half-written
        part.write_text(json.dumps(sys.argv[1:]))
        part.replace({str(seen)!r})
        while True:
            time.sleep(1)
        """,
    )
    words = ["a ;b", "#c", "50%", "%(here)s", "it's", '"dq"', "", "  spaced  ", "tab\there", "-x"]
    if line_break:
        words.append("two\n  lines")
    supervisor.add(spec("echo", [*argv, *words], tmp_path, start_secs=0))
    assert wait_for(seen.exists)
    assert json.loads(seen.read_text()) == words
    config = (supervisor.programs_dir / "echo.conf").read_text()
    assert ("a ;b" in config.replace("'", "").replace("\\", "")) is not line_break


def test_a_program_that_exits_at_start_fails_with_its_output(
    supervisor: Supervisor, tmp_path: Path, script: Callable[[str, str], list[str]]
) -> None:
    secret = "hunter2-very-secret"
    argv = script(
        "broken",
        """
        import os, sys
        sys.stderr.write("boom: cannot read config.toml\\n")
        sys.stderr.write("token was " + os.environ["TOKEN"] + "\\n")
        import base64
        sys.stderr.write("as base64 " + base64.b64encode(os.environ["TOKEN"].encode()).decode())
        sys.exit(3)
        """,
    )
    with pytest.raises(ProgramFailed) as raised:
        supervisor.add(spec("broken", argv, tmp_path, secret_env={"TOKEN": secret}))
    message = str(raised.value)
    assert "boom: cannot read config.toml" in message
    assert "exited within 1s" in message
    assert secret not in message
    assert base64.b64encode(secret.encode()).decode() not in message
    assert "as base64 ***" in message
    assert raised.value.status.name == "broken"
    # It is kept, stopped, so its logs can be read; remove forgets it.
    assert supervisor.status("broken").state is ProgramState.STOPPED
    supervisor.remove("broken")
    assert supervisor.list() == []


def test_a_program_without_autorestart_stays_exited_with_its_status(
    supervisor: Supervisor, tmp_path: Path, script: Callable[[str, str], list[str]]
) -> None:
    release = tmp_path / "release"
    argv = script(
        "once",
        f"""
        import sys, time
        from pathlib import Path
        while not Path({str(release)!r}).exists():
            time.sleep(0.02)
        sys.exit(4)
        """,
    )
    supervisor.add(spec("once", argv, tmp_path, autorestart=False, start_secs=0))
    release.touch()
    assert wait_for(lambda: supervisor.status("once").state is ProgramState.EXITED)
    status = supervisor.status("once")
    assert status.exit_status == 4
    assert status.pid is None
    assert status.uptime_s is None


def test_a_missing_command_fails_clearly(supervisor: Supervisor, tmp_path: Path) -> None:
    with pytest.raises(ProgramFailed, match="command not found"):
        supervisor.add(spec("ghost", ["no-such-command-for-shipyard"], tmp_path))


def test_shutdown_stops_everything_and_forgets_it(
    supervisor: Supervisor, tmp_path: Path, script: Callable[[str, str], list[str]]
) -> None:
    marker = tmp_path / "child"
    argv = script(
        "parent",
        f"""
        import subprocess, sys, time
        from pathlib import Path
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        Path({str(marker)!r}).write_text(str(child.pid))
        while True:
            time.sleep(1)
        """,
    )
    one = supervisor.add(spec("one", argv, tmp_path, start_secs=0))
    two = supervisor.add(spec("two", script("sleeper", SLEEPER), tmp_path, start_secs=0))
    assert wait_for(lambda: marker.exists() and marker.read_text() != "")
    child = int(marker.read_text())
    [daemon] = daemons(supervisor)

    supervisor.shutdown()
    assert not supervisor.is_running()
    assert not pid_alive(daemon.pid)
    pids = [pid for pid in (one.pid, two.pid, child) if pid is not None]
    assert len(pids) == 3
    assert wait_for(lambda: not any(pid_alive(pid) for pid in pids))
    assert list(supervisor.programs_dir.iterdir()) == []


def test_a_restarted_daemon_brings_programs_back(
    supervisor: Supervisor, tmp_path: Path, script: Callable[[str, str], list[str]]
) -> None:
    marker = tmp_path / "ready"
    quiet = script(
        "quiet",
        f"""
        import time
        from pathlib import Path
        Path({str(marker)!r}).touch()
        while True:
            time.sleep(1)
        """,
    )
    before = supervisor.add(spec("worker", quiet, tmp_path, start_secs=0))
    assert wait_for(marker.exists)
    [daemon] = daemons(supervisor)
    daemon.kill()  # supervisord itself crashes; its quiet program lives on as an orphan
    daemon.wait(timeout=PATIENCE)
    assert before.pid is not None and pid_alive(before.pid)
    assert not supervisor.is_running()

    supervisor.ensure_running()
    assert wait_for(lambda: supervisor.status("worker").state is ProgramState.RUNNING)
    assert supervisor.status("worker").pid != before.pid
    assert not pid_alive(before.pid)  # the orphan was stopped, not run twice


def test_concurrent_adds_from_several_processes_all_run(
    supervisor: Supervisor, tmp_path: Path, script: Callable[[str, str], list[str]]
) -> None:
    argv = script("sleeper", SLEEPER)
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from shipyard.cd.supervisor import ProgramSpec, Supervisor
        from shipyard.core.state import StateDir
        state = StateDir(root=Path({str(supervisor.state.root)!r}), repo_root=None,
                         git_common_dir=None)
        spec = ProgramSpec(
            name=sys.argv[1], argv={argv!r}, cwd=Path({str(tmp_path)!r}), start_secs=0
        )
        Supervisor.for_state(state).add(spec)
        """
    )
    names = ["web-1", "web-2", "web-3", "router.staging"]
    callers = [
        subprocess.Popen([sys.executable, "-c", code, name], stderr=subprocess.PIPE)
        for name in names
    ]
    errors = [caller.communicate(timeout=120)[1] for caller in callers]
    assert [caller.returncode for caller in callers] == [0] * len(names), errors
    statuses = supervisor.list()
    assert [s.name for s in statuses] == sorted(names)
    assert all(s.state is ProgramState.RUNNING for s in statuses)


def test_the_router_runs_under_the_supervisor(supervisor: Supervisor, tmp_path: Path) -> None:
    state_root = supervisor.state.root
    argv = [sys.executable, "-m", "shipyard.cd.router", "--env", "staging"]
    argv += ["--port", str(free_port()), "--state-dir", str(state_root), "--drain-timeout", "2"]
    router = supervisor.add(spec("router.staging", argv, tmp_path, stop_grace_s=5, start_secs=0))

    def answers() -> bool:
        try:
            return RouterClient.for_environment(state_root, "staging").health().pid == router.pid
        except RouterError:
            return False

    assert wait_for(answers)
    supervisor.remove("router.staging")
    assert router.pid is not None and not pid_alive(router.pid)
    assert "Traceback" not in supervisor.log_path("router.staging", "stderr").read_text()


@pytest.mark.parametrize("name", ["Web", "a:b", "", ".hidden", "x" * 65, "a/b", "a b"])
def test_invalid_program_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidProgram):
        ProgramSpec(name=name, argv=["true"], cwd=tmp_path)


def test_invalid_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidProgram, match="no command"):
        ProgramSpec(name="x", argv=[], cwd=tmp_path)
    with pytest.raises(InvalidProgram, match="NUL"):
        ProgramSpec(name="x", argv=["echo", "a\0b"], cwd=tmp_path)
    with pytest.raises(InvalidProgram, match="stop_grace_s"):
        ProgramSpec(name="x", argv=["true"], cwd=tmp_path, stop_grace_s=-1)
    with pytest.raises(InvalidProgram, match="not a valid environment variable"):
        ProgramSpec(name="x", argv=["true"], cwd=tmp_path, env={"A=B": "c"})
    with pytest.raises(InvalidProgram, match=r"\(secret\)") as raised:
        ProgramSpec(name="x", argv=["true"], cwd=tmp_path, secret_env={"K": "a\0b"})
    assert "a\0b" not in str(raised.value)
