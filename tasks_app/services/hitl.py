"""Human in the loop: a task pauses for a person's decision, and the first decision wins."""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import lifecycle
from ..lifecycle import Status
from ..models import EDIT_ROLES, ActorKind, EventType, HitlDecision, HitlRequest, Membership, Task
from .actors import Actor
from .errors import Errors, HitlAlreadyDecided, HitlError, NotAllowed, TransitionRefused
from .kernel import Change, changing, lock_task
from .validation import clean_datetime, json_problem, text_problem


def _text(errors: Errors, name: str, value: Any, limit: int, *, required: bool = False) -> None:
    if not isinstance(value, str):
        errors.add(name, "Must be a string.")
    elif required and not value.strip():
        errors.add(name, "Required.")
    elif len(value) > limit:
        errors.add(name, f"At most {limit:,} characters.")
    elif problem := text_problem(value):
        errors.add(name, problem)


def hitl_request(
    *,
    task: Task | str,
    actor: Actor,
    question: str,
    organization_id: int | None = None,
    details: str = "",
    options: list | None = None,
    payload: Any = None,
    deadline: datetime | None = None,
    on_timeout: str = HitlDecision.REJECTED,
    reject_status: str = Status.FAILED,
) -> HitlRequest:
    """Pause a task for a person's decision."""
    errors = Errors()
    _text(errors, "question", question, 2_000, required=True)
    _text(errors, "details", details, 20_000)
    if options is not None:
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            errors.add("options", "Must be a list of strings.")
        elif problem := json_problem(options):
            errors.add("options", problem)
    if payload is not None and (problem := json_problem(payload)):
        errors.add("payload", problem)
    if on_timeout not in (HitlDecision.APPROVED, HitlDecision.REJECTED):
        errors.add("on_timeout", "Must be approved or rejected.")
    if reject_status not in lifecycle.TERMINAL:
        errors.add("reject_status", f"Must be a final status: {', '.join(sorted(lifecycle.TERMINAL))}.")
    if deadline is not None:
        try:
            deadline = clean_datetime(deadline)
        except ValueError as exc:
            errors.add("deadline", str(exc))
    errors.raise_if_any()

    with changing(task, actor=actor, organization_id=organization_id) as change:
        locked = change.task
        if HitlRequest.objects.filter(task=locked, decision__isnull=True).exists():
            raise HitlError(f"Task {locked.public_id} already has a pending request.")
        try:
            lifecycle.check_transition(locked.status, Status.PAUSED)
        except lifecycle.TransitionError as exc:
            raise TransitionRefused(exc) from None
        hitl = HitlRequest.objects.create(
            task=locked,
            organization_id=locked.organization_id,
            question=question.strip(),
            details=details,
            options=options or [],
            proposed_payload=payload,
            requested_at=change.now,
            deadline=deadline,
            on_timeout=on_timeout,
            reject_status=reject_status,
        )
        change.move_to(Status.PAUSED)
        change.pending_hitl_id = hitl.pk
        change.note(after={"hitl_id": hitl.pk, "question": hitl.question})
        change.record(EventType.HITL_REQUESTED, force=True)
    return hitl


def may_decide_hitl(actor: Actor, organization_id: int) -> bool:
    """Who may decide a HITL request of an organization: the one rule, for every face.

    - staff: an operator or admin of that organization (a superuser counts as admin everywhere);
      a viewer reads only.
    - an API token of that organization: the organization issued it to its automation, and a
      token may already move a paused task on (PATCH status, stop), which withdraws the request;
      refusing it the decision would protect nothing, only lose the decision record.
    - the system (deadline expiry, commands).
    """
    if actor.kind == ActorKind.SYSTEM:
        return True
    if actor.token is not None:
        return actor.token.organization_id == organization_id
    user = actor.user_or_none
    if user is None:
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(user=user, organization_id=organization_id, role__in=EDIT_ROLES).exists()


