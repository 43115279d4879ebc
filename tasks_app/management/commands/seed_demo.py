"""Seed demo data: organizations, users, agents, and tasks in every status.

Idempotent: organizations, users and agents are fetched or created; tasks have fixed ids
(`demo-acme-0001`) and each one's content comes from `random.Random(seed, index)`, so running
the command again creates only the tasks that are missing and never changes existing ones.

Why tasks are bulk-inserted here instead of going through `services.task_create`: seeding
creates rows that did not exist, it changes no existing task, and the per-call transaction,
advisory lock and live bell of the services would make a million rows take hours. Every
seeded task still gets its `task.created` TaskEvent (bulk-inserted with it, in the same
transaction), so the history and the replay log are as consistent as for any other task.
Seeded events ring no bell: no browser shows tasks that did not exist a moment ago.

Large sets on PostgreSQL: the first TEMPLATES tasks are built in Python as above; every later
one is a copy of one of them made in SQL (`_copy_tasks`, COPY_BATCH per statement): its own id,
number and times, the template's work, status and created event (snapshot rewritten to the
copy), no activity log, no parent and no pending question (paused templates are not copied: the
inbox keeps its few hundred questions at any size). A million tasks take minutes, not hours.
"""

import random
import time
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone
from tqdm import tqdm

from tasks_app import bulk, lifecycle
from tasks_app.lifecycle import Status
from tasks_app.models import (
    ActivityEntry,
    ActivityKind,
    ActorKind,
    Agent,
    EventType,
    Face,
    HitlRequest,
    Membership,
    Organization,
    Role,
    Task,
    TaskEvent,
)
from tasks_app.scenarios import AGENT_DESCRIPTIONS, AGENTS, ToolCall, Work, scenarios_for
from tasks_app.services import counters, rollups
from tasks_app.services.snapshots import task_snapshot

PASSWORD = "taskdesk"
ORGANIZATIONS = {"acme": "Acme Corp", "globex": "Globex Corporation"}
USERS = [
    # username, organization slug, role (None: superuser without membership)
    ("admin", None, None),
    ("alice", "acme", Role.OPERATOR),
    ("bob", "acme", Role.VIEWER),
    ("charlie", "globex", Role.OPERATOR),
]
STATUS_WEIGHTS = {
    Status.PENDING: 15,
    Status.EXECUTING: 12,
    Status.PAUSED: 6,
    Status.INTERRUPTED: 3,
    Status.COMPLETED: 35,
    Status.FAILED: 8,
    Status.ERROR: 4,
    Status.STOPPED: 5,
    Status.CANCELED: 4,
    Status.TERMINATED: 3,
    Status.TIMED_OUT: 5,
}
RICH_UP_TO = 1000  # tasks below this index get activity logs; beyond it, one in RICH_EVERY
RICH_EVERY = 100
TEMPLATES = 3000  # tasks built in Python; beyond them (PostgreSQL) copies in SQL. A multiple of 3 (the org deal)
COPY_BATCH = 100_000  # copied tasks per statement
EVENT_CHANGES = sorted(["status", "title", "priority", "source", "input_text", "metadata"])


