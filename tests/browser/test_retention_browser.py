"""Retention in a real Chromium: `manage.py clean_tasks`, run as cron runs it (another process), turns
an open task page into the cleaned task's page live: "Removed by retention" where the input,
result, metadata, parameters and the decided question were, the history without the content, no
edit forms; the same after a reload (docs/screenshot-retention.png)."""

import re

import pytest
from playwright.sync_api import expect

from tasks_app import services
from tests.browser.conftest import run_manage, wait_live
from tests.browser.test_desk_browser import screenshot
from tests.test_retention import finished_task as retention_task

pytestmark = pytest.mark.django_db(transaction=True)

CONTENT = ("Ada Lovelace", "card_4242", "Refunded Ada", "May I refund Ada")


@pytest.fixture
def finished_task(acme, alice):
    """A completed refund with content everywhere (tests/test_retention.py's): input, metadata, params,
    activity, a decided question, a result."""
    return retention_task(acme, services.Actor.system("agent"), "1234")


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
    page.goto("/tasks/acme/1234/")
    wait_live(page)
    # Before: the content is there and an operator may edit it.
    expect(page.locator("#panel-input")).to_contain_text("Ada Lovelace asks for a refund")
    expect(page.locator("#panel-result")).to_contain_text("Refunded Ada 40 EUR")
    assert page.locator("main form").count() > 0
    assert page.locator(".cleaned-note").count() == 0

    output = run_manage("clean_tasks", "--older-than", "0m", "--no-progress")
    assert "Cleaned 1 task" in output

    # The cleaning's event arrives on the open page: the cleaned panels are swapped in.
    assert_cleaned(page)
    expect(page.locator("#panel-result .cleaned-note")).to_have_count(1)

    # A fresh load reads the same.
    page.reload()
    wait_live(page)
    assert_cleaned(page)
    screenshot(page, "screenshot-retention.png")
