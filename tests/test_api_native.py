"""The native REST API under /api/v1/: tokens, tasks, activity, HITL, metrics, errors."""

import json

import pytest
from django.test import override_settings

from tasks_app import lifecycle, services
from tasks_app.api import ratelimit
from tasks_app.models import ActivityEntry, Face, HitlRequest, Task, TaskEvent
from tasks_app.services import Actor, api_token_create, api_token_revoke, task_create, task_update

API = "/api/v1"


@pytest.fixture
def token(acme):
    return api_token_create(organization=acme, name="worker-1")


@pytest.fixture
def auth(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token[1]}"}


@pytest.fixture
def task(acme, system_actor):
    created, _ = task_create(organization=acme, actor=system_actor, id="t-1", title="Review queries", priority=40)
    return created


def send(client, method, path, body=None, **headers):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body) if body is not None else None
    return getattr(client, method)(API + path, data=data, content_type="application/json", **headers)


def event_count() -> int:
    return TaskEvent.objects.count()


# --- Tokens -------------------------------------------------------------------------------


def test_it_requires_a_token(client, task):
    response = client.get(f"{API}/tasks/t-1")
    assert response.status_code == 401
    assert response.json() == {"detail": "Unauthorized"}


def test_it_rejects_bad_and_revoked_tokens(client, task, token):
    assert client.get(f"{API}/tasks/t-1", HTTP_AUTHORIZATION="Bearer td_nope").status_code == 401
    api_token_revoke(token=token[0])
    assert client.get(f"{API}/tasks/t-1", HTTP_AUTHORIZATION=f"Bearer {token[1]}").status_code == 401


def test_it_accepts_the_x_api_key_header(client, task, token):
    response = client.get(f"{API}/tasks/t-1", HTTP_X_API_KEY=token[1])
    assert response.status_code == 200
    assert response.json()["title"] == "Review queries"


# --- Tasks --------------------------------------------------------------------------------


def test_it_creates_a_task_and_records_the_token_as_actor(client, auth, acme):
    body = {"id": "job-7", "title": "Summarise", "agent": "summariser", "metadata": {"a": 1}, "priority": 70}
    response = send(client, "post", "/tasks", body, **auth)
    assert response.status_code == 201
    data = response.json()
    assert data["id"] == "job-7" and data["agent"] == "summariser" and data["status"] == "pending"
    event = TaskEvent.objects.get(task__organization=acme, task__public_id="job-7")
    assert (event.actor_label, event.face, event.type) == ("token:worker-1", Face.API, "task.created")

    again = send(client, "post", "/tasks", body, **auth)
    assert again.status_code == 200
    assert again.json()["id"] == "job-7"
    assert TaskEvent.objects.filter(task__organization=acme, task__public_id="job-7").count() == 1

    other = send(client, "post", "/tasks", {**body, "title": "Different"}, **auth)
    assert other.status_code == 409
    assert other.json()["code"] == "id_taken"


def test_it_gets_a_task(client, auth, task):
    response = client.get(f"{API}/tasks/t-1", **auth)
    assert response.status_code == 200
    assert response.json()["version"] == task.version


def test_it_lists_with_filters_and_cursors(client, auth, acme, system_actor):
    for i in range(5):
        task_create(organization=acme, actor=system_actor, id=f"l-{i}", title=f"task {i}", source="cron")
    task_create(organization=acme, actor=system_actor, id="other", title="x", status="executing")
    first = client.get(f"{API}/tasks?source=cron&limit=2&sort=-created", **auth).json()
    assert [t["id"] for t in first["items"]] == ["l-4", "l-3"]
    assert first["prev"] is None and first["next"]
    second = client.get(f"{API}/tasks?source=cron&limit=2&after={first['next']}", **auth).json()
    assert [t["id"] for t in second["items"]] == ["l-2", "l-1"]
    back = client.get(f"{API}/tasks?source=cron&limit=2&before={second['prev']}", **auth).json()
    assert [t["id"] for t in back["items"]] == ["l-4", "l-3"]

    executing = client.get(f"{API}/tasks?status=executing&status=paused", **auth).json()
    assert [t["id"] for t in executing["items"]] == ["other"]
    assert client.get(f"{API}/tasks?q=task 3", **auth).json()["items"][0]["id"] == "l-3"


def test_list_refuses_unknown_status_sort_and_cursor(client, auth):
    assert client.get(f"{API}/tasks?status=bogus", **auth).status_code == 422
    assert client.get(f"{API}/tasks?sort=bogus", **auth).status_code == 422
    response = client.get(f"{API}/tasks?after=garbage", **auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "after"]


