"""Interim bell: publishes the committed event in the old per-event message format."""

from ..models import TaskEvent


def ring(organization_id: int, event_id: int) -> None:
    from .. import broadcast

    event = TaskEvent.objects.filter(pk=event_id).first()
    if event is not None:
        broadcast.publish(event)
