"""Saved views of the task list: a name for a list URL (filters, sort, shown columns), kept for
its owner or shared with an organization.

Who may do what (the one rule for every page and test):
- anyone may save views for themselves in an organization they are a member of;
- sharing a view with an organization takes an operator or admin of it (`may_share_views`;
  a superuser counts as admin everywhere);
- only a view's owner renames, shares, unshares or deletes it; everyone the view is shared with
  may open it (selectors.saved_views_for).
"""

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.http import QueryDict
from django.utils import timezone

from ..models import Organization, SavedView
from .errors import Errors, InvalidInput, NotAllowed
from .validation import check_text, text_problem

NAME_MAX = 80
QUERY_MAX = 2000
# Enough for anyone's working set; a bound so a script cannot fill the table.
VIEWS_PER_PERSON = 200


def may_share_views(user: AbstractBaseUser, organization_id: int) -> bool:
    """Whether this person may share a view with the organization: its operators and admins."""
    from .. import selectors  # the memberships the request already read (selectors reads through services)

    return selectors.can_edit(user, organization_id)  # the one rule of who may change tasks


def _is_member(user: AbstractBaseUser, organization_id: int) -> bool:
    from .. import selectors

    return selectors.role_for(user, organization_id) is not None


def _clean_name(name: object) -> str:
    errors = Errors()
    cleaned = name.strip() if isinstance(name, str) else ""
    check_text(errors, "name", cleaned, NAME_MAX, empty="Give the view a name.")
    errors.raise_if_any()
    return cleaned


def _canonical(query: object) -> tuple[str, list[str]]:
    """The list URL's filters (canonical query) and shown columns; what the list ignores is dropped."""
    from .. import selectors  # selectors reads through services: imported when called

    raw = query.lstrip("?") if isinstance(query, str) else ""
    if len(raw) > QUERY_MAX or text_problem(raw):
        raise InvalidInput({"query": [f"A list URL of at most {QUERY_MAX} characters."]})
    params = QueryDict(raw)
    filters, _ = selectors.parse_task_filters(params)
    columns = selectors.parse_columns(params)
    return filters.query, [] if columns == selectors.COLUMN_KEYS else list(columns)


def _save(view: SavedView) -> SavedView:
    try:
        with transaction.atomic():
            view.save()
    except IntegrityError:
        raise InvalidInput({"name": [f"You already have a view named {view.name!r} here."]}) from None
    return view


def saved_view_create(
    *, user: AbstractBaseUser, organization: Organization, name: object, query: object, shared: bool = False
) -> SavedView:
    """Save the list URL `query` (filters, sort, columns) under `name` for `user`, shared or not."""
    if not _is_member(user, organization.pk):
        raise NotAllowed("You can only save views in your own organizations.")
    if shared and not may_share_views(user, organization.pk):
        raise NotAllowed(f"Sharing a view with {organization.name} takes an operator or admin of it.")
    cleaned = _clean_name(name)
    filters_query, columns = _canonical(query)
    if SavedView.objects.filter(owner=user).count() >= VIEWS_PER_PERSON:
        raise InvalidInput({"name": [f"You have {VIEWS_PER_PERSON} views already; delete one first."]})
    view = SavedView(
        organization=organization, owner=user, name=cleaned, query=filters_query, columns=columns, shared=shared
    )
    return _save(view)


def _owned(view: SavedView, user: AbstractBaseUser) -> None:
    if view.owner_id != user.pk or not _is_member(user, view.organization_id):
        raise NotAllowed("Only the person who saved a view changes it.")


def saved_view_rename(*, view: SavedView, user: AbstractBaseUser, name: object) -> SavedView:
    _owned(view, user)
    view.name = _clean_name(name)
    view.updated_at = timezone.now()
    return _save(view)


def saved_view_share(*, view: SavedView, user: AbstractBaseUser, shared: bool) -> SavedView:
    """Share the view with its organization, or take it back (only the owner; sharing by the rule)."""
    _owned(view, user)
    if shared and not may_share_views(user, view.organization_id):
        raise NotAllowed(f"Sharing a view with {view.organization.name} takes an operator or admin of it.")
    view.shared = shared
    view.updated_at = timezone.now()
    return _save(view)


def saved_view_delete(*, view: SavedView, user: AbstractBaseUser) -> None:
    _owned(view, user)
    view.delete()
