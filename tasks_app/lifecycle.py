"""Task lifecycle: canonical statuses, the one transition table, and each face's status names.

Canonical statuses are the union of the seeds (xpander, JSON-RPC queue, Agentex), so no face
loses information. A face's own names map to canonical ones through its `FaceStatuses` table;
a status written through a face reads back the same through that face.
"""

from collections.abc import Mapping
from dataclasses import dataclass


class Status:
    PENDING = "pending"
    EXECUTING = "executing"
    PAUSED = "paused"
    INTERRUPTED = "interrupted"
    COMPLETED = "completed"
    FAILED = "failed"
    ERROR = "error"
    STOPPED = "stopped"
    CANCELED = "canceled"
    TERMINATED = "terminated"
    TIMED_OUT = "timed_out"


STATUSES: tuple[str, ...] = (
    Status.PENDING,
    Status.EXECUTING,
    Status.PAUSED,
    Status.INTERRUPTED,
    Status.COMPLETED,
    Status.FAILED,
    Status.ERROR,
    Status.STOPPED,
    Status.CANCELED,
    Status.TERMINATED,
    Status.TIMED_OUT,
)

STATUS_LABELS: dict[str, str] = {
    Status.PENDING: "Pending",
    Status.EXECUTING: "Executing",
    Status.PAUSED: "Paused",
    Status.INTERRUPTED: "Interrupted",
    Status.COMPLETED: "Completed",
    Status.FAILED: "Failed",
    Status.ERROR: "Error",
    Status.STOPPED: "Stopped",
    Status.CANCELED: "Canceled",
    Status.TERMINATED: "Terminated",
    Status.TIMED_OUT: "Timed out",
}

STATUS_CHOICES = [(s, STATUS_LABELS[s]) for s in STATUSES]

ACTIVE: frozenset[str] = frozenset({Status.PENDING, Status.EXECUTING, Status.PAUSED, Status.INTERRUPTED})
TERMINAL: frozenset[str] = frozenset(set(STATUSES) - ACTIVE)
# Statuses that a stop, cancel or terminate may come from.
STOPPABLE = ACTIVE

# How a finished task ended, for the operations view's counts and failure rate: the agent's own
# failures (failed, error, timed out), people or the system stopping it, or done.
FAILURES: frozenset[str] = frozenset({Status.FAILED, Status.ERROR, Status.TIMED_OUT})
STOPS: frozenset[str] = frozenset({Status.STOPPED, Status.CANCELED, Status.TERMINATED})


def outcome(status: str) -> str | None:
    """ "completed", "failed" or "stopped" for a final status; None for an active one."""
    if status == Status.COMPLETED:
        return "completed"
    if status in FAILURES:
        return "failed"
    if status in STOPS:
        return "stopped"
    return None


_ENDINGS = {
    Status.COMPLETED,
    Status.FAILED,
    Status.ERROR,
    Status.STOPPED,
    Status.CANCELED,
    Status.TERMINATED,
    Status.TIMED_OUT,
}

# The one table of ordinary transitions. Terminal -> pending is not here: that is a retry.
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.PENDING: frozenset({Status.EXECUTING, Status.PAUSED} | _ENDINGS),
    Status.EXECUTING: frozenset({Status.PENDING, Status.PAUSED, Status.INTERRUPTED} | _ENDINGS),
    Status.PAUSED: frozenset({Status.EXECUTING, Status.INTERRUPTED} | _ENDINGS),
    Status.INTERRUPTED: frozenset({Status.PENDING, Status.EXECUTING, Status.PAUSED} | _ENDINGS),
    **{status: frozenset() for status in TERMINAL},
}

RETRY_TARGET = Status.PENDING

# A paused task whose HITL request a person closed: a rejection ends it as the request said
# (`reject_status`); an approval, an answer and a dismissal all hand it back to its agent, which
# reads the decision (a dismissal, like LangGraph Agent Inbox's "ignore", is nothing to act on).
HITL_RESUME = Status.EXECUTING


def status_after_hitl(decision: str, *, reject_status: str) -> str:
    """The status a paused task takes when its HITL request is decided."""
    return reject_status if decision == "rejected" else HITL_RESUME


class TransitionError(ValueError):
    """A status change the lifecycle does not allow."""

    def __init__(self, current: str, target: str, message: str):
        super().__init__(message)
        self.current = current
        self.target = target
        self.allowed = sorted(allowed_next(current))


def is_terminal(status: str) -> bool:
    return status in TERMINAL


def allowed_next(status: str) -> frozenset[str]:
    return TRANSITIONS.get(status, frozenset())


def can_transition(current: str, target: str) -> bool:
    return target == current or target in allowed_next(current)


