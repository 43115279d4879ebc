"""Publishing committed TaskEvents to the channel layer.

Only `services._record` calls `publish`, always from `transaction.on_commit`. A failed publish
(Redis down) loses nothing: the TaskEvent row is the truth and sockets replay from it.

Groups (names match ^[a-zA-Z0-9._-]+$, under 100 characters):
- `org.<organization id>`: every event of the organization (task list, inbox, badges).
- `task.<sha256(task id)[:32]>`: every event of one task (detail page).

Message: {"type": <event type, e.g. "task.updated">, "event_id", "task_id",
"organization_id", "version", "changes"}. Consumers render what they push from the event row.
"""

import hashlib
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def org_group(organization_id: int) -> str:
    return f"org.{organization_id}"


def task_group(task_id: str) -> str:
    return "task." + hashlib.sha256(task_id.encode()).hexdigest()[:32]


def message_for(event) -> dict:
    return {
        "type": event.type,
        "event_id": event.pk,
        "task_id": event.task_id,
        "organization_id": event.organization_id,
        "version": event.task_version,
        "changes": list(event.changes),
    }


def publish(event) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    message = message_for(event)
    send = async_to_sync(layer.group_send)
    try:
        send(org_group(event.organization_id), message)
        send(task_group(event.task_id), message)
    except Exception:
        # The event row stays; clients catch up by replaying after their last event id.
        logger.exception("Could not publish event %s; clients will replay it", event.pk)
