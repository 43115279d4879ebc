"""Pages that do not grow: each dashboard page at 10,000 tasks and at 1,000,000, same run, same org.

Pages are requested through Django's test Client (middleware, session, views, selectors and
templates all count; the network and the browser do not). The organization first holds 10,000
tasks (plus 20 pending HITL requests and 20 decided): every page is measured (median of --repeat requests,
round-robin, after two warm-ups; the query count from one more request). Then it grows to
--big tasks (older ones, bulk-loaded in SQL with their events, counters recounted, ANALYZE) and
every page is measured again. Goal: each page within 1.5x its 10,000-task time (the admin
changelist 2x) with the same number of queries.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/bench_pages.py [--big 1000000] [--repeat 11] [--explain]

Creates and drops its own database (TEST_DATABASE_NAME, default bench_taskdesk_pages).
"""

import argparse
import time

import _common

_common.setup("bench_taskdesk_pages")

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

HX = {"HX-Request": "true"}
# The operations view's refresh: its body, polled every few seconds while the tab is shown.
OPS_POLL = {"HX-Request": "true", "HX-Target": "ops-body"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=1_000_000, help="tasks in the organization at the second size")
    parser.add_argument("--repeat", type=int, default=11, help="timed requests per figure (median reported)")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the main queries at the end")
    args = parser.parse_args()
    _common.require_postgres("bench_pages")
    started = time.perf_counter()
    with _common.bench_database():
        run(args.repeat, args.big, args.explain)  # a missed goal shows in the table; only errors fail
    print(f"\ntotal runtime: {time.perf_counter() - started:.0f} s")


# --- Data ---------------------------------------------------------------------------------


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


def cell(figure: dict) -> str:
    return f"{figure['ms']:7.1f} ms {figure['queries']:2d}q"


def explain(sql_and_params: list[tuple[str, object]]) -> None:
    with connection.cursor() as cursor:
        for label, queryset in sql_and_params:
            sql, params = queryset.query.sql_with_params()
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
            print(f"\n--- EXPLAIN ANALYZE: {label}")
            for (line,) in cursor.fetchall():
                print("   ", line)


# --- The run ------------------------------------------------------------------------------

GOALS = {"admin changelist": 2.0}
DEFAULT_GOAL = 1.5


def pages(org, tasks, selectors, who: str) -> dict[str, tuple[str, dict | None, str]]:
    """label -> (URL, headers, who): what a support engineer opens, at the size the org has now."""
    older = selectors.paginate_tasks(tasks).older
    return {
        "task list, first page": ("/tasks/", None, who),
        "task list, an older page (keyset cursor)": (f"/tasks/?after={older}", None, who),
        "task list, htmx table fragment": ("/tasks/", HX, who),
        "task list, filtered status=executing": ("/tasks/?status=executing", None, who),
        # Totals: exact from the status counters above; counted up to 10,000 below.
        "task list, pending HITL = yes": ("/tasks/?hitl=yes", None, who),
        "task list, no pending HITL, sort by updated": ("/tasks/?hitl=no&sort=-updated", None, who),
        "task list, search q=ticket #42": ("/tasks/?q=ticket+%2342+", None, who),
        "task detail": (f"/tasks/{org.slug}/{org.pk}-5/", None, who),
        "approvals inbox": ("/approvals/", None, who),
        "approvals, soonest deadline first": ("/approvals/?sort=deadline", None, who),
        "approvals, decided tab": ("/approvals/decided/", None, who),
        # Read from the rollups the write path keeps: the same rows whatever the tasks.
        "operations view, last hour": ("/ops/", None, who),
        "operations view, 7 days": ("/ops/?window=7d", None, who),
        "operations view, its refresh (htmx)": ("/ops/?window=24h", OPS_POLL, who),
    }


ADMIN = {"admin changelist": ("/admin/tasks_app/task/", None, "admin")}


def measure(clients: dict, sides: list[dict], repeat: int) -> list[dict[str, dict]]:
    """Each side's pages, requested round-robin across the sides (load from elsewhere hits all alike)."""
    labels = list(sides[0])
    figures: list[dict[str, dict]] = [{} for _ in sides]
    for label in labels:
        requests = [(clients[side[label][2]], side[label][0]) for side in sides]
        for i, figure in enumerate(measure_gets(requests, repeat, sides[0][label][1])):
            figures[i][label] = figure
    return figures


