"""Process helpers against real processes: detached starts and whole-tree kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from shipyard.core.errors import ProcessError
from shipyard.core.process import (
    TREE_MARKER_VARIABLE,
    kill_tree,
    new_tree_marker,
    pid_alive,
    spawn_detached,
    wait_for_exit,
)

PATIENCE = 30.0  # seconds; generous, only ever an upper bound for polling

# Writes its pid to argv[1], then sleeps; the variants leave the session or ignore SIGTERM.
SLEEPER = "import os, sys, time; {setup}; open(sys.argv[1], 'w').write(str(os.getpid())); "
SLEEPER += "time.sleep(1000)"


def sleeper(setup: str = "pass") -> str:
    """Python source for a process that announces its pid in a file and sleeps."""
    return SLEEPER.format(setup=setup)


def wait_for(condition: Callable[[], bool], timeout: float = PATIENCE) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def read_pid(path: Path) -> int:
    """Wait for a sleeper to write its pid file, and return the pid."""
    assert wait_for(lambda: path.exists() and path.read_text().strip() != ""), f"no {path}"
    return int(path.read_text())


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Popen objects the test started; killed and reaped afterwards whatever happened."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait()


def start(
    children: list[subprocess.Popen[bytes]], argv: list[str], env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as a child of the test, remembered for cleanup."""
    child = subprocess.Popen(argv, env={**os.environ, **(env or {})})
    children.append(child)
    return child


# -- kill_tree --------------------------------------------------------------------------------


