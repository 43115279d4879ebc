"""Who may decide a HITL request (one rule, services.may_decide_hitl, on every face), and expiry on
page load touching only the viewer's own organizations."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from tasks_app import services
from tasks_app.api import ratelimit
from tasks_app.models import HitlRequest, Membership, Role, Task
from tasks_app.services import Actor, NotAllowed, api_token_create, hitl_decide, may_decide_hitl


def _paused(org, task_id, **hitl_fields):
    actor = Actor.system()
    services.task_create(organization=org, actor=actor, id=task_id, title=task_id)
    services.task_update(task=task_id, actor=actor, organization_id=org.pk, status="executing")
    return services.hitl_request(task=task_id, actor=actor, organization_id=org.pk, question="Ship?", **hitl_fields)


def _overdue(org, task_id):
    return _paused(org, task_id, deadline=timezone.now() - timedelta(seconds=1))


def test_charlie_opening_his_inbox_leaves_acmes_overdue_request_alone(client, charlie, acme, globex):
    acme_due = _overdue(acme, "due")
    globex_due = _overdue(globex, "due")  # the same id in charlie's own organization
    client.force_login(charlie)
    assert client.get(reverse("approvals_inbox")).status_code == 200
    acme_due.refresh_from_db()
    globex_due.refresh_from_db()
    assert acme_due.decision is None
    assert Task.objects.get(pk=acme_due.task_id).status == "paused"
    assert globex_due.decision == "rejected" and globex_due.expired
    assert Task.objects.get(pk=globex_due.task_id).status == "failed"


def test_a_user_without_organizations_expires_nothing(client, django_user_model, acme):
    due = _overdue(acme, "due")
    client.force_login(django_user_model.objects.create_user(username="dora", password="x"))
    assert client.get(reverse("approvals_inbox")).status_code == 200
    due.refresh_from_db()
    assert due.decision is None


def test_the_expire_command_is_the_system_job_for_every_organization(acme, globex):
    acme_due, globex_due = _overdue(acme, "a"), _overdue(globex, "g")
    call_command("expire_hitl")
    assert {h.decision for h in HitlRequest.objects.filter(pk__in=[acme_due.pk, globex_due.pk])} == {"rejected"}


def test_expiring_every_organization_is_said_not_assumed(acme, globex):
    acme_due, globex_due = _overdue(acme, "a"), _overdue(globex, "g")
    with pytest.raises(ValueError, match="every_organization"):
        services.hitl_expire_due()
    with pytest.raises(ValueError, match="every_organization"):
        services.hitl_expire_due(organization_ids=[acme.pk], every_organization=True)
    assert services.hitl_expire_due(organization_ids=[globex.pk]) == 1
    assert HitlRequest.objects.get(pk=acme_due.pk).decision is None
    assert services.hitl_expire_due(every_organization=True) == 1
    assert HitlRequest.objects.get(pk=acme_due.pk).decision == "rejected"
    assert HitlRequest.objects.get(pk=globex_due.pk).decision == "rejected"


def test_the_decide_rule(acme, globex, alice, bob, charlie, django_user_model):
    acme_token, _ = api_token_create(organization=acme, name="acme-bot")
    globex_token, _ = api_token_create(organization=globex, name="globex-bot")
    admin = django_user_model.objects.create_user(username="ada", password="x")
    Membership.objects.create(user=admin, organization=acme, role=Role.ADMIN)
    root = django_user_model.objects.create_superuser(username="root", password="x")
    allowed = {
        "alice (operator)": Actor.for_user(alice),
        "ada (admin)": Actor.for_user(admin),
        "a superuser": Actor.for_user(root),
        "acme's token": Actor.for_token(acme_token),
        "the system": Actor.system("deadline"),
    }
    refused = {
        "bob (viewer)": Actor.for_user(bob),
        "charlie (globex operator)": Actor.for_user(charlie),
        "globex's token": Actor.for_token(globex_token),
    }
    assert {name for name, actor in allowed.items() if may_decide_hitl(actor, acme.pk)} == set(allowed)
    assert {name for name, actor in refused.items() if may_decide_hitl(actor, acme.pk)} == set()


def test_the_service_refuses_a_viewer_even_when_a_face_forgets_to_ask(acme, bob):
    hitl = _paused(acme, "t")
    with pytest.raises(NotAllowed):
        hitl_decide(hitl=hitl, actor=Actor.for_user(bob), approve=True)
    hitl.refresh_from_db()
    assert hitl.decision is None and Task.objects.get(pk=hitl.task_id).status == "paused"


def test_faces_follow_the_rule(client, acme, bob, alice):
    hitl = _paused(acme, "t")
    client.force_login(bob)
    assert client.post(reverse("hitl_decide", args=[hitl.pk]), {"action": "approve"}).status_code == 403
    hitl.refresh_from_db()
    assert hitl.decision is None
    token, raw = api_token_create(organization=acme, name="reviewer")
    ratelimit.forget(token)
    response = client.post(
        "/api/v1/tasks/t/hitl/decision",
        data='{"approve": true}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 200 and response.json()["decision"] == "approved"
