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


def copy_tasks(template_id: str, organization_id: int, count: int) -> None:
    """`count` tasks <org>-1..<org>-<count> in the organization, copied from a template row in SQL.

    Newest first by number (<org>-1 is the newest), statuses spread over the lifecycle, one
    `task.created` event each (the replay log grows with the tasks, as in production).
    """
    from django.db import connection

    from tasks_app import lifecycle
    from tasks_app.models import Task

    quote = connection.ops.quote_name
    statuses = "ARRAY[" + ",".join(f"'{s}'" for s in lifecycle.STATUSES) + "]"
    overrides = {
        "id": "%(org)s::text || '-' || g",
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
    columns = [field.column for field in Task._meta.concrete_fields]
    select = ", ".join(overrides.get(column, f"t.{quote(column)}") for column in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO tasks_app_task ({', '.join(quote(c) for c in columns)})"  # noqa: S608 (column names from the model)
            f" SELECT {select} FROM tasks_app_task t CROSS JOIN generate_series(1, %(count)s) g"
            " WHERE t.id = %(template)s",
            {"org": organization_id, "count": count, "template": template_id},
        )
        cursor.execute(
            "INSERT INTO tasks_app_taskevent (task_id, organization_id, type, changes, before, after,"
            " actor_kind, actor_label, face, task_version, created_at)"
            " SELECT %(org)s::text || '-' || g, %(org)s, 'task.created', '[]', '{}', '{}',"
            " 'system', 'bench', 'system', 1, now() - g * interval '1 minute' FROM generate_series(1, %(count)s) g",
            {"org": organization_id, "count": count},
        )


def analyze() -> None:
    from django.db import connection

    # What autovacuum does after a bulk load; without it the planner guesses row counts.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tasks_app_task, tasks_app_taskevent, tasks_app_activityentry")


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
