"""Retention (`manage.py clean_tasks`, services.retention): what goes, what stays, in short batches.

Every face reads a cleaned task as cleaned: native API, xpander, Agentex, JSON-RPC, the desk,
the admin (the real xpander and Agentex clients are in test_retention_clients.py).
"""

import json
import threading
from datetime import timedelta
from io import StringIO
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.db.models import JSONField, Value
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tasks_app import lifecycle, selectors, services
from tasks_app.api.sse import event_data
from tasks_app.models import ActivityEntry, EventType, Face, HitlDecision, HitlRequest, Task, TaskEvent
from tasks_app.services import Actor, retention

from .conftest import requires_postgres

API = "/api/v1"


def clean(*args: str) -> str:
    out = StringIO()
    call_command("clean_tasks", *args, "--no-progress", stdout=out)
    return out.getvalue()


def finished_task(org, actor, task_id: str, *, status: str = "completed", agent: str = "support-bot") -> Task:
    """A task with content everywhere: input, metadata, params, plan, activity, a decided HITL pause, a result."""
    task, _ = services.task_create(
        organization=org,
        actor=actor,
        id=task_id,
        agent=agent,
        title=f"Refund order {task_id}",
        input_text="Ada Lovelace asks for a refund of order #1234",
        input_user={"id": "u-1", "email": "ada@example.com"},
        additional_context="VIP customer",
        metadata={"customer": "Ada Lovelace", "ticket": 1234},
        params={"temperature": 0.2},
        payload_extension={"headers": {"X-Card": "card_4242"}},
        mcp_servers=[{"url": "https://mcp.example.com", "token": "secret"}],
        deep_planning={"enabled": True, "tasks": [{"id": "s1", "title": "Call Ada", "completed": True}]},
        status="executing",
        prompt_tokens=1200,
        completion_tokens=300,
    )
    services.append_activity(
        task=task,
        actor=actor,
        entries=[
            {"kind": "message", "role": "user", "content": "Please refund Ada"},
            {
                "kind": "tool_call",
                "tool_name": "issue_refund",
                "tool_call_id": "c1",
                "tool_arguments": {"card": "card_4242"},
            },
            {"kind": "tool_result", "tool_name": "issue_refund", "tool_call_id": "c1", "tool_output": {"ok": True}},
        ],
    )
    hitl = services.hitl_request(task=task, actor=actor, question="May I refund Ada 50 EUR?", payload={"eur": 50})
    services.hitl_decide(hitl=hitl, actor=actor, approve=True, comment="Yes, Ada is a VIP", amended_payload={"eur": 40})
    services.task_update(task=task, actor=actor, metadata={"note": "refunded Ada"})
    if status == "completed":
        services.task_update(task=task, actor=actor, status="completed", result="Refunded Ada 40 EUR")
    else:
        services.task_update(task=task, actor=actor, status=status, status_reason="Upstream API returned 503")
    return Task.objects.get(pk=task.pk)


def backdate(task: Task, days: int) -> None:
    # Test set-up only: a task that finished `days` ago (no service changes when a task finished).
    Task.objects.filter(pk=task.pk).update(finished_at=timezone.now() - timedelta(days=days))


CONTENT_WORDS = ("Ada", "card_4242", "secret", "VIP", "refund Ada", "Call Ada")


def assert_no_content(value) -> None:
    text = json.dumps(value, default=str)
    for word in CONTENT_WORDS:
        assert word not in text, (word, text[:400])


# --- What goes, what stays ------------------------------------------------------------------


