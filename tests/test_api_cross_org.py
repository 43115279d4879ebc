"""A globex token sees nothing of acme: 404 on every route for an acme task, nothing changes."""

import json
import time

import pytest
from django.core.cache import cache

from tasks_app.api import ratelimit
from tasks_app.api.jsonrpc import METHODS
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
    """Rate counters live in the cache, which outlives the test database (a new run reuses pks)."""
    keys = []
    for method in METHODS:
        _count, period = ratelimit.limit_for("jsonrpc", method)
        window = int(time.time() // period)
        keys += [f"ratelimit:{token.pk}:jsonrpc:{method}:{w}" for w in (window, window + 1)]
    cache.delete_many(keys)


@pytest.fixture
def acme_task(acme):
    actor = Actor.system()
    task, _ = task_create(organization=acme, actor=actor, id="acme-1", title="secret", metadata={"k": "v"})
    task_update(task=task, actor=actor, status="executing")
    hitl_request(task=task, actor=actor, question="Ship it?")
    return Task.objects.get(pk="acme-1")


@pytest.fixture
def globex_auth(globex):
    token, raw = api_token_create(organization=globex, name="globex-bot")
    forget_rate_counts(token)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def snapshot():
    task = Task.objects.get(pk="acme-1")
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
    before = (Task.objects.get(pk="acme-2").status, TaskEvent.objects.count())
    claim = client.post(f"{API}/tasks/claim", content_type="application/json", **globex_auth)
    assert claim.status_code == 204
    assert (Task.objects.get(pk="acme-2").status, TaskEvent.objects.count()) == before


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
