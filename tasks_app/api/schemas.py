"""Request and response bodies of the native REST API (/api/v1/); unknown fields are refused."""

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from ninja import Schema
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    model_validator,
)

from .. import lifecycle
from ..models import ActivityEntry, ActivityKind, HitlDecision, HitlRequest, Task
from ..services import TASK_ID_RE, TEXT_LIMITS
from ..services.validation import (
    BODY_MAX_DEPTH,
    MAX_DURATION_SECONDS,
    as_object,
    clean_datetime,
    finite,
    json_problem_at,
)

StatusName = Literal[lifecycle.STATUSES]  # type: ignore[valid-type]
StopStatus = Literal["stopped", "canceled", "terminated", "timed_out"]
JsonObject = dict[str, Any]


def _integral(value: Any) -> Any:
    # JSON Schema's integer includes 80.0 (and some encoders write every number so); 80.5 is not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Strict scalars: "85" or 85.5 for an integer, or "yes" for a boolean, is a 422, not a guess.
def integer(**bounds: int) -> Any:
    """A strict integer within bounds (bounds first, so the OpenAPI schema states them)."""
    return Annotated[StrictInt, Field(**bounds), BeforeValidator(_integral)]


Priority = integer(ge=0, le=100)
NonNegative = integer(ge=0, le=2**62)
Seconds = Annotated[float, Strict(), Field(ge=0, le=MAX_DURATION_SECONDS, allow_inf_nan=False)]
# PostgreSQL text holds no NUL: the schema says so, so generated clients (and fuzzers) know.
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, Field(pattern=NO_NUL)]
# Text that is more than white space (names, questions, a rejection's reason).
NON_BLANK = r"^[^\x00]*[^\x00\s][^\x00]*$"


def _iso_datetime(value: Any) -> Any:
    # pydantic would read "0.5" as a Unix time; the schema promises an ISO 8601 date-time.
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("Must be an ISO 8601 date-time, e.g. 2025-01-19T10:30:00Z.") from None
    elif not isinstance(value, datetime):
        raise ValueError("Must be an ISO 8601 date-time string.")
    return value


# The services' datetime rule (offset within +-15:59, in range as UTC), stated once.
# The pattern tells generated clients what RFC 3339 alone does not: offsets within +-15:59, and no
# UTC instant before year 1 or after 9999 (the edge days with an offset pointing out of range).
DATETIME_PATTERN = (
    r"^(?!0001-01-01T.*\+)(?!9999-12-31T.*-[0-9])[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9:.]+"
    r"([Zz]|[+-](0[0-9]|1[0-5]):[0-5][0-9])?$"
)
IsoDateTime = Annotated[
    datetime,
    BeforeValidator(_iso_datetime),
    AfterValidator(clean_datetime),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": DATETIME_PATTERN}),
]
TaskId = Annotated[str, Field(pattern=TASK_ID_RE.pattern, max_length=100)]


def text(name: str, **kwargs: Any) -> Any:
    """An optional text field with the services' size limit."""
    return Field(None, max_length=TEXT_LIMITS[name], pattern=NO_NUL, **kwargs)


class StrictIn(Schema):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        # The services' JSON rule over the whole body (no NUL, no lone surrogates, finite
        # numbers), so a value no reader could store is refused here, naming where it is.
        found = json_problem_at(getattr(data, "_obj", data), max_depth=BODY_MAX_DEPTH)  # ninja's DjangoGetter
        if found is not None:
            where, problem = found
            raise ValueError(f"{problem} (at {'.'.join(map(str, where)) or 'the body'})")
        return data


# --- Tasks --------------------------------------------------------------------------------


class TaskFieldsIn(StrictIn):
    """Fields a caller may set on create and patch (sizes are checked by the services)."""

    title: str | None = text("title")
    name: str | None = Field(None, max_length=TEXT_LIMITS["name"], pattern=NON_BLANK)
    source: str | None = text("source")
    status: StatusName | None = None
    status_reason: str | None = text("status_reason")
    priority: Priority | None = None
    input_text: str | None = text("input_text")
    input_files: list[Text] | None = None
    input_user: JsonObject | None = None
    additional_context: str | None = text("additional_context")
    instructions_override: str | None = text("instructions_override")
    expected_output: str | None = text("expected_output")
    output_format: str | None = text("output_format")
    output_schema: JsonObject | None = None
    result: str | None = text("result")
    metadata: JsonObject | None = None
    params: JsonObject | None = None
    payload_extension: JsonObject | None = None
    deep_planning: JsonObject | None = None
    last_executed_node_id: str | None = text("last_executed_node_id")
    internal_status: str | None = text("internal_status")
    agent_version: str | None = text("agent_version")
    triggering_agent_id: str | None = text("triggering_agent_id")
    used_tools: list[Text] | None = None
    queue: str | None = text(
        "queue", description='Work queue a pending task waits on: "" (native claims) or "jsonrpc" (JSON-RPC workers).'
    )


