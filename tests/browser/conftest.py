"""Real-browser fixtures: Debian's Chromium driven by Playwright (sync API) against daphne.

The server is tests/conftest.py's `daphne_server` (a subprocess on the test database); changes
made by another process reach its sockets through Redis, so these tests need REDIS_URL.
Run them in their own pytest invocation (not with the pytest-asyncio files): the sync
Playwright API keeps an event loop in the main thread.
"""

import json
import os
import subprocess
import sys
import time

import pytest
from django.conf import settings

from tests.conftest import ON_REDIS

# Playwright's loop in the main thread makes Django refuse ORM calls from fixtures otherwise.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 10_000


def _skip_reason() -> str | None:
    if not ON_REDIS:
        return "browser tests need Redis (REDIS_URL): the server process hears other processes' changes through it"
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"browser tests need Chromium at {CHROMIUM} (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests need the playwright package (requirements-dev.txt)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.browser)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def new_session(browser, daphne_server):
    """Opens a fresh browser context (its own cookies) signed in as `username`; returns its page."""
    contexts = []

    def open_session(username: str, password: str = "taskdesk", **context_options):
        context = browser.new_context(
            base_url=daphne_server, viewport={"width": 1280, "height": 900}, **context_options
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.goto("/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_url("**/tasks/**")
        return page

    yield open_session
    for context in contexts:
        context.close()


def wait_for(predicate, timeout: float = 12.0) -> bool:
    """Polls a database condition the page's action leads to (the server writes it, not the browser)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def console_errors():
    """Collects console errors of the pages handed to `watch`; the test fails on any."""
    errors: list[str] = []

    def watch(page):
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    yield watch
    assert errors == [], errors


def wait_live(page, state: str = "open") -> None:
    """Waits for live.js to report the socket state (a signal, not a sleep)."""
    page.wait_for_function("s => document.documentElement.dataset.ws === s", arg=state, timeout=TIMEOUT_MS)


def run_manage(*args: str, **env: str) -> str:
    """`manage.py ARGS` in a process of its own on the test database, as cron, a worker or an agent
    runs one; fails the test on a non-zero exit; returns what it printed. A process drains its
    bells at exit (live.bell), so its changes reach the server's sockets through Redis, not only
    through the server's idle check."""
    env = {
        **os.environ,
        "TASKDESK_USE_TEST_DATABASE": "1",
        "TEST_DATABASE_NAME": str(settings.DATABASES["default"]["NAME"]),
        **env,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def change_from_another_process(task, **fields) -> None:
    """services.task_update in a separate `manage.py shell` process, like an agent or worker; the
    task named as an agent names it (its public id within its organization)."""
    code = (
        "import json, os; from tasks_app import services; "
        "services.task_update(task=os.environ['TD_TASK'], organization_id=int(os.environ['TD_ORG']), "
        "actor=services.Actor.system('agent-process'), **json.loads(os.environ['TD_FIELDS']))"
    )
    run_manage(
        "shell", "-c", code, TD_TASK=task.public_id, TD_ORG=str(task.organization_id), TD_FIELDS=json.dumps(fields)
    )
