"""ClaudeBench's WebSocket transport at /ws (tasks_app/api/jsonrpc_ws.py) on a real daphne: agents
connect with their API key header, subscribe to event patterns, run JSON-RPC requests with
`execute`, and read every event of their organization as upstream's `{"type": "event"}` frames.
"""

import itertools
import json
import time
import uuid

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tasks_app.models import ApiToken, EventType, TaskEvent
from tasks_app.services import api_token_create, api_token_revoke

from .clients_conftest import face_world_fixture  # noqa: F401
from .live_sockets import session_cookie
from .test_claudebench_worker import ClaudeBenchClient

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 15  # seconds: generous for a loaded machine; every wait ends as soon as its frame arrives


def ws_url(base: str, query: str = "") -> str:
    return base.replace("http://", "ws://", 1) + "/ws" + query


class Socket:
    """A ClaudeBench client's /ws socket: events are set aside while it waits for an answer."""

    def __init__(self, base: str, token: str | None, *, query: str = "", origin: str | None = None, headers=None):
        headers = dict(headers or {})
        if token is not None:
            headers["X-API-Key"] = token
        self.ws = connect(ws_url(base, query), origin=origin, additional_headers=headers, proxy=None, open_timeout=WAIT)
        self.events: list[dict] = []
        self.ids = itertools.count(1)
        self.welcome = self.next()

    def send(self, body) -> None:
        self.ws.send(body if isinstance(body, (str, bytes)) else json.dumps(body))

    def next(self, timeout: float = WAIT) -> dict:
        return json.loads(self.ws.recv(timeout=timeout))

    def answer(self, timeout: float = WAIT) -> dict:
        """The next frame that is not an event."""
        while True:
            frame = self.next(timeout)
            if frame.get("type") != "event":
                return frame
            self.events.append(frame)

    def ask(self, body) -> dict:
        self.send(body)
        return self.answer()

    def subscribe(self, *patterns: str) -> dict:
        return self.ask({"action": "subscribe", "events": list(patterns)})

    def execute(self, method: str, params: dict) -> dict:
        request = {
            "jsonrpc": "2.0",
            "method": method,
            "params": params,
            "id": f"ws-{next(self.ids)}",
            "metadata": {"sessionId": "s-1", "correlationId": str(uuid.uuid4()), "timestamp": int(time.time() * 1000)},
        }
        response = self.ask({"action": "execute", "request": request})
        assert response["id"] == request["id"] and "error" not in response, response
        return response["result"]

    def read_events(self, count: int, timeout: float = WAIT) -> list[dict]:
        """The event frames received, once `count` of them came."""
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            frame = self.next(max(0.1, deadline - time.monotonic()))
            assert frame["type"] == "event", frame
            self.events.append(frame)
        return self.events

    def quiet(self, seconds: float = 1.0) -> list[dict]:
        """Frames that arrive within `seconds` (none, when nothing more is due)."""
        frames = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                frames.append(self.next(left))
            except TimeoutError:
                break
        return frames

    def close_code(self, timeout: float = WAIT) -> int | None:
        """Reads until the server closes the socket; its close code."""
        try:
            while True:
                self.ws.recv(timeout=timeout)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None

    def close(self) -> None:
        self.ws.close()


def log_of(organization, after: int = 0) -> list[TaskEvent]:
    return list(TaskEvent.objects.filter(organization=organization, pk__gt=after).order_by("pk"))


def refused(base: str, token: str | None, **kwargs) -> int:
    with pytest.raises(InvalidStatus) as refusal:
        Socket(base, token, **kwargs)
    return refusal.value.response.status_code


