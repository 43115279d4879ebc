"""HITL inbox and decide endpoint: decide paths, permissions, expiry, pushed fragments, escaping."""

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tasks_app import selectors, services
from tasks_app.live import fragments_hitl
from tasks_app.models import EventType, HitlRequest, Task, TaskEvent

XSS = '<script>alert(1)</script><img src=x onerror=alert(2)> hx-get="/x" hx-on:click="alert(3)"'
HX = {"HTTP_HX_REQUEST": "true"}


def _paused(org, actor, task_id, *, agent=None, **hitl_fields):
    services.task_create(organization=org, actor=actor, id=task_id, title=f"Task {task_id}", agent=agent)
    services.task_update(task=task_id, actor=actor, organization_id=org.pk, status="executing")
    fields = {"question": "Refund the customer?", "payload": {"amount": 20, "currency": "EUR"}, **hitl_fields}
    return services.hitl_request(task=task_id, actor=actor, organization_id=org.pk, **fields)


@pytest.fixture
def hitl(acme, agent, system_actor):
    return _paused(acme, system_actor, "t-1", agent=agent)


def _decide_url(hitl):
    return reverse("hitl_decide", args=[hitl.pk])


def _events(hitl, type=EventType.HITL_DECIDED):
    return list(TaskEvent.objects.filter(task_id=hitl.task_id, type=type))


# --- Inbox ---------------------------------------------------------------------------------


def test_inbox_lists_pending_oldest_first_as_a_full_page(client, alice, acme, globex, system_actor, hitl):
    second = _paused(acme, system_actor, "t-2", question="Send the email?")
    HitlRequest.objects.filter(pk=second.pk).update(requested_at=hitl.requested_at - timedelta(minutes=5))
    _paused(globex, system_actor, "g-1", question="Globex secret question")
    decided = _paused(acme, system_actor, "t-3", question="Already decided")
    services.hitl_decide(hitl=decided, actor=system_actor, approve=True)
    client.force_login(alice)
    response = client.get(reverse("approvals_inbox"))
    html = response.content.decode()
    assert response.status_code == 200 and "<html" in html
    assert html.index(f'id="hitl-{second.pk}"') < html.index(f'id="hitl-{hitl.pk}"')
    assert "Globex secret question" not in html and f'id="hitl-{decided.pk}"' not in html
    assert "&quot;amount&quot;: 20" in html  # pretty JSON, escaped
    assert "support-bot" in html and 'name="csrfmiddlewaretoken"' in html
    assert "data-approve" in html and "data-reject" in html


def test_inbox_as_htmx_fragment(client, alice, hitl):
    client.force_login(alice)
    response = client.get(reverse("approvals_inbox"), **HX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<div id="inbox-results"') and f'id="hitl-{hitl.pk}"' in html
    assert '<div id="hitl-list"' in html and "inbox-filters" not in html
    assert "HX-Request" in response["Vary"]


def test_inbox_query_count_is_constant(client, alice, acme, system_actor):
    client.force_login(alice)

    def count():
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse("approvals_inbox")).status_code == 200
        return len(ctx)

    _paused(acme, system_actor, "q-0")
    few = count()
    for i in range(1, 12):
        _paused(acme, system_actor, f"q-{i}")
    assert count() == few


def test_viewer_sees_the_inbox_without_decide_buttons(client, bob, hitl):
    client.force_login(bob)
    html = client.get(reverse("approvals_inbox")).content.decode()
    assert f'id="hitl-{hitl.pk}"' in html and "Refund the customer?" in html
    assert "data-approve" not in html and "data-reject" not in html and "read-only" in html


def test_inbox_requires_login(client, hitl):
    response = client.get(reverse("approvals_inbox"))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_inbox_resolves_expired_requests(client, alice, acme, system_actor):
    due = _paused(acme, system_actor, "t-due", deadline=timezone.now() - timedelta(seconds=1))
    client.force_login(alice)
    html = client.get(reverse("approvals_inbox")).content.decode()
    due.refresh_from_db()
    assert f'id="hitl-{due.pk}"' not in html
    assert due.decision == "rejected" and due.expired and due.reason == "timed out"
    task = Task.objects.get(pk=due.task_id)
    assert task.status == "failed" and task.status_reason == "timed out"
    event = _events(due)[-1]
    assert event.actor_kind == "system" and event.after["decision"] == "rejected"


