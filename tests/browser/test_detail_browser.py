"""The task page's "now" in a real Chromium (issue 12): the newest-first timeline, live entries on
top ("No messages, tool calls or reasoning yet." goes), the "N new" pill while scrolled away
with nothing moving under the reader, a cue on what changed, elapsed time ticking, human times
with the exact time on hover, pages down to the first event; the activity log page live, with
its filters in the URL.

Changes are written by this process (the agent's side) and reach the server's sockets through
Redis, as an agent's would."""

import re
import time
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from tasks_app import services
from tasks_app.models import ActivityEntry, EventType, TaskEvent
from tests.browser.conftest import wait_live
from tests.browser.test_desk_browser import screenshot

pytestmark = pytest.mark.django_db(transaction=True)

AGENT = services.Actor.system("refund-agent")
ITEMS = "#timeline-entries > [data-timeline-item]"


@pytest.fixture
def task(acme, alice):
    task, _ = services.task_create(organization=acme, actor=AGENT, id="now-1", title="Refund order 1042", agent="bot")
    return task


def detail_url(task) -> str:
    return f"/tasks/{task.organization.slug}/{task.public_id}/"


def log(task, *entries):
    return services.append_activity(task=task, actor=AGENT, entries=list(entries))


def changes(item) -> dict[str, str]:
    """A timeline entry's rows of changed fields as the reader sees them: {name: value}."""
    return dict(
        item.locator("table.changes tr").evaluate_all(
            "rows => rows.map(r => [r.querySelector('th').innerText.trim(), r.querySelector('td')?.innerText.trim()])"
        )
    )


def test_the_timeline_leads_with_the_newest_of_activity_and_events(new_session, task):
    (hello,) = log(task, {"kind": "message", "role": "user", "content": "My parcel arrived broken"})
    services.task_update(task=task, actor=AGENT, status="executing")
    call, _ = log(
        task,
        {"kind": "tool_call", "tool_name": "lookup_order", "tool_call_id": "c1", "tool_arguments": {"order": 1042}},
        {"kind": "tool_result", "tool_name": "lookup_order", "tool_call_id": "c1", "tool_output": {"ok": False,
         "error": "order service timed out"}},
    )  # fmt: skip
    created, executing = TaskEvent.objects.filter(task=task).exclude(type=EventType.ACTIVITY).order_by("id")
    page = new_session("alice")
    page.goto(detail_url(task))
    ids = page.locator(ITEMS).evaluate_all("items => items.map(item => item.id)")
    assert ids == [f"tl-a-{call.pk}", f"tl-e-{executing.pk}", f"tl-a-{hello.pk}", f"tl-e-{created.pk}"]
    failed = page.locator(f"#tl-a-{call.pk}")
    expect(failed.locator(".tl-outcome")).to_have_text("✕ failed")
    expect(failed.locator(".tl-failure")).to_have_text("order service timed out")
    expect(page.locator(f"#tl-e-{created.pk}")).to_contain_text("refund-agent")  # who created the task
    # The timeline sits beside the fields, not below them.
    timeline, status = page.locator("#panel-timeline").bounding_box(), page.locator("#panel-status").bounding_box()
    assert abs(timeline["y"] - status["y"]) < 2 and timeline["x"] < status["x"]


def test_a_live_entry_arrives_on_top_with_a_cue_and_no_activity_yet_goes(new_session, task):
    page = new_session("alice")
    page.goto(detail_url(task))
    wait_live(page)
    expect(page.locator(".timeline-empty")).to_have_text("No messages, tool calls or reasoning yet.")
    log(task, {"kind": "message", "role": "assistant", "content": "Looking at order 1042"})
    first = page.locator(ITEMS).first
    expect(first).to_contain_text("Looking at order 1042")
    expect(page.locator(".timeline-empty")).to_have_count(0)
    expect(first).to_have_class(re.compile(r"\btl-live\b"))
    assert first.evaluate("el => getComputedStyle(el).animationName") == "live-cue"
    # A field changed by the agent: its panel is marked, the others are not; its event is on top.
    services.task_update(task=task, actor=AGENT, metadata={"customer": "c-9"})
    expect(page.locator("#panel-metadata")).to_contain_text("c-9")
    expect(page.locator("#panel-metadata")).to_have_class(re.compile(r"\blive-changed\b"))
    expect(page.locator("#panel-result")).not_to_have_class(re.compile(r"\blive-changed\b"))
    expect(page.locator(ITEMS).first).to_contain_text("Changed metadata")


