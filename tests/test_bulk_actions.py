"""Bulk actions on the task list (services/bulk_actions.py, views/bulk.py): the preview counts and
refuses by the lifecycle's own rule in a fixed number of queries; who may; the selection frozen
and scoped; the run changes each task once through the services, as its starter, resumably."""

import threading
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.http import QueryDict
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tasks_app import selectors, services
from tasks_app.live.fragments import render_event_html
from tasks_app.models import (
    BulkAction,
    BulkActionItem,
    EventType,
    Face,
    Membership,
    Role,
    Task,
    TaskEvent,
)
from tasks_app.services import bulk_actions

from .conftest import requires_postgres

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _runs_in_the_test(settings):
    # The runner is called by each test itself: a background thread would not see the test's
    # uncommitted rows.
    settings.BULK_ACTIONS_IN_BACKGROUND = False


@pytest.fixture
def signed_in(client, alice):
    client.force_login(alice)
    return client


def make(org, actor, statuses: dict[str, int], *, prefix="t", **fields) -> list[Task]:
    """Tasks in the given statuses: {"executing": 3, "completed": 2} -> t-executing-0, ..."""
    tasks = []
    for status, count in statuses.items():
        for n in range(count):
            task, _ = services.task_create(
                organization=org,
                actor=actor,
                id=f"{prefix}-{status}-{n}",
                title=f"{status} {n}",
                status=status,
                **fields,
            )
            tasks.append(task)
    return tasks


def ids(tasks) -> str:
    return ",".join(str(task.pk) for task in tasks)


def preview(client, act, tasks=None, **fields):
    data = {"act": act, **fields}
    if tasks is not None:
        data["ids"] = ids(tasks)
    return client.post("/bulk/preview/", data, **HX)


def start(client, act, tasks=None, org="acme", **fields):
    data = {"act": act, "org": org, **fields}
    if tasks is not None:
        data["ids"] = ids(tasks)
    return client.post("/bulk/start/", data, **HX)


def bulk_events(action) -> list[TaskEvent]:
    return [e for e in TaskEvent.objects.order_by("pk") if (e.after or {}).get("bulk_action") == action.pk]


# --- The preview ------------------------------------------------------------------------------


def test_the_preview_counts_and_groups_refusals_by_the_lifecycle_and_changes_nothing(signed_in, acme, system_actor):
    tasks = make(acme, system_actor, {"executing": 3, "pending": 2, "completed": 4, "failed": 1})
    events = TaskEvent.objects.count()
    response = preview(signed_in, "cancel", tasks)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    assert "data-bulk-applies>5<" in html and "data-bulk-refused>5<" in html
    # Grouped by status, each with the lifecycle's own words and a few linked examples.
    assert "The task is already completed." in html and "The task is already failed." in html
    assert 'href="/tasks/acme/t-completed-0/"' in html
    assert "Cancel 5 tasks" in html  # the confirm button
    assert "The task ends as canceled and is not run further." in html  # the row's own confirmation words
    assert TaskEvent.objects.count() == events and BulkAction.objects.count() == 0


def test_retry_applies_to_finished_tasks_only(alice, acme, system_actor):
    tasks = make(acme, system_actor, {"executing": 2, "failed": 3, "stopped": 1})
    result = services.bulk_preview(
        user=alice, organization=acme, act="retry", params={"reason": ""}, tasks=Task.objects.all()
    )
    assert (result.applies, result.refused) == (4, 2)
    (refusal,) = result.refusals
    assert refusal.status == "executing" and "Only a finished task can be retried" in refusal.reason
    assert [t.public_id for t in refusal.examples] == ["t-executing-0", "t-executing-1"]
    assert len(tasks) == 6


def test_a_priority_preview_counts_tasks_already_there_and_a_cleaned_task_is_refused(alice, acme, system_actor):
    make(acme, system_actor, {"executing": 3}, priority=80)
    make(acme, system_actor, {"pending": 2}, prefix="p", priority=10)
    Task.objects.filter(public_id="p-pending-1").update(cleaned_at=timezone.now())
    result = services.bulk_preview(
        user=alice, organization=acme, act="priority", params={"priority": 80}, tasks=Task.objects.all()
    )
    assert (result.applies, result.unchanged, result.refused) == (1, 3, 1)
    assert [g.reason for g in result.refusals] == [bulk_actions.CLEANED]


