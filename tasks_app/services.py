"""The one write path: every change to a task goes through a function here.

Each call is one transaction: lock the row, check the expected version, check the lifecycle,
validate and apply the patch, bump `version`, write one `TaskEvent` (the audit row and the
outbox), and publish the event to the channel layer after commit.
"""

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from . import broadcast, lifecycle
from .lifecycle import Status
from .models import (
    TOKEN_PREFIX,
    ActivityEntry,
    ActivityKind,
    ActorKind,
    Agent,
    ApiToken,
    EventType,
    Face,
    HitlDecision,
    HitlRequest,
    Organization,
    Task,
    TaskEvent,
    hash_token,
)

# --- Actors -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who makes a change and through which face; recorded on every TaskEvent."""

    kind: str
    label: str
    face: str
    user: AbstractBaseUser | None = None
    token: ApiToken | None = None

    @classmethod
    def for_user(cls, user: AbstractBaseUser, face: str = Face.DASHBOARD) -> "Actor":
        return cls(kind=ActorKind.USER, label=user.get_username(), face=face, user=user)

    @classmethod
    def for_token(cls, token: ApiToken, face: str = Face.API) -> "Actor":
        return cls(kind=ActorKind.TOKEN, label=f"token:{token.name}", face=face, token=token)

    @classmethod
    def system(cls, label: str = "system", face: str = Face.SYSTEM) -> "Actor":
        return cls(kind=ActorKind.SYSTEM, label=label, face=face)


# --- Errors -------------------------------------------------------------------------------


class ServiceError(Exception):
    """Base of every refusal from the write path; nothing was changed."""

    code = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(ServiceError):
    code = "invalid"

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in errors.items()))


class TransitionRefused(ServiceError):
    code = "transition"

    def __init__(self, error: lifecycle.TransitionError):
        super().__init__(str(error))
        self.current = error.current
        self.target = error.target
        self.allowed = error.allowed


class VersionConflict(ServiceError):
    code = "conflict"

    def __init__(self, task: Task, expected: int, last_event: TaskEvent | None):
        self.task = task
        self.expected_version = expected
        self.current_version = task.version
        self.last_event = last_event
        who = f" by {last_event.actor_label}" if last_event else ""
        what = f" ({', '.join(last_event.changes)})" if last_event and last_event.changes else ""
        super().__init__(f"Task {task.pk} is at version {task.version}, not {expected}: it was changed{who}{what}.")


class IdTaken(ServiceError):
    code = "id_taken"


class NameTaken(IdTaken):
    """Another task of the organization already has this unique name (Agentex's task names)."""

    code = "name_taken"


class TaskNotFound(ServiceError):
    code = "not_found"


class HitlError(ServiceError):
    code = "hitl"


class HitlAlreadyDecided(HitlError):
    code = "hitl_decided"

    def __init__(self, hitl: HitlRequest):
        self.hitl = hitl
        when = hitl.decided_at.strftime("%H:%M:%S") if hitl.decided_at else ""
        super().__init__(f"Already {hitl.decision} by {hitl.decided_by_label or 'someone'} at {when} UTC.")


# --- Validation rules ---------------------------------------------------------------------

TASK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$")
JSON_LIMIT_BYTES = 64 * 1024

TEXT_LIMITS: dict[str, int] = {
    "title": 500,
    "name": 200,
    "source": 100,
    "agent_version": 100,
    "triggering_agent_id": 200,
    "status_reason": 2_000,
    "internal_status": 100,
    "last_executed_node_id": 200,
    "output_format": 50,
    "think_mode": 20,
    "voice_id": 100,
    "input_text": 100_000,
    "result": 100_000,
    "additional_context": 20_000,
    "instructions_override": 20_000,
    "expected_output": 20_000,
}
OBJECT_FIELDS = {"metadata", "params", "payload_extension", "deep_planning", "output_schema", "input_user"}
LIST_FIELDS = {"input_files", "used_tools", "mcp_servers"}
BOOL_FIELDS = {
    "is_orchestration",
    "events_streaming",
    "return_metrics",
    "disable_attachment_injection",
}
# Nullable fields where None is a value, not "leave untouched".
NULLABLE = {"name", "result", "output_schema", "input_user"}
MERGE_FIELDS = {"metadata", "params", "payload_extension"}

