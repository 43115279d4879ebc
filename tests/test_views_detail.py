"""The task detail page: full page and fragment, what it shows, and its query count."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tasks_app import services
from tasks_app.templatetags.taskdesk import task_url


@pytest.fixture
def signed_in(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def task(acme, agent, system_actor):
    task, _ = services.task_create(
        organization=acme,
        actor=system_actor,
        id="d-1",
        title="Refund order 1042",
        agent=agent,
        source="agentex",
        input_text="My parcel arrived broken",
        input_files=["https://files.example/photo.jpg"],
        metadata={"customer": "c-9"},
        params={"temperature": 0.2},
        deep_planning={"tasks": [{"title": "Read ticket", "completed": True}, {"title": "Refund", "completed": False}]},
    )
    services.task_update(task=task, actor=system_actor, status="executing")
    services.report_metrics(
        task=task, actor=system_actor, prompt_tokens=1000, completion_tokens=50, used_tools=["lookup"]
    )
    services.append_activity(
        task=task, actor=system_actor, entries=[{"kind": "tool_call", "tool_name": "lookup", "content": "looking up"}]
    )
    services.task_create(organization=acme, actor=system_actor, id="d-1-sub", title="Sub step", parent_id="d-1")
    return task


def url(task):
    return task_url(task)


def test_it_renders_the_full_page(signed_in, task):
    response = signed_in.get(url(task))
    html = response.content.decode()
    assert response.status_code == 200 and "<html" in html
    assert "HX-Request" in response["Vary"]
    for needle in (
        "Refund order 1042",
        "support-bot",
        "agentex",
        "My parcel arrived broken",
        "https://files.example/photo.jpg",
        "&quot;customer&quot;: &quot;c-9&quot;",
        "&quot;temperature&quot;: 0.2",
        "1.1k",
        "lookup",
        "Read ticket",
        "1 of 2",
        'aria-valuenow="1"',
        "Sub step",
        'id="timeline-entries"',  # the timeline comes with the page
        f'href="/tasks/acme/{task.public_id}/activity/"',  # and links the filterable activity log
        "badge-executing",
    ):
        assert needle in html, needle
    for label in ("Created", "Started", "Paused", "Finished", "Duration"):
        assert f"<dt>{label}</dt>" in html
    assert f'ws-connect="/ws/tasks/acme/{task.public_id}/?after=' in html


def test_it_renders_the_fragment_for_htmx(signed_in, task):
    html = signed_in.get(url(task), HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in html and html.strip().startswith('<div id="task-main"')


def test_the_timeline_shows_who_when_face_field_before_after(signed_in, task, alice):
    services.task_update(task=task, actor=services.Actor.for_user(alice), priority=80)
    html = signed_in.get(url(task)).content.decode()
    entry = html[html.index('id="timeline-entries"') :]
    assert '<span class="tl-actor">alice <span class="face">Dashboard</span></span>' in entry
    assert "priority" in entry and "<del>50</del>" in entry and "<ins>80</ins>" in entry
    assert "<time datetime=" in entry


def test_it_shows_the_pending_hitl_request(signed_in, task, system_actor):
    services.hitl_request(task=task, actor=system_actor, question="Refund $120?", options=["yes", "no"])
    html = signed_in.get(url(task)).content.decode()
    assert "Refund $120?" in html and "Waiting for a person" in html


def test_the_status_select_offers_only_allowed_next_statuses(signed_in, task):
    html = signed_in.get(url(task)).content.decode()
    form = html[html.index('id="d-status"') : html.index("</select>", html.index('id="d-status"'))]
    assert 'value="pending"' in form and 'value="completed"' in form
    assert 'value="executing"' not in form  # the current status


def test_unknown_task_is_404(signed_in, db):
    assert signed_in.get(reverse("task_detail", args=["acme", "nope"])).status_code == 404
    assert signed_in.get(reverse("task_by_id", args=["nope"])).status_code == 404


def _count(client, task, **headers):
    client.get(url(task))
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url(task), **headers).status_code == 200
    return len(ctx.captured_queries)


def _grow(task, n: int) -> None:
    """n activity entries (tool calls answered by their results among them) and n events, in bulk."""
    from tasks_app.models import ActivityEntry, TaskEvent

    entries = []
    for i in range(n):
        kind = ("message", "tool_call", "tool_result", "reasoning")[i % 4]
        tool = "tool" in kind
        entries.append(
            ActivityEntry(task=task, organization_id=task.organization_id, kind=kind, content=f"step {i}",
                          tool_name="lookup" if tool else "", tool_call_id=f"c{i // 4}" if tool else "")
        )  # fmt: skip
    ActivityEntry.objects.bulk_create(entries)
    for call, result in zip(entries[1::4], entries[2::4], strict=True):
        result.call = call
    ActivityEntry.objects.bulk_update(entries[2::4], ["call"])
    TaskEvent.objects.bulk_create(
        TaskEvent(task=task, organization_id=task.organization_id, type="task.updated", changes=["priority"],
                  before={"priority": i}, after={"priority": i + 1}, actor_kind="system", actor_label="bulk",
                  face="system", task_version=i + 2)
        for i in range(n)
    )  # fmt: skip


@pytest.mark.parametrize("fragment", [False, True])
def test_query_count_is_the_same_for_5_and_5000_entries_and_events(signed_in, acme, system_actor, fragment):
    headers = {"HTTP_HX_REQUEST": "true"} if fragment else {}
    counts = []
    for n, prefix in ((5, "small"), (5000, "large")):
        parent, _ = services.task_create(organization=acme, actor=system_actor, id=prefix, title=prefix)
        for i in range(5):
            services.task_create(organization=acme, actor=system_actor, id=f"{prefix}-{i}", parent_id=prefix)
        _grow(parent, n)
        counts.append(_count(signed_in, parent, **headers))
    assert counts[0] == counts[1]
    # session, user, memberships, the task, its newest event, the task for the panels, its pending
    # HITL request, the timeline's activity and events, the sub-tasks, the approvals badge
    assert counts[0] == (11 if not fragment else 10), counts


def test_a_bare_id_redirects_to_the_task_or_asks_which_organization(signed_in, task, alice, globex, system_actor):
    from tasks_app.models import Membership, Role

    response = signed_in.get(reverse("task_by_id", args=[task.public_id]))
    assert response.status_code == 302 and response["Location"] == url(task)
    Membership.objects.create(user=alice, organization=globex, role=Role.VIEWER)
    twin, _ = services.task_create(organization=globex, actor=system_actor, id=task.public_id, title="Globex twin")
    response = signed_in.get(reverse("task_by_id", args=[task.public_id]))
    html = response.content.decode()
    assert response.status_code == 200
    assert f'href="{url(task)}"' in html and f'href="{url(twin)}"' in html
