"""The xpander face: the routes `xpander-sdk` 2.0.x calls, mounted at /xpander/.

`Configuration(base_url="http://HOST/xpander", api_key=TOKEN, organization_id=ORG)` works as is.
The SDK sends the token as `x-api-key`. It appends the organization to the URL only for event
streams (`/xpander/<org>/agent-execution/<id>/events`); every route is also served under
`/xpander/<org>/`, and there `<org>` must be the token's organization (slug or id), else 404.

Routes (from xpander_sdk/consts/api_routes.py):
  GET    agent-execution/executions/history/<agent_id>       Tasks.alist   (filters: user_id,
         parent_task_id, triggering_agent_id, status, internal_status; limit)
  GET    agent-execution/executions/history/user/<user_id>   Tasks.alist_user_tasks
  POST   agent-execution/<agent_id>                          Tasks.acreate (agent registered on first use)
  GET    agent-execution/<task_id>/status                    Tasks.aget, Task.areload
  PATCH  agent-execution/<task_id>/update                    Tasks.aupdate, Task.asave / aset_status
  DELETE agent-execution/<task_id>                           Tasks.astop, Task.astop
  POST   agent-execution/<agent_id>/report_task              Task.areport_external_task
  POST   agents-metrics/<agent_id>/execution                 Task.areport_metrics
  GET    activity/<agent_id>/<task_id>                       Task.aget_activity_log
  GET    agent-execution/<task_id>/events                    Task.aevents (SSE)

Statuses are AgentExecutionStatus values (lowercase), mapped by `lifecycle.XPANDER`. PATCH takes
the SDK's whole `Task` dump (asave sends every field): fields Taskdesk stores are applied, the
SDK's server-owned or runtime-only fields are accepted and ignored, and so are fields this face
does not know (a newer SDK's; logged once per name): known fields are still validated strictly.
An optional `If-Match: <version>` makes the PATCH conditional (409 when stale).

A paused task's `hitl_request` is its pending HITL request (`wait_node_id`: the node it waits
at; the question, details and options ride along for readers that want them, the SDK keeps only
`wait_node_id`). A person's answer, or a dismissal, reaches the agent as a user message in its
activity thread (`aget_activity_log`, `chunk` events; services.hitl posts it).
PATCH's `payload_extension` (what asave sends: the whole object) replaces the stored one;
`tool_call_payload_extension` (aupdate) merges into it.

Activity log: a tool call and its result are one AgentActivityThreadToolCall (the pair the log
stored when the result was appended: services.activity.pair_tool_results), as the SDK models
them; `is_error` says whether the result reports a failure (ActivityEntry.is_failure).

Event stream: `data: {type, task_id, organization_id, time, data}`; first a `connected` event
(data null, the SDK's handshake), then `task_created`, `task_updated` and `task_finished` carrying
the task as it was at that event (its snapshot), activity entries as `tool_call_request` /
`tool_call_result` (a result carries its call's `request_id` and payload) / `think` / `chunk`.
A stream replays the task's events from the start (or after `Last-Event-ID`) and ends after the
`task_finished` of a task that is still finished.
"""

import functools
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from .. import lifecycle, selectors, services
from ..lifecycle import XPANDER, Status
from ..models import ActivityEntry, ActivityKind, ApiToken, EventType, Face, HitlRequest, Task, TaskEvent
from ..services import Actor, TaskNotFound
from ..services.snapshots import task_at
from ..services.validation import as_object, ascii_int, finite
from . import ratelimit, sse
from .auth import token_for_request
from .faces import (
    FaceError,
    canonical_statuses,
    check_query,
    error_response,
    face_frames,
    face_view,
    ignore_unknown,
    invalid,
    json_body,
    positive_int,
    sse_data,
    task_for_token,
)

FACE = Face.XPANDER
# This face's work queue: its tasks are its agents' (xpander dispatches them), so a native or
# JSON-RPC worker's claim never takes one unless it is put on that worker's queue on purpose.
QUEUE = "xpander"
LIST_LIMIT = 100
LIST_LIMIT_MAX = 500


def _view(operation: str, *methods: str):
    return face_view(FACE, operation, XPANDER, methods)


def _actor(token: ApiToken) -> Actor:
    return Actor.for_token(token, face=FACE)


