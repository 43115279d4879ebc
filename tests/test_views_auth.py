"""Sign-in, sign-out, and who may see and change which task."""

import logging

import pytest
from django.urls import reverse

from tasks_app import services
from tasks_app.models import Task
from tasks_app.templatetags.taskdesk import task_url

from .dashboard_helpers import event_count

PATCHES = [
    ("task_set_status", {"status": "executing", "version": "1"}),
    ("task_set_priority", {"priority": "90", "version": "1"}),
    ("task_set_result", {"result": "forged", "version": "1"}),
    ("task_set_metadata", {"metadata": '{"forged": true}', "metadata_mode": "merge", "version": "1"}),
    ("task_stop", {"version": "1"}),
    ("task_retry", {"version": "1"}),
]


@pytest.fixture
def task(acme, system_actor):
    return services.task_create(organization=acme, actor=system_actor, id="acme-1", title="Acme task")[0]


def test_it_shows_a_styled_login_page(client, db):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="username"' in html and 'name="password"' in html and "csrfmiddlewaretoken" in html
    assert "css/taskdesk.css" in html


def test_it_signs_in_and_out(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "taskdesk"})
    assert response.status_code == 302 and response["Location"] == reverse("task_list")
    assert client.get(reverse("task_list")).status_code == 200
    page = client.get(reverse("task_list")).content.decode()
    assert f'action="{reverse("logout")}"' in page and 'method="post"' in page
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("task_list")).status_code == 302


def test_it_refuses_a_wrong_password(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "didn't match" in response.content.decode()


@pytest.mark.parametrize("name", ["task_list", "task_detail"] + [name for name, _ in PATCHES])
def test_it_requires_login(client, task, name):
    url = reverse(name) if name == "task_list" else task_url(task, name)
    response = client.get(url) if name in ("task_list", "task_detail") else client.post(url, {})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_checks_ownership_on_detail(client, charlie, task):
    client.force_login(charlie)
    assert client.get(task_url(task)).status_code == 404
    # Nor under charlie's own organization, nor as a bare id pasted from a log.
    assert client.get(reverse("task_detail", args=["globex", task.public_id])).status_code == 404
    assert client.get(reverse("task_by_id", args=[task.public_id])).status_code == 404


def test_the_same_id_in_another_organization_is_another_task(client, alice, charlie, task, globex, system_actor):
    theirs, _ = services.task_create(organization=globex, actor=system_actor, id=task.public_id, title="Globex twin")
    client.force_login(charlie)
    html = client.get(task_url(theirs)).content.decode()
    assert "Globex twin" in html and "Acme task" not in html
    assert client.get(reverse("task_by_id", args=[task.public_id]))["Location"] == task_url(theirs)
    response = client.post(
        task_url(theirs, "task_set_priority"), {"priority": "90", "version": "1"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert Task.objects.get(pk=theirs.pk).priority == 90
    assert Task.objects.get(pk=task.pk).priority == task.priority  # acme's acme-1 untouched


def test_it_hides_other_organizations_tasks_from_the_list(client, charlie, task, globex, system_actor):
    services.task_create(organization=globex, actor=system_actor, id="globex-1", title="Globex task")
    client.force_login(charlie)
    html = client.get(reverse("task_list")).content.decode()
    assert "Globex task" in html and "Acme task" not in html and "acme-1" not in html


@pytest.mark.parametrize("name,data", PATCHES)
def test_it_gives_charlie_404_on_patches(client, charlie, task, name, data):
    client.force_login(charlie)
    before = event_count()
    response = client.post(task_url(task, name), data, HTTP_HX_REQUEST="true")
    assert response.status_code == 404
    assert event_count() == before


@pytest.mark.parametrize("name,data", PATCHES)
def test_it_refuses_viewer_edits_even_when_forged(client, bob, task, name, data, caplog):
    if name == "task_retry":
        services.task_update(task=task, actor=services.Actor.system(), status="failed")
        data = {"version": str(Task.objects.get(pk=task.pk).version)}
    client.force_login(bob)
    snapshot = Task.objects.filter(pk=task.pk).values().get()
    before = event_count()
    with caplog.at_level("INFO"):
        response = client.post(task_url(task, name), data, HTTP_HX_REQUEST="true")
    assert response.status_code == 403
    assert Task.objects.filter(pk=task.pk).values().get() == snapshot
    assert event_count() == before
    # An ordinary refusal is an answer, not an incident: nothing in the log (it printed a traceback).
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_viewers_see_no_edit_controls(client, bob, task):
    client.force_login(bob)
    detail = client.get(task_url(task)).content.decode()
    assert "Read-only" in detail
    for name, _ in PATCHES:
        assert task_url(task, name) not in detail
    listing = client.get(reverse("task_list")).content.decode()
    assert task_url(task, "task_set_status") not in listing
    assert "acme-1" in listing


def test_operators_see_edit_controls(client, alice, task):
    client.force_login(alice)
    detail = client.get(task_url(task)).content.decode()
    for name in ("task_set_status", "task_set_priority", "task_set_result", "task_set_metadata", "task_stop"):
        assert task_url(task, name) in detail
    listing = client.get(reverse("task_list")).content.decode()
    assert task_url(task, "task_set_status") in listing
