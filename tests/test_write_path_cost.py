"""What a write costs, held in place: one read of the task, agent views off the shared thread,
an async middleware chain, a lean chain for the agent faces (bench/bench_writes.py measures it)."""

import threading

import pytest
from asgiref.sync import iscoroutinefunction
from asgiref.testing import ApplicationCommunicator
from django.core.handlers.asgi import ASGIHandler
from django.db import connection
from django.http import JsonResponse
from django.test import AsyncRequestFactory, RequestFactory
from django.test.utils import CaptureQueriesContext

from tasks_app.api import ratelimit
from tasks_app.api.threads import in_worker_thread
from tasks_app.models import Task, TaskEvent
from tasks_app.services import Actor, api_token_create, task_create, task_delete, task_stop


@pytest.fixture
def token(acme):
    token, raw = api_token_create(organization=acme, name="cost")
    yield raw
    ratelimit.forget(token)


def _patch(client, raw, task_id, body):
    return client.patch(
        f"/api/v1/tasks/{task_id}", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )


@pytest.mark.django_db
def test_a_native_patch_reads_the_task_once(client, acme, agent, token):
    task_create(organization=acme, actor=Actor.system("t"), id="once", title="once", agent=agent.name)
    assert _patch(client, token, "once", {"priority": 1}).status_code == 200  # warms the token cache
    with CaptureQueriesContext(connection) as queries:
        response = _patch(client, token, "once", {"priority": 2, "metadata": {"k": "v"}})
    assert response.status_code == 200
    assert response.json()["agent"] == agent.name  # the locked read brought the agent's name along
    reads = [q["sql"] for q in queries.captured_queries if "tasks_app_task" in q["sql"].split(" WHERE ")[0]]
    reads = [sql for sql in reads if sql.startswith("SELECT")]
    assert len(reads) == 1, reads
    assert "FOR UPDATE" in reads[0] or connection.vendor != "postgresql"
    # BEGIN/SAVEPOINT aside: the lock, the UPDATE, the ordering lock, the event INSERT.
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(("UPDATE", "INSERT"))]
    assert len(writes) == 2, writes
    assert TaskEvent.objects.filter(task__public_id="once").count() == 3


def _xpander_update(client, raw, task_id, body):
    return client.patch(
        f"/xpander/agent-execution/{task_id}/update", body, content_type="application/json", HTTP_X_API_KEY=raw
    )


@pytest.mark.django_db
def test_an_xpander_update_reads_the_task_once_and_lists_its_live_sub_executions(client, acme, globex, token):
    system = Actor.system("t")
    task_create(organization=acme, actor=system, id="boss", title="boss")
    for child in ("c-2", "c-1", "c-gone"):  # created in this order: listed in it, not by id
        task_create(organization=acme, actor=system, id=child, title=child, parent_id="boss")
    task_delete(task="c-gone", actor=system, organization_id=acme.pk)
    task_create(organization=globex, actor=system, id="boss", title="theirs")
    task_create(organization=globex, actor=system, id="c-0", title="theirs", parent_id="boss")
    assert _xpander_update(client, token, "boss", {"result": "warm"}).status_code == 200

    with CaptureQueriesContext(connection) as queries:
        response = _xpander_update(client, token, "boss", {"result": "step 1", "title": "boss"})
    assert response.status_code == 200, response.content
    assert response.json()["sub_executions"] == ["c-2", "c-1"]
    assert response.json()["result"] == "step 1"
    task_reads = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT") and "FOR UPDATE" in q["sql"]
    ]
    assert len(task_reads) == 1 or connection.vendor != "postgresql", task_reads
    # The locked read, the sub-executions, nothing else of the task's table read around the write.
    selects = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT") and "tasks_app_task" in q["sql"]
    ]
    assert len(selects) == 2, selects
    event = TaskEvent.objects.filter(task__organization=acme, task__public_id="boss").latest("id")
    assert event.changes == ["result"]  # the echoed title is not a change


@pytest.mark.django_db
def test_an_xpander_echo_is_compared_with_the_locked_task(client, acme, token):
    system = Actor.system("t")
    task_create(organization=acme, actor=system, id="echo", title="echo", status="executing")
    task_stop(task="echo", actor=system, organization_id=acme.pk, status="canceled")
    # A canceled task reads as "stopped" to the SDK, which sends it back with its next save.
    saved = _xpander_update(client, token, "echo", {"status": "stopped", "result": "late", "duration": 0})
    assert saved.status_code == 200, saved.content
    assert saved.json()["status"] == "stopped" and saved.json()["result"] == "late"
    task = Task.objects.get(organization=acme, public_id="echo")
    assert task.status == "canceled"
    moved = _xpander_update(client, token, "echo", {"status": "executing"})
    assert moved.status_code == 409, moved.content  # not an echo: the lifecycle decides
    assert Task.objects.get(pk=task.pk).status == "canceled"


@pytest.mark.django_db
def test_a_missing_task_is_the_same_404_as_before(client, acme, token):
    response = _patch(client, token, "nope", {"priority": 2})
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


def _thread_name(request):
    return JsonResponse({"thread": threading.current_thread().name})


