"""Bulk actions: one act on many tasks of one organization, previewed, frozen, run in the background.

    preview = bulk_preview(user=u, organization=o, act="cancel", params=p, tasks=qs)  # counts and refusals, no writes
    action = bulk_action_start(user=u, organization=o, act="cancel", params=p, tasks=qs)  # freezes the selection
    bulk_actions_run()   # in a background thread of the process that accepted it, or manage.py run_bulk_actions

The rule of what each act refuses is the write path's own: `refusal` asks the lifecycle the same
questions task_stop and task_retry ask (`check_stop`, `check_transition(retry=True)`), once per
status, so a preview groups the selection by status and asks once per group: two queries however
many tasks are selected. Each task is then changed through the service the list's row buttons
call (task_stop, task_retry, task_update), as the person who started the action, through the face
"bulk" with the action's id in the event (`after["bulk_action"]`, written by the kernel): one
audited TaskEvent per changed task, rung live on commit like any change.

Who may: operators and admins of the organization (`may_run_bulk_actions`), checked when the
action is previewed, started and cancelled, and again by the runner before every batch (a person
whose role was taken away stops changing tasks within a batch).

Running. A runner takes an unfinished action with a lease (SELECT ... FOR UPDATE SKIP LOCKED on
PostgreSQL, then `lease_until`), renews it before every batch, and works through the action's
pending items in id order, BATCH at a time. Each task is changed by its service in the service's
own transaction, as any single change is; the batch's outcomes are recorded after it. The event
log is what says a task was changed by this action (its event names the action), so a runner
killed mid-batch loses nothing: the next one (once the lease lapses) finds those tasks in the log
and records them as done without calling the service again, and carries on with the rest. Two
runners on one action (a lease lapsed under a slow one) cannot both change a task either: both
read its version, one wins, the other's call is a version conflict, and it asks the log. A
refusal the lifecycle decides from the status read with the batch is recorded without locking the
task (a refused act changes nothing); for the others the service checks everything again under
its lock. A version conflict (someone else changed the task between the batch's read and the
lock) is retried once with a fresh read; a second one is a refusal.
"""

import json
import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import EmptyResultSet
from django.db import connection, connections, transaction
from django.db.models import BooleanField, Count, ExpressionWrapper, F, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from .. import lifecycle
from ..lifecycle import Status
from ..models import (
    ActorKind,
    BulkAct,
    BulkAction,
    BulkActionItem,
    BulkOutcome,
    EventType,
    Face,
    Organization,
    Task,
    TaskEvent,
)
from .actors import Actor
from .errors import (
    Errors,
    InvalidInput,
    NotAllowed,
    ServiceError,
    TaskCleaned,
    TaskNotFound,
    TransitionRefused,
    VersionConflict,
)
from .tasks import task_retry, task_stop, task_update
from .validation import (
    UPDATE_FIELDS,
    JsonRefused,
    ascii_int,
    check_text,
    clean_fields,
    clean_value,
    parse_json,
)

logger = logging.getLogger(__name__)

# The acts that end or restart a task, and the status a stop or cancel ends in (the row's menu
# and buttons offer the same: services.task_stop with that status, services.task_retry).
STOP_TARGETS: dict[str, str] = {BulkAct.STOP: Status.STOPPED, BulkAct.CANCEL: Status.CANCELED}
LIFECYCLE_ACTS = frozenset({BulkAct.STOP, BulkAct.CANCEL, BulkAct.RETRY})

# At most this many tasks in one action (the items are inserted in the request that starts it).
MAX_TASKS = 50_000
BATCH = 100
LEASE = timedelta(seconds=30)
EXAMPLES = 5
METADATA_KEY_MAX = 200
REASON_MAX = 300

CLEANED = "Its content was removed by retention: it can only be read."
DELETED = "The task was deleted."
NONE_SELECTED = "None of the selected tasks is one you may change now."
CHANGED_TWICE = "It changed again while the bulk action reached it (two version conflicts)."


