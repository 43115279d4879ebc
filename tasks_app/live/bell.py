"""The bell: after a change commits, tell every reader "organization O has events up to id N".

The bell carries no data; the TaskEvent rows are the truth. A reader that hears it reads the
log after its own position. So a bell that comes late, out of order or not at all costs
nothing: the next bell, or the reader's idle check of the log, brings it up to date.

`ring(organization_id, event_id)` is called by the write path's on-commit hook, in whatever
thread committed. It never blocks and never raises:
- the hubs of this process (live.hub, one per event loop serving sockets) are woken directly,
  without a round trip through Redis;
- other processes hear it through the channel layer: the message goes to the group
  `bell.<organization id>`, sent by one publisher thread per process with its own event loop,
  off the request path, coalesced per organization (at most one send per COALESCE_SECONDS: a
  burst of 100 writes rings a few times),
  each send bounded by PUBLISH_TIMEOUT. Redis down or hung: the send fails fast, is logged once
  per outage, and is dropped; the readers' idle checks find the events in the log.
- a process that exits (a command's last change) first waits for its queued bells, about a second at most.

Message on the layer: {"type": "bell", "organization_id": O, "event_id": N}.
"""

import asyncio
import atexit
import logging
import threading
import time

from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 1.0  # seconds for one group_send; Redis is an accelerator, never a wait
# After a send the publisher waits this long before the next, so a burst of writes rings other
# processes a few times, not once per write (a group_send costs the process ~0.5 ms of CPU).
# The first bell after a quiet spell goes at once; this process's own hubs are never delayed.
COALESCE_SECONDS = 0.02


def bell_group(organization_id: int) -> str:
    return f"bell.{int(organization_id)}"


def bell_message(organization_id: int, event_id: int) -> dict:
    return {"type": "bell", "organization_id": int(organization_id), "event_id": int(event_id)}


def ring(organization_id: int, event_id: int) -> None:
    """Wake this process's hubs and (through the channel layer) every other process's."""
    from .hub import ring_local_hubs

    try:
        ring_local_hubs(organization_id, event_id)
    except Exception:
        logger.exception("Could not wake the local live hubs for event %s", event_id)
    publisher.enqueue(organization_id, event_id)


class Publisher:
    """One thread with its own event loop that sends bells to the channel layer, coalesced."""

    def __init__(self) -> None:
        self._pending: dict[int, int] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._failing_since: float | None = None
        self._sending = False  # bells taken off _pending and not yet sent or dropped
        self._drain_at_exit = False
        self.sent = 0
        self.failed = 0

    def enqueue(self, organization_id: int, event_id: int) -> None:
        layer = get_channel_layer()
        if layer is None or isinstance(layer, InMemoryChannelLayer):
            return  # no other process can hear this layer; the local hubs were woken directly
        with self._lock:
            if self._pending.get(organization_id, 0) < event_id:
                self._pending[organization_id] = event_id
            if self._loop is None or self._loop.is_closed():
                self._start()
        self._loop.call_soon_threadsafe(self._wake_up)

    def _start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._wake = asyncio.Event()
            self._loop = loop
            ready.set()
            loop.run_until_complete(self._run())

        threading.Thread(target=run, name="taskdesk-bell", daemon=True).start()
        ready.wait(5)
        if not self._drain_at_exit:
            # A command (clean_tasks, expire_hitl, a bulk run) rings as its last change commits and
            # exits: the daemon thread would die with its last bell unsent. atexit runs while daemon
            # threads still do; bounded, so a hung Redis delays an exit by about a second at most.
            self._drain_at_exit = True
            atexit.register(self.drain, PUBLISH_TIMEOUT + 0.25)

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            with self._lock:
                pending, self._pending = self._pending, {}
                self._sending = True
            try:
                for organization_id, event_id in pending.items():
                    await self._send(organization_id, event_id)
            finally:
                self._sending = False
            await asyncio.sleep(COALESCE_SECONDS)

    async def _send(self, organization_id: int, event_id: int) -> None:
        layer = get_channel_layer()
        try:
            await asyncio.wait_for(
                layer.group_send(bell_group(organization_id), bell_message(organization_id, event_id)),
                PUBLISH_TIMEOUT,
            )
        except Exception as exc:
            self.failed += 1
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                logger.warning(
                    "Live bell not sent (%s: %s); readers catch up from the event log. Logged once until it recovers.",
                    type(exc).__name__,
                    exc,
                )
            return
        self.sent += 1
        if self._failing_since is not None:
            logger.warning("Live bell sending again after %.1f s", time.monotonic() - self._failing_since)
            self._failing_since = None

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until the queued bells have been sent or dropped (tests; each process at exit, see _start)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending and not self._sending:
                    break
            time.sleep(0.01)


publisher = Publisher()