class Command(BaseCommand):
    help = "Create demo organizations, users (password 'taskdesk'), agents and tasks; safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--tasks", type=int, default=300, help="How many demo tasks (default 300).")
        parser.add_argument("--seed", type=int, default=42, help="Random seed (same seed, same data).")
        parser.add_argument("--batch", type=int, default=2000, help="Tasks per transaction.")
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
        parser.add_argument(
            "--migrate", action="store_true", help="Apply the migrations first (make run: one process, not two)."
        )

    def handle(self, *args, tasks: int, seed: int, batch: int, no_progress: bool, migrate: bool = False, **options):
        if tasks < 0:
            raise CommandError("--tasks must be 0 or more")
        if batch < 1:
            raise CommandError("--batch must be at least 1")
        if migrate:
            call_command("migrate", interactive=False, verbosity=options.get("verbosity", 1), stdout=self.stdout)
        started = time.monotonic()
        with transaction.atomic():
            orgs = self._organizations()
            self._users(orgs)
            agents = self._agents(orgs)
        self.phases: dict[str, float] = {}
        created, rows = self._tasks(orgs, agents, count=tasks, seed=seed, batch=batch, progress=not no_progress)
        finishing = time.monotonic()
        if created:
            # The rows bypassed the services: rebuild the status counts and the operations view's
            # rollups they keep, and give the planner fresh statistics (autovacuum may be off) so
            # the pages use their indexes.
            for org in orgs.values():
                counters.recount(org.pk)
                rollups.rebuild(org.pk)
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    for table in (
                        "tasks_app_task",
                        "tasks_app_taskevent",
                        "tasks_app_activityentry",
                        "tasks_app_taskrollup",
                    ):
                        cursor.execute(f"ANALYZE {table}")  # noqa: S608 (fixed names)
        self.phases["counts, rollups, ANALYZE"] = time.monotonic() - finishing
        elapsed = time.monotonic() - started
        rate = rows / elapsed if elapsed > 0 else 0
        self.stdout.write(
            f"Demo data ready: {created} new tasks ({tasks - created} already there), "
            f"{rows} rows in {elapsed:.1f} s ({rate:,.0f} rows/s). Users: admin, alice, bob, charlie "
            f"(password '{PASSWORD}')."
        )
        if created >= 10_000:
            self.stdout.write("  " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.phases.items()))

    def _organizations(self) -> dict[str, Organization]:
        orgs = {}
        for slug, name in ORGANIZATIONS.items():
            orgs[slug], _ = Organization.objects.get_or_create(slug=slug, defaults={"name": name})
        return orgs

    def _users(self, orgs: dict[str, Organization]) -> None:
        User = get_user_model()
        hashed = None  # hashed once for every demo user: each hash takes a good part of a second
        for username, slug, role in USERS:
            user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
            is_admin = slug is None
            # An existing user keeps the password someone gave it; only a new one gets the demo's.
            if created or user.is_superuser != is_admin:
                if created:
                    hashed = hashed or make_password(PASSWORD)
                    user.password = hashed
                user.is_superuser = user.is_staff = is_admin
                user.save()
            if slug is not None:
                Membership.objects.update_or_create(user=user, organization=orgs[slug], defaults={"role": role})

    def _agents(self, orgs: dict[str, Organization]) -> dict[str, list[Agent]]:
        agents = {}
        for slug, names in AGENTS.items():
            agents[slug] = [
                Agent.objects.get_or_create(
                    organization=orgs[slug], name=name, defaults={"description": AGENT_DESCRIPTIONS[name]}
                )[0]
                for name in names
            ]
        return agents

    def _tasks(self, orgs, agents, *, count: int, seed: int, batch: int, progress: bool) -> tuple[int, int]:
        """Create the missing demo tasks in batches; returns (tasks created, rows written)."""
        # Each index's task is a pure function of (seed, index), so batches can be skipped freely.
        plan = [("acme" if i % 3 != 2 else "globex") for i in range(count)]
        numbers, counters = [], {"acme": 0, "globex": 0}
        for slug in plan:
            counters[slug] += 1
            numbers.append(counters[slug])
        base = timezone.now().replace(microsecond=0)
        span = timedelta(minutes=min(count * 15, 90 * 24 * 60))
        created = rows = 0
        bar = tqdm(total=count, unit="task", disable=not progress or None, desc="seed_demo")
        built_up_to = min(count, TEMPLATES) if connection.vendor == "postgresql" else count
        began = time.monotonic()
        for start in range(0, built_up_to, batch):
            indexes = range(start, min(start + batch, built_up_to))
            ids = {i: f"demo-{plan[i]}-{numbers[i]:04d}" for i in indexes}
            existing = set(Task.objects.filter(public_id__in=ids.values()).values_list("public_id", flat=True))
            todo = [i for i in indexes if ids[i] not in existing]
            if todo:
                built = [
                    _build(i, seed, count, base, span, orgs[plan[i]], agents[plan[i]], ids[i], numbers[i]) for i in todo
                ]
                with transaction.atomic():
                    rows += _insert(built)
                created += len(todo)
            bar.update(len(indexes))
        self.phases[f"built {built_up_to:,}"] = time.monotonic() - began
        began = time.monotonic()
        templates = [f"demo-{plan[i]}-{numbers[i]:04d}" for i in range(built_up_to)]
        for start in range(built_up_to, count, COPY_BATCH):
            end = min(start + COPY_BATCH, count)
            with transaction.atomic():
                copied = _copy_tasks(orgs, templates, start=start, end=end, count=count, base=base, span=span)
            created += copied
            rows += copied * 2
            bar.update(end - start)
        if count > built_up_to:
            self.phases[f"copied {count - built_up_to:,} in SQL"] = time.monotonic() - began
        bar.close()
        return created, rows


