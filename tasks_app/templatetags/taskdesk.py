"""Dashboard display helpers: status badges, times, durations, token counts and readable JSON.

Filters return plain text (the template escapes it); tags that need markup render a template.
"""

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from django import template
from django.urls import reverse
from django.utils import timezone

from tasks_app import charts, lifecycle, selectors

register = template.Library()

# A glyph per status so the badge differs by shape, not only by colour.
STATUS_GLYPHS: dict[str, str] = {
    lifecycle.Status.PENDING: "○",
    lifecycle.Status.EXECUTING: "▶",
    lifecycle.Status.PAUSED: "‖",
    lifecycle.Status.INTERRUPTED: "↯",
    lifecycle.Status.COMPLETED: "✓",
    lifecycle.Status.FAILED: "✕",
    lifecycle.Status.ERROR: "!",
    lifecycle.Status.STOPPED: "■",
    lifecycle.Status.CANCELED: "⊘",
    lifecycle.Status.TERMINATED: "⊗",
    lifecycle.Status.TIMED_OUT: "◷",
}


@register.inclusion_tag("tasks/tags/status_badge.html")
def status_badge(status: str) -> dict:
    return {
        "status": status,
        "label": lifecycle.STATUS_LABELS.get(status, status),
        "glyph": STATUS_GLYPHS.get(status, "?"),
        "terminal": lifecycle.is_terminal(status),
    }


@register.filter
def task_url(task, name: str = "task_detail") -> str:
    """A task's dashboard URL (`name`: task_detail, task_set_status, task_activity…): by its
    organization and public id, since ids are unique within an organization only."""
    return reverse(name, args=[task.organization.slug, task.public_id])


@register.filter
def status_label(status: str) -> str:
    return lifecycle.STATUS_LABELS.get(status, status)


# Where a long key may wrap: after _ . - / : and between a lower-case letter and a capital.
_KEY_BREAKS = re.compile(r"(?<=[_.\-/:])(?=.)|(?<=[a-z])(?=[A-Z])")


@register.inclusion_tag("tasks/tags/breakable.html")
def breakable(text: Any) -> dict:
    """A key name that wraps between its words in a narrow column (refund_amount_cents as
    refund_ / amount_ / cents), not mid-word; each part escaped by the template."""
    return {"parts": _KEY_BREAKS.split(str(text))}


@register.inclusion_tag("tasks/tags/time.html")
def reltime(value: datetime | None, empty: str = "—") -> dict:
    """Relative time with the exact UTC time on hover (and in a machine-readable attribute)."""
    return {"value": value, "relative": relative_time(value) if value else empty}


def relative_time(value: datetime, now: datetime | None = None) -> str:
    now = now or timezone.now()
    seconds = (now - value).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        return "in a moment" if future else "just now"
    for limit, size, unit in ((3600, 60, "min"), (86400, 3600, "h"), (86400 * 30, 86400, "d")):
        if seconds < limit:
            amount = round(seconds / size) or 1
            return f"in {amount} {unit}" if future else f"{amount} {unit} ago"
    return value.strftime("%Y-%m-%d")


@register.filter
def age(value: datetime | None, now: datetime | None = None) -> str:
    """How long something has been waiting: "< 1 min", "3 min", "2 h", "4 d" (static/js/taskdesk.js ticks it)."""
    if not value:
        return ""
    seconds = max(0.0, ((now or timezone.now()) - value).total_seconds())
    if seconds < 60:
        return "< 1 min"
    for limit, size, unit in ((3600, 60, "min"), (86400, 3600, "h")):
        if seconds < limit:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds // 86400)} d"


@register.filter
def exact_time(value: datetime | None) -> str:
    if not value:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@register.filter
def machine_time(value: datetime | None) -> str:
    """A `<time datetime>` value: UTC to the second (no microseconds on the page)."""
    if not value:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@register.simple_tag
def server_now() -> str:
    """The server's clock for the page's ticking times (to the second, like every time on the page)."""
    return machine_time(timezone.now())


@register.inclusion_tag("tasks/tags/elapsed.html")
def elapsed(since: datetime, now: datetime | None = None) -> dict:
    """Time passed since `since` ("3 m 04 s"), ticking every second in the browser (static/js/timeline.js)."""
    return {"since": since, "text": elapsed_text(((now or timezone.now()) - since).total_seconds())}


def elapsed_text(seconds: float) -> str:
    """Whole seconds counting up: "7 s", "3 m 04 s", "2 h 05 m", "3 d 01 h" (static/js/timeline.js, the same steps)."""
    seconds = max(1, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} m {seconds % 60:02d} s"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60:02d} m"
    return f"{hours // 24} d {hours % 24:02d} h"


