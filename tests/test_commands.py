"""Management commands: seed_demo, create_api_token, simulate_agents (its options; the run is in test_simulation)."""

import hashlib
import json
import signal
import socket
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F

from tasks_app import lifecycle, scenarios, selectors, services
from tasks_app.management.commands import seed_demo
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
from tasks_app.scenarios import Work

from .conftest import requires_postgres


def seed(**options) -> str:
    out = StringIO()
    call_command("seed_demo", no_progress=True, stdout=out, **options)
    return out.getvalue()


def snapshot() -> dict:
    # By public id: internal row ids come from a sequence and differ between databases.
    rows = Task.objects.order_by("organization__slug", "public_id").values_list(
        "organization__slug", "public_id", "status", "title", "priority", "parent__public_id", "version"
    )
    return {
        "tasks": Task.objects.count(),
        "events": TaskEvent.objects.count(),
        "activity": ActivityEntry.objects.count(),
        "hitl": HitlRequest.objects.count(),
        "orgs": sorted(Organization.objects.values_list("slug", flat=True)),
        "memberships": sorted(Membership.objects.values_list("user__username", "organization__slug", "role")),
        "checksum": hashlib.sha256(repr(list(rows)).encode()).hexdigest(),
    }


def assert_counts_match_the_tasks() -> None:
    """The status counts the write path keeps (TaskCount) equal a fresh GROUP BY, per organization."""
    for org in Organization.objects.all():
        assert selectors.status_counts(org.pk) == selectors.status_counts_by_group_by(org.pk), org.slug


def test_seed_demo_twice_gives_the_same_data(db):
    seed()
    first = snapshot()
    assert_counts_match_the_tasks()
    assert sum(selectors.status_counts(Organization.objects.get(slug="acme").pk).values()) == 200
    output = seed()
    assert snapshot() == first
    assert_counts_match_the_tasks()
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
    assert_counts_match_the_tasks()


def test_seed_demo_adds_to_existing_tasks_and_their_counts(db):
    seed(tasks=30)
    acme = Organization.objects.get(slug="acme")
    services.task_create(organization=acme, actor=services.Actor.system("test"), id="made-by-hand")
    seed(tasks=60)
    assert Task.objects.count() == 61
    assert_counts_match_the_tasks()


def test_seed_demo_ids_are_per_organization(db):
    seed(tasks=30)
    ids = Task.objects.values_list("organization__slug", "public_id")
    assert all(public_id.startswith(f"demo-{slug}-") for slug, public_id in ids)
    assert len(set(ids)) == 30


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
    # Every seeded result is paired with its call, and some of them failed.
    results = ActivityEntry.objects.filter(kind="tool_result").select_related("call")
    assert results.exists() and all(r.call and r.call.tool_call_id == r.tool_call_id for r in results)
    assert any(r.is_failure for r in results) and not all(r.is_failure for r in results)
    paused = Task.objects.filter(status="paused")
    assert paused.exists()
    assert HitlRequest.objects.filter(decision__isnull=True).count() == paused.count()
    assert not paused.filter(hitl_requests__isnull=True).exists()
    event = TaskEvent.objects.get(task__organization__slug="acme", task__public_id="demo-acme-0001")
    assert (event.type, event.actor_label, event.face, event.task_version) == (
        "task.created",
        "seed_demo",
        "command",
        1,
    )
    # Every seeded event carries its task as seeded, so every stream replays it as it was.
    from tasks_app.services.snapshots import task_at

    hitl_of = dict(HitlRequest.objects.filter(decision__isnull=True).values_list("task_id", "pk"))
    for event in TaskEvent.objects.select_related("task", "task__parent"):
        assert event.snapshot is not None, event
        shown = task_at(event)
        assert (shown.status, shown.title, shown.version) == (event.task.status, event.task.title, 1)
        assert shown.parent_public_id == (event.task.parent.public_id if event.task.parent_id else None)
        assert event.snapshot["pending_hitl_id"] == hitl_of.get(event.task_id)
    admin = django_user_model.objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("taskdesk")
    assert django_user_model.objects.get(username="bob").check_password("taskdesk")


