"""HITL beyond approve/reject in a real Chromium (issue 12): the agent's options as buttons, a
typed answer, dismiss, each counting down with Undo; the decision kept on the task page, live in
another session; the Decided tab; the inbox's filters and order in the URL, kept by pushed cards."""

import os
import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tasks_app import services
from tasks_app.models import ActivityEntry, HitlRequest, Membership, Task
from tests.browser.conftest import wait_for, wait_live

pytestmark = pytest.mark.django_db(transaction=True)

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs")
OPTIONS = ["Apologise and refund", "Offer a voucher", "Escalate to billing"]


def screenshot(page, name: str) -> None:
    """Refreshes docs/<name> when TASKDESK_SCREENSHOTS=1 (a test run leaves docs/ alone otherwise)."""
    if os.environ.get("TASKDESK_SCREENSHOTS") == "1":
        page.screenshot(path=os.path.join(DOCS, name))


def _ask(org, task_id, *, agent="support-bot", question="How should I answer the customer?", **fields):
    actor = services.Actor.system("agent")
    services.task_create(organization=org, actor=actor, id=task_id, title=f"Ticket {task_id}", agent=agent)
    services.task_update(task=task_id, organization_id=org.pk, actor=actor, status="executing")
    return services.hitl_request(task=task_id, organization_id=org.pk, actor=actor, question=question, **fields)


def _decision(hitl):
    return HitlRequest.objects.get(pk=hitl.pk)


def _inbox(page, url="/approvals/"):
    page.goto(url)
    page.wait_for_function("window.taskdeskTriage === true && !!window.taskdeskDecisions && !!window.taskdeskInbox")
    wait_live(page)


def test_an_option_button_answers_after_the_countdown_and_undo_stops_it(new_session, acme, alice):
    hitl = _ask(acme, "opt-1", options=OPTIONS)
    page = new_session("alice")
    _inbox(page)
    card = page.locator(f"#hitl-{hitl.pk}")
    expect(card.locator("[data-option]")).to_have_count(3)

    # Keyboard: select, 2 chooses the second option; Undo stops it for good.
    page.keyboard.press("j")
    expect(page.locator("#triage-status")).to_contain_text("1–3 chooses an option")
    page.keyboard.press("2")
    expect(page.locator(".undo-entry")).to_contain_text("Choosing “Offer a voucher” for “Ticket opt-1” in")
    expect(card).to_have_attribute("data-queued", "option:Offer a voucher")
    page.keyboard.press("u")
    expect(page.locator("#toast")).to_contain_text("was not answered")
    time.sleep(6)
    assert _decision(hitl).is_pending

    # A click on an option button sends it after the countdown.
    card.locator("[data-option='3']").click()
    expect(page.locator(".undo-entry")).to_have_count(1)
    assert _decision(hitl).is_pending  # still counting down
    page.wait_for_selector(f"#hitl-{hitl.pk}.hitl-card--decided", timeout=12_000)
    expect(card).to_contain_text("Answered by alice")
    expect(card).to_contain_text("“Escalate to billing”")
    decided = _decision(hitl)
    assert (decided.decision, decided.chosen_option, decided.answer) == ("responded",) + ("Escalate to billing",) * 2
    assert Task.objects.get(pk=hitl.task_id).status == "executing"


def test_a_typed_answer_reaches_the_agent_and_a_colleague_sees_it_live(new_session, acme, alice, bob):
    hitl = _ask(acme, "ans-1", payload={"amount": 40})
    page, colleague = new_session("alice"), new_session("bob")
    _inbox(colleague)
    _inbox(page)
    page.keyboard.press("j")
    page.keyboard.press("t")
    assert page.evaluate("document.activeElement.name") == "answer"
    page.keyboard.type("Refund 30 EUR; keep the order open.")
    page.keyboard.press("Shift+Enter")  # a new line, not a send
    page.keyboard.type("Thanks!")
    assert page.locator(".undo-entry").count() == 0
    page.keyboard.press("Enter")
    expect(page.locator(".undo-entry")).to_contain_text("Sending the answer to “Ticket ans-1”")
    assert wait_for(lambda: _decision(hitl).decision == "responded")
    assert _decision(hitl).answer == "Refund 30 EUR; keep the order open.\nThanks!"
    message = ActivityEntry.objects.get(task_id=hitl.task_id)
    assert (message.role, message.content) == ("user", "Refund 30 EUR; keep the order open.\nThanks!")
    # Bob (a viewer) had no form; the pushed decision replaces his card with who answered what.
    colleague.wait_for_selector(f"#hitl-{hitl.pk}.hitl-card--decided", timeout=12_000)
    expect(colleague.locator(f"#hitl-{hitl.pk}")).to_contain_text("Answered by alice")
    expect(colleague.locator(f"#hitl-{hitl.pk}")).to_contain_text("Refund 30 EUR")


