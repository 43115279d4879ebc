"""The operations view's rollups (services.rollups): kept by the write path, equal to a fresh
aggregation of the event log after any mix of changes, one statement per write that moves them."""

import random
import threading
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tasks_app import lifecycle, services
from tasks_app.models import ROLLUP_BUCKETS, ActorKind, EventType, Face, Organization, Task, TaskEvent, TaskRollup
from tasks_app.services import rollups
from tests.conftest import requires_postgres

AGENT_FACES = (Face.API, Face.XPANDER, Face.AGENTEX, Face.JSONRPC)
INT_COLUMNS = ("created", "completed", "failed", "stopped", "prompt_tokens", "completion_tokens", "pending")
SEEN_COLUMNS = tuple(f"seen_{face}" for face in AGENT_FACES)


def stored(org) -> dict[tuple, dict]:
    """The organization's rollup rows without their zero columns: key -> values."""
    result = {}
    for row in TaskRollup.objects.filter(organization=org):
        values = {name: getattr(row, name) for name in (*INT_COLUMNS, *ROLLUP_BUCKETS) if getattr(row, name)}
        values.update({name: getattr(row, name) for name in SEEN_COLUMNS if getattr(row, name)})
        if row.duration_sum:
            values["duration_sum"] = round(row.duration_sum, 3)
        if values:
            result[(row.agent_key, row.queue, row.span, row.start)] = values
    return result


def replayed(org) -> dict[tuple, dict]:
    """The same rows, aggregated afresh: from the event log (each event's snapshot) and the live tasks."""
    rows: dict[tuple, Counter] = defaultdict(Counter)
    seen: dict[tuple, datetime] = {}
    last: dict[int, dict] = {}
    for event in TaskEvent.objects.filter(organization=org).order_by("id"):
        previous = last.get(event.task_id)
        snapshot = event.snapshot or previous
        if event.snapshot is not None:
            last[event.task_id] = event.snapshot
        agent = snapshot["agent_pk"] or 0
        if event.actor_kind == ActorKind.TOKEN and event.face in AGENT_FACES:
            key = (agent, snapshot["queue"], 0, rollups.NOW_START, f"seen_{event.face}")
            seen[key] = max(seen.get(key, event.created_at), event.created_at)
        if event.snapshot is None:
            continue
        moved = Counter()
        if event.type == EventType.CREATED:
            moved["created"] += 1
        status = snapshot["status"]
        before = previous["status"] if previous else None
        if lifecycle.is_terminal(status) and (before is None or not lifecycle.is_terminal(before)):
            moved[lifecycle.outcome(status)] += 1
            moved["duration_sum"] += snapshot["duration"]
            moved[rollups.bucket_of(snapshot["duration"])] += 1
        for name in ("prompt_tokens", "completion_tokens"):
            moved[name] += snapshot[name] - (previous[name] if previous else 0)
        at = event.created_at.astimezone(UTC)
        for span, start in (
            (60, at.replace(second=0, microsecond=0)),
            (3600, at.replace(minute=0, second=0, microsecond=0)),
        ):
            rows[(agent, "", span, start)].update(moved)
    for task in Task.objects.filter(organization=org, status=lifecycle.Status.PENDING, deleted_at__isnull=True):
        rows[(task.agent_id or 0, task.queue, 0, rollups.NOW_START)]["pending"] += 1
    result: dict[tuple, dict] = {}
    for key, counts in rows.items():
        values = {name: value for name, value in counts.items() if value}
        if "duration_sum" in values:
            values["duration_sum"] = round(values["duration_sum"], 3)
        if values:
            result[key] = values
    for (*key, column), when in seen.items():
        result.setdefault(tuple(key), {})[column] = when
    return result


