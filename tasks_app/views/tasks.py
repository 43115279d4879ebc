"""The dashboard's task pages: the list, the detail, and the inline patches.

Reads go through tasks_app.selectors (scoped to the user's organizations), writes through
tasks_app.services with a dashboard actor. An htmx request gets the fragment it swaps
("page.html#partial"); anything else gets the full page. Patch forms carry the task version
they were rendered at: a stale one answers 409 with a conflict panel, bad input 422 with the
form as typed; base.html tells htmx to swap both.
"""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRefresh

from tasks_app import lifecycle, selectors, services
from tasks_app.models import Agent, Face, Organization, Task
from tasks_app.services import Actor
from tasks_app.services.validation import JsonRefused, parse_json
from tasks_app.templatetags.taskdesk import task_url

from ..live.presenters import (
    conflict_context,
    detail_context,
    replay_context,
    status_count_groups,
    timeline_context,
)
from .saved_views import saved_views_context

LIST_TEMPLATE = "tasks/task_list.html"
DETAIL_TEMPLATE = "tasks/task_detail.html"

# Columns whose natural first click is largest/newest first.
DESCENDING_FIRST = {"created", "updated", "priority", "duration"}


def _wants_fragment(request: HttpRequest) -> bool:
    # A history restore after a cache miss needs the whole page, not the fragment.
    return bool(request.htmx) and not request.htmx.history_restore_request


def _base_context(request: HttpRequest) -> dict:
    return {"nav": "tasks"}


# --- List ---------------------------------------------------------------------------------


def _sort_headers(sort: str) -> list[dict]:
    current = sort.lstrip("-")
    descending = sort.startswith("-")
    headers = []
    for key, label, sort_name in selectors.LIST_COLUMNS:
        header = {"key": key, "label": label, "sort": sort_name, "state": "none", "next": None}
        if sort_name:
            if sort_name == current:
                header["state"] = "descending" if descending else "ascending"
                header["next"] = sort_name if descending else f"-{sort_name}"
            else:
                header["next"] = f"-{sort_name}" if sort_name in DESCENDING_FIRST else sort_name
        headers.append(header)
    return headers