def _known(data: dict[str, Any], known: set[str], where: str = "body") -> dict[str, Any]:
    return ignore_unknown(data, known, face=FACE, where=where)


def _check_org(token: ApiToken, org: str | None) -> None:
    if org is not None and org not in (token.organization.slug, str(token.organization_id)):
        raise FaceError(404, f"Organization not found: {org}")


# --- Rendering ------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def task_json(task: Task) -> dict[str, Any]:
    """A Taskdesk task as xpander's `Task` model reads it."""
    return {
        "id": task.public_id,
        "agent_id": task.agent.name if task.agent_id else "",
        "organization_id": task.organization.slug,
        "input": {"text": task.input_text, "files": list(task.input_files or []), "user": _user(task.input_user)},
        "status": XPANDER.render(task.status),
        "internal_status": task.internal_status or None,
        "last_executed_node_id": task.last_executed_node_id or None,
        "agent_version": task.agent_version or None,
        "created_at": _iso(task.created_at),
        "started_at": _iso(task.started_at),
        "paused_at": _iso(task.paused_at),
        "finished_at": _iso(task.finished_at),
        "result": task.result,
        "parent_execution": task.parent_public_id,
        "sub_executions": _sub_executions(task),
        "is_manually_stopped": task.is_manually_stopped,
        "payload_extension": task.payload_extension or None,
        "source": task.source,
        "voice_id": task.voice_id or None,
        "output_format": task.output_format or None,
        "output_schema": task.output_schema,
        "events_streaming": task.events_streaming,
        "is_orchestration": task.is_orchestration,
        "additional_context": task.additional_context or None,
        "instructions_override": task.instructions_override or None,
        "expected_output": task.expected_output or None,
        "mcp_servers": list(task.mcp_servers or []),
        "triggering_agent_id": task.triggering_agent_id or None,
        "title": task.title or None,
        "think_mode": task.think_mode or "default",
        "disable_attachment_injection": task.disable_attachment_injection,
        "deep_planning": as_object(task.deep_planning),
        "execution_attempts": task.execution_attempts,
        "return_metrics": task.return_metrics,
        "tokens": {"prompt_tokens": task.prompt_tokens, "completion_tokens": task.completion_tokens},
        "used_tools": list(task.used_tools or []),
        "duration": finite(task.duration),
        "hitl_request": hitl_request_json(task),
        # Not xpander fields: lets a client send If-Match for a conditional PATCH; when retention
        # removed the task's content (Agentex's name for it).
        "version": task.version,
        "cleaned_at": _iso(task.cleaned_at),
    }


def _sub_executions(task: Task) -> list[str]:
    if not getattr(task, "_from_snapshot", False):
        # Every answer about a task lists them, every update's too: in plain SQL, as the
        # kernel's writes are (compiling the ORM's query cost a third of an update's CPU).
        with connection.cursor() as cursor:
            cursor.execute(_SUB_EXECUTIONS_SQL, [task.pk])
            return [public_id for (public_id,) in cursor.fetchall()]
    # As at the event: the sub-tasks created by then (and not deleted by then).
    at = task.updated_at
    qs = Task.objects.filter(parent_id=task.pk, created_at__lte=at).exclude(deleted_at__lte=at)
    return list(qs.order_by("created_at", "id").values_list("public_id", flat=True))


_SUB_EXECUTIONS_SQL = (
    f"SELECT public_id FROM {Task._meta.db_table}"  # noqa: S608 (the model's table name)
    " WHERE parent_id = %s AND deleted_at IS NULL ORDER BY created_at, id"
)


def hitl_request_json(task: Task) -> dict[str, Any] | None:
    """The pending HITL request of a paused task as the SDK's HumanInTheLoopRequest, else None.

    The SDK's model knows only `wait_node_id` (the node the run waits at); the request's own
    facts ride along for readers that want them.
    """
    if task.status != Status.PAUSED or task.deleted_at is not None:
        return None
    if getattr(task, "_from_snapshot", False):
        # As it was at the event: the request that was pending then.
        hitl = HitlRequest.objects.filter(pk=task.pending_hitl_id).first() if task.pending_hitl_id else None
    else:
        hitl = HitlRequest.objects.filter(task_id=task.pk, decision__isnull=True).first()
    if hitl is None:
        return None
    return {
        "wait_node_id": task.last_executed_node_id or f"hitl-{hitl.pk}",
        "id": str(hitl.pk),
        "question": hitl.question,
        "details": hitl.details,
        "options": list(hitl.options or []),
        "requested_at": _iso(hitl.requested_at),
        "deadline": _iso(hitl.deadline),
    }


