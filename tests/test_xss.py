"""Stored XSS payloads are shown as text in the list, the detail page and pushed fragments."""

import pytest
from django.urls import reverse

from tasks_app import services
from tasks_app.live.fragments import render_event_html
from tasks_app.models import EventType, TaskEvent
from tasks_app.templatetags.taskdesk import task_url

from .dashboard_helpers import XSS_PAYLOADS, assert_escaped


@pytest.fixture
def evil(acme, system_actor):
    tasks = []
    for i, payload in enumerate(XSS_PAYLOADS):
        task, _ = services.task_create(
            organization=acme,
            actor=system_actor,
            id=f"x-{i}",
            title=payload,
            source=payload[:100],
            input_text=payload,
            input_files=[payload],
            metadata={payload: payload, "nested": {payload: [payload]}},
            params={payload: payload},
            deep_planning={"tasks": [{"title": payload, "completed": False}]},
            agent=payload[:200],
        )
        services.task_update(task=task, actor=system_actor, status="executing", status_reason=payload, result=payload)
        services.report_metrics(task=task, actor=system_actor, used_tools=[payload])
        services.append_activity(
            task=task,
            actor=system_actor,
            entries=[
                {"kind": "tool_call", "content": payload, "tool_name": payload, "tool_arguments": {payload: payload}}
            ],
        )
        services.hitl_request(task=task, actor=system_actor, question=payload, details=payload, options=[payload])
        tasks.append(task)
    return tasks


def test_list_escapes_payloads(client, alice, evil):
    client.force_login(alice)
    html = client.get(reverse("task_list")).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert_escaped(html)
    html = client.get(reverse("task_list") + "?q=" + XSS_PAYLOADS[2], HTTP_HX_REQUEST="true").content.decode()
    assert_escaped(html)


def test_search_text_is_escaped_in_the_filter_form(client, alice, evil):
    client.force_login(alice)
    for payload in XSS_PAYLOADS:
        html = client.get(reverse("task_list"), {"q": payload, "source": payload, "agent": payload}).content.decode()
        assert_escaped(html)


def test_detail_escapes_payloads(client, alice, evil):
    client.force_login(alice)
    for task in evil:
        html = client.get(task_url(task)).content.decode()
        assert_escaped(html)
        assert (
            "&lt;img src=x onerror=alert(1)&gt;" in html
            or "&quot; hx-get=&quot;/x&quot;" in html
            or ("&lt;script&gt;" in html)
        )


def test_patch_responses_escape_payloads(client, alice, evil):
    client.force_login(alice)
    task = evil[0]
    for payload in XSS_PAYLOADS:
        version = type(task).objects.get(pk=task.pk).version
        response = client.post(
            task_url(task, "task_set_metadata"),
            {"metadata": payload, "version": version},
            HTTP_HX_REQUEST="true",
        )
        assert response.status_code == 422
        assert_escaped(response.content.decode())
        response = client.post(
            task_url(task, "task_set_result"), {"result": payload, "version": version}, HTTP_HX_REQUEST="true"
        )
        assert response.status_code in (200, 409)
        assert_escaped(response.content.decode())


@pytest.mark.parametrize("page", ["list", "detail"])
@pytest.mark.parametrize("can_edit", [True, False])
def test_pushed_fragments_escape_payloads(evil, page, can_edit):
    events = TaskEvent.objects.filter(task__in=evil)
    assert {e.type for e in events} >= {EventType.CREATED, EventType.UPDATED, EventType.ACTIVITY}
    for event in events:
        assert_escaped(render_event_html(event, page=page, can_edit=can_edit))


def test_an_amended_payloads_keys_wrap_between_words_in_the_side_column_and_stay_escaped(
    client, alice, acme, system_actor
):
    """The decision's payload diff sits in the task page's narrow side column: a key may wrap after
    _ . - / : or before a capital (never mid-word), and whatever a key holds is escaped."""
    task, _ = services.task_create(organization=acme, actor=system_actor, id="keys", title="Keys")
    services.task_update(task=task, actor=system_actor, status="executing")
    proposed = {"refund_amount_cents": 2500, "customerEmailAddress": "a@b.c", **dict.fromkeys(XSS_PAYLOADS, 1)}
    hitl = services.hitl_request(task=task, actor=system_actor, question="Refund?", payload=proposed)
    amended = {"refund_amount_cents": 2000, "customerEmailAddress": "c@d.e", **dict.fromkeys(XSS_PAYLOADS, 2)}
    services.hitl_decide(hitl=hitl, actor=services.Actor.for_user(alice), decision="approved", amended_payload=amended)
    client.force_login(alice)
    html = client.get(task_url(task)).content.decode()
    assert "<code>refund_<wbr>amount_<wbr>cents</code>" in html
    assert "<code>customer<wbr>Email<wbr>Address</code>" in html
    assert "<code>&lt;script&gt;alert(1)&lt;/<wbr>script&gt;</code>" in html
    assert_escaped(html)