@require_GET
@login_required
def task_list(request: HttpRequest) -> HttpResponse:
    """Tasks of the user's organizations: filters, sort, keyset pages, status counts."""
    org_ids = selectors.organization_ids_for(request.user)
    if not org_ids:
        return no_organizations(request)
    # Read before the rows: an event committed in between is replayed by the socket, not lost.
    replay = replay_context(org_ids)
    filters, errors = selectors.parse_task_filters(request.GET)
    columns = selectors.parse_columns(request.GET)
    qs = selectors.filter_tasks(selectors.tasks_for_user(request.user), filters)
    total = selectors.count_tasks(org_ids, filters, qs)
    qs = qs.select_related("agent", "organization", "assigned_worker").annotate(
        has_pending_hitl=selectors.pending_hitl_exists()
    )
    after, before = request.GET.get("after") or None, request.GET.get("before") or None
    try:
        page = selectors.paginate_tasks(qs, sort=filters.sort, after=after, before=before)
    except selectors.BadCursor as exc:
        errors.append(f"{exc} Showing the first page.")
        page = selectors.paginate_tasks(qs, sort=filters.sort)
    memberships = selectors.memberships_for(request.user)
    context = {
        **_base_context(request),
        "filters": filters,
        "filter_errors": errors,
        "page": page,
        "page_size": selectors.PAGE_SIZE,
        "total": total,
        "view": filters.query,
        "columns": columns,
        "hidden_columns": [key for key in selectors.COLUMN_KEYS if key not in columns],
        "list_columns": selectors.LIST_COLUMNS,
        "list_query": selectors.list_query(filters, columns),
        "row_sort": filters.sort,
        "headers": _sort_headers(filters.sort),
        "by_time": filters.sort.lstrip("-") in ("created", "updated"),
        "editable_org_ids": {org for org, role in memberships.items() if role in selectors.EDIT_ROLES},
        **replay,
        "statuses": lifecycle.STATUS_CHOICES,
    }
    template = LIST_TEMPLATE
    if _wants_fragment(request):
        template += "#task-table"
    else:
        organizations = list(Organization.objects.filter(pk__in=org_ids).order_by("name"))
        context["count_groups"] = status_count_groups(organizations)
        context.update(saved_views_context(request, context["list_query"], organizations=organizations))
        context["agents"] = list(
            Agent.objects.filter(organization_id__in=org_ids).order_by("name").values_list("name", flat=True)
        )
    response = render(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


def no_organizations(request: HttpRequest) -> HttpResponse:
    """A signed-in person with no organization: what the desk shows and where to go instead (no socket)."""
    nav = "tasks" if request.resolver_match and request.resolver_match.url_name == "task_list" else ""
    return render(request, "tasks/no_organizations.html", {"nav": nav})


# --- Detail -------------------------------------------------------------------------------


@require_GET
@login_required
def task_by_id(request: HttpRequest, task_id: str) -> HttpResponse:
    """A bare task id: the task when one of the user's organizations holds it, else a choice."""
    found = selectors.find_tasks_for_user(request.user, task_id)
    if not found:
        raise Http404("No such task.")
    if len(found) == 1:
        return redirect(task_url(found[0]))
    return render(request, "tasks/task_choose.html", {**_base_context(request), "tasks": found, "task_id": task_id})


@require_GET
@login_required
def task_detail(request: HttpRequest, org: str, task_id: str) -> HttpResponse:
    task = selectors.get_task_for_user(request.user, org, task_id)
    # Read before the timeline: an event committed in between is replayed by the socket, not lost.
    last_event_id = selectors.last_event_id([task.organization_id], task_pk=task.pk)
    task = selectors.task_for_fragment(task.pk)
    context = {
        **_base_context(request),
        **detail_context(task, can_edit=selectors.can_edit(request.user, task.organization_id)),
        **timeline_context(task),
        "sub_tasks": selectors.sub_tasks(task),
        "last_event_id": last_event_id,
    }
    template = DETAIL_TEMPLATE
    if _wants_fragment(request):
        template += "#task-main"
    response = render(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


# --- Inline patches -----------------------------------------------------------------------


class _Refusal(Exception):
    """A form value the view itself refuses before calling a service."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _editable_task(request: HttpRequest, org: str, task_id: str) -> Task:
    task = selectors.get_task_for_user(request.user, org, task_id)
    selectors.require_edit(request.user, task.organization_id)
    return task


def _version_from(post) -> int | None:
    """The version the form was rendered at, or the current one when the user chose "apply mine anyway"."""
    raw = post.get("force_version") or post.get("version")
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


# The detail panel each form lives in (stop and retry sit in the status panel).
PANEL_OF = {
    "status": "status",
    "stop": "status",
    "retry": "status",
    "priority": "priority",
    "result": "result",
    "metadata": "metadata",
}


def _patch(request: HttpRequest, org: str, task_id: str, form_key: str, apply) -> HttpResponse:
    """Run one inline patch and answer with the panel (or list row) it came from.

    `apply(task, actor, version, post)` calls the service; it raises ServiceError or
    _Refusal for anything it will not do, and nothing is written then.
    """
    task = _editable_task(request, org, task_id)
    post = request.POST
    on_list = post.get("page") == "list"
    version = _version_from(post)
    values = {name: post.get(name, "") for name in ("status", "status_reason", "priority", "result", "metadata")}
    values["metadata_mode"] = post.get("metadata_mode", "merge")
    if form_key == "stop":
        values["status"] = values["status"] or lifecycle.Status.STOPPED  # which stop button answers
    panel = PANEL_OF[form_key]
    form = {"panel": panel, "values": values, "errors": [], "conflict": None}
    status = 200
    actor = Actor.for_user(request.user, face=Face.DASHBOARD)
    if version is None:
        form["errors"].append("The form lost its version; reload the page and try again.")
        status = 422
    else:
        try:
            apply(task, actor, version, post)
        except services.VersionConflict as exc:
            form["conflict"] = conflict_context(exc.task, version)
            status = 409
        except services.InvalidInput as exc:
            form["errors"] = [f"{_field_label(name)}: {' '.join(msgs)}" for name, msgs in exc.errors.items()]
            status = 422
        except services.TaskNotFound:
            # Deleted meanwhile: reloading shows the 404 page.
            return HttpResponseClientRefresh()
        except (services.ServiceError, _Refusal) as exc:
            form["errors"].append(exc.message)
            status = 422
    fresh = selectors.task_for_fragment(task.pk)
    can_edit = True  # _editable_task checked it
    if on_list:
        # The row as the list's view shows it (task_list.js sends the view with the form).
        filters = selectors.task_filters_for_view(post.get("view", ""))
        context = {
            "task": fresh,
            "form": form if status != 200 else None,
            "editable_org_ids": {fresh.organization_id},
            "oob": None,
            "row_sort": filters.sort,
            "stale": not filters.is_default and not selectors.task_matches(fresh.pk, filters),
        }
        if status == 200:
            organizations = [fresh.organization]
            context["count_groups"] = status_count_groups(organizations)
        response = render(request, LIST_TEMPLATE + "#row-patch-response", context, status=status)
    else:
        context = {
            **detail_context(fresh, can_edit=can_edit),
            f"{form_key}_form": form if status != 200 else None,
            "saved": status == 200,
            "panel": panel,
        }
        response = render(request, DETAIL_TEMPLATE + "#patch-response", context, status=status)
    return response


FIELD_LABELS = {"status_reason": "Reason", "result": "Result", "metadata": "Metadata", "priority": "Priority"}


def _field_label(name: str) -> str:
    return FIELD_LABELS.get(name, name.replace("_", " ").capitalize())


@require_POST
@login_required
def task_set_status(request: HttpRequest, org: str, task_id: str) -> HttpResponse:
    def apply(task, actor, version, post):
        target = post.get("status", "")
        if not target:
            raise _Refusal("Choose a status.")
        reason = post.get("status_reason", "").strip()
        if target in services.STOP_STATUSES and task.status in lifecycle.STOPPABLE:
            # Stop, cancel, terminate or time out chosen from the menu is the same act as the
            # buttons: the reason given (or none) replaces the previous one.
            services.task_stop(
                task=task,
                actor=actor,
                organization_id=task.organization_id,
                expected_version=version,
                status=target,
                reason=reason,
            )
            return
        services.task_update(
            task=task,
            actor=actor,
            organization_id=task.organization_id,
            expected_version=version,
            status=target,
            status_reason=reason or None,
        )

    return _patch(request, org, task_id, "status", apply)


@require_POST
@login_required
def task_set_priority(request: HttpRequest, org: str, task_id: str) -> HttpResponse:
    def apply(task, actor, version, post):
        raw = post.get("priority", "").strip()
        try:
            priority = int(raw)
        except ValueError:
            raise _Refusal(f"Priority: {raw!r} is not a whole number from 0 to 100.")
        services.task_update(
            task=task, actor=actor, organization_id=task.organization_id, expected_version=version, priority=priority
        )

    return _patch(request, org, task_id, "priority", apply)


@require_POST
@login_required
def task_set_result(request: HttpRequest, org: str, task_id: str) -> HttpResponse:
    def apply(task, actor, version, post):
        # Browsers send textarea newlines as CRLF; store what the user sees.
        result = post.get("result", "").replace("\r\n", "\n")
        services.task_update(
            task=task, actor=actor, organization_id=task.organization_id, expected_version=version, result=result
        )

    return _patch(request, org, task_id, "result", apply)


@require_POST
@login_required
def task_set_metadata(request: HttpRequest, org: str, task_id: str) -> HttpResponse:
    def apply(task, actor, version, post):
        mode = post.get("metadata_mode", "merge")
        if mode not in ("merge", "replace"):
            raise _Refusal(f"Unknown metadata mode {mode!r}; choose merge or replace.")
        raw = post.get("metadata", "")
        try:
            value = parse_json(raw)
        except JsonRefused as exc:
            raise _Refusal(f"Metadata is not valid JSON: {exc}")
        if not isinstance(value, dict):
            raise _Refusal("Metadata must be a JSON object ({…}), not a list, string or number.")
        services.task_update(
            task=task,
            actor=actor,
            organization_id=task.organization_id,
            expected_version=version,
            metadata=value,
            metadata_replace=mode == "replace",
        )

    return _patch(request, org, task_id, "metadata", apply)


@require_POST
@login_required
def task_stop(request: HttpRequest, org: str, task_id: str) -> HttpResponse:
    def apply(task, actor, version, post):
        status = post.get("status", "") or lifecycle.Status.STOPPED
        services.task_stop(
            task=task,
            actor=actor,
            organization_id=task.organization_id,
            expected_version=version,
            status=status,
            reason=post.get("status_reason", "").strip(),
        )

    return _patch(request, org, task_id, "stop", apply)


@require_POST
@login_required
def task_retry(request: HttpRequest, org: str, task_id: str) -> HttpResponse:
    def apply(task, actor, version, post):
        services.task_retry(
            task=task,
            actor=actor,
            organization_id=task.organization_id,
            expected_version=version,
            reason=post.get("status_reason", "").strip(),
        )

    return _patch(request, org, task_id, "retry", apply)
