"""Live dashboard in a real Chromium: two alice sessions, changes from another process and from
alice herself, a dropped socket catching up, a stale edit meeting the conflict panel, and a page
going quiet (without knocking again) once its session ends or its membership is removed."""

import pytest
from playwright.sync_api import expect

from tasks_app import services
from tests.browser.conftest import change_from_another_process, wait_live

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def task(acme, alice, system_actor):
    task, _ = services.task_create(organization=acme, actor=system_actor, title="Refund order 1042", agent="bot")
    return task


def detail_url(task) -> str:
    return f"/tasks/{task.organization.slug}/{task.public_id}/"


def row(page, task):
    return page.locator(f'[id="task-{task.pk}"]')


def test_changes_from_another_process_and_from_alice_reach_both_sessions(new_session, task):
    listing = new_session("alice")
    listing.goto("/tasks/")
    detail = new_session("alice")
    detail.goto(detail_url(task))
    wait_live(listing)
    wait_live(detail)
    expect(listing.locator("#live-indicator")).to_have_attribute("data-state", "open")

    change_from_another_process(task, title="Refund approved by agent", status="executing")
    expect(row(listing, task)).to_contain_text("Refund approved by agent")
    expect(detail.locator("#task-header")).to_contain_text("Refund approved by agent")

    # alice edits inline on the detail page; her list session sees it.
    detail.fill("#d-priority", "77")
    detail.locator("#panel-priority button[type=submit]").click()
    expect(detail.locator("#panel-priority")).to_contain_text("77")
    expect(row(listing, task).locator(".col-priority")).to_have_text("77")
    # Both sockets reach the same event (the detail page showed 77 from its own answer first).
    newest = listing.evaluate("taskdeskLive.lastEventId()")
    detail.wait_for_function("n => taskdeskLive.lastEventId() === n", arg=newest)


def test_a_dropped_socket_shows_the_change_after_it_reconnects(new_session, task):
    listing = new_session("alice")
    listing.goto("/tasks/")
    wait_live(listing)
    listing.context.set_offline(True)
    listing.evaluate("taskdeskLive.drop()")
    wait_live(listing, "closed")

    change_from_another_process(task, title="Changed while the socket was down")
    assert listing.evaluate("document.documentElement.dataset.ws") != "open"  # still down: no live path
    expect(row(listing, task)).not_to_contain_text("Changed while the socket was down")

    listing.context.set_offline(False)
    wait_live(listing)
    expect(row(listing, task)).to_contain_text("Changed while the socket was down")


def test_a_form_being_typed_into_is_kept_and_a_stale_save_shows_the_conflict_panel(new_session, task):
    detail = new_session("alice")
    detail.goto(detail_url(task))
    wait_live(detail)
    detail.locator("#panel-result summary").click()
    detail.fill("#d-result", "my careful answer")

    change_from_another_process(task, result="the agent's answer", status="executing")
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
    detail.goto(detail_url(task))
    wait_live(listing)
    wait_live(detail)

    change_from_another_process(task, title=payload)
    expect(row(listing, task)).to_contain_text('<img src=x onerror="window.pwned=1')
    expect(detail.locator("#task-header")).to_contain_text('<img src=x onerror="window.pwned=1')
    assert listing.evaluate("window.pwned") is None and detail.evaluate("window.pwned") is None
    assert dialogs == []
    assert listing.locator("#task-rows img").count() == 0
    wait_live(listing)  # the hx-get logout never fired: still signed in and live


def _sockets_opened_from_now_on(page) -> list:
    opened = []
    page.on("websocket", lambda ws: opened.append(ws.url))
    return opened


def test_signing_out_in_another_tab_ends_the_live_page_within_seconds(new_session, task):
    listing = new_session("alice")
    listing.goto("/tasks/")
    wait_live(listing)
    reconnects = _sockets_opened_from_now_on(listing)

    other_tab = listing.context.new_page()  # the same browser session
    other_tab.goto("/tasks/")
    other_tab.locator(".logout-form button[type=submit]").click()
    other_tab.wait_for_url("**/login/**")

    # The server re-checks open sockets every few seconds and closes this one with 4401; the page
    # says so and does not knock again (a reconnect would be refused the same way).
    wait_live(listing, "signed-out")
    expect(listing.locator("#live-indicator")).to_have_text("signed out")
    listing.wait_for_timeout(1500)  # longer than the first reconnect delay (0.25-0.5 s)
    assert reconnects == []
    assert listing.evaluate("document.documentElement.dataset.ws") == "signed-out"
    # Later changes no longer reach the signed-out page.
    change_from_another_process(task, title="Written after the sign-out")
    listing.wait_for_timeout(500)
    expect(row(listing, task)).not_to_contain_text("Written after the sign-out")


def test_losing_the_membership_ends_the_live_page_with_no_access(new_session, task, alice):
    from tasks_app.models import Membership

    detail = new_session("alice")
    detail.goto(detail_url(task))
    wait_live(detail)
    reconnects = _sockets_opened_from_now_on(detail)
    Membership.objects.filter(user=alice).delete()
    wait_live(detail, "no-access")
    expect(detail.locator("#live-indicator")).to_have_text("no access")
    detail.wait_for_timeout(1500)
    assert reconnects == []
