"""Bulk actions at 10,000 tasks: the whole action's wall time and its cost per task against the write path alone.

In one process on PostgreSQL, measured in the same run (alternating rounds, so load from elsewhere
on the machine hits both sides alike):

- the baseline: services.task_update(priority=...) called in a loop, task by task, each its own
  transaction (what a script, or a face, calling the write path for every task costs);
- the same priority change as one bulk action (services.bulk_actions) over as many tasks: the
  request's part (the preview, which counts the selection by status, and the start, which
  freezes it with one INSERT ... SELECT), then the runner in batches of --batch: per task the
  service call (its own transaction, as in the loop), per batch a lease renewal, the starter's
  role, one read of the tasks, one look in the event log for tasks it already changed, and the
  items' outcomes with the action's counts in one transaction;
- a cancel over tasks that are all finished, against task_stop in a loop over the active tasks
  of a copy of the mixed statuses: what the lifecycle refuses from the batch's read is recorded
  without locking the task, so a refusal costs a fraction of a stop (the action's wall time per
  task, measured directly, not as a difference of two timings);
- a cancel over the mix itself (4 in 11 active): what a real selection costs, changes and
  refusals together.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_bulk.py [--tasks 10000]

Creates and drops its own database (TEST_DATABASE_NAME, default bench_taskdesk_bulk).
"""

import argparse
import statistics
import time

import _common

_common.setup("bench_taskdesk_bulk")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per bulk action (and per baseline loop)")
    parser.add_argument("--batch", type=int, default=100, help="the runner's batch size")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the loop and the bulk action")
    args = parser.parse_args()
    _common.require_postgres("bench_bulk")
    started = time.perf_counter()
    with _common.bench_database():
        run(args)
    print(f"\ntotal runtime: {time.perf_counter() - started:.0f} s")


