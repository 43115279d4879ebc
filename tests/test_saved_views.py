"""Saved, shared views of the task list and its columns chooser (views/saved_views.py,
services/saved_views.py, selectors): who sees, opens and changes which view, CSRF, escaping."""

import re

import pytest
from django.test import Client

from tasks_app import selectors, services
from tasks_app.models import Membership, Role, SavedView

HX = {"HTTP_HX_REQUEST": "true"}
FAILED = "status=failed&sort=-updated"


@pytest.fixture
def signed_in(client, alice):
    client.force_login(alice)
    return client


def save(client, name, query=FAILED, **extra):
    return client.post("/views/", {"name": name, "query": query, **extra}, **HX)


def view_named(name) -> SavedView:
    return SavedView.objects.get(name=name)


# --- Saving and opening --------------------------------------------------------------------


def test_it_saves_the_list_as_it_is_and_opens_it_by_url(signed_in, acme, alice):
    response = save(
        signed_in, "Failed lately", query="?sort=-updated&status=failed&cols=title,status,updated&after=xyz"
    )
    assert response.status_code == 200
    view = view_named("Failed lately")
    # Canonical: filters and sort as the list writes them, the columns apart, the page cursor dropped.
    assert (view.organization, view.owner, view.query, view.columns, view.shared) == (
        acme,
        alice,
        "status=failed&sort=-updated",
        ["title", "status", "updated"],
        False,
    )
    html = response.content.decode()
    assert 'id="saved-views"' in html and "<html" not in html
    assert 'href="/tasks/?status=failed&amp;sort=-updated&amp;cols=title,status,updated"' in html
    opened = signed_in.get(f"/views/{view.pk}/")
    assert opened.status_code == 302
    assert opened["Location"] == "/tasks/?status=failed&sort=-updated&cols=title,status,updated"


def test_the_list_lists_views_marks_the_open_one_and_hides_columns(signed_in):
    save(signed_in, "Failed", query="status=failed&cols=title,status")
    page = signed_in.get("/tasks/?status=failed&cols=status,title").content.decode()
    # The same view, whatever the order in its URL.
    assert re.search(r'aria-current="page"[^>]*>Failed<', page)
    assert 'class="tasks hide-id hide-agent hide-priority hide-source hide-updated hide-duration hide-tokens"' in page
    assert 'data-list-query="status=failed&amp;cols=title,status"' in page
    assert 'value="agent" form="task-filters">' in page and 'value="status" form="task-filters" checked' in page
    everything = signed_in.get("/tasks/").content.decode()
    assert 'class="tasks"' in everything
    assert 'data-view-key="" aria-current="page">All tasks' in everything


def test_the_columns_chooser_without_javascript_sends_one_col_per_box(signed_in):
    page = signed_in.get("/tasks/?col=title&col=agent").content.decode()
    assert "hide-id" in page and "hide-agent" not in page
    # Nothing but the title chosen: the title alone, not every column.
    only_title = signed_in.get("/tasks/?col=title").content.decode()
    assert "hide-status" in only_title
    # Names it does not know are ignored: every column.
    assert 'class="tasks"' in signed_in.get("/tasks/?cols=bogus,<b>").content.decode()


def test_bad_names_are_refused_with_the_reason_and_nothing_is_saved(signed_in):
    for name, message in [("", "Give the view a name."), ("x" * 81, "At most 80 characters"), ("a\x00b", "NUL")]:
        response = save(signed_in, name)
        assert response.status_code == 422
        assert message in response.content.decode()
    save(signed_in, "Mine")
    twice = save(signed_in, "Mine")
    assert twice.status_code == 422 and "You already have a view named" in twice.content.decode()
    assert SavedView.objects.count() == 1


def test_names_are_escaped(signed_in):
    save(signed_in, '<img src=x onerror=alert(1)>"')
    page = signed_in.get("/tasks/").content.decode()
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;&quot;" in page


def test_forms_need_the_csrf_token(alice, acme):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post("/views/", {"name": "x", "query": FAILED}).status_code == 403
    assert SavedView.objects.count() == 0


def test_the_owner_renames_and_deletes(signed_in):
    save(signed_in, "Old")
    view = view_named("Old")
    response = signed_in.post(f"/views/{view.pk}/rename/", {"name": "New", "query": FAILED}, **HX)
    assert response.status_code == 200 and ">New" in response.content.decode()
    assert view_named("New").pk == view.pk
    assert signed_in.post(f"/views/{view.pk}/delete/", {"query": ""}, **HX).status_code == 200
    assert SavedView.objects.count() == 0