def test_it_strips_the_content_and_keeps_the_record_audit_and_counts(acme, system_actor):
    task = finished_task(acme, system_actor, "t-1")
    before_events = list(TaskEvent.objects.filter(task=task).order_by("id"))
    counts = selectors.status_counts(acme.pk)

    output = clean("--older-than", "0m")

    assert "Cleaned 1 task" in output
    task.refresh_from_db()
    assert task.cleaned_at is not None
    assert task.version == before_events[-1].task_version + 1
    # Content gone.
    assert (task.input_text, task.input_files, task.input_user, task.additional_context) == ("", [], None, "")
    assert (task.result, task.metadata, task.params, task.payload_extension) == (None, {}, {}, {})
    assert task.mcp_servers == []
    assert task.deep_planning == {"enabled": True, "tasks": [{"id": "s1", "completed": True}]}
    assert task.plan_progress == (1, 1)
    # The record and its counts stay.
    assert (task.public_id, task.title, task.status, task.agent.name) == (
        "t-1",
        "Refund order t-1",
        "completed",
        "support-bot",
    )
    assert (task.prompt_tokens, task.completion_tokens) == (1200, 300)
    assert task.finished_at is not None and task.duration >= 0
    assert selectors.status_counts(acme.pk) == counts
    entries = list(ActivityEntry.objects.filter(task=task).order_by("id"))
    assert [(e.kind, e.role, e.tool_name, e.tool_call_id) for e in entries] == [
        ("message", "user", "", ""),
        ("tool_call", "", "issue_refund", "c1"),
        ("tool_result", "", "issue_refund", "c1"),
    ]
    assert all((e.content, e.tool_arguments, e.tool_output) == ("", None, None) for e in entries)
    hitl = HitlRequest.objects.get(task=task)
    assert (hitl.decision, hitl.decided_by_label, hitl.decided_at is not None) == (HitlDecision.APPROVED, "test", True)
    assert (hitl.question, hitl.details, hitl.comment, hitl.proposed_payload, hitl.amended_payload) == (
        "",
        "",
        "",
        None,
        None,
    )

    # The audit trail: every earlier event stays with who changed which fields, without the values.
    after_events = list(TaskEvent.objects.filter(task=task).order_by("id"))
    assert [e.pk for e in after_events[:-1]] == [e.pk for e in before_events]
    for old, new in zip(before_events, after_events, strict=False):
        assert (new.type, new.actor_label, new.face, new.task_version, new.changes, new.created_at) == (
            old.type,
            old.actor_label,
            old.face,
            old.task_version,
            old.changes,
            old.created_at,
        )
        assert_no_content([new.before, new.after, new.snapshot])
        if new.snapshot is not None:
            assert new.snapshot["cleaned_at"] == task.cleaned_at.isoformat()
            assert new.snapshot["status"] == old.snapshot["status"]  # the state at that event stays
    decided = next(e for e in after_events if e.type == EventType.HITL_DECIDED)
    assert decided.after["decision"] == "approved"
    assert "payload" in decided.changes

    # One task.cleaned event, by the command, naming what it removed.
    cleaned = after_events[-1]
    assert (cleaned.type, cleaned.actor_label, cleaned.face, cleaned.actor_kind) == (
        "task.cleaned",
        "clean_tasks",
        Face.COMMAND,
        "system",
    )
    assert cleaned.task_version == task.version
    assert set(cleaned.changes) >= {"input_text", "result", "metadata", "params", "payload_extension", "cleaned_at"}
    assert cleaned.after["activity_entries"] == 3
    assert cleaned.snapshot["cleaned_at"] == task.cleaned_at.isoformat()
    assert_no_content([cleaned.before, cleaned.after, cleaned.snapshot])


def test_the_cleaned_event_names_exactly_the_fields_that_held_content(acme, system_actor):
    # Empty values, JSON null and SQL NULL hold nothing; an empty result text is still a result.
    full = finished_task(acme, system_actor, "full")
    bare, _ = services.task_create(organization=acme, actor=system_actor, id="bare", status="executing")
    services.task_update(task=bare, actor=system_actor, status="completed", result="")
    nulls, _ = services.task_create(organization=acme, actor=system_actor, id="nulls", status="failed")
    Task.objects.filter(pk=nulls.pk).update(input_user=Value(None, JSONField()), output_schema=None, result=None)
    for task in (full, bare, nulls):
        backdate(task, 100)

    clean("--older-than", "90d")

    def cleaned_changes(task):
        return TaskEvent.objects.get(task=task, type=EventType.CLEANED).changes

    assert cleaned_changes(full) == [
        "input_text",
        "input_user",
        "additional_context",
        "mcp_servers",
        "result",
        "metadata",
        "params",
        "payload_extension",
        "deep_planning",
        "cleaned_at",
    ]
    assert cleaned_changes(bare) == ["result", "cleaned_at"]
    assert cleaned_changes(nulls) == ["cleaned_at"]


def test_only_tasks_finished_before_the_cutoff_are_cleaned(acme, system_actor):
    old = finished_task(acme, system_actor, "old")
    recent = finished_task(acme, system_actor, "recent")
    running, _ = services.task_create(organization=acme, actor=system_actor, id="running", status="executing")
    backdate(old, 91)
    backdate(recent, 89)
    Task.objects.filter(pk=running.pk).update(created_at=timezone.now() - timedelta(days=200))

    assert "1 task to clean" in clean("--older-than", "90d", "--dry-run")
    assert Task.objects.filter(cleaned_at__isnull=False).count() == 0  # a dry run changes nothing
    clean("--older-than", "90d")

    assert set(Task.objects.filter(cleaned_at__isnull=False).values_list("public_id", flat=True)) == {"old"}
    assert "0 tasks to clean" in clean("--older-than", "90d", "--dry-run")