def _user(value: Any) -> dict | None:
    # xpander's User requires an email; anything else would fail the SDK's parse.
    if isinstance(value, dict) and isinstance(value.get("email"), str):
        return value
    return None


def list_item_json(task: Task) -> dict[str, Any]:
    user = task.input_user if isinstance(task.input_user, dict) else {}
    return {
        "id": task.public_id,
        "agent_id": task.agent.name if task.agent_id else "",
        "user_id": user.get("id"),
        "parent_task_id": task.parent_public_id,
        "triggering_agent_id": task.triggering_agent_id or None,
        "organization_id": task.organization.slug,
        "status": XPANDER.render(task.status),
        "created_at": _iso(task.created_at),
        "updated_at": _iso(task.updated_at),
        "result": task.result,
        "title": task.title or None,
    }


def _fresh(task: Task) -> Task:
    return Task.objects.select_related("agent", "organization", "parent").get(pk=task.pk)


# --- Request mapping ------------------------------------------------------------------------

# Fields stored as they come (xpander name == Taskdesk name).
_SAME_NAME = {
    "source",
    "result",
    "last_executed_node_id",
    "internal_status",
    "agent_version",
    "triggering_agent_id",
    "title",
    "additional_context",
    "instructions_override",
    "expected_output",
    "output_format",
    "output_schema",
    "voice_id",
    "think_mode",
    "mcp_servers",
    "events_streaming",
    "is_orchestration",
    "return_metrics",
    "disable_attachment_injection",
    "execution_attempts",
    "used_tools",
    "duration",
    "deep_planning",
    "payload_extension",
}
# The SDK's server-owned or runtime-only fields (and secrets Taskdesk does not keep): accepted, ignored.
_IGNORED = {
    "id",
    "agent_id",
    "organization_id",
    "created_at",
    "started_at",
    "paused_at",
    "finished_at",
    "parent_execution",
    "sub_executions",
    "conversation_id",
    "conversation_kind",
    "should_update_parent",
    "is_manually_stopped",
    "execution_kind",
    "hitl_request",
    "pending_eca_request",
    "is_gateway",
    "is_app",
    "background_auth_eligible",
    "tool_call_limit",
    "test_run_node_id",
    "user_oidc_token",
    "user_tokens",
    "must_deep_plan",
    "llm_model_provider",
    "llm_model_name",
    "llm_reasoning_effort",
    "harness_cli",
    "permission_mode",
    "worker_id",
    "run_locally",
    "version",
}
_UPDATE_KNOWN = _SAME_NAME | _IGNORED | {"status", "input", "tokens", "tool_call_payload_extension"}
_CREATE_KNOWN = (_SAME_NAME - {"result", "used_tools", "duration", "execution_attempts", "internal_status"}) | {
    "id",
    "input",
    "worker_id",
    "run_locally",
    "test_run_node_id",
    "user_oidc_token",
    "tool_call_limit",
    "user_tokens",
    "llm_model_provider",
    "llm_model_name",
    "llm_reasoning_effort",
    "harness_cli",
    "permission_mode",
}
_INPUT_KNOWN = {"text", "files", "user", "attachments", "principal"}


def _map_input(value: Any, fields: dict[str, Any]) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise invalid(["body", "input"], "Input should be an object.", "model_attributes_type")
    value = _known(value, _INPUT_KNOWN, where="input")
    for name, target in (("text", "input_text"), ("files", "input_files"), ("user", "input_user")):
        if value.get(name) is not None:
            fields[target] = value[name]


def _map_tokens(value: Any, fields: dict[str, Any]) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise invalid(["body", "tokens"], "Input should be an object.", "model_attributes_type")
    for name in ("prompt_tokens", "completion_tokens"):
        if value.get(name) is not None:
            fields[name] = value[name]


def _parse_status(value: Any) -> str:
    try:
        return XPANDER.parse(value) if isinstance(value, str) else XPANDER.parse(repr(value))
    except ValueError as exc:
        raise invalid(["body", "status"], str(exc), "enum") from None


