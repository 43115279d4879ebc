"""The lifecycle written out as a specification: the transition table and every face's status
names are spelled out here literally (not derived from the code they test), so changing any
entry in tasks_app/lifecycle.py fails a test until this page is changed on purpose too."""

import itertools
import json

import pytest

from tasks_app import lifecycle
from tasks_app.api import ratelimit
from tasks_app.lifecycle import TransitionError, check_transition
from tasks_app.models import HitlRequest
from tasks_app.services import Actor, api_token_create, hitl_request, task_create, task_update

ENDINGS = {"completed", "failed", "error", "stopped", "canceled", "terminated", "timed_out"}

TRANSITIONS = {
    "pending": {"executing", "paused", *ENDINGS},
    "executing": {"pending", "paused", "interrupted", *ENDINGS},
    "paused": {"executing", "interrupted", *ENDINGS},
    "interrupted": {"pending", "executing", "paused", *ENDINGS},
    "completed": set(),
    "failed": set(),
    "error": set(),
    "stopped": set(),
    "canceled": set(),
    "terminated": set(),
    "timed_out": set(),
}

# name on the wire -> canonical status (what a face accepts)
PARSE = {
    "native": {s: s for s in TRANSITIONS},
    "xpander": {
        "pending": "pending",
        "executing": "executing",
        "paused": "paused",
        "error": "error",
        "failed": "failed",
        "completed": "completed",
        "stopped": "stopped",
    },
    "agentex": {
        "RUNNING": "executing",
        "INTERRUPTED": "interrupted",
        "COMPLETED": "completed",
        "FAILED": "failed",
        "CANCELED": "canceled",
        "TERMINATED": "terminated",
        "TIMED_OUT": "timed_out",
    },
    "jsonrpc": {"pending": "pending", "in_progress": "executing", "completed": "completed", "failed": "failed"},
}

# canonical status -> name on the wire (what a face answers)
RENDER = {
    "native": {s: s for s in TRANSITIONS},
    "xpander": {
        "pending": "pending",
        "executing": "executing",
        "paused": "paused",
        "interrupted": "paused",
        "completed": "completed",
        "failed": "failed",
        "error": "error",
        "stopped": "stopped",
        "canceled": "stopped",
        "terminated": "stopped",
        "timed_out": "failed",
    },
    "agentex": {
        "pending": "RUNNING",
        "executing": "RUNNING",
        "paused": "RUNNING",
        "interrupted": "INTERRUPTED",
        "completed": "COMPLETED",
        "failed": "FAILED",
        "error": "FAILED",
        "stopped": "CANCELED",
        "canceled": "CANCELED",
        "terminated": "TERMINATED",
        "timed_out": "TIMED_OUT",
    },
    "jsonrpc": {
        "pending": "pending",
        "executing": "in_progress",
        "paused": "in_progress",
        "interrupted": "in_progress",
        "completed": "completed",
        "failed": "failed",
        "error": "failed",
        "stopped": "failed",
        "canceled": "failed",
        "terminated": "failed",
        "timed_out": "failed",
    },
}


def test_the_statuses_are_these_eleven_in_this_order():
    assert lifecycle.STATUSES == (
        "pending", "executing", "paused", "interrupted", "completed", "failed", "error", "stopped", "canceled",
        "terminated", "timed_out",
    )  # fmt: skip
    assert lifecycle.TERMINAL == ENDINGS


@pytest.mark.parametrize(("current", "target"), list(itertools.product(TRANSITIONS, TRANSITIONS)))
def test_every_pair_follows_the_written_table(current, target):
    if target == current or target in TRANSITIONS[current]:
        check_transition(current, target)
    else:
        with pytest.raises(TransitionError) as info:
            check_transition(current, target)
        assert info.value.allowed == sorted(TRANSITIONS[current])


@pytest.mark.parametrize("face", list(PARSE))
def test_each_face_accepts_exactly_these_names(face):
    statuses = lifecycle.FACES[face]
    assert statuses.names() == list(PARSE[face])
    assert {name: statuses.parse(name) for name in statuses.names()} == PARSE[face]


