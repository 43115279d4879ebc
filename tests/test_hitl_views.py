"""The desk's decision form beyond approve/reject (answer, an offered option, dismiss), and the
decision staying on the task page after it is made, as rendered and as pushed live."""

import pytest
from django.urls import reverse

from tasks_app import services
from tasks_app.live.fragments import render_event_html
from tasks_app.models import ActivityEntry, EventType, HitlRequest, Task, TaskEvent

from .test_approvals import HX, XSS, _paused

OPTIONS = ["Apologise and refund", "Offer a voucher", 'Escalate "now" <b>']


@pytest.fixture
def asked(acme, system_actor, agent):
    return _paused(acme, system_actor, "v-1", agent=agent, options=OPTIONS, payload=None, question="What to offer?")


def _decide(client, hitl, **form):
    return client.post(reverse("hitl_decide", args=[hitl.pk]), form, **HX)


def _task_page(client, hitl):
    task = Task.objects.select_related("organization").get(pk=hitl.task_id)
    return client.get(reverse("task_detail", args=[task.organization.slug, task.public_id])).content.decode()


# --- The form -------------------------------------------------------------------------------


def test_the_form_offers_each_option_as_a_button_and_an_answer_field(client, alice, asked):
    client.force_login(alice)
    html = client.get(reverse("approvals_inbox")).content.decode()
    assert 'value="option:Apologise and refund" class="btn hitl-option" data-option="1"' in html
    assert 'value="option:Escalate &quot;now&quot; &lt;b&gt;"' in html and 'data-option="3"' in html
    assert 'name="answer"' in html and 'value="respond"' in html and 'value="dismiss"' in html
    assert "data-approve" in html and "data-reject" in html
    assert 'class="hitl-options"' not in html  # the options are the buttons, not decoration
    assert "hitl-amend" not in html  # nothing proposed, nothing to amend


def test_a_viewer_sees_the_options_as_text_and_no_buttons(client, bob, asked):
    client.force_login(bob)
    html = client.get(reverse("approvals_inbox")).content.decode()
    assert 'class="hitl-options"' in html and "Offer a voucher" in html
    for marker in ("data-option", 'name="answer"', "data-respond", "data-dismiss", "data-approve"):
        assert marker not in html


@pytest.mark.parametrize(
    ("form", "shown", "decision", "answer", "chosen"),
    [
        ({"action": "option:Offer a voucher"}, "Answered", "responded", "Offer a voucher", "Offer a voucher"),
        ({"action": "respond", "answer": "Offer 15 EUR off."}, "Answered", "responded", "Offer 15 EUR off.", ""),
        ({"action": "dismiss"}, "Dismissed", "dismissed", "", ""),
    ],
)
def test_each_button_decides_and_the_task_goes_back(client, alice, asked, form, shown, decision, answer, chosen):
    client.force_login(alice)
    response = _decide(client, asked, comment="noted", **form)
    html = response.content.decode()
    assert response.status_code == 200 and shown in html and "alice" in html and "noted" in html
    assert answer in html and "data-hitl-card" not in html
    asked.refresh_from_db()
    assert (asked.decision, asked.answer, asked.chosen_option) == (decision, answer, chosen)
    assert asked.decided_by == alice and asked.comment == "noted"
    assert Task.objects.get(pk=asked.task_id).status == "executing"
    message = ActivityEntry.objects.get(task_id=asked.task_id)
    assert message.role == "user" and message.content == (answer or "Dismissed without an answer: noted")


def test_an_option_with_markup_is_chosen_exactly(client, alice, asked):
    client.force_login(alice)
    assert _decide(client, asked, action='option:Escalate "now" <b>').status_code == 200
    asked.refresh_from_db()
    assert asked.chosen_option == 'Escalate "now" <b>'


def test_a_forged_option_is_refused_in_place(client, alice, asked):
    client.force_login(alice)
    response = _decide(client, asked, action="option:Refund 1000 EUR")
    html = response.content.decode()
    assert response.status_code == 422 and "Not one of the options this request offers." in html
    asked.refresh_from_db()
    assert asked.is_pending


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"action": "respond", "answer": "  "}, "An answer is required."),
        ({"action": "option:Offer a voucher", "answer": "and 5 EUR"}, "Answer in your own words or choose an option"),
        ({"action": "approve", "answer": "typed but approved"}, "Only a response carries an answer or an option."),
        ({"action": "dismiss", "reason": "typed a reason"}, "Only an approval or a rejection takes a reason"),
    ],
)
def test_a_mixed_up_form_is_refused_with_what_was_typed_kept(client, alice, asked, form, error):
    client.force_login(alice)
    response = _decide(client, asked, comment="kept comment", **form)
    html = response.content.decode()
    assert response.status_code == 422 and error in html and 'value="kept comment"' in html
    if form.get("answer", "").strip():
        assert f">{form['answer']}</textarea>" in html
    asked.refresh_from_db()
    assert asked.is_pending


@pytest.mark.parametrize("action", ["respond", "dismiss", "option:Offer a voucher"])
def test_a_viewers_forged_post_is_403_and_changes_nothing(client, bob, asked, action):
    client.force_login(bob)
    assert _decide(client, asked, action=action, answer="x").status_code == 403
    asked.refresh_from_db()
    assert asked.is_pending and not TaskEvent.objects.filter(task_id=asked.task_id, type="task.hitl_decided").exists()


