"""Rollups of the operations view (models.TaskRollup), kept by the write path.

The kernel calls `apply(change, ...)` in every change's transaction, after the status counts and
under the same organization event lock. Most changes touch nothing here and cost a few attribute
reads; a change that does (a task created, reaching a final status, tokens reported, a pending
task moving in or out of its queue, an agent's first write through a face in a while) is ONE
statement: an INSERT ... ON CONFLICT DO UPDATE of the rows it moves:

- the minute and the hour of the change (span 60 and 3600): tasks created, finished by outcome
  (lifecycle.outcome), the finished task's duration in its histogram bucket, token deltas;
- the agent's queue now (span 0): pending tasks (+1 / -1), and when the agent was last seen
  writing through each agent face (refreshed at most every SEEN_EVERY seconds per process).

The counters are a log of what happened, like the event log: a task retried and finished again
counts two finishes, tokens count when they are reported. A bulk load that bypasses the write
path rebuilds them from the tasks (`rebuild`, as counters.recount does for the status counts).

Durations: buckets from 0.5 s, each √2 wider than the last (models.ROLLUP_DURATION_BOUNDS), so a
percentile read from them (`percentile`) lies in the right bucket and is interpolated by rank
inside it: at worst 41 % off (a bucket's width), typically far less.
"""

import bisect
import functools
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, FloatField, Max, Q, Sum, Value
from django.db.models.functions import Coalesce, Trunc

from .. import bulk, lifecycle
from ..models import (
    ROLLUP_BUCKETS,
    ROLLUP_DURATION_BOUNDS,
    ROLLUP_SEEN_FACES,
    ActorKind,
    Task,
    TaskEvent,
    TaskRollup,
)

MINUTE, HOUR, NOW = 60, 3600, 0
# The fixed `start` of the span-0 rows (the agent's queue now).
NOW_START = datetime(2000, 1, 1, tzinfo=UTC)
# How often one process refreshes an agent's "last seen" through a face when nothing else changes.
SEEN_EVERY = 5.0
# Minute rows are read for the last hour only: a rebuild writes them for this long back.
REBUILD_MINUTES = timedelta(hours=48)

_COUNTERS = ("created", "completed", "failed", "stopped", "duration_sum", "prompt_tokens", "completion_tokens")
_SEEN_COLUMNS = {face: f"seen_{face}" for face in ROLLUP_SEEN_FACES}
_KEY = ("organization_id", "agent_key", "queue", "span", "start")
_seen_written: dict[tuple, float] = {}


def bucket_of(duration: float) -> str:
    """The histogram column a duration (seconds) counts in."""
    return ROLLUP_BUCKETS[bisect.bisect_left(ROLLUP_DURATION_BOUNDS, duration)]


def apply(change: Any, counted_as: str | None, *, created: bool) -> None:
    """Count one recorded change (kernel.Change) in the rollups; nothing when it moves none.

    `counted_as` is the status the task was counted under before the change (None: new or deleted).
    """
    task = change.task
    changed = change.changes
    before = change.before
    face = _seen_face(change.actor, task)
    if not (
        created
        or face
        or "status" in changed
        or "deleted_at" in changed
        or "queue" in changed
        or "prompt_tokens" in changed
        or "completion_tokens" in changed
    ):
        return
    agent_key = task.agent_id or 0
    deltas: dict[str, Any] = {}
    if created:
        deltas["created"] = 1
    status_before = None if created else before.get("status", task.status)
    if lifecycle.is_terminal(task.status) and (status_before is None or not lifecycle.is_terminal(status_before)):
        deltas[lifecycle.outcome(task.status)] = 1
        deltas["duration_sum"] = float(task.duration)
        deltas[bucket_of(task.duration)] = 1
    for name in ("prompt_tokens", "completion_tokens"):
        if name in changed or created:
            delta = getattr(task, name) - (0 if created else before.get(name, getattr(task, name)))
            if delta:
                deltas[name] = delta
    rows: dict[tuple, dict[str, Any]] = {}
    if deltas:
        now = change.now.astimezone(UTC)
        rows[(agent_key, "", MINUTE, now.replace(second=0, microsecond=0))] = deltas
        rows[(agent_key, "", HOUR, now.replace(minute=0, second=0, microsecond=0))] = deltas
    # The pending gauge: a task leaves its old queue and enters its new one.
    pending_now = task.status == lifecycle.Status.PENDING and task.deleted_at is None
    old_queue = before.get("queue", task.queue) if not created else task.queue
    was_pending = counted_as == lifecycle.Status.PENDING
    if was_pending != pending_now or (pending_now and old_queue != task.queue):
        if was_pending:
            rows.setdefault((agent_key, old_queue, NOW, NOW_START), {})["pending"] = -1
        if pending_now:
            rows.setdefault((agent_key, task.queue, NOW, NOW_START), {})["pending"] = 1
    if face:
        rows.setdefault((agent_key, task.queue, NOW, NOW_START), {})[_SEEN_COLUMNS[face]] = change.now
        _seen_written[(task.organization_id, agent_key, task.queue, face)] = time.monotonic()
    if rows:
        upsert(task.organization_id, rows)


