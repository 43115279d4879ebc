"""Each Taskdesk process names its PostgreSQL sessions after itself, and a stopped test server's
sessions are gone before the suite goes on (or drops the test database at the end of the run)."""

import os
import urllib.request

import pytest
from django.db import connection

from tasks_app.services import api_token_create
from tests.servers import Daphne, collectstatic, production_env

from .conftest import requires_postgres

pytestmark = [pytest.mark.django_db(transaction=True), requires_postgres]


def _sessions(name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name])
        return cursor.fetchone()[0]


def test_this_process_names_its_sessions():
    assert _sessions(f"taskdesk {os.getpid()}") >= 1


def test_a_stopped_servers_sessions_have_ended_when_stop_returns(tmp_path, acme):
    env = production_env(STATIC_ROOT=str(tmp_path / "static"))
    collectstatic(tmp_path / "static", env)
    server = Daphne(env, tmp_path, "sessions").start()
    try:
        # A request that reads the database: the server's pool opens, and keeps its connections.
        _, raw = api_token_create(organization=acme, name="sessions")
        request = urllib.request.Request(f"{server.url}/api/v1/tasks", headers={"Authorization": f"Bearer {raw}"})
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            assert answer.status == 200
        name = f"taskdesk {server.proc.pid}"
        assert _sessions(name) >= 1  # its pool keeps its connections open
    finally:
        server.stop()
    assert _sessions(name) == 0
