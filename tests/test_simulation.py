"""The agent simulator: drives a running server through every face; survives 429, 409 and outages."""

import json
import random
import threading
import time
from collections import Counter
from io import StringIO

import httpx
import pytest
from django.core.management import call_command
from django.db import connection

from tasks_app import scenarios, services, simulation
from tasks_app.models import ActivityEntry, ApiToken, HitlRequest, Membership, Organization, Role, Task, TaskEvent
from tasks_app.scenarios import Work
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
    job = worker.new_job("t-1", Work.new(worker.name, random.Random(1)))
    worker.progress(job)
    # Out of task.update budget: it writes nothing and waits until its oldest update is a minute old,
    # rather than ending a task whose work it has not done.
    assert calls == [] and worker.jobs == [job] and job.calls_done == 0
    assert worker.parked_until == pytest.approx(worker.updates[0] + 60)
    job.calls_done = job.total_calls
    worker.finish(job)  # task.complete has no such limit: finished work is reported at once
    assert calls == ["task.complete"] and worker.jobs == []


def recording_server(sent: list, task_id: str = "t-1"):
    """A mock server that answers every face's calls about one task and keeps each request's JSON."""

    def handler(request):
        body = json.loads(request.content) if request.content else None
        sent.append((request.method, request.url.path, body))
        if request.url.path == "/rpc":
            result = {"id": task_id, "text": "x", "status": "in_progress", "priority": 50}
            return httpx.Response(200, json={"jsonrpc": "2.0", "result": result, "id": body["id"]})
        if request.url.path.endswith("/rpc"):  # Agentex's agent RPC
            return httpx.Response(200, json={"jsonrpc": "2.0", "result": {"id": task_id}, "id": body["id"]})
        return httpx.Response(200, json={"id": task_id})

    return handler


def test_the_agentex_agent_reports_its_source_and_tokens_in_task_metadata():
    """Agentex's task has no source or token fields: both travel in task_metadata (a full copy each time)."""
    sent = []
    sim = simulator(recording_server(sent), rate=1000)
    agent = agent_of(sim, simulation.AgentexAgent)
    agent.take_work()
    created = sent[0][2]["params"]["task_metadata"]
    assert created["source"] in agent.jobs[0].work.scenario.sources and created["run"] == agent.jobs[0].work.run
    job = agent.jobs[0]
    while job.unreported or not job.done:
        agent.progress(job)
    reports = [body["task_metadata"] for method, _, body in sent if method == "PUT" and "task_metadata" in body]
    assert reports, sent
    last = reports[-1]
    assert last["source"] == created["source"] and last["run"] == job.work.run  # replaced whole, kept whole
    assert last["usage"] == {"prompt_tokens": job.prompt_tokens, "completion_tokens": job.completion_tokens}
    assert job.prompt_tokens > 0 and job.completion_tokens > 0
    agent.finish(job)
    assert agent.jobs == []


def test_the_jsonrpc_worker_reports_its_source_on_create_and_tokens_with_each_update():
    sent = []
    sim = simulator(recording_server(sent), rate=1000)
    worker = agent_of(sim, JsonRpcWorker)
    worker.produce()
    created = sent[0][2]["params"]["metadata"]
    assert created["source"] and created["run"].startswith("r-")
    job = worker.new_job("t-1", Work.for_run(worker.name, created["run"]))
    worker.progress(job)
    update = sent[-1][2]
    assert update["method"] == "task.update"
    usage = update["params"]["updates"]["metadata"]["usage"]
    assert usage == {"input_tokens": job.prompt_tokens, "output_tokens": job.completion_tokens}
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0


def test_a_jsonrpc_error_is_a_refusal():
    def handler(request):
        error = {"code": -32602, "message": "Task not found: t-1", "data": {"taskId": "t-1"}}
        return httpx.Response(200, json={"jsonrpc": "2.0", "error": error, "id": json.loads(request.content)["id"]})

    sim = simulator(handler, rate=100)
    worker = agent_of(sim, JsonRpcWorker)
    for n in range(simulation.MAX_JOBS):  # a full hand, all done: the next step finishes one of them
        job = worker.new_job(f"t-{n}", Work.new(worker.name, random.Random(n)))
        job.calls_done = job.total_calls
    worker.step()
    assert len(worker.jobs) == simulation.MAX_JOBS - 1
    assert sim.stats.refused == 1 and sim.stats.changes == 0


