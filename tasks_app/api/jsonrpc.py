"""The JSON-RPC 2.0 task queue face (seed 002) at POST /rpc.

Methods (params are objects; unknown keys are invalid params):
- `task.update` {id, updates: {text 1-500, status pending|in_progress|completed|failed,
  priority 0-100, metadata (merged)}} -> task
- `task.create` {text, id?, status?, priority?, metadata?} -> task (the same id and body again
  returns the task; another body under a taken id is invalid params)
- `task.claim` {agent?} -> the highest-priority (then oldest) pending task, now in_progress; or null
- `task.complete` {id, result?} -> task (status completed; a non-string result is stored as JSON)
- `task.list` {status?: name or [names], limit? 1-100 (default 50), cursor?} -> {tasks, nextCursor}

A task reads `{id, text, status, priority, createdAt, updatedAt}` (text is the task's title,
timestamps ISO 8601 UTC with a `Z`). Statuses map through `lifecycle.JSONRPC`.

Errors (`{"jsonrpc": "2.0", "error": {code, message, data?}, "id"}`):

| code   | message              | when                                                     | HTTP (single) |
|--------|----------------------|----------------------------------------------------------|---------------|
| -32700 | Parse error          | body is not JSON                                         | 400           |
| -32600 | Invalid Request      | not a request object, empty batch, batch over 100        | 400           |
| -32600 | Invalid Request      | body over DATA_UPLOAD_MAX_MEMORY_SIZE (`data.reason`)    | 413           |
| -32601 | Method not found     | unknown method                                           | 200           |
| -32602 | Invalid params       | bad params (`data.errors`: field -> messages)            | 200           |
| -32602 | Task not found: <id> | no such task in the token's organization (`data.taskId`) | 200           |
| -32602 | <why>                | disallowed transition (`data`: taskId, status, allowed)  | 200           |
| -32602 | <why>                | id taken by another body (`data.taskId`)                 | 200           |
| -32603 | Internal error       | a bug (logged)                                           | 500           |
| -32001 | Unauthorized         | missing, unknown or revoked token                        | 401           |
| -32029 | Rate limit exceeded  | over the token's limit (`data.retryAfter`, Retry-After)  | 429           |

Protocol-level refusals (no method could run: parse, invalid request, auth, size, rate limit)
carry a 4xx HTTP status for a single request; method-level errors come in a 200 like results,
as JSON-RPC clients expect. In a batch every entry is answered inside one 200 (429 entries
included, with Retry-After set on the response). Notifications (no `id`) are run but never
answered; a batch of only notifications is a 204 with no body.

Rate limits are per token and method (`RATE_LIMITS` key `jsonrpc.<method>`; task.update
defaults to 20/minute as the seed documents). A refused call changes nothing.

Events: `event_message()` renders a TaskEvent in the seed's "Event Emission" shape
`{type, payload: task, metadata: {updatedBy, changes}, timestamp (ms)}`; stream it with
GET /api/v1/events?format=jsonrpc.
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
from ..models import ApiToken, Face, Task, TaskEvent
from ..services import Actor, IdTaken, InvalidInput, ServiceError, TaskNotFound, TransitionRefused
from ..services.snapshots import task_at
from ..services.validation import JsonRefused, json_problem_at, parse_json
from ..views.errors import database_unavailable
from . import ratelimit
from .auth import token_for_request

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


def face_changes(changes: list[str]) -> list[str]:
    """Changed canonical fields as this face names them (fields it has no name for are left out)."""
    return [face_name for name, face_name in FIELD_NAMES.items() if name in changes]


def event_message(event: TaskEvent) -> dict[str, Any]:
    """A TaskEvent in seed 002's event shape; the payload is the task as it was at the event."""
    return {
        "type": event.type,
        "payload": task_result(task_at(event) or event.task),
        "metadata": {"updatedBy": event.actor_label, "changes": face_changes(list(event.changes))},
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
        for name in params.keys() - allowed:
            self.add(name, "Unknown parameter.")
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
    return fields


# --- Methods ------------------------------------------------------------------------------


def _actor(token: ApiToken) -> Actor:
    return Actor.for_token(token, face=Face.JSONRPC)


def _find(token: ApiToken, task_id: str) -> Task:
    return selectors.get_task_for_token(token, task_id)


def task_update(token: ApiToken, params: Any) -> dict[str, Any]:
    p = _Params(params, {"id", "updates"}, {"id", "updates"})
    task_id = _check_task_id(p)
    updates = p.values.get("updates", {})
    fields: dict[str, Any] = {}
    if not isinstance(updates, dict):
        p.add("updates", "Must be an object.")
    else:
        for name in updates.keys() - {"text", "status", "priority", "metadata"}:
            p.add(f"updates.{name}", "Unknown field.")
        fields = _check_fields(p, updates, "updates.")
    p.done()
    task = services.task_update(
        task=_find(token, task_id), actor=_actor(token), organization_id=token.organization_id, **fields
    )
    return task_result(task)


def task_create(token: ApiToken, params: Any) -> dict[str, Any]:
    p = _Params(params, {"id", "text", "status", "priority", "metadata"}, {"text"})
    task_id = _check_task_id(p)
    fields = _check_fields(p, p.values)
    p.done()
    task, _created = services.task_create(organization=token.organization, actor=_actor(token), id=task_id, **fields)
    return task_result(task)


def task_claim(token: ApiToken, params: Any) -> dict[str, Any] | None:
    p = _Params(params, {"agent"})
    agent = p.values.get("agent")
    if agent is not None and (not isinstance(agent, str) or not 1 <= len(agent) <= 200):
        p.add("agent", "Must be an agent name of 1 to 200 characters.")
    p.done()
    task = services.task_claim(organization=token.organization, actor=_actor(token), agent=agent)
    return task_result(task) if task is not None else None


def task_complete(token: ApiToken, params: Any) -> dict[str, Any]:
    p = _Params(params, {"id", "result"}, {"id"})
    task_id = _check_task_id(p)
    p.done()
    fields: dict[str, Any] = {"status": lifecycle.Status.COMPLETED}
    result = p.values.get("result")
    if result is not None:
        fields["result"] = result if isinstance(result, str) else json.dumps(result)
    task = services.task_update(
        task=_find(token, task_id), actor=_actor(token), organization_id=token.organization_id, **fields
    )
    return task_result(task)


def _statuses_named(name: str) -> tuple[str, ...]:
    """Every canonical status this face shows as `name` (in_progress covers paused, too)."""
    return tuple(s for s in lifecycle.STATUSES if lifecycle.JSONRPC.render(s) == name)


def task_list(token: ApiToken, params: Any) -> dict[str, Any]:
    p = _Params(params, {"status", "limit", "cursor"})
    names = p.values.get("status")
    if isinstance(names, str):
        names = [names]
    statuses: list[str] = []
    if names is not None:
        if not isinstance(names, list) or not all(n in lifecycle.JSONRPC.names() for n in names):
            p.add("status", f"Must be one or a list of: {', '.join(lifecycle.JSONRPC.names())}.")
        else:
            statuses = [s for n in names for s in _statuses_named(n)]
    limit = p.values.get("limit", 50)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        p.add("limit", "Must be an integer from 1 to 100.")
    cursor = p.values.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        p.add("cursor", "Must be the nextCursor of a previous page.")
    p.done()
    qs = selectors.filter_tasks(selectors.tasks_for_token(token), selectors.TaskFilters(statuses=tuple(statuses)))
    try:
        page = selectors.paginate_tasks(qs, after=cursor, limit=limit)
    except selectors.BadCursor as exc:
        raise RpcError(INVALID_PARAMS, "Invalid params", {"errors": {"cursor": [str(exc)]}}) from None
    return {"tasks": [task_result(t) for t in page.tasks], "nextCursor": page.older}


METHODS = {
    "task.update": task_update,
    "task.create": task_create,
    "task.claim": task_claim,
    "task.complete": task_complete,
    "task.list": task_list,
}


# --- Dispatch -----------------------------------------------------------------------------


def _service_error(exc: ServiceError, params: Any) -> RpcError:
    task_id = params.get("id") if isinstance(params, dict) else None
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
        error = RpcError(INVALID_REQUEST, "Invalid Request", http_status=400)
        return _response(None, error=error), error
    is_notification = "id" not in message
    request_id = message.get("id")
    if (
        message.get("jsonrpc") != "2.0"
        or not isinstance(message.get("method"), str)
        or not _valid_id(request_id)
        or ("params" in message and not isinstance(message["params"], (dict, list)))
        or message.keys() - {"jsonrpc", "method", "params", "id"}
    ):
        error = RpcError(INVALID_REQUEST, "Invalid Request", http_status=400)
        return _response(request_id if _valid_id(request_id) else None, error=error), error

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
        return _json(_response(None, error=RpcError(PARSE_ERROR, "Parse error")), 400)

    if isinstance(message, list):
        if not message:
            return _json(_response(None, error=RpcError(INVALID_REQUEST, "Invalid Request")), 400)
        if len(message) > MAX_BATCH:
            error = RpcError(INVALID_REQUEST, "Invalid Request", {"reason": f"At most {MAX_BATCH} calls per batch."})
            return _json(_response(None, error=error), 400)
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
