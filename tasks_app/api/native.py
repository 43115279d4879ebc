"""The native REST API under /api/v1/ (django-ninja), documented at /api/docs.

Auth: `Authorization: Bearer <token>` or `x-api-key: <token>`; a missing, unknown or revoked
token is a 401 `{"detail": "Unauthorized"}`. A token sees only its organization: any other id is
a 404, exactly like an id that does not exist.

Errors are `{"detail": ...}`: 422 with `[{loc, msg, type}]` for invalid input (pydantic's and the
services' alike), 404 unknown task, 409 conflicts (stale version with `current_version`,
disallowed transition with `current_status` and `allowed`, id taken), 413 body too large,
429 rate limited (with `Retry-After`). See `errors.py` for the whole table.

Claim: POST /tasks/claim answers 200 with the claimed task, or 204 (no body) when no task is
pending. Create with a caller-chosen id answers 201 the first time and 200 with the same task
when the same body is sent again (safe retries); a different body is a 409.
"""

from typing import Any, Literal

from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError
from django.db.models import Q
from django.http import HttpRequest
from ninja import Header, NinjaAPI, Query, Router, Schema, Status
from ninja.errors import AuthenticationError
from ninja.parser import Parser
from ninja.security import APIKeyHeader, HttpBearer
from pydantic import Field

from .. import selectors, services
from ..models import ActivityEntry, ApiToken, Face, HitlRequest, Task
from ..selectors import BadCursor, TaskFilters
from ..services import Actor, InvalidInput, ServiceError, TransitionRefused, VersionConflict
from ..services.validation import parse_json
from . import ratelimit
from .errors import error_facts, http_status, validation_detail
from .schemas import (
    NO_NUL,
    ActivityBatchIn,
    ActivityIn,
    ActivityOut,
    ActivityPageOut,
    ClaimIn,
    ConflictOut,
    ErrorOut,
    HitlDecisionIn,
    HitlIn,
    HitlOut,
    IsoDateTime,
    MetricsIn,
    StatusName,
    StopIn,
    TaskCreateIn,
    TaskOut,
    TaskPageOut,
    TaskPatchIn,
    Text,
)

FACE = "api"


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        return services.api_token_authenticate(token)


class ApiKeyToken(APIKeyHeader):
    param_name = "x-api-key"

    def authenticate(self, request: HttpRequest, key: str | None) -> ApiToken | None:
        return services.api_token_authenticate(key)


class BodyParser(Parser):
    """The one JSON reader every face uses (validation.parse_json): depth bounded at the door."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        return parse_json(request.body)


class RateLimited(Exception):
    def __init__(self, retry_after: int):
        self.retry_after = retry_after


api = NinjaAPI(
    title="Taskdesk API",
    version="1",
    description=__doc__,
    urls_namespace="taskdesk-api",
    # Mounted at /api/: the schema lives at /api/v1/openapi.json, the browsable docs at /api/docs.
    openapi_url="/v1/openapi.json",
    docs_url="/docs",
    auth=[BearerToken(), ApiKeyToken()],
    parser=BodyParser(),
)
router = Router(tags=["tasks"])

# Every operation may answer these (auth, scoping, validation, size, conflicts, rate limit).
ERRORS: dict[int, Any] = {
    400: ErrorOut,
    401: ErrorOut,
    404: ErrorOut,
    409: ConflictOut,
    413: ErrorOut,
    422: ErrorOut,
    429: ErrorOut,
}


def responses(ok: dict[int, Any]) -> dict[int, Any]:
    """Documented responses: the operation's own plus every error status."""
    return {**ERRORS, **ok}


# --- Errors -------------------------------------------------------------------------------