def test_a_future_deadline_is_shown_and_kept(client, alice, acme, system_actor):
    later = _paused(acme, system_actor, "t-later", deadline=timezone.now() + timedelta(hours=2), on_timeout="approved")
    client.force_login(alice)
    html = client.get(reverse("approvals_inbox")).content.decode()
    assert f'id="hitl-{later.pk}"' in html and "Deadline" in html and "then approved" in html


def test_expire_command_resolves_as_the_request_says(acme, system_actor):
    approve_me = _paused(
        acme, system_actor, "t-a", deadline=timezone.now() - timedelta(minutes=1), on_timeout="approved"
    )
    reject_me = _paused(
        acme, system_actor, "t-r", deadline=timezone.now() - timedelta(minutes=1), reject_status="timed_out"
    )
    call_command("expire_hitl")
    approve_me.refresh_from_db()
    reject_me.refresh_from_db()
    assert approve_me.decision == "approved" and approve_me.expired
    assert Task.objects.get(pk=approve_me.task_id).status == "executing"
    assert reject_me.decision == "rejected" and Task.objects.get(pk=reject_me.task_id).status == "timed_out"


# --- Decide paths ---------------------------------------------------------------------------


def test_approve_resumes_the_task_and_writes_one_event_with_the_decider(client, alice, hitl):
    client.force_login(alice)
    response = client.post(_decide_url(hitl), {"action": "approve", "comment": "fine", "context": "inbox"}, **HX)
    html = response.content.decode()
    assert response.status_code == 200 and f'id="hitl-{hitl.pk}"' in html and "Approved" in html and "alice" in html
    assert "data-hitl-card" not in html  # the card left the inbox
    hitl.refresh_from_db()
    assert hitl.decision == "approved" and hitl.decided_by == alice and hitl.comment == "fine"
    assert hitl.amended_payload is None
    assert Task.objects.get(pk=hitl.task_id).status == "executing"
    (event,) = _events(hitl)
    assert event.actor_user == alice and event.actor_label == "alice" and event.face == "dashboard"
    assert event.after["decision"] == "approved" and event.after["status"] == "executing"


def test_reject_without_reason_is_refused_and_nothing_changes(client, alice, hitl):
    client.force_login(alice)
    version = Task.objects.get(pk=hitl.task_id).version
    response = client.post(_decide_url(hitl), {"action": "reject", "reason": "  ", "comment": "kept"}, **HX)
    html = response.content.decode()
    assert response.status_code == 422
    assert "A rejection needs a reason." in html and 'value="kept"' in html and "data-hitl-card" in html
    hitl.refresh_from_db()
    assert hitl.is_pending and _events(hitl) == []
    assert Task.objects.get(pk=hitl.task_id).version == version


def test_reject_with_reason_ends_the_task_as_the_request_says(client, alice, acme, system_actor):
    hitl = _paused(acme, system_actor, "t-c", reject_status="canceled")
    client.force_login(alice)
    response = client.post(_decide_url(hitl), {"action": "reject", "reason": "customer withdrew"}, **HX)
    assert response.status_code == 200 and "Rejected" in response.content.decode()
    task = Task.objects.get(pk=hitl.task_id)
    assert task.status == "canceled" and task.status_reason == "customer withdrew"
    (event,) = _events(hitl)
    assert event.actor_user == alice and event.after["reason"] == "customer withdrew"


def test_reject_defaults_to_failed(client, alice, hitl):
    client.force_login(alice)
    client.post(_decide_url(hitl), {"action": "reject", "reason": "no"}, **HX)
    assert Task.objects.get(pk=hitl.task_id).status == "failed"


