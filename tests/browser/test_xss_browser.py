"""Stored XSS payloads in every field a person reads, opened in a real Chromium: nothing runs.

Title, result, metadata keys and values, activity text, tool arguments and the HITL question
carry script, event-handler and htmx-attribute payloads; the list, the detail page (with its
activity log and decision panel), the inbox and the admin show them as text.
"""

import pytest
from playwright.sync_api import expect

from tasks_app import services

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = "<script>window.pwned='script'</script>"
IMG = "<img src=x onerror=\"window.pwned='img'\">"
HTMX = '"><b id=hx hx-get="/logout/" hx-trigger="load" hx-on:htmx:load="window.pwned=\'hx\'">x</b>'
PAYLOAD = SCRIPT + IMG + HTMX


@pytest.fixture
def poisoned(acme, alice, django_user_model, system_actor):
    django_user_model.objects.create_superuser("root", password="taskdesk")
    task, _ = services.task_create(
        organization=acme,
        actor=system_actor,
        id="xss-1",
        title=PAYLOAD,
        agent="bot",
        input_text=PAYLOAD,
        metadata={PAYLOAD: PAYLOAD, "nested": {"v": PAYLOAD}},
    )
    services.task_update(task=task, actor=system_actor, status="executing", result=PAYLOAD)
    services.append_activity(
        task=task,
        actor=system_actor,
        entries=[
            {"kind": "message", "role": "assistant", "content": PAYLOAD},
            {"kind": "tool_call", "tool_name": PAYLOAD[:200], "tool_arguments": {PAYLOAD: [PAYLOAD]}},
            {"kind": "reasoning", "content": PAYLOAD},
        ],
    )
    services.hitl_request(task=task, actor=system_actor, question=PAYLOAD, details=PAYLOAD, payload={"x": PAYLOAD})
    return task


def _assert_inert(page, dialogs):
    assert page.evaluate("window.pwned") is None
    assert dialogs == []
    assert page.locator("script:not([src])").filter(has_text="pwned").count() == 0
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("b#hx").count() == 0


def _open(new_session, username):
    page = new_session(username)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    return page, dialogs


@pytest.mark.parametrize("path", ["/tasks/", "/tasks/?q=xss", "/tasks/acme/xss-1/", "/approvals/"])
def test_pages_show_payloads_as_text(new_session, poisoned, path):
    page, dialogs = _open(new_session, "alice")
    page.goto(path)
    expect(page.locator("body")).to_contain_text("window.pwned='img'")
    if path == "/tasks/acme/xss-1/":
        # The timeline: every kind of activity and event, as text.
        expect(page.locator("#timeline-entries")).to_contain_text("window.pwned='script'")
    page.wait_for_timeout(300)  # give any injected hx-trigger="load" a chance to fire
    _assert_inert(page, dialogs)
    assert "/login/" not in page.url  # the injected hx-get to /logout/ never ran


def test_admin_shows_payloads_as_text(new_session, poisoned):
    page, dialogs = _open(new_session, "root")
    # The changelist shortens titles (60 characters): the start of the payload shows, as text.
    for path, shown in (
        ("/admin/tasks_app/task/", PAYLOAD[:59] + "…"),
        (f"/admin/tasks_app/task/{poisoned.pk}/change/", "window.pwned='img'"),
    ):
        page.goto(path)
        expect(page.locator("body")).to_contain_text(shown)
        _assert_inert(page, dialogs)
