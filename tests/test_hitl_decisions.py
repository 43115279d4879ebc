"""HITL decisions beyond approve/reject: respond (free text or an offered option) and dismiss.

Service: each decision kind, who may decide, the first decision wins (the loser is told who
decided), the lifecycle each decision leads to. Faces: the answer reads back through the native
REST API, its event stream, JSON-RPC's event shapes, Agentex's stream and xpander's activity
thread (the real xpander-sdk reads it in tests/test_xpander_sdk.py).
"""

import json

import pytest

from tasks_app import lifecycle, services
from tasks_app.models import ActivityEntry, EventType, HitlDecision, HitlRequest, Task, TaskEvent
from tasks_app.services import Actor, api_token_create

from .test_api_native import API, send

OPTIONS = ["Refund 40 EUR", "Refund 20 EUR", "Escalate to billing"]


def _paused(org, task_id="h-1", **fields):
    agent = Actor.system("agent")
    services.task_create(organization=org, actor=agent, id=task_id, title=f"Task {task_id}")
    services.task_update(task=task_id, actor=agent, organization_id=org.pk, status="executing")
    fields = {"question": "How much should we refund?", "options": OPTIONS, "payload": {"amount": 40}, **fields}
    return services.hitl_request(task=task_id, actor=agent, organization_id=org.pk, **fields)


def _task(hitl) -> Task:
    return Task.objects.get(pk=hitl.task_id)


def _decided_event(hitl) -> TaskEvent:
    return TaskEvent.objects.get(task_id=hitl.task_id, type=EventType.HITL_DECIDED)


@pytest.fixture
def hitl(acme):
    return _paused(acme)


# --- Service: each decision ---------------------------------------------------------------


def test_a_free_text_response_resumes_the_task_and_reaches_its_thread(hitl, alice, alice_actor):
    decided = services.hitl_decide(hitl=hitl, actor=alice_actor, decision="responded", answer="  Refund 30 EUR  ")
    assert decided.decision == HitlDecision.RESPONDED and decided.answer == "Refund 30 EUR"
    assert decided.chosen_option == "" and decided.decided_by == alice and decided.amended_payload is None
    assert _task(hitl).status == lifecycle.HITL_RESUME == "executing"
    event = _decided_event(hitl)
    assert event.actor_user == alice
    assert event.after["decision"] == "responded" and event.after["answer"] == "Refund 30 EUR"
    assert event.after["option"] is None and event.after["status"] == "executing"
    (message,) = ActivityEntry.objects.filter(task_id=hitl.task_id)
    assert (message.kind, message.role, message.content) == ("message", "user", "Refund 30 EUR")
    activity = TaskEvent.objects.get(task_id=hitl.task_id, type=EventType.ACTIVITY)
    assert activity.pk > event.pk and activity.actor_user == alice and activity.after["activity_ids"] == [message.pk]


def test_an_offered_option_is_the_answer_and_is_recorded_as_chosen(hitl, alice_actor):
    decided = services.hitl_decide(hitl=hitl, actor=alice_actor, decision="responded", option="Refund 20 EUR")
    assert (decided.decision, decided.answer, decided.chosen_option) == ("responded", "Refund 20 EUR", "Refund 20 EUR")
    assert _decided_event(hitl).after["option"] == "Refund 20 EUR"
    assert ActivityEntry.objects.get(task_id=hitl.task_id).content == "Refund 20 EUR"
    assert _task(hitl).status == "executing"


def test_an_option_the_request_does_not_offer_is_refused_and_nothing_changes(hitl, alice_actor):
    version = _task(hitl).version
    with pytest.raises(services.InvalidInput) as refused:
        services.hitl_decide(hitl=hitl, actor=alice_actor, decision="responded", option="Refund 400 EUR")
    assert refused.value.errors == {"option": ["Not one of the options this request offers."]}
    hitl.refresh_from_db()
    assert hitl.is_pending and _task(hitl).version == version and _task(hitl).status == "paused"
    assert not ActivityEntry.objects.exists()


