"""Concurrency on PostgreSQL: merges lose nothing, claimers never share a task."""

import threading

import pytest
from django.db import connection

from tasks_app import selectors, services
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
            services.task_update(task="merge-target", organization_id=org.pk, actor=actor, metadata={f"t{n}-k{k}": k})
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
                claimed.append(task.public_id)

    assert _run_threads(claim) == []
    assert len(claimed) == 100
    assert len(set(claimed)) == 100
    assert not Task.objects.filter(status="pending").exists()
    # Each task was claimed by exactly one event.
    assert TaskEvent.objects.filter(type="task.claimed", after__status="executing").count() == 100


def test_concurrent_mixed_writes_keep_the_status_counts_exact():
    """Creates, moves, retries and deletes from 20 threads in two organizations (neither has count
    rows yet): the kept counts equal a fresh GROUP BY."""
    orgs = [Organization.objects.create(slug=slug, name=slug) for slug in ("acme", "globex")]
    actor = services.Actor.system("test")

    def work(n: int) -> None:
        org = orgs[n % 2]
        for k in range(5):
            task, _ = services.task_create(organization=org, actor=actor, id=f"mix-{n}-{k}")
            connection.close()
            if k == 0:
                continue  # stays pending
            services.task_update(task=task, actor=actor, status="executing")
            if k == 1:
                continue
            services.task_update(task=task, actor=actor, status="failed" if k % 2 else "completed")
            if k == 3:
                services.task_retry(task=task, actor=actor)
            if k == 4:
                services.task_delete(task=task, actor=actor)
            connection.close()
        services.task_claim(organization=org, actor=actor)
        connection.close()

    assert _run_threads(work) == []
    for org in orgs:
        counts = selectors.status_counts(org.pk)
        assert counts == selectors.status_counts_by_group_by(org.pk), org.slug
        assert sum(counts.values()) == THREADS // 2 * 4  # five created per thread, one deleted