def _echoed(sent_status: Any, task: Task, name: str, value: Any) -> bool:
    """asave() sends the whole task back: a value equal to the task's is an echo, not a change,
    and must not override what the lifecycle derives (the duration of a task finishing now).
    A status is an echo when it reads as the task's (canceled reads as "stopped")."""
    if name == "status":
        return XPANDER.render(task.status) == sent_status
    return getattr(task, name, _NOT_A_COLUMN) == value


_NOT_A_COLUMN = object()


def _if_match(request: HttpRequest) -> int | None:
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    version = ascii_int(raw.strip().removeprefix("W/").strip('"'), max_digits=9)
    if version is None:
        raise invalid(["header", "If-Match"], 'Must be the task\'s version, e.g. "3".')
    return version


# --- Task routes ----------------------------------------------------------------------------


def _list(token: ApiToken, request: HttpRequest, **filters: Any) -> JsonResponse:
    allowed = {"user_id", "parent_task_id", "triggering_agent_id", "status", "internal_status", "limit"}
    check_query(request, allowed, face=FACE)
    qs = selectors.tasks_for_token(token).select_related("agent", "organization", "parent").filter(**filters)
    if request.GET.get("user_id"):
        qs = qs.filter(input_user__id=request.GET["user_id"])
    if request.GET.get("parent_task_id"):
        qs = qs.filter(parent__public_id=request.GET["parent_task_id"])
    if request.GET.get("triggering_agent_id"):
        qs = qs.filter(triggering_agent_id=request.GET["triggering_agent_id"])
    if request.GET.get("internal_status"):
        qs = qs.filter(internal_status=request.GET["internal_status"])
    if request.GET.get("status"):
        try:
            qs = qs.filter(status__in=canonical_statuses(XPANDER, request.GET["status"]))
        except ValueError as exc:
            raise invalid(["query", "status"], str(exc), "enum") from None
    limit = positive_int(request, "limit", LIST_LIMIT, LIST_LIMIT_MAX)
    rows = qs.order_by("-created_at", "-id")[:limit]
    return JsonResponse([list_item_json(t) for t in rows], safe=False)


@_view("tasks.list", "GET")
def list_agent_tasks(request: HttpRequest, token: ApiToken, agent_id: str, org: str | None = None):
    _check_org(token, org)
    return _list(token, request, agent__name=agent_id)


@_view("tasks.list", "GET")
def list_user_tasks(request: HttpRequest, token: ApiToken, user_id: str, org: str | None = None):
    _check_org(token, org)
    request.GET = request.GET.copy()
    request.GET.pop("user_id", None)
    return _list(token, request, input_user__id=user_id)


@_view("tasks.create", "POST")
def create_task(request: HttpRequest, token: ApiToken, agent_id: str, org: str | None = None):
    _check_org(token, org)
    body = _known(json_body(request), _CREATE_KNOWN)
    fields: dict[str, Any] = {}
    _map_input(body.get("input"), fields)
    for name in _SAME_NAME & body.keys():
        if body[name] is not None:
            fields[name] = body[name]
    if request.headers.get("x-agent-version"):
        fields["agent_version"] = request.headers["x-agent-version"]
    task, created = services.task_create(
        organization=token.organization, actor=_actor(token), id=body.get("id"), agent=agent_id, queue=QUEUE, **fields
    )
    return JsonResponse(task_json(_fresh(task)), status=201 if created else 200)


@_view("tasks.get", "GET")
def get_task(request: HttpRequest, token: ApiToken, task_id: str, org: str | None = None):
    _check_org(token, org)
    return JsonResponse(task_json(task_for_token(token, task_id)))


