"""Exact per-organization status counts, kept by the write path (models.TaskCount).

Only the kernel calls `apply`, inside the change's transaction and while it holds the
organization's event lock: every count update of one organization is serialised by that lock,
so concurrent writers can neither deadlock on the count rows nor lose an increment.
`recount` rebuilds an organization's rows from the tasks (bulk loads, repairs).
"""

from django.db import connection
from django.db.models import Count, Sum

from .. import lifecycle
from ..models import Task, TaskCount


def apply(organization_id: int, before: str | None, after: str | None) -> None:
    """Move one task from status `before` to `after` (None: not counted, i.e. new or deleted)."""
    if before == after:
        return
    deltas = {status: delta for status, delta in ((before, -1), (after, 1)) if status is not None}
    # Plain SQL: this runs on every status change, and the ORM's Case/When compiled per call.
    whens = " ".join(["WHEN %s THEN %s"] * len(deltas))
    table = TaskCount._meta.db_table
    sql = (
        f"UPDATE {table} SET count = count + CASE status {whens} ELSE 0 END"  # noqa: S608
        f" WHERE organization_id = %s AND status IN ({', '.join(['%s'] * len(deltas))})"
    )
    params = [x for pair in deltas.items() for x in pair] + [organization_id, *deltas]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        updated = cursor.rowcount
    if updated < len(deltas):
        # The organization's first task (no count rows yet): count it whole, once. The task row
        # is already written in this transaction, so the recount includes this change.
        recount(organization_id)


def _ensure_rows(organization_id: int) -> None:
    existing = set(TaskCount.objects.filter(organization_id=organization_id).values_list("status", flat=True))
    TaskCount.objects.bulk_create(
        [TaskCount(organization_id=organization_id, status=s) for s in lifecycle.STATUSES if s not in existing],
        ignore_conflicts=True,
    )


def recount(organization_id: int) -> dict[str, int]:
    """Rebuild the counts of one organization from its tasks (a GROUP BY; for bulk loads)."""
    _ensure_rows(organization_id)
    counts = dict(
        Task.objects.filter(organization_id=organization_id, deleted_at__isnull=True)
        .order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    for status in lifecycle.STATUSES:
        TaskCount.objects.filter(organization_id=organization_id, status=status).update(count=counts.get(status, 0))
    return {status: counts.get(status, 0) for status in lifecycle.STATUSES}


def counts_for(organization_id: int) -> dict[str, int]:
    """Every status with its count (0 where no row exists yet)."""
    rows = dict(TaskCount.objects.filter(organization_id=organization_id).values_list("status", "count"))
    return {status: max(rows.get(status, 0), 0) for status in lifecycle.STATUSES}


def total_for(organization_ids: list[int], statuses: tuple[str, ...] = ()) -> int:
    """Live tasks of these organizations in these statuses (all statuses when none), in one query."""
    rows = TaskCount.objects.filter(organization_id__in=organization_ids, count__gt=0)
    if statuses:
        rows = rows.filter(status__in=statuses)
    return rows.aggregate(total=Sum("count"))["total"] or 0