def test_an_outsider_cannot_answer(client, charlie, asked):
    client.force_login(charlie)
    assert _decide(client, asked, action="respond", answer="x").status_code == 404
    asked.refresh_from_db()
    assert asked.is_pending


# --- The task page keeps the decision ----------------------------------------------------------


def test_deciding_on_the_task_page_swaps_the_whole_panel_to_the_record(client, alice, asked):
    client.force_login(alice)
    response = _decide(client, asked, action="respond", answer="Offer a voucher, 10 EUR", context="task")
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith('<section id="panel-hitl"')
    assert "Request for a person" in html and "Waiting for a person" not in html
    assert "Answered" in html and "alice" in html and "Offer a voucher, 10 EUR" in html and "What to offer?" in html
    refused = _decide(client, asked, action="dismiss", context="task")
    assert refused.status_code == 409 and 'id="panel-hitl"' in refused.content.decode()
    assert "Already responded by alice" in refused.content.decode()


def test_the_task_page_shows_who_decided_what_and_the_amendment_per_key(client, alice, acme, system_actor):
    hitl = _paused(acme, system_actor, "v-amend", payload={"amount": 20, "currency": "EUR", "to": "ada"})
    amended = {"amount": 15, "to": "ada", "note": "partial"}
    services.hitl_decide(
        hitl=hitl, actor=services.Actor.for_user(alice), decision="approved", amended_payload=amended, comment="ok"
    )
    client.force_login(alice)
    html = _task_page(client, hitl)
    panel = html[html.index('id="panel-hitl"') : html.index("</section>", html.index('id="panel-hitl"'))]
    assert " hidden" not in panel.split(">", 1)[0]
    assert "Approved" in panel and "alice" in panel and "Refund the customer?" in panel and "ok" in panel
    assert "Payload amended before approval" in panel
    rows = panel[panel.index("<tbody>") : panel.index("</tbody>")]
    changed = "<code>amount</code></th><td><del>20</del></td><td><ins>15</ins>"
    assert f'hitl-diff__changed"><th scope="row">{changed}' in rows
    assert 'hitl-diff__removed"><th scope="row"><code>currency</code>' in rows
    added = '<code>note</code></th><td><span class="muted">—</span></td><td><ins>partial</ins>'
    assert f'hitl-diff__added"><th scope="row">{added}' in rows
    assert "<code>to</code>" not in rows  # unchanged keys are left out


def test_a_task_that_never_asked_has_no_panel(client, alice, acme, system_actor):
    task, _ = services.task_create(organization=acme, actor=system_actor, id="v-none")
    client.force_login(alice)
    html = client.get(reverse("task_detail", args=["acme", "v-none"])).content.decode()
    assert '<section id="panel-hitl" class="panel" aria-labelledby="h-hitl" hidden>' in html


def test_a_decision_with_markup_is_escaped_on_the_page_and_when_pushed(client, alice, acme, system_actor):
    hitl = _paused(acme, system_actor, "v-x", question=XSS, options=[XSS], payload={XSS: XSS})
    services.hitl_decide(hitl=hitl, actor=services.Actor.for_user(alice), decision="responded", option=XSS)
    client.force_login(alice)
    event = TaskEvent.objects.get(task_id=hitl.task_id, type=EventType.HITL_DECIDED)
    for html in (
        _task_page(client, hitl),
        render_event_html(event, page="detail", can_edit=True),
        render_event_html(event, page="approvals", can_edit=True),
    ):
        assert "<script>alert(1)" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_pushed_decision_keeps_the_panel_with_the_record(acme, alice, system_actor, asked):
    services.hitl_decide(hitl=asked, actor=services.Actor.for_user(alice), decision="dismissed", comment="dup")
    decided = TaskEvent.objects.get(task_id=asked.task_id, type=EventType.HITL_DECIDED)
    html = render_event_html(decided, page="detail", can_edit=True)
    panel = html[html.index('<section id="panel-hitl"') :]
    assert panel.startswith('<section id="panel-hitl" class="panel live-changed" hx-swap-oob="true"')
    assert "Dismissed" in panel and "alice" in panel and "dup" in panel and "What to offer?" in panel
    assert "data-hitl-card" not in panel
    # The activity event that carries the dismissal to the agent's thread leaves the panel alone.
    activity = TaskEvent.objects.get(task_id=asked.task_id, type=EventType.ACTIVITY)
    assert 'id="panel-hitl"' not in render_event_html(activity, page="detail", can_edit=True)


def test_a_pushed_request_renders_the_form_only_for_deciders(acme, system_actor, asked):
    requested = TaskEvent.objects.get(task_id=asked.task_id, type=EventType.HITL_REQUESTED)
    editable = render_event_html(requested, page="detail", can_edit=True)
    readonly = render_event_html(requested, page="detail", can_edit=False)
    assert "data-option" in editable and "data-dismiss" in editable and "Waiting for a person" in editable
    assert "data-option" not in readonly and "read-only" in readonly
    assert HitlRequest.objects.get(pk=asked.pk).is_pending
