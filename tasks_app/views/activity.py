"""The activity log panel of a task: filters, search and keyset pages loaded as you scroll."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from .. import selectors
from ..models import ActivityKind
from ..services.validation import ascii_int, text_problem

LOG = "activity/log.html"


@require_http_methods(["GET"])
@login_required
def activity_log(request, org: str, task_id: str):
    task = selectors.get_task_for_user(request.user, org, task_id)
    kind = request.GET.get("kind", "")
    if kind and kind not in ActivityKind.values:
        return HttpResponseBadRequest(f"Unknown kind; expected one of: {', '.join(ActivityKind.values)}.")
    q = request.GET.get("q", "").strip()[:200]
    if text_problem(q):
        return HttpResponseBadRequest("The search text must not contain NUL characters.")
    after_raw = request.GET.get("after", "")
    after_id = ascii_int(after_raw) if after_raw else None
    if after_raw and after_id is None:
        return HttpResponseBadRequest("Invalid page cursor.")
    page = selectors.activity_page(task, kind=kind or None, q=q or None, after_id=after_id)
    context = {
        "task": task,
        "page": page,
        "entries": page.entries,
        "kind": kind,
        "q": q,
        "kinds": ActivityKind.choices,
        "filtered": bool(kind or q),
    }
    template = LOG
    if request.htmx:
        if after_id:
            template += "#activity-page"  # the next rows and a new sentinel, replacing the old sentinel
        elif request.htmx.target == "activity-entries":
            template += "#activity-list"  # a filter or search changed: the list only, the form keeps focus
        else:
            template += "#activity-panel"
    response = render(request, template, context)
    response["Vary"] = "HX-Request, HX-Target"
    return response