class Clock:
    """timezone.now() moving on by a random step per change, so the mix spans minutes and hours."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.now = datetime(2026, 11, 30, 22, 50, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(
            seconds=self.rng.choice([0, 1, 7, 30, 61, 400, 3000]), microseconds=self.rng.randint(0, 999_999)
        )
        return self.now


def random_mix(org: Organization, rng: random.Random, actors: list, steps: int, prefix: str = "t") -> None:
    """Creates, status changes (lifecycle-allowed and refused), stops, retries, claims, deletes,
    token reports (up and down), queue moves, through users and tokens of every agent face."""
    agents = ["support-bot", "research-agent", None]
    ids: list[str] = []
    for step in range(steps):
        actor = rng.choice(actors)
        op = rng.random()
        try:
            if op < 0.25 or not ids:
                task_id = f"{prefix}{step}"
                status = rng.choice([lifecycle.Status.PENDING] * 4 + list(lifecycle.STATUSES))
                services.task_create(
                    organization=org,
                    actor=actor,
                    id=task_id,
                    agent=rng.choice(agents),
                    status=status,
                    queue=rng.choice(["", "", "jsonrpc"]),
                    prompt_tokens=rng.choice([0, 0, 120]),
                )
                ids.append(task_id)
                continue
            task_id = rng.choice(ids)
            kind = rng.random()
            if kind < 0.3:
                services.task_update(
                    task=task_id, organization_id=org.pk, actor=actor, status=rng.choice(lifecycle.STATUSES)
                )
            elif kind < 0.4:
                services.task_stop(
                    task=task_id, organization_id=org.pk, actor=actor, status=rng.choice(services.STOP_STATUSES)
                )
            elif kind < 0.5:
                services.task_retry(task=task_id, organization_id=org.pk, actor=actor)
            elif kind < 0.6:
                services.report_metrics(
                    task=task_id,
                    organization_id=org.pk,
                    actor=actor,
                    prompt_tokens=rng.randint(0, 5000),
                    completion_tokens=rng.randint(0, 900),
                    duration=rng.choice([None, 3.5]),
                )
            elif kind < 0.7:
                services.task_update(
                    task=task_id, organization_id=org.pk, actor=actor, queue=rng.choice(["", "jsonrpc", "slow"])
                )
            elif kind < 0.78:
                services.task_claim(organization=org, actor=actor, queue=rng.choice(["", "jsonrpc"]))
            elif kind < 0.85:
                services.task_delete(task=task_id, organization_id=org.pk, actor=actor)
            elif kind < 0.93:
                services.append_activity(
                    task=task_id, organization_id=org.pk, actor=actor, entries=[{"kind": "message", "content": "step"}]
                )
            else:
                services.task_update(task=task_id, organization_id=org.pk, actor=actor, metadata={"n": step})
        except services.ServiceError:
            pass  # refused by the lifecycle, or deleted: nothing changed, nothing counted


def actors_for(org: Organization, user) -> list:
    tokens = [services.api_token_create(organization=org, name=f"agent-{face}")[0] for face in AGENT_FACES]
    return [
        services.Actor.for_user(user),
        services.Actor.system("test"),
        *(services.Actor.for_token(token, face=face) for token, face in zip(tokens, AGENT_FACES, strict=True)),
    ]


@pytest.fixture
def every_write_seen(monkeypatch):
    """Note "last seen" on every token write (in production at most every SEEN_EVERY seconds)."""
    monkeypatch.setattr(rollups, "SEEN_EVERY", 0.0)
    rollups.forget_seen()
    yield
    rollups.forget_seen()


@pytest.mark.django_db
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollups_equal_a_fresh_aggregation_after_a_random_mix(acme, alice, monkeypatch, every_write_seen, seed):
    rng = random.Random(seed)
    monkeypatch.setattr(timezone, "now", Clock(rng))
    random_mix(acme, rng, actors_for(acme, alice), 400)
    assert TaskEvent.objects.filter(organization=acme).count() > 200
    expected = replayed(acme)
    assert expected, "the mix moved nothing"
    assert stored(acme) == expected
    # The mix went through every kind of row: created, each outcome, buckets, tokens, gauge, seen.
    columns = {name for values in expected.values() for name in values}
    assert {"created", "completed", "failed", "stopped", "prompt_tokens", "pending", *SEEN_COLUMNS} <= columns


@pytest.mark.django_db
def test_a_rebuild_counts_what_the_tasks_hold(acme, alice, monkeypatch, every_write_seen):
    """Tasks created, then finished with their tokens in one change: the rebuild from the tasks
    (for bulk loads) gives the rows the write path kept."""
    rng = random.Random(7)
    clock = Clock(rng)
    monkeypatch.setattr(timezone, "now", clock)
    actors = actors_for(acme, alice)
    for n in range(40):
        actor = rng.choice(actors)
        services.task_create(organization=acme, actor=actor, id=f"r{n}", agent=rng.choice(["a", "b", None]))
        if n % 4:
            services.task_update(
                task=f"r{n}",
                organization_id=acme.pk,
                actor=actor,
                status=rng.choice(sorted(lifecycle.TERMINAL)),
                prompt_tokens=rng.randint(1, 900),
                completion_tokens=rng.randint(1, 90),
            )
    kept = stored(acme)
    assert rollups.rebuild(acme.pk, now=clock.now) > 0
    assert stored(acme) == kept


@pytest.mark.django_db
def test_one_statement_per_write_that_moves_a_rollup_and_none_otherwise(acme, agent, alice_actor):
    task, _ = services.task_create(organization=acme, actor=alice_actor, id="one", agent=agent)

    def writes(call) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            call()
        return [q["sql"] for q in queries.captured_queries if "tasks_app_taskrollup" in q["sql"]]

    # Fields the operations view does not count: no statement at all.
    assert writes(lambda: services.task_update(task=task, actor=alice_actor, metadata={"k": 1}, priority=9)) == []
    assert (
        writes(lambda: services.task_update(task=task, actor=alice_actor, status="executing")) != []
    )  # leaves pending
    assert writes(lambda: services.task_update(task=task, actor=alice_actor, result="half way")) == []
    for call in (
        lambda: services.report_metrics(task=task, actor=alice_actor, prompt_tokens=10),
        lambda: services.task_update(task=task, actor=alice_actor, status="completed"),
        lambda: services.task_create(organization=acme, actor=alice_actor, id="two", agent=agent),
    ):
        statements = writes(call)
        assert len(statements) == 1, statements
        assert statements[0].startswith("INSERT") and "ON CONFLICT" in statements[0]
    row = TaskRollup.objects.get(organization=acme, span=3600, agent_key=agent.pk)
    assert (row.created, row.completed, row.prompt_tokens) == (2, 1, 10)


@pytest.mark.django_db
def test_last_seen_is_noted_per_face_at_most_every_few_seconds_per_process(acme, agent):
    rollups.forget_seen()
    token, _ = services.api_token_create(organization=acme, name="bot")
    xpander = services.Actor.for_token(token, face=Face.XPANDER)
    task, _ = services.task_create(organization=acme, actor=xpander, id="seen", agent=agent)
    gauge = TaskRollup.objects.get(organization=acme, span=0, agent_key=agent.pk)
    assert gauge.seen_xpander is not None and gauge.seen_api is None and gauge.pending == 1
    with CaptureQueriesContext(connection) as queries:
        services.task_update(task=task, actor=xpander, metadata={"k": 1})
    assert not [q for q in queries.captured_queries if "tasks_app_taskrollup" in q["sql"]]  # noted a moment ago
    services.task_update(task=task, actor=services.Actor.for_token(token, face=Face.AGENTEX), metadata={"k": 2})
    gauge.refresh_from_db()
    assert gauge.seen_agentex is not None
    rollups.forget_seen()


def test_durations_fall_in_buckets_of_their_size():
    assert rollups.bucket_of(0) == "d00"
    assert rollups.bucket_of(0.5) == "d00"
    assert rollups.bucket_of(0.6) == "d01"
    assert rollups.bucket_of(60) == "d14"  # 45.25 < 60 <= 64 (0.5 s · √2^14)
    assert rollups.bucket_of(10**7) == ROLLUP_BUCKETS[-1]


def test_every_final_status_has_one_outcome():
    assert {lifecycle.outcome(s) for s in lifecycle.TERMINAL} == {"completed", "failed", "stopped"}
    assert all(lifecycle.outcome(s) is None for s in lifecycle.ACTIVE)
    assert lifecycle.FAILURES | lifecycle.STOPS | {lifecycle.Status.COMPLETED} == lifecycle.TERMINAL


@requires_postgres
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_rollups_equal_a_fresh_aggregation_after_concurrent_writers(every_write_seen):
    from django.contrib.auth import get_user_model

    org = Organization.objects.create(slug="acme", name="Acme")
    user = get_user_model().objects.create_user(username="alice")
    actors = actors_for(org, user)
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def writer(n: int) -> None:
        try:
            start.wait()
            random_mix(org, random.Random(100 + n), actors, 120, prefix=f"w{n}-")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert stored(org) == replayed(org)
