"""Once-per-process rendering of the HTML fragment pushed for a TaskEvent.

A thousand sockets on one page kind receiving one event must cost one template render, not a
thousand: the render is keyed by (event id, page, can_edit, view) (view: a list page's filters
and sort, "" for the default view and other pages). Concurrent requests for the same
key share one in-flight render; finished renders stay in a small LRU so late joiners (replay,
slow sockets) reuse them. Events are immutable, so a cached render never goes stale in a way
that matters: it shows the task as it was when the event was first rendered, and every later
event brings a newer render.
"""

import asyncio
import logging
from collections import OrderedDict

from channels.db import database_sync_to_async
from django.db import close_old_connections

from ..models import TaskEvent

logger = logging.getLogger(__name__)

Key = tuple[int, str, bool, str]


def render_event_html(event: TaskEvent, *, page: str, can_edit: bool, view: str) -> str:
    """The fragment for one event, from the dashboard's templates (escaped there, not here)."""
    # Looked up at call time so tests can count or replace the renderer.
    from . import fragments as presenters_of_events

    if view:
        return presenters_of_events.render_event_html(event, page=page, can_edit=can_edit, view=view)
    return presenters_of_events.render_event_html(event, page=page, can_edit=can_edit)


def _load_and_render(event_id: int, event: TaskEvent | None, page: str, can_edit: bool, view: str) -> str:
    try:
        if event is None:
            event = TaskEvent.objects.get(pk=event_id)
        return render_event_html(event, page=page, can_edit=can_edit, view=view)
    finally:
        # The render runs in a task detached from any one socket (it is shared); give the
        # connection back here, inside the context that opened it, or the pool loses it.
        close_old_connections()


class FragmentCache:
    """Per-process memo of rendered fragments: in-flight futures plus a bounded LRU."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._done: OrderedDict[Key, str] = OrderedDict()
        self._in_flight: dict[Key, asyncio.Task] = {}

    def clear(self) -> None:
        self._done.clear()
        self._in_flight.clear()

    def has(self, key: Key) -> bool:
        return key in self._done

    def remember(self, key: Key, html: str) -> None:
        """A render made elsewhere (the hub's drain renders in the worker hop that reads the log)."""
        self._done[key] = html
        self._done.move_to_end(key)
        while len(self._done) > self.size:
            self._done.popitem(last=False)

    async def html(
        self, event_id: int, *, page: str, can_edit: bool, view: str = "", event: TaskEvent | None = None
    ) -> str:
        key = (event_id, page, can_edit, view)
        cached = self._done.get(key)
        if cached is not None:
            self._done.move_to_end(key)
            return cached
        loop = asyncio.get_running_loop()
        task = self._in_flight.get(key)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(self._render(key, event))
            self._in_flight[key] = task
        # shield: one socket disconnecting mid-render must not cancel the render the others await.
        return await asyncio.shield(task)

    async def _render(self, key: Key, event: TaskEvent | None) -> str:
        event_id, page, can_edit, view = key
        try:
            html = await database_sync_to_async(_load_and_render, thread_sensitive=False)(
                event_id, event, page, can_edit, view
            )
        finally:
            self._in_flight.pop(key, None)
        self.remember(key, html)
        return html


fragments = FragmentCache()