def test_a_deleted_task_is_cleaned_and_an_active_one_never(acme, system_actor):
    deleted, _ = services.task_create(
        organization=acme, actor=system_actor, id="gone", input_text="Ada", status="executing"
    )
    services.task_delete(task=deleted, actor=system_actor)
    paused, _ = services.task_create(organization=acme, actor=system_actor, id="paused", input_text="Ada")
    services.hitl_request(task=paused, actor=system_actor, question="Ada?")

    clean("--older-than", "0m")

    assert Task.objects.get(pk=deleted.pk).cleaned_at is not None
    assert Task.objects.get(pk=deleted.pk).input_text == ""
    assert Task.objects.get(pk=paused.pk).cleaned_at is None
    assert Task.objects.get(pk=paused.pk).input_text == "Ada"


def test_status_and_organization_narrow_what_is_cleaned(acme, globex, system_actor):
    finished_task(acme, system_actor, "a-done")
    finished_task(acme, system_actor, "a-failed", status="failed")
    finished_task(globex, system_actor, "g-done")

    clean("--older-than", "0m", "--status", "failed", "--org", "acme")
    assert set(Task.objects.filter(cleaned_at__isnull=False).values_list("public_id", flat=True)) == {"a-failed"}

    clean("--older-than", "0m", "--org", "globex")
    assert set(Task.objects.filter(cleaned_at__isnull=False).values_list("public_id", flat=True)) == {
        "a-failed",
        "g-done",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "90"], "number and a unit"),
        (["--older-than=-3d"], "number and a unit"),
        (["--older-than", "90d", "--status", "executing"], "not executing"),
        (["--older-than", "90d", "--status", "completed,bogus"], "not bogus"),
        (["--older-than", "90d", "--org", "nope"], "Unknown organization 'nope'"),
        (["--older-than", "90d", "--batch", "0"], "--batch must be between"),
    ],
)
def test_bad_arguments_are_refused_and_change_nothing(acme, system_actor, args, message):
    finished_task(acme, system_actor, "t-1")
    with pytest.raises(CommandError, match=message):
        clean(*args)
    assert Task.objects.filter(cleaned_at__isnull=False).count() == 0


# --- Batches, resuming, locks ---------------------------------------------------------------


def test_a_crash_mid_way_loses_nothing_and_a_rerun_continues(acme, system_actor):
    for n in range(7):
        finished_task(acme, system_actor, f"t-{n}")
    real = retention.tasks_clean
    calls = []

    def crash_on_the_third_batch(**kwargs):
        calls.append(kwargs["task_pks"])
        if len(calls) == 3:
            raise RuntimeError("power cut")
        return real(**kwargs)

    patched = mock.patch("tasks_app.management.commands.clean_tasks.tasks_clean", crash_on_the_third_batch)
    with patched, pytest.raises(RuntimeError, match="power cut"):
        clean("--older-than", "0m", "--batch", "2")
    assert Task.objects.filter(cleaned_at__isnull=False).count() == 4  # two whole batches
    assert TaskEvent.objects.filter(type=EventType.CLEANED).count() == 4

    output = clean("--older-than", "0m", "--batch", "2")

    assert "Cleaned 3 tasks" in output
    assert Task.objects.filter(cleaned_at__isnull=True).count() == 0
    # One task.cleaned event per task, however many runs it took.
    assert TaskEvent.objects.filter(type=EventType.CLEANED).count() == 7
    assert "Cleaned 0 tasks" in clean("--older-than", "0m")


def test_a_batch_costs_the_same_queries_for_2_or_20_tasks(acme, system_actor):
    tasks = [finished_task(acme, system_actor, f"t-{n}") for n in range(22)]
    actor = Actor.system("clean_tasks", face=Face.COMMAND)
    cutoff = timezone.now()
    queries = []
    for chunk in (tasks[:2], tasks[2:]):
        with CaptureQueriesContext(connection) as captured:
            batch = retention.tasks_clean(task_pks=[t.pk for t in chunk], actor=actor, cutoff=cutoff)
        assert batch.tasks == len(chunk)
        queries.append(len(captured))
    assert queries[0] == queries[1]


