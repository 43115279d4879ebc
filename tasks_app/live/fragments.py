"""The HTML pushed over the websocket for one TaskEvent, from the same partials as the pages.

`render_event_html(event, page=..., can_edit=...)` returns top-level elements, each with an id
and `hx-swap-oob`, in this order (table content first: the browser parses the message in a
<template>, where a <tr> after other elements would be dropped):

page "list":
- the task's row `<tr id="task-<pk>" hx-swap-oob="true">`; for `task.created` the row comes
  inside `<tbody id="task-new-<event id>" hx-swap-oob="afterbegin:#task-rows">` and carries
  `data-created="1"` (static/js/taskdesk.js drops it on a filtered or later page, and marks
  pushed rows that no longer match the page's filters);
- the organization's status-count bar `<div id="status-counts-<organization id>">`
  (inside the page's `#status-counts`);
- `<meta id="last-event-id" data-event-id="<event id>">`.

page "approvals" (the HITL inbox): fragments_hitl.render_hitl_event_html, and the event id.

page "detail":
- the panels `#task-header`, `#panel-status`, `#panel-hitl`, `#panel-result`, `#panel-metadata`,
  `#panel-params`, `#panel-priority`, `#panel-tokens`, `#panel-plan` (hx-swap-oob="true");
- the history entry, prepended to `#history-list` (`afterbegin`);
- `#panel-hitl` (the decision panel) only when the pause changed;
- for `task.activity`, the new entries appended to the open activity log (fragments_hitl);
- `<meta id="last-event-id" ...>`.

The task is read as it is now (not as it was at the event): a replayed event shows the
current state, which is what the page should end at. Nothing here depends on the socket's
user beyond `can_edit` (whether the edit controls are rendered), so one render serves every
socket with the same (event, page, can_edit).
"""

from django.template.loader import render_to_string

from .. import selectors
from ..models import EventType, TaskEvent
from . import fragments_hitl
from .presenters import detail_context, status_count_groups

PAGES = ("list", "detail", "approvals")
HITL_EVENTS = (EventType.HITL_REQUESTED, EventType.HITL_DECIDED, EventType.DELETED)


def render_event_html(event: TaskEvent, *, page: str, can_edit: bool) -> str:
    """The out-of-band fragment for `event` on a "list" or "detail" page."""
    if page not in PAGES:
        raise ValueError(f"page must be one of {PAGES}, not {page!r}")
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
        }
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
        **detail_context(task, can_edit=can_edit, history=False),
        "event": event,
        # The decision panel is re-rendered only when the pause changed, so a reviewer typing
        # a reason is not interrupted by the agent's unrelated activity.
        "hitl_changed": event.type in HITL_EVENTS or "status" in (event.changes or []),
        "activity_html": fragments_hitl.render_activity_event_html(event),
    }
    html = render_to_string("tasks/task_detail.html#live-detail", context)
    if fragments_hitl.affects_pending_count(event):
        html += fragments_hitl.render_badge_html(event)
    return html