class SocketWorker:
    """A worker written from ClaudeBench's docs (websocket-events.md, task/claim.md): connected to
    /ws, subscribed to `task.*`; each task.created event sends it to claim and work through the
    queue, every call an `execute` on the same socket."""

    def __init__(self, socket: Socket, worker_id: str):
        self.socket = socket
        self.worker_id = worker_id
        self.done: list[dict] = []

    def start(self) -> None:
        assert self.socket.subscribe("task.*")["events"] == ["task.*"]
        assert self.socket.execute("system.register", {"id": self.worker_id, "roles": ["worker"]}) == {
            "registered": True
        }

    def drain_queue(self) -> None:
        while True:
            assert self.socket.execute("system.heartbeat", {"instanceId": self.worker_id}) == {"alive": True}
            claim = self.socket.execute("task.claim", {"workerId": self.worker_id})
            if not claim["claimed"]:
                return
            task = claim["task"]
            params = {"taskId": task["id"], "workerId": self.worker_id}
            if not (task["metadata"] or {}).get("impossible"):
                params["result"] = {"summary": f"did: {task['text']}"}
            self.done.append(self.socket.execute("task.complete", params))

    def run_until(self, tasks: int) -> None:
        seen = 0
        while len(self.done) < tasks:
            # Wait for the next task.created nudge (they may have come while answering calls).
            while seen >= len(self.socket.events):
                self.socket.read_events(len(self.socket.events) + 1)
            event = self.socket.events[seen]
            seen += 1
            if event["event"] == "task.created":
                self.drain_queue()


def test_a_worker_on_the_socket_gets_every_event_of_its_organization_in_order(face_world):
    worker = SocketWorker(Socket(face_world.url, face_world.acme_token), "ws-worker-1")
    assert worker.socket.welcome["type"] == "connected" and worker.socket.welcome["clientId"].startswith("ws-")
    assert isinstance(worker.socket.welcome["timestamp"], int)
    worker.start()
    completions = Socket(face_world.url, face_world.acme_token)  # an exact pattern: only these arrive
    assert completions.subscribe("task.completed")["type"] == "subscribed"

    producer = ClaudeBenchClient(face_world.url, face_world.acme_token)
    created = [
        producer.call("task.create", {"text": "Review queries", "priority": 75}),
        producer.call("task.create", {"text": "Fly to the moon", "priority": 20, "metadata": {"impossible": True}}),
    ]
    outsider = ClaudeBenchClient(face_world.url, face_world.globex_token)
    outsider.call("task.create", {"text": "globex work", "id": "globex-1"})
    worker.run_until(2)
    # A third task, created through the socket itself, while the worker listens.
    created.append(worker.socket.execute("task.create", {"text": "Late one", "priority": 50}))
    worker.run_until(3)

    assert [d["status"] for d in worker.done] == ["completed", "failed", "completed"]
    log = log_of(face_world.acme)
    frames = worker.socket.read_events(len(log))
    assert [f["id"] for f in frames] == [e.pk for e in log]  # every event of the organization, in order
    assert worker.socket.quiet() == []  # and nothing else (globex's task among them)
    assert all(list(f) == ["type", "event", "data", "timestamp", "id"] for f in frames)
    assert all(f["event"] == f["data"]["type"] and f["data"]["id"] == f["id"] for f in frames)
    assert all(set(f["data"]) == {"type", "payload", "metadata", "timestamp", "id"} for f in frames)

    a, b, c = (t["id"] for t in created)
    by_type = [(f["event"], f["data"]["payload"].get("id") or f["data"]["payload"].get("taskId")) for f in frames]
    assert by_type == [
        ("task.created", a),
        ("task.created", b),
        ("task.claimed", a),
        ("task.completed", a),
        ("task.claimed", b),
        ("task.completed", b),
        ("task.created", c),
        ("task.claimed", c),
        ("task.completed", c),
    ]
    first = frames[0]["data"]
    assert first["payload"]["text"] == "Review queries" and first["payload"]["status"] == "pending"
    assert first["metadata"] == {"createdBy": "token:agent-one"}
    assert frames[2]["data"]["payload"] == {"taskId": a, "workerId": "ws-worker-1"}
    done = frames[3]["data"]["payload"]
    assert set(done) == {"id", "status", "duration"} and done["status"] == "completed" and done["duration"] >= 0
    assert frames[5]["data"]["payload"]["status"] == "failed"

    completed = completions.read_events(3)
    assert [f["id"] for f in completed] == [e.pk for e in log if e.type == EventType.COMPLETED]
    assert completions.quiet(0.5) == []
    for socket in (worker.socket, completions):
        socket.close()


