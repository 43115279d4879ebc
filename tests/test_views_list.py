"""The task list: full page and fragment, filters, sorting, keyset pages, counts, query count."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tasks_app import services
from tasks_app.models import Task
from tasks_app.templatetags.taskdesk import task_url

from .dashboard_helpers import make_tasks

URL = "/tasks/"


@pytest.fixture
def signed_in(client, alice):
    client.force_login(alice)
    return client


def row_ids(html: str) -> list[str]:
    """The public ids of the rows, in order (a row's DOM id is its internal key, unique across
    organizations; the id people read is in the row's id cell)."""
    import re

    return re.findall(
        r'<tr id="task-[0-9]+".*?<a class="task-id mono" href="[^"]*" title="[^"]*">([^<]+)</a>', html, re.S
    )


def test_it_renders_the_full_page(signed_in, acme, system_actor):
    make_tasks(acme, system_actor, 3)
    response = signed_in.get(URL)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" in html and 'id="task-table"' in html and 'id="status-counts"' in html
    assert 'hx-ext="ws,live-list,live-targets"' in html and 'ws-connect="/ws/tasks/?after=' in html
    assert "vendor/htmx-2.0.11.min.js" in html and "vendor/htmx-ext-ws-2.0.4.js" in html
    assert "js/taskdesk.js" in html and "js/live.js" in html and 'id="live-indicator"' in html
    assert "x-csrftoken" in html
    assert row_ids(html) == ["t-0002", "t-0001", "t-0000"]
    assert "HX-Request" in response["Vary"]


def test_it_renders_the_table_fragment_for_htmx(signed_in, acme, system_actor):
    make_tasks(acme, system_actor, 3)
    response = signed_in.get(URL + "?status=pending", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert html.strip().startswith('<div id="task-table"')
    assert len(row_ids(html)) == 3
    assert "HX-Request" in response["Vary"]


def test_a_history_restore_gets_the_full_page(signed_in, acme, system_actor):
    html = signed_in.get(URL, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true").content.decode()
    assert "<html" in html


def test_the_page_carries_the_last_event_id(signed_in, acme, system_actor):
    tasks = make_tasks(acme, system_actor, 2)
    last = tasks[-1].events.order_by("-id").first().pk
    html = signed_in.get(URL).content.decode()
    assert f'ws-connect="/ws/tasks/?after={acme.pk}:{last}"' in html  # one position per organization
    assert f'data-event-id="{last}"' in html


def test_columns_and_badges(signed_in, acme, agent, system_actor):
    task, _ = services.task_create(
        organization=acme, actor=system_actor, id="c-1", title="Columns", agent=agent, source="xpander", priority=77
    )
    services.task_update(task=task, actor=system_actor, status="executing")
    services.report_metrics(task=task, actor=system_actor, prompt_tokens=1200, completion_tokens=300, duration=75)
    html = signed_in.get(URL).content.decode()
    assert "support-bot" in html and "xpander" in html and ">77<" in html
    assert "badge-executing" in html and "Executing" in html  # colour and text
    assert "1.5k" in html and "1 m 15 s" in html
    assert 'title="1200 prompt + 300 completion"' in html
    assert "<time datetime=" in html and "UTC" in html  # relative time, exact on hover


@pytest.mark.parametrize("rows", [10, 200])
def test_query_count_is_bounded(signed_in, acme, agent, system_actor, rows):
    tasks = make_tasks(acme, system_actor, rows, agent=agent)
    for task in tasks[:5]:
        services.task_update(task=task, actor=system_actor, status="executing")
    services.hitl_request(task=tasks[0], actor=system_actor, question="ok?")
    signed_in.get(URL)  # warm the session
    with CaptureQueriesContext(connection) as ctx:
        response = signed_in.get(URL)
    assert response.status_code == 200
    # session, user, memberships, last event id, total, page of rows, organizations, counts, agents,
    # saved views
    assert len(ctx.captured_queries) <= 11, [q["sql"] for q in ctx.captured_queries]
    with CaptureQueriesContext(connection) as ctx_fragment:
        signed_in.get(URL + "?status=executing&hitl=yes", HTTP_HX_REQUEST="true")
    assert len(ctx_fragment.captured_queries) <= 7


@pytest.mark.parametrize("query", ["", "?status=pending", "?hitl=no", "?sort=-updated", "?q=task&sort=title"])
def test_query_counts_match_for_10_and_200(client, alice, acme, agent, system_actor, monkeypatch, query):
    """The same queries for a small and a large list, with the total exact or capped."""
    from tasks_app import selectors

    monkeypatch.setattr(selectors, "TOTAL_CAP", 100)
    client.force_login(alice)
    make_tasks(acme, system_actor, 10, agent=agent, prefix="a")
    client.get(URL + query)
    with CaptureQueriesContext(connection) as small:
        client.get(URL + query)
    make_tasks(acme, system_actor, 190, agent=agent, prefix="b")
    with CaptureQueriesContext(connection) as large:
        html = client.get(URL + query).content.decode()
    assert len(small.captured_queries) == len(large.captured_queries)
    assert ("200 tasks" if query in ("", "?status=pending", "?sort=-updated") else "100+ tasks") in html


def test_filters(signed_in, acme, agent, system_actor):
    a, _ = services.task_create(organization=acme, actor=system_actor, id="f-a", title="Alpha refund", agent=agent)
    b, _ = services.task_create(organization=acme, actor=system_actor, id="f-b", title="Beta", source="agentex")
    c, _ = services.task_create(organization=acme, actor=system_actor, id="f-c", title="Gamma", input_text="needle")
    services.task_update(task=a, actor=system_actor, status="executing")
    services.task_update(task=b, actor=system_actor, status="executing")
    services.hitl_request(task=b, actor=system_actor, question="ok?")
    services.task_update(task=c, actor=system_actor, status="failed")

    def ids(query):
        return sorted(row_ids(signed_in.get(URL + query, HTTP_HX_REQUEST="true").content.decode()))

    assert ids("?status=executing&status=failed") == ["f-a", "f-c"]
    assert ids("?status=paused") == ["f-b"]
    assert ids("?agent=support-bot") == ["f-a"]
    assert ids("?source=agentex") == ["f-b"]
    assert ids("?hitl=yes") == ["f-b"]
    assert ids("?hitl=no") == ["f-a", "f-c"]
    assert ids("?q=refund") == ["f-a"]
    assert ids("?q=needle") == ["f-c"]
    assert ids("?q=f-b") == ["f-b"]
    Task.objects.filter(organization=acme, public_id="f-a").update(updated_at=timezone.now() - timedelta(days=10))
    day = (timezone.now() - timedelta(days=10)).date().isoformat()
    assert ids(f"?updated_after={day}&updated_before={day}") == ["f-a"]
    assert "f-a" not in ids(f"?updated_after={timezone.now().date().isoformat()}")


def test_the_filter_form_reflects_the_url(signed_in, acme, system_actor):
    html = signed_in.get(URL + "?status=failed&q=hello&hitl=yes").content.decode()
    assert 'value="failed" checked' in html
    assert 'value="hello"' in html
    assert 'value="yes" selected' in html
    # The view's canonical query: the key its socket is judged by, and the "show" link.
    assert 'data-view="status=failed&amp;hitl=yes&amp;q=hello"' in html and 'data-filtered="1"' in html
    assert 'ws-connect="/ws/tasks/?after=' in html and "&amp;view=status%3Dfailed%26hitl%3Dyes%26q%3Dhello" in html
    assert 'href="?status=failed&amp;hitl=yes&amp;q=hello" hx-get="?status=failed&amp;hitl=yes&amp;q=hello"' in html
    assert 'data-plural="statuses">Failed</span>' in html  # the status filter names what it applies
    html = signed_in.get(URL + "?status=failed&status=error").content.decode()
    assert 'data-plural="statuses">2 statuses</span>' in html


def test_bad_filters_and_cursors_get_a_message_not_a_500(signed_in, acme, system_actor):
    make_tasks(acme, system_actor, 3)
    query = "?status=bogus&hitl=maybe&updated_after=yesterday&sort=nope&after=garbage"
    response = signed_in.get(URL + query)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Unknown status &#x27;bogus&#x27;" in html
    assert "The HITL filter is yes or no" in html
    assert "is not a date" in html
    assert "Unknown sort" in html
    assert "Invalid page cursor" in html
    assert len(row_ids(html)) == 3


def test_keyset_pages_older_and_newer(signed_in, acme, system_actor):
    tasks = make_tasks(acme, system_actor, 120)
    base = timezone.now()
    for i, task in enumerate(tasks):
        Task.objects.filter(pk=task.pk).update(created_at=base - timedelta(seconds=120 - i))
    first = signed_in.get(URL, HTTP_HX_REQUEST="true").content.decode()
    ids_first = row_ids(first)
    assert len(ids_first) == 50 and ids_first[0] == "t-0119"
    assert "Older" in first and "OFFSET" not in first
    import re

    older = re.search(r'href="(\?after=[^"]+)"', first).group(1).replace("&amp;", "&")
    second = signed_in.get(URL + older, HTTP_HX_REQUEST="true").content.decode()
    ids_second = row_ids(second)
    assert ids_second[0] == "t-0069" and not set(ids_first) & set(ids_second)
    newer = re.search(r'href="(\?before=[^"]+)"', second).group(1).replace("&amp;", "&")
    back = signed_in.get(URL + newer, HTTP_HX_REQUEST="true").content.decode()
    assert row_ids(back) == ids_first


def test_no_offset_and_no_full_count(signed_in, acme, system_actor):
    make_tasks(acme, system_actor, 60)
    with CaptureQueriesContext(connection) as ctx:
        signed_in.get(URL + "?after=", HTTP_HX_REQUEST="true")
    sql = " ".join(q["sql"].upper() for q in ctx.captured_queries)
    assert "OFFSET" not in sql


def test_sorting(signed_in, acme, system_actor):
    services.task_create(organization=acme, actor=system_actor, id="s-low", title="b", priority=5)
    services.task_create(organization=acme, actor=system_actor, id="s-high", title="a", priority=95)
    html = signed_in.get(URL + "?sort=-priority", HTTP_HX_REQUEST="true").content.decode()
    assert row_ids(html) == ["s-high", "s-low"]
    assert 'aria-sort="descending"' in html
    assert row_ids(signed_in.get(URL + "?sort=title", HTTP_HX_REQUEST="true").content.decode()) == ["s-high", "s-low"]
    # Sort links keep the filters and drop the page cursor.
    html = signed_in.get(URL + "?status=pending&sort=title", HTTP_HX_REQUEST="true").content.decode()
    assert 'href="?status=pending&amp;sort=-title"' in html


def test_status_counts(signed_in, acme, system_actor):
    tasks = make_tasks(acme, system_actor, 3)
    services.task_update(task=tasks[0], actor=system_actor, status="executing")
    html = signed_in.get(URL).content.decode()
    assert f'id="status-counts-{acme.pk}"' in html
    assert 'title="2 pending"' in html and 'title="1 executing"' in html


def test_list_row_offers_only_allowed_statuses(signed_in, acme, system_actor):
    task = make_tasks(acme, system_actor, 1)[0]
    services.task_update(task=task, actor=system_actor, status="completed")
    html = signed_in.get(URL).content.decode()
    # A finished task has no next status: no status form on its row.
    assert task_url(task, "task_set_status") not in html


def test_the_total_says_how_many_tasks_the_view_holds(signed_in, acme, system_actor, monkeypatch):
    from tasks_app import selectors

    tasks = make_tasks(acme, system_actor, 12)
    services.task_update(task=tasks[0], actor=system_actor, status="executing")
    html = signed_in.get(URL).content.decode()
    # Exact from the kept counts, and followed live (task_list.js sums the pushed counts).
    assert '<span id="list-total" class="list-total" data-live-total="">12 tasks</span>' in html
    html = signed_in.get(URL + "?status=executing", HTTP_HX_REQUEST="true").content.decode()
    assert 'data-live-total="executing">1 task</span>' in html
    assert ">12 tasks</span>" in signed_in.get(URL + "?q=task").content.decode()
    monkeypatch.setattr(selectors, "TOTAL_CAP", 10)
    html = signed_in.get(URL + "?q=task").content.decode()
    assert ">10+ tasks</span>" in html and "data-live-total" not in html


def test_totals_read_as_people_write_numbers():
    from tasks_app.selectors import TaskTotal
    from tasks_app.templatetags.taskdesk import task_total

    assert task_total(TaskTotal(1, exact=True)) == "1 task"
    assert task_total(TaskTotal(1234, exact=True)) == "1,234 tasks"
    assert task_total(TaskTotal(10_000, exact=False)) == "10,000+ tasks"


def test_rows_carry_the_cursor_that_continues_after_them(signed_in, acme, system_actor):
    """A row pushed past the page's size leaves, and "Older" starts after the last row kept."""
    import re

    from tasks_app import selectors

    tasks = make_tasks(acme, system_actor, 3)
    html = signed_in.get(URL).content.decode()
    cursors = re.findall(r'data-cursor="([^"]+)"', html)
    assert cursors == [selectors.task_cursor(t, "-created") for t in reversed(tasks)]
    after_first = selectors.paginate_tasks(selectors.tasks_for_user(signed_in_user(signed_in)), after=cursors[0])
    assert [t.pk for t in after_first.tasks] == [tasks[1].pk, tasks[0].pk]


def signed_in_user(client):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(pk=client.session["_auth_user_id"])


def test_a_row_changed_from_a_filtered_list_is_marked_when_it_leaves_the_view(signed_in, acme, system_actor):
    task = make_tasks(acme, system_actor, 1)[0]
    services.task_update(task=task, actor=system_actor, status="executing")
    fresh = Task.objects.get(pk=task.pk)
    post = {"version": fresh.version, "page": "list", "status": "failed", "status_reason": ""}
    response = signed_in.post(task_url(task, "task_set_status"), {**post, "view": "status=executing"})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'class="task-row is-stale"' in html and "no longer matches the filters" in html
    # The same change seen from a view it still belongs to is not marked.
    services.task_update(task=task, actor=system_actor, status="pending", retry=True)
    fresh = Task.objects.get(pk=task.pk)
    post["version"] = fresh.version
    post["status"] = "executing"
    html = signed_in.post(task_url(task, "task_set_status"), {**post, "view": "status=executing"}).content.decode()
    assert "is-stale" not in html and "no longer matches" not in html


def test_the_same_id_in_two_organizations_gives_two_rows(client, alice, acme, globex, system_actor):
    from tasks_app.models import Membership, Role

    Membership.objects.create(user=alice, organization=globex, role=Role.VIEWER)
    mine = make_tasks(acme, system_actor, 1)[0]
    theirs = make_tasks(globex, system_actor, 1)[0]
    client.force_login(alice)
    html = client.get(URL).content.decode()
    assert row_ids(html) == ["t-0000", "t-0000"]
    assert f'<tr id="task-{mine.pk}"' in html and f'<tr id="task-{theirs.pk}"' in html
    assert f'href="{task_url(mine)}"' in html and f'href="{task_url(theirs)}"' in html
    # alice edits acme's row only: she is a viewer of globex.
    assert task_url(mine, "task_set_status") in html and task_url(theirs, "task_set_status") not in html
