"""Server-side render time of the dashboard pages against small baselines measured in the same run.

Pages are requested through Django's test Client as alice (operator), so middleware, session,
views, selectors and templates all count; the network and the browser do not. Each figure is the
median of several requests after two warm-up requests; the query count is from one more request.

(a) the task list /tasks/ of an organization with 100 tasks (baseline; alice-small, same role)
    against alice's organization of 100,000 (keyset pagination: the ratio should stay near 1),
    requested round-robin. The full page also renders the status-count bar, a GROUP BY over all
    of the organization's tasks, so it is reported apart: the htmx table fragment (no count bar)
    and selectors.status_counts on its own; filtered and searched fragments too, with the rows
    each shows ([baseline/target]).
(b) a task's activity log (/tasks/<id>/activity/) with 10 entries (baseline) and 50 (one full
    page: the same rows rendered as the big log's first page) against 10,000.
(c) the task detail page with 10 and 50 TaskEvents in its history (it shows the newest 50)
    against 5,000.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/bench_pages.py [--repeat N] [--explain]

Creates and drops its own database (TEST_DATABASE_NAME, default bench_taskdesk_pages).
"""

import argparse
import time
from datetime import timedelta

import _common

_common.setup("bench_taskdesk_pages")

from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

SMALL_TASKS = 100
BIG_TASKS = 100_000
SMALL_LOG = 10
PAGE_LOG = 50  # one full page: the same rows rendered as the big log's first page
BIG_LOG = 10_000
SMALL_HISTORY = 10
PAGE_HISTORY = 50  # the detail page shows the newest 50 events
BIG_HISTORY = 5_000
HX = {"HX-Request": "true"}

RESULTS: list[tuple[str, dict, dict]] = []  # (label, smallest baseline, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21, help="timed requests per figure (median reported)")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the main queries at the end")
    args = parser.parse_args()
    _common.require_postgres("bench_pages")
    started = time.perf_counter()
    with _common.bench_database():
        run(args.repeat, args.explain)
    print(f"\ntotal runtime: {time.perf_counter() - started:.0f} s")


# --- Data ---------------------------------------------------------------------------------


def add_activity(task, organization_id: int, count: int) -> list[int]:
    from tasks_app.models import ActivityEntry, ActivityKind

    kinds = [ActivityKind.MESSAGE, ActivityKind.TOOL_CALL, ActivityKind.TOOL_RESULT, ActivityKind.REASONING]
    now = timezone.now()
    rows = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        rows.append(
            ActivityEntry(
                task=task,
                organization_id=organization_id,
                kind=kind,
                role="assistant" if kind == ActivityKind.MESSAGE else "",
                content=f"Step {i}: looked at the customer's order history and checked the refund policy. " * 2,
                tool_name="search_orders" if kind in (ActivityKind.TOOL_CALL, ActivityKind.TOOL_RESULT) else "",
                tool_arguments={"customer": i, "limit": 20} if kind == ActivityKind.TOOL_CALL else None,
                tool_output={"orders": [i, i + 1], "total": 2} if kind == ActivityKind.TOOL_RESULT else None,
                prompt_tokens=120,
                completion_tokens=40,
                created_at=now - timedelta(seconds=count - i),
            )
        )
    # The last entry holds a word no other entry has (for the search figure).
    rows[-1].content = "Final answer: the refund was approved (marker zebracorn)."
    created = ActivityEntry.objects.bulk_create(rows, batch_size=2000)
    return [row.pk for row in created]


def add_history(task, organization_id: int, user, count: int) -> None:
    from tasks_app.models import ActorKind, EventType, Face, TaskEvent

    now = timezone.now()
    rows = [
        TaskEvent(
            task=task,
            organization_id=organization_id,
            type=EventType.UPDATED,
            changes=["priority", "metadata"],
            before={"priority": i % 100, "metadata": {"step": i}},
            after={"priority": (i + 1) % 100, "metadata": {"step": i + 1}},
            actor_kind=ActorKind.USER,
            actor_user=user,
            actor_label=user.username,
            face=Face.DASHBOARD,
            task_version=i + 2,
            created_at=now - timedelta(seconds=count - i),
        )
        for i in range(count)
    ]
    TaskEvent.objects.bulk_create(rows, batch_size=2000)


# --- Measuring ----------------------------------------------------------------------------


def get_ok(client: Client, url: str, headers: dict | None):
    response = client.get(url, headers=headers or {})
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}")
    return response


