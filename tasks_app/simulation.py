"""Simulated agents that drive a running Taskdesk over HTTP, through every agent-facing face.

Per organization, four agents work the way real teams would run them:

- an **xpander agent** (`x-api-key`): creates executions with `POST /xpander/agent-execution/<agent>`,
  starts, advances (deep-planning progress) and finishes them with `PATCH .../<id>/update`, reports
  token counts through `POST /xpander/agents-metrics/<agent>/execution`, and now and then records
  a whole run executed elsewhere with `POST .../<agent>/report_task`.
- an **Agentex agent** (Bearer): creates tasks with the agent's JSON-RPC `task/create` (they start
  RUNNING), reports progress with `PUT /agentex/tasks/<id>` (`merge_params`, `task_metadata`) and
  ends them with `POST /agentex/tasks/<id>/complete|fail|timeout` or the agent's `task/cancel`.
- a **JSON-RPC queue worker** (`POST /rpc`, a ClaudeBench worker): registers and heartbeats
  (`system.register`, `system.heartbeat`), `task.create` feeds the queue, `task.claim` takes the
  next task, `task.update` reports progress metadata (kept under the seed's 20 per minute) and
  `task.complete` (or `task.update` to failed) ends it.
- a **native REST worker** (`/api/v1/`): files work and sub-tasks, claims, appends activity (a tool
  call and its result as one batch), reports metrics, pauses for a person with
  `POST /tasks/<id>/hitl` and finishes with `PATCH`. A paused task waits for a person in the
  browser: the worker polls `GET /tasks/<id>/hitl`; approved or answered -> it carries on (with
  the answer or chosen option) and completes; dismissed -> it carries on without the action it
  proposed; rejected or withdrawn -> the task already ended. It also adopts executing tasks nobody has
  touched for a while (the seed's, or those a stopped simulator left behind).

Writes are paced to `rate` changes per second in total. A 429 parks that agent until its
`Retry-After` has passed; any other refusal (409: a person moved the task first, 404: deleted)
is logged and the agent lets that task go; a network error parks the agent for a moment. Nothing
here imports Django: the simulator is just another HTTP client of the server.
"""

import abc
import contextlib
import logging
import random
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

logger = logging.getLogger(__name__)

FACES = ("xpander", "agentex", "jsonrpc", "api")
AGENT_NAMES = {"xpander": "support-bot", "agentex": "research-agent", "jsonrpc": "queue-worker", "api": "billing-agent"}

TITLES = [
    "Answer ticket #{n}",
    "Refund order #{n}",
    "Summarize call #{n}",
    "Check invoice #{n}",
    "Research lead #{n}",
    "Triage alert #{n}",
]
TOOLS = ["search_tickets", "lookup_order", "issue_refund", "send_email", "web_search", "run_sql"]
PLAN = ["Understand the request", "Gather the facts", "Act", "Report back"]

MAX_JOBS = 3  # tasks one agent works on at once
MAX_WAITING = 4  # paused tasks one native worker waits on at once (each is polled)
QUEUE_TARGET = 6  # producers top the pending queue up to about this many tasks
QUEUE_CHECK_EVERY = 5.0  # seconds between looks at the queue length
STALE_AFTER = 120.0  # seconds without a change before an executing task counts as abandoned
HITL_CHANCE = 0.2  # share of a native worker's progress steps that ask a person first
JSONRPC_UPDATES_PER_MINUTE = 18  # seed 002 allows 20 task.update a minute per token: leave room
NETWORK_BACKOFF = 2.0
IDLE_WAIT = 0.2  # after a step that wrote nothing, so reads alone never spin


class Stopped(Exception):
    """The run was asked to stop while waiting for its next write slot."""


class Parked(Exception):
    """Rate limited or unreachable: this agent waits until `parked_until`."""


class Refused(Exception):
    """The server said no (4xx other than 429, or a JSON-RPC error)."""

    def __init__(self, status: int | str, detail: Any):
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class SimulatorError(Exception):
    """The run cannot start (server unreachable, tokens refused)."""