# --- The rule --------------------------------------------------------------------------------


def refusal(act: str, status: str, *, cleaned: bool = False) -> str | None:
    """Why `act` would be refused on a task in `status` (None: it applies), by the lifecycle's rule.

    The same checks the services make under their lock: task_stop's `check_stop`, task_retry's
    `check_transition(..., retry=True)`; a task cleaned by retention is read-only for every act.
    """
    if cleaned:
        return CLEANED
    try:
        if act in STOP_TARGETS:
            lifecycle.check_stop(status, STOP_TARGETS[act])
        elif act == BulkAct.RETRY:
            lifecycle.check_transition(status, lifecycle.RETRY_TARGET, retry=True)
    except lifecycle.TransitionError as exc:
        return str(exc)
    return None


def may_run_bulk_actions(user: AbstractBaseUser, organization_id: int) -> bool:
    """Operators and admins of the organization may change its tasks in bulk; viewers may not."""
    from .. import selectors  # the memberships the request already read (selectors read through services)

    return selectors.can_edit(user, organization_id)  # the one rule of who may change tasks


def _require(user: AbstractBaseUser, organization: Organization) -> None:
    if not may_run_bulk_actions(user, organization.pk):
        raise NotAllowed(f"Changing {organization.name}'s tasks in bulk takes an operator or admin.")


