"""ClaudeBench's WebSocket transport (seed 002; upstream apps/server/src/transports/websocket.ts) at /ws.

Who: an agent sending its API token as `Authorization: Bearer <token>` or `x-api-key: <token>`;
cookies and sessions play no part. The handshake is refused (HTTP 403, the socket never opens)
without an active token, over the token's limit of new sockets (`RATE_LIMITS` key `jsonrpc.ws`),
with a malformed `?after=`, or with an Origin header that is not exactly the site's own
(dashboard/asgi.py; a request with no Origin at all comes from a non-browser client and needs
none). Everything a socket sees and does is its token's organization's.

Frames are JSON text; every `timestamp` is milliseconds since the epoch.
- On open: `{"type": "connected", "clientId": "ws-...", "timestamp"}`.
- `{"action": "subscribe", "events": [pattern, ...]}` -> `{"type": "subscribed", "events", "timestamp"}`.
  A pattern is an event type (`task.created`), `*`, or `prefix.*` (every `prefix.<anything>`);
  at most 100 per socket, 200 characters each.
- `{"action": "unsubscribe", "events": [...]}` -> `{"type": "unsubscribed", "events", "timestamp"}`.
- `{"action": "execute", "request": {JSON-RPC 2.0 request, optional `metadata`}}` -> the JSON-RPC
  response object, exactly as POST /rpc answers that request (jsonrpc.call: the same methods,
  rate limits and error codes); nothing for a notification. The token is checked again each time.
- `{"action": "ping"}` -> `{"type": "pong", "timestamp"}`.
- Anything else -> `{"type": "error", "error": {"message", "code"}, "timestamp"}`, and the socket
  stays open: -32603 for a frame that cannot be read (not JSON, as upstream answers what its
  JSON.parse refuses; nested over 36 levels; larger than DATA_UPLOAD_MAX_MEMORY_SIZE, though
  daphne already closes a socket sending over 1 MiB, its websocket_max_message_size) or a
  failure on Taskdesk's side (logged); -32602 for JSON of the wrong shape (a binary frame, an
  unknown action, `events` not a list of patterns, `request` not an object, NaN or Infinity,
  NUL or a lone surrogate in a string).
- Events: `{"type": "event", "event": <type>, "data": {type, payload, metadata, timestamp, id},
  "timestamp", "id"}` for each event of the organization matching a subscription, in log order.
  `data` is the event in ClaudeBench's shape (jsonrpc.event_message: the task as it was at that
  event) with its id, as upstream's bus hands its events to the socket; `id`, on the frame and in
  `data`, is Taskdesk's event log id (upstream's frame has no id; its `data.id` is a string).

Position: the first subscribe starts the socket's reader (api/sse.event_stream: the event log,
read when the process's live hub hears the organization's bell) at the log's head, so every
event after the "subscribed" frame arrives. With `/ws?after=<event id>` it starts there instead
and replays what came since: a client that reconnects passes the last `id` it saw. Subscribing
and unsubscribing later change which events are sent from then on.

Close code 4401: the token was revoked. The hub re-checks the tokens of reading sockets every
few seconds; a socket that never subscribed finds out at its next `execute` (within the process's
token cache time, services.tokens).
"""

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from ..models import ApiToken, TaskEvent
from ..services import api_token_authenticate
from ..services.validation import BODY_MAX_DEPTH, JsonRefused, json_problem_at, parse_json
from ..views.errors import database_unavailable
from . import jsonrpc, ratelimit
from .auth import raw_token_for_scope
from .jsonrpc import INTERNAL_ERROR, INVALID_PARAMS
from .sse import _newest_event_id, event_stream

logger = logging.getLogger(__name__)

CLOSE_REVOKED = 4401
MAX_PATTERNS = 100
PATTERN_MAX = 200
RETRY_SECONDS = 1.0
_AFTER = re.compile(r"^[0-9]{1,18}$")
ACTIONS = ("subscribe", "unsubscribe", "execute", "ping")


def in_worker_thread(func):
    # A thread of its own per call, its pooled connection returned after (as api/threads.py).
    return database_sync_to_async(func, thread_sensitive=False)


def _now() -> int:
    return int(time.time() * 1000)


def matches(event_type: str, pattern: str) -> bool:
    """Upstream's matchesPattern: the type itself, `*`, or `prefix.*` for `prefix.<anything>`."""
    return pattern in ("*", event_type) or (pattern.endswith(".*") and event_type.startswith(pattern[:-1]))


class Refused(Exception):
    """A frame answered with an error frame."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _after(scope) -> int | None:
    """`?after=<event id>`; None without it; ValueError when malformed."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("after")
    if not values:
        return None
    if not _AFTER.match(values[-1]):
        raise ValueError(values[-1])
    return int(values[-1])


def _admit(raw: str | None) -> ApiToken | None:
    """The socket's token: active and under its limit of new sockets, or None."""
    token = api_token_authenticate(raw)
    if token is None or not ratelimit.hit(token, jsonrpc.FACE, "ws").allowed:
        return None
    return token


def _run_request(raw: str, request: dict) -> tuple[bool, dict[str, Any] | None]:
    """(token still active, the JSON-RPC response or None) for one `execute`."""
    token = api_token_authenticate(raw)
    if token is None:
        return False, None
    return True, jsonrpc.call(token, request)


def _event_frame(event: TaskEvent) -> dict[str, Any]:
    message = jsonrpc.event_message(event)
    return {
        "type": "event",
        "event": message["type"],
        "data": {**message, "id": event.pk},
        "timestamp": _now(),
        "id": event.pk,
    }


