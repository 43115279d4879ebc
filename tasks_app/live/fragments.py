"""The HTML pushed over the websocket for one TaskEvent, from the same partials as the pages.

`render_event_html(event, page=..., can_edit=...)` returns top-level elements, each with an id
and `hx-swap-oob`, in this order (table content first: the browser parses the message in a
<template>, where a <tr> after other elements would be dropped):

page "list", default view (`view` ""; no filter, newest first):
- the task's row `<tr id="task-<pk>" hx-swap-oob="true">` (replaced where the page shows it);
  for `task.created` the row comes inside
  `<tbody id="task-new-<event id>" hx-swap-oob="afterbegin:#task-rows">` with `data-created="1"`
  (static/js/task_list.js inserts it, holds it while the pointer is on the table or the list is
  paused, and keeps the page at its page size);
- the organization's status-count bar `<div id="status-counts-<organization id>">`
  (inside the page's `#status-counts`);
- `<meta id="last-event-id" data-event-id="<event id>">`.

page "list", any other view (`view` is its key, selectors.TaskFilters.query): the row (marked
"no longer matches" when the view's filter now leaves it out), no inserted row, and
`<template data-list-news data-view=... data-task="task-<pk>" data-match="1|0" data-moved="1|0">`:
whether the task is in the view (selectors.task_matches, the list's own filter) and whether the
event can move it in the view's sort (selectors.sort_moves). The page counts matches that are
new to it or moved as "N new — show"; then the counts bar and the event id as above.

page "approvals" (the HITL inbox): fragments_hitl.render_hitl_event_html, and the event id.

page "ops" (the operations view, consumers.OpsConsumer): the event id alone, its bell; the page
reads its figures from the rollups when it hears one (static/js/ops.js).

page "detail" (the task page, and its activity log page, which shows only what it has targets for):
- the panels `#task-header`, `#panel-status`, `#panel-result`, `#panel-metadata`,
  `#panel-params`, `#panel-priority`, `#panel-tokens`, `#panel-plan` (hx-swap-oob="true"), the
  ones whose fields the event changed marked `live-changed` (a short visual cue);
- `#panel-hitl` (the decision panel) only when the pause changed;
- the timeline's new items, prepended to `#timeline-entries` (`afterbegin`): the event itself,
  or for `task.activity` its entries (a tool call with its result, when logged together); a call
  answered by this event is replaced where it is (`<li id="tl-a-<call>" hx-swap-oob="true">`);
- `<meta id="last-event-id" ...>`.

The task is read as it is now (not as it was at the event): a replayed event shows the
current state, which is what the page should end at. Nothing here depends on the socket's
user beyond `can_edit` (whether the edit controls are rendered) and a list page's view, so one
render serves every socket with the same (event, page, can_edit, view).
"""

from django.template.loader import render_to_string

from .. import selectors
from ..models import EventType, TaskEvent
from . import fragments_hitl, timeline
from .presenters import detail_context, status_count_groups, timeline_context

PAGES = ("list", "detail", "approvals", "ops")
HITL_EVENTS = (EventType.HITL_REQUESTED, EventType.HITL_DECIDED, EventType.DELETED)


