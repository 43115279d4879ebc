"""The Agentex face: the routes `agentex-client` 0.28.x calls, mounted at /agentex/.

`Agentex(base_url="http://HOST/agentex", api_key=TOKEN)` works as is (`Authorization: Bearer`).

Routes (from agentex/resources/tasks.py and agents/agents.py):
  GET    tasks                             list (agent_id, agent_name, status, task_metadata JSON
                                           containment, order_by, order_direction, limit, page_number)
  GET    tasks/<id> | tasks/name/<name>    retrieve (a soft-deleted task is a 404, as upstream;
                                           lists never show one)
  PUT    tasks/<id> | tasks/name/<name>    update: `task_metadata` replaces metadata,
                                           `merge_params` shallow-merges params
  DELETE tasks/<id> | tasks/name/<name>    soft delete -> {"id", "message"}
  POST   tasks/<id>/cancel|complete|fail|interrupt|terminate|timeout   body {"reason"?}; without
                                           one, upstream's reason ("Task completed", "Task canceled"…).
                                           Only a running or interrupted task moves; interrupt only a
                                           running one (a task already in the target status is refused)
  GET    tasks/<id>/stream | tasks/name/<name>/stream                  SSE
  POST   agents/<agent_id>/rpc | agents/name/<agent_name>/rpc          JSON-RPC: task/create,
                                           task/cancel, task/interrupt (agent names are
                                           registered on first use; ids are Taskdesk agent ids)

Agentex's task has no field for where the work came from or what it cost: an agent reports them in
`task_metadata` (task/create, PUT) as `source` and `usage` (token totals), which become the task's
source and tokens (`faces.reported_in_metadata`); the metadata stays as sent.

Statuses are Agentex's TaskStatus names, mapped by `lifecycle.AGENTEX`; INTERRUPTED is not final.
Errors: 422 `{"detail": [{"loc", "msg", "type"}]}` (seed 004's HTTPValidationError) with upstream's
`{"status_code": 10422, "message", "data": null}` beside it; other
refusals upstream's `{"message", "code": <HTTP status>, "data": facts or null}` with 400
(disallowed transition: upstream's ClientError, the client's BadRequestError; `x-should-retry:
false`), 404 (unknown or deleted task, or another organization's), 409 (stale version, taken
name), 401, 413, 429 (`Retry-After`). Fields and query parameters the face does not know (a
newer client's) are ignored, each logged once; known ones are validated strictly.

Stream: `data: {json}` frames with no `id:` lines (the client's decoder would turn a later
comment into an empty event): first `{"type": "connected", "taskId"}`, then
`{"type": "task_updated", "task": {...}}` per change and `{"type": "full", ...}` per activity
message, and a `:ping` comment every 15 s. It starts at the moment of connection, and ends, like
upstream's, after a `task_updated` whose task is finished (final or DELETED), or right after
`connected` for a task already finished. Each `task_updated` shows the task as it was at that
event (its snapshot).
"""

from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .. import lifecycle, selectors, services
from ..lifecycle import AGENTEX, AGENTEX_DELETED, Status
from ..models import ActivityKind, Agent, ApiToken, EventType, Face, Task, TaskEvent
from ..services import Actor, ServiceError, TaskNotFound, TransitionRefused
from ..services.snapshots import task_at
from ..services.validation import JsonRefused, ascii_int, json_problem_at, lookup_text_ok, parse_json
from . import ratelimit, sse
from .auth import token_for_request
from .errors import http_status
from .faces import (
    FaceError,
    canonical_statuses,
    check_query,
    face_frames,
    face_view,
    ignore_unknown,
    invalid,
    json_body,
    newest_event_id,
    positive_int,
    reported_in_metadata,
    sse_data,
    task_for_token,
)

FACE = Face.AGENTEX
# This face's work queue. Its tasks start RUNNING (their agent runs them), but one retried from
# the desk waits as pending again: on this queue, where no other face's worker claims it.
QUEUE = "agentex"
PAGE_SIZE = 50
PAGE_SIZE_MAX = 1000
ORDER_FIELDS = {"created_at": "created_at", "updated_at": "updated_at", "name": "name", "status": "status"}


# --- Errors: upstream's bodies and statuses ---------------------------------------------------


