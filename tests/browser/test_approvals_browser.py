"""Real browser (Debian Chromium + daphne): live inbox, keyboard triage, a 10,000-entry activity log.

Run in its own pytest invocation (the sync Playwright API keeps an event loop in this thread),
on PostgreSQL + Redis: the daphne process publishes decisions through the Redis channel layer.
"""

import os
import time

import pytest

# The sync Playwright API runs an event loop in the main thread; the ORM setup below is plain sync code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from django.test import Client  # noqa: E402

from tasks_app import services  # noqa: E402
from tasks_app.models import ActivityEntry, HitlRequest, Task  # noqa: E402
from tests.browser.conftest import wait_for  # noqa: E402
from tests.conftest import requires_postgres, requires_redis  # noqa: E402

pytestmark = [pytest.mark.browser, requires_postgres, requires_redis]

# `browser` is the session fixture of tests/browser/conftest.py (one Chromium for the folder).


def _page_for(browser, base_url, user):
    """A browser page signed in as `user` (session cookie made by Django's test client)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base_url}])
    page = context.new_page()
    page.set_default_timeout(10_000)
    return page


def _paused(org, task_id, question="Refund the customer?"):
    actor = services.Actor.system("agent")
    services.task_create(organization=org, actor=actor, id=task_id, title=f"Task {task_id}")
    services.task_update(task=task_id, organization_id=org.pk, actor=actor, status="executing")
    return services.hitl_request(
        task=task_id, organization_id=org.pk, actor=actor, question=question, payload={"amount": 20}
    )


def test_approving_in_one_session_drops_the_card_live_in_another(transactional_db, daphne_server, browser, acme, alice):
    first = _paused(acme, "live-1")
    second = _paused(acme, "live-2", question="Send the email?")
    one = _page_for(browser, daphne_server, alice)
    two = _page_for(browser, daphne_server, alice)
    for page in (one, two):
        page.goto("/approvals/")
        page.wait_for_selector("html[data-ws=open]")
        assert page.locator("[data-hitl-card]").count() == 2
    one.locator(f"#hitl-{first.pk} [data-approve]").click()
    one.wait_for_selector(f"#hitl-{first.pk}.hitl-card--decided", timeout=12_000)
    # The other session never clicked anything: the pushed fragment replaces the card.
    two.wait_for_selector(f"#hitl-{first.pk}.hitl-card--decided")
    assert "alice" in two.locator(f"#hitl-{first.pk}").inner_text()
    assert two.locator("[data-hitl-card]").count() == 1
    assert two.locator(f"#hitl-{second.pk}[data-hitl-card]").count() == 1
    assert two.locator("#hitl-badge").get_attribute("data-count") == "1"
    assert Task.objects.get(organization=acme, public_id="live-1").status == "executing"


def test_keyboard_approve_and_reject(transactional_db, daphne_server, browser, acme, alice):
    first = _paused(acme, "kb-1")
    second = _paused(acme, "kb-2", question="Delete the account?")
    third = _paused(acme, "kb-3", question="Escalate?")
    page = _page_for(browser, daphne_server, alice)
    page.goto("/approvals/")
    page.wait_for_selector("[data-hitl-card]")
    page.wait_for_function("window.taskdeskTriage === true && !!window.taskdeskDecisions")

    page.keyboard.press("?")
    page.wait_for_selector("#triage-help[open]")
    page.keyboard.press("Escape")
    page.wait_for_function("!document.getElementById('triage-help').open")

    page.keyboard.press("j")
    assert page.evaluate("document.activeElement.id") == f"hitl-{first.pk}"
    page.keyboard.press("a")  # counts down, then is sent
    page.wait_for_selector(f"#hitl-{first.pk}.hitl-card--decided", timeout=12_000)
    assert wait_for(lambda: HitlRequest.objects.get(pk=first.pk).decision == "approved")

    # The decided card left the selection empty; j selects the card now in its place.
    page.keyboard.press("j")
    page.wait_for_function(f"document.activeElement.id === 'hitl-{second.pk}'")
    page.keyboard.press("r")
    assert page.evaluate("document.activeElement.name") == "reason"
    page.keyboard.press("Enter")  # no reason yet: refused in place at once, nothing decided
    page.wait_for_selector(f"#hitl-{second.pk} .field-error")
    assert HitlRequest.objects.get(pk=second.pk).is_pending
    page.locator(f"#hitl-{second.pk} [data-reason-input]").fill("not allowed")
    page.locator(f"#hitl-{second.pk} [data-reason-input]").press("Enter")
    page.wait_for_selector(f"#hitl-{second.pk}.hitl-card--decided", timeout=12_000)
    assert wait_for(lambda: HitlRequest.objects.get(pk=second.pk).decision == "rejected")
    assert Task.objects.get(organization=acme, public_id="kb-2").status_reason == "not allowed"

    # e opens the payload editor; typing j/k/a there is text, not a shortcut.
    page.locator(f"#hitl-{third.pk} .hitl-question").click()
    page.keyboard.press("e")
    assert page.evaluate("document.activeElement.name") == "amended_payload"
    page.keyboard.press("End")
    page.keyboard.type("jka")
    assert HitlRequest.objects.get(pk=third.pk).is_pending
    page.locator(f"#hitl-{third.pk} [data-amend-input]").fill('{"amount": 5}')
    page.keyboard.press("Control+Enter")
    page.wait_for_selector(f"#hitl-{third.pk}.hitl-card--decided", timeout=12_000)
    assert wait_for(lambda: HitlRequest.objects.get(pk=third.pk).amended_payload == {"amount": 5})


def test_a_10000_entry_log_opens_and_scrolls(transactional_db, daphne_server, browser, acme, alice):
    actor = services.Actor.system("agent")
    big, _ = services.task_create(organization=acme, actor=actor, id="big-log")
    small, _ = services.task_create(organization=acme, actor=actor, id="small-log")
    for task, n in ((big, 10_000), (small, 10)):
        ActivityEntry.objects.bulk_create(
            (
                ActivityEntry(
                    task=task, organization_id=acme.pk, kind="message", role="assistant", content=f"entry {i}"
                )
                for i in range(n)
            ),
            batch_size=2000,
        )
    page = _page_for(browser, daphne_server, alice)

    def open_log(task_id):
        started = time.monotonic()
        page.goto(f"/tasks/acme/{task_id}/activity/")
        page.wait_for_selector("[data-timeline-item]")
        return time.monotonic() - started

    open_log("small-log")  # warm-up
    small_time = open_log("small-log")
    big_time = open_log("big-log")
    assert page.locator("[data-timeline-item]").count() == 50
    assert big_time < max(1.0, small_time * 5), (big_time, small_time)
    for expected in (100, 150):
        page.locator("#activity-more").scroll_into_view_if_needed()
        page.wait_for_function(f"document.querySelectorAll('[data-timeline-item]').length >= {expected}")
    # Newest first: the 150th entry from the top is the 150th from the end of the log.
    assert page.locator("[data-timeline-item]").nth(149).inner_text().strip().endswith("entry 9850")
