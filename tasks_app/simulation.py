"""Simulated agents that drive a running Taskdesk over HTTP, through every agent-facing face.

Per organization, four agents work the way real teams run them, each named after one of the
organization's agents (`scenarios.FACE_AGENTS`: acme's support-bot on xpander, research-agent on
Agentex, billing-agent on the native API, a triage worker on the JSON-RPC queue) and each doing
that agent's kinds of work (`scenarios`): a refund is titled, prompted, planned, tool-called,
questioned and concluded as that refund, with token counts, a source and now and then a failure.

- an **xpander agent** (`x-api-key`): creates executions with `POST /xpander/agent-execution/<agent>`
  (title, prompt, source, deep-planning checklist), starts them, ticks the checklist and names the
  tool it is calling (`PATCH .../<id>/update`), reports token counts and tools through
  `POST /xpander/agents-metrics/<agent>/execution`, and finishes with a result or a failure; now
  and then it records a whole run executed elsewhere with `POST .../<agent>/report_task`.
- an **Agentex agent** (Bearer): creates tasks with the agent's JSON-RPC `task/create` (they start
  RUNNING; the name is the title Agentex shows; `task_metadata` says the source), reports progress
  with `PUT /agentex/tasks/<id>` (`merge_params`: the step and the tool call; `task_metadata`:
  progress, the source and its token totals as `usage`, the only place Agentex's task has for
  them) and ends them with `POST /agentex/tasks/<id>/complete|fail|timeout` (the reason says why)
  or `task/cancel`.
- a **JSON-RPC queue worker** (`POST /rpc`, a ClaudeBench worker): registers and heartbeats
  (`system.register`, `system.heartbeat`), `task.create` feeds the queue, `task.claim` takes the
  next task, `task.update` reports progress metadata with the token totals as Claude reports
  them (`usage: {input_tokens, output_tokens}`; a task's source is in its metadata from
  `task.create`), at most the seed's 20 a minute (out of them, it waits), and `task.complete`
  (with its result) or `task.update` to failed ends it.
- a **native REST worker** (`/api/v1/`): files work (its own ids, prompts, checklists) and
  follow-ups as sub-tasks, claims, logs each tool call with its result (one batch, tokens on the
  call), reports metrics, ticks the checklist, and before the risky call of its work (a refund, a
  retried charge, a rollback) pauses for a person with `POST /tasks/<id>/hitl` (the question and
  the call it proposes), or asks one with options (how to answer a customer, which plan to
  suggest), sometimes with a deadline. It polls `GET /tasks/<id>/hitl`: approved -> it makes the
  call with the arguments the person approved (maybe edited); answered -> it goes on with the
  answer; dismissed -> it skips the proposed call (or goes on without an answer); rejected or
  withdrawn -> the task already ended. It also adopts executing tasks nobody touched for a while.

A task's work is rebuilt from the `run` id in its metadata (`scenarios.Work.for_run`), so a task
filed by one agent or run and picked up by another (or a seeded one) continues the same story.

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
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from .scenarios import ToolCall, Work, face_agent, worker_name

logger = logging.getLogger(__name__)

FACES = ("xpander", "agentex", "jsonrpc", "api")

MAX_JOBS = 3  # tasks one agent works on at once
MAX_WAITING = 4  # paused tasks one native worker waits on at once (each is polled)
QUEUE_TARGET = 6  # producers top the pending queue up to about this many tasks
QUEUE_CHECK_EVERY = 5.0  # seconds between looks at the queue length
STALE_AFTER = 120.0  # seconds without a change before an executing task counts as abandoned
HITL_CHANCE = 0.7  # share of its questions a native worker asks a person (it settles the others itself)
TOOL_FAILURE_CHANCE = 0.1  # a tool call that fails (retried once, then the task fails)
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
    """One task an agent is working on: its work and how far along it is."""

    id: str
    work: Work
    calls_done: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tools_used: list[str] = field(default_factory=list)
    unreported: list[ToolCall] = field(default_factory=list)  # calls whose tokens are not reported yet
    retrying: bool = False  # the last call failed once
    error: str = ""  # a call failed twice: the task fails with this
    decided: dict[int, dict[str, Any] | None] = field(default_factory=dict)  # call -> arguments (None: skip it)
    waiting: bool = False  # paused for a person's decision
    hitl_checked_at: float = 0.0
    follow_up_filed: bool = False
    source: str = ""  # where the work came from, for faces that keep it in the metadata they replace

    @property
    def title(self) -> str:
        return self.work.title

    @property
    def total_calls(self) -> int:
        return len(self.work.tools)

    @property
    def done(self) -> bool:
        return bool(self.error) or self.calls_done >= self.total_calls

    @property
    def asks_first(self) -> bool:
        """Whether the next call waits for a person's decision that is not there yet."""
        return self.calls_done in self.work.question_indexes() and self.calls_done not in self.decided

    def checklist(self) -> dict[str, Any]:
        return self.work.checklist(self.work.plan_step_of(self.calls_done))

    def step_title(self) -> str:
        plan = self.work.scenario.plan
        return plan[min(self.work.plan_step_of(self.calls_done), len(plan) - 1)]


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
    if isinstance(body, dict):
        return body.get("detail", body.get("message", body))
    return body


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
        self.name = face_agent(org, self.face)
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

    new_work_chance = 0.3
    reports_tokens = False  # whether its face takes token counts (then they are reported before the end)

    def act(self) -> None:
        """Make one change the way this kind of agent does: new work now and then, else move a task on."""
        job = self.pick()
        if self.wants_new_work(job, self.new_work_chance):
            return self.take_work()
        if not job.done or (self.reports_tokens and job.unreported):
            return self.progress(job)
        return self.finish(job)

    @abc.abstractmethod
    def take_work(self) -> None:
        """Create (or claim) a task and start on it."""

    @abc.abstractmethod
    def progress(self, job: Job) -> None:
        """One step of the job's work."""

    @abc.abstractmethod
    def finish(self, job: Job) -> None:
        """End the task: its result, or why it failed."""

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

    def new_job(self, task_id: str, work: Work, **kwargs) -> Job:
        job = Job(id=task_id, work=work, **kwargs)
        self.jobs.append(job)
        self.current = job
        return job

    def new_work(self, **kwargs) -> Work:
        return Work.new(self.name, self.rng, **kwargs)

    def work_of(self, task: dict[str, Any], agent: str | None = None) -> Work:
        """The work a task (filed by anyone) stands for: from its run id, else fresh work of its agent."""
        run = (task.get("metadata") or {}).get("run") or (task.get("payload_extension") or {}).get("run")
        agent = agent or self.name
        return Work.for_run(agent, run) if isinstance(run, str) and run.startswith("r-") else self.new_work()

    def hex(self) -> str:
        return f"{self.rng.getrandbits(40):010x}"

    def call(self, job: Job) -> ToolCall:
        """The job's next tool call: a failure is retried once, a second one fails the task."""
        call = job.work.call(job.calls_done, fail_chance=TOOL_FAILURE_CHANCE)
        if job.decided.get(job.calls_done) is not None:
            call.arguments = job.decided[job.calls_done]  # what a person approved (maybe edited) or chose
        job.prompt_tokens += call.prompt_tokens
        job.completion_tokens += call.completion_tokens
        job.unreported.append(call)
        if call.tool not in job.tools_used:
            job.tools_used.append(call.tool)
        if not call.failed:
            job.retrying = False
            job.calls_done += 1
        elif job.retrying:
            job.error = f"{call.tool} failed twice: {call.output['error']}"
        else:
            job.retrying = True
        return call

    def outcome(self, job: Job) -> tuple[bool, str]:
        """(completed?, the result or why it failed): most work that got through its calls succeeds."""
        if job.error:
            return False, job.error
        if self.rng.random() < 0.08:
            return False, job.work.failure()
        return True, job.work.result

    @staticmethod
    def duration(job: Job) -> float:
        return round(sum(2 + call.prompt_tokens / 400 for call in job.unreported), 1)