def error_response(status: int, detail: Any, headers: dict[str, str] | None = None, **facts) -> JsonResponse:
    """Upstream's error body `{message, code, data}`; a 422 keeps FastAPI's `{detail: [...]}` (seed 004)."""
    if status == 422 and isinstance(detail, list):
        # Seed 004's HTTPValidationError ({detail: [...]}) and what upstream's server answers beside
        # it ({status_code: 10422, message, data}): a client reading either finds what it expects.
        message = "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg', '')}" for e in detail)
        body: dict[str, Any] = {"detail": detail, "status_code": 10422, "message": message, "data": None}
    else:
        facts.pop("code", None)  # upstream's `code` is the HTTP status; the facts go in `data`
        body = {"message": detail, "code": status, "data": facts or None}
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def error_status(exc: ServiceError) -> int:
    # Upstream refuses a transition from the wrong status with a ClientError: 400 (BadRequestError).
    if isinstance(exc, TransitionRefused):
        return 400
    return http_status(exc)


def _view(operation: str, *methods: str):
    return face_view(FACE, operation, AGENTEX, methods, respond=error_response, status_of=error_status)


def _known(data: dict[str, Any], known: set[str], where: str = "body") -> dict[str, Any]:
    return ignore_unknown(data, known, face=FACE, where=where)


def _actor(token: ApiToken) -> Actor:
    return Actor.for_token(token, face=FACE)


# --- Rendering ------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def status_name(task: Task) -> str:
    return AGENTEX_DELETED if task.deleted_at else AGENTEX.render(task.status)


def agent_json(agent: Agent) -> dict[str, Any]:
    return {
        "id": str(agent.pk),
        "name": agent.name,
        "description": agent.description,
        "acp_type": "async",
        "created_at": agent.created_at.isoformat(),
        "updated_at": agent.created_at.isoformat(),
        "status": "Ready",
    }


def task_json(task: Task, *, with_params: bool = True, agents: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": task.public_id,
        "name": task.name,
        "status": status_name(task),
        "status_reason": task.status_reason or None,
        "created_at": _iso(task.created_at),
        "updated_at": _iso(task.updated_at),
        "cleaned_at": _iso(task.cleaned_at),
        "task_metadata": task.metadata,
    }
    if with_params:
        data["params"] = task.params
    if agents:
        data["agents"] = [agent_json(task.agent)] if task.agent_id else []
    return data


def _relationships(request: HttpRequest) -> bool:
    values = request.GET.getlist("relationships")
    for value in values:
        if value != "agents":
            raise invalid(["query", "relationships"], "Input should be 'agents'.", "literal_error")
    return bool(values)


def _fresh(task: Task) -> Task:
    return Task.objects.select_related("agent").get(pk=task.pk)


def _by_name(token: ApiToken, name: str, *, include_deleted: bool = False) -> Task:
    return selectors.get_task_by_name_for_token(token, name, include_deleted=include_deleted)


def _resolve(token: ApiToken, task_id: str | None, task_name: str | None, **kw) -> Task:
    return _by_name(token, task_name, **kw) if task_name is not None else task_for_token(token, task_id, **kw)


# --- Tasks ----------------------------------------------------------------------------------

_LIST_QUERY = {
    "agent_id",
    "agent_name",
    "limit",
    "order_by",
    "order_direction",
    "page_number",
    "relationships",
    "status",
    "task_metadata",
}


@_view("tasks.list", "GET")
def list_tasks(request: HttpRequest, token: ApiToken):
    check_query(request, _LIST_QUERY, face=FACE)
    agents = _relationships(request)
    status = request.GET.get("status")
    if status == AGENTEX_DELETED:
        qs = Task.objects.none()  # upstream never lists deleted tasks
    else:
        qs = selectors.tasks_for_token(token)
        if status:
            try:
                qs = qs.filter(status__in=canonical_statuses(AGENTEX, status))
            except ValueError as exc:
                raise invalid(["query", "status"], str(exc), "literal_error") from None
    if request.GET.get("agent_id"):
        agent_pk = ascii_int(request.GET["agent_id"])
        if agent_pk is None:
            raise invalid(["query", "agent_id"], "Must be an agent id (digits).", "int_parsing")
        qs = qs.filter(agent_id=agent_pk)
    if request.GET.get("agent_name"):
        qs = qs.filter(agent__name=request.GET["agent_name"])
    if request.GET.get("task_metadata"):
        qs = _metadata_filter(qs, request.GET["task_metadata"])
    order_by = request.GET.get("order_by") or "created_at"
    if order_by not in ORDER_FIELDS:
        raise invalid(["query", "order_by"], f"Expected one of: {', '.join(ORDER_FIELDS)}.", "literal_error")
    direction = request.GET.get("order_direction") or "desc"
    if direction not in ("asc", "desc"):
        raise invalid(["query", "order_direction"], "Expected 'asc' or 'desc'.", "literal_error")
    limit = positive_int(request, "limit", PAGE_SIZE, PAGE_SIZE_MAX)
    page = positive_int(request, "page_number", 1, 1_000_000)
    prefix = "-" if direction == "desc" else ""
    qs = qs.select_related("agent").order_by(f"{prefix}{ORDER_FIELDS[order_by]}", f"{prefix}id")
    # Agentex paginates by page number; the offset is bounded by limit * page.
    rows = qs[(page - 1) * limit : page * limit]
    return JsonResponse([task_json(t, with_params=False, agents=agents) for t in rows], safe=False)


