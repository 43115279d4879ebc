"""Retention: strip the content of tasks finished long ago, keep the record, its audit and its counts.

`tasks_clean(task_pks=..., ...)` cleans one batch in one short transaction; the
`clean_tasks` command walks the eligible tasks in batches (`eligible_tasks`, `next_batch`).

What goes (CLEANED_TASK_VALUES, the activity bodies, the HITL requests' texts and payloads):
the input and what was attached to it, the result, metadata, params, the payload extension,
the MCP server configurations and the titles of the plan's steps. What stays: the row (id,
title, name, agent, status and its reason, priority, timestamps, version), the counts (tokens,
tools used, duration, attempts, the plan's step count and progress, the activity entries with
their kind, role, tool name and tokens, the HITL requests with who decided what and when), and
the audit trail: every TaskEvent keeps its type, actor, face, time, version and the names of
the fields it changed; the content values in its before/after go, and its snapshot reads as
the cleaned task (content emptied, `cleaned_at` set), so a replayed stream shows no content.

Each cleaned task gets one `task.cleaned` event (who cleaned, which fields, how many activity
entries), pushed live like any other. A cleaned task is read-only: the kernel refuses further
changes with TaskCleaned (a delete is still allowed).

Short locks: a batch locks its tasks with SKIP LOCKED (a task a writer holds right now is left
for the next run), rewrites them and their children with a few set-based statements, and takes
the organization's event lock only for the event inserts and the commit, like any write.
Resumable: the work left is whatever is still eligible and not cleaned; a crash rolls back
the batch in flight and nothing else.
"""

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import BooleanField, Count, ExpressionWrapper, F, JSONField, Q, QuerySet
from django.utils import timezone

from .. import bulk, lifecycle
from ..models import ActivityEntry, EventType, HitlRequest, Task, TaskEvent
from .actors import Actor
from .kernel import jsonable, ring_on_commit, take_event_lock
from .snapshots import task_snapshot

# Task fields whose value is content, and what a cleaned task holds instead.
CLEANED_TASK_VALUES: dict[str, Any] = {
    "input_text": "",
    "input_files": [],
    "input_user": None,
    "additional_context": "",
    "instructions_override": "",
    "expected_output": "",
    "output_schema": None,
    "mcp_servers": [],
    "result": None,
    "metadata": {},
    "params": {},
    "payload_extension": {},
}
CLEANED_ACTIVITY_VALUES: dict[str, Any] = {"content": "", "tool_arguments": None, "tool_output": None}
CLEANED_HITL_VALUES: dict[str, Any] = {
    "question": "",
    "details": "",
    "options": [],
    "proposed_payload": None,
    "amended_payload": None,
    "reason": "",
    "comment": "",
    "answer": "",
    "chosen_option": "",
}
# Keys of an event's before/after that carry content (task fields and the HITL facts services note).
HITL_EVENT_CONTENT_KEYS = frozenset({"question", "details", "reason", "comment", "payload", "answer", "option"})
EVENT_CONTENT_KEYS = frozenset(CLEANED_TASK_VALUES) | {"deep_planning"} | HITL_EVENT_CONTENT_KEYS
# The plan keeps its shape and progress; the steps' words go.
PLAN_STEP_KEYS = ("id", "completed")

# Tasks per batch (one transaction). 250 keeps the longest batch well under a second at a million
# tasks on the 2-core machine (bench/bench_retention.py), checkpoint stalls included; 500 did not.
DEFAULT_BATCH = 250
MAX_BATCH = 5_000


def eligible_tasks(
    *, cutoff: datetime, statuses: tuple[str, ...] = (), organization_ids: tuple[int, ...] = ()
) -> QuerySet[Task]:
    """Tasks not cleaned yet that finished (or were deleted) before `cutoff`.

    A task without a finish time (stored before the services set one) counts from its last update.
    """
    finished = Q(status__in=lifecycle.TERMINAL) & (
        Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, updated_at__lt=cutoff)
    )
    qs = Task.objects.filter(cleaned_at__isnull=True).filter(finished | Q(deleted_at__lt=cutoff))
    if statuses:
        qs = qs.filter(status__in=statuses)
    if organization_ids:
        qs = qs.filter(organization_id__in=organization_ids)
    return qs