def test_patch_merges_metadata_and_checks_the_version(client, auth, task):
    task_update(task=task, actor=Actor.system(), metadata={"keep": 1})
    task.refresh_from_db()
    response = send(client, "patch", "/tasks/t-1", {"metadata": {"progress": "50%"}, "status": "executing"}, **auth)
    assert response.status_code == 200
    data = response.json()
    assert data["metadata"] == {"keep": 1, "progress": "50%"}
    assert data["status"] == "executing"
    version = data["version"]

    stale = send(client, "patch", "/tasks/t-1", {"priority": 1}, HTTP_IF_MATCH=f'"{version - 1}"', **auth)
    assert stale.status_code == 409
    assert stale.json()["current_version"] == version
    assert stale.json()["code"] == "conflict"

    fresh = send(client, "patch", "/tasks/t-1", {"priority": 1}, HTTP_IF_MATCH=f'"{version}"', **auth)
    assert fresh.status_code == 200 and fresh.json()["priority"] == 1

    body_version = send(client, "patch", "/tasks/t-1", {"priority": 2, "expected_version": 1}, **auth)
    assert body_version.status_code == 409

    replaced = send(client, "patch", "/tasks/t-1", {"metadata": {"only": True}, "metadata_replace": True}, **auth)
    assert replaced.json()["metadata"] == {"only": True}


def test_patch_refuses_a_disallowed_transition_with_409(client, auth, task):
    task_update(task=task, actor=Actor.system(), status="completed")
    before = event_count()
    response = send(client, "patch", "/tasks/t-1", {"status": "executing"}, **auth)
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "transition" and body["current_status"] == "completed"
    assert event_count() == before


def test_a_native_claim_never_takes_another_faces_task_unless_it_is_queued_for_it(client, auth, acme, system_actor):
    def face(method, path, body):
        return getattr(client, method)(path, data=json.dumps(body), content_type="application/json", **auth)

    xpander = face("post", "/xpander/agent-execution/bot", {"id": "xp-1", "input": {"text": "for bot"}})
    assert xpander.status_code == 201 and xpander.json()["status"] == "pending"
    agentex = face("post", "/agentex/agents/name/bot/rpc", {"method": "task/create", "params": {"name": "ax-1"}})
    assert agentex.status_code == 200
    ax = Task.objects.get(organization=acme, name="ax-1")
    task_update(task=ax, actor=system_actor, status="failed")
    services.task_retry(task=ax, actor=system_actor)  # from the desk: pending again, on Agentex's queue
    assert dict(Task.objects.filter(organization=acme).values_list("public_id", "queue")) == {
        "xp-1": "xpander",
        ax.public_id: "agentex",
    }
    assert send(client, "post", "/tasks/claim", **auth).status_code == 204  # neither is the native API's
    queued = send(client, "post", "/tasks/claim", {"queue": "xpander"}, **auth)  # a worker of that queue, on purpose
    assert queued.status_code == 200 and queued.json()["id"] == "xp-1"
    send(client, "patch", f"/tasks/{ax.public_id}", {"queue": ""}, **auth)  # moved to the general queue
    assert send(client, "post", "/tasks/claim", **auth).json()["id"] == ax.public_id


def test_stop_retry_and_claim(client, auth, acme, system_actor):
    task_create(organization=acme, actor=system_actor, id="low", title="low", priority=10)
    task_create(organization=acme, actor=system_actor, id="high", title="high", priority=90)
    claimed = send(client, "post", "/tasks/claim", **auth)
    assert claimed.status_code == 200 and claimed.json()["id"] == "high"
    assert claimed.json()["status"] == "executing"
    assert send(client, "post", "/tasks/claim", {}, **auth).json()["id"] == "low"
    empty = send(client, "post", "/tasks/claim", **auth)
    assert empty.status_code == 204 and empty.content == b""

    stopped = send(client, "post", "/tasks/high/stop", {"reason": "enough"}, **auth)
    assert stopped.status_code == 200
    assert stopped.json()["status"] == "stopped" and stopped.json()["status_reason"] == "enough"
    assert send(client, "post", "/tasks/high/stop", **auth).status_code == 409
    retried = send(client, "post", "/tasks/high/retry", **auth)
    assert retried.status_code == 200 and retried.json()["status"] == "pending"


def test_activity_single_batch_and_paging(client, auth, task):
    one = send(client, "post", "/tasks/t-1/activity", {"kind": "message", "role": "agent", "content": "hi"}, **auth)
    assert one.status_code == 201 and len(one.json()) == 1
    batch = [{"kind": "tool_call", "tool_name": "search", "tool_arguments": {"q": "x"}}] * 3
    assert len(send(client, "post", "/tasks/t-1/activity", batch, **auth).json()) == 3
    assert ActivityEntry.objects.filter(task=task).count() == 4

    page = client.get(f"{API}/tasks/t-1/activity?limit=3", **auth).json()
    assert len(page["items"]) == 3 and page["next"] == page["items"][-1]["id"]
    rest = client.get(f"{API}/tasks/t-1/activity?after={page['next']}", **auth).json()
    assert len(rest["items"]) == 1 and rest["next"] is None
    bad = send(client, "post", "/tasks/t-1/activity", [{"kind": "dance"}], **auth)
    assert bad.status_code == 422
    assert ActivityEntry.objects.filter(task=task).count() == 4