def test_dismiss_closes_the_request_and_the_task_goes_on(new_session, acme, alice):
    hitl = _ask(acme, "dis-1", options=OPTIONS)
    page = new_session("alice")
    _inbox(page)
    page.locator(f"#hitl-{hitl.pk} .hitl-question").click()
    page.locator(f"#hitl-{hitl.pk} [data-comment-input]").fill("asked twice")
    page.locator(f"#hitl-{hitl.pk} [data-comment-input]").press("Escape")
    page.keyboard.press("d")
    expect(page.locator(".undo-entry")).to_contain_text("Dismissing “Ticket dis-1”")
    page.wait_for_selector(f"#hitl-{hitl.pk}.hitl-card--decided", timeout=12_000)
    expect(page.locator(f"#hitl-{hitl.pk}")).to_contain_text("Dismissed by alice")
    decided = _decision(hitl)
    assert decided.decision == "dismissed" and decided.comment == "asked twice" and decided.answer == ""
    assert Task.objects.get(pk=hitl.task_id).status == "executing"


def test_a_mixed_up_form_is_refused_at_once_with_the_text_kept(new_session, acme, alice):
    hitl = _ask(acme, "mix-1", options=OPTIONS)
    page = new_session("alice")
    _inbox(page)
    card = page.locator(f"#hitl-{hitl.pk}")
    card.locator("[data-answer-input]").fill("my own words")
    card.locator("[data-option='1']").click()  # an option and an answer: not both
    expect(card.locator(".field-error")).to_contain_text("Answer in your own words or choose an option, not both.")
    expect(card.locator("[data-answer-input]")).to_have_value("my own words")
    assert page.locator(".undo-entry").count() == 0 and _decision(hitl).is_pending


def test_the_task_page_keeps_the_decision_and_pushes_it_to_another_session(new_session, acme, alice):
    _ask(acme, "page-1", options=OPTIONS)
    page, other = new_session("alice"), new_session("alice")
    for each in (page, other):
        each.goto("/tasks/acme/page-1/")
        wait_live(each)
    expect(page.locator("#h-hitl")).to_have_text("⚑ Waiting for a person")
    page.locator("#panel-hitl [data-answer-input]").fill("Offer a 10 EUR voucher instead.")
    page.locator("#panel-hitl [data-respond]").click()
    expect(page.locator(".undo-entry")).to_have_count(1)
    expect(page.locator("#h-hitl")).to_have_text("Request for a person", timeout=12_000)
    panel = page.locator("#panel-hitl")
    expect(panel).to_contain_text("Answered by alice")
    expect(panel).to_contain_text("How should I answer the customer?")
    expect(panel).to_contain_text("Offer a 10 EUR voucher instead.")
    # The other tab on the same task gets the record pushed; the panel does not vanish.
    expect(other.locator("#h-hitl")).to_have_text("Request for a person", timeout=12_000)
    expect(other.locator("#panel-hitl")).to_contain_text("Offer a 10 EUR voucher instead.")
    expect(other.locator("#panel-hitl")).to_be_visible()
    other.reload()
    expect(other.locator("#panel-hitl")).to_contain_text("Answered by alice")


def test_an_amended_payload_is_kept_on_the_task_page_key_by_key(new_session, acme, alice):
    hitl = _ask(acme, "amend-1", question="Refund order 1042?",
                payload={"amount": 345, "currency": "EUR", "to": "ada@example.com"})  # fmt: skip
    page = new_session("alice")
    page.goto("/tasks/acme/amend-1/")
    wait_live(page)
    panel = page.locator("#panel-hitl")
    panel.locator("[data-hitl-amend] summary").click()
    panel.locator("[data-amend-input]").fill('{"amount": 300, "currency": "EUR", "note": "half now"}')
    panel.locator("[data-approve]").click()
    expect(page.locator(".undo-entry")).to_contain_text("Approving")
    expect(page.locator("#h-hitl")).to_have_text("Request for a person", timeout=12_000)
    assert _decision(hitl).amended_payload == {"amount": 300, "currency": "EUR", "note": "half now"}
    expect(panel.locator(".hitl-verdict")).to_have_text("Approved")
    diff = panel.locator(".hitl-diff")
    expect(diff.locator("caption")).to_have_text("Payload amended before approval")
    # One row per key the person changed (currency kept, so not listed): proposed, then approved.
    expected = [["amount", "345", "300"], ["note", "—", "half now"], ["to", "ada@example.com", "removed"]]
    rows = "rows => rows.map(r => [...r.children].map(c => c.innerText.trim()))"
    assert diff.locator("tbody tr").evaluate_all(rows) == expected
    expect(diff.locator("tbody tr").first.locator("del")).to_have_text("345")
    expect(diff.locator("tbody tr").first.locator("ins")).to_have_text("300")
    page.reload()  # kept on the task, not only in the page that decided
    assert page.locator("#panel-hitl .hitl-diff tbody tr").evaluate_all(rows) == expected