def test_dismiss_closes_the_request_without_an_answer_and_says_so_in_the_thread(hitl, alice_actor):
    decided = services.hitl_decide(hitl=hitl, actor=alice_actor, decision="dismissed", comment="duplicate of #12")
    assert decided.decision == "dismissed" and decided.answer == "" and decided.chosen_option == ""
    assert decided.effective_payload == {"amount": 40}  # nothing amended; nothing approved either
    task = _task(hitl)
    assert task.status == "executing" and task.status_reason == ""
    event = _decided_event(hitl)
    assert event.after["decision"] == "dismissed" and "answer" not in event.after
    message = ActivityEntry.objects.get(task_id=hitl.task_id)
    assert (message.role, message.content) == ("user", "Dismissed without an answer: duplicate of #12")


def test_a_plain_dismissal_has_the_plain_message(hitl, alice_actor):
    services.hitl_decide(hitl=hitl, actor=alice_actor, decision="dismissed")
    assert ActivityEntry.objects.get(task_id=hitl.task_id).content == services.hitl.DISMISSED_MESSAGE


def test_approve_and_reject_write_no_thread_message(acme, alice_actor):
    approved, rejected = _paused(acme, "h-a"), _paused(acme, "h-r", reject_status="canceled")
    services.hitl_decide(hitl=approved, actor=alice_actor, decision="approved", amended_payload={"amount": 30})
    services.hitl_decide(hitl=rejected, actor=alice_actor, approve=False, reason="too much")  # the shorthand
    assert (_task(approved).status, _task(rejected).status) == ("executing", "canceled")
    assert _task(rejected).status_reason == "too much"
    assert not ActivityEntry.objects.exists()


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"decision": "maybe"}, {"decision": ["Must be one of: approved, rejected, responded, dismissed."]}),
        ({"decision": "withdrawn"}, {"decision": ["Must be one of: approved, rejected, responded, dismissed."]}),
        ({"decision": "responded"}, {"answer": ["An answer is required."]}),
        ({"decision": "responded", "answer": "   "}, {"answer": ["An answer is required."]}),
        (
            {"decision": "responded", "answer": "x", "option": "Refund 20 EUR"},
            {"answer": ["Answer in your own words or choose an option, not both."]},
        ),
        ({"decision": "responded", "answer": "x" * 20_001}, {"answer": ["At most 20,000 characters."]}),
        ({"decision": "responded", "answer": "a\x00b"}, {"answer": ["Must not contain NUL characters."]}),
        ({"decision": "responded", "option": 3}, {"option": ["Must be a string."]}),
        ({"decision": "dismissed", "answer": "x"}, {"answer": ["Only a response carries an answer or an option."]}),
        (
            {"decision": "approved", "option": "Refund 20 EUR"},
            {"option": ["Only a response carries an answer or an option."]},
        ),
        (
            {"decision": "dismissed", "reason": "why"},
            {"reason": ["Only an approval or a rejection takes a reason; use the comment."]},
        ),
        (
            {"decision": "responded", "answer": "x", "amended_payload": {"a": 1}},
            {"amended_payload": ["Only an approval can amend the payload."]},
        ),
        ({"decision": "rejected"}, {"reason": ["A rejection needs a reason."]}),
    ],
)
def test_bad_decisions_are_refused_with_every_reason_and_change_nothing(hitl, alice_actor, fields, errors):
    with pytest.raises(services.InvalidInput) as refused:
        services.hitl_decide(hitl=hitl, actor=alice_actor, **fields)
    assert refused.value.errors == errors
    hitl.refresh_from_db()
    assert hitl.is_pending and _task(hitl).status == "paused"
    assert not TaskEvent.objects.filter(task_id=hitl.task_id, type=EventType.HITL_DECIDED).exists()


# --- Service: who may decide, and the first decision wins ----------------------------------


@pytest.mark.parametrize("decision", ["responded", "dismissed"])
def test_a_viewer_cannot_respond_or_dismiss(hitl, bob, decision):
    extra = {"answer": "yes"} if decision == "responded" else {}
    with pytest.raises(services.NotAllowed):
        services.hitl_decide(hitl=hitl, actor=Actor.for_user(bob), decision=decision, **extra)
    hitl.refresh_from_db()
    assert hitl.is_pending and not ActivityEntry.objects.exists()