def test_kill_tree_reaches_a_descendant_that_left_the_process_group(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    script = tmp_path / "tree.sh"
    script.write_text(
        textwrap.dedent(
            """\
            "$PY" -c "$SETSID_SLEEPER" "$DIR/setsid.pid" &
            "$PY" -c "$SLEEPER" "$DIR/plain.pid" &
            wait
            """
        )
    )
    env = {
        "PY": sys.executable,
        "DIR": str(tmp_path),
        "SETSID_SLEEPER": sleeper("os.setsid()"),
        "SLEEPER": sleeper(),
    }
    root = start(children, ["sh", str(script)], env)
    setsid_pid = read_pid(tmp_path / "setsid.pid")
    plain_pid = read_pid(tmp_path / "plain.pid")
    assert os.getsid(setsid_pid) == setsid_pid  # its own session: killpg would miss it

    result = kill_tree(root.pid, grace=PATIENCE)

    assert {root.pid, setsid_pid, plain_pid} <= set(result.signalled)
    assert result.survivors == ()
    assert not pid_alive(root.pid)
    assert not pid_alive(setsid_pid)
    assert not pid_alive(plain_pid)


def test_kill_tree_with_a_marker_also_reaches_orphans(
    tmp_path: Path, children: list[subprocess.Popen[bytes]], tree_marker: tuple[str, str]
) -> None:
    script = tmp_path / "tree.sh"
    script.write_text(
        textwrap.dedent(
            """\
            "$PY" -c "$SETSID_SLEEPER" "$DIR/setsid.pid" &
            # The middle shell exits at once: its child is orphaned and adopted by init.
            sh -c '"$PY" -c "$SLEEPER" "$DIR/orphan.pid" & exit 0'
            wait
            """
        )
    )
    env = {
        "PY": sys.executable,
        "DIR": str(tmp_path),
        "SETSID_SLEEPER": sleeper("os.setsid()"),
        "SLEEPER": sleeper(),
        tree_marker[0]: tree_marker[1],
    }
    root = start(children, ["sh", str(script)], env)
    setsid_pid = read_pid(tmp_path / "setsid.pid")
    orphan_pid = read_pid(tmp_path / "orphan.pid")
    descendants = {p.pid for p in psutil.Process(root.pid).children(recursive=True)}
    assert orphan_pid not in descendants  # only the marker can find it

    result = kill_tree(root.pid, grace=PATIENCE, marker=tree_marker)

    assert {root.pid, setsid_pid, orphan_pid} <= set(result.signalled)
    assert result.survivors == ()
    for pid in (root.pid, setsid_pid, orphan_pid):
        assert not pid_alive(pid)


def test_a_process_that_ignores_the_signal_is_killed_after_the_grace(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    stubborn = start(
        children,
        [
            sys.executable,
            "-c",
            sleeper("import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)"),
            str(tmp_path / "pid"),
        ],
    )
    read_pid(tmp_path / "pid")

    result = kill_tree(stubborn.pid, grace=0.2)

    assert result.signalled == (stubborn.pid,)
    assert result.forced == (stubborn.pid,)
    assert result.survivors == ()
    assert stubborn.wait(timeout=PATIENCE) == -signal.SIGKILL


def test_a_process_that_handles_the_signal_gets_to_clean_up(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    done = tmp_path / "cleaned-up"
    handler = (
        "import signal; "
        f"signal.signal(signal.SIGTERM, lambda *_: (open({str(done)!r}, 'w').write('bye'), "
        "sys.exit(0)))"
    )
    polite = start(children, [sys.executable, "-c", sleeper(handler), str(tmp_path / "pid")])
    read_pid(tmp_path / "pid")

    result = kill_tree(polite.pid, grace=PATIENCE)

    assert result.forced == ()
    assert polite.wait(timeout=PATIENCE) == 0
    assert done.read_text() == "bye"


def test_another_signal_can_be_sent(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    target = start(children, [sys.executable, "-c", sleeper(), str(tmp_path / "pid")])
    read_pid(tmp_path / "pid")

    kill_tree(target.pid, signal=signal.SIGINT, grace=PATIENCE)

    assert target.wait(timeout=PATIENCE) != 0


def test_kill_tree_never_stops_the_caller_even_when_it_carries_the_marker(
    tmp_path: Path, children: list[subprocess.Popen[bytes]], tree_marker: tuple[str, str]
) -> None:
    marked_env = {tree_marker[0]: tree_marker[1]}
    victim = start(children, [sys.executable, "-c", sleeper(), str(tmp_path / "pid")], marked_env)
    read_pid(tmp_path / "pid")
    killer = textwrap.dedent(
        f"""\
        from shipyard.core.process import kill_tree
        result = kill_tree({victim.pid}, grace=30, marker={tree_marker!r})
        print(sorted(result.signalled))
        """
    )

    finished = subprocess.run(
        [sys.executable, "-c", killer],
        env={**os.environ, **marked_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == f"[{victim.pid}]"
    assert victim.wait(timeout=PATIENCE) == -signal.SIGTERM


def test_kill_tree_refuses_the_caller_and_its_ancestors() -> None:
    for pid in (os.getpid(), os.getppid(), 1):
        with pytest.raises(ProcessError, match="refusing"):
            kill_tree(pid)
    with pytest.raises(ProcessError, match="not a process id"):
        kill_tree(0)


def test_kill_tree_of_a_process_that_is_gone_does_nothing() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()

    assert kill_tree(gone.pid, grace=0.1).signalled == ()


# -- pid_alive and wait_for_exit --------------------------------------------------------------


def test_pid_alive_and_wait_for_exit(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0)
    assert not pid_alive(-1)

    sleeping = start(children, [sys.executable, "-c", sleeper(), str(tmp_path / "pid")])
    read_pid(tmp_path / "pid")
    assert pid_alive(sleeping.pid)
    assert not wait_for_exit(sleeping.pid, timeout=0.1)

    sleeping.terminate()
    assert wait_for_exit(sleeping.pid, timeout=PATIENCE)


def test_a_zombie_counts_as_exited() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        assert wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE)
        assert not pid_alive(child.pid)
    finally:
        child.wait()


def test_new_tree_marker_is_unique() -> None:
    first, second = new_tree_marker(), new_tree_marker()

    assert first[0] == second[0] == TREE_MARKER_VARIABLE
    assert first[1] != second[1]


# -- spawn_detached ---------------------------------------------------------------------------

REPORTER = textwrap.dedent(
    """\
    import os, sys, time
    print("stdin:", repr(sys.stdin.read()))
    print("cwd:", os.getcwd())
    print("var:", os.environ.get("PROBE"))
    print("fds:", sorted(int(fd) for fd in os.listdir("/proc/self/fd")))
    print("error line", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(1000)
    """
)


def test_a_detached_process_outlives_its_parent_and_logs(
    tmp_path: Path, tree_marker: tuple[str, str]
) -> None:
    log = tmp_path / "logs" / "service.log"
    log.parent.mkdir()
    log.write_text("earlier line\n")
    workdir = tmp_path / "work"
    workdir.mkdir()
    parent = textwrap.dedent(
        f"""\
        import os, sys
        from pathlib import Path
        from shipyard.core.process import spawn_detached
        inherited = os.dup2(os.open(os.devnull, os.O_RDONLY), 50, inheritable=True)
        pid = spawn_detached(
            [sys.executable, "-c", {REPORTER!r}],
            cwd=Path({str(workdir)!r}),
            env={{**os.environ, "PROBE": "seen"}},
            log_path=Path({str(log)!r}),
            marker={tree_marker!r},
        )
        print(pid, os.getpid(), inherited)
        """
    )

    finished = subprocess.run(
        [sys.executable, "-c", parent], capture_output=True, text=True, timeout=120, check=True
    )
    pid, parent_pid, inherited_fd = (int(word) for word in finished.stdout.split())

    assert wait_for(lambda: "fds:" in log.read_text())
    assert pid_alive(pid)  # the parent has exited, the detached process goes on
    assert psutil.Process(pid).ppid() != parent_pid
    assert os.getsid(pid) == pid
    lines = log.read_text().splitlines()
    assert lines[0] == "earlier line"
    assert "stdin: ''" in lines
    assert f"cwd: {workdir}" in lines
    assert "var: seen" in lines
    fds = next(line for line in lines if line.startswith("fds:"))
    assert inherited_fd == 50
    assert "50" not in fds.removeprefix("fds:").strip("[] ").split(", ")
    assert wait_for(lambda: "error line" in log.read_text())

    result = kill_tree(pid, grace=PATIENCE, marker=tree_marker)
    assert pid in result.signalled
    assert not pid_alive(pid)


def test_a_detached_process_is_never_the_callers_child(
    tmp_path: Path, tree_marker: tuple[str, str]
) -> None:
    log = tmp_path / "quick.log"

    pid = spawn_detached(
        [sys.executable, "-c", "print('done')"], cwd=tmp_path, log_path=log, marker=tree_marker
    )

    assert wait_for(lambda: log.exists() and log.read_text() == "done\n")
    assert wait_for_exit(pid, timeout=PATIENCE)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # not ours to reap: no zombie can be left with us


def test_a_detached_process_carries_the_marker(
    tmp_path: Path, tree_marker: tuple[str, str]
) -> None:
    log = tmp_path / "marked.log"
    code = f"import os; print(os.environ[{tree_marker[0]!r}], flush=True)"

    spawn_detached([sys.executable, "-c", code], cwd=tmp_path, log_path=log, marker=tree_marker)

    assert wait_for(lambda: log.exists() and log.read_text() == f"{tree_marker[1]}\n")


def test_spawning_a_missing_command_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProcessError, match="no-such-command-here") as caught:
        spawn_detached(["no-such-command-here"], cwd=tmp_path, log_path=tmp_path / "x.log")

    assert caught.value.hint is not None


def test_spawning_in_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing"

    with pytest.raises(ProcessError, match=str(missing)):
        spawn_detached([sys.executable, "-V"], cwd=missing, log_path=tmp_path / "x.log")


def test_spawning_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ProcessError, match="without a command"):
        spawn_detached([], cwd=tmp_path, log_path=tmp_path / "x.log")
