"""Production topology: two daphne processes (DEBUG off, collectstatic done) behind nginx.

A change written through one process reaches the sockets held by the other, gap-free and in
order: each process hears the organization's bell once through Redis and reads the event log
itself. nginx forwards websocket upgrades and names the process behind every answer
(X-Upstream, docs/nginx.conf), so the test can check that both processes wrote and both held
sockets.
"""

import asyncio
import os
import re
import threading
import time

import httpx
import pytest
from django.conf import settings
from django.test import override_settings
from websockets.asyncio.client import connect

from tasks_app import services
from tasks_app.models import TaskEvent
from tests.conftest import requires_postgres, requires_redis
from tests.live_sockets import event_ids, session_cookie
from tests.servers import TEST_SECRET_KEY, Daphne, Nginx, collectstatic, production_env

pytestmark = [requires_postgres, requires_redis, pytest.mark.django_db(transaction=True)]

WRITERS = 8
WRITES_EACH = 25
LIST_SOCKETS = 4
DETAIL_SOCKETS = 2


@pytest.fixture(scope="module")
def cluster(django_db_setup, tmp_path_factory):
    if Nginx.binary() is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is missing: .ci/run installs it (apt-get install nginx-light)")
        pytest.skip("needs nginx (apt-get install nginx-light); CI installs it")
    work = tmp_path_factory.mktemp("production")
    env = production_env(
        STATIC_ROOT=str(work / "static"),
        REDIS_URL=settings.REDIS_URL,
        CHANNEL_PREFIX=f"prod{os.getpid()}",
        CACHE_PREFIX=f"prod{os.getpid()}",
        LIVE_IDLE_CHECK_SECONDS="30",  # bells, not the idle check, must carry this test
    )
    collectstatic(work / "static", env)
    servers = [Daphne(env, work, f"daphne{i}").start() for i in (1, 2)]
    proxy = Nginx([s.port for s in servers], work).start()
    try:
        yield proxy, servers
    finally:
        proxy.stop()
        for server in servers:
            server.stop()


def production_cookie(user) -> str:
    """A session cookie the servers accept: its auth hash is keyed by their SECRET_KEY."""
    with override_settings(SECRET_KEY=TEST_SECRET_KEY):
        return session_cookie(user)


@pytest.fixture
def setup(acme, alice, system_actor):
    token, raw = services.api_token_create(organization=acme, name="prod-writer")
    tasks = [
        services.task_create(organization=acme, actor=system_actor, id=f"prod-{i}", title=f"t{i}")[0] for i in range(4)
    ]
    return raw, tasks


def test_pages_and_static_files_are_served_with_debug_off(cluster, alice):
    proxy, _ = cluster
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        login = client.get("/login/")
        assert login.status_code == 200
        # The page links its CSS through the manifest (hashed names), which collectstatic wrote.
        assert b".css" in login.content
        href = re.search(r'href="/static/([^"]+\.css)"', login.text).group(1)
        static = client.get("/static/" + href)
        assert static.status_code == 200 and static.headers["content-type"].startswith("text/css")
        client.cookies.set("sessionid", production_cookie(alice).split("=", 1)[1])
        assert client.get("/tasks/").status_code == 200