# Copies of the templates, in SQL (PostgreSQL). For task index g of this run: its organization
# and number as `_tasks` deals them (2:1 acme, globex), its creation time as `_build` spreads them
# over the span (seconds from g), its template the n-th of that organization's non-paused
# templates. Existing ids are kept (ON CONFLICT DO NOTHING): the command stays idempotent.
_COPY_SQL = """
WITH wanted AS (
    SELECT g,
           CASE WHEN g %% 3 = 2 THEN %(globex)s::bigint ELSE %(acme)s::bigint END AS org,
           CASE WHEN g %% 3 = 2 THEN 'globex' ELSE 'acme' END AS slug,
           CASE WHEN g %% 3 = 2 THEN g / 3 + 1 ELSE 2 * (g / 3) + g %% 3 + 1 END AS number,
           %(base)s::timestamptz - %(span)s::interval * ((%(count)s::float8 - g) / %(count)s::float8)
               - make_interval(secs => g %% 60) AS created_at
    FROM generate_series(%(start)s::bigint, %(end)s::bigint - 1) AS g
), pool AS (
    SELECT id, organization_id, created_at, row_number() OVER (PARTITION BY organization_id ORDER BY id) - 1 AS n
    FROM tasks_app_task
    WHERE organization_id IN (%(acme)s::bigint, %(globex)s::bigint) AND public_id = ANY(%(templates)s)
      AND status <> 'paused'
), sizes AS (
    SELECT organization_id, count(*) AS size FROM pool GROUP BY organization_id
), source AS (
    SELECT w.g, w.org, w.created_at, p.id AS template_id, w.created_at - p.created_at AS shift,
           'demo-' || w.slug || '-' || CASE WHEN w.number < 10000 THEN lpad(w.number::text, 4, '0')
                                            ELSE w.number::text END AS public_id
    FROM wanted w JOIN sizes z ON z.organization_id = w.org
    JOIN pool p ON p.organization_id = w.org AND p.n = w.number %% z.size  -- an equi-join: hashed
), copied AS (
    INSERT INTO tasks_app_task ({task_columns})
    SELECT {task_values} FROM source s JOIN tasks_app_task x ON x.id = s.template_id ORDER BY s.g
    ON CONFLICT DO NOTHING
    RETURNING id, organization_id, public_id, created_at, updated_at, started_at, paused_at, finished_at
)
INSERT INTO tasks_app_taskevent ({event_columns})
SELECT {event_values}
FROM copied c JOIN source s ON s.org = c.organization_id AND s.public_id = c.public_id
JOIN tasks_app_taskevent x ON x.task_id = s.template_id AND x.type = 'task.created'
ORDER BY c.id
"""
_COPIED_TASK = {
    "public_id": "s.public_id",
    "name": "NULL",
    "parent_id": "NULL",
    "assigned_worker_id": "NULL",
    "create_fingerprint": "''",
    "version": "1",
    "created_at": "s.created_at",
    "updated_at": "x.updated_at + s.shift",
    "started_at": "x.started_at + s.shift",
    "paused_at": "x.paused_at + s.shift",
    "finished_at": "x.finished_at + s.shift",
}
_COPIED_EVENT = {
    "task_id": "c.id",
    "task_version": "1",
    "created_at": "c.created_at",
    "snapshot": (
        "x.snapshot || jsonb_build_object('public_id', c.public_id, 'name', NULL, 'version', 1,"
        " 'created_at', c.created_at, 'updated_at', c.updated_at, 'started_at', c.started_at,"
        " 'paused_at', c.paused_at, 'finished_at', c.finished_at, 'parent_public_id', NULL,"
        " 'pending_hitl_id', NULL)"
    ),
}


