"""Write-path throughput: services.task_update against raw psycopg doing the same SQL work.

The baseline is measured in the same run on the same database: one transaction per change
with SELECT ... FOR UPDATE, UPDATE of the task and INSERT of an event row. The ratio shows
what the service layer (validation, lifecycle, ORM, event JSON) costs over the bare minimum.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_write_path.py [N]
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
os.environ.setdefault("TEST_DATABASE_NAME", "bench_taskdesk")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.runner import DiscoverRunner  # noqa: E402
from django.test.utils import setup_test_environment, teardown_test_environment  # noqa: E402


def main(n: int) -> None:
    if connection.vendor != "postgresql":
        sys.exit("bench_write_path needs PostgreSQL: set DATABASE_URL")
    setup_test_environment()
    runner = DiscoverRunner(verbosity=0, interactive=False)
    old = runner.setup_databases()
    try:
        run(n)
    finally:
        runner.teardown_databases(old)
        teardown_test_environment()


def run(n: int) -> None:
    import psycopg

    from tasks_app import services
    from tasks_app.models import Organization

    org = Organization.objects.create(slug="bench", name="Bench")
    actor = services.Actor.system("bench")
    task, _ = services.task_create(organization=org, actor=actor, id="bench-1", title="bench")
    services.task_create(organization=org, actor=actor, id="bench-2", title="baseline")

    start = time.perf_counter()
    for i in range(n):
        services.task_update(task="bench-1", organization_id=org.pk, actor=actor, priority=i % 100, metadata={"i": i})
    service_rate = n / (time.perf_counter() - start)

    db = settings.DATABASES["default"]
    conninfo = f"host={db['HOST']} port={db['PORT'] or 5432} dbname={db['NAME']} user={db['USER']}"
    with psycopg.connect(conninfo) as raw:
        start = time.perf_counter()
        for i in range(n):
            with raw.transaction():
                raw.execute("SELECT version FROM tasks_app_task WHERE id = %s FOR UPDATE", ["bench-2"])
                raw.execute(
                    "UPDATE tasks_app_task SET priority = %s, metadata = metadata || %s::jsonb,"
                    " version = version + 1, updated_at = now() WHERE id = %s",
                    [i % 100, f'{{"i": {i}}}', "bench-2"],
                )
                raw.execute(
                    "INSERT INTO tasks_app_taskevent (task_id, organization_id, type, changes, before, after,"
                    " actor_kind, actor_label, face, task_version, created_at)"
                    " VALUES (%s, %s, 'task.updated', '[]', '{}', '{}', 'system', 'bench', 'system', 1, now())",
                    ["bench-2", org.pk],
                )
        raw_rate = n / (time.perf_counter() - start)

    print(f"changes: {n}")
    print(f"baseline raw psycopg:  {raw_rate:8.0f} changes/s")
    print(f"services.task_update:  {service_rate:8.0f} changes/s")
    print(f"ratio services/baseline: {service_rate / raw_rate:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
