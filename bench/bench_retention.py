"""Retention at scale: `clean_tasks` over a bulk-loaded database, rows/s and the longest locks it holds.

The database is filled by `seed_demo --tasks N` (realistic tasks: input, metadata, params,
plans, activity logs, HITL requests, a `task.created` event with its snapshot each), then its
finished tasks are copied in SQL, with their events and activity, up to --eligible (acme) and
--baseline (globex); every finished task is eligible (`--older-than 0m`). Measured in the same run:

- the baseline: the same row work in raw SQL (per batch of --batch tasks: UPDATE the tasks'
  content columns, UPDATE their activity and HITL rows, strip their events' JSON, INSERT one
  event per task), over one organization (globex);
- `manage.py clean_tasks --org acme` in its own process, as an operator would run it: tasks/s,
  its longest transaction and its longest hold of the organization's event lock (what every
  writer of that organization may wait on);
- a writer changing acme's active tasks through the services the whole time (a live agent),
  its latency before the clean and during it: the longest wait is the lock cost people feel.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/bench_retention.py [--eligible 1000000] [--batch 250]

Creates and drops its own database (TEST_DATABASE_NAME, default bench_taskdesk_retention).
"""

import argparse
import os
import re
import subprocess
import sys
import threading
import time

import _common

_common.setup("bench_taskdesk_retention")

from django.db import connection, connections  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=30_000, help="demo tasks seed_demo writes (2/3 of them acme's)")
    parser.add_argument("--eligible", type=int, default=1_000_000, help="acme's finished tasks to clean")
    parser.add_argument("--baseline", type=int, default=100_000, help="globex's finished tasks the raw SQL cleans")
    parser.add_argument("--batch", type=int, default=250, help="tasks per transaction (clean_tasks' default)")
    args = parser.parse_args()
    _common.require_postgres("bench_retention")
    started = time.perf_counter()
    with _common.bench_database():
        run(args)
    print(f"\ntotal runtime: {time.perf_counter() - started:.0f} s")


def seed(tasks: int) -> float:
    from django.core.management import call_command

    began = time.perf_counter()
    call_command("seed_demo", tasks=tasks, batch=5000, no_progress=True, stdout=open(os.devnull, "w"))  # noqa: SIM115
    return time.perf_counter() - began


