"""The kernel every task service runs on: lock, check the version, apply, record.

    with changing(task, actor=actor, organization_id=org, expected_version=v) as change:
        change.merge("metadata", {...})
        change.move_to("completed")          # lifecycle check, timestamps, HITL withdrawal
        change.set(result="done")
        change.record(EventType.UPDATED)     # version bump, counts, rollups, TaskEvent + snapshot, bell

One transaction per change. The task row is locked first (SELECT ... FOR UPDATE, scoped to
its organization); `record` then takes the organization's event lock, so event ids become
visible in id order within an organization (a reader resuming "after id N" can never skip a
late-committing event) and the status counts are updated without races. The lock is taken as
the last step before commit, so it covers only the count update, the event insert and the
commit itself. After commit the bell rings (live.bell): the event row is the truth, the bell
only tells readers to look.
"""

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from .. import lifecycle, rows
from ..lifecycle import Status
from ..models import Agent, EventType, HitlDecision, HitlRequest, Task, TaskEvent, Worker
from . import counters, rollups
from .actors import Actor
from .errors import TaskCleaned, TaskNotFound, TransitionRefused, VersionConflict
from .snapshots import task_snapshot
from .validation import TASK_ID_RE, merge_object

_EVENT_LOCK_NAMESPACE = 7411
_UNKNOWN = object()


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Model):
        return str(value)  # a related row (the assigned worker) by its name
    return value


def lock_task(task: Task | str, organization_id: int | None = None) -> Task:
    """The live task, locked for this transaction; TaskNotFound outside its organization.

    A public id is only meaningful within an organization, so one without `organization_id`
    is a programming error, not a lookup across organizations.
    """
    if isinstance(task, Task):
        if organization_id is not None and organization_id != task.organization_id:
            raise ValueError("The task belongs to another organization than the one passed.")
        column, value, organization_id, label = "id", task.pk, task.organization_id, task.public_id
    else:
        if organization_id is None:
            raise ValueError("A task id is looked up within an organization: pass organization_id.")
        if not isinstance(task, str) or not TASK_ID_RE.fullmatch(task):
            raise TaskNotFound(f"Task not found: {task}")
        column, value, label = "public_id", task, task
    with connection.cursor() as cursor:
        cursor.execute(_lock_sql(column), [organization_id, value])
        row = cursor.fetchone()
    if row is None:
        raise TaskNotFound(f"Task not found: {label}")
    found = _task_from_row(row)
    agent_name, parent_public_id, worker_name = row[len(_TASK_FIELDS) :]
    # The agent's name and the parent's public id came with the row (every face shows them);
    # the rest of those rows loads only if something reads it.
    if found.agent_id is not None:
        agent = [found.agent_id, organization_id, agent_name]
        found.agent = Agent.from_db(None, ["id", "organization_id", "name"], agent)
    if found.parent_id is not None:
        # from_db takes the values in the model's field order (Task: id, public_id, organization).
        parent = [found.parent_id, parent_public_id, organization_id]
        found.parent = Task.from_db(None, ["id", "public_id", "organization_id"], parent)
    if found.assigned_worker_id is not None:
        worker = [found.assigned_worker_id, organization_id, worker_name]
        found.assigned_worker = Worker.from_db(None, ["id", "organization_id", "name"], worker)
    return found


_TASK_FIELDS = Task._meta.concrete_fields


def _task_from_row(row: tuple) -> Task:
    """A Task from the lock query's row, converted as the ORM converts (JSON, booleans on SQLite...)."""
    return rows.from_row(Task, row[: len(_TASK_FIELDS)])


@functools.cache
def _lock_sql_for(vendor: str, column: str) -> str:
    # Raw SQL: this runs on every write, and compiling the ORM's equivalent (select_related of
    # two foreign keys, FOR UPDATE OF, ORDER BY for first()) cost more CPU than executing it.
    task, agent, worker = Task._meta.db_table, Agent._meta.db_table, Worker._meta.db_table
    columns = ", ".join(f"t.{field.column}" for field in _TASK_FIELDS)
    sql = (
        f"SELECT {columns}, a.name, p.public_id, w.name FROM {task} t"  # noqa: S608
        f" LEFT JOIN {agent} a ON a.id = t.agent_id LEFT JOIN {task} p ON p.id = t.parent_id"
        f" LEFT JOIN {worker} w ON w.id = t.assigned_worker_id"
        f" WHERE t.organization_id = %s AND t.{column} = %s AND t.deleted_at IS NULL"
    )
    # SQLite has no row locks; its IMMEDIATE transactions hold the database's write lock instead.
    return sql + " FOR UPDATE OF t" if vendor == "postgresql" else sql


