"""The JSON-RPC 2.0 task queue face (seed 002, ClaudeBench's server) at POST /rpc.

Methods (params are objects; like upstream, whose zod schemas strip what they do not know, keys and
request members this face does not know are ignored, each logged once; known ones are checked strictly):
- `system.register` {id, roles, metadata?} -> {registered}: a worker joins (registering is a
  heartbeat); `system.heartbeat` {instanceId} -> {alive} (false once 30 s passed without one)
- `task.create` {text, id?, status?, priority?, metadata?} -> task; the task waits on this face's
  own queue (the same id and body again returns the task; another body under a taken id is
  invalid params)
- `task.claim` {workerId, maxTasks? 1-10, agent?} -> {claimed: true, taskId, task: full task} or
  {claimed: false}: the registered worker takes the highest-priority (then oldest) pending task
  of this face's queue, now in_progress and assigned to it (one per call, like upstream).
  Tasks created through other faces wait on other queues unless put on this one (`queue`).
- `task.complete` {id | taskId, workerId?, result?} -> {id, status, completedAt}: completed with
  a result, failed without one; the task must be assigned (to `workerId`, when given) and not
  finished (a second completion is refused). A non-string result is stored as JSON.
- `task.update` {id, updates: {text 1-500, status pending|in_progress|completed|failed,
  priority 0-100, metadata (merged)}} -> task
- `task.list` {status?: name or [names], assignedTo?, priority?, limit? 1-1000 (100),
  offset?, orderBy? createdAt|updatedAt|priority|status|assignedTo, order? asc|desc, cursor?}
  -> {tasks: [full task], totalCount, hasMore, nextCursor} (nextCursor continues newest-first
  pages by keyset)

A task reads `{id, text, status, priority, createdAt, updatedAt}` (text is the task's title,
timestamps ISO 8601 UTC with a `Z`); a full task adds `assignedTo` (the worker), `metadata`,
`result`, `error`, `completedAt`, `attachmentCount`. Statuses map through `lifecycle.JSONRPC`.
A task's `metadata` (task.create, task.update) may say where the work came from and what it cost,
which ClaudeBench's task has no fields for: `source` and `usage` (token totals, `{input_tokens,
output_tokens}` or `{prompt_tokens, completion_tokens}`) become the task's source and tokens
(`faces.reported_in_metadata`); the metadata stays as sent.
A request may carry ClaudeBench's top-level `metadata` member ({sessionId, correlationId,
timestamp}); it is accepted and not stored.

Errors (`{"jsonrpc": "2.0", "error": {code, message, data?}, "id"}`):

| code   | message                  | when                                                 | HTTP (single) |
|--------|--------------------------|------------------------------------------------------|---------------|
| -32700 | Parse error              | body is not JSON                                     | 200           |
| -32600 | Invalid Request          | not a request object, empty batch, batch over 100    | 200           |
| -32600 | Invalid Request          | body over DATA_UPLOAD_MAX_MEMORY_SIZE (`data.reason`)| 413           |
| -32601 | Method not found         | unknown method                                       | 200           |
| -32602 | Invalid params           | bad params (`data.errors`: field -> messages)        | 200           |
| -32602 | Task not found: <id>     | no such task in the token's organization (`data.taskId`) | 200       |
| -32602 | <why>                    | disallowed transition, second completion (`data`: taskId, status, allowed) | 200 |
| -32602 | <why>                    | id taken by another body; task not assigned to the worker (`data.taskId`) | 200 |
| -32602 | Worker not registered: w | claim by a worker that is not registered and alive (`data.validation`) | 200 |
| -32603 | Internal error           | a bug (logged)                                       | 500           |
| -32001 | Unauthorized             | missing, unknown or revoked token                    | 401           |
| -32029 | Rate limit exceeded      | over the token's limit (`data.retryAfter`, Retry-After) | 429        |

Like upstream, everything the JSON-RPC layer answers comes in a 200, protocol errors included;
only refusals before a body is read (auth, size) or that a client must back off from (rate
limit, with Retry-After) use HTTP statuses. In a batch every entry is answered inside one 200
(429 entries included, with Retry-After set on the response). Notifications (no `id`) are run
but never answered; a batch of only notifications is a 204 with no body.

Rate limits are per token and method (`RATE_LIMITS` key `jsonrpc.<method>`; task.update
defaults to 20/minute as the seed documents). A refused call changes nothing.

Events: `event_message()` renders a TaskEvent in ClaudeBench's shape `{type, payload, metadata,
timestamp (ms)}`: task.created {createdBy}, task.claimed {taskId, workerId}, task.completed
{id, status, duration}, task.updated (seed 002) {updatedBy, changes}, and the HITL events
task.hitl_requested / task.hitl_decided {updatedBy, changes, hitl: {hitl_id, question | decision,
reason, comment, answer, option}}; the payload is the task as it was at that event. Stream it
with GET /api/v1/events?format=jsonrpc, or over ClaudeBench's WebSocket at /ws (jsonrpc_ws.py),
which also runs requests (`execute`) through `call()`.
"""