def next_batch(qs: QuerySet[Task], *, after_pk: int, size: int) -> list[int]:
    """The next `size` eligible task ids after `after_pk`, in id order (a plain read, no lock)."""
    return list(qs.filter(pk__gt=after_pk).order_by("pk").values_list("pk", flat=True)[:size])


@dataclass
class CleanedBatch:
    """What one batch did, and how long it held its locks."""

    tasks: int = 0
    skipped: int = 0  # eligible when read, but locked by a writer (or changed) when the batch ran
    activity_entries: int = 0
    hitl_requests: int = 0
    events_rewritten: int = 0
    transaction_seconds: float = 0.0  # the batch's row locks are held this long
    event_lock_seconds: float = 0.0  # the organizations' event locks (every writer waits on them)
    event_ids: list[int] = field(default_factory=list)


def cleaned_plan(plan: Any) -> dict:
    """The plan's shape and progress without the words of its steps."""
    if not isinstance(plan, dict):
        return {}
    outline: dict[str, Any] = {key: plan[key] for key in ("enabled",) if key in plan}
    steps = plan.get("tasks")
    if isinstance(steps, list):
        outline["tasks"] = [
            {key: step[key] for key in PLAN_STEP_KEYS if key in step} for step in steps if isinstance(step, dict)
        ]
    return outline


def cleaned_snapshot(snapshot: dict | None, cleaned_at: datetime) -> dict | None:
    """An event's snapshot as the cleaned task: content emptied, the plan outlined, `cleaned_at` set."""
    if snapshot is None:
        return None
    cleaned = {**snapshot, **CLEANED_TASK_VALUES, "cleaned_at": cleaned_at.isoformat()}
    if "deep_planning" in snapshot:
        cleaned["deep_planning"] = cleaned_plan(snapshot["deep_planning"])
    return cleaned


def without_content(values: dict | None) -> dict:
    """An event's before/after without the content values (the field names stay in `changes`)."""
    return {key: value for key, value in (values or {}).items() if key not in EVENT_CONTENT_KEYS}


def tasks_clean(
    *,
    task_pks: list[int],
    actor: Actor,
    cutoff: datetime,
    statuses: tuple[str, ...] = (),
    organization_ids: tuple[int, ...] = (),
) -> CleanedBatch:
    """Clean these tasks (those still eligible and not held by a writer): one transaction, one event each."""
    batch = CleanedBatch()
    if not task_pks:
        return batch
    started = time.monotonic()
    with transaction.atomic():
        qs = eligible_tasks(cutoff=cutoff, statuses=statuses, organization_ids=organization_ids)
        # The content is not read (it goes): only whether each field held any, which the event names.
        qs = (
            qs.filter(pk__in=task_pks)
            .defer(*CLEANED_TASK_VALUES)
            .annotate(**{f"had_{name}": _held_content(name, empty) for name, empty in CLEANED_TASK_VALUES.items()})
            .select_related("agent", "parent", "assigned_worker")
            .order_by("pk")
        )
        if connection.features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True, of=("self",))
        tasks = list(qs)
        batch.skipped = len(task_pks) - len(tasks)
        if not tasks:
            return batch
        pks = [task.pk for task in tasks]
        now = timezone.now()
        Task.objects.filter(pk__in=pks).update(**CLEANED_TASK_VALUES, cleaned_at=now, version=F("version") + 1)
        planned = [task for task in tasks if task.deep_planning]
        for task in planned:
            task.deep_planning = cleaned_plan(task.deep_planning)
        _update_rows(Task, ["deep_planning"], planned)
        activity = dict(
            ActivityEntry.objects.filter(task_id__in=pks)
            .order_by()
            .values_list("task_id")
            .annotate(n=Count("pk"))
            .values_list("task_id", "n")
        )
        batch.activity_entries = ActivityEntry.objects.filter(task_id__in=pks).update(**CLEANED_ACTIVITY_VALUES)
        batch.hitl_requests = HitlRequest.objects.filter(task_id__in=pks).update(**CLEANED_HITL_VALUES)
        batch.events_rewritten = _rewrite_events(pks, now)

        events = []
        for task in tasks:
            changes = [name for name in CLEANED_TASK_VALUES if getattr(task, f"had_{name}")]
            if task.deep_planning:
                changes.append("deep_planning")
            for name, value in CLEANED_TASK_VALUES.items():
                setattr(task, name, value)
            task.cleaned_at = now
            task.version += 1
            after = {"cleaned_at": jsonable(now), "activity_entries": activity.get(task.pk, 0)}
            events.append(
                TaskEvent(
                    task=task,
                    organization_id=task.organization_id,
                    type=EventType.CLEANED,
                    changes=[*changes, "cleaned_at"],
                    before={"cleaned_at": None},
                    after=after,
                    actor_kind=actor.kind,
                    actor_user=actor.user_or_none,
                    actor_token=actor.token,
                    actor_label=actor.label[:200],
                    face=actor.face,
                    task_version=task.version,
                    snapshot=task_snapshot(task),
                    created_at=now,
                )
            )
        # The event locks last, as the kernel takes them: they cover the inserts and the commit.
        # Several organizations' locks are taken in id order, so two batches cannot deadlock.
        locked_at = time.monotonic()
        for organization_id in sorted({task.organization_id for task in tasks}):
            take_event_lock(organization_id)
        # Ids from the sequence while the locks are held, as an INSERT takes them: monotonic per organization.
        bulk.insert_with_ids(TaskEvent, events)
        last_per_organization = {event.organization_id: event for event in events}
        for event in last_per_organization.values():
            ring_on_commit(event)  # one bell per organization: readers fetch every event after theirs
        batch.event_ids = [event.pk for event in events]
    finished = time.monotonic()
    batch.tasks = len(tasks)
    batch.transaction_seconds = finished - started
    batch.event_lock_seconds = finished - locked_at
    return batch