def test_the_preview_costs_the_same_queries_for_3_or_60_tasks(signed_in, acme, system_actor):
    counts = []
    for size, prefix in [(3, "small"), (60, "big")]:
        tasks = make(acme, system_actor, {"executing": size, "completed": size, "failed": 2}, prefix=prefix)
        with CaptureQueriesContext(connection) as captured:
            response = preview(signed_in, "stop", tasks)
        assert response.status_code == 200 and f"data-bulk-applies>{size}<" in response.content.decode()
        counts.append(len(captured))
    # session, user, memberships, the selection's organizations (2), its statuses counted, examples
    assert counts[0] == counts[1] <= 7, counts


def test_bad_values_are_refused_with_the_reason(signed_in, acme, system_actor):
    tasks = make(acme, system_actor, {"executing": 1})
    for fields, message in [
        ({"act": "priority", "priority": "101"}, "Must be from 0 to 100"),
        ({"act": "priority", "priority": "high"}, "is not a whole number"),
        ({"act": "metadata", "key": ""}, "Name the metadata key"),
        ({"act": "delete"}, "Unknown bulk action"),
    ]:
        response = signed_in.post("/bulk/preview/", {**fields, "ids": ids(tasks)}, **HX)
        assert response.status_code == 422 and message in response.content.decode()


def test_names_and_values_are_escaped(signed_in, acme, system_actor):
    tasks = make(acme, system_actor, {"executing": 1})
    html = preview(signed_in, "metadata", tasks, key="<script>alert(1)</script>", value="<img src=x>").content.decode()
    assert "<script>alert(1)" not in html and "<img src=x>" not in html
    assert "&lt;script&gt;" in html


# --- Who may ----------------------------------------------------------------------------------


def test_a_viewer_sees_no_bulk_controls_and_is_refused_with_403(client, bob, acme, system_actor):
    tasks = make(acme, system_actor, {"executing": 2})
    client.force_login(bob)
    page = client.get("/tasks/").content.decode()
    assert 'id="bulk-bar"' not in page and 'class="row-select"' not in page and "no-bulk" in page
    events = TaskEvent.objects.count()
    assert preview(client, "stop", tasks).status_code == 403
    assert start(client, "stop", tasks).status_code == 403
    assert client.post("/bulk/start/", {"act": "stop", "all": "1", "view": ""}, **HX).status_code == 403
    assert BulkAction.objects.count() == 0 and TaskEvent.objects.count() == events
    assert set(Task.objects.values_list("status", flat=True)) == {"executing"}


def test_an_editor_gets_the_checkboxes_the_bar_and_pushed_rows_keep_a_checkbox(signed_in, acme, system_actor):
    (task,) = make(acme, system_actor, {"executing": 1})
    page = signed_in.get("/tasks/").content.decode()
    assert 'id="bulk-bar"' in page and f'class="row-select" value="{task.pk}"' in page and 'id="bulk-page"' in page
    assert 'id="bulk-dialog"' in page and "js/bulk.js" in page
    event = TaskEvent.objects.filter(task=task).last()
    assert f'class="row-select" value="{task.pk}"' in render_event_html(event, page="list", can_edit=True)
    assert "row-select" not in render_event_html(event, page="list", can_edit=False)


def test_another_organizations_ids_are_left_out(signed_in, client, acme, globex, charlie, system_actor):
    mine = make(acme, system_actor, {"executing": 2})
    theirs = make(globex, system_actor, {"executing": 1}, prefix="g")
    html = preview(signed_in, "stop", mine + theirs).content.decode()
    assert "data-bulk-applies>2<" in html and "1 of the 3 selected tasks is left out" in html
    outsider = Client()
    outsider.force_login(charlie)
    # charlie sends acme's ids: nothing of his is selected, nothing is started.
    assert "Nothing to change" in preview(outsider, "stop", mine).content.decode()
    refused = start(outsider, "stop", mine, org="globex")
    assert refused.status_code == 422
    assert start(outsider, "stop", mine, org="acme").status_code == 403
    assert BulkAction.objects.count() == 0
    assert set(Task.objects.filter(organization=acme).values_list("status", flat=True)) == {"executing"}


