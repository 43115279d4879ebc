"""Presenters: template context shared by the dashboard pages and the fragments pushed live.

A page and a pushed fragment render the same partials; these builders give both the same
names, so a partial never depends on which of the two rendered it.
"""

from tasks_app import lifecycle, selectors
from tasks_app.models import Organization, Task, TaskEvent

from . import timeline


def count_rows(counts: dict[str, int]) -> list[dict]:
    return [{"status": status, "label": lifecycle.STATUS_LABELS[status], "count": counts[status]} for status in counts]


def status_count_groups(organizations: list[Organization]) -> list[dict]:
    """One status-count bar per organization (pushed events update one organization's bar)."""
    return [
        {"organization": organization, "counts": count_rows(selectors.status_counts(organization.pk))}
        for organization in organizations
    ]


def detail_context(task: Task, *, can_edit: bool) -> dict:
    """Everything the detail panels read, loaded with a fixed number of queries."""
    done, total = task.plan_progress
    # The decision stays on the page once made (who, what, when, the answer, the amended payload).
    latest = selectors.latest_hitl(task)
    context = {
        "task": task,
        # A deleted task is shown, never edited; nor is one whose content retention removed.
        "can_edit": can_edit and task.deleted_at is None and task.cleaned_at is None,
        "latest_hitl": latest,
        "pending_hitl": latest if latest is not None and latest.is_pending else None,
        "plan_done": done,
        "plan_total": total,
        "plan_percent": round(100 * done / total) if total else 0,
        "statuses": lifecycle.STATUS_CHOICES,
    }
    return context


def timeline_context(task: Task, before: selectors.TimelineCursor | None = None) -> dict:
    """A page of the task's timeline (the newest without `before`), as the timeline partials read it."""
    page = selectors.timeline_page(task, before=before)
    return {"page": page, "items": timeline.timeline_items(page.items, task=task)}


def conflict_context(task: Task, expected_version: int) -> dict:
    return {
        "current_version": task.version,
        "expected_version": expected_version,
        "events": selectors.task_events_since(task, expected_version),
    }


def event_is_deletion(event: TaskEvent) -> bool:
    return event.type == "task.deleted"


def replay_context(organization_ids: list[int]) -> dict:
    """Where an organization-wide page's socket resumes (`replay_after`, per organization) and
    the newest event id it was rendered at (`last_event_id`). Read it before the page's rows."""
    positions = selectors.replay_positions(organization_ids)
    return {
        "last_event_id": max(positions.values(), default=0),
        "replay_after": selectors.format_replay_positions(positions),
    }
