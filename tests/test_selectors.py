from datetime import timedelta

import pytest
from django.utils import timezone

from tasks_app import selectors, services
from tasks_app.models import Task
from tasks_app.selectors import TaskFilters


@pytest.fixture
def many(acme, system_actor):
    base = timezone.now()
    for i in range(23):
        task, _ = services.task_create(
            organization=acme, actor=system_actor, id=f"t-{i:03d}", title=f"task {i}", priority=i % 5
        )
        # Same created_at for some rows so the id tie-break matters.
        Task.objects.filter(pk=task.pk).update(created_at=base - timedelta(minutes=i // 3))
    return Task.objects.filter(organization=acme)


@pytest.mark.parametrize("sort", ["-created", "created", "-priority", "priority", "title", "-updated"])
def test_it_walks_every_row_once_forward_and_back(many, sort):
    seen, pages, cursor = [], [], None
    while True:
        page = selectors.paginate_tasks(many, sort=sort, after=cursor, limit=5)
        pages.append(page)
        seen += [t.pk for t in page.tasks]
        if not page.older:
            break
        cursor = page.older
    assert len(seen) == 23 and len(set(seen)) == 23
    field, desc = selectors._sort_spec(sort)
    expected = list(many.order_by(f"-{field}" if desc else field, "-pk" if desc else "pk").values_list("pk", flat=True))
    assert seen == expected
    # Walking back from the last page gives the previous pages exactly.
    back = selectors.paginate_tasks(many, sort=sort, before=pages[-1].newer, limit=5)
    assert [t.pk for t in back.tasks] == [t.pk for t in pages[-2].tasks]
    assert pages[0].newer is None


def test_it_refuses_a_forged_cursor(many):
    with pytest.raises(selectors.BadCursor):
        selectors.paginate_tasks(many, after="not-a-cursor")
    page = selectors.paginate_tasks(many, sort="-created", limit=5)
    with pytest.raises(selectors.BadCursor):
        selectors.paginate_tasks(many, sort="priority", after=page.older)


def test_filters_and_counts(many, acme, system_actor):
    services.task_update(task="t-001", actor=system_actor, organization_id=acme.pk, status="executing")
    services.hitl_request(task="t-001", actor=system_actor, organization_id=acme.pk, question="ok?")
    qs = selectors.filter_tasks(many, TaskFilters(statuses=("paused",)))
    assert [t.public_id for t in qs] == ["t-001"]
    assert [t.public_id for t in selectors.filter_tasks(many, TaskFilters(has_pending_hitl=True))] == ["t-001"]
    assert selectors.filter_tasks(many, TaskFilters(q="task 22")).count() == 1
    # An id matches by its start (pasted from a log), not in the middle.
    assert sorted(selectors.filter_tasks(many, TaskFilters(q="t-02")).values_list("public_id", flat=True)) == [
        "t-020",
        "t-021",
        "t-022",
    ]
    assert selectors.filter_tasks(many, TaskFilters(q="-02")).count() == 0
    counts = selectors.status_counts(acme.pk)
    assert counts["paused"] == 1 and counts["pending"] == 22 and set(counts) >= {"completed", "timed_out"}
    assert counts == selectors.status_counts_by_group_by(acme.pk)  # the kept counts agree with the rows
    task = Task.objects.get(organization=acme, public_id="t-001")
    assert selectors.task_matches(task.pk, TaskFilters(statuses=("paused",)))
    assert not selectors.task_matches(task.pk, TaskFilters(statuses=("pending",)))


def test_display_title_falls_back_to_input_then_name_then_id(acme, system_actor):
    task, _ = services.task_create(organization=acme, actor=system_actor, id="dt-1", name="sim-acme-1")
    assert task.display_title == "sim-acme-1"
    task = services.task_update(task=task, actor=system_actor, input_text="Summarise the call")
    assert task.display_title == "Summarise the call"
    task = services.task_update(task=task, actor=system_actor, title="Call summary")
    assert task.display_title == "Call summary"
    bare, _ = services.task_create(organization=acme, actor=system_actor, id="dt-2")
    assert bare.display_title == "dt-2"


def test_lookups_by_public_id_stay_in_the_callers_organization(acme, globex, alice, charlie, system_actor):
    from django.http import Http404

    mine, _ = services.task_create(organization=acme, actor=system_actor, id="same", title="acme's")
    theirs, _ = services.task_create(organization=globex, actor=system_actor, id="same", title="globex's")
    assert selectors.get_task_for_user(alice, "acme", "same") == mine
    assert selectors.get_task_for_user(charlie, "globex", "same") == theirs
    for user, slug in ((alice, "globex"), (charlie, "acme"), (alice, "nope")):
        with pytest.raises(Http404):
            selectors.get_task_for_user(user, slug, "same")
    assert selectors.find_tasks_for_user(alice, "same") == [mine]
    token, _ = services.api_token_create(organization=globex, name="agent")
    assert selectors.get_task_for_token(token, "same") == theirs
    for bad in ("missing", mine.pk, None):
        with pytest.raises(services.TaskNotFound):
            selectors.get_task_for_token(token, bad)
    # A bare public id means nothing without its organization.
    with pytest.raises(ValueError):
        services.task_update(task="same", actor=system_actor, priority=1)


# --- A list view's rules: one filter for the page and for what is pushed to it -------------


@pytest.mark.parametrize(
    "query",
    [
        "",
        "status=paused&status=failed",
        "agent=support-bot&source=xpander&hitl=no",
        "hitl=yes&sort=-updated",
        "updated_after=2025-01-02&updated_before=2025-01-03&q=refund+%2342",
        "updated_after=2025-01-02T10%3A30%3A00%2B00%3A00&sort=title",
    ],
)
def test_a_views_query_is_its_canonical_key(query):
    from django.http import QueryDict

    filters, errors = selectors.parse_task_filters(QueryDict(query))
    assert errors == []
    assert filters.query == query
    assert selectors.task_filters_for_view(filters.query) == filters
    assert (filters.query == "") == (filters.is_default and filters.sort == selectors.DEFAULT_SORT)


def test_a_views_key_drops_what_the_page_would_ignore():
    assert selectors.task_filters_for_view("status=bogus&hitl=maybe&sort=nope&q=+hi+").query == "q=hi"
    assert selectors.task_filters_for_view("status=failed&status=failed").query == "status=failed"


def test_task_matches_is_the_lists_own_filter(many, acme, system_actor):
    """Every filter of the list, asked of one row, agrees with the list's query."""
    services.task_update(task="t-001", actor=system_actor, organization_id=acme.pk, status="executing")
    services.hitl_request(task="t-001", actor=system_actor, organization_id=acme.pk, question="ok?")
    services.task_update(task="t-002", actor=system_actor, organization_id=acme.pk, source="agentex")
    views = [
        TaskFilters(has_pending_hitl=True),
        TaskFilters(has_pending_hitl=False),
        TaskFilters(statuses=("paused", "failed")),
        TaskFilters(source="agentex"),
        TaskFilters(q="task 2"),
        TaskFilters(q="t-00"),
        TaskFilters(updated_after=timezone.now() - timedelta(minutes=1)),
    ]
    for filters in views:
        listed = set(selectors.filter_tasks(many, filters).values_list("pk", flat=True))
        assert listed, filters
        for task in many:
            assert selectors.task_matches(task.pk, filters) == (task.pk in listed), (filters, task.public_id)
    deleted = Task.objects.get(organization=acme, public_id="t-003")
    services.task_delete(task=deleted, actor=system_actor)
    assert not selectors.task_matches(deleted.pk, TaskFilters())


def test_sort_moves_names_the_changes_that_can_move_a_row(acme, system_actor):
    from tasks_app.models import TaskEvent

    task, _ = services.task_create(organization=acme, actor=system_actor, id="mv-1")
    created = TaskEvent.objects.filter(task=task).last()
    services.task_update(task=task, actor=system_actor, priority=70)
    priority = TaskEvent.objects.filter(task=task).last()
    services.append_activity(task=task, actor=system_actor, entries=[{"content": "step"}])
    activity = TaskEvent.objects.filter(task=task).last()
    assert all(selectors.sort_moves(sort, created) for sort in ("-created", "title", "-updated"))
    assert selectors.sort_moves("-updated", priority) and selectors.sort_moves("priority", priority)
    assert not selectors.sort_moves("-created", priority) and not selectors.sort_moves("title", priority)
    assert not selectors.sort_moves("-updated", activity)


def test_the_total_is_exact_from_the_counters_where_the_filter_allows(
    acme, globex, system_actor, django_assert_num_queries
):
    for org, n in ((acme, 7), (globex, 4)):
        for i in range(n):
            services.task_create(organization=org, actor=system_actor, id=f"tt-{i}")
    services.task_update(task="tt-0", actor=system_actor, organization_id=acme.pk, status="executing")
    orgs = [acme.pk, globex.pk]
    qs = Task.objects.filter(organization_id__in=orgs)
    for filters, expected in (
        (TaskFilters(), 11),
        (TaskFilters(sort="-updated"), 11),
        (TaskFilters(statuses=("executing",)), 1),
        (TaskFilters(statuses=("pending", "executing")), 11),
    ):
        with django_assert_num_queries(1):  # the kept counts, not the tasks
            total = selectors.count_tasks(orgs, filters, selectors.filter_tasks(qs, filters))
        assert total == selectors.TaskTotal(expected, exact=True), filters
    assert selectors.count_tasks([acme.pk], TaskFilters(), qs).count == 7


def test_any_other_filter_counts_the_rows_up_to_the_cap(acme, system_actor, monkeypatch, django_assert_num_queries):
    for i in range(6):
        services.task_create(organization=acme, actor=system_actor, id=f"cap-{i}", source="xpander" if i else "")
    qs = Task.objects.filter(organization=acme)
    filters = TaskFilters(source="xpander")
    with django_assert_num_queries(1):
        assert selectors.count_tasks([acme.pk], filters, selectors.filter_tasks(qs, filters)) == selectors.TaskTotal(
            5, exact=True
        )
    monkeypatch.setattr(selectors, "TOTAL_CAP", 3)
    with django_assert_num_queries(1) as captured:
        total = selectors.count_tasks([acme.pk], filters, selectors.filter_tasks(qs, filters))
    assert total == selectors.TaskTotal(3, exact=False)
    assert "LIMIT 4" in captured.captured_queries[0]["sql"]  # stops at the cap, however many there are


def test_a_tokens_lookup_by_name_stays_in_its_organization(acme, globex, system_actor):
    """Agentex's by-name routes use the same scoped lookup as ids: another organization's name reads as missing."""
    token, _ = services.api_token_create(organization=acme, name="agentex")
    ours, _ = services.task_create(organization=acme, actor=system_actor, name="weekly report")
    services.task_create(organization=globex, actor=system_actor, name="their report")
    assert selectors.get_task_by_name_for_token(token, "weekly report") == ours
    for name in ("their report", "nobody's", "a\x00b", "\ud800", None):
        with pytest.raises(services.TaskNotFound):
            selectors.get_task_by_name_for_token(token, name)
    services.task_delete(task=ours, actor=system_actor)
    with pytest.raises(services.TaskNotFound):
        selectors.get_task_by_name_for_token(token, "weekly report")
    assert selectors.get_task_by_name_for_token(token, "weekly report", include_deleted=True) == ours
