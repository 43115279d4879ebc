"""The agent simulator: drives a running server through every face; survives 429, 409 and outages."""

import json
import threading
import time
from collections import Counter
from io import StringIO

import httpx
import pytest
from django.core.management import call_command
from django.db import connection

from tasks_app import services, simulation
from tasks_app.models import ApiToken, HitlRequest, Membership, Organization, Role, TaskEvent
from tasks_app.simulation import JsonRpcWorker, Pacer, Parked, Simulator, XpanderAgent

TOKENS = {"acme": dict.fromkeys(simulation.FACES, "td_test")}


def simulator(handler, **kwargs) -> Simulator:
    http = httpx.Client(base_url="http://taskdesk.test", transport=httpx.MockTransport(handler))
    return Simulator("http://taskdesk.test", TOKENS, http=http, seed=1, **kwargs)


def agent_of(sim: Simulator, cls):
    return next(a for a in sim.agents if isinstance(a, cls))


# --- Against a mock server ------------------------------------------------------------------


def test_a_429_parks_the_agent_for_retry_after_and_the_loop_goes_on():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(429, headers={"Retry-After": "30"}, json={"detail": "Rate limit exceeded"})

    sim = simulator(handler, rate=50)
    stats = sim.run(duration=0.6)
    # Every agent asked once, was told to wait 30 s, and did: no agent asked twice.
    assert len(seen) == len(sim.agents) == 4
    assert stats.rate_limited == 4 and stats.changes == 0
    assert all(agent.parked_until > time.monotonic() + 25 for agent in sim.agents)


def test_a_409_is_logged_and_the_task_let_go(caplog):
    def handler(request):
        if request.method == "POST":
            return httpx.Response(201, json={"id": "t-1"})
        return httpx.Response(409, json={"detail": "Cannot move a stopped task to executing", "code": "transition"})

    sim = simulator(handler, rate=100)
    agent = agent_of(sim, XpanderAgent)
    agent.step()  # creates t-1, then the start is refused
    assert agent.jobs == []
    assert sim.stats.refused == 1 and sim.stats.changes == 1
    assert "refused: 409" in caplog.text and "lets task t-1 go" in caplog.text


def test_network_errors_never_end_the_run():
    def handler(request):
        raise httpx.ConnectError("connection refused", request=request)

    sim = simulator(handler, rate=50)
    stats = sim.run(duration=0.5)
    assert stats.network_errors >= 4 and stats.changes == 0
    with pytest.raises(Parked):
        sim.request(sim.agents[0], "GET", "/api/v1/tasks", write=False)


def test_the_jsonrpc_worker_stays_under_the_task_update_limit():
    calls = []

    def handler(request):
        body = json.loads(request.content)
        calls.append(body["method"])
        result = {"id": "t-1", "text": "x", "status": "completed", "priority": 50}
        return httpx.Response(200, json={"jsonrpc": "2.0", "result": result, "id": body["id"]})

    sim = simulator(handler, rate=100)
    worker = agent_of(sim, JsonRpcWorker)
    for _ in range(simulation.JSONRPC_UPDATES_PER_MINUTE):
        worker.updates.append(time.monotonic())
    job = worker.new_job("t-1", "Answer ticket #1")
    job.steps_left = 3
    worker.progress(job)
    # Out of task.update budget: the task is completed (task.complete has no such limit).
    assert calls == ["task.complete"] and worker.jobs == []


def test_a_jsonrpc_error_is_a_refusal():
    def handler(request):
        error = {"code": -32602, "message": "Task not found: t-1", "data": {"taskId": "t-1"}}
        return httpx.Response(200, json={"jsonrpc": "2.0", "error": error, "id": json.loads(request.content)["id"]})

    sim = simulator(handler, rate=100)
    worker = agent_of(sim, JsonRpcWorker)
    for n in range(simulation.MAX_JOBS):  # a full hand: the next step finishes one of them
        worker.new_job(f"t-{n}", "Answer ticket").steps_left = 0
    worker.step()
    assert len(worker.jobs) == simulation.MAX_JOBS - 1
    assert sim.stats.refused == 1 and sim.stats.changes == 0