def run(args) -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from tasks_app import lifecycle, services
    from tasks_app.models import BulkAction, Membership, Organization, Role, Task
    from tasks_app.services import counters, rollups

    settings.BULK_ACTIONS_IN_BACKGROUND = False  # the runner runs here, timed
    n = args.tasks
    system = services.Actor.system("bench")
    templates = Organization.objects.create(slug="templates", name="Templates")
    template, _ = services.task_create(
        organization=templates,
        actor=system,
        id="template",
        title="template",
        agent="bench-agent",
        input_text="Summarise the ticket",
        metadata={"customer": "Ada", "ticket": 1234},
    )
    user = get_user_model().objects.create_user("operator", password="x")
    actor = services.Actor.for_user(user)
    orgs = {}
    began = time.perf_counter()
    names = [f"loop{r}" for r in range(args.rounds)] + [f"bulk{r}" for r in range(args.rounds)]
    for name in [*names, "mixed", "mixedloop", "finished"]:
        orgs[name] = Organization.objects.create(slug=name, name=name.capitalize())
        _common.copy_tasks(template.pk, orgs[name].pk, n)
        Membership.objects.create(user=user, organization=orgs[name], role=Role.OPERATOR)
    # Every task of "finished" completed: a cancel over it is refused for each one.
    Task.objects.filter(organization=orgs["finished"]).update(status="completed")
    counters.recount(orgs["finished"].pk)
    rollups.rebuild(orgs["finished"].pk)
    _common.analyze()
    print(f"{len(orgs)} organizations of {n:,} tasks copied in {time.perf_counter() - began:.0f} s")

    def loop(org) -> tuple[float, float]:
        public_ids = list(Task.objects.filter(organization=org).order_by("pk").values_list("public_id", flat=True))
        wall, cpu = time.perf_counter(), time.process_time()
        for public_id in public_ids:
            services.task_update(task=public_id, organization_id=org.pk, actor=actor, priority=100)
        return time.perf_counter() - wall, time.process_time() - cpu

    def bulk(org, act: str, params: dict) -> dict:
        tasks = Task.objects.filter(organization=org)
        began = time.perf_counter()
        preview = services.bulk_preview(user=user, organization=org, act=act, params=params, tasks=tasks)
        preview_s = time.perf_counter() - began
        began = time.perf_counter()
        action = services.bulk_action_start(user=user, organization=org, act=act, params=params, tasks=tasks)
        start_s = time.perf_counter() - began
        wall, cpu = time.perf_counter(), time.process_time()
        services.bulk_actions_run(batch=args.batch)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        action = BulkAction.objects.get(pk=action.pk)
        assert action.state == "finished" and action.processed == action.total == n, action.__dict__
        assert (action.done, action.unchanged, action.refused) == (preview.applies, preview.unchanged, preview.refused)
        return {"preview": preview_s, "start": start_s, "wall": wall, "cpu": cpu, "action": action}

    loops, bulks = [], []
    for r in range(args.rounds):
        sides = [("loop", orgs[f"loop{r}"]), ("bulk", orgs[f"bulk{r}"])]
        for side, org in sides if r % 2 == 0 else reversed(sides):
            if side == "loop":
                loops.append(loop(org))
                print(f"round {r}: task_update loop  {loops[-1][0]:6.1f} s wall, {loops[-1][1]:6.1f} s CPU")
            else:
                bulks.append(bulk(org, "priority", {"priority": 100}))
                b = bulks[-1]
                print(
                    f"round {r}: bulk action      {b['wall']:6.1f} s wall, {b['cpu']:6.1f} s CPU"
                    f" (preview {b['preview'] * 1000:.0f} ms, start {b['start'] * 1000:.0f} ms;"
                    f" {b['action'].done:,} changed, {b['action'].unchanged:,} already so)"
                )
    # The cancel's baseline: task_stop in a loop over the active tasks of a copy of the same mix.
    org = orgs["mixedloop"]
    active = Task.objects.filter(organization=org, status__in=lifecycle.ACTIVE).order_by("pk")
    public_ids = list(active.values_list("public_id", flat=True))
    stop_s = time.perf_counter()
    for public_id in public_ids:
        services.task_stop(task=public_id, organization_id=org.pk, actor=actor, status="canceled", reason="bench")
    stop_s = time.perf_counter() - stop_s
    stop_ms = stop_s / len(public_ids) * 1000
    print(f"task_stop loop over the {len(public_ids):,} active tasks of the mix: {stop_s:.1f} s, {stop_ms:.2f} ms/task")
    refused = bulk(orgs["finished"], "cancel", {"reason": "bench"})
    assert refused["action"].refused == n, refused["action"].__dict__
    refusal_us = refused["wall"] / n * 1e6
    print(
        f"cancel, all {n:,} finished: {refused['wall']:.1f} s wall, {refused['cpu']:.1f} s CPU"
        f" (all refused, {refusal_us:.0f} µs per refusal: {refusal_us / (stop_ms * 1000):.2f} of a stop;"
        f" preview {refused['preview'] * 1000:.0f} ms, start {refused['start'] * 1000:.0f} ms)"
    )
    mixed = bulk(orgs["mixed"], "cancel", {"reason": "bench"})
    m = mixed["action"]
    print(
        f"cancel, mixed statuses: {mixed['wall']:.1f} s wall, {mixed['cpu']:.1f} s CPU"
        f" ({m.done:,} changed, {m.refused:,} refused; preview {mixed['preview'] * 1000:.0f} ms,"
        f" start {mixed['start'] * 1000:.0f} ms)"
    )

    loop_ms = statistics.median(w for w, _ in loops) / n * 1000
    loop_cpu_ms = statistics.median(c for _, c in loops) / n * 1000
    bulk_ms = statistics.median(b["wall"] for b in bulks) / n * 1000
    bulk_cpu_ms = statistics.median(b["cpu"] for b in bulks) / n * 1000
    bulk_s = statistics.median(b["wall"] for b in bulks)
    request_ms = max((b["preview"] + b["start"]) * 1000 for b in [*bulks, refused, mixed])
    print(f"\nper task: bulk {bulk_ms:.2f} ms wall ({bulk_cpu_ms:.2f} ms CPU),", end=" ")
    print(f"loop {loop_ms:.2f} ms ({loop_cpu_ms:.2f})")
    print(f"ratio (wall): {_common.ratio(bulk_ms, loop_ms)}, (CPU): {_common.ratio(bulk_cpu_ms, loop_cpu_ms)}")
    _common.summary_row(
        f"bulk action, {n:,} priority changes",
        f"{bulk_s:.1f} s, {bulk_ms:.2f} ms/task ({bulk_cpu_ms:.2f} CPU)",
        f"task_update loop {loop_ms:.2f} ms/task",
        bulk_ms / loop_ms,
        "≤ 1.2× the loop",
        bulk_ms / loop_ms <= 1.2,
    )
    _common.summary_row(
        f"bulk action's request part, {n:,} tasks",
        f"preview + start ≤ {request_ms:.0f} ms",
        "",
        None,
        "< 1 s (no request timeout)",
        request_ms < 1000,
    )
    _common.summary_row(
        f"bulk cancel, {n:,} finished (all refused)",
        f"{refused['wall']:.1f} s, {refusal_us:.0f} µs per refusal",
        f"task_stop loop over the {len(public_ids):,} active of a mix: {stop_ms:.2f} ms/stop",
        refusal_us / (stop_ms * 1000),
        "a refusal ≤ 0.2 of a stop",
        refusal_us / (stop_ms * 1000) <= 0.2,
    )


if __name__ == "__main__":
    main()