class TaskCreateIn(TaskFieldsIn):
    id: TaskId | None = Field(None, description="Caller-chosen id; the same body again returns the task (200).")
    agent: str | None = Field(
        None,
        max_length=200,
        pattern=NON_BLANK,
        description="Agent name; an unknown name is registered for the organization.",
    )
    parent_id: TaskId | None = None


class TaskPatchIn(TaskFieldsIn):
    prompt_tokens: NonNegative | None = None
    completion_tokens: NonNegative | None = None
    duration: Seconds | None = None
    metadata_replace: StrictBool = Field(False, description="Replace metadata instead of merging top-level keys.")
    params_replace: StrictBool = Field(False, description="Replace params instead of merging top-level keys.")
    expected_version: integer(ge=1, le=2**31) | None = Field(
        None, description="Refuse with 409 unless the task is at this version (same as If-Match)."
    )


class TaskOut(Schema):
    id: str
    title: str
    name: str | None
    agent: str | None
    parent_id: str | None
    source: str
    status: str
    status_reason: str
    priority: int
    queue: str
    assigned_worker: str | None = Field(description="The worker that claimed the task (JSON-RPC task.claim).")
    input_text: str
    input_files: list[Any]
    result: str | None
    metadata: JsonObject
    params: JsonObject
    payload_extension: JsonObject
    deep_planning: JsonObject
    prompt_tokens: int
    completion_tokens: int
    used_tools: list[Any]
    duration: float
    execution_attempts: int
    is_manually_stopped: bool
    version: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    paused_at: datetime | None
    finished_at: datetime | None
    cleaned_at: datetime | None = Field(
        description="When retention removed the task's content (input, result, metadata, params, activity "
        "bodies); null while the content is kept. A cleaned task is read-only."
    )

    @staticmethod
    def from_task(task: Task) -> dict[str, Any]:
        skip = ("id", "agent", "status", "parent_id", "assigned_worker")
        return {
            **{name: getattr(task, name) for name in TaskOut.model_fields if name not in skip},
            "assigned_worker": task.assigned_worker_name,
            "id": task.public_id,
            "agent": task.agent.name if task.agent_id else None,
            "parent_id": task.parent_public_id,
            "status": lifecycle.NATIVE.render(task.status),
            "duration": finite(task.duration),
            "deep_planning": as_object(task.deep_planning),
        }


class TaskPageOut(Schema):
    items: list[TaskOut]
    next: str | None = Field(description="Cursor for the following page (pass as `after`).")
    prev: str | None = Field(description="Cursor for the preceding page (pass as `before`).")


class StopIn(StrictIn):
    reason: str = Field("", max_length=2000, pattern=NO_NUL)
    status: StopStatus = "stopped"


class ClaimIn(StrictIn):
    agent: str | None = Field(None, max_length=200, pattern=NON_BLANK, description="Only tasks of this agent.")
    queue: str = Field(
        "", max_length=TEXT_LIMITS["queue"], pattern=NO_NUL, description="The queue to take from (default: general)."
    )


# --- Activity -----------------------------------------------------------------------------


class ActivityIn(StrictIn):
    kind: Literal[tuple(ActivityKind.values)] = "message"  # type: ignore[valid-type]
    role: str | None = Field(None, max_length=20, pattern=NO_NUL)
    content: str | None = Field(None, max_length=100_000, pattern=NO_NUL)
    tool_name: str | None = Field(None, max_length=200, pattern=NO_NUL)
    tool_call_id: str | None = Field(None, max_length=200, pattern=NO_NUL)
    tool_arguments: Any = None
    tool_output: Any = None
    prompt_tokens: integer(ge=0, lt=2**31) | None = None  # type: ignore[valid-type]
    completion_tokens: integer(ge=0, lt=2**31) | None = None  # type: ignore[valid-type]


ActivityBatchIn = Annotated[list[ActivityIn], Field(min_length=1, max_length=500)]


