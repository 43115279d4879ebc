"""Live updates on the Redis channel layer: bursts reach every socket, idle sockets stay open.

The sockets are channels' in-process communicators, but every message they get travels through
Redis: services publish with group_send from a worker thread, the layer stores it in Redis, and
the consumers' receive loop pops it (the same path as a separate agent process).
"""

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import close_old_connections

from tasks_app import services
from tasks_app.live import cache as live
from tests.conftest import requires_redis
from tests.live_sockets import communicator, event_ids, session_cookie

pytestmark = [requires_redis, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

SOCKETS = 20
CHANGES = 300


@pytest.fixture(autouse=True)
def renderer():
    live.fragments.clear()
    yield
    live.fragments.clear()


@pytest.fixture
def alice_cookie(alice):
    return session_cookie(alice)


@pytest.fixture
def tasks(acme, system_actor):
    return [
        services.task_create(organization=acme, actor=system_actor, title=f"t{i}", agent="bot")[0] for i in range(10)
    ]


def burst(tasks, actor) -> list[int]:
    """CHANGES task updates, each its own transaction and publish; returns their event ids."""
    try:
        ids = []
        for i in range(CHANGES):
            task = services.task_update(task=tasks[i % len(tasks)].pk, actor=actor, priority=i % 101)
            ids.append(services.last_event(task).pk)
        return ids
    finally:
        close_old_connections()


async def receive_all(comm, count: int, timeout: float) -> list[int]:
    ids: list[int] = []
    deadline = time.monotonic() + timeout
    while len(ids) < count and time.monotonic() < deadline:
        try:
            ids += event_ids(await comm.receive_from(timeout=max(0.1, deadline - time.monotonic())))
        except TimeoutError:
            break
    return ids


async def test_a_burst_of_300_changes_reaches_every_one_of_20_sockets(alice_cookie, tasks, alice_actor):
    sockets = []
    for _ in range(SOCKETS):
        comm = communicator("/ws/tasks/", alice_cookie)
        connected, _ = await comm.connect(timeout=5)
        assert connected
        sockets.append(comm)

    started = time.monotonic()
    written_at = []

    async def writer_timed():
        ids = await sync_to_async(burst, thread_sensitive=False)(tasks, alice_actor)
        written_at.append(time.monotonic() - started)
        return ids

    writer = writer_timed()
    readers = [receive_all(comm, CHANGES, timeout=60) for comm in sockets]
    sent, *received = await asyncio.gather(writer, *readers)
    elapsed = time.monotonic() - started

    assert len(sent) == CHANGES
    for ids in received:
        assert ids == sent  # every event, once, in order, on every socket
    print(f"\n{CHANGES} changes written in {written_at[0]:.2f} s, x {SOCKETS} sockets delivered in {elapsed:.2f} s")
    assert elapsed < 60
    for comm in sockets:
        assert await comm.receive_nothing(timeout=0.1)
        await comm.disconnect()


async def test_an_idle_socket_stays_open_and_keeps_receiving(alice_cookie, tasks, alice_actor):
    comm = communicator("/ws/tasks/", alice_cookie)
    connected, _ = await comm.connect(timeout=5)
    assert connected
    # Longer than redis-py's default 5 s socket timeout and the layer's 5 s BZPOPMIN, six times.
    assert await comm.receive_nothing(timeout=30, interval=0.5)
    assert not comm.future.done()
    task = await database_sync_to_async(services.task_update)(task=tasks[0].pk, actor=alice_actor, priority=99)
    event = await database_sync_to_async(services.last_event)(task)
    assert event_ids(await comm.receive_from(timeout=5)) == [event.pk]
    await comm.disconnect()