def test_forms_need_the_csrf_token(alice, acme, system_actor):
    tasks = make(acme, system_actor, {"executing": 1})
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post("/bulk/preview/", {"act": "stop", "ids": ids(tasks)}).status_code == 403
    assert client.post("/bulk/start/", {"act": "stop", "ids": ids(tasks), "org": "acme"}).status_code == 403
    assert BulkAction.objects.count() == 0


def test_a_person_in_two_organizations_chooses_which(client, django_user_model, acme, globex, system_actor):
    both = django_user_model.objects.create_user("dana", password="pw")
    Membership.objects.create(user=both, organization=acme, role=Role.OPERATOR)
    Membership.objects.create(user=both, organization=globex, role=Role.OPERATOR)
    client.force_login(both)
    tasks = make(acme, system_actor, {"executing": 2}) + make(globex, system_actor, {"executing": 3}, prefix="g")
    html = preview(client, "stop", tasks).content.decode()
    assert "Which organization" in html and 'value="globex"' in html
    html = preview(client, "stop", tasks, org="globex").content.decode()
    assert "data-bulk-applies>3<" in html and "Stop 3 tasks" in html


# --- Starting: the selection frozen -----------------------------------------------------------


def test_all_matching_is_the_lists_own_filter_scoped_to_the_persons_organizations(
    signed_in, alice, acme, globex, system_actor
):
    make(acme, system_actor, {"failed": 6, "completed": 4}, agent="support-bot")
    make(acme, system_actor, {"failed": 2}, prefix="other", agent="billing-bot")
    make(globex, system_actor, {"failed": 3}, prefix="g", agent="support-bot")
    view = "status=failed&agent=support-bot&sort=-updated"
    response = start(signed_in, "retry", None, all="1", view=view)
    assert response.status_code == 200 and "data-bulk-started" in response.content.decode()
    action = BulkAction.objects.get()
    frozen = set(BulkActionItem.objects.filter(bulk_action=action).values_list("task_id", flat=True))
    filters, _ = selectors.parse_task_filters(QueryDict(view))
    listed = set(selectors.filter_tasks(selectors.tasks_for_user(alice), filters).values_list("pk", flat=True))
    assert frozen == listed and len(frozen) == 6 and action.total == 6
    assert (action.selected_all, action.view, action.created_by, action.act) == (True, view, alice, "retry")


def test_the_selection_is_frozen_at_confirmation(signed_in, acme, system_actor):
    make(acme, system_actor, {"executing": 3})
    start(signed_in, "stop", None, all="1", view="status=executing")
    make(acme, system_actor, {"executing": 2}, prefix="later")
    services.bulk_actions_run()
    action = BulkAction.objects.get()
    assert (action.total, action.done) == (3, 3)
    assert Task.objects.filter(public_id__startswith="later", status="executing").count() == 2


# --- Running -------------------------------------------------------------------------------------


def test_each_task_is_changed_through_the_services_once_as_the_starter_and_rung_live(
    signed_in, alice, acme, system_actor, django_capture_on_commit_callbacks
):
    tasks = make(acme, system_actor, {"executing": 2, "paused": 1, "completed": 2})
    start(signed_in, "cancel", tasks, reason="duplicate batch")
    action = BulkAction.objects.get()
    with mock.patch("tasks_app.live.bell.ring") as ring, django_capture_on_commit_callbacks(execute=True):
        assert services.bulk_actions_run() == [action.pk]
    action.refresh_from_db()
    assert (action.state, action.done, action.refused, action.unchanged, action.total) == ("finished", 3, 2, 0, 5)
    events = bulk_events(action)
    assert len(events) == 3 and len({e.task_id for e in events}) == 3
    for event in events:
        assert (event.actor_user, event.actor_label, event.face, event.type) == (
            alice,
            "alice",
            Face.BULK,
            "task.updated",
        )
        assert event.after["status"] == "canceled" and event.after["status_reason"] == "duplicate batch"
    assert sorted(call.args[1] for call in ring.call_args_list) == [e.pk for e in events]
    canceled = Task.objects.filter(status="canceled")
    assert canceled.count() == 3 and set(canceled.values_list("status_reason", flat=True)) == {"duplicate batch"}
    refused = BulkActionItem.objects.filter(bulk_action=action, outcome="refused")
    assert set(refused.values_list("reason", flat=True)) == {"The task is already completed."}


