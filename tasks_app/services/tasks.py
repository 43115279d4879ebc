"""Task services: create, update, stop, retry, delete, claim, metrics."""

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from .. import lifecycle
from ..lifecycle import Status
from ..models import Agent, EventType, Organization, Task, Worker
from .actors import Actor
from .errors import Errors, IdTaken, InvalidInput, NameTaken, TransitionRefused
from .kernel import Change, changing, status_effects
from .validation import (
    CREATE_FIELDS,
    MERGE_FIELDS,
    NULLABLE,
    UPDATE_FIELDS,
    check_task_id,
    clean_fields,
    clean_value,
)


def _fingerprint(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def resolve_agent(organization: Organization, agent: Agent | str | None) -> Agent | None:
    """An agent name Taskdesk has not seen is registered for the organization on first use."""
    if agent is None or isinstance(agent, Agent):
        if agent is not None and agent.organization_id != organization.pk:
            raise InvalidInput({"agent": ["Unknown agent."]})
        return agent
    errors = Errors()
    if not isinstance(agent, str) or not agent.strip() or len(agent) > 200:
        raise InvalidInput({"agent": ["Must be an agent id of 1 to 200 characters."]})
    clean_value("title", agent, errors)  # the same text rules (no NUL, valid Unicode)
    if errors.errors:
        raise InvalidInput({"agent": errors.errors["title"]})
    found, _ = Agent.objects.get_or_create(organization=organization, name=agent.strip())
    return found


def _name_taken(organization_id: int, name: str, *, except_pk: int | None = None) -> bool:
    qs = Task.objects.filter(organization_id=organization_id, name=name)
    if except_pk is not None:
        qs = qs.exclude(pk=except_pk)
    return qs.exists()


def task_create(
    *,
    organization: Organization,
    actor: Actor,
    id: str | None = None,
    agent: Agent | str | None = None,
    parent_id: str | None = None,
    **fields: Any,
) -> tuple[Task, bool]:
    """Create a task; a caller-supplied id created twice with the same body returns the first.

    Ids are unique within the organization only: another organization's task with the same id
    is invisible here (no "taken" answer that would tell a caller it exists).
    """
    errors = Errors()
    if id is not None:
        check_task_id(id, errors)
    if parent_id is not None:
        check_task_id(parent_id, errors, "parent_id")
    fields = {k: v for k, v in fields.items() if v is not None or k in NULLABLE}
    cleaned = clean_fields(fields, CREATE_FIELDS, errors)
    status = cleaned.get("status", Status.PENDING)
    errors.raise_if_any()

    body = {**cleaned, "agent": agent.name if isinstance(agent, Agent) else agent, "parent_id": parent_id}
    fingerprint = _fingerprint(body) if id is not None else ""

    if id is not None:
        existing = Task.objects.filter(organization=organization, public_id=id).first()
        if existing is not None:
            return _existing_or_conflict(existing, fingerprint), False

    try:
        with transaction.atomic():
            agent_obj = resolve_agent(organization, agent)
            parent = None
            if parent_id is not None:
                parent = Task.objects.filter(
                    organization=organization, public_id=parent_id, deleted_at__isnull=True
                ).first()
                if parent is None:
                    raise InvalidInput({"parent_id": [f"Task not found: {parent_id}"]})
            if cleaned.get("name") and _name_taken(organization.pk, cleaned["name"]):
                raise NameTaken(f"Task name {cleaned['name']!r} is already taken in this organization.")
            now = timezone.now()
            task = Task(
                organization=organization,
                agent=agent_obj,
                parent=parent,
                create_fingerprint=fingerprint,
                created_at=now,
                updated_at=now,
                **cleaned,
            )
            if id is not None:
                task.public_id = id
            for name, value in status_effects(task, status, now).items():
                # A value the caller reported (e.g. an external run's duration) wins.
                if name not in cleaned:
                    setattr(task, name, value)
            task.save(force_insert=True)
            change = Change(task, actor, now, created=True)
            change.changes = sorted(cleaned)
            change.after = {name: getattr(task, name) for name in ("status", "title", "priority", "source")}
            if agent_obj:
                change.after["agent"] = agent_obj.name
            change.record(EventType.CREATED, save=False, force=True)
    except IntegrityError:
        # Another caller created the same id (or name) between our check and our insert.
        existing = Task.objects.filter(organization=organization, public_id=id).first() if id is not None else None
        if existing is None:
            if cleaned.get("name"):
                raise NameTaken(f"Task name {cleaned['name']!r} is already taken in this organization.") from None
            raise
        return _existing_or_conflict(existing, fingerprint), False
    return task, True


def _existing_or_conflict(existing: Task, fingerprint: str) -> Task:
    if existing.create_fingerprint == fingerprint and existing.deleted_at is None:
        return existing
    raise IdTaken(f"Task id {existing.public_id!r} is already used by another task of this organization.")


def task_update(
    *,
    task: Task | str,
    actor: Actor,
    organization_id: int | None = None,
    expected_version: int | None = None,
    metadata_replace: bool = False,
    params_replace: bool = False,
    payload_extension_replace: bool = False,
    retry: bool = False,
    strict: bool = False,
    echoed: Callable[[Task, str, Any], bool] | None = None,
    **fields: Any,
) -> Task:
    """Patch a task. Absent or None fields are untouched; metadata, params and payload extension merge.

    `strict` refuses a status the task already has instead of treating it as a no-op.
    `echoed(task, name, value)` is for a client that sends back the whole task it read (xpander's
    asave): a value it says is an echo of the locked task is dropped, so it cannot override what
    the lifecycle derives (the duration of a task that finishes in this patch). The comparison
    runs on the locked row, in the write's transaction: no read before it, no race with it.
    """
    errors = Errors()
    fields = {k: v for k, v in fields.items() if v is not None}
    cleaned = clean_fields(fields, UPDATE_FIELDS, errors)
    errors.raise_if_any()

    with changing(task, actor=actor, organization_id=organization_id, expected_version=expected_version) as change:
        locked = change.task
        if echoed is not None:
            cleaned = {name: value for name, value in cleaned.items() if not echoed(locked, name, value)}
        new_name = cleaned.get("name")
        if new_name and new_name != locked.name and _name_taken(locked.organization_id, new_name):
            raise NameTaken(f"Task name {new_name!r} is already taken in this organization.")
        for name in sorted(MERGE_FIELDS & cleaned.keys()):
            patch = cleaned.pop(name)
            replace = {
                "metadata": metadata_replace,
                "params": params_replace,
                "payload_extension": payload_extension_replace,
            }[name]
            if replace:
                change.replace(name, patch)
            else:
                change.merge(name, patch)
        target = cleaned.pop("status", None)
        if retry and target is None:
            target = lifecycle.RETRY_TARGET
        if target is not None:
            change.move_to(target, retry=retry, strict=strict, values=cleaned)
        else:
            change.set(**cleaned)
        change.record(EventType.UPDATED)
    return change.task


STOP_STATUSES = (Status.STOPPED, Status.CANCELED, Status.TERMINATED, Status.TIMED_OUT)


def task_stop(
    *,
    task: Task | str,
    actor: Actor,
    organization_id: int | None = None,
    reason: str = "",
    status: str = Status.STOPPED,
    expected_version: int | None = None,
) -> Task:
    """Stop an active task by hand (stop, cancel, terminate, time out); the reason is recorded.

    Without a reason the previous, unrelated status reason is cleared rather than kept.
    """
    if status not in STOP_STATUSES:
        raise InvalidInput({"status": [f"A stop ends in stopped, canceled, terminated or timed_out, not {status!r}."]})
    errors = Errors()
    clean_value("status_reason", reason, errors)
    errors.raise_if_any()
    with changing(task, actor=actor, organization_id=organization_id, expected_version=expected_version) as change:
        try:
            lifecycle.check_stop(change.task.status, status)
        except lifecycle.TransitionError as exc:
            raise TransitionRefused(exc) from None
        change.move_to(
            status,
            values={"is_manually_stopped": status == Status.STOPPED, "status_reason": (reason or "").strip()},
        )
        change.record(EventType.UPDATED)
    return change.task


def task_retry(
    *,
    task: Task | str,
    actor: Actor,
    organization_id: int | None = None,
    expected_version: int | None = None,
    reason: str = "",
) -> Task:
    """Send a finished task back to pending for another attempt (the reason, if any, recorded)."""
    extra = {"status_reason": reason} if reason else {}
    return task_update(
        task=task, actor=actor, organization_id=organization_id, expected_version=expected_version, retry=True, **extra
    )


def task_delete(*, task: Task | str, actor: Actor, organization_id: int | None = None) -> Task:
    """Soft delete (Agentex's DELETED): hidden from lists and counts, kept for the audit."""
    with changing(task, actor=actor, organization_id=organization_id, cleaned_ok=True) as change:
        if change.task.status == Status.PAUSED:
            change.withdraw_pending_hitl()
        change.set(deleted_at=change.now)
        change.record(EventType.DELETED)
    return change.task


def task_claim(
    *,
    organization: Organization,
    actor: Actor,
    agent: Agent | str | None = None,
    queue: str = "",
    worker: Worker | None = None,
) -> Task | None:
    """Hand the highest-priority, oldest pending task of `queue` to a worker; None when it is empty.

    Each face's queue is its own: a task waits on the queue it was created on (or put on).
    """
    with transaction.atomic():
        qs = Task.objects.filter(organization=organization, queue=queue, status=Status.PENDING, deleted_at__isnull=True)
        if agent is not None:
            qs = qs.filter(agent=resolve_agent(organization, agent))
        qs = qs.order_by("-priority", "created_at", "id")
        if connection.features.has_select_for_update_skip_locked:
            # Concurrent claimers skip rows another claimer holds instead of queueing on them.
            qs = qs.select_for_update(skip_locked=True, of=("self",))
        else:
            qs = qs.select_for_update()
        task = qs.select_related("agent", "parent").first()
        if task is None:
            return None
        change = Change(task, actor)
        change.move_to(Status.EXECUTING)
        if worker is not None:
            change.set(assigned_worker=worker)
        change.record(EventType.CLAIMED)
    return task


def report_metrics(
    *,
    task: Task | str,
    actor: Actor,
    organization_id: int | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    used_tools: list[str] | None = None,
    duration: float | None = None,
) -> Task:
    """Record token counts (totals), tools used (added to the set) and duration."""
    errors = Errors()
    given = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "used_tools": used_tools,
        "duration": duration,
    }
    cleaned = clean_fields({k: v for k, v in given.items() if v is not None}, UPDATE_FIELDS, errors)
    errors.raise_if_any()
    with changing(task, actor=actor, organization_id=organization_id) as change:
        if "used_tools" in cleaned:
            cleaned["used_tools"] = list(dict.fromkeys([*change.task.used_tools, *cleaned["used_tools"]]))
        change.set(**cleaned)
        change.record(EventType.METRICS)
    return change.task
