"""HTML pushed over the websocket for the HITL inbox.

Rendered once per event (and per can_edit) by the caller's fragment cache, from templates, so
everything is escaped there. Every top-level element carries an id and hx-swap-oob:
- `task.hitl_requested`: the new card, appended to `#hitl-list` (oldest first, so at the end);
- `task.hitl_decided`, or a task leaving its pause another way (stop, resume, delete): the card
  is replaced by a "decided by X" line with the same id;
- both: the `#hitl-badge` count of the event's organization.
Events that change nothing on these pages render to "" (the caller sends nothing).
"""

from django.template.loader import render_to_string
from django.utils import timezone

from .. import selectors
from ..lifecycle import Status
from ..models import EventType, HitlRequest, TaskEvent


def _hitl_for(event: TaskEvent) -> HitlRequest | None:
    qs = HitlRequest.objects.select_related("task", "task__agent", "task__organization").filter(task_id=event.task_id)
    hitl_id = (event.after or {}).get("hitl_id")
    if hitl_id is not None:
        return qs.filter(pk=hitl_id).first()
    # A task that left its pause some other way withdrew its latest request.
    return qs.order_by("-id").first()


def _leaves_pause(event: TaskEvent) -> bool:
    if event.type == EventType.DELETED:
        return True
    # A worker may also complete a task it claimed that was paused since (JSON-RPC task.complete).
    leaving = event.type in (EventType.UPDATED, EventType.COMPLETED)
    return leaving and (event.before or {}).get("status") == Status.PAUSED


def render_hitl_event_html(event: TaskEvent, *, can_edit: bool) -> str:
    """The inbox fragment for one event (see the module docstring)."""
    if event.type == EventType.HITL_REQUESTED:
        partial = "requested"
    elif event.type == EventType.HITL_DECIDED or _leaves_pause(event):
        partial = "removed"
    else:
        return ""
    hitl = _hitl_for(event)
    if hitl is None:
        return ""
    if partial == "requested" and not hitl.is_pending:
        # Replayed after it was decided: the decided line replaces any card the page still shows.
        partial = "removed"
    if partial == "removed" and hitl.is_pending:
        return ""  # the task left paused without touching this request (cannot happen today)
    context = {"hitl": hitl, "can_edit": can_edit, "now": timezone.now()}
    html = render_to_string(f"approvals/live.html#{partial}", context)
    return html + render_badge_html(event)


def affects_pending_count(event: TaskEvent) -> bool:
    return event.type in (EventType.HITL_REQUESTED, EventType.HITL_DECIDED) or _leaves_pause(event)


def render_badge_html(event: TaskEvent) -> str:
    """The navigation's pending-approvals count for the event's organization, swapped by id."""
    count = selectors.pending_hitl_count([event.organization_id])
    return render_to_string("approvals/live.html#badge", {"count": count})