def clean_params(act: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """What an act sets, checked by the write path's own field rules: {"reason"}, {"priority"}, {"key", "value"}.

    A metadata value is JSON when it reads as JSON (3, true, "text", {"a": 1}), else the text as typed.
    """
    if act not in BulkAct.values:
        raise InvalidInput({"act": [f"Unknown bulk action {act!r}; one of: {', '.join(BulkAct.values)}."]})
    errors = Errors()
    if act in LIFECYCLE_ACTS:
        reason = str(raw.get("reason") or "").strip()
        clean_value("status_reason", reason, errors)
        errors.raise_if_any()
        return {"reason": reason}
    if act == BulkAct.PRIORITY:
        text = str(raw.get("priority") or "").strip()
        number = ascii_int(text, max_digits=3)
        if number is None:
            raise InvalidInput({"priority": [f"{text!r} is not a whole number from 0 to 100."]})
        clean_fields({"priority": number}, UPDATE_FIELDS, errors)
        errors.raise_if_any()
        return {"priority": number}
    key = str(raw.get("key") or "").strip()
    check_text(errors, "key", key, METADATA_KEY_MAX, empty="Name the metadata key to set.")
    errors.raise_if_any()
    text = str(raw.get("value") or "")
    try:
        value = parse_json(text)
    except JsonRefused:
        value = text
    clean_fields({"metadata": {key: value}}, UPDATE_FIELDS, errors)
    errors.raise_if_any()
    return {"key": key, "value": value}


def act_label(act: str, params: Mapping[str, Any]) -> str:
    """What the act does, in a few words ("Set priority to 80")."""
    if act == BulkAct.PRIORITY:
        return f"Set priority to {params.get('priority')}"
    if act == BulkAct.METADATA:
        value = json.dumps(params.get("value"), ensure_ascii=False)
        return f"Set metadata {params.get('key')} to {value if len(value) <= 60 else value[:59] + '…'}"
    return BulkAct(act).label


# --- Preview -----------------------------------------------------------------------------------


@dataclass
class PreviewGroup:
    """Tasks of the selection in one status (or cleaned), and whether the act applies to them."""

    count: int
    status: str = ""
    reason: str = ""  # why the act is refused ("" it applies)
    cleaned: bool = False
    examples: list[Task] = field(default_factory=list)


@dataclass
class BulkPreview:
    organization: Organization
    act: str
    params: dict[str, Any]
    applies: int = 0  # tasks the act will change
    unchanged: int = 0  # tasks that already are as the act would make them (priority already set)
    refused: int = 0
    groups: list[PreviewGroup] = field(default_factory=list)  # applying groups, then refused ones
    too_many: bool = False

    @property
    def total(self) -> int:
        return self.applies + self.unchanged + self.refused

    @property
    def applying(self) -> list[PreviewGroup]:
        return [group for group in self.groups if not group.reason]

    @property
    def refusals(self) -> list[PreviewGroup]:
        return [group for group in self.groups if group.reason]


def _unflagged() -> ExpressionWrapper:
    return ExpressionWrapper(Q(cleaned_at__isnull=True), output_field=BooleanField())


def bulk_preview(
    *, user: AbstractBaseUser, organization: Organization, act: str, params: dict[str, Any], tasks: QuerySet[Task]
) -> BulkPreview:
    """How many of `tasks` the act applies to and how many it refuses, grouped by why, with a few
    examples each: two queries (statuses counted, examples by window), whatever the number of tasks."""
    _require(user, organization)
    tasks = tasks.filter(organization_id=organization.pk, deleted_at__isnull=True).order_by()
    counts: dict[str, Any] = {"n": Count("pk"), "cleaned": Count("pk", filter=Q(cleaned_at__isnull=False))}
    if act == BulkAct.PRIORITY:
        counts["same"] = Count("pk", filter=Q(priority=params["priority"], cleaned_at__isnull=True))
    preview = BulkPreview(organization=organization, act=act, params=params)
    groups: dict[tuple[str, str, bool], PreviewGroup] = {}
    for row in tasks.values("status").annotate(**counts).order_by("status"):
        status, cleaned, live = row["status"], row["cleaned"], row["n"] - row["cleaned"]
        if cleaned:
            group = groups.setdefault(("", CLEANED, True), PreviewGroup(0, reason=CLEANED, cleaned=True))
            group.count += cleaned
            preview.refused += cleaned
        if not live:
            continue
        reason = refusal(act, status) or ""
        groups[(status, reason, False)] = PreviewGroup(live, status=status, reason=reason)
        if reason:
            preview.refused += live
        else:
            same = row.get("same", 0)
            preview.unchanged += same
            preview.applies += live - same
    preview.too_many = preview.total > MAX_TASKS
    if groups:
        examples = (
            tasks.select_related("organization")
            .only("pk", "public_id", "title", "status", "cleaned_at", "organization__slug")
            .annotate(
                place=Window(RowNumber(), partition_by=[F("status"), _unflagged()], order_by=F("pk").asc()),
            )
            .filter(place__lte=EXAMPLES)
            .order_by("status", "pk")
        )
        for task in examples:
            if task.cleaned_at is not None:
                group = groups.get(("", CLEANED, True))
            else:
                group = next((g for key, g in groups.items() if key[0] == task.status and not key[2]), None)
            if group is not None and len(group.examples) < EXAMPLES:
                group.examples.append(task)
    order = {status: n for n, status in enumerate(lifecycle.STATUSES)}
    preview.groups = sorted(groups.values(), key=lambda g: (bool(g.reason), g.cleaned, order.get(g.status, 99)))
    return preview


# --- Starting and cancelling ---------------------------------------------------------------------


def bulk_action_start(
    *,
    user: AbstractBaseUser,
    organization: Organization,
    act: str,
    params: dict[str, Any],
    tasks: QuerySet[Task],
    selected_all: bool = False,
    view: str = "",
) -> BulkAction:
    """Freeze the selection (one item row per task, in one INSERT ... SELECT) and queue the action.

    Only the organization's live tasks are kept, whatever `tasks` holds; the runner starts after
    commit in a background thread of this process (settings.BULK_ACTIONS_IN_BACKGROUND).
    """
    _require(user, organization)
    if act not in BulkAct.values:
        raise InvalidInput({"act": [f"Unknown bulk action {act!r}."]})
    tasks = tasks.filter(organization_id=organization.pk, deleted_at__isnull=True)
    selection = tasks.order_by("pk").values_list("pk")[: MAX_TASKS + 1]
    try:
        sql, sql_params = selection.query.sql_with_params()
    except EmptyResultSet:  # no ids at all
        raise InvalidInput({"tasks": [NONE_SELECTED]}) from None
    with transaction.atomic():
        action = BulkAction.objects.create(
            organization=organization,
            created_by=user,
            created_by_label=user.get_username()[:150],
            act=act,
            params=params,
            selected_all=selected_all,
            view=view[:2000],
        )
        items = connection.ops.quote_name(BulkActionItem._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {items} (bulk_action_id, task_id, outcome, reason)"  # noqa: S608 (names from the model)
                f" SELECT %s, selection.*, '', '' FROM ({sql}) selection",
                [action.pk, *sql_params],
            )
            total = cursor.rowcount
        if total > MAX_TASKS:
            raise InvalidInput({"tasks": [f"At most {MAX_TASKS:,} tasks in one bulk action; narrow the filter."]})
        if total == 0:
            raise InvalidInput({"tasks": [NONE_SELECTED]})
        action.total = total
        action.save(update_fields=["total"])
        transaction.on_commit(start_background_runner)
    return action


def bulk_action_cancel(*, user: AbstractBaseUser, action: BulkAction) -> BulkAction:
    """Stop a queued or running action where it is: its runner ends it before its next batch
    (a queued one, or one whose runner is gone, ends at once); what was done stays done."""
    _require(user, action.organization)
    now = timezone.now()
    BulkAction.objects.filter(pk=action.pk, finished_at__isnull=True, cancel_requested_at__isnull=True).update(
        cancel_requested_at=now, canceled_by_label=user.get_username()[:150]
    )
    BulkAction.objects.filter(pk=action.pk, finished_at__isnull=True).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    ).update(finished_at=now)
    _count(action)
    action.refresh_from_db()
    return action