def test_a_change_written_through_one_process_reaches_sockets_on_the_other(cluster, setup, acme, alice):
    proxy, _ = cluster
    raw, tasks = setup
    cookie = production_cookie(alice)
    start = TaskEvent.objects.filter(organization=acme).order_by("-id").values_list("id", flat=True).first()
    detail_task = tasks[0]
    ws_base = proxy.url.replace("http://", "ws://")
    write_upstreams: list[str] = []
    errors: list[str] = []

    def writer(n: int) -> None:
        with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {raw}"}, timeout=15) as client:
            for i in range(WRITES_EACH):
                task = tasks[(n + i) % len(tasks)]
                response = client.patch(
                    f"/api/v1/tasks/{task.public_id}", json={"metadata": {f"w{n}": i}, "priority": (n * 7 + i) % 101}
                )
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")
                write_upstreams.append(response.headers.get("x-upstream", ""))

    async def run():
        headers = {"Cookie": cookie}
        origin = proxy.url
        sockets = []
        for _ in range(LIST_SOCKETS):
            ws = await connect(
                f"{ws_base}/ws/tasks/?after={acme.pk}:{start}", origin=origin, additional_headers=headers
            )
            sockets.append(("list", ws))
        for _ in range(DETAIL_SOCKETS):
            ws = await connect(
                f"{ws_base}/ws/tasks/acme/{detail_task.public_id}/?after={start}",
                origin=origin,
                additional_headers=headers,
            )
            sockets.append(("detail", ws))
        # The writers start once every socket is registered (a round trip through each process).
        await asyncio.sleep(0.5)
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
        for thread in threads:
            thread.start()
        await asyncio.get_running_loop().run_in_executor(None, lambda: [t.join() for t in threads])

        expected_all = await asyncio.to_thread(_org_event_ids, acme.pk, start)
        expected_detail = await asyncio.to_thread(_task_event_ids, detail_task.pk, start)
        received = []
        for kind, ws in sockets:
            want = expected_all if kind == "list" else expected_detail
            ids = await _receive_until(ws, want[-1], timeout=20)
            received.append((ws.response.headers.get("x-upstream", ""), kind, ids))
            await ws.close()
        return received, expected_all, expected_detail

    received, expected_all, expected_detail = asyncio.run(run())

    assert not errors, errors[:5]
    assert len(expected_all) == WRITERS * WRITES_EACH
    # Both processes took writes, and both held sockets: the events crossed processes.
    assert len(set(write_upstreams)) == 2, set(write_upstreams)
    assert len({upstream for upstream, _, _ in received}) == 2, [u for u, _, _ in received]
    for upstream, kind, ids in received:
        want = expected_all if kind == "list" else expected_detail
        assert ids == want, (
            f"{kind} socket on {upstream}: missing {sorted(set(want) - set(ids))[:10]}, order ok: {ids == sorted(ids)}"
        )


def _org_event_ids(org_pk: int, after: int) -> list[int]:
    from django.db import close_old_connections

    try:
        return list(
            TaskEvent.objects.filter(organization_id=org_pk, id__gt=after).order_by("id").values_list("id", flat=True)
        )
    finally:
        close_old_connections()


def _task_event_ids(task_pk: int, after: int) -> list[int]:
    from django.db import close_old_connections

    try:
        return list(TaskEvent.objects.filter(task_id=task_pk, id__gt=after).order_by("id").values_list("id", flat=True))
    finally:
        close_old_connections()


async def _receive_until(ws, last_id: int, timeout: float) -> list[int]:
    """The event ids the socket pushed (each once, in arrival order) until it had `last_id`."""
    ids: list[int] = []
    deadline = time.monotonic() + timeout
    while not ids or ids[-1] < last_id:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            message = await asyncio.wait_for(ws.recv(), remaining)
        except TimeoutError:
            break
        for event_id in event_ids(message if isinstance(message, str) else message.decode()):
            if not ids or event_id != ids[-1]:
                ids.append(event_id)
    return ids


def test_a_fragment_larger_than_64_kib_reaches_two_sockets_of_one_process_intact(cluster, setup, acme, alice):
    """Two detail sockets on one process share one pre-built frame (live.wire); its 64-bit length
    form and the partial sends a 100 KiB frame needs arrive whole, through nginx."""
    _, servers = cluster
    raw, tasks = setup
    task = tasks[1]
    cookie = production_cookie(alice)
    server = servers[0]
    ws_base = server.url.replace("http://", "ws://")
    big = "é" * 45_000 + "<script>alert(1)</script>"  # 90 KB of UTF-8, and markup that must arrive escaped
    start = TaskEvent.objects.filter(task=task).order_by("-id").values_list("id", flat=True).first()

    async def run():
        sockets = [
            await connect(
                f"{ws_base}/ws/tasks/acme/{task.public_id}/?after={start}",
                origin=server.url,
                additional_headers={"Cookie": cookie},
                max_size=None,
            )
            for _ in range(2)
        ]
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {raw}"}) as client:
            response = await client.patch(f"/api/v1/tasks/{task.public_id}", json={"result": big})
            assert response.status_code == 200, response.text[:300]
        texts = []
        for ws in sockets:
            text = ""
            while "é" * 1000 not in text:
                message = await asyncio.wait_for(ws.recv(), 20)
                text = message if isinstance(message, str) else message.decode()
            texts.append(text)
            await ws.close()
        return texts

    texts = asyncio.run(run())
    assert len(texts[0].encode()) > 65536
    assert texts[0] == texts[1]
    assert "<script>alert(1)</script>" not in texts[0] and "&lt;script&gt;" in texts[0]
