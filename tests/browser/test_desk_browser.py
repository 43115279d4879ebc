"""The support engineer's desk in a real Chromium (issue 12): triage acts only on a selected
request and waits with an Undo; stop, cancel and retry confirm and record a reason alike; who
lands where; the live list's small promises (ticking times, filter label, sticky header, no
console errors for rows not on the page)."""

import os
import re
import time

import pytest
from playwright.sync_api import expect

from tasks_app import services
from tasks_app.models import HitlRequest, Task
from tests.browser.conftest import change_from_another_process, wait_for, wait_live

pytestmark = pytest.mark.django_db(transaction=True)

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs")


def screenshot(page, name: str) -> None:
    """Refreshes docs/<name> when TASKDESK_SCREENSHOTS=1 (a test run leaves docs/ alone otherwise)."""
    if os.environ.get("TASKDESK_SCREENSHOTS") == "1":
        page.screenshot(path=os.path.join(DOCS, name))


def _paused(org, task_id, question="Refund the customer 345 EUR?"):
    actor = services.Actor.system("agent")
    services.task_create(
        organization=org, actor=actor, id=task_id, title=f"Refund order {task_id}", agent="billing-bot"
    )
    services.task_update(task=task_id, organization_id=org.pk, actor=actor, status="executing")
    return services.hitl_request(
        task=task_id, organization_id=org.pk, actor=actor, question=question, payload={"amount": 345}
    )


def _pending(hitl) -> bool:
    return HitlRequest.objects.get(pk=hitl.pk).is_pending


# --- Safety: the inbox ------------------------------------------------------------------------


def test_keys_act_only_on_a_selected_request_and_undo_really_prevents_the_decision(new_session, acme, alice):
    first = _paused(acme, "r-1")
    second = _paused(acme, "r-2", question="Send the apology email?")
    page = new_session("alice")
    page.goto("/approvals/")
    page.wait_for_function("window.taskdeskTriage === true && !!window.taskdeskDecisions")
    wait_live(page)

    # Freshly loaded: nothing is selected, and a / r / e only say so.
    for key in ("a", "r", "e"):
        page.keyboard.press(key)
        expect(page.locator("#toast")).to_contain_text("Select a request first")
    assert page.locator(".is-current").count() == 0
    assert page.evaluate("taskdeskDecisions.pending()") == 0
    assert page.locator(".undo-entry").count() == 0

    # j selects, visibly.
    page.keyboard.press("j")
    card = page.locator(f"#hitl-{first.pk}")
    expect(card).to_have_class(has_class("is-current"))
    expect(card).to_have_attribute("aria-current", "true")
    expect(page.locator("#triage-status")).to_contain_text("Selected: Refund order r-1")

    # a counts down with an Undo; Undo means nothing reaches the server, even after the countdown.
    page.keyboard.press("a")
    expect(page.locator(".undo-entry")).to_contain_text("Approving “Refund order r-1” in")
    expect(card).to_have_attribute("data-queued", "approve")
    page.locator(".undo-entry .undo-button").click()
    expect(page.locator(".undo-entry")).to_have_count(0)
    expect(page.locator("#toast")).to_contain_text("was not approved")
    time.sleep(6.5)
    assert _pending(first) and _pending(second)
    expect(card).not_to_have_attribute("data-queued", "approve")

    # A click selects too; a then sends after the countdown.
    page.locator(f"#hitl-{second.pk} .hitl-question").click()
    expect(page.locator(f"#hitl-{second.pk}")).to_have_class(has_class("is-current"))
    expect(card).not_to_have_class(has_class("is-current"))
    page.keyboard.press("a")
    assert _pending(second)  # not yet: the countdown runs
    page.wait_for_selector(f"#hitl-{second.pk}.hitl-card--decided", timeout=12_000)
    assert wait_for(lambda: HitlRequest.objects.get(pk=second.pk).decision == "approved")

    # The decided request left the selection empty: a does nothing to the neighbour.
    page.keyboard.press("a")
    expect(page.locator("#toast")).to_contain_text("Select a request first")
    assert page.evaluate("taskdeskDecisions.pending()") == 0
    assert _pending(first)


def has_class(name):
    import re

    return re.compile(rf"(^|\s){name}(\s|$)")


def test_a_decision_still_counting_down_is_sent_when_the_page_is_left(new_session, acme, alice):
    hitl = _paused(acme, "leave-1")
    page = new_session("alice")
    page.goto("/approvals/")
    page.wait_for_function("window.taskdeskTriage === true && !!window.taskdeskDecisions")
    page.keyboard.press("j")
    page.keyboard.press("a")
    expect(page.locator(".undo-entry")).to_have_count(1)
    page.goto("/tasks/")  # leaves before the countdown ends
    assert wait_for(lambda: HitlRequest.objects.get(pk=hitl.pk).decision == "approved")


