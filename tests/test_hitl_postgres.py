"""Concurrent decisions on one HITL request, on PostgreSQL: exactly one wins, the rest learn who."""

import threading

import pytest
from django.db import connection, connections
from django.test import Client
from django.urls import reverse

from tasks_app import services
from tasks_app.models import EventType, HitlRequest, Membership, Role, Task, TaskEvent

from .conftest import requires_postgres

pytestmark = [requires_postgres, pytest.mark.postgres]


def _run_at_once(functions):
    barrier = threading.Barrier(len(functions))
    results: list = [None] * len(functions)

    def run(i, fn):
        try:
            barrier.wait(timeout=10)
            results[i] = fn()
        except Exception as exc:  # collected and asserted by the caller
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(functions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


@pytest.fixture
def deciders(transactional_db, acme, django_user_model):
    users = []
    for i in range(6):
        user = django_user_model.objects.create_user(username=f"op{i}", password="taskdesk")
        Membership.objects.create(user=user, organization=acme, role=Role.OPERATOR)
        users.append(user)
    return users


def _paused_request(acme, task_id="race-1"):
    actor = services.Actor.system("agent")
    services.task_create(organization=acme, actor=actor, id=task_id)
    services.task_update(task=task_id, organization_id=acme.pk, actor=actor, status="executing")
    return services.hitl_request(task=task_id, organization_id=acme.pk, actor=actor, question="Go?", payload={"n": 1})


def test_concurrent_service_decisions_exactly_one_wins(acme, deciders):
    assert connection.vendor == "postgresql"
    hitl = _paused_request(acme)

    def decide(user, approve):
        return lambda: services.hitl_decide(
            hitl=hitl.pk,
            organization_id=acme.pk,
            actor=services.Actor.for_user(user),
            approve=approve,
            reason="" if approve else "no",
        )

    results = _run_at_once([decide(user, i % 2 == 0) for i, user in enumerate(deciders)])
    wins = [r for r in results if isinstance(r, HitlRequest)]
    losses = [r for r in results if isinstance(r, services.HitlAlreadyDecided)]
    assert len(wins) == 1 and len(losses) == len(deciders) - 1, results
    winner = wins[0]
    for loss in losses:
        assert f"Already {winner.decision} by {winner.decided_by_label}" in loss.message
    events = list(TaskEvent.objects.filter(task_id=hitl.task_id, type=EventType.HITL_DECIDED))
    assert len(events) == 1 and events[0].actor_user_id == winner.decided_by_id
    expected = "executing" if winner.decision == "approved" else "failed"
    assert Task.objects.get(organization=acme, public_id="race-1").status == expected


def test_concurrent_http_decisions_exactly_one_wins(acme, deciders):
    hitl = _paused_request(acme, "race-2")
    url = reverse("hitl_decide", args=[hitl.pk])
    clients = []
    for user in deciders[:4]:
        c = Client()
        c.force_login(user)
        clients.append(c)

    def post(c):
        return lambda: c.post(url, {"action": "approve", "comment": "mine"}, HTTP_HX_REQUEST="true")

    responses = _run_at_once([post(c) for c in clients])
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 409, 409, 409], responses
    hitl.refresh_from_db()
    for r in responses:
        if r.status_code == 409:
            assert f"Already approved by {hitl.decided_by_label}" in r.content.decode()
    assert TaskEvent.objects.filter(task_id=hitl.task_id, type=EventType.HITL_DECIDED).count() == 1