def test_each_batch_rings_the_bell_once_per_organization(
    acme, globex, system_actor, django_capture_on_commit_callbacks
):
    tasks = [finished_task(acme, system_actor, "a1"), finished_task(acme, system_actor, "a2")]
    tasks.append(finished_task(globex, system_actor, "g1"))
    with mock.patch("tasks_app.live.bell.ring") as ring, django_capture_on_commit_callbacks(execute=True):
        batch = retention.tasks_clean(
            task_pks=[t.pk for t in tasks], actor=Actor.system("clean_tasks"), cutoff=timezone.now()
        )
    assert len(batch.event_ids) == 3
    newest = dict(TaskEvent.objects.filter(pk__in=batch.event_ids).values_list("organization_id", "pk").order_by("pk"))
    assert sorted(call.args for call in ring.call_args_list) == sorted(newest.items())


def test_a_task_cleaned_meanwhile_or_made_active_again_is_left_alone(acme, system_actor):
    done = finished_task(acme, system_actor, "done")
    retried = finished_task(acme, system_actor, "retried")
    cutoff = timezone.now()
    services.task_retry(task=retried, actor=system_actor)  # back to pending after the scan read it
    actor = Actor.system("clean_tasks")
    first = retention.tasks_clean(task_pks=[done.pk, retried.pk], actor=actor, cutoff=cutoff)
    again = retention.tasks_clean(task_pks=[done.pk], actor=actor, cutoff=cutoff)
    assert (first.tasks, first.skipped, again.tasks, again.skipped) == (1, 1, 0, 1)
    assert Task.objects.get(pk=retried.pk).cleaned_at is None
    assert TaskEvent.objects.filter(task=done, type=EventType.CLEANED).count() == 1


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_task_a_writer_holds_is_skipped_not_waited_for(acme, system_actor):
    held = finished_task(acme, system_actor, "held")
    free = finished_task(acme, system_actor, "free")
    locked, release = threading.Event(), threading.Event()

    def writer():
        try:
            with transaction.atomic():
                Task.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert locked.wait(10)
        output = clean("--older-than", "0m")
    finally:
        release.set()
        thread.join()
    assert "Cleaned 1 task" in output
    assert "1 task was being changed" in output
    assert Task.objects.get(pk=free.pk).cleaned_at is not None
    assert Task.objects.get(pk=held.pk).cleaned_at is None
    assert "Cleaned 1 task" in clean("--older-than", "0m")  # the rerun takes it
    assert Task.objects.get(pk=held.pk).cleaned_at is not None


# --- A cleaned task is read-only -----------------------------------------------------------


def test_a_cleaned_task_refuses_changes_but_may_be_deleted(acme, system_actor):
    task = finished_task(acme, system_actor, "t-1")
    clean("--older-than", "0m")
    for call in (
        lambda: services.task_update(task="t-1", organization_id=acme.pk, actor=system_actor, result="new"),
        lambda: services.task_retry(task="t-1", organization_id=acme.pk, actor=system_actor),
        lambda: services.append_activity(
            task="t-1", organization_id=acme.pk, actor=system_actor, entries=[{"content": "x"}]
        ),
        lambda: services.report_metrics(task="t-1", organization_id=acme.pk, actor=system_actor, duration=3.0),
    ):
        with pytest.raises(services.TaskCleaned, match="cleaned by retention"):
            call()
    assert Task.objects.get(pk=task.pk).result is None
    services.task_delete(task="t-1", organization_id=acme.pk, actor=system_actor)
    assert Task.objects.get(pk=task.pk).deleted_at is not None


# --- Every face reads it as cleaned ----------------------------------------------------------


@pytest.fixture
def cleaned_task(acme, system_actor):
    task = finished_task(acme, system_actor, "t-1")
    clean("--older-than", "0m")
    return Task.objects.get(pk=task.pk)


@pytest.fixture
def token(acme):
    return services.api_token_create(organization=acme, name="agent")[1]


def test_native_api_reads_cleaned_at_and_refuses_a_patch_with_409(client, cleaned_task, token):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    body = client.get(f"{API}/tasks/t-1", **auth).json()
    assert body["cleaned_at"] == cleaned_task.cleaned_at.isoformat().replace("+00:00", "Z") or body["cleaned_at"]
    assert (body["input_text"], body["result"], body["metadata"], body["params"]) == ("", None, {}, {})
    assert_no_content(body)
    response = client.patch(f"{API}/tasks/t-1", data='{"result": "again"}', content_type="application/json", **auth)
    assert response.status_code == 409
    assert "cleaned by retention" in json.dumps(response.json())
    activity = client.get(f"{API}/tasks/t-1/activity", **auth).json()
    assert_no_content(activity)


