"""Websocket consumers of the dashboard's live pages: thin readers registered with the live hub.

Routes (tasks_app/routing.py), behind origin validation and session auth (dashboard/asgi.py):
- `/ws/tasks/?after=<org:id,org:id>&view=<the list's query>`: the task list, every organization
  the signed-in user is a member of, as the page's view (filters and sort) shows it.
- `/ws/approvals/?after=<org:id,...>`: the HITL inbox; the same organizations.
- `/ws/tasks/<org slug>/<task id>/?after=<event id>`: one task's detail page, if one of the
  user's organizations holds it.

Who sees what comes only from the session's user and their memberships, never from what the
client sends. Anonymous sockets are accepted and closed at once with 4401, unknown tasks with
4404, so the page can tell "signed out" from "network trouble" (a refused handshake looks like
the latter). The client says only two things, each checked: a list page its new view, and a
task page which of its fields the person is editing (presence beats, live/presence.py: who
they are comes from the session, which task from the route the socket was authorised for).

Delivery (live.hub): the socket does not join channel-layer groups itself (no per-socket
channel: `channel_layer_alias` names no layer). It registers with its process's hub, which
replays what the page missed after `after` (the event ids the page was rendered at, one per
organization since ids commit in order only within one), then pushes every later event the
user may see, in id order per organization, as the htmx out-of-band fragment of
`live.fragments.render_event_html` (rendered once per process per event, page and role).

Close codes: 4401 signed out (logout, expiry, password change), 4403 no longer a member,
4404 no such task, 4409 too far behind (reload). The page (static/js/live.js) acts on them.
"""

import json
import logging
import re
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.sessions import InstanceSessionWrapper
from django.http import Http404

from . import selectors
from .live.credentials import Identity
from .live.hub import CLOSE_SIGNED_OUT, Registration, hub_for_running_loop
from .live.presence import initials_of, presence_for_running_loop
from .live.wire import direct_writer

logger = logging.getLogger(__name__)

CLOSE_NOT_FOUND = 4404
_UNSET = object()
_DIGITS = re.compile(r"^[0-9]{1,18}$")


def _view_from(raw: str) -> str:
    """A list view's canonical key (selectors.TaskFilters.query) from its URL query."""
    return selectors.task_filters_for_view(raw).query


def _after_from(scope) -> int | dict[int, int] | None:
    """The `after` query parameter: one event id, or per organization `org:id,org:id`
    (selectors.format_replay_positions); None when absent or malformed."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("after")
    if not values:
        return None
    raw = values[-1]
    if ":" in raw:
        return selectors.parse_replay_positions(raw)
    return int(raw) if _DIGITS.match(raw) else None


class TaskEventsConsumer(AsyncWebsocketConsumer):
    """One open page (list, inbox or one task) reading the organization's events through the hub."""

    # No channel-layer channel per socket: the process's hub hears the bells once for all.
    channel_layer_alias = "taskdesk.no-per-socket-channel"
    # Organization-wide sockets serve the task list or the HITL inbox (set by the route).
    list_page = "list"

    registration: Registration | None = None
    view = ""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(code=CLOSE_SIGNED_OUT)
            return
        kwargs = self.scope["url_route"]["kwargs"]
        access = await database_sync_to_async(self._access)(user, kwargs.get("org"), kwargs.get("task_id"))
        if access is None:
            await self.accept()
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.page, self.task_pk, self.orgs = access
        if self.page == "list":
            views = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("view")
            self.view = _view_from(views[-1]) if views else ""
        self.identity = Identity.from_scope(self.scope)
        await self.accept()
        self.registration = await hub_for_running_loop().attach(self, _after_from(self.scope))

    def _access(self, user, org: str | None, task_id: str | None) -> tuple[str, int | None, dict[int, bool]] | None:
        """(page, task pk, {organization id: may edit}) or None when the socket must be refused."""
        roles = selectors.memberships_for(user)
        if not roles:
            return None
        editable = {org_id: selectors.can_edit(user, org_id) for org_id in roles}
        if task_id is None:
            return self.list_page, None, editable
        try:
            task = selectors.get_task_for_user(user, org or "", task_id)
        except Http404:
            return None
        # Who this socket is on the task's page (live/presence.py): from the session, never the client.
        name = user.get_username()
        self.presence_identity = (user.pk, name, initials_of(name, user.get_full_name()))
        return "detail", task.pk, {task.organization_id: editable[task.organization_id]}

    async def disconnect(self, code) -> None:
        if getattr(self, "page", None) == "detail":
            await presence_for_running_loop().leave(self)
        if self.registration is not None:
            await hub_for_running_loop().detach(self.registration)
            self.registration = None

    async def receive(self, text_data=None, bytes_data=None) -> None:
        """A list page's new view (`{"view": "<query>"}`), a task page's beat (`{"presence":
        {"editing": "<field>" | null}}`); every other frame is ignored."""
        page = getattr(self, "page", None)
        if page == "detail" and text_data and len(text_data) <= 200:
            try:
                beat = json.loads(text_data).get("presence")
            except (ValueError, AttributeError):
                return
            if isinstance(beat, dict) and self.registration is not None:
                await presence_for_running_loop().beat(self, beat.get("editing"))
            return
        if page != "list" or not text_data or len(text_data) > selectors.VIEW_MAX + 20:
            return
        try:
            raw = json.loads(text_data).get("view")
        except (ValueError, AttributeError):
            return
        if isinstance(raw, str):
            # Pushes from now on are judged by the new view; the hub reads it per event.
            self.view = _view_from(raw)

    # --- what the hub calls ---------------------------------------------------------------

    async def push(self, html: str, frame: bytes | None = None) -> None:
        """One fragment; `frame` is the same text already framed (live.wire), shared by many sockets."""
        if frame is not None:
            writer = self.__dict__.get("_direct_writer", _UNSET)
            if writer is _UNSET:
                writer = self.__dict__["_direct_writer"] = direct_writer(_frame_send(self))
            if writer is not None and writer(frame):
                return
        await _frame_send(self)({"type": "websocket.send", "text": html})

    async def end(self, code: int) -> None:
        await self.close(code=code)


def _frame_send(consumer: AsyncWebsocketConsumer):
    """The send a pushed frame goes through, past channels' session wrapper.

    SessionMiddleware wraps every send to save a session the consumer modified; these consumers
    never modify it, and the wrapper's per-message look at the lazy session cost 7 % of the CPU
    of fanning one event out to 1,000 sockets (py-spy, bench/bench_fanout.py). Close and
    accept still go through the wrapper.
    """
    send = consumer.__dict__.get("_frame_send")
    if send is None:
        send = consumer.base_send
        wrapper = getattr(send, "__self__", None)
        if isinstance(wrapper, InstanceSessionWrapper):
            send = wrapper.real_send
        consumer.__dict__["_frame_send"] = send
    return send


class HitlInboxConsumer(TaskEventsConsumer):
    """The HITL inbox: the list's organizations, the inbox's fragments."""

    list_page = "approvals"


class OpsConsumer(TaskEventsConsumer):
    """The operations view of one organization: a bell per event (its id only), no task content.

    The page refreshes its numbers from the rollups when it hears one (static/js/ops.js, at most
    every few seconds), so a quiet organization's view changes within a second of a write and
    costs nothing while nothing happens.
    """

    def _access(self, user, org: str | None, task_id: str | None) -> tuple[str, int | None, dict[int, bool]] | None:
        organization = next((o for o in selectors.organizations_for(user) if o.slug == org), None)
        if organization is None:
            return None
        return "ops", None, {organization.pk: selectors.can_edit(user, organization.pk)}