def test_while_scrolled_away_new_entries_wait_behind_an_n_new_pill(new_session, task):
    log(task, *({"kind": "message", "role": "assistant", "content": f"step {i}"} for i in range(60)))
    page = new_session("alice")
    page.goto(detail_url(task))
    wait_live(page)
    pill = page.locator("#timeline-new")
    expect(pill).to_be_hidden()
    page.evaluate("window.scrollTo(0, 1400)")
    page.wait_for_function("!taskdeskTimeline.atTop()")
    # What the reader looks at: an item in the middle of the window.
    watched = page.evaluate(
        "() => { const h = innerHeight / 2; return [...document.querySelectorAll('[data-timeline-item]')]"
        ".find(el => { const r = el.getBoundingClientRect(); return r.top > h - 100 && r.top < h + 100; }).id }"
    )
    before = page.locator(f"#{watched}").bounding_box()["y"]
    log(task, {"kind": "message", "content": "new while away 1"})
    log(task, {"kind": "reasoning", "content": "new while away 2"})
    expect(pill).to_be_visible()
    expect(pill).to_have_text(re.compile(r"^\s*2 new"))
    assert abs(page.locator(f"#{watched}").bounding_box()["y"] - before) < 1  # nothing moved under the reader
    expect(page.locator(ITEMS).first).to_contain_text("new while away 2")  # still added at the top
    pill.click()
    page.wait_for_function("taskdeskTimeline.atTop()")
    expect(pill).to_be_hidden()
    expect(page.locator(ITEMS).first).to_be_in_viewport()


def test_elapsed_time_ticks_while_the_task_runs(new_session, task):
    services.task_update(task=task, actor=AGENT, status="executing")
    (call,) = log(task, {"kind": "tool_call", "tool_name": "slow_lookup"})
    page = new_session("alice")
    page.goto(detail_url(task))
    duration = page.locator("#panel-status .running-duration time[data-elapsed]")
    expect(duration).to_have_text(re.compile(r"^\d+ s$"))
    first = duration.inner_text()
    ticked = "t => document.querySelector('#panel-status .running-duration time').textContent !== t"
    page.wait_for_function(ticked, arg=first)
    running = page.locator(f"#tl-a-{call.pk} .tl-outcome.is-running time[data-elapsed]")
    expect(running).to_have_text(re.compile(r"^\d+ s$"))
    # Finished: the duration stops ticking and the call says it got no result.
    services.task_update(task=task, actor=AGENT, status="completed")
    expect(page.locator("#panel-status .running-duration")).to_have_count(0)
    expect(page.locator("#panel-status")).not_to_contain_text("running")


def test_times_read_as_human_times_with_the_exact_time_on_hover(new_session, task):
    log(task, {"kind": "message", "content": "hello"})
    page = new_session("alice")
    page.goto(detail_url(task))
    stamp = page.locator(f"{ITEMS} .tl-meta time").first
    stamp.hover()
    expect(stamp).to_have_text("just now")
    expect(stamp).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    expect(stamp).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"))
    text = page.locator("body").inner_text()
    assert not re.search(r"\d\d:\d\d:\d\d\.\d{3,}", text) and not re.search(r"\d\d:\d\d:\d\d\.\d{3,}", page.content())


