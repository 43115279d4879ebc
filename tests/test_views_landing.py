"""Who lands where: a superuser sees every organization; someone without one gets an explanation."""

import pytest

from tasks_app import services


@pytest.fixture
def tasks(acme, globex, system_actor):
    services.task_create(organization=acme, actor=system_actor, id="a-1", title="Acme task")
    services.task_create(organization=globex, actor=system_actor, id="g-1", title="Globex task")


def test_it_shows_a_superuser_every_organization(client, django_user_model, tasks):
    admin = django_user_model.objects.create_superuser(username="admin", password="x", email="a@example.com")
    client.force_login(admin)
    html = client.get("/tasks/").content.decode()
    assert "Acme task" in html and "Globex task" in html
    assert 'ws-connect="/ws/tasks/' in html
    assert 'href="/admin/"' in html and 'href="/api/docs"' in html


@pytest.mark.parametrize("path", ["/tasks/", "/approvals/"])
def test_it_explains_the_desk_to_someone_without_an_organization(client, django_user_model, tasks, path):
    dora = django_user_model.objects.create_user(username="dora", password="x", is_staff=True)
    client.force_login(dora)
    response = client.get(path)
    html = response.content.decode()
    assert response.status_code == 200
    assert "You are not a member of any organization yet" in html
    assert "ws-connect" not in html and 'id="live-indicator"' not in html
    assert "Acme task" not in html and "Globex task" not in html
    assert html.count('href="/admin/"') == 2  # top bar and the page


def test_it_links_the_api_docs_but_not_the_admin_for_non_staff(client, alice):
    client.force_login(alice)
    html = client.get("/tasks/").content.decode()
    assert 'href="/api/docs"' in html and 'href="/admin/"' not in html