def _metadata_filter(qs, raw: str):
    try:
        wanted = parse_json(raw)
    except JsonRefused:
        wanted = None
    if not isinstance(wanted, dict):
        raise invalid(["query", "task_metadata"], "Must be a JSON-encoded object.", "json_invalid")
    if found := json_problem_at(wanted):
        raise invalid(["query", "task_metadata", *found[0]], found[1], "value_error")
    if connection.features.supports_json_field_contains:
        return qs.filter(metadata__contains=wanted)
    # SQLite has no JSON containment: match top-level keys one by one.
    for key, value in wanted.items():
        qs = qs.filter(**{f"metadata__{key}": value})
    return qs


def _update_body(request: HttpRequest) -> dict[str, Any]:
    body = _known(json_body(request), {"task_metadata", "merge_params"})
    fields: dict[str, Any] = {}
    for name in ("task_metadata", "merge_params"):
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            raise invalid(["body", name], "Input should be a valid dictionary.", "dict_type")
    if body.get("task_metadata") is not None:
        fields["metadata"] = body["task_metadata"]
        fields.update(reported_in_metadata(body["task_metadata"]))  # its source and token totals
    if body.get("merge_params") is not None:
        fields["params"] = body["merge_params"]
    return fields


def _retrieve(request: HttpRequest, token: ApiToken, task_id: str | None, task_name: str | None):
    agents = _relationships(request)
    return JsonResponse(task_json(_resolve(token, task_id, task_name), agents=agents))


def _update(request: HttpRequest, token: ApiToken, task_id: str | None, task_name: str | None):
    fields = _update_body(request)
    # By id, the kernel's one locked read finds the task (the task it returns is the task as
    # written, its agent loaded): no read before it, none after.
    task = services.task_update(
        task=_by_name(token, task_name) if task_name is not None else task_id,
        actor=_actor(token),
        organization_id=token.organization_id,
        metadata_replace="metadata" in fields,
        **fields,
    )
    return JsonResponse(task_json(task))


def _delete(request: HttpRequest, token: ApiToken, task_id: str | None, task_name: str | None):
    task = _resolve(token, task_id, task_name)
    services.task_delete(task=task, actor=_actor(token), organization_id=token.organization_id)
    return JsonResponse({"id": task.public_id, "message": f"Task {task.public_id} deleted"})


@_view("tasks.get", "GET")
def _get_view(request, token, task_id=None, task_name=None):
    return _retrieve(request, token, task_id, task_name)


@_view("tasks.update", "PUT")
def _put_view(request, token, task_id=None, task_name=None):
    return _update(request, token, task_id, task_name)


@_view("tasks.delete", "DELETE")
def _delete_view(request, token, task_id=None, task_name=None):
    return _delete(request, token, task_id, task_name)


@csrf_exempt
def task_detail(request: HttpRequest, task_id: str | None = None, task_name: str | None = None):
    """GET / PUT / DELETE on tasks/<id> and tasks/name/<name>."""
    view = {"PUT": _put_view, "DELETE": _delete_view}.get(request.method, _get_view)
    return view(request, task_id=task_id, task_name=task_name)


# Each action: the status it ends in and upstream's default status reason. Stops end the task by
# hand; the others are ordinary transitions. Every action is strict: upstream refuses one on a task
# already in its target status.
ACTIONS: dict[str, tuple[str, str]] = {
    "cancel": (Status.CANCELED, "Task canceled"),
    "terminate": (Status.TERMINATED, "Task terminated"),
    "timeout": (Status.TIMED_OUT, "Task timed_out"),
    "complete": (Status.COMPLETED, "Task completed"),
    "fail": (Status.FAILED, "Task failed"),
    "interrupt": (Status.INTERRUPTED, "Task interrupted"),
}
_STOPS = {"cancel", "terminate", "timeout"}


