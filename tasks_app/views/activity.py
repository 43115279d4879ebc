"""A task's activity log page (filters and search in the URL, live like the task page) and the
older pages of the task's timeline, both newest first, by keyset, loaded as the reader scrolls."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .. import lifecycle, selectors
from ..live import timeline
from ..live.presenters import timeline_context
from ..models import ActivityKind
from ..services.validation import ascii_int, text_problem

LOG = "activity/log.html"
TIMELINE = "activity/timeline.html"


@require_GET
@login_required
def activity_log(request, org: str, task_id: str):
    task = selectors.get_task_for_user(request.user, org, task_id)
    kind = request.GET.get("kind", "")
    if kind and kind not in ActivityKind.values:
        return HttpResponseBadRequest(f"Unknown kind; expected one of: {', '.join(ActivityKind.values)}.")
    q = request.GET.get("q", "").strip()[:200]
    if text_problem(q):
        return HttpResponseBadRequest("The search text must not contain NUL characters.")
    before_raw = request.GET.get("before", "")
    before_id = ascii_int(before_raw) if before_raw else None
    if before_raw and before_id is None:
        return HttpResponseBadRequest("Invalid page cursor.")
    fragment = bool(request.htmx) and not request.htmx.history_restore_request
    # Read before the entries (full page): an event committed in between is replayed by the socket.
    last_event_id = None if fragment else selectors.last_event_id([task.organization_id], task_pk=task.pk)
    page = selectors.activity_page(task, kind=kind or None, q=q or None, before_id=before_id)
    active = not lifecycle.is_terminal(task.status)
    context = {
        "task": task,
        "page": page,
        "items": [timeline.activity_item(entry, task_active=active) for entry in page.entries],
        "kind": kind,
        "q": q,
        "kinds": ActivityKind.choices,
        "filtered": bool(kind or q),
        "last_event_id": last_event_id,
    }
    template = LOG
    if fragment:
        # Older entries replace the sentinel; a changed filter or search replaces the list (the form keeps focus).
        template += "#activity-page" if before_id else "#activity-list"
    response = render(request, template, context)
    response["Vary"] = "HX-Request"
    return response


@require_GET
@login_required
def task_timeline(request, org: str, task_id: str):
    """An older page of the task page's timeline: its items and the next sentinel (or the start)."""
    task = selectors.get_task_for_user(request.user, org, task_id)
    raw = request.GET.get("before", "")
    try:
        before = selectors.TimelineCursor.parse(raw) if raw else None
    except selectors.BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    context = {"task": task, **timeline_context(task, before)}
    fragment = bool(request.htmx) and not request.htmx.history_restore_request
    response = render(request, TIMELINE + "#timeline-page" if fragment else TIMELINE, context)
    response["Vary"] = "HX-Request"
    return response