# --- Running ----------------------------------------------------------------------------------------


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:200]


def bulk_actions_run(*, runner: str | None = None, batch: int = BATCH, action_id: int | None = None) -> list[int]:
    """Run unfinished actions to their end, one after the other; the ids of those this call took up.

    An action another runner holds (its lease not lapsed) is left to it.
    """
    runner = runner or runner_name()
    ran: list[int] = []
    while True:
        action = _claim(runner, action_id)
        if action is None:
            return ran
        ran.append(action.pk)
        _run(action, runner, batch=batch)
        if action_id is not None:
            return ran


def _claim(runner: str, action_id: int | None) -> BulkAction | None:
    now = timezone.now()
    with transaction.atomic():
        qs = BulkAction.objects.filter(finished_at__isnull=True).filter(
            Q(lease_until__isnull=True) | Q(lease_until__lt=now)
        )
        if action_id is not None:
            qs = qs.filter(pk=action_id)
        if connection.features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True)
        else:
            qs = qs.select_for_update()  # SQLite: its IMMEDIATE transaction holds the write lock
        action = qs.order_by("pk").first()
        if action is None:
            return None
        action.runner, action.lease_until = runner, now + LEASE
        action.started_at = action.started_at or now
        action.save(update_fields=["runner", "lease_until", "started_at"])
    return action


def _held(action: BulkAction, runner: str):
    return BulkAction.objects.filter(pk=action.pk, runner=runner, finished_at__isnull=True)


