"""Reads, always scoped to what the caller may see; and the one place permission rules live."""

import base64
import binascii
import functools
import heapq
import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Sum, Window
from django.db.models.functions import RowNumber
from django.http import Http404, QueryDict
from django.utils import timezone

from . import lifecycle, models, rows
from .models import (
    ActivityEntry,
    Agent,
    ApiToken,
    BulkAction,
    BulkActionItem,
    HitlDecision,
    HitlRequest,
    Membership,
    Organization,
    Role,
    SavedView,
    Task,
    TaskEvent,
    Worker,
)
from .services import counters, rollups
from .services.errors import TaskNotFound
from .services.validation import TASK_ID_RE, clean_datetime, lookup_text_ok, text_problem

EDIT_ROLES = models.EDIT_ROLES


def memberships_for(user) -> dict[int, str]:
    """organization id -> role for a signed-in user (cached on the user object per request).

    A superuser is an admin of every organization: the person who runs Taskdesk sees every desk.
    """
    if not getattr(user, "is_authenticated", False):
        return {}
    cached = getattr(user, "_taskdesk_roles", None)
    if cached is None:
        cached = {}
        if getattr(user, "is_superuser", False):
            cached = dict.fromkeys(Organization.objects.values_list("pk", flat=True), Role.ADMIN)
        cached.update(Membership.objects.filter(user=user).values_list("organization_id", "role"))
        user._taskdesk_roles = cached
    return cached


def organization_ids_for(user) -> list[int]:
    return sorted(memberships_for(user))


def role_for(user, organization_id: int) -> str | None:
    return memberships_for(user).get(organization_id)


def can_edit(user, organization_id: int) -> bool:
    """Operators and admins of the task's organization may change it; viewers only read."""
    return role_for(user, organization_id) in EDIT_ROLES


def require_edit(user, organization_id: int) -> None:
    if not can_edit(user, organization_id):
        raise PermissionDenied("Your role in this organization is read-only.")


def editable_organization_ids(user) -> list[int]:
    """The organizations whose tasks this person may change (operator or admin)."""
    return sorted(org for org, role in memberships_for(user).items() if role in EDIT_ROLES)


def tasks_for_user(user) -> QuerySet[Task]:
    return Task.objects.filter(organization_id__in=organization_ids_for(user), deleted_at__isnull=True)


def get_task_for_user(user, org_slug: str, task_id: str) -> Task:
    """The task if one of the user's organizations holds it; 404 otherwise (ids of others do not leak)."""
    if not (lookup_text_ok(org_slug) and lookup_text_ok(task_id)):
        raise Http404("No such task.")
    task = (
        tasks_for_user(user)
        .select_related("organization", "agent", "parent", "parent__organization", "assigned_worker")
        .filter(organization__slug=org_slug, public_id=task_id)
        .first()
    )
    if task is None:
        raise Http404("No such task.")
    return task


def find_tasks_for_user(user, task_id: str, *, limit: int = 20) -> list[Task]:
    """Every task with this public id across the user's organizations (a pasted id without its
    organization: one match redirects, several ask which)."""
    if not lookup_text_ok(task_id):
        return []
    return list(
        tasks_for_user(user)
        .select_related("organization")
        .filter(public_id=task_id)
        .order_by("organization__name")[:limit]
    )


def tasks_for_token(token: ApiToken) -> QuerySet[Task]:
    return Task.objects.filter(organization_id=token.organization_id, deleted_at__isnull=True)


def get_task_for_token(token: ApiToken, task_id: Any, *, include_deleted: bool = False) -> Task:
    """The token's organization's task by public id; TaskNotFound otherwise (the one lookup
    every agent-facing face uses: another organization's id reads exactly like a missing one)."""
    if not isinstance(task_id, str) or not TASK_ID_RE.fullmatch(task_id):
        raise TaskNotFound(f"Task not found: {task_id}")
    qs = Task.objects.filter(organization_id=token.organization_id) if include_deleted else tasks_for_token(token)
    task = qs.select_related("agent", "parent", "organization", "assigned_worker").filter(public_id=task_id).first()
    if task is None:
        raise TaskNotFound(f"Task not found: {task_id}")
    return task


def get_task_by_name_for_token(token: ApiToken, name: Any, *, include_deleted: bool = False) -> Task:
    """The token's organization's task by its (Agentex) name; TaskNotFound otherwise, as by id."""
    if not lookup_text_ok(name):
        raise TaskNotFound(f"Task not found: {name}")
    qs = Task.objects.filter(organization_id=token.organization_id) if include_deleted else tasks_for_token(token)
    task = qs.select_related("agent").filter(name=name).first()
    if task is None:
        raise TaskNotFound(f"Task not found: {name}")
    return task


def events_after(organization_ids: list[int], after_id: int, *, task_pk: int | None = None, limit: int = 500):
    """Events the caller may see with id > after_id, oldest first (the replay log)."""
    qs = TaskEvent.objects.filter(organization_id__in=organization_ids, id__gt=after_id)
    if task_pk is not None:
        qs = qs.filter(task_id=task_pk)
    return qs.order_by("id")[:limit]


def replay_positions(organization_ids: list[int]) -> dict[int, int]:
    """The newest event id of each organization (0 where none): where a page's socket resumes.

    Event ids commit in order within one organization only (services takes a per-organization
    lock), so a page showing several organizations resumes each from its own position; one
    global "after" could skip another organization's event that committed late. One indexed
    query per organization (a GROUP BY MAX would scan every event of the organization).
    """
    positions = {}
    for org_id in organization_ids:
        newest = TaskEvent.objects.filter(organization_id=org_id).order_by("-id").values_list("id", flat=True)
        positions[org_id] = newest.first() or 0
    return positions


