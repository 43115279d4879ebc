"""Reads, always scoped to what the caller may see; and the one place permission rules live."""

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from .models import ApiToken, Membership, Role, Task, TaskEvent

EDIT_ROLES = frozenset({Role.OPERATOR, Role.ADMIN})


def memberships_for(user) -> dict[int, str]:
    """organization id -> role for a signed-in user (cached on the user object per request)."""
    if not getattr(user, "is_authenticated", False):
        return {}
    cached = getattr(user, "_taskdesk_roles", None)
    if cached is None:
        cached = dict(Membership.objects.filter(user=user).values_list("organization_id", "role"))
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


def tasks_for_user(user) -> QuerySet[Task]:
    return Task.objects.filter(organization_id__in=organization_ids_for(user), deleted_at__isnull=True)


def get_task_for_user(user, task_id: str) -> Task:
    """The task if the user's organizations hold it; 404 otherwise (ids of others do not leak)."""
    task = tasks_for_user(user).select_related("organization", "agent", "parent").filter(pk=task_id).first()
    if task is None:
        raise Http404("No such task.")
    return task


def tasks_for_token(token: ApiToken) -> QuerySet[Task]:
    return Task.objects.filter(organization_id=token.organization_id, deleted_at__isnull=True)


def task_events(task: Task, *, limit: int | None = None) -> QuerySet[TaskEvent]:
    qs = TaskEvent.objects.filter(task=task).order_by("-id")
    return qs[:limit] if limit else qs


def events_after(organization_ids: list[int], after_id: int, *, task_id: str | None = None, limit: int = 500):
    """Events the caller may see with id > after_id, oldest first (the replay log)."""
    qs = TaskEvent.objects.filter(organization_id__in=organization_ids, id__gt=after_id)
    if task_id is not None:
        qs = qs.filter(task_id=task_id)
    return qs.order_by("id")[:limit]


def last_event_id(organization_ids: list[int], *, task_id: str | None = None) -> int:
    qs = TaskEvent.objects.filter(organization_id__in=organization_ids)
    if task_id is not None:
        qs = qs.filter(task_id=task_id)
    return qs.order_by("-id").values_list("id", flat=True).first() or 0