def test_the_task_pages_decision_panel_counts_down_with_an_undo_too(new_session, acme, alice):
    hitl = _paused(acme, "d-1")
    page = new_session("alice")
    page.goto(f"/tasks/{acme.slug}/d-1/")
    wait_live(page)
    page.locator("#panel-hitl [data-reject]").click()  # no reason: refused at once, in place
    expect(page.locator("#panel-hitl .field-error")).to_contain_text("reason")
    assert page.evaluate("taskdeskDecisions.pending()") == 0
    page.locator("#panel-hitl [data-reason-input]").fill("too much")
    page.locator("#panel-hitl [data-reject]").click()
    expect(page.locator(".undo-entry")).to_contain_text("Rejecting")
    page.locator(".undo-entry .undo-button").click()
    time.sleep(6)
    assert _pending(hitl)
    page.locator("#panel-hitl [data-approve]").click()
    expect(page.locator(".undo-entry")).to_contain_text("Approving")
    assert wait_for(lambda: HitlRequest.objects.get(pk=hitl.pk).decision == "approved", timeout=12)


# --- Safety: stop, cancel, retry --------------------------------------------------------------


def test_cancel_from_a_row_and_stop_and_retry_from_the_page_confirm_and_record_the_reason(new_session, acme, alice):
    actor = services.Actor.system("agent")
    task, _ = services.task_create(organization=acme, actor=actor, id="c-1", title="Cancel me", agent="bot")
    services.task_update(
        task="c-1", organization_id=acme.pk, actor=actor, status="executing", status_reason="warming up"
    )
    page = new_session("alice")
    page.goto("/tasks/")
    wait_live(page)
    row = page.locator(f'[id="task-{task.pk}"]')

    # Canceled from the row's menu asks first; Back sends nothing.
    row.locator("select[name=status]").select_option("canceled")
    row.locator("button[type=submit]").click()
    dialog = page.locator("#confirm-act")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Cancel this task?")
    page.locator("#confirm-act-back").click()
    expect(dialog).to_be_hidden()
    time.sleep(0.5)
    assert Task.objects.get(pk=task.pk).status == "executing"

    row.locator("button[type=submit]").click()
    page.fill("#confirm-act-reason", "duplicate of c-0")
    page.keyboard.press("Enter")
    expect(row.locator(".badge-canceled")).to_be_visible()
    fresh = Task.objects.get(pk=task.pk)
    assert (fresh.status, fresh.status_reason) == ("canceled", "duplicate of c-0")

    # Retry from the row asks the same way; no reason given clears the old one.
    row.locator("[data-act=retry]").click()
    expect(dialog).to_contain_text("Retry this task?")
    page.locator("#confirm-act-ok").click()
    expect(row.locator(".badge-pending")).to_be_visible()
    fresh = Task.objects.get(pk=task.pk)
    assert (fresh.status, fresh.status_reason) == ("pending", "")

    # Stop from the detail page: the same dialog, the reason recorded, the old reason gone.
    services.task_update(task="c-1", organization_id=acme.pk, actor=actor, status="executing", status_reason="busy")
    page.goto(f"/tasks/{acme.slug}/c-1/")
    wait_live(page)
    screenshot(page, "screenshot-detail-actions.png")
    page.locator("#panel-status [data-act=stopped]").click()
    expect(dialog).to_contain_text("Stop this task?")
    screenshot(page, "screenshot-confirm.png")
    page.keyboard.press("Escape")  # Esc is Back
    expect(dialog).to_be_hidden()
    time.sleep(0.5)
    assert Task.objects.get(pk=task.pk).status == "executing"
    page.locator("#panel-status [data-act=stopped]").click()
    page.fill("#confirm-act-reason", "customer called")
    page.locator("#confirm-act-ok").click()
    expect(page.locator("#panel-status .reason")).to_contain_text("customer called")
    fresh = Task.objects.get(pk=task.pk)
    assert (fresh.status, fresh.status_reason, fresh.is_manually_stopped) == ("stopped", "customer called", True)

    page.locator("#panel-status [data-act=retry]").click()
    page.fill("#confirm-act-reason", "second try")
    page.locator("#confirm-act-ok").click()
    expect(page.locator("#panel-status .badge-pending")).to_be_visible()
    fresh = Task.objects.get(pk=task.pk)
    assert (fresh.status, fresh.status_reason) == ("pending", "second try")