def _act(token: ApiToken, task: Task | str, action: str, reason: str | None) -> Task:
    if reason is not None and not isinstance(reason, str):
        raise invalid(["body", "reason"], "Input should be a valid string.", "string_type")
    target, default_reason = ACTIONS[action]
    actor = _actor(token)
    if action in _STOPS:
        reason = reason or default_reason
        return services.task_stop(
            task=task, actor=actor, organization_id=token.organization_id, status=target, reason=reason
        )
    return services.task_update(
        task=task,
        actor=actor,
        organization_id=token.organization_id,
        status=target,
        status_reason=reason or default_reason,
        strict=True,
    )


def task_action(request: HttpRequest, task_id: str, action: str):
    if action not in ACTIONS:
        return error_response(404, "Not Found")
    return _action_view(request, task_id=task_id, action=action)


@_view("tasks.action", "POST")
def _action_view(request: HttpRequest, token: ApiToken, task_id: str, action: str):
    body = _known(json_body(request, allow_empty=True), {"reason"})
    task = task_for_token(token, task_id)
    return JsonResponse(task_json(_fresh(_act(token, task, action, body.get("reason")))))


task_action = csrf_exempt(task_action)


# --- Agents: JSON-RPC -----------------------------------------------------------------------

_RPC_METHODS = ("event/send", "task/create", "message/send", "task/cancel", "task/interrupt")
_RPC_SUPPORTED = {"task/create", "task/cancel", "task/interrupt"}


def _agent_by_id(token: ApiToken, agent_id: str) -> Agent:
    agent_pk = ascii_int(agent_id, max_digits=17)
    agents = Agent.objects.filter(organization_id=token.organization_id)
    agent = None if agent_pk is None else agents.filter(pk=agent_pk).first()
    if agent is None:
        raise FaceError(404, f"Agent not found: {agent_id}")
    return agent


def _rpc_create(token: ApiToken, agent: Agent | str, params: dict[str, Any]) -> Task:
    """task/create is get-or-create by name; given params overwrite an existing task's params."""
    params = _known(params, {"name", "params", "task_metadata"}, where="params")
    name, task_params, metadata = params.get("name"), params.get("params"), params.get("task_metadata")
    for key, value in (("params", task_params), ("task_metadata", metadata)):
        if value is not None and not isinstance(value, dict):
            raise invalid(["body", "params", key], "Input should be a valid dictionary.", "dict_type")
    if name is not None and not isinstance(name, str):
        raise invalid(["body", "params", "name"], "Input should be a valid string.", "string_type")
    actor = _actor(token)
    for _attempt in range(2):
        if name is not None and lookup_text_ok(name):  # an unstorable name is refused by task_create
            try:
                existing = _by_name(token, name, include_deleted=True)
            except TaskNotFound:
                existing = None
            if existing is not None:
                if existing.deleted_at is not None:
                    raise FaceError(409, f"Task name {name!r} belongs to a deleted task.")
                if task_params is None:
                    return existing
                return services.task_update(
                    task=existing, actor=actor, organization_id=token.organization_id,
                    params=task_params, params_replace=True,
                )  # fmt: skip
        try:
            with transaction.atomic():
                # RUNNING from creation (its agent runs it); on this face's queue should it wait again.
                task, _ = services.task_create(
                    organization=token.organization, actor=actor, agent=agent, status=Status.EXECUTING, queue=QUEUE,
                    name=name, params=task_params or {}, metadata=metadata or {}, **reported_in_metadata(metadata),
                )  # fmt: skip
            return task
        except (IntegrityError, services.NameTaken):
            continue  # the same name was created concurrently: read it back
    raise FaceError(409, f"Task name {name!r} is taken.")


