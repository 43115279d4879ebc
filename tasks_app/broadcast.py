"""Publishing committed TaskEvents to the channel layer.

Only `services._record` calls `publish`, always from `transaction.on_commit`. A failed publish
(Redis down) loses nothing: the TaskEvent row is the truth and sockets replay from it.

Groups (names match ^[a-zA-Z0-9._-]+$, under 100 characters):
- `org.<organization id>`: every event of the organization (task list, inbox, badges).
- `task.<sha256(task id)[:32]>`: every event of one task (detail page).

Message: {"type": <event type, e.g. "task.updated">, "event_id", "task_id",
"organization_id", "version", "changes"}. Consumers render what they push from the event row.
"""

import asyncio
import logging
import os
import threading

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)


def org_group(organization_id: int) -> str:
    return f"org.{organization_id}"


def task_group(task_pk: int) -> str:
    return f"task.{int(task_pk)}"


def message_for(event) -> dict:
    return {
        "type": event.type,
        "event_id": event.pk,
        "task_id": event.task_id,
        "organization_id": event.organization_id,
        "version": event.task_version,
        "changes": list(event.changes),
    }


async def _send(layer, groups: list[str], message: dict) -> None:
    for group in groups:
        await layer.group_send(group, message)


class _PublisherLoop:
    """A long-lived event loop thread for processes without one (commands, workers).

    async_to_sync outside an event loop starts a fresh loop per call, and the Redis layer a
    fresh connection with it; one loop reuses the layer's connection pool across events.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def run(self, coro, timeout: float = 10.0) -> None:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="taskdesk-publisher", daemon=True).start()
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)


_publisher = _PublisherLoop()


def _inside_server_loop() -> bool:
    """True in a sync thread that an event loop (daphne's) called through sync_to_async."""
    threadlocal = SyncToAsync.threadlocal
    return getattr(threadlocal, "main_event_loop", None) is not None and (
        getattr(threadlocal, "main_event_loop_pid", None) == os.getpid()
    )


def publish(event) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    groups = [org_group(event.organization_id), task_group(event.task_id)]
    message = message_for(event)
    try:
        if _inside_server_loop() or isinstance(layer, InMemoryChannelLayer):
            # The in-memory layer's queues belong to the server's loop: send from there.
            async_to_sync(_send)(layer, groups, message)
        else:
            _publisher.run(_send(layer, groups, message))
    except Exception:
        # The event row stays; clients catch up by replaying after their last event id.
        logger.exception("Could not publish event %s; clients will replay it", event.pk)