@api.exception_handler(AuthenticationError)
def _unauthorized(request, exc):
    response = api.create_response(request, {"detail": "Unauthorized"}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="taskdesk"'
    return response


@api.exception_handler(RateLimited)
def _rate_limited(request, exc: RateLimited):
    response = api.create_response(request, {"detail": "Rate limit exceeded", "code": "rate_limited"}, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(RequestDataTooBig)
def _too_large(request, exc):
    return api.create_response(request, {"detail": "Request body too large.", "code": "too_large"}, status=413)


@api.exception_handler(ServiceError)
def _service_error(request, exc: ServiceError):
    status = http_status(exc)
    if isinstance(exc, InvalidInput):
        # The same locations ninja gives its own validation errors of the body parameter.
        body: dict[str, Any] = {"detail": validation_detail(exc.errors, ("body", "payload"))}
    else:
        body = {"detail": exc.message, "code": exc.code, **error_facts(exc)}
        if isinstance(exc, (TransitionRefused, VersionConflict)):
            body.pop("target_status", None)
            body.pop("expected_version", None)
    return api.create_response(request, body, status=status)


@api.exception_handler(IntegrityError)
def _unique_clash(request, exc: IntegrityError):
    # A unique field other than the id (the task's name) clashes with another task.
    detail = "Conflicts with an existing task: a unique field (such as name) is taken."
    return api.create_response(request, {"detail": detail, "code": "conflict"}, status=409)


@api.exception_handler(BadCursor)
def _bad_cursor(request, exc: BadCursor):
    detail = [{"loc": ["query", "after"], "msg": str(exc), "type": "value_error"}]
    return api.create_response(request, {"detail": detail}, status=422)


# --- Helpers ------------------------------------------------------------------------------


def _token(request: HttpRequest, operation: str) -> ApiToken:
    """The authenticated token, counted against its rate limit for this operation."""
    token: ApiToken = request.auth
    decision = ratelimit.hit(token, FACE, operation)
    if not decision.allowed:
        raise RateLimited(decision.retry_after)
    return token


def _actor(token: ApiToken) -> Actor:
    return Actor.for_token(token, face=Face.API)


def _task(token: ApiToken, task_id: str) -> Task:
    return selectors.get_task_for_token(token, task_id)


def _out(task: Task) -> dict[str, Any]:
    return TaskOut.from_task(task)


IF_MATCH_PATTERN = r'^(\*|(W/)?"?[0-9]{1,9}"?)$'


def _if_match(value: str | None) -> int | None:
    """`If-Match: "3"` (or W/"3", or 3) -> 3; `*` matches any version (the header's pattern is checked by ninja)."""
    if value is None or value.strip() == "*":
        return None
    return int(value.strip().removeprefix("W/").strip('"'))


# --- Tasks --------------------------------------------------------------------------------


SortName = Literal[tuple(name for field in selectors.SORT_FIELDS for name in (field, f"-{field}"))]  # type: ignore[valid-type]


class TaskListParams(Schema):
    status: list[StatusName] = Field(default_factory=list, description="Repeat for several statuses.")
    agent: list[Text] = Field(default_factory=list, description="Agent names; repeat for several.")
    source: Text = ""
    has_pending_hitl: bool | None = None
    updated_after: IsoDateTime | None = None
    updated_before: IsoDateTime | None = None
    q: str = Field("", max_length=200, pattern=NO_NUL, description="Matches the id exactly, or title or input text.")
    sort: SortName = Field(selectors.DEFAULT_SORT, description="A sort field; a leading '-' sorts descending.")
    after: Text | None = Field(None, description="The `next` cursor of the previous page.")
    before: Text | None = Field(None, description="The `prev` cursor of the previous page.")
    limit: int = Field(selectors.PAGE_SIZE, ge=1, le=200)


@router.get("/tasks", response=responses({200: TaskPageOut}), summary="List tasks (newest first, cursor-paginated)")
def list_tasks(request, params: Query[TaskListParams]):
    token = _token(request, "tasks.list")
    filters = TaskFilters(
        statuses=tuple(params.status),
        agents=tuple(params.agent),
        source=params.source,
        has_pending_hitl=params.has_pending_hitl,
        updated_after=params.updated_after,
        updated_before=params.updated_before,
        q=params.q,
        sort=params.sort,
    )
    tasks = selectors.tasks_for_token(token).select_related("agent", "parent", "assigned_worker")
    qs = selectors.filter_tasks(tasks, filters)
    page = selectors.paginate_tasks(qs, sort=params.sort, after=params.after, before=params.before, limit=params.limit)
    return {"items": [TaskOut.from_task(t) for t in page.tasks], "next": page.older, "prev": page.newer}


@router.post(
    "/tasks",
    response=responses({200: TaskOut, 201: TaskOut}),
    summary="Create a task (201; 200 when the same id and body were already created)",
)
def create_task(request, payload: TaskCreateIn):
    token = _token(request, "tasks.create")
    fields = payload.model_dump(exclude_unset=True)
    task_id = fields.pop("id", None)
    agent = fields.pop("agent", None)
    parent_id = fields.pop("parent_id", None)
    task, created = services.task_create(
        organization=token.organization, actor=_actor(token), id=task_id, agent=agent, parent_id=parent_id, **fields
    )
    return Status(201 if created else 200, _out(task))


@router.post(
    "/tasks/claim",
    response=responses({200: TaskOut, 204: None}),
    summary="Claim the next pending task (highest priority, then oldest); 204 when none is pending",
)
def claim_task(request, payload: ClaimIn | None = None):
    token = _token(request, "tasks.claim")
    agent = payload.agent if payload else None
    queue = payload.queue if payload else ""
    task = services.task_claim(organization=token.organization, actor=_actor(token), agent=agent, queue=queue)
    if task is None:
        return Status(204, None)
    return Status(200, _out(task))


@router.get("/tasks/{task_id}", response=responses({200: TaskOut}), summary="Get a task")
def get_task(request, task_id: str):
    token = _token(request, "tasks.get")
    return Status(200, _out(_task(token, task_id)))


@router.patch(
    "/tasks/{task_id}",
    response=responses({200: TaskOut}),
    summary="Patch a task (metadata and params merge unless *_replace; If-Match guards the version)",
)
def patch_task(
    request,
    task_id: str,
    payload: TaskPatchIn,
    if_match: str = Header(None, alias="If-Match", pattern=IF_MATCH_PATTERN, description='The version, e.g. "3"'),
):
    token = _token(request, "tasks.update")
    fields = payload.model_dump(exclude_unset=True)
    expected = fields.pop("expected_version", None)
    header_version = _if_match(if_match)
    if header_version is not None:
        expected = header_version
    task = services.task_update(
        task=task_id,
        actor=_actor(token),
        organization_id=token.organization_id,
        expected_version=expected,
        metadata_replace=fields.pop("metadata_replace", False),
        params_replace=fields.pop("params_replace", False),
        **fields,
    )
    return Status(200, _out(task))


@router.post("/tasks/{task_id}/stop", response=responses({200: TaskOut}), summary="Stop a task")
def stop_task(request, task_id: str, payload: StopIn | None = None):
    token = _token(request, "tasks.stop")
    payload = payload or StopIn()
    task = services.task_stop(
        task=task_id,
        actor=_actor(token),
        organization_id=token.organization_id,
        reason=payload.reason,
        status=payload.status,
    )
    return Status(200, _out(task))


@router.post(
    "/tasks/{task_id}/retry",
    response=responses({200: TaskOut}),
    summary="Send a finished task back to pending",
)
def retry_task(request, task_id: str):
    token = _token(request, "tasks.retry")
    task = services.task_retry(task=task_id, actor=_actor(token), organization_id=token.organization_id)
    return Status(200, _out(task))


# --- Activity -----------------------------------------------------------------------------


@router.post(
    "/tasks/{task_id}/activity",
    response=responses({201: list[ActivityOut]}),
    summary="Append one activity entry (an object) or several (an array)",
)
def append_activity(request, task_id: str, payload: ActivityIn | ActivityBatchIn):
    token = _token(request, "activity.append")
    entries = payload if isinstance(payload, list) else [payload]
    created = services.append_activity(
        task=task_id,
        actor=_actor(token),
        organization_id=token.organization_id,
        entries=[entry.model_dump(exclude_none=True) for entry in entries],
    )
    return Status(201, [ActivityOut.from_entry(entry) for entry in created])


@router.get("/tasks/{task_id}/activity", response=responses({200: ActivityPageOut}), summary="List activity")
def list_activity(request, task_id: str, after: int = Query(0, ge=0, le=2**62), limit: int = Query(100, ge=1, le=500)):
    token = _token(request, "activity.list")
    task = _task(token, task_id)
    rows = list(ActivityEntry.objects.filter(task=task, id__gt=after).order_by("id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return Status(200, {"items": [ActivityOut.from_entry(r) for r in rows], "next": rows[-1].pk if more else None})


# --- Human in the loop --------------------------------------------------------------------


@router.post(
    "/tasks/{task_id}/hitl",
    response=responses({201: HitlOut}),
    summary="Pause the task for a person's decision",
)
def request_hitl(request, task_id: str, payload: HitlIn):
    token = _token(request, "hitl.request")
    hitl = services.hitl_request(
        task=task_id,
        actor=_actor(token),
        organization_id=token.organization_id,
        question=payload.question,
        details=payload.details,
        options=payload.options,
        payload=payload.payload,
        deadline=payload.deadline,
        on_timeout=payload.on_timeout,
        reject_status=payload.reject_status,
    )
    return Status(201, HitlOut.from_hitl(hitl))


def _latest_hitl(task: Task) -> HitlRequest:
    hitl = HitlRequest.objects.filter(task=task).order_by("-requested_at", "-id").first()
    if hitl is None:
        raise services.TaskNotFound(f"Task {task.public_id} has no HITL request.")
    return hitl


@router.get(
    "/tasks/{task_id}/hitl",
    response=responses({200: HitlOut}),
    summary="The task's latest HITL request and its decision (poll this while paused)",
)
def get_hitl(request, task_id: str):
    token = _token(request, "hitl.get")
    return Status(200, HitlOut.from_hitl(_latest_hitl(_task(token, task_id))))


@router.post(
    "/tasks/{task_id}/hitl/decision",
    response=responses({200: HitlOut}),
    summary="Decide the task's pending HITL request: approve (may amend the payload), reject, answer, choose an "
    "option, or dismiss",
)
def decide_hitl(request, task_id: str, payload: HitlDecisionIn):
    token = _token(request, "hitl.decide")
    task = _task(token, task_id)
    pending = HitlRequest.objects.filter(task=task).filter(Q(decision__isnull=True)).first()
    hitl = pending or _latest_hitl(task)  # a decided one answers 409 "already decided"
    decided = services.hitl_decide(
        hitl=hitl,
        actor=_actor(token),
        organization_id=token.organization_id,
        decision=payload.decision,
        reason=getattr(payload, "reason", ""),
        comment=payload.comment,
        answer=getattr(payload, "answer", ""),
        option=getattr(payload, "option", None),
        amended_payload=getattr(payload, "amended_payload", None),
    )
    return Status(200, HitlOut.from_hitl(decided))


# --- Metrics ------------------------------------------------------------------------------


@router.post(
    "/tasks/{task_id}/metrics",
    response=responses({200: TaskOut}),
    summary="Report token counts (totals), tools used (added) and duration",
)
def report_metrics(request, task_id: str, payload: MetricsIn):
    token = _token(request, "metrics.report")
    task = services.report_metrics(
        task=task_id,
        actor=_actor(token),
        organization_id=token.organization_id,
        **payload.model_dump(exclude_none=True),
    )
    return Status(200, _out(task))


api.add_router("/v1/", router)

__all__ = ["api"]
