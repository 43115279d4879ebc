"""The operations view in a real Chromium (issue 14): the tiles and SVG charts read the numbers of
the tasks behind them (throughput, failure rate, p50/p95 durations, tokens per agent, liveness by
face, queue depth); the window links and the agent filter change the URL and the figures without
reloading the page; new writes reach the open page through its socket (the organization's bell,
static/js/ops.js) without a reload. No console errors."""

import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tasks_app import services
from tasks_app.charts import short_duration
from tasks_app.models import ROLLUP_BUCKETS, Face, Task, TaskEvent
from tasks_app.services import rollups
from tasks_app.templatetags.taskdesk import tokens as token_count
from tests.browser.conftest import TIMEOUT_MS, wait_live
from tests.browser.test_desk_browser import screenshot

pytestmark = pytest.mark.django_db(transaction=True)


class History:
    """What the fixture wrote, to check the page against: per window, the tasks it counts."""

    def __init__(self):
        self.tasks: dict[str, list[Task]] = {"1h": [], "24h": [], "7d": []}
        self.durations: list[float] = []  # finished in the last hour


def percentile(durations: list[float], q: float) -> float:
    """The view's percentile of `durations`: counted per histogram bucket, interpolated by rank."""
    counts = [0] * len(ROLLUP_BUCKETS)
    for duration in durations:
        counts[ROLLUP_BUCKETS.index(rollups.bucket_of(duration))] += 1
    return rollups.percentile(counts, q)


@pytest.fixture
def history(acme, alice):
    """An hour of four agents' work through their faces, plus older tasks 5 hours and 3 days ago.

    Each task is created and finished through the services, by a token of its face; then laid out
    in time (created, ran so long, finished so long ago) and the rollups recounted from the tasks,
    as `seed_demo` lays out its history (`rollups.rebuild`).
    """
    now = timezone.now()
    made = History()
    actors = {
        face: services.Actor.for_token(services.api_token_create(organization=acme, name=f"{face}-agent")[0], face=face)
        for face in (Face.XPANDER, Face.API, Face.AGENTEX, Face.JSONRPC)
    }
    layout: list[tuple[Task, float, float | None]] = []  # (task, minutes ago it last moved, seconds it ran)

    def run(window, face, agent, n, *, ago, ran=None, status="completed", tokens=(0, 0), **fields):
        task, _ = services.task_create(
            organization=acme,
            actor=actors[face],
            id=f"{agent}-{window}-{n}",
            title=f"{agent} task {n}",
            agent=agent,
            status="executing" if ran is not None or status == "executing" else "pending",
            prompt_tokens=tokens[0],
            completion_tokens=tokens[1],
            **fields,
        )
        if ran is not None and status in ("failed", "timed_out"):
            services.task_update(
                task=task, actor=actors[face], status=status, status_reason="Upstream API returned 503"
            )
        elif ran is not None and status == "canceled":
            services.task_stop(task=task, actor=actors[face], status="canceled", reason="Customer withdrew it")
        elif ran is not None:
            services.task_update(task=task, actor=actors[face], status=status, result="Done.")
        layout.append((task, ago, ran))
        made.tasks[window].append(task)
        if window == "1h" and ran is not None:
            made.durations.append(ran)

    for i in range(30):  # support-bot on xpander: 4 failed, 1 canceled, 25 completed
        status = "failed" if i % 7 == 3 else "canceled" if i == 12 else "completed"
        run(
            "1h",
            Face.XPANDER,
            "support-bot",
            i,
            ago=2 + i * 1.8,
            ran=20 + (i * 37) % 200,
            status=status,
            tokens=(900 + 40 * i, 150 + 7 * i),
        )
    # Waiting now, each on its face's queue (as the faces create them): two of support-bot on
    # xpander's, three of triage-worker on JSON-RPC's, two of billing-agent moved to "refunds".
    for i in range(2):
        run("1h", Face.XPANDER, "support-bot", 30 + i, ago=1 + i, queue="xpander")
    for i in range(3):
        run("1h", Face.JSONRPC, "triage-worker", i, ago=5 + 5 * i, queue="jsonrpc")
    for i in range(2):
        run("1h", Face.API, "billing-agent", 14 + i, ago=4 + 6 * i, queue="refunds")
    for i in range(14):  # billing-agent on the native API: 4 failed
        run(
            "1h",
            Face.API,
            "billing-agent",
            i,
            ago=3 + i * 3.5,
            ran=90 + (i * 53) % 420,
            status="failed" if i % 4 == 1 else "completed",
            tokens=(2400 + 90 * i, 300 + 11 * i),
        )
    for i in range(4):  # research-agent on Agentex: long runs, one timed out; two still running
        run(
            "1h",
            Face.AGENTEX,
            "research-agent",
            i,
            ago=9 + i * 4,
            ran=600 + i * 420,
            status="timed_out" if i == 2 else "completed",
            tokens=(15_000 + 2000 * i, 1800 + 100 * i),
        )
    for i in range(2):
        run("1h", Face.AGENTEX, "research-agent", 4 + i, ago=20 + 10 * i, status="executing", tokens=(4000, 500))
    for i in range(6):  # 5 hours ago: in the 24 h and 7 d windows only
        run(
            "24h",
            Face.XPANDER,
            "support-bot",
            i,
            ago=300 + 4 * i,
            ran=45,
            status="failed" if i == 0 else "completed",
            tokens=(1000, 200),
        )
    for i in range(8):  # 3 days ago: in the 7 d window only
        run(
            "7d",
            Face.API,
            "billing-agent",
            i,
            ago=3 * 1440 + 7 * i,
            ran=120,
            status="failed" if i < 2 else "completed",
            tokens=(2000, 250),
        )

    # Test set-up only: when each task was created, ran and finished (no service moves time).
    for task, ago, ran in layout:
        moved = now - timedelta(minutes=ago)
        if ran is None:
            Task.objects.filter(pk=task.pk).update(created_at=moved, updated_at=moved)
        else:
            started = moved - timedelta(seconds=ran)
            Task.objects.filter(pk=task.pk).update(
                created_at=started, started_at=started, updated_at=moved, finished_at=moved, duration=ran
            )
    # research-agent last wrote 9 minutes ago: idle, the others live.
    TaskEvent.objects.filter(task__agent__name="research-agent").update(created_at=now - timedelta(minutes=9))
    rollups.rebuild(acme.pk)
    services.worker_register(organization=acme, name="triage-worker-1", roles=["triage"])
    for window in ("24h", "7d"):
        made.tasks[window] = made.tasks[window] + made.tasks["1h" if window == "24h" else "24h"]
    return made


