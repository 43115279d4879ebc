"""Workers that pull tasks from a queue: registration, heartbeats, and what a worker finishes.

A worker (ClaudeBench's registered instance) is not a task: registering and heartbeating change
the worker row only and write no TaskEvent. What a worker does to a task (claim, complete) goes
through `tasks.task_claim` and `task_complete` here, one TaskEvent each, like every other change.
"""

from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import lifecycle
from ..lifecycle import Status
from ..models import EventType, Organization, Task, Worker
from .actors import Actor
from .errors import Errors, InvalidInput, TaskNotAssigned, TransitionRefused, WorkerNotRegistered
from .kernel import changing
from .validation import clean_value, json_problem

# A worker that has not registered or beaten within this window is gone (ClaudeBench's 30 s TTL).
WORKER_TTL = timedelta(seconds=30)


def _check_name(name: Any, errors: Errors, field: str) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        errors.add(field, "Must be a worker id of 1 to 200 characters.")
        return
    clean_value("title", name, errors)  # the same text rules (no NUL, valid Unicode)
    if "title" in errors.errors:
        errors.errors[field] = errors.errors.pop("title")


def worker_register(
    *, organization: Organization, name: str, roles: list[str] | None = None, metadata: dict | None = None
) -> Worker:
    """Register (or re-register) a worker; registering counts as a heartbeat."""
    errors = Errors()
    _check_name(name, errors, "id")
    roles = roles or []
    if not isinstance(roles, list) or not all(isinstance(r, str) and 0 < len(r) <= 50 for r in roles):
        errors.add("roles", "Must be a list of role names.")
    elif len(roles) > 20:
        errors.add("roles", "At most 20 roles.")
    metadata = metadata or {}
    if not isinstance(metadata, dict):
        errors.add("metadata", "Must be an object.")
    else:
        problem = json_problem(metadata, limit=4096)
        if problem:
            errors.add("metadata", problem)
    errors.raise_if_any()
    now = timezone.now()
    values = {"roles": roles, "metadata": metadata, "registered_at": now, "last_heartbeat_at": now}
    try:
        with transaction.atomic():
            worker, _ = Worker.objects.update_or_create(organization=organization, name=name, defaults=values)
    except IntegrityError:  # registered concurrently under the same id
        worker, _ = Worker.objects.update_or_create(organization=organization, name=name, defaults=values)
    return worker


def worker_heartbeat(*, organization: Organization, name: str) -> Worker | None:
    """Renew a registered worker; None when it never registered or its registration lapsed."""
    if not isinstance(name, str) or not name:
        return None
    now = timezone.now()
    updated = Worker.objects.filter(
        organization=organization, name=name, last_heartbeat_at__gte=now - WORKER_TTL
    ).update(last_heartbeat_at=now)
    if not updated:
        return None
    return Worker.objects.get(organization=organization, name=name)


def active_worker(*, organization: Organization, name: str) -> Worker:
    """The registered, live worker `name`; WorkerNotRegistered otherwise."""
    errors = Errors()
    _check_name(name, errors, "workerId")
    errors.raise_if_any()
    worker = Worker.objects.filter(
        organization=organization, name=name, last_heartbeat_at__gte=timezone.now() - WORKER_TTL
    ).first()
    if worker is None:
        raise WorkerNotRegistered(f"Worker not registered: {name}")
    return worker


def task_complete(
    *,
    task: Task | str,
    actor: Actor,
    organization_id: int | None = None,
    worker: str | None = None,
    result: str | None = None,
) -> Task:
    """A worker reports its task done: completed with a result, failed without one.

    The task must be assigned to a worker (to `worker`, when named) and not finished yet.
    """
    with changing(task, actor=actor, organization_id=organization_id) as change:
        locked = change.task
        target = Status.COMPLETED if result is not None else Status.FAILED
        if locked.is_terminal:
            message = f"Task already {locked.status}: {locked.public_id}"
            raise TransitionRefused(lifecycle.TransitionError(locked.status, target, message))
        assigned = locked.assigned_worker
        if assigned is None:
            raise TaskNotAssigned(f"Task not assigned: {locked.public_id}")
        if worker is not None and assigned.name != worker:
            raise TaskNotAssigned(f"Task {locked.public_id} is assigned to another worker, not {worker}")
        if result is not None:
            errors = Errors()
            clean_value("result", result, errors)
            if errors.errors:
                raise InvalidInput(errors.errors)
        change.move_to(target, values={"result": result} if result is not None else None)
        change.record(EventType.COMPLETED)
    return change.task