def _lock_sql(column: str) -> str:
    return _lock_sql_for(connection.vendor, column)


def last_event(task: Task) -> TaskEvent | None:
    return TaskEvent.objects.filter(task_id=task.pk).order_by("-id").first()


def status_effects(task: Task, target: str, now: datetime, *, retry: bool = False) -> dict[str, Any]:
    """The timestamp and flag changes a status change implies."""
    if retry:
        return {
            "finished_at": None,
            "started_at": None,
            "paused_at": None,
            "is_manually_stopped": False,
            "execution_attempts": task.execution_attempts + 1,
            "duration": 0.0,
        }
    effects: dict[str, Any] = {}
    if target == Status.EXECUTING and task.started_at is None:
        effects["started_at"] = now
    if target == Status.PAUSED:
        effects["paused_at"] = now
    if lifecycle.is_terminal(target):
        effects["finished_at"] = now
        start = task.started_at or task.created_at
        effects["duration"] = round(max((now - start).total_seconds(), 0.0), 3)
    return effects


class Change:
    """One change to one locked task: what changed, before and after, and the event it becomes."""

    def __init__(self, task: Task, actor: Actor, now: datetime | None = None, *, created: bool = False) -> None:
        self.task = task
        self.actor = actor
        self.now = now or timezone.now()
        self.changes: list[str] = []
        self.before: dict[str, Any] = {}
        self.after: dict[str, Any] = {}
        # The status this task was counted under before the change (None: new or deleted).
        self._counted_as = None if created else (task.status if task.deleted_at is None else None)
        self.pending_hitl_id: Any = _UNKNOWN
        self.event: TaskEvent | None = None

    # --- applying -------------------------------------------------------------------------

    def set(self, **values: Any) -> None:
        """Set fields on the locked task, remembering each real change with its before/after."""
        for name, value in values.items():
            old = getattr(self.task, name)
            if old == value:
                continue
            if name not in self.changes:
                self.changes.append(name)
                self.before[name] = jsonable(old)
            self.after[name] = jsonable(value)
            setattr(self.task, name, value)

    def replace(self, name: str, value: dict) -> None:
        self.set(**{name: value})

    def merge(self, name: str, patch: dict) -> None:
        """Merge top-level keys into an object field; before/after hold only the touched keys."""
        current = getattr(self.task, name) or {}
        touched = [k for k in patch if k not in current or current[k] != patch[k]]
        if not touched:
            return
        setattr(self.task, name, merge_object(current, patch))
        self.changes.append(name)
        self.before[name] = {k: current[k] for k in touched if k in current}
        self.after[name] = {k: patch[k] for k in touched}

    def move_to(
        self, target: str, *, retry: bool = False, strict: bool = False, values: dict[str, Any] | None = None
    ) -> None:
        """Change the status through the lifecycle table, with the effects it implies.

        `values` the caller sent (a reported duration, a reason) win over derived effects. A
        task leaving its pause by any road other than a decision withdraws its pending request.
        """
        values = dict(values or {})
        current = self.task.status
        if target == current and not retry and not strict:
            self.set(**values)
            return
        try:
            lifecycle.check_transition(current, target, retry=retry, strict=strict)
        except lifecycle.TransitionError as exc:
            raise TransitionRefused(exc) from None
        effects = status_effects(self.task, target, self.now, retry=retry)
        if retry and "status_reason" not in values:
            values["status_reason"] = ""
        if current == Status.PAUSED and target != Status.PAUSED and self.pending_hitl_id is not None:
            self.withdraw_pending_hitl()
        self.set(**{**effects, **values, "status": target})

    def withdraw_pending_hitl(self) -> None:
        HitlRequest.objects.filter(task=self.task, decision__isnull=True).update(
            decision=HitlDecision.WITHDRAWN, decided_at=self.now, decided_by_label=self.actor.label[:200]
        )
        self.pending_hitl_id = None

    def note(self, *, change: str | None = None, before: dict | None = None, after: dict | None = None) -> None:
        """Facts the event carries beyond field changes (the HITL request, a decision)."""
        if change and change not in self.changes:
            self.changes.append(change)
        self.before.update({k: jsonable(v) for k, v in (before or {}).items()})
        self.after.update({k: jsonable(v) for k, v in (after or {}).items()})

    # --- recording ------------------------------------------------------------------------

    def record(self, type: str, *, save: bool = True, force: bool = False) -> TaskEvent | None:
        """Save the task (version bump) and write its event; nothing when nothing changed."""
        if not self.changes and not force:
            return None
        task = self.task
        if save:
            task.version += 1
            task.updated_at = self.now
            fields = [name for name in self.changes if name in _FIELD_NAMES]
            save_fields(task, (*fields, "version", "updated_at"))
        take_event_lock(task.organization_id)
        counted_as = task.status if task.deleted_at is None else None
        counters.apply(task.organization_id, self._counted_as, counted_as)
        rollups.apply(self, self._counted_as, created=type == EventType.CREATED)
        self._counted_as = counted_as
        if self.actor.bulk_action is not None:
            # Beside the changed fields, as a decision's facts are: which bulk action did this.
            self.after["bulk_action"] = self.actor.bulk_action
        snapshot = None
        if type != EventType.ACTIVITY:
            snapshot = task_snapshot(task, pending_hitl_id=self._pending_hitl_id())
        self.event = insert(
            TaskEvent,
            task=task,
            organization_id=task.organization_id,
            type=type,
            changes=list(self.changes),
            before=self.before,
            after=self.after,
            actor_kind=self.actor.kind,
            actor_user=self.actor.user_or_none,
            actor_token=self.actor.token,
            actor_label=self.actor.label[:200],
            face=self.actor.face,
            task_version=task.version,
            snapshot=snapshot,
            created_at=self.now,
        )
        ring_on_commit(self.event)
        return self.event

    def _pending_hitl_id(self) -> int | None:
        if self.task.status != Status.PAUSED or self.task.deleted_at is not None:
            return None
        if self.pending_hitl_id is _UNKNOWN:
            self.pending_hitl_id = (
                HitlRequest.objects.filter(task=self.task, decision__isnull=True).values_list("pk", flat=True).first()
            )
        return self.pending_hitl_id