def clone_finished(organization_id: int, target: int) -> int:
    """Copies of the organization's finished demo tasks, with their events and activity, until `target` are eligible.

    In SQL, with their activity (seed_demo's own copies carry none, and retention strips it): copy k
    of task t gets the id t.id + k * span and the public id `<id>-c<k>`, and its events and
    activity entries are copies of t's pointing at it. Returns how many tasks are eligible.
    """
    from tasks_app import lifecycle
    from tasks_app.models import ActivityEntry, Task, TaskEvent
    from tasks_app.services import counters

    quote = connection.ops.quote_name
    terminal = list(lifecycle.TERMINAL)

    def columns(model, overrides: dict[str, str]) -> tuple[str, str]:
        names = [f.column for f in model._meta.concrete_fields if f.column != "id" or "id" in overrides]
        return ", ".join(quote(n) for n in names), ", ".join(overrides.get(n, f"x.{quote(n)}") for n in names)

    task_cols, task_select = columns(
        Task,
        {
            "id": "x.id + %(k)s::bigint * %(span)s::bigint",
            "public_id": "x.public_id || '-c' || %(k)s::int",
            "parent_id": "NULL",
        },
    )
    event_cols, event_select = columns(TaskEvent, {"task_id": "x.task_id + %(k)s::bigint * %(span)s::bigint"})
    # A copied result does not point at the original's call (a call has one result): copies stand unpaired.
    activity_cols, activity_select = columns(
        ActivityEntry, {"task_id": "x.task_id + %(k)s::bigint * %(span)s::bigint", "call_id": "NULL"}
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(id) FROM tasks_app_task")
        (span,) = cursor.fetchone()
        cursor.execute(
            "SELECT count(*), max(id) FROM tasks_app_task WHERE organization_id = %s AND status = ANY(%s)",
            [organization_id, terminal],
        )
        base, base_max = cursor.fetchone()
        copies = max(0, -(-target // base) - 1)
        source = "organization_id = %(org)s AND status = ANY(%(terminal)s) AND id <= %(base_max)s"
        children = f"task_id IN (SELECT id FROM tasks_app_task WHERE {source})"  # noqa: S608
        for k in range(1, copies + 1):
            params = {"k": k, "span": span, "org": organization_id, "terminal": terminal, "base_max": base_max}
            cursor.execute(
                f"INSERT INTO tasks_app_task ({task_cols}) SELECT {task_select} FROM tasks_app_task x WHERE {source}",  # noqa: S608
                params,
            )
            cursor.execute(
                f"INSERT INTO tasks_app_taskevent ({event_cols}) SELECT {event_select} FROM tasks_app_taskevent x"  # noqa: S608
                f" WHERE {children} ORDER BY x.id",
                params,
            )
            cursor.execute(
                f"INSERT INTO tasks_app_activityentry ({activity_cols}) SELECT {activity_select}"  # noqa: S608
                f" FROM tasks_app_activityentry x WHERE {children} ORDER BY x.id",
                params,
            )
        cursor.execute("SELECT setval(pg_get_serial_sequence('tasks_app_task', 'id'), max(id)) FROM tasks_app_task")
    counters.recount(organization_id)
    _common.analyze()
    return base * (copies + 1)


# --- The baseline: the same row work in raw SQL ------------------------------------------------

# The columns clean_tasks empties (services.retention.CLEANED_TASK_VALUES) and the JSON it strips.
RAW_BATCH = """
WITH batch AS (
    UPDATE tasks_app_task SET input_text = '', input_files = '[]', input_user = NULL, additional_context = '',
        instructions_override = '', expected_output = '', output_schema = NULL, mcp_servers = '[]', result = NULL,
        metadata = '{}', params = '{}', payload_extension = '{}', cleaned_at = now(), version = version + 1
    WHERE id = ANY(%(ids)s) RETURNING id, organization_id, version
), activity AS (
    UPDATE tasks_app_activityentry SET content = '', tool_arguments = NULL, tool_output = NULL
    WHERE task_id = ANY(%(ids)s) RETURNING 1
), hitl AS (
    UPDATE tasks_app_hitlrequest SET question = '', details = '', options = '[]', proposed_payload = NULL,
        amended_payload = NULL, reason = '', comment = ''
    WHERE task_id = ANY(%(ids)s) RETURNING 1
), old_events AS (
    UPDATE tasks_app_taskevent SET snapshot = snapshot || %(empty)s::jsonb, before = before - %(keys)s::text[],
        after = after - %(keys)s::text[]
    WHERE task_id = ANY(%(ids)s) RETURNING 1
)
INSERT INTO tasks_app_taskevent (task_id, organization_id, type, changes, before, after, actor_kind, actor_label,
    face, task_version, snapshot, created_at)
SELECT id, organization_id, 'task.cleaned', '["input_text"]', '{}', '{}', 'system', 'raw', 'command', version,
    '{}', now() FROM batch
"""


def raw_clean(organization_id: int, batch: int) -> tuple[int, float]:
    """Clean the organization's finished tasks in raw SQL batches; (tasks, seconds)."""
    import json

    from tasks_app.services.retention import CLEANED_TASK_VALUES, EVENT_CONTENT_KEYS, eligible_tasks, next_batch
    from tasks_app.services.snapshots import SNAPSHOT_FIELDS

    cutoff = _now()
    qs = eligible_tasks(cutoff=cutoff, organization_ids=(organization_id,))
    empty = json.dumps({k: v for k, v in CLEANED_TASK_VALUES.items() if k in SNAPSHOT_FIELDS})
    keys = sorted(EVENT_CONTENT_KEYS)
    done, after = 0, 0
    began = time.perf_counter()
    while ids := next_batch(qs, after_pk=after, size=batch):
        with connection.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(RAW_BATCH, {"ids": ids, "empty": empty, "keys": keys})
            cursor.execute("COMMIT")
        done += len(ids)
        after = ids[-1]
    return done, time.perf_counter() - began


def _now():
    from django.utils import timezone

    return timezone.now()


# --- A live writer beside it ---------------------------------------------------------------------


class Writer(threading.Thread):
    """Patches the organization's active tasks through the services, one after another; latencies in s."""

    def __init__(self, organization_id: int, task_ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.organization_id = organization_id
        self.task_ids = task_ids
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from tasks_app.services import Actor, ServiceError, task_update

        actor = Actor.system("bench-writer")
        ids = self.task_ids
        try:
            n = 0
            while not self.stop.is_set():
                task_id = ids[n % len(ids)]
                n += 1
                began = time.perf_counter()
                try:
                    task_update(task=task_id, organization_id=self.organization_id, actor=actor, metadata={"n": n})
                except ServiceError as exc:
                    self.errors.append(exc.message)
                self.latencies.append(time.perf_counter() - began)
                time.sleep(0.005)
        finally:
            connections.close_all()

    def measure(self, seconds: float | None = None, until: subprocess.Popen | None = None) -> list[float]:
        self.start()
        if until is not None:
            until.wait()
        else:
            time.sleep(seconds or 0)
        self.stop.set()
        self.join()
        return self.latencies


def latency_text(values: list[float]) -> str:
    return (
        f"p50 {_common.percentile(values, 50) * 1000:.1f} ms, p99 {_common.percentile(values, 99) * 1000:.1f} ms, "
        f"max {max(values) * 1000:.0f} ms ({len(values)} writes)"
    )


# --- The run -------------------------------------------------------------------------------------

SUMMARY = re.compile(
    r"Cleaned (?P<tasks>\d+) tasks?.*?in (?P<seconds>[\d.]+) s \((?P<rate>[\d,]+) tasks/s\); longest transaction "
    r"(?P<tx>\d+) ms, event lock held at most (?P<lock>\d+) ms"
)


def run(args) -> None:
    from tasks_app import lifecycle
    from tasks_app.models import Organization, Task

    batch = args.batch
    print(f"seeding {args.seed:,} demo tasks …", flush=True)
    seconds = seed(args.seed)
    acme, globex = Organization.objects.get(slug="acme"), Organization.objects.get(slug="globex")
    began = time.perf_counter()
    eligible = clone_finished(acme.pk, args.eligible)
    baseline = clone_finished(globex.pk, args.baseline)
    print(
        f"seeded in {seconds:.0f} s, copied in {time.perf_counter() - began:.0f} s: {Task.objects.count():,} tasks, "
        f"{eligible:,} of acme's to clean, {baseline:,} of globex's for the raw SQL",
        flush=True,
    )

    raw_tasks, raw_seconds = raw_clean(globex.pk, batch)
    raw_rate = raw_tasks / raw_seconds
    print(f"raw SQL (globex): {raw_tasks:,} tasks in {raw_seconds:.1f} s = {raw_rate:,.0f} tasks/s", flush=True)

    active = list(
        Task.objects.filter(
            organization_id=acme.pk, status__in=lifecycle.ACTIVE, public_id__startswith="demo-"
        ).values_list("public_id", flat=True)[:200]
    )
    alone = Writer(acme.pk, active).measure(seconds=4)
    print(f"writer alone:        {latency_text(alone)}", flush=True)

    env = {
        **os.environ,
        "TASKDESK_USE_TEST_DATABASE": "1",
        "TEST_DATABASE_NAME": connection.settings_dict["NAME"],
        # As an operator runs it in production: DEBUG on logged every query's SQL in memory.
        "DEBUG": "false",
        "SECRET_KEY": "bench-retention-only-not-a-secret-0123456789",
    }
    command = [sys.executable, "manage.py", "clean_tasks", "--older-than", "0m", "--org", "acme", "--batch", str(batch)]
    command.append("--no-progress")
    print("$ " + " ".join(command[1:]), flush=True)
    writer = Writer(acme.pk, active)
    proc = subprocess.Popen(command, cwd=_common.ROOT, env=env, stdout=subprocess.PIPE, text=True)
    during = writer.measure(until=proc)
    output = proc.stdout.read()
    print(output.strip())
    if proc.returncode != 0:
        sys.exit(f"clean_tasks exited {proc.returncode}")
    match = SUMMARY.search(output)
    if match is None:
        sys.exit("clean_tasks printed no summary")
    print(f"writer during clean: {latency_text(during)}", flush=True)
    if writer.errors:
        print(f"writer refusals: {len(writer.errors)} (first: {writer.errors[0]})")

    rate = float(match["rate"].replace(",", ""))
    cleaned, tx_ms, lock_ms = int(match["tasks"]), int(match["tx"]), int(match["lock"])
    worst = max(during) * 1000
    print(f"\nclean_tasks: {rate:,.0f} tasks/s ({rate / raw_rate:.2f} of raw SQL's {raw_rate:,.0f})")
    print(f"longest transaction {tx_ms} ms, longest event-lock hold {lock_ms} ms, worst writer wait {worst:.0f} ms")
    _common.summary_row(
        f"clean_tasks, {cleaned:,} eligible tasks",
        f"{rate:,.0f} tasks/s",
        f"raw SQL {raw_rate:,.0f} tasks/s",
        rate / raw_rate,
        "≥ 0.25 of raw SQL",
        rate / raw_rate >= 0.25,
    )
    _common.summary_row(
        "clean_tasks, longest transaction (batch)",
        f"{tx_ms} ms (event lock {lock_ms} ms)",
        f"batch of {batch}",
        None,
        "< 1,000 ms",
        tx_ms < 1000,
    )
    _common.summary_row(
        "a live writer during clean_tasks",
        f"p99 {_common.percentile(during, 99) * 1000:.1f} ms, max {worst:.0f} ms",
        f"alone p99 {_common.percentile(alone, 99) * 1000:.1f} ms, max {max(alone) * 1000:.0f} ms",
        _common.percentile(during, 99) / _common.percentile(alone, 99),
        "max < 1,000 ms",
        worst < 1000,
    )


if __name__ == "__main__":
    main()
