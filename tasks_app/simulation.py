"""A stand-in for real agents: keeps demo tasks moving through their lifecycle via the services.

Each `step()` makes one change as an agent would: create a task, claim a pending one, append
activity to an executing one (with token counts), pause it for a HITL decision, or finish it
(completed, failed or error). HITL decisions are left to people in the browser.

`run()` paces steps at a rate. In the embedded default (in-memory channel layer) the simulator
must run inside the daphne process; pass that server's event loop and every step runs on the
loop's executor, so the services' on-commit `async_to_sync(group_send)` is scheduled on the
server's own loop (thread-safe) instead of poking its in-memory queues from a foreign thread.
"""

import asyncio
import logging
import random
import threading
import time

from asgiref.sync import sync_to_async
from django.db import connection

from . import services
from .lifecycle import Status
from .models import ActivityKind, Face, Organization, Task

logger = logging.getLogger(__name__)

TITLES = [
    "Answer ticket #{n}",
    "Refund order #{n}",
    "Summarize call #{n}",
    "Check invoice #{n}",
    "Research lead #{n}",
    "Triage alert #{n}",
]
TOOLS = ["search_tickets", "lookup_order", "issue_refund", "send_email", "web_search", "run_sql"]
AGENT_NAMES = ["support-bot", "billing-agent", "research-agent", "ops-agent"]
# Below this many pending tasks the simulator creates new work more often.
MIN_QUEUE = 5
PICK_FROM = 20


