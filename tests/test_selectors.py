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
    services.task_update(task="t-001", actor=system_actor, status="executing")
    services.hitl_request(task="t-001", actor=system_actor, question="ok?")
    qs = selectors.filter_tasks(many, TaskFilters(statuses=("paused",)))
    assert [t.pk for t in qs] == ["t-001"]
    assert [t.pk for t in selectors.filter_tasks(many, TaskFilters(has_pending_hitl=True))] == ["t-001"]
    assert selectors.filter_tasks(many, TaskFilters(q="task 22")).count() == 1
    # An id matches by its start (pasted from a log), not in the middle.
    assert sorted(selectors.filter_tasks(many, TaskFilters(q="t-02")).values_list("pk", flat=True)) == [
        "t-020",
        "t-021",
        "t-022",
    ]
    assert selectors.filter_tasks(many, TaskFilters(q="-02")).count() == 0
    counts = selectors.status_counts(many)
    assert counts["paused"] == 1 and counts["pending"] == 22 and set(counts) >= {"completed", "timed_out"}
    task = Task.objects.get(pk="t-001")
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