def test_the_native_worker_files_a_follow_up_as_a_sub_task():
    sent = []
    sim = simulator(recording_server(sent, task_id="billing-100001"), rate=1000)
    worker = agent_of(sim, simulation.NativeWorker)
    work = next(w for n in range(200) if (w := Work.new(worker.name, random.Random(n))).follow_up() is not None)
    parent = worker.new_job("billing-100000", work)
    worker.rng.random = lambda: 0.0  # the coin says: file the follow-up now
    worker.produce()
    method, path, body = sent[-1]
    follow_up = work.follow_up()
    assert (method, path) == ("POST", "/api/v1/tasks") and body["parent_id"] == parent.id
    assert body["title"] == follow_up.title and body["input_text"] == follow_up.prompt
    assert body["source"] in follow_up.scenario.sources and body["metadata"]["run"] == f"{work.run}.1"
    assert body["deep_planning"]["tasks"] and parent.follow_up_filed


def test_the_pacer_hands_out_slots_at_the_rate():
    pacer = Pacer(50, threading.Event())
    started = time.monotonic()
    for _ in range(26):
        pacer.wait()
    assert 0.45 <= time.monotonic() - started < 0.9


# --- Against a real server ------------------------------------------------------------------


def _decide_hitl_requests(stop: threading.Event, decided: list, reviewer, until) -> None:
    """A person at the browser (an operator of both organizations): approves the first request of each
    organization, rejects the next; `until()` says when the run has shown enough."""
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
            until()
    finally:
        connection.close()


def _resumed(tasks: list[int]) -> list[int]:
    """The tasks the simulator wrote to after a person decided their request."""
    return [
        task
        for task in tasks
        if TaskEvent.objects.filter(
            task_id=task,
            actor_kind="token",
            type="task.activity",
            pk__gt=TaskEvent.objects.filter(task_id=task, type="task.hitl_decided").values("pk")[:1],
        ).exists()
    ]


MIN_RUN, MAX_RUN = 6.0, 40.0