def newest_event_ids(organization_ids: list[int]) -> dict[int, int]:
    """The newest event id of each organization in one query (an indexed lookup per organization).

    Every live process asks this every couple of seconds while idle (live.hub), so on PostgreSQL
    it is plain SQL: the ORM's compilation of the subquery cost ten times its execution.
    """
    if connection.vendor == "postgresql":
        events = connection.ops.quote_name(TaskEvent._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT o.id, (SELECT e.id FROM {events} e WHERE e.organization_id = o.id"  # noqa: S608
                " ORDER BY e.id DESC LIMIT 1) FROM unnest(%s::bigint[]) AS o(id)",
                [list(organization_ids)],
            )
            return {org_id: newest or 0 for org_id, newest in cursor.fetchall()}
    newest = TaskEvent.objects.filter(organization_id=OuterRef("pk")).order_by("-id").values("id")[:1]
    rows = Organization.objects.filter(pk__in=organization_ids).annotate(newest=Subquery(newest))
    return {org_id: newest or 0 for org_id, newest in rows.values_list("pk", "newest")}


def format_replay_positions(positions: dict[int, int]) -> str:
    """`org:id,org:id`, the `after` a page's socket URL carries."""
    return ",".join(f"{org_id}:{event_id}" for org_id, event_id in sorted(positions.items()))


def parse_replay_positions(raw: str) -> dict[int, int] | None:
    """Inverse of format_replay_positions; None when malformed."""
    positions = {}
    if len(raw) > 2000:
        return None
    for part in raw.split(","):
        org, sep, event = part.partition(":")
        if not sep or not _ID.match(org) or not _ID.match(event):
            return None
        positions[int(org)] = int(event)
    return positions


_ID = re.compile(r"^[0-9]{1,18}$")


def last_event_id(organization_ids: list[int], *, task_pk: int | None = None) -> int:
    qs = TaskEvent.objects.filter(organization_id__in=organization_ids)
    if task_pk is not None:
        qs = qs.filter(task_id=task_pk)
    return qs.order_by("-id").values_list("id", flat=True).first() or 0


# --- Task list: filters, sorting and keyset pagination ------------------------------------

# Sortable columns: URL name -> model field. Every sort is tie-broken by id for a stable keyset.
SORT_FIELDS: dict[str, str] = {
    "created": "created_at",
    "updated": "updated_at",
    "priority": "priority",
    "status": "status",
    "title": "title",
    "duration": "duration",
}
DEFAULT_SORT = "-created"
PAGE_SIZE = 50


Q_MAX = 200  # longest search text the list takes
# A filtered list's total counts at most this many rows (the status counters give exact totals
# where the filter allows: statuses alone, or nothing).
TOTAL_CAP = 10_000


@dataclass(frozen=True)
class TaskFilters:
    """What a list view shows: its filters and its sort (the view's rules, also its URL query)."""

    statuses: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()  # agent names
    source: str = ""
    has_pending_hitl: bool | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    q: str = ""
    sort: str = DEFAULT_SORT

    @property
    def is_default(self) -> bool:
        """True when no filter narrows the list (new tasks belong at the top)."""
        return not (
            self.statuses
            or self.agents
            or self.source
            or self.has_pending_hitl is not None
            or self.updated_after
            or self.updated_before
            or self.q
        )

    @property
    def counted_by_status(self) -> bool:
        """True when the write path's status counters give this view's total exactly."""
        return replace(self, statuses=()).is_default

    @property
    def query(self) -> str:
        """The canonical URL query of this view ("" for the default one): its key for live pushes.

        `parse_task_filters(QueryDict(filters.query))` gives the same filters back.
        """
        params: list[tuple[str, str]] = [("status", status) for status in self.statuses]
        params += [("agent", agent) for agent in self.agents]
        if self.source:
            params.append(("source", self.source))
        if self.has_pending_hitl is not None:
            params.append(("hitl", "yes" if self.has_pending_hitl else "no"))
        for name, value, whole_day in (
            ("updated_after", self.updated_after, time.min),
            ("updated_before", self.updated_before, time.max),
        ):
            if value is not None:
                day = value.date()
                exact = value == datetime.combine(day, whole_day, tzinfo=UTC)
                params.append((name, day.isoformat() if exact else value.isoformat()))
        if self.q:
            params.append(("q", self.q))
        if self.sort != DEFAULT_SORT:
            params.append(("sort", self.sort))
        return urlencode(params)


def _parse_day(raw: str, *, end: bool) -> datetime:
    """A date (or date-time) from a filter field, as an aware UTC datetime."""
    raw = raw.strip()
    if len(raw) == 10:
        day = date.fromisoformat(raw)
        return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)
    return clean_datetime(datetime.fromisoformat(raw))  # ValueError for offsets PostgreSQL refuses


def parse_task_filters(params) -> tuple[TaskFilters, list[str]]:
    """TaskFilters from a URL query (a QueryDict), plus a message for each part that was ignored."""
    errors: list[str] = []
    # A value no stored text can match (NUL, lone surrogates) is dropped, like any unusable filter.
    unusable = {name for name, values in params.lists() if any(text_problem(v) for v in values)}
    if unusable:
        errors.append(f"Ignored {', '.join(sorted(unusable))}: text with NUL characters matches nothing.")
        params = params.copy()
        for name in unusable:
            params.pop(name)
    statuses = []
    for status in params.getlist("status"):
        if status in lifecycle.STATUS_LABELS:
            statuses.append(status)
        elif status:
            errors.append(f"Unknown status {status!r} ignored; expected one of: {', '.join(lifecycle.STATUSES)}.")
    agents = tuple(a.strip() for a in params.getlist("agent") if a.strip())
    hitl_raw = params.get("hitl", "")
    has_pending_hitl = {"": None, "yes": True, "no": False}.get(hitl_raw)
    if hitl_raw not in ("", "yes", "no"):
        errors.append(f"The HITL filter is yes or no, not {hitl_raw!r}; ignored.")
    bounds: dict[str, datetime | None] = {"updated_after": None, "updated_before": None}
    for name in bounds:
        raw = params.get(name, "")
        if not raw:
            continue
        try:
            bounds[name] = _parse_day(raw, end=name == "updated_before")
        except ValueError:
            label = "Updated from" if name == "updated_after" else "Updated to"
            errors.append(f"{label}: {raw!r} is not a date (YYYY-MM-DD); ignored.")
    q = params.get("q", "").strip()
    if len(q) > Q_MAX:
        errors.append(f"The search text was cut to {Q_MAX} characters.")
        q = q[:Q_MAX]
    sort = params.get("sort", "") or DEFAULT_SORT
    if sort.lstrip("-") not in SORT_FIELDS or sort.count("-") > 1:
        errors.append(f"Unknown sort {sort!r}; showing newest first.")
        sort = DEFAULT_SORT
    filters = TaskFilters(
        statuses=tuple(dict.fromkeys(statuses)),
        agents=agents,
        source=params.get("source", "").strip()[:100],
        has_pending_hitl=has_pending_hitl,
        updated_after=bounds["updated_after"],
        updated_before=bounds["updated_before"],
        q=q,
        sort=sort,
    )
    return filters, errors