def test_stop_from_a_row_and_cancel_from_the_page_confirm_and_record_the_reason(new_session, acme, alice):
    actor = services.Actor.system("agent")
    task, _ = services.task_create(organization=acme, actor=actor, id="s-1", title="Stop me", agent="bot")
    services.task_update(
        task="s-1", organization_id=acme.pk, actor=actor, status="executing", status_reason="warming up"
    )
    page = new_session("alice")
    page.goto("/tasks/")
    wait_live(page)
    row = page.locator(f'[id="task-{task.pk}"]')
    dialog = page.locator("#confirm-act")

    # Stopped from the row's menu asks first, saying what it does; Esc sends nothing.
    row.locator("select[name=status]").select_option("stopped")
    row.locator("button[type=submit]").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Stop this task?")
    expect(dialog).to_contain_text("The agent is told to stop; the task ends as stopped.")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    time.sleep(0.5)
    assert Task.objects.get(pk=task.pk).status == "executing"

    row.locator("button[type=submit]").click()
    page.fill("#confirm-act-reason", "customer called")
    page.locator("#confirm-act-ok").click()
    expect(row.locator(".badge-stopped")).to_be_visible()
    fresh = Task.objects.get(pk=task.pk)
    assert (fresh.status, fresh.status_reason, fresh.is_manually_stopped) == ("stopped", "customer called", True)

    # Cancel from the task page: the same dialog; Back sends nothing; the reason replaces the old one.
    services.task_update(task="s-1", organization_id=acme.pk, actor=actor, retry=True)
    services.task_update(task="s-1", organization_id=acme.pk, actor=actor, status="executing", status_reason="busy")
    page.goto(f"/tasks/{acme.slug}/s-1/")
    wait_live(page)
    page.locator("#panel-status [data-act=canceled]").click()
    expect(dialog).to_contain_text("Cancel this task?")
    expect(dialog).to_contain_text("The task ends as canceled and is not run further.")
    expect(page.locator("#confirm-act-ok")).to_have_text("Cancel task")
    page.locator("#confirm-act-back").click()
    expect(dialog).to_be_hidden()
    time.sleep(0.5)
    assert Task.objects.get(pk=task.pk).status == "executing"
    page.locator("#panel-status [data-act=canceled]").click()
    page.fill("#confirm-act-reason", "duplicate of s-0")
    page.keyboard.press("Enter")
    expect(page.locator("#panel-status .badge-canceled")).to_be_visible()
    expect(page.locator("#panel-status .reason")).to_contain_text("duplicate of s-0")
    fresh = Task.objects.get(pk=task.pk)
    assert (fresh.status, fresh.status_reason, fresh.is_manually_stopped) == ("canceled", "duplicate of s-0", False)


# --- Who lands where --------------------------------------------------------------------------


def test_the_superuser_without_memberships_lands_on_every_organizations_desk(
    new_session, django_user_model, acme, globex, alice, charlie
):
    django_user_model.objects.create_superuser(username="admin", password="taskdesk", email="admin@example.com")
    actor = services.Actor.system("agent")
    services.task_create(organization=acme, actor=actor, id="acme-1", title="Acme refund")
    services.task_create(organization=globex, actor=actor, id="globex-1", title="Globex invoice")
    _paused(globex, "globex-2", question="Ship the order?")
    page = new_session("admin")
    page.goto("/tasks/")
    wait_live(page)
    expect(page.locator("#live-indicator")).to_have_text("live")
    expect(page.locator("#task-rows")).to_contain_text("Acme refund")
    expect(page.locator("#task-rows")).to_contain_text("Globex invoice")
    expect(page.locator(".topbar a[href='/admin/']")).to_have_text("Admin")
    expect(page.locator(".topbar a[href='/api/docs']")).to_have_text("API docs")
    screenshot(page, "screenshot-superuser.png")
    page.locator(".topbar a", has_text="Approvals").click()
    expect(page.locator("#hitl-list")).to_contain_text("Ship the order?")
    wait_live(page)
    page.goto(f"/tasks/{globex.slug}/globex-1/")
    expect(page.locator("#task-header")).to_contain_text("Globex invoice")
    wait_live(page)


