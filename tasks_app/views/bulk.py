"""Bulk actions from the task list: preview, start, watch, cancel, and the recent ones.

The list's bulk bar (templates/tasks/task_list.html, static/js/bulk.js) posts the act and the
selection: the rows picked (`ids`, the rows' internal ids) or every task of the list's view
(`all=1` with `view`, resolved here by the list's own filter). Either way the selection is
resolved server-side, scoped to the organizations where the person may change tasks
(selectors.bulk_selection); the rule of who may and of what each act refuses is
services.bulk_actions'. Nothing changes before "confirm": the preview only counts.
"""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from .. import selectors, services
from ..models import BulkAct, Organization
from ..services import bulk_actions
from ..templatetags.taskdesk import ACT_CONFIRMATIONS

TEMPLATE = "tasks/bulk.html"

# What the preview says of an act, in the words the row's own confirmation uses.
ACT_WORDS = {
    BulkAct.STOP: ACT_CONFIRMATIONS["stopped"],
    BulkAct.CANCEL: ACT_CONFIRMATIONS["canceled"],
    BulkAct.RETRY: ACT_CONFIRMATIONS["retry"],
}


# The confirm button's words: "Cancel 1,204 tasks".
CONFIRM_VERBS = {
    BulkAct.STOP: "Stop",
    BulkAct.CANCEL: "Cancel",
    BulkAct.RETRY: "Retry",
    BulkAct.PRIORITY: "Set the priority of",
    BulkAct.METADATA: "Set the metadata of",
}


def _selection(request: HttpRequest):
    """The tasks posted (scoped), how many ids were posted (None for "all matching") and the view."""
    post = request.POST
    if post.get("all") == "1":
        view = post.get("view", "")[: selectors.VIEW_MAX]
        return selectors.bulk_selection(request.user, view=view), None, view
    pks = selectors.parse_task_pks(post.get("ids", ""))
    return selectors.bulk_selection(request.user, pks=pks), len(pks), ""


def _refused(request: HttpRequest, message: str, status: int) -> HttpResponse:
    return render(request, TEMPLATE + "#bulk-refused", {"message": message}, status=status)


def _require_some_edit_role(request: HttpRequest) -> None:
    # Viewers get no bulk controls; a hand-made post is refused before anything is read.
    if not selectors.editable_organization_ids(request.user):
        raise PermissionDenied("Your role is read-only in every organization of yours.")


def _chosen_organization(request: HttpRequest) -> Organization | None:
    slug = request.POST.get("org", "")
    if not slug:
        return None
    organization = Organization.objects.filter(
        pk__in=selectors.organization_ids_for(request.user), slug=slug[:50]
    ).first()
    if organization is None or not services.may_run_bulk_actions(request.user, organization.pk):
        raise PermissionDenied("Not an organization whose tasks you may change.")
    return organization


def _form_values(request: HttpRequest) -> dict:
    """The posted fields the confirm form carries on (the act's values and the selection)."""
    post = request.POST
    names = ("act", "ids", "all", "view", "reason", "priority", "key", "value")
    return {name: post.get(name, "") for name in names}