def test_the_handshake_needs_a_token_and_no_foreign_origin(face_world, django_user_model):
    url = face_world.url
    assert refused(url, None) == 403
    assert refused(url, "td_not-a-token") == 403
    assert refused(url, face_world.revoked_token) == 403
    assert refused(url, face_world.acme_token, origin="http://evil.example") == 403
    assert refused(url, face_world.acme_token, origin=url.replace("127.0.0.1", "localhost")) == 403
    assert refused(url, face_world.acme_token, query="?after=soon") == 403
    # A signed-in person's session cookie opens nothing here: only a token does.
    person = django_user_model.objects.create_user(username="alice", password="x")
    assert refused(url, None, headers={"Cookie": session_cookie(person)}) == 403

    for good in (
        Socket(url, face_world.acme_token),  # an agent: no Origin header at all
        Socket(url, face_world.acme_token, origin=url),  # a page of the site itself may, with a token
        Socket(url, None, headers={"Authorization": f"Bearer {face_world.acme_token}"}),
    ):
        assert good.welcome["type"] == "connected"
        assert good.ask({"action": "ping"})["type"] == "pong"
        good.close()


def test_another_organizations_events_never_arrive(face_world):
    acme, globex = Socket(face_world.url, face_world.acme_token), Socket(face_world.url, face_world.globex_token)
    for socket in (acme, globex):
        assert socket.subscribe("*")["events"] == ["*"]
    # The same task id in both organizations: neither socket can tell the other's exists.
    acme.execute("task.create", {"text": "ours", "id": "shared-1"})
    globex.execute("task.create", {"text": "theirs", "id": "shared-1"})
    globex.execute("task.update", {"id": "shared-1", "updates": {"priority": 90}})
    acme.execute("task.update", {"id": "shared-1", "updates": {"text": "still ours"}})

    for socket, org in ((acme, face_world.acme), (globex, face_world.globex)):
        log = log_of(org)
        assert [f["id"] for f in socket.read_events(len(log))] == [e.pk for e in log]
        assert socket.quiet() == []
    assert [f["data"]["payload"]["text"] for f in acme.events] == ["ours", "still ours"]
    assert [f["event"] for f in globex.events] == ["task.created", "task.updated"]
    assert globex.events[1]["data"]["payload"]["priority"] == 90
    acme.close()
    globex.close()


BAD_FRAMES = [
    ("not json", -32603),
    ('{"action": "fly"}', -32602),
    ('{"type": "subscribe", "events": ["task.*"]}', -32602),  # the guide's `type`: upstream refuses it too
    ('{"action": "subscribe"}', -32602),
    ('{"action": "subscribe", "events": "task.*"}', -32602),
    ('{"action": "subscribe", "events": [1]}', -32602),
    ('{"action": "unsubscribe", "events": [""]}', -32602),
    ('["action", "ping"]', -32602),
    ('{"action": "execute"}', -32602),
    ('{"action": "execute", "request": [{"jsonrpc": "2.0", "method": "task.list", "id": 1}]}', -32602),
    ('{"action": "ping", "deep": ' + "[" * 200 + "]" * 200 + "}", -32603),
    ('{"action": "execute", "request": {"jsonrpc": "2.0", "method": "task.create", '
     '"params": {"text": "x", "priority": NaN}, "id": 1}}', -32602),
    ('{"action": "ping", "x": Infinity}', -32602),
    ('{"action": "subscribe", "events": ["task.\\u0000"]}', -32602),
    (b'{"action": "ping"}', -32602),  # a binary frame
]  # fmt: skip


