"""Bulk actions in a real Chromium: alice picks rows (kept picked while a live push replaces one),
takes "all 57 tasks", previews a cancel (51 change, 6 refused as completed), confirms with a
reason, watches the progress to its summary; bob, a viewer, has no bulk controls and sees every
task change live on his own list. Then a priority set on three picked rows."""

import os

import pytest
from playwright.sync_api import expect

from tasks_app import services
from tasks_app.models import BulkAction, Face, Task, TaskEvent
from tests.browser.conftest import change_from_another_process, wait_live

pytestmark = pytest.mark.django_db(transaction=True)

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs")


def screenshot(page, name: str) -> None:
    """Refreshes docs/<name> when TASKDESK_SCREENSHOTS=1 (a test run leaves docs/ alone otherwise)."""
    if os.environ.get("TASKDESK_SCREENSHOTS") == "1":
        page.screenshot(path=os.path.join(DOCS, name))


@pytest.fixture
def tasks(acme, alice, bob):
    actor = services.Actor.system("agent")
    made = []
    for n in range(57):
        # job-00, job-10 … job-50 completed (6), the other 51 running; job-56 is the newest.
        status = "completed" if n % 10 == 0 else "executing"
        task, _ = services.task_create(
            organization=acme,
            actor=actor,
            id=f"job-{n:02d}",
            title=f"Nightly report {n}",
            agent="report-bot",
            status=status,
        )
        made.append(task)
    return made


def row(page, task):
    return page.locator(f'[id="task-{task.pk}"]')


def test_select_preview_confirm_watch_the_summary_and_another_page_sees_it_live(new_session, tasks):
    watcher = new_session("bob")
    wait_live(watcher)
    expect(watcher.locator("#task-rows tr.task-row")).to_have_count(50)
    expect(watcher.locator("input.row-select")).to_have_count(0)
    expect(watcher.locator("#bulk-bar")).to_have_count(0)

    page = new_session("alice")
    wait_live(page)
    newest, second = tasks[-1], tasks[-2]
    row(page, newest).locator("input.row-select").check()
    row(page, second).locator("input.row-select").check()
    bar = page.locator("#bulk-bar")
    expect(bar).to_be_visible()
    expect(bar.locator("[data-bulk-count]")).to_have_text("2 selected")

    # A live push replaces a picked row: it stays picked.
    change_from_another_process(newest, priority=7)
    expect(row(page, newest).locator(".col-priority")).to_have_text("7")
    expect(row(page, newest).locator("input.row-select")).to_be_checked()
    expect(bar.locator("[data-bulk-count]")).to_have_text("2 selected")

    # The page's box picks its 50 rows; then every task of the view.
    page.locator("#bulk-page").check()
    expect(bar.locator("[data-bulk-count]")).to_have_text("50 selected")
    expect(bar.locator("[data-bulk-all]")).to_have_text("Select all 57 tasks")
    bar.locator("[data-bulk-all]").click()
    expect(bar.locator("[data-bulk-count]")).to_have_text("All 57 matching selected")

    # The preview says what would happen and changes nothing.
    bar.locator("button[value=cancel]").click()
    dialog = page.locator("#bulk-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("[data-bulk-applies]")).to_have_text("51")
    expect(dialog.locator("[data-bulk-refused]")).to_have_text("6")
    expect(dialog.locator(".bulk-group.is-refused")).to_contain_text("The task is already completed.")
    expect(dialog.locator(".bulk-group.is-refused a")).to_have_count(5)
    screenshot(page, "screenshot-bulk.png")
    assert not Task.objects.filter(status="canceled").exists()

    # Confirmed with a reason: progress, then the summary; the selection is gone.
    page.fill("#bulk-reason", "report feed is broken")
    dialog.locator("[data-bulk-confirm]").click()
    progress = dialog.locator(".bulk-progress")
    expect(progress).to_be_visible()
    expect(progress).to_have_attribute("data-state", "finished", timeout=30_000)
    expect(progress.locator("[data-bulk-done]")).to_have_text("51")
    expect(progress.locator("[data-bulk-refused]")).to_have_text("6")
    expect(progress).to_contain_text("The task is already completed.")
    screenshot(page, "screenshot-bulk-summary.png")
    expect(bar).to_be_hidden()

    # Each change is an event of alice's, through the bulk face; bob's list got every row live.
    action = BulkAction.objects.get()
    events = TaskEvent.objects.filter(face=Face.BULK)
    assert events.count() == 51 and set(events.values_list("actor_label", flat=True)) == {"alice"}
    assert set(Task.objects.filter(status="canceled").values_list("status_reason", flat=True)) == {
        "report feed is broken"
    }
    expect(watcher.locator("#task-rows .badge-canceled")).to_have_count(45, timeout=20_000)
    expect(row(watcher, second).locator(".badge-canceled")).to_be_visible()

    # Closed, it can be found again with its summary.
    dialog.locator("[data-bulk-close]").first.click()
    expect(dialog).to_be_hidden()
    page.goto(f"/bulk/{action.pk}/")
    expect(page.locator("[data-bulk-done]")).to_have_text("51")


def test_set_priority_on_three_picked_rows(new_session, tasks):
    page = new_session("alice")
    wait_live(page)
    picked = tasks[-3:]
    for task in picked:
        row(page, task).locator("input.row-select").check()
    page.locator("#bulk-bar details.bulk-set summary", has_text="Priority").click()
    page.fill("#bulk-priority", "90")
    page.locator("#bulk-bar button[value=priority]").click()
    dialog = page.locator("#bulk-dialog")
    expect(dialog.locator("[data-bulk-applies]")).to_have_text("3")
    dialog.locator("[data-bulk-confirm]").click()
    expect(dialog.locator(".bulk-progress")).to_have_attribute("data-state", "finished", timeout=30_000)
    for task in picked:
        expect(row(page, task).locator(".col-priority")).to_have_text("90")
    changed = Task.objects.filter(priority=90).values_list("public_id", flat=True)
    assert sorted(changed) == ["job-54", "job-55", "job-56"]