@_view("tasks.update", "PATCH")
def update_task(request: HttpRequest, token: ApiToken, task_id: str, org: str | None = None):
    _check_org(token, org)
    body = _known(json_body(request), _UPDATE_KNOWN)
    expected_version = _if_match(request)
    fields: dict[str, Any] = {}
    _map_input(body.get("input"), fields)
    _map_tokens(body.get("tokens"), fields)
    for name in _SAME_NAME & body.keys():
        if body[name] is not None:
            fields[name] = body[name]
    # asave() sends the whole payload_extension: it replaces (a key removed locally is gone);
    # aupdate()'s tool_call_payload_extension merges into it, as the seed documents.
    replace_extension = "payload_extension" in fields
    if body.get("tool_call_payload_extension") is not None:
        if replace_extension:
            fields["payload_extension"] = {**fields["payload_extension"], **body["tool_call_payload_extension"]}
        else:
            fields["payload_extension"] = body["tool_call_payload_extension"]
    if body.get("status") is not None:
        fields["status"] = _parse_status(body["status"])
    task = services.task_update(
        task=task_id, actor=_actor(token), organization_id=token.organization_id,
        expected_version=expected_version, payload_extension_replace=replace_extension,
        echoed=functools.partial(_echoed, body.get("status")), **fields,
    )  # fmt: skip
    # The task as written (agent and parent came with the kernel's locked read), in the token's
    # organization: no read after the write.
    task.organization = token.organization
    return JsonResponse(task_json(task))


@_view("tasks.stop", "DELETE")
def stop_task(request: HttpRequest, token: ApiToken, task_id: str, org: str | None = None):
    _check_org(token, org)
    task = services.task_stop(
        task=task_id, actor=_actor(token), organization_id=token.organization_id, status=Status.STOPPED
    )
    return JsonResponse(task_json(_fresh(task)))


# One dispatcher per URL shape: the SDK uses POST and DELETE on the same path.
@csrf_exempt
def agent_execution(request: HttpRequest, agent_or_task_id: str, org: str | None = None):
    if request.method == "DELETE":
        return stop_task(request, task_id=agent_or_task_id, org=org)
    return create_task(request, agent_id=agent_or_task_id, org=org)


def _report_messages(llm_response: Any) -> list[dict[str, Any]] | None:
    """An `llm_response` that is a list of {role, content} messages becomes activity entries."""
    if not isinstance(llm_response, list) or not all(
        isinstance(m, dict) and isinstance(m.get("content"), str) for m in llm_response
    ):
        return None
    entries = []
    for message in llm_response:
        role = message.get("role") if isinstance(message.get("role"), str) else "agent"
        entries.append({"kind": ActivityKind.MESSAGE, "role": role[:20], "content": message["content"]})
    return entries


@_view("tasks.report", "POST")
def report_task(request: HttpRequest, token: ApiToken, agent_id: str, org: str | None = None):
    """A run executed elsewhere, recorded whole: final status, input, result, tokens, messages."""
    _check_org(token, org)
    known = {"id", "input", "llm_response", "tokens", "is_success", "result", "duration", "used_tools"}
    body = _known(json_body(request), known)
    is_success = body.get("is_success", True)
    if not isinstance(is_success, bool):
        raise invalid(["body", "is_success"], "Input should be a valid boolean.", "bool_type")
    fields: dict[str, Any] = {"status": Status.COMPLETED if is_success else Status.FAILED, "source": "external"}
    for name, target in (("input", "input_text"), ("result", "result"), ("used_tools", "used_tools")):
        if body.get(name) is not None:
            fields[target] = body[name]
    if body.get("duration"):
        fields["duration"] = body["duration"]
    _map_tokens(body.get("tokens"), fields)
    llm_response = body.get("llm_response")
    entries = _report_messages(llm_response)
    if llm_response is not None and entries is None:
        fields["metadata"] = {"llm_response": llm_response}
    if entries is None:
        entries = []
        if fields.get("input_text"):
            entries.append({"kind": ActivityKind.MESSAGE, "role": "user", "content": fields["input_text"]})
        if fields.get("result"):
            entries.append({"kind": ActivityKind.MESSAGE, "role": "agent", "content": fields["result"]})
    actor = _actor(token)
    # One transaction: the task and its activity are recorded together or not at all.
    with transaction.atomic():
        task, created = services.task_create(
            organization=token.organization, actor=actor, id=body.get("id"), agent=agent_id, queue=QUEUE, **fields
        )
        if created and entries:
            services.append_activity(task=task, actor=actor, entries=entries, organization_id=token.organization_id)
    return JsonResponse(task_json(_fresh(task)), status=201 if created else 200)


