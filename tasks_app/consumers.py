"""Websocket consumers that push TaskEvents to open dashboard pages as htmx fragments.

Routes (tasks_app/routing.py), behind AllowedHostsOriginValidator(AuthMiddlewareStack(...)):
- `/ws/tasks/?after=<event id>`: the task list. Groups: `org.<id>` for every organization the
  signed-in user is a member of (broadcast.org_group).
- `/ws/approvals/?after=<event id>`: the HITL inbox; same groups as the list, fragments from
  live_fragments_hitl (cards added and removed, the pending count).
- `/ws/tasks/<task id>/?after=<event id>`: one task's detail page. Group: `task.<hash>`
  (broadcast.task_group) of that task, only if selectors.get_task_for_user finds it.

Groups come only from the session's user and their memberships, read once at connect; nothing
the client sends chooses them. Anonymous sockets and tasks outside the user's organizations are
closed before accept (the browser sees a refused handshake, like a 404 over HTTP). The socket is
server-to-client only; frames from the client are ignored.

Group messages (broadcast.message_for) have "type" = the event type, so channels dispatches
`task.created`, `task.updated`, `task.activity`, `task.hitl_requested`, `task.hitl_decided`,
`task.metrics` and `task.deleted` to the same-named methods, which all call `push_event`:
{"type", "event_id", "task_id", "organization_id", "version", "changes"}.

Payload to the browser: one text frame per event, the HTML from live_fragments.render_event_html
for (event, page "list"/"detail", can_edit for the event's organization): top-level elements with
ids and hx-swap-oob, one of them carrying the event id (data-event-id). Each fragment is rendered
once per process (tasks_app.live), not per socket.

Replay: `after` is the last event id the page was rendered with (or last received): for the
organization-wide pages one id per organization (`org:id,org:id`), because ids commit in order
within an organization only; a plain id is accepted too (detail pages, one organization). On connect
the consumer joins its groups first, then sends every event after `after` that the user may see,
oldest first, then live ones. Channels dispatches one message at a time, so live messages wait
in the channel during replay; any of them already replayed are dropped by a per-organization
high-water mark (event ids commit in id order per organization: services takes an advisory
lock), which also keeps each organization's events in order.
"""

import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import Http404

from . import broadcast, selectors
from .live.cache import fragments
from .models import TaskEvent

logger = logging.getLogger(__name__)

REPLAY_PAGE = 500


def _after_from(scope) -> int | dict[int, int] | None:
    """The `after` query parameter: one event id, or per organization `org:id,org:id`
    (selectors.format_replay_positions); None when absent or malformed."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("after")
    if not values:
        return None
    raw = values[-1]
    if ":" in raw:
        return selectors.parse_replay_positions(raw)
    try:
        after = int(raw)
    except ValueError:
        return None
    return after if after >= 0 else None


class TaskEventsConsumer(AsyncWebsocketConsumer):
    """Pushes the fragments of every event the user may see on one page (list, inbox or one task)."""

    # Organization-wide sockets serve the task list or the HITL inbox (set by the route).
    list_page = "list"

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()
            return
        kwargs = self.scope["url_route"]["kwargs"]
        access = await database_sync_to_async(self._access)(user, kwargs.get("org"), kwargs.get("task_id"))
        if access is None:
            await self.close()
            return
        self.page, self.task_id, self.editable = access
        if self.task_id is None:
            self.page = self.list_page
        if self.task_id is None:
            self.groups = [broadcast.org_group(org_id) for org_id in sorted(self.editable)]
        else:
            self.groups = [broadcast.task_group(self.task_id)]
        # Join before reading the replay log, so no event falls between the two.
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

        after = _after_from(self.scope)
        if isinstance(after, dict):
            # Per-organization positions: each organization replays from its own; one the page
            # did not know (a membership added since) starts from now.
            missing = [org_id for org_id in self.editable if org_id not in after]
            latest = await database_sync_to_async(selectors.replay_positions)(missing) if missing else {}
            self.sent_upto = {org_id: after.get(org_id, latest.get(org_id, 0)) for org_id in self.editable}
            await self.replay(min(self.sent_upto.values(), default=0))
            return
        self.sent_upto = {org_id: after or 0 for org_id in self.editable}
        if after is None:
            # No position given: live events only, but never older than what exists now.
            latest = await database_sync_to_async(selectors.last_event_id)(list(self.editable), task_pk=self.task_id)
            self.sent_upto = dict.fromkeys(self.editable, latest)
            return
        await self.replay(after)

    @staticmethod
    def _access(user, org: str | None, task_id: str | None) -> tuple[str, int | None, dict[int, bool]] | None:
        """(page, task id, {organization id: can edit}) or None when the socket must be refused."""
        roles = selectors.memberships_for(user)
        if not roles:
            return None
        editable = {org_id: selectors.can_edit(user, org_id) for org_id in roles}
        if task_id is None:
            return "list", None, editable
        try:
            task = selectors.get_task_for_user(user, org, task_id)
        except Http404:
            return None
        return "detail", task.pk, {task.organization_id: editable[task.organization_id]}

    async def replay(self, after: int) -> None:
        org_ids = list(self.editable)
        while True:
            events = await database_sync_to_async(self._replay_page)(org_ids, after)
            for event in events:
                await self.send_event(event.pk, event.organization_id, event=event)
            if len(events) < REPLAY_PAGE:
                return
            after = events[-1].pk

    def _replay_page(self, org_ids: list[int], after: int) -> list[TaskEvent]:
        qs = selectors.events_after(org_ids, after, task_pk=self.task_id, limit=REPLAY_PAGE)
        return list(qs.select_related("task", "actor_user", "actor_token"))

    async def send_event(self, event_id: int, organization_id: int, *, event: TaskEvent | None = None) -> None:
        if event_id <= self.sent_upto.get(organization_id, event_id):
            return  # already sent (replay overlap) or not this socket's organization
        self.sent_upto[organization_id] = event_id
        try:
            html = await fragments.html(event_id, page=self.page, can_edit=self.editable[organization_id], event=event)
        except TaskEvent.DoesNotExist:
            return  # the task was purged since; nothing to show
        except Exception:
            # One bad render must not kill the socket; the page catches up on its next load.
            logger.exception("Could not render event %s for the %s page", event_id, self.page)
            return
        if html:
            await self.send(text_data=html)

    async def push_event(self, message: dict) -> None:
        if self.task_id is not None and message.get("task_id") != self.task_id:
            return
        await self.send_event(int(message["event_id"]), int(message["organization_id"]))

    async def receive(self, text_data=None, bytes_data=None) -> None:
        """Client frames are ignored: the socket only pushes."""

    task_created = push_event
    task_updated = push_event
    task_activity = push_event
    task_hitl_requested = push_event
    task_hitl_decided = push_event
    task_metrics = push_event
    task_deleted = push_event


class HitlInboxConsumer(TaskEventsConsumer):
    """The HITL inbox: the list's organization groups, the inbox's fragments."""

    list_page = "approvals"
