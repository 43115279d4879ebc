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
        f'hx-get="/tasks/acme/{task.public_id}/activity/"',  # the activity log loads as its own fragment
        'id="history-list"',
        "badge-executing",
    ):
        assert needle in html, needle
    for label in ("Created", "Started", "Paused", "Finished", "Duration"):
        assert f"<dt>{label}</dt>" in html
    assert f'ws-connect="/ws/tasks/acme/{task.public_id}/?after=' in html


def test_it_renders_the_fragment_for_htmx(signed_in, task):
    html = signed_in.get(url(task), HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in html and html.strip().startswith('<div id="task-main"')


def test_history_shows_who_when_face_field_before_after(signed_in, task, alice):
    services.task_update(task=task, actor=services.Actor.for_user(alice), priority=80)
    html = signed_in.get(url(task)).content.decode()
    entry = html[html.index('id="history-list"') :]
    assert "<b>alice</b>" in entry and "Dashboard" in entry
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


@pytest.mark.parametrize("fragment", [False, True])
def test_query_count_is_constant_for_10_and_200(signed_in, acme, system_actor, fragment):
    headers = {"HTTP_HX_REQUEST": "true"} if fragment else {}
    counts = []
    for n, prefix in ((10, "small"), (200, "large")):
        parent, _ = services.task_create(organization=acme, actor=system_actor, id=prefix, title=prefix)
        for i in range(n):
            services.task_create(organization=acme, actor=system_actor, id=f"{prefix}-{i}", parent_id=prefix)
            services.task_update(task=parent, actor=system_actor, priority=i % 100)
        services.append_activity(
            task=parent, actor=system_actor, entries=[{"kind": "message", "content": str(i)} for i in range(n)]
        )
        counts.append(_count(signed_in, parent, **headers))
    assert counts[0] == counts[1]
    assert counts[0] <= 12


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