def _run(action: BulkAction, runner: str, *, batch: int) -> None:
    starter = get_user_model().objects.filter(pk=action.created_by_id).first()
    actor = Actor(
        kind=ActorKind.USER,
        label=action.created_by_label,
        face=Face.BULK,
        user=starter,
        bulk_action=action.pk,
    )
    while True:
        renewed = _held(action, runner).filter(cancel_requested_at__isnull=True)
        if not renewed.update(lease_until=timezone.now() + LEASE):
            # Cancelled (it ends here), or another runner took it after this one's lease lapsed.
            _count(action)
            _held(action, runner).update(finished_at=timezone.now(), lease_until=None)
            return
        if not _starter_may(action):
            _count(action)
            _held(action, runner).update(
                finished_at=timezone.now(),
                lease_until=None,
                stopped_reason=f"{action.created_by_label} may no longer change {action.organization}'s tasks.",
            )
            return
        items = list(
            BulkActionItem.objects.filter(bulk_action_id=action.pk, outcome=BulkOutcome.PENDING)
            .order_by("pk")
            .values_list("pk", "task_id")[:batch]
        )
        if not items:
            _count(action)
            _held(action, runner).update(finished_at=timezone.now(), lease_until=None)
            return
        _run_batch(action, actor, items)


def _starter_may(action: BulkAction) -> bool:
    """The starter's role read again (a fresh user, not the request's cached memberships), by the
    one rule of who may change tasks: a few queries per batch."""
    if action.created_by_id is None:
        return False
    starter = get_user_model().objects.filter(pk=action.created_by_id, is_active=True).first()
    return starter is not None and may_run_bulk_actions(starter, action.organization_id)


def _count(action: BulkAction) -> None:
    """The action's counts recounted from its items, when it ends (each batch adds its own)."""
    counts = dict(
        BulkActionItem.objects.filter(bulk_action_id=action.pk)
        .exclude(outcome=BulkOutcome.PENDING)
        .order_by()
        .values_list("outcome")
        .annotate(n=Count("pk"))
    )
    BulkAction.objects.filter(pk=action.pk).update(
        done=counts.get(BulkOutcome.DONE, 0),
        unchanged=counts.get(BulkOutcome.UNCHANGED, 0),
        refused=counts.get(BulkOutcome.REFUSED, 0),
    )


_READ = ("pk", "organization_id", "public_id", "status", "version", "cleaned_at", "deleted_at")


def _read(task_pks: list[int], organization_id: int) -> dict[int, Task]:
    tasks = Task.objects.filter(pk__in=task_pks, organization_id=organization_id).only(*_READ)
    return {task.pk: task for task in tasks}


def _refusal_of(action: BulkAction, task: Task | None) -> str | None:
    if task is None or task.deleted_at is not None:
        return DELETED
    return refusal(action.act, task.status, cleaned=task.cleaned_at is not None)


def _run_batch(action: BulkAction, actor: Actor, items: list[tuple[int, int]]) -> None:
    """Each task of the batch through its service (its own transaction), then the items' outcomes.

    The event log says what this action already changed (an interrupted run, or another runner
    that held it at the same time): read after the tasks, so a change committed in between is
    either in the log or makes the call below a version conflict, which asks the log again.
    """
    task_pks = [task_pk for _, task_pk in items]
    tasks = _read(task_pks, action.organization_id)
    changed = _changed_by(action, task_pks)
    outcomes: dict[tuple[str, str], list[int]] = {}
    for item_pk, task_pk in items:
        if task_pk in changed:
            outcome = (BulkOutcome.DONE, "")
        elif (reason := _refusal_of(action, tasks.get(task_pk))) is not None:
            outcome = (BulkOutcome.REFUSED, reason)
        else:
            outcome = _apply(action, actor, tasks[task_pk])
        outcomes.setdefault(outcome, []).append(item_pk)
    now = timezone.now()
    with transaction.atomic():
        # Counted as the items move out of pending (another runner's moves are its own to count).
        moved = dict.fromkeys((BulkOutcome.DONE, BulkOutcome.UNCHANGED, BulkOutcome.REFUSED), 0)
        for (outcome, reason), item_pks in outcomes.items():
            moved[outcome] += BulkActionItem.objects.filter(pk__in=item_pks, outcome=BulkOutcome.PENDING).update(
                outcome=outcome, reason=reason[:REASON_MAX], processed_at=now
            )
        BulkAction.objects.filter(pk=action.pk).update(
            done=F("done") + moved[BulkOutcome.DONE],
            unchanged=F("unchanged") + moved[BulkOutcome.UNCHANGED],
            refused=F("refused") + moved[BulkOutcome.REFUSED],
        )