import json
import logging
import math
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .. import lifecycle, selectors, services
from ..models import ApiToken, EventType, Face, Task, TaskEvent
from ..services import (
    Actor,
    IdTaken,
    InvalidInput,
    ServiceError,
    TaskNotAssigned,
    TaskNotFound,
    TransitionRefused,
    WorkerNotRegistered,
)
from ..services.snapshots import task_at
from ..services.validation import JsonRefused, json_or_text, json_problem_at, parse_json
from ..views.errors import database_unavailable
from . import ratelimit
from .auth import token_for_request
from .faces import ignore_unknown, reported_in_metadata

logger = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
UNAUTHORIZED = -32001
RATE_LIMITED = -32029

MAX_BATCH = 100
FACE = "jsonrpc"
# This face's work queue: task.create puts tasks on it, task.claim takes only from it.
QUEUE = "jsonrpc"
# ClaudeBench's client sends this member beside the JSON-RPC ones on every call.
REQUEST_MEMBERS = {"jsonrpc", "method", "params", "id", "metadata"}

# Task fields this face knows, canonical name -> the face's name (also orders `changes`).
FIELD_NAMES = {"title": "text", "status": "status", "priority": "priority", "metadata": "metadata"}


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None, http_status: int = 200):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.http_status = http_status
        self.retry_after: int | None = None


# --- Wire shapes --------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def task_result(task: Task) -> dict[str, Any]:
    return {
        "id": task.public_id,
        "text": task.title,
        "status": lifecycle.JSONRPC.render(task.status),
        "priority": task.priority,
        "createdAt": _iso(task.created_at),
        "updatedAt": _iso(task.updated_at),
    }


def _result_value(raw: str | None) -> Any:
    # Upstream stores a result that parses as JSON as that JSON; structured results were sent so.
    return None if raw is None else json_or_text(raw)


def task_full(task: Task) -> dict[str, Any]:
    """The task as task.claim and task.list show it (ClaudeBench's full task)."""
    failed = lifecycle.JSONRPC.render(task.status) == "failed"
    return {
        "id": task.public_id,
        "text": task.title,
        "status": lifecycle.JSONRPC.render(task.status),
        "priority": task.priority,
        "assignedTo": task.assigned_worker_name,
        "metadata": task.metadata or None,
        "result": _result_value(task.result),
        "error": (task.status_reason or None) if failed else None,
        "createdAt": _iso(task.created_at),
        "updatedAt": _iso(task.updated_at),
        "completedAt": _iso(task.finished_at) if task.finished_at else None,
        "attachmentCount": 0,
        # Not a ClaudeBench field: when retention removed the task's content (metadata, result).
        "cleanedAt": _iso(task.cleaned_at) if task.cleaned_at else None,
    }


def face_changes(changes: list[str]) -> list[str]:
    """Changed canonical fields as this face names them (fields it has no name for are left out)."""
    return [face_name for name, face_name in FIELD_NAMES.items() if name in changes]


# What a HITL event's metadata carries: the request (hitl_id, question) and its decision.
HITL_FACTS = ("hitl_id", "question", "decision", "reason", "comment", "answer", "option")