@dataclass
class Job:
    """One task an agent is working on."""

    id: str
    title: str
    steps_left: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    plan_done: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    waiting: bool = False  # paused for a person's decision
    hitl_asked: bool = False
    hitl_checked_at: float = 0.0


@dataclass
class Stats:
    changes: int = 0
    refused: int = 0
    rate_limited: int = 0
    network_errors: int = 0
    by_face: Counter = field(default_factory=Counter)
    started_at: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return max(time.monotonic() - self.started_at, 1e-9)

    @property
    def rate(self) -> float:
        return self.changes / self.elapsed

    def summary(self) -> str:
        faces = ", ".join(f"{face} {self.by_face[face]}" for face in FACES)
        return (
            f"{self.changes} changes in {self.elapsed:.0f} s ({self.rate:.2f}/s; {faces}); "
            f"{self.refused} refused, {self.rate_limited} rate-limited, {self.network_errors} network errors"
        )


class Pacer:
    """Hands out write slots `1/rate` apart; never bursts to catch up after falling behind."""

    def __init__(self, rate: float, stop: threading.Event):
        self.interval = 1.0 / rate
        self.stop = stop
        self.next_at = time.monotonic()

    def wait(self) -> None:
        delay = self.next_at - time.monotonic()
        if delay > 0 and self.stop.wait(delay):
            raise Stopped
        if self.stop.is_set():
            raise Stopped
        self.next_at = max(self.next_at, time.monotonic() - self.interval) + self.interval


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return body.get("detail", body) if isinstance(body, dict) else body


def _retry_after(value: Any, default: float = 5.0) -> float:
    try:
        return max(float(value), 0.5)
    except (TypeError, ValueError):
        return default


class Agent(abc.ABC):
    """One simulated agent: one face, one organization, one token, a few tasks in flight."""

    face = ""

    def __init__(self, sim: "Simulator", org: str, token: str):
        self.sim = sim
        self.org = org
        self.token = token
        self.name = AGENT_NAMES[self.face]
        self.rng = sim.rng
        self.jobs: list[Job] = []
        self.parked_until = 0.0
        self.current: Job | None = None  # the task the running step is about (dropped if refused)

    def __str__(self) -> str:
        return f"{self.org}/{self.face}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def step(self) -> None:
        self.current = None
        try:
            self.act()
        except Refused as exc:
            if self.current is not None:
                self.forget(self.current, f"refused ({exc.status})")

    @abc.abstractmethod
    def act(self) -> None:
        """Make one change the way this kind of agent does."""

    def request(self, method: str, path: str, *, write: bool = True, **kwargs) -> httpx.Response:
        return self.sim.request(self, method, path, write=write, **kwargs)

    def changed(self, what: str) -> None:
        self.sim.count(self, what)

    def forget(self, job: Job, why: str) -> None:
        if job in self.jobs:
            self.jobs.remove(job)
            logger.info("%s lets task %s go: %s", self, job.id, why)

    def working(self) -> list[Job]:
        return [job for job in self.jobs if not job.waiting]

    def pick(self) -> Job | None:
        jobs = self.working()
        self.current = self.rng.choice(jobs) if jobs else None
        return self.current

    def wants_new_work(self, job: Job | None, chance: float) -> bool:
        if job is None or (len(self.working()) < MAX_JOBS and self.rng.random() < chance):
            self.current = None  # a refusal of new work costs none of the tasks in flight
            return True
        return False

    def new_job(self, task_id: str, title: str, **kwargs) -> Job:
        job = Job(id=task_id, title=title, steps_left=self.rng.randint(2, 5), **kwargs)
        self.jobs.append(job)
        self.current = job
        return job

    def hex(self) -> str:
        return f"{self.rng.getrandbits(40):010x}"

    def title(self) -> tuple[str, int]:
        n = self.rng.randint(1000, 99999)
        return self.rng.choice(TITLES).format(n=n), n

    def add_tokens(self, job: Job) -> None:
        job.prompt_tokens += self.rng.randint(100, 1500)
        job.completion_tokens += self.rng.randint(20, 400)

    def plan(self, done: int) -> dict[str, Any]:
        return {
            "enabled": True,
            "tasks": [
                {"id": f"step-{k}", "title": title, "completed": k <= done} for k, title in enumerate(PLAN, start=1)
            ],
        }

    def outcome(self) -> str:
        roll = self.rng.random()
        return "completed" if roll < 0.75 else "failed" if roll < 0.92 else "error"


