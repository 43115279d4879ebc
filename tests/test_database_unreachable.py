"""DATABASE_URL pointing at a closed port: start-up and migrate stop at once with one clear line;
a server already running answers 503 within about 2 s (JSON on the API faces)."""

import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from django.conf import settings


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def env_without_database() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{closed_port()}/taskdesk",
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DEBUG": "false",
        "SECRET_KEY": "x" * 40,
        "TASKDESK_USE_TEST_DATABASE": "",
    }


def run(args, timeout=20):
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603
        args, env=env_without_database(), cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=timeout
    )
    return done, time.monotonic() - started


def test_migrate_fails_fast_with_one_clear_line():
    done, elapsed = run([sys.executable, "manage.py", "migrate"])
    assert done.returncode != 0
    assert elapsed < 10
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "Cannot reach the database" in line]
    assert len(lines) == 1 and "DATABASE_URL" in lines[0] and "Connection refused" in lines[0]


def test_daphne_refuses_to_start_with_one_clear_line():
    port = closed_port()
    done, elapsed = run([sys.executable, "-m", "daphne", "-p", str(port), "dashboard.asgi:application"])
    assert done.returncode != 0
    assert elapsed < 10
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("Taskdesk cannot start: Cannot reach the database")


REQUESTS = textwrap.dedent(
    """
    import json, time, django
    django.setup()
    from django.test import Client
    client = Client(raise_request_exception=False)
    client.cookies["sessionid"] = "a-session-the-database-would-know"
    out = []
    for method, path, kwargs in [
        ("get", "/api/v1/tasks", {"HTTP_AUTHORIZATION": "Bearer td_x"}),
        ("get", "/xpander/agent-execution/t1/status", {"HTTP_X_API_KEY": "td_x"}),
        ("post", "/rpc", {"data": '{"jsonrpc": "2.0", "id": 1, "method": "task.list"}',
                          "content_type": "application/json", "HTTP_AUTHORIZATION": "Bearer td_x"}),
        ("get", "/tasks/", {}),
    ]:
        started = time.monotonic()
        response = getattr(client, method)(path, **kwargs)
        out.append([path, response.status_code, response["Content-Type"], response.get("Retry-After"),
                    time.monotonic() - started, response.content.decode()[:300]])
    print(json.dumps(out))
    """
)


@pytest.mark.timeout(60)
def test_requests_answer_503_within_seconds():
    import json

    done, _ = run([sys.executable, "-c", REQUESTS], timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for path, status, content_type, retry_after, elapsed, body in results:
        assert status == 503, (path, status, body)
        assert retry_after, path
        assert elapsed < 4, (path, elapsed)
        if path == "/tasks/":
            assert content_type.startswith("text/html") and "unreachable" in body
        else:
            assert content_type == "application/json" and "unreachable" in body, (path, body)