@register.inclusion_tag("tasks/tags/task_duration.html")
def task_duration(task) -> dict:
    """How long a task ran: ticking while it is active (from its start), else its duration."""
    running = task.started_at is not None and not lifecycle.is_terminal(task.status) and task.deleted_at is None
    return {"task": task, "running": running}


@register.filter
def duration(seconds: float | int | None) -> str:
    """1.25 -> "1.3 s", 184 -> "3 m 04 s", 7500 -> "2 h 05 m"."""
    if seconds is None or seconds == "":
        return "—"
    try:
        seconds = float(seconds)
    except (TypeError, ValueError, OverflowError):
        return "—"
    if not math.isfinite(seconds) or seconds <= 0:
        return "—"  # rows stored before durations were checked may hold Infinity or NaN
    if seconds < 0.1:
        return "< 0.1 s"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} m"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours:02d} h"


@register.filter
def short_duration(seconds: float | None) -> str:
    """A duration in one short unit (the operations view's tiles and axes): 45 s, 1.5 min, 2.3 h."""
    return charts.short_duration(seconds)


@register.filter
def tokens(count: int | None) -> str:
    """Compact token counts: 950, 12.3k, 4.1M."""
    if not count:
        return "0"
    count = int(count)
    if count < 1000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1000:.1f}k".replace(".0k", "k")
    return f"{count / 1_000_000:.1f}M".replace(".0M", "M")


@register.filter
def pretty_json(value: Any) -> str:
    """Indented, key-sorted JSON for reading (escaped by the template like any text)."""
    if value is None:
        return "null"
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@register.filter
def lookup(mapping: Any, key: Any) -> Any:
    if isinstance(mapping, dict):
        return mapping.get(key)
    return None


@register.simple_tag(takes_context=True)
def query_with(context, **changes: Any) -> str:
    """The current query string with some parameters replaced (None drops one), e.g. for sort links."""
    request = context.get("request")
    params = request.GET.copy() if request is not None else None
    if params is None:
        return "?"
    for name, value in changes.items():
        params.pop(name, None)
        if value not in (None, ""):
            params[name] = value
    encoded = params.urlencode()
    return "?" + encoded if encoded else "?"


@register.filter
def as_list(value: Any) -> list:
    return list(value or [])


@register.filter
def keyset_cursor(task, sort: str) -> str:
    """The cursor of the page that continues after this row (the list trims pushed-out rows by it)."""
    return selectors.task_cursor(task, sort)


@register.filter
def task_total(total) -> str:
    """A list view's size: "1 task", "1,234 tasks", or "10,000+ tasks" when it was not counted further."""
    if total.exact:
        return f"{total.count:,} task" if total.count == 1 else f"{total.count:,} tasks"
    return f"{total.count:,}+ tasks"


@register.filter
def in_lifecycle_order(statuses) -> list[str]:
    """Statuses in the lifecycle's order (pending … timed out) rather than alphabetical."""
    wanted = set(statuses or [])
    return [status for status in lifecycle.STATUSES if status in wanted]


# What the confirmation of an act that ends (or restarts) a task asks: question, consequence, button.
ACT_CONFIRMATIONS: dict[str, tuple[str, str, str]] = {
    lifecycle.Status.STOPPED: (
        "Stop this task?",
        "The agent is told to stop; the task ends as stopped.",
        "Stop task",
    ),
    lifecycle.Status.CANCELED: (
        "Cancel this task?",
        "The task ends as canceled and is not run further.",
        "Cancel task",
    ),
    lifecycle.Status.TERMINATED: ("Terminate this task?", "The task ends as terminated.", "Terminate task"),
    lifecycle.Status.TIMED_OUT: ("Mark this task timed out?", "The task ends as timed out.", "Mark timed out"),
    "retry": ("Retry this task?", "It goes back to pending for another attempt.", "Retry task"),
}


@register.inclusion_tag("tasks/tags/confirm_attrs.html")
def confirm_attrs(act: str) -> dict:
    """data-confirm attributes for a form or menu option whose act ends or restarts a task (else none)."""
    question, detail, button = ACT_CONFIRMATIONS.get(act, ("", "", ""))
    return {"question": question, "detail": detail, "button": button}


@register.simple_tag
def stop_acts() -> list[tuple[str, str, str]]:
    """The buttons that end an active task from the desk: (status, label, button class)."""
    return [(lifecycle.Status.STOPPED, "■ Stop task", "btn-danger"), (lifecycle.Status.CANCELED, "⊘ Cancel task", "")]