class ActivityOut(Schema):
    id: int
    kind: str
    role: str
    content: str
    tool_name: str
    tool_call_id: str
    tool_arguments: Any
    tool_output: Any
    prompt_tokens: int
    completion_tokens: int
    created_at: datetime

    @staticmethod
    def from_entry(entry: ActivityEntry) -> dict[str, Any]:
        return {name: getattr(entry, name) for name in ActivityOut.model_fields}


class ActivityPageOut(Schema):
    items: list[ActivityOut]
    next: int | None = Field(description="Pass as `after` for the following page; null at the end.")


# --- Human in the loop --------------------------------------------------------------------


class HitlIn(StrictIn):
    question: str = Field(max_length=2000, pattern=NON_BLANK)
    details: str = Field("", max_length=20000, pattern=NO_NUL)
    options: list[Text] | None = None
    payload: Any = Field(None, description="The action the agent proposes; a reviewer may amend it.")
    deadline: IsoDateTime | None = None
    on_timeout: Literal["approved", "rejected"] = "rejected"
    reject_status: Literal[tuple(sorted(lifecycle.TERMINAL))] = "failed"  # type: ignore[valid-type]


class HitlApproveIn(StrictIn):
    approve: Literal[True]
    reason: str = Field("", max_length=2000, pattern=NO_NUL)
    comment: str = Field("", max_length=2000, pattern=NO_NUL)
    amended_payload: Any = Field(None, description="Replaces the proposed payload (approvals only).")

    decision: ClassVar[str] = HitlDecision.APPROVED


class HitlRejectIn(StrictIn):
    approve: Literal[False]
    reason: str = Field(max_length=2000, pattern=NON_BLANK, description="A rejection needs a reason.")
    comment: str = Field("", max_length=2000, pattern=NO_NUL)

    decision: ClassVar[str] = HitlDecision.REJECTED


class HitlRespondIn(StrictIn):
    answer: str = Field(
        max_length=20000, pattern=NON_BLANK, description="The answer to the agent's question, in your own words."
    )
    comment: str = Field("", max_length=2000, pattern=NO_NUL)

    decision: ClassVar[str] = HitlDecision.RESPONDED


class HitlChooseIn(StrictIn):
    option: Text = Field(description="One of the request's `options`, exactly; recorded as the answer.")
    comment: str = Field("", max_length=2000, pattern=NO_NUL)

    decision: ClassVar[str] = HitlDecision.RESPONDED


class HitlDismissIn(StrictIn):
    dismiss: Literal[True] = Field(description="Close the request without a decision the agent should act on.")
    comment: str = Field("", max_length=2000, pattern=NO_NUL)

    decision: ClassVar[str] = HitlDecision.DISMISSED


# One shape per decision, so the schema states what the service checks: only a rejection needs a
# reason, only an approval may amend the payload, a response is an answer or one of the options.
HitlDecisionIn = HitlApproveIn | HitlRejectIn | HitlRespondIn | HitlChooseIn | HitlDismissIn


class HitlOut(Schema):
    id: int
    task_id: str
    question: str
    details: str
    options: list[Any]
    proposed_payload: Any
    amended_payload: Any
    effective_payload: Any = Field(description="The amended payload if a reviewer changed it, else the proposal.")
    requested_at: datetime
    deadline: datetime | None
    on_timeout: str
    decision: Literal[tuple(HitlDecision.values)] | None  # type: ignore[valid-type]
    decided_by: str
    decided_at: datetime | None
    reason: str
    comment: str
    answer: str = Field(description="A response's answer: the text, or the chosen option.")
    chosen_option: str | None = Field(description="The option a response chose, if it chose one.")
    expired: bool

    @staticmethod
    def from_hitl(hitl: HitlRequest) -> dict[str, Any]:
        values = {name: getattr(hitl, name) for name in HitlOut.model_fields if name not in ("decided_by", "task_id")}
        values["decided_by"] = hitl.decided_by_label
        values["task_id"] = hitl.task.public_id
        values["chosen_option"] = hitl.chosen_option or None
        return values


# --- Metrics ------------------------------------------------------------------------------


class MetricsIn(StrictIn):
    prompt_tokens: NonNegative | None = None
    completion_tokens: NonNegative | None = None
    used_tools: list[str] | None = None
    duration: Seconds | None = None


# --- Errors and events --------------------------------------------------------------------


class ErrorOut(Schema):
    detail: Any
    code: str | None = None


class ConflictOut(ErrorOut):
    current_version: int | None = None
    current_status: str | None = None
    allowed: list[str] | None = None
