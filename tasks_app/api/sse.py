"""Server-sent events: the TaskEvent replay log streamed to API clients.

GET /api/v1/events[?task_id=ID][&format=native|jsonrpc][&after=N][&heartbeat=S]

- Each TaskEvent is one message: `id: <event id>`, `event: <type>`, `data: <json>`.
  `format=native` (default) sends the event itself (`event_data`) with `task`: the task as it
  was at that event (its snapshot; never a later state, on replay too); `format=jsonrpc` sends
  ClaudeBench's event shapes `{type, payload, metadata, timestamp}` (see jsonrpc.py).
- A client resumes with the standard `Last-Event-ID` header (or `?after=`): every event after
  that id is replayed from the database, then new ones follow. Without either, the stream starts
  at the newest event (only what happens from now on).
- A `: ping` comment every `heartbeat` seconds (default SSE_HEARTBEAT_SECONDS = 15, 1-60) keeps
  proxies from closing an idle stream.
- Scoped to the token's organization; an id of another organization is a 404.

Reuse by other faces: `event_stream()` is the transport-free loop (yields TaskEvent rows, or None
when a heartbeat is due); `sse_frames()` turns it into SSE text with any per-event formatter and
heartbeat comment; `stream_response()` wraps frames in the streaming response with the right
headers. The loop reads the event table (`selectors.events_after`), the truth that survives a
lost channel-layer message, when the live hub wakes it, and gives its database connection back
between reads. A revoked token ends its streams within seconds.
"""

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from .. import selectors
from ..models import ApiToken, TaskEvent
from ..services import TaskNotFound
from ..services.snapshots import task_at
from . import ratelimit
from .auth import token_for_request
from .schemas import TaskOut

BATCH = 200


def _poll_seconds() -> float:
    # The hub wakes streams on every bell and on its idle check; this read is only a last resort.
    return float(getattr(settings, "SSE_POLL_SECONDS", 10.0))


def _default_heartbeat() -> float:
    return float(getattr(settings, "SSE_HEARTBEAT_SECONDS", 15.0))


def _events_batch(organization_id: int, after_id: int, task_pk: int | None) -> list[TaskEvent]:
    try:
        qs = selectors.events_after([organization_id], after_id, task_pk=task_pk, limit=BATCH)
        return list(qs.select_related("task"))
    finally:
        # A stream lives for hours: hand the connection back to the pool between polls.
        if not connection.in_atomic_block:
            connection.close()


async def event_stream(
    organization_id: int,
    after_id: int,
    task_pk: int | None = None,
    heartbeat: float | None = None,
    poll: float | None = None,
    token: ApiToken | None = None,
) -> AsyncIterator[TaskEvent | None]:
    """Every event of the organization (or one task) after `after_id`; None = send a heartbeat.

    The stream sleeps until its process's live hub (tasks_app.live.hub) hears the organization's
    bell, then reads the log after its position: no polling while idle. The hub's idle check wakes
    it when the log moved without a bell (Redis down, a lost bell), and `poll` is a last resort.
    It ends when the token it was opened with is revoked (the hub re-checks every few seconds).
    """
    from ..live.credentials import Identity
    from ..live.hub import hub_for_running_loop, wait_for_event

    heartbeat = _default_heartbeat() if heartbeat is None else heartbeat
    poll = _poll_seconds() if poll is None else poll
    hub = hub_for_running_loop()
    # A worker thread of its own per read, its pooled connection returned after each.
    read_batch = database_sync_to_async(_events_batch, thread_sensitive=False)
    listener = hub.listen(organization_id, Identity.for_token(token) if token is not None else None)
    try:
        last_sent = time.monotonic()
        while not listener.ended:
            # Cleared before reading, so a bell that rings during the read wakes the next wait.
            listener.woken.clear()
            events = await read_batch(organization_id, after_id, task_pk)
            for event in events:
                after_id = event.pk
                yield event
                last_sent = time.monotonic()
            if len(events) == BATCH:
                continue  # more to replay right away
            idle = time.monotonic() - last_sent
            if idle >= heartbeat:
                yield None
                last_sent = time.monotonic()
                idle = 0.0
            await wait_for_event(listener.woken, max(0.05, min(poll, heartbeat - idle)))
    finally:
        await hub.unlisten(listener)


def format_message(event_id: int | None, event_name: str | None, data: Any) -> str:
    """One SSE message; `data` is JSON-encoded (one line, so no multi-line splitting is needed)."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event_name:
        lines.append(f"event: {event_name}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), default=str))
    return "\n".join(lines) + "\n\n"


def task_as_at(event: TaskEvent) -> dict[str, Any] | None:
    """The task as it was right after `event` (from its snapshot), in the REST API's task shape."""
    task = task_at(event)
    return TaskOut(**TaskOut.from_task(task)).model_dump(mode="json") if task is not None else None