def test_scrolling_pages_down_to_the_first_event(new_session, task):
    for priority in range(90):
        services.task_update(task=task, actor=AGENT, priority=priority)
    page = new_session("alice")
    page.goto(detail_url(task))
    expect(page.locator(ITEMS)).to_have_count(40)
    while page.locator("#timeline-more").count():
        page.locator("#timeline-more").scroll_into_view_if_needed()
        page.wait_for_timeout(150)
    expect(page.locator(".timeline-start")).to_be_visible()
    expect(page.locator(ITEMS)).to_have_count(91)
    expect(page.locator(ITEMS).last).to_contain_text("Created the task")
    expect(page.locator(ITEMS).last).to_contain_text("refund-agent")


def test_the_activity_log_page_is_live_and_its_filters_are_its_url(new_session, task):
    log(task, {"kind": "message", "content": "Customer wants a refund"})
    page = new_session("alice")
    page.goto(detail_url(task) + "activity/")
    wait_live(page)
    page.select_option("select[name=kind]", "tool_call")
    page.wait_for_url(re.compile(r"kind=tool_call"))
    expect(page.locator(".timeline-empty")).to_have_text("No entries match.")
    page.fill("input[name=q]", "refund")
    page.wait_for_url(re.compile(r"kind=tool_call&q=refund"))
    page.reload()
    expect(page.locator("select[name=kind]")).to_have_value("tool_call")
    expect(page.locator("input[name=q]")).to_have_value("refund")
    wait_live(page)
    # Live, through the task's socket: only what matches the filters joins the list.
    log(
        task,
        {"kind": "message", "content": "A refund message (not a tool call)"},
        {"kind": "tool_call", "tool_name": "refund_order", "tool_arguments": {"amount": 12}},
    )
    services.task_update(task=task, actor=AGENT, title="refund status change (an event)")
    expect(page.locator(ITEMS).first).to_contain_text("refund_order")
    expect(page.locator(".timeline-empty")).to_have_count(0)
    page.wait_for_timeout(500)
    expect(page.locator(ITEMS)).to_have_count(1)
    assert ActivityEntry.objects.filter(task=task).count() == 3


def test_a_request_for_a_person_and_its_decision_are_on_the_timeline(new_session, task):
    services.task_update(task=task, actor=AGENT, status="executing")
    services.hitl_request(task=task, actor=AGENT, question="Refund 345 EUR for order 1042?", payload={"amount": 345})
    asked = TaskEvent.objects.get(task=task, type=EventType.HITL_REQUESTED)
    page = new_session("alice")
    page.goto(detail_url(task))
    wait_live(page)
    first = page.locator(ITEMS).first
    expect(first).to_have_id(f"tl-e-{asked.pk}")
    expect(first.locator(".tl-kind")).to_have_text("Asked a person")
    expect(first.locator(".tl-question")).to_have_text("Refund 345 EUR for order 1042?")
    expect(first.locator(".tl-move .badge-paused")).to_be_visible()

    # Decided on this page: the decision's entry arrives on top, with who, the move and the reason.
    page.locator("#panel-hitl [data-reason-input]").fill("Over the refund limit")
    page.locator("#panel-hitl [data-reject]").click()
    expect(page.locator(".undo-entry")).to_contain_text("Rejecting")
    decided = page.locator(ITEMS).first
    expect(decided.locator(".tl-kind")).to_have_text("Rejected", timeout=12_000)
    (event,) = TaskEvent.objects.filter(task=task, type=EventType.HITL_DECIDED)
    expect(decided).to_have_id(f"tl-e-{event.pk}")
    expect(decided.locator(".tl-actor")).to_contain_text("alice")
    expect(decided.locator(".tl-move .badge-paused")).to_be_visible()
    expect(decided.locator(".tl-move .badge-failed")).to_be_visible()
    assert changes(decided)["reason"] == "Over the refund limit"
    expect(page.locator(ITEMS).nth(1)).to_have_id(f"tl-e-{asked.pk}")  # the request stays, below it
    page.reload()
    expect(page.locator(ITEMS).first.locator(".tl-kind")).to_have_text("Rejected")
    expect(page.locator(ITEMS).nth(1).locator(".tl-kind")).to_have_text("Asked a person")