def check_stop(current: str, target: str) -> None:
    """Raise TransitionError unless a task in `current` may be stopped, canceled, terminated or
    timed out by hand (`target`): only an active task can."""
    if current not in STOPPABLE:
        raise TransitionError(current, target, f"The task is already {current}.")
    check_transition(current, target)


def check_transition(current: str, target: str, *, retry: bool = False, strict: bool = False) -> None:
    """Raise TransitionError unless current -> target is allowed.

    A same-status write is a no-op, except `strict` (an explicit action such as Agentex's
    complete or interrupt, which upstream refuses on a task already in that status).
    """
    if target not in STATUS_LABELS:
        raise TransitionError(current, target, f"Unknown status {target!r}.")
    if strict and target == current:
        raise TransitionError(current, target, f"The task is already {current}.")
    if retry:
        # Checked before the same-status shortcut: retrying a pending task is not a no-op success.
        if current in TERMINAL and target == RETRY_TARGET:
            return
        raise TransitionError(current, target, f"Only a finished task can be retried; this one is {current}.")
    if target == current:
        return
    if target in allowed_next(current):
        return
    allowed = sorted(allowed_next(current))
    if current in TERMINAL and target == RETRY_TARGET:
        message = f"The task is {current}; moving it back to pending is a retry, not an edit."
    elif allowed:
        message = f"Cannot move a {current} task to {target}; allowed next: {', '.join(allowed)}."
    else:
        message = f"Cannot move a {current} task to {target}: {current} is final (retry it instead)."
    raise TransitionError(current, target, message)


@dataclass(frozen=True)
class FaceStatuses:
    """One face's status vocabulary: its names in, canonical statuses out, and back."""

    face: str
    to_canonical: Mapping[str, str]
    # How a canonical status the face has no name of is shown through that face.
    from_canonical_extra: Mapping[str, str]

    def parse(self, name: str) -> str:
        try:
            return self.to_canonical[name]
        except KeyError:
            allowed = ", ".join(self.names())
            raise ValueError(f"Unknown status {name!r}; expected one of: {allowed}.") from None

    def render(self, canonical: str) -> str:
        for name, status in self.to_canonical.items():
            if status == canonical:
                return name
        return self.from_canonical_extra[canonical]

    def names(self) -> list[str]:
        return list(self.to_canonical)


NATIVE = FaceStatuses(
    face="native",
    to_canonical={s: s for s in STATUSES},
    from_canonical_extra={},
)

# xpander's AgentExecutionStatus values are lowercase.
XPANDER = FaceStatuses(
    face="xpander",
    to_canonical={
        "pending": Status.PENDING,
        "executing": Status.EXECUTING,
        "paused": Status.PAUSED,
        "error": Status.ERROR,
        "failed": Status.FAILED,
        "completed": Status.COMPLETED,
        "stopped": Status.STOPPED,
    },
    from_canonical_extra={
        Status.INTERRUPTED: "paused",
        Status.CANCELED: "stopped",
        Status.TERMINATED: "stopped",
        Status.TIMED_OUT: "failed",
    },
)

# Agentex's TaskStatus; DELETED is a soft delete (Task.deleted_at), not a lifecycle status.
AGENTEX = FaceStatuses(
    face="agentex",
    to_canonical={
        "RUNNING": Status.EXECUTING,
        "INTERRUPTED": Status.INTERRUPTED,
        "COMPLETED": Status.COMPLETED,
        "FAILED": Status.FAILED,
        "CANCELED": Status.CANCELED,
        "TERMINATED": Status.TERMINATED,
        "TIMED_OUT": Status.TIMED_OUT,
    },
    from_canonical_extra={
        Status.PENDING: "RUNNING",
        Status.PAUSED: "RUNNING",
        Status.ERROR: "FAILED",
        Status.STOPPED: "CANCELED",
    },
)
AGENTEX_DELETED = "DELETED"

# The JSON-RPC 2.0 task queue (seed 002).
JSONRPC = FaceStatuses(
    face="jsonrpc",
    to_canonical={
        "pending": Status.PENDING,
        "in_progress": Status.EXECUTING,
        "completed": Status.COMPLETED,
        "failed": Status.FAILED,
    },
    from_canonical_extra={
        Status.PAUSED: "in_progress",
        Status.INTERRUPTED: "in_progress",
        Status.ERROR: "failed",
        Status.STOPPED: "failed",
        Status.CANCELED: "failed",
        Status.TERMINATED: "failed",
        Status.TIMED_OUT: "failed",
    },
)

FACES: dict[str, FaceStatuses] = {f.face: f for f in (NATIVE, XPANDER, AGENTEX, JSONRPC)}
