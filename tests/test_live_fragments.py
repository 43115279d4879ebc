"""live.fragments.render_event_html: the out-of-band fragments pushed to list and detail pages."""

import re

import pytest

from tasks_app import selectors, services
from tasks_app.live.fragments import render_event_html
from tasks_app.models import EventType, Task, TaskEvent


def top_level_ids(html: str) -> list[str]:
    """Ids of the elements that carry hx-swap-oob (each pushed element must have one)."""
    return re.findall(r'<[a-z]+ id="([^"]+)"[^>]*hx-swap-oob=', html)


@pytest.fixture
def task(acme, agent, system_actor):
    return services.task_create(organization=acme, actor=system_actor, id="lf-1", title="Live one", agent=agent)[0]


def last_event(task) -> TaskEvent:
    return TaskEvent.objects.filter(task=task).order_by("-id").first()


def test_created_event_on_the_list_adds_a_row_at_the_top(task):
    event = last_event(task)
    assert event.type == EventType.CREATED
    html = render_event_html(event, page="list", can_edit=True)
    assert html.lstrip().startswith(f'<tbody id="task-new-{event.pk}" hx-swap-oob="afterbegin:#task-rows">')
    assert f'<tr id="task-{task.pk}"' in html and 'data-created="1"' in html
    assert f'id="status-counts-{task.organization_id}"' in html
    meta = (
        f'<meta id="last-event-id" data-event-id="{event.pk}" data-org-id="{task.organization_id}" hx-swap-oob="true">'
    )
    assert meta in html
    assert 'data-status="pending"' in html and "support-bot" in html
    assert "data-list-news" not in html  # the default view inserts the row itself


def test_updated_event_on_the_list_replaces_the_row(task, system_actor):
    services.task_update(task=task, actor=system_actor, status="executing")
    event = last_event(task)
    html = render_event_html(event, page="list", can_edit=True)
    assert html.lstrip().startswith(f'<tr id="task-{task.pk}"')
    assert "data-created" not in html
    ids = top_level_ids(html)
    assert ids[0] == f"task-{task.pk}" and f"status-counts-{task.organization_id}" in ids and "last-event-id" in ids
    assert "badge-executing" in html and 'title="1 executing"' in html


def test_counts_are_recounted_only_when_an_event_can_change_them(task, system_actor, django_assert_num_queries):
    services.task_update(task=task, actor=system_actor, priority=77)
    html = render_event_html(last_event(task), page="list", can_edit=True)
    assert f'<tr id="task-{task.pk}"' in html and "status-counts" not in html
    services.append_activity(task=task, actor=system_actor, entries=[{"content": "step"}])
    event = last_event(task)
    with django_assert_num_queries(1):  # the task only; no row, no counts
        html = render_event_html(event, page="list", can_edit=True)
    assert top_level_ids(html) == ["last-event-id"]


def test_can_edit_controls_the_edit_forms(task, system_actor):
    event = last_event(task)
    assert "/tasks/acme/lf-1/status/" in render_event_html(event, page="list", can_edit=True)
    assert "/tasks/acme/lf-1/status/" not in render_event_html(event, page="list", can_edit=False)
    detail_editable = render_event_html(event, page="detail", can_edit=True)
    detail_readonly = render_event_html(event, page="detail", can_edit=False)
    assert "/tasks/acme/lf-1/result/" in detail_editable and "/tasks/acme/lf-1/result/" not in detail_readonly
    assert "csrfmiddlewaretoken" not in detail_editable  # the token comes from <body hx-headers>


