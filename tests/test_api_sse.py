"""Server-sent events: the replay loop itself, and a real daphne stream with Last-Event-ID."""

import asyncio
import json
import time

import httpx
import pytest
from asgiref.sync import sync_to_async

from tasks_app.api.sse import event_stream, format_jsonrpc, format_native
from tasks_app.models import Organization, Task, TaskEvent
from tasks_app.services import Actor, api_token_create, api_token_revoke, append_activity, task_create, task_update

pytestmark = pytest.mark.django_db(transaction=True)


def _make_events(org: Organization, prefix: str, count: int) -> list[int]:
    actor = Actor.system("test")
    task, _ = task_create(organization=org, actor=actor, id=f"{prefix}-task", title=prefix)
    for priority in range(count - 1):
        task_update(task=task, actor=actor, priority=priority)
    return list(TaskEvent.objects.filter(task=task).order_by("id").values_list("id", flat=True))


async def _take(stream, count: int) -> list:
    return [await anext(stream) for _ in range(count)]


@pytest.fixture
async def fresh_hub(settings):
    """The stream loop called directly, on this test's event loop, with the in-process layer.

    These tests exercise the loop itself (bells from this process reach its hub directly); the
    Redis path is covered by the daphne tests below. Without a Redis listener task on the test's
    loop, nothing is left to cancel when pytest-asyncio closes it (a channels_redis receive being
    cancelled at loop teardown could hang the run).
    """
    from channels.layers import channel_layers

    from tasks_app.live.hub import reset_hub_for_running_loop

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    yield
    await reset_hub_for_running_loop()
    channel_layers.backends.clear()


# --- The loop, called directly ------------------------------------------------------------


async def test_the_stream_replays_exactly_what_came_after(acme, globex, fresh_hub):
    ids = await sync_to_async(_make_events)(acme, "a", 5)
    await sync_to_async(_make_events)(globex, "g", 3)
    stream = event_stream(acme.pk, ids[1], heartbeat=60, poll=0.05)
    try:
        replayed = await _take(stream, 3)
        assert [e.pk for e in replayed] == ids[2:]
        assert {e.organization_id for e in replayed} == {acme.pk}
        # A new event arrives on the open stream.
        more = await sync_to_async(_make_events)(acme, "b", 1)
        assert (await anext(stream)).pk == more[0]
    finally:
        await stream.aclose()


async def test_the_stream_sends_heartbeats_when_idle(acme, fresh_hub):
    ids = await sync_to_async(_make_events)(acme, "a", 1)
    stream = event_stream(acme.pk, ids[-1], heartbeat=0.1, poll=0.02)
    try:
        assert await anext(stream) is None
        assert await anext(stream) is None
    finally:
        await stream.aclose()


async def test_the_stream_can_follow_one_task(acme, fresh_hub):
    first = await sync_to_async(_make_events)(acme, "a", 2)
    second = await sync_to_async(_make_events)(acme, "b", 2)
    # The loop follows a task by its internal key (the face resolved the public id already).
    b_task = await Task.objects.aget(organization=acme, public_id="b-task")
    stream = event_stream(acme.pk, 0, task_pk=b_task.pk, heartbeat=60, poll=0.05)
    try:
        assert [e.pk for e in await _take(stream, 2)] == second
    finally:
        await stream.aclose()
    assert not set(first) & set(second)


async def test_native_and_jsonrpc_frames(acme, fresh_hub):
    ids = await sync_to_async(_make_events)(acme, "a", 2)
    stream = event_stream(acme.pk, ids[0], heartbeat=60, poll=0.05)
    try:
        event = await anext(stream)
    finally:
        await stream.aclose()
    native = format_native(event)
    lines = native.split("\n")
    assert lines[0] == f"id: {event.pk}" and lines[1] == "event: task.updated" and native.endswith("\n\n")
    data = json.loads(lines[2].removeprefix("data: "))
    assert data["changes"] == ["priority"] and data["task_id"] == "a-task"
    seed_shape = json.loads(format_jsonrpc(event).split("\n")[2].removeprefix("data: "))
    assert seed_shape["metadata"] == {"updatedBy": "test", "changes": ["priority"]}
    assert seed_shape["payload"]["id"] == "a-task"


# --- A real server ------------------------------------------------------------------------


def _read_events(lines, count: int) -> list[dict]:
    """Read `count` SSE messages (skipping comments) from a line iterator; returns [{id, event, data}]."""
    messages, current = [], {}
    for line in lines:
        if line.startswith(":"):
            continue
        if line == "":
            if current:
                messages.append(current)
                current = {}
                if len(messages) == count:
                    return messages
            continue
        name, _, value = line.partition(": ")
        current[name] = value
    return messages


def _read_until_ping(lines) -> list[str]:
    """Lines up to the first heartbeat after the opening comment."""
    seen = []
    for line in lines:
        if line == ": ping":
            return seen
        seen.append(line)
    return seen