def test_amend_then_approve_records_original_and_amendment(client, alice, hitl):
    client.force_login(alice)
    amended = {"amount": 15, "currency": "EUR", "note": "partial"}
    response = client.post(_decide_url(hitl), {"action": "approve", "amended_payload": json.dumps(amended)}, **HX)
    assert response.status_code == 200 and "payload amended" in response.content.decode()
    hitl.refresh_from_db()
    assert hitl.amended_payload == amended and hitl.effective_payload == amended
    assert hitl.proposed_payload == {"amount": 20, "currency": "EUR"}
    (event,) = _events(hitl)
    assert "payload" in event.changes
    assert event.before["payload"] == {"amount": 20, "currency": "EUR"} and event.after["payload"] == amended


def test_an_unchanged_payload_in_the_editor_is_not_an_amendment(client, alice, hitl):
    client.force_login(alice)
    text = json.dumps({"currency": "EUR", "amount": 20}, indent=2)
    client.post(_decide_url(hitl), {"action": "approve", "amended_payload": text}, **HX)
    hitl.refresh_from_db()
    assert hitl.decision == "approved" and hitl.amended_payload is None


def test_invalid_json_amendment_is_refused_in_place_with_the_input_kept(client, alice, hitl):
    client.force_login(alice)
    bad = '{"amount": 15,, <b>x</b>'
    response = client.post(_decide_url(hitl), {"action": "approve", "amended_payload": bad, "comment": "c"}, **HX)
    html = response.content.decode()
    assert response.status_code == 422
    assert "Invalid JSON: Expecting property name enclosed in double quotes (line 1, column 15)." in html
    assert "{&quot;amount&quot;: 15,, &lt;b&gt;x&lt;/b&gt;</textarea>" in html  # kept, escaped
    assert '<details class="hitl-amend" open' in html
    hitl.refresh_from_db()
    assert hitl.is_pending and _events(hitl) == []


def test_an_unknown_action_is_refused(client, alice, hitl):
    client.force_login(alice)
    response = client.post(_decide_url(hitl), {"reason": "x"}, **HX)
    assert response.status_code == 422
    assert "Choose a decision: approve, reject, answer or dismiss." in response.content.decode()
    assert _events(hitl) == []


def test_second_decision_is_told_who_decided_and_how(client, alice, acme, django_user_model, hitl):
    from tasks_app.models import Membership

    dave = django_user_model.objects.create_user(username="dave", password="x")
    Membership.objects.create(user=dave, organization=acme, role="admin")
    services.hitl_decide(hitl=hitl, actor=services.Actor.for_user(dave), approve=False, reason="too much")
    client.force_login(alice)
    response = client.post(_decide_url(hitl), {"action": "approve"}, **HX)
    html = response.content.decode()
    assert response.status_code == 409
    assert "Already rejected by dave at" in html and f'id="hitl-{hitl.pk}"' in html
    assert len(_events(hitl)) == 1


def test_decision_on_a_task_no_longer_paused_is_a_clear_error(client, alice, hitl, system_actor):
    services.task_stop(task=hitl.task, actor=system_actor, reason="ops")
    client.force_login(alice)
    response = client.post(_decide_url(hitl), {"action": "approve"}, **HX)
    html = response.content.decode()
    assert response.status_code == 409 and "Already withdrawn by test" in html
    assert Task.objects.get(pk=hitl.task_id).status == "stopped" and _events(hitl) == []


def test_plain_form_post_redirects_back(client, alice, hitl):
    client.force_login(alice)
    response = client.post(_decide_url(hitl), {"action": "approve", "next": "/approvals/?x=1"})
    assert response.status_code == 302 and response["Location"] == "/approvals/?x=1"
    again = client.post(_decide_url(hitl), {"action": "approve"})
    assert again.status_code == 409 and "Already approved by alice" in again.content.decode()


def test_redirect_refuses_foreign_hosts(client, alice, hitl):
    client.force_login(alice)
    response = client.post(_decide_url(hitl), {"action": "approve", "next": "https://evil.example/"})
    assert response["Location"] == reverse("approvals_inbox")