def test_the_decided_tab_lists_who_decided_what_with_its_filter_in_the_url(new_session, acme, alice):
    answered = _ask(acme, "hist-1", options=OPTIONS)
    approved = _ask(acme, "hist-2", payload={"amount": 40, "currency": "EUR"})
    waiting = _ask(acme, "hist-3", payload={"amount": 5})
    actor = services.Actor.for_user(alice)
    services.hitl_decide(hitl=answered, actor=actor, decision="responded", option="Offer a voucher")
    services.hitl_decide(
        hitl=approved, actor=actor, decision="approved", amended_payload={"amount": 30, "note": "half"}, comment="ok"
    )
    page = new_session("alice")
    page.goto("/approvals/")
    page.locator(".inbox-tab", has_text="Decided").click()
    page.wait_for_url("**/approvals/decided/")
    records = page.locator("#hitl-decided .hitl-card--record")
    expect(records).to_have_count(2)
    expect(records.nth(0)).to_contain_text("Approved by alice")
    expect(records.nth(0)).to_contain_text("Payload amended before approval")
    expect(records.nth(0).locator(".hitl-diff tbody tr")).to_have_count(3)  # amount, currency, note
    expect(records.nth(1)).to_contain_text("Answered by alice")
    expect(records.nth(1)).to_contain_text("chosen option")
    assert page.locator(f"#hitl-{waiting.pk}").count() == 0

    page.select_option("select[name=decision]", "responded")
    page.wait_for_url(re.compile(r".*/approvals/decided/\?decision=responded$"))
    expect(records).to_have_count(1)
    expect(records.nth(0)).to_contain_text("Offer a voucher")
    page.reload()  # the filter lives in the URL
    expect(page.locator("select[name=decision]")).to_have_value("responded")
    expect(records).to_have_count(1)


def test_filters_and_order_live_in_the_url_and_pushed_requests_keep_them(new_session, acme, alice):
    now = timezone.now()
    later = _ask(acme, "f-later", agent="support-bot", deadline=now + timedelta(hours=5), payload={"amount": 40})
    never = _ask(acme, "f-never", agent="support-bot", options=OPTIONS)
    other = _ask(acme, "f-other", agent="billing-bot", deadline=now + timedelta(minutes=20))
    page = new_session("alice")
    _inbox(page)
    cards = page.locator("#hitl-list [data-hitl-card]")
    expect(cards).to_have_count(3)

    page.select_option("select[name=agent]", "support-bot")
    page.wait_for_url(re.compile(r".*/approvals/\?agent=support-bot$"))
    expect(cards).to_have_count(2)
    page.select_option("select[name=sort]", "deadline")
    page.wait_for_url(re.compile(r".*/approvals/\?agent=support-bot&sort=deadline$"))
    expect(cards.nth(0)).to_have_id(f"hitl-{later.pk}")
    expect(cards.nth(1)).to_have_id(f"hitl-{never.pk}")
    wait_live(page)

    # Pushed while the page is open: another agent's request is left out, a matching one lands
    # in its deadline place (before the one due in 5 h), not at the end.
    _ask(acme, "f-pushed-other", agent="billing-bot", deadline=now + timedelta(minutes=10))
    pushed = _ask(acme, "f-pushed", agent="support-bot", deadline=now + timedelta(hours=2))
    expect(cards).to_have_count(3, timeout=12_000)
    expect(cards.nth(0)).to_have_id(f"hitl-{pushed.pk}")
    expect(cards.nth(1)).to_have_id(f"hitl-{later.pk}")
    expect(cards.nth(2)).to_have_id(f"hitl-{never.pk}")

    page.reload()
    expect(page.locator("select[name=agent]")).to_have_value("support-bot")
    expect(page.locator("select[name=sort]")).to_have_value("deadline")
    expect(cards).to_have_count(3)
    page.select_option("select[name=due]", "1h")
    expect(cards).to_have_count(0)  # 2 h and 5 h away; the 20-minute one is billing-bot's
    expect(page.locator(".hitl-empty")).to_have_text("Nothing waiting matches these filters.")
    page.locator(".inbox-clear").click()
    expect(cards).to_have_count(5)
    assert HitlRequest.objects.get(pk=other.pk).is_pending


