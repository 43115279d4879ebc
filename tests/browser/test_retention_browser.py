"""Retention in a real Chromium: `manage.py clean_tasks`, run as cron runs it (another process), turns
an open task page into the cleaned task's page live: "Removed by retention" where the input,
result, metadata, parameters and the decided question were, the history without the content, no
edit forms; the same after a reload (docs/screenshot-retention.png)."""

import os
import re
import subprocess
import sys

import pytest
from django.conf import settings
from playwright.sync_api import expect

from tasks_app import services
from tests.browser.conftest import wait_live
from tests.browser.test_desk_browser import screenshot

pytestmark = pytest.mark.django_db(transaction=True)

CONTENT = ("Ada Lovelace", "card_4242", "Refunded Ada", "May I refund Ada")


@pytest.fixture
def finished_task(acme, alice):
    """A completed refund with content everywhere: input, metadata, params, activity, a decided question, a result."""
    actor = services.Actor.system("agent")
    task, _ = services.task_create(
        organization=acme,
        actor=actor,
        id="t-1",
        title="Refund order 1234",
        agent="billing-bot",
        input_text="Ada Lovelace asks for a refund of order #1234",
        metadata={"customer": "Ada Lovelace", "ticket": 1234},
        params={"temperature": 0.2},
        status="executing",
        prompt_tokens=1200,
        completion_tokens=300,
    )
    services.append_activity(
        task=task,
        actor=actor,
        entries=[
            {"kind": "message", "role": "user", "content": "Please refund Ada Lovelace"},
            {
                "kind": "tool_call",
                "tool_name": "issue_refund",
                "tool_call_id": "c1",
                "tool_arguments": {"card": "card_4242"},
            },
            {"kind": "tool_result", "tool_name": "issue_refund", "tool_call_id": "c1", "tool_output": {"ok": True}},
        ],
    )
    hitl = services.hitl_request(task=task, actor=actor, question="May I refund Ada 40 EUR?", payload={"eur": 40})
    services.hitl_decide(hitl=hitl, actor=actor, approve=True, comment="Yes")
    services.task_update(task=task, actor=actor, status="completed", result="Refunded Ada 40 EUR")
    return task


def clean_from_another_process(*args: str) -> str:
    """`manage.py clean_tasks` in its own process on the test database, as cron runs it."""
    env = {
        **os.environ,
        "TASKDESK_USE_TEST_DATABASE": "1",
        "TEST_DATABASE_NAME": str(settings.DATABASES["default"]["NAME"]),
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "clean_tasks", *args, "--no-progress"],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_cleaned(page) -> None:
    """What a cleaned task's page shows: notes where the content was, no content, nothing to edit."""
    for panel in ("input", "result", "metadata", "params"):
        expect(page.locator(f"#panel-{panel} .cleaned-note")).to_have_text(
            re.compile(r"^Removed by retention (just now|\d+ min ago)\.$")
        )
    expect(page.locator("#panel-hitl .hitl-asked")).to_have_text("Removed by retention.")  # the decided question
    expect(page.locator(".readonly-note")).to_contain_text("retention removed this task's content")
    expect(page.locator(".chip-cleaned")).to_contain_text("cleaned")
    expect(page.locator("#panel-timeline")).to_contain_text("Removed the content (retention)")
    expect(page.locator("#panel-timeline")).to_contain_text("content removed by retention")
    # No edit form anywhere: no versioned form, no field to type in, no status to move to.
    expect(page.locator("main form")).to_have_count(0)
    expect(page.locator("main textarea, main input:not([type=hidden]), main select")).to_have_count(0)
    text = page.locator("main").inner_text()
    for word in CONTENT:
        assert word not in text, word


def test_an_open_page_turns_into_the_cleaned_task_and_stays_so(new_session, finished_task):
    page = new_session("alice")
    page.goto("/tasks/acme/t-1/")
    wait_live(page)
    # Before: the content is there and an operator may edit it.
    expect(page.locator("#panel-input")).to_contain_text("Ada Lovelace asks for a refund")
    expect(page.locator("#panel-result")).to_contain_text("Refunded Ada 40 EUR")
    assert page.locator("main form").count() > 0
    assert page.locator(".cleaned-note").count() == 0

    output = clean_from_another_process("--older-than", "0m")
    assert "Cleaned 1 task" in output

    # The cleaning's event arrives on the open page: the cleaned panels are swapped in.
    assert_cleaned(page)
    expect(page.locator("#panel-result .cleaned-note")).to_have_count(1)

    # A fresh load reads the same.
    page.reload()
    wait_live(page)
    assert_cleaned(page)
    screenshot(page, "screenshot-retention.png")