def _copy_sql() -> str:
    quote = connection.ops.quote_name

    def columns(model, overrides):
        names = [f.column for f in model._meta.concrete_fields if f.column != "id"]
        return ", ".join(quote(n) for n in names), ", ".join(overrides.get(n, f"x.{quote(n)}") for n in names)

    task_columns, task_values = columns(Task, _COPIED_TASK)
    event_columns, event_values = columns(TaskEvent, _COPIED_EVENT)
    return _COPY_SQL.format(
        task_columns=task_columns, task_values=task_values, event_columns=event_columns, event_values=event_values
    )


def _copy_tasks(orgs, templates: list[str], *, start: int, end: int, count: int, base, span) -> int:
    """Tasks `start`..`end - 1` of this run as copies of the templates (PostgreSQL); returns how many were new."""
    params = {
        "acme": orgs["acme"].pk,
        "globex": orgs["globex"].pk,
        "templates": templates,
        "start": start,
        "end": end,
        "count": count,
        "base": base,
        "span": span,
    }
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '64MB'")  # the batch's sorts in memory, not on disk
        cursor.execute(_copy_sql(), params)
        return cursor.rowcount  # one created event per new task


def _pick_status(i: int, rng: random.Random) -> str:
    if i < len(lifecycle.STATUSES) * 2:
        return lifecycle.STATUSES[i % len(lifecycle.STATUSES)]  # every status, whatever the count
    return rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0]


