"""Management commands: seed_demo, create_api_token, simulate_agents (and the in-server simulator)."""

import asyncio
import hashlib
import threading
from io import StringIO

import pytest
from channels.layers import get_channel_layer
from django.core.management import CommandError, call_command
from django.db.models import F

from tasks_app import lifecycle, services
from tasks_app.models import (
    ActivityEntry,
    ApiToken,
    HitlRequest,
    Membership,
    Organization,
    Task,
    TaskEvent,
    hash_token,
)
from tasks_app.simulation import AgentSimulator


def seed(**options) -> str:
    out = StringIO()
    call_command("seed_demo", no_progress=True, stdout=out, **options)
    return out.getvalue()


def snapshot() -> dict:
    rows = Task.objects.order_by("pk").values_list("pk", "status", "title", "priority", "parent_id", "version")
    return {
        "tasks": Task.objects.count(),
        "events": TaskEvent.objects.count(),
        "activity": ActivityEntry.objects.count(),
        "hitl": HitlRequest.objects.count(),
        "orgs": sorted(Organization.objects.values_list("slug", flat=True)),
        "memberships": sorted(Membership.objects.values_list("user__username", "organization__slug", "role")),
        "checksum": hashlib.sha256(repr(list(rows)).encode()).hexdigest(),
    }


def test_seed_demo_twice_gives_the_same_data(db):
    seed()
    first = snapshot()
    output = seed()
    assert snapshot() == first
    assert "0 new tasks (300 already there)" in output
    assert first["tasks"] == 300
    assert first["events"] == 300  # one task.created per task
    assert first["orgs"] == ["acme", "globex"]
    assert first["memberships"] == [
        ("alice", "acme", "operator"),
        ("bob", "acme", "viewer"),
        ("charlie", "globex", "operator"),
    ]


def test_seed_demo_is_deterministic_across_databases(db):
    seed(tasks=50)
    first = snapshot()
    Task.objects.all().delete()
    seed(tasks=50)
    assert snapshot()["checksum"] == first["checksum"]


def test_seed_demo_covers_the_whole_demo(db, django_user_model):
    seed()
    assert set(Task.objects.values_list("status", flat=True)) == set(lifecycle.STATUSES)
    for slug in ("acme", "globex"):
        assert Task.objects.filter(organization__slug=slug).count() > 50
    assert Task.objects.filter(parent__isnull=False).exists()
    assert not Task.objects.filter(parent__isnull=False).exclude(parent__organization=F("organization")).exists()
    assert Task.objects.filter(deep_planning__enabled=True).exists()
    assert Task.objects.filter(prompt_tokens__gt=0, completion_tokens__gt=0).exists()
    assert set(ActivityEntry.objects.values_list("kind", flat=True)) == {
        "message",
        "tool_call",
        "tool_result",
        "reasoning",
    }
    assert ActivityEntry.objects.filter(kind="tool_call", tool_arguments__isnull=False).exists()
    paused = Task.objects.filter(status="paused")
    assert paused.exists()
    assert HitlRequest.objects.filter(decision__isnull=True).count() == paused.count()
    assert not paused.filter(hitl_requests__isnull=True).exists()
    event = TaskEvent.objects.get(task_id="demo-acme-0001")
    assert (event.type, event.actor_label, event.face, event.task_version) == (
        "task.created",
        "seed_demo",
        "command",
        1,
    )
    admin = django_user_model.objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("taskdesk")
    assert django_user_model.objects.get(username="bob").check_password("taskdesk")


def test_seed_demo_rejects_a_negative_count(db):
    with pytest.raises(CommandError):
        seed(tasks=-1)


def test_create_api_token_prints_a_working_token_once(db):
    seed(tasks=0)
    out, err = StringIO(), StringIO()
    call_command("create_api_token", org="acme", name="ci", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    token = ApiToken.objects.get()
    assert services.api_token_authenticate(raw) == token
    assert token.token_hash == hash_token(raw)
    assert raw not in token.token_hash and raw not in token.prefix + token.name
    assert token.organization.slug == "acme" and token.name == "ci"
    assert raw not in err.getvalue() and token.prefix in err.getvalue()


def test_create_api_token_names_an_unknown_org(db):
    seed(tasks=0)
    with pytest.raises(CommandError) as info:
        call_command("create_api_token", org="nope", stdout=StringIO(), stderr=StringIO())
    assert "nope" in str(info.value) and "acme" in str(info.value)
    assert not ApiToken.objects.exists()


def test_simulate_agents_moves_tasks_through_the_services(db):
    seed(tasks=40)
    before = {pk: (status, version) for pk, status, version in Task.objects.values_list("pk", "status", "version")}
    out = StringIO()
    call_command("simulate_agents", rate=100, duration=1.0, seed=7, stdout=out, stderr=StringIO())
    assert "Simulator stopped after" in out.getvalue()
    events = TaskEvent.objects.filter(actor_label="simulator")
    assert events.count() >= 10
    assert set(events.values_list("face", flat=True)) == {"system"}
    assert {"task.updated", "task.activity"} <= set(events.values_list("type", flat=True))
    changed = [
        pk
        for pk, status, version in Task.objects.values_list("pk", "status", "version")
        if before.get(pk) != (status, version)
    ]
    assert changed
    # Every simulated change left its version and event in step.
    for task in Task.objects.filter(pk__in=changed):
        assert TaskEvent.objects.filter(task=task).order_by("-id").first().task_version == task.version


def test_simulate_agents_refuses_an_unknown_org(db):
    with pytest.raises(CommandError):
        call_command("simulate_agents", org=["nope"], duration=0.1, stdout=StringIO(), stderr=StringIO())


@pytest.mark.django_db(transaction=True)
def test_the_in_server_simulator_publishes_on_the_servers_loop():
    """What dashboard/asgi.py starts: steps run on the server's loop, so its channel layer gets the events."""
    seed(tasks=30)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    layer = get_channel_layer()
    acme = Organization.objects.get(slug="acme")

    def on_loop(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=10)

    channel = on_loop(layer.new_channel())
    on_loop(layer.group_add(f"org.{acme.pk}", channel))
    try:
        stop = threading.Event()
        steps = AgentSimulator(organizations=["acme"], seed=3).run(50, stop, duration=0.6, loop=loop)
        assert steps >= 5
        message = on_loop(asyncio.wait_for(layer.receive(channel), timeout=5))
        assert message["organization_id"] == acme.pk
        assert TaskEvent.objects.filter(pk=message["event_id"], actor_label="simulator").exists()
    finally:
        on_loop(layer.group_discard(f"org.{acme.pk}", channel))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
