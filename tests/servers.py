"""Real server processes for the tests that check production behaviour: daphne, nginx, Redis.

Each runs as a subprocess on a free port and is stopped at teardown. Redis here is always a
private `redis-server --port N` started by the test (never the shared one on 6379), so a test
may kill, stop (SIGSTOP) or restart it.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings

BASE_DIR = Path(settings.BASE_DIR)
TEST_SECRET_KEY = "test-production-secret-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 60.0, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    output = log.read_text(errors="replace") if log and log.exists() else ""
    raise RuntimeError(f"nothing listens on port {port}:\n{output[-4000:]}")


def stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def wait_for_database_sessions_to_end(pid: int, timeout: float = 10.0) -> None:
    """Wait until a stopped server's PostgreSQL sessions have ended.

    PostgreSQL ends a client's backends a moment after the client process is gone. A test
    database dropped in that moment (a session-scoped server stopped just before) is refused
    with "being accessed by other users": the run ends with a warning and leaves the database
    behind. Each Taskdesk process names its sessions after its pid (settings, application_name).
    """
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        return
    import psycopg

    name = f"taskdesk {pid}"
    params = {"host": db["HOST"], "port": db["PORT"] or 5432, "user": db["USER"], "password": db["PASSWORD"]}
    with psycopg.connect(dbname="postgres", autocommit=True, **{k: v for k, v in params.items() if v}) as conn:
        deadline = time.monotonic() + timeout
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name]).fetchone()[0]:
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)


def production_env(**overrides: str) -> dict[str, str]:
    """The environment of a production-like server on the test database: DEBUG off."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DEBUG": "false",
        "SECRET_KEY": TEST_SECRET_KEY,
        "SECURE_COOKIES": "false",  # the tests speak plain HTTP to 127.0.0.1
        "TASKDESK_USE_TEST_DATABASE": "1",
        "TEST_DATABASE_NAME": str(settings.DATABASES["default"]["NAME"]),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return env


def collectstatic(static_root: Path, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=BASE_DIR,
        env={**env, "STATIC_ROOT": str(static_root)},
        check=True,
        timeout=120,
    )


class Daphne:
    """`daphne dashboard.asgi:application` on a free port."""

    def __init__(
        self, env: dict[str, str], log_dir: Path, name: str = "daphne", app: str = "dashboard.asgi:application"
    ) -> None:
        self.env = env
        self.app = app
        self.port = free_port()
        self.log = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str = "/login/") -> "Daphne":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), self.app],
                env=self.env,
                cwd=BASE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.proc, log=self.log)
        # The port opens before Django has loaded: wait for a real answer.
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + ready_path, timeout=2)  # noqa: S310
                return self
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    return self  # Django answered (a 404 of a bare urlconf counts)
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"daphne answered {exc.code}:\n{self.log.read_text(errors='replace')[-4000:]}")
                time.sleep(0.2)
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"daphne did not answer:\n{self.log.read_text(errors='replace')[-4000:]}")
                time.sleep(0.2)

    def stop(self) -> None:
        stop(self.proc)
        if self.proc is not None:
            wait_for_database_sessions_to_end(self.proc.pid)


class Nginx:
    """nginx from docs/nginx.conf, its listen port and upstreams rewritten to this test's."""

    def __init__(self, upstream_ports: list[int], work_dir: Path) -> None:
        self.port = free_port()
        self.dir = work_dir
        self.proc: subprocess.Popen | None = None
        conf = (BASE_DIR / "docs" / "nginx.conf").read_text()
        servers = "".join(f"        server 127.0.0.1:{port};\n" for port in upstream_ports)
        conf, n = re.subn(r"(?m)^( *server 127\.0\.0\.1:\d+;\n)+", servers, conf)
        assert n == 1, "docs/nginx.conf: upstream servers not found"
        conf, n = re.subn(r"listen 127\.0\.0\.1:\d+;", f"listen 127.0.0.1:{self.port};", conf)
        assert n == 1, "docs/nginx.conf: listen line not found"
        for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(conf)
        self.log = self.dir / "nginx.log"

    @staticmethod
    def binary() -> str | None:
        return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Nginx":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary(), "-p", str(self.dir), "-c", str(self.conf), "-g", "daemon off;"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.proc, log=self.log)
        return self

    def stop(self) -> None:
        stop(self.proc)


class Redis:
    """A private redis-server this test may kill, hang (SIGSTOP) and restart on the same port."""

    def __init__(self, work_dir: Path) -> None:
        self.port = free_port()
        self.dir = work_dir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "Redis":
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.kill()