def task_filters_for_view(view: str) -> TaskFilters:
    """The filters of a view key (TaskFilters.query); what cannot be used is left out, as on the page."""
    return parse_task_filters(QueryDict(view[:VIEW_MAX]))[0]


VIEW_MAX = 2_000


# --- The list's columns and saved views ----------------------------------------------------

# Table columns: (key, label, sort name or None), in the table's order. The title (the task's
# link) is always shown; the columns chooser hides the others (`cols=` in the list's URL).
LIST_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("id", "Task", "created"),
    ("title", "Title", "title"),
    ("agent", "Agent", None),
    ("status", "Status", "status"),
    ("priority", "Priority", "priority"),
    ("source", "Source", None),
    ("updated", "Updated", "updated"),
    ("duration", "Duration", "duration"),
    ("tokens", "Tokens", None),
)
COLUMN_KEYS: tuple[str, ...] = tuple(key for key, _, _ in LIST_COLUMNS)
ALWAYS_SHOWN = frozenset({"title"})


def parse_columns(params) -> tuple[str, ...]:
    """The columns a list URL shows, in table order: `cols=a,b`, or repeated `col` (the chooser
    without JavaScript); every column when neither names a known one."""
    named = [part for value in params.getlist("cols") for part in value.split(",")] + params.getlist("col")
    wanted = {part.strip() for part in named} & set(COLUMN_KEYS)
    if not wanted:
        return COLUMN_KEYS
    return tuple(key for key in COLUMN_KEYS if key in wanted or key in ALWAYS_SHOWN)


def columns_query(columns: tuple[str, ...] | list[str]) -> str:
    """`cols=a,b` for the shown columns ("" when every column is shown)."""
    shown = tuple(key for key in COLUMN_KEYS if key in columns or key in ALWAYS_SHOWN)
    return "" if shown == COLUMN_KEYS else urlencode({"cols": ",".join(shown)}, safe=",")


def list_query(filters: "TaskFilters", columns: tuple[str, ...] | list[str]) -> str:
    """The list's canonical URL query: its filters and sort, then its columns."""
    return "&".join(part for part in (filters.query, columns_query(columns)) if part)


def saved_views_for(user) -> list[SavedView]:
    """The saved views a person may open: their own and those shared with their organizations.

    Scoped to the organizations they are a member of now: a view of an organization they left
    is neither listed nor opened, theirs or not.
    """
    org_ids = organization_ids_for(user)
    if not org_ids or not getattr(user, "is_authenticated", False):
        return []
    return list(
        SavedView.objects.filter(organization_id__in=org_ids)
        .filter(Q(owner=user) | Q(shared=True))
        .select_related("organization", "owner")
        .order_by("name", "pk")
    )


def get_saved_view_for_user(user, view_id: int) -> SavedView:
    """A saved view the person may open; 404 otherwise (another organization's view reads as missing)."""
    for view in saved_views_for(user):
        if view.pk == view_id:
            return view
    raise Http404("No such view.")


def get_saved_view_for_owner(user, view_id: int) -> SavedView:
    """A saved view the person owns (renaming, sharing, deleting); 404 otherwise, also for a view
    shared with them: they may open it, not change it."""
    view = get_saved_view_for_user(user, view_id)
    if view.owner_id != user.pk:
        raise Http404("No such view of yours.")
    return view


class BadCursor(ValueError):
    """A pagination cursor that was not issued by us (or for another sort)."""


@dataclass
class TaskPage:
    tasks: list[Task]
    older: str | None  # cursor for the next page in the sort direction
    newer: str | None  # cursor for the previous page


def pending_hitl_exists():
    return Exists(HitlRequest.objects.filter(task_id=OuterRef("pk"), decision__isnull=True))


def filter_tasks(qs: QuerySet[Task], filters: TaskFilters) -> QuerySet[Task]:
    if filters.statuses:
        qs = qs.filter(status__in=filters.statuses)
    if filters.agents:
        qs = qs.filter(agent__name__in=filters.agents)
    if filters.source:
        qs = qs.filter(source=filters.source)
    if filters.has_pending_hitl is not None:
        qs = qs.filter(pending_hitl_exists()) if filters.has_pending_hitl else qs.exclude(pending_hitl_exists())
    if filters.updated_after:
        qs = qs.filter(updated_at__gte=filters.updated_after)
    if filters.updated_before:
        qs = qs.filter(updated_at__lte=filters.updated_before)
    if filters.q:
        q = filters.q.strip()
        # Ids are pasted whole or in part from logs: match their start; titles and input anywhere.
        qs = qs.filter(Q(public_id__startswith=q) | Q(title__icontains=q) | Q(input_text__icontains=q))
    return qs


