import pytest

from tasks_app import services
from tasks_app.models import TaskEvent


def test_it_creates_and_updates(acme, alice_actor, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        task, created = services.task_create(organization=acme, actor=alice_actor, title="hello", agent="bot")
    assert created and len(callbacks) == 1
    task = services.task_update(task=task, actor=alice_actor, status="executing", metadata={"a": 1})
    assert task.version == 2 and task.started_at is not None
    ev = TaskEvent.objects.filter(task=task).last()
    assert set(ev.changes) == {"status", "started_at", "metadata"}
    with pytest.raises(services.VersionConflict):
        services.task_update(task=task, actor=alice_actor, expected_version=1, priority=3)