def test_without_htmx_a_change_returns_to_the_list_it_was_made_from(signed_in):
    response = signed_in.post("/views/", {"name": "Plain", "query": "status=failed&cols=title"})
    assert response.status_code == 302 and response["Location"] == "/tasks/?status=failed&cols=title"
    refused = signed_in.post("/views/", {"name": "", "query": "status=failed"})
    assert refused.status_code == 422 and "Give the view a name." in refused.content.decode()


# --- Sharing and scoping --------------------------------------------------------------------


def test_an_operator_shares_with_the_organization_a_viewer_opens_but_may_not_share(signed_in, bob, acme):
    save(signed_in, "Team failures", shared="1")
    shared = view_named("Team failures")
    assert shared.shared
    viewer = Client()
    viewer.force_login(bob)
    page = viewer.get("/tasks/").content.decode()
    assert "Team failures" in page and "Shared with Acme by alice" in page
    assert "Sharing a view with the organization takes an operator or admin." in page
    assert viewer.get(f"/views/{shared.pk}/").status_code == 302
    # Bob may save his own, not share it, and may not change alice's.
    refused = viewer.post("/views/", {"name": "Bob's", "query": FAILED, "shared": "1"}, **HX)
    assert refused.status_code == 403 and "takes an operator or admin" in refused.content.decode()
    assert not SavedView.objects.filter(name="Bob's").exists()
    assert save(viewer, "Bob's").status_code == 200
    mine = view_named("Bob's")
    assert viewer.post(f"/views/{mine.pk}/share/", {"shared": "1"}, **HX).status_code == 403
    for action in ("rename", "share", "delete"):
        assert viewer.post(f"/views/{shared.pk}/{action}/", {"name": "x", "shared": "0"}, **HX).status_code == 404
    assert view_named("Team failures").shared


def test_charlie_of_globex_never_sees_acmes_views(signed_in, charlie):
    save(signed_in, "Acme secret", shared="1")
    save(signed_in, "Acme private")
    shared, private = view_named("Acme secret"), view_named("Acme private")
    outsider = Client()
    outsider.force_login(charlie)
    page = outsider.get("/tasks/").content.decode()
    assert "Acme secret" not in page and "Acme private" not in page
    assert selectors.saved_views_for(charlie) == []
    for view in (shared, private):
        assert outsider.get(f"/views/{view.pk}/").status_code == 404
        for action in ("rename", "share", "delete"):
            assert outsider.post(f"/views/{view.pk}/{action}/", {"name": "mine now"}, **HX).status_code == 404
    # Saving into acme by naming it is refused: charlie is no member.
    assert outsider.post("/views/", {"name": "x", "query": "", "organization": "acme"}, **HX).status_code == 404
    assert SavedView.objects.filter(organization__slug="globex").count() == 0


def test_a_personal_view_stays_personal_and_a_former_member_loses_every_view(signed_in, alice, bob, acme):
    save(signed_in, "Alice only")
    viewer = Client()
    viewer.force_login(bob)
    assert "Alice only" not in viewer.get("/tasks/").content.decode()
    assert viewer.get(f"/views/{view_named('Alice only').pk}/").status_code == 404
    Membership.objects.filter(user=alice, organization=acme).delete()
    assert signed_in.get(f"/views/{view_named('Alice only').pk}/").status_code == 404


def test_the_sharing_rule_is_the_edit_roles_of_the_organization(alice, bob, charlie, acme, globex, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    owner = django_user_model.objects.create_user("olga", password="pw")
    Membership.objects.create(user=owner, organization=acme, role=Role.ADMIN)
    assert services.may_share_views(alice, acme.pk) and services.may_share_views(owner, acme.pk)
    assert services.may_share_views(admin, acme.pk) and services.may_share_views(admin, globex.pk)
    assert not services.may_share_views(bob, acme.pk)
    assert not services.may_share_views(charlie, acme.pk) and services.may_share_views(charlie, globex.pk)


def test_a_person_in_two_organizations_picks_where_a_view_lives(client, django_user_model, acme, globex):
    both = django_user_model.objects.create_user("dana", password="pw")
    Membership.objects.create(user=both, organization=acme, role=Role.VIEWER)
    Membership.objects.create(user=both, organization=globex, role=Role.OPERATOR)
    client.force_login(both)
    assert 'name="organization"' in client.get("/tasks/").content.decode()
    assert save(client, "Globex shared", organization="globex", shared="1").status_code == 200
    refused = save(client, "Acme shared", organization="acme", shared="1")
    assert (
        refused.status_code == 403 and "Sharing a view with Acme takes an operator or admin" in refused.content.decode()
    )
    assert list(SavedView.objects.values_list("name", "organization__slug", "shared")) == [
        ("Globex shared", "globex", True)
    ]