def _seen_face(actor: Any, task: Task) -> str | None:
    """The agent face a token's write is seen through, unless this process noted it a moment ago."""
    if actor.kind != ActorKind.TOKEN or actor.face not in _SEEN_COLUMNS:
        return None
    noted = _seen_written.get((task.organization_id, task.agent_id or 0, task.queue, actor.face))
    if noted is not None and time.monotonic() - noted < SEEN_EVERY:
        return None
    return actor.face


def forget_seen() -> None:
    """Forget which agents this process noted as seen (tests; the next write notes them again)."""
    _seen_written.clear()


def upsert(organization_id: int, rows: dict[tuple, dict[str, Any]]) -> None:
    """Add `rows` ((agent_key, queue, span, start) -> column deltas) in one INSERT ... ON CONFLICT."""
    columns = tuple(sorted({name for deltas in rows.values() for name in deltas}))
    keys = sorted(rows)  # one order for every writer (they also hold the organization's lock)
    params: list[Any] = []
    for agent_key, queue, span, start in keys:
        deltas = rows[(agent_key, queue, span, start)]
        params += [organization_id, agent_key, queue, span, _prep_datetime(start)]
        for name in columns:
            value = deltas.get(name)
            if name.startswith("seen_"):
                params.append(_prep_datetime(value) if value is not None else None)
            else:
                params.append(value or 0)
    with connection.cursor() as cursor:
        cursor.execute(_upsert_sql(connection.vendor, columns, len(keys)), params)


def _prep_datetime(value: datetime) -> Any:
    return TaskRollup._meta.get_field("start").get_db_prep_save(value, connection)


@functools.cache
def _upsert_sql(vendor: str, columns: tuple[str, ...], rows: int) -> str:
    quote = connection.ops.quote_name
    table = quote(TaskRollup._meta.db_table)
    names = ", ".join(quote(name) for name in (*_KEY, *columns))
    row = "(" + ", ".join(["%s"] * (len(_KEY) + len(columns))) + ")"
    updates = []
    for name in columns:
        column, new, old = quote(name), f"EXCLUDED.{quote(name)}", f"{table}.{quote(name)}"
        if name.startswith("seen_"):
            # The later time wins (a NULL on either side keeps the other).
            updates.append(f"{column} = CASE WHEN {old} IS NULL OR {new} > {old} THEN {new} ELSE {old} END")
        else:
            updates.append(f"{column} = {old} + {new}")
    conflict = ", ".join(quote(name) for name in ("organization_id", "span", "start", "agent_key", "queue"))
    return (
        f"INSERT INTO {table} ({names}) VALUES {', '.join([row] * rows)}"  # noqa: S608 (names from the model)
        f" ON CONFLICT ({conflict}) DO UPDATE SET {', '.join(updates)}"
    )