# Fields a caller may set when creating a task.
# Fields a caller may set when creating a task (a run executed elsewhere may arrive whole).
CREATE_FIELDS = set(TEXT_LIMITS) | OBJECT_FIELDS | LIST_FIELDS | BOOL_FIELDS
CREATE_FIELDS |= {"priority", "status", "execution_attempts", "prompt_tokens", "completion_tokens", "duration"}
# Fields update() patches; status goes through the lifecycle check.
UPDATE_FIELDS = CREATE_FIELDS

ACTIVITY_TEXT_LIMITS = {"role": 20, "content": 100_000, "tool_name": 200, "tool_call_id": 200}
ACTIVITY_BATCH_LIMIT = 500


class _Errors:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def raise_if_any(self) -> None:
        if self.errors:
            raise InvalidInput(self.errors)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _json_problem(value: Any) -> str | None:
    """Why a JSON value cannot be stored (too large, or a NUL that PostgreSQL's jsonb refuses)."""
    if len(json.dumps(value, separators=(",", ":"), default=str).encode()) > JSON_LIMIT_BYTES:
        return f"At most {JSON_LIMIT_BYTES // 1024} KB of JSON."
    if _has_nul(value):
        return "Must not contain NUL characters."
    return None


def _clean_value(name: str, value: Any, errors: _Errors) -> Any:
    """Check one field's type and size; return the stored form."""
    if value is None:
        if name in NULLABLE:
            return None
        errors.add(name, "May not be null.")
        return None
    if name in TEXT_LIMITS:
        if not isinstance(value, str):
            errors.add(name, "Must be a string.")
        elif name == "name" and not value.strip():
            errors.add(name, "Must be 1 to 200 characters, or null for no name.")
        elif len(value) > TEXT_LIMITS[name]:
            errors.add(name, f"At most {TEXT_LIMITS[name]:,} characters (got {len(value):,}).")
        elif "\x00" in value:
            errors.add(name, "Must not contain NUL characters.")
        return value
    if name in OBJECT_FIELDS:
        if not isinstance(value, dict):
            errors.add(name, f"Must be a JSON object, not {_json_type(value)}.")
        elif problem := _json_problem(value):
            errors.add(name, problem)
        return value
    if name in LIST_FIELDS:
        if not isinstance(value, list):
            errors.add(name, f"Must be a JSON array, not {_json_type(value)}.")
        elif problem := _json_problem(value):
            errors.add(name, problem)
        elif name in ("input_files", "used_tools") and not all(isinstance(v, str) for v in value):
            errors.add(name, "Must be a list of strings.")
        return value
    if name in BOOL_FIELDS:
        if not isinstance(value, bool):
            errors.add(name, "Must be true or false.")
        return value
    if name == "priority":
        if isinstance(value, bool) or not isinstance(value, int):
            errors.add(name, "Must be an integer from 0 to 100.")
        elif not 0 <= value <= 100:
            errors.add(name, f"Must be from 0 to 100 (got {value}).")
        return value
    if name in ("prompt_tokens", "completion_tokens", "execution_attempts"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            errors.add(name, "Must be a non-negative integer.")
        elif value > 2**62:
            errors.add(name, "Too large.")
        return value
    if name == "duration":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != value:
            errors.add(name, "Must be a non-negative number of seconds.")
            return value
        return float(value)
    if name == "status":
        if value not in lifecycle.STATUS_LABELS:
            errors.add(name, f"Unknown status {value!r}; expected one of: {', '.join(lifecycle.STATUSES)}.")
        return value
    errors.add(name, "Unknown field.")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _clean_fields(values: dict[str, Any], allowed: set[str], errors: _Errors) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for name, value in values.items():
        if name not in allowed:
            errors.add(name, "Unknown field.")
            continue
        cleaned[name] = _clean_value(name, value, errors)
    return cleaned


def merge_object(current: dict | None, patch: dict) -> dict:
    """The one merge rule for metadata, params and payload extension: top-level keys overwrite."""
    merged = dict(current or {})
    merged.update(patch)
    return merged


# --- Events -------------------------------------------------------------------------------

_EVENT_LOCK_NAMESPACE = 7411


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _record(
    task: Task,
    *,
    type: str,
    actor: Actor,
    changes: list[str],
    before: dict | None = None,
    after: dict | None = None,
) -> TaskEvent:
    """Write the TaskEvent for this transaction's change and publish it once committed."""
    if connection.vendor == "postgresql":
        # Serialise event inserts per organization until commit, so event ids become visible
        # in id order and a reader resuming "after id N" can never skip a late-committing event.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_EVENT_LOCK_NAMESPACE, task.organization_id])
    event = TaskEvent.objects.create(
        task=task,
        organization_id=task.organization_id,
        type=type,
        changes=changes,
        before={k: _jsonable(v) for k, v in (before or {}).items()},
        after={k: _jsonable(v) for k, v in (after or {}).items()},
        actor_kind=actor.kind,
        actor_user=actor.user if actor.user is not None and actor.user.is_authenticated else None,
        actor_token=actor.token,
        actor_label=actor.label[:200],
        face=actor.face,
        task_version=task.version,
    )
    transaction.on_commit(lambda: broadcast.publish(event), robust=True)
    return event


def last_event(task: Task) -> TaskEvent | None:
    return TaskEvent.objects.filter(task_id=task.pk).order_by("-id").first()


# --- Locking and lifecycle helpers --------------------------------------------------------


def _lock(task: Task | str, organization_id: int | None = None) -> Task:
    pk = task.pk if isinstance(task, Task) else task
    qs = Task.objects.select_for_update()
    if organization_id is None and isinstance(task, Task):
        organization_id = task.organization_id
    if organization_id is not None:
        qs = qs.filter(organization_id=organization_id)
    try:
        return qs.get(pk=pk, deleted_at__isnull=True)
    except Task.DoesNotExist:
        raise TaskNotFound(f"Task not found: {pk}") from None


def _check_version(task: Task, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != task.version:
        raise VersionConflict(task, expected_version, last_event(task))


def _status_effects(task: Task, target: str, now: datetime, *, retry: bool = False) -> dict[str, Any]:
    """The timestamp and flag changes a status change implies."""
    effects: dict[str, Any] = {}
    if retry:
        effects.update(
            finished_at=None,
            started_at=None,
            paused_at=None,
            is_manually_stopped=False,
            execution_attempts=task.execution_attempts + 1,
            duration=0.0,
        )
        return effects
    if target == Status.EXECUTING and task.started_at is None:
        effects["started_at"] = now
    if target == Status.PAUSED:
        effects["paused_at"] = now
    if lifecycle.is_terminal(target):
        effects["finished_at"] = now
        start = task.started_at or task.created_at
        effects["duration"] = round(max((now - start).total_seconds(), 0.0), 3)
    return effects


def _apply(task: Task, values: dict[str, Any]) -> tuple[list[str], dict, dict]:
    """Set values on the locked task; return changed field names and before/after."""
    changes: list[str] = []
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for name, value in values.items():
        old = getattr(task, name)
        if old == value:
            continue
        changes.append(name)
        before[name] = old
        after[name] = value
        setattr(task, name, value)
    return changes, before, after


def _merge_diff(name: str, current: dict, patch: dict) -> tuple[dict, dict, dict] | None:
    """Merged value plus before/after of just the keys the patch touched (None if no change)."""
    merged = merge_object(current, patch)
    touched = [k for k in patch if k not in current or current[k] != patch[k]]
    if not touched:
        return None
    return merged, {k: current[k] for k in touched if k in current}, {k: patch[k] for k in touched}


def _save(task: Task, changes: Iterable[str], now: datetime) -> None:
    task.version += 1
    task.updated_at = now
    task.save(update_fields=[*changes, "version", "updated_at"])


def _close_pending_hitl(task: Task, actor: Actor, now: datetime) -> None:
    """A task that leaves its pause by any other road withdraws its pending request."""
    HitlRequest.objects.filter(task=task, decision__isnull=True).update(
        decision=HitlDecision.WITHDRAWN, decided_at=now, decided_by_label=actor.label[:200]
    )


# --- Task services ------------------------------------------------------------------------


def _fingerprint(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def resolve_agent(organization: Organization, agent: Agent | str | None) -> Agent | None:
    """An agent name Taskdesk has not seen is registered for the organization on first use."""
    if agent is None or isinstance(agent, Agent):
        if agent is not None and agent.organization_id != organization.pk:
            raise InvalidInput({"agent": ["Unknown agent."]})
        return agent
    if not isinstance(agent, str) or not agent.strip() or len(agent) > 200:
        raise InvalidInput({"agent": ["Must be an agent id of 1 to 200 characters."]})
    found, _ = Agent.objects.get_or_create(organization=organization, name=agent.strip())
    return found


def task_create(
    *,
    organization: Organization,
    actor: Actor,
    id: str | None = None,
    agent: Agent | str | None = None,
    parent_id: str | None = None,
    **fields: Any,
) -> tuple[Task, bool]:
    """Create a task; a caller-supplied id created twice with the same body returns the first."""
    errors = _Errors()
    if id is not None and (not isinstance(id, str) or not TASK_ID_RE.match(id)):
        errors.add("id", "Must be 1-100 characters: letters, digits and . _ : @ - (starting with a letter or digit).")
    fields = {k: v for k, v in fields.items() if v is not None or k in NULLABLE}
    cleaned = _clean_fields(fields, CREATE_FIELDS, errors)
    status = cleaned.get("status", Status.PENDING)
    errors.raise_if_any()

    body = {**cleaned, "agent": agent.name if isinstance(agent, Agent) else agent, "parent_id": parent_id}
    fingerprint = _fingerprint(body) if id is not None else ""

    if id is not None:
        existing = Task.objects.filter(pk=id).first()
        if existing is not None:
            return _existing_or_conflict(existing, organization, fingerprint), False

    try:
        with transaction.atomic():
            agent_obj = resolve_agent(organization, agent)
            parent = None
            if parent_id is not None:
                parent = Task.objects.filter(organization=organization, pk=parent_id, deleted_at__isnull=True).first()
                if parent is None:
                    raise InvalidInput({"parent_id": [f"Task not found: {parent_id}"]})
            if cleaned.get("name") and Task.objects.filter(organization=organization, name=cleaned["name"]).exists():
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
                task.id = id
            for name, value in _status_effects(task, status, now).items():
                # A value the caller reported (e.g. an external run's duration) wins.
                if name not in cleaned:
                    setattr(task, name, value)
            task.save(force_insert=True)
            snapshot = {name: getattr(task, name) for name in ("status", "title", "priority", "source")}
            if agent_obj:
                snapshot["agent"] = agent_obj.name
            _record(task, type=EventType.CREATED, actor=actor, changes=sorted(cleaned), after=snapshot)
    except IntegrityError:
        # Another caller created the same id (or name) between our check and our insert.
        existing = Task.objects.filter(pk=id).first() if id is not None else None
        if existing is None:
            if cleaned.get("name"):
                raise NameTaken(f"Task name {cleaned['name']!r} is already taken in this organization.") from None
            raise
        return _existing_or_conflict(existing, organization, fingerprint), False
    return task, True


def _existing_or_conflict(existing: Task, organization: Organization, fingerprint: str) -> Task:
    if existing.organization_id == organization.pk and existing.create_fingerprint == fingerprint:
        return existing
    raise IdTaken(f"Task id {existing.pk!r} is already taken by a task created with a different body.")


def task_update(
    *,
    task: Task | str,
    actor: Actor,
    organization_id: int | None = None,
    expected_version: int | None = None,
    metadata_replace: bool = False,
    params_replace: bool = False,
    retry: bool = False,
    **fields: Any,
) -> Task:
    """Patch a task. Absent or None fields are untouched; metadata, params and payload extension merge."""
    errors = _Errors()
    fields = {k: v for k, v in fields.items() if v is not None}
    cleaned = _clean_fields(fields, UPDATE_FIELDS, errors)
    errors.raise_if_any()

    with transaction.atomic():
        locked = _lock(task, organization_id)
        _check_version(locked, expected_version)
        now = timezone.now()
        new_name = cleaned.get("name")
        name_clash = Task.objects.filter(organization_id=locked.organization_id, name=new_name)
        if new_name and new_name != locked.name and name_clash.exists():
            raise NameTaken(f"Task name {new_name!r} is already taken in this organization.")

        values: dict[str, Any] = {}
        merged_before: dict[str, Any] = {}
        merged_after: dict[str, Any] = {}
        merge_changes: list[str] = []
        for name in MERGE_FIELDS & cleaned.keys():
            patch = cleaned.pop(name)
            replace = (name == "metadata" and metadata_replace) or (name == "params" and params_replace)
            current = getattr(locked, name) or {}
            if replace:
                values[name] = patch
                continue
            diff = _merge_diff(name, current, patch)
            if diff is not None:
                merged, before_keys, after_keys = diff
                setattr(locked, name, merged)
                merge_changes.append(name)
                merged_before[name] = before_keys
                merged_after[name] = after_keys

        target = cleaned.pop("status", None)
        if retry and target is None:
            target = lifecycle.RETRY_TARGET
        values.update(cleaned)
        if target is not None and (target != locked.status or retry):
            try:
                lifecycle.check_transition(locked.status, target, retry=retry)
            except lifecycle.TransitionError as exc:
                raise TransitionRefused(exc) from None
            effects = _status_effects(locked, target, now, retry=retry)
            # A value the caller sent (e.g. a reported duration) wins over the derived one.
            values = {**effects, **values, "status": target}
            if retry and "status_reason" not in values:
                values["status_reason"] = ""
            if locked.status == Status.PAUSED and target != Status.PAUSED:
                _close_pending_hitl(locked, actor, now)

        changes, before, after = _apply(locked, values)
        changes += merge_changes
        before.update(merged_before)
        after.update(merged_after)
        if not changes:
            return locked
        _save(locked, changes, now)
        _record(locked, type=EventType.UPDATED, actor=actor, changes=changes, before=before, after=after)
    return locked


def task_stop(
    *,
    task: Task | str,
    actor: Actor,
    organization_id: int | None = None,
    reason: str = "",
    status: str = Status.STOPPED,
    expected_version: int | None = None,
) -> Task:
    """Stop an active task by hand (stop, cancel, terminate, time out)."""
    if status not in (Status.STOPPED, Status.CANCELED, Status.TERMINATED, Status.TIMED_OUT):
        raise InvalidInput({"status": [f"A stop ends in stopped, canceled, terminated or timed_out, not {status!r}."]})
    errors = _Errors()
    _clean_value("status_reason", reason, errors)
    errors.raise_if_any()
    with transaction.atomic():
        locked = _lock(task, organization_id)
        _check_version(locked, expected_version)
        if locked.status not in lifecycle.STOPPABLE:
            raise TransitionRefused(
                lifecycle.TransitionError(locked.status, status, f"The task is already {locked.status}.")
            )
        now = timezone.now()
        values = {
            **_status_effects(locked, status, now),
            "status": status,
            "is_manually_stopped": status == Status.STOPPED,
        }
        if reason:
            values["status_reason"] = reason
        if locked.status == Status.PAUSED:
            _close_pending_hitl(locked, actor, now)
        changes, before, after = _apply(locked, values)
        _save(locked, changes, now)
        _record(locked, type=EventType.UPDATED, actor=actor, changes=changes, before=before, after=after)
    return locked


def task_retry(*, task: Task | str, actor: Actor, organization_id: int | None = None, expected_version=None) -> Task:
    """Send a finished task back to pending for another attempt."""
    return task_update(
        task=task, actor=actor, organization_id=organization_id, expected_version=expected_version, retry=True
    )


def task_delete(*, task: Task | str, actor: Actor, organization_id: int | None = None) -> Task:
    """Soft delete (Agentex's DELETED): hidden from lists, kept for the audit."""
    with transaction.atomic():
        locked = _lock(task, organization_id)
        now = timezone.now()
        changes, before, after = _apply(locked, {"deleted_at": now})
        if locked.status == Status.PAUSED:
            _close_pending_hitl(locked, actor, now)
        _save(locked, changes, now)
        _record(locked, type=EventType.DELETED, actor=actor, changes=changes, before=before, after=after)
    return locked


def task_claim(*, organization: Organization, actor: Actor, agent: Agent | str | None = None) -> Task | None:
    """Hand the highest-priority, oldest pending task to a worker; None when the queue is empty."""
    with transaction.atomic():
        qs = Task.objects.filter(organization=organization, status=Status.PENDING, deleted_at__isnull=True)
        if agent is not None:
            agent_obj = resolve_agent(organization, agent)
            qs = qs.filter(agent=agent_obj)
        qs = qs.order_by("-priority", "created_at", "id")
        if connection.features.has_select_for_update_skip_locked:
            # Concurrent claimers skip rows another claimer holds instead of queueing on them.
            qs = qs.select_for_update(skip_locked=True)
        else:
            qs = qs.select_for_update()
        task = qs.first()
        if task is None:
            return None
        now = timezone.now()
        values = {**_status_effects(task, Status.EXECUTING, now), "status": Status.EXECUTING}
        changes, before, after = _apply(task, values)
        _save(task, changes, now)
        _record(task, type=EventType.UPDATED, actor=actor, changes=changes, before=before, after=after)
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
    errors = _Errors()
    given = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "used_tools": used_tools,
        "duration": duration,
    }
    cleaned = _clean_fields({k: v for k, v in given.items() if v is not None}, UPDATE_FIELDS, errors)
    errors.raise_if_any()
    with transaction.atomic():
        locked = _lock(task, organization_id)
        if "used_tools" in cleaned:
            cleaned["used_tools"] = list(dict.fromkeys([*locked.used_tools, *cleaned["used_tools"]]))
        changes, before, after = _apply(locked, cleaned)
        if not changes:
            return locked
        now = timezone.now()
        _save(locked, changes, now)
        _record(locked, type=EventType.METRICS, actor=actor, changes=changes, before=before, after=after)
    return locked


# --- Activity -----------------------------------------------------------------------------


def _clean_activity(entry: Any, index: int, errors: _Errors) -> dict[str, Any]:
    where = f"entries[{index}]"
    if not isinstance(entry, dict):
        errors.add(where, "Must be an object.")
        return {}
    known = {"kind", "role", "content", "tool_name", "tool_call_id", "tool_arguments", "tool_output"}
    known |= {"prompt_tokens", "completion_tokens", "created_at"}
    for name in entry.keys() - known:
        errors.add(f"{where}.{name}", "Unknown field.")
    kind = entry.get("kind", ActivityKind.MESSAGE)
    if kind not in ActivityKind.values:
        errors.add(f"{where}.kind", f"Unknown kind {kind!r}; expected one of: {', '.join(ActivityKind.values)}.")
    cleaned: dict[str, Any] = {"kind": kind}
    for name, limit in ACTIVITY_TEXT_LIMITS.items():
        value = entry.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            errors.add(f"{where}.{name}", "Must be a string.")
        elif len(value) > limit:
            errors.add(f"{where}.{name}", f"At most {limit:,} characters (got {len(value):,}).")
        elif "\x00" in value:
            errors.add(f"{where}.{name}", "Must not contain NUL characters.")
        cleaned[name] = value
    for name in ("tool_arguments", "tool_output"):
        if entry.get(name) is not None:
            if problem := _json_problem(entry[name]):
                errors.add(f"{where}.{name}", problem)
            cleaned[name] = entry[name]
    for name in ("prompt_tokens", "completion_tokens"):
        value = entry.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
            errors.add(f"{where}.{name}", "Must be a non-negative integer.")
        cleaned[name] = value
    created_at = entry.get("created_at")
    if created_at is not None:
        if not isinstance(created_at, datetime):
            errors.add(f"{where}.created_at", "Must be a datetime.")
        cleaned["created_at"] = created_at
    return cleaned


def append_activity(
    *, task: Task | str, actor: Actor, entries: list[dict[str, Any]], organization_id: int | None = None
) -> list[ActivityEntry]:
    """Append entries to a task's activity log (one event per batch; the task's version is kept)."""
    errors = _Errors()
    if not isinstance(entries, list) or not entries:
        raise InvalidInput({"entries": ["Must be a non-empty list."]})
    if len(entries) > ACTIVITY_BATCH_LIMIT:
        raise InvalidInput({"entries": [f"At most {ACTIVITY_BATCH_LIMIT} entries per call."]})
    cleaned = [_clean_activity(entry, i, errors) for i, entry in enumerate(entries)]
    errors.raise_if_any()
    with transaction.atomic():
        locked = _lock(task, organization_id)
        now = timezone.now()
        rows = [
            ActivityEntry(task=locked, organization_id=locked.organization_id, **{"created_at": now, **values})
            for values in cleaned
        ]
        created = ActivityEntry.objects.bulk_create(rows)
        kinds = sorted({row.kind for row in created})
        _record(
            locked,
            type=EventType.ACTIVITY,
            actor=actor,
            changes=["activity"],
            after={"activity_ids": [row.pk for row in created], "kinds": kinds},
        )
    return created


# --- API tokens ---------------------------------------------------------------------------


def api_token_create(*, organization: Organization, name: str, created_by=None) -> tuple[ApiToken, str]:
    """Create a token; the raw value is returned once and only its hash is stored."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput({"name": ["Must be 1 to 100 characters."]})
    raw = ApiToken.generate()
    token = ApiToken.objects.create(
        organization=organization,
        name=name,
        prefix=raw[:10],
        token_hash=hash_token(raw),
        created_by=created_by,
    )
    return token, raw


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def api_token_authenticate(raw: str | None) -> ApiToken | None:
    """The active token for a raw value (its last-used time refreshed at most once a minute)."""
    if not raw or not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    token = (
        ApiToken.objects.select_related("organization")
        .filter(token_hash=hash_token(raw), revoked_at__isnull=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


# --- Human in the loop --------------------------------------------------------------------


def hitl_request(
    *,
    task: Task | str,
    actor: Actor,
    question: str,
    organization_id: int | None = None,
    details: str = "",
    options: list | None = None,
    payload: Any = None,
    deadline: datetime | None = None,
    on_timeout: str = HitlDecision.REJECTED,
    reject_status: str = Status.FAILED,
) -> HitlRequest:
    """Pause a task for a person's decision."""
    errors = _Errors()
    if not isinstance(question, str) or not question.strip():
        errors.add("question", "Required.")
    elif len(question) > 2_000:
        errors.add("question", "At most 2,000 characters.")
    if not isinstance(details, str) or len(details) > 20_000:
        errors.add("details", "At most 20,000 characters of text.")
    if options is not None and (not isinstance(options, list) or not all(isinstance(o, str) for o in options)):
        errors.add("options", "Must be a list of strings.")
    if payload is not None and (problem := _json_problem(payload)):
        errors.add("payload", problem)
    if on_timeout not in (HitlDecision.APPROVED, HitlDecision.REJECTED):
        errors.add("on_timeout", "Must be approved or rejected.")
    if reject_status not in lifecycle.TERMINAL:
        errors.add("reject_status", f"Must be a final status: {', '.join(sorted(lifecycle.TERMINAL))}.")
    if deadline is not None and not isinstance(deadline, datetime):
        errors.add("deadline", "Must be a datetime.")
    errors.raise_if_any()

    with transaction.atomic():
        locked = _lock(task, organization_id)
        if HitlRequest.objects.filter(task=locked, decision__isnull=True).exists():
            raise HitlError(f"Task {locked.pk} already has a pending request.")
        try:
            lifecycle.check_transition(locked.status, Status.PAUSED)
        except lifecycle.TransitionError as exc:
            raise TransitionRefused(exc) from None
        now = timezone.now()
        hitl = HitlRequest.objects.create(
            task=locked,
            organization_id=locked.organization_id,
            question=question.strip(),
            details=details,
            options=options or [],
            proposed_payload=payload,
            requested_at=now,
            deadline=deadline,
            on_timeout=on_timeout,
            reject_status=reject_status,
        )
        values = {**_status_effects(locked, Status.PAUSED, now), "status": Status.PAUSED}
        changes, before, after = _apply(locked, values)
        _save(locked, changes, now)
        after["hitl_id"] = hitl.pk
        after["question"] = hitl.question
        _record(locked, type=EventType.HITL_REQUESTED, actor=actor, changes=changes, before=before, after=after)
    return hitl


def hitl_decide(
    *,
    hitl: HitlRequest | int,
    actor: Actor,
    approve: bool,
    organization_id: int | None = None,
    reason: str = "",
    comment: str = "",
    amended_payload: Any = None,
    expired: bool = False,
) -> HitlRequest:
    """Approve (task resumes executing) or reject (task ends as the request says); first decision wins."""
    errors = _Errors()
    reason = (reason or "").strip()
    comment = (comment or "").strip()
    if not approve and not reason:
        errors.add("reason", "A rejection needs a reason.")
    if len(reason) > 2_000:
        errors.add("reason", "At most 2,000 characters.")
    if len(comment) > 2_000:
        errors.add("comment", "At most 2,000 characters.")
    if amended_payload is not None:
        if not approve:
            errors.add("amended_payload", "Only an approval can amend the payload.")
        elif problem := _json_problem(amended_payload):
            errors.add("amended_payload", problem)
    errors.raise_if_any()

    pk = hitl.pk if isinstance(hitl, HitlRequest) else hitl
    with transaction.atomic():
        qs = HitlRequest.objects.select_for_update()
        if organization_id is not None:
            qs = qs.filter(organization_id=organization_id)
        try:
            locked_hitl = qs.get(pk=pk)
        except HitlRequest.DoesNotExist:
            raise HitlError(f"HITL request not found: {pk}") from None
        if not locked_hitl.is_pending:
            raise HitlAlreadyDecided(locked_hitl)
        locked = _lock(locked_hitl.task_id, locked_hitl.organization_id)
        if locked.status != Status.PAUSED:
            raise HitlError(f"The task is no longer paused (it is {locked.status}); the request cannot be decided.")
        target = Status.EXECUTING if approve else locked_hitl.reject_status
        try:
            lifecycle.check_transition(locked.status, target)
        except lifecycle.TransitionError as exc:
            raise TransitionRefused(exc) from None

        now = timezone.now()
        locked_hitl.decision = HitlDecision.APPROVED if approve else HitlDecision.REJECTED
        locked_hitl.decided_by = actor.user if actor.user is not None and actor.user.is_authenticated else None
        locked_hitl.decided_by_label = actor.label[:200]
        locked_hitl.decided_at = now
        locked_hitl.reason = reason
        locked_hitl.comment = comment
        locked_hitl.amended_payload = amended_payload
        locked_hitl.expired = expired
        locked_hitl.save()

        values: dict[str, Any] = {**_status_effects(locked, target, now), "status": target}
        if not approve:
            values["status_reason"] = reason
        changes, before, after = _apply(locked, values)
        _save(locked, changes, now)
        after.update(hitl_id=locked_hitl.pk, decision=locked_hitl.decision, reason=reason, comment=comment)
        if amended_payload is not None:
            before["payload"] = locked_hitl.proposed_payload
            after["payload"] = amended_payload
            changes.append("payload")
        _record(locked, type=EventType.HITL_DECIDED, actor=actor, changes=changes, before=before, after=after)
    return locked_hitl


def hitl_expire_due(*, now: datetime | None = None) -> int:
    """Resolve every pending request past its deadline as the request says; returns how many."""
    now = now or timezone.now()
    due = list(HitlRequest.objects.filter(decision__isnull=True, deadline__lte=now).values_list("pk", "on_timeout"))
    resolved = 0
    actor = Actor.system("deadline")
    for pk, on_timeout in due:
        try:
            hitl_decide(
                hitl=pk,
                actor=actor,
                approve=on_timeout == HitlDecision.APPROVED,
                reason="timed out",
                expired=True,
            )
        except HitlError:
            continue  # decided or withdrawn in the meantime
        resolved += 1
    return resolved


__all__ = [
    "Actor",
    "ServiceError",
    "InvalidInput",
    "TransitionRefused",
    "VersionConflict",
    "IdTaken",
    "NameTaken",
    "TaskNotFound",
    "HitlError",
    "HitlAlreadyDecided",
    "merge_object",
    "task_create",
    "task_update",
    "task_stop",
    "task_retry",
    "task_delete",
    "task_claim",
    "report_metrics",
    "append_activity",
    "hitl_request",
    "hitl_decide",
    "hitl_expire_due",
    "api_token_create",
    "api_token_revoke",
    "api_token_authenticate",
]