class XpanderAgent(Agent):
    face = "xpander"

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.token}  # the xpander SDK's header

    def act(self) -> None:
        job = self.pick()
        if self.wants_new_work(job, 0.3):
            if self.rng.random() < 0.1:
                return self.report_external_run()
            return self.start()
        if job.steps_left > 0:
            return self.progress(job)
        return self.finish(job)

    def update(self, job: Job, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", f"/xpander/agent-execution/{job.id}/update", json=body).json()

    def start(self) -> None:
        title, n = self.title()
        body = {
            "input": {"text": f"Customer request #{n}: please handle it."},
            "title": title,
            "source": "simulator",
            "deep_planning": self.plan(0),
        }
        task = self.request("POST", f"/xpander/agent-execution/{self.name}", json=body).json()
        job = self.new_job(task["id"], title)
        self.changed(f"created {job.id}")
        # An xpander worker picks its execution up at once.
        self.update(job, {"status": "executing", "internal_status": PLAN[0]})
        self.changed(f"executing {job.id}")

    def progress(self, job: Job) -> None:
        job.steps_left -= 1
        if self.rng.random() < 0.5 and job.plan_done < len(PLAN):
            job.plan_done += 1
            status = PLAN[min(job.plan_done, len(PLAN) - 1)]
            self.update(job, {"deep_planning": self.plan(job.plan_done), "internal_status": status})
            self.changed(f"plan step {job.plan_done} of {job.id}")
            return
        self.add_tokens(job)
        tokens = {"prompt_tokens": job.prompt_tokens, "completion_tokens": job.completion_tokens}
        body = {"execution_id": job.id, "llm_tokens": {"worker": tokens}, "api_calls_made": [self.rng.choice(TOOLS)]}
        self.request("POST", f"/xpander/agents-metrics/{self.name}/execution", json=body)
        self.changed(f"metrics of {job.id}")

    def finish(self, job: Job) -> None:
        status = self.outcome()
        body: dict[str, Any] = {"status": status}
        if status == "completed":
            body.update(result=f"Done: {job.title}", deep_planning=self.plan(len(PLAN)))
        else:
            body["result"] = "The upstream system did not answer." if status == "failed" else "Tool crashed."
        self.update(job, body)
        self.jobs.remove(job)
        self.changed(f"{status} {job.id}")

    def report_external_run(self) -> None:
        title, n = self.title()
        ok = self.rng.random() < 0.8
        body = {
            "input": f"Customer request #{n} (handled offline)",
            "llm_response": [
                {"role": "user", "content": f"Customer request #{n}"},
                {"role": "assistant", "content": "Handled: " + title if ok else "Could not finish: " + title},
            ],
            "tokens": {"prompt_tokens": self.rng.randint(200, 3000), "completion_tokens": self.rng.randint(50, 600)},
            "is_success": ok,
            "result": f"Done: {title}" if ok else None,
            "duration": round(self.rng.uniform(2, 90), 1),
            "used_tools": [self.rng.choice(TOOLS)],
        }
        task = self.request("POST", f"/xpander/agent-execution/{self.name}/report_task", json=body).json()
        self.changed(f"reported external run {task['id']}")


class AgentexAgent(Agent):
    face = "agentex"

    def act(self) -> None:
        job = self.pick()
        if self.wants_new_work(job, 0.3):
            return self.start()
        if job.steps_left > 0:
            return self.progress(job)
        return self.finish(job)

    def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": self.hex(), "method": method, "params": params}
        return self.request("POST", f"/agentex/agents/name/{self.name}/rpc", json=body).json()["result"]

    def start(self) -> None:
        title, n = self.title()
        metadata = {"source": "simulator", "topic": title, "progress": 0}
        # task/create is get-or-create by name: the name must not repeat across runs of one --seed.
        task = self.rpc(
            "task/create",
            {"name": f"sim-{self.org}-{uuid.uuid4().hex[:12]}", "params": {"request": n}, "task_metadata": metadata},
        )
        self.new_job(task["id"], title, metadata=metadata)
        self.changed(f"created {task['id']} (RUNNING)")

    def progress(self, job: Job) -> None:
        job.steps_left -= 1
        if self.rng.random() < 0.5:
            body = {"merge_params": {"last_tool": self.rng.choice(TOOLS), "attempt": job.plan_done + 1}}
        else:
            # task_metadata replaces the whole object: send the agent's full copy.
            job.metadata = {**job.metadata, "progress": min(95, job.metadata.get("progress", 0) + 25)}
            body = {"task_metadata": job.metadata}
        job.plan_done += 1
        self.request("PUT", f"/agentex/tasks/{job.id}", json=body)
        self.changed(f"progress on {job.id}")

    def finish(self, job: Job) -> None:
        roll = self.rng.random()
        if roll < 0.07:
            self.rpc("task/cancel", {"task_id": job.id})
            action = "cancel"
        else:
            action = "complete" if roll < 0.75 else "fail" if roll < 0.92 else "timeout"
            reason = {"complete": "Answer delivered.", "fail": "The source site refused us.", "timeout": "Too slow."}
            self.request("POST", f"/agentex/tasks/{job.id}/{action}", json={"reason": reason[action]})
        self.jobs.remove(job)
        self.changed(f"{action} {job.id}")


class QueueMixin:
    """Producers keep the organization's pending queue around QUEUE_TARGET tasks."""

    queue_length: int | None = None
    queue_checked_at: float = 0.0

    def queue_short(self) -> bool:
        now = time.monotonic()
        if self.queue_length is None or now - self.queue_checked_at > QUEUE_CHECK_EVERY:
            self.queue_length = self.count_pending()
            self.queue_checked_at = now
        return self.queue_length < QUEUE_TARGET

    @abc.abstractmethod
    def count_pending(self) -> int:
        """Pending tasks in this agent's queue, read through its own face."""


class JsonRpcWorker(QueueMixin, Agent):
    face = "jsonrpc"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.updates: deque[float] = deque()
        self.worker_id = f"{self.name}-{self.hex()[:8]}"
        self.beat_at: float | None = None

    def keep_registered(self) -> None:
        """ClaudeBench workers register once, then heartbeat well inside the 30 s TTL."""
        now = time.monotonic()
        if self.beat_at is not None and now - self.beat_at < 10:
            return
        beat = {"instanceId": self.worker_id}
        alive = self.beat_at is not None and self.rpc("system.heartbeat", beat, write=False)["alive"]
        if not alive:
            self.rpc("system.register", {"id": self.worker_id, "roles": ["worker"]}, write=False)
        self.beat_at = now

    def act(self) -> None:
        job = self.pick()
        if self.wants_new_work(job, 0.4):
            return self.take_work()
        if job.steps_left > 0:
            return self.progress(job)
        return self.finish(job)

    def rpc(self, method: str, params: dict[str, Any], *, write: bool = True) -> Any:
        body = {"jsonrpc": "2.0", "id": self.hex(), "method": method, "params": params}
        answer = self.request("POST", "/rpc", json=body, write=write).json()
        if "error" in answer:
            self.sim.refused(self, "POST", f"/rpc {method}", answer["error"]["code"], answer["error"]["message"])
        return answer["result"]

    def count_pending(self) -> int:
        return len(self.rpc("task.list", {"status": "pending", "limit": QUEUE_TARGET}, write=False)["tasks"])

    def update_allowed(self) -> bool:
        now = time.monotonic()
        while self.updates and now - self.updates[0] > 60:
            self.updates.popleft()
        return len(self.updates) < JSONRPC_UPDATES_PER_MINUTE

    def update(self, job: Job, updates: dict[str, Any]) -> None:
        self.updates.append(time.monotonic())
        self.rpc("task.update", {"id": job.id, "updates": updates})

    def take_work(self) -> None:
        if self.queue_short() and self.rng.random() < 0.5:
            return self.produce()
        self.keep_registered()
        claim = self.rpc("task.claim", {"workerId": self.worker_id})
        if not claim["claimed"]:
            self.queue_length = 0
            return self.produce()
        task = claim["task"]
        self.new_job(task["id"], task["text"])
        self.changed(f"claimed {task['id']}")

    def produce(self) -> None:
        title, n = self.title()
        params = {"text": title, "priority": self.rng.choice([10, 30, 50, 50, 70, 90]), "metadata": {"ticket": n}}
        task = self.rpc("task.create", params)
        self.queue_length = (self.queue_length or 0) + 1
        self.changed(f"queued {task['id']}")

    def progress(self, job: Job) -> None:
        job.steps_left -= 1
        if not self.update_allowed():
            job.steps_left = 0  # out of task.update budget: wrap the task up instead
            return self.finish(job)
        job.plan_done += 1
        self.update(job, {"metadata": {"progress": min(95, job.plan_done * 25), "stage": PLAN[job.plan_done % 4]}})
        self.changed(f"progress on {job.id}")

    def finish(self, job: Job) -> None:
        if self.rng.random() < 0.15 and self.update_allowed():
            self.update(job, {"status": "failed", "metadata": {"error": "Downstream service unavailable"}})
            status = "failed"
        else:
            result = {"answer": f"Done: {job.title}", "ok": True}
            self.rpc("task.complete", {"taskId": job.id, "workerId": self.worker_id, "result": result})
            status = "completed"
        self.jobs.remove(job)
        self.changed(f"{status} {job.id}")


class NativeWorker(QueueMixin, Agent):
    face = "api"

    def act(self) -> None:
        if self.check_decisions():
            return
        job = self.pick()
        if self.wants_new_work(job, 0.35):
            return self.take_work()
        if job.steps_left > 0:
            return self.progress(job)
        return self.finish(job)

    def count_pending(self) -> int:
        params = {"status": "pending", "limit": QUEUE_TARGET}
        return len(self.request("GET", "/api/v1/tasks", params=params, write=False).json()["items"])

    # --- Human in the loop -------------------------------------------------------------------

    def check_decisions(self) -> bool:
        """Poll the paused task checked longest ago; True when the step wrote a change."""
        now = time.monotonic()
        due = [job for job in self.jobs if job.waiting and now - job.hitl_checked_at >= self.sim.hitl_poll]
        if not due:
            return False
        job = min(due, key=lambda j: j.hitl_checked_at)
        self.current = job
        job.hitl_checked_at = now
        hitl = self.request("GET", f"/api/v1/tasks/{job.id}/hitl", write=False).json()
        if hitl["decision"] is None:
            return False
        decided_by = hitl["decided_by"]
        if hitl["decision"] == "approved":
            action = hitl.get("effective_payload") or {}
            note = f"Approved by {decided_by}; going ahead with {action.get('action', 'the plan')}."
        elif hitl["decision"] == "responded":
            note = f"{decided_by} answered {hitl['answer']!r}; going ahead with that."
        elif hitl["decision"] == "dismissed":
            # Nothing to act on: the proposed action is skipped, the rest of the work goes on.
            note = f"{decided_by} dismissed the request; skipping the proposed action."
        else:
            # The decision already ended the task (rejected), or it left its pause another way.
            self.forget(job, f"HITL {hitl['decision']} by {decided_by}")
            return False
        job.waiting = False
        job.steps_left = 1
        entry = {"kind": "message", "role": "assistant", "content": note}
        self.request("POST", f"/api/v1/tasks/{job.id}/activity", json=entry)
        self.changed(f"resumed {job.id} after the decision ({hitl['decision']}) of {decided_by}")
        return True

    def ask_a_person(self, job: Job) -> None:
        if self.rng.random() < 0.5:
            body = {
                "question": f"May I send the drafted reply for {job.title}?",
                "details": "The agent drafted an answer and wants a person to check it first.",
                "payload": {"action": "send_email", "to": "customer@example.com", "draft": "Your request was handled."},
            }
        else:
            body = {
                "question": f"Which tone should the reply for {job.title} take?",
                "details": "The customer wrote twice; the agent is unsure how formal to be.",
                "options": ["Formal", "Friendly", "Brief"],
            }
        if self.rng.random() < 0.5:
            minutes = self.rng.choice([20, 90, 600])
            body["deadline"] = (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()
        self.request("POST", f"/api/v1/tasks/{job.id}/hitl", json=body)
        job.waiting = job.hitl_asked = True
        job.hitl_checked_at = time.monotonic()
        self.changed(f"paused {job.id} for a person")

    # --- Work --------------------------------------------------------------------------------

    def take_work(self) -> None:
        if self.queue_short() and self.rng.random() < 0.4:
            return self.produce()
        # Now and then, before the queue: executing tasks whose agent went away would never end.
        if self.rng.random() < 0.15 and self.adopt():
            return
        response = self.request("POST", "/api/v1/tasks/claim", json={})
        if response.status_code == 200:
            task = response.json()
            self.new_job(task["id"], task["title"], prompt_tokens=task["prompt_tokens"],
                         completion_tokens=task["completion_tokens"])  # fmt: skip
            self.changed(f"claimed {task['id']}")
            return
        self.queue_length = 0
        if not self.adopt():
            self.produce()

    def produce(self) -> None:
        title, n = self.title()
        body: dict[str, Any] = {
            "title": title,
            "input_text": f"Customer request #{n}: please handle it.",
            "agent": self.name,
            "source": "simulator",
            "priority": self.rng.choice([10, 30, 50, 50, 70, 90]),
            "deep_planning": self.plan(0),
        }
        parent = self.rng.choice(self.working()) if self.working() and self.rng.random() < 0.3 else None
        if parent is not None:
            body["parent_id"] = parent.id
            body["title"] = f"Follow-up of {parent.title}"[:200]
        task = self.request("POST", "/api/v1/tasks", json=body).json()
        self.queue_length = (self.queue_length or 0) + 1
        self.changed(f"filed {task['id']}" + (f" under {parent.id}" if parent else ""))

    def adopt(self) -> bool:
        """Take over an executing task nobody has changed for STALE_AFTER seconds."""
        params = {"status": "executing", "sort": "updated", "limit": 10}
        items = self.request("GET", "/api/v1/tasks", params=params, write=False).json()["items"]
        mine = {job.id for agent in self.sim.agents for job in agent.jobs}
        server_now = self.sim.server_time()
        for task in items:
            if task["id"] in mine:
                continue
            age = server_now - _timestamp(task["updated_at"])
            if age < STALE_AFTER:
                break  # sorted oldest first: the rest are fresher
            job = self.new_job(task["id"], task["title"] or task["id"], prompt_tokens=task["prompt_tokens"],
                               completion_tokens=task["completion_tokens"])  # fmt: skip
            entry = {"kind": "reasoning", "role": "assistant", "content": "Picking this task up again."}
            self.request("POST", f"/api/v1/tasks/{job.id}/activity", json=entry)
            self.changed(f"adopted {job.id}")
            return True
        return False

    def progress(self, job: Job) -> None:
        job.steps_left -= 1
        roll = self.rng.random()
        waiting = sum(1 for j in self.jobs if j.waiting)
        if roll < HITL_CHANCE and not job.hitl_asked and waiting < MAX_WAITING:
            return self.ask_a_person(job)
        roll = self.rng.random()
        if roll < 0.3:
            self.add_tokens(job)
            body = {
                "prompt_tokens": job.prompt_tokens,
                "completion_tokens": job.completion_tokens,
                "used_tools": [self.rng.choice(TOOLS)],
            }
            self.request("POST", f"/api/v1/tasks/{job.id}/metrics", json=body)
            return self.changed(f"metrics of {job.id}")
        tool = self.rng.choice(TOOLS)
        call_id = f"call_{self.hex()}"
        entries: list[dict[str, Any]] | dict[str, Any]
        if roll < 0.75:
            entries = [
                {"kind": "tool_call", "role": "assistant", "tool_name": tool, "tool_call_id": call_id,
                 "tool_arguments": {"query": job.title[:80]}},
                {"kind": "tool_result", "role": "tool", "tool_name": tool, "tool_call_id": call_id,
                 "tool_output": {"ok": True, "items": self.rng.randint(0, 9)}},
            ]  # fmt: skip
        else:
            entries = {"kind": "reasoning", "role": "assistant", "content": "Checking the next step."}
        self.request("POST", f"/api/v1/tasks/{job.id}/activity", json=entries)
        self.changed(f"activity on {job.id}")

    def finish(self, job: Job) -> None:
        status = self.outcome()
        body: dict[str, Any] = {"status": status}
        if status == "completed":
            body.update(result=f"Done: {job.title}", deep_planning=self.plan(len(PLAN)))
        else:
            body["status_reason"] = "The refund API refused the request." if status == "failed" else "Tool crashed."
        self.request("PATCH", f"/api/v1/tasks/{job.id}", json=body)
        self.jobs.remove(job)
        self.changed(f"{status} {job.id}")


AGENT_CLASSES: dict[str, type[Agent]] = {
    "xpander": XpanderAgent,
    "agentex": AgentexAgent,
    "jsonrpc": JsonRpcWorker,
    "api": NativeWorker,
}


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Simulator:
    """A fleet of agents over some organizations, driving the server at `base_url`.

    `tokens` maps an organization slug to the raw token of each face (`FACES`); one token may
    serve several faces (rate limits are counted per face and operation anyway).
    """

    def __init__(
        self,
        base_url: str,
        tokens: dict[str, dict[str, str]],
        *,
        rate: float = 2.0,
        seed: int | None = None,
        hitl_poll: float = 3.0,
        http: httpx.Client | None = None,
        on_change: Callable[[str], None] | None = None,
    ):
        if rate <= 0:
            raise ValueError("rate must be above 0")
        self.base_url = base_url.rstrip("/")
        self.rate = rate
        self.rng = random.Random(seed)
        self.hitl_poll = hitl_poll
        self.http = http or httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(15.0, connect=5.0), headers={"User-Agent": "taskdesk-sim"}
        )
        self.on_change = on_change
        self.stats = Stats()
        self.stop_event = threading.Event()
        self.pacer = Pacer(rate, self.stop_event)
        self.agents: list[Agent] = [
            AGENT_CLASSES[face](self, org, faces[face]) for org, faces in tokens.items() for face in FACES
        ]
        self._clock_offset: float | None = None

    def close(self) -> None:
        self.http.close()

    # --- HTTP ------------------------------------------------------------------------------

    def request(self, agent: Agent, method: str, path: str, *, write: bool, **kwargs) -> httpx.Response:
        """One call; a write first waits for its slot. The caller counts the change (`count`)."""
        if write:
            self.pacer.wait()
        try:
            response = self.http.request(method, path, headers=agent.headers, **kwargs)
        except httpx.HTTPError as exc:
            self.stats.network_errors += 1
            agent.parked_until = time.monotonic() + NETWORK_BACKOFF
            logger.warning("%s: %s %s failed (%s); retrying in %.0f s", agent, method, path, exc, NETWORK_BACKOFF)
            raise Parked from None
        self._note_clock(response)
        if response.status_code == 429:
            wait = _retry_after(response.headers.get("Retry-After"))
            self.stats.rate_limited += 1
            agent.parked_until = time.monotonic() + wait
            logger.info("%s: rate limited on %s %s; waiting %.0f s as Retry-After says", agent, method, path, wait)
            raise Parked
        if response.status_code >= 400:
            self.refused(agent, method, path, response.status_code, _detail(response))
        return response

    def refused(self, agent: Agent, method: str, path: str, status: int | str, detail: Any) -> None:
        self.stats.refused += 1
        logger.info("%s: %s %s refused: %s %s", agent, method, path, status, str(detail)[:300])
        raise Refused(status, detail)

    def count(self, agent: Agent, what: str) -> None:
        self.stats.changes += 1
        self.stats.by_face[agent.face] += 1
        if self.on_change is not None:
            self.on_change(f"{agent}: {what}")

    def _note_clock(self, response: httpx.Response) -> None:
        # The server's clock, to judge "stale" tasks without trusting this machine's clock.
        if self._clock_offset is None and response.headers.get("Date"):
            with contextlib.suppress(TypeError, ValueError):
                self._clock_offset = parsedate_to_datetime(response.headers["Date"]).timestamp() - time.time()

    def server_time(self) -> float:
        return time.time() + (self._clock_offset or 0.0)

    # --- Running ---------------------------------------------------------------------------

    def wait_for_server(self, timeout: float = 30.0) -> bool:
        """True once the server answers anything over HTTP (polled until `timeout`)."""
        deadline = time.monotonic() + timeout
        while not self.stop_event.is_set():
            try:
                self.http.get("/login/", timeout=2.0)
                return True
            except httpx.HTTPError:
                if time.monotonic() >= deadline:
                    return False
                self.stop_event.wait(0.5)
        return False

    def check_tokens(self) -> None:
        """Each distinct token must be accepted (the native API takes every token)."""
        bad = []
        for token in sorted({agent.token for agent in self.agents}):
            agent = next(a for a in self.agents if a.token == token)
            headers = {"Authorization": f"Bearer {token}"}
            try:
                response = self.http.get("/api/v1/tasks", params={"limit": 1}, headers=headers)
            except httpx.HTTPError as exc:
                raise SimulatorError(f"Cannot reach {self.base_url}: {exc}") from None
            if response.status_code == 401:
                bad.append(agent.org)
        if bad:
            raise SimulatorError(f"The server refused the token of: {', '.join(sorted(set(bad)))}")

    def stop(self) -> None:
        self.stop_event.set()

    def run(
        self,
        duration: float | None = None,
        *,
        report: Callable[[Stats], None] | None = None,
        report_every: float = 60.0,
    ) -> Stats:
        """Make changes until `stop()` is called or `duration` seconds pass; returns the stats."""
        self.stats = Stats()
        self.pacer = Pacer(self.rate, self.stop_event)
        deadline = time.monotonic() + duration if duration is not None else None
        next_report = time.monotonic() + report_every
        if deadline is not None:
            timer = threading.Timer(duration, self.stop_event.set)
            timer.daemon = True
            timer.start()
        while not self.stop_event.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if report is not None and now >= next_report:
                report(self.stats)
                next_report = now + report_every
            ready = [agent for agent in self.agents if agent.parked_until <= now]
            if not ready:
                soonest = min(agent.parked_until for agent in self.agents)
                self.stop_event.wait(min(max(soonest - now, 0.05), 1.0))
                continue
            agent = self.rng.choice(ready)
            before = self.stats.changes
            try:
                agent.step()
            except (Stopped, Parked):
                pass
            except Exception:
                # A simulator must not die on one surprise (an unexpected body, a server bug).
                logger.exception("%s: step failed", agent)
                agent.parked_until = time.monotonic() + NETWORK_BACKOFF
            if self.stats.changes == before:
                self.stop_event.wait(min(IDLE_WAIT, self.pacer.interval))
        if deadline is not None:
            timer.cancel()
        return self.stats

    def waiting_for_people(self) -> int:
        return sum(1 for agent in self.agents for job in agent.jobs if job.waiting)