async def test_an_agent_view_runs_in_a_worker_thread_under_asgi():
    view = in_worker_thread(_thread_name)
    assert iscoroutinefunction(view)
    first = await view(AsyncRequestFactory().get("/api/v1/tasks"))
    # asgiref's one shared thread for sync code is "sync_to_async..."-less: the default
    # executor's threads are named "asyncio_N"; whatever the names, two calls at once overlap.
    assert b"asyncio" in first.content
    gate = threading.Barrier(2, timeout=5)

    def both_at_once(request):
        gate.wait()  # deadlocks (BrokenBarrierError after 5 s) if the two calls share a thread
        return JsonResponse({})

    import asyncio

    slow = in_worker_thread(both_at_once)
    results = await asyncio.gather(*(slow(AsyncRequestFactory().get("/rpc")) for _ in range(2)))
    assert [r.status_code for r in results] == [200, 200]


def test_a_sync_caller_keeps_its_own_thread_and_connection():
    from asgiref.sync import async_to_sync

    view = in_worker_thread(_thread_name)
    response = async_to_sync(view)(RequestFactory().get("/api/v1/tasks"))
    assert threading.current_thread().name.encode() in response.content


def test_the_middleware_chain_is_async_end_to_end():
    handler = ASGIHandler()
    handler.load_middleware(is_async=True)
    # A sync-only middleware anywhere would make Django adapt the whole chain to sync.
    assert iscoroutinefunction(handler._middleware_chain)
    from django.conf import settings
    from django.utils.module_loading import import_string

    for path in settings.MIDDLEWARE:
        assert getattr(import_string(path), "async_capable", True), path


async def _get(application, path: str) -> dict:
    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": [(b"host", b"testserver")]}
    scope.update(http_version="1.1", scheme="http", server=("testserver", 80), client=("127.0.0.1", 1), root_path="")
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(10)
    body = b""
    while True:
        chunk = await communicator.receive_output(10)
        body += chunk.get("body", b"")
        if not chunk.get("more_body"):
            break
    await communicator.wait()
    return {"status": start["status"], "headers": start["headers"], "body": body}


@pytest.mark.django_db(transaction=True)
async def test_static_files_and_agent_paths_through_the_asgi_application(acme):
    from dashboard.asgi import application

    static = await _get(application, "/static/css/taskdesk.css")
    assert static["status"] == 200 and b"{" in static["body"]
    page = await _get(application, "/login/")
    api = await _get(application, "/api/v1/tasks")
    assert page["status"] == 200 and api["status"] == 401
    page_headers = {k.lower(): v for k, v in page["headers"]}
    api_headers = {k.lower(): v for k, v in api["headers"]}
    # The pages' chain sets the CSRF cookie and varies on it; the agents' lean chain does neither...
    assert b"cookie" in page_headers.get(b"vary", b"").lower()
    assert b"cookie" not in api_headers.get(b"vary", b"").lower()
    assert b"set-cookie" not in api_headers
    # ...and keeps the security headers.
    assert api_headers[b"x-content-type-options"] == b"nosniff"


@pytest.mark.django_db
def test_the_native_list_costs_the_same_with_sub_tasks(client, acme, token):
    actor = Actor.system("t")
    parent, _ = task_create(organization=acme, actor=actor, id="parent", title="parent")

    def count(children: int) -> int:
        for n in range(children):
            task_create(organization=acme, actor=actor, id=f"child-{children}-{n}", title="c", parent_id="parent")
        client.get("/api/v1/tasks", HTTP_AUTHORIZATION=f"Bearer {token}")  # warm the token cache
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/api/v1/tasks", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 200
        assert sum(item["parent_id"] == "parent" for item in response.json()["items"]) >= children
        return len(queries.captured_queries)

    assert count(1) == count(10)


@pytest.mark.django_db(transaction=True)
async def test_agent_paths_start_no_thread_and_take_no_shared_thread_per_request(acme, monkeypatch):
    """Django's own ASGI handler starts a thread per request (ThreadSensitiveContext) and runs
    the request signals and MiddlewareMixin hooks in it; the agents' handler does neither."""
    from asgiref.sync import SyncToAsync

    from dashboard.asgi import application

    await _get(application, "/api/v1/tasks")  # warm: the default executor's threads exist now
    started = []
    real_start = threading.Thread.start

    def counting_start(self):
        started.append(self.name)
        return real_start(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    shared = []
    real_call = SyncToAsync.__call__

    async def counting_call(self, *args, **kwargs):
        if self._thread_sensitive:
            shared.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await real_call(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counting_call)
    for _ in range(5):
        answer = await _get(application, "/api/v1/tasks")
        assert answer["status"] == 401
        assert {k.lower(): v for k, v in answer["headers"]}[b"x-content-type-options"] == b"nosniff"
    # (the default executor may still grow by a thread: it is the agents' pool, kept)
    assert len(started) < 5 and not any(name.startswith("ThreadPoolExecutor") for name in started), started
    assert shared == []
    # The pages still go through Django's own handler (sessions, CSRF...), unchanged.
    assert (await _get(application, "/login/"))["status"] == 200
    assert any(name.startswith("ThreadPoolExecutor") for name in started), "the control: Django's handler does"


def test_what_start_up_loaded_is_left_out_of_the_garbage_collector():
    """dashboard.asgi freezes start-up's objects (Django, the URLconf, every view module): a full
    collection of a daphne with 1,000 idle sockets paused its loop 110 ms, half of it for them."""
    import gc

    import dashboard.asgi  # noqa: F401

    assert gc.get_freeze_count() > 100_000
    frozen = gc.get_freeze_count()
    gc.collect()
    assert gc.get_freeze_count() == frozen  # collections leave them alone
