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
"""

import random
import time
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
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
from tasks_app.services import counters
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
AGENTS = {
    "acme": ["support-bot", "billing-agent", "research-agent", "triage-agent"],
    "globex": ["ops-agent", "sales-assistant", "code-reviewer"],
}
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
CUSTOMERS = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Linus Pauling", "Marie Curie"]
SOURCES = ["web", "api", "slack", "email", "schedule"]
TOOLS = ["search_tickets", "lookup_order", "issue_refund", "send_email", "web_search", "run_sql", "create_jira_issue"]
REQUESTS = [
    ("Refund order #{n} for {customer}", "Customer {customer} asks for a refund of order #{n}; it arrived damaged."),
    ("Summarize ticket #{n}", "Summarize the conversation in ticket #{n} and suggest a next step."),
    ("Investigate failed payment #{n}", "Payment #{n} from {customer} failed twice; find out why and fix it."),
    ("Draft a reply to {customer}", "Write a friendly reply to {customer} about the delayed shipment #{n}."),
    ("Research pricing for plan {n}", "Compare our plan {n} with three competitors and list the differences."),
    ("Triage inbox batch {n}", "Label and route the 40 newest emails in the support inbox (batch {n})."),
    ("Review pull request #{n}", "Review PR #{n}: check tests, naming, and the migration for locking issues."),
]
PLAN_STEPS = ["Read the request", "Gather context", "Call the tools", "Check the result", "Write the answer"]
ERRORS = ["Tool run_sql timed out after 30 s", "Upstream API returned 503", "Model refused: policy", "Quota exceeded"]
RICH_UP_TO = 1000  # tasks below this index get activity logs; beyond it, one in RICH_EVERY
RICH_EVERY = 100
EVENT_CHANGES = sorted(["status", "title", "priority", "source", "input_text", "metadata"])


class Command(BaseCommand):
    help = "Create demo organizations, users (password 'taskdesk'), agents and tasks; safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--tasks", type=int, default=300, help="How many demo tasks (default 300).")
        parser.add_argument("--seed", type=int, default=42, help="Random seed (same seed, same data).")
        parser.add_argument("--batch", type=int, default=2000, help="Tasks per transaction.")
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")

    def handle(self, *args, tasks: int, seed: int, batch: int, no_progress: bool, **options):
        if tasks < 0:
            raise CommandError("--tasks must be 0 or more")
        if batch < 1:
            raise CommandError("--batch must be at least 1")
        started = time.monotonic()
        with transaction.atomic():
            orgs = self._organizations()
            self._users(orgs)
            agents = self._agents(orgs)
        created, rows = self._tasks(orgs, agents, count=tasks, seed=seed, batch=batch, progress=not no_progress)
        if created:
            # The rows bypassed the services: rebuild the status counts they keep, and give the
            # planner fresh statistics (autovacuum may be off) so the pages use their indexes.
            for org in orgs.values():
                counters.recount(org.pk)
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    for table in ("tasks_app_task", "tasks_app_taskevent", "tasks_app_activityentry"):
                        cursor.execute(f"ANALYZE {table}")  # noqa: S608 (fixed names)
        elapsed = time.monotonic() - started
        rate = rows / elapsed if elapsed > 0 else 0
        self.stdout.write(
            f"Demo data ready: {created} new tasks ({tasks - created} already there), "
            f"{rows} rows in {elapsed:.1f} s ({rate:,.0f} rows/s). Users: admin, alice, bob, charlie "
            f"(password '{PASSWORD}')."
        )

    def _organizations(self) -> dict[str, Organization]:
        orgs = {}
        for slug, name in ORGANIZATIONS.items():
            orgs[slug], _ = Organization.objects.get_or_create(slug=slug, defaults={"name": name})
        return orgs

    def _users(self, orgs: dict[str, Organization]) -> None:
        User = get_user_model()
        for username, slug, role in USERS:
            user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
            is_admin = slug is None
            if created or not user.check_password(PASSWORD) or user.is_superuser != is_admin:
                user.set_password(PASSWORD)
                user.is_superuser = user.is_staff = is_admin
                user.save()
            if slug is not None:
                Membership.objects.update_or_create(user=user, organization=orgs[slug], defaults={"role": role})

    def _agents(self, orgs: dict[str, Organization]) -> dict[str, list[Agent]]:
        agents = {}
        for slug, names in AGENTS.items():
            agents[slug] = [
                Agent.objects.get_or_create(
                    organization=orgs[slug], name=name, defaults={"description": f"Demo agent {name}"}
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
        for start in range(0, count, batch):
            indexes = range(start, min(start + batch, count))
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
        bar.close()
        return created, rows


def _pick_status(i: int, rng: random.Random) -> str:
    if i < len(lifecycle.STATUSES) * 2:
        return lifecycle.STATUSES[i % len(lifecycle.STATUSES)]  # every status, whatever the count
    return rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0]


def _build(i, seed, count, base, span, org, org_agents, task_id, number):
    """One demo task with its activity, HITL request and created event (unsaved)."""
    rng = random.Random(seed * 10_000_019 + i)
    status = _pick_status(i, rng)
    customer = rng.choice(CUSTOMERS)
    title_t, text_t = rng.choice(REQUESTS)
    ticket = 1000 + number
    created_at = base - span * ((count - i) / max(count, 1)) - timedelta(seconds=rng.randint(0, 59))
    task = Task(
        public_id=task_id,
        organization=org,
        agent=rng.choice(org_agents),
        title=title_t.format(n=ticket, customer=customer),
        input_text=text_t.format(n=ticket, customer=customer),
        source=rng.choice(SOURCES),
        status=status,
        priority=rng.choice([10, 30, 50, 50, 50, 70, 90]),
        metadata={"customer": customer, "ticket": ticket, "region": rng.choice(["eu", "us", "apac"])},
        params={"temperature": rng.choice([0.0, 0.2, 0.7])} if rng.random() < 0.3 else {},
        created_at=created_at,
        updated_at=created_at,
        version=1,
    )
    if number > 5 and rng.random() < 0.12:
        task.parent_public = f"demo-{org.slug}-{rng.randint(1, number - 1):04d}"
    steps = rng.randint(2, len(PLAN_STEPS))
    if rng.random() < 0.4:
        done = steps if status == Status.COMPLETED else (0 if status == Status.PENDING else rng.randint(0, steps - 1))
        task.deep_planning = {
            "enabled": True,
            "tasks": [{"id": f"step-{k + 1}", "title": PLAN_STEPS[k], "completed": k < done} for k in range(steps)],
        }
    activity: list[ActivityEntry] = []
    hitl = None
    if status != Status.PENDING:
        task.started_at = created_at + timedelta(seconds=rng.randint(1, 90))
        task.prompt_tokens = rng.randint(200, 20_000)
        task.completion_tokens = rng.randint(50, 5_000)
        tools = rng.sample(TOOLS, rng.randint(0, 3))
        task.used_tools = tools
        task.updated_at = task.started_at
        task.last_executed_node_id = f"node-{rng.randint(1, 12)}"
        if lifecycle.is_terminal(status):
            task.duration = round(rng.uniform(2, 900), 3)
            task.finished_at = task.started_at + timedelta(seconds=task.duration)
            task.updated_at = task.finished_at
            if status == Status.COMPLETED:
                task.result = f"Done: {task.title}. {customer} has been informed."
            elif status in (Status.FAILED, Status.ERROR, Status.TIMED_OUT):
                task.status_reason = rng.choice(ERRORS)
            elif status == Status.STOPPED:
                task.is_manually_stopped = True
                task.status_reason = "Stopped by an operator"
        elif status == Status.PAUSED:
            task.paused_at = task.started_at + timedelta(seconds=rng.randint(5, 300))
            task.updated_at = task.paused_at
            hitl = HitlRequest(task=task, organization=org, requested_at=task.paused_at)
            if rng.random() < 0.5:
                # An action to approve, reject or amend.
                hitl.question = f"May I {rng.choice(['refund', 'email', 'escalate to'])} {customer} for #{ticket}?"
                hitl.details = f"{task.input_text}\nThe agent proposes the action below."
                hitl.proposed_payload = {
                    "action": "refund",
                    "order": ticket,
                    "amount": rng.randint(5, 500),
                    "currency": "EUR",
                }
            else:
                # A question with the answers the agent can act on (or a person's own words).
                hitl.question = f"How should I answer {customer} about #{ticket}?"
                hitl.details = f"{task.input_text}\nThe customer wrote twice; the agent is unsure what to offer."
                hitl.options = ["Apologise and refund", "Offer a voucher", "Escalate to billing"]
            # Some are due soon, some later, most whenever (the inbox sorts and filters by it).
            minutes = rng.choice([None, None, None, 45, 180, 60 * 30])
            hitl.deadline = base + timedelta(minutes=minutes) if minutes else None
        if i < RICH_UP_TO or i % RICH_EVERY == 0:
            activity = _activity(task, rng, tools)
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


def _activity(task: Task, rng: random.Random, tools: list[str]) -> list[ActivityEntry]:
    at: datetime = task.started_at
    entries = []

    def add(**values):
        nonlocal at
        at = at + timedelta(seconds=rng.randint(1, 20))
        entry = ActivityEntry(task=task, organization_id=task.organization_id, created_at=at, **values)
        entries.append(entry)
        return entry

    add(kind=ActivityKind.MESSAGE, role="user", content=task.input_text)
    add(kind=ActivityKind.REASONING, role="assistant", content="I should look up the context before acting.")
    for n, tool in enumerate(tools or ["search_tickets"]):
        call_id = f"call_{task.public_id}_{n}"
        call = add(
            kind=ActivityKind.TOOL_CALL,
            role="assistant",
            tool_name=tool,
            tool_call_id=call_id,
            tool_arguments={"query": task.title, "limit": rng.randint(1, 20)},
            prompt_tokens=rng.randint(100, 2000),
            completion_tokens=rng.randint(10, 300),
        )
        result = add(
            kind=ActivityKind.TOOL_RESULT,
            role="tool",
            tool_name=tool,
            tool_call_id=call_id,
            tool_output=_tool_output(rng),
        )
        result.seeded_call = call  # its call_id once both have ids (_insert)
    if task.status == Status.COMPLETED:
        add(kind=ActivityKind.MESSAGE, role="assistant", content=task.result or "")
    return entries


def _tool_output(rng: random.Random) -> dict:
    """Mostly successes; now and then a failure as agents report one."""
    if rng.random() > 0.1:
        return {"ok": True, "items": rng.randint(0, 12)}
    return {"ok": False, "error": rng.choice(["upstream timed out after 30 s", "429 Too Many Requests", "not found"])}


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
