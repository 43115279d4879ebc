"""Human in the loop: a task pauses for a person's decision, and the first decision wins.

The one place a request is decided (`hitl_decide`: approve, reject, respond, dismiss) and the one
rule of who may decide (`may_decide_hitl`); what status the task then takes is lifecycle's
(`lifecycle.status_after_hitl`).
"""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import lifecycle
from ..lifecycle import Status
from ..models import ActivityKind, ActorKind, EventType, HitlDecision, HitlRequest, Task
from .activity import append_activity
from .actors import Actor
from .errors import Errors, HitlAlreadyDecided, HitlError, InvalidInput, NotAllowed, TransitionRefused
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
    from .. import selectors  # selectors reads through services: imported when called

    return selectors.can_edit(user, organization_id)  # the one rule of who may change tasks


# What a person may decide (the deadline decides only as the request's on_timeout says).
DECISIONS: tuple[str, ...] = (
    HitlDecision.APPROVED,
    HitlDecision.REJECTED,
    HitlDecision.RESPONDED,
    HitlDecision.DISMISSED,
)
ANSWER_LIMIT = 20_000
DISMISSED_MESSAGE = "Dismissed without an answer."


def _stripped(value: Any) -> Any:
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else value


def _check_decision(
    errors: Errors, decision: Any, *, reason: Any, answer: Any, option: Any, amended_payload: Any
) -> None:
    """What each decision takes; every problem is collected before anything is locked."""
    if decision not in DECISIONS:
        errors.add("decision", f"Must be one of: {', '.join(DECISIONS)}.")
        return
    if decision == HitlDecision.REJECTED and not reason:
        errors.add("reason", "A rejection needs a reason.")
    if reason and decision not in (HitlDecision.APPROVED, HitlDecision.REJECTED):
        errors.add("reason", "Only an approval or a rejection takes a reason; use the comment.")
    if amended_payload is not None:
        if decision != HitlDecision.APPROVED:
            errors.add("amended_payload", "Only an approval can amend the payload.")
        elif problem := json_problem(amended_payload):
            errors.add("amended_payload", problem)
    if decision == HitlDecision.RESPONDED:
        if option is not None and answer:
            errors.add("answer", "Answer in your own words or choose an option, not both.")
        elif option is None and not answer:
            errors.add("answer", "An answer is required.")
    elif answer or option is not None:
        errors.add("answer" if answer else "option", "Only a response carries an answer or an option.")
    if option is not None and not isinstance(option, str):
        errors.add("option", "Must be a string.")


def _thread_message(hitl: HitlRequest) -> str:
    """What the person's decision says to the agent in its activity thread ("" for nothing).

    Agents that read only their thread (xpander's SDK, Agentex's stream) learn the answer, or that
    the request was dismissed, from this message; approvals and rejections speak through the
    task's status, as before.
    """
    if hitl.decision == HitlDecision.RESPONDED:
        return hitl.answer
    if hitl.decision == HitlDecision.DISMISSED:
        return f"{DISMISSED_MESSAGE[:-1]}: {hitl.comment}" if hitl.comment else DISMISSED_MESSAGE
    return ""


def hitl_decide(
    *,
    hitl: HitlRequest | int,
    actor: Actor,
    decision: str | None = None,
    approve: bool | None = None,
    organization_id: int | None = None,
    reason: str = "",
    comment: str = "",
    answer: str = "",
    option: str | None = None,
    amended_payload: Any = None,
    expired: bool = False,
) -> HitlRequest:
    """Close a pending request with a decision; the first decision wins, a later one is refused
    naming who decided (HitlAlreadyDecided).

    - approved: the task resumes (lifecycle.status_after_hitl); the payload may be amended.
    - rejected: needs a reason; the task ends as the request said (its reject_status).
    - responded: the person's answer to the agent's question, in their words (`answer`) or one of
      the options the agent offered (`option`, recorded as chosen_option and as the answer).
    - dismissed: closed without a decision the agent should act on; the task resumes.
    A response or a dismissal is also posted to the task's activity thread as the person's message
    (`_thread_message`). `approve=True/False` is short for decision approved/rejected.
    """
    if decision is None and approve is not None:
        decision = HitlDecision.APPROVED if approve else HitlDecision.REJECTED
    errors = Errors()
    reason, comment, answer = _stripped(reason), _stripped(comment), _stripped(answer)
    _text(errors, "reason", reason, 2_000)
    _text(errors, "comment", comment, 2_000)
    _text(errors, "answer", answer, ANSWER_LIMIT)
    _check_decision(errors, decision, reason=reason, answer=answer, option=option, amended_payload=amended_payload)
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
        if option is not None and option not in (locked_hitl.options or []):
            raise InvalidInput({"option": ["Not one of the options this request offers."]})
        locked = lock_task(Task(pk=locked_hitl.task_id, organization_id=locked_hitl.organization_id))
        if locked.status != Status.PAUSED:
            raise HitlError(f"The task is no longer paused (it is {locked.status}); the request cannot be decided.")
        change = Change(locked, actor)
        locked_hitl.decision = decision
        locked_hitl.decided_by = actor.user_or_none
        locked_hitl.decided_by_label = actor.label[:200]
        locked_hitl.decided_at = change.now
        locked_hitl.reason = reason
        locked_hitl.comment = comment
        locked_hitl.answer = option if option is not None else answer
        locked_hitl.chosen_option = option or ""
        locked_hitl.amended_payload = amended_payload
        locked_hitl.expired = expired
        locked_hitl.save()
        change.pending_hitl_id = None  # decided: moving on is not a withdrawal
        rejected = decision == HitlDecision.REJECTED
        target = lifecycle.status_after_hitl(decision, reject_status=locked_hitl.reject_status)
        change.move_to(target, values={"status_reason": reason} if rejected else {})
        facts = {"hitl_id": locked_hitl.pk, "decision": decision, "reason": reason, "comment": comment}
        if decision == HitlDecision.RESPONDED:
            facts.update(answer=locked_hitl.answer, option=locked_hitl.chosen_option or None)
        change.note(after=facts)
        if amended_payload is not None:
            change.note(
                change="payload", before={"payload": locked_hitl.proposed_payload}, after={"payload": amended_payload}
            )
        change.record(EventType.HITL_DECIDED, force=True)
        if message := _thread_message(locked_hitl):
            entry = {"kind": ActivityKind.MESSAGE, "role": "user", "content": message}
            append_activity(task=locked, actor=actor, entries=[entry])
    return locked_hitl


def hitl_expire_due(
    *, now: datetime | None = None, organization_ids: list[int] | None = None, every_organization: bool = False
) -> int:
    """Resolve pending requests past their deadline as each request says; returns how many.

    A system job (`manage.py expire_hitl`, which says `every_organization=True`); a page may run
    it for its viewer's own organizations. Neither given is a programming error, not "all".
    """
    if (organization_ids is None) == (not every_organization):
        raise ValueError("Pass the organizations' ids, or every_organization=True (the system job).")
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
                decision=on_timeout,
                reason="timed out",
                expired=True,
            )
        except HitlError:
            continue  # decided or withdrawn in the meantime
        resolved += 1
    return resolved