def task_matches(task_pk: int, filters: TaskFilters) -> bool:
    """Whether a (live) task is in a list view: the list's own filter, asked of one row.

    Pushed changes are judged by this, so a view and what it is told about can never disagree.
    """
    return filter_tasks(Task.objects.filter(pk=task_pk, deleted_at__isnull=True), filters).exists()


def sort_moves(sort: str, event: TaskEvent) -> bool:
    """Whether an event can move its task in a list sorted by `sort` (a new task always can)."""
    if event.type == models.EventType.CREATED:
        return True
    field, _ = _sort_spec(sort)
    if field == "updated_at":
        # Every change but an activity entry bumps updated_at (services.kernel).
        return event.type != models.EventType.ACTIVITY
    return field in (event.changes or [])


@dataclass(frozen=True)
class TaskTotal:
    count: int
    exact: bool  # False: at least `count` (TOTAL_CAP) rows, not counted further


def count_tasks(organization_ids: list[int], filters: TaskFilters, qs: QuerySet[Task]) -> TaskTotal:
    """How many tasks a list view holds, in one query whatever the table's size.

    Statuses alone (or no filter): the sum of the counts the write path keeps (exact). Any other
    filter: the filtered rows counted up to TOTAL_CAP (`qs` is the view's filtered queryset).
    """
    if filters.counted_by_status:
        return TaskTotal(counters.total_for(organization_ids, filters.statuses), exact=True)
    found = qs.order_by()[: TOTAL_CAP + 1].count()
    return TaskTotal(min(found, TOTAL_CAP), exact=found <= TOTAL_CAP)


def _sort_spec(sort: str) -> tuple[str, bool]:
    descending = sort.startswith("-")
    name = sort.lstrip("-")
    if name not in SORT_FIELDS:
        raise BadCursor(f"Unknown sort {sort!r}; expected one of: {', '.join(SORT_FIELDS)}.")
    return SORT_FIELDS[name], descending


def _encode_cursor(sort: str, value, pk: int) -> str:
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    raw = json.dumps([sort, value, pk], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# What a cursor's value must be for each sort field (a forged cursor is refused, not queried).
_CURSOR_TYPES: dict[str, tuple[type, ...]] = {
    "created_at": (datetime,),
    "updated_at": (datetime,),
    "priority": (int,),
    "status": (str,),
    "title": (str,),
    "duration": (int, float),
    "decided_at": (datetime,),
}


def _decode_cursor(sort: str, cursor: str, *, field: str | None = None):
    try:
        if len(cursor) > 1000:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, value, pk = json.loads(raw)
        if isinstance(value, dict):
            value = datetime.fromisoformat(value["t"])
            if value.tzinfo is None:
                raise ValueError("naive")
            value = clean_datetime(value)
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError, binascii.Error):
        raise BadCursor("Invalid page cursor.") from None
    if cursor_sort != sort:
        raise BadCursor("The page cursor belongs to another sort order.")
    if field is None:
        field, _ = _sort_spec(sort)
    expected = _CURSOR_TYPES[field]
    valid_pk = isinstance(pk, int) and not isinstance(pk, bool) and 0 <= pk < 2**63
    valid_value = isinstance(value, expected) and not isinstance(value, bool)
    if valid_value and isinstance(value, float) and not math.isfinite(value):
        valid_value = False
    if valid_value and isinstance(value, int) and not -(2**63) < value < 2**63:
        valid_value = False
    if valid_value and isinstance(value, str) and (len(value) > 1000 or text_problem(value)):
        valid_value = False
    if not (valid_pk and valid_value):
        raise BadCursor("Invalid page cursor.")
    return value, pk


def task_cursor(task: Task, sort: str) -> str:
    """The keyset cursor that continues a page after `task` in `sort` order (its `after`)."""
    field, _ = _sort_spec(sort)
    return _encode_cursor(sort, getattr(task, field), task.pk)


