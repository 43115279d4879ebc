"""The task as it was at an event: written with every TaskEvent, read by every event stream.

`task_snapshot(task)` is stored in `TaskEvent.snapshot` by the kernel; `task_at(event)` rebuilds
an unsaved Task from it, so each face renders an event through the same serializer it uses for
a live task and a replayed `task.created` shows the task as it was created, not as it is now.
"""

from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from ..models import Agent, Task, TaskEvent

# Bookkeeping that no face shows.
_SKIP = {"id", "organization", "agent", "parent", "assigned_worker", "create_fingerprint"}
SNAPSHOT_FIELDS: tuple[str, ...] = tuple(
    f.name for f in Task._meta.concrete_fields if f.name not in _SKIP and not f.is_relation
)
_DATETIME_FIELDS = {f.name for f in Task._meta.concrete_fields if f.get_internal_type() == "DateTimeField"}


def task_snapshot(task: Task, *, pending_hitl_id: int | None = None) -> dict[str, Any]:
    """Every field a face shows, JSON-ready (agent and parent by their names and public ids)."""
    data: dict[str, Any] = {}
    for name in SNAPSHOT_FIELDS:
        value = getattr(task, name)
        data[name] = value.isoformat() if isinstance(value, datetime) else value
    data["agent"] = task.agent.name if task.agent_id else None
    data["agent_pk"] = task.agent_id
    data["parent_public_id"] = task.parent.public_id if task.parent_id else None
    data["assigned_worker"] = task.assigned_worker.name if task.assigned_worker_id else None
    data["pending_hitl_id"] = pending_hitl_id
    return data


def task_from_snapshot(snapshot: dict[str, Any], *, pk: int, organization_id: int) -> Task:
    """An unsaved Task holding the snapshot's values (never save it)."""
    values = {}
    for name in SNAPSHOT_FIELDS:
        if name not in snapshot:
            continue
        value = snapshot[name]
        if name in _DATETIME_FIELDS and isinstance(value, str):
            value = parse_datetime(value)
        values[name] = value
    task = Task(id=pk, organization_id=organization_id, **values)
    if snapshot.get("agent") is not None:
        task.agent = Agent(id=snapshot.get("agent_pk"), organization_id=organization_id, name=snapshot["agent"])
    parent_public_id = snapshot.get("parent_public_id")
    if parent_public_id is not None and not isinstance(parent_public_id, str):
        # Snapshots written before the kernel's parent fix hold the organization's pk here; a
        # task's parent never changes, so its row names the right one.
        parent_public_id = Task.objects.filter(pk=pk).values_list("parent__public_id", flat=True).first()
    task._parent_public_id = parent_public_id
    task._assigned_worker_name = snapshot.get("assigned_worker")
    task.pending_hitl_id = snapshot.get("pending_hitl_id")
    task._from_snapshot = True
    return task


def task_at(event: TaskEvent) -> Task | None:
    """The task as it was right after `event` (the last snapshot at or before it); None if none."""
    snapshot = event.snapshot
    if snapshot is None:
        earlier = (
            TaskEvent.objects.filter(task_id=event.task_id, id__lt=event.pk, snapshot__isnull=False)
            .order_by("-id")
            .values_list("snapshot", flat=True)
            .first()
        )
        snapshot = earlier
    if snapshot is None:
        return None
    return task_from_snapshot(snapshot, pk=event.task_id, organization_id=event.organization_id)