def event_message(event: TaskEvent) -> dict[str, Any]:
    """A TaskEvent in ClaudeBench's event shape; the payload is the task as it was at the event.

    task.created carries `createdBy`, task.claimed `{taskId, workerId}`, task.completed
    `{id, status, duration (ms since creation)}`; every other change is seed 002's task.updated,
    and a HITL event's metadata also has `hitl` (the question, then the decision and answer).
    """
    task = task_at(event) or event.task
    if event.type == EventType.CREATED:
        payload = {key: value for key, value in task_result(task).items() if key != "updatedAt"}
        metadata: dict[str, Any] = {"createdBy": event.actor_label}
    elif event.type == EventType.CLAIMED:
        payload = {"taskId": task.public_id, "workerId": task.assigned_worker_name}
        metadata = {"claimedAt": _iso(event.created_at)}
    elif event.type == EventType.COMPLETED:
        finished = task.finished_at or event.created_at
        duration = int((finished - task.created_at).total_seconds() * 1000)
        payload = {"id": task.public_id, "status": lifecycle.JSONRPC.render(task.status), "duration": duration}
        metadata = {"completedBy": task.assigned_worker_name}
    else:
        payload = task_result(task)
        metadata = {"updatedBy": event.actor_label, "changes": face_changes(list(event.changes))}
        if event.type in (EventType.HITL_REQUESTED, EventType.HITL_DECIDED):
            # A worker paused for a person reads the question, and then the decision, here.
            metadata["hitl"] = {key: event.after[key] for key in HITL_FACTS if key in (event.after or {})}
    if event.type == EventType.CLEANED:
        # ClaudeBench knows no retention: to its workers a cleaned task is an updated one.
        payload["cleanedAt"] = _iso(task.cleaned_at) if task.cleaned_at else None
    return {
        "type": EventType.UPDATED if event.type == EventType.CLEANED else event.type,
        "payload": payload,
        "metadata": metadata,
        "timestamp": int(event.created_at.timestamp() * 1000),
    }