def _changed_by(action: BulkAction, task_pks: list[int]) -> set[int]:
    """Which of these tasks this action changed already: their events name it (after.bulk_action)."""
    events = TaskEvent.objects.filter(task_id__in=task_pks, after__bulk_action=action.pk)
    return set(events.exclude(type=EventType.ACTIVITY).values_list("task_id", flat=True))


def _apply(action: BulkAction, actor: Actor, task: Task) -> tuple[str, str]:
    """Change one task through its service; the outcome and, for a refusal, why."""
    for attempt in (1, 2):
        try:
            return (BulkOutcome.DONE if _call(action, actor, task) else BulkOutcome.UNCHANGED, "")
        except VersionConflict:
            if _changed_by(action, [task.pk]):
                return (BulkOutcome.DONE, "")  # by another runner of this action, just now
            if attempt == 2:
                return (BulkOutcome.REFUSED, CHANGED_TWICE)
            fresh = _read([task.pk], action.organization_id).get(task.pk)
            if (reason := _refusal_of(action, fresh)) is not None:
                return (BulkOutcome.REFUSED, reason)
            task = fresh
        except TransitionRefused as exc:
            return (BulkOutcome.REFUSED, exc.message)
        except TaskCleaned:
            return (BulkOutcome.REFUSED, CLEANED)
        except TaskNotFound:
            return (BulkOutcome.REFUSED, DELETED)
        except ServiceError as exc:
            return (BulkOutcome.REFUSED, exc.message)
    raise AssertionError("not reached")


def _call(action: BulkAction, actor: Actor, task: Task) -> bool:
    """The service the desk's own controls call for this act, at the version read; whether the task changed."""
    version, params = task.version, action.params
    common = {"task": task, "actor": actor, "organization_id": task.organization_id, "expected_version": version}
    if action.act in STOP_TARGETS:
        changed = task_stop(**common, status=STOP_TARGETS[action.act], reason=params.get("reason", ""))
    elif action.act == BulkAct.RETRY:
        changed = task_retry(**common, reason=params.get("reason", ""))
    elif action.act == BulkAct.PRIORITY:
        changed = task_update(**common, priority=params["priority"])
    else:
        changed = task_update(**common, metadata={params["key"]: params["value"]})
    return changed.version != version


# --- In the background of the process that accepted it ------------------------------------------

_lock = threading.Lock()
_wake = threading.Event()
_thread: threading.Thread | None = None


def start_background_runner() -> None:
    """Run unfinished actions in a thread of this process (one thread at most), unless settings
    say another process does (BULK_ACTIONS_IN_BACKGROUND=false: manage.py run_bulk_actions)."""
    global _thread
    if not settings.BULK_ACTIONS_IN_BACKGROUND:
        return
    with _lock:
        _wake.set()
        if _thread is not None and _thread.is_alive():
            return
        _thread = threading.Thread(target=_background, name="taskdesk-bulk", daemon=True)
        _thread.start()


def resume_if_stalled(action: BulkAction) -> None:
    """An unfinished action nobody holds (its runner's process died): take it up here."""
    if action.finished_at is None and (action.lease_until is None or action.lease_until < timezone.now()):
        start_background_runner()


def _background() -> None:
    global _thread
    runner = runner_name()
    try:
        while True:
            _wake.clear()
            try:
                bulk_actions_run(runner=runner)
            except Exception:
                logger.exception("A bulk action's runner stopped; the action resumes where it was")
                try:
                    BulkAction.objects.filter(runner=runner, finished_at__isnull=True).update(lease_until=None)
                except Exception:
                    logger.warning("Could not release the bulk actions' leases; they lapse in %s", LEASE)
                with _lock:
                    _thread = None
                return
            with _lock:
                if not _wake.is_set():
                    _thread = None
                    return
    finally:
        connections.close_all()