def test_priority_and_metadata_merge_one_key_and_count_what_already_was(alice, acme, system_actor):
    make(acme, system_actor, {"executing": 2}, metadata={"a": 1}, priority=50)
    make(acme, system_actor, {"completed": 1}, prefix="p", priority=70)
    for act, params in [("priority", {"priority": 70}), ("metadata", {"key": "team", "value": {"name": "billing"}})]:
        action = services.bulk_action_start(
            user=alice, organization=acme, act=act, params=params, tasks=Task.objects.all()
        )
        services.bulk_actions_run()
        action.refresh_from_db()
        if act == "priority":
            assert (action.done, action.unchanged) == (2, 1)
    assert set(Task.objects.values_list("priority", flat=True)) == {70}
    assert Task.objects.get(public_id="t-executing-0").metadata == {"a": 1, "team": {"name": "billing"}}
    assert Task.objects.get(public_id="p-completed-0").metadata == {"team": {"name": "billing"}}


def test_a_metadata_value_is_json_when_it_reads_as_json_else_text():
    assert bulk_actions.clean_params("metadata", {"key": "n", "value": "3"}) == {"key": "n", "value": 3}
    assert bulk_actions.clean_params("metadata", {"key": "n", "value": "high"}) == {"key": "n", "value": "high"}
    assert bulk_actions.clean_params("metadata", {"key": "n", "value": '{"a": [1]}'})["value"] == {"a": [1]}


def test_a_task_that_changed_since_the_preview_is_refused_with_why(alice, acme, system_actor):
    tasks = make(acme, system_actor, {"executing": 3})
    action = services.bulk_action_start(
        user=alice, organization=acme, act="stop", params={"reason": ""}, tasks=Task.objects.all()
    )
    services.task_update(task=tasks[1], actor=system_actor, status="completed")
    services.task_delete(task=tasks[2], actor=system_actor)
    services.bulk_actions_run()
    action.refresh_from_db()
    assert (action.done, action.refused) == (1, 2)
    reasons = dict(BulkActionItem.objects.filter(bulk_action=action).values_list("task__public_id", "reason"))
    assert reasons == {
        "t-executing-0": "",
        "t-executing-1": "The task is already completed.",
        "t-executing-2": bulk_actions.DELETED,
    }


def test_items_are_written_without_per_row_foreign_key_checks_and_orm_deletes_still_cascade(alice, acme, system_actor):
    # The selection is frozen by one INSERT ... SELECT; two foreign-key checks per item at commit
    # were 620 of its 700 ms at 10,000 tasks (models.BulkActionItem).
    table = BulkActionItem._meta.db_table
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    assert [name for name, c in constraints.items() if c["foreign_key"]] == []
    tasks = make(acme, system_actor, {"executing": 3})
    action = services.bulk_action_start(
        user=alice, organization=acme, act="priority", params={"priority": 9}, tasks=Task.objects.all()
    )
    Task.objects.filter(pk=tasks[0].pk).delete()  # a hard delete (the admin's): its item goes with it
    assert set(BulkActionItem.objects.filter(bulk_action=action).values_list("task_id", flat=True)) == {
        tasks[1].pk,
        tasks[2].pk,
    }
    services.bulk_actions_run()
    action.refresh_from_db()
    assert (action.total, action.done, action.refused) == (3, 2, 0)
    assert action.finished_at is not None
    BulkAction.objects.filter(pk=action.pk).delete()
    assert not BulkActionItem.objects.exists()


