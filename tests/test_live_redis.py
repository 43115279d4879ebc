"""Live updates on the Redis channel layer: bursts reach every socket, idle sockets stay open,
and one process hears each organization's bell once, however many sockets it serves.

The sockets are channels' in-process communicators served by the hub of the test's event loop.
Bells rung in this process normally wake that hub directly; here that shortcut is switched off
(`bells_through_redis_only`), so every bell travels like one from a separate agent process: the
bell publisher thread sends it to the group `bell.<organization>` in Redis and the hub's one
listening channel pops it. The hub's idle check of the log is slowed down so that it cannot
stand in for a bell that Redis failed to carry.
"""

import asyncio
import os
import sys
import time

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import close_old_connections

from tasks_app import services
from tasks_app.live import bell
from tasks_app.live import cache as live
from tasks_app.live import hub as live_hub
from tests.conftest import requires_redis
from tests.live_sockets import connect_live, count_log_checks, event_ids, session_cookie, wait_for
from tests.servers import BASE_DIR

pytestmark = [requires_redis, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

SOCKETS = 20
CHANGES = 300


@pytest.fixture(autouse=True)
def renderer():
    live.fragments.clear()
    yield
    live.fragments.clear()


@pytest.fixture(autouse=True)
async def hub():
    """The hub of this test's event loop (the sockets' hub), stopped when the test ends."""
    hub = live_hub.hub_for_running_loop()
    yield hub
    if hub.channel_name:  # leave the bell groups (a stopped hub does not), so Redis stays tidy
        for org in list(hub.joined):
            await get_channel_layer().group_discard(bell.bell_group(org), hub.channel_name)
    await live_hub.reset_hub_for_running_loop()


@pytest.fixture(autouse=True)
def bells_through_redis_only(monkeypatch, settings):
    """Bells reach the hub only through Redis, and the idle check does not stand in for them."""
    monkeypatch.setattr(live_hub, "ring_local_hubs", lambda organization_id, event_id: None)
    settings.LIVE_IDLE_CHECK_SECONDS = 3600


async def joined(hub, organization_id: int, timeout: float = 5.0) -> bool:
    """Waits until the hub's listening channel is in the organization's bell group."""
    return await wait_for(lambda: hub.channel_name is not None and organization_id in hub.joined, timeout)


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
            task = services.task_update(task=tasks[i % len(tasks)], actor=actor, priority=i % 101)
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


async def test_a_burst_of_300_changes_reaches_every_one_of_20_sockets(alice_cookie, tasks, alice_actor, hub):
    sockets = []
    for _ in range(SOCKETS):
        comm, connected = await connect_live("/ws/tasks/", alice_cookie)
        assert connected
        sockets.append(comm)
    assert await joined(hub, tasks[0].organization_id)
    heard_before = hub.stats["bells"]

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
    heard = hub.stats["bells"] - heard_before
    print(
        f"\n{CHANGES} changes written in {written_at[0]:.2f} s, x {SOCKETS} sockets delivered in {elapsed:.2f} s;"
        f" {heard} bells heard"
    )
    assert elapsed < 60
    # The process heard the bells once for all its sockets (coalesced: at most one per change).
    assert 1 <= heard <= CHANGES
    for comm in sockets:
        assert await comm.receive_nothing(timeout=0.1)
        await comm.disconnect()


async def test_an_idle_socket_stays_open_and_keeps_receiving(alice_cookie, tasks, alice_actor, hub):
    comm, connected = await connect_live("/ws/tasks/", alice_cookie)
    assert connected
    assert await joined(hub, tasks[0].organization_id)
    # Longer than redis-py's default 5 s socket timeout and the layer's 5 s BZPOPMIN, six times.
    assert await comm.receive_nothing(timeout=30, interval=0.5)
    assert not comm.future.done()
    task = await database_sync_to_async(services.task_update)(task=tasks[0], actor=alice_actor, priority=99)
    event = await database_sync_to_async(services.last_event)(task)
    assert event_ids(await comm.receive_from(timeout=5)) == [event.pk]
    await comm.disconnect()


async def test_one_process_hears_each_bell_once_whatever_its_sockets(alice_cookie, tasks, alice_actor, hub):
    """The sockets join no channel-layer group: the hub's one channel is the only member of
    the organization's bell group, and one bell feeds every socket."""
    org = tasks[0].organization_id
    layer = get_channel_layer()
    group = bell.bell_group(org)
    redis = layer.connection(layer.consistent_hash(group))
    members_before = set(await redis.zrange(layer._group_key(group), 0, -1))
    sockets = []
    for path in ["/ws/tasks/"] * 6 + ["/ws/approvals/"] * 2 + [f"/ws/tasks/acme/{tasks[0].public_id}/"] * 2:
        comm, connected = await connect_live(path, alice_cookie)
        assert connected
        sockets.append(comm)
    assert await joined(hub, org)
    members = set(await redis.zrange(layer._group_key(group), 0, -1))
    assert members - members_before == {hub.channel_name.encode()}  # ten sockets, one new member
    assert await redis.zcard(layer._group_key(f"org.{org}")) == 0  # no per-socket groups

    heard_before = hub.stats["bells"]
    task = await database_sync_to_async(services.task_update)(task=tasks[0], actor=alice_actor, priority=55)
    event = await database_sync_to_async(services.last_event)(task)
    for comm in sockets:
        assert event.pk in event_ids(await comm.receive_from(timeout=5))
    assert hub.stats["bells"] - heard_before == 1
    for comm in sockets:
        assert await comm.receive_nothing(timeout=0.1)
        await comm.disconnect()


async def test_a_bell_from_another_process_brings_the_events_it_missed(
    alice_cookie, tasks, alice_actor, hub, monkeypatch
):
    """A process whose own publish failed rang nothing; the next bell from any process (here
    sent straight to the channel layer, as another process would) brings both events, in
    order. A malformed message on the bell group is ignored."""
    org = tasks[0].organization_id
    checks = count_log_checks(hub)
    comm, connected = await connect_live("/ws/tasks/", alice_cookie)
    assert connected
    assert await joined(hub, org)
    assert await wait_for(lambda: checks)  # the hub's first look at the log; the next is an hour away
    monkeypatch.setattr(bell, "ring", lambda organization_id, event_id: None)  # this process's bells are lost
    first = await database_sync_to_async(services.task_update)(task=tasks[0], actor=alice_actor, priority=61)
    first_event = await database_sync_to_async(services.last_event)(first)
    second = await database_sync_to_async(services.task_update)(task=tasks[1], actor=alice_actor, priority=62)
    second_event = await database_sync_to_async(services.last_event)(second)
    assert await comm.receive_nothing(timeout=0.5)

    layer = get_channel_layer()
    await layer.group_send(bell.bell_group(org), {"type": "bell", "organization_id": "not a number"})
    await layer.group_send(bell.bell_group(org), bell.bell_message(org, second_event.pk))
    received = event_ids(await comm.receive_from(timeout=5)) + event_ids(await comm.receive_from(timeout=5))
    assert received == [first_event.pk, second_event.pk]
    assert await comm.receive_nothing(timeout=0.3)
    assert not comm.future.done()
    assert len(checks) == 1
    await comm.disconnect()


def test_drain_returns_once_the_queued_bells_have_left(monkeypatch):
    """A command or worker about to exit drains the publisher: it returns after the send, not
    when the bell was merely taken off the queue (the process would exit mid-send)."""
    publisher = bell.Publisher()
    sent = []

    async def slow_send(organization_id, event_id):
        await asyncio.sleep(0.3)
        sent.append((organization_id, event_id))

    monkeypatch.setattr(publisher, "_send", slow_send)
    publisher.enqueue(1, 10)
    publisher.enqueue(1, 11)  # coalesced with the first unless that one already left
    publisher.drain(timeout=5)
    assert sent and sent[-1] == (1, 11) and len(sent) <= 2


RING_AND_EXIT = """
import asyncio, django
django.setup()
from channels.layers import get_channel_layer
from tasks_app.live import bell
layer = get_channel_layer()
group_send = layer.group_send

async def slow_group_send(*args, **kwargs):
    await asyncio.sleep(0.3)  # Redis answering slowly
    await group_send(*args, **kwargs)

layer.group_send = slow_group_send
bell.ring(987654321, 42)  # the last change of a command commits; the process exits at once
"""


def test_a_process_that_rings_and_exits_at_once_still_sends_its_bell():
    """clean_tasks, expire_hitl or a bulk run rings as its last change commits, then exits: the bell
    still leaves (the publisher is drained at exit), so open pages hear of that change at once."""
    layer = get_channel_layer()
    org = 987654321

    async def listen():
        channel = await layer.new_channel()
        await layer.group_add(bell.bell_group(org), channel)
        try:
            env = {**os.environ, "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
            child = await asyncio.create_subprocess_exec(sys.executable, "-c", RING_AND_EXIT, env=env, cwd=BASE_DIR)
            assert await asyncio.wait_for(child.wait(), 60) == 0
            return await asyncio.wait_for(layer.receive(channel), 3)
        finally:
            await layer.group_discard(bell.bell_group(org), channel)

    assert asyncio.run(listen()) == bell.bell_message(org, 42)


def test_a_burst_of_bells_is_a_few_sends_ending_with_the_newest(monkeypatch):
    """A burst of writes rings other processes a few times (at most one send per
    COALESCE_SECONDS), and the last send names the newest event, so nothing is left unannounced."""
    publisher = bell.Publisher()
    sent = []

    async def send(organization_id, event_id):
        sent.append((organization_id, event_id))

    monkeypatch.setattr(publisher, "_send", send)
    began = time.monotonic()
    for event_id in range(1, 301):  # 300 writes within ~0.15 s, from two organizations
        publisher.enqueue(1 + event_id % 2, event_id)
        time.sleep(0.0005)
    elapsed = time.monotonic() - began
    publisher.drain(timeout=5)
    time.sleep(bell.COALESCE_SECONDS * 2)
    publisher.drain(timeout=5)
    per_org = {org: [e for o, e in sent if o == org] for org in (1, 2)}
    assert per_org[1][-1] == 300 and per_org[2][-1] == 299
    for ids in per_org.values():
        assert ids == sorted(ids)
        assert len(ids) <= elapsed / bell.COALESCE_SECONDS + 3, (len(ids), elapsed)
