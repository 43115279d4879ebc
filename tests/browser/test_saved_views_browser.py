"""Saved views and the columns chooser in a real Chromium: alice hides columns and filters the
list, saves it, opens it again from the views' links, renames and shares it; bob (a viewer of
acme) opens the shared view; charlie (globex) never sees it. A shared and a personal view open
from their links with the chooser showing the view's columns (docs/screenshot-saved-views.png)."""

import os

import pytest
from playwright.sync_api import expect

from tasks_app import services
from tasks_app.models import SavedView
from tests.browser.test_desk_browser import screenshot

pytestmark = pytest.mark.django_db(transaction=True)

SHOTS = os.environ.get("TASKDESK_THEME_SHOTS", "/tmp/taskdesk-theme-shots")


@pytest.fixture
def tasks(acme, globex, alice, bob, charlie):
    actor = services.Actor.system("agent")
    for n, status in enumerate(["executing", "failed", "completed", "failed"]):
        task, _ = services.task_create(
            organization=acme, actor=actor, id=f"t-{n}", title=f"Task {n}", agent="support-bot", status="executing"
        )
        if status != "executing":
            services.task_update(task=task, actor=actor, status=status)
    services.task_create(organization=globex, actor=actor, id="g-1", title="Globex task")


def shot(page, name: str) -> None:
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SHOTS, f"views-{name}.png"))


def test_save_open_rename_share_and_scoping(new_session, tasks):
    page = new_session("alice")
    # Hide two columns with the chooser and filter to failed tasks: the URL holds both.
    page.click("[data-columns-chooser] summary")
    page.uncheck("[data-columns-chooser] input[value=agent]")
    expect(page.locator("table.tasks")).to_have_class("tasks hide-agent")
    page.uncheck("[data-columns-chooser] input[value=tokens]")
    expect(page.locator("th.col-tokens")).to_be_hidden()
    expect(page.locator("th.col-agent")).to_be_hidden()
    expect(page.locator("[data-columns-label]")).to_have_text("7 of 9")
    shot(page, "columns")
    page.click("[data-columns-chooser] summary")
    page.click(".filter-status summary")
    page.check(".filter-status input[value=failed]")
    page.click(".filter-status summary")
    expect(page.locator("#task-rows tr.task-row")).to_have_count(2)
    assert "cols=id%2Ctitle%2Cstatus%2Cpriority%2Csource%2Cupdated%2Cduration" in page.url
    assert "col=" not in page.url.replace("cols=", "")

    # Save it, shared with acme.
    page.click(".views-menu summary")
    page.fill("#sv-name", "Failures <b>")
    page.check(".view-save input[name=shared]")
    page.click(".view-save button[type=submit]")
    current = page.locator('.view-link[aria-current="page"]')
    expect(current).to_contain_text("Failures <b>")  # as text, escaped
    shot(page, "saved")

    # Back to every task, then the view again from its link: filters and columns come back.
    page.click(".view-link[data-view-key='']")
    page.wait_for_url("**/tasks/")
    expect(page.locator("#task-rows tr.task-row")).to_have_count(4)
    expect(page.locator("th.col-agent")).to_be_visible()
    page.click(".view-link:has-text('Failures')")
    expect(page.locator("#task-rows tr.task-row")).to_have_count(2)
    expect(page.locator("th.col-agent")).to_be_hidden()
    expect(page.locator('.view-link[aria-current="page"]')).to_contain_text("Failures")

    # Rename it from the menu.
    page.click(".views-menu summary")
    field = page.locator(".own-view input[name=name]")
    field.fill("Failed in acme")
    shot(page, "menu")
    page.click(".view-rename button")
    expect(page.locator(".view-link.is-shared")).to_contain_text("Failed in acme")
    view = SavedView.objects.get()
    assert (view.name, view.shared, view.query) == ("Failed in acme", True, "status=failed")

    # Bob (viewer) opens it by its own URL; charlie (globex) sees no such view.
    bob = new_session("bob")
    expect(bob.locator(".view-link.is-shared")).to_have_text("Failed in acme ⇄")
    bob.goto(f"/views/{view.pk}/")
    expect(bob.locator("#task-rows tr.task-row")).to_have_count(2)
    expect(bob.locator("th.col-agent")).to_be_hidden()
    charlie = new_session("charlie")
    expect(charlie.locator(".view-link")).to_have_count(1)  # "All tasks" only
    response = charlie.goto(f"/views/{view.pk}/")
    assert response.status == 404


def test_a_view_opened_from_its_link_shows_its_columns_in_the_chooser(new_session, tasks, acme, alice):
    actor = services.Actor.system("agent")
    for n, (title, agent, status) in enumerate(
        [
            ("Refund order 1042", "billing-agent", "failed"),
            ("Summarise ticket 7781", "support-bot", "completed"),
            ("Sync invoices for March", "billing-agent", "failed"),
            ("Triage inbound email", "support-bot", "executing"),
            ("Research competitor pricing", "research-agent", "failed"),
        ]
    ):
        task, _ = services.task_create(
            organization=acme,
            actor=actor,
            id=f"v-{n}",
            title=title,
            agent=agent,
            status="executing",
            priority=30 + 20 * (n % 3),
            prompt_tokens=1200 * (n + 1),
            completion_tokens=150 * (n + 1),
        )
        if status != "executing":
            services.task_update(
                task=task, actor=actor, status=status, status_reason="Upstream API returned 503", duration=40.0 + 75 * n
            )
    failures = services.saved_view_create(
        user=alice,
        organization=acme,
        name="Failures",
        query="status=failed&sort=-updated&cols=id,title,agent,status,updated,duration",
        shared=True,
    )
    services.saved_view_create(user=alice, organization=acme, name="Support bot", query="agent=support-bot")

    page = new_session("alice")
    links = page.locator(".view-link")
    expect(links).to_have_text(["All tasks", "Failures ⇄", "Support bot"])
    links.filter(has_text="Failures").click()
    expect(page.locator('.view-link[aria-current="page"]')).to_have_text("Failures ⇄")
    expect(page.locator("#task-rows tr.task-row")).to_have_count(5)  # t-1, t-3 and three of v-*
    expect(page.locator("th.col-tokens")).to_be_hidden()
    page.click("[data-columns-chooser] summary")
    chooser = page.locator("[data-columns-chooser]")
    expect(chooser.locator("input[type=checkbox]:checked")).to_have_count(6)
    for hidden in ("priority", "source", "tokens"):
        expect(chooser.locator(f"input[value={hidden}]")).not_to_be_checked()
    expect(page.locator("[data-columns-label]")).to_have_text("6 of 9")
    screenshot(page, "screenshot-saved-views.png")
    assert "status=failed" in page.url and "cols=" in page.url  # the view's link is the list's URL
    assert failures.columns == ["id", "title", "agent", "status", "updated", "duration"]