def test_a_client_that_reconnects_with_last_event_id_gets_exactly_what_it_missed(daphne_server, acme, globex):
    _, raw = api_token_create(organization=acme, name="watcher")
    headers = {"Authorization": f"Bearer {raw}"}
    actor = Actor.system("test")
    task, _ = task_create(organization=acme, actor=actor, id="live-1", title="live")
    timeout = httpx.Timeout(10.0)
    url = f"{daphne_server}/api/v1/events"

    with httpx.Client(timeout=timeout) as http:
        with http.stream("GET", url, headers=headers, params={"heartbeat": 1}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            http.patch(f"{daphne_server}/api/v1/tasks/live-1", json={"priority": 11}, headers=headers)
            http.patch(f"{daphne_server}/api/v1/tasks/live-1", json={"priority": 12}, headers=headers)
            received = _read_events(stream.iter_lines(), 1)
        # Disconnected after one event: one more was sent, and two happen while away.
        task_update(task="live-1", organization_id=acme.pk, actor=actor, priority=13)
        task_update(task="live-1", organization_id=acme.pk, actor=actor, title="renamed")
        last_seen = int(received[0]["id"])
        missed = list(TaskEvent.objects.filter(task=task, id__gt=last_seen).values_list("id", flat=True))
        assert len(missed) == 3

        resume = {**headers, "Last-Event-ID": str(last_seen)}
        with http.stream("GET", url, headers=resume, params={"heartbeat": 1}) as stream:
            lines = stream.iter_lines()
            replayed = _read_events(lines, 3)
            # Nothing beyond the missed events: the next thing on the wire is a heartbeat.
            assert [line for line in _read_until_ping(lines) if line.startswith("id:")] == []
        assert [int(m["id"]) for m in replayed] == missed
        assert [json.loads(m["data"])["id"] for m in replayed] == missed
        assert received[0]["event"] == "task.updated"
        assert json.loads(received[0]["data"])["actor"] == "token:watcher"

        # The same replay in seed 002's event shape.
        with http.stream("GET", url, headers=resume, params={"heartbeat": 1, "format": "jsonrpc"}) as stream:
            first = _read_events(stream.iter_lines(), 1)[0]
        assert int(first["id"]) == missed[0]
        assert json.loads(first["data"])["metadata"] == {"updatedBy": "token:watcher", "changes": ["priority"]}

        # The server still serves after the client went away mid-stream.
        assert http.get(f"{daphne_server}/api/v1/tasks/live-1", headers=headers).json()["title"] == "renamed"


def test_the_http_stream_goes_on_past_an_activity_entry_in_both_formats(daphne_server, acme):
    # An activity event carries no snapshot of its own: formatting it reads the database, which
    # the stream must do off the event loop (it used to end the stream at the first entry).
    _, raw = api_token_create(organization=acme, name="watcher")
    headers = {"Authorization": f"Bearer {raw}"}
    actor = Actor.system("test")
    task, _ = task_create(organization=acme, actor=actor, id="chatty", title="chatty")
    append_activity(task=task, actor=actor, entries=[{"kind": "message", "role": "agent", "content": "step 1"}])
    task_update(task=task, actor=actor, priority=77)
    expected = list(TaskEvent.objects.filter(task=task).order_by("id").values_list("id", "type"))
    assert [kind for _, kind in expected] == ["task.created", "task.activity", "task.updated"]
    with httpx.Client(timeout=httpx.Timeout(10.0)) as http:
        for fmt in ("native", "jsonrpc"):
            params = {"heartbeat": 1, "format": fmt, "after": 0}
            with http.stream("GET", f"{daphne_server}/api/v1/events", headers=headers, params=params) as stream:
                received = _read_events(stream.iter_lines(), 3)
            assert [int(m["id"]) for m in received] == [pk for pk, _ in expected], fmt
    assert json.loads(received[2]["data"])["payload"]["priority"] == 77


def test_sse_refuses_missing_tokens_and_other_organizations_tasks(daphne_server, acme, globex):
    _, acme_raw = api_token_create(organization=acme, name="acme")
    _, globex_raw = api_token_create(organization=globex, name="globex")
    task_create(organization=acme, actor=Actor.system(), id="secret", title="acme only")
    url = f"{daphne_server}/api/v1/events"
    with httpx.Client(timeout=10.0) as http:
        assert http.get(url).status_code == 401
        assert http.get(url, headers={"x-api-key": "td_nope"}).status_code == 401
        other = http.get(url, params={"task_id": "secret"}, headers={"Authorization": f"Bearer {globex_raw}"})
        assert other.status_code == 404
        bad = http.get(url, headers={"Authorization": f"Bearer {acme_raw}", "Last-Event-ID": "yesterday"})
        assert bad.status_code == 422
        # Replaying globex's whole log shows none of acme's events.
        resume = {"Authorization": f"Bearer {globex_raw}", "Last-Event-ID": "0"}
        with http.stream("GET", url, headers=resume, params={"heartbeat": 1}) as stream:
            assert [line for line in _read_until_ping(stream.iter_lines()) if line.startswith("id:")] == []


# --- Woken by the bell, ended by a revocation ------------------------------------------------


async def test_a_new_event_wakes_the_stream_without_polling(acme, settings, fresh_hub):
    settings.LIVE_IDLE_CHECK_SECONDS = 120  # neither the idle check nor the poll can deliver in time
    ids = await sync_to_async(_make_events)(acme, "a", 1)
    stream = event_stream(acme.pk, ids[-1], heartbeat=60, poll=120)
    try:
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.3)  # the stream is asleep on its listener now
        assert not waiting.done()
        began = time.monotonic()
        more = await sync_to_async(_make_events)(acme, "b", 1)
        event = await asyncio.wait_for(waiting, 5)
        assert event.pk == more[0]
        assert time.monotonic() - began < 2
    finally:
        await stream.aclose()


