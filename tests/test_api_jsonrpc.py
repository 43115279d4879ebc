"""The JSON-RPC 2.0 face at /rpc (seed 002): methods, errors, batches, notifications, events."""

import json
import re

import pytest
from django.test import override_settings

from tasks_app.api import ratelimit
from tasks_app.api.jsonrpc import event_message
from tasks_app.models import Face, Task, TaskEvent
from tasks_app.services import Actor, api_token_create, task_create, task_update

# Seed 002's example request, verbatim.
SEED_REQUEST = """{
  "jsonrpc": "2.0",
  "method": "task.update",
  "params": {
    "id": "t-1234567890",
    "updates": {
      "status": "in_progress",
      "priority": 85,
      "metadata": {
        "progress": "50%",
        "notes": "Started optimization work"
      }
    }
  },
  "id": "req-003"
}"""
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def forget_rate_counts(token) -> None:
    """Rate counts live in Redis, which outlives the test database."""
    ratelimit.forget(token)


@pytest.fixture
def token(acme):
    token, raw = api_token_create(organization=acme, name="instance-1")
    forget_rate_counts(token)
    return token, raw


@pytest.fixture
def auth(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token[1]}"}


@pytest.fixture
def seed_task(acme, system_actor):
    task, _ = task_create(
        organization=acme,
        actor=system_actor,
        id="t-1234567890",
        title="Review and optimize database queries",
        metadata={"owner": "db-team"},
    )
    return task


def rpc(client, body, **headers):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/rpc", data=data, content_type="application/json", **headers)


def call(method, params=None, id="1"):
    body = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        body["params"] = params
    return body


# --- The seed's examples ------------------------------------------------------------------


def test_the_seed_request_verbatim_returns_the_documented_shape(client, auth, seed_task):
    response = rpc(client, SEED_REQUEST, **auth)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["jsonrpc", "result", "id"]
    assert body["jsonrpc"] == "2.0" and body["id"] == "req-003"
    result = body["result"]
    assert list(result) == ["id", "text", "status", "priority", "createdAt", "updatedAt"]
    assert result["id"] == "t-1234567890"
    assert result["text"] == "Review and optimize database queries"
    assert result["status"] == "in_progress" and result["priority"] == 85
    assert ISO_Z.match(result["createdAt"]) and ISO_Z.match(result["updatedAt"])

    task = Task.objects.get(organization=seed_task.organization, public_id="t-1234567890")
    assert task.status == "executing"
    assert task.metadata == {"owner": "db-team", "progress": "50%", "notes": "Started optimization work"}
    event = TaskEvent.objects.filter(task=task).latest("id")
    assert (event.actor_label, event.face) == ("token:instance-1", Face.JSONRPC)


def test_the_seed_not_found_example_returns_the_documented_error(client, auth):
    response = rpc(client, SEED_REQUEST, **auth)
    assert response.status_code == 200
    assert response.json() == {
        "jsonrpc": "2.0",
        "error": {"code": -32602, "message": "Task not found: t-1234567890", "data": {"taskId": "t-1234567890"}},
        "id": "req-003",
    }


def test_the_emitted_event_has_the_seed_shape(client, auth, seed_task):
    rpc(client, SEED_REQUEST, **auth)
    event = TaskEvent.objects.filter(task=seed_task).latest("id")
    message = event_message(event)
    assert list(message) == ["type", "payload", "metadata", "timestamp"]
    assert message["type"] == "task.updated"
    assert message["payload"]["status"] == "in_progress" and message["payload"]["priority"] == 85
    assert message["metadata"] == {"updatedBy": "token:instance-1", "changes": ["status", "priority", "metadata"]}
    assert message["timestamp"] == int(event.created_at.timestamp() * 1000)


# --- The other methods --------------------------------------------------------------------


