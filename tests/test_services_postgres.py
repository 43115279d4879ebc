"""Concurrency on PostgreSQL: merges lose nothing, claimers never share a task."""

import threading

import pytest
from django.db import connection

from tasks_app import services
from tasks_app.models import Organization, Task, TaskEvent
from tests.conftest import requires_postgres

pytestmark = [requires_postgres, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 20
# The pool (DB_POOL_MAX, default 20) is smaller than 20 threads plus the test's own connection,
# so each thread hands its connection back after every call, as a request would.


def _run_threads(target) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def body(n: int) -> None:
        try:
            start.wait()
            target(n)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()  # give the connection back to the pool

    threads = [threading.Thread(target=body, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return errors


def test_concurrent_metadata_merges_lose_nothing():
    org = Organization.objects.create(slug="acme", name="Acme")
    actor = services.Actor.system("test")
    task, _ = services.task_create(organization=org, actor=actor, id="merge-target")

    def merge(n: int) -> None:
        for k in range(50):
            services.task_update(task="merge-target", actor=actor, metadata={f"t{n}-k{k}": k})
            connection.close()

    assert _run_threads(merge) == []
    task.refresh_from_db()
    assert len(task.metadata) == THREADS * 50
    assert all(task.metadata[f"t{n}-k{k}"] == k for n in range(THREADS) for k in range(50))
    assert task.version == 1 + THREADS * 50
    versions = list(TaskEvent.objects.filter(task=task).order_by("id").values_list("task_version", flat=True))
    assert versions == list(range(1, 2 + THREADS * 50))  # one event per change, in version order


def test_concurrent_claimers_get_distinct_tasks():
    org = Organization.objects.create(slug="acme", name="Acme")
    actor = services.Actor.system("test")
    for n in range(100):
        services.task_create(organization=org, actor=actor, id=f"queued-{n:03d}", priority=n % 7)
    claimed: list[str] = []
    lock = threading.Lock()

    def claim(n: int) -> None:
        worker = services.Actor.system(f"worker-{n}")
        while True:
            task = services.task_claim(organization=org, actor=worker)
            connection.close()
            if task is None:
                return
            with lock:
                claimed.append(task.pk)

    assert _run_threads(claim) == []
    assert len(claimed) == 100
    assert len(set(claimed)) == 100
    assert not Task.objects.filter(status="pending").exists()
    # Each task was claimed by exactly one event.
    assert TaskEvent.objects.filter(type="task.updated", after__status="executing").count() == 100