def percentile(counts: list[int], q: float) -> float | None:
    """The q-th quantile (0 < q < 1) of durations counted per bucket (models.ROLLUP_BUCKETS),
    interpolated by rank inside its bucket; None when nothing was counted. Beyond the last bound
    it is that bound (the view says "more than")."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    below = 0
    for index, count in enumerate(counts):
        if count and below + count >= rank:
            if index == len(ROLLUP_DURATION_BOUNDS):
                return ROLLUP_DURATION_BOUNDS[-1]
            low = ROLLUP_DURATION_BOUNDS[index - 1] if index else 0.0
            high = ROLLUP_DURATION_BOUNDS[index]
            return low + (high - low) * (rank - below) / count
        below += count
    return ROLLUP_DURATION_BOUNDS[-1]


# --- Rebuilding from the tasks (bulk loads, repairs) ------------------------------------------


def rebuild(organization_id: int, *, now: datetime | None = None) -> int:
    """Recount an organization's rollups from its tasks, as they are now; returns the rows written.

    For rows bulk-loaded around the write path (seed_demo, the benchmarks). What the tasks hold
    is all it can count: each task's creation, its last finish (at `finished_at`, else its last
    update) with its duration, its tokens at that time (an unfinished task's at its last update),
    the pending tasks per queue, and each agent's last write through each face from the event
    log. Minute rows are written for the last REBUILD_MINUTES only (the view reads the last hour).
    """
    now = now or datetime.now(UTC)
    TaskRollup.objects.filter(organization_id=organization_id).delete()
    tasks = Task.objects.filter(organization_id=organization_id)
    rows: dict[tuple, dict[str, Any]] = {}
    for span, unit, qs in (
        (HOUR, "hour", tasks),
        (MINUTE, "minute", tasks.filter(updated_at__gte=now - REBUILD_MINUTES)),
    ):
        _add_rows(rows, span, _created_rows(qs, unit))
        _add_rows(rows, span, _moved_rows(qs, unit))
    pending = (
        tasks.filter(status=lifecycle.Status.PENDING, deleted_at__isnull=True)
        .values("agent_id", "queue")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in pending:
        rows.setdefault((row["agent_id"] or 0, row["queue"], NOW, NOW_START), {})["pending"] = row["n"]
    seen = (
        TaskEvent.objects.filter(
            organization_id=organization_id, actor_kind=ActorKind.TOKEN, face__in=ROLLUP_SEEN_FACES
        )
        .values("task__agent_id", "task__queue", "face")
        .annotate(last=Max("created_at"))
        .order_by()
    )
    for row in seen:
        key = (row["task__agent_id"] or 0, row["task__queue"], NOW, NOW_START)
        rows.setdefault(key, {})[_SEEN_COLUMNS[row["face"]]] = row["last"]
    # COPY on PostgreSQL: a bulk load's months of hourly rows (bulk_create spent seconds resolving
    # the db_default of every unset column in Python).
    bulk.copy_rows(
        TaskRollup,
        [
            TaskRollup(organization_id=organization_id, agent_key=a, queue=q, span=s, start=t, **values)
            for (a, q, s, t), values in rows.items()
        ],
    )
    return len(rows)


def _created_rows(qs, unit: str) -> Iterable[dict]:
    return (
        qs.annotate(at=Trunc("created_at", unit, tzinfo=UTC))
        .values("agent_id", "at")
        .annotate(created=Count("pk"))
        .order_by()
    )


def _moved_rows(qs, unit: str) -> Iterable[dict]:
    """Finishes by outcome with their duration buckets, and tokens, by the time each task last moved."""
    finished = Q(status__in=lifecycle.TERMINAL)
    aggregates = {
        "completed": Count("pk", filter=Q(status=lifecycle.Status.COMPLETED)),
        "failed": Count("pk", filter=Q(status__in=lifecycle.FAILURES)),
        "stopped": Count("pk", filter=Q(status__in=lifecycle.STOPS)),
        "duration_sum": Coalesce(Sum("duration", filter=finished), Value(0.0), output_field=FloatField()),
        "prompt_tokens": Sum("prompt_tokens"),
        "completion_tokens": Sum("completion_tokens"),
    }
    low = 0.0
    for name, high in zip(ROLLUP_BUCKETS, (*ROLLUP_DURATION_BOUNDS, None), strict=True):
        bounds = Q(duration__gt=low) if low else Q()
        if high is not None:
            bounds &= Q(duration__lte=high)
        aggregates[name] = Count("pk", filter=finished & bounds)
        low = high or low
    return (
        qs.annotate(at=Trunc(Coalesce("finished_at", "updated_at"), unit, tzinfo=UTC))
        .values("agent_id", "at")
        .annotate(**aggregates)
        .order_by()
    )


def _add_rows(rows: dict[tuple, dict[str, Any]], span: int, grouped: Iterable[dict]) -> None:
    for row in grouped:
        key = (row.pop("agent_id") or 0, "", span, row.pop("at"))
        values = rows.setdefault(key, {})
        for name, value in row.items():
            if value:
                values[name] = values.get(name, 0) + value
