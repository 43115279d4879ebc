"""A ClaudeBench worker, written from ClaudeBench's docs (docs/docs/api/system/register.md,
heartbeat.md, task/claim.md, complete.md, list.md), runs its loop against Taskdesk's /rpc on a
real daphne server: only the base URL and the API key header differ from pointing it upstream.
Its events are read as ClaudeBench's clients read them, from the /ws socket (guides/websocket-events.md;
tests/test_claudebench_ws.py has the socket's own tests), and agree with the SSE stream's.
"""

import itertools
import json
import time
import uuid

import httpx
import pytest
from websockets.sync.client import connect

from tasks_app.models import Face, Membership, Role, Task, TaskEvent, Worker
from tasks_app.templatetags.taskdesk import machine_time

from .clients_conftest import face_world_fixture, task_of  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


class ClaudeBenchClient:
    """What a ClaudeBench worker sends: JSON-RPC 2.0 with the `metadata` member on every call."""

    def __init__(self, base_url: str, api_key: str):
        self.http = httpx.Client(base_url=base_url, headers={"X-API-Key": api_key}, timeout=10)
        self.session_id = f"session-{uuid.uuid4()}"
        self.ids = itertools.count(1)

    def call(self, method: str, params: dict) -> dict:
        body = {
            "jsonrpc": "2.0",
            "method": method,
            "params": params,
            "id": f"req-{next(self.ids)}",
            "metadata": {
                "sessionId": self.session_id,
                "correlationId": str(uuid.uuid4()),
                "timestamp": int(time.time() * 1000),
            },
        }
        response = self.http.post("/rpc", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer["result"]


class Worker_:
    """The pull loop of claim.md: register, heartbeat, claim until the queue is empty, complete."""

    def __init__(self, client: ClaudeBenchClient, worker_id: str):
        self.client = client
        self.worker_id = worker_id
        self.done: list[dict] = []

    def work(self, task: dict):
        # A task it cannot do is completed without a result: upstream records it as failed.
        if task["metadata"] and task["metadata"].get("impossible"):
            return None
        return {"summary": f"did: {task['text']}", "priority": task["priority"]}

    def run(self) -> None:
        assert self.client.call("system.register", {"id": self.worker_id, "roles": ["worker"]}) == {"registered": True}
        while True:
            assert self.client.call("system.heartbeat", {"instanceId": self.worker_id}) == {"alive": True}
            claim = self.client.call("task.claim", {"workerId": self.worker_id, "maxTasks": 1})
            if not claim["claimed"]:
                return
            task = claim["task"]
            assert claim["taskId"] == task["id"] and task["assignedTo"] == self.worker_id
            params = {"taskId": task["id"], "workerId": self.worker_id}
            result = self.work(task)
            if result is not None:
                params["result"] = result
            self.done.append(self.client.call("task.complete", params))


def read_events(url: str, token: str, want: int) -> list[dict]:
    """The organization's events replayed from the start in ClaudeBench's shape, from the socket:
    subscribed to `task.*` with `?after=0`, each `{"type": "event"}` frame's `data`."""
    socket_url = url.replace("http://", "ws://", 1) + "/ws?after=0"
    with connect(socket_url, additional_headers={"X-API-Key": token}, proxy=None, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "connected"
        ws.send(json.dumps({"action": "subscribe", "events": ["task.*"]}))
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
        frames = [json.loads(ws.recv(timeout=10)) for _ in range(want)]
    assert all(frame["type"] == "event" and frame["event"] == frame["data"]["type"] for frame in frames)
    return [frame["data"] for frame in frames]


def read_sse_events(url: str, token: str, want: int) -> list[dict]:
    """The same from GET /api/v1/events?format=jsonrpc."""
    messages = []
    params = {"format": "jsonrpc", "after": "0"}
    with httpx.stream("GET", url + "/api/v1/events", params=params, headers={"X-API-Key": token}, timeout=10) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                messages.append(json.loads(line[len("data: ") :]))
                if len(messages) == want:
                    break
    return messages


def test_a_claudebench_worker_runs_its_loop_and_shows_on_the_desk(face_world, client, django_user_model):
    producer = ClaudeBenchClient(face_world.url, face_world.acme_token)
    created = [
        producer.call("task.create", {"text": "Review queries", "priority": 75, "metadata": {"category": "db"}}),
        producer.call("task.create", {"text": "Fly to the moon", "priority": 20, "metadata": {"impossible": True}}),
    ]
    # A task another face created waits on that face's queue: this worker must not take it.
    native = httpx.post(
        face_world.url + "/api/v1/tasks",
        json={"id": "native-1", "title": "native work"},
        headers={"Authorization": f"Bearer {face_world.acme_token}"},
    )
    assert native.status_code == 201, native.text

    worker = Worker_(ClaudeBenchClient(face_world.url, face_world.acme_token), "worker-001")
    worker.run()

    assert [d["status"] for d in worker.done] == ["completed", "failed"]
    assert [d["id"] for d in worker.done] == [t["id"] for t in created]
    assert all(list(d) == ["id", "status", "completedAt"] for d in worker.done)
    with pytest.raises(RuntimeError) as again:  # a second completion is an error
        worker.client.call("task.complete", {"taskId": created[0]["id"], "workerId": "worker-001", "result": "x"})
    assert again.value.args[0]["code"] == -32602

    listed = producer.call("task.list", {"assignedTo": "worker-001", "orderBy": "priority", "order": "desc"})
    assert listed["totalCount"] == 2 and listed["hasMore"] is False
    first = listed["tasks"][0]
    assert (first["id"], first["status"], first["assignedTo"]) == (created[0]["id"], "completed", "worker-001")
    assert first["result"] == {"summary": "did: Review queries", "priority": 75} and first["completedAt"]
    assert task_of(face_world.acme, "native-1").status == "pending"

    # The desk: each task is assigned to the worker, and the worker (name, heartbeat) is shown.
    row = Worker.objects.get(organization=face_world.acme, name="worker-001")
    for task_id in (t["id"] for t in created):
        task = task_of(face_world.acme, task_id)
        assert task.assigned_worker == row
        assert {e.face for e in TaskEvent.objects.filter(task=task)} == {Face.JSONRPC}
    staff = django_user_model.objects.create_user(username="alice", password="x")
    Membership.objects.create(user=staff, organization=face_world.acme, role=Role.OPERATOR)
    client.force_login(staff)
    page = client.get("/tasks/").content.decode()
    assert page.count("worker worker-001") == 2
    row.refresh_from_db()
    beat = f'worker worker-001 · beat <time datetime="{machine_time(row.last_heartbeat_at)}"'
    assert page.count(beat) == 2  # the worker's last heartbeat on each of its rows
    detail = client.get(f"/tasks/acme/{created[0]['id']}/").content.decode()
    assert "worker-001" in detail and "last heartbeat" in detail

    # Its events, replayed from the log, in ClaudeBench's shapes and as each was at the time.
    events = read_events(face_world.url, face_world.acme_token, 7)
    assert [{k: v for k, v in e.items() if k != "id"} for e in events] == read_sse_events(
        face_world.url, face_world.acme_token, 7
    )
    a, b = (t["id"] for t in created)
    assert [(m["type"], m["payload"].get("id") or m["payload"].get("taskId")) for m in events] == [
        ("task.created", a),
        ("task.created", b),
        ("task.created", "native-1"),
        ("task.claimed", a),
        ("task.completed", a),
        ("task.claimed", b),
        ("task.completed", b),
    ]
    assert events[0]["payload"]["status"] == "pending" and events[0]["metadata"] == {"createdBy": "token:agent-one"}
    assert events[3]["payload"] == {"taskId": a, "workerId": "worker-001"}
    assert events[4]["payload"]["status"] == "completed" and events[4]["metadata"] == {"completedBy": "worker-001"}
    assert events[6]["payload"]["status"] == "failed"
    assert Task.objects.filter(organization=face_world.acme, queue="jsonrpc").count() == 2