def _response(request_id: Any, *, result: Any = None, error: RpcError | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0"}
    if error is not None:
        body["error"] = {"code": error.code, "message": error.message}
        if error.data is not None:
            body["error"]["data"] = error.data
    else:
        body["result"] = result
    body["id"] = request_id
    return body


# --- Params -------------------------------------------------------------------------------


class _Params:
    """Collects every problem with a call's params before refusing it."""

    def __init__(self, params: Any, allowed: set[str], required: set[str] = frozenset()):
        self.errors: dict[str, list[str]] = {}
        if params is None:
            params = {}
        if not isinstance(params, dict):
            self.errors["params"] = ["Must be an object."]
            params = {}
        params = ignore_unknown(params, allowed, face=FACE, where="params")
        for name in required - params.keys():
            self.add(name, "Required.")
        self.values = params

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def done(self) -> None:
        if self.errors:
            raise RpcError(INVALID_PARAMS, "Invalid params", {"errors": self.errors})


def _check_task_id(p: _Params, name: str = "id") -> str | None:
    value = p.values.get(name)
    if name in p.values and (not isinstance(value, str) or not value or len(value) > 100):
        p.add(name, "Must be a task id (a string of 1 to 100 characters).")
        return None
    return value


def _check_fields(p: _Params, values: dict, prefix: str = "") -> dict[str, Any]:
    """text/status/priority/metadata checked and mapped to canonical service fields."""
    fields: dict[str, Any] = {}
    if "text" in values:
        text = values["text"]
        if not isinstance(text, str) or not 1 <= len(text) <= 500:
            p.add(prefix + "text", "Must be a string of 1 to 500 characters.")
        else:
            fields["title"] = text
    if "status" in values:
        try:
            fields["status"] = lifecycle.JSONRPC.parse(values["status"])
        except (ValueError, TypeError):
            p.add(prefix + "status", f"Must be one of: {', '.join(lifecycle.JSONRPC.names())}.")
    if "priority" in values:
        priority = values["priority"]
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 100:
            p.add(prefix + "priority", "Must be an integer from 0 to 100.")
        else:
            fields["priority"] = priority
    if "metadata" in values:
        if not isinstance(values["metadata"], dict):
            p.add(prefix + "metadata", "Must be an object.")
        else:
            fields["metadata"] = values["metadata"]
            fields.update(reported_in_metadata(values["metadata"]))  # its source and token totals
    return fields


# --- Methods ------------------------------------------------------------------------------


def _actor(token: ApiToken) -> Actor:
    return Actor.for_token(token, face=Face.JSONRPC)


def task_update(token: ApiToken, params: Any) -> dict[str, Any]:
    p = _Params(params, {"id", "updates"}, {"id", "updates"})
    task_id = _check_task_id(p)
    updates = p.values.get("updates", {})
    fields: dict[str, Any] = {}
    if not isinstance(updates, dict):
        p.add("updates", "Must be an object.")
    else:
        updates = ignore_unknown(updates, {"text", "status", "priority", "metadata"}, face=FACE, where="updates")
        fields = _check_fields(p, updates, "updates.")
    p.done()
    # By id: the kernel's one locked read finds it in the token's organization (or TaskNotFound).
    task = services.task_update(task=task_id, actor=_actor(token), organization_id=token.organization_id, **fields)
    return task_result(task)


def task_create(token: ApiToken, params: Any) -> dict[str, Any]:
    p = _Params(params, {"id", "text", "status", "priority", "metadata"}, {"text"})
    task_id = _check_task_id(p)
    fields = _check_fields(p, p.values)
    p.done()
    task, _created = services.task_create(
        organization=token.organization, actor=_actor(token), id=task_id, queue=QUEUE, **fields
    )
    return task_result(task)


def task_claim(token: ApiToken, params: Any) -> dict[str, Any]:
    p = _Params(params, {"workerId", "maxTasks", "agent"}, {"workerId"})
    worker_id = p.values.get("workerId")
    if "workerId" in p.values and (not isinstance(worker_id, str) or not 1 <= len(worker_id) <= 200):
        p.add("workerId", "Must be a worker id of 1 to 200 characters.")
    max_tasks = p.values.get("maxTasks", 1)
    if isinstance(max_tasks, bool) or not isinstance(max_tasks, int) or not 1 <= max_tasks <= 10:
        p.add("maxTasks", "Must be an integer from 1 to 10.")
    agent = p.values.get("agent")
    if agent is not None and (not isinstance(agent, str) or not 1 <= len(agent) <= 200):
        p.add("agent", "Must be an agent name of 1 to 200 characters.")
    p.done()
    worker = services.active_worker(organization=token.organization, name=worker_id)
    # Like upstream, one task per claim whatever maxTasks says; only this face's queue.
    task = services.task_claim(
        organization=token.organization, actor=_actor(token), agent=agent, queue=QUEUE, worker=worker
    )
    if task is None:
        return {"claimed": False}
    return {"claimed": True, "taskId": task.public_id, "task": task_full(task)}


def task_complete(token: ApiToken, params: Any) -> dict[str, Any]:
    p = _Params(params, {"id", "taskId", "workerId", "result"})
    task_id = _check_task_id(p) or _check_task_id(p, "taskId")
    if "id" not in p.values and "taskId" not in p.values:
        p.add("id", "Either 'id' or 'taskId' must be provided.")
    worker_id = p.values.get("workerId")
    if worker_id is not None and (not isinstance(worker_id, str) or not 1 <= len(worker_id) <= 200):
        p.add("workerId", "Must be a worker id of 1 to 200 characters.")
    p.done()
    result = p.values.get("result")
    if result is not None and not isinstance(result, str):
        result = json.dumps(result)
    task = services.task_complete(
        task=task_id, actor=_actor(token), organization_id=token.organization_id, worker=worker_id, result=result
    )
    status = lifecycle.JSONRPC.render(task.status)
    return {"id": task.public_id, "status": status, "completedAt": _iso(task.finished_at)}


def _statuses_named(name: str) -> tuple[str, ...]:
    """Every canonical status this face shows as `name` (in_progress covers paused, too)."""
    return tuple(s for s in lifecycle.STATUSES if lifecycle.JSONRPC.render(s) == name)


LIST_ORDER = {
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "priority": "priority",
    "status": "status",
    "assignedTo": "assigned_worker__name",
}


def _int_param(p: _Params, name: str, default: int, low: int, high: int) -> int:
    value = p.values.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        p.add(name, f"Must be an integer from {low} to {high}.")
        return default
    return value


def task_list(token: ApiToken, params: Any) -> dict[str, Any]:
    allowed = {"status", "assignedTo", "priority", "limit", "offset", "orderBy", "order", "cursor"}
    p = _Params(params, allowed)
    names = p.values.get("status")
    if isinstance(names, str):
        names = [names]
    statuses: list[str] = []
    if names is not None:
        if not isinstance(names, list) or not all(n in lifecycle.JSONRPC.names() for n in names):
            p.add("status", f"Must be one or a list of: {', '.join(lifecycle.JSONRPC.names())}.")
        else:
            statuses = [s for n in names for s in _statuses_named(n)]
    assigned_to = p.values.get("assignedTo")
    if assigned_to is not None and not isinstance(assigned_to, str):
        p.add("assignedTo", "Must be a worker id.")
    priority = p.values.get("priority")
    if priority is not None:
        priority = _int_param(p, "priority", 0, 0, 100)
    limit = _int_param(p, "limit", 100, 1, 1000)
    offset = _int_param(p, "offset", 0, 0, 10**9)
    order_by = p.values.get("orderBy", "createdAt")
    if order_by not in LIST_ORDER:
        p.add("orderBy", f"Must be one of: {', '.join(LIST_ORDER)}.")
    order = p.values.get("order", "desc")
    if order not in ("asc", "desc"):
        p.add("order", "Must be 'asc' or 'desc'.")
    cursor = p.values.get("cursor")
    if cursor is not None and (not isinstance(cursor, str) or offset or (order_by, order) != ("createdAt", "desc")):
        p.add("cursor", "Must be the nextCursor of a previous page (newest first, without offset).")
    p.done()
    qs = selectors.filter_tasks(selectors.tasks_for_token(token), selectors.TaskFilters(statuses=tuple(statuses)))
    if assigned_to is not None:
        qs = qs.filter(assigned_worker__name=assigned_to)
    if priority is not None:
        qs = qs.filter(priority=priority)
    total = qs.count()
    qs = qs.select_related("assigned_worker")
    next_cursor = None
    if (order_by, order) == ("createdAt", "desc") and not offset:
        # Newest first: keyset pages (nextCursor) give the same rows as offset pages, cheaper.
        try:
            page = selectors.paginate_tasks(qs, after=cursor, limit=limit)
        except selectors.BadCursor as exc:
            raise RpcError(INVALID_PARAMS, "Invalid params", {"errors": {"cursor": [str(exc)]}}) from None
        rows, next_cursor, has_more = page.tasks, page.older, page.older is not None
    else:
        prefix = "-" if order == "desc" else ""
        rows = list(qs.order_by(f"{prefix}{LIST_ORDER[order_by]}", f"{prefix}id")[offset : offset + limit])
        has_more = offset + limit < total
    return {"tasks": [task_full(t) for t in rows], "totalCount": total, "hasMore": has_more, "nextCursor": next_cursor}


def system_register(token: ApiToken, params: Any) -> dict[str, Any]:
    p = _Params(params, {"id", "roles", "metadata"}, {"id", "roles"})
    p.done()
    services.worker_register(
        organization=token.organization,
        name=p.values["id"],
        roles=p.values["roles"],
        metadata=p.values.get("metadata"),
    )
    return {"registered": True}


def system_heartbeat(token: ApiToken, params: Any) -> dict[str, Any]:
    p = _Params(params, {"instanceId"}, {"instanceId"})
    instance_id = p.values.get("instanceId")
    if "instanceId" in p.values and (not isinstance(instance_id, str) or not instance_id):
        p.add("instanceId", "Must be a worker id.")
    p.done()
    worker = services.worker_heartbeat(organization=token.organization, name=instance_id)
    return {"alive": worker is not None}


METHODS = {
    "task.update": task_update,
    "task.create": task_create,
    "task.claim": task_claim,
    "task.complete": task_complete,
    "task.list": task_list,
    "system.register": system_register,
    "system.heartbeat": system_heartbeat,
}


# --- Dispatch -----------------------------------------------------------------------------


def _service_error(exc: ServiceError, params: Any) -> RpcError:
    task_id = (params.get("id") or params.get("taskId")) if isinstance(params, dict) else None
    if isinstance(exc, WorkerNotRegistered):
        worker_id = params.get("workerId") if isinstance(params, dict) else None
        return RpcError(
            INVALID_PARAMS, exc.message, {"validation": "Worker must be registered and active", "workerId": worker_id}
        )
    if isinstance(exc, TaskNotAssigned):
        return RpcError(INVALID_PARAMS, exc.message, {"taskId": task_id})
    if isinstance(exc, TaskNotFound):
        return RpcError(INVALID_PARAMS, f"Task not found: {task_id}", {"taskId": task_id})
    if isinstance(exc, InvalidInput):
        errors = {FIELD_NAMES.get(k, k): v for k, v in exc.errors.items()}
        return RpcError(INVALID_PARAMS, "Invalid params", {"errors": errors})
    if isinstance(exc, TransitionRefused):
        render = lifecycle.JSONRPC.render
        data = {"taskId": task_id, "status": render(exc.current), "allowed": sorted({render(s) for s in exc.allowed})}
        return RpcError(INVALID_PARAMS, exc.message, data)
    if isinstance(exc, IdTaken):
        return RpcError(INVALID_PARAMS, exc.message, {"taskId": task_id})
    return RpcError(INVALID_PARAMS, exc.message, {"taskId": task_id} if task_id else None)


def _valid_id(value: Any) -> bool:
    # An id is echoed back: it must be one a JSON encoder can write (no NaN, no lone surrogate).
    if isinstance(value, str):
        return json_problem_at(value) is None
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _call(token: ApiToken, message: Any) -> tuple[dict[str, Any] | None, RpcError | None]:
    """Run one request object; returns (response or None for a notification, the error if any)."""
    if not isinstance(message, dict):
        error = RpcError(INVALID_REQUEST, "Invalid Request")
        return _response(None, error=error), error
    is_notification = "id" not in message
    request_id = message.get("id")
    if (
        message.get("jsonrpc") != "2.0"
        or not isinstance(message.get("method"), str)
        or not _valid_id(request_id)
        or ("params" in message and not isinstance(message["params"], (dict, list)))
        or ("metadata" in message and not isinstance(message["metadata"], dict))
    ):
        error = RpcError(INVALID_REQUEST, "Invalid Request")
        return _response(request_id if _valid_id(request_id) else None, error=error), error

    ignore_unknown(message, REQUEST_MEMBERS, face=FACE, where="request")
    method = METHODS.get(message["method"])
    params = message.get("params")
    try:
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, "Method not found", {"method": message["method"][:100]})
        decision = ratelimit.hit(token, FACE, message["method"])
        if not decision.allowed:
            error = RpcError(RATE_LIMITED, "Rate limit exceeded", {"retryAfter": decision.retry_after}, 429)
            error.retry_after = decision.retry_after
            raise error
        if isinstance(params, list):
            raise RpcError(INVALID_PARAMS, "Invalid params", {"errors": {"params": ["Must be an object."]}})
        found = json_problem_at(params)
        if found is not None:
            field = ".".join(map(str, found[0])) or "params"
            raise RpcError(INVALID_PARAMS, "Invalid params", {"errors": {field: [found[1]]}})
        result = method(token, params)
    except RpcError as exc:
        error = exc
    except ServiceError as exc:
        error = _service_error(exc, params)
    except Exception as exc:
        if database_unavailable(exc):
            raise  # a 503 for the whole request (views.errors), not a bug in one call
        logger.exception("JSON-RPC %s failed", message["method"])
        error = RpcError(INTERNAL_ERROR, "Internal error", http_status=500)
    else:
        return (None if is_notification else _response(request_id, result=result)), None
    return (None if is_notification else _response(request_id, error=error)), error