def test_a_tool_call_that_succeeded_shows_its_result_and_how_long_it_took(new_session, task):
    call, result = log(
        task,
        {"kind": "tool_call", "tool_name": "lookup_order", "tool_call_id": "c1", "tool_arguments": {"order": 1042}},
        {"kind": "tool_result", "tool_name": "lookup_order", "tool_call_id": "c1", "tool_output": {"ok": True,
         "status": "shipped"}},
    )  # fmt: skip
    ActivityEntry.objects.filter(pk=result.pk).update(created_at=call.created_at + timedelta(seconds=2.5))
    services.task_update(task=task, actor=AGENT, status="executing")
    page = new_session("alice")
    page.goto(detail_url(task))
    wait_live(page)
    paired = page.locator(f"#tl-a-{call.pk}")
    expect(paired.locator(".tl-outcome")).to_have_text("✓ ok")
    expect(paired.locator(".tl-duration")).to_have_text("2.5 s")
    expect(paired.locator(".tl-duration")).to_have_attribute("title", "From the call to its result")
    expect(paired).to_contain_text('"status": "shipped"')  # the result, with its call
    expect(page.locator(f"#tl-a-{result.pk}")).to_have_count(0)  # not again on its own
    expect(paired).not_to_have_class(re.compile(r"\bis-failed\b"))

    # Live: a call shows it is running; its result turns the same entry into a paired, timed one.
    (live_call,) = log(task, {"kind": "tool_call", "tool_name": "refund_order", "tool_call_id": "c2"})
    running = page.locator(f"#tl-a-{live_call.pk}")
    expect(running.locator(".tl-outcome")).to_contain_text("running")
    expect(running.locator(".tl-duration")).to_have_count(0)
    time.sleep(1.2)
    (live_result,) = log(task, {"kind": "tool_result", "tool_call_id": "c2", "tool_output": {"ok": True}})
    expect(running.locator(".tl-outcome")).to_have_text("✓ ok")
    expect(running.locator(".tl-duration")).to_have_text(re.compile(r"^[1-9]\.\d s$"))
    expect(page.locator(f"#tl-a-{live_result.pk}")).to_have_count(0)


def test_an_edit_of_an_object_field_is_shown_key_by_key(new_session, task):
    services.task_update(
        task=task, actor=AGENT, metadata={"customer": {"id": "c-1", "tier": "gold"}, "channel": "chat", "lang": "en"}
    )
    page = new_session("alice")
    page.goto(detail_url(task))
    wait_live(page)
    # Merged by the agent while the page is open: one row per changed key, nested keys by dotted path.
    services.task_update(
        task=task, actor=AGENT, metadata={"customer": {"id": "c-9", "tier": "gold"}, "channel": "email", "refund": 40}
    )
    edited = TaskEvent.objects.filter(task=task).latest("id")
    edit = page.locator(ITEMS).first
    expect(edit).to_have_id(f"tl-e-{edited.pk}")  # the first edit's entry (3 keys added) was on top until now
    expect(edit.locator(".tl-kind")).to_have_text("Changed metadata")
    expect(edit.locator(".diff-field")).to_contain_text("metadata · 3 keys changed")
    rows = edit.locator("tr.diff-key")
    expect(rows).to_have_count(3)

    def shown():
        return rows.evaluate_all(
            "rows => rows.map(r => [r.querySelector('th').innerText.trim(),"
            " r.querySelector('del')?.innerText ?? null, r.querySelector('ins')?.innerText ?? null])"
        )

    expected = [["~ channel", "chat", "email"], ["~ customer.id", "c-1", "c-9"], ["+ refund", None, "40"]]
    assert shown() == expected
    assert "tier" not in edit.inner_text() and "lang" not in edit.inner_text()  # unchanged keys are not listed
    page.reload()
    assert shown() == expected


