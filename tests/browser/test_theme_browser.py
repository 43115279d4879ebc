"""Dark mode in a real Chromium: it follows the system, the toggle overrides it and is remembered
per browser (also by the admin), a stored choice applies before the first paint, and every page
is screenshotted in dark (tmp/ always; docs/ with TASKDESK_SCREENSHOTS=1)."""

import os

import pytest
from playwright.sync_api import expect

from tasks_app import services
from tasks_app.models import Membership, Role, Task

pytestmark = pytest.mark.django_db(transaction=True)

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs")
DARK_BG = "rgb(14, 19, 26)"  # --bg of the dark theme (static/css/taskdesk.css)
LIGHT_BG = "rgb(245, 246, 248)"


def background(page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


@pytest.fixture
def desk(acme, alice):
    """A task of every kind a page shows: waiting for a person (with activity), failed, completed."""
    actor = services.Actor.system("agent")
    task, _ = services.task_create(
        organization=acme,
        actor=actor,
        id="r-1",
        title="Refund order 1042",
        agent="billing-bot",
        input_text="Customer asks for a refund of order #1042.",
        metadata={"customer": "Grace Hopper", "ticket": 1042},
        deep_planning={"enabled": True, "tasks": [{"id": "1", "title": "Read", "completed": True}, {"id": "2"}]},
        status="executing",
    )
    services.append_activity(
        task=task,
        actor=actor,
        entries=[
            {"kind": "message", "role": "user", "content": "Please refund order #1042"},
            {"kind": "reasoning", "role": "assistant", "content": "The order arrived damaged."},
            {"kind": "tool_call", "tool_name": "lookup_order", "tool_call_id": "c1", "tool_arguments": {"n": 1042}},
            {"kind": "tool_result", "tool_name": "lookup_order", "tool_call_id": "c1", "tool_output": {"ok": True}},
        ],
    )
    services.hitl_request(task=task, actor=actor, question="Refund 345 EUR to Grace Hopper?", payload={"eur": 345})
    failed, _ = services.task_create(
        organization=acme, actor=actor, id="f-1", title="Sync invoices", status="executing"
    )
    services.task_update(task=failed, actor=actor, status="failed", status_reason="Upstream API returned 503")
    done, _ = services.task_create(
        organization=acme, actor=actor, id="d-1", title="Summarise ticket", status="executing"
    )
    services.task_update(task=done, actor=actor, status="completed", result="Summary sent.")
    return task


def test_it_follows_the_system_setting(new_session, desk):
    page = new_session("alice", color_scheme="dark")
    assert background(page) == DARK_BG
    expect(page.locator("#theme-toggle .theme-label")).to_have_text("Auto")
    page.emulate_media(color_scheme="light")
    assert background(page) == LIGHT_BG
    expect(page.locator("#theme-toggle")).to_have_attribute(
        "aria-label", "Colour theme: follows the system (now light). Change"
    )


def test_the_toggle_overrides_the_system_is_remembered_and_applies_before_the_first_paint(new_session, desk):
    page = new_session("alice", color_scheme="light")
    assert background(page) == LIGHT_BG
    page.click("#theme-toggle")  # from auto on a light system: dark first
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert background(page) == DARK_BG
    expect(page.locator("#theme-toggle .theme-label")).to_have_text("Dark")

    # Remembered: a new page of this browser is dark even with theme.js blocked, so the
    # choice is applied by the inline script in <head>, before anything is painted.
    page.route("**/static/js/theme.js*", lambda route: route.abort())
    page.goto("/approvals/")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert background(page) == DARK_BG
    page.unroute("**/static/js/theme.js*")

    # On through light back to following the system.
    page.goto("/tasks/")
    page.click("#theme-toggle")  # dark -> light
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    page.click("#theme-toggle")  # light -> auto
    expect(page.locator("#theme-toggle .theme-label")).to_have_text("Auto")
    assert page.evaluate("document.documentElement.dataset.theme") is None
    assert page.evaluate("localStorage.getItem('theme')") == "auto"


def test_the_admin_shares_the_choice(new_session, desk, django_user_model, acme):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "taskdesk")
    Membership.objects.create(user=admin, organization=acme, role=Role.ADMIN)
    page = new_session("root", color_scheme="light")
    page.click("#theme-toggle")
    page.goto("/admin/tasks_app/task/")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    body = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert body != "rgb(255, 255, 255)"
    shoot(page, "admin")


