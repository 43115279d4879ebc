"""The one write path: every change to a task goes through a function here.

Each call is one transaction on `kernel.changing`: lock the row (scoped to its organization),
check the expected version, check the lifecycle, validate and apply the patch, bump `version`,
update the status counts, write one `TaskEvent` (the audit row, the outbox and the replay log,
with the task's snapshot), and ring the live bell after commit.

Modules: `kernel` (the skeleton), `tasks`, `activity`, `hitl`, `tokens`, `workers`, `retention`;
`validation` (what may be stored), `errors` (refusals), `actors`, `snapshots`, `counters`; and
`saved_views` (the list's saved views, which are not tasks); `bulk_actions` (one act on many
tasks, previewed, frozen and run in the background through the same task services).
"""

from .activity import append_activity
from .actors import Actor
from .bulk_actions import (
    bulk_action_cancel,
    bulk_action_start,
    bulk_actions_run,
    bulk_preview,
    may_run_bulk_actions,
)
from .errors import (
    HitlAlreadyDecided,
    HitlError,
    IdTaken,
    InvalidInput,
    NameTaken,
    NotAllowed,
    ServiceError,
    TaskCleaned,
    TaskNotAssigned,
    TaskNotFound,
    TransitionRefused,
    VersionConflict,
    WorkerNotRegistered,
)
from .hitl import hitl_decide, hitl_expire_due, hitl_request, may_decide_hitl
from .kernel import last_event
from .saved_views import (
    may_share_views,
    saved_view_create,
    saved_view_delete,
    saved_view_rename,
    saved_view_share,
)
from .tasks import (
    STOP_STATUSES,
    report_metrics,
    resolve_agent,
    task_claim,
    task_create,
    task_delete,
    task_retry,
    task_stop,
    task_update,
)
from .tokens import api_token_authenticate, api_token_create, api_token_revoke
from .validation import CREATE_FIELDS, TASK_ID_RE, TEXT_LIMITS, UPDATE_FIELDS, merge_object
from .workers import WORKER_TTL, active_worker, task_complete, worker_heartbeat, worker_register

__all__ = [
    "Actor",
    "ServiceError",
    "InvalidInput",
    "TransitionRefused",
    "VersionConflict",
    "IdTaken",
    "NameTaken",
    "NotAllowed",
    "may_decide_hitl",
    "TaskNotFound",
    "TaskCleaned",
    "TaskNotAssigned",
    "WorkerNotRegistered",
    "HitlError",
    "HitlAlreadyDecided",
    "merge_object",
    "last_event",
    "resolve_agent",
    "STOP_STATUSES",
    "CREATE_FIELDS",
    "UPDATE_FIELDS",
    "TEXT_LIMITS",
    "TASK_ID_RE",
    "task_create",
    "task_update",
    "task_stop",
    "task_retry",
    "task_delete",
    "task_claim",
    "task_complete",
    "worker_register",
    "worker_heartbeat",
    "active_worker",
    "WORKER_TTL",
    "report_metrics",
    "append_activity",
    "hitl_request",
    "hitl_decide",
    "hitl_expire_due",
    "may_share_views",
    "saved_view_create",
    "saved_view_rename",
    "saved_view_share",
    "saved_view_delete",
    "may_run_bulk_actions",
    "bulk_preview",
    "bulk_action_start",
    "bulk_action_cancel",
    "bulk_actions_run",
    "api_token_create",
    "api_token_revoke",
    "api_token_authenticate",
]
