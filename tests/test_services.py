"""The write path: each operation's effect, its TaskEvent, publish-on-commit, and refusals."""

from unittest import mock

import pytest
from django.db import transaction
from django.forms.models import model_to_dict

from tasks_app import services
from tasks_app.models import ActivityEntry, ActorKind, Face, HitlDecision, HitlRequest, Task, TaskEvent


@pytest.fixture
def task(acme, alice_actor, agent):
    task, _ = services.task_create(organization=acme, actor=alice_actor, title="Refund #1", agent=agent)
    return task


def last_event(task) -> TaskEvent:
    return TaskEvent.objects.filter(task_id=task.pk).order_by("-id").first()


def events_of(task) -> int:
    return TaskEvent.objects.filter(task_id=task.pk).count()


# --- create -------------------------------------------------------------------------------


def test_it_creates_a_task_with_its_event(acme, alice, alice_actor, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        task, created = services.task_create(
            organization=acme, actor=alice_actor, title="hello", agent="bot", priority=70, metadata={"a": 1}
        )
    assert created
    assert len(callbacks) == 1
    task.refresh_from_db()
    assert (task.status, task.priority, task.metadata, task.agent.name, task.version) == (
        "pending",
        70,
        {"a": 1},
        "bot",
        1,
    )
    event = last_event(task)
    assert event.type == "task.created"
    assert event.changes == ["metadata", "priority", "title"]
    assert event.after == {"status": "pending", "title": "hello", "priority": 70, "source": "", "agent": "bot"}
    assert (event.actor_kind, event.actor_user, event.actor_label, event.face) == ("user", alice, "alice", "dashboard")
    assert event.task_version == 1
    assert event.organization_id == acme.pk


def test_create_with_the_same_id_and_body_is_idempotent(acme, alice_actor):
    first, created = services.task_create(organization=acme, actor=alice_actor, id="ext-1", title="x", agent="bot")
    again, created_again = services.task_create(
        organization=acme, actor=alice_actor, id="ext-1", title="x", agent="bot"
    )
    assert created and not created_again
    assert again.pk == first.pk and first.public_id == "ext-1"
    assert events_of(first) == 1
    assert Task.objects.filter(organization=acme, public_id="ext-1").count() == 1


def test_create_with_the_same_id_and_another_body_is_refused(acme, alice_actor):
    first, _ = services.task_create(organization=acme, actor=alice_actor, id="ext-2", title="x")
    with pytest.raises(services.IdTaken):
        services.task_create(organization=acme, actor=alice_actor, id="ext-2", title="y")
    assert Task.objects.get(organization=acme, public_id="ext-2").title == "x"
    assert events_of(first) == 1


def test_two_organizations_may_hold_the_same_id_and_neither_can_tell(acme, globex, alice_actor, system_actor):
    # Ids are unique per organization: globex's create neither fails nor returns acme's task.
    ours, created = services.task_create(organization=acme, actor=alice_actor, id="shared-1", title="x")
    theirs, theirs_created = services.task_create(organization=globex, actor=system_actor, id="shared-1", title="y")
    assert created and theirs_created
    assert ours.pk != theirs.pk and ours.public_id == theirs.public_id == "shared-1"
    assert Task.objects.get(organization=acme, public_id="shared-1").title == "x"
    assert Task.objects.get(organization=globex, public_id="shared-1").title == "y"
    # A change by public id reaches only the task of the organization it names.
    services.task_update(task="shared-1", organization_id=globex.pk, actor=system_actor, priority=9)
    assert Task.objects.get(pk=theirs.pk).priority == 9
    assert Task.objects.get(pk=ours.pk).priority == 50
    assert (events_of(ours), events_of(theirs)) == (1, 2)


def test_a_public_id_without_its_organization_is_a_programming_error(task, alice_actor):
    with pytest.raises(ValueError, match="organization_id"):
        services.task_update(task=task.public_id, actor=alice_actor, priority=1)
    task.refresh_from_db()
    assert (task.priority, task.version) == (50, 1)


def test_a_task_with_another_organizations_id_is_a_programming_error(task, globex, alice_actor):
    with pytest.raises(ValueError, match="another organization"):
        services.task_update(task=task, organization_id=globex.pk, actor=alice_actor, priority=1)
    task.refresh_from_db()
    assert (task.priority, task.version) == (50, 1)


def test_create_refuses_a_parent_from_another_organization(acme, globex, system_actor):
    other, _ = services.task_create(organization=globex, actor=system_actor, title="theirs")
    with pytest.raises(services.InvalidInput) as info:
        services.task_create(organization=acme, actor=system_actor, title="child", parent_id=other.public_id)
    assert "parent_id" in info.value.errors
    assert Task.objects.filter(organization=acme).count() == 0


def test_create_with_a_parent_makes_a_sub_task(acme, system_actor, task):
    child, _ = services.task_create(organization=acme, actor=system_actor, title="child", parent_id=task.public_id)
    assert list(task.sub_tasks.all()) == [child]


# --- update -------------------------------------------------------------------------------


def test_update_patches_and_records_before_and_after(task, alice_actor):
    updated = services.task_update(task=task, actor=alice_actor, status="executing", priority=80, title=None)
    assert updated.version == 2
    assert updated.title == "Refund #1"  # None means untouched
    event = last_event(task)
    assert event.type == "task.updated"
    assert set(event.changes) == {"status", "priority", "started_at"}
    assert event.before["status"] == "pending" and event.after["status"] == "executing"
    assert event.before["priority"] == 50 and event.after["priority"] == 80
    assert event.before["started_at"] is None and event.after["started_at"]
    assert event.task_version == 2


def test_metadata_merges_and_records_only_touched_keys(task, alice_actor):
    services.task_update(task=task, actor=alice_actor, metadata={"a": 1, "b": 2})
    services.task_update(task=task, actor=alice_actor, metadata={"b": 3, "c": 4})
    task.refresh_from_db()
    assert task.metadata == {"a": 1, "b": 3, "c": 4}
    event = last_event(task)
    assert event.before == {"metadata": {"b": 2}}
    assert event.after == {"metadata": {"b": 3, "c": 4}}


def test_metadata_replace_drops_other_keys(task, alice_actor):
    services.task_update(task=task, actor=alice_actor, metadata={"a": 1, "b": 2})
    services.task_update(task=task, actor=alice_actor, metadata={"z": 0}, metadata_replace=True)
    task.refresh_from_db()
    assert task.metadata == {"z": 0}


def test_params_and_payload_extension_merge(task, alice_actor):
    services.task_update(task=task, actor=alice_actor, params={"t": 1}, payload_extension={"x": 1})
    services.task_update(task=task, actor=alice_actor, params={"u": 2}, payload_extension={"y": 2})
    task.refresh_from_db()
    assert task.params == {"t": 1, "u": 2}
    assert task.payload_extension == {"x": 1, "y": 2}


def test_an_update_that_changes_nothing_writes_no_event(task, alice_actor):
    services.task_update(task=task, actor=alice_actor, title="Refund #1", metadata={})
    task.refresh_from_db()
    assert task.version == 1
    assert events_of(task) == 1


def test_a_stale_version_is_a_conflict_naming_the_last_actor(task, alice_actor, system_actor):
    services.task_update(task=task, actor=system_actor, priority=60)
    with pytest.raises(services.VersionConflict) as info:
        services.task_update(task=task, actor=alice_actor, expected_version=1, priority=10)
    assert info.value.current_version == 2
    assert info.value.expected_version == 1
    assert info.value.last_event.actor_label == "test"
    assert "test" in info.value.message and "priority" in info.value.message
    task.refresh_from_db()
    assert task.priority == 60


def test_the_current_version_is_accepted(task, alice_actor):
    services.task_update(task=task, actor=alice_actor, expected_version=1, priority=10)
    task.refresh_from_db()
    assert (task.priority, task.version) == (10, 2)


def test_finishing_sets_finished_at_and_duration(task, system_actor):
    services.task_update(task=task, actor=system_actor, status="executing")
    done = services.task_update(task=task, actor=system_actor, status="completed", result="ok")
    assert done.finished_at is not None and done.duration >= 0
    assert done.result == "ok"


def test_a_refused_transition_names_the_allowed_statuses_and_changes_nothing(task, system_actor):
    services.task_update(task=task, actor=system_actor, status="completed")
    before = model_to_dict(Task.objects.get(pk=task.pk))
    count = events_of(task)
    with pytest.raises(services.TransitionRefused) as info:
        services.task_update(task=task, actor=system_actor, status="executing", priority=1)
    assert info.value.allowed == []
    assert "final" in info.value.message
    assert model_to_dict(Task.objects.get(pk=task.pk)) == before
    assert events_of(task) == count


def test_pending_after_completed_is_a_retry_not_an_edit(task, system_actor):
    services.task_update(task=task, actor=system_actor, status="completed")
    with pytest.raises(services.TransitionRefused) as info:
        services.task_update(task=task, actor=system_actor, status="pending")
    assert "retry" in info.value.message


# --- stop / retry / delete ----------------------------------------------------------------


def test_stop_ends_an_active_task_by_hand(task, alice_actor):
    stopped = services.task_stop(task=task, actor=alice_actor, reason="wrong customer")
    assert (stopped.status, stopped.is_manually_stopped, stopped.status_reason) == ("stopped", True, "wrong customer")
    event = last_event(task)
    assert event.after["status"] == "stopped" and event.after["is_manually_stopped"] is True


def test_stop_refuses_a_finished_task(task, alice_actor):
    services.task_stop(task=task, actor=alice_actor)
    count = events_of(task)
    with pytest.raises(services.TransitionRefused):
        services.task_stop(task=task, actor=alice_actor)
    assert events_of(task) == count


def test_stop_as_cancel(task, alice_actor):
    canceled = services.task_stop(task=task, actor=alice_actor, status="canceled")
    assert canceled.status == "canceled" and not canceled.is_manually_stopped


def test_retry_sends_a_finished_task_back_to_pending(task, alice_actor, system_actor):
    services.task_update(task=task, actor=system_actor, status="executing")
    services.task_update(task=task, actor=system_actor, status="failed", status_reason="boom")
    retried = services.task_retry(task=task, actor=alice_actor)
    assert retried.status == "pending"
    assert retried.execution_attempts == 2
    assert (retried.finished_at, retried.started_at, retried.status_reason) == (None, None, "")
    assert last_event(task).before["status"] == "failed"


def test_retry_refuses_an_active_task(task, alice_actor):
    with pytest.raises(services.TransitionRefused):
        services.task_retry(task=task, actor=alice_actor)
    assert events_of(task) == 1


def test_delete_is_soft_and_audited(task, alice_actor):
    services.task_delete(task=task, actor=alice_actor)
    task.refresh_from_db()
    assert task.deleted_at is not None
    assert last_event(task).type == "task.deleted"
    with pytest.raises(services.TaskNotFound):
        services.task_update(task=task.public_id, organization_id=task.organization_id, actor=alice_actor, priority=1)


def test_organization_scope_hides_other_tasks(task, globex, system_actor):
    with pytest.raises(services.TaskNotFound):
        services.task_update(task=task.public_id, actor=system_actor, organization_id=globex.pk, priority=1)
    task.refresh_from_db()
    assert (task.priority, task.version) == (50, 1)


# --- claim --------------------------------------------------------------------------------


def test_claim_takes_highest_priority_then_oldest(acme, system_actor):
    low, _ = services.task_create(organization=acme, actor=system_actor, id="low", priority=10)
    old_high, _ = services.task_create(organization=acme, actor=system_actor, id="old-high", priority=90)
    new_high, _ = services.task_create(organization=acme, actor=system_actor, id="new-high", priority=90)
    done, _ = services.task_create(organization=acme, actor=system_actor, id="done", priority=100, status="completed")
    claimed = [services.task_claim(organization=acme, actor=system_actor) for _ in range(4)]
    assert [t.public_id if t else None for t in claimed] == ["old-high", "new-high", "low", None]
    assert Task.objects.get(pk=old_high.pk).status == "executing"
    assert Task.objects.get(pk=old_high.pk).started_at is not None
    event = last_event(old_high)
    assert event.after["status"] == "executing" and event.actor_kind == ActorKind.SYSTEM


def test_claim_stays_in_the_organization_and_agent(acme, globex, system_actor):
    services.task_create(organization=globex, actor=system_actor, id="theirs", priority=100)
    services.task_create(organization=acme, actor=system_actor, id="a1", agent="one")
    services.task_create(organization=acme, actor=system_actor, id="a2", agent="two")
    assert services.task_claim(organization=acme, actor=system_actor, agent="two").public_id == "a2"
    assert services.task_claim(organization=acme, actor=system_actor).public_id == "a1"
    assert services.task_claim(organization=acme, actor=system_actor) is None


# --- activity, metrics, HITL --------------------------------------------------------------


def test_append_activity_writes_entries_and_one_event(task, system_actor):
    entries = services.append_activity(
        task=task,
        actor=system_actor,
        entries=[
            {"kind": "message", "role": "user", "content": "hi"},
            {"kind": "tool_call", "tool_name": "lookup", "tool_call_id": "c1", "tool_arguments": {"q": 1}},
            {"kind": "tool_result", "tool_name": "lookup", "tool_call_id": "c1", "tool_output": {"ok": True}},
        ],
    )
    assert [e.kind for e in entries] == ["message", "tool_call", "tool_result"]
    assert ActivityEntry.objects.filter(task=task).count() == 3
    event = last_event(task)
    assert event.type == "task.activity"
    assert event.after == {"activity_ids": [e.pk for e in entries], "kinds": ["message", "tool_call", "tool_result"]}
    task.refresh_from_db()
    assert task.version == 1  # activity does not bump the task's version


def test_append_activity_refuses_a_bad_entry_and_writes_none(task, system_actor):
    with pytest.raises(services.InvalidInput) as info:
        services.append_activity(
            task=task, actor=system_actor, entries=[{"kind": "message"}, {"kind": "shout", "content": 1}]
        )
    assert "entries[1].kind" in info.value.errors and "entries[1].content" in info.value.errors
    assert ActivityEntry.objects.count() == 0
    assert events_of(task) == 1


def test_report_metrics_sets_totals_and_adds_tools(task, system_actor):
    services.report_metrics(task=task, actor=system_actor, prompt_tokens=100, used_tools=["a"])
    services.report_metrics(task=task, actor=system_actor, completion_tokens=7, used_tools=["b", "a"], duration=1.5)
    task.refresh_from_db()
    assert (task.prompt_tokens, task.completion_tokens, task.used_tools, task.duration) == (100, 7, ["a", "b"], 1.5)
    assert last_event(task).type == "task.metrics"
    assert last_event(task).after == {"completion_tokens": 7, "used_tools": ["a", "b"], "duration": 1.5}


def test_hitl_request_pauses_and_approval_resumes(task, system_actor, alice, alice_actor):
    services.task_update(task=task, actor=system_actor, status="executing")
    hitl = services.hitl_request(task=task, actor=system_actor, question="Refund 30 EUR?", payload={"amount": 30})
    task.refresh_from_db()
    assert task.status == "paused" and task.paused_at is not None
    assert last_event(task).type == "task.hitl_requested"
    assert last_event(task).after["hitl_id"] == hitl.pk
    with pytest.raises(services.HitlError):
        services.hitl_request(task=task, actor=system_actor, question="again?")

    decided = services.hitl_decide(hitl=hitl, actor=alice_actor, approve=True, amended_payload={"amount": 20})
    assert (decided.decision, decided.decided_by, decided.effective_payload) == ("approved", alice, {"amount": 20})
    task.refresh_from_db()
    assert task.status == "executing"
    event = last_event(task)
    assert event.type == "task.hitl_decided" and event.actor_user == alice
    assert event.before["payload"] == {"amount": 30} and event.after["payload"] == {"amount": 20}
    with pytest.raises(services.HitlAlreadyDecided) as info:
        services.hitl_decide(hitl=hitl, actor=alice_actor, approve=False, reason="no")
    assert "alice" in info.value.message


def test_hitl_rejection_needs_a_reason_and_ends_the_task(task, system_actor, alice_actor):
    hitl = services.hitl_request(task=task, actor=system_actor, question="Send?", reject_status="canceled")
    with pytest.raises(services.InvalidInput):
        services.hitl_decide(hitl=hitl, actor=alice_actor, approve=False)
    services.hitl_decide(hitl=hitl, actor=alice_actor, approve=False, reason="wrong tone")
    task.refresh_from_db()
    assert (task.status, task.status_reason) == ("canceled", "wrong tone")


def test_stopping_a_paused_task_withdraws_its_request(task, system_actor, alice_actor):
    hitl = services.hitl_request(task=task, actor=system_actor, question="Send?")
    services.task_stop(task=task, actor=alice_actor)
    hitl.refresh_from_db()
    assert hitl.decision == HitlDecision.WITHDRAWN
    assert not HitlRequest.objects.filter(decision__isnull=True).exists()


# --- the bell rings after commit only ------------------------------------------------------


def test_the_bell_rings_on_commit(task, alice_actor, django_capture_on_commit_callbacks):
    with mock.patch("tasks_app.live.bell.ring") as ring:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            services.task_update(task=task, actor=alice_actor, priority=1)
            assert ring.call_count == 0
        assert len(callbacks) == 1
        assert ring.call_count == 0  # nothing rings while the transaction is open
        callbacks[0]()
    assert ring.call_count == 1
    assert ring.call_args.args == (task.organization_id, last_event(task).pk)


def test_nothing_rings_after_a_rollback(task, alice_actor, django_capture_on_commit_callbacks):
    with (
        mock.patch("tasks_app.live.bell.ring") as ring,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.task_update(task=task, actor=alice_actor, priority=1)
        services.append_activity(task=task, actor=alice_actor, entries=[{"content": "x"}])
        raise RuntimeError("roll back")
    assert callbacks == []
    assert ring.call_count == 0
    task.refresh_from_db()
    assert (task.priority, task.version) == (50, 1)
    assert events_of(task) == 1


def test_a_refused_call_rings_nothing(task, alice_actor, django_capture_on_commit_callbacks):
    with (
        mock.patch("tasks_app.live.bell.ring") as ring,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(services.InvalidInput),
    ):
        services.task_update(task=task, actor=alice_actor, priority=101)
    assert callbacks == []
    assert ring.call_count == 0


def test_the_bell_on_the_channel_layer_names_the_organization_and_event(
    task, alice_actor, django_capture_on_commit_callbacks
):
    """The message is the doorbell, not the data: the event row is read from the log."""
    import time

    from tasks_app.live import bell

    sent = []
    layer = mock.Mock()

    async def group_send(group, message):
        sent.append((group, message))

    layer.group_send = group_send
    with mock.patch("tasks_app.live.bell.get_channel_layer", return_value=layer):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            services.task_update(task=task, actor=alice_actor, status="executing")
        bell.publisher.drain()
        assert sent == []  # not before commit
        for callback in callbacks:
            callback()
        deadline = time.monotonic() + 5
        while not sent and time.monotonic() < deadline:
            time.sleep(0.01)
    event = last_event(task)
    assert sent == [
        (
            f"bell.{task.organization_id}",
            {"type": "bell", "organization_id": task.organization_id, "event_id": event.pk},
        )
    ]
    assert (event.type, event.task_version, set(event.changes)) == ("task.updated", 2, {"status", "started_at"})
    assert event.snapshot["status"] == "executing" and event.snapshot["version"] == 2


# --- status counts kept by the write path --------------------------------------------------


def test_status_counts_equal_a_fresh_group_by_after_every_kind_of_change(acme, globex, alice_actor, system_actor):
    from tasks_app import selectors
    from tasks_app.models import TaskCount

    def check() -> None:
        for org in (acme, globex):
            kept = selectors.status_counts(org.pk)
            assert kept == selectors.status_counts_by_group_by(org.pk), org.slug
            stored = dict(TaskCount.objects.filter(organization=org).values_list("status", "count"))
            assert {status: n for status, n in stored.items() if n} == {s: n for s, n in kept.items() if n}

    tasks = []
    for n in range(6):
        task, _ = services.task_create(organization=acme, actor=system_actor, id=f"c-{n}", priority=n)
        tasks.append(task)
        check()
    done, _ = services.task_create(organization=acme, actor=system_actor, id="c-done", status="completed")
    theirs, _ = services.task_create(organization=globex, actor=system_actor, id="c-0", status="executing")
    check()
    assert selectors.status_counts(acme.pk)["pending"] == 6 and selectors.status_counts(globex.pk)["executing"] == 1

    services.task_claim(organization=acme, actor=system_actor)  # pending -> executing
    services.task_update(task=tasks[0], actor=system_actor, status="executing")
    services.task_update(task=tasks[0], actor=system_actor, status="failed", status_reason="boom")
    services.task_update(task="c-1", organization_id=acme.pk, actor=system_actor, status="executing")
    services.task_update(task=tasks[1], actor=system_actor, status="completed")
    check()
    services.task_retry(task=tasks[0], actor=alice_actor)  # failed -> pending
    services.task_retry(task=done, actor=alice_actor)  # completed -> pending
    check()
    hitl = services.hitl_request(task=tasks[2], actor=system_actor, question="Go?")
    check()
    services.hitl_decide(hitl=hitl, actor=alice_actor, approve=False, reason="no")  # paused -> failed
    paused = services.hitl_request(task=tasks[3], actor=system_actor, question="Go?")
    check()
    services.task_stop(task=tasks[4], actor=alice_actor, status="canceled")
    services.task_delete(task=tasks[3], actor=alice_actor)  # a deleted paused task is counted nowhere
    services.task_delete(task=tasks[1], actor=alice_actor)
    services.task_delete(task=theirs, actor=system_actor)
    check()
    paused.refresh_from_db()
    assert paused.decision == HitlDecision.WITHDRAWN

    # Refused and rolled-back changes leave the counts as they were.
    before = selectors.status_counts(acme.pk)
    with pytest.raises(services.TransitionRefused):
        services.task_update(task=tasks[4], actor=system_actor, status="executing")
    with pytest.raises(services.TaskNotFound):
        services.task_update(task=tasks[3], actor=system_actor, status="executing")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.task_update(task=tasks[5], actor=system_actor, status="executing")
        services.task_delete(task=done, actor=system_actor)
        raise RuntimeError("roll back")
    assert selectors.status_counts(acme.pk) == before
    check()
    assert sum(selectors.status_counts(acme.pk).values()) == 5  # 7 created, 2 deleted
    assert sum(selectors.status_counts(globex.pk).values()) == 0


# --- bad input: a clear error, no change, no event ----------------------------------------

BAD_UPDATES = [
    ({"status": "running"}, "status", "Unknown status"),
    ({"priority": 101}, "priority", "0 to 100"),
    ({"priority": -1}, "priority", "0 to 100"),
    ({"priority": "high"}, "priority", "integer"),
    ({"title": "x" * 501}, "title", "At most 500"),
    ({"metadata": ["not", "an", "object"]}, "metadata", "JSON object"),
    ({"metadata": "text"}, "metadata", "JSON object"),
    ({"result": "x" * 1_000_000}, "result", "At most 100,000"),
    ({"metadata": {"big": "x" * 1_000_000}}, "metadata", "KB of JSON"),
    ({"input_text": "nul\x00byte"}, "input_text", "NUL"),
    ({"colour": "red"}, "colour", "Unknown field"),
    ({"used_tools": [1, 2]}, "used_tools", "strings"),
]


@pytest.mark.parametrize(("values", "field", "words"), BAD_UPDATES, ids=[b[1] + "-" + b[2] for b in BAD_UPDATES])
def test_bad_input_is_refused_with_no_change_and_no_event(task, alice_actor, values, field, words):
    before = model_to_dict(Task.objects.get(pk=task.pk))
    count = events_of(task)
    with pytest.raises(services.InvalidInput) as info:
        services.task_update(task=task, actor=alice_actor, priority=7, **values) if "priority" not in values else (
            services.task_update(task=task, actor=alice_actor, title="other", **values)
        )
    assert field in info.value.errors
    assert words in " ".join(info.value.errors[field])
    assert words in info.value.message
    assert model_to_dict(Task.objects.get(pk=task.pk)) == before
    assert events_of(task) == count


@pytest.mark.parametrize(("values", "field", "words"), BAD_UPDATES, ids=[b[1] + "-" + b[2] for b in BAD_UPDATES])
def test_bad_input_to_create_creates_nothing(acme, alice_actor, values, field, words):
    with pytest.raises(services.InvalidInput) as info:
        services.task_create(organization=acme, actor=alice_actor, id="bad-1", **values)
    assert field in info.value.errors
    assert not Task.objects.exists()
    assert not TaskEvent.objects.exists()


def test_a_bad_task_id_is_refused(acme, alice_actor):
    with pytest.raises(services.InvalidInput) as info:
        services.task_create(organization=acme, actor=alice_actor, id="../etc/passwd")
    assert "id" in info.value.errors
    assert not Task.objects.exists()


def test_token_and_admin_actors_are_recorded(task, acme, alice):
    token, _ = services.api_token_create(organization=acme, name="ci")
    services.task_update(task=task, actor=services.Actor.for_token(token, face=Face.XPANDER), priority=1)
    event = last_event(task)
    assert (event.actor_kind, event.actor_token, event.actor_label, event.face) == (
        "token",
        token,
        "token:ci",
        "xpander",
    )
    services.task_update(task=task, actor=services.Actor.for_user(alice, face=Face.ADMIN), priority=2)
    event = last_event(task)
    assert (event.actor_kind, event.actor_user, event.face, event.task_version) == ("user", alice, "admin", 3)


def test_api_tokens_are_stored_hashed_and_revocable(acme):
    token, raw = services.api_token_create(organization=acme, name="ci")
    assert raw.startswith("td_") and raw not in token.token_hash and token.prefix == raw[:10]
    assert services.api_token_authenticate(raw) == token
    assert services.api_token_authenticate(raw + "x") is None
    services.api_token_revoke(token=token)
    assert services.api_token_authenticate(raw) is None