def test_viewer_is_refused_403_and_nothing_changes(client, bob, hitl):
    client.force_login(bob)
    response = client.post(_decide_url(hitl), {"action": "approve"}, **HX)
    assert response.status_code == 403
    hitl.refresh_from_db()
    assert hitl.is_pending and _events(hitl) == []


def test_outsider_gets_404(client, charlie, hitl):
    client.force_login(charlie)
    assert client.post(_decide_url(hitl), {"action": "approve"}, **HX).status_code == 404
    assert client.post(reverse("hitl_decide", args=[999999]), {"action": "approve"}).status_code == 404
    html = client.get(reverse("approvals_inbox")).content.decode()
    assert f'id="hitl-{hitl.pk}"' not in html
    hitl.refresh_from_db()
    assert hitl.is_pending


def test_decide_requires_csrf(alice, hitl):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(alice)
    assert csrf_client.post(_decide_url(hitl), {"action": "approve"}).status_code == 403
    hitl.refresh_from_db()
    assert hitl.is_pending


def test_decide_is_post_only(client, alice, hitl):
    client.force_login(alice)
    assert client.get(_decide_url(hitl)).status_code == 405


# --- Escaping -------------------------------------------------------------------------------


def test_xss_in_question_details_and_payload_is_text(client, alice, acme, system_actor):
    hitl = _paused(acme, system_actor, "t-x", question=XSS, details=XSS, options=[XSS], payload={XSS: XSS})
    Task.objects.filter(pk=hitl.task_id).update(title=XSS)
    client.force_login(alice)
    html = client.get(reverse("approvals_inbox")).content.decode()
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert 'hx-on:click="alert' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    pushed = fragments_hitl.render_hitl_event_html(_events(hitl, EventType.HITL_REQUESTED)[-1], can_edit=True)
    assert "<script>alert(1)" not in pushed and "&lt;script&gt;" in pushed


# --- Panel on the task page, badge ----------------------------------------------------------


def test_decision_panel_include_for_the_task_page(rf, alice, bob, hitl):
    from django.template.loader import render_to_string

    request = rf.get("/tasks/acme/t-1/")
    request.user = alice
    html = render_to_string("approvals/decision_panel.html", {"hitl": hitl}, request=request)
    assert f'id="hitl-{hitl.pk}"' in html and 'value="task"' in html and "data-approve" in html
    assert "hitl-card__task" not in html  # no inbox header on the task's own page
    request.user = bob
    html = render_to_string("approvals/decision_panel.html", {"hitl": hitl}, request=request)
    assert "data-approve" not in html and "read-only" in html


def test_deciding_from_the_task_page_renders_the_panel_form(client, alice, hitl):
    client.force_login(alice)
    response = client.post(_decide_url(hitl), {"action": "reject", "context": "task"}, **HX)
    html = response.content.decode()
    assert response.status_code == 422 and 'value="task"' in html and "hitl-card__task" not in html


def test_nav_badge_counts_the_users_orgs_in_one_query(rf, alice, acme, globex, system_actor, hitl):
    from django.template.loader import render_to_string

    _paused(acme, system_actor, "t-b")
    _paused(globex, system_actor, "g-b")
    request = rf.get("/")
    request.user = alice
    # Every page's context already read the memberships (top bar roles); the badge adds one query.
    from tasks_app import selectors

    selectors.memberships_for(alice)
    with CaptureQueriesContext(connection) as ctx:
        html = render_to_string("approvals/nav_badge.html", request=request)
    assert len(ctx) == 1
    assert 'id="hitl-badge"' in html and 'data-count="2"' in html and 'href="/approvals/"' in html


# --- Pushed fragments -----------------------------------------------------------------------


def test_pushed_request_appends_a_card_and_updates_the_badge(hitl):
    event = _events(hitl, EventType.HITL_REQUESTED)[-1]
    html = fragments_hitl.render_hitl_event_html(event, can_edit=True)
    assert 'hx-swap-oob="beforeend:#hitl-list"' in html and f'id="hitl-{hitl.pk}"' in html
    assert "data-approve" in html
    assert '<span id="hitl-badge"' in html and 'data-count="1"' in html and 'hx-swap-oob="true"' in html
    readonly = fragments_hitl.render_hitl_event_html(event, can_edit=False)
    assert "data-approve" not in readonly and f'id="hitl-{hitl.pk}"' in readonly


