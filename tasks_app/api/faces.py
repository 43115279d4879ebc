"""What the xpander and Agentex faces share: the request envelope around a thin adapter.

Both seed servers are FastAPI apps, so both faces answer errors the FastAPI way:
`{"detail": "message", ...facts}` for 4xx refusals and `{"detail": [{"loc", "msg", "type"}]}`
for 422 validation errors. The HTTP status of a service refusal comes from `errors.py`; status
names in error facts are rendered in the face's own vocabulary.

`face_view` handles, in order: API token (401), rate limit per face and operation (429 with
`Retry-After`), the JSON body (400 invalid JSON, 413 too large, 422 not an object), then maps
any `ServiceError` the adapter lets through. An adapter never catches service errors itself.
"""

import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from channels.db import database_sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .. import lifecycle, selectors
from ..models import ApiToken, Task, TaskEvent
from ..services import InvalidInput, ServiceError, TransitionRefused, VersionConflict
from ..services.validation import (
    MAX_COUNT,
    TEXT_LIMITS,
    JsonRefused,
    ascii_int,
    lookup_text_ok,
    parse_json,
    text_problem,
)
from . import ratelimit, sse
from .auth import token_for_request
from .errors import error_facts, http_status, validation_detail

logger = logging.getLogger(__name__)


class FaceError(Exception):
    """A refusal decided by the face itself (not by a service): status + FastAPI-style detail."""

    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None):
        super().__init__(str(detail))
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def invalid(loc: list, msg: str, type_: str = "value_error") -> FaceError:
    return FaceError(422, [{"loc": loc, "msg": msg, "type": type_}])


def not_found(what: str) -> FaceError:
    return FaceError(404, what)