async def test_revoking_the_token_ends_its_stream_within_seconds(acme, settings, fresh_hub):
    settings.LIVE_CREDENTIALS_CHECK_SECONDS = 0.2
    token, _ = await sync_to_async(api_token_create)(organization=acme, name="soon-revoked")
    ids = await sync_to_async(_make_events)(acme, "a", 1)
    stream = event_stream(acme.pk, ids[-1], heartbeat=0.5, poll=0.5, token=token)
    assert await anext(stream) is None  # open, idle: a heartbeat
    await sync_to_async(api_token_revoke)(token=token)
    began = time.monotonic()
    with pytest.raises(StopAsyncIteration):
        while time.monotonic() - began < 5:
            await anext(stream)
    assert time.monotonic() - began < 3


def test_a_revoked_token_ends_the_http_stream(daphne_server, acme):
    token, raw = api_token_create(organization=acme, name="revoked-over-http")
    with httpx.Client(timeout=httpx.Timeout(15.0)) as http:
        url = f"{daphne_server}/api/v1/events"
        with http.stream("GET", url, headers={"Authorization": f"Bearer {raw}"}, params={"heartbeat": 1}) as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            api_token_revoke(token=token)
            began = time.monotonic()
            for _line in lines:  # pings, until the server ends the stream
                assert time.monotonic() - began < 12, "the stream outlived its token"
        assert time.monotonic() - began < 12
        # And the token is refused from now on.
        assert http.get(url, headers={"Authorization": f"Bearer {raw}"}).status_code == 401


def test_every_format_shows_the_task_as_it_was_at_each_event_on_replay(acme):
    from tasks_app.api.agentex import render_event as agentex_frames
    from tasks_app.api.jsonrpc import event_message
    from tasks_app.api.sse import event_data
    from tasks_app.api.xpander import render_event as xpander_frames
    from tasks_app.services import append_activity

    actor = Actor.system("test")
    task, _ = task_create(organization=acme, actor=actor, id="then", title="as created", priority=10)
    task_update(task=task, actor=actor, status="executing", priority=20)
    append_activity(task=task, actor=actor, entries=[{"kind": "message", "role": "agent", "content": "hi"}])
    task_update(task=task, actor=actor, status="completed", result="done", title="renamed later")
    created, started, activity, finished = TaskEvent.objects.filter(task=task).order_by("id")

    def native(event):
        return event_data(event)["task"]

    assert (native(created)["status"], native(created)["priority"], native(created)["title"]) == (
        "pending",
        10,
        "as created",
    )
    assert native(created)["result"] is None and native(created)["started_at"] is None
    assert (native(started)["status"], native(activity)["status"]) == ("executing", "executing")
    assert (native(finished)["status"], native(finished)["title"]) == ("completed", "renamed later")

    assert event_message(created)["payload"]["status"] == "pending"
    assert event_message(started)["payload"]["priority"] == 20

    def data_of(frames):
        return [json.loads(frame.split("data: ", 1)[1]) for frame in frames[0]]

    assert data_of(xpander_frames(created))[0]["data"]["status"] == "pending"
    assert data_of(xpander_frames(started))[0]["data"]["status"] == "executing"
    assert data_of(agentex_frames(started))[0]["task"]["status"] == "RUNNING"
    assert data_of(agentex_frames(finished))[0]["task"]["status"] == "COMPLETED"
    assert agentex_frames(finished)[1] is True and agentex_frames(started)[1] is False


def test_an_xpander_event_lists_the_sub_tasks_that_existed_then(acme):
    from tasks_app.api.xpander import render_event

    actor = Actor.system("test")
    parent, _ = task_create(organization=acme, actor=actor, id="parent", title="p")
    created = TaskEvent.objects.get(task=parent, type="task.created")
    task_create(organization=acme, actor=actor, id="child", title="c", parent_id="parent")
    task_update(task=parent, actor=actor, priority=7)
    later = TaskEvent.objects.filter(task=parent).latest("id")

    def subs(event):
        return json.loads(render_event(event)[0][0].split("data: ", 1)[1])["data"]["sub_executions"]

    assert subs(created) == [] and subs(later) == ["child"]