def test_pushed_decision_removes_the_card_everywhere(hitl, alice_actor):
    services.hitl_decide(hitl=hitl, actor=alice_actor, approve=True)
    event = _events(hitl)[-1]
    html = fragments_hitl.render_hitl_event_html(event, can_edit=False)
    assert f'<div id="hitl-{hitl.pk}"' in html and 'hx-swap-oob="true"' in html
    assert "data-hitl-card" not in html and "Approved" in html and "alice" in html
    assert 'data-count="0"' in html and " hidden" in html
    # A replayed request event for a request decided since renders the decided line, not a card.
    replay = fragments_hitl.render_hitl_event_html(_events(hitl, EventType.HITL_REQUESTED)[-1], can_edit=True)
    assert "data-hitl-card" not in replay and 'hx-swap-oob="true"' in replay


def test_pushed_stop_of_a_paused_task_removes_its_card(hitl, system_actor):
    services.task_stop(task=hitl.task, actor=system_actor)
    event = TaskEvent.objects.filter(task_id=hitl.task_id).last()
    html = fragments_hitl.render_hitl_event_html(event, can_edit=True)
    assert f'id="hitl-{hitl.pk}"' in html and "Withdrawn" in html and "data-hitl-card" not in html


def test_other_events_push_nothing_to_the_inbox(acme, system_actor):
    task, _ = services.task_create(organization=acme, actor=system_actor, id="plain")
    services.task_update(task=task, actor=system_actor, priority=7)
    for event in TaskEvent.objects.filter(task=task):
        assert fragments_hitl.render_hitl_event_html(event, can_edit=True) == ""


def test_each_decision_is_broadcast_once(client, alice, hitl, django_capture_on_commit_callbacks, monkeypatch):
    # The write path rings the live bell once per event, after commit ("organization O has
    # events up to id N"); readers take the event itself from the log.
    from tasks_app.live import bell

    rung = []
    monkeypatch.setattr(bell, "ring", lambda organization_id, event_id: rung.append((organization_id, event_id)))
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(_decide_url(hitl), {"action": "approve"}, **HX)
    (event,) = _events(hitl)
    assert rung == [(hitl.organization_id, event.pk)]
    assert event.type == "task.hitl_decided" and event.actor_user_id == alice.pk


def test_pending_selectors_are_org_scoped(alice, charlie, hitl, acme, globex, system_actor):
    twin = _paused(globex, system_actor, "t-1")  # the same public id in another organization
    assert [h.pk for h in selectors.pending_hitl_for_user(alice)] == [hitl.pk]
    assert [h.pk for h in selectors.pending_hitl_for_user(charlie)] == [twin.pk]
    assert selectors.pending_hitl_count([acme.pk]) == 1
    assert selectors.pending_hitl_count([acme.pk, globex.pk]) == 2
    services.task_delete(task=hitl.task, actor=system_actor)
    assert selectors.pending_hitl_count([acme.pk]) == 0
    assert selectors.pending_hitl_count([globex.pk]) == 1  # globex's t-1 is another task


def test_the_inbox_top_bar_names_the_role(client, bob):
    client.force_login(bob)
    response = client.get("/approvals/")
    assert response.status_code == 200
    assert "· Viewer</span>" in response.content.decode()


def test_the_inbox_says_how_long_a_request_waits_in_ticking_units(client, alice, acme):
    actor = services.Actor.system("agent")
    services.task_create(organization=acme, actor=actor, id="age-1")
    services.task_update(task="age-1", organization_id=acme.pk, actor=actor, status="executing")
    services.hitl_request(task="age-1", organization_id=acme.pk, actor=actor, question="Go?")
    client.force_login(alice)
    html = client.get("/approvals/").content.decode()
    assert 'data-relative="age" data-prefix="waiting ">waiting &lt; 1 min</time>' in html
    assert "0 minutes" not in html
