"""The task domain. Rows change only through `tasks_app.services`."""

import hashlib
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from . import lifecycle


def new_task_id() -> str:
    return str(uuid.uuid4())


class Organization(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    ADMIN = "admin", "Admin"


# Roles that may change a task of their organization (and decide its HITL requests); viewers read.
EDIT_ROLES = frozenset({Role.OPERATOR, Role.ADMIN})


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organization"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.organization} ({self.role})"

    @property
    def can_edit(self) -> bool:
        return self.role in (Role.OPERATOR, Role.ADMIN)


TOKEN_PREFIX = "td_"


def hash_token(raw: str) -> str:
    # API tokens are 32 random bytes: a fast hash is enough (no dictionary to brute-force).
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    # First characters of the token, shown so people can tell tokens apart; not a secret.
    prefix = models.CharField(max_length=16, db_index=True)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def generate() -> str:
        return TOKEN_PREFIX + secrets.token_urlsafe(32)


class Agent(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="agents")
    # The id agents and SDKs use for it (xpander's agent_id, Agentex's agent name).
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="agent_unique_name")]

    def __str__(self) -> str:
        return self.name


class Worker(models.Model):
    """A worker process that pulls tasks from a queue (ClaudeBench's registered instance)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="workers")
    # The id the worker registers with (ClaudeBench's `workerId` / instance id).
    name = models.CharField(max_length=200)
    roles = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    registered_at = models.DateTimeField(default=timezone.now)
    last_heartbeat_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="worker_unique_name")]

    def __str__(self) -> str:
        return self.name


class Task(models.Model):
    # Internal row id: foreign keys, socket groups and keyset tie-breaks. Never shown to agents.
    id = models.BigAutoField(primary_key=True)
    # The id agents, URLs and every face use. Unique within its organization only, so two
    # organizations may hold the same id and neither can tell (selectors scope every lookup).
    public_id = models.CharField(max_length=100, default=new_task_id)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="tasks")
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="sub_tasks")
    # The worker that claimed the task from its queue (JSON-RPC `assignedTo`).
    assigned_worker = models.ForeignKey(
        Worker, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_tasks"
    )

    # Identity and origin.
    name = models.CharField(max_length=200, null=True, blank=True)  # Agentex's unique name
    title = models.CharField(max_length=500, blank=True, default="")
    source = models.CharField(max_length=100, blank=True, default="")
    agent_version = models.CharField(max_length=100, blank=True, default="")
    triggering_agent_id = models.CharField(max_length=200, blank=True, default="")

    # Input.
    input_text = models.TextField(blank=True, default="")
    input_files = models.JSONField(default=list, blank=True)
    input_user = models.JSONField(null=True, blank=True)
    additional_context = models.TextField(blank=True, default="")
    instructions_override = models.TextField(blank=True, default="")
    expected_output = models.TextField(blank=True, default="")
    output_format = models.CharField(max_length=50, blank=True, default="")
    output_schema = models.JSONField(null=True, blank=True)
    think_mode = models.CharField(max_length=20, blank=True, default="default")
    mcp_servers = models.JSONField(default=list, blank=True)
    disable_attachment_injection = models.BooleanField(default=False)
    voice_id = models.CharField(max_length=100, blank=True, default="")

    # State.
    status = models.CharField(max_length=20, choices=lifecycle.STATUS_CHOICES, default=lifecycle.Status.PENDING)
    status_reason = models.TextField(blank=True, default="")
    internal_status = models.CharField(max_length=100, blank=True, default="")
    priority = models.PositiveSmallIntegerField(default=50)
    # The work queue a pending task waits on: "" is the native API's (its claims take it); the
    # JSON-RPC, xpander and Agentex faces put their tasks on their own ("jsonrpc", "xpander",
    # "agentex"), so no face's worker picks up another face's tasks unless one is moved on purpose.
    queue = models.CharField(max_length=50, blank=True, default="")
    last_executed_node_id = models.CharField(max_length=200, blank=True, default="")
    is_manually_stopped = models.BooleanField(default=False)
    is_orchestration = models.BooleanField(default=False)
    events_streaming = models.BooleanField(default=False)
    return_metrics = models.BooleanField(default=False)
    execution_attempts = models.PositiveIntegerField(default=1)
    deep_planning = models.JSONField(default=dict, blank=True)

    # Output.
    result = models.TextField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    params = models.JSONField(default=dict, blank=True)
    payload_extension = models.JSONField(default=dict, blank=True)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    used_tools = models.JSONField(default=list, blank=True)
    duration = models.FloatField(default=0.0)

    # Bookkeeping.
    version = models.PositiveIntegerField(default=1)
    # Hash of the body a caller-supplied id was created with: same body again is idempotent.
    create_fingerprint = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cleaned_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # varchar_pattern_ops (PostgreSQL) also serves the list search's id-prefix match.
            models.UniqueConstraint(
                fields=["organization", "public_id"],
                name="task_unique_public_id",
                opclasses=["int8_ops", "varchar_pattern_ops"],
            ),
            models.UniqueConstraint(
                fields=["organization", "name"], condition=Q(name__isnull=False), name="task_unique_name"
            ),
            models.CheckConstraint(condition=Q(priority__lte=100), name="task_priority_0_100"),
        ]
        indexes = [
            # Newest-first keyset pagination per organization, and its filtered variants.
            models.Index(fields=["organization", "-created_at", "-id"], name="task_org_created"),
            models.Index(fields=["organization", "status", "-created_at", "-id"], name="task_org_status"),
            models.Index(fields=["organization", "agent", "-created_at", "-id"], name="task_org_agent"),
            models.Index(fields=["organization", "source", "-created_at", "-id"], name="task_org_source"),
            models.Index(fields=["organization", "-updated_at", "-id"], name="task_org_updated"),
            # claim(): highest priority, then oldest, among a queue's pending tasks.
            models.Index(
                fields=["organization", "queue", "-priority", "created_at", "id"],
                condition=Q(status="pending", deleted_at__isnull=True),
                name="task_claim_queue",
            ),
        ]

    def __str__(self) -> str:
        return self.title or self.public_id

    @property
    def display_title(self) -> str:
        # Agentex tasks carry only a name; xpander ones often only their prompt.
        return self.title or self.input_text[:120] or self.name or self.public_id

    @property
    def parent_public_id(self) -> str | None:
        # A task rebuilt from an event snapshot carries its parent's id, not the parent row.
        if "_parent_public_id" in self.__dict__:
            return self.__dict__["_parent_public_id"]
        return self.parent.public_id if self.parent_id else None

    @property
    def assigned_worker_name(self) -> str | None:
        # A task rebuilt from an event snapshot carries its worker's name, not the worker row.
        if "_assigned_worker_name" in self.__dict__:
            return self.__dict__["_assigned_worker_name"]
        return self.assigned_worker.name if self.assigned_worker_id else None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def is_terminal(self) -> bool:
        return lifecycle.is_terminal(self.status)

    @property
    def allowed_next_statuses(self) -> list[str]:
        return sorted(lifecycle.allowed_next(self.status))

    @property
    def plan_items(self) -> list[dict]:
        # Rows stored before the shape was checked may hold anything: read only a list of objects.
        plan = self.deep_planning if isinstance(self.deep_planning, dict) else {}
        items = plan.get("tasks")
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    @property
    def plan_progress(self) -> tuple[int, int]:
        items = self.plan_items
        return sum(1 for item in items if item.get("completed")), len(items)


class ActivityKind(models.TextChoices):
    MESSAGE = "message", "Message"
    TOOL_CALL = "tool_call", "Tool call"
    TOOL_RESULT = "tool_result", "Tool result"
    REASONING = "reasoning", "Reasoning"


class ActivityEntry(models.Model):
    """One step of what the agent did: append-only."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="activity")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=ActivityKind.choices)
    role = models.CharField(max_length=20, blank=True, default="")
    content = models.TextField(blank=True, default="")
    tool_name = models.CharField(max_length=200, blank=True, default="")
    tool_call_id = models.CharField(max_length=200, blank=True, default="")
    tool_arguments = models.JSONField(null=True, blank=True)
    tool_output = models.JSONField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    # A tool result's call, paired once when the result is appended (services.activity.pair_tool_results),
    # so every reader shows the same pair without rescanning the log.
    call = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="result", editable=False
    )

    class Meta:
        verbose_name_plural = "activity entries"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["task", "id"], name="activity_task_id"),
            models.Index(fields=["task", "kind", "id"], name="activity_task_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"

    @property
    def is_failure(self) -> bool:
        """A tool result that reports a failure: "ok"/"success" false, "is_error" true, an error, or a failed status."""
        return self.kind == ActivityKind.TOOL_RESULT and failure_of(self.tool_output) is not None

    @property
    def failure(self) -> str | None:
        """What a failed tool result says went wrong ("" when it says nothing), None when it did not fail."""
        return failure_of(self.tool_output) if self.kind == ActivityKind.TOOL_RESULT else None


FAILED_STATUSES = frozenset({"failed", "failure", "error", "errored", "fail"})


def failure_of(output) -> str | None:
    """The one rule for a tool output that reports failure; returns its message ("" if none), else None."""
    if not isinstance(output, dict):
        return None
    for name in ("error", "errors"):
        error = output.get(name)
        if error not in (None, "", False, [], {}):
            message = error.get("message") if isinstance(error, dict) else error
            return message if isinstance(message, str) else ""
    status = output.get("status")
    # An output that says it succeeded (ok/success true) may carry a status of what it looked up
    # (a payment whose status is "failed"): then that status is data, not the call's outcome.
    succeeded = output.get("ok") is True or output.get("success") is True
    failed_status = not succeeded and isinstance(status, str) and status.strip().lower() in FAILED_STATUSES
    if output.get("ok") is False or output.get("success") is False or output.get("is_error") is True or failed_status:
        message = output.get("message") or output.get("reason") or output.get("detail")
        return message if isinstance(message, str) else ""
    return None


class HitlDecision(models.TextChoices):
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    # A person answered the agent's question (free text, or one of the options it offered).
    RESPONDED = "responded", "Answered"
    # Closed without a decision the agent should act on (LangGraph Agent Inbox's "ignore").
    DISMISSED = "dismissed", "Dismissed"
    # The task left its pause some other way (stopped, resumed by the agent, deleted).
    WITHDRAWN = "withdrawn", "Withdrawn"


# What a request may do at its deadline (a person's other decisions need a person).
HITL_TIMEOUT_CHOICES = [(d.value, d.label) for d in (HitlDecision.APPROVED, HitlDecision.REJECTED)]


class HitlRequest(models.Model):
    """A pause awaiting a person's decision."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="hitl_requests")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    question = models.TextField()
    details = models.TextField(blank=True, default="")
    options = models.JSONField(default=list, blank=True)
    # The action the agent proposes; a reviewer may amend it before approving.
    proposed_payload = models.JSONField(null=True, blank=True)
    amended_payload = models.JSONField(null=True, blank=True)
    requested_at = models.DateTimeField(default=timezone.now)
    deadline = models.DateTimeField(null=True, blank=True)
    # What happens at the deadline, and the status a rejection moves the task to.
    on_timeout = models.CharField(max_length=16, choices=HITL_TIMEOUT_CHOICES, default=HitlDecision.REJECTED)
    reject_status = models.CharField(max_length=20, choices=lifecycle.STATUS_CHOICES, default=lifecycle.Status.FAILED)
    decision = models.CharField(max_length=16, choices=HitlDecision.choices, null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by_label = models.CharField(max_length=200, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    comment = models.TextField(blank=True, default="")
    # A response's text: what the person typed, or the option they chose (then also chosen_option).
    answer = models.TextField(blank=True, default="")
    chosen_option = models.TextField(blank=True, default="")
    decided_at = models.DateTimeField(null=True, blank=True)
    expired = models.BooleanField(default=False)

    class Meta:
        verbose_name = "HITL request"
        ordering = ["requested_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["task"], condition=Q(decision__isnull=True), name="hitl_one_pending"),
        ]
        indexes = [
            models.Index(
                fields=["organization", "requested_at"], condition=Q(decision__isnull=True), name="hitl_pending"
            ),
            # The inbox's "soonest deadline first" and its deadline filters.
            models.Index(
                fields=["organization", "deadline"], condition=Q(decision__isnull=True), name="hitl_pending_deadline"
            ),
            # The inbox's "decided" tab: newest decision first, by keyset.
            models.Index(
                fields=["organization", "-decided_at", "-id"],
                condition=Q(decision__isnull=False),
                name="hitl_decided",
            ),
        ]

    def __str__(self) -> str:
        return f"HITL #{self.pk} for {self.task_id}"

    @property
    def is_pending(self) -> bool:
        return self.decision is None

    @property
    def effective_payload(self):
        return self.amended_payload if self.amended_payload is not None else self.proposed_payload


class ActorKind(models.TextChoices):
    USER = "user", "Staff user"
    TOKEN = "token", "API token"
    SYSTEM = "system", "System"


class Face(models.TextChoices):
    DASHBOARD = "dashboard", "Dashboard"
    ADMIN = "admin", "Admin"
    API = "api", "REST API"
    XPANDER = "xpander", "xpander API"
    AGENTEX = "agentex", "Agentex API"
    JSONRPC = "jsonrpc", "JSON-RPC"
    COMMAND = "command", "Command"
    SYSTEM = "system", "System"
    # A person's bulk action from the desk's list, run in the background (services.bulk_actions).
    BULK = "bulk", "Bulk action"


class EventType(models.TextChoices):
    CREATED = "task.created", "Created"
    UPDATED = "task.updated", "Updated"
    # A worker took the task from its queue / reported it done (JSON-RPC task.claim, task.complete).
    CLAIMED = "task.claimed", "Claimed"
    COMPLETED = "task.completed", "Completed"
    ACTIVITY = "task.activity", "Activity"
    HITL_REQUESTED = "task.hitl_requested", "HITL requested"
    HITL_DECIDED = "task.hitl_decided", "HITL decided"
    METRICS = "task.metrics", "Metrics"
    DELETED = "task.deleted", "Deleted"
    # Retention removed the task's content (services.retention); the record and its counts stay.
    CLEANED = "task.cleaned", "Cleaned"


class TaskEvent(models.Model):
    """One change to a task: the audit history, the outbox and the replay log."""

    id = models.BigAutoField(primary_key=True)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="events")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=32, choices=EventType.choices)
    changes = models.JSONField(default=list)
    before = models.JSONField(default=dict)
    after = models.JSONField(default=dict)
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_label = models.CharField(max_length=200)
    face = models.CharField(max_length=16, choices=Face.choices)
    task_version = models.PositiveIntegerField()
    # The task as it was right after this event (services.snapshots.task_snapshot), so a stream
    # that replays or delivers the event late shows that state, never a later one. Activity
    # events change no field of the task and carry none (snapshots.snapshot_at finds the last).
    snapshot = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["organization", "id"], name="event_org_id"),
            models.Index(fields=["task", "id"], name="event_task_id"),
            # The task page's timeline reads a task's events but its activity batches (whose
            # entries it shows instead), newest first, whatever the number of batches.
            models.Index(fields=["task", "-id"], condition=~Q(type="task.activity"), name="event_task_changes"),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.task_id} v{self.task_version}"


class TaskCount(models.Model):
    """How many live (not deleted) tasks an organization has in each status.

    Kept exact by the write path, in the same transaction as the change and under the
    organization's event lock (services.kernel), so the status bar reads 11 rows instead of
    counting a million.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=20, choices=lifecycle.STATUS_CHOICES)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "status"], name="task_count_unique")]

    def __str__(self) -> str:
        return f"{self.organization_id}/{self.status}: {self.count}"