def _held_content(name: str, empty: Any) -> ExpressionWrapper:
    """Whether the task's field holds anything but what a cleaned task holds there (in SQL)."""
    field = Task._meta.get_field(name)
    if empty is None:
        held = Q(**{f"{name}__isnull": False})
        if isinstance(field, JSONField):
            held &= ~Q(**{name: None})  # a JSON null is no content either
    else:
        held = ~Q(**{name: empty})
    return ExpressionWrapper(held, output_field=BooleanField())


def _rewrite_events(task_pks: list[int], cleaned_at: datetime) -> int:
    """Take the content out of the tasks' earlier events (their snapshots and before/after)."""
    rows = TaskEvent.objects.filter(task_id__in=task_pks).values_list("pk", "snapshot", "before", "after")
    changed = []
    for pk, old_snapshot, old_before, old_after in rows:
        snapshot = cleaned_snapshot(old_snapshot, cleaned_at)
        before, after = without_content(old_before), without_content(old_after)
        if (snapshot, before, after) != (old_snapshot, old_before, old_after):
            changed.append(TaskEvent(pk=pk, snapshot=snapshot, before=before, after=after))
    _update_rows(TaskEvent, ["snapshot", "before", "after"], changed)
    return len(changed)


def _update_rows(model, names: list[str], rows: list) -> None:
    """Write these fields of these rows.

    On PostgreSQL, JSON fields go in one UPDATE that joins the rows sent as one JSON document
    (jsonb_to_recordset): 500 events' updates sent one by one (executemany) were a fifth of a
    batch's time, and the batch's row locks are held for all of it. Elsewhere, one UPDATE per row
    sent as one batch (bulk_update builds one CASE expression per field over every row: at 500
    events with JSON snapshots, resolving it cost more CPU than the whole rest of a batch).
    """
    if not rows:
        return
    fields = [model._meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    table, pk = quote(model._meta.db_table), quote(model._meta.pk.column)
    if connection.vendor == "postgresql" and all(isinstance(f, JSONField) for f in fields):
        assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in fields)
        columns = ", ".join(f"{quote(f.column)} jsonb" for f in fields)
        sql = (
            f"UPDATE {table} AS t SET {assignments} "  # noqa: S608 (names from the model)
            f"FROM jsonb_to_recordset(%s::jsonb) AS v(pk bigint, {columns}) WHERE t.{pk} = v.pk"
        )
        document = [{"pk": row.pk, **{f.column: getattr(row, f.attname) for f in fields}} for row in rows]
        with connection.cursor() as cursor:
            cursor.execute(sql, [json.dumps(document)])
        return
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    sql = f"UPDATE {table} SET {assignments} WHERE {pk} = %s"  # noqa: S608
    params = [[f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields] + [row.pk] for row in rows]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
