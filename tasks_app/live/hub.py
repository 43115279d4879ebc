"""The per-process fan-out: one hub per event loop hears the bells and feeds every local reader.

A process (one daphne, one event loop) has one Hub. Pages' websockets (`consumers.py`) and API
event streams (`api/sse.py`) register with it instead of each joining channel-layer groups:

- **Hearing.** The hub holds ONE channel-layer channel and adds it to the group
  `bell.<organization id>` of every organization it has readers for, so the process hears each
  bell once, however many sockets it serves. Bells rung in this process arrive directly
  (`ring_local_hubs`). With the in-memory layer (one process) there is nothing to listen to.
- **Reading.** A bell for organization O newer than what the hub has delivered starts a drain of
  O (one at a time per organization; a bell during a drain makes it go round again): the events
  after the hub's mark, in id order, from the log (`selectors.events_after`).
- **Fan-out.** For each event, the sockets that may see it and have not yet had it (each keeps
  its own position per organization; a detail socket only its task's events) get the fragment,
  rendered once per (event, page, role, list view), in the same worker-thread hop that read
  the page of events, and kept in `cache.fragments`; the same string (and the same prebuilt
  websocket frame) goes to every socket of that audience.
- **Joining.** A socket that registers catches up first (its replay: the events after the
  position its page was rendered at, scoped to its task for a detail page), under its
  organization's drain lock, so no event falls between its replay and the live stream.
  A page that is too far behind (REPLAY_MAX) is told to reload instead.
- **Idle check.** Every IDLE_CHECK seconds the hub reads each organization's newest event id
  (one indexed query for all), and drains any organization whose log moved without a bell (a
  bell lost to a Redis blip, a write from a process whose publish failed).
- **Redis trouble.** The listener's errors mark the hub "delayed": sockets are told (the page
  shows "live updates delayed"), the idle check runs every DEGRADED_CHECK seconds so pages keep
  converging from the log, and the listener reconnects with backoff and re-joins its groups
  (a restarted Redis has forgotten them). Nothing here can block a write.
- **Credentials.** Every CREDENTIALS_CHECK seconds the hub asks PostgreSQL for one fingerprint
  per reader identity (`credentials.fingerprints`, in the same database call as the idle
  check; the hub counts its distinct identities as sockets come and go, so a check looks at a
  few per user, never at every socket): its session, password, flags, memberships, roles and
  token. Only identities whose fingerprint changed (or that are new) are swept
  (`credentials.sweep`): ended or expired sessions, changed passwords, deactivated users and
  revoked tokens close their sockets and streams; a removed membership takes that organization
  away; a changed role re-renders what the socket gets from then on. An idle process with 1,000
  open sockets makes one small database call every couple of seconds and nothing else.
"""

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from .. import selectors
from ..models import TaskEvent
from . import credentials, wire
from .bell import bell_group
from .cache import fragments, render_event_html

logger = logging.getLogger(__name__)

REPLAY_PAGE = 500
# A page more than this many events behind reloads instead of replaying them one by one.
REPLAY_MAX = 5_000


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def idle_check_seconds() -> float:
    return _setting("LIVE_IDLE_CHECK_SECONDS", 2.0)


def degraded_check_seconds() -> float:
    return _setting("LIVE_DEGRADED_CHECK_SECONDS", 1.0)


def credentials_check_seconds() -> float:
    return _setting("LIVE_CREDENTIALS_CHECK_SECONDS", 2.0)


# Close codes the page understands (static/js/live.js).
CLOSE_SIGNED_OUT = 4401  # session ended, expired, password changed, user deactivated
CLOSE_NO_ACCESS = 4403  # no longer a member of the organization the page shows
CLOSE_RELOAD = 4409  # too far behind to replay: reload the page


async def wait_for_event(event: asyncio.Event, timeout: float) -> bool:
    """Until `event` is set or `timeout` seconds pass; True if it was set.

    Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives just as the
    event is set, so a loop around it (the hub's checks, an event stream) would never stop and
    the event loop's shutdown would wait for it forever.
    """
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()