@_view("tasks.metrics", "POST")
def report_metrics(request: HttpRequest, token: ApiToken, agent_id: str, org: str | None = None):
    """ExecutionMetricsReport: token totals, tools used and (when non-zero) duration of a task."""
    _check_org(token, org)
    body = json_body(request)
    execution_id = body.get("execution_id")
    if not isinstance(execution_id, str) or not execution_id:
        raise invalid(["body", "execution_id"], "Field required.", "missing")
    task = task_for_token(token, execution_id)
    if task.agent_id and task.agent.name != agent_id:
        raise FaceError(404, f"Task not found: {execution_id}")
    tokens = body.get("llm_tokens") or {}
    if not isinstance(tokens, dict):
        raise invalid(["body", "llm_tokens"], "Input should be an object.", "model_attributes_type")
    prompt = completion = 0
    for part in ("worker", "inner"):
        counts = tokens.get(part) or {}
        if not isinstance(counts, dict):
            raise invalid(["body", "llm_tokens", part], "Input should be an object.", "model_attributes_type")
        for name in ("prompt_tokens", "completion_tokens"):
            value = counts.get(name) or 0
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise invalid(["body", "llm_tokens", part, name], "Input should be a non-negative integer.", "int_type")
        prompt += counts.get("prompt_tokens") or 0
        completion += counts.get("completion_tokens") or 0
    tools = body.get("api_calls_made")
    duration = body.get("duration")
    task = services.report_metrics(
        task=task,
        actor=_actor(token),
        organization_id=token.organization_id,
        prompt_tokens=prompt,
        completion_tokens=completion,
        used_tools=[t for t in tools if isinstance(t, str)] if isinstance(tools, list) else None,
        duration=duration if isinstance(duration, (int, float)) and duration > 0 else None,
    )
    return JsonResponse(task_json(_fresh(task)))


# --- Activity log ---------------------------------------------------------------------------


def activity_json(entry, result: ActivityEntry | None = None) -> dict[str, Any]:
    """One ActivityEntry as an AgentActivityThread message (message, tool call or reasoning).

    The SDK models a tool call and its result as one AgentActivityThreadToolCall: a call is
    shown with the result paired to it (`pair_tool_results`); a result with no call stands alone.
    """
    base = {"id": str(entry.pk), "created_at": entry.created_at.isoformat()}
    if entry.kind in (ActivityKind.TOOL_CALL, ActivityKind.TOOL_RESULT):
        output = result.tool_output if result is not None else entry.tool_output
        return {
            **base,
            "tool_name": entry.tool_name or (result.tool_name if result is not None else "") or "tool",
            "payload": entry.tool_arguments,
            "result": output,
            "is_error": (result or entry).is_failure,
        }
    if entry.kind == ActivityKind.REASONING:
        return {**base, "type": "think", "title": entry.content[:120] or "Reasoning", "confidence": 1.0,
                "thought": entry.content}  # fmt: skip
    role = "user" if entry.role == "user" else "agent"
    return {**base, "role": role, "content": {"text": entry.content, "files": []}}


def pair_tool_results(entries: list[ActivityEntry]) -> dict[int, ActivityEntry]:
    """call pk -> its result, among `entries` (the pairs the log stored)."""
    return {entry.call_id: entry for entry in entries if entry.call_id is not None}


def call_for_result(result: ActivityEntry) -> ActivityEntry | None:
    """The tool call a result answers (for the event stream, which sees one entry at a time)."""
    return result.call


@_view("activity.list", "GET")
def activity_log(request: HttpRequest, token: ApiToken, agent_id: str, task_id: str, org: str | None = None):
    _check_org(token, org)
    task = task_for_token(token, task_id)
    if task.agent_id and task.agent.name != agent_id:
        raise FaceError(404, f"Task not found: {task_id}")
    entries = list(task.activity.order_by("id")[:5000])
    results = pair_tool_results(entries)
    paired = {result.pk for result in results.values()}
    return JsonResponse(
        {
            "id": task.public_id,
            "created_at": task.created_at.isoformat(),
            "messages": [activity_json(e, results.get(e.pk)) for e in entries if e.pk not in paired],
            "user": _user(task.input_user),
        }
    )


# --- Event stream ---------------------------------------------------------------------------

_ACTIVITY_TYPES = {
    ActivityKind.TOOL_CALL: "tool_call_request",
    ActivityKind.TOOL_RESULT: "tool_call_result",
    ActivityKind.REASONING: "think",
    ActivityKind.MESSAGE: "chunk",
}


def _envelope(type_: str, event: TaskEvent, task: Task, data: Any) -> dict[str, Any]:
    return {"type": type_, "task_id": task.public_id, "organization_id": task.organization.slug,
            "time": event.created_at.isoformat(), "data": data}  # fmt: skip