def test_bad_input_gets_an_error_frame_and_the_socket_stays_usable(face_world):
    socket = Socket(face_world.url, face_world.acme_token)
    for frame, code in BAD_FRAMES:
        error = socket.ask(frame)
        assert error["type"] == "error" and error["error"]["code"] == code, (frame, error)
        assert error["error"]["message"] and isinstance(error["timestamp"], int)
        assert socket.ask({"action": "ping"})["type"] == "pong", frame

    # Inside `execute`, the JSON-RPC layer answers as /rpc does, with the request's id.
    def request(method, params, request_id=7):
        body = {"jsonrpc": "2.0", "method": method, "params": params}
        if request_id is not None:
            body["id"] = request_id
        return {"action": "execute", "request": body}

    invalid = socket.ask(request("task.create", {"priority": 5}))
    assert (invalid["id"], invalid["error"]["code"], invalid["error"]["message"]) == (7, -32602, "Invalid params")
    assert socket.ask(request("task.fly", {}, "x"))["error"]["code"] == -32601
    assert socket.ask(request("task.complete", {"id": "nope"}, 8))["error"]["message"] == "Task not found: nope"
    wrong = socket.ask({"action": "execute", "request": {"jsonrpc": "1.0", "method": "task.list", "id": 9}})
    assert (wrong["id"], wrong["error"]["code"]) == (9, -32600)
    socket.send(request("task.create", {"text": "a notification"}, None))  # run, never answered
    assert socket.ask({"action": "ping"})["type"] == "pong"
    assert log_of(face_world.acme)[-1].task.title == "a notification"

    # Unsubscribing stops what it named; upstream echoes the patterns asked for.
    assert socket.subscribe("task.created", "task.updated")["events"] == ["task.created", "task.updated"]
    unsubscribed = socket.ask({"action": "unsubscribe", "events": ["task.created"]})
    assert (unsubscribed["type"], unsubscribed["events"]) == ("unsubscribed", ["task.created"])
    task = socket.execute("task.create", {"text": "not announced"})
    socket.execute("task.update", {"id": task["id"], "updates": {"priority": 60}})
    (update,) = socket.read_events(1)
    assert update["event"] == "task.updated" and update["data"]["payload"]["priority"] == 60
    assert socket.quiet(0.5) == []
    socket.close()


def test_after_replays_what_a_socket_missed(face_world):
    producer = ClaudeBenchClient(face_world.url, face_world.acme_token)
    producer.call("task.create", {"text": "before anyone listened"})
    first = Socket(face_world.url, face_world.acme_token)
    first.subscribe("task.*")
    producer.call("task.create", {"text": "one"})
    (seen,) = first.read_events(1)
    assert seen["data"]["payload"]["text"] == "one"  # from the subscription on, not before it
    first.close()

    missed = producer.call("task.create", {"text": "two"})
    producer.call("task.update", {"id": missed["id"], "updates": {"priority": 99}})
    back = Socket(face_world.url, face_world.acme_token, query=f"?after={seen['id']}")
    back.subscribe("task.*")
    log = log_of(face_world.acme, after=seen["id"])
    assert [f["id"] for f in back.read_events(2)] == [e.pk for e in log]
    assert [f["event"] for f in back.events] == ["task.created", "task.updated"]
    producer.call("task.create", {"text": "three"})  # then it is live
    assert back.read_events(3)[2]["data"]["payload"]["text"] == "three"
    back.close()

    everything = Socket(face_world.url, face_world.acme_token, query="?after=0")
    everything.subscribe("task.created")
    texts = [f["data"]["payload"]["text"] for f in everything.read_events(4)]
    assert texts == ["before anyone listened", "one", "two", "three"]
    assert everything.quiet(0.5) == []
    everything.close()


def test_revoking_the_token_ends_its_sockets(face_world):
    token, raw = api_token_create(organization=face_world.acme, name="short-lived")
    listening = Socket(face_world.url, raw)
    listening.subscribe("task.*")
    idle = Socket(face_world.url, raw)  # never subscribed: its next execute finds out
    assert idle.execute("task.list", {})["totalCount"] == 0

    api_token_revoke(token=ApiToken.objects.get(pk=token.pk))
    assert listening.close_code() == 4401
    deadline = time.monotonic() + WAIT
    code = None
    while code is None and time.monotonic() < deadline:
        try:
            idle.send({"action": "execute", "request": {"jsonrpc": "2.0", "method": "task.list", "id": 1}})
            assert idle.next()["result"]["totalCount"] == 0  # this process's token cache, a few seconds
            time.sleep(0.5)
        except ConnectionClosed as exc:
            code = exc.rcvd.code
    assert code == 4401
    assert refused(face_world.url, raw) == 403
    assert httpx.post(face_world.url + "/rpc", json={}, headers={"X-API-Key": raw}).status_code == 401