class SavedView(models.Model):
    """A named view of the task list (its filters, sort and shown columns), kept per person or
    shared with an organization. Written through services.saved_views, read through selectors."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="saved_views")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views")
    name = models.CharField(max_length=80)
    # The list's canonical URL query of its filters and sort (selectors.TaskFilters.query).
    query = models.CharField(max_length=2000, blank=True, default="")
    # The columns shown, in table order (selectors.LIST_COLUMNS); empty: every column.
    columns = models.JSONField(default=list, blank=True)
    shared = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "owner", "name"], name="saved_view_unique_name"),
        ]
        indexes = [
            models.Index(fields=["organization", "owner"], name="saved_view_owner"),
            models.Index(fields=["organization"], condition=Q(shared=True), name="saved_view_shared"),
        ]

    def __str__(self) -> str:
        return self.name


# Upper bounds (seconds) of the duration histogram's buckets in TaskRollup: from half a second,
# each bucket √2 wider than the one before, up to about 26 hours; one more bucket holds longer runs.
ROLLUP_DURATION_BOUNDS: tuple[float, ...] = tuple(round(0.5 * 2 ** (k / 2), 3) for k in range(36))
ROLLUP_BUCKETS: tuple[str, ...] = tuple(f"d{i:02d}" for i in range(len(ROLLUP_DURATION_BOUNDS) + 1))
# The faces agents report through: "last seen" is kept per face (TaskRollup.seen_<face>).
ROLLUP_SEEN_FACES: tuple[str, ...] = (Face.API, Face.XPANDER, Face.AGENTEX, Face.JSONRPC)


class TaskRollup(models.Model):
    """Counters of an organization's tasks per agent and queue, kept by the write path.

    Written only by services.rollups, in the change's transaction under the organization's event
    lock, so the operations view reads a few hundred rows whatever the number of tasks.

    span 60 / 3600: what happened in the minute / hour from `start`: tasks created, tasks that
    reached a final status (by outcome, with their durations as a histogram), tokens reported.
    span 0 (`start` fixed): the agent's queue now: its pending tasks, and when the agent was
    last seen writing through each face.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    # The agent's id, 0 for tasks without one: a plain key column, so the unique key has no NULL.
    agent_key = models.BigIntegerField(db_default=0)
    queue = models.CharField(max_length=50, db_default="")
    span = models.PositiveIntegerField()
    start = models.DateTimeField()
    created = models.IntegerField(db_default=0)
    completed = models.IntegerField(db_default=0)
    failed = models.IntegerField(db_default=0)
    stopped = models.IntegerField(db_default=0)
    duration_sum = models.FloatField(db_default=0.0)
    # Token counts are a task's totals: a report that lowers them counts negative here.
    prompt_tokens = models.BigIntegerField(db_default=0)
    completion_tokens = models.BigIntegerField(db_default=0)
    pending = models.IntegerField(db_default=0)
    seen_api = models.DateTimeField(null=True, blank=True)
    seen_xpander = models.DateTimeField(null=True, blank=True)
    seen_agentex = models.DateTimeField(null=True, blank=True)
    seen_jsonrpc = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # Also the operations view's index: an organization's rows of one span, by time.
            models.UniqueConstraint(
                fields=["organization", "span", "start", "agent_key", "queue"], name="task_rollup_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization_id}/{self.agent_key}/{self.queue or '-'} {self.span}s @ {self.start:%Y-%m-%d %H:%M}"


for _bucket in ROLLUP_BUCKETS:
    # One column per duration bucket: a finish adds 1 to its bucket in the same UPSERT as its counts.
    TaskRollup.add_to_class(_bucket, models.IntegerField(db_default=0))


class BulkAct(models.TextChoices):
    STOP = "stop", "Stop"
    CANCEL = "cancel", "Cancel"
    RETRY = "retry", "Retry"
    PRIORITY = "priority", "Set priority"
    METADATA = "metadata", "Set a metadata key"


class BulkAction(models.Model):
    """One act (stop, cancel, retry, set priority, set a metadata key) on a frozen selection of one
    organization's tasks, run in the background (services.bulk_actions).

    The selection is frozen at confirmation as its BulkActionItem rows; each task is changed
    through the services with its own event. `done`, `unchanged` and `refused` are counted
    from the items after every batch; a runner holds the action by a lease it renews per batch,
    so a killed runner's action is taken up by the next one where it stopped.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="bulk_actions")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_label = models.CharField(max_length=150)
    act = models.CharField(max_length=16, choices=BulkAct.choices)
    # What the act sets: {"reason": ...} (stop, cancel, retry), {"priority": n}, {"key": k, "value": v}.
    params = models.JSONField(default=dict, blank=True)
    # "All N matching this filter": the list's view (selectors.TaskFilters.query) it was resolved from.
    selected_all = models.BooleanField(default=False)
    view = models.CharField(max_length=2000, blank=True, default="")
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    canceled_by_label = models.CharField(max_length=150, blank=True, default="")
    # Why it stopped before its end other than a cancel (its starter may no longer change the tasks).
    stopped_reason = models.CharField(max_length=300, blank=True, default="")
    # The runner holding it (host, process, thread) until `lease_until`; renewed every batch.
    runner = models.CharField(max_length=200, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["organization", "-id"], name="bulk_action_org"),
            models.Index(fields=["id"], condition=Q(finished_at__isnull=True), name="bulk_action_unfinished"),
        ]

    def __str__(self) -> str:
        return f"bulk action #{self.pk}: {self.act} ({self.total} tasks)"

    @property
    def processed(self) -> int:
        return self.done + self.unchanged + self.refused

    @property
    def not_run(self) -> int:
        """Tasks a canceled (or stopped) action never reached."""
        return self.total - self.processed if self.finished_at else 0

    @property
    def percent(self) -> int:
        return 100 if not self.total else int(100 * self.processed / self.total)

    @property
    def state(self) -> str:
        if self.finished_at is not None:
            if self.cancel_requested_at is not None and self.not_run:
                return "canceled"
            return "stopped" if self.stopped_reason else "finished"
        if self.cancel_requested_at is not None:
            return "canceling"
        return "running" if self.started_at else "queued"


class BulkOutcome(models.TextChoices):
    PENDING = "", "Pending"
    DONE = "done", "Changed"
    UNCHANGED = "unchanged", "Already so"
    REFUSED = "refused", "Refused"


class BulkActionItem(models.Model):
    """One task of a bulk action's frozen selection, and what became of it (with why, if refused)."""

    id = models.BigAutoField(primary_key=True)
    # No foreign-key constraints in the database: the items are written once, by one INSERT ...
    # SELECT from the organization's tasks in the transaction that creates their action
    # (services.bulk_actions.bulk_action_start), so they reference real rows by construction. The
    # constraints' checks, two per item at commit, were 620 of that request's 700 ms at 10,000
    # tasks (EXPLAIN ANALYZE, bench/bench_bulk.py). Deletes through the ORM still cascade
    # (Django's on_delete), and the runner reads an item whose task is gone as refused.
    # bulk_action needs no index of its own: bulk_item_unique leads with it.
    bulk_action = models.ForeignKey(
        BulkAction, on_delete=models.CASCADE, related_name="items", db_constraint=False, db_index=False
    )
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    outcome = models.CharField(max_length=10, choices=BulkOutcome.choices, blank=True, default="")
    reason = models.CharField(max_length=300, blank=True, default="")
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bulk_action", "task"], name="bulk_item_unique")]
        indexes = [
            # The runner's next batch: the action's items not yet processed, in order.
            models.Index(fields=["bulk_action", "id"], condition=Q(outcome=""), name="bulk_item_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.bulk_action_id}/{self.task_id}: {self.outcome or 'pending'}"