def test_the_task_page_screenshot(new_session, acme, alice):
    """docs/screenshot-detail.png: a task's "now" after a person approved an amended payload; the
    timeline with paired tool calls and their durations, a checklist's per-item diff, the decision."""
    agent = services.Actor.system("billing-agent")
    plan = [
        {"id": "step-1", "title": "Read the payment", "completed": True},
        {"id": "step-2", "title": "Find the cause", "completed": False},
        {"id": "step-3", "title": "Retry the charge", "completed": False},
    ]

    def check(*done):
        return {"tasks": [{**step, "completed": step["completed"] or step["id"] in done} for step in plan]}

    task, _ = services.task_create(
        organization=acme, actor=agent, id="pay-6364", agent="billing-agent", source="schedule", priority=90,
        title="Investigate failed payment pay_6364f9799972", deep_planning=check(),
        input_text="The £50.69 charge for Edsger Dijkstra's Business plan failed twice. Find out why and fix it.",
        metadata={"customer": "cus_2291", "plan": "business"},
    )  # fmt: skip
    services.task_update(task=task, actor=agent, status="executing")

    def say(*entries):
        return services.append_activity(task=task, actor=agent, entries=list(entries))

    def call(call_id, tool, arguments, output, seconds):
        (entry,) = say({"kind": "tool_call", "tool_name": tool, "tool_call_id": call_id, "tool_arguments": arguments})
        time.sleep(seconds)  # how long the call takes, as the timeline measures it
        say({"kind": "tool_result", "tool_name": tool, "tool_call_id": call_id, "tool_output": output})
        return entry

    call("call_1", "lookup_payment", {"payment_id": "pay_6364f9799972"},
         {"ok": True, "payment_status": "failed", "decline_code": "soft_decline", "attempts": 2}, 0.4)  # fmt: skip
    say({"kind": "reasoning", "content": "A soft decline twice: the bank usually accepts a retry after 24 h."})
    services.task_update(task=task, actor=agent, deep_planning=check("step-2"))
    proposed = {"action": "retry_charge", "amount": 50.69, "currency": "GBP", "payment_id": "pay_6364f9799972"}
    hitl = services.hitl_request(
        task=task, actor=agent, question="Retry the £50.69 charge on Edsger Dijkstra's card ending 0243?",
        details="Two earlier attempts failed with a soft decline.", payload=proposed,
    )  # fmt: skip
    services.hitl_decide(
        hitl=hitl, actor=services.Actor.for_user(alice), decision="approved", comment="customer agreed by phone",
        amended_payload={**proposed, "notify": True},
    )  # fmt: skip
    retry = call("call_2", "retry_charge", {"amount": 50.69, "currency": "GBP", "notify": True},
                 {"ok": True, "charge_id": "ch_3QxB81", "status": "succeeded"}, 1.3)  # fmt: skip
    services.task_update(task=task, actor=agent, deep_planning=check("step-2", "step-3"))

    page = new_session("alice")
    page.goto(detail_url(task))
    wait_live(page)
    first = page.locator(ITEMS).first
    expect(first.locator(".tl-kind")).to_have_text("Changed deep planning")
    assert changes(first)["~ tasks[step-3].completed"] == "false → true"
    expect(page.locator(f"#tl-a-{retry.pk} .tl-outcome")).to_have_text("✓ ok")
    expect(page.locator(f"#tl-a-{retry.pk} .tl-duration")).to_have_text(re.compile(r"^1\.\d s$"))
    expect(page.locator(ITEMS).nth(2).locator(".tl-kind")).to_have_text("Approved")
    expect(page.locator("#panel-hitl .hitl-diff tbody tr")).to_have_count(1)  # notify added
    screenshot(page, "screenshot-detail.png")