def _activity_data(entry) -> dict[str, Any]:
    if entry.kind in (ActivityKind.TOOL_CALL, ActivityKind.TOOL_RESULT):
        # A result carries its call's request_id and payload: the SDK pairs ToolCallResult with
        # the ToolCallRequest it answers by request_id.
        call = call_for_result(entry) if entry.kind == ActivityKind.TOOL_RESULT else entry
        source = call or entry
        data = {"request_id": str(source.pk), "operation_id": source.tool_name or entry.tool_name or "tool",
                "tool_call_id": entry.tool_call_id or source.tool_call_id or None,
                "tool_name": entry.tool_name or source.tool_name or None,
                "payload": source.tool_arguments}  # fmt: skip
        if entry.kind == ActivityKind.TOOL_RESULT:
            data["result"] = entry.tool_output
            data["is_error"] = entry.is_failure
        return data
    return activity_json(entry)


def render_event(event: TaskEvent) -> tuple[list[str], bool]:
    """The SSE frames of one TaskEvent for the SDK's aevents(), and whether the stream is done."""
    current = Task.objects.select_related("agent", "organization", "parent").get(pk=event.task_id)
    # The task as it was at this event (a replayed task_created shows the task as created).
    task = task_at(event) or current
    task.organization = current.organization
    if event.type == EventType.ACTIVITY:
        ids = list(event.after.get("activity_ids") or [])
        entries = selectors.activity_entries(current.pk, ids)
        frames = [
            sse_data(_envelope(_ACTIVITY_TYPES.get(e.kind, "chunk"), event, task, _activity_data(e)), event.pk)
            for e in entries
        ]
        return frames, False
    if event.type == EventType.CREATED:
        type_ = "task_created"
    elif "status" in event.changes and lifecycle.is_terminal(event.after.get("status", "")):
        type_ = "task_finished"
    else:
        type_ = "task_updated"
    data = task_json(task)
    # Close after the last word on a finished task; a retried task keeps its stream open.
    done = type_ == "task_finished" and current.is_terminal and event.task_version == current.version
    return [sse_data(_envelope(type_, event, task, data), event.pk)], done


def _stream_setup(request: HttpRequest, task_id: str, org: str | None) -> tuple[Any, int, int] | HttpResponse:
    token = token_for_request(request)
    if token is None:
        return error_response(401, "Unauthorized")
    decision = ratelimit.hit(token, FACE, "events")
    if not decision.allowed:
        return error_response(429, "Rate limit exceeded", headers={"Retry-After": str(decision.retry_after)})
    if org is not None and org not in (token.organization.slug, str(token.organization_id)):
        return error_response(404, f"Organization not found: {org}")
    try:
        task = selectors.get_task_for_token(token, task_id)
    except TaskNotFound:
        return error_response(404, f"Task not found: {task_id}")
    try:
        after = sse.resume_point(request)
    except ValueError as exc:
        return error_response(422, [{"loc": ["header", "Last-Event-ID"], "msg": str(exc), "type": "value_error"}])
    # Without a resume point the whole (bounded) history of the task is replayed: the SDK
    # connects after creating the task and must still see task_created.
    connected = {"type": "connected", "task_id": task.public_id, "organization_id": token.organization.slug,
                 "time": timezone.now().isoformat(), "data": None}  # fmt: skip
    return (task.pk, connected), token.organization_id, after or 0


async def task_events(request: HttpRequest, task_id: str, org: str | None = None) -> HttpResponse:
    """GET agent-execution/<task_id>/events: the task's events in xpander's SSE envelope."""
    if request.method != "GET":
        return error_response(405, "Method Not Allowed", headers={"Allow": "GET"})
    setup = await sync_to_async(_stream_setup)(request, task_id, org)
    if isinstance(setup, HttpResponse):
        return setup
    (task_pk, connected), organization_id, after = setup
    frames = face_frames(
        organization_id,
        after,
        task_pk,
        render_event,
        opening=sse_data(connected),  # the SDK's TaskUpdateEventType.Connected, first on every stream
        ping=": ping\n\n",
        token=request.api_token,  # a revoked token ends the stream (live.hub re-checks)
    )
    return sse.stream_response(frames)
