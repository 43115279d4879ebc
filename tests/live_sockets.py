"""Helpers shared by the websocket tests: signed-in communicators and reading pushed frames."""

import asyncio
import re
import time

from asgiref.testing import ApplicationCommunicator
from channels.testing import WebsocketCommunicator
from django.test import Client

from dashboard.asgi import application

EVENT_ID_RE = re.compile(r'data-event-id="(\d+)"')


def session_cookie(user) -> str:
    """A session cookie for user (call from sync code: fixtures)."""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def signed_in_client(user) -> tuple[Client, str]:
    """A test client signed in as user and the same session as a websocket cookie (sync code)."""
    client = Client()
    client.force_login(user)
    return client, f"sessionid={client.cookies['sessionid'].value}"


class Communicator(WebsocketCommunicator):
    """channels' WebsocketCommunicator without its patch of `channels.db.close_old_connections`.

    channels' communicator replaces that function with a no-op, process-wide, for as long as
    it sends or waits: meant for consumers whose database calls share the test's connection.
    The live hub reads the log in worker threads of its own (thread_sensitive=False), and with
    the patch those threads never give their pooled connections back (the pool runs dry after
    a few tests). Here every database call closes its connection as it does in production.
    """

    async def send_input(self, message):
        return await ApplicationCommunicator.send_input(self, message)

    async def receive_output(self, timeout=1):
        return await ApplicationCommunicator.receive_output(self, timeout)


def communicator(
    path: str, cookie: str | None = None, origin: str = "http://testserver", host: str = "testserver"
) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode()), (b"host", host.encode())]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return Communicator(application, path, headers=headers)


async def connect_live(
    path: str, cookie: str | None = None, origin: str = "http://testserver", timeout: float = 5
) -> tuple[WebsocketCommunicator, bool]:
    """Connects, then waits until the live hub has registered the socket and taken its start
    position (or the server pushed or closed something first: a replay, a 4401...).

    The consumer accepts before it registers; a socket without `after` starts at the log's
    head *at registration*, so a change committed in between would count as already seen.
    A page always carries `after`; tests that connect without it wait here instead.
    """
    from tasks_app.live.hub import hub_for_running_loop

    hub = hub_for_running_loop()
    before = _registrations(hub)
    comm = communicator(path, cookie, origin)
    connected, _ = await comm.connect(timeout=timeout)
    if connected:
        await wait_for(
            lambda: (
                any(reg.live == set(reg.reader.orgs) for reg in _registrations(hub) - before)
                or not comm.output_queue.empty()
                or comm.future.done()
            ),
            timeout,
        )
    return comm, connected


def _registrations(hub) -> set:
    return {reg for regs in hub.registrations.values() for reg in regs}


def event_ids(html: str) -> list[int]:
    return [int(x) for x in EVENT_ID_RE.findall(html)]


async def close_code(comm: WebsocketCommunicator, timeout: float = 5) -> tuple[int | None, list[str]]:
    """Reads until the server closes the socket: (close code, frames pushed before it).

    (None, frames) when it is still open after `timeout` seconds. Polls the output queue rather
    than waiting on it: a communicator's receive timing out cancels the application.
    """
    frames: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if comm.output_queue.empty():
            if comm.future.done():
                comm.future.result()  # the application ended: raise what it raised
                return None, frames
            await asyncio.sleep(0.02)
            continue
        message = await comm.receive_output()
        if message["type"] == "websocket.close":
            return message.get("code"), frames
        if message["type"] == "websocket.send":
            frames.append(message.get("text") or "")
    return None, frames


async def receive_ids(comm: WebsocketCommunicator, count: int, timeout: float = 5) -> list[int]:
    """The event ids of the frames received until `count` of them came (or timeout)."""
    ids: list[int] = []
    deadline = time.monotonic() + timeout
    while len(ids) < count and time.monotonic() < deadline:
        try:
            ids += event_ids(await comm.receive_from(timeout=max(0.1, deadline - time.monotonic())))
        except TimeoutError:
            break
    return ids


def count_log_checks(hub) -> list:
    """Records each idle check of the log the hub makes (install before its first socket).

    The hub checks the log once when it starts, then every LIVE_IDLE_CHECK_SECONDS: a test of
    what bells do waits for that first check, with the interval set long, so that no check
    can deliver what a bell should have.
    """
    checks: list[float] = []
    real = hub.check

    async def counted(*, log: bool = True, credentials: bool = True) -> None:
        if log:
            checks.append(time.monotonic())
        await real(log=log, credentials=credentials)

    hub.check = counted
    return checks


async def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())