def test_create_claim_complete_and_list(client, auth, acme):
    assert rpc(client, call("system.register", {"id": "w1", "roles": ["worker"]}), **auth).json()["result"] == {
        "registered": True
    }
    low = rpc(client, call("task.create", {"text": "low", "priority": 10}), **auth).json()["result"]
    high = rpc(client, call("task.create", {"text": "high", "priority": 90, "id": "q-high"}), **auth).json()["result"]
    assert high["id"] == "q-high" and high["status"] == "pending" and low["priority"] == 10

    claimed = rpc(client, call("task.claim", {"workerId": "w1"}), **auth).json()["result"]
    assert claimed["claimed"] is True and claimed["taskId"] == "q-high"
    assert claimed["task"]["status"] == "in_progress" and claimed["task"]["assignedTo"] == "w1"
    second = rpc(client, call("task.claim", {"workerId": "w1", "maxTasks": 1}), **auth).json()["result"]
    assert second["taskId"] == low["id"]
    assert rpc(client, call("task.claim", {"workerId": "w1"}), **auth).json() == {
        "jsonrpc": "2.0",
        "result": {"claimed": False},
        "id": "1",
    }

    done = rpc(client, call("task.complete", {"id": "q-high", "result": {"rows": 3}}), **auth).json()["result"]
    assert list(done) == ["id", "status", "completedAt"] and done["status"] == "completed"
    assert ISO_Z.match(done["completedAt"])
    assert Task.objects.get(organization=acme, public_id="q-high").result == '{"rows": 3}'

    listed = rpc(client, call("task.list", {"status": "completed"}), **auth).json()["result"]
    assert [t["id"] for t in listed["tasks"]] == ["q-high"] and listed["nextCursor"] is None
    assert listed["tasks"][0]["result"] == {"rows": 3} and listed["totalCount"] == 1 and listed["hasMore"] is False
    page = rpc(client, call("task.list", {"limit": 1}), **auth).json()["result"]
    assert len(page["tasks"]) == 1 and page["nextCursor"] and page["hasMore"] and page["totalCount"] == 2
    rest = rpc(client, call("task.list", {"limit": 1, "cursor": page["nextCursor"]}), **auth).json()["result"]
    assert rest["tasks"][0]["id"] != page["tasks"][0]["id"]
    by_offset = rpc(client, call("task.list", {"limit": 1, "offset": 1}), **auth).json()["result"]
    assert by_offset["tasks"][0]["id"] == rest["tasks"][0]["id"] and by_offset["hasMore"] is False
    by_priority = rpc(client, call("task.list", {"priority": 10}), **auth).json()["result"]
    assert [t["id"] for t in by_priority["tasks"]] == [low["id"]] and by_priority["totalCount"] == 1
    bad = rpc(client, call("task.list", {"priority": 101}), **auth).json()["error"]
    assert bad["code"] == -32602 and "priority" in json.dumps(bad["data"])


def test_complete_of_a_finished_task_is_invalid_params_with_data(client, auth, seed_task):
    task_update(task=seed_task, actor=Actor.system(), status="failed")
    before = TaskEvent.objects.count()
    error = rpc(client, call("task.complete", {"id": seed_task.public_id}), **auth).json()["error"]
    assert error["code"] == -32602
    assert error["data"] == {"taskId": seed_task.public_id, "status": "failed", "allowed": []}
    assert TaskEvent.objects.count() == before


# --- Protocol errors ----------------------------------------------------------------------


def test_it_requires_a_token(client, seed_task):
    response = rpc(client, SEED_REQUEST)
    assert response.status_code == 401
    assert response.json() == {"jsonrpc": "2.0", "error": {"code": -32001, "message": "Unauthorized"}, "id": None}
    assert rpc(client, SEED_REQUEST, HTTP_X_API_KEY="td_wrong").status_code == 401


def test_parse_error(client, auth):
    response = rpc(client, '{"jsonrpc": "2.0", "method": "task.list", "params": "bar", "baz]', **auth)
    assert response.status_code == 200  # like upstream: protocol errors come in a 200
    assert response.json() == {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None}


@pytest.mark.parametrize(
    "body",
    [
        {"jsonrpc": "2.0", "method": 1, "params": "bar"},
        {"jsonrpc": "1.0", "method": "task.list", "id": 1},
        {"method": "task.list", "id": 1},
        {"jsonrpc": "2.0", "method": "task.list", "id": {"x": 1}},
        {"jsonrpc": "2.0", "method": "task.list", "id": 1, "metadata": "session-1"},
        "1",
        [],
    ],
)
def test_invalid_request(client, auth, body):
    response = rpc(client, body, **auth)
    assert response.status_code == 200
    assert response.json()["error"] == {"code": -32600, "message": "Invalid Request"}


def test_method_not_found(client, auth):
    body = rpc(client, call("task.explode"), **auth).json()
    assert body["error"]["code"] == -32601 and body["id"] == "1"