def _patterns(message: dict) -> list[str]:
    events = message.get("events")
    if not isinstance(events, list) or not all(isinstance(p, str) and 0 < len(p) <= PATTERN_MAX for p in events):
        raise Refused(INVALID_PARAMS, f'"events" must be a list of event patterns (1 to {PATTERN_MAX} characters).')
    return events


class JsonRpcSocketConsumer(AsyncWebsocketConsumer):
    """One agent's /ws socket: subscriptions, JSON-RPC requests, pings; events from the log."""

    # No channel-layer channel per socket: the process's live hub hears the bells for all.
    channel_layer_alias = "taskdesk.no-per-socket-channel"

    token: ApiToken | None = None
    reader: asyncio.Task | None = None

    async def connect(self) -> None:
        try:
            self.after = _after(self.scope)
        except ValueError:
            await self.close()  # before accept: the handshake is refused (403)
            return
        self.raw_token = raw_token_for_scope(self.scope)
        self.token = await in_worker_thread(_admit)(self.raw_token)
        if self.token is None:
            await self.close()
            return
        self.subscriptions: dict[str, None] = {}  # insertion-ordered set of patterns
        await self.accept()
        await self._send({"type": "connected", "clientId": f"ws-{_now()}-{secrets.token_hex(5)}", "timestamp": _now()})

    async def disconnect(self, code) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader
            self.reader = None

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self.token is None:
            return
        try:
            message = self._read(text_data)
            await getattr(self, f"_{message['action']}")(message)
        except Refused as exc:
            await self._error(exc.code, exc.message)
        except Exception as exc:
            if database_unavailable(exc):
                await self._error(INTERNAL_ERROR, "Database unavailable: try again.")
            else:
                logger.exception("/ws frame failed")
                await self._error(INTERNAL_ERROR, "Internal error")

    def _read(self, text_data: str | None) -> dict:
        if text_data is None:
            raise Refused(INVALID_PARAMS, "Messages are JSON text frames, not binary ones.")
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and len(text_data) > limit:
            raise Refused(INTERNAL_ERROR, f"Message over {limit} characters.")
        try:
            message = parse_json(text_data)
        except JsonRefused as exc:
            raise Refused(INTERNAL_ERROR, f"Not JSON: {exc}") from None
        if found := json_problem_at(message, max_depth=BODY_MAX_DEPTH + 1):
            where = ".".join(map(str, found[0]))[:200] or "message"
            raise Refused(INVALID_PARAMS, f"{where}: {found[1]}")
        if not isinstance(message, dict) or message.get("action") not in ACTIONS:
            raise Refused(INVALID_PARAMS, 'Expected {"action": "subscribe" | "unsubscribe" | "execute" | "ping", ...}.')
        return message

    # --- actions --------------------------------------------------------------------------

    async def _subscribe(self, message: dict) -> None:
        events = _patterns(message)
        if len(self.subscriptions.keys() | set(events)) > MAX_PATTERNS:
            raise Refused(INVALID_PARAMS, f"At most {MAX_PATTERNS} subscriptions per socket.")
        self.subscriptions.update(dict.fromkeys(events))
        start = None
        if self.reader is None:
            start = self.after
            if start is None:
                start = await in_worker_thread(_newest_event_id)(self.token.organization_id, None)
        await self._send({"type": "subscribed", "events": events, "timestamp": _now()})
        if start is not None:
            self.reader = asyncio.create_task(self._read_events(start), name="taskdesk-ws-events")

    async def _unsubscribe(self, message: dict) -> None:
        events = _patterns(message)
        for pattern in events:
            self.subscriptions.pop(pattern, None)
        await self._send({"type": "unsubscribed", "events": events, "timestamp": _now()})

    async def _execute(self, message: dict) -> None:
        request = message.get("request")
        if not isinstance(request, dict):
            raise Refused(INVALID_PARAMS, '"request" must be a JSON-RPC 2.0 request object.')
        active, response = await in_worker_thread(_run_request)(self.raw_token, request)
        if not active:
            await self.close(code=CLOSE_REVOKED)
        elif response is not None:
            await self._send(response)

    async def _ping(self, message: dict) -> None:
        await self._send({"type": "pong", "timestamp": _now()})

    # --- events ---------------------------------------------------------------------------

    async def _read_events(self, after: int) -> None:
        """Sends the organization's events after `after` that match a subscription, until the
        token is revoked (then closes the socket); a database outage is waited out."""
        render = in_worker_thread(_event_frame)
        while True:
            try:
                stream = event_stream(self.token.organization_id, after, token=self.token)
                async with contextlib.aclosing(stream):
                    async for event in stream:
                        if event is None:
                            continue  # a heartbeat is for SSE; websockets have their own pings
                        if not self.subscriptions:
                            after = event.pk  # everything unsubscribed: nothing to render
                            continue
                        try:
                            frame = await render(event)
                        except Exception as exc:
                            if database_unavailable(exc):
                                raise
                            logger.exception("/ws: event %s could not be rendered; skipped", event.pk)
                            frame = None
                        after = event.pk
                        if frame is not None and any(matches(frame["event"], p) for p in self.subscriptions):
                            await self._send(frame)
                break  # the stream ends only when the hub finds the token revoked
            except Exception:
                logger.warning("/ws: reading events failed; retrying from %s", after, exc_info=True)
                await asyncio.sleep(RETRY_SECONDS)
        await self.close(code=CLOSE_REVOKED)

    # --- frames ---------------------------------------------------------------------------

    async def _send(self, body: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":")))

    async def _error(self, code: int, message: str) -> None:
        await self._send({"type": "error", "error": {"message": message, "code": code}, "timestamp": _now()})