def hitl_decide(
    *,
    hitl: HitlRequest | int,
    actor: Actor,
    approve: bool,
    organization_id: int | None = None,
    reason: str = "",
    comment: str = "",
    amended_payload: Any = None,
    expired: bool = False,
) -> HitlRequest:
    """Approve (task resumes executing) or reject (task ends as the request says); first decision wins."""
    errors = Errors()
    reason = reason.strip() if isinstance(reason, str) else reason
    comment = comment.strip() if isinstance(comment, str) else comment
    if reason is None:
        reason = ""
    if comment is None:
        comment = ""
    _text(errors, "reason", reason, 2_000)
    _text(errors, "comment", comment, 2_000)
    if not approve and not reason:
        errors.add("reason", "A rejection needs a reason.")
    if amended_payload is not None:
        if not approve:
            errors.add("amended_payload", "Only an approval can amend the payload.")
        elif problem := json_problem(amended_payload):
            errors.add("amended_payload", problem)
    errors.raise_if_any()

    pk = hitl.pk if isinstance(hitl, HitlRequest) else hitl
    if organization_id is None and isinstance(hitl, HitlRequest):
        organization_id = hitl.organization_id
    if organization_id is None:
        raise ValueError("A HITL request is decided within an organization: pass organization_id.")
    if not may_decide_hitl(actor, organization_id):
        raise NotAllowed("Your role in this organization cannot decide requests (operators and admins can).")
    with transaction.atomic():
        locked_hitl = HitlRequest.objects.select_for_update().filter(organization_id=organization_id, pk=pk).first()
        if locked_hitl is None:
            raise HitlError(f"HITL request not found: {pk}")
        if not locked_hitl.is_pending:
            raise HitlAlreadyDecided(locked_hitl)
        locked = lock_task(Task(pk=locked_hitl.task_id, organization_id=locked_hitl.organization_id))
        if locked.status != Status.PAUSED:
            raise HitlError(f"The task is no longer paused (it is {locked.status}); the request cannot be decided.")
        target = Status.EXECUTING if approve else locked_hitl.reject_status
        change = Change(locked, actor)
        locked_hitl.decision = HitlDecision.APPROVED if approve else HitlDecision.REJECTED
        locked_hitl.decided_by = actor.user_or_none
        locked_hitl.decided_by_label = actor.label[:200]
        locked_hitl.decided_at = change.now
        locked_hitl.reason = reason
        locked_hitl.comment = comment
        locked_hitl.amended_payload = amended_payload
        locked_hitl.expired = expired
        locked_hitl.save()
        change.pending_hitl_id = None  # decided: moving on is not a withdrawal
        change.move_to(target, values={} if approve else {"status_reason": reason})
        change.note(
            after={"hitl_id": locked_hitl.pk, "decision": locked_hitl.decision, "reason": reason, "comment": comment}
        )
        if amended_payload is not None:
            change.note(
                change="payload", before={"payload": locked_hitl.proposed_payload}, after={"payload": amended_payload}
            )
        change.record(EventType.HITL_DECIDED, force=True)
    return locked_hitl


def hitl_expire_due(*, now: datetime | None = None, organization_ids: list[int] | None = None) -> int:
    """Resolve pending requests past their deadline as each request says; returns how many.

    A system job (`manage.py expire_hitl`); a page may run it for its viewer's own organizations.
    """
    now = now or timezone.now()
    qs = HitlRequest.objects.filter(decision__isnull=True, deadline__lte=now)
    if organization_ids is not None:
        qs = qs.filter(organization_id__in=organization_ids)
    due = list(qs.values_list("pk", "organization_id", "on_timeout"))
    resolved = 0
    actor = Actor.system("deadline")
    for pk, organization_id, on_timeout in due:
        try:
            hitl_decide(
                hitl=pk,
                organization_id=organization_id,
                actor=actor,
                approve=on_timeout == HitlDecision.APPROVED,
                reason="timed out",
                expired=True,
            )
        except HitlError:
            continue  # decided or withdrawn in the meantime
        resolved += 1
    return resolved