INVALID_PARAMS = [
    ("task.update", {"id": "t-1234567890", "updates": {"status": "executing"}}, "updates.status"),
    ("task.update", {"id": "t-1234567890", "updates": {"status": "bogus"}}, "updates.status"),
    ("task.update", {"id": "t-1234567890", "updates": {"priority": 101}}, "updates.priority"),
    ("task.update", {"id": "t-1234567890", "updates": {"priority": "85"}}, "updates.priority"),
    ("task.update", {"id": "t-1234567890", "updates": {"priority": True}}, "updates.priority"),
    ("task.update", {"id": "t-1234567890", "updates": {"text": ""}}, "updates.text"),
    ("task.update", {"id": "t-1234567890", "updates": {"text": "x" * 501}}, "updates.text"),
    ("task.update", {"id": "t-1234567890", "updates": {"metadata": [1]}}, "updates.metadata"),
    ("task.update", {"id": "t-1234567890", "updates": "all"}, "updates"),
    ("task.update", {"id": "t-1234567890"}, "updates"),
    ("task.update", {"id": 5, "updates": {}}, "id"),
    ("task.create", {"priority": 5}, "text"),
    ("task.list", {"limit": 0}, "limit"),
    ("task.list", {"status": "executing"}, "status"),
    ("task.claim", {"agent": 3}, "agent"),
    ("task.claim", {}, "workerId"),
    ("task.claim", {"workerId": "w1", "maxTasks": 11}, "maxTasks"),
    ("task.list", {"orderBy": "title"}, "orderBy"),
    ("task.list", {"order": "up"}, "order"),
    ("task.list", {"offset": -1}, "offset"),
    ("task.list", {"limit": 1001}, "limit"),
    ("system.register", {"id": "w1"}, "roles"),
    ("system.register", {"id": "", "roles": []}, "id"),
    ("system.heartbeat", {}, "instanceId"),
    ("task.complete", {}, "id"),
    ("task.update", {"id": "t-1234567890", "updates": {"metadata": {"n": "\x00"}}}, "updates.metadata.n"),
]


@pytest.mark.parametrize(("method", "params", "field"), INVALID_PARAMS)
def test_invalid_params_name_the_field_and_change_nothing(client, auth, seed_task, method, params, field):
    before = (TaskEvent.objects.count(), Task.objects.get(pk=seed_task.pk).version, Task.objects.count())
    response = rpc(client, call(method, params), **auth)
    assert response.status_code == 200
    error = response.json()["error"]
    assert error["code"] == -32602 and field in error["data"]["errors"]
    assert (TaskEvent.objects.count(), Task.objects.get(pk=seed_task.pk).version, Task.objects.count()) == before


def test_params_as_array_is_invalid_params(client, auth):
    assert rpc(client, call("task.list", [1]), **auth).json()["error"]["code"] == -32602


def test_a_disallowed_transition_is_invalid_params(client, auth, seed_task):
    task_update(task=seed_task, actor=Actor.system(), status="completed")
    params = {"id": seed_task.public_id, "updates": {"status": "in_progress"}}
    error = rpc(client, call("task.update", params), **auth).json()["error"]
    assert error["code"] == -32602 and error["data"]["status"] == "completed"


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_an_oversized_body_is_413_invalid_request(client, auth, seed_task):
    params = {"id": seed_task.public_id, "updates": {"metadata": {"blob": "x" * 4000}}}
    response = rpc(client, call("task.update", params), **auth)
    assert response.status_code == 413 and response.json()["error"]["code"] == -32600
    assert Task.objects.get(pk=seed_task.pk).version == seed_task.version


# --- Batches and notifications ------------------------------------------------------------


def test_a_batch_answers_each_call_in_order(client, auth, seed_task):
    batch = [
        call("task.update", {"id": seed_task.public_id, "updates": {"priority": 60}}, id=1),
        {"jsonrpc": "2.0", "method": "task.update", "params": {"id": seed_task.public_id, "updates": {"priority": 61}}},
        {"foo": "boo"},
        call("task.nope", id="x"),
        call("task.update", {"id": "missing", "updates": {}}, id=2),
    ]
    response = rpc(client, batch, **auth)
    assert response.status_code == 200
    answers = response.json()
    assert [a["id"] for a in answers] == [1, None, "x", 2]
    assert answers[0]["result"]["priority"] == 60
    assert [a.get("error", {}).get("code") for a in answers] == [None, -32600, -32601, -32602]
    assert Task.objects.get(pk=seed_task.pk).priority == 61  # the notification ran


def test_notifications_get_no_response(client, auth, seed_task):
    note = {
        "jsonrpc": "2.0",
        "method": "task.update",
        "params": {"id": seed_task.public_id, "updates": {"priority": 7}},
    }
    single = rpc(client, note, **auth)
    assert single.status_code == 204 and single.content == b""
    batch = rpc(client, [note, {**note, "method": "task.nope"}], **auth)
    assert batch.status_code == 204 and batch.content == b""
    assert Task.objects.get(pk=seed_task.pk).priority == 7


