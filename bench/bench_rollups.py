"""What the operations view's rollups cost a write: the same service calls with the hook and without it.

services.rollups.apply runs in every change's transaction (services.kernel). This measures, in
one process on PostgreSQL, the wall and CPU time per service call of:

- an update the rollups ignore (metadata): the hook's early return;
- a token report (report_metrics): one INSERT ... ON CONFLICT of two rows (minute, hour);
- a task reaching a final status: the same statement with its outcome and duration bucket,
  and the pending gauge's row when it leaves pending;

each once with the hook and once with it replaced by a no-op, in alternating rounds (load from
elsewhere on the machine hits both alike), with synchronous_commit off (the flush to disk at
commit is the same on both sides and the noisiest part). The difference is the hook's cost.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_rollups.py [--writes 2000]
"""

import argparse
import statistics
import time

import _common

_common.setup("bench_taskdesk_rollups")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=2000, help="service calls per kind and side, per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds with and without the hook")
    args = parser.parse_args()
    _common.require_postgres("bench_rollups")
    with _common.bench_database():
        run(args.writes, args.rounds)


def run(writes: int, rounds: int) -> None:
    from django.db import connection

    from tasks_app import services
    from tasks_app.models import Organization, TaskRollup
    from tasks_app.services import kernel, rollups

    # The commit's flush to disk is the same with and without the hook, and the noisiest part
    # of a write on a shared machine: left out, so the difference shows.
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")
    org = Organization.objects.create(slug="bench", name="Bench")
    actor = services.Actor.system("bench")
    counter = iter(range(10**9))

    def metadata(task_id):
        services.task_update(task=task_id, organization_id=org.pk, actor=actor, metadata={"n": next(counter)})

    def tokens(task_id):
        services.report_metrics(task=task_id, organization_id=org.pk, actor=actor, prompt_tokens=next(counter))

    def finish(task_id):
        services.task_update(task=task_id, organization_id=org.pk, actor=actor, status="completed")

    kinds = {"update the rollups ignore": metadata, "token report": tokens, "task finishing": finish}
    short = {label: f"k{n}" for n, label in enumerate(kinds)}
    real_apply = rollups.apply
    figures: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    for round_no in range(rounds):
        for hooked in (True, False) if round_no % 2 == 0 else (False, True):
            kernel.rollups.apply = real_apply if hooked else (lambda *args, **kwargs: None)
            for label, call in kinds.items():
                ids = []
                for n in range(writes if call is finish else 1):
                    task, _ = services.task_create(
                        organization=org, actor=actor, id=f"{round_no}-{hooked}-{short[label]}-{n}", agent="bench-agent"
                    )
                    ids.append(task.public_id)
                wall, cpu = time.perf_counter(), time.process_time()
                for n in range(writes):
                    call(ids[n % len(ids)])
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                figures.setdefault((label, hooked), []).append((wall / writes, cpu / writes))
    kernel.rollups.apply = real_apply
    print(f"{writes} service calls per kind and side, {rounds} rounds; medians of the rounds (µs per call)")
    print(f"{'write':28} {'with hook':>18} {'without':>18} {'hook costs':>22}")
    for label in kinds:
        with_hook = [statistics.median(v[i] for v in figures[(label, True)]) * 1e6 for i in (0, 1)]
        without = [statistics.median(v[i] for v in figures[(label, False)]) * 1e6 for i in (0, 1)]
        cost = [w - o for w, o in zip(with_hook, without, strict=True)]
        print(
            f"{label:28} {with_hook[0]:7.0f} wall {with_hook[1]:5.0f} cpu {without[0]:7.0f} wall {without[1]:5.0f} cpu"
            f" {cost[0]:+7.0f} wall {cost[1]:+5.0f} cpu"
        )
        _common.summary_row(
            f"rollup hook, {label}",
            f"{cost[0]:+.0f} µs wall, {cost[1]:+.0f} µs CPU per write",
            f"the write without it: {without[0]:.0f} µs",
            with_hook[0] / without[0],
            "one statement, only when it moves",
            None,
        )
    print(f"rollup rows: {TaskRollup.objects.filter(organization=org).count()}")


if __name__ == "__main__":
    main()