class AgentSimulator:
    """One simulated fleet of agents over some organizations (all when none are named)."""

    def __init__(self, *, organizations: list[str] | None = None, seed: int | None = None, actor=None) -> None:
        self.slugs = organizations
        self.rng = random.Random(seed)
        self.actor = actor or services.Actor.system("simulator", face=Face.SYSTEM)
        self.counter = 0

    def _organizations(self) -> list[Organization]:
        qs = Organization.objects.order_by("pk")
        if self.slugs:
            qs = qs.filter(slug__in=self.slugs)
        return list(qs)

    def _some(self, org: Organization, status: str) -> Task | None:
        # The newest few of a status (served by the organization+status index), then a random one.
        ids = list(
            Task.objects.filter(organization=org, status=status, deleted_at__isnull=True)
            .order_by("-created_at", "-id")
            .values_list("pk", flat=True)[:PICK_FROM]
        )
        return Task.objects.get(pk=self.rng.choice(ids)) if ids else None

    def step(self) -> str:
        """Make one change; returns a line saying what it did (or why it did nothing)."""
        orgs = self._organizations()
        if not orgs:
            return "no organizations (run seed_demo first)"
        org = self.rng.choice(orgs)
        self.counter += 1
        try:
            return self._step(org)
        except services.ServiceError as exc:
            # Another actor (a person, a second simulator) changed the task first: a normal race.
            return f"skipped: {exc.message}"

    def _step(self, org: Organization) -> str:
        roll = self.rng.random()
        pending = Task.objects.filter(organization=org, status=Status.PENDING, deleted_at__isnull=True)
        if roll < 0.12 or (roll < 0.35 and pending.count() < MIN_QUEUE):
            return self._create(org)
        if roll < 0.35:
            task = services.task_claim(organization=org, actor=self.actor)
            return f"claimed {task.pk}" if task else "queue empty"
        task = self._some(org, Status.EXECUTING)
        if task is None:
            return self._create(org)
        if roll < 0.70:
            return self._activity(task)
        if roll < 0.78:
            hitl = services.hitl_request(
                task=task,
                actor=self.actor,
                question=f"May I send the drafted reply for {task.display_title[:80]}?",
                details="The agent drafted an answer and wants a person to check it first.",
                options=["approve", "reject"],
                payload={"action": "send_email", "draft": "Hello, your request has been handled."},
            )
            return f"paused {task.pk} for HITL #{hitl.pk}"
        return self._finish(task)

    def _create(self, org: Organization) -> str:
        n = self.rng.randint(1000, 99999)
        task, _ = services.task_create(
            organization=org,
            actor=self.actor,
            agent=self.rng.choice(AGENT_NAMES),
            title=self.rng.choice(TITLES).format(n=n),
            input_text=f"Simulated request #{n}: please handle it.",
            source="simulator",
            priority=self.rng.choice([10, 30, 50, 50, 70, 90]),
            deep_planning={
                "enabled": True,
                "tasks": [
                    {"id": f"step-{k}", "title": title, "completed": False}
                    for k, title in enumerate(["Understand", "Act", "Report"], start=1)
                ],
            },
        )
        return f"created {task.pk}"

    def _activity(self, task: Task) -> str:
        tool = self.rng.choice(TOOLS)
        call_id = f"call_{self.counter}"
        kind = self.rng.choice(["tool", "reasoning", "message"])
        if kind == "tool":
            entries = [
                {
                    "kind": ActivityKind.TOOL_CALL,
                    "role": "assistant",
                    "tool_name": tool,
                    "tool_call_id": call_id,
                    "tool_arguments": {"query": task.display_title[:80]},
                },
                {
                    "kind": ActivityKind.TOOL_RESULT,
                    "role": "tool",
                    "tool_name": tool,
                    "tool_call_id": call_id,
                    "tool_output": {"ok": True, "items": self.rng.randint(0, 9)},
                },
            ]
        elif kind == "reasoning":
            entries = [{"kind": ActivityKind.REASONING, "role": "assistant", "content": "Checking the next step."}]
        else:
            entries = [{"kind": ActivityKind.MESSAGE, "role": "assistant", "content": "Working on it."}]
        services.append_activity(task=task, actor=self.actor, entries=entries)
        services.report_metrics(
            task=task.pk,
            actor=self.actor,
            prompt_tokens=task.prompt_tokens + self.rng.randint(100, 1500),
            completion_tokens=task.completion_tokens + self.rng.randint(20, 400),
            used_tools=[tool] if kind == "tool" else None,
        )
        return f"activity on {task.pk} ({kind})"

    def _finish(self, task: Task) -> str:
        roll = self.rng.random()
        plan = dict(task.deep_planning or {})
        if plan.get("tasks"):
            plan["tasks"] = [{**item, "completed": True} for item in plan["tasks"] if isinstance(item, dict)]
        if roll < 0.75:
            services.task_update(
                task=task,
                actor=self.actor,
                status=Status.COMPLETED,
                result=f"Done: {task.display_title[:200]}",
                deep_planning=plan or None,
            )
        else:
            status = Status.FAILED if roll < 0.92 else Status.ERROR
            services.task_update(task=task, actor=self.actor, status=status, status_reason="Simulated failure")
            return f"{status} {task.pk}"
        return f"completed {task.pk}"

    def run(
        self,
        rate: float,
        stop_event: threading.Event,
        *,
        duration: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        on_step=None,
    ) -> int:
        """Step about `rate` times a second until stop_event is set or duration elapses; returns steps."""
        interval = 1.0 / rate if rate > 0 else 1.0
        deadline = time.monotonic() + duration if duration is not None else None
        steps = 0
        next_at = time.monotonic()
        while not stop_event.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                if loop is not None:
                    call = sync_to_async(self._step_and_close, thread_sensitive=False)()
                    line = asyncio.run_coroutine_threadsafe(call, loop).result()
                else:
                    line = self._step_and_close()
            except Exception:
                # A simulator must not die on one bad step (database restarting, a lock timeout).
                logger.exception("simulator step failed")
                line = "error"
            steps += 1
            if on_step is not None:
                on_step(line)
            next_at += interval
            wait = next_at - time.monotonic()
            if wait < 0:
                next_at = time.monotonic()  # fell behind: do not burst to catch up
                wait = 0
            if stop_event.wait(wait):
                break
        return steps

    def _step_and_close(self) -> str:
        try:
            return self.step()
        finally:
            # Hand the connection back (to the pool on PostgreSQL): these threads are long-lived.
            # Inside an outer transaction (a test) the connection is not ours to close.
            if not connection.in_atomic_block:
                connection.close()


def start_in_background(rate: float, loop: asyncio.AbstractEventLoop | None = None) -> threading.Thread:
    """Run the simulator in a daemon thread of this process (used by dashboard/asgi.py)."""
    stop = threading.Event()
    simulator = AgentSimulator()
    thread = threading.Thread(
        target=simulator.run, args=(rate, stop), kwargs={"loop": loop}, name="taskdesk-simulator", daemon=True
    )
    thread.stop_event = stop  # type: ignore[attr-defined]
    thread.start()
    return thread