def test_detail_fragment_has_every_panel_and_the_timeline_item(task, alice):
    services.task_update(task=task, actor=services.Actor.for_user(alice), priority=90, result="done")
    event = last_event(task)
    html = render_event_html(event, page="detail", can_edit=True)
    ids = top_level_ids(html)
    for panel in (
        "task-header",
        "panel-status",
        "panel-result",
        "panel-metadata",
        "panel-params",
        "panel-priority",
        "panel-tokens",
        "panel-plan",
        f"timeline-new-{event.pk}",
        "last-event-id",
    ):
        assert panel in ids, panel
    assert f'<div id="timeline-new-{event.pk}" hx-swap-oob="afterbegin:#timeline-entries">' in html
    item = html[html.index(f'<li id="tl-e-{event.pk}"') :]
    assert "tl-live" in item[:200]  # marked as it arrives (the page's short visual cue)
    assert "alice" in item and "<ins>90</ins>" in item and "<ins>done</ins>" in item
    # A reviewer typing in the decision panel is not interrupted by unrelated changes...
    assert "panel-hitl" not in ids


def test_only_the_panels_an_event_changed_are_marked(task, system_actor):
    services.task_update(task=task, actor=system_actor, priority=91)
    html = render_event_html(last_event(task), page="detail", can_edit=True)
    marked = re.findall(r'<[a-z]+ id="([^"]+)" class="[^"]*live-changed', html)
    assert marked == ["panel-priority"]
    services.task_update(task=task, actor=system_actor, status="executing", metadata={"k": 1})
    html = render_event_html(last_event(task), page="detail", can_edit=True)
    marked = re.findall(r'<[a-z]+ id="([^"]+)" class="[^"]*live-changed', html)
    assert marked == ["task-header", "panel-status", "panel-metadata"]


def test_detail_fragment_renders_the_decision_panel_when_the_pause_changes(task, system_actor):
    services.task_update(task=task, actor=system_actor, status="executing")
    services.hitl_request(task=task, actor=system_actor, question="Refund <b>now</b>?")
    html = render_event_html(last_event(task), page="detail", can_edit=True)
    assert "panel-hitl" in top_level_ids(html)
    assert "Refund &lt;b&gt;now&lt;/b&gt;?" in html and 'id="hitl-badge"' in html


def test_activity_event_puts_its_entries_on_top_newest_first(task, system_actor):
    hello, call, result, thought = services.append_activity(
        task=task,
        actor=system_actor,
        entries=[
            {"kind": "message", "content": "hello"},
            {"kind": "tool_call", "tool_name": "lookup", "tool_call_id": "c1"},
            {"kind": "tool_result", "tool_name": "lookup", "tool_call_id": "c1", "tool_output": {"ok": True}},
            {"kind": "reasoning"},
        ],
    )
    event = last_event(task)
    html = render_event_html(event, page="detail", can_edit=False)
    assert f'<div id="timeline-new-{event.pk}" hx-swap-oob="afterbegin:#timeline-entries">' in html
    # The call and its result logged together are one item; newest first, as the timeline reads.
    assert re.findall(r'<li id="(tl-a-\d+)"', html) == [f"tl-a-{thought.pk}", f"tl-a-{call.pk}", f"tl-a-{hello.pk}"]
    assert "✓ ok" in html and f"tl-a-{result.pk}" not in html


def test_a_result_logged_later_replaces_its_call_where_it_is(task, system_actor):
    services.task_update(task=task, actor=system_actor, status="executing")
    (call,) = services.append_activity(task=task, actor=system_actor, entries=[{"kind": "tool_call", "tool_name": "t"}])
    pushed = render_event_html(last_event(task), page="detail", can_edit=True)
    assert "running" in pushed and "data-elapsed" in pushed
    (result,) = services.append_activity(
        task=task, actor=system_actor, entries=[{"kind": "tool_result", "tool_name": "t", "tool_output": {"ok": False}}]
    )
    event = last_event(task)
    html = render_event_html(event, page="detail", can_edit=True)
    assert f"timeline-new-{event.pk}" not in html  # nothing new on top
    assert re.search(rf'<li id="tl-a-{call.pk}" class="[^"]* is-failed tl-live" hx-swap-oob="true"', html)
    assert "✕ failed" in html and f"tl-a-{result.pk}" not in html