def test_someone_without_an_organization_gets_an_explanation_and_no_socket(new_session, django_user_model, acme):
    django_user_model.objects.create_user(username="dora", password="taskdesk", is_staff=True)
    sockets = []
    page = new_session("dora")
    page.on("websocket", lambda ws: sockets.append(ws.url))
    for path in ("/tasks/", "/approvals/"):
        page.goto(path)
        expect(page.locator("h1")).to_have_text("You are not a member of any organization yet")
        expect(page.locator("main")).to_contain_text("organizations you are a member of")
        expect(page.locator("main a[href='/admin/']")).to_be_visible()
        page.wait_for_function("document.documentElement.dataset.ws === 'none'")
        expect(page.locator("#live-indicator")).to_have_count(0)
        expect(page.locator("body")).not_to_contain_text("reconnecting")
    screenshot(page, "screenshot-no-organization.png")
    # Not staff: no admin link, the API docs still linked.
    page = new_session_plain(new_session, django_user_model)
    expect(page.locator(".topbar a[href='/admin/']")).to_have_count(0)
    expect(page.locator(".topbar a[href='/api/docs']")).to_be_visible()
    assert sockets == []


def new_session_plain(new_session, django_user_model):
    django_user_model.objects.create_user(username="eve", password="taskdesk")
    page = new_session("eve")
    page.goto("/tasks/")
    return page


# --- The live list ----------------------------------------------------------------------------


def test_the_live_list_ticks_sticks_its_header_names_its_filter_and_logs_no_errors(new_session, acme, alice):
    actor = services.Actor.system("agent")
    tasks = [
        services.task_create(organization=acme, actor=actor, id=f"l-{n:02d}", title=f"Task {n}")[0] for n in range(60)
    ]
    page = new_session("alice")
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.clock.install()
    page.goto("/tasks/")
    wait_live(page)
    newest = page.locator(f'[id="task-{tasks[-1].pk}"] .col-updated time')
    expect(newest).to_have_text("just now")

    # A pushed event about a row on the next page: nothing to swap, and nothing in the console.
    before = page.evaluate("taskdeskLive.lastEventId()")
    assert page.locator(f'[id="task-{tasks[0].pk}"]').count() == 0
    change_from_another_process(tasks[0], title="Renamed off-page")
    page.wait_for_function(f"taskdeskLive.lastEventId() > {before}")
    page.wait_for_timeout(300)
    assert page.locator(f'[id="task-{tasks[0].pk}"]').count() == 0
    assert not [text for text in errors if "oobErrorNoTarget" in text or "htmx" in text], errors

    # Relative times tick without a reload.
    page.clock.fast_forward(130_000)
    expect(newest).to_have_text(re.compile(r"^2 min ago$"))

    # The header sticks under the list's bar (total, "N new", pause), itself under the top bar,
    # while the rows scroll.
    page.mouse.wheel(0, 1500)
    page.wait_for_function("window.scrollY > 1000")
    header = page.locator("table.tasks thead th.col-title").bounding_box()
    bar = page.locator("#task-table .list-bar").bounding_box()
    topbar = page.locator("header.topbar").bounding_box()
    assert abs(bar["y"] - (topbar["y"] + topbar["height"])) < 2, (bar, topbar)
    assert abs(header["y"] - (bar["y"] + bar["height"])) < 2, (header, bar)
    screenshot(page, "screenshot-sticky-header.png")
    page.evaluate("window.scrollTo(0, 0)")

    # The status filter says what it applies and closes on an outside click.
    summary = page.locator(".filter-status summary")
    expect(summary).to_have_text(re.compile(r"Any status"))
    summary.click()
    page.locator(".filter-status input[value=pending]").check()
    expect(summary).to_contain_text("Pending")
    page.locator(".filter-status input[value=executing]").check()
    expect(summary).to_contain_text("2 statuses")
    expect(page.locator(".filter-status details")).to_have_attribute("open", "")
    page.locator("h1").click()
    expect(page.locator(".filter-status details")).not_to_have_attribute("open", "")
    page.wait_for_url(re.compile(r"status=pending&status=executing"))
    page.reload()
    expect(summary).to_contain_text("2 statuses")
    assert not [text for text in errors if "htmx" in text], errors


def test_the_inbox_waiting_time_ticks(new_session, acme, alice):
    hitl = _paused(acme, "wait-1")
    page = new_session("alice")
    page.clock.install()
    page.goto("/approvals/")
    wait_live(page)
    waiting = page.locator(f"#hitl-{hitl.pk} .hitl-card__age")
    expect(waiting).to_have_text("waiting < 1 min")
    expect(waiting).to_have_attribute("title", re.compile(r"^Requested \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    # A request pushed while the page is open ticks as well.
    pushed = _paused(acme, "wait-2", question="Send the apology email?")
    later = page.locator(f"#hitl-{pushed.pk} .hitl-card__age")
    expect(later).to_have_text("waiting < 1 min", timeout=12_000)

    page.clock.fast_forward(130_000)
    expect(waiting).to_have_text("waiting 2 min")
    expect(later).to_have_text("waiting 2 min")
    page.clock.fast_forward(3_600_000)
    expect(waiting).to_have_text("waiting 1 h")
