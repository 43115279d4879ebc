"""The activity log panel: pages, filters, search, constant queries, escaping, pushed entries."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tasks_app import selectors, services
from tasks_app.live import fragments_hitl
from tasks_app.models import ActivityEntry, EventType, TaskEvent
from tasks_app.templatetags.taskdesk import task_url

HX = {"HTTP_HX_REQUEST": "true"}
ROW = "data-activity-entry data-kind"  # one per rendered entry
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


def test_full_page_and_htmx_panel(client, alice, task, system_actor):
    _fill(task, 3, system_actor)
    client.force_login(alice)
    page = client.get(_url(task))
    assert page.status_code == 200 and "<html" in page.content.decode()
    panel = client.get(_url(task), **HX)
    html = panel.content.decode()
    assert panel.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<section id="activity-panel"') and 'id="activity-entries"' in html
    assert html.count(ROW) == 3


def test_entries_show_role_tool_json_time_and_tokens(client, alice, task, system_actor):
    _fill(task, 4, system_actor)
    client.force_login(alice)
    html = client.get(_url(task), **HX).content.decode()
    first = ActivityEntry.objects.filter(task=task).first()
    assert f'id="activity-{first.pk}"' in html
    assert 'activity-role--user">user<' in html
    assert '<code class="activity-tool">lookup_order</code>' in html and "call-1" in html
    assert (
        '<details class="activity-json" open><summary>Arguments</summary><pre>{\n  &quot;order&quot;: 1\n}</pre>'
        in html
    )
    assert "&quot;status&quot;: &quot;shipped&quot;" in html
    assert "4 tok" in html and "<time datetime=" in html  # step 3: 3 prompt + 1 completion


def test_pages_walk_the_whole_log_in_order_by_keyset(client, alice, task, system_actor):
    _fill(task, 120, system_actor)
    client.force_login(alice)
    html = client.get(_url(task), **HX).content.decode()
    assert html.count(ROW) == 50 and 'id="activity-more"' in html
    assert 'hx-trigger="intersect once"' in html
    seen = 50
    after = selectors.activity_page(task).next_after_id
    while after:
        chunk = client.get(_url(task, after=after), **HX).content.decode()
        assert "<section" not in chunk and "<ol" not in chunk  # just rows + the next sentinel
        seen += chunk.count(ROW)
        nxt = selectors.activity_page(task, after_id=after).next_after_id
        assert (f"after={nxt}" in chunk) if nxt else ('id="activity-more"' not in chunk)
        after = nxt
    assert seen == 120
    ids = []
    after = None
    while True:
        page = selectors.activity_page(task, after_id=after, limit=7)
        ids += [e.pk for e in page.entries]
        if page.next_after_id is None:
            break
        after = page.next_after_id
    assert ids == list(ActivityEntry.objects.filter(task=task).order_by("id").values_list("pk", flat=True))


def test_kind_filter(client, alice, task, system_actor):
    _fill(task, 12, system_actor)
    client.force_login(alice)
    html = client.get(_url(task, kind="tool_call"), HTTP_HX_TARGET="activity-entries", **HX).content.decode()
    assert html.lstrip().startswith('<ol id="activity-entries"') and "data-filtered" in html
    assert html.count(ROW) == 3 and 'data-kind="message"' not in html
    assert client.get(_url(task, kind="bogus"), **HX).status_code == 400


def test_search_finds_text_in_content_tool_names_and_json(client, alice, task, system_actor):
    _fill(task, 8, system_actor)
    services.append_activity(
        task=task,
        actor=system_actor,
        entries=[{"kind": "tool_call", "tool_name": "x", "tool_arguments": {"sku": "ZEBRA-9"}}],
    )
    client.force_login(alice)

    def found(**params):
        return client.get(_url(task, **params), HTTP_HX_TARGET="activity-entries", **HX).content.decode().count(ROW)

    assert found(q="step 5") == 1
    assert found(q="LOOKUP_ORDER") == 4
    assert found(q="zebra-9") == 1
    assert found(q="shipped", kind="tool_result") == 2
    assert found(q="nothing like this") == 0
    assert (
        "No entries match."
        in client.get(_url(task, q="nothing"), HTTP_HX_TARGET="activity-entries", **HX).content.decode()
    )


def test_search_pages_keep_the_filters_in_the_sentinel(client, alice, task):
    _bulk(task, 130)
    client.force_login(alice)
    html = client.get(_url(task, q="m 1", kind="message"), HTTP_HX_TARGET="activity-entries", **HX).content.decode()
    assert 'id="activity-more"' not in html  # 41 matches fit one page
    html = client.get(_url(task, q="m ", kind="message"), HTTP_HX_TARGET="activity-entries", **HX).content.decode()
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
    after = ActivityEntry.objects.filter(task=large).order_by("id")[500].pk
    assert queries(large, after=after) == queries(small, after=1)


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
        fragments_hitl.render_activity_event_html(TaskEvent.objects.filter(task=task).last()),
    ):
        assert "<script>alert(1)" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_pushed_activity_appends_new_entries_at_the_end(task, system_actor):
    created = services.append_activity(
        task=task, actor=system_actor, entries=[{"content": "hello"}, {"kind": "reasoning", "content": "think"}]
    )
    event = TaskEvent.objects.get(task=task, type=EventType.ACTIVITY)
    html = fragments_hitl.render_activity_event_html(event)
    assert html.lstrip().startswith(f'<div id="activity-append-{event.pk}" hx-swap-oob="beforeend:#activity-entries">')
    assert html.index(f'id="activity-{created[0].pk}"') < html.index(f'id="activity-{created[1].pk}"')
    other = TaskEvent.objects.get(task=task, type=EventType.CREATED)
    assert fragments_hitl.render_activity_event_html(other) == ""


def test_viewer_reads_logs(client, bob, task, system_actor):
    _fill(task, 2, system_actor)
    client.force_login(bob)
    assert client.get(_url(task), **HX).content.decode().count(ROW) == 2


def test_outsider_gets_404(client, charlie, task, system_actor):
    _fill(task, 2, system_actor)
    client.force_login(charlie)
    assert client.get(_url(task)).status_code == 404
    assert client.get(_url(task, after=1), **HX).status_code == 404


def test_bad_cursor_is_400_and_login_is_required(client, alice, task):
    assert client.get(_url(task)).status_code == 302
    client.force_login(alice)
    assert client.get(_url(task, after="x"), **HX).status_code == 400


def test_the_same_id_in_another_organization_has_its_own_log(client, charlie, task, globex, system_actor):
    _fill(task, 2, system_actor)
    twin, _ = services.task_create(organization=globex, actor=system_actor, id=task.public_id)
    services.append_activity(task=twin, actor=system_actor, entries=[{"content": "globex only"}])
    client.force_login(charlie)
    html = client.get(_url(twin), **HX).content.decode()
    assert html.count(ROW) == 1 and "globex only" in html and "step 0" not in html
