"""Presence on a task's page: who else has it open, and who is editing which of its fields.

- **Who.** A task page's socket (consumers.py) joins its task's room at its first beat, with
  the identity of its session: the user's id, name and initials, read when the socket was
  authorised. The page only says which of its fields it is editing (one of FIELDS, anything
  else counts as none) and beats every BEAT seconds while open. A socket that never beats (an
  API client, a script) is neither shown nor sent presence.
- **Here, per process.** One Presence per event loop (as live.hub): the local viewers of each
  task. A socket closed leaves at once; one silent for SILENT_TTL (a tab killed, a network gone,
  no close frame ever) is dropped by the sweep that runs every second.
- **Across processes, through the channel layer.** The Presence's own channel joins the group
  `presence.<task pk>` of each task it has viewers of, and sends its roster of that task there
  on every change and every BEAT. Rosters heard from other processes expire after ROSTER_TTL (a
  process that died says nothing more). A process that starts watching a task asks the others
  for their rosters (hello), so a newcomer sees who is there at once. With the in-memory layer
  (one process) nothing goes through the layer. Redis away: each process shows its own viewers
  and catches up when Redis answers again.
- **What a page gets.** When the merged roster of its task changes, each local socket of it is
  sent `#presence` (templates/live/presence.html): the others there, by initials, and what each
  edits; static/js/presence.js puts "<name> is editing" on that field's panel. A viewer never
  sees themselves (by user, so their other tabs do not count either).

Scoping: only sockets the consumer authorised for a task (a member of its organization) join its
room, and the rosters of a task go to its group only. Nothing here runs on the event fan-out
path: the hub never calls presence, and presence never reads the event log.

Messages on the layer:
  {"type": "presence.roster", "task": pk, "process": id, "viewers": [[user id, name, initials, field], ...]}
  {"type": "presence.hello", "task": pk, "process": id}
"""

import asyncio
import contextlib
import logging
import re
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Protocol

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

# The fields a page reports editing (the detail page's panels), and how the note names them.
FIELDS = {
    "status": "the status",
    "priority": "the priority",
    "result": "the result",
    "metadata": "the metadata",
    "decision": "the decision",
}
CHANNEL_PREFIX = "taskdesk.hub"  # live.hub's (see _listen)
BEAT = 3.0  # seconds between a page's beats, and between a process's rosters
SWEEP = 1.0


def silent_ttl() -> float:
    """Seconds a viewer whose page stopped beating still counts as here."""
    return float(getattr(settings, "LIVE_PRESENCE_TTL_SECONDS", 10.0))


def roster_ttl() -> float:
    return silent_ttl()


def presence_group(task_pk: int) -> str:
    return f"presence.{int(task_pk)}"


class Viewer(Protocol):
    """What presence needs of a task page's socket."""

    task_pk: int | None
    presence_identity: tuple[int, str, str]  # user id, name, initials (from the session)

    async def push(self, html: str) -> None: ...


@dataclass(eq=False)
class Seat:
    """One local socket in a task's room."""

    viewer: Viewer
    editing: str | None = None
    seen: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Person:
    """Someone on a task's page, as the others see them."""

    user_id: int
    name: str
    initials: str
    editing: str | None

    @property
    def editing_label(self) -> str:
        return FIELDS.get(self.editing or "", "")


def initials_of(name: str, full_name: str = "") -> str:
    """Two letters for a person: their first and last name's, or their name's first two."""
    words = _WORDS.findall(full_name)
    if len(words) >= 2:
        return (words[0][0] + words[-1][0]).upper()
    letters = "".join(words) or "".join(_WORDS.findall(name))
    return letters[:2].upper() or "?"


_WORDS = re.compile(r"[^\W\d_]+")