def test_the_pacer_hands_out_slots_at_the_rate():
    pacer = Pacer(50, threading.Event())
    started = time.monotonic()
    for _ in range(26):
        pacer.wait()
    assert 0.45 <= time.monotonic() - started < 0.9


# --- Against a real server ------------------------------------------------------------------


def _decide_hitl_requests(stop: threading.Event, decided: list, reviewer) -> None:
    """A person at the browser: approves the first request of each organization, rejects the next."""
    actor = services.Actor.for_user(reviewer)
    try:
        while not stop.wait(0.1):
            for hitl in HitlRequest.objects.filter(decision__isnull=True).select_related("organization"):
                approve = not any(org == hitl.organization.slug and ok for org, ok, _ in decided)
                try:
                    services.hitl_decide(hitl=hitl, actor=actor, approve=approve, reason="" if approve else "No.")
                except services.ServiceError:
                    continue
                decided.append((hitl.organization.slug, approve, hitl.task_id))
    finally:
        connection.close()


def test_the_simulator_drives_every_face_of_a_running_server(transactional_db, daphne_server, monkeypatch):
    acme = Organization.objects.create(slug="acme", name="Acme")
    Organization.objects.create(slug="globex", name="Globex")
    reviewer = services_user(acme)
    monkeypatch.setattr(simulation, "HITL_CHANCE", 0.5)  # enough pauses to see both decisions in seconds
    first_event = TaskEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0

    stop, decided = threading.Event(), []
    decider = threading.Thread(target=_decide_hitl_requests, args=(stop, decided, reviewer))
    decider.start()
    out = StringIO()
    started = time.monotonic()
    try:
        call_command(
            "simulate_agents", url=daphne_server, rate=20, duration=6, seed=5, hitl_poll=0.2, stdout=out, stderr=out
        )
    finally:
        stop.set()
        decider.join(timeout=10)
    elapsed = time.monotonic() - started
    assert "Simulator stopped:" in out.getvalue(), out.getvalue()

    events = TaskEvent.objects.filter(pk__gt=first_event)
    by_simulator = events.filter(actor_kind="token")
    # Changes arrived through each face, each under its own token's name.
    assert set(by_simulator.values_list("face", flat=True)) == {"xpander", "agentex", "jsonrpc", "api"}
    for face, label in by_simulator.values_list("face", "actor_label").distinct():
        assert label == f"token:simulator-{face}"
    assert not events.filter(actor_kind="system").exists()
    assert set(events.exclude(actor_kind="token").values_list("actor_label", flat=True)) <= {"alice"}
    assert set(by_simulator.values_list("task__organization__slug", flat=True)) == {"acme", "globex"}

    # Tasks moved through their lifecycle: created, started, worked on, paused, finished.
    statuses = Counter(after.get("status") for after in by_simulator.values_list("after", flat=True))
    assert {"pending", "executing", "paused", "completed"} <= set(statuses)
    types = set(by_simulator.values_list("type", flat=True))
    assert {"task.created", "task.updated", "task.activity", "task.metrics", "task.hitl_requested"} <= types

    # The rate held (within what a shared 2-core machine allows), in changes per second.
    rate = by_simulator.count() / elapsed
    assert 8 <= rate <= 22, rate

    # A person decided in the meantime: an approved task went on through the native face;
    # a rejected one had already ended, and the simulator wrote nothing to it afterwards.
    approved = [task for _, ok, task in decided if ok]
    rejected = [task for _, ok, task in decided if not ok]
    assert approved, decided
    resumed = [
        task
        for task in approved
        if by_simulator.filter(
            task_id=task, type="task.activity", pk__gt=events.get(task_id=task, type="task.hitl_decided").pk
        ).exists()
    ]
    assert resumed, approved
    for task in rejected:
        decision = events.get(task_id=task, type="task.hitl_decided")
        assert decision.after["status"] == "failed"
        assert not events.filter(task_id=task, pk__gt=decision.pk).exists()

    # The command's tokens exist no more (revoked), one per organization and face.
    tokens = ApiToken.objects.filter(name__startswith="simulator-")
    assert tokens.count() == 8
    assert not tokens.filter(revoked_at__isnull=True).exists()


def services_user(organization):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="alice", password="taskdesk")
    Membership.objects.create(user=user, organization=organization, role=Role.OPERATOR)
    return user