def render_event_html(event: TaskEvent, *, page: str, can_edit: bool, view: str = "") -> str:
    """The out-of-band fragment for `event` on a "list", "detail", "approvals" or "ops" page.

    `view` is a list page's view key (selectors.TaskFilters.query; "" is the default view).
    """
    if page not in PAGES:
        raise ValueError(f"page must be one of {PAGES}, not {page!r}")
    if page == "ops":
        # The operations view only needs to know that something changed: the event's id (the
        # page's resume position), nothing of the task; it reads its numbers from the rollups.
        return render_to_string("tasks/task_list.html#last-event-id", {"event": event})
    if page == "approvals":
        html = fragments_hitl.render_hitl_event_html(event, can_edit=can_edit)
        return html + render_to_string("tasks/task_list.html#last-event-id", {"event": event})
    task = selectors.task_for_fragment(event.task_id)
    if task is None:  # hard-deleted (cascade) since: only the event id moves on
        return render_to_string("tasks/live_gone.html", {"event": event})
    if page == "list":
        if event.type == EventType.ACTIVITY:
            # Activity changes no column of the row: only the page's event id moves on.
            return render_to_string("tasks/task_list.html#last-event-id", {"event": event})
        context = {
            "event": event,
            "task": task,
            "created": event.type == EventType.CREATED,
            "editable_org_ids": {task.organization_id} if can_edit else set(),
            "row_sort": selectors.DEFAULT_SORT,
        }
        if view:
            # The view's own filter decides (one query): the page counts a match as new or
            # moved, and marks a row it shows that left the view.
            filters = selectors.task_filters_for_view(view)
            matches = selectors.task_matches(task.pk, filters)
            context.update(
                view=view,
                row_sort=filters.sort,
                matches=matches,
                moved=selectors.sort_moves(filters.sort, event),
                stale=not matches,
            )
        if event.type in (EventType.CREATED, EventType.DELETED) or "status" in (event.changes or []):
            # The counts are a GROUP BY over the organization's tasks (~40 ms per 100k rows,
            # bench/bench_pages.py): recount only when an event can change them.
            group = status_count_groups([task.organization])[0]
            context.update(organization=group["organization"], counts=group["counts"], counts_changed=True)
        html = render_to_string("tasks/task_list.html#live-list", context)
        if fragments_hitl.affects_pending_count(event):
            html += fragments_hitl.render_badge_html(event)
        return html
    context = {
        **detail_context(task, can_edit=can_edit),
        "event": event,
        # The decision panel is re-rendered only when the pause changed, so a reviewer typing
        # a reason is not interrupted by the agent's unrelated activity.
        "hitl_changed": event.type in HITL_EVENTS or "status" in (event.changes or []),
        "changed": changed_panels(event),
    }
    if event.type == EventType.CLEANED:
        # Retention rewrote every earlier event and activity entry: the timeline's first page again.
        context.update(timeline_context(task))
    else:
        context["timeline_html"] = render_timeline_html(event, task)
    html = render_to_string("tasks/task_detail.html#live-detail", context)
    if fragments_hitl.affects_pending_count(event):
        html += fragments_hitl.render_badge_html(event)
    return html


# Which detail panels show each field (the cue marks those an event changed).
PANELS_OF_FIELD = {
    "title": ("header",),
    "name": ("header",),
    "agent": ("header",),
    "source": ("header",),
    "assigned_worker": ("header", "status"),
    "status": ("header", "status"),
    "status_reason": ("status",),
    "started_at": ("status",),
    "paused_at": ("status",),
    "finished_at": ("status",),
    "execution_attempts": ("status",),
    "duration": ("status", "tokens"),
    "result": ("result",),
    "metadata": ("metadata",),
    "params": ("params",),
    "payload_extension": ("params",),
    "priority": ("priority",),
    "prompt_tokens": ("tokens",),
    "completion_tokens": ("tokens",),
    "used_tools": ("tokens",),
    "deep_planning": ("plan",),
    "deleted_at": ("header",),
}


def changed_panels(event: TaskEvent) -> set[str]:
    panels = {panel for name in event.changes or [] for panel in PANELS_OF_FIELD.get(name, ())}
    if event.type in (EventType.HITL_REQUESTED, EventType.HITL_DECIDED):
        panels.add("hitl")
    return panels


def render_timeline_html(event: TaskEvent, task) -> str:
    """The timeline items one event adds: new ones on top, a call it answers replaced in place."""
    if event.type != EventType.ACTIVITY:
        rows = [event]
        answered = []
    else:
        ids = (event.after or {}).get("activity_ids") or []
        entries = selectors.activity_entries(task.pk, ids)
        logged = {entry.pk for entry in entries}
        # Newest first, as the timeline reads; a result is shown with its call.
        rows = [entry for entry in reversed(entries) if entry.call_id is None]
        answered = [entry.call for entry in entries if entry.call_id is not None and entry.call_id not in logged]
    if not rows and not answered:
        return ""
    context = {
        "event": event,
        "task": task,
        "live": True,
        "items": timeline.timeline_items(rows, task=task),
        "answered": timeline.timeline_items(answered, task=task),
    }
    return render_to_string("activity/timeline.html#live-items", context)