def test_deleted_task_row_is_marked(task, system_actor):
    services.task_delete(task=task, actor=system_actor)
    event = last_event(task)
    html = render_event_html(event, page="list", can_edit=True)
    assert "is-deleted" in html and "/tasks/acme/lf-1/status/" not in html
    detail = render_event_html(event, page="detail", can_edit=True)
    assert "deleted" in detail and "/tasks/acme/lf-1/result/" not in detail


def test_the_render_is_the_same_partial_as_the_page(client, alice, task):
    client.force_login(alice)
    page = client.get("/tasks/").content.decode()
    pushed = render_event_html(last_event(task), page="list", can_edit=True)
    start = f'<tr id="task-{task.pk}"'
    row_in_page = page[page.index(start) : page.index("</tr>", page.index(start))]
    row_pushed = pushed[pushed.index(start) : pushed.index("</tr>", pushed.index(start))]
    # Only the created marker differs.
    assert row_pushed.replace(' data-created="1"', "") == row_in_page


def test_unknown_page_is_refused(task):
    with pytest.raises(ValueError):
        render_event_html(last_event(task), page="inbox", can_edit=True)


def test_render_makes_a_fixed_number_of_queries(acme, system_actor, django_assert_max_num_queries):
    task, _ = services.task_create(organization=acme, actor=system_actor, id="q-1")
    for i in range(30):
        services.task_update(task=task, actor=system_actor, priority=i)
    event = last_event(task)
    with django_assert_max_num_queries(3):
        render_event_html(event, page="list", can_edit=True)
    with django_assert_max_num_queries(3):
        render_event_html(event, page="detail", can_edit=True)
    services.append_activity(task=task, actor=system_actor, entries=[{"kind": "message"}] * 100)
    event = last_event(task)
    with django_assert_max_num_queries(3):  # the task, its pending request, the entries (with calls and results)
        render_event_html(event, page="detail", can_edit=True)


# --- A list page with a view (filters or a sort): the server says whether the task is in it ---


def news(html: str) -> dict[str, str]:
    """The data-* of the pushed data-list-news marker (what the page counts as "N new")."""
    marker = re.search(r"<template data-list-news([^>]*)></template>", html).group(1)
    return dict(re.findall(r'data-([a-z]+)="([^"]*)"', marker))


def test_a_view_is_told_whether_the_task_is_in_it(task, system_actor):
    event = last_event(task)
    html = render_event_html(event, page="list", can_edit=True, view="hitl=yes")
    # Not in the view: not news, and no row is inserted for it.
    assert news(html) == {"view": "hitl=yes", "task": f"task-{task.pk}", "match": "0", "moved": "1"}
    assert "task-new-" not in html and "afterbegin" not in html
    assert 'class="task-row is-stale"' in html  # where the page shows it, it is marked as left
    services.task_update(task=task, actor=system_actor, status="executing")
    services.hitl_request(task=task, actor=system_actor, question="Refund?")
    html = render_event_html(last_event(task), page="list", can_edit=True, view="hitl=yes")
    assert news(html)["match"] == "1" and "is-stale" not in html and "no longer matches" not in html
    assert top_level_ids(html)[0] == f"task-{task.pk}"  # the row stays first in the frame


def test_a_sorted_view_is_told_when_a_change_moves_the_task(task, system_actor):
    services.task_update(task=task, actor=system_actor, priority=80)
    event = last_event(task)
    assert news(render_event_html(event, page="list", can_edit=True, view="sort=-updated"))["moved"] == "1"
    assert news(render_event_html(event, page="list", can_edit=True, view="sort=-priority"))["moved"] == "1"
    assert news(render_event_html(event, page="list", can_edit=True, view="sort=title"))["moved"] == "0"
    html = render_event_html(event, page="list", can_edit=True, view="sort=-updated")
    # The row carries the cursor of the view's own sort.
    fresh = selectors.task_for_fragment(task.pk)
    assert f'data-cursor="{selectors.task_cursor(fresh, "-updated")}"' in html and news(html)["match"] == "1"


