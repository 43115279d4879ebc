"""Shared fixtures: organizations acme and globex; alice (operator, acme), bob (viewer, acme),
charlie (operator, globex); and markers for tests that need PostgreSQL or Redis."""

import os

import pytest
from django.conf import settings
from django.db import connection

from tasks_app.models import Agent, Membership, Organization, Role
from tasks_app.services import Actor
from tests import ci_skips

ON_POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
ON_REDIS = bool(settings.REDIS_URL)

requires_postgres = pytest.mark.skipif(
    not ON_POSTGRES, reason="needs PostgreSQL: set DATABASE_URL=postgres://... (CI does)"
)
requires_redis = pytest.mark.skipif(not ON_REDIS, reason="needs Redis: set REDIS_URL=redis://... (CI does)")


def pytest_configure(config):
    ci_skips.pytest_configure(config)  # under CI any skipped test fails the run


def pytest_report_header(config):
    return [
        f"taskdesk database: {connection.vendor} ({settings.DATABASES['default']['NAME']})",
        f"taskdesk channel layer: {settings.CHANNEL_LAYERS['default']['BACKEND']}",
    ]


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """Each test gets its own channel layer: a layer holds asyncio locks bound to the event loop
    of the test that first used it, and pytest-asyncio gives every test a new loop."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def acme(db):
    return Organization.objects.create(slug="acme", name="Acme")


@pytest.fixture
def globex(db):
    return Organization.objects.create(slug="globex", name="Globex")


def _user(django_user_model, username, org, role):
    user = django_user_model.objects.create_user(username=username, password="taskdesk")
    if org is not None:
        Membership.objects.create(user=user, organization=org, role=role)
    return user


@pytest.fixture
def alice(django_user_model, acme):
    return _user(django_user_model, "alice", acme, Role.OPERATOR)


@pytest.fixture
def bob(django_user_model, acme):
    return _user(django_user_model, "bob", acme, Role.VIEWER)


@pytest.fixture
def charlie(django_user_model, globex):
    return _user(django_user_model, "charlie", globex, Role.OPERATOR)


@pytest.fixture
def agent(acme):
    return Agent.objects.create(organization=acme, name="support-bot")


@pytest.fixture
def alice_actor(alice):
    return Actor.for_user(alice)


@pytest.fixture
def system_actor():
    return Actor.system("test")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("CI") and (not ON_POSTGRES or not ON_REDIS):
        raise pytest.UsageError("CI must run on PostgreSQL and Redis: set DATABASE_URL and REDIS_URL")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def daphne_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real daphne process serving the test database; yields its base URL.

    Tests that use it need committed data (`transactional_db`) or create it over HTTP.
    Changes made in this process reach its sockets only through Redis (the in-memory layer
    does not cross processes), so live tests also need `requires_redis`.
    """
    import subprocess
    import sys
    import time
    import urllib.request

    port = _free_port()
    log_path = tmp_path_factory.mktemp("daphne") / "daphne.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "TASKDESK_USE_TEST_DATABASE": "1",
        "TEST_DATABASE_NAME": str(settings.DATABASES["default"]["NAME"]),
        "PYTHONUNBUFFERED": "1",
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "dashboard.asgi:application"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=settings.BASE_DIR,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/login/", timeout=1)  # noqa: S310
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"daphne did not start:\n{log_path.read_text()}") from None
            time.sleep(0.2)
    try:
        yield url
    finally:
        from tests.servers import stop, wait_for_database_sessions_to_end

        stop(proc)
        wait_for_database_sessions_to_end(proc.pid)