def test_native_event_stream_replays_the_task_as_cleaned(cleaned_task):
    events = list(TaskEvent.objects.filter(task=cleaned_task).select_related("task").order_by("id"))
    for event in events:
        data = event_data(event)
        assert_no_content(data)
        if data["task"] is not None:
            assert data["task"]["cleaned_at"] is not None
    assert events[-1].type == "task.cleaned"


def test_xpander_face_reads_cleaned_at(client, cleaned_task, token):
    body = client.get("/xpander/agent-execution/t-1/status", HTTP_X_API_KEY=token).json()
    assert body["cleaned_at"] is not None
    assert (body["input"]["text"], body["result"], body["payload_extension"]) == ("", None, None)
    assert_no_content(body)


def test_agentex_face_reads_cleaned_at(client, cleaned_task, token):
    body = client.get("/agentex/tasks/t-1", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert body["cleaned_at"] is not None
    assert (body["task_metadata"], body["params"]) == ({}, {})


def test_jsonrpc_face_lists_cleaned_at_and_streams_the_cleaning_as_an_update(client, cleaned_task, token):
    body = {"jsonrpc": "2.0", "method": "task.list", "params": {}, "id": 1}
    response = client.post("/rpc", data=json.dumps(body), content_type="application/json", HTTP_X_API_KEY=token)
    (listed,) = response.json()["result"]["tasks"]
    assert listed["cleanedAt"] is not None
    assert (listed["metadata"], listed["result"]) == (None, None)
    from tasks_app.api.jsonrpc import event_message

    message = event_message(TaskEvent.objects.filter(task=cleaned_task).latest("id"))
    assert message["type"] == "task.updated"
    assert message["payload"]["cleanedAt"] is not None
    assert "metadata" in message["metadata"]["changes"]


def test_the_desk_shows_a_cleaned_note_and_no_edit_forms(client, alice, cleaned_task):
    client.force_login(alice)
    page = client.get("/tasks/acme/t-1/").content.decode()
    assert "Removed by retention" in page
    assert "retention removed this task" in page
    assert "content removed by retention" in page  # timeline rows of the fields it emptied
    assert "Removed the content (retention)" in page
    assert 'name="version"' not in page  # no edit form
    assert "Ada" not in page
    log = client.get("/tasks/acme/t-1/activity/").content.decode()
    assert "Content removed by retention." in log
    assert '<span class="cleaned-note">Removed by retention.</span>' in page  # the decided request's question
    assert "card_4242" not in log


def test_the_live_fragment_of_the_cleaning_replaces_input_and_timeline(alice, cleaned_task):
    from tasks_app.live.fragments import render_event_html

    event = TaskEvent.objects.filter(task=cleaned_task).latest("id")
    html = render_event_html(event, page="detail", can_edit=True)
    # The input, the result, the timeline and the decided question all lost their content.
    for target in ('id="panel-input"', 'id="panel-timeline"', 'id="panel-result"', 'id="panel-hitl"'):
        assert target in html
    assert html.count('hx-swap-oob="true"') >= 5
    assert "Removed by retention" in html
    assert "Ada" not in html


def test_the_admin_shows_it_read_only_and_filters_cleaned_tasks(
    client, django_user_model, cleaned_task, acme, system_actor
):
    finished_task(acme, system_actor, "other-task")
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    page = client.get(f"/admin/tasks_app/task/{cleaned_task.pk}/change/").content.decode()
    assert "Removed by retention on" in page
    assert 'name="result"' not in page and 'name="metadata"' not in page  # read-only
    listed = client.get("/admin/tasks_app/task/?cleaned=yes").content.decode()
    assert "t-1" in listed and "other-task" not in listed
    version = cleaned_task.version
    client.post(f"/admin/tasks_app/task/{cleaned_task.pk}/change/", {"loaded_version": version})
    assert Task.objects.get(pk=cleaned_task.pk).version == version


def test_lifecycle_terminal_statuses_are_the_ones_cleaned():
    # The command's --status choices and the eligibility rule share lifecycle.TERMINAL.
    from tasks_app.management.commands.clean_tasks import parse_statuses

    assert set(parse_statuses([",".join(sorted(lifecycle.TERMINAL))])) == set(lifecycle.TERMINAL)
