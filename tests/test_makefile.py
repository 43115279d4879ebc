"""`make run` as a newcomer types it: where it listens, the address the simulator drives (dry runs), and a
real start on a fresh SQLite file that Ctrl-C stops cleanly."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make (apt-get install -y make)")


def dry_run(**variables) -> str:
    args = ["make", "-n", "run", "VENV=/venv", *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_it_listens_on_port_and_host_given_and_the_simulator_follows():
    out = dry_run(PORT="9000")
    assert "daphne -v 0 -b 127.0.0.1 -p 9000 " in out
    assert "simulate_agents --url http://127.0.0.1:9000 " in out
    assert "listens on http://127.0.0.1:9000/" in out
    assert "/venv/bin/pip install" in out and "requirements-dev.txt" not in out  # the runtime only


def test_on_every_interface_it_is_reached_through_127_0_0_1():
    """0.0.0.0 is where daphne binds, not a host a browser or the simulator can name (DisallowedHost)."""
    out = dry_run(HOST="0.0.0.0", PORT="9000")
    assert "daphne -v 0 -b 0.0.0.0 -p 9000 " in out
    assert "simulate_agents --url http://127.0.0.1:9000 " in out
    assert "listens on http://127.0.0.1:9000/" in out and "ALLOWED_HOSTS" in out


# A terminal's foreground job starts with SIGINT and SIGQUIT at their defaults. A test run launched
# in the background (`cmd &` from a script, nohup, some CI runners) passes them on ignored, and a
# signal ignored on entry can be neither trapped by the recipe's shell (POSIX) nor handled by daphne
# (Twisted handles SIGINT only if Python's default handler is in place): Ctrl-C would then reach
# only the simulator, and make run would hang. Reset them, then exec make (same pid).
AS_FROM_A_TERMINAL = [
    sys.executable,
    "-c",
    "import os, signal, sys; [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGQUIT)];"
    " os.execvp(sys.argv[1], sys.argv[1:])",
]


def start_make_run(database: Path, port: int, log: Path) -> subprocess.Popen:
    """`make run` with no services configured (SQLite, in-memory layer), in its own process group as a
    terminal runs a foreground job; returns once the sign-in page answers."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "TASKDESK_USE_TEST_DATABASE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    }
    env.update(DATABASE_URL=f"sqlite:///{database}", PORT=str(port), PYTHONUNBUFFERED="1")
    with open(log, "ab") as out:
        make = subprocess.Popen(
            AS_FROM_A_TERMINAL + ["make", "run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 240  # migrate and seed a fresh file first: ~70 s on a busy 2-core machine
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2).status == 200:  # noqa: S310
                return make
        except OSError:
            pass
        if make.poll() is not None or time.monotonic() > deadline:
            if make.poll() is None:
                os.killpg(make.pid, signal.SIGKILL)
            pytest.fail(f"make run did not serve the sign-in page:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


def wait_for_the_simulator(log: Path) -> None:
    """The simulator starts once daphne answers (make run): wait until it is at work."""
    deadline = time.monotonic() + 90
    while "Simulating agents" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "Simulating agents" in log.read_text(), log.read_text()[-3000:]


def group_is_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def stop_as(make: subprocess.Popen, sig: signal.Signals, log: Path) -> int:
    """Sends `sig` to the whole foreground group (Ctrl-C does so with SIGINT); returns make's status."""
    os.killpg(make.pid, sig)
    try:
        return make.wait(timeout=60)
    except subprocess.TimeoutExpired:
        left = what_is_left(make.pid)
        os.killpg(make.pid, signal.SIGKILL)
        make.wait()
        pytest.fail(f"make run did not stop on {sig.name}; still running:\n{left}\n{log.read_text()[-3000:]}")


def what_is_left(pgid: int) -> str:
    """The group's processes, and where each Python one is stuck (py-spy, a dev requirement)."""
    ps = subprocess.run(["ps", "-o", "pid=,cmd=", "-g", str(pgid)], capture_output=True, text=True).stdout
    report = [ps]
    spy = Path(sys.executable).with_name("py-spy")
    for line in ps.splitlines():
        pid, command = line.split(None, 1)
        if "python" in command and spy.exists():
            dump = subprocess.run([spy, "dump", "-p", pid], capture_output=True, text=True, check=False)
            report.append(dump.stdout + dump.stderr)
    return "\n".join(report)


@pytest.mark.timeout(420)
def test_make_run_serves_and_stops_cleanly_on_ctrl_c_leaving_no_process(tmp_path):
    port, log = free_port(), tmp_path / "make-run.log"
    make = start_make_run(tmp_path / "taskdesk.sqlite3", port, log)
    try:
        wait_for_the_simulator(log)  # Ctrl-C once it is at work, so it interrupts something
        status = stop_as(make, signal.SIGINT, log)
        out = log.read_text()
        # GNU make waits for the recipe, which stops daphne and the simulator and exits 0, then ends
        # itself by the SIGINT it received, as any make target does: the shell's 130, printing nothing.
        assert status == -signal.SIGINT, out
        assert f"Taskdesk listens on http://127.0.0.1:{port}/" in out
        assert "Simulator stopped" in out and out.rstrip().endswith("Taskdesk stopped.")
        assert not any(word in out for word in ("***", "Error", "Traceback", "Terminated", "Interrupt")), out
        assert group_is_gone(make.pid)  # daphne and the simulator ran in make's process group

        # A second start on the same file (migrations and demo data already there), stopped the way a
        # supervisor or `kill -- -PGID` does: the same quiet stop (the "make: *** Error 143").
        log.write_text("")
        make = start_make_run(tmp_path / "taskdesk.sqlite3", port, log)
        wait_for_the_simulator(log)
        status = stop_as(make, signal.SIGTERM, log)
        out = log.read_text()
        assert status == -signal.SIGTERM, out
        assert "0 new tasks" in out and out.rstrip().endswith("Taskdesk stopped.")
        assert not any(word in out for word in ("***", "Error", "Traceback", "Terminated", "Interrupt")), out
        assert group_is_gone(make.pid)

        # A third, stopped as soon as the sign-in page answers: the simulator is still starting (no
        # signal handler of its own yet), and make passes its TERM on to the recipe's shell while
        # that cleans up. The same quiet stop.
        log.write_text("")
        make = start_make_run(tmp_path / "taskdesk.sqlite3", port, log)
        status = stop_as(make, signal.SIGTERM, log)
        out = log.read_text()
        assert status == -signal.SIGTERM, out
        assert out.rstrip().endswith("Taskdesk stopped.")
        assert not any(word in out for word in ("***", "Error", "Traceback", "Terminated", "Interrupt")), out
        assert group_is_gone(make.pid)
    finally:
        if not group_is_gone(make.pid):
            os.killpg(make.pid, signal.SIGKILL)
    with pytest.raises(OSError):  # the port is free again
        urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2)  # noqa: S310


def wait_for_server(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "dashboard" / "wait_for_server.py"), *args])


def test_wait_for_server_returns_once_the_server_answers_or_its_process_is_gone():
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # answers 501
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/login/"
        assert wait_for_server(url, str(os.getpid())).wait(timeout=30) == 0  # any HTTP status will do
    finally:
        server.shutdown()
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert wait_for_server(f"http://127.0.0.1:{free_port()}/", str(gone.pid)).wait(timeout=30) == 1


def test_wait_for_server_stopped_exits_with_the_signals_status_never_by_the_signal():
    """The recipe's shell prints "Terminated" for a foreground command a TERM ended. Python puts the
    default handlers back as it exits, so TERMs that keep coming while it exits would end it by the
    signal (-15) if its handler exited the usual way."""
    waiting = wait_for_server(f"http://127.0.0.1:{free_port()}/", str(os.getpid()), "60")
    time.sleep(1.0)  # its handlers are in place
    while waiting.poll() is None:  # a group stop: TERMs keep coming until it is gone
        with contextlib.suppress(ProcessLookupError):
            waiting.send_signal(signal.SIGTERM)
        time.sleep(0.0002)
    assert waiting.returncode == 143