def test_another_organizations_operator_cannot_decide(hitl, charlie):
    with pytest.raises(services.NotAllowed):
        services.hitl_decide(hitl=hitl, actor=Actor.for_user(charlie), decision="dismissed")
    # Nor reach it by naming their own organization: the request is looked up within it.
    with pytest.raises(services.HitlError, match="not found"):
        services.hitl_decide(
            hitl=hitl.pk, actor=Actor.for_user(charlie), organization_id=charlie.memberships.get().organization_id,
            decision="dismissed",
        )  # fmt: skip
    hitl.refresh_from_db()
    assert hitl.is_pending


def test_a_token_of_the_organization_may_respond(hitl, acme):
    token, _ = api_token_create(organization=acme, name="ops-bot")
    decided = services.hitl_decide(hitl=hitl, actor=Actor.for_token(token), decision="responded", answer="ok")
    assert decided.decided_by is None and decided.decided_by_label == "token:ops-bot"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"decision": "responded", "answer": "Refund 30"}, {"decision": "approved"}),
        ({"decision": "dismissed"}, {"decision": "responded", "option": "Refund 40 EUR"}),
        ({"decision": "approved"}, {"decision": "dismissed"}),
        ({"decision": "rejected", "reason": "no"}, {"decision": "responded", "answer": "yes"}),
    ],
)
def test_the_second_decision_loses_and_is_told_who_decided(hitl, acme, alice_actor, django_user_model, first, second):
    from tasks_app.models import Membership

    dave = django_user_model.objects.create_user(username="dave", password="x")
    Membership.objects.create(user=dave, organization=acme, role="admin")
    services.hitl_decide(hitl=hitl, actor=Actor.for_user(dave), **first)
    with pytest.raises(services.HitlAlreadyDecided) as lost:
        services.hitl_decide(hitl=hitl, actor=alice_actor, **second)
    assert lost.value.message.startswith(f"Already {first['decision']} by dave at ")
    hitl.refresh_from_db()
    assert hitl.decision == first["decision"] and hitl.decided_by_label == "dave"
    assert TaskEvent.objects.filter(task_id=hitl.task_id, type=EventType.HITL_DECIDED).count() == 1


def test_a_request_withdrawn_by_a_stop_cannot_be_answered(hitl, alice_actor):
    services.task_stop(task=hitl.task, actor=Actor.system("ops"), reason="ops")
    with pytest.raises(services.HitlAlreadyDecided, match="Already withdrawn by ops"):
        services.hitl_decide(hitl=hitl, actor=alice_actor, decision="responded", answer="late")
    assert _task(hitl).status == "stopped" and not ActivityEntry.objects.exists()


def test_lifecycle_maps_every_decision():
    assert lifecycle.status_after_hitl("rejected", reject_status="canceled") == "canceled"
    for decision in ("approved", "responded", "dismissed"):
        assert lifecycle.status_after_hitl(decision, reject_status="canceled") == "executing"
        assert lifecycle.can_transition("paused", lifecycle.status_after_hitl(decision, reject_status="failed"))


def test_the_deadline_decides_only_as_the_request_says(acme):
    with pytest.raises(services.InvalidInput) as refused:
        _paused(acme, "h-t", on_timeout="dismissed")
    assert refused.value.errors == {"on_timeout": ["Must be approved or rejected."]}


# --- Faces --------------------------------------------------------------------------------


@pytest.fixture
def auth(acme):
    _, raw = api_token_create(organization=acme, name="worker-1")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_native_api_answers_and_the_agent_polls_the_answer(client, auth, hitl):
    asked = client.get(f"{API}/tasks/h-1/hitl", **auth).json()
    assert asked["options"] == OPTIONS and asked["answer"] == "" and asked["chosen_option"] is None
    answer = {"answer": "Refund 30 EUR", "comment": "goodwill"}
    decided = send(client, "post", "/tasks/h-1/hitl/decision", answer, **auth)
    assert decided.status_code == 200
    polled = client.get(f"{API}/tasks/h-1/hitl", **auth).json()
    assert (polled["decision"], polled["answer"], polled["chosen_option"]) == ("responded", "Refund 30 EUR", None)
    assert polled["comment"] == "goodwill" and polled["decided_by"] == "token:worker-1"
    assert client.get(f"{API}/tasks/h-1", **auth).json()["status"] == "executing"
    thread = client.get(f"{API}/tasks/h-1/activity", **auth).json()["items"]
    assert [(e["role"], e["content"]) for e in thread] == [("user", "Refund 30 EUR")]