_FIELD_NAMES = {f.name for f in Task._meta.concrete_fields}


# --- the two writes every change makes, in plain SQL -------------------------------------------
# The ORM's save(update_fields=...) and objects.create() compiled their SQL on every call: a
# third of a native PATCH's CPU (py-spy under bench/bench_writes.py). The statements depend only
# on which fields are written, so they are built once; values are still adapted by each field's
# own get_db_prep_save, exactly as the ORM would.


@functools.cache
def _update_sql(table: str, columns: tuple[str, ...], pk_column: str) -> str:
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(column)} = %s" for column in columns)
    return f"UPDATE {quote(table)} SET {assignments} WHERE {quote(pk_column)} = %s"  # noqa: S608


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...], pk_column: str) -> str:
    quote = connection.ops.quote_name
    names = ", ".join(quote(column) for column in columns)
    values = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {quote(table)} ({names}) VALUES ({values}) RETURNING {quote(pk_column)}"  # noqa: S608


def save_fields(instance: Model, names: tuple[str, ...]) -> None:
    """instance.save(update_fields=names), as one prepared-once UPDATE by primary key."""
    meta = instance._meta
    fields = [meta.get_field(name) for name in names]
    sql = _update_sql(meta.db_table, tuple(field.column for field in fields), meta.pk.column)
    values = [field.get_db_prep_save(getattr(instance, field.attname), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, instance.pk])


def insert(model: type[Model], **values: Any) -> Model:
    """model.objects.create(**values) for a model with an auto primary key, in one INSERT ... RETURNING."""
    instance = model(**values)
    meta = model._meta
    fields = [field for field in meta.concrete_fields if field is not meta.pk]
    if not connection.features.can_return_columns_from_insert:
        instance.save(force_insert=True)
        return instance
    sql = _insert_sql(meta.db_table, tuple(field.column for field in fields), meta.pk.column)
    params = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        instance.pk = cursor.fetchone()[0]
    instance._state.adding = False
    instance._state.db = connection.alias
    return instance


def take_event_lock(organization_id: int) -> None:
    """Serialise event inserts (and count updates) per organization until commit (PostgreSQL)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_EVENT_LOCK_NAMESPACE, organization_id])


def ring_on_commit(event: TaskEvent) -> None:
    from ..live import bell  # the live package reads the log; the write path only rings

    transaction.on_commit(functools.partial(bell.ring, event.organization_id, event.pk), robust=True)


@contextmanager
def changing(
    task: Task | str,
    *,
    actor: Actor,
    organization_id: int | None = None,
    expected_version: int | None = None,
    cleaned_ok: bool = False,
) -> Iterator[Change]:
    """Lock the task (scoped to its organization), check the expected version, yield a Change.

    A task cleaned by retention is read-only (TaskCleaned) unless `cleaned_ok` (a delete).
    """
    with transaction.atomic():
        locked = lock_task(task, organization_id)
        if locked.cleaned_at is not None and not cleaned_ok:
            raise TaskCleaned(locked)
        if expected_version is not None and expected_version != locked.version:
            raise VersionConflict(locked, expected_version, last_event(locked))
        yield Change(locked, actor)
