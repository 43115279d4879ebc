"""Presence across two daphne processes through Redis: alice's page on one process sees bob's
page on the other, and what he edits; when bob's process dies (SIGKILL: no close, no last word)
he disappears from alice's page within seconds."""

import asyncio
import json
import os
import re
import time

import pytest
from django.conf import settings
from websockets.asyncio.client import connect

from tasks_app import services
from tests.conftest import requires_postgres, requires_redis
from tests.servers import Daphne, production_env
from tests.test_production import production_cookie

pytestmark = [requires_postgres, requires_redis, pytest.mark.django_db(transaction=True)]

PERSON = re.compile(r'data-name="([^"]*)" data-editing="([^"]*)"')
TTL = 2.0


@pytest.fixture
def servers(django_db_setup, tmp_path):
    env = production_env(
        DEBUG="true",  # pages need no collected static files; the sockets are the same
        REDIS_URL=settings.REDIS_URL,
        CHANNEL_PREFIX=f"presence{os.getpid()}",
        CACHE_PREFIX=f"presence{os.getpid()}",
        LIVE_PRESENCE_TTL_SECONDS=str(TTL),
    )
    started = [Daphne(env, tmp_path, f"daphne{i}").start() for i in (1, 2)]
    try:
        yield started
    finally:
        for server in started:
            server.stop()


async def people_until(ws, until, timeout: float = 10.0) -> list[tuple[str, str]]:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            frame = await asyncio.wait_for(ws.recv(), max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        if 'id="presence"' in frame:
            last = PERSON.findall(frame)
            if until(last):
                return last
    raise AssertionError(f"no #presence frame matched; last people seen: {last}")


async def beats(ws, editing=None) -> None:
    while True:
        await ws.send(json.dumps({"presence": {"editing": editing}}))
        await asyncio.sleep(0.5)


def test_two_processes_show_each_other_and_a_dead_process_drops_out(servers, acme, alice, bob, system_actor):
    task, _ = services.task_create(organization=acme, actor=system_actor, id="p-1", title="shared")
    first, second = servers
    cookies = {user.username: production_cookie(user) for user in (alice, bob)}

    async def scenario():
        def socket(server, user):
            url = server.url.replace("http://", "ws://") + f"/ws/tasks/acme/{task.public_id}/?after=999999"
            return connect(url, origin=server.url, additional_headers={"Cookie": cookies[user]})

        async with socket(first, "alice") as alice_ws:
            alice_beats = asyncio.create_task(beats(alice_ws))
            try:
                bob_ws = await socket(second, "bob")
                bob_beats = asyncio.create_task(beats(bob_ws, "result"))
                seen = await people_until(alice_ws, lambda people: people == [("bob", "result")])
                assert await people_until(bob_ws, lambda people: people == [("alice", "")]) == [("alice", "")]
                bob_beats.cancel()
                # Bob's process dies: no close frame, no leave, no more rosters from it.
                second.proc.kill()
                second.proc.wait(timeout=10)
                killed = time.monotonic()
                gone = await people_until(alice_ws, lambda people: people == [], timeout=TTL + 6)
                return seen, gone, time.monotonic() - killed
            finally:
                alice_beats.cancel()

    seen, gone, after = asyncio.run(scenario())
    assert seen == [("bob", "result")]
    assert gone == []
    assert after < TTL + 3  # the roster's expiry and one sweep
