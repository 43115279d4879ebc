"""The task page's timeline: activity and events newest first, tool calls with their results,
failures, per-key JSON diffs, human times, keyset pages down to the first event, escaping."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tasks_app import selectors, services
from tasks_app.live.fragments import render_event_html
from tasks_app.live.timeline import json_diff
from tasks_app.models import ActivityEntry, EventType, TaskEvent
from tasks_app.templatetags.taskdesk import task_url

HX = {"HTTP_HX_REQUEST": "true"}
ITEM_ID = re.compile(r'<li id="(tl-[ae]-\d+)"')
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"


@pytest.fixture
def task(acme, system_actor):
    return services.task_create(organization=acme, actor=system_actor, id="tl-1", title="Refund order 7")[0]


@pytest.fixture
def signed_in(client, alice):
    client.force_login(alice)
    return client


def page_html(client, task) -> str:
    html = client.get(task_url(task)).content.decode()
    return html[html.index('id="timeline-entries"') :]


def item_html(html: str, dom_id: str) -> str:
    start = html.index(f'<li id="{dom_id}"')
    return html[start : html.index("</li>", start)]


def log(task, actor, *entries):
    return services.append_activity(task=task, actor=actor, entries=list(entries))


def test_it_leads_with_the_newest_across_activity_and_events(signed_in, task, system_actor, alice):
    (hello,) = log(task, system_actor, {"kind": "message", "role": "user", "content": "hello"})
    services.task_update(task=task, actor=system_actor, status="executing")
    (thought,) = log(task, system_actor, {"kind": "reasoning", "content": "thinking"})
    services.task_update(task=task, actor=services.Actor.for_user(alice), priority=90)
    events = list(TaskEvent.objects.filter(task=task).exclude(type=EventType.ACTIVITY).order_by("id"))
    html = page_html(signed_in, task)
    expected = [
        f"tl-e-{events[2].pk}",  # alice's priority
        f"tl-a-{thought.pk}",
        f"tl-e-{events[1].pk}",  # executing
        f"tl-a-{hello.pk}",
        f"tl-e-{events[0].pk}",  # created
    ]
    assert ITEM_ID.findall(html) == expected
    status = item_html(html, f"tl-e-{events[1].pk}")
    assert "Changed the status" in status and "badge-pending" in status and "badge-executing" in status
    assert "No messages, tool calls or reasoning yet." not in html and "The task's first event." in html


def test_no_activity_yet_says_so_above_the_events(signed_in, task):
    html = page_html(signed_in, task)
    assert '<li class="timeline-empty" data-timeline-empty>No messages, tool calls or reasoning yet.</li>' in html
    assert "Created the task" in html


def test_a_call_shows_its_result_duration_and_success(signed_in, task, system_actor):
    (call,) = log(task, system_actor, {"kind": "tool_call", "tool_name": "lookup", "tool_call_id": "c1",
                                       "tool_arguments": {"order": 7}})  # fmt: skip
    ActivityEntry.objects.filter(pk=call.pk).update(created_at=call.created_at.replace(microsecond=0))
    (result,) = log(task, system_actor, {"kind": "tool_result", "tool_name": "lookup", "tool_call_id": "c1",
                                         "tool_output": {"ok": True, "status": "shipped"}})  # fmt: skip
    ActivityEntry.objects.filter(pk=result.pk).update(
        created_at=call.created_at.replace(microsecond=0) + __import__("datetime").timedelta(seconds=2.5)
    )
    html = page_html(signed_in, task)
    assert f'id="tl-a-{result.pk}"' not in html  # shown with its call, not again
    item = item_html(html, f"tl-a-{call.pk}")
    assert '<span class="tl-outcome is-ok">✓ ok</span>' in item
    assert '<span class="tl-duration" title="From the call to its result">2.5 s</span>' in item
    assert "&quot;order&quot;: 7" in item and "&quot;status&quot;: &quot;shipped&quot;" in item
    assert "is-failed" not in item


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"ok": False}, None),
        ({"ok": False, "error": "card declined"}, "card declined"),
        ({"status": "failed", "message": "no stock"}, "no stock"),
        ({"error": {"code": 500, "message": "upstream down"}}, "upstream down"),
    ],
)
def test_a_failed_result_looks_like_a_failure(signed_in, task, system_actor, output, message):
    call, _ = log(
        task,
        system_actor,
        {"kind": "tool_call", "tool_name": "refund"},
        {"kind": "tool_result", "tool_name": "refund", "tool_output": output},
    )
    item = item_html(page_html(signed_in, task), f"tl-a-{call.pk}")
    assert "tl-item tl-activity tl-tool_call is-failed" in item
    assert '<span class="tl-outcome is-failed">✕ failed</span>' in item and "✓ ok" not in item
    if message:
        assert f'<p class="tl-failure">{message}</p>' in item


def test_a_lone_failed_result_is_marked_too(signed_in, task, system_actor):
    (result,) = log(task, system_actor, {"kind": "tool_result", "tool_name": "x", "tool_output": {"ok": False}})
    item = item_html(page_html(signed_in, task), f"tl-a-{result.pk}")
    assert "is-failed" in item and "✕ failed" in item


def test_an_unanswered_call_runs_while_the_task_is_active_and_has_no_result_after(signed_in, task, system_actor):
    services.task_update(task=task, actor=system_actor, status="executing")
    (call,) = log(task, system_actor, {"kind": "tool_call", "tool_name": "slow"})
    item = item_html(page_html(signed_in, task), f"tl-a-{call.pk}")
    assert '<span class="tl-outcome is-running">running <time datetime="' in item and "data-elapsed" in item
    services.task_update(task=task, actor=system_actor, status="failed", status_reason="gave up")
    item = item_html(page_html(signed_in, task), f"tl-a-{call.pk}")
    assert '<span class="tl-outcome is-missing">no result</span>' in item and "data-elapsed" not in item


def test_json_fields_are_diffed_per_key(signed_in, task, alice):
    actor = services.Actor.for_user(alice)
    services.task_update(task=task, actor=actor, metadata={"customer": "c-1", "tier": "gold", "n": {"a": 1, "b": 2}})
    services.task_update(task=task, actor=actor, metadata={"tier": "silver", "region": "eu", "n": {"a": 1, "b": 3}})
    services.task_update(task=task, actor=actor, metadata={"customer": "c-1"}, metadata_replace=True)
    events = list(TaskEvent.objects.filter(task=task, changes__contains=["metadata"]).order_by("id"))
    html = page_html(signed_in, task)
    merged = item_html(html, f"tl-e-{events[1].pk}")
    assert 'metadata <span class="muted">· 3 keys changed</span>' in merged
    assert re.search(r'diff-added diff-key"><th scope="row"><span class="diff-op" title="added">\+</span> region</th>'
                     r"<td><ins>eu</ins>", merged)  # fmt: skip
    assert re.search(r"diff-changed diff-key.*?~</span> tier</th><td><del>gold</del> .*?<ins>silver</ins>", merged)
    assert re.search(r"~</span> n\.b</th><td><del>2</del> .*?<ins>3</ins>", merged)  # nested keys by path
    assert "n.a" not in merged  # unchanged
    replaced = item_html(html, f"tl-e-{events[2].pk}")
    assert "3 keys changed, 1 unchanged" in replaced
    assert re.search(r"diff-removed diff-key.*?−</span> region</th><td><del>eu</del> .*?removed", replaced)


def test_a_json_result_and_a_decisions_amended_payload_are_diffed_per_key(signed_in, task, system_actor, alice):
    services.task_update(task=task, actor=system_actor, status="executing", result='{"answer": 1, "unit": "EUR"}')
    hitl = services.hitl_request(task=task, actor=system_actor, question="Refund?", payload={"amount": 345, "to": "c"})
    amended = {"amount": 300, "to": "c"}
    services.hitl_decide(hitl=hitl, actor=services.Actor.for_user(alice), approve=True, amended_payload=amended)
    services.task_update(task=task, actor=system_actor, result='{"answer": 2, "unit": "EUR"}')
    html = page_html(signed_in, task)
    result_event = TaskEvent.objects.filter(task=task, changes__contains=["result"]).order_by("-id").first()
    result_item = item_html(html, f"tl-e-{result_event.pk}")
    assert re.search(r"~</span> answer</th><td><del>1</del> .*?<ins>2</ins>", result_item)
    decided = TaskEvent.objects.get(task=task, type=EventType.HITL_DECIDED)
    item = item_html(html, f"tl-e-{decided.pk}")
    assert "Approved" in item and "alice" in item
    assert '<th scope="row">reason</th>' not in item  # no reason given: no empty row
    assert 'payload <span class="muted">· 1 key changed, 1 unchanged</span>' in item
    assert re.search(r"~</span> amount</th><td><del>345</del> .*?<ins>300</ins>", item)
    asked = item_html(html, f"tl-e-{TaskEvent.objects.get(task=task, type=EventType.HITL_REQUESTED).pk}")
    assert "Asked a person" in asked and '<p class="tl-question">Refund?</p>' in asked


def test_json_diff_rows():
    rows = json_diff({"a": 1, "b": {"c": [1], "d": 2}, "gone": True}, {"a": 1, "b": {"c": [1, 2], "d": 2}, "new": None})
    assert [(r.name, r.op) for r in rows] == [("b.c", "changed"), ("gone", "removed"), ("new", "added")]
    assert rows[0].before.text == "[1]" and rows[0].after.text == "[1, 2]"
    assert [(r.name, r.op) for r in json_diff(1, 2)] == [("value", "changed")]


def test_times_are_human_with_the_exact_time_on_hover_and_no_microseconds(signed_in, task, system_actor):
    log(task, system_actor, {"kind": "message", "content": "hi"})
    services.task_update(task=task, actor=system_actor, status="executing")
    html = signed_in.get(task_url(task)).content.decode()
    assert not re.search(r"\d{2}:\d{2}:\d{2}\.\d{3,6}", html)  # no raw ISO with microseconds anywhere
    stamps = re.findall(r'<time datetime="([^"]+)" data-relative title="([^"]+)">([^<]+)</time>', html)
    assert stamps and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", when) for when, _, _ in stamps)
    assert all(title.endswith(" UTC") and text in ("just now", "in a moment") for _, title, text in stamps)
    started = item_html(html, f"tl-e-{TaskEvent.objects.filter(task=task).order_by('-id').first().pk}")
    assert "started_at" in started and "<time datetime=" in started  # a time field reads as a time


def test_a_running_task_shows_its_elapsed_time(signed_in, task, system_actor):
    html = signed_in.get(task_url(task)).content.decode()
    assert "<dt>Duration</dt><dd>—</dd>" in html  # pending: not started
    services.task_update(task=task, actor=system_actor, status="executing")
    html = signed_in.get(task_url(task)).content.decode()
    assert re.search(r'<dt>Duration</dt><dd><span class="running-duration"><time datetime="[^"]+Z" data-elapsed', html)
    services.task_update(task=task, actor=system_actor, status="completed")
    html = signed_in.get(task_url(task)).content.decode()
    assert "data-elapsed" not in html.split('id="timeline-entries"')[0]


def walk(client, task) -> tuple[list[str], str]:
    """Every item id of the timeline, following its pages as the browser does; and the last page."""
    html = page_html(client, task)
    ids = ITEM_ID.findall(html)
    pages = 1
    while match := re.search(r'hx-get="(/tasks/[^"]+/timeline/\?before=[^"]+)"', html):
        html = client.get(match.group(1).replace("&amp;", "&"), **HX).content.decode()
        assert "<html" not in html and "<section" not in html
        ids += ITEM_ID.findall(html)
        pages += 1
    return ids, html


def test_pages_reach_the_very_first_event_each_item_once(signed_in, task, system_actor):
    for i in range(60):
        log(task, system_actor, {"kind": "message", "content": f"m{i}"}, {"kind": "tool_call", "tool_name": "t"},
            {"kind": "tool_result", "tool_name": "t"})  # fmt: skip
        services.task_update(task=task, actor=system_actor, priority=i)
    ids, last = walk(signed_in, task)
    activity = ActivityEntry.objects.filter(task=task, call__isnull=True).order_by("-id").values_list("pk", flat=True)
    events = TaskEvent.objects.filter(task=task).exclude(type=EventType.ACTIVITY).order_by("-id")
    assert sorted(ids) == sorted([f"tl-a-{pk}" for pk in activity] + [f"tl-e-{e.pk}" for e in events])
    assert len(ids) == len(set(ids)) == 60 * 3 + 1
    assert ids[-1] == f"tl-e-{events.last().pk}"  # the created event closes the timeline
    assert "Created the task" in last and "The task's first event." in last and "test" in last


def test_an_older_page_costs_the_same_queries_for_5_or_5000(signed_in, acme, system_actor):
    from tests.test_views_detail import _grow

    counts = []
    for n in (5, 5000):
        task, _ = services.task_create(organization=acme, actor=system_actor, id=f"grow-{n}")
        _grow(task, n)
        first = selectors.timeline_page(task, limit=3)
        url = task_url(task, "task_timeline") + f"?before={first.next_cursor}"
        signed_in.get(url, **HX)
        with CaptureQueriesContext(connection) as ctx:
            assert signed_in.get(url, **HX).status_code == 200
        counts.append(len(ctx))
    assert counts[0] == counts[1] == 6  # session, user, memberships, the task, its activity, its events


def test_a_bad_cursor_is_400_and_outsiders_get_404(signed_in, client, task, charlie):
    url = task_url(task, "task_timeline")
    assert signed_in.get(url + "?before=1.x", **HX).status_code == 400
    assert signed_in.get(url + "?before=-.5", **HX).status_code == 200
    client.force_login(charlie)
    assert client.get(url + "?before=-.5", **HX).status_code == 404


def test_a_viewer_reads_the_timeline(client, bob, task, system_actor):
    log(task, system_actor, {"kind": "message", "content": "for bob"})
    client.force_login(bob)
    assert "for bob" in page_html(client, task)


def test_hostile_text_in_every_kind_of_item_is_shown_as_text(signed_in, task, system_actor, alice):
    actor = services.Actor.system(XSS)
    log(
        task,
        actor,
        {"kind": "message", "role": XSS[:20], "content": XSS},
        {"kind": "reasoning", "content": XSS},
        {"kind": "tool_call", "tool_name": XSS, "tool_call_id": XSS[:50], "tool_arguments": {XSS: XSS}},
        {"kind": "tool_result", "tool_name": XSS, "tool_call_id": XSS[:50], "content": XSS,
         "tool_output": {"ok": False, "error": XSS, XSS: [XSS] * 30}},
        {"kind": "tool_result", "tool_name": "lone", "tool_output": {"error": {"message": XSS}}},
    )  # fmt: skip
    services.task_update(task=task, actor=actor, title=XSS, metadata={XSS: XSS, "long": XSS * 20}, status="executing",
                         status_reason=XSS, result=XSS, params={XSS: {XSS: XSS}})  # fmt: skip
    hitl = services.hitl_request(task=task, actor=actor, question=XSS, payload={XSS: XSS})
    services.hitl_decide(hitl=hitl, actor=services.Actor.for_user(alice), approve=False, reason=XSS, comment=XSS)
    html = signed_in.get(task_url(task)).content.decode()
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    timeline = page_html(signed_in, task)
    assert timeline.count("&lt;script&gt;alert(1)&lt;/script&gt;") > 15
    # The same items pushed over the socket, for every event of the task.
    for event in TaskEvent.objects.filter(task=task):
        pushed = render_event_html(event, page="detail", can_edit=True)
        assert "<script>alert(1)" not in pushed and "<img src=x" not in pushed, event.type
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pushed, event.type


def test_a_long_value_folds_and_a_duration_reads_as_one(signed_in, task, system_actor):
    services.task_update(task=task, actor=system_actor, status="executing", metadata={"notes": "x" * 400})
    services.task_update(task=task, actor=system_actor, status="completed", duration=4000)
    html = page_html(signed_in, task)
    assert re.search(r'<ins><details class="tl-long"><summary>x{159}…</summary><pre>x{400}</pre></details></ins>', html)
    assert "<ins>1 h 06 m</ins>" in html


def test_an_emptied_text_reads_empty_and_a_creation_lists_only_what_it_set(signed_in, acme, system_actor):
    created = services.task_create(
        organization=acme, actor=system_actor, id="tl-empty", title="Sparse", source="", metadata={}
    )[0]
    services.task_update(task=created, actor=system_actor, result="draft")
    services.task_update(task=created, actor=system_actor, result="")
    html = page_html(signed_in, created)
    first = item_html(html, f"tl-e-{TaskEvent.objects.get(task=created, type=EventType.CREATED).pk}")
    assert '<th scope="row">title</th>' in first
    assert '<th scope="row">source</th>' not in first and "metadata" not in first  # created empty: nothing said
    emptied = TaskEvent.objects.filter(task=created, changes__contains=["result"]).order_by("-id").first()
    item = item_html(html, f"tl-e-{emptied.pk}")
    assert re.search(r'<del>draft</del> .*?<ins><span class="tl-empty">empty</span></ins>', item), item


def test_a_waiting_question_leads_and_a_decided_one_sits_with_the_fields(signed_in, task, system_actor, alice):
    services.task_update(task=task, actor=system_actor, status="executing")
    hitl = services.hitl_request(task=task, actor=system_actor, question="Refund?")
    html = signed_in.get(task_url(task)).content.decode()
    assert html.index('id="panel-hitl"') < html.index('id="panel-timeline"') < html.index('id="panel-status"')
    services.hitl_decide(hitl=hitl, actor=services.Actor.for_user(alice), approve=True)
    html = signed_in.get(task_url(task)).content.decode()
    assert html.count('id="panel-hitl"') == 1
    assert html.index('id="panel-timeline"') < html.index('id="panel-status"') < html.index('id="panel-hitl"')


def test_a_plans_steps_are_diffed_per_step_id():
    before = {
        "tasks": [{"id": "s-1", "title": "Look up", "done": False}, {"id": "s-2", "title": "Refund", "done": False}]
    }
    after = {
        "tasks": [
            {"id": "s-1", "title": "Look up", "done": True},
            {"id": "s-2", "title": "Refund", "done": False},
            {"id": "s-3", "title": "Tell the customer", "done": False},
        ]
    }
    rows = json_diff(before, after)
    assert [(r.name, r.op) for r in rows] == [("tasks[s-1].done", "changed"), ("tasks[s-3]", "added")]
    assert (rows[0].before.text, rows[0].after.text) == ("false", "true")
    # Without distinct ids a list is one value, as before.
    plain = json_diff({"tags": ["a", "b"]}, {"tags": ["a", "c"]})
    assert [(r.name, r.op, r.after.text) for r in plain] == [("tags", "changed", '["a", "c"]')]
    twins = json_diff({"l": [{"id": 1}, {"id": 1}]}, {"l": [{"id": 1}]})
    assert [(r.name, r.op) for r in twins] == [("l", "changed")]