def measure_gets(requests: list[tuple[Client, str]], repeat: int, headers: dict | None = None) -> list[dict]:
    """Median time, query count and size of each (client, URL), requested round-robin.

    Round-robin, so a burst of load from elsewhere on the machine hits every URL alike.
    """
    for client, url in requests:
        for _ in range(2):  # warm-up
            get_ok(client, url, headers)
    times: list[list[float]] = [[] for _ in requests]
    for _ in range(repeat):
        for i, (client, url) in enumerate(requests):
            start = time.perf_counter()
            get_ok(client, url, headers)
            times[i].append(time.perf_counter() - start)
    figures = []
    for (client, url), url_times in zip(requests, times, strict=True):
        with CaptureQueriesContext(connection) as queries:
            response = get_ok(client, url, headers)
        figures.append({"ms": _common.median_ms(url_times), "queries": len(queries), "bytes": len(response.content)})
    return figures


def measure_call(fn, repeat: int) -> dict:
    times = _common.timed(fn, repeat=repeat)
    with CaptureQueriesContext(connection) as queries:
        fn()
    return {"ms": _common.median_ms(times), "queries": len(queries), "bytes": 0}


def cell(figure: dict) -> str:
    return f"{figure['ms']:7.1f} ms {figure['queries']:2d}q"


def report(label: str, figures: list[dict]) -> None:
    """One line: each size's median and query count, then target/baseline (and target/middle)."""
    baseline, target = figures[0], figures[-1]
    RESULTS.append((label, baseline, target))
    ratios = [_common.ratio(target["ms"], f["ms"]) for f in figures[:-1]]
    print(f"  {label:<56} " + "  ".join(cell(f) for f in figures) + "   ratio " + " ".join(ratios))


def header(title: str, sizes: list[str]) -> None:
    print(f"\n{title}")
    ratios = " ".join(f"/{size}" for size in sizes[:-1])
    print(f"  {'':<56} " + "  ".join(f"{size:>15}" for size in sizes) + f"   ratio {ratios}")


def explain(sql_and_params: list[tuple[str, object]]) -> None:
    with connection.cursor() as cursor:
        for label, queryset in sql_and_params:
            sql, params = queryset.query.sql_with_params()
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
            print(f"\n--- EXPLAIN ANALYZE: {label}")
            for (line,) in cursor.fetchall():
                print("   ", line)


# --- The run ------------------------------------------------------------------------------


def run(repeat: int, show_plans: bool) -> None:
    from django.contrib.auth import get_user_model

    from tasks_app import selectors, services
    from tasks_app.models import ActivityEntry, Membership, Organization, Role, Task, TaskEvent

    acme = Organization.objects.create(slug="acme", name="Acme")
    small_org = Organization.objects.create(slug="small", name="Small")
    templates = Organization.objects.create(slug="templates", name="Templates")
    users = get_user_model().objects
    alice = users.create_user(username="alice", password="taskdesk")
    Membership.objects.create(user=alice, organization=acme, role=Role.OPERATOR)
    # The baseline's user: the same role in an organization of 100 tasks (so both are measured round-robin).
    alice_small = users.create_user(username="alice-small", password="taskdesk")
    Membership.objects.create(user=alice_small, organization=small_org, role=Role.OPERATOR)
    system = services.Actor.system("bench")
    template, _ = services.task_create(
        organization=templates,
        actor=system,
        id="template",
        title="template",
        agent="support-bot",
        source="bench",
        metadata={"customer": "c-1", "channel": "email"},
        params={"model": "small"},
    )
    client = Client()
    client.force_login(alice)
    client_small = Client()
    client_small.force_login(alice_small)
    org_tasks = selectors.tasks_for_user(alice)

    # (a) The list: an organization of 100 tasks against one of 100,000 (the same rows on page 1).
    t0 = time.perf_counter()
    _common.copy_tasks(template.pk, small_org.pk, SMALL_TASKS)
    _common.copy_tasks(template.pk, acme.pk, BIG_TASKS)
    _common.analyze()
    print(f"loaded {SMALL_TASKS + BIG_TASKS:,} tasks and their events in {time.perf_counter() - t0:.1f} s")
    print(f"repeat={repeat} (each figure is the median of that many, sizes measured round-robin)")
    header(f"(a) task list: {SMALL_TASKS} vs {BIG_TASKS:,} tasks in the organization", ["100", "100,000"])
    list_figures([(client_small, selectors.tasks_for_user(alice_small)), (client, org_tasks)], selectors, repeat)

    # (b) Activity log: 10 and 50 (one full page) vs 10,000 entries, all in the big organization.
    ids = {}
    for size in (SMALL_LOG, PAGE_LOG, BIG_LOG):
        task, _ = services.task_create(organization=acme, actor=system, id=f"log-{size}", title=f"{size} entries")
        ids[size] = add_activity(task, acme.pk, size)
    _common.analyze()
    header(
        f"(b) activity log: {SMALL_LOG} and {PAGE_LOG} (one page) vs {BIG_LOG:,} entries",
        [str(SMALL_LOG), str(PAGE_LOG), f"{BIG_LOG:,}"],
    )
    entries_target = {**HX, "HX-Target": "activity-entries"}
    cases = [
        ("full page (first 50 entries)", lambda size: "", None),
        ("htmx panel (as the detail page loads it)", lambda size: "", HX),
        ("htmx next page from the middle (after=)", lambda size: f"?after={ids[size][len(ids[size]) // 2]}", HX),
        ("htmx kind=tool_call", lambda size: "?kind=tool_call", entries_target),
        ("htmx search, 1 match at the end (ILIKE)", lambda size: "?q=zebracorn", entries_target),
    ]
    for label, query, headers in cases:
        urls = [f"/tasks/log-{size}/activity/{query(size)}" for size in (SMALL_LOG, PAGE_LOG, BIG_LOG)]
        report(label, measure_gets([(client, url) for url in urls], repeat, headers))

    # (c) Task detail: 10 and 50 (the history shows the newest 50) vs 5,000 events.
    for size in (SMALL_HISTORY, PAGE_HISTORY, BIG_HISTORY):
        task, _ = services.task_create(organization=acme, actor=system, id=f"hist-{size}", title=f"{size} events")
        add_history(task, acme.pk, alice, size - 1)  # plus its task.created event
    _common.analyze()
    header(
        f"(c) task detail: {SMALL_HISTORY} and {PAGE_HISTORY} vs {BIG_HISTORY:,} events in its history",
        [str(SMALL_HISTORY), str(PAGE_HISTORY), f"{BIG_HISTORY:,}"],
    )
    urls = [f"/tasks/hist-{size}/" for size in (SMALL_HISTORY, PAGE_HISTORY, BIG_HISTORY)]
    report("full page", measure_gets([(client, url) for url in urls], repeat))
    report("htmx fragment #task-main", measure_gets([(client, url) for url in urls], repeat, HX))

    summary()
    if show_plans:
        big_log = Task.objects.get(pk=f"log-{BIG_LOG}")
        explain(
            [
                ("status_counts at 100k", org_tasks.order_by().values_list("status").annotate(n=Count("pk"))),
                ("list page 1 at 100k", org_tasks.order_by("-created_at", "-pk")[:51]),
                ("list status=executing&paused", org_tasks.filter(status__in=["executing", "paused"])[:51]),
                ("activity page 1 of 10k", ActivityEntry.objects.filter(task_id=big_log.pk).order_by("id")[:51]),
                (
                    "detail history of 5k",
                    TaskEvent.objects.filter(task_id=f"hist-{BIG_HISTORY}").order_by("-id")[:50],
                ),
            ]
        )