def call(token: ApiToken, message: Any) -> dict[str, Any] | None:
    """One request object as /rpc runs it (rate limits, error mapping); None for a notification.

    For transports other than POST /rpc (the /ws socket's `execute`, jsonrpc_ws.py). A database
    that cannot be reached raises, as it does for /rpc (a 503 there)."""
    response, _error = _call(token, message)
    return response


def _json(body: Any, status: int = 200, retry_after: int | None = None) -> JsonResponse:
    response = JsonResponse(body, status=status, safe=False)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


@csrf_exempt
@require_http_methods(["POST"])
def rpc(request: HttpRequest) -> HttpResponse:
    """POST /rpc: one JSON-RPC 2.0 request, a notification, or a batch."""
    token = token_for_request(request)
    if token is None:
        response = _json(_response(None, error=RpcError(UNAUTHORIZED, "Unauthorized")), 401)
        response["WWW-Authenticate"] = 'Bearer realm="taskdesk"'
        return response
    try:
        body = request.body
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        error = RpcError(INVALID_REQUEST, "Invalid Request", {"reason": f"Body over {limit} bytes."})
        return _json(_response(None, error=error), 413)
    try:
        message = parse_json(body)
    except JsonRefused:
        return _json(_response(None, error=RpcError(PARSE_ERROR, "Parse error")))

    if isinstance(message, list):
        if not message:
            return _json(_response(None, error=RpcError(INVALID_REQUEST, "Invalid Request")))
        if len(message) > MAX_BATCH:
            error = RpcError(INVALID_REQUEST, "Invalid Request", {"reason": f"At most {MAX_BATCH} calls per batch."})
            return _json(_response(None, error=error))
        responses, retry_after = [], None
        for item in message:
            response, error = _call(token, item)
            if error is not None and error.retry_after is not None:
                retry_after = max(retry_after or 0, error.retry_after)
            if response is not None:
                responses.append(response)
        if not responses:
            return HttpResponse(status=204)
        return _json(responses, 200, retry_after)

    response, error = _call(token, message)
    if response is None:
        return HttpResponse(status=204)
    status = error.http_status if error is not None else 200
    return _json(response, status, error.retry_after if error is not None else None)