# The dark pages the README shows (docs/), refreshed with TASKDESK_SCREENSHOTS=1.
DOCS_SHOTS = {"list": "screenshot-dark.png"}


def shoot(page, name: str) -> str:
    """A full-page screenshot in tmp/ (looked at by whoever changes the theme), and docs/ on request."""
    folder = os.environ.get("TASKDESK_THEME_SHOTS", "/tmp/taskdesk-theme-shots")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"dark-{name}.png")
    page.screenshot(path=path, full_page=True)
    if os.environ.get("TASKDESK_SCREENSHOTS") == "1" and name in DOCS_SHOTS:
        page.screenshot(path=os.path.join(DOCS, DOCS_SHOTS[name]))
    return path


def test_every_page_in_dark(browser, daphne_server, desk, django_user_model, acme, alice, settings):
    django_user_model.objects.create_user("nobody", password="taskdesk")
    # A saved view for /views/<id>/, and a bulk cancel that changed one task and refused two
    # (already failed, already completed) for /bulk/<id>/, run here to its summary.
    view = services.saved_view_create(
        user=alice, organization=acme, name="Failures", query="status=failed&cols=id,title,status,updated", shared=True
    )
    services.task_create(
        organization=acme, actor=services.Actor.system("agent"), id="n-1", title="Nightly report", status="executing"
    )
    settings.BULK_ACTIONS_IN_BACKGROUND = False
    action = services.bulk_action_start(
        user=alice,
        organization=acme,
        act="cancel",
        params={"reason": "report feed is broken"},
        tasks=Task.objects.filter(public_id__in=["n-1", "f-1", "d-1"]),
    )
    services.bulk_actions_run(action_id=action.pk)
    context = browser.new_context(base_url=daphne_server, viewport={"width": 1280, "height": 900}, color_scheme="dark")
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        page.goto("/login/")
        assert background(page) == DARK_BG
        shoot(page, "login")
        page.fill("#id_username", "alice")
        page.fill("#id_password", "taskdesk")
        page.click("button[type=submit]")
        page.wait_for_url("**/tasks/**")
        page.wait_for_function("document.documentElement.dataset.ws === 'open'")
        shoot(page, "list")
        page.goto("/tasks/acme/r-1/")
        page.wait_for_selector("#timeline-entries")
        assert background(page) == DARK_BG
        shoot(page, "detail")
        page.goto("/tasks/acme/f-1/")
        shoot(page, "detail-failed")
        page.goto("/approvals/")
        assert background(page) == DARK_BG
        shoot(page, "approvals")
        page.goto("/tasks/acme/r-1/activity/")
        assert background(page) == DARK_BG
        shoot(page, "activity")
        page.goto("/ops/")
        expect(page.locator("svg.ops-chart")).to_have_count(3)
        assert background(page) == DARK_BG
        shoot(page, "ops")
        page.goto(f"/views/{view.pk}/")
        expect(page.locator('.view-link[aria-current="page"]')).to_contain_text("Failures")
        expect(page.locator("#task-rows tr.task-row")).to_have_count(1)
        assert background(page) == DARK_BG
        shoot(page, "saved-view")
        page.goto("/bulk/")
        assert background(page) == DARK_BG
        shoot(page, "bulk-list")
        page.goto(f"/bulk/{action.pk}/")
        expect(page.locator("[data-bulk-done]")).to_have_text("1")
        expect(page.locator("[data-bulk-refused]")).to_have_text("2")
        assert background(page) == DARK_BG
        shoot(page, "bulk-summary")
        page.click("button:has-text('Sign out')")
        page.goto("/login/")
        page.fill("#id_username", "nobody")
        page.fill("#id_password", "taskdesk")
        page.click("button[type=submit]")
        page.wait_for_url("**/tasks/**")
        assert background(page) == DARK_BG
        shoot(page, "no-organizations")
    finally:
        context.close()
