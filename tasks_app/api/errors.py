"""How service refusals read on the wire: one mapping shared by every agent-facing face.

Each face keeps its own error envelope, but the HTTP status and the facts a client needs come
from here, so a refusal means the same thing through every face:

| service error              | HTTP | code          | extra facts                          |
|----------------------------|------|---------------|--------------------------------------|
| InvalidInput               | 422  | invalid       | field -> messages (`validation_detail`) |
| TransitionRefused          | 409  | transition    | current status, target, allowed next |
| VersionConflict            | 409  | conflict      | current_version, changed_by, changes |
| IdTaken                    | 409  | id_taken      |                                      |
| TaskNotFound               | 404  | not_found     |                                      |
| TaskCleaned                | 409  | cleaned       | cleaned_at (the task is read-only)   |
| NotAllowed                 | 403  | forbidden     |                                      |
| HitlAlreadyDecided         | 409  | hitl_decided  | decision                             |
| HitlError                  | 409  | hitl          |                                      |
| RequestDataTooBig          | 413  | too_large     | (raised by Django, not a service)    |

A disallowed transition is a 409, not a 422: the request is well formed, it conflicts with the
task's current state (the same request succeeds on a task in another status).
"""

from typing import Any

from ..services import (
    HitlAlreadyDecided,
    HitlError,
    IdTaken,
    InvalidInput,
    NotAllowed,
    ServiceError,
    TaskCleaned,
    TaskNotFound,
    TransitionRefused,
    VersionConflict,
)

STATUS_BY_ERROR: tuple[tuple[type[ServiceError], int], ...] = (
    (InvalidInput, 422),
    (TransitionRefused, 409),
    (VersionConflict, 409),
    (IdTaken, 409),
    (TaskNotFound, 404),
    (TaskCleaned, 409),
    (NotAllowed, 403),
    (HitlAlreadyDecided, 409),
    (HitlError, 409),
)


def http_status(exc: ServiceError) -> int:
    """The HTTP status a service refusal answers with (400 for anything unlisted)."""
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 400


def validation_detail(errors: dict[str, list[str]], location: tuple[str, ...] = ("body",)) -> list[dict[str, Any]]:
    """Service field errors in the 422 shape ninja, FastAPI and Agentex use: [{loc, msg, type}]."""
    detail = []
    for field, messages in errors.items():
        loc: list[Any] = list(location)
        # "entries[2].kind" -> ["body", "entries", 2, "kind"], like pydantic's own locations.
        for part in field.replace("]", "").replace("[", ".").split("."):
            loc.append(int(part) if part.isdigit() else part)
        for message in messages:
            detail.append({"loc": loc, "msg": message, "type": "value_error"})
    return detail


def error_facts(exc: ServiceError, *, render_status=None) -> dict[str, Any]:
    """The facts beyond the message a client can act on; `render_status` maps statuses to a face's names."""
    render = render_status or (lambda status: status)
    if isinstance(exc, TransitionRefused):
        return {
            "current_status": render(exc.current),
            "target_status": render(exc.target) if exc.target else exc.target,
            "allowed": sorted({render(s) for s in exc.allowed}),
        }
    if isinstance(exc, VersionConflict):
        facts: dict[str, Any] = {"current_version": exc.current_version, "expected_version": exc.expected_version}
        if exc.last_event is not None:
            facts["changed_by"] = exc.last_event.actor_label
            facts["changes"] = list(exc.last_event.changes)
        return facts
    if isinstance(exc, HitlAlreadyDecided):
        return {"decision": exc.hitl.decision}
    if isinstance(exc, TaskCleaned):
        return {"cleaned_at": exc.cleaned_at.isoformat() if exc.cleaned_at else None}
    if isinstance(exc, InvalidInput):
        return {"errors": exc.errors}
    return {}
