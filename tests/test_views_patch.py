"""Inline patches from the detail page and the list row: the write path, bad input, conflicts."""

import pytest

from tasks_app import services
from tasks_app.models import Face, Task, TaskEvent
from tasks_app.templatetags.taskdesk import task_url

from .dashboard_helpers import event_count

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def signed_in(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def task(acme, system_actor):
    return services.task_create(
        organization=acme, actor=system_actor, id="p-1", title="Patch me", metadata={"a": 1, "b": 2}
    )[0]


def post(client, name, task, data, **extra):
    return client.post(task_url(task, name), data, **HX, **extra)


def fresh(task) -> Task:
    return Task.objects.get(pk=task.pk)


def assert_unchanged(task, snapshot, events_before):
    assert Task.objects.filter(pk=task.pk).values().get() == snapshot
    assert event_count() == events_before


def snapshot(task):
    return Task.objects.filter(pk=task.pk).values().get(), event_count()


# --- Successful patches --------------------------------------------------------------------


def test_status_change_goes_through_the_services_as_the_dashboard(signed_in, task, alice):
    response = post(signed_in, "task_set_status", task, {"status": "executing", "status_reason": "go", "version": 1})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and html.strip().startswith('<section id="panel-status"')
    assert 'id="task-header" class="task-header" hx-swap-oob="true"' in html  # other panels refreshed
    task = fresh(task)
    assert task.status == "executing" and task.status_reason == "go" and task.version == 2
    event = TaskEvent.objects.order_by("-id").first()
    assert event.actor_user == alice and event.face == Face.DASHBOARD and "status" in event.changes
    # The new form carries the new version.
    assert 'name="version" value="2"' in html


def test_status_change_from_the_list_row(signed_in, task):
    response = post(signed_in, "task_set_status", task, {"status": "executing", "version": 1, "page": "list"})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.strip().startswith(f'<tr id="task-{task.pk}"') and "badge-executing" in html
    assert f'id="status-counts-{task.organization_id}"' in html and 'hx-swap-oob="true"' in html
    assert fresh(task).status == "executing"


def test_priority(signed_in, task):
    assert post(signed_in, "task_set_priority", task, {"priority": "85", "version": 1}).status_code == 200
    assert fresh(task).priority == 85


def test_result_keeps_newlines(signed_in, task):
    assert post(signed_in, "task_set_result", task, {"result": "line 1\r\nline 2", "version": 1}).status_code == 200
    assert fresh(task).result == "line 1\nline 2"


def test_metadata_merge_and_replace(signed_in, task):
    data = {"metadata": '{"b": 3, "c": 4}', "metadata_mode": "merge", "version": 1}
    assert post(signed_in, "task_set_metadata", task, data).status_code == 200
    assert fresh(task).metadata == {"a": 1, "b": 3, "c": 4}
    data = {"metadata": '{"only": true}', "metadata_mode": "replace", "version": 2}
    assert post(signed_in, "task_set_metadata", task, data).status_code == 200
    assert fresh(task).metadata == {"only": True}


def test_stop_and_retry(signed_in, task):
    response = post(signed_in, "task_stop", task, {"version": 1})
    assert response.status_code == 200
    task = fresh(task)
    assert task.status == "stopped" and task.is_manually_stopped
    assert post(signed_in, "task_retry", task, {"version": task.version}).status_code == 200
    task = fresh(task)
    assert task.status == "pending" and task.execution_attempts == 2


def test_stop_cancel_and_retry_record_the_reason_given_and_drop_an_unrelated_one(signed_in, task):
    post(signed_in, "task_set_status", task, {"status": "executing", "status_reason": "picked up", "version": 1})
    # Canceled from the menu is the same act as the button: no reason given, the old one goes.
    response = post(signed_in, "task_set_status", task, {"status": "canceled", "status_reason": "", "version": 2})
    assert response.status_code == 200
    task = fresh(task)
    assert (task.status, task.status_reason) == ("canceled", "")
    response = post(signed_in, "task_retry", task, {"status_reason": "customer asked again", "version": task.version})
    assert response.status_code == 200
    task = fresh(task)
    assert (task.status, task.status_reason, task.execution_attempts) == ("pending", "customer asked again", 2)
    data = {"status": "canceled", "status_reason": "duplicate", "version": task.version, "page": "list"}
    response = post(signed_in, "task_stop", task, data)
    assert response.status_code == 200 and response.content.decode().strip().startswith(f'<tr id="task-{task.pk}"')
    task = fresh(task)
    assert (task.status, task.status_reason, task.is_manually_stopped) == ("canceled", "duplicate", False)


def test_a_list_row_offers_retry_for_a_finished_task_and_asks_first(signed_in, task):
    post(signed_in, "task_stop", task, {"version": 1})
    html = signed_in.get("/tasks/").content.decode()
    row = html[html.index(f'<tr id="task-{task.pk}"') :][:4000]
    assert task_url(task, "task_retry") in row and 'data-confirm="Retry this task?"' in row


def test_the_stop_button_asks_for_confirmation(signed_in, task):
    html = signed_in.get(task_url(task)).content.decode()
    stop_form = html[html.index(task_url(task, "task_stop")) - 200 :][:600]
    assert "data-confirm=" in stop_form


# --- Bad input: clear message, nothing changed, no event ------------------------------------


def test_invalid_json_is_refused_with_the_parse_error_and_the_input_kept(signed_in, task):
    state, events = snapshot(task)
    typed = '{"a": 1,, }'
    response = post(signed_in, "task_set_metadata", task, {"metadata": typed, "metadata_mode": "merge", "version": 1})
    html = response.content.decode()
    assert response.status_code == 422
    assert "Metadata is not valid JSON" in html and "line 1, column" in html
    assert ">{&quot;a&quot;: 1,, }</textarea>" in html  # the textarea still holds the input
    assert 'aria-invalid="true"' in html
    assert_unchanged(task, state, events)


def test_json_that_is_not_an_object_is_refused(signed_in, task):
    state, events = snapshot(task)
    response = post(signed_in, "task_set_metadata", task, {"metadata": "[1, 2]", "version": 1})
    assert response.status_code == 422 and "must be a JSON object" in response.content.decode()
    assert_unchanged(task, state, events)


def test_unknown_status_is_refused(signed_in, task):
    state, events = snapshot(task)
    response = post(signed_in, "task_set_status", task, {"status": "exploded", "version": 1})
    assert response.status_code == 422
    assert "Unknown status &#x27;exploded&#x27;" in response.content.decode()
    assert_unchanged(task, state, events)


def test_disallowed_transition_is_refused(signed_in, task, system_actor):
    services.task_update(task=task, actor=system_actor, status="completed")
    state, events = snapshot(task)
    response = post(signed_in, "task_set_status", task, {"status": "executing", "version": fresh(task).version})
    assert response.status_code == 422
    assert "completed is final" in response.content.decode()
    assert_unchanged(task, state, events)


def test_disallowed_transition_from_the_list_row(signed_in, task, system_actor):
    services.task_update(task=task, actor=system_actor, status="completed")
    state, events = snapshot(task)
    data = {"status": "executing", "version": fresh(task).version, "page": "list"}
    response = post(signed_in, "task_set_status", task, data)
    html = response.content.decode()
    assert response.status_code == 422 and html.strip().startswith(f'<tr id="task-{task.pk}"')
    assert "completed is final" in html
    assert_unchanged(task, state, events)


def test_bad_priority_is_refused(signed_in, task):
    state, events = snapshot(task)
    for value in ("high", "101", "-1"):
        response = post(signed_in, "task_set_priority", task, {"priority": value, "version": 1})
        assert response.status_code == 422
        assert "Priority" in response.content.decode()
        assert f'value="{value}"' in response.content.decode()
    assert_unchanged(task, state, events)


def test_a_1mb_result_is_refused(signed_in, task):
    state, events = snapshot(task)
    response = post(signed_in, "task_set_result", task, {"result": "x" * (1024 * 1024), "version": 1})
    assert response.status_code == 422
    assert "Result: At most 100,000 characters (got 1,048,576)" in response.content.decode()
    assert_unchanged(task, state, events)


def test_a_body_over_the_upload_limit_is_refused(signed_in, task):
    state, events = snapshot(task)
    response = post(signed_in, "task_set_result", task, {"result": "x" * (2 * 1024 * 1024 + 10), "version": 1})
    assert response.status_code == 400
    assert_unchanged(task, state, events)


def test_a_missing_version_is_refused(signed_in, task):
    state, events = snapshot(task)
    response = post(signed_in, "task_set_priority", task, {"priority": "10"})
    assert response.status_code == 422 and "lost its version" in response.content.decode()
    assert_unchanged(task, state, events)


# --- Stale versions -------------------------------------------------------------------------


def test_a_stale_version_shows_the_conflict_panel_and_keeps_the_input(signed_in, task, system_actor):
    services.task_update(
        task=task, actor=services.Actor.system("agent-7", face=Face.XPANDER), result="agent wrote this"
    )
    state, events = snapshot(task)
    response = post(signed_in, "task_set_result", task, {"result": "my text", "version": 1})
    html = response.content.decode()
    assert response.status_code == 409
    assert 'id="conflict-panel"' in html
    assert "agent-7" in html and "xpander API" in html and "result" in html
    assert ">my text</textarea>" in html
    assert 'name="force_version" value="2"' in html and "Apply mine anyway" in html and "Reload" in html
    assert 'name="version" value="1"' in html
    assert_unchanged(task, state, events)
    # "Apply mine anyway" resubmits with the current version.
    response = post(signed_in, "task_set_result", task, {"result": "my text", "version": 1, "force_version": 2})
    assert response.status_code == 200
    assert fresh(task).result == "my text"


def test_a_stale_status_change_from_the_list_row_shows_the_conflict(signed_in, task, system_actor):
    services.task_update(task=task, actor=system_actor, priority=1)
    state, events = snapshot(task)
    response = post(signed_in, "task_set_status", task, {"status": "executing", "version": 1, "page": "list"})
    html = response.content.decode()
    assert response.status_code == 409 and 'id="conflict-panel"' in html and "priority" in html
    assert 'value="executing" selected' in html
    assert_unchanged(task, state, events)


def test_a_stale_stop_shows_the_conflict(signed_in, task, system_actor):
    services.task_update(task=task, actor=system_actor, status="executing")
    state, events = snapshot(task)
    response = post(signed_in, "task_stop", task, {"version": 1})
    assert response.status_code == 409 and 'id="conflict-panel"' in response.content.decode()
    assert_unchanged(task, state, events)


def test_htmx_is_told_to_swap_409_and_422(signed_in, task):
    html = signed_in.get(task_url(task)).content.decode()
    assert '"code": "409", "swap": true' in html and '"code": "422", "swap": true' in html


def test_patches_need_post(signed_in, task):
    assert signed_in.get(task_url(task, "task_set_status")).status_code == 405
