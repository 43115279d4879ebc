"""The task page's "now" in a real Chromium (issue 12): the newest-first timeline, live entries on
top ("No messages, tool calls or reasoning yet." goes), the "N new" pill while scrolled away
with nothing moving under the reader, a cue on what changed, elapsed time ticking, human times
with the exact time on hover, pages down to the first event; the activity log page live, with
its filters in the URL.

Changes are written by this process (the agent's side) and reach the server's sockets through
Redis, as an agent's would."""

import re

import pytest
from playwright.sync_api import expect

from tasks_app import services
from tasks_app.models import ActivityEntry, EventType, TaskEvent
from tests.browser.conftest import wait_live

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