def test_seeding_again_keeps_a_password_someone_changed_and_can_migrate_first(db, django_user_model):
    call_command("seed_demo", tasks=3, no_progress=True, stdout=StringIO())
    bob = django_user_model.objects.get(username="bob")
    bob.set_password("bobs-own")
    bob.save()
    out = StringIO()
    call_command("seed_demo", tasks=3, no_progress=True, migrate=True, stdout=out)
    assert "No migrations to apply" in out.getvalue() and "0 new tasks" in out.getvalue()
    assert django_user_model.objects.get(username="bob").check_password("bobs-own")
    assert django_user_model.objects.get(username="alice").check_password("taskdesk")


def test_seeded_tasks_each_tell_one_story(db):
    """Title, prompt, agent, tool calls, checklist, question and outcome all come from one piece of work."""
    seed()
    tasks = list(Task.objects.select_related("agent", "parent"))
    for task in tasks:
        work = Work.for_run(task.agent.name, task.metadata["run"])
        assert (task.title, task.input_text, task.agent.name) == (work.title, work.prompt, task.agent.name)
        assert task.agent.name in scenarios.AGENTS[task.organization.slug]
        assert task.source in work.scenario.sources
        if task.parent_id:  # a follow-up of its parent's work, by the same agent
            assert task.metadata["run"] == task.parent.metadata["run"] + ".1" and task.agent_id == task.parent.agent_id
        if task.status == "completed":
            assert task.result == work.result and task.duration > 0
        elif task.status in ("failed", "error", "timed_out", "stopped", "canceled", "terminated"):
            assert task.status_reason
        if task.deep_planning:
            assert [step["title"] for step in task.deep_planning["tasks"]] == list(work.scenario.plan)
    assert Task.objects.filter(parent__isnull=False).count() >= 5
    for hitl in HitlRequest.objects.select_related("task__agent"):
        work = Work.for_run(hitl.task.agent.name, hitl.task.metadata["run"])
        asked = work.hitl(work.question_indexes()[0])
        assert (hitl.question, hitl.details) == (asked["question"], asked["details"])
        assert hitl.proposed_payload == asked.get("payload") and hitl.options == asked.get("options", [])
    calls = list(
        ActivityEntry.objects.filter(kind="tool_call").values_list("task__metadata", "tool_name", "tool_arguments")
    )
    assert len({(name, json.dumps(args, sort_keys=True)) for _, name, args in calls}) > 0.5 * len(calls)
    for metadata, name, arguments in calls:  # each call is one of its work's calls, with that work's facts
        task = next(t for t in tasks if t.metadata == metadata)
        work = Work.for_run(task.agent.name, metadata["run"])
        assert (name, arguments) in [(t.name, work.arguments(i)) for i, t in enumerate(work.tools)], (name, task.title)
    failures = [e for e in ActivityEntry.objects.filter(kind="tool_result") if e.is_failure]
    assert failures and all(e.failure for e in failures)


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_simulate_agents_refuses_an_unknown_org(db):
    with pytest.raises(CommandError):
        call_command("simulate_agents", org=["nope"], duration=0.1, stdout=StringIO(), stderr=StringIO())
    assert not ApiToken.objects.exists()


def test_simulate_agents_needs_organizations(db):
    with pytest.raises(CommandError, match="seed_demo"):
        call_command("simulate_agents", duration=0.1, stdout=StringIO(), stderr=StringIO())


@pytest.mark.parametrize("token", ["acme", "=td_x", "acme="])
def test_simulate_agents_refuses_a_malformed_token_option(db, token):
    with pytest.raises(CommandError, match="ORG=TOKEN"):
        call_command("simulate_agents", tokens=[token], duration=0.1, stdout=StringIO(), stderr=StringIO())


