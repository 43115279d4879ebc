"""A globex token sees nothing of acme: 404 on every route for an acme task, nothing changes.

Task ids are unique within an organization only: the same id in two organizations is two
tasks, and no answer differs between "this id exists in another organization" and "this id
does not exist" (on any face)."""

import json

import pytest

from tasks_app.api import ratelimit
from tasks_app.models import ActivityEntry, HitlRequest, Task, TaskEvent
from tasks_app.services import Actor, api_token_create, hitl_request, task_create, task_update

API = "/api/v1"

ROUTES = [
    ("get", "/tasks/acme-1", None),
    ("patch", "/tasks/acme-1", {"priority": 1}),
    ("patch", "/tasks/acme-1", {"status": "completed"}),
    ("post", "/tasks/acme-1/stop", {}),
    ("post", "/tasks/acme-1/retry", None),
    ("post", "/tasks/acme-1/activity", {"content": "hi"}),
    ("post", "/tasks/acme-1/activity", [{"content": "hi"}]),
    ("get", "/tasks/acme-1/activity", None),
    ("post", "/tasks/acme-1/hitl", {"question": "ok?"}),
    ("get", "/tasks/acme-1/hitl", None),
    ("post", "/tasks/acme-1/hitl/decision", {"approve": True}),
    ("post", "/tasks/acme-1/metrics", {"prompt_tokens": 5}),
]


def forget_rate_counts(token) -> None:
    """Rate counts live in Redis, which outlives the test database."""
    ratelimit.forget(token)


def make_acme_task(acme) -> Task:
    """acme's task acme-1 (named acme-name), paused on a pending HITL request."""
    actor = Actor.system()
    task, _ = task_create(
        organization=acme, actor=actor, id="acme-1", name="acme-name", agent="bot", title="secret", metadata={"k": "v"}
    )
    task_update(task=task, actor=actor, status="executing")
    hitl_request(task=task, actor=actor, question="Ship it?")
    return Task.objects.get(organization=acme, public_id="acme-1")


@pytest.fixture
def acme_task(acme):
    return make_acme_task(acme)


@pytest.fixture
def globex_auth(globex):
    token, raw = api_token_create(organization=globex, name="globex-bot")
    forget_rate_counts(token)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def snapshot():
    task = Task.objects.get(organization__slug="acme", public_id="acme-1")
    return (
        task.version,
        task.status,
        task.metadata,
        TaskEvent.objects.count(),
        ActivityEntry.objects.count(),
        list(HitlRequest.objects.values_list("decision", flat=True)),
    )


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_task_route_is_404_for_another_organization(client, acme_task, globex_auth, method, path, body):
    before = snapshot()
    data = json.dumps(body) if body is not None else None
    response = getattr(client, method)(API + path, data=data, content_type="application/json", **globex_auth)
    assert response.status_code == 404, response.content
    assert "secret" not in response.content.decode()
    assert snapshot() == before


def test_lists_and_claims_never_show_another_organizations_tasks(client, acme, acme_task, globex_auth):
    task_create(organization=acme, actor=Actor.system(), id="acme-2", title="pending secret")
    listed = client.get(f"{API}/tasks", **globex_auth).json()
    assert listed["items"] == []
    assert client.get(f"{API}/tasks?q=acme-1", **globex_auth).json()["items"] == []
    before = (Task.objects.get(organization=acme, public_id="acme-2").status, TaskEvent.objects.count())
    claim = client.post(f"{API}/tasks/claim", content_type="application/json", **globex_auth)
    assert claim.status_code == 204
    assert (Task.objects.get(organization=acme, public_id="acme-2").status, TaskEvent.objects.count()) == before