def test_only_post_is_allowed(client, auth):
    assert client.get("/rpc", **auth).status_code == 405


def test_cross_organization_task_is_not_found(client, seed_task, globex):
    token, raw = api_token_create(organization=globex, name="globex")
    forget_rate_counts(token)
    response = rpc(client, SEED_REQUEST, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.json()["error"]["message"] == "Task not found: t-1234567890"
    assert Task.objects.get(pk=seed_task.pk).status == "pending"


# --- Workers (ClaudeBench's system.register / heartbeat, task.claim / complete) -------------


def register(client, auth, worker="w1"):
    body = rpc(client, call("system.register", {"id": worker, "roles": ["worker"]}), **auth).json()
    assert body["result"] == {"registered": True}


def test_a_worker_must_register_and_stay_alive_to_claim(client, auth, acme):
    from datetime import timedelta

    from tasks_app.models import Worker

    rpc(client, call("task.create", {"text": "queued"}), **auth)
    error = rpc(client, call("task.claim", {"workerId": "w1"}), **auth).json()["error"]
    assert error["code"] == -32602 and error["message"] == "Worker not registered: w1"
    assert error["data"]["validation"] == "Worker must be registered and active"
    assert rpc(client, call("system.heartbeat", {"instanceId": "w1"}), **auth).json()["result"] == {"alive": False}

    register(client, auth)
    assert rpc(client, call("system.heartbeat", {"instanceId": "w1"}), **auth).json()["result"] == {"alive": True}
    worker = Worker.objects.get(organization=acme, name="w1")
    assert worker.roles == ["worker"]
    # Past the 30 s TTL without a heartbeat the registration lapses, as upstream's key expires.
    Worker.objects.filter(pk=worker.pk).update(last_heartbeat_at=worker.last_heartbeat_at - timedelta(seconds=31))
    assert rpc(client, call("system.heartbeat", {"instanceId": "w1"}), **auth).json()["result"] == {"alive": False}
    assert rpc(client, call("task.claim", {"workerId": "w1"}), **auth).json()["error"]["code"] == -32602
    assert Task.objects.get(organization=acme, title="queued").status == "pending"


def test_claim_takes_only_this_faces_queue_unless_a_task_is_put_on_it(client, auth, acme, system_actor):
    register(client, auth)
    other, _ = task_create(organization=acme, actor=system_actor, id="from-xpander", title="other face")
    assert rpc(client, call("task.claim", {"workerId": "w1"}), **auth).json()["result"] == {"claimed": False}
    task_update(task=other, actor=system_actor, queue="jsonrpc")  # explicitly queued here
    claim = rpc(client, call("task.claim", {"workerId": "w1"}), **auth).json()["result"]
    assert claim["taskId"] == "from-xpander"


def test_complete_checks_the_worker_and_refuses_a_second_completion(client, auth, acme):
    register(client, auth, "w1")
    register(client, auth, "w2")
    for text in ("a", "b"):
        rpc(client, call("task.create", {"text": text, "id": f"t-{text}"}), **auth)
    error = rpc(client, call("task.complete", {"taskId": "t-a", "result": "x"}), **auth).json()["error"]
    assert error["code"] == -32602 and error["data"] == {"taskId": "t-a"}  # not assigned yet
    rpc(client, call("task.claim", {"workerId": "w1"}), **auth)
    rpc(client, call("task.claim", {"workerId": "w2"}), **auth)
    task_a = Task.objects.get(organization=acme, public_id="t-a")
    events_before = TaskEvent.objects.filter(task=task_a).count()
    wrong = rpc(client, call("task.complete", {"taskId": "t-a", "workerId": "w2", "result": "x"}), **auth).json()
    assert wrong["error"]["code"] == -32602 and "assigned to another worker" in wrong["error"]["message"]
    assert TaskEvent.objects.filter(task=task_a).count() == events_before

    done = rpc(client, call("task.complete", {"taskId": "t-a", "workerId": "w1", "result": "ok"}), **auth).json()
    assert done["result"]["status"] == "completed"
    again = rpc(client, call("task.complete", {"taskId": "t-a", "workerId": "w1", "result": "ok"}), **auth).json()
    assert again["error"]["code"] == -32602 and again["error"]["data"]["status"] == "completed"
    no_result = rpc(client, call("task.complete", {"id": "t-b", "workerId": "w2"}), **auth).json()["result"]
    assert no_result["status"] == "failed"  # completing without a result marks the task failed
    assert Task.objects.get(organization=acme, public_id="t-b").status == "failed"

    listed = rpc(client, call("task.list", {"assignedTo": "w1"}), **auth).json()["result"]
    assert [t["id"] for t in listed["tasks"]] == ["t-a"] and listed["tasks"][0]["assignedTo"] == "w1"
    ordered = rpc(client, call("task.list", {"orderBy": "assignedTo", "order": "asc"}), **auth).json()["result"]
    assert [t["assignedTo"] for t in ordered["tasks"]] == ["w1", "w2"]


def test_the_metadata_member_is_accepted(client, auth, seed_task):
    body = json.loads(SEED_REQUEST)
    body["metadata"] = {"sessionId": "s-1", "correlationId": "c-1", "timestamp": 1758272400000}
    response = rpc(client, body, **auth)
    assert response.status_code == 200 and response.json()["result"]["status"] == "in_progress"


def test_claim_and_complete_events_have_claudebenchs_shapes(client, auth, acme):
    register(client, auth)
    rpc(client, call("task.create", {"text": "work", "id": "t-ev", "priority": 70}), **auth)
    rpc(client, call("task.claim", {"workerId": "w1"}), **auth)
    rpc(client, call("task.complete", {"taskId": "t-ev", "workerId": "w1", "result": {"n": 1}}), **auth)
    created, claimed, completed = [event_message(e) for e in TaskEvent.objects.filter(task__public_id="t-ev")]
    assert created["type"] == "task.created" and created["metadata"] == {"createdBy": "token:instance-1"}
    assert created["payload"]["status"] == "pending" and list(created["payload"]) == [
        "id",
        "text",
        "status",
        "priority",
        "createdAt",
    ]
    assert claimed["type"] == "task.claimed" and claimed["payload"] == {"taskId": "t-ev", "workerId": "w1"}
    assert ISO_Z.match(claimed["metadata"]["claimedAt"])
    assert completed["type"] == "task.completed" and completed["metadata"] == {"completedBy": "w1"}
    assert list(completed["payload"]) == ["id", "status", "duration"]
    assert completed["payload"]["status"] == "completed" and completed["payload"]["duration"] >= 0


def test_completing_a_claimed_task_that_paused_withdraws_its_hitl_request(client, auth, acme):
    from tasks_app.live.fragments_hitl import affects_pending_count
    from tasks_app.models import HitlRequest
    from tasks_app.services import hitl_request

    register(client, auth)
    rpc(client, call("task.create", {"text": "needs a person", "id": "t-hitl"}), **auth)
    rpc(client, call("task.claim", {"workerId": "w1"}), **auth)
    hitl = hitl_request(task="t-hitl", actor=Actor.system("agent"), organization_id=acme.pk, question="ok?")
    done = rpc(client, call("task.complete", {"taskId": "t-hitl", "workerId": "w1", "result": "r"}), **auth).json()
    assert done["result"]["status"] == "completed"
    hitl.refresh_from_db()
    assert hitl.decision == "withdrawn"
    completed = TaskEvent.objects.filter(task__public_id="t-hitl").latest("id")
    assert completed.type == "task.completed" and affects_pending_count(completed)
    assert not HitlRequest.objects.filter(task__public_id="t-hitl", decision__isnull=True).exists()


def test_a_newer_clients_unknown_members_and_params_are_ignored_and_logged_once(client, auth, seed_task, caplog):
    """Upstream's zod schemas strip keys they do not know: a newer ClaudeBench client's extras change nothing
    and refuse nothing, while what this face knows is still checked."""
    from tasks_app.api import faces

    faces._unknown_logged.clear()  # logged once per process: this test counts from here
    extra = {"id": "t-1234567890", "updates": {"priority": 85, "owner": "me"}, "force": True}
    with caplog.at_level("INFO", logger="tasks_app.api.faces"):
        for _ in range(2):
            body = {**call("task.update", extra), "trace": {"span": 1}}
            answer = rpc(client, body, **auth).json()
            assert answer["result"]["priority"] == 85, answer
        claim = rpc(client, call("task.claim", {"workerId": "w9", "capabilities": ["gpu"]}), **auth).json()
    assert claim["error"]["message"] == "Worker not registered: w9"  # known params still checked
    assert Task.objects.get(pk=seed_task.pk).metadata == seed_task.metadata
    logged = [r.getMessage() for r in caplog.records if "ignoring unknown" in r.getMessage()]
    assert sorted(m.split()[-4] for m in logged) == ["'capabilities'", "'force'", "'owner'", "'trace'"], logged
    wrong = rpc(
        client, call("task.update", {"id": "t-1234567890", "updates": {"priority": "85", "owner": "me"}}), **auth
    )
    assert list(wrong.json()["error"]["data"]["errors"]) == ["updates.priority"]