def list_figures(sides: list[tuple[Client, object]], selectors, repeat: int) -> None:
    """Each list figure for every (client, its tasks) side, round-robin; [rows shown per side]."""
    olders = [selectors.paginate_tasks(tasks).older for _, tasks in sides]  # what the "older" link carries
    cases = {
        "full page (table + status-count bar)": (lambda i: "/tasks/", None),
        "htmx table fragment (no count bar)": (lambda i: "/tasks/", HX),
        "htmx fragment, page 2 (keyset cursor)": (lambda i: f"/tasks/?after={olders[i]}", HX),
        "htmx fragment, status=executing": (lambda i: "/tasks/?status=executing", HX),
        "htmx fragment, status=executing&paused": (lambda i: "/tasks/?status=executing&status=paused", HX),
        "htmx fragment, search q=ticket #42 (ILIKE)": (lambda i: "/tasks/?q=ticket+%2342+", HX),
    }
    for label, (url, headers) in cases.items():
        requests = [(client, url(i)) for i, (client, _) in enumerate(sides)]
        figures = measure_gets(requests, repeat, headers)
        rows = [get_ok(c, u, headers).content.decode().count('<tr id="task-') for c, u in requests]
        report(f"{label} [{'/'.join(map(str, rows))}]", figures)
    report(
        "selectors.status_counts alone (GROUP BY)",
        [measure_call(lambda tasks=tasks: selectors.status_counts(tasks), repeat) for _, tasks in sides],
    )
    for label, filters in (
        ("selectors.paginate_tasks alone, status=executing", {"statuses": ("executing",)}),
        ("selectors.paginate_tasks alone, q=ticket #42", {"q": "ticket #42 "}),
    ):
        qss = [selectors.filter_tasks(tasks, selectors.TaskFilters(**filters)) for _, tasks in sides]
        figures = [measure_call(lambda qs=qs: selectors.paginate_tasks(qs), repeat) for qs in qss]
        rows = [len(selectors.paginate_tasks(qs).tasks) for qs in qss]
        report(f"{label} [{'/'.join(map(str, rows))}]", figures)


def summary() -> None:
    print("\nratios (largest size / smallest baseline; 1.00 = does not grow):")
    for label, base, target in RESULTS:
        flag = "" if target["queries"] == base["queries"] else f"  queries {base['queries']} -> {target['queries']}"
        print(f"  {_common.ratio(target['ms'], base['ms'])}  {label}{flag}")


if __name__ == "__main__":
    main()