def test_hitl_request_poll_and_decide(client, auth, task):
    task_update(task=task, actor=Actor.system(), status="executing")
    asked = send(client, "post", "/tasks/t-1/hitl", {"question": "Send?", "payload": {"to": "a@b.c"}}, **auth)
    assert asked.status_code == 201 and asked.json()["decision"] is None
    assert Task.objects.get(organization=task.organization, public_id="t-1").status == "paused"
    assert client.get(f"{API}/tasks/t-1/hitl", **auth).json()["decision"] is None

    decision = {"approve": True, "amended_payload": {"to": "x@y.z"}}
    decided = send(client, "post", "/tasks/t-1/hitl/decision", decision, **auth)
    assert decided.status_code == 200
    polled = client.get(f"{API}/tasks/t-1/hitl", **auth).json()
    assert polled["decision"] == "approved" and polled["effective_payload"] == {"to": "x@y.z"}
    assert polled["decided_by"] == "token:worker-1"
    again = send(client, "post", "/tasks/t-1/hitl/decision", {"approve": False, "reason": "no"}, **auth)
    assert again.status_code == 409
    assert HitlRequest.objects.get().decision == "approved"


def test_hitl_poll_without_request_is_404(client, auth, task):
    assert client.get(f"{API}/tasks/t-1/hitl", **auth).status_code == 404


def test_metrics_report(client, auth, task):
    response = send(client, "post", "/tasks/t-1/metrics", {"prompt_tokens": 10, "used_tools": ["search"]}, **auth)
    assert response.status_code == 200
    assert response.json()["prompt_tokens"] == 10 and response.json()["used_tools"] == ["search"]
    assert TaskEvent.objects.filter(task=task, type="task.metrics").count() == 1


# --- Bad input: 4xx, nothing changes, no event, never a 500 --------------------------------

BAD_BODIES = [
    ("patch", "/tasks/t-1", {"priority": "high"}),
    ("patch", "/tasks/t-1", {"priority": 101}),
    ("patch", "/tasks/t-1", {"bogus": 1}),
    ("patch", "/tasks/t-1", {"status": "in_progress"}),
    ("patch", "/tasks/t-1", {"metadata": [1, 2]}),
    ("patch", "/tasks/t-1", {"title": "x" * 501}),
    ("patch", "/tasks/t-1", "{not json"),
    ("patch", "/tasks/t-1", "[]"),
    ("post", "/tasks", {"title": 5}),
    ("post", "/tasks", {"id": "bad id with spaces"}),
    ("post", "/tasks", {"unknown": True}),
    ("post", "/tasks", "\x00\x01"),
    ("post", "/tasks/t-1/stop", {"status": "completed"}),
    ("post", "/tasks/t-1/activity", {"kind": "message", "extra": 1}),
    ("post", "/tasks/t-1/activity", []),
    ("post", "/tasks/t-1/hitl", {"question": ""}),
    ("post", "/tasks/t-1/hitl/decision", {"approve": "maybe"}),
    ("post", "/tasks/t-1/metrics", {"prompt_tokens": -1}),
    ("post", "/tasks/claim", {"agent": 5}),
    ("patch", "/tasks/t-1", {"metadata": {"note": "nul \x00"}}),
    ("post", "/tasks/t-1/hitl", {"question": "ok?", "payload": {"k": ["\x00"]}}),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_BODIES)
def test_bad_input_is_a_4xx_and_changes_nothing(client, auth, task, method, path, body):
    before = (
        event_count(),
        Task.objects.get(organization=task.organization, public_id="t-1").version,
        Task.objects.count(),
    )
    response = send(client, method, path, body, **auth)
    assert 400 <= response.status_code < 500, response.content
    assert "detail" in response.json()
    assert (
        event_count(),
        Task.objects.get(organization=task.organization, public_id="t-1").version,
        Task.objects.count(),
    ) == before


def test_validation_errors_carry_field_locations(client, auth, task):
    response = send(client, "patch", "/tasks/t-1", {"priority": "high", "bogus": 1}, **auth)
    assert response.status_code == 422
    locations = {tuple(error["loc"]) for error in response.json()["detail"]}
    assert ("body", "payload", "priority") in locations
    assert ("body", "payload", "bogus") in locations


def test_service_validation_errors_use_the_same_shape(client, auth, task):
    # Over the services' 64 KB JSON limit: refused by the service, shaped like pydantic's errors.
    response = send(client, "post", "/tasks", {"metadata": {"blob": "x" * 70_000}}, **auth)
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", "payload", "metadata"], "msg": "At most 64 KB of JSON.", "type": "value_error"}
    ]