class Presence:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.process = uuid.uuid4().hex
        self.rooms: dict[int, set[Seat]] = {}
        # task pk -> process id -> (people, expires at)
        self.remote: dict[int, dict[str, tuple[list[Person], float]]] = {}
        self.shown: dict[int, tuple] = {}  # task pk -> the merged roster last sent to its sockets
        self.channel_name: str | None = None
        self.joined: set[int] = set()
        self._seats: dict[int, Seat] = {}  # id(viewer) -> seat
        self._background: list[asyncio.Task] = []
        self._started = False
        self._layer = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        layer = get_channel_layer()
        if layer is not None and not isinstance(layer, InMemoryChannelLayer):
            self._layer = layer
            self._background.append(self.loop.create_task(self._listen(), name="taskdesk-presence-listen"))
        self._background.append(self.loop.create_task(self._tick(), name="taskdesk-presence-tick"))

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        if self._background:
            await asyncio.wait(self._background, timeout=3)
        self._background.clear()
        self._started = False

    # --- what a socket calls --------------------------------------------------------------

    async def join(self, viewer: Viewer) -> None:
        """A task page's socket said it is here (its first beat), editing nothing yet."""
        self.start()
        task_pk = viewer.task_pk
        if task_pk is None:
            return
        seat = Seat(viewer)
        self._seats[id(viewer)] = seat
        fresh = task_pk not in self.rooms or not self.rooms[task_pk]
        self.rooms.setdefault(task_pk, set()).add(seat)
        if fresh:
            await self._join_group(task_pk)
            await self._send(task_pk, {"type": "presence.hello", "task": task_pk, "process": self.process})
        await self._changed(task_pk, newcomer=seat)

    async def beat(self, viewer: Viewer, editing: object) -> None:
        """The page is (still) open; `editing` is the field it is editing now (or none). The first
        beat seats it: a socket that never beats (an API client, a script) is never shown."""
        seat = self._seats.get(id(viewer))
        if seat is None:
            await self.join(viewer)
            seat = self._seats[id(viewer)]
        seat.seen = time.monotonic()
        field_name = editing if isinstance(editing, str) and editing in FIELDS else None
        if field_name != seat.editing:
            seat.editing = field_name
            await self._changed(seat.viewer.task_pk)

    async def leave(self, viewer: Viewer) -> None:
        seat = self._seats.pop(id(viewer), None)
        if seat is None:
            return
        await self._drop(seat)

    async def _drop(self, seat: Seat) -> None:
        task_pk = seat.viewer.task_pk
        room = self.rooms.get(task_pk)
        if room is None:
            return
        room.discard(seat)
        self._seats.pop(id(seat.viewer), None)
        await self._changed(task_pk)
        if not room:
            self.rooms.pop(task_pk, None)
            self.remote.pop(task_pk, None)
            self.shown.pop(task_pk, None)
            await self._leave_group(task_pk)

    # --- rosters --------------------------------------------------------------------------

    def _local_people(self, task_pk: int) -> list[Person]:
        people = []
        for seat in self.rooms.get(task_pk, ()):
            user_id, name, initials = seat.viewer.presence_identity
            people.append(Person(user_id, name, initials, seat.editing))
        return people

    def people(self, task_pk: int) -> list[Person]:
        """Everyone on the task's page in every process: one entry per person (by user), in name
        order, editing what any of their pages edits."""
        now = time.monotonic()
        everyone = list(self._local_people(task_pk))
        for process, (people, expires) in list(self.remote.get(task_pk, {}).items()):
            if expires < now:
                del self.remote[task_pk][process]
                continue
            everyone += people
        merged: dict[int, Person] = {}
        for person in everyone:
            known = merged.get(person.user_id)
            if known is None or (person.editing and not known.editing):
                merged[person.user_id] = person
        return sorted(merged.values(), key=lambda person: (person.name.lower(), person.user_id))

    async def _changed(self, task_pk: int | None, *, newcomer: Seat | None = None) -> None:
        """The local roster changed: tell the other processes, re-render for the local sockets
        (a newcomer gets the roster even when it changed nothing others see)."""
        if task_pk is None:
            return
        await self._send_roster(task_pk)
        await self._render(task_pk, force=newcomer)

    async def _render(self, task_pk: int, *, force: Seat | None = None) -> None:
        people = self.people(task_pk)
        key = tuple(people)
        changed = self.shown.get(task_pk) != key
        self.shown[task_pk] = key
        seats = list(self.rooms.get(task_pk, ())) if changed else ([force] if force else [])
        rendered: dict[int, str] = {}
        for seat in seats:
            user_id = seat.viewer.presence_identity[0]
            if user_id not in rendered:
                others = [person for person in people if person.user_id != user_id]
                rendered[user_id] = render_to_string("live/presence.html", {"people": others})
            try:
                await seat.viewer.push(rendered[user_id])
            except Exception:
                logger.debug("Presence push to a closing socket failed", exc_info=True)

    # --- the channel layer ----------------------------------------------------------------

    async def _send_roster(self, task_pk: int) -> None:
        people = [[p.user_id, p.name, p.initials, p.editing] for p in self._local_people(task_pk)]
        message = {"type": "presence.roster", "task": task_pk, "process": self.process, "viewers": people}
        await self._send(task_pk, message)

    async def _send(self, task_pk: int, message: dict) -> None:
        if self._layer is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._layer.group_send(presence_group(task_pk), message), 1.0)

    async def _join_group(self, task_pk: int) -> None:
        if self._layer is None or self.channel_name is None or task_pk in self.joined:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._layer.group_add(presence_group(task_pk), self.channel_name), 2.0)
            self.joined.add(task_pk)

    async def _leave_group(self, task_pk: int) -> None:
        if self._layer is None or self.channel_name is None or task_pk not in self.joined:
            return
        self.joined.discard(task_pk)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._layer.group_discard(presence_group(task_pk), self.channel_name), 2.0)

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            try:
                if self.channel_name is None:
                    # The hub's prefix: channels_redis serves one process's channels from one Redis
                    # list per prefix, popped by whichever receiver holds its lock, so a second
                    # prefix would wait behind the hub's receive forever.
                    self.channel_name = await self._layer.new_channel(prefix=CHANNEL_PREFIX)
                    for task_pk in list(self.rooms):
                        await self._join_group(task_pk)
                message = await self._layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis away: local viewers only until it answers (the beat re-joins the groups).
                self.joined.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.5
            try:
                await self._heard(message)
            except (KeyError, TypeError, ValueError):
                continue

    async def _heard(self, message: dict) -> None:
        task_pk, process = int(message["task"]), str(message["process"])
        if process == self.process or task_pk not in self.rooms:
            return
        if message.get("type") == "presence.hello":
            await self._send_roster(task_pk)
            return
        if message.get("type") != "presence.roster":
            return
        people = [
            Person(int(user_id), str(name)[:150], str(initials)[:3], editing if editing in FIELDS else None)
            for user_id, name, initials, editing in message["viewers"][:200]
        ]
        rosters = self.remote.setdefault(task_pk, {})
        if people:
            rosters[process] = (people, time.monotonic() + roster_ttl())
        else:
            rosters.pop(process, None)  # its last viewer left
        await self._render(task_pk)

    # --- the sweep ------------------------------------------------------------------------

    async def _tick(self) -> None:
        next_beat = time.monotonic() + BEAT
        while True:
            await asyncio.sleep(SWEEP)
            try:
                await self.sweep()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + BEAT
                    for task_pk in list(self.rooms):
                        await self._join_group(task_pk)  # after a Redis restart, and the group's expiry
                        await self._send_roster(task_pk)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Presence sweep failed; trying again shortly")

    async def sweep(self) -> None:
        """Drop silent local viewers and expired remote rosters; re-render what changed."""
        deadline = time.monotonic() - silent_ttl()
        for seat in [seat for room in self.rooms.values() for seat in room if seat.seen < deadline]:
            await self._drop(seat)
        for task_pk in list(self.remote):
            if task_pk in self.rooms:
                await self._render(task_pk)  # people() drops expired rosters; renders only on change


# --- the process's presences ------------------------------------------------------------------

_presences: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Presence]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def presence_for_running_loop() -> Presence:
    loop = asyncio.get_running_loop()
    with _lock:
        presence = _presences.get(loop)
        if presence is None:
            presence = _presences[loop] = Presence(loop)
    return presence


async def reset_presence_for_running_loop() -> None:
    """Stop and forget this loop's presence (tests)."""
    loop = asyncio.get_running_loop()
    with _lock:
        presence = _presences.pop(loop, None)
    if presence is not None:
        await presence.stop()