class XpanderAgent(Agent):
    face = "xpander"
    reports_tokens = True

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.token}  # the xpander SDK's header

    def take_work(self) -> None:
        if self.rng.random() < 0.1:
            return self.report_external_run()
        return self.start()

    def update(self, job: Job, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", f"/xpander/agent-execution/{job.id}/update", json=body).json()

    def start(self) -> None:
        work = self.new_work()
        body = {
            "input": {"text": work.prompt},
            "title": work.title,
            "source": work.source(),
            "deep_planning": work.checklist(0),
            # xpander tasks have no metadata: the run id travels with the tools' payload extension.
            "payload_extension": {"run": work.run},
        }
        task = self.request("POST", f"/xpander/agent-execution/{self.name}", json=body).json()
        job = self.new_job(task["id"], work)
        self.changed(f"created {job.id}: {work.title}")
        # An xpander worker picks its execution up at once.
        self.update(job, {"status": "executing", "internal_status": work.scenario.plan[0]})
        self.changed(f"executing {job.id}")

    def progress(self, job: Job) -> None:
        if job.unreported:
            # The tokens and the tool of the last call, as the SDK reports them.
            calls, job.unreported = job.unreported, []
            tokens = {"prompt_tokens": job.prompt_tokens, "completion_tokens": job.completion_tokens}
            body = {"execution_id": job.id, "llm_tokens": {"worker": tokens}, "api_calls_made": [c.tool for c in calls]}
            self.request("POST", f"/xpander/agents-metrics/{self.name}/execution", json=body)
            return self.changed(f"metrics of {job.id}")
        call = self.call(job)
        status = f"{'Retrying' if call.failed else 'Called'} {call.tool}"
        if call.failed:
            status += f": {call.output['error']}"
        self.update(job, {"deep_planning": job.checklist(), "internal_status": status[:100]})
        self.changed(f"{status} on {job.id}")

    def finish(self, job: Job) -> None:
        ok, text = self.outcome(job)
        body: dict[str, Any] = {"status": "completed" if ok else "failed", "result": text}
        if ok:
            body["deep_planning"] = job.work.checklist(len(job.work.scenario.plan))
        self.update(job, body)
        self.jobs.remove(job)
        self.changed(f"{body['status']} {job.id}")

    def report_external_run(self) -> None:
        work = self.new_work()
        job = Job(id="", work=work)
        while not job.done:
            self.call(job)
        ok, text = self.outcome(job)
        body = {
            "input": work.prompt,
            "llm_response": [
                {"role": "user", "content": work.prompt},
                {"role": "assistant", "content": text},
            ],
            "tokens": {"prompt_tokens": job.prompt_tokens, "completion_tokens": job.completion_tokens},
            "is_success": ok,
            "result": text if ok else None,
            "duration": self.duration(job),
            "used_tools": job.tools_used,
        }
        task = self.request("POST", f"/xpander/agent-execution/{self.name}/report_task", json=body).json()
        self.changed(f"reported external run {task['id']}: {work.title}")


class AgentexAgent(Agent):
    face = "agentex"
    reports_tokens = True

    def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": self.hex(), "method": method, "params": params}
        return self.request("POST", f"/agentex/agents/name/{self.name}/rpc", json=body).json()["result"]

    def take_work(self) -> None:
        work = self.new_work()
        source = work.source()
        metadata = {**work.metadata(), "source": source, "progress": 0}
        # Agentex shows a task's name as its title; task/create is get-or-create by name, so the
        # request number keeps two runs of the same work apart.
        name = f"{work.title} (request #{work.facts['request']})"
        task = self.rpc("task/create", {"name": name, "params": {"prompt": work.prompt}, "task_metadata": metadata})
        self.new_job(task["id"], work, source=source)
        self.changed(f"created {task['id']} (RUNNING): {name}")

    def metadata(self, job: Job) -> dict[str, Any]:
        """The agent's full copy of the task's metadata: task_metadata replaces the whole object."""
        job.unreported = []
        return {
            **job.work.metadata(),
            "source": job.source,
            "progress": round(100 * job.calls_done / max(job.total_calls, 1)),
            "tools_used": job.tools_used,
            # Agentex's task has no token fields: the totals so far, in the OpenAI usage shape.
            "usage": {"prompt_tokens": job.prompt_tokens, "completion_tokens": job.completion_tokens},
        }

    def progress(self, job: Job) -> None:
        if job.done:  # every call made; the last ones' tokens are not in the metadata yet
            self.request("PUT", f"/agentex/tasks/{job.id}", json={"task_metadata": self.metadata(job)})
            return self.changed(f"usage of {job.id}")
        call = self.call(job)
        if self.rng.random() < 0.5:
            body: dict[str, Any] = {
                "merge_params": {
                    "step": job.step_title(),
                    "last_call": {"tool": call.tool, "arguments": call.arguments, "ok": not call.failed},
                }
            }
        else:
            body = {"task_metadata": self.metadata(job)}
        self.request("PUT", f"/agentex/tasks/{job.id}", json=body)
        self.changed(f"{call.tool} on {job.id}")

    def finish(self, job: Job) -> None:
        ok, text = self.outcome(job)
        if ok:
            action = "complete"
        elif self.rng.random() < 0.15:
            self.rpc("task/cancel", {"task_id": job.id})
            self.jobs.remove(job)
            return self.changed(f"cancel {job.id}")
        else:
            action = "timeout" if self.rng.random() < 0.2 else "fail"
            if action == "timeout":
                text = f"No answer within 10 minutes while {job.step_title().lower()}."
        self.request("POST", f"/agentex/tasks/{job.id}/{action}", json={"reason": text})
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
    new_work_chance = 0.4

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.updates: deque[float] = deque()
        self.worker_id = worker_name(self.name, self.hex()[:4])
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
        job = self.new_job(task["id"], self.work_of(task))
        usage = (task.get("metadata") or {}).get("usage") or {}  # what an earlier worker already spent
        job.prompt_tokens, job.completion_tokens = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
        self.changed(f"claimed {task['id']}: {task['text']}")

    def produce(self) -> None:
        work = self.new_work()
        metadata = {**work.metadata(), "prompt": work.prompt, "source": work.source()}
        params = {"text": work.title, "priority": self.rng.choice([25, 50, 50, 75, 90]), "metadata": metadata}
        task = self.rpc("task.create", params)
        self.queue_length = (self.queue_length or 0) + 1
        self.changed(f"queued {task['id']}: {work.title}")

    def wait_for_budget(self) -> None:
        """Out of task.update budget: the worker reports nothing until its oldest update is a minute old."""
        self.parked_until = self.updates[0] + 60.0

    @staticmethod
    def usage(job: Job) -> dict[str, int]:
        # ClaudeBench's task has no token fields: the totals so far, as Claude's API reports usage.
        return {"input_tokens": job.prompt_tokens, "output_tokens": job.completion_tokens}

    def progress(self, job: Job) -> None:
        if not self.update_allowed():
            return self.wait_for_budget()
        call = self.call(job)
        progress = min(95, round(100 * job.calls_done / max(job.total_calls, 1)))
        metadata = {"progress": progress, "stage": job.step_title(), "last_tool": call.tool, "usage": self.usage(job)}
        if call.failed:
            metadata["last_error"] = call.output["error"]
        self.update(job, {"metadata": metadata})
        self.changed(f"{call.tool} on {job.id}")

    def finish(self, job: Job) -> None:
        ok, text = self.outcome(job)
        if ok:
            result = {"summary": text, "tools": job.tools_used}
            self.rpc("task.complete", {"taskId": job.id, "workerId": self.worker_id, "result": result})
        elif self.update_allowed():
            self.update(job, {"status": "failed", "metadata": {"error": text, "usage": self.usage(job)}})
        else:
            job.error = text  # the same failure, reported once the budget allows
            return self.wait_for_budget()
        self.jobs.remove(job)
        self.changed(f"{'completed' if ok else 'failed'} {job.id}")


class NativeWorker(QueueMixin, Agent):
    face = "api"
    new_work_chance = 0.35
    reports_tokens = True

    def act(self) -> None:
        if self.check_decisions():
            return
        super().act()

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
        index, decided_by = job.calls_done, hitl["decided_by"]
        tool = job.work.tools[index].name
        if hitl["decision"] == "approved":
            payload = {k: v for k, v in (hitl.get("effective_payload") or {}).items() if k != "action"}
            proposed = job.work.arguments(index)
            job.decided[index] = payload or proposed
            changed = " with changes" if job.decided[index] != proposed else ""
            note = f"Approved by {decided_by}{changed}; calling {tool}."
        elif hitl["decision"] == "responded":
            job.decided[index] = job.work.answered(index, hitl["answer"])
            note = f"{decided_by} answered {hitl['answer']!r}; going ahead with that."
        elif hitl["decision"] == "dismissed":
            # Nothing to act on: a proposed call is skipped, an unanswered choice takes the defaults.
            if index == job.work.approval_index():
                job.decided[index] = None
                job.calls_done += 1
                note = f"{decided_by} dismissed the request; skipping {tool}."
            else:
                job.decided[index] = job.work.arguments(index)
                note = f"{decided_by} dismissed the question; going ahead without an answer."
        else:
            # The decision already ended the task (rejected), or it left its pause another way.
            self.forget(job, f"HITL {hitl['decision']} by {decided_by}")
            return False
        job.waiting = False
        entry = {"kind": "message", "role": "assistant", "content": note}
        self.request("POST", f"/api/v1/tasks/{job.id}/activity", json=entry)
        self.changed(f"resumed {job.id} after the decision ({hitl['decision']}) of {decided_by}")
        return True

    def ask_a_person(self, job: Job) -> None:
        body = job.work.hitl(job.calls_done)
        if self.rng.random() < 0.5:
            minutes = self.rng.choice([20, 90, 600])
            body["deadline"] = (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()
        self.request("POST", f"/api/v1/tasks/{job.id}/hitl", json=body)
        job.waiting = True
        job.hitl_checked_at = time.monotonic()
        self.changed(f"paused {job.id} for a person: {body['question']}")

    def decide_alone(self, job: Job) -> None:
        """A question it may settle itself: within its limits, or its usual answer."""
        index = job.calls_done
        if index == job.work.approval_index():
            job.decided[index] = job.work.arguments(index)
            content = "Within my approval limits; going ahead."
        else:
            option = job.work.hitl(index)["options"][0]
            job.decided[index] = job.work.answered(index, option)
            content = f"Going with my usual choice: {option}."
        self.request("POST", f"/api/v1/tasks/{job.id}/activity", json={"kind": "reasoning", "content": content})
        self.changed(f"decided alone on {job.id}")

    # --- Work --------------------------------------------------------------------------------

    def take_work(self) -> None:
        # New requests arrive for this agent whatever the queue holds (a desk seeded with pending
        # work would otherwise show only other agents' tasks); a short queue gets topped up.
        if self.rng.random() < 0.3 or (self.queue_short() and self.rng.random() < 0.4):
            return self.produce()
        # Now and then, before the queue: executing tasks whose agent went away would never end.
        if self.rng.random() < 0.15 and self.adopt():
            return
        response = self.request("POST", "/api/v1/tasks/claim", json={})
        if response.status_code == 200:
            task = response.json()
            # The worker pool takes any agent's queued work and does it as that agent.
            job = self.new_job(task["id"], self.work_of(task, task["agent"]))
            job.prompt_tokens, job.completion_tokens = task["prompt_tokens"], task["completion_tokens"]
            entry = {"kind": "reasoning", "role": "assistant", "content": "Plan: " + "; ".join(job.work.scenario.plan)}
            self.request("POST", f"/api/v1/tasks/{job.id}/activity", json=entry)
            self.changed(f"claimed {task['id']}: {task['title']}")
            return
        self.queue_length = 0
        if not self.adopt():
            self.produce()

    def produce(self) -> None:
        parent = next((job for job in self.working() if not job.follow_up_filed and job.work.follow_up()), None)
        if parent is not None and self.rng.random() < 0.5:
            work = parent.work.follow_up()
            parent.follow_up_filed = True
        else:
            parent, work = None, self.new_work()
        body: dict[str, Any] = {
            "id": f"{self.name.split('-')[0]}-{self.rng.randint(100000, 999999)}",
            "title": work.title,
            "input_text": work.prompt,
            "agent": self.name,
            "source": work.source(),
            "priority": self.rng.choice([10, 30, 50, 50, 70, 90]),
            "deep_planning": work.checklist(0),
            "metadata": work.metadata(),
        }
        if parent is not None:
            body["parent_id"] = parent.id
        task = self.request("POST", "/api/v1/tasks", json=body).json()
        self.queue_length = (self.queue_length or 0) + 1
        self.changed(f"filed {task['id']}" + (f" under {parent.id}" if parent else "") + f": {work.title}")

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
            job = self.new_job(task["id"], self.work_of(task, task["agent"]))
            job.prompt_tokens, job.completion_tokens = task["prompt_tokens"], task["completion_tokens"]
            entry = {"kind": "reasoning", "role": "assistant", "content": "Picking this task up again."}
            self.request("POST", f"/api/v1/tasks/{job.id}/activity", json=entry)
            self.changed(f"adopted {job.id}")
            return True
        return False

    def progress(self, job: Job) -> None:
        if job.asks_first:
            waiting = sum(1 for j in self.jobs if j.waiting)
            if self.rng.random() < HITL_CHANCE and waiting < MAX_WAITING:
                return self.ask_a_person(job)
            return self.decide_alone(job)
        if job.unreported and (job.done or self.rng.random() < 0.5):
            job.unreported = []
            body = {
                "prompt_tokens": job.prompt_tokens,
                "completion_tokens": job.completion_tokens,
                "used_tools": job.tools_used,
            }
            self.request("POST", f"/api/v1/tasks/{job.id}/metrics", json=body)
            return self.changed(f"metrics of {job.id}")
        before = job.checklist()
        call = self.call(job)
        call_id = f"call_{self.hex()}"
        entries = [
            {"kind": "tool_call", "role": "assistant", "tool_name": call.tool, "tool_call_id": call_id,
             "tool_arguments": call.arguments, "prompt_tokens": call.prompt_tokens,
             "completion_tokens": call.completion_tokens},
            {"kind": "tool_result", "role": "tool", "tool_name": call.tool, "tool_call_id": call_id,
             "tool_output": call.output},
        ]  # fmt: skip
        self.request("POST", f"/api/v1/tasks/{job.id}/activity", json=entries)
        self.changed(f"{call.tool} on {job.id}" + (" (failed)" if call.failed else ""))
        if job.checklist() != before and not job.done:
            self.request("PATCH", f"/api/v1/tasks/{job.id}", json={"deep_planning": job.checklist()})
            self.changed(f"plan step on {job.id}")

    def finish(self, job: Job) -> None:
        ok, text = self.outcome(job)
        body: dict[str, Any] = {"status": "completed" if ok else "failed"}
        if ok:
            body.update(result=text, deep_planning=job.work.checklist(len(job.work.scenario.plan)))
        else:
            body["status_reason"] = text
        self.request("PATCH", f"/api/v1/tasks/{job.id}", json=body)
        self.jobs.remove(job)
        self.changed(f"{body['status']} {job.id}")


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
            agent.parked_until = time.monotonic() + NETWORK_BACKOFF
            if not self.stop_event.is_set():  # at Ctrl-C the server goes down with us: nothing to report
                self.stats.network_errors += 1
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

    def stop_from_signal_handler(self) -> None:
        """stop() for a signal handler. A handler runs in the main thread between two bytecodes,
        possibly inside an Event.wait that holds the event's lock; set() would then wait for that
        lock forever (make run's stop hung so, now and then). Another thread sets it instead."""
        threading.Thread(target=self.stop, name="simulator-stop", daemon=True).start()

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
