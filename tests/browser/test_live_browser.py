"""Live dashboard in a real Chromium: two alice sessions, changes from another process and from
alice herself, a dropped socket catching up, and a stale edit meeting the conflict panel."""

import pytest
from playwright.sync_api import expect

from tasks_app import services
from tests.browser.conftest import change_from_another_process, wait_live

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def task(acme, alice, system_actor):
    task, _ = services.task_create(organization=acme, actor=system_actor, title="Refund order 1042", agent="bot")
    return task


def row(page, task):
    return page.locator(f'[id="task-{task.pk}"]')


def test_changes_from_another_process_and_from_alice_reach_both_sessions(new_session, task):
    listing = new_session("alice")
    listing.goto("/tasks/")
    detail = new_session("alice")
    detail.goto(f"/tasks/{task.pk}/")
    wait_live(listing)
    wait_live(detail)
    expect(listing.locator("#live-indicator")).to_have_attribute("data-state", "open")

    change_from_another_process(task.pk, title="Refund approved by agent", status="executing")
    expect(row(listing, task)).to_contain_text("Refund approved by agent")
    expect(detail.locator("#task-header")).to_contain_text("Refund approved by agent")

    # alice edits inline on the detail page; her list session sees it.
    detail.fill("#d-priority", "77")
    detail.locator("#panel-priority button[type=submit]").click()
    expect(detail.locator("#panel-priority")).to_contain_text("77")
    expect(row(listing, task).locator(".col-priority")).to_have_text("77")
    assert listing.evaluate("taskdeskLive.lastEventId()") == detail.evaluate("taskdeskLive.lastEventId()")


def test_a_dropped_socket_shows_the_change_after_it_reconnects(new_session, task):
    listing = new_session("alice")
    listing.goto("/tasks/")
    wait_live(listing)
    listing.context.set_offline(True)
    listing.evaluate("taskdeskLive.drop()")
    wait_live(listing, "closed")

    change_from_another_process(task.pk, title="Changed while the socket was down")
    assert listing.evaluate("document.documentElement.dataset.ws") != "open"  # still down: no live path
    expect(row(listing, task)).not_to_contain_text("Changed while the socket was down")

    listing.context.set_offline(False)
    wait_live(listing)
    expect(row(listing, task)).to_contain_text("Changed while the socket was down")


def test_a_form_being_typed_into_is_kept_and_a_stale_save_shows_the_conflict_panel(new_session, task):
    detail = new_session("alice")
    detail.goto(f"/tasks/{task.pk}/")
    wait_live(detail)
    detail.locator("#panel-result summary").click()
    detail.fill("#d-result", "my careful answer")

    change_from_another_process(task.pk, result="the agent's answer", status="executing")
    # The rest of the page updates; the result form keeps the typed text and says why.
    expect(detail.locator("#task-header")).to_contain_text("Executing", ignore_case=True)
    expect(detail.locator("#panel-result .stale-note")).to_be_visible()
    expect(detail.locator("#d-result")).to_have_value("my careful answer")

    detail.locator("#panel-result button[type=submit]").click()
    expect(detail.locator("#conflict-panel")).to_be_visible()
    expect(detail.locator("#conflict-panel")).to_contain_text("agent-process")
    expect(detail.locator("#d-result")).to_have_value("my careful answer")


def test_a_pushed_xss_title_is_shown_as_text_and_runs_nothing(new_session, task):
    payload = '<img src=x onerror="window.pwned=1;alert(1)"><span hx-get="/logout/" hx-trigger="load">x</span>'
    listing = new_session("alice")
    dialogs = []
    listing.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    listing.goto("/tasks/")
    detail = listing.context.new_page()
    detail.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    detail.goto(f"/tasks/{task.pk}/")
    wait_live(listing)
    wait_live(detail)

    change_from_another_process(task.pk, title=payload)
    expect(row(listing, task)).to_contain_text('<img src=x onerror="window.pwned=1')
    expect(detail.locator("#task-header")).to_contain_text('<img src=x onerror="window.pwned=1')
    assert listing.evaluate("window.pwned") is None and detail.evaluate("window.pwned") is None
    assert dialogs == []
    assert listing.locator("#task-rows img").count() == 0
    wait_live(listing)  # the hx-get logout never fired: still signed in and live