def paginate_tasks(
    qs: QuerySet[Task],
    *,
    sort: str = DEFAULT_SORT,
    after: str | None = None,
    before: str | None = None,
    limit: int = PAGE_SIZE,
) -> TaskPage:
    """One page in `sort` order by keyset (no OFFSET, no COUNT): after = further, before = back."""
    field, descending = _sort_spec(sort)
    forward = before is None
    cursor = after if forward else before
    # Walking back means reading the opposite direction, then flipping the rows.
    read_desc = descending if forward else not descending
    if cursor:
        value, pk = _decode_cursor(sort, cursor)
        op = "lt" if read_desc else "gt"
        qs = qs.filter(Q(**{f"{field}__{op}": value}) | Q(**{field: value, f"pk__{op}": pk}))
    order = [f"-{field}", "-pk"] if read_desc else [field, "pk"]
    rows = list(qs.order_by(*order)[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    if not forward:
        rows.reverse()
    if not rows:
        return TaskPage(tasks=[], older=None, newer=None)
    first, last = rows[0], rows[-1]
    has_further = more if forward else True
    has_back = bool(cursor) if forward else more
    return TaskPage(
        tasks=rows,
        older=_encode_cursor(sort, getattr(last, field), last.pk) if has_further else None,
        newer=_encode_cursor(sort, getattr(first, field), first.pk) if has_back else None,
    )


def status_counts(organization_id: int) -> dict[str, int]:
    """Live tasks per status of one organization, every status present: read from the counts
    the write path keeps (models.TaskCount), so the cost does not grow with the table."""
    return counters.counts_for(organization_id)


def status_counts_by_group_by(organization_id: int) -> dict[str, int]:
    """The same numbers counted from the tasks (a GROUP BY over the organization): for checks."""
    qs = Task.objects.filter(organization_id=organization_id, deleted_at__isnull=True)
    counts = dict(qs.order_by().values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    return {status: counts.get(status, 0) for status in lifecycle.STATUSES}


# --- HITL inbox and activity log -----------------------------------------------------------


INBOX_SORTS = ("oldest", "deadline")
# Deadline windows of the inbox's filter (pending requests).
INBOX_DUE = {"overdue": "Overdue", "1h": "Due within 1 h", "24h": "Due within 24 h", "none": "No deadline"}
# The decided tab's filter: each decision, and "timed out" (decided by the deadline).
DECIDED_FILTERS = {**{d.value: d.label for d in HitlDecision}, "expired": "Timed out"}
DECIDED_PAGE_SIZE = 50


@dataclass(frozen=True)
class InboxFilters:
    """What the inbox's URL narrows it to (views.approvals parses and checks it)."""

    agent: str = ""  # agent name
    organization_id: int | None = None  # one of the viewer's organizations
    due: str = ""  # INBOX_DUE key (pending tab)
    sort: str = "oldest"  # INBOX_SORTS (pending tab)
    decision: str = ""  # DECIDED_FILTERS key (decided tab)


def _inbox_requests(user, filters: InboxFilters) -> QuerySet[HitlRequest]:
    org_ids = organization_ids_for(user)
    if filters.organization_id is not None:
        org_ids = [org for org in org_ids if org == filters.organization_id]
    qs = HitlRequest.objects.filter(organization_id__in=org_ids).select_related(
        "task", "task__agent", "task__organization"
    )
    if filters.agent:
        qs = qs.filter(task__agent__name=filters.agent)
    return qs


def pending_hitl_for_user(user, filters: InboxFilters = InboxFilters(), *, now: datetime | None = None):
    """Pending requests of the user's organizations (the inbox): oldest first, or soonest
    deadline first (none last); narrowed by agent, organization and deadline window."""
    now = now or timezone.now()
    qs = _inbox_requests(user, filters).filter(decision__isnull=True)
    if filters.due == "overdue":
        qs = qs.filter(deadline__lte=now)
    elif filters.due in ("1h", "24h"):
        window = timedelta(hours=1 if filters.due == "1h" else 24)
        qs = qs.filter(deadline__gt=now, deadline__lte=now + window)
    elif filters.due == "none":
        qs = qs.filter(deadline__isnull=True)
    if filters.sort == "deadline":
        return qs.order_by(F("deadline").asc(nulls_last=True), "requested_at", "id")
    return qs.order_by("requested_at", "id")


@dataclass
class DecidedPage:
    requests: list[HitlRequest]
    older: str | None  # cursor of the next (older) page


def decided_hitl_page(
    user, filters: InboxFilters = InboxFilters(), *, before: str | None = None, limit: int | None = None
) -> DecidedPage:
    """Closed requests of the user's organizations, newest decision first, by keyset on
    (decided_at, id): who decided what, when. BadCursor for a cursor we did not issue."""
    limit = limit or DECIDED_PAGE_SIZE
    qs = _inbox_requests(user, filters).filter(decision__isnull=False, task__deleted_at__isnull=True)
    if filters.decision == "expired":
        qs = qs.filter(expired=True)
    elif filters.decision:
        qs = qs.filter(decision=filters.decision)
    if before:
        decided_at, pk = _decode_cursor("decided", before, field="decided_at")
        qs = qs.filter(Q(decided_at__lt=decided_at) | Q(decided_at=decided_at, pk__lt=pk))
    rows = list(qs.order_by("-decided_at", "-id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    older = _encode_cursor("decided", rows[-1].decided_at, rows[-1].pk) if more and rows else None
    return DecidedPage(requests=rows, older=older)


def pending_hitl_count(org_ids) -> int:
    """Pending requests in these organizations; `org_ids` may be a list or a values() subquery.

    Counted on the partial index of pending requests alone (no join): deleting a task withdraws
    its pending request, so a pending request always belongs to a live task.
    """
    return HitlRequest.objects.filter(organization_id__in=org_ids, decision__isnull=True).count()


def get_hitl_for_user(user, hitl_id: int) -> HitlRequest:
    """The request if the user's organizations hold it (decided or not); 404 otherwise."""
    hitl = (
        HitlRequest.objects.filter(
            pk=hitl_id, organization_id__in=organization_ids_for(user), task__deleted_at__isnull=True
        )
        .select_related("task", "task__agent", "task__organization")
        .first()
    )
    if hitl is None:
        raise Http404("No such request.")
    return hitl


ACTIVITY_PAGE_SIZE = 50


@dataclass
class ActivityPage:
    entries: list[ActivityEntry]
    next_before_id: int | None  # keyset cursor for the next (older) page; None at the start of the log


def activity_page(
    task: Task,
    *,
    kind: str | None = None,
    q: str | None = None,
    before_id: int | None = None,
    limit: int = ACTIVITY_PAGE_SIZE,
) -> ActivityPage:
    """One page of a task's activity log, newest first, by keyset on (task, [kind,] id): no OFFSET, no COUNT.

    Each tool call comes with its result (`entry.result`); unfiltered, a result that answers a
    call is shown with that call rather than again on its own.
    """
    qs = ActivityEntry.objects.filter(task_id=task.pk).select_related("result")
    if kind:
        qs = qs.filter(kind=kind)
    if before_id:
        qs = qs.filter(id__lt=before_id)
    if q:
        q = q.strip()
        qs = qs.filter(
            Q(content__icontains=q)
            | Q(tool_name__icontains=q)
            | Q(tool_arguments__icontains=q)
            | Q(tool_output__icontains=q)
        )
    if not (kind or q):
        qs = qs.filter(call__isnull=True)
    rows = list(qs.order_by("-id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return ActivityPage(entries=rows, next_before_id=rows[-1].pk if more and rows else None)


# --- Task timeline: activity and events, newest first -------------------------------------

TIMELINE_PAGE_SIZE = 40
_TIMELINE_CURSOR = re.compile(r"^(-|[0-9]{1,18})\.(-|[0-9]{1,18})$")


@dataclass(frozen=True)
class TimelineCursor:
    """Where an older timeline page starts: below these ids of each source (None: from the newest)."""

    activity_before: int | None = None
    event_before: int | None = None

    def __str__(self) -> str:
        return ".".join("-" if v is None else str(v) for v in (self.activity_before, self.event_before))

    @classmethod
    def parse(cls, raw: str) -> "TimelineCursor":
        match = _TIMELINE_CURSOR.match(raw)
        if match is None:
            raise BadCursor("Invalid page cursor.")
        a, e = (None if part == "-" else int(part) for part in match.groups())
        return cls(a, e)


@dataclass
class TimelinePage:
    items: list[ActivityEntry | TaskEvent]  # newest first
    next_cursor: TimelineCursor | None  # None: this page reaches the task's first event
    has_activity: bool  # on a first page: whether the agent logged anything at all


def timeline_page(task: Task, *, before: TimelineCursor | None = None, limit: int = TIMELINE_PAGE_SIZE) -> TimelinePage:
    """One page of a task's timeline: activity entries and events (but the `task.activity` ones,
    whose entries are there themselves), newest first, in two queries whatever the log's length.

    Each source is read newest first by id on its (task, id) index; the two are merged by time.
    A tool result that answers a call comes with its call (`call.result`), not on its own.
    """
    before = before or TimelineCursor()
    activity = ActivityEntry.objects.filter(task_id=task.pk, call__isnull=True).select_related("result")
    if before.activity_before is not None:
        activity = activity.filter(id__lt=before.activity_before)
    events = TaskEvent.objects.filter(task_id=task.pk).exclude(type=models.EventType.ACTIVITY)
    if before.event_before is not None:
        events = events.filter(id__lt=before.event_before)
    entries = list(activity.order_by("-id")[: limit + 1])
    changes = list(events.order_by("-id")[: limit + 1])
    merged = list(
        heapq.merge(
            ((e.created_at, 0, e.pk, e) for e in entries),
            ((e.created_at, 1, e.pk, e) for e in changes),
            key=lambda row: row[:3],
            reverse=True,
        )
    )
    items = [row[3] for row in merged[:limit]]
    next_cursor = None
    if len(merged) > limit:
        taken_activity = [item.pk for item in items if isinstance(item, ActivityEntry)]
        taken_events = [item.pk for item in items if isinstance(item, TaskEvent)]
        next_cursor = TimelineCursor(
            min(taken_activity, default=before.activity_before), min(taken_events, default=before.event_before)
        )
    return TimelinePage(items=items, next_cursor=next_cursor, has_activity=bool(entries))


# --- Dashboard: detail page and pushed fragments ------------------------------------------


def task_for_fragment(task_pk: int) -> Task | None:
    """A task as the list row and detail panels show it (deleted ones too: their row is marked).

    What the pages' own read gives (get_task_for_user: the organization, agent and assigned
    worker, `has_pending_hitl`, the parent's id, title and organization), in plain SQL built once:
    every pushed event reads it, and compiling the ORM's query took longer than the rest of the
    render (bench/bench_fanout.py). The parent comes with only what its link shows.
    """
    with connection.cursor() as cursor:
        sql, params = _fragment_sql(connection.vendor)
        cursor.execute(sql, [*params, task_pk])
        row = cursor.fetchone()
    if row is None:
        return None
    values = iter(row)

    def take(model, count):
        return [next(values) for _ in range(count)]

    task = rows.from_row(Task, take(Task, len(Task._meta.concrete_fields)))
    task.organization = rows.from_row(Organization, take(Organization, len(Organization._meta.concrete_fields)))
    agent = take(Agent, len(Agent._meta.concrete_fields))
    task.agent = rows.from_row(Agent, agent) if task.agent_id is not None else None
    worker = take(Worker, len(Worker._meta.concrete_fields))
    task.assigned_worker = rows.from_row(Worker, worker) if task.assigned_worker_id is not None else None
    parent = take(Task, len(_PARENT_FIELDS))
    if task.parent_id is not None:
        task.parent = rows.partial_from_row(Task, _PARENT_FIELDS, parent)
        if task.parent.organization_id == task.organization_id:
            task.parent.organization = task.organization
    else:
        task.parent = None
    (pending,) = values
    task.has_pending_hitl = bool(pending)
    return task


# The parent as a link shows it: display_title reads the first 120 characters of its input.
_PARENT_FIELDS = ("id", "public_id", "organization_id", "title", "name", "input_text")


@functools.cache
def _fragment_sql(vendor: str) -> tuple[str, tuple]:
    """The statement and the parameters it binds before the task's id (the subquery's own)."""
    quote = connection.ops.quote_name
    table = {model: quote(model._meta.db_table) for model in (Task, Organization, Agent, Worker)}
    # The task is selected under its table's own name, so the pending-HITL rule compiles from
    # pending_hitl_exists() as every other read uses it (its subquery points at that name).
    task = table[Task]
    query = Task.objects.all().query
    pending, pending_params = query.get_compiler(connection=connection).compile(
        pending_hitl_exists().resolve_expression(query)
    )
    parent = [
        f"substr(p.{quote('input_text')}, 1, 120)" if column.endswith(quote("input_text")) else column
        for column in rows.columns(Task, "p", _PARENT_FIELDS)
    ]
    selected = [
        *rows.columns(Task, task),
        *rows.columns(Organization, "o"),
        *rows.columns(Agent, "a"),
        *rows.columns(Worker, "w"),
        *parent,
        pending,
    ]
    return (
        f"SELECT {', '.join(selected)} FROM {task}"  # noqa: S608 (names from the models)
        f" JOIN {table[Organization]} o ON o.id = {task}.organization_id"
        f" LEFT JOIN {table[Agent]} a ON a.id = {task}.agent_id"
        f" LEFT JOIN {table[Worker]} w ON w.id = {task}.assigned_worker_id"
        f" LEFT JOIN {task} p ON p.id = {task}.parent_id"
        f" WHERE {task}.id = %s"
    ), tuple(pending_params)


def task_events_since(task: Task, version: int, *, limit: int = 20) -> list[TaskEvent]:
    """Events that moved the task past `version` (who changed what since a form was rendered)."""
    return list(TaskEvent.objects.filter(task=task, task_version__gt=version).order_by("id")[:limit])


def sub_tasks(task: Task, *, limit: int = 50) -> list[Task]:
    return list(
        Task.objects.filter(parent=task, organization_id=task.organization_id, deleted_at__isnull=True)
        .select_related("agent", "organization")
        .order_by("created_at", "id")[:limit]
    )


def latest_hitl(task: Task) -> HitlRequest | None:
    """The task's newest request: the pending one if any (a new one waits until the last is closed)."""
    return HitlRequest.objects.filter(task=task).order_by("-requested_at", "-id").first()


def activity_entries(task_pk: int, ids: list[int]) -> list[ActivityEntry]:
    """Entries of a task by id, in log order, each with its call and its result (one query)."""
    return list(
        ActivityEntry.objects.filter(task_id=task_pk, pk__in=ids).select_related("call", "result").order_by("id")
    )


# --- Operations view: read from the rollups the write path keeps -------------------------------


@dataclass(frozen=True)
class OpsWindow:
    key: str  # in the URL: ?window=1h
    label: str
    span: int  # seconds per bucket: the rollups' minute or hour rows
    buckets: int


OPS_WINDOWS: dict[str, OpsWindow] = {
    window.key: window
    for window in (
        OpsWindow("1h", "1 h", rollups.MINUTE, 60),
        OpsWindow("24h", "24 h", rollups.HOUR, 24),
        OpsWindow("7d", "7 d", rollups.HOUR, 7 * 24),
    )
}
DEFAULT_OPS_WINDOW = "1h"
# How many workers the view lists (most recent heartbeat first).
OPS_WORKERS = 20


@dataclass
class OpsCounts:
    """What finished and started in a stretch of time (one bucket, one agent, or the window)."""

    created: int = 0
    completed: int = 0
    failed: int = 0
    stopped: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_sum: float = 0.0
    durations: list[int] = field(default_factory=lambda: [0] * len(models.ROLLUP_BUCKETS))  # per ROLLUP_BUCKETS

    @property
    def finished(self) -> int:
        return self.completed + self.failed + self.stopped

    @property
    def failure_rate(self) -> float | None:
        """Failed, errored or timed out, of all finished (None when nothing finished)."""
        return self.failed / self.finished if self.finished else None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def percentile(self, q: float) -> float | None:
        return rollups.percentile(self.durations, q)

    COUNTS = ("created", "completed", "failed", "stopped", "prompt_tokens", "completion_tokens", "duration_sum")
    COLUMNS = (*COUNTS, *models.ROLLUP_BUCKETS)

    def add(self, row: dict) -> None:
        """Add a row of rollup sums (the columns it has; a SUM over no rows is None)."""
        for name in self.COUNTS:
            if row.get(name):
                setattr(self, name, getattr(self, name) + row[name])
        if models.ROLLUP_BUCKETS[0] in row:
            buckets = zip(self.durations, models.ROLLUP_BUCKETS, strict=True)
            self.durations = [n + (row[name] or 0) for n, name in buckets]


# What a chart slot needs summed (its durations are not drawn per slot).
SLOT_COLUMNS = ("created", "completed", "failed", "stopped")


def _sums(columns: tuple[str, ...]) -> dict[str, Sum]:
    return {name: Sum(name) for name in columns}


@dataclass
class OpsBucket:
    start: datetime
    counts: OpsCounts


@dataclass
class OpsAgent:
    key: int  # the agent's id (0: tasks without an agent)
    name: str
    counts: OpsCounts
    pending: dict[str, int]  # queue -> pending tasks now
    seen: dict[str, datetime]  # face -> the agent's last write through it

    @property
    def last_seen(self) -> datetime | None:
        return max(self.seen.values(), default=None)


@dataclass
class OpsReport:
    organization: Organization
    window: OpsWindow
    agent: str  # the agent filter ("" for every agent)
    buckets: list[OpsBucket]
    totals: OpsCounts
    agents: list[OpsAgent]  # every agent of the organization (the filter's choices), by name
    workers: list[models.Worker]
    now: datetime

    @property
    def shown_agents(self) -> list[OpsAgent]:
        return [a for a in self.agents if not self.agent or a.name == self.agent]


def organizations_for(user) -> list[Organization]:
    return list(Organization.objects.filter(pk__in=organization_ids_for(user)).order_by("name"))


def ops_report(
    organization: Organization, *, window: str = DEFAULT_OPS_WINDOW, agent: str = "", now: datetime | None = None
) -> OpsReport:
    """The operations view of one organization over a window, from its rollups: four queries
    (agents, the window's rows, the queues now, workers) whatever the number of tasks.

    The caller checked that the user may read the organization (views.ops). An agent name the
    organization does not have is no filter (`report.agent` says which one applied).
    """
    now = now or timezone.now()
    spec = OPS_WINDOWS[window]
    epoch = int(now.timestamp()) // spec.span * spec.span
    starts = [datetime.fromtimestamp(epoch - spec.span * (spec.buckets - 1 - i), UTC) for i in range(spec.buckets)]
    agents = {0: "(no agent)"} | dict(
        models.Agent.objects.filter(organization=organization).order_by().values_list("pk", "name")
    )
    key = next((k for k, name in agents.items() if name == agent), None)
    if key is None:
        agent = ""
    rows = models.TaskRollup.objects.filter(organization=organization, span=spec.span, start__gte=starts[0])
    gauges = models.TaskRollup.objects.filter(organization=organization, span=rollups.NOW)
    if agent:
        rows, gauges = rows.filter(agent_key=key), gauges.filter(agent_key=key)
    # Summed by the database: per slot what the charts show, per agent everything (the window's
    # totals are the agents' sums). A 7-day window is ~170 rows per agent and queue.
    by_start = {start: OpsCounts() for start in starts}
    for row in rows.values("start").annotate(**_sums(SLOT_COLUMNS)).order_by():
        if row["start"] in by_start:
            by_start[row["start"]].add(row)
    by_agent = {k: OpsCounts() for k in agents}
    totals = OpsCounts()
    for row in rows.values("agent_key").annotate(**_sums(OpsCounts.COLUMNS)).order_by():
        totals.add(row)
        if row["agent_key"] in by_agent:
            by_agent[row["agent_key"]].add(row)
    pending: dict[int, dict[str, int]] = {k: {} for k in agents}
    seen: dict[int, dict[str, datetime]] = {k: {} for k in agents}
    seen_columns = {face: f"seen_{face}" for face in models.ROLLUP_SEEN_FACES}
    for row in gauges.values("agent_key", "queue", "pending", *seen_columns.values()).order_by():
        if row["agent_key"] not in agents:
            continue  # an agent removed since (its rows go with its organization)
        if row["pending"]:
            pending[row["agent_key"]][row["queue"]] = row["pending"]
        for face, column in seen_columns.items():
            if row[column] is not None:
                faces = seen[row["agent_key"]]
                faces[face] = max(faces.get(face, row[column]), row[column])
    listed = [
        OpsAgent(key=k, name=name, counts=by_agent[k], pending=pending[k], seen=seen[k])
        for k, name in agents.items()
        # Tasks without an agent are listed only when there are some.
        if k or by_agent[k].created or by_agent[k].finished or pending[k] or by_agent[k].tokens
    ]
    listed.sort(key=lambda a: (a.key == 0, a.name.lower()))
    workers = list(models.Worker.objects.filter(organization=organization).order_by("-last_heartbeat_at")[:OPS_WORKERS])
    return OpsReport(
        organization=organization,
        window=spec,
        agent=agent,
        buckets=[OpsBucket(start=start, counts=by_start[start]) for start in starts],
        totals=totals,
        agents=listed,
        workers=workers,
        now=now,
    )


# --- Bulk actions ----------------------------------------------------------------------------

BULK_IDS_MAX = 10_000  # ids picked row by row; "all matching" takes the list's filter instead
BULK_EXAMPLES = 5


def parse_task_pks(raw: str) -> list[int]:
    """Row ids from a bulk form ("12,15,40"); what is not an id is dropped, at most BULK_IDS_MAX."""
    pks = []
    for part in raw.split(",")[:BULK_IDS_MAX]:
        part = part.strip()
        if part.isascii() and part.isdigit() and len(part) <= 18:
            pks.append(int(part))
    return list(dict.fromkeys(pks))


def bulk_selection(user, *, pks: list[int] | None = None, view: str | None = None) -> QuerySet[Task]:
    """The tasks a bulk action would act on: the rows picked (`pks`), or every task of the list's
    view (`view`, the list's own filter), only live tasks of organizations where this person may
    change tasks. Ids of anything else are left out, never trusted."""
    qs = Task.objects.filter(organization_id__in=editable_organization_ids(user), deleted_at__isnull=True)
    if view is not None:
        return filter_tasks(qs, task_filters_for_view(view))
    return qs.filter(pk__in=pks or [])


def bulk_selection_organizations(qs: QuerySet[Task]) -> list[tuple[Organization, int]]:
    """The organizations a selection holds tasks of, with how many, by name (one query)."""
    counts = dict(qs.order_by().values_list("organization_id").annotate(n=Count("pk")))
    if not counts:
        return []
    organizations = Organization.objects.filter(pk__in=counts).order_by("name")
    return [(organization, counts[organization.pk]) for organization in organizations]


def bulk_actions_for_user(user, *, limit: int = 50) -> list[BulkAction]:
    """Recent bulk actions of the person's organizations, newest first."""
    return list(
        BulkAction.objects.filter(organization_id__in=organization_ids_for(user))
        .select_related("organization")
        .order_by("-id")[:limit]
    )


def get_bulk_action_for_user(user, action_id: int) -> BulkAction:
    """A bulk action of one of the person's organizations (any role may read it); 404 otherwise."""
    action = (
        BulkAction.objects.filter(organization_id__in=organization_ids_for(user), pk=action_id)
        .select_related("organization")
        .first()
    )
    if action is None:
        raise Http404("No such bulk action.")
    return action


@dataclass
class BulkOutcomeGroup:
    outcome: str
    reason: str
    count: int
    examples: list[Task] = field(default_factory=list)


def bulk_action_outcomes(action: BulkAction) -> list[BulkOutcomeGroup]:
    """What became of an action's tasks so far, grouped by outcome and reason (refusals by why),
    each with a few example tasks: two queries whatever the number of tasks."""
    items = BulkActionItem.objects.filter(bulk_action_id=action.pk).exclude(outcome="").order_by()
    groups = {
        (outcome, reason): BulkOutcomeGroup(outcome, reason, n)
        for outcome, reason, n in items.values_list("outcome", "reason").annotate(n=Count("pk"))
    }
    if groups:
        examples = (
            items.select_related("task__organization")
            .only("outcome", "reason", "task__public_id", "task__title", "task__organization__slug")
            .annotate(
                place=Window(RowNumber(), partition_by=[F("outcome"), F("reason")], order_by=F("pk").asc()),
            )
            .filter(place__lte=BULK_EXAMPLES)
            .order_by("pk")
        )
        for item in examples:
            groups[(item.outcome, item.reason)].examples.append(item.task)
    order = {"done": 0, "unchanged": 1, "refused": 2}
    return sorted(groups.values(), key=lambda g: (order.get(g.outcome, 3), -g.count, g.reason))