def _rpc(request: HttpRequest, token: ApiToken, agent: Agent | str) -> JsonResponse:
    body = _known(json_body(request), {"method", "params", "id", "jsonrpc"})
    method, params, rpc_id = body.get("method"), body.get("params"), body.get("id")
    if method not in _RPC_METHODS:
        raise invalid(["body", "method"], f"Input should be one of: {', '.join(_RPC_METHODS)}.", "literal_error")
    if not isinstance(params, dict):
        raise invalid(["body", "params"], "Input should be a valid dictionary.", "dict_type")
    if body.get("jsonrpc", "2.0") != "2.0":
        raise invalid(["body", "jsonrpc"], "Input should be '2.0'.", "literal_error")
    if rpc_id is not None and (isinstance(rpc_id, bool) or not isinstance(rpc_id, (int, str))):
        raise invalid(["body", "id"], "Input should be a string, an integer or null.", "union_tag_invalid")
    if method not in _RPC_SUPPORTED:
        raise invalid(["body", "method"], f"Taskdesk does not run agents: {method} is not supported.", "value_error")
    if method == "task/create":
        task = _rpc_create(token, agent, params)
    else:
        params = _known(params, {"task_id", "task_name"}, where="params")
        task_id, task_name = params.get("task_id"), params.get("task_name")
        if not isinstance(task_id or task_name, str):
            raise invalid(["body", "params", "task_id"], "Either task_id or task_name must be provided.", "missing")
        task = _resolve(token, task_id, task_name if task_id is None else None)
        if task.agent_id and isinstance(agent, Agent) and task.agent_id != agent.pk:
            raise TaskNotFound(f"Task not found: {task_id or task_name}")
        task = _act(token, task, "cancel" if method == "task/cancel" else "interrupt", None)
    return JsonResponse({"jsonrpc": "2.0", "id": rpc_id, "result": task_json(_fresh(task)), "error": None})


@_view("agents.rpc", "POST")
def agent_rpc(request: HttpRequest, token: ApiToken, agent_id: str):
    return _rpc(request, token, _agent_by_id(token, agent_id))


@_view("agents.rpc", "POST")
def agent_rpc_by_name(request: HttpRequest, token: ApiToken, agent_name: str):
    return _rpc(request, token, agent_name)


# --- Event stream ---------------------------------------------------------------------------


def render_event(event: TaskEvent) -> tuple[list[str], bool]:
    """Frames of one TaskEvent: task_updated with the task; activity messages as `full` messages."""
    if event.type == EventType.ACTIVITY:
        ids = list(event.after.get("activity_ids") or [])
        frames = []
        for entry in selectors.activity_entries(event.task_id, ids):
            if entry.kind != ActivityKind.MESSAGE:
                continue
            author = "user" if entry.role == "user" else "agent"
            content = {"type": "text", "author": author, "content": entry.content}
            frames.append(sse_data({"type": "full", "index": 0, "content": content}))
        return frames, False
    # The task as it was at this event, not as it is now; a terminal one is the stream's last word.
    task = task_at(event) or Task.objects.select_related("agent").get(pk=event.task_id)
    return [sse_data({"type": "task_updated", "task": task_json(task)})], is_finished(task)


def is_finished(task: Task) -> bool:
    """Upstream's TERMINAL_TASK_STATUSES: every final status, and DELETED (INTERRUPTED is not final)."""
    return task.deleted_at is not None or lifecycle.is_terminal(task.status)


def _stream_setup(request: HttpRequest, task_id: str | None, task_name: str | None):
    token = token_for_request(request)
    if token is None:
        return error_response(401, "Unauthorized")
    decision = ratelimit.hit(token, FACE, "tasks.stream")
    if not decision.allowed:
        return error_response(429, "Rate limit exceeded", headers={"Retry-After": str(decision.retry_after)})
    try:
        task = _resolve(token, task_id, task_name)
    except TaskNotFound as exc:
        return error_response(404, exc.message)
    # The log position first, then the status (as upstream): a task finishing meanwhile is seen
    # either as finished now or by its terminal event after `after`.
    after = newest_event_id(token.organization_id, task.pk)
    task.refresh_from_db(fields=["status", "deleted_at"])
    return (task.pk, task.public_id, is_finished(task)), token.organization_id, after


async def _only(frame: str):
    yield frame


async def task_stream(request: HttpRequest, task_id: str | None = None, task_name: str | None = None) -> HttpResponse:
    if request.method != "GET":
        return error_response(405, "Method Not Allowed", headers={"Allow": "GET"})
    setup = await sync_to_async(_stream_setup)(request, task_id, task_name)
    if isinstance(setup, HttpResponse):
        return setup
    (pk, public_id, finished), organization_id, after = setup
    opening = sse_data({"type": "connected", "taskId": public_id})
    if finished:
        return sse.stream_response(_only(opening))  # already finished: connected, then the end
    frames = face_frames(
        organization_id, after, pk, render_event, opening=opening, ping=":ping\n\n", token=request.api_token
    )
    return sse.stream_response(frames)