def test_a_version_conflict_is_retried_once_and_a_second_one_is_a_refusal(alice, acme, system_actor):
    tasks = make(acme, system_actor, {"executing": 2})
    action = services.bulk_action_start(
        user=alice, organization=acme, act="priority", params={"priority": 90}, tasks=Task.objects.all()
    )
    real_call = bulk_actions._call
    bumps = {tasks[0].pk: 1, tasks[1].pk: 2}  # an agent writes just before the lock, once / twice

    def agent_writes_first(action, actor, task):
        if bumps.get(task.pk):
            bumps[task.pk] -= 1
            note = {"x": bumps[task.pk]}
            services.task_update(task=task.public_id, organization_id=acme.pk, actor=system_actor, metadata=note)
        return real_call(action, actor, task)

    with mock.patch.object(bulk_actions, "_call", agent_writes_first):
        services.bulk_actions_run()
    action.refresh_from_db()
    assert (action.done, action.refused) == (1, 1)
    assert Task.objects.get(pk=tasks[0].pk).priority == 90
    assert BulkActionItem.objects.get(task=tasks[1]).reason == bulk_actions.CHANGED_TWICE
    assert len(bulk_events(action)) == 1


def test_killed_midway_it_resumes_where_it_stopped_and_no_task_changes_twice(alice, acme, system_actor):
    make(acme, system_actor, {"executing": 5, "completed": 2})
    action = services.bulk_action_start(
        user=alice, organization=acme, act="stop", params={"reason": "outage"}, tasks=Task.objects.all()
    )
    real_call = bulk_actions._call
    calls = []

    def power_cut_on_the_fourth(*args):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("power cut")
        return real_call(*args)

    with mock.patch.object(bulk_actions, "_call", power_cut_on_the_fourth), pytest.raises(RuntimeError):
        services.bulk_actions_run(runner="first", batch=2)
    # Three tasks stopped (each its own transaction); the first batch's two recorded, the rest pending.
    assert Task.objects.filter(status="stopped").count() == 3
    assert BulkActionItem.objects.filter(bulk_action=action, outcome="").count() == 5
    # Its lease still holds: another runner leaves it alone until it lapses.
    assert services.bulk_actions_run(runner="second") == []
    BulkAction.objects.filter(pk=action.pk).update(lease_until=timezone.now() - bulk_actions.LEASE)
    calls.clear()
    with mock.patch.object(bulk_actions, "_call", power_cut_on_the_fourth):
        assert services.bulk_actions_run(runner="second", batch=2) == [action.pk]
    # The third task's change is in the log: recorded as done, its service not called again.
    assert len(calls) == 2
    action.refresh_from_db()
    assert (action.state, action.done, action.refused, action.runner) == ("finished", 5, 2, "second")
    events = bulk_events(action)
    assert len(events) == 5 and len({e.task_id for e in events}) == 5
    assert not BulkActionItem.objects.filter(bulk_action=action, outcome="").exists()


def test_a_cancel_stops_it_where_it_is(signed_in, alice, acme, system_actor):
    make(acme, system_actor, {"executing": 4})
    action = services.bulk_action_start(
        user=alice, organization=acme, act="stop", params={"reason": ""}, tasks=Task.objects.all()
    )
    response = signed_in.post(f"/bulk/{action.pk}/cancel/", **HX)
    assert response.status_code == 200 and "Cancelled by alice after 0 of 4" in response.content.decode()
    assert services.bulk_actions_run() == []
    action.refresh_from_db()
    assert (action.state, action.not_run, action.done) == ("canceled", 4, 0)
    assert not Task.objects.filter(status="stopped").exists()


def test_a_running_action_is_cancelled_by_its_runner_before_the_next_batch(alice, acme, system_actor):
    make(acme, system_actor, {"executing": 5})
    action = services.bulk_action_start(
        user=alice, organization=acme, act="stop", params={"reason": ""}, tasks=Task.objects.all()
    )
    real_batch = bulk_actions._run_batch

    def cancel_after_the_first_batch(*args):
        real_batch(*args)
        services.bulk_action_cancel(user=alice, action=action)

    with mock.patch.object(bulk_actions, "_run_batch", cancel_after_the_first_batch):
        services.bulk_actions_run(batch=2)
    action.refresh_from_db()
    assert (action.state, action.done, action.not_run) == ("canceled", 2, 3)