def test_jsonrpc_methods_do_not_reach_another_organization(client, acme_task, globex_auth):
    before = snapshot()
    calls = [
        ("task.update", {"id": "acme-1", "updates": {"priority": 3}}),
        ("task.complete", {"id": "acme-1"}),
    ]
    for method, params in calls:
        body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
        response = client.post("/rpc", data=json.dumps(body), content_type="application/json", **globex_auth)
        assert response.json()["error"] == {
            "code": -32602,
            "message": "Task not found: acme-1",
            "data": {"taskId": "acme-1"},
        }
    listed = client.post(
        "/rpc",
        data=json.dumps({"jsonrpc": "2.0", "method": "task.list", "id": 2}),
        content_type="application/json",
        **globex_auth,
    )
    assert listed.json()["result"]["tasks"] == []
    assert snapshot() == before


def test_sse_refuses_to_follow_another_organizations_task(client, acme_task, globex_auth):
    response = client.get(f"{API}/events?task_id=acme-1", **globex_auth)
    assert response.status_code == 404


# --- The same id in two organizations is two tasks ----------------------------------------


def send(client, method, path, body, auth):
    data = json.dumps(body) if body is not None else None
    return getattr(client, method)(path, data=data, content_type="application/json", **auth)


def rpc(client, method, params, auth):
    body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    return client.post("/rpc", data=json.dumps(body), content_type="application/json", **auth)


@pytest.fixture
def acme_auth(acme):
    token, raw = api_token_create(organization=acme, name="acme-bot")
    forget_rate_counts(token)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_the_same_id_in_another_organization_is_a_new_task_of_its_own(
    client, acme, globex, acme_task, globex_auth, acme_auth
):
    before = snapshot()
    body = {"id": "acme-1", "title": "globex's own", "priority": 7}
    created = send(client, "post", f"{API}/tasks", body, globex_auth)
    assert created.status_code == 201, created.content  # not 200 (acme's task) nor 409 (taken)
    data = created.json()
    assert (data["id"], data["title"], data["status"], data["version"]) == ("acme-1", "globex's own", "pending", 1)
    assert "secret" not in created.content.decode()
    assert snapshot()[:3] == before[:3]  # acme's task untouched

    ours, theirs = Task.objects.get(organization=globex, public_id="acme-1"), acme_task
    assert ours.pk != theirs.pk
    assert Task.objects.filter(public_id="acme-1").count() == 2
    event = TaskEvent.objects.filter(task=ours).get()
    assert (event.organization_id, event.type) == (globex.pk, "task.created")

    # Each organization reads and changes only its own acme-1.
    assert client.get(f"{API}/tasks/acme-1", **globex_auth).json()["title"] == "globex's own"
    assert client.get(f"{API}/tasks/acme-1", **acme_auth).json()["title"] == "secret"
    patched = send(client, "patch", f"{API}/tasks/acme-1", {"priority": 9, "metadata": {"g": 1}}, globex_auth)
    assert patched.status_code == 200 and patched.json()["metadata"] == {"g": 1}
    acme_task.refresh_from_db()
    assert (acme_task.priority, acme_task.metadata, acme_task.status) == (50, {"k": "v"}, "paused")
    # Idempotent create and "id taken" work within the organization, as for any id.
    assert send(client, "post", f"{API}/tasks", body, globex_auth).status_code == 200
    taken = send(client, "post", f"{API}/tasks", {**body, "title": "changed"}, globex_auth)
    assert taken.status_code == 409 and taken.json()["code"] == "id_taken"
    assert send(client, "post", f"{API}/tasks", body, acme_auth).json()["code"] == "id_taken"  # acme's own acme-1


def test_jsonrpc_create_with_another_organizations_id_is_a_new_task(client, acme, globex, acme_task, globex_auth):
    before = snapshot()
    result = rpc(client, "task.create", {"id": "acme-1", "text": "globex's own"}, globex_auth).json()["result"]
    assert (result["id"], result["text"], result["status"]) == ("acme-1", "globex's own", "pending")
    updated = rpc(client, "task.update", {"id": "acme-1", "updates": {"priority": 3}}, globex_auth).json()["result"]
    assert updated["priority"] == 3 and updated["text"] == "globex's own"
    assert Task.objects.get(organization=globex, public_id="acme-1").priority == 3
    assert snapshot()[:3] == before[:3]


