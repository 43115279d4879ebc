"""The inbox's filters (agent, deadline, organization) and order in its URL, the decided tab
(who decided what, keyset pages), organization scoping and query counts."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tasks_app import selectors, services
from tasks_app.models import Agent, HitlRequest, Membership, Role
from tasks_app.templatetags.taskdesk import exact_time, machine_time

from .test_approvals import HX, _paused

INBOX = reverse("approvals_inbox")
DECIDED = reverse("approvals_decided")


def _ids(html: str) -> list[int]:
    """Request ids in page order (cards and decided records)."""
    return [int(pk) for pk in re.findall(r'<(?:article|div) id="hitl-(\d+)"', html)]


def _get(client, url, **params):
    response = client.get(url, params)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def mixed(acme, globex, system_actor, agent):
    """acme: three requests (two agents, deadlines in 30 min, 5 h and none); globex: one."""
    other = Agent.objects.create(organization=acme, name="billing-bot")
    now = timezone.now()
    soon = _paused(acme, system_actor, "m-soon", agent=other, deadline=now + timedelta(minutes=30))
    later = _paused(acme, system_actor, "m-later", agent=agent, deadline=now + timedelta(hours=5))
    never = _paused(acme, system_actor, "m-never", agent=agent)
    # Requested oldest first: never, later, soon.
    for age, hitl in ((30, never), (20, later), (10, soon)):
        HitlRequest.objects.filter(pk=hitl.pk).update(requested_at=now - timedelta(minutes=age))
    theirs = _paused(globex, system_actor, "g-1", question="Globex's own question")
    return {"soon": soon.pk, "later": later.pk, "never": never.pk, "theirs": theirs.pk}


# --- Pending: order and filters ----------------------------------------------------------------


def test_oldest_first_by_default_and_soonest_deadline_first_on_request(client, alice, mixed):
    client.force_login(alice)
    assert _ids(_get(client, INBOX)) == [mixed["never"], mixed["later"], mixed["soon"]]
    html = _get(client, INBOX, sort="deadline")
    assert _ids(html) == [mixed["soon"], mixed["later"], mixed["never"]]  # none last
    assert '<option value="deadline" selected>' in html and 'data-sort="deadline"' in html


@pytest.mark.parametrize(
    ("due", "expected"),
    [
        ("1h", ["soon"]),
        ("24h", ["later", "soon"]),
        ("none", ["never"]),
        ("overdue", []),
        ("", ["never", "later", "soon"]),
    ],
)
def test_the_deadline_filter(client, alice, mixed, due, expected):
    client.force_login(alice)
    html = _get(client, INBOX, due=due)
    assert _ids(html) == [mixed[name] for name in expected]
    if due:
        assert f'data-filter-due="{due}"' in html and f'<option value="{due}" selected>' in html
    if not expected:
        assert "Nothing waiting matches these filters." in html


def test_overdue_shows_what_the_deadline_job_has_not_resolved(alice, acme, system_actor):
    late = _paused(acme, system_actor, "m-late", deadline=timezone.now() - timedelta(minutes=1))
    filters = selectors.InboxFilters(due="overdue")
    assert [h.pk for h in selectors.pending_hitl_for_user(alice, filters)] == [late.pk]


def test_the_agent_filter_and_the_agents_offered(client, alice, mixed):
    client.force_login(alice)
    html = _get(client, INBOX, agent="billing-bot")
    assert _ids(html) == [mixed["soon"]] and 'data-filter-agent="billing-bot"' in html
    assert '<option value="billing-bot" selected>' in html and '<option value="support-bot">' in html
    assert _ids(_get(client, INBOX, agent="nobody")) == []


def test_filters_combine_and_stay_in_the_url_of_the_other_tab(client, alice, mixed):
    client.force_login(alice)
    html = _get(client, INBOX, agent="support-bot", due="24h", sort="deadline")
    assert _ids(html) == [mixed["later"]]
    assert f'href="{DECIDED}?agent=support-bot"' in html  # the agent carries over, the deadline does not
    assert f'href="{INBOX}">Reset' in html


def test_the_organization_filter_for_people_in_several(client, alice, acme, globex, mixed):
    Membership.objects.create(user=alice, organization=globex, role=Role.VIEWER)
    client.force_login(alice)
    everything = _get(client, INBOX)
    assert set(_ids(everything)) == set(mixed.values()) and "data-several-orgs" in everything
    assert '<select name="org">' in everything
    html = _get(client, INBOX, org="globex")
    assert _ids(html) == [mixed["theirs"]] and 'data-filter-org="globex"' in html
    assert '<option value="globex" selected>' in html
    assert "data-approve" not in html  # a viewer in globex


def test_one_organization_offers_no_organization_filter(client, alice, mixed):
    client.force_login(alice)
    html = _get(client, INBOX)
    assert '<select name="org">' not in html and "data-several-orgs" not in html


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"org": "globex"}, "You are in no organization by that name"),
        ({"due": "tomorrow"}, "Unknown deadline filter"),
        ({"sort": "priority"}, "Unknown order"),
        ({"agent": "bot\x00"}, "No agent has that name"),
    ],
)
def test_an_unknown_filter_is_named_and_left_out(client, alice, mixed, params, message):
    client.force_login(alice)
    html = _get(client, INBOX, **params)
    assert message in html and 'class="inbox-errors" role="alert"' in html
    assert set(_ids(html)) == {mixed["never"], mixed["later"], mixed["soon"]}  # never globex's


def test_the_filtered_list_as_an_htmx_fragment(client, alice, mixed):
    client.force_login(alice)
    response = client.get(INBOX, {"agent": "billing-bot", "org": "", "due": "", "sort": "oldest"}, **HX)
    html = response.content.decode()
    assert response["HX-Push-Url"] == f"{INBOX}?agent=billing-bot"  # only what narrows the view
    assert html.lstrip().startswith('<div id="inbox-results"') and "<html" not in html
    assert _ids(html) == [mixed["soon"]] and "HX-Request" in response["Vary"]


# --- Scoping ---------------------------------------------------------------------------------


def test_charlie_of_globex_sees_nothing_of_acme_in_either_tab(client, charlie, alice, mixed):
    for pk in (mixed["soon"], mixed["later"]):
        hitl = HitlRequest.objects.get(pk=pk)
        services.hitl_decide(
            hitl=hitl, actor=services.Actor.for_user(alice), decision="responded", answer="acme's secret"
        )
    client.force_login(charlie)
    pending = _get(client, INBOX)
    decided = _get(client, DECIDED)
    assert _ids(pending) == [mixed["theirs"]] and _ids(decided) == []
    for html in (pending, decided, _get(client, INBOX, org="acme"), _get(client, DECIDED, org="acme")):
        assert "acme&#x27;s secret" not in html and "m-soon" not in html and "support-bot" not in html
    assert "You are in no organization by that name" in _get(client, DECIDED, org="acme")


def test_bob_the_viewer_reads_both_tabs_without_decide_buttons(client, bob, alice, mixed):
    soon = HitlRequest.objects.get(pk=mixed["soon"])
    services.hitl_decide(hitl=soon, actor=services.Actor.for_user(alice), decision="dismissed")
    client.force_login(bob)
    pending, decided = _get(client, INBOX), _get(client, DECIDED)
    assert set(_ids(pending)) == {mixed["never"], mixed["later"]} and _ids(decided) == [mixed["soon"]]
    for html in (pending, decided):
        for marker in ("data-approve", "data-option", "data-respond", "data-dismiss", "hitl-form"):
            assert marker not in html


# --- Decided tab -------------------------------------------------------------------------------


def _decide_all(acme, alice, system_actor, count, start=0):
    """Requests d-<start>..., decided in turn: answered with an option, approved amended, rejected."""
    actor = services.Actor.for_user(alice)
    decided = []
    for i in range(start, start + count):
        hitl = _paused(acme, system_actor, f"d-{i}", options=["yes", "no"], payload={"amount": i, "to": "ada"})
        if i % 3 == 0:
            services.hitl_decide(hitl=hitl, actor=actor, decision="responded", option="no", comment=f"c{i}")
        elif i % 3 == 1:
            services.hitl_decide(hitl=hitl, actor=actor, decision="approved", amended_payload={"amount": i + 100})
        else:
            services.hitl_decide(hitl=hitl, actor=actor, decision="rejected", reason=f"not now {i}")
        decided.append(hitl.pk)
    return decided


def test_the_decided_tab_says_who_decided_what_when(client, alice, acme, system_actor):
    responded, approved, rejected = _decide_all(acme, alice, system_actor, 3)
    client.force_login(alice)
    html = _get(client, DECIDED)
    assert _ids(html) == [rejected, approved, responded]  # newest decision first
    assert html.count('by <span class="hitl-decider">alice</span>') == 3
    # When, as people read it ("just now"), ticking in the page; the exact time on hover.
    when = HitlRequest.objects.get(pk=rejected).decided_at
    assert f'<time datetime="{machine_time(when)}" data-relative title="{exact_time(when)}">just now</time>' in html
    assert "Answered" in html and "chosen option" in html and "c0" in html
    assert "Rejected" in html and "not now 2" in html
    assert "Payload amended before approval" in html and "<ins>101</ins>" in html
    assert "<code>to</code>" in html  # removed by the amendment, shown per key
    assert '<a class="inbox-tab" href="/approvals/decided/" aria-current="page">Decided</a>' in html


def test_the_decided_tab_filters_by_decision_and_timed_out(client, alice, acme, system_actor):
    responded, approved, rejected = _decide_all(acme, alice, system_actor, 3)
    timed_out = _paused(acme, system_actor, "d-late", deadline=timezone.now() - timedelta(seconds=1))
    services.hitl_expire_due(every_organization=True)
    withdrawn = _paused(acme, system_actor, "d-stop")
    services.task_stop(task=withdrawn.task, actor=system_actor)
    client.force_login(alice)
    assert _ids(_get(client, DECIDED, decision="approved")) == [approved]
    assert _ids(_get(client, DECIDED, decision="rejected")) == [timed_out.pk, rejected]
    assert _ids(_get(client, DECIDED, decision="expired")) == [timed_out.pk]
    html = _get(client, DECIDED, decision="withdrawn")
    assert _ids(html) == [withdrawn.pk] and "the task left its pause before anyone decided" in html
    assert "at its deadline" in _get(client, DECIDED, decision="expired")
    assert "Unknown decision filter" in _get(client, DECIDED, decision="maybe")


def test_the_decided_tab_pages_by_keyset(client, alice, acme, system_actor, monkeypatch):
    monkeypatch.setattr(selectors, "DECIDED_PAGE_SIZE", 2)
    decided = _decide_all(acme, alice, system_actor, 5)
    # Two decisions at the same instant still page in a stable order (ties by id).
    HitlRequest.objects.filter(pk__in=decided[1:3]).update(decided_at=timezone.now())
    newest_first = list(
        HitlRequest.objects.filter(pk__in=decided).order_by("-decided_at", "-id").values_list("pk", flat=True)
    )
    client.force_login(alice)
    seen, params, pages = [], {}, 0
    while True:
        html = _get(client, DECIDED, **params)
        seen += _ids(html)
        pages += 1
        found = re.search(r'rel="next" href="\?before=([\w-]+)"', html)
        if not found:
            break
        params = {"before": found.group(1)}
        assert "← Newest" in _get(client, DECIDED, **params)
    assert seen == newest_first and pages == 3


def test_a_forged_cursor_is_named_and_the_newest_page_shown(client, alice, acme, system_actor):
    (only,) = _decide_all(acme, alice, system_actor, 1)
    client.force_login(alice)
    for cursor in ("not-a-cursor", "WyJkZWNpZGVkIiwiMjAyNSIsMV0"):
        html = _get(client, DECIDED, before=cursor)
        assert "Invalid page cursor. Showing the newest decisions." in html and _ids(html) == [only]


def test_the_decided_tab_as_an_htmx_fragment(client, alice, acme, system_actor):
    _decide_all(acme, alice, system_actor, 1)
    client.force_login(alice)
    html = client.get(DECIDED, {"decision": "responded"}, **HX).content.decode()
    assert html.lstrip().startswith('<div id="inbox-results"') and 'id="hitl-decided"' in html
    assert "<html" not in html


# --- Query counts --------------------------------------------------------------------------------


def _queries(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url, params or {}).status_code == 200
    return len(ctx)


def test_the_waiting_tab_costs_the_same_queries_at_1_10_and_40(client, alice, acme, globex, system_actor):
    Membership.objects.create(user=alice, organization=globex, role=Role.OPERATOR)
    client.force_login(alice)
    counts, made = [], 0
    for size in (1, 10, 40):
        for i in range(made, size):
            org = acme if i % 2 else globex
            agent = Agent.objects.get_or_create(organization=org, name=f"bot-{i % 4}")[0]
            deadline = timezone.now() + timedelta(hours=i + 1) if i % 3 else None
            _paused(org, system_actor, f"qc-{i}", agent=agent, deadline=deadline, options=["a", "b"])
        made = size
        counts.append(
            (_queries(client, INBOX), _queries(client, INBOX, {"sort": "deadline", "due": "24h", "org": "acme"}))
        )
    assert counts[0] == counts[1] == counts[2], counts


def test_the_decided_tab_costs_the_same_queries_at_1_10_and_40(client, alice, acme, system_actor):
    client.force_login(alice)
    counts, made = [], 0
    for size in (1, 10, 40):
        _decide_all(acme, alice, system_actor, size - made, start=made)
        made = size
        counts.append((_queries(client, DECIDED), _queries(client, DECIDED, {"decision": "approved"})))
    assert counts[0] == counts[1] == counts[2], counts