def populate(org, template, system, count: int, services) -> None:
    _common.copy_tasks(template.pk, org.pk, count)
    for n in range(20):  # pending approvals, newest of all
        task, _ = services.task_create(organization=org, actor=system, id=f"hitl-{n}", title=f"Refund {n}")
        services.task_update(task=task, actor=system, status="executing")
        services.hitl_request(task=task, actor=system, question=f"Approve refund {n}?", options=["approve", "reject"])
    for n in range(20):  # and decided ones, for the Decided tab
        task, _ = services.task_create(organization=org, actor=system, id=f"decided-{n}", title=f"Refund {n}")
        services.task_update(task=task, actor=system, status="executing")
        hitl = services.hitl_request(task=task, actor=system, question=f"Which refund {n}?", options=["full", "half"])
        services.hitl_decide(hitl=hitl, actor=system, decision="responded", option="half")


def run(repeat: int, big: int, show_plans: bool) -> bool:
    from django.contrib.auth import get_user_model

    from tasks_app import selectors, services
    from tasks_app.models import Membership, Organization, Role

    small = 10_000
    acme = Organization.objects.create(slug="acme", name="Acme")
    small_org = Organization.objects.create(slug="small", name="Small")
    templates = Organization.objects.create(slug="templates", name="Templates")
    users = get_user_model().objects
    alice = users.create_user(username="alice", password="taskdesk")
    Membership.objects.create(user=alice, organization=acme, role=Role.OPERATOR)
    # The baseline's user: the same role in an organization of 10,000 tasks, measured round-robin.
    alice_small = users.create_user(username="alice-small", password="taskdesk")
    Membership.objects.create(user=alice_small, organization=small_org, role=Role.OPERATOR)
    admin = users.create_superuser(username="admin", password="taskdesk", email="admin@example.com")
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
    clients = {"alice": Client(), "alice-small": Client(), "admin": Client()}
    for name, user in (("alice", alice), ("alice-small", alice_small), ("admin", admin)):
        clients[name].force_login(user)

    t0 = time.perf_counter()
    populate(acme, template, system, small, services)
    _common.analyze()
    print(f"loaded {small:,} tasks in {time.perf_counter() - t0:.1f} s; repeat={repeat}")
    # The admin lists every organization: measured at 10,000 tasks in all, then at `big`.
    (admin_small,) = measure(clients, [ADMIN], repeat)

    t0 = time.perf_counter()
    populate(small_org, template, system, small, services)
    step = 250_000
    for first in range(small + 1, big + 1, step):
        _common.copy_tasks(template.pk, acme.pk, min(step, big + 1 - first), first=first)
    _common.analyze()
    print(f"grew acme to {big:,} tasks in {time.perf_counter() - t0:.1f} s (and a second org of {small:,})")
    sides = [
        pages(small_org, selectors.tasks_for_user(alice_small), selectors, "alice-small"),
        pages(acme, selectors.tasks_for_user(alice), selectors, "alice"),
    ]
    at_small, at_big = measure(clients, sides, repeat)
    (admin_big,) = measure(clients, [ADMIN], repeat)
    at_small.update(admin_small)
    at_big.update(admin_big)

    print(f"\n{'page':46} {'10,000':>16} {big:>16,}   ratio  goal")
    ok = True
    for label, base in at_small.items():
        grown = at_big[label]
        ratio = grown["ms"] / base["ms"]
        goal = GOALS.get(label, DEFAULT_GOAL)
        met = ratio <= goal and grown["queries"] == base["queries"]
        ok = ok and met
        flag = "" if grown["queries"] == base["queries"] else f"  queries {base['queries']} -> {grown['queries']}"
        missed = "" if met else "  MISSED"
        print(f"{label:46} {cell(base):>16} {cell(grown):>16}   {ratio:5.2f}  <= {goal}{flag}{missed}")
        _common.summary_row(
            f"{label}, {big:,} tasks",
            f"{grown['ms']:.1f} ms, {grown['queries']} queries",
            f"10,000 tasks: {base['ms']:.1f} ms, {base['queries']} q",
            ratio,
            f"<= {goal}x, same queries",
            met,
        )
    if show_plans:
        tasks = selectors.tasks_for_user(alice)
        for label, (url, headers, who) in {**sides[1], **ADMIN}.items():
            with CaptureQueriesContext(connection) as queries:
                get_ok(clients[who], url, headers)
            slowest = sorted(queries.captured_queries, key=lambda q: -float(q["time"]))[:2]
            print(f"\n--- slowest queries of {label}:")
            for query in slowest:
                print(f"    {float(query['time']) * 1000:7.1f} ms  {query['sql'][:300]}")
        explain(
            [
                ("list page 1", tasks.order_by("-created_at", "-pk")[:51]),
                ("list status=executing", tasks.filter(status="executing").order_by("-created_at", "-pk")[:51]),
                ("search", selectors.filter_tasks(tasks, selectors.TaskFilters(q="ticket #42 "))[:51]),
            ]
        )
    return ok


if __name__ == "__main__":
    main()
