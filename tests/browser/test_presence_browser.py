"""Presence in two real browser contexts: alice and bob on one task's page see each other's
initials in the header, bob sees the note on the field alice is editing, the initials survive the
header being re-rendered by a pushed change, and alice's leaving takes her off bob's page."""

import os

import pytest
from playwright.sync_api import expect

from tasks_app import services
from tests.browser.conftest import change_from_another_process, wait_live
from tests.browser.test_desk_browser import screenshot

pytestmark = pytest.mark.django_db(transaction=True)

SHOTS = os.environ.get("TASKDESK_THEME_SHOTS", "/tmp/taskdesk-theme-shots")


def test_two_people_on_one_task(new_session, acme, alice, bob):
    actor = services.Actor.system("agent")
    task, _ = services.task_create(
        organization=acme,
        actor=actor,
        id="p-1",
        title="Refund order 1042",
        agent="billing-bot",
        status="executing",
        input_text="Customer asks for a refund of order #1042: the parcel arrived damaged.",
        metadata={"customer": "Grace Hopper", "ticket": 1042},
    )
    services.append_activity(
        task=task,
        actor=actor,
        entries=[
            {"kind": "message", "role": "user", "content": "Please refund order #1042, it arrived damaged."},
            {"kind": "tool_call", "tool_name": "lookup_order", "tool_call_id": "c1", "tool_arguments": {"n": 1042}},
            {"kind": "tool_result", "tool_name": "lookup_order", "tool_call_id": "c1", "tool_output": {"eur": 345}},
        ],
    )
    first = new_session("alice")
    first.goto("/tasks/acme/p-1/")
    wait_live(first)
    second = new_session("bob")
    second.goto("/tasks/acme/p-1/")
    wait_live(second)

    expect(first.locator("#presence .presence-person")).to_have_text(["BO (bob)"])
    expect(second.locator("#presence .presence-person")).to_have_text(["AL (alice)"])

    # Alice starts editing the result: bob's page notes it on that panel, and on her initials.
    first.click("#panel-result summary")
    first.focus("#d-result")
    note = second.locator("#panel-result .presence-note")
    expect(note).to_have_text("alice is editing this")
    expect(second.locator("#presence .presence-person.is-editing")).to_have_attribute(
        "title", "alice is editing the result"
    )
    os.makedirs(SHOTS, exist_ok=True)
    second.screenshot(path=os.path.join(SHOTS, "presence-bob.png"))
    screenshot(second, "screenshot-presence.png")

    # A change pushed from another process re-renders the header and the panels: the initials
    # stay, and the note comes back on the re-rendered panel.
    change_from_another_process(task, priority=77)
    expect(second.locator("#panel-priority .big-number")).to_have_text("77")
    expect(second.locator("#presence .presence-person")).to_have_text(["AL (alice, editing the result)"])
    expect(note).to_have_text("alice is editing this")

    # She stops editing, then leaves: the note goes, then her initials.
    first.locator("#d-result").blur()
    expect(note).to_have_count(0)
    first.goto("/tasks/")
    expect(second.locator("#presence .presence-person")).to_have_count(0, timeout=5000)