def panel(page, name: str):
    """A panel of the page by its heading's id (ops-<name>-title)."""
    return page.locator(f'section[aria-labelledby="ops-{name}-title"]')


def figure(page, name: str):
    return page.locator(f'[data-figure="{name}"]')


def expected_figures(tasks: list[Task]) -> dict[str, str]:
    """The tiles' texts for these tasks, counted from the tasks themselves."""
    rows = Task.objects.filter(pk__in=[t.pk for t in tasks])
    finished = [t for t in rows if t.finished_at]
    failed = [t for t in finished if t.status in ("failed", "timed_out")]
    tokens = sum(t.prompt_tokens + t.completion_tokens for t in rows)
    return {
        "created": str(len(tasks)),
        "finished": str(len(finished)),
        "failure-rate": f"{round(100 * len(failed) / len(finished))} %",
        "tokens": token_count(tokens),
    }


def assert_figures(page, expected: dict[str, str]) -> None:
    for name, text in expected.items():
        expect(figure(page, name)).to_have_text(text)


def bar_sums(page) -> dict[str, int]:
    """What the throughput bars' tooltips add up to (what a pointer resting on each bar reads)."""
    sums = {"created": 0, "completed": 0, "failed": 0, "stopped": 0}
    titles = panel(page, "throughput").locator("svg .ops-bar > title").all_text_contents()
    for title in titles:
        for count, kind in re.findall(r"(\d+) (created|completed|failed|stopped)", title):
            sums[kind] += int(count)
    return sums


def open_ops(new_session, console_errors, path="/ops/"):
    page = console_errors(new_session("alice"))
    page.goto(path)
    expect(page.locator("#ops-body")).to_be_visible()
    return page