def error_response(status: int, detail: Any, headers: dict[str, str] | None = None, **facts) -> JsonResponse:
    response = JsonResponse({"detail": detail, **facts}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def service_error_response(
    exc: ServiceError,
    statuses: lifecycle.FaceStatuses,
    *,
    respond: Callable[..., JsonResponse] = error_response,
    status_of: Callable[[ServiceError], int] = http_status,
) -> JsonResponse:
    status = status_of(exc)
    if isinstance(exc, InvalidInput):
        return respond(status, validation_detail(exc.errors))
    facts = error_facts(exc, render_status=statuses.render)
    facts.pop("errors", None)
    return respond(status, exc.message, code=exc.code, **facts)


def json_body(request: HttpRequest, *, allow_empty: bool = False) -> dict[str, Any]:
    """The request's JSON object; FaceError for invalid JSON or a non-object."""
    raw = request.body  # RequestDataTooBig past DATA_UPLOAD_MAX_MEMORY_SIZE
    if not raw.strip():
        if allow_empty:
            return {}
        raise invalid(["body"], "Field required.", "missing")
    try:
        data = parse_json(raw)
    except JsonRefused as exc:
        raise FaceError(400, f"Invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise invalid(["body"], "Input should be a JSON object.", "model_attributes_type")
    return data


# What was logged already; bounded, so a client sending random names cannot grow it (or the log)
# without end: past the bound, unknown fields are still ignored, and no longer logged.
_unknown_logged: set[tuple[str, str, str]] = set()
UNKNOWN_LOGGED_MAX = 1_000


def ignore_unknown(
    data: dict[str, Any], known: set[str] | frozenset[str], *, face: str, where: str = "body"
) -> dict[str, Any]:
    """`data` without the fields this face does not know, each logged once per process.

    Upstream servers (FastAPI models) ignore unknown fields, and SDKs add fields with every
    release: a newer client's field must not turn a save into a 422. Known fields are still
    validated strictly by the adapter.
    """
    unknown = sorted(set(data) - set(known))
    for name in unknown:
        key = (face, where, name[:100])
        if key not in _unknown_logged and len(_unknown_logged) < UNKNOWN_LOGGED_MAX:
            _unknown_logged.add(key)
            logger.info("%s face: ignoring unknown %s field %r (a newer client?)", face, where, name[:100])
    return {k: v for k, v in data.items() if k in known} if unknown else data


# Token totals in the shapes LLM APIs answer with: OpenAI's (and LiteLLM's) `usage`, Anthropic's.
USAGE_SHAPES = (("prompt_tokens", "completion_tokens"), ("input_tokens", "output_tokens"))


def reported_in_metadata(metadata: Any) -> dict[str, Any]:
    """The source and token totals an agent reports inside a face's free-form metadata.

    Agentex's tasks and the JSON-RPC queue's have no field for where the work came from or what
    it cost, only metadata, which they store as given. An agent of those faces reports them there:
    `source` (a string: email, slack, schedule…) and `usage`, the task's token totals so far
    (`{prompt_tokens, completion_tokens}` or `{input_tokens, output_tokens}`). They become the
    task's source and tokens (the desk's columns and filters, the operations view). The metadata
    stays as sent; a value of another shape there is the agent's own business and sets nothing
    (upstream accepts any metadata, so neither does this refuse it).
    """
    if not isinstance(metadata, dict):
        return {}
    fields: dict[str, Any] = {}
    source = metadata.get("source")
    if isinstance(source, str) and source.strip() and len(source) <= TEXT_LIMITS["source"] and not text_problem(source):
        fields["source"] = source.strip()
    usage = metadata.get("usage")
    if isinstance(usage, dict):
        for prompt, completion in USAGE_SHAPES:
            counts = (usage.get(prompt), usage.get(completion))
            if all(type(n) is int and 0 <= n <= MAX_COUNT for n in counts):
                fields["prompt_tokens"], fields["completion_tokens"] = counts
                break
    return fields


def check_query(request: HttpRequest, known: set[str] | frozenset[str], *, face: str) -> None:
    """Known query parameters must be storable text (NUL matches nothing stored: a 422); unknown
    ones, a newer client's, are ignored (logged once), as upstream FastAPI apps do."""
    ignore_unknown(dict(request.GET), known, face=face, where="query")
    for name, values in request.GET.lists():
        if name not in known:
            continue
        for value in values:
            if problem := text_problem(value):
                raise invalid(["query", name], problem, "string_pattern_mismatch")


def face_view(
    face: str,
    operation: str,
    statuses: lifecycle.FaceStatuses,
    methods: tuple[str, ...],
    *,
    respond: Callable[..., JsonResponse] = error_response,
    status_of: Callable[[ServiceError], int] = http_status,
):
    """Decorate a sync adapter `view(request, token, **kwargs)` with the shared envelope.

    `respond(status, detail, headers=None, **facts)` renders every refusal in the face's own
    error body; `status_of` is the face's HTTP status for a service refusal.
    """

    def decorate(view: Callable[..., Any]):
        @csrf_exempt
        @functools.wraps(view)
        def wrapped(request: HttpRequest, **kwargs):
            if request.method not in methods:
                return respond(405, "Method Not Allowed", headers={"Allow": ", ".join(methods)})
            token = token_for_request(request)
            if token is None:
                return respond(401, "Unauthorized", headers={"WWW-Authenticate": 'Bearer realm="taskdesk"'})
            if not all(lookup_text_ok(value) for value in kwargs.values() if isinstance(value, str)):
                return respond(404, "Not Found")  # a path part with NUL names nothing stored
            op = operation if isinstance(operation, str) else operation(request)
            decision = ratelimit.hit(token, face, op)
            if not decision.allowed:
                return respond(
                    429, "Rate limit exceeded", headers={"Retry-After": str(decision.retry_after)}, code="rate_limited"
                )
            try:
                return view(request, token, **kwargs)
            except FaceError as exc:
                return respond(exc.status, exc.detail, headers=exc.headers)
            except RequestDataTooBig:
                return respond(413, "Request body too large.", code="too_large")
            except ServiceError as exc:
                response = service_error_response(exc, statuses, respond=respond, status_of=status_of)
                if isinstance(exc, (TransitionRefused, VersionConflict)):
                    # A state conflict does not heal by itself: tell SDKs that retry 409s not to.
                    response["x-should-retry"] = "false"
                return response

        return wrapped

    return decorate


# --- Reads ----------------------------------------------------------------------------------


def task_for_token(token: ApiToken, task_id: str, *, include_deleted: bool = False) -> Task:
    """The token's organization's task, or TaskNotFound (other organizations' ids read as missing)."""
    return selectors.get_task_for_token(token, task_id, include_deleted=include_deleted)


def canonical_statuses(statuses: lifecycle.FaceStatuses, name: str) -> list[str]:
    """Every canonical status a face shows under `name` (a face name may cover several)."""
    statuses.parse(name)  # ValueError for unknown names
    return [s for s in lifecycle.STATUSES if statuses.render(s) == name]


def positive_int(request: HttpRequest, name: str, default: int, maximum: int) -> int:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    value = ascii_int(raw)
    if value is None or not 1 <= value <= maximum:
        raise invalid(["query", name], f"Must be an integer from 1 to {maximum}.", "int_parsing")
    return value


# --- Event streams --------------------------------------------------------------------------


def _close_connection() -> None:
    # A stream lives for hours: give the connection back between renders, as sse.py does.
    if not connection.in_atomic_block:
        connection.close()


def newest_event_id(organization_id: int, task_pk: int | None) -> int:
    try:
        return selectors.last_event_id([organization_id], task_pk=task_pk)
    finally:
        _close_connection()


async def face_frames(
    organization_id: int,
    after_id: int,
    task_pk: int,
    render: Callable[[TaskEvent], tuple[list[str], bool]],
    *,
    opening: str,
    ping: str,
    token: ApiToken | None = None,
) -> AsyncIterator[str]:
    """SSE text of one task's events in a face's shape, on D's `sse.event_stream` loop.

    `render` runs in a worker thread (it reads the task fresh from the database) and returns
    the frames for one event plus whether the stream should end after them.
    """

    def render_closing(event: TaskEvent) -> tuple[list[str], bool]:
        try:
            return render(event)
        finally:
            _close_connection()

    yield opening
    async for event in sse.event_stream(organization_id, after_id, task_pk=task_pk, token=token):
        if event is None:
            yield ping
            continue
        frames, last = await database_sync_to_async(render_closing, thread_sensitive=False)(event)
        for frame in frames:
            yield frame
        if last:
            return


def sse_data(data: Any, event_id: int | None = None) -> str:
    return sse.format_message(event_id, None, data)
