"""The operations view (/ops/): full page and the polled fragment, numbers from the rollups,
scoping to the viewer's organizations, escaping, and the same queries at any size."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tasks_app import selectors, services
from tasks_app.models import Face, TaskEvent, TaskRollup, Worker
from tasks_app.services import rollups

from .dashboard_helpers import XSS_PAYLOADS, assert_escaped

URL = "/ops/"
POLL = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "ops-body"}


def figure(html: str, name: str) -> str:
    match = re.search(rf'data-figure="{name}"[^>]*>([^<]*)<', html)
    assert match, name
    return match.group(1).strip()


def work(org, actor, n: int, *, agent: str = "support-bot", prefix: str = "w") -> None:
    """n tasks of an agent: every third completed, then failed, then left pending; tokens on each."""
    for i in range(n):
        task, _ = services.task_create(organization=org, actor=actor, id=f"{prefix}-{i}", agent=agent)
        services.report_metrics(task=task, actor=actor, prompt_tokens=100, completion_tokens=10)
        if i % 3 == 0:
            services.task_update(task=task, actor=actor, status="completed")
        elif i % 3 == 1:
            services.task_update(task=task, actor=actor, status="failed")


@pytest.fixture
def signed_in(client, alice):
    client.force_login(alice)
    return client


def test_it_renders_the_page_with_its_numbers_and_charts(signed_in, acme, system_actor):
    work(acme, system_actor, 6)
    response = signed_in.get(URL)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" in html and 'id="ops-page"' in html and 'id="ops-body"' in html
    assert 'aria-current="page">Operations<' in html
    assert figure(html, "created") == "6"
    assert figure(html, "finished") == "4"
    assert figure(html, "failure-rate") == "50 %"
    assert figure(html, "tokens") == "660"
    assert html.count('<svg class="ops-chart"') == 3
    assert 'class="ops-fill-completed"' in html and 'class="ops-fill-failed"' in html
    assert "support-bot" in html
    # The queue now: two pending tasks of support-bot on the general queue.
    assert re.search(
        r"support-bot</th><td><span class=\"muted\">general</span></td>.*?<td class=\"num\">2</td>", html, re.S
    )
    assert "HX-Request" in response["Vary"]


def test_the_poll_gets_the_body_and_the_controls_get_the_page(signed_in, acme, system_actor):
    work(acme, system_actor, 3)
    body = signed_in.get(URL + "?window=24h", **POLL).content.decode()
    assert body.strip().startswith('<div id="ops-body"') and "<html" not in body
    # Refreshed when the organization's bell rings (static/js/ops.js), and each minute so the window slides.
    assert 'hx-get="/ops/?window=24h"' in body and 'hx-trigger="ops-changed, every 60s' in body
    assert "ws-connect" not in body  # a refresh leaves the socket alone
    page = signed_in.get(URL + "?window=7d", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="ops-page").content.decode()
    assert page.strip().startswith('<div id="ops-page"') and "<html" not in page
    # The page's socket: its organization's bell, from the newest event on.
    newest = TaskEvent.objects.filter(organization=acme).order_by("-id").values_list("pk", flat=True).first()
    assert f'ws-connect="/ws/ops/acme/?after={newest}"' in page
    assert re.search(r'href="\?window=7d"[^>]*aria-current="page"', page)


def test_a_window_counts_what_happened_in_it(signed_in, acme, system_actor):
    work(acme, system_actor, 3)
    # An hour's row from two days ago: in the 7-day window, not in the last hour or 24 hours.
    old = selectors.timezone.now().replace(minute=0, second=0, microsecond=0) - selectors.timedelta(days=2)
    TaskRollup.objects.create(organization=acme, agent_key=0, span=rollups.HOUR, start=old, created=40)
    assert figure(signed_in.get(URL).content.decode(), "created") == "3"
    assert figure(signed_in.get(URL + "?window=24h").content.decode(), "created") == "3"
    assert figure(signed_in.get(URL + "?window=7d").content.decode(), "created") == "43"


def test_the_agent_filter_narrows_every_figure(signed_in, acme, system_actor):
    work(acme, system_actor, 3, agent="support-bot")
    work(acme, system_actor, 6, agent="billing-agent", prefix="b")
    html = signed_in.get(URL + "?agent=billing-agent").content.decode()
    assert figure(html, "created") == "6"
    assert '<option value="billing-agent" selected>' in html
    assert 'data-agent="support-bot"' not in html  # its liveness row is filtered out too
    unknown = signed_in.get(URL + "?agent=nobody&window=fortnight").content.decode()
    assert figure(unknown, "created") == "9"
    assert "has no agent &#x27;nobody&#x27;" in unknown and "Unknown window &#x27;fortnight&#x27;" in unknown


def test_liveness_by_face_and_workers(signed_in, acme):
    rollups.forget_seen()
    token, _ = services.api_token_create(organization=acme, name="bot")
    services.task_create(
        organization=acme, actor=services.Actor.for_token(token, face=Face.XPANDER), id="x", agent="support-bot"
    )
    Worker.objects.create(organization=acme, name="worker-7")
    html = signed_in.get(URL).content.decode()
    row = re.search(r'<tr data-agent="support-bot">(.*?)</tr>', html, re.S).group(1)
    assert "ops-state-live" in row
    assert row.count("ops-seen-never") == 3 and row.count("ops-seen-live") == 1  # xpander only
    assert "worker-7" in html
    rollups.forget_seen()


def test_charlie_of_globex_sees_only_globex(client, charlie, acme, globex, system_actor):
    work(acme, system_actor, 6, agent="acme-secret-agent")
    work(globex, system_actor, 2, agent="ops-agent", prefix="g")
    client.force_login(charlie)
    html = client.get(URL).content.decode()
    assert figure(html, "created") == "2"
    assert "ops-agent" in html and "acme-secret-agent" not in html and "Acme" not in html
    assert client.get(URL + "?org=acme").status_code == 404
    assert client.get(URL + "?org=acme", **POLL).status_code == 404
    # Another organization's agent reads like any unknown name: no filter, globex's numbers.
    probe = client.get(URL + "?agent=acme-secret-agent").content.decode()
    assert figure(probe, "created") == "2" and "Globex has no agent &#x27;acme-secret-agent&#x27;" in probe
    assert 'href="?window=1h"' in probe  # the links drop what did not apply


def test_a_viewer_reads_it_and_someone_without_an_organization_is_told(
    client, bob, django_user_model, acme, system_actor
):
    work(acme, system_actor, 1)
    client.force_login(bob)
    assert client.get(URL).status_code == 200
    nobody = django_user_model.objects.create_user(username="nobody")
    client.force_login(nobody)
    response = client.get(URL)
    assert response.status_code == 200 and "ops-body" not in response.content.decode()


def test_it_needs_a_login(client):
    response = client.get(URL)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_agent_names_are_escaped(signed_in, acme, system_actor):
    for n, payload in enumerate(XSS_PAYLOADS):
        work(acme, system_actor, 1, agent=payload, prefix=f"x{n}")
    html = signed_in.get(URL).content.decode()
    assert_escaped(html)
    assert_escaped(signed_in.get(URL + "?agent=" + XSS_PAYLOADS[0], **POLL).content.decode())


def test_the_same_queries_at_any_size(signed_in, acme, system_actor):
    work(acme, system_actor, 3)
    with CaptureQueriesContext(connection) as small:
        signed_in.get(URL)
    work(acme, system_actor, 60, agent="research-agent", prefix="more")
    for n in range(5):
        Worker.objects.create(organization=acme, name=f"worker-{n}")
    with CaptureQueriesContext(connection) as large:
        signed_in.get(URL + "?window=7d")
    assert len(large) == len(small), [q["sql"] for q in large.captured_queries]
    assert not [
        q for q in large.captured_queries if 'tasks_app_task"' in q["sql"] and 'FROM "tasks_app_task"' in q["sql"]
    ]
    with CaptureQueriesContext(connection) as poll:
        signed_in.get(URL, **POLL)
    assert len(poll) <= len(small)


# --- The durations histogram's percentile labels stay inside the chart, apart ---------------


def _label_extent(marker) -> tuple[float, float]:
    from tasks_app.charts import LABEL_ADVANCE

    x, extent = float(marker.x) + float(marker.dx), len(marker.label) * LABEL_ADVANCE
    return (x - extent, x) if marker.anchor == "end" else (x, x + extent)


@pytest.mark.parametrize(
    "counts",
    [
        [0, 0, 5, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],  # p95 in the last bucket: the right edge
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],  # both near the right edge
        [9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # both at the left edge
        [0, 0, 0, 0, 0, 0, 4, 6, 0, 0, 0, 0, 0, 0, 0, 0],  # in the middle, close together
    ],
)
def test_percentile_labels_stay_inside_the_chart_and_apart(counts):
    from tasks_app.charts import LEFT, NARROW, histogram_chart, short_duration

    bounds = [5.0 * 1.41**i for i in range(len(counts) - 1)]
    values = [bounds[min(i, len(bounds) - 1)] for i, n in enumerate(counts) for _ in range(n)]
    p50, p95 = values[len(values) // 2], values[min(len(values) - 1, int(len(values) * 0.95))]
    chart = histogram_chart(counts, bounds, bound_label=short_duration, markers={"p50": p50, "p95": p95})
    extents = [_label_extent(m) for m in chart.markers]
    assert len(extents) == 2
    for start, end in extents:
        # Inside the chart, and never over the y axis's labels (left of the plot).
        assert start >= LEFT and end <= NARROW, (extents, [(m.x, m.anchor) for m in chart.markers])
    (a0, a1), (b0, b1) = extents
    same_row = chart.markers[0].label_y == chart.markers[1].label_y
    assert not (same_row and a0 < b1 and b0 < a1), "two labels on one row overlap"
