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
    assert TaskFilters(statuses=("paused",)).matches(task)
    assert not TaskFilters(statuses=("pending",)).matches(task)


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