@pytest.mark.parametrize("face", list(RENDER))
def test_each_face_answers_these_names(face):
    assert {status: lifecycle.FACES[face].render(status) for status in TRANSITIONS} == RENDER[face]


@pytest.fixture
def one_task_per_status(acme):
    actor = Actor.system()
    for status in TRANSITIONS:
        task_create(organization=acme, actor=actor, id=f"s-{status}", title=status, status=status)


@pytest.fixture
def auth(acme):
    token, raw = api_token_create(organization=acme, name="spec")
    ratelimit.forget(token)
    return raw


def test_the_wire_answers_the_written_names(client, one_task_per_status, auth):
    """What each face actually sends for a task in each status (not just what the table says)."""
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {auth}"}
    seen: dict[str, dict[str, str]] = {face: {} for face in RENDER}
    for status in TRANSITIONS:
        seen["native"][status] = client.get(f"/api/v1/tasks/s-{status}", **bearer).json()["status"]
        seen["xpander"][status] = client.get(f"/xpander/agent-execution/s-{status}/status", HTTP_X_API_KEY=auth).json()[
            "status"
        ]
        seen["agentex"][status] = client.get(f"/agentex/tasks/s-{status}", **bearer).json()["status"]
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "task.list", "params": {"limit": 100}})
    tasks = client.post("/rpc", body, content_type="application/json", **bearer).json()["result"]["tasks"]
    seen["jsonrpc"] = {t["id"].removeprefix("s-"): t["status"] for t in tasks}
    assert seen == RENDER


# --- Leaving paused by an update withdraws the HITL request ----------------------------------


@pytest.fixture
def paused(acme):
    actor = Actor.system()
    task, _ = task_create(organization=acme, actor=actor, id="p-1", title="p", status="executing")
    hitl = hitl_request(task=task, actor=actor, question="Go?")
    return task, hitl


@pytest.mark.parametrize("target", sorted(TRANSITIONS["paused"]))
def test_every_way_out_of_paused_by_an_update_withdraws_the_request(paused, target):
    task, hitl = paused
    task_update(task=task, actor=Actor.system("agent"), status=target)
    hitl.refresh_from_db()
    assert hitl.decision == "withdrawn"
    assert hitl.decided_by_label == "agent" and hitl.decided_at is not None


def test_an_update_that_stays_paused_keeps_the_request(paused):
    task, hitl = paused
    task_update(task=task, actor=Actor.system(), title="renamed", status="paused")
    hitl.refresh_from_db()
    assert hitl.decision is None


def test_faces_leaving_paused_withdraw_too(client, paused, auth):
    task, hitl = paused
    response = client.patch(
        "/xpander/agent-execution/p-1/update", '{"status": "executing"}', content_type="application/json",
        HTTP_X_API_KEY=auth,
    )  # fmt: skip
    assert response.status_code == 200, response.content
    assert HitlRequest.objects.get(pk=hitl.pk).decision == "withdrawn"
    # A new pause, left through the native face.
    second = hitl_request(task=task, actor=Actor.system(), question="Again?")
    response = client.patch(
        "/api/v1/tasks/p-1", '{"status": "completed"}', content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {auth}",
    )  # fmt: skip
    assert response.status_code == 200, response.content
    assert HitlRequest.objects.get(pk=second.pk).decision == "withdrawn"


# --- The tests' rate-limit reset really resets ---------------------------------------------


@pytest.mark.parametrize("redis_up", [True, False])
def test_forget_resets_the_counts_the_limiter_uses(acme, settings, monkeypatch, redis_up):
    if not redis_up:
        monkeypatch.setattr(ratelimit._redis, "client", lambda: None)  # the per-process fallback
    settings.RATE_LIMITS = {"api.tasks.get": (2, 60), "*": (600, 60)}
    token, _ = api_token_create(organization=acme, name="limited")
    ratelimit.forget(token)
    assert [ratelimit.hit(token, "api", "tasks.get").allowed for _ in range(3)] == [True, True, False]
    ratelimit.forget(token)
    assert ratelimit.hit(token, "api", "tasks.get").allowed
    assert ratelimit.hit(token, "api", "tasks.get").allowed
    assert not ratelimit.hit(token, "api", "tasks.get").allowed