def test_xpander_and_agentex_creates_do_not_collide_across_organizations(client, acme, globex, acme_task, globex_auth):
    before = snapshot()
    xp = send(client, "post", "/xpander/agent-execution/bot", {"id": "acme-1", "input": {"text": "hi"}}, globex_auth)
    assert xp.status_code == 201, xp.content
    assert xp.json()["id"] == "acme-1" and xp.json()["input"]["text"] == "hi"
    ax = send(
        client,
        "post",
        "/agentex/agents/name/bot/rpc",
        {"method": "task/create", "params": {"name": "acme-name"}},
        globex_auth,
    )
    assert ax.status_code == 200, ax.content
    created = Task.objects.get(organization=globex, name="acme-name")
    assert ax.json()["result"]["id"] == created.public_id and created.pk != acme_task.pk
    assert created.params == {} and created.status == "executing"
    assert snapshot()[:3] == before[:3]


# --- "Exists in another organization" reads exactly like "does not exist" -------------------

FACE_ROUTES = [
    *[(method, API + path, body) for method, path, body in ROUTES],
    ("get", f"{API}/events?task_id=acme-1", None),
    ("get", "/xpander/agent-execution/acme-1/status", None),
    ("patch", "/xpander/agent-execution/acme-1/update", {"status": "completed"}),
    ("delete", "/xpander/agent-execution/acme-1", None),
    ("get", "/xpander/agent-execution/acme-1/events", None),
    ("get", "/xpander/activity/bot/acme-1", None),
    ("post", "/xpander/agents-metrics/bot/execution", {"execution_id": "acme-1", "llm_tokens": {}}),
    ("get", "/agentex/tasks/acme-1", None),
    ("put", "/agentex/tasks/acme-1", {"merge_params": {"a": 1}}),
    ("delete", "/agentex/tasks/acme-1", None),
    ("post", "/agentex/tasks/acme-1/cancel", {}),
    ("get", "/agentex/tasks/acme-1/stream", None),
    ("get", "/agentex/tasks/name/acme-name", None),
    ("get", "/agentex/tasks/name/acme-name/stream", None),
    ("post", "/agentex/agents/name/bot/rpc", {"method": "task/cancel", "params": {"task_id": "acme-1"}}),
    ("post", "/agentex/agents/name/bot/rpc", {"method": "task/cancel", "params": {"task_name": "acme-name"}}),
]


def answer(response) -> tuple:
    """Everything a caller can read of a (non-streaming) answer."""
    headers = {k.lower(): v for k, v in response.items() if k.lower() not in ("date",)}
    return response.status_code, headers, response.content


@pytest.mark.parametrize(("method", "path", "body"), FACE_ROUTES)
def test_another_organizations_id_reads_exactly_like_a_missing_one(client, acme, globex_auth, method, path, body):
    missing = send(client, method, path, body, globex_auth)
    assert missing.status_code == 404, missing.content
    make_acme_task(acme)
    before = snapshot()
    elsewhere = send(client, method, path, body, globex_auth)
    assert answer(elsewhere) == answer(missing)
    assert snapshot() == before


JSONRPC_CALLS = [
    ("task.update", {"id": "acme-1", "updates": {"priority": 3}}),
    ("task.update", {"id": "acme-1", "updates": {"status": "completed"}}),
    ("task.complete", {"id": "acme-1", "result": "done"}),
]


@pytest.mark.parametrize(("method", "params"), JSONRPC_CALLS)
def test_jsonrpc_answers_alike_for_another_organizations_id_and_a_missing_one(
    client, acme, globex_auth, method, params
):
    missing = rpc(client, method, params, globex_auth)
    make_acme_task(acme)
    before = snapshot()
    elsewhere = rpc(client, method, params, globex_auth)
    assert answer(elsewhere) == answer(missing)
    assert elsewhere.json()["error"]["message"] == "Task not found: acme-1"
    assert snapshot() == before