def test_a_starter_who_loses_the_role_stops_changing_tasks(alice, acme, system_actor):
    make(acme, system_actor, {"executing": 3})
    action = services.bulk_action_start(
        user=alice, organization=acme, act="stop", params={"reason": ""}, tasks=Task.objects.all()
    )
    Membership.objects.filter(user=alice).update(role=Role.VIEWER)
    services.bulk_actions_run()
    action.refresh_from_db()
    assert action.state == "stopped" and "alice may no longer change Acme's tasks" in action.stopped_reason
    assert not Task.objects.filter(status="stopped").exists()


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_two_runners_at_once_change_each_task_once(acme, alice, system_actor):
    make(acme, system_actor, {"executing": 30})
    action = services.bulk_action_start(
        user=alice, organization=acme, act="priority", params={"priority": 5}, tasks=Task.objects.all()
    )
    # Both hold it (as after a lease lapsed under a slow runner): the items decide who changes what.
    barrier = threading.Barrier(2)

    def run(name):
        try:
            barrier.wait()
            bulk_actions._run(BulkAction.objects.get(pk=action.pk), name, batch=3)
        finally:
            connections.close_all()

    BulkAction.objects.filter(pk=action.pk).update(runner="a", lease_until=timezone.now() + bulk_actions.LEASE)
    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "a")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    action.refresh_from_db()
    events = bulk_events(action)
    assert len(events) == 30 and len({e.task_id for e in events}) == 30
    assert (action.done, action.state) == (30, "finished")


# --- Pages ---------------------------------------------------------------------------------------


def test_its_page_shows_progress_then_the_summary_grouped_by_why(signed_in, client, alice, bob, charlie, acme):
    actor = services.Actor.system("agent")
    make(acme, actor, {"executing": 2, "completed": 3})
    start(signed_in, "cancel", None, all="1", view="")
    action = BulkAction.objects.get()
    page = signed_in.get(f"/bulk/{action.pk}/").content.decode()
    assert "<html" in page and 'hx-trigger="every 1s"' in page and "Waiting to start" in page
    assert "data-bulk-cancel" in page
    viewer = Client()
    viewer.force_login(bob)
    assert "data-bulk-cancel" not in viewer.get(f"/bulk/{action.pk}/").content.decode()
    assert viewer.post(f"/bulk/{action.pk}/cancel/", **HX).status_code == 403
    services.bulk_actions_run()
    fragment = signed_in.get(f"/bulk/{action.pk}/", **HX).content.decode()
    assert "<html" not in fragment and "every 1s" not in fragment
    assert "data-bulk-done>2<" in fragment and "data-bulk-refused>3<" in fragment
    assert "The task is already completed." in fragment and 'href="/tasks/acme/t-completed-0/"' in fragment
    # Any member reads it (a viewer too); outsiders get 404.
    assert viewer.get(f"/bulk/{action.pk}/").status_code == 200
    outsider = Client()
    outsider.force_login(charlie)
    assert outsider.get(f"/bulk/{action.pk}/").status_code == 404
    assert outsider.post(f"/bulk/{action.pk}/cancel/").status_code == 404
    assert f"#{action.pk}" not in outsider.get("/bulk/").content.decode()
    assert f"#{action.pk}" in signed_in.get("/bulk/").content.decode()


def test_the_timeline_names_the_bulk_action(signed_in, alice, acme, system_actor):
    (task,) = make(acme, system_actor, {"executing": 1})
    action = services.bulk_action_start(
        user=alice, organization=acme, act="priority", params={"priority": 3}, tasks=Task.objects.all()
    )
    services.bulk_actions_run()
    page = signed_in.get(f"/tasks/acme/{task.public_id}/").content.decode()
    assert f'href="/bulk/{action.pk}/">#{action.pk}</a>' in page and "Bulk action" in page
    assert '<th scope="row">bulk_action</th>' not in page


def test_the_command_runs_what_is_unfinished(alice, acme, system_actor):
    make(acme, system_actor, {"failed": 2})
    action = services.bulk_action_start(
        user=alice, organization=acme, act="retry", params={"reason": ""}, tasks=Task.objects.all()
    )
    out = StringIO()
    call_command("run_bulk_actions", stdout=out)
    assert f"Bulk action #{action.pk} (Retry): finished, 2 changed, 0 already so, 0 refused of 2." in out.getvalue()
    assert set(Task.objects.values_list("status", flat=True)) == {"pending"}
    assert EventType.UPDATED in set(TaskEvent.objects.filter(face=Face.BULK).values_list("type", flat=True))
