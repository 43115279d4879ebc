"""Saved views of the task list: open one by URL, save the list as it is, rename, share, delete.

Reads through selectors (a person's own views and those shared with their organizations),
writes through services.saved_views (which holds the rule: sharing takes an operator or admin,
changes take the owner). Every form posts the list's current URL query (`query`), so the
answer, the views' menu on the list page (`#saved-views`), marks the view being looked at.
"""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from .. import selectors, services
from ..models import Organization, SavedView

MENU = "tasks/saved_views.html#saved-views"


def list_url(query: str) -> str:
    return reverse("task_list") + (f"?{query}" if query else "")


def view_list_query(view: SavedView) -> str:
    """The list URL query a saved view opens (its filters and sort, then its columns)."""
    return "&".join(part for part in (view.query, selectors.columns_query(view.columns)) if part)


def current_list_query(raw: str) -> str:
    """The canonical form of a list URL query (what a saved view of it would open)."""
    params = QueryDict(raw.lstrip("?")[: selectors.VIEW_MAX])
    filters, _ = selectors.parse_task_filters(params)
    return selectors.list_query(filters, selectors.parse_columns(params))


def saved_views_context(request: HttpRequest, current: str, *, organizations: list[Organization] | None = None) -> dict:
    """What the views' menu reads: the person's views and those shared with them, which one is open,
    the organizations a view can be saved in and whether they may share there."""
    user = request.user
    views = selectors.saved_views_for(user)
    for view in views:
        view.list_query = view_list_query(view)
        view.mine = view.owner_id == user.pk
    if organizations is None:
        organizations = list(Organization.objects.filter(pk__in=selectors.organization_ids_for(user)).order_by("name"))
    sharing = [org for org in organizations if services.may_share_views(user, org.pk)]
    return {
        "saved_views": views,
        "own_views": [view for view in views if view.mine],
        "current_view": current,
        "view_organizations": organizations,
        "share_organizations": sharing,
    }


def _menu(request: HttpRequest, *, errors: list[str] | None = None, status: int = 200, name: str = "") -> HttpResponse:
    """The views' menu after a change (htmx), or back to the list the form was posted from."""
    current = current_list_query(request.POST.get("query", ""))
    if not request.htmx:
        if errors:
            context = {"errors": errors, "back": list_url(current), "nav": "tasks"}
            return render(request, "tasks/saved_view_refused.html", context, status=status)
        return redirect(list_url(current))
    context = {**saved_views_context(request, current), "view_errors": errors or [], "view_name": name}
    return render(request, MENU, context, status=status)


@require_GET
@login_required
def saved_view_open(request: HttpRequest, view_id: int) -> HttpResponse:
    """A saved view's own URL (to bookmark or send to a colleague): the list as it was saved."""
    view = selectors.get_saved_view_for_user(request.user, view_id)
    return redirect(list_url(view_list_query(view)))


def _organization(request: HttpRequest) -> Organization:
    """The organization the form names, among the person's; theirs when they have only one."""
    slug = request.POST.get("organization", "")
    ids = selectors.organization_ids_for(request.user)
    if not slug and len(ids) == 1:
        return Organization.objects.get(pk=ids[0])
    organization = Organization.objects.filter(pk__in=ids, slug=slug).first() if slug else None
    if organization is None:
        raise Http404("No such organization of yours.")
    return organization


@require_POST
@login_required
def saved_view_create(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "")
    try:
        services.saved_view_create(
            user=request.user,
            organization=_organization(request),
            name=name,
            query=request.POST.get("query", ""),
            shared=request.POST.get("shared") == "1",
        )
    except services.InvalidInput as exc:
        return _menu(request, errors=[m for msgs in exc.errors.values() for m in msgs], status=422, name=name)
    except services.ServiceError as exc:
        return _menu(request, errors=[exc.message], status=403 if exc.code == "forbidden" else 422, name=name)
    return _menu(request)


@require_POST
@login_required
def saved_view_change(request: HttpRequest, view_id: int, action: str) -> HttpResponse:
    """Rename, share, unshare or delete one of the person's own views (404 for anyone else's)."""
    view = selectors.get_saved_view_for_owner(request.user, view_id)
    try:
        if action == "rename":
            services.saved_view_rename(view=view, user=request.user, name=request.POST.get("name", ""))
        elif action == "share":
            services.saved_view_share(view=view, user=request.user, shared=request.POST.get("shared") == "1")
        elif action == "delete":
            services.saved_view_delete(view=view, user=request.user)
        else:
            raise Http404("No such change.")
    except services.InvalidInput as exc:
        return _menu(request, errors=[m for msgs in exc.errors.values() for m in msgs], status=422)
    except services.ServiceError as exc:
        return _menu(request, errors=[exc.message], status=403 if exc.code == "forbidden" else 422)
    return _menu(request)
