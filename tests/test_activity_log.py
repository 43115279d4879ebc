"""The activity log page: newest first, keyset pages, filters and search in the URL, constant queries,
escaping, live."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tasks_app import selectors, services
from tasks_app.live.fragments import render_event_html
from tasks_app.models import ActivityEntry, TaskEvent
from tasks_app.templatetags.taskdesk import task_url

HX = {"HTTP_HX_REQUEST": "true"}
ROW = 'data-timeline-item data-source="activity"'  # one per rendered item
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"


@pytest.fixture
def task(acme, system_actor):
    task, _ = services.task_create(organization=acme, actor=system_actor, id="log-1", title="Logged")
    return task


def _fill(task, n, actor, *, kind_cycle=("message", "tool_call", "tool_result", "reasoning")):
    entries = []
    for i in range(n):
        kind = kind_cycle[i % len(kind_cycle)]
        entry = {"kind": kind, "content": f"step {i}", "prompt_tokens": i, "completion_tokens": 1}
        if kind == "message":
            entry["role"] = "assistant" if i % 2 else "user"
        if kind == "tool_call":
            entry.update(tool_name="lookup_order", tool_call_id=f"call-{i}", tool_arguments={"order": i})
        if kind == "tool_result":
            entry.update(tool_name="lookup_order", tool_call_id=f"call-{i - 1}", tool_output={"status": "shipped"})
        entries.append(entry)
    for start in range(0, n, 500):
        services.append_activity(task=task, actor=actor, entries=entries[start : start + 500])


def _bulk(task, n):
    """Many rows at once (for size-independence checks), bypassing the 500-per-call API limit."""
    ActivityEntry.objects.bulk_create(
        ActivityEntry(task=task, organization_id=task.organization_id, kind="message", role="user", content=f"m {i}")
        for i in range(n)
    )


def _url(task, **params):
    from urllib.parse import urlencode

    base = task_url(task, "task_activity")
    return base + ("?" + urlencode(params) if params else "")


def test_full_page_and_htmx_list(client, alice, task, system_actor):
    _fill(task, 3, system_actor)
    client.force_login(alice)
    page = client.get(_url(task))
    html = page.content.decode()
    assert page.status_code == 200 and "<html" in html
    # Live like the task page: the task's socket, from the event the page was rendered at.
    newest = TaskEvent.objects.filter(task=task).order_by("-id").first()
    assert f'ws-connect="/ws/tasks/acme/log-1/?after={newest.pk}"' in html
    listing = client.get(_url(task), **HX)
    fragment = listing.content.decode()
    assert listing.status_code == 200 and "<html" not in fragment
    assert fragment.lstrip().startswith('<ol id="timeline-entries"') and "data-activity-only" in fragment
    assert fragment.count(ROW) == 2  # a message, and a tool call with its result


def test_entries_show_role_tool_json_time_and_tokens(client, alice, task, system_actor):
    _fill(task, 4, system_actor)
    client.force_login(alice)
    html = client.get(_url(task), **HX).content.decode()
    first = ActivityEntry.objects.filter(task=task).first()
    assert f'id="tl-a-{first.pk}"' in html
    assert '<span class="tl-role">user</span>' in html
    assert '<code class="tl-tool">lookup_order</code>' in html and "call-1" in html
    assert '<span class="tl-label">Arguments</span> <code>{&quot;order&quot;: 1}</code>' in html
    # The call's result is shown with it (paired by tool call id), not again on its own.
    assert '<span class="tl-label">Result</span> <code>{&quot;status&quot;: &quot;shipped&quot;}</code>' in html
    assert html.count(ROW) == 3 and 'data-kind="tool_result"' not in html
    assert "4 tok" in html and "<time datetime=" in html  # step 3: 3 prompt + 1 completion


def test_pages_walk_the_whole_log_newest_first_by_keyset(client, alice, task, system_actor):
    _fill(task, 120, system_actor, kind_cycle=("message", "reasoning"))
    client.force_login(alice)
    html = client.get(_url(task), **HX).content.decode()
    assert html.count(ROW) == 50 and 'id="activity-more"' in html
    assert 'hx-trigger="intersect once"' in html
    ids = [int(i) for i in re.findall(r'id="tl-a-(\d+)"', html)]
    before = selectors.activity_page(task).next_before_id
    while before:
        chunk = client.get(_url(task, before=before), **HX).content.decode()
        assert "<section" not in chunk and "<ol" not in chunk  # just rows + the next sentinel
        ids += [int(i) for i in re.findall(r'id="tl-a-(\d+)"', chunk)]
        nxt = selectors.activity_page(task, before_id=before).next_before_id
        assert (f"before={nxt}" in chunk) if nxt else ("The first entry." in chunk)
        before = nxt
    assert ids == list(ActivityEntry.objects.filter(task=task).order_by("-id").values_list("pk", flat=True))


def test_kind_filter(client, alice, task, system_actor):
    _fill(task, 12, system_actor)
    client.force_login(alice)
    html = client.get(_url(task, kind="tool_call"), **HX).content.decode()
    assert html.lstrip().startswith('<ol id="timeline-entries"') and 'data-filter-kind="tool_call"' in html
    assert html.count(ROW) == 3 and 'data-kind="message"' not in html
    results = client.get(_url(task, kind="tool_result"), **HX).content.decode()
    assert results.count(ROW) == 3  # filtered to results, each is shown on its own
    assert client.get(_url(task, kind="bogus"), **HX).status_code == 400


def test_the_filters_are_the_pages_url(client, alice, task, system_actor):
    _fill(task, 8, system_actor)
    client.force_login(alice)
    html = client.get(_url(task, kind="message", q="Step 4")).content.decode()
    assert '<option value="message" selected>' in html and 'value="Step 4"' in html
    assert 'data-filter-q="step 4"' in html and html.count(ROW) == 1
    assert 'hx-replace-url="true"' in html  # changing a filter updates the address


def test_search_finds_text_in_content_tool_names_and_json(client, alice, task, system_actor):
    _fill(task, 8, system_actor)
    services.append_activity(
        task=task,
        actor=system_actor,
        entries=[{"kind": "tool_call", "tool_name": "x", "tool_arguments": {"sku": "ZEBRA-9"}}],
    )
    client.force_login(alice)

    def found(**params):
        return client.get(_url(task, **params), **HX).content.decode().count(ROW)

    assert found(q="step 5") == 1
    assert found(q="LOOKUP_ORDER") == 4
    assert found(q="zebra-9") == 1
    assert found(q="shipped", kind="tool_result") == 2
    assert found(q="nothing like this") == 0
    assert "No entries match." in client.get(_url(task, q="nothing"), **HX).content.decode()


def test_search_pages_keep_the_filters_in_the_sentinel(client, alice, task):
    _bulk(task, 130)
    client.force_login(alice)
    html = client.get(_url(task, q="m 1", kind="message"), **HX).content.decode()
    assert 'id="activity-more"' not in html  # 41 matches fit one page
    html = client.get(_url(task, q="m ", kind="message"), **HX).content.decode()
    assert "kind=message" in html and "q=m" in html and 'id="activity-more"' in html


def test_query_count_is_constant_in_log_length(client, alice, acme, system_actor):
    client.force_login(alice)
    small, _ = services.task_create(organization=acme, actor=system_actor, id="small")
    large, _ = services.task_create(organization=acme, actor=system_actor, id="large")
    _bulk(small, 10)
    _bulk(large, 1000)

    def queries(task, **params):
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(_url(task, **params), **HX)
            assert response.status_code == 200
        return len(ctx)

    assert queries(small) == queries(large)
    assert queries(small, q="m 1") == queries(large, q="m 1")
    before = ActivityEntry.objects.filter(task=large).order_by("id")[500].pk
    assert queries(large, before=before) == queries(small, before=10**9)


def test_xss_in_content_and_tool_arguments_is_text(client, alice, task, system_actor):
    services.append_activity(
        task=task,
        actor=system_actor,
        entries=[
            {"kind": "message", "role": XSS[:20], "content": XSS},
            {"kind": "tool_call", "tool_name": XSS, "tool_arguments": {XSS: XSS}, "tool_output": [XSS]},
        ],
    )
    client.force_login(alice)
    for html in (
        client.get(_url(task), **HX).content.decode(),
        render_event_html(TaskEvent.objects.filter(task=task).last(), page="detail", can_edit=True),
    ):
        assert "<script>alert(1)" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_viewer_reads_logs(client, bob, task, system_actor):
    _fill(task, 2, system_actor)
    client.force_login(bob)
    assert client.get(_url(task), **HX).content.decode().count(ROW) == 2


def test_outsider_gets_404(client, charlie, task, system_actor):
    _fill(task, 2, system_actor)
    client.force_login(charlie)
    assert client.get(_url(task)).status_code == 404
    assert client.get(_url(task, before=1), **HX).status_code == 404


def test_bad_cursor_is_400_and_login_is_required(client, alice, task):
    assert client.get(_url(task)).status_code == 302
    client.force_login(alice)
    assert client.get(_url(task, before="x"), **HX).status_code == 400


def test_the_same_id_in_another_organization_has_its_own_log(client, charlie, task, globex, system_actor):
    _fill(task, 2, system_actor)
    twin, _ = services.task_create(organization=globex, actor=system_actor, id=task.public_id)
    services.append_activity(task=twin, actor=system_actor, entries=[{"content": "globex only"}])
    client.force_login(charlie)
    html = client.get(_url(twin), **HX).content.decode()
    assert html.count(ROW) == 1 and "globex only" in html and "step 0" not in html