def _index_of(slug: str, number: int) -> int:
    """The task index of an organization's n-th demo task (`_tasks` deals indexes 2:1 to acme and globex)."""
    if slug == "globex":
        return 3 * (number - 1) + 2
    return 3 * ((number - 1) // 2) + (number - 1) % 2


def _identity(i: int, seed: int, slug: str, number: int, org_agents: list[Agent]) -> tuple:
    """What task `i` is: (its random stream, status, agent, work, parent's number or None).

    A pure function of (seed, i) drawn first from the task's own stream, so a sub-task reads its
    parent's work without building the parent. A follow-up is filed under an earlier task of the
    organization, by that task's agent (a follow-up itself files none).
    """
    rng = random.Random(seed * 10_000_019 + i)
    status = _pick_status(i, rng)
    agents = org_agents
    if status == Status.PAUSED:
        # A paused task waits on a question about its own work: only agents whose work asks one.
        agents = [a for a in org_agents if any(s.question or s.choice for s in scenarios_for(a.name))] or org_agents
    agent = rng.choice(agents)
    work = Work.new(agent.name, rng, with_question=status == Status.PAUSED)
    if number > 5 and status != Status.PAUSED and rng.random() < 0.2:
        parent_number = rng.randint(1, number - 1)
        _, _, parent_agent, parent_work, _ = _identity(
            _index_of(slug, parent_number), seed, slug, parent_number, org_agents
        )
        if (follow_up := parent_work.follow_up()) is not None:
            return rng, status, parent_agent, follow_up, parent_number
    return rng, status, agent, work, None


def _build(i, seed, count, base, span, org, org_agents, task_id, number):
    """One demo task with its activity, HITL request and created event (unsaved)."""
    rng, status, agent, work, parent_number = _identity(i, seed, org.slug, number, org_agents)
    created_at = base - span * ((count - i) / max(count, 1)) - timedelta(seconds=rng.randint(0, 59))
    task = Task(
        public_id=task_id,
        organization=org,
        agent=agent,
        title=work.title,
        input_text=work.prompt,
        source=work.source(),
        status=status,
        priority=rng.choice([10, 30, 50, 50, 50, 70, 90]),
        metadata=work.metadata(),
        created_at=created_at,
        updated_at=created_at,
        version=1,
    )
    task.parent_public = f"demo-{org.slug}-{parent_number:04d}" if parent_number else None
    calls, stopped_by = _calls(work, status, rng)
    if rng.random() < 0.6:
        task.deep_planning = work.checklist(
            len(work.scenario.plan)
            if status == Status.COMPLETED
            else work.plan_step_of(len([c for c in calls if not c.failed]))
        )
    activity: list[ActivityEntry] = []
    hitl = None
    if status != Status.PENDING:
        task.started_at = created_at + timedelta(seconds=rng.randint(1, 90))
        task.prompt_tokens = sum(c.prompt_tokens for c in calls) + rng.randint(200, 900)
        task.completion_tokens = sum(c.completion_tokens for c in calls) + rng.randint(50, 300)
        task.used_tools = list(dict.fromkeys(c.tool for c in calls))
        task.last_executed_node_id = f"node-{len(calls) + 1}"
        if i < RICH_UP_TO or i % RICH_EVERY == 0:
            activity = _activity(task, rng, work, calls)
        last = activity[-1].created_at if activity else task.started_at + timedelta(seconds=5 * len(calls))
        task.updated_at = last
        if lifecycle.is_terminal(status):
            task.finished_at = last + timedelta(seconds=rng.randint(1, 8))
            task.duration = round((task.finished_at - task.started_at).total_seconds(), 3)
            task.updated_at = task.finished_at
            if status == Status.COMPLETED:
                task.result = work.result
            elif status in (Status.FAILED, Status.ERROR):
                task.status_reason = stopped_by or work.failure()
            elif status == Status.TIMED_OUT:
                task.status_reason = f"No answer within 10 minutes while {_step(work, calls).lower()}."
            elif status == Status.STOPPED:
                task.is_manually_stopped = True
                task.status_reason = "Stopped by an operator: the customer called in."
            else:
                task.status_reason = {
                    Status.CANCELED: "Canceled: the request was withdrawn.",
                    Status.TERMINATED: "Terminated: the agent was redeployed.",
                }[status]
        elif status == Status.PAUSED:
            task.paused_at = task.updated_at + timedelta(seconds=rng.randint(1, 30))
            task.updated_at = task.paused_at
            asked = work.hitl(work.question_indexes()[0])
            hitl = HitlRequest(
                task=task,
                organization=org,
                question=asked["question"],
                details=asked["details"],
                options=asked.get("options", []),
                proposed_payload=asked.get("payload"),
                requested_at=task.paused_at,
            )
            # Some are due soon, some later, most whenever (the inbox sorts and filters by it).
            minutes = rng.choice([None, None, None, 45, 180, 60 * 30])
            hitl.deadline = base + timedelta(minutes=minutes) if minutes else None
        elif status == Status.INTERRUPTED:
            task.status_reason = "Interrupted: waiting for the customer's reply."
    event = TaskEvent(
        task=task,
        organization=org,
        type=EventType.CREATED,
        changes=EVENT_CHANGES,
        after={
            "status": status,
            "title": task.title,
            "priority": task.priority,
            "source": task.source,
            "agent": task.agent.name,
        },
        actor_kind=ActorKind.SYSTEM,
        actor_label="seed_demo",
        face=Face.COMMAND,
        task_version=1,
        created_at=created_at,
    )
    return task, event, activity, hitl


def _calls(work: Work, status: str, rng: random.Random) -> tuple[list[ToolCall], str]:
    """The tool calls a task in `status` has made (a failed one retried once), and the error that
    ended it if one did."""
    total = len(work.tools)
    if status == Status.PENDING:
        return [], ""
    if status == Status.PAUSED:
        upto = work.question_indexes()[0]  # it waits on a person before this call
    elif status == Status.COMPLETED:
        upto = total
    else:
        upto = rng.randint(0 if status != Status.FAILED else 1, max(total - 1, 0))
    calls: list[ToolCall] = []
    for index in range(upto):
        call = work.call(index)
        calls.append(call)
        if call.failed:
            calls.append(work.call(index, fail_chance=0.0))  # retried, and it went through
    error = ""
    if status in (Status.FAILED, Status.ERROR) and upto < total and rng.random() < 0.6:
        failing = work.call(upto, fail_chance=1.0)
        calls.append(failing)
        error = f"{failing.tool} failed: {failing.output['error']}"
    return calls, error


def _step(work: Work, calls: list[ToolCall]) -> str:
    plan = work.scenario.plan
    return plan[min(work.plan_step_of(len({c.tool for c in calls})), len(plan) - 1)]


def _activity(task: Task, rng: random.Random, work: Work, calls: list[ToolCall]) -> list[ActivityEntry]:
    at: datetime = task.started_at
    entries = []

    def add(**values):
        nonlocal at
        at = at + timedelta(seconds=rng.randint(1, 20))
        entry = ActivityEntry(task=task, organization_id=task.organization_id, created_at=at, **values)
        entries.append(entry)
        return entry

    add(kind=ActivityKind.MESSAGE, role="user", content=task.input_text)
    add(kind=ActivityKind.REASONING, role="assistant", content="Plan: " + "; ".join(work.scenario.plan))
    for n, tool_call in enumerate(calls):
        call_id = f"call_{task.public_id}_{n}"
        call = add(
            kind=ActivityKind.TOOL_CALL,
            role="assistant",
            tool_name=tool_call.tool,
            tool_call_id=call_id,
            tool_arguments=tool_call.arguments,
            prompt_tokens=tool_call.prompt_tokens,
            completion_tokens=tool_call.completion_tokens,
        )
        result = add(
            kind=ActivityKind.TOOL_RESULT,
            role="tool",
            tool_name=tool_call.tool,
            tool_call_id=call_id,
            tool_output=tool_call.output,
        )
        result.seeded_call = call  # its call_id once both have ids (_insert)
    if task.status == Status.COMPLETED:
        add(kind=ActivityKind.MESSAGE, role="assistant", content=task.result or "")
    return entries


def _insert(built) -> int:
    tasks = [b[0] for b in built]
    activity = [entry for b in built for entry in b[2]]
    hitls = [b[3] for b in built if b[3] is not None]
    # Ids first (PostgreSQL: from the sequence), so the children can point at their task in COPY.
    bulk.insert_with_ids(Task, tasks)
    _link_parents(tasks)
    for row in [b[1] for b in built] + activity + hitls:
        row.task_id = row.task.pk
    # The requests first, with their ids: each event's snapshot names its task's pending request.
    bulk.insert_with_ids(HitlRequest, hitls)
    pending = {hitl.task_id: hitl.pk for hitl in hitls}
    events = [b[1] for b in built]
    for task, event, *_ in built:
        # The task as seeded is the task as it was at its one event (streams replay it so). From
        # the built task: setting task_id above dropped the event's cached task (a query each).
        event.snapshot = task_snapshot(task, pending_hitl_id=pending.get(task.pk))
    bulk.copy_rows(TaskEvent, events)
    # A tool result points at its call (ActivityEntry.call): the calls need their ids first.
    results = [entry for entry in activity if hasattr(entry, "seeded_call")]
    if connection.vendor == "postgresql":
        bulk.take_ids(ActivityEntry, activity)
        _link_results(results)
        bulk.copy_rows(ActivityEntry, activity, with_pk=True)
    else:
        ActivityEntry.objects.bulk_create(activity, batch_size=1000)
        _link_results(results)
        ActivityEntry.objects.bulk_update(results, ["call"], batch_size=1000)
    return len(tasks) * 2 + len(activity) + len(hitls)


def _link_results(results: list[ActivityEntry]) -> None:
    for result in results:
        result.call_id = result.seeded_call.pk


def _link_parents(tasks: list[Task]) -> None:
    """Sub-tasks name their parent by public id (an earlier demo task of the same organization)."""
    wanted = [t for t in tasks if getattr(t, "parent_public", None)]
    if not wanted:
        return
    keys = {(t.organization_id, t.parent_public) for t in wanted}
    found = {
        (org, public_id): pk
        for org, public_id, pk in Task.objects.filter(public_id__in={k[1] for k in keys}).values_list(
            "organization_id", "public_id", "pk"
        )
    }
    for task in wanted:
        task.parent_id = found.get((task.organization_id, task.parent_public))
    Task.objects.bulk_update([t for t in wanted if t.parent_id], ["parent"], batch_size=1000)
    for task in wanted:
        if task.parent_id:
            # What the event snapshot reads of the parent, without a query per sub-task.
            task.parent = Task(id=task.parent_id, organization_id=task.organization_id, public_id=task.parent_public)