@require_POST
@login_required
def bulk_preview(request: HttpRequest) -> HttpResponse:
    """What the act would do to the selection: how many tasks change, how many are refused and why."""
    _require_some_edit_role(request)
    act = request.POST.get("act", "")
    try:
        params = bulk_actions.clean_params(act, request.POST)
    except services.InvalidInput as exc:
        return _refused(request, " ".join(m for msgs in exc.errors.values() for m in msgs), 422)
    tasks, asked, view = _selection(request)
    organization = _chosen_organization(request)
    context = {
        "act": act,
        "params": params,
        "form": _form_values(request),
        "asked": asked,
        "view": view,
        "lifecycle_acts": bulk_actions.LIFECYCLE_ACTS,
        "max_tasks": bulk_actions.MAX_TASKS,
    }
    if organization is None:
        holding = selectors.bulk_selection_organizations(tasks)
        if len(holding) > 1:
            # One bulk action changes one organization's tasks: which?
            return render(request, TEMPLATE + "#bulk-choose", {**context, "holding": holding})
        if not holding:
            context["nothing"] = True
            return render(request, TEMPLATE + "#bulk-preview", context)
        organization = holding[0][0]
    try:
        preview = services.bulk_preview(
            user=request.user, organization=organization, act=act, params=params, tasks=tasks
        )
    except services.NotAllowed as exc:
        return _refused(request, exc.message, 403)
    context.update(
        preview=preview,
        organization=organization,
        label=bulk_actions.act_label(act, params),
        words=ACT_WORDS.get(act),
        left_out=(asked - preview.total) if asked is not None else 0,
        confirm=f"{CONFIRM_VERBS[act]} {preview.applies:,} task{'' if preview.applies == 1 else 's'}",
    )
    return render(request, TEMPLATE + "#bulk-preview", context)


@require_POST
@login_required
def bulk_start(request: HttpRequest) -> HttpResponse:
    """Freeze the selection and start the action in the background; answers with its progress."""
    _require_some_edit_role(request)
    act = request.POST.get("act", "")
    organization = _chosen_organization(request)
    if organization is None:
        return _refused(request, "Choose the organization whose tasks to change.", 422)
    tasks, _, view = _selection(request)
    try:
        params = bulk_actions.clean_params(act, request.POST)
        action = services.bulk_action_start(
            user=request.user,
            organization=organization,
            act=act,
            params=params,
            tasks=tasks,
            selected_all=request.POST.get("all") == "1",
            view=view,
        )
    except services.InvalidInput as exc:
        return _refused(request, " ".join(m for msgs in exc.errors.values() for m in msgs), 422)
    except services.NotAllowed as exc:
        return _refused(request, exc.message, 403)
    if not request.htmx:
        return redirect("bulk_action", action_id=action.pk)
    return render(request, TEMPLATE + "#bulk-progress", _progress_context(request, action, started=True))


def _progress_context(request: HttpRequest, action, *, started: bool = False) -> dict:
    return {
        "action": action,
        "label": bulk_actions.act_label(action.act, action.params),
        "outcomes": selectors.bulk_action_outcomes(action),
        "can_cancel": (
            action.finished_at is None and services.may_run_bulk_actions(request.user, action.organization_id)
        ),
        "started": started,
        "nav": "tasks",
    }


@require_GET
@login_required
def bulk_action(request: HttpRequest, action_id: int) -> HttpResponse:
    """One bulk action: its progress while it runs (the fragment polls this every second), then its summary."""
    action = selectors.get_bulk_action_for_user(request.user, action_id)
    # A runner that died (a restarted server) is replaced by whoever watches: here, in the background.
    bulk_actions.resume_if_stalled(action)
    template = TEMPLATE + "#bulk-progress" if request.htmx else TEMPLATE
    response = render(request, template, _progress_context(request, action))
    patch_vary_headers(response, ("HX-Request",))
    return response


@require_POST
@login_required
def bulk_action_cancel(request: HttpRequest, action_id: int) -> HttpResponse:
    action = selectors.get_bulk_action_for_user(request.user, action_id)
    try:
        action = services.bulk_action_cancel(user=request.user, action=action)
    except services.NotAllowed as exc:
        return _refused(request, exc.message, 403)
    if not request.htmx:
        return redirect("bulk_action", action_id=action.pk)
    return render(request, TEMPLATE + "#bulk-progress", _progress_context(request, action))


@require_GET
@login_required
def bulk_actions_list(request: HttpRequest) -> HttpResponse:
    """Recent bulk actions of the person's organizations, newest first."""
    actions = selectors.bulk_actions_for_user(request.user)
    for action in actions:
        action.label = bulk_actions.act_label(action.act, action.params)
    return render(request, "tasks/bulk_list.html", {"actions": actions, "nav": "tasks"})