def test_nul_characters_are_refused_with_their_location(client, auth, task):
    response = send(client, "post", "/tasks", {"title": "nul \x00 inside"}, **auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "payload"]
    assert "NUL" in response.json()["detail"][0]["msg"] and "title" in response.json()["detail"][0]["msg"]


def test_stale_if_match_header_that_is_not_a_version_is_422(client, auth, task):
    response = send(client, "patch", "/tasks/t-1", {"priority": 3}, HTTP_IF_MATCH="yesterday", **auth)
    assert response.status_code == 422
    assert Task.objects.get(organization=task.organization, public_id="t-1").priority == 40


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_an_oversized_body_is_413(client, auth, task):
    before = event_count()
    response = send(client, "patch", "/tasks/t-1", {"title": "x", "metadata": {"blob": "y" * 5000}}, **auth)
    assert response.status_code == 413
    assert event_count() == before


def test_statuses_in_responses_are_native_names(client, auth, task):
    data = client.get(f"{API}/tasks/t-1", **auth).json()
    assert data["status"] in lifecycle.NATIVE.names()


def test_openapi_schema_and_docs_are_served(client):
    schema = client.get(f"{API}/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/tasks" in paths and "/api/v1/tasks/{task_id}/hitl/decision" in paths
    assert client.get("/api/docs").status_code == 200


def forget_rate_counts(token, face, operation):
    """Rate counts live in Redis, which outlives the test database."""
    ratelimit.forget(token)


@override_settings(RATE_LIMITS={"api.tasks.get": (2, 60), "*": (600, 60)})
def test_rate_limit_answers_429_with_retry_after(client, auth, task, token):
    forget_rate_counts(token[0], "api", "tasks.get")
    codes = [client.get(f"{API}/tasks/t-1", **auth).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    limited = client.get(f"{API}/tasks/t-1", **auth)
    assert int(limited["Retry-After"]) >= 1
    assert limited.json()["code"] == "rate_limited"


def test_a_task_is_put_on_the_jsonrpc_queue_explicitly_and_shows_its_worker(client, auth, acme):
    from tasks_app.services import Actor, task_claim, worker_register

    created = send(client, "post", "/tasks", {"id": "for-workers", "title": "x"}, **auth)
    assert created.status_code == 201 and created.json()["queue"] == "" and created.json()["assigned_worker"] is None
    moved = send(client, "patch", "/tasks/for-workers", {"queue": "jsonrpc"}, **auth)
    assert moved.status_code == 200 and moved.json()["queue"] == "jsonrpc"
    assert send(client, "post", "/tasks/claim", **auth).status_code == 204  # the general queue is empty now
    worker = worker_register(organization=acme, name="w-7", roles=["worker"])
    task_claim(organization=acme, actor=Actor.system("rpc"), queue="jsonrpc", worker=worker)
    read = send(client, "get", "/tasks/for-workers", **auth).json()
    assert (read["status"], read["assigned_worker"]) == ("executing", "w-7")


def test_every_write_to_a_sub_task_keeps_its_parents_id(client, auth, task, acme, system_actor):
    """The write path reads the parent's public id with the locked row: every answer and snapshot names it."""
    task_create(organization=acme, actor=system_actor, id="t-2", title="Check one query", parent_id="t-1")
    answers = [
        send(client, "patch", "/tasks/t-2", {"status": "executing"}, **auth),
        send(client, "post", "/tasks/t-2/metrics", {"prompt_tokens": 10, "completion_tokens": 2}, **auth),
        send(client, "post", "/tasks/t-2/activity", {"kind": "reasoning", "content": "Reading."}, **auth),
        send(client, "get", "/tasks/t-2", **auth),
    ]
    assert [a.status_code for a in answers] == [200, 200, 201, 200]
    assert [a.json()["parent_id"] for a in answers if "parent_id" in a.json()] == ["t-1"] * 3
    # Created, updated, metrics (an activity event keeps the snapshot before it).
    snapshots = TaskEvent.objects.filter(task__public_id="t-2", snapshot__isnull=False).values_list(
        "snapshot", flat=True
    )
    assert [s["parent_public_id"] for s in snapshots] == ["t-1"] * 3


def test_a_snapshot_written_with_a_wrong_parent_id_reads_back_the_real_parent(acme, task, system_actor):
    from tasks_app.services.snapshots import task_at

    task_create(organization=acme, actor=system_actor, id="t-2", title="Check one query", parent_id="t-1")
    event = TaskEvent.objects.get(task__public_id="t-2")
    event.snapshot["parent_public_id"] = acme.pk  # what the kernel wrote before its fix
    assert task_at(event).parent_public_id == "t-1"
