"""Per-token rate limits under concurrency: the first N succeed, the rest get 429, nothing else changes."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client, override_settings

from tasks_app.api import ratelimit
from tasks_app.models import Task, TaskEvent
from tasks_app.services import Actor, api_token_create, task_create

pytestmark = pytest.mark.django_db(transaction=True)


def forget_rate_counts(token, face: str, operation: str) -> None:
    """Counters live in the cache (Redis), which outlives the test database; a new run reuses pks."""
    _count, period = ratelimit.limit_for(face, operation)
    window = int(time.time() // period)
    cache.delete_many([f"ratelimit:{token.pk}:{face}:{operation}:{w}" for w in (window, window + 1)])


def inside_one_window(period: int = 60, needed: float = 15.0) -> None:
    """Fixed windows: start far enough from the boundary that every request counts in one window."""
    left = period - time.time() % period
    if left < needed:
        time.sleep(left + 0.1)


def test_jsonrpc_task_update_allows_exactly_the_seeds_20_per_minute(daphne_server, acme):
    token, raw = api_token_create(organization=acme, name="burst")
    task, _ = task_create(organization=acme, actor=Actor.system(), id="t-burst", title="burst")
    count, period = ratelimit.limit_for("jsonrpc", "task.update")
    assert (count, period) == (20, 60)
    forget_rate_counts(token, "jsonrpc", "task.update")
    inside_one_window()

    start = threading.Barrier(30)

    def update(i: int) -> httpx.Response:
        body = {"jsonrpc": "2.0", "method": "task.update", "id": i, "params": {"id": "t-burst", "updates": {}}}
        body["params"]["updates"] = {"metadata": {f"k{i}": i}}
        start.wait()
        return httpx.post(f"{daphne_server}/rpc", json=body, headers={"x-api-key": raw}, timeout=30)

    with ThreadPoolExecutor(max_workers=30) as pool:
        responses = list(pool.map(update, range(30)))

    ok = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert len(ok) == 20 and len(limited) == 10
    assert all("result" in r.json() for r in ok)
    for response in limited:
        error = response.json()["error"]
        assert error["code"] == -32029 and error["message"] == "Rate limit exceeded"
        assert error["data"]["retryAfter"] >= 1 and int(response.headers["Retry-After"]) >= 1
    # Exactly the allowed calls changed the task, one event each.
    task.refresh_from_db()
    assert len(task.metadata) == 20
    assert task.version == 21
    assert TaskEvent.objects.filter(task=task, type="task.updated").count() == 20


@override_settings(RATE_LIMITS={"api.tasks.update": (5, 60), "*": (600, 60)})
def test_native_patch_limit_holds_under_threads(acme):
    token, raw = api_token_create(organization=acme, name="threads")
    task_create(organization=acme, actor=Actor.system(), id="t-threads", title="threads")
    forget_rate_counts(token, "api", "tasks.update")
    inside_one_window()
    start = threading.Barrier(12)

    def patch(i: int) -> int:
        try:
            start.wait()
            response = Client().patch(
                "/api/v1/tasks/t-threads",
                data=json.dumps({"metadata": {f"k{i}": i}}),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {raw}",
            )
            if response.status_code == 429:
                assert int(response["Retry-After"]) >= 1
            return response.status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = sorted(pool.map(patch, range(12)))
    assert codes == [200] * 5 + [429] * 7
    task = Task.objects.get(pk="t-threads")
    assert len(task.metadata) == 5 and task.version == 6


def test_a_limited_batch_entry_changes_nothing(acme, client):
    token, raw = api_token_create(organization=acme, name="batch")
    task_create(organization=acme, actor=Actor.system(), id="t-batch", title="batch")
    forget_rate_counts(token, "jsonrpc", "task.update")
    inside_one_window(needed=5)
    with override_settings(RATE_LIMITS={"jsonrpc.task.update": (2, 60), "*": (600, 60)}):
        batch = [
            {
                "jsonrpc": "2.0",
                "method": "task.update",
                "id": i,
                "params": {"id": "t-batch", "updates": {"priority": i}},
            }
            for i in range(1, 4)
        ]
        response = client.post("/rpc", data=json.dumps(batch), content_type="application/json", HTTP_X_API_KEY=raw)
    answers = response.json()
    assert response.status_code == 200 and int(response["Retry-After"]) >= 1
    assert [a.get("error", {}).get("code") for a in answers] == [None, None, -32029]
    assert Task.objects.get(pk="t-batch").priority == 2