def test_someone_in_two_organizations_filters_the_inbox_by_one(new_session, acme, globex, alice, charlie):
    Membership.objects.create(user=alice, organization=globex, role="viewer")
    ours = _ask(acme, "org-acme", question="Refund Acme's customer?")
    theirs = _ask(globex, "org-globex", question="Ship Globex's order?")
    page = new_session("alice")
    _inbox(page)
    cards = page.locator("#hitl-list [data-hitl-card]")
    expect(cards).to_have_count(2)
    expect(page.locator(f"#hitl-{ours.pk} .hitl-card__org")).to_have_text("Acme")
    expect(page.locator(f"#hitl-{theirs.pk} .hitl-card__org")).to_be_visible()

    page.select_option("select[name=org]", "globex")
    page.wait_for_url(re.compile(r".*/approvals/\?org=globex$"))
    expect(cards).to_have_count(1)
    expect(cards.nth(0)).to_have_id(f"hitl-{theirs.pk}")
    expect(page.locator(f"#hitl-{ours.pk}")).to_have_count(0)
    expect(cards.nth(0).locator("[data-approve]")).to_have_count(0)  # alice is a viewer in globex
    wait_live(page)
    # Pushed while filtered: Acme's new request stays out, Globex's joins.
    _ask(acme, "org-acme-2", question="Another Acme refund?")
    pushed = _ask(globex, "org-globex-2", question="Another Globex order?")
    expect(cards).to_have_count(2, timeout=12_000)
    expect(page.locator(f"#hitl-{pushed.pk}")).to_be_visible()
    page.wait_for_timeout(300)
    expect(page.locator("#hitl-list [data-org=acme]")).to_have_count(0)
    page.reload()
    expect(page.locator("select[name=org]")).to_have_value("globex")
    expect(cards).to_have_count(2)

    # Someone in one organization gets no organization filter and no organization on the cards.
    other = new_session("charlie")
    _inbox(other)
    expect(other.locator("#hitl-list [data-hitl-card]")).to_have_count(2)
    expect(other.locator("select[name=org]")).to_have_count(0)
    expect(other.locator(f"#hitl-{theirs.pk} .hitl-card__org")).to_be_hidden()


def test_the_inbox_screenshots(new_session, acme, alice, django_user_model):
    """docs/screenshot-approvals.png: an action to approve with a deadline, a question with options,
    the filters, and a decision counting down with its Undo; docs/screenshot-approvals-decided.png:
    the Decided tab with each kind of decision."""
    now = timezone.now()
    actor = services.Actor.for_user(alice)
    dave = django_user_model.objects.create_user(username="dave", password="x")
    Membership.objects.create(user=dave, organization=acme, role="admin")
    decisions = [
        ("Refund 120 EUR for order #1001?", {"payload": {"amount": 120, "currency": "EUR", "to": "ada@example.com"}},
         {"decision": "approved", "amended_payload": {"amount": 60, "to": "ada@example.com", "note": "half now"},
          "comment": "agreed with the customer on the phone"}),
        ("Which carrier for the replacement?", {"options": ["DHL", "UPS", "Local courier"]},
         {"decision": "responded", "option": "UPS"}),
        ("The invoice address differs from the account. Which one is right?", {},
         {"decision": "responded", "answer": "Use the account address; the invoice one is an old office."}),
        ("Delete the customer's account?", {"payload": {"action": "delete_account"}},
         {"decision": "rejected", "reason": "Legal hold until March"}),
        ("Send the survey email?", {}, {"decision": "dismissed", "comment": "duplicate of the request above"}),
    ]  # fmt: skip
    for n, (question, asked, decided) in enumerate(decisions):
        hitl = _ask(acme, f"hist-{n}", question=question, agent=["support-bot", "billing-bot"][n % 2], **asked)
        services.hitl_decide(hitl=hitl, actor=actor if n % 2 == 0 else services.Actor.for_user(dave), **decided)
    _ask(acme, "shot-1", question="May I refund 345 EUR for order #1010?", payload={"amount": 345, "currency": "EUR"},
         deadline=now + timedelta(hours=2, minutes=47))  # fmt: skip
    _ask(acme, "shot-2", question="The customer wrote twice. What should I offer?", options=OPTIONS)
    page = new_session("alice")
    _inbox(page, "/approvals/?sort=deadline")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("2")
    expect(page.locator(".undo-entry")).to_contain_text("Choosing “Offer a voucher”")
    screenshot(page, "screenshot-approvals.png")
    page.keyboard.press("u")
    expect(page.locator(".undo-entry")).to_have_count(0)
    page.goto("/approvals/decided/")
    expect(page.locator("#hitl-decided .hitl-card--record")).to_have_count(5)
    screenshot(page, "screenshot-approvals-decided.png")