def test_the_simulator_drives_every_face_of_a_running_server(transactional_db, daphne_server, monkeypatch):
    acme = Organization.objects.create(slug="acme", name="Acme")
    globex = Organization.objects.create(slug="globex", name="Globex")
    reviewer = services_user(acme, globex)
    monkeypatch.setattr(simulation, "HITL_CHANCE", 1.0)  # every question goes to a person: decisions in seconds
    first_event = TaskEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    runs = []
    real_init = Simulator.__init__

    def keep(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        runs.append(self)

    monkeypatch.setattr(Simulator, "__init__", keep)
    stop, decided = threading.Event(), []
    started = time.monotonic()

    def until() -> None:
        # At least MIN_RUN seconds, then until an approved task has gone on (at most MAX_RUN).
        approved = [task for _, ok, task in decided if ok]
        if runs and time.monotonic() - started >= MIN_RUN and _resumed(approved):
            runs[0].stop()

    decider = threading.Thread(target=_decide_hitl_requests, args=(stop, decided, reviewer, until))
    decider.start()
    out = StringIO()
    try:
        call_command(
            "simulate_agents", url=daphne_server, rate=20, duration=MAX_RUN, seed=5, hitl_poll=0.2, stdout=out,
            stderr=out,
        )  # fmt: skip
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

    # The pace held, in changes per second: never above the rate asked for (20/s), and not far below it
    # (a loaded 2-core machine shared with other test runs slows the server).
    stats = runs[0].stats
    assert stats.changes <= by_simulator.count() and 5 <= stats.rate <= 22, (stats.rate, stats.summary())

    # A person decided in the meantime: an approved task went on through the native face;
    # a rejected one had already ended, and the simulator wrote nothing to it afterwards.
    approved = [task for _, ok, task in decided if ok]
    rejected = [task for _, ok, task in decided if not ok]
    assert _resumed(approved), (approved, elapsed)
    for task in rejected:
        decision = events.get(task_id=task, type="task.hitl_decided")
        assert decision.after["status"] == "failed"
        assert not events.filter(task_id=task, pk__gt=decision.pk).exists()

    # The command's tokens exist no more (revoked), one per organization and face.
    tokens = ApiToken.objects.filter(name__startswith="simulator-")
    assert tokens.count() == 8
    assert not tokens.filter(revoked_at__isnull=True).exists()

    assert_the_demo_looks_real(Task.objects.filter(pk__in=by_simulator.values("task_id")))


def assert_the_demo_looks_real(tasks) -> None:
    """Named agents per face, meaningful titles and prompts, tokens, sources, varied tool calls with
    some failures, sub-tasks and checklists, and questions that are about their own task."""
    tasks = list(tasks.select_related("agent", "organization", "assigned_worker", "parent"))
    for task in tasks:
        assert not task.display_title.startswith(("sim-", task.public_id)), task.display_title
        run = task.metadata.get("run") or task.payload_extension.get("run")
        if run is None:  # a run executed elsewhere, recorded whole through xpander's report_task
            assert task.source == "external" and task.input_text and task.result or task.status == "failed"
            continue
        agent = task.agent.name if task.agent_id else scenarios.face_agent(task.organization.slug, "jsonrpc")
        work = Work.for_run(agent, run)
        assert work.title in task.display_title, (work.title, task.display_title)
        if task.agent_id:
            assert task.agent.name in scenarios.AGENTS[task.organization.slug], task.agent.name
        else:  # a JSON-RPC task: ClaudeBench has no agents, its worker shows
            assert task.queue == "jsonrpc" and task.metadata["prompt"] == work.prompt
    by_face = {face: [t for t in tasks if t.agent and t.agent.name == scenarios.face_agent(t.organization.slug, face)]
               for face in ("xpander", "agentex", "api")}  # fmt: skip
    by_face["jsonrpc"] = [t for t in tasks if t.agent_id is None and t.queue == "jsonrpc"]
    for face in ("xpander", "api"):
        assert all(t.input_text for t in by_face[face]), face
        assert any(t.deep_planning.get("tasks") for t in by_face[face]), face
    for face, face_tasks in by_face.items():
        # Every face's agent says where each task came from and, by the end, what it cost and how
        # long it took: Agentex and JSON-RPC through their metadata (`source`, `usage`), having no
        # fields for either; a task's duration is the lifecycle's, from start to finish.
        assert all(t.source for t in face_tasks), (face, [t.public_id for t in face_tasks if not t.source])
        completed = [t for t in face_tasks if t.status == "completed"]
        assert completed, (face, Counter(t.status for t in face_tasks))
        for task in completed:
            assert task.prompt_tokens > 0 and task.completion_tokens > 0, (face, task.public_id)
            assert task.duration > 0 and task.finished_at, (face, task.public_id, task.duration)
    # Sub-tasks (follow-ups the native worker files, now and then: a short run may have none, see
    # test_the_native_worker_files_a_follow_up_as_a_sub_task) continue their parent's work.
    for task in (t for t in tasks if t.parent_id):
        assert task.source and task.input_text, task.public_id
        assert task.metadata["run"] == f"{task.parent.metadata.get('run') or task.parent.payload_extension['run']}.1"
    assert any(t.assigned_worker and t.assigned_worker.name.endswith(tuple("0123456789abcdef")) for t in tasks)
    calls = ActivityEntry.objects.filter(task__in=tasks, kind="tool_call")
    assert calls.values("tool_name").distinct().count() >= 3
    assert len({json.dumps(c, sort_keys=True) for c in calls.values_list("tool_arguments", flat=True)}) >= 3
    assert calls.filter(prompt_tokens__gt=0).exists()
    for hitl in HitlRequest.objects.filter(task__in=tasks).select_related("task__agent"):
        work = Work.for_run(hitl.task.agent.name, hitl.task.metadata["run"])
        asked = {work.hitl(i)["question"]: work.hitl(i) for i in work.question_indexes()}
        assert hitl.question in asked, (hitl.question, hitl.task.title)
        assert hitl.proposed_payload == asked[hitl.question].get("payload"), hitl.proposed_payload


def services_user(*organizations):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="alice", password="taskdesk")
    for organization in organizations:
        Membership.objects.create(user=user, organization=organization, role=Role.OPERATOR)
    return user