def db(func):
    """Run a database read in a worker thread of its own (not the one thread sync views share)."""
    return database_sync_to_async(func, thread_sensitive=False)


class Reader(Protocol):
    """What the hub needs of a websocket consumer."""

    page: str  # "list", "approvals", "detail" or "ops"
    view: str  # a list page's filters and sort (selectors.TaskFilters.query); "" otherwise
    task_pk: int | None
    orgs: dict[int, bool]  # organization id -> may edit
    identity: credentials.Identity

    async def push(self, html: str, frame: bytes | None = None) -> None: ...

    async def end(self, code: int) -> None: ...


@dataclass(eq=False)
class Registration:
    """A reader's place in the hub: its positions and which organizations it is live in."""

    reader: Reader
    positions: dict[int, int] = field(default_factory=dict)
    live: set[int] = field(default_factory=set)
    closed: bool = False
    detached: bool = False

    @property
    def page(self) -> str:
        return self.reader.page


@dataclass(eq=False)
class Listener:
    """An API event stream waiting for its organization's bells (it reads the log itself)."""

    organization_id: int
    identity: credentials.Identity | None  # None: nothing to re-check (a system stream)
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False
    gone: bool = False


class Hub:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.registrations: dict[int, set[Registration]] = {}
        self.listeners: dict[int, set[Listener]] = {}
        self.delivered: dict[int, int] = {}
        self.locks: dict[int, asyncio.Lock] = {}
        self.dirty: set[int] = set()
        # The newest event id heard of (bells) or read (checks) per organization.
        self.heads: dict[int, int] = {}
        self.last_drain: dict[int, float] = {}
        self.healthy = True
        self.channel_name: str | None = None
        self.joined: set[int] = set()
        self._background: list[asyncio.Task] = []
        self._started = False
        self._drains: dict[int, asyncio.Task] = {}
        self.stats = {"drains": 0, "bells": 0, "idle_catchups": 0, "pushes": 0, "sweeps": 0, "log_checks": 0}
        # Each reader identity's credentials fingerprint at the last check (live.credentials).
        self.fingerprints: dict[tuple, str] = {}
        # The distinct identities of the open sockets and streams, with how many hold each: the
        # periodic check looks at these (a few per user), not at every socket.
        self.identities: Counter[credentials.Identity] = Counter()
        self._pace_changed = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._background.append(self.loop.create_task(self._tick(), name="taskdesk-hub-tick"))
        layer = get_channel_layer()
        if layer is not None and not isinstance(layer, InMemoryChannelLayer):
            self._background.append(self.loop.create_task(self._listen(layer), name="taskdesk-hub-listen"))

    async def stop(self) -> None:
        tasks = [*self._background, *self._drains.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a channel-layer receive can hold on to its cancellation for a while.
            await asyncio.wait(tasks, timeout=3)
        self._background.clear()
        self._drains.clear()
        self._started = False

    def _organizations(self) -> set[int]:
        return {org for org, regs in self.registrations.items() if regs} | {
            org for org, listeners in self.listeners.items() if listeners
        }

    # --- readers --------------------------------------------------------------------------

    async def attach(self, reader: Reader, after: dict[int, int] | int | None) -> Registration | None:
        """Register a socket, replay what it missed since `after`, then make it live.

        Returns None when the reader was told to reload instead (too far behind). A catch-up
        that fails (the database away) unregisters the socket before the error goes on: its
        consumer never got a registration to detach.
        """
        self.start()
        registration = Registration(reader)
        self.identities[reader.identity] += 1
        for org in reader.orgs:
            self.registrations.setdefault(org, set()).add(registration)
        try:
            await self._join(list(reader.orgs))
            for org in sorted(reader.orgs):
                start = after.get(org) if isinstance(after, dict) else after
                if not await self._catch_up(registration, org, start):
                    await self.detach(registration)
                    await reader.end(CLOSE_RELOAD)
                    return None
        except BaseException:
            await asyncio.shield(self.detach(registration))
            raise
        if not self.healthy:
            await self._push_health(registration, healthy=False)
        return registration

    async def detach(self, registration: Registration) -> None:
        registration.closed = True
        if not registration.detached:
            registration.detached = True
            self._forget_identity(registration.reader.identity)
        for org in list(registration.reader.orgs) + list(registration.positions):
            regs = self.registrations.get(org)
            if regs is not None:
                regs.discard(registration)
        await self._forget_idle_organizations()

    def drop_organization(self, registration: Registration, org: int) -> None:
        """A membership ended: the socket keeps its other organizations."""
        registration.live.discard(org)
        registration.positions.pop(org, None)
        regs = self.registrations.get(org)
        if regs is not None:
            regs.discard(registration)

    async def _catch_up(self, registration: Registration, org: int, after: int | None) -> bool:
        reader = registration.reader
        lock = self.locks.setdefault(org, asyncio.Lock())
        async with lock:
            head = await db(selectors.last_event_id)([org])
            if org not in self.delivered:
                self.delivered[org] = head
            if after is None or after >= head:
                registration.positions[org] = max(head, after or 0)
                registration.live.add(org)
                return True
            position = after
            sent = 0
            while True:
                events = await db(_replay_page)(org, position, reader.task_pk)
                for event in events:
                    await self._send(registration, org, event)
                    position = event.pk
                sent += len(events)
                if len(events) < REPLAY_PAGE:
                    break
                if sent >= REPLAY_MAX:
                    return False
            registration.positions[org] = max(position, after)
            registration.live.add(org)
            return True

    def listen(self, organization_id: int, identity: credentials.Identity | None) -> Listener:
        """An API stream's subscription: its `woken` event is set by every bell of the organization."""
        self.start()
        listener = Listener(organization_id, identity)
        self.listeners.setdefault(organization_id, set()).add(listener)
        if identity is not None:
            self.identities[identity] += 1
        self.loop.create_task(self._join([organization_id]))
        return listener

    async def unlisten(self, listener: Listener) -> None:
        listeners = self.listeners.get(listener.organization_id)
        if listeners is not None:
            listeners.discard(listener)
        if not listener.gone:
            listener.gone = True
            if listener.identity is not None:
                self._forget_identity(listener.identity)
        await self._forget_idle_organizations()

    def _forget_identity(self, identity: credentials.Identity) -> None:
        self.identities[identity] -= 1
        if self.identities[identity] <= 0:
            del self.identities[identity]
            self.fingerprints.pop(identity.key, None)

    # --- bells and drains -----------------------------------------------------------------

    def on_bell(self, organization_id: int, event_id: int) -> None:
        """A bell (local or from the channel layer): wake streams, drain sockets if behind."""
        self.stats["bells"] += 1
        if event_id > self.heads.get(organization_id, 0):
            self.heads[organization_id] = event_id
        for listener in self.listeners.get(organization_id, ()):
            listener.woken.set()
        if self.registrations.get(organization_id) and event_id > self.delivered.get(organization_id, 0):
            self.request_drain(organization_id)

    def request_drain(self, org: int) -> None:
        self.dirty.add(org)
        running = self._drains.get(org)
        if running is None or running.done():
            self._drains[org] = self.loop.create_task(self._drain_loop(org))

    async def _drain_loop(self, org: int) -> None:
        while org in self.dirty:
            self.dirty.discard(org)
            try:
                await self._drain(org)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Live drain of organization %s failed; the next bell or check retries", org)
                await asyncio.sleep(0.5)
                if self.registrations.get(org):
                    self.dirty.add(org)

    async def _drain(self, org: int) -> None:
        lock = self.locks.setdefault(org, asyncio.Lock())
        async with lock:
            self.stats["drains"] += 1
            self.last_drain[org] = time.monotonic()
            while self.registrations.get(org) and org in self.delivered:
                # One worker-thread hop reads the page of events and renders each for every
                # audience registered now; the fan-out then finds the renders in the cache.
                wanted = {
                    (reg.page, reg.reader.orgs.get(org, False), reg.reader.view, reg.reader.task_pk)
                    for reg in self.registrations.get(org, ())
                    if org in reg.live and not reg.closed
                }
                events, rendered = await db(_read_and_render)(org, self.delivered[org], wanted)
                for key, html in rendered.items():
                    fragments.remember(key, html)
                for event in events:
                    await self._fan_out(org, event)
                    self.delivered[org] = event.pk
                if len(events) < REPLAY_PAGE:
                    return

    async def _fan_out(self, org: int, event: TaskEvent) -> None:
        targets = [
            reg
            for reg in self.registrations.get(org, ())
            if org in reg.live
            and not reg.closed
            and reg.positions.get(org, 0) < event.pk
            and (reg.reader.task_pk is None or reg.reader.task_pk == event.task_id)
        ]
        if not targets:
            return
        # One render per (page, role, view); the same string goes to every socket of that audience.
        audiences: dict[tuple[str, bool, str], list[Registration]] = {}
        for reg in targets:
            audiences.setdefault((reg.page, reg.reader.orgs.get(org, False), reg.reader.view), []).append(reg)
        for (page, can_edit, view), regs in audiences.items():
            try:
                html = await fragments.html(event.pk, page=page, can_edit=can_edit, view=view, event=event)
            except Exception:
                logger.exception("Could not render event %s for the %s page", event.pk, page)
                html = ""
            frame = wire.text_frame(html) if html and len(regs) > 1 else None
            for reg in regs:
                reg.positions[org] = event.pk
                if html and not reg.closed:
                    await self._push(reg, html, frame)

    async def _send(self, registration: Registration, org: int, event: TaskEvent) -> None:
        """One event to one socket (its replay)."""
        can_edit = registration.reader.orgs.get(org, False)
        view = registration.reader.view
        try:
            html = await fragments.html(event.pk, page=registration.page, can_edit=can_edit, view=view, event=event)
        except Exception:
            logger.exception("Could not render event %s for the %s page", event.pk, registration.page)
            return
        if html:
            await self._push(registration, html)

    async def _push(self, registration: Registration, html: str, frame: bytes | None = None) -> None:
        try:
            await registration.reader.push(html, frame)
            self.stats["pushes"] += 1
        except Exception:
            # A socket that went away mid-send: it detaches itself on disconnect.
            registration.closed = True

    # --- channel layer --------------------------------------------------------------------

    async def _join(self, orgs: list[int]) -> None:
        layer = get_channel_layer()
        if layer is None or isinstance(layer, InMemoryChannelLayer) or self.channel_name is None:
            return
        for org in orgs:
            if org in self.joined:
                continue
            try:
                await asyncio.wait_for(layer.group_add(bell_group(org), self.channel_name), 2.0)
                self.joined.add(org)
            except Exception as exc:
                self._set_health(False, exc)
                return

    async def _forget_idle_organizations(self) -> None:
        wanted = self._organizations()
        for org in list(self.delivered):
            if org not in wanted and not (self.locks.get(org) and self.locks[org].locked()):
                self.delivered.pop(org, None)
                self.last_drain.pop(org, None)
        layer = get_channel_layer()
        for org in list(self.joined - wanted):
            self.joined.discard(org)
            if layer is not None and self.channel_name is not None and self.healthy:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(layer.group_discard(bell_group(org), self.channel_name), 2.0)

    async def _listen(self, layer) -> None:
        """Receive bells from other processes; reconnect and re-join after any Redis trouble."""
        self.channel_name = await layer.new_channel(prefix="taskdesk.hub")
        backoff = 0.5
        rejoin_at = 0.0
        while True:
            try:
                if not self.healthy or time.monotonic() >= rejoin_at:
                    # A restarted Redis forgot the groups; group_add also refreshes their expiry.
                    self.joined.clear()
                    await self._join_all(layer)
                    rejoin_at = time.monotonic() + 300
                message = await layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._set_health(False, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.5
            self._set_health(True)
            if message.get("type") == "bell":
                try:
                    self.on_bell(int(message["organization_id"]), int(message["event_id"]))
                except (KeyError, TypeError, ValueError):
                    continue

    async def _join_all(self, layer) -> None:
        for org in sorted(self._organizations()):
            await asyncio.wait_for(layer.group_add(bell_group(org), self.channel_name), 2.0)
            self.joined.add(org)
        self._set_health(True)

    def _set_health(self, healthy: bool, exc: BaseException | None = None) -> None:
        if healthy == self.healthy:
            return
        self.healthy = healthy
        self._pace_changed.set()
        if healthy:
            logger.warning("Live updates: channel layer reachable again; bells are heard again")
        else:
            logger.warning(
                "Live updates: channel layer unreachable (%s); pages read the event log every %.0f s meanwhile",
                type(exc).__name__ if exc else "error",
                degraded_check_seconds(),
            )
        for regs in list(self.registrations.values()):
            for reg in list(regs):
                self.loop.create_task(self._push_health(reg, healthy=healthy))
        if healthy:
            for org in self._organizations():
                if self.registrations.get(org):
                    self.request_drain(org)

    async def _push_health(self, registration: Registration, *, healthy: bool) -> None:
        from django.template.loader import render_to_string

        html = await db(render_to_string)("live/health.html", {"healthy": healthy})
        if not registration.closed:
            await self._push(registration, html)

    # --- periodic checks ------------------------------------------------------------------

    async def _tick(self) -> None:
        next_log = next_credentials = time.monotonic()
        while True:
            # Asleep until the next check is due, or until the health changes (which changes the pace).
            self._pace_changed.clear()
            due = min(next_log, next_credentials)
            await wait_for_event(self._pace_changed, max(0.05, due - time.monotonic()))
            now = time.monotonic()
            if self._pace_changed.is_set():
                next_log = min(next_log, now + self.log_interval())
                continue
            log, creds = now >= next_log, now >= next_credentials
            if log:
                next_log = now + self.log_interval()
            if creds:
                next_credentials = now + credentials_check_seconds()
            try:
                await self.check(log=log, credentials=creds)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Live hub check failed; trying again shortly")

    def log_interval(self) -> float:
        return idle_check_seconds() if self.healthy else degraded_check_seconds()

    async def check(self, *, log: bool = True, credentials: bool = True) -> None:
        """The periodic look, in one database call: the log's newest ids and every reader's
        credentials fingerprint. While nothing changes, that is all an idle process does."""
        orgs = sorted(self._organizations()) if log else []
        identities = list(self.identities) if credentials else []
        if log:
            self.stats["log_checks"] += 1
        if not orgs and not identities:
            return
        heads, prints = await db(_live_state)(orgs, identities)
        self._caught_up(heads)
        if not credentials:
            return
        known = self.fingerprints
        changed = [identity for identity in identities if known.get(identity.key) != prints.get(identity.key)]
        self.fingerprints = prints
        if changed:
            self.stats["sweeps"] += 1
            await self._sweep(changed)

    def _caught_up(self, heads: dict[int, int]) -> None:
        for org, head in heads.items():
            if head > self.delivered.get(org, head) and self.registrations.get(org):
                self.stats["idle_catchups"] += 1
                self.request_drain(org)
            if head > self.heads.get(org, 0):
                # Streams wake only when the log moved without them hearing a bell.
                self.heads[org] = head
                for listener in self.listeners.get(org, ()):
                    listener.woken.set()

    async def _sweep(self, identities: list[credentials.Identity]) -> None:
        """Apply the verdicts of the identities whose fingerprint changed to their sockets and streams."""
        verdicts = await db(credentials.sweep)(identities)
        registrations = {reg for regs in self.registrations.values() for reg in regs if not reg.closed}
        for reg in registrations:
            verdict = verdicts.get(reg.reader.identity.key)
            if verdict is None:
                continue
            await self._apply_verdict(reg, verdict)
        revoked = False
        listeners = [
            listener
            for ls in self.listeners.values()
            for listener in ls
            if not listener.ended and listener.identity is not None
        ]
        for listener in listeners:
            verdict = verdicts.get(listener.identity.key)
            if verdict is not None and verdict.ended:
                listener.ended = True
                listener.woken.set()
                revoked = revoked or listener.identity.token_pk is not None
        if revoked:
            # A token revoked in another process: refuse it here at once, not when the
            # per-process token cache (services.tokens) would have let it go.
            from ..services.tokens import forget_cached_tokens

            forget_cached_tokens()

    async def _apply_verdict(self, registration: Registration, verdict: credentials.Verdict) -> None:
        reader = registration.reader
        if verdict.ended:
            registration.closed = True
            await reader.end(CLOSE_SIGNED_OUT)
            return
        removed = [org for org in reader.orgs if org not in verdict.roles]
        if removed and (reader.page == "detail" or len(removed) == len(reader.orgs)):
            registration.closed = True
            await reader.end(CLOSE_NO_ACCESS)
            return
        for org in removed:
            reader.orgs.pop(org, None)
            self.drop_organization(registration, org)
        changed = False
        for org in list(reader.orgs):
            can_edit = verdict.roles[org]
            if reader.orgs[org] != can_edit:
                reader.orgs[org] = can_edit  # fragments from now on render for the new role
                changed = True
        if removed or changed:
            from django.template.loader import render_to_string

            html = await db(render_to_string)("live/access_changed.html", {})
            await self._push(registration, html)


def _live_state(orgs: list[int], identities: list[credentials.Identity]) -> tuple[dict[int, int], dict[tuple, str]]:
    """The organizations' newest event ids and the identities' fingerprints (one worker-thread hop)."""
    heads = selectors.newest_event_ids(orgs) if orgs else {}
    return heads, credentials.fingerprints(identities)


def _read_and_render(org: int, after: int, audiences: set[tuple]) -> tuple[list[TaskEvent], dict[tuple, str]]:
    """A page of the log after `after`, and each event rendered for each audience that sees it
    ((page, can_edit, view, task or None) -> rendered under the fragment cache's keys). A render
    that fails is left out: the fan-out renders it again and logs why."""
    events = _replay_page(org, after, None)
    rendered: dict[tuple, str] = {}
    for event in events:
        for page, can_edit, view, task_pk in audiences:
            key = (event.pk, page, can_edit, view)
            if (task_pk is not None and task_pk != event.task_id) or key in rendered or fragments.has(key):
                continue
            try:
                rendered[key] = render_event_html(event, page=page, can_edit=can_edit, view=view)
            except Exception:  # noqa: BLE001, S112 (rendered again, and logged, by the fan-out)
                continue
    return events, rendered


def _replay_page(org: int, after: int, task_pk: int | None) -> list[TaskEvent]:
    # The events alone: a fragment reads its task itself (selectors.task_for_fragment), and
    # joining every event's task, user and token only cost the read its time.
    return list(selectors.events_after([org], after, task_pk=task_pk, limit=REPLAY_PAGE))


# --- the process's hubs -----------------------------------------------------------------------

_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub]" = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()


def hub_for_running_loop() -> Hub:
    """The hub of the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    with _hubs_lock:
        hub = _hubs.get(loop)
        if hub is None:
            hub = _hubs[loop] = Hub(loop)
    return hub


def _live_hubs() -> Iterator[Hub]:
    with _hubs_lock:
        hubs = list(_hubs.values())
    for hub in hubs:
        if not hub.loop.is_closed():
            yield hub


def ring_local_hubs(organization_id: int, event_id: int) -> None:
    """Wake the hubs of this process (from any thread; each decides on its own loop)."""
    for hub in _live_hubs():
        try:
            hub.loop.call_soon_threadsafe(hub.on_bell, organization_id, event_id)
        except RuntimeError:
            continue  # the loop closed meanwhile


async def reset_hub_for_running_loop() -> None:
    """Stop and forget this loop's hub (tests)."""
    loop = asyncio.get_running_loop()
    with _hubs_lock:
        hub = _hubs.pop(loop, None)
    if hub is not None:
        await hub.stop()


def hub_stats() -> dict[str, Any]:
    """Counters summed over this process's hubs (benchmarks and the curious)."""
    totals: dict[str, Any] = {"hubs": 0}
    for hub in _live_hubs():
        totals["hubs"] += 1
        for name, value in hub.stats.items():
            totals[name] = totals.get(name, 0) + value
    return totals