def test_native_api_chooses_an_option_and_dismisses(client, auth, acme):
    _paused(acme, "h-o")
    _paused(acme, "h-d")
    chosen = send(client, "post", "/tasks/h-o/hitl/decision", {"option": "Escalate to billing"}, **auth).json()
    assert (chosen["decision"], chosen["answer"], chosen["chosen_option"]) == ("responded",) + (
        "Escalate to billing",
    ) * 2
    dismissed = send(client, "post", "/tasks/h-d/hitl/decision", {"dismiss": True}, **auth).json()
    assert dismissed["decision"] == "dismissed" and dismissed["answer"] == ""
    assert client.get(f"{API}/tasks/h-d", **auth).json()["status"] == "executing"
    lost = send(client, "post", "/tasks/h-d/hitl/decision", {"answer": "late"}, **auth)
    assert lost.status_code == 409 and lost.json()["decision"] == "dismissed"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"answer": ""}, "answer"),
        ({"answer": "x", "option": "Refund 20 EUR"}, "option"),
        ({"dismiss": False}, "dismiss"),
        ({"option": "not offered"}, "option"),
        ({"answer": "x", "reason": "y"}, "reason"),
    ],
)
def test_native_api_refuses_bad_decisions_naming_the_field(client, auth, hitl, body, where):
    response = send(client, "post", "/tasks/h-1/hitl/decision", body, **auth)
    assert response.status_code == 422 and where in json.dumps(response.json())
    hitl.refresh_from_db()
    assert hitl.is_pending


def test_the_openapi_schema_states_each_decision_shape(client):
    schema = client.get(f"{API}/openapi.json").json()
    shapes = schema["components"]["schemas"]
    assert {"HitlRespondIn", "HitlChooseIn", "HitlDismissIn", "HitlApproveIn", "HitlRejectIn"} <= shapes.keys()
    assert shapes["HitlRespondIn"]["required"] == ["answer"]
    decision = shapes["HitlOut"]["properties"]["decision"]
    assert "responded" in json.dumps(decision) and "dismissed" in json.dumps(decision)
    assert {"answer", "chosen_option"} <= shapes["HitlOut"]["properties"].keys()


def test_every_event_format_carries_the_answer(acme, alice_actor):
    from tasks_app.api.agentex import render_event as agentex_frames
    from tasks_app.api.jsonrpc import event_message
    from tasks_app.api.sse import event_data
    from tasks_app.api.xpander import render_event as xpander_frames

    hitl = _paused(acme, "h-e")
    services.hitl_decide(hitl=hitl, actor=alice_actor, decision="responded", option="Refund 20 EUR")
    requested, decided, activity = TaskEvent.objects.filter(
        task_id=hitl.task_id, type__in=[EventType.HITL_REQUESTED, EventType.HITL_DECIDED, EventType.ACTIVITY]
    ).order_by("id")

    native = event_data(decided)
    assert native["after"]["answer"] == "Refund 20 EUR" and native["task"]["status"] == "executing"
    assert event_message(requested)["metadata"]["hitl"] == {"hitl_id": hitl.pk, "question": hitl.question}
    assert event_message(decided)["metadata"]["hitl"] == {
        "hitl_id": hitl.pk,
        "decision": "responded",
        "reason": "",
        "comment": "",
        "answer": "Refund 20 EUR",
        "option": "Refund 20 EUR",
    }

    def data_of(frames):
        return [json.loads(frame.split("data: ", 1)[1]) for frame in frames[0]]

    (chunk,) = data_of(xpander_frames(activity))
    assert chunk["type"] == "chunk" and chunk["data"]["role"] == "user"
    assert chunk["data"]["content"]["text"] == "Refund 20 EUR"
    (full,) = data_of(agentex_frames(activity))
    assert full["content"] == {"type": "text", "author": "user", "content": "Refund 20 EUR"}


def test_a_paused_xpander_task_offers_its_options(acme):
    from tasks_app.api.xpander import hitl_request_json

    hitl = _paused(acme, "h-x")
    offered = hitl_request_json(_task(hitl))
    assert offered["options"] == OPTIONS and offered["id"] == str(hitl.pk)
    assert HitlRequest.objects.get(pk=hitl.pk).is_pending
