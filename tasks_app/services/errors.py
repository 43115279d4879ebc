"""Refusals of the write path. Raising one means nothing was changed."""

from .. import lifecycle
from ..models import HitlRequest, Task, TaskEvent


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
        super().__init__(
            f"Task {task.public_id} is at version {task.version}, not {expected}: it was changed{who}{what}."
        )


class IdTaken(ServiceError):
    code = "id_taken"


class NameTaken(IdTaken):
    """Another task of the organization already has this unique name (Agentex's task names)."""

    code = "name_taken"


class TaskNotFound(ServiceError):
    code = "not_found"


class TaskCleaned(ServiceError):
    """The task's content was removed by retention (services.retention): it is kept read-only."""

    code = "cleaned"

    def __init__(self, task: Task):
        self.cleaned_at = task.cleaned_at
        when = task.cleaned_at.strftime("%Y-%m-%d %H:%M UTC") if task.cleaned_at else "earlier"
        super().__init__(
            f"Task {task.public_id} was cleaned by retention on {when}: its content is gone and it can only be read."
        )


class WorkerNotRegistered(ServiceError):
    """The worker never registered, or its registration lapsed without a heartbeat."""

    code = "worker_not_registered"


class TaskNotAssigned(ServiceError):
    """A completion from a worker the task is not assigned to (or from none at all)."""

    code = "not_assigned"


class HitlError(ServiceError):
    code = "hitl"


class NotAllowed(ServiceError):
    """The actor may not do this in this organization (e.g. a viewer deciding a HITL request)."""

    code = "forbidden"


class HitlAlreadyDecided(HitlError):
    code = "hitl_decided"

    def __init__(self, hitl: HitlRequest):
        self.hitl = hitl
        when = hitl.decided_at.strftime("%H:%M:%S") if hitl.decided_at else ""
        super().__init__(f"Already {hitl.decision} by {hitl.decided_by_label or 'someone'} at {when} UTC.")


class Errors:
    """Collects field errors so a caller hears about every bad field at once."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def raise_if_any(self) -> None:
        if self.errors:
            raise InvalidInput(self.errors)