def test_a_view_render_adds_one_query(task, system_actor, django_assert_max_num_queries):
    services.task_update(task=task, actor=system_actor, priority=3)
    event = last_event(task)
    with django_assert_max_num_queries(3):
        render_event_html(event, page="list", can_edit=True)
    with django_assert_max_num_queries(4):  # the view's filter, asked of this one task
        render_event_html(event, page="list", can_edit=True, view="status=executing&agent=support-bot&q=live")


def _orm_task_for_fragment(task_pk):
    """What the fragment's task was read with before it was plain SQL: the ORM's own read."""
    return (
        Task.objects.select_related("organization", "agent", "parent", "parent__organization", "assigned_worker")
        .annotate(has_pending_hitl=selectors.pending_hitl_exists())
        .get(pk=task_pk)
    )


def test_the_fragments_task_in_plain_sql_reads_as_the_orm_reads_it(acme, agent, system_actor):
    parent, _ = services.task_create(
        organization=acme, actor=system_actor, id="lf-parent", title="", input_text="p" * 300, agent=agent
    )
    child, _ = services.task_create(
        organization=acme,
        actor=system_actor,
        id="lf-child",
        title="Child",
        agent=agent,
        parent_id="lf-parent",
        metadata={"nested": {"k": [1, 2.5, None, True]}, "text": "<b>&"},
        deep_planning={"enabled": True, "tasks": [{"id": "s1", "title": "Step", "completed": False}]},
    )
    worker = services.worker_register(organization=acme, name="w-1", roles=["triage"])
    claimed = services.task_claim(organization=acme, actor=system_actor, worker=worker)
    assert claimed is not None
    services.task_update(task=child, actor=system_actor, status="executing")
    services.hitl_request(task=child, actor=system_actor, question="May I?")
    loose, _ = services.task_create(organization=acme, actor=system_actor, id="lf-loose", title="No agent")
    services.task_delete(task=loose, actor=system_actor)

    for pk in (parent.pk, child.pk, claimed.pk, loose.pk):
        fast, orm = selectors.task_for_fragment(pk), _orm_task_for_fragment(pk)
        for field in Task._meta.concrete_fields:
            assert getattr(fast, field.attname) == getattr(orm, field.attname), field.name
        assert fast.has_pending_hitl is orm.has_pending_hitl
        assert (fast.organization.slug, fast.organization.name) == (orm.organization.slug, orm.organization.name)
        assert (fast.agent and fast.agent.name) == (orm.agent and orm.agent.name)
        assert (fast.assigned_worker and fast.assigned_worker.last_heartbeat_at) == (
            orm.assigned_worker and orm.assigned_worker.last_heartbeat_at
        )
        if orm.parent is None:
            assert fast.parent is None
        else:
            assert (fast.parent.public_id, fast.parent.display_title, fast.parent.organization.slug) == (
                orm.parent.public_id,
                orm.parent.display_title,
                orm.parent.organization.slug,
            )
    child_fast = selectors.task_for_fragment(child.pk)
    assert child_fast.has_pending_hitl and child_fast.parent.display_title == "p" * 120
    assert selectors.task_for_fragment(10**12) is None


def test_a_pushed_list_fragment_reads_its_task_in_one_query(task, system_actor, django_assert_num_queries):
    services.task_update(task=task, actor=system_actor, priority=4)
    event = last_event(task)
    with django_assert_num_queries(1):  # the task, with its organization, agent, worker, parent and pending flag
        assert selectors.task_for_fragment(task.pk).agent.name == "support-bot"
    with django_assert_num_queries(1):  # the row's columns come from that one read
        render_event_html(event, page="list", can_edit=True)