def event_data(event: TaskEvent) -> dict[str, Any]:
    """The native `data:` of one event: what changed, and the task as it was at that event."""
    return {
        "id": event.pk,
        "type": event.type,
        "task_id": event.task.public_id,
        "version": event.task_version,
        "changes": list(event.changes),
        "before": event.before,
        "after": event.after,
        "actor": event.actor_label,
        "face": event.face,
        "created_at": event.created_at.isoformat(),
        "task": task_as_at(event),
    }


def format_native(event: TaskEvent) -> str:
    return format_message(event.pk, event.type, event_data(event))


def format_jsonrpc(event: TaskEvent) -> str:
    from .jsonrpc import event_message  # the JSON-RPC face owns its wire shapes

    message = event_message(event)
    return format_message(event.pk, message["type"], message)


FORMATTERS: dict[str, Callable[[TaskEvent], str]] = {"native": format_native, "jsonrpc": format_jsonrpc}


async def sse_frames(
    events: AsyncIterator[TaskEvent | None],
    formatter: Callable[[TaskEvent], str],
    *,
    ping: str = ": ping\n\n",
    opening: str = ": connected\n\n",
) -> AsyncIterator[str]:
    """SSE text for a stream of events; the opening comment flushes headers to the client at once.

    Each event is formatted in a worker thread: a formatter may read the database (an activity
    event has no snapshot of its own, so `task_at` reads the one before it), which Django refuses
    on the event loop; a stream that formatted there ended at the first activity entry.
    """

    def format_closing(event: TaskEvent) -> str:
        try:
            return formatter(event)
        finally:
            if not connection.in_atomic_block:
                connection.close()  # the worker thread's pooled connection goes back

    render = database_sync_to_async(format_closing, thread_sensitive=False)
    if opening:
        yield opening
    async for event in events:
        yield ping if event is None else await render(event)


def stream_response(frames: AsyncIterator[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(frames, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response


def resume_point(request: HttpRequest) -> int | None:
    """The event id the client last saw (Last-Event-ID header, else ?after=); ValueError if malformed."""
    raw = request.headers.get("Last-Event-ID") or request.GET.get("after")
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 18:
        raise ValueError("Last-Event-ID / after must be an event id (a non-negative integer).")
    return int(raw)


def _newest_event_id(organization_id: int, task_pk: int | None) -> int:
    try:
        return selectors.last_event_id([organization_id], task_pk=task_pk)
    finally:
        if not connection.in_atomic_block:
            connection.close()


def _task_pk(token: ApiToken, task_id: str) -> int | None:
    try:
        return selectors.get_task_for_token(token, task_id).pk
    except TaskNotFound:
        return None


def _error(status: int, detail: Any) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


def _invalid(where: str, name: str, message: str) -> JsonResponse:
    return _error(422, [{"loc": [where, name], "msg": message, "type": "value_error"}])


async def events(request: HttpRequest) -> HttpResponse:
    """GET /api/v1/events: the organization's (or one task's) events as SSE."""
    if request.method != "GET":
        response = _error(405, "Method not allowed.")
        response["Allow"] = "GET"
        return response
    token = await sync_to_async(token_for_request)(request)
    if token is None:
        response = _error(401, "Unauthorized")
        response["WWW-Authenticate"] = 'Bearer realm="taskdesk"'
        return response
    decision = await sync_to_async(ratelimit.hit)(token, "api", "events")
    if not decision.allowed:
        response = JsonResponse({"detail": "Rate limit exceeded", "code": "rate_limited"}, status=429)
        response["Retry-After"] = str(decision.retry_after)
        return response

    fmt = request.GET.get("format", "native")
    if fmt not in FORMATTERS:
        return _invalid("query", "format", f"Expected one of: {', '.join(FORMATTERS)}.")
    try:
        heartbeat = float(request.GET.get("heartbeat", _default_heartbeat()))
    except ValueError:
        heartbeat = -1
    if not 1 <= heartbeat <= 60:
        return _invalid("query", "heartbeat", "Seconds between heartbeats, from 1 to 60.")
    try:
        after = resume_point(request)
    except ValueError as exc:
        return _invalid("header", "Last-Event-ID", str(exc))
    task_id = request.GET.get("task_id") or None
    task_pk = None
    if task_id is not None:
        task_pk = await sync_to_async(_task_pk)(token, task_id)
        if task_pk is None:
            return _error(404, f"Task not found: {task_id}")
    if after is None:
        after = await sync_to_async(_newest_event_id)(token.organization_id, task_pk)

    stream = event_stream(token.organization_id, after, task_pk=task_pk, heartbeat=heartbeat, token=token)
    return stream_response(sse_frames(stream, FORMATTERS[fmt]))
