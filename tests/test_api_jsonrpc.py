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
    low = rpc(client, call("task.create", {"text": "low", "priority": 10}), **auth).json()["result"]
    high = rpc(client, call("task.create", {"text": "high", "priority": 90, "id": "q-high"}), **auth).json()["result"]
    assert high["id"] == "q-high" and high["status"] == "pending" and low["priority"] == 10

    claimed = rpc(client, call("task.claim"), **auth).json()["result"]
    assert claimed["id"] == "q-high" and claimed["status"] == "in_progress"
    assert rpc(client, call("task.claim", {}), **auth).json()["result"]["id"] == low["id"]
    assert rpc(client, call("task.claim"), **auth).json() == {"jsonrpc": "2.0", "result": None, "id": "1"}

    done = rpc(client, call("task.complete", {"id": "q-high", "result": {"rows": 3}}), **auth).json()["result"]
    assert done["status"] == "completed"
    assert Task.objects.get(organization=acme, public_id="q-high").result == '{"rows": 3}'

    listed = rpc(client, call("task.list", {"status": "completed"}), **auth).json()["result"]
    assert [t["id"] for t in listed["tasks"]] == ["q-high"] and listed["nextCursor"] is None
    page = rpc(client, call("task.list", {"limit": 1}), **auth).json()["result"]
    assert len(page["tasks"]) == 1 and page["nextCursor"]
    rest = rpc(client, call("task.list", {"limit": 1, "cursor": page["nextCursor"]}), **auth).json()["result"]
    assert rest["tasks"][0]["id"] != page["tasks"][0]["id"]


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
    assert response.status_code == 400
    assert response.json() == {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None}


@pytest.mark.parametrize(
    "body",
    [
        {"jsonrpc": "2.0", "method": 1, "params": "bar"},
        {"jsonrpc": "1.0", "method": "task.list", "id": 1},
        {"method": "task.list", "id": 1},
        {"jsonrpc": "2.0", "method": "task.list", "id": {"x": 1}},
        {"jsonrpc": "2.0", "method": "task.list", "id": 1, "extra": True},
        "1",
        [],
    ],
)
def test_invalid_request(client, auth, body):
    response = rpc(client, body, **auth)
    assert response.status_code == 400
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
    ("task.update", {"id": "t-1234567890", "updates": {"owner": "me"}}, "updates.owner"),
    ("task.update", {"id": "t-1234567890", "updates": "all"}, "updates"),
    ("task.update", {"id": "t-1234567890"}, "updates"),
    ("task.update", {"id": 5, "updates": {}}, "id"),
    ("task.update", {"id": "t-1234567890", "updates": {}, "force": True}, "force"),
    ("task.create", {"priority": 5}, "text"),
    ("task.list", {"limit": 0}, "limit"),
    ("task.list", {"status": "executing"}, "status"),
    ("task.claim", {"agent": 3}, "agent"),
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
