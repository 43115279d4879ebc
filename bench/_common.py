"""Shared set-up for the benchmarks: Django on a throwaway PostgreSQL test database, timing helpers.

Import this module before anything from Django or tasks_app: it configures and sets up Django.
"""

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")


def setup(default_db_name: str) -> None:
    os.environ.setdefault("TEST_DATABASE_NAME", default_db_name)
    import django

    django.setup()


def require_postgres(name: str) -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit(f"{name} needs PostgreSQL: set DATABASE_URL=postgres://... (this run uses {connection.vendor})")


@contextmanager
def bench_database() -> Iterator[None]:
    """Create the test database (migrated), yield, drop it, like a test run does."""
    from django.test.runner import DiscoverRunner
    from django.test.utils import setup_test_environment, teardown_test_environment

    # debug=False: production-like (no per-query logging in connection.queries outside captures).
    setup_test_environment(debug=False)
    runner = DiscoverRunner(verbosity=0, interactive=False)
    old = runner.setup_databases()
    try:
        yield
    finally:
        from django.db import connections

        connections.close_all()
        runner.teardown_databases(old)
        teardown_test_environment()


def copy_tasks(template_pk: int, organization_id: int, count: int, *, first: int = 1) -> None:
    """Tasks <org>-<first>..<org>-<first+count-1> in the organization, copied from a template row in SQL.

    Newest first by number (<org>-1 is the newest), statuses spread over the lifecycle, one
    `task.created` event each (the replay log grows with the tasks, as in production), and the
    organization's status counters and rollups rebuilt (the write path keeps them; a bulk load
    must too).
    """
    from django.db import connection

    from tasks_app import lifecycle
    from tasks_app.models import Task
    from tasks_app.services import counters, rollups

    quote = connection.ops.quote_name
    statuses = "ARRAY[" + ",".join(f"'{s}'" for s in lifecycle.STATUSES) + "]"
    overrides = {
        "public_id": "%(org)s::text || '-' || g",
        "organization_id": "%(org)s",
        "name": "NULL",
        "title": "'Bench task ' || g",
        "input_text": "'Summarise ticket #' || g || ' and draft a reply'",
        "status": f"({statuses})[1 + g %% {len(lifecycle.STATUSES)}]",
        "priority": "g %% 101",
        "duration": "(g %% 600)::float",
        "prompt_tokens": "g %% 5000",
        "completion_tokens": "g %% 900",
        "created_at": "now() - g * interval '1 minute'",
        "updated_at": "now() - g * interval '1 minute'",
    }
    columns = [field.column for field in Task._meta.concrete_fields if field.column != "id"]
    select = ", ".join(overrides.get(column, f"t.{quote(column)}") for column in columns)
    params = {"org": organization_id, "first": first, "last": first + count - 1, "template": template_pk}
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM tasks_app_task")
        (params["before"],) = cursor.fetchone()
        cursor.execute(
            f"INSERT INTO tasks_app_task ({', '.join(quote(c) for c in columns)})"  # noqa: S608 (column names from the model)
            f" SELECT {select} FROM tasks_app_task t CROSS JOIN generate_series(%(first)s::int, %(last)s::int) g"
            " WHERE t.id = %(template)s",
            params,
        )
        cursor.execute(
            "INSERT INTO tasks_app_taskevent (task_id, organization_id, type, changes, before, after,"
            " actor_kind, actor_label, face, task_version, created_at)"
            " SELECT t.id, t.organization_id, 'task.created', '[]', '{}', '{}', 'system', 'bench', 'system', 1,"
            " t.created_at FROM tasks_app_task t WHERE t.organization_id = %(org)s AND t.id > %(before)s",
            params,
        )
    counters.recount(organization_id)
    rollups.rebuild(organization_id)


def analyze() -> None:
    from django.db import connection

    # What autovacuum does after a bulk load; without it the planner guesses row counts.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tasks_app_task, tasks_app_taskevent, tasks_app_activityentry, tasks_app_taskrollup")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def timed(fn: Callable[[], object], *, repeat: int, warmup: int = 2) -> list[float]:
    """Wall-clock seconds of `repeat` calls of fn after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:5.2f}" if baseline > 0 else "  n/a"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_cpu_seconds() -> float:
    """CPU seconds all of the machine's cores have spent busy since boot (/proc/stat, Linux):
    its difference over a run divided by the run's length is how many cores the run kept busy."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# --- One table for `make bench` -------------------------------------------------------------

SUMMARY_ENV = "BENCH_SUMMARY"


def summary_row(measure: str, value: str, baseline: str, ratio: float | None, goal: str, met: bool | None) -> None:
    """One line of `make bench`'s table, appended (JSON) to $BENCH_SUMMARY when run_all.py asks."""
    import json

    path = os.environ.get(SUMMARY_ENV)
    if not path:
        return
    row = {"measure": measure, "value": value, "baseline": baseline, "ratio": ratio, "goal": goal, "met": met}
    with open(path, "a") as out:
        out.write(json.dumps(row) + "\n")