def test_simulate_agents_gives_up_on_a_silent_server_and_revokes_its_tokens(db):
    seed(tasks=0)
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    with pytest.raises(CommandError, match="No answer from"):
        call_command("simulate_agents", url=url, wait=0.5, duration=1, stdout=StringIO(), stderr=StringIO())
    tokens = ApiToken.objects.all()
    assert sorted(tokens.values_list("organization__slug", "name")) == sorted(
        (org, f"simulator-{face}") for org in ("acme", "globex") for face in ("xpander", "agentex", "jsonrpc", "api")
    )
    assert not tokens.filter(revoked_at__isnull=True).exists()


@pytest.mark.timeout(30)
def test_simulate_agents_stops_on_a_signal_that_lands_inside_a_wait(db, monkeypatch):
    """A stop signal can land while the main thread is inside Event.wait, holding the event's lock
    (make run's Ctrl-C hung so, now and then): the handler must not wait for that lock."""
    from tasks_app.simulation import Simulator

    def wait_for_server(self, timeout):
        with self.stop_event._cond:  # the main thread between two bytecodes of Event.wait
            signal.raise_signal(signal.SIGTERM)  # the handler runs here, the lock held
        return not self.stop_event.wait(10)  # the run is asked to stop: False, as when one is

    monkeypatch.setattr(Simulator, "wait_for_server", wait_for_server)
    seed(tasks=0)
    previous = signal.getsignal(signal.SIGTERM)
    out = StringIO()
    call_command("simulate_agents", url="http://127.0.0.1:9", stdout=out, stderr=StringIO())
    assert "Simulating" not in out.getvalue()  # it stopped before running, quietly
    assert not ApiToken.objects.filter(revoked_at__isnull=True).exists()  # and revoked its tokens
    assert signal.getsignal(signal.SIGTERM) is previous


def test_simulate_agents_with_given_tokens_creates_none(db):
    seed(tasks=0)
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(CommandError, match="No answer from"):
        call_command(
            "simulate_agents", url=url, tokens=["acme=td_remote"], wait=0.3, stdout=StringIO(), stderr=StringIO()
        )
    assert not ApiToken.objects.exists()


@requires_postgres
def test_seed_demo_copies_beyond_the_templates_in_sql(db, monkeypatch):
    """On PostgreSQL tasks beyond the templates are copied in SQL: the ids the Python path would
    give, one created event each whose snapshot is the copy's, no pending question, counts exact;
    a second run, or a larger one, adds only what is missing."""
    monkeypatch.setattr(seed_demo, "TEMPLATES", 30)
    monkeypatch.setattr(seed_demo, "COPY_BATCH", 40)
    seed(tasks=150)
    numbers = {"acme": 0, "globex": 0}
    expected = set()
    for i in range(150):
        slug = "acme" if i % 3 != 2 else "globex"
        numbers[slug] += 1
        expected.add((slug, f"demo-{slug}-{numbers[slug]:04d}"))
    assert set(Task.objects.values_list("organization__slug", "public_id")) == expected
    events = TaskEvent.objects.filter(type="task.created").select_related("task")
    assert events.count() == TaskEvent.objects.count() == 150
    for event in events:
        task = event.task
        assert event.organization_id == task.organization_id
        assert event.created_at == task.created_at
        assert event.snapshot["public_id"] == task.public_id
        assert event.snapshot["status"] == task.status
        assert event.snapshot["title"] == task.title
    copies = Task.objects.filter(pk__gt=Task.objects.order_by("pk")[29].pk)
    assert copies.count() == 120
    assert not copies.filter(status=lifecycle.Status.PAUSED).exists()
    assert not copies.filter(parent__isnull=False).exists()
    assert HitlRequest.objects.filter(task__in=copies).count() == 0
    # Newer index, newer task (per organization), as the Python path spreads them.
    acme = list(Task.objects.filter(organization__slug="acme").order_by("pk").values_list("created_at", flat=True))
    assert acme[20:] == sorted(acme[20:])
    assert_counts_match_the_tasks()
    assert "0 new tasks (150 already there)" in seed(tasks=150)
    assert "30 new tasks (150 already there)" in seed(tasks=180)
    assert Task.objects.count() == TaskEvent.objects.count() == 180
    assert_counts_match_the_tasks()