def test_the_figures_and_charts_read_the_tasks_and_the_window_and_agent_change_them(
    new_session, console_errors, history
):
    page = open_ops(new_session, console_errors)

    # The last hour: 57 created, 48 finished (9 failed or timed out, 1 canceled), tokens.
    assert_figures(page, expected_figures(history.tasks["1h"]))
    expect(figure(page, "failure-rate")).to_have_text("19 %")
    expect(page.locator(".ops-tile").nth(2)).to_contain_text("9 failed of 48")
    p50, p95 = percentile(history.durations, 0.5), percentile(history.durations, 0.95)
    expect(figure(page, "p50")).to_have_text(short_duration(p50))
    expect(figure(page, "p95")).to_have_text(short_duration(p95))
    ran = sorted(history.durations)
    assert ran[len(ran) // 2] / 1.5 <= p50 <= ran[len(ran) // 2] * 1.5  # within its bucket of the true median
    expect(page.locator(".ops-window[aria-current=page]")).to_have_text("1 h")
    expect(page.locator(".ops-scope")).to_contain_text("Acme · the last 1 h, per minute (UTC)")

    # Three SVG charts: 60 minute bars whose tooltips add up to the tiles, a failure-rate line,
    # the durations' histogram marked at p50 and p95.
    charts = page.locator("svg.ops-chart")
    expect(charts).to_have_count(3)
    expect(panel(page, "throughput").locator("svg .ops-bar")).to_have_count(60)
    assert bar_sums(page) == {"created": 57, "completed": 38, "failed": 9, "stopped": 1}
    for kind in ("completed", "failed", "stopped"):
        assert panel(page, "throughput").locator(f"svg rect.ops-fill-{kind}").count() > 0, kind
    assert panel(page, "throughput").locator("svg .ops-axis").all_text_contents()[:1] == ["0"]
    assert panel(page, "failures").locator("svg circle.ops-dot-failure-rate").count() > 0
    assert panel(page, "failures").locator("svg path.ops-line-failure-rate").get_attribute("d").startswith("M")
    expect(panel(page, "durations").locator("svg .ops-marker-label")).to_have_text(
        [f"p50 {short_duration(p50)}", f"p95 {short_duration(p95)}"]
    )
    assert panel(page, "durations").locator("svg rect.ops-fill-duration").count() >= 5
    for svg in charts.all():
        box = svg.bounding_box()
        assert box["width"] > 300 and box["height"] > 100, box

    # Tokens per agent, most first; liveness by face; the queues now.
    tokens = panel(page, "tokens").locator("tbody tr")
    per_agent = {}
    for task in Task.objects.filter(pk__in=[t.pk for t in history.tasks["1h"]]).select_related("agent"):
        per_agent[task.agent.name] = per_agent.get(task.agent.name, 0) + task.prompt_tokens + task.completion_tokens
    most_first = sorted(per_agent.items(), key=lambda item: -item[1])
    assert [a for a, n in most_first] == ["research-agent", "support-bot", "billing-agent", "triage-worker"]
    expect(tokens.locator("th")).to_have_text([a for a, n in most_first])
    expect(tokens.locator("td.num")).to_have_text([token_count(n) for a, n in most_first])  # triage-worker: 0
    liveness = page.locator("table.ops-liveness")
    expect(liveness.locator("thead th")).to_have_text(
        ["Agent", "State", "REST API", "xpander API", "Agentex API", "JSON-RPC"]
    )
    # Each agent wrote through one face (the columns after the state: REST, xpander, Agentex, JSON-RPC).
    for agent, state, face in [
        ("billing-agent", "live", 0),
        ("research-agent", "idle", 2),
        ("support-bot", "live", 1),
        ("triage-worker", "live", 3),
    ]:
        row = liveness.locator(f'tr[data-agent="{agent}"]')
        expect(row.locator(".ops-state")).to_have_text(state)
        expect(row.locator("td.ops-seen").nth(face)).to_have_class(f"ops-seen ops-seen-{state}")
        expect(row.locator("td.ops-seen-never")).to_have_count(3)
    expect(liveness.locator('tr[data-agent="research-agent"] td.ops-seen-idle')).to_have_text("9 min ago")
    expect(page.locator(".ops-worker")).to_contain_text("triage-worker-1")
    queues = panel(page, "queues").locator("tbody tr")
    expect(queues).to_have_text(
        [
            re.compile(r"billing-agent\s*refunds\s*2"),
            re.compile(r"support-bot\s*xpander\s*2"),
            re.compile(r"triage-worker\s*jsonrpc\s*3"),
        ]
    )
    screenshot(page, "screenshot-ops.png")

    # The window links swap the page in place and push the URL: 24 h adds the tasks of 5 hours
    # ago, 7 d those of 3 days ago; the charts go to hourly slots.
    page.evaluate("window.taskdeskNoReload = true")
    page.click(".ops-window:has-text('24 h')")
    page.wait_for_url("**/ops/?window=24h")
    expect(page.locator(".ops-window[aria-current=page]")).to_have_text("24 h")
    assert_figures(page, expected_figures(history.tasks["24h"]))
    expect(figure(page, "created")).to_have_text("63")
    expect(page.locator(".ops-scope")).to_contain_text("the last 24 h, per hour")
    expect(panel(page, "throughput").locator("svg .ops-bar")).to_have_count(24)
    assert bar_sums(page)["created"] == 63
    page.click(".ops-window:has-text('7 d')")
    page.wait_for_url("**/ops/?window=7d")
    assert_figures(page, expected_figures(history.tasks["7d"]))
    expect(figure(page, "created")).to_have_text("71")
    expect(panel(page, "throughput").locator("svg .ops-bar")).to_have_count(168)

    # The agent filter narrows every figure to billing-agent and keeps the window; the window
    # links keep the filter.
    page.select_option("select[name=agent]", "billing-agent")
    page.wait_for_url("**/ops/?window=7d&agent=billing-agent")
    billing = [t for t in history.tasks["7d"] if t.agent.name == "billing-agent"]
    assert_figures(page, expected_figures(billing))
    expect(figure(page, "created")).to_have_text("24")
    expect(page.locator(".ops-scope")).to_contain_text("Acme · billing-agent · the last 7 d")
    expect(liveness.locator("tbody tr")).to_have_count(1)
    expect(tokens.locator("th")).to_have_text(["billing-agent"])
    expect(panel(page, "queues").locator("tbody tr")).to_have_text([re.compile(r"billing-agent\s*refunds\s*2")])
    page.click(".ops-window:has-text('1 h')")
    page.wait_for_url("**/ops/?agent=billing-agent&window=1h")
    expect(page.locator("select[name=agent]")).to_have_value("billing-agent")
    expect(figure(page, "created")).to_have_text("16")
    assert page.evaluate("window.taskdeskNoReload") is True  # swapped in place, never reloaded

    # Back and forward through the pushed history restore each view.
    page.go_back()
    page.wait_for_url("**/ops/?window=7d&agent=billing-agent")
    expect(figure(page, "created")).to_have_text("24")


def test_new_writes_reach_the_open_page_through_its_socket_without_a_reload(new_session, console_errors, history, acme):
    page = open_ops(new_session, console_errors)
    wait_live(page)
    expect(figure(page, "created")).to_have_text("57")
    page.evaluate("window.taskdeskNoReload = true")
    header = page.locator("#ops-page h1").element_handle()
    asked = page.evaluate("taskdeskOps.refreshesAsked()")

    # Agents write: support-bot finishes two new tasks (one failed) through xpander, and a
    # JSON-RPC client queues one more for triage-worker.
    xpander = services.Actor.for_token(services.api_token_create(organization=acme, name="late")[0], face=Face.XPANDER)
    for n, status in enumerate(["completed", "failed"]):
        task, _ = services.task_create(
            organization=acme,
            actor=xpander,
            id=f"late-{n}",
            agent="support-bot",
            status="executing",
            prompt_tokens=5000,
            completion_tokens=600,
        )
        services.task_update(task=task, actor=xpander, status=status, duration=95.0)
    jsonrpc = services.Actor.for_token(services.api_token_create(organization=acme, name="rpc")[0], face=Face.JSONRPC)
    services.task_create(organization=acme, actor=jsonrpc, id="late-2", agent="triage-worker", queue="jsonrpc")

    # The organization's bell reaches the page's socket and static/js/ops.js refreshes the body
    # (the first change at once, the rest within its 2 s gap): the figures count the new writes.
    expect(figure(page, "created")).to_have_text("60", timeout=TIMEOUT_MS)
    expect(figure(page, "finished")).to_have_text("50", timeout=TIMEOUT_MS)
    expect(page.locator(".ops-tile").nth(2)).to_contain_text("10 failed of 50", timeout=TIMEOUT_MS)
    expect(figure(page, "failure-rate")).to_have_text("20 %")
    queues = panel(page, "queues").locator("tbody tr")
    expect(queues.nth(2)).to_have_text(re.compile(r"triage-worker\s*jsonrpc\s*4"))
    # The bars add up to the tile (both from the same refresh; polled, as a refresh may be swapping in).
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while bar_sums(page)["created"] != int(figure(page, "created").inner_text()) and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert bar_sums(page)["created"] == int(figure(page, "created").inner_text()) == 60
    assert page.evaluate("taskdeskOps.refreshesAsked()") > asked  # the socket asked, not the minute's slide
    assert page.evaluate("window.taskdeskNoReload") is True
    assert header.evaluate("h => h.isConnected")  # the header and its controls were left alone
