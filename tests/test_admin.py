"""Django admin: query counts at scale, every save through the services, actions, escaping."""

import re

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tasks_app import services
from tasks_app.models import ApiToken, Face, Task, TaskEvent, hash_token

XSS = '<script>alert("x")</script>'


@pytest.fixture
def task(acme, agent):
    task, _ = services.task_create(
        organization=acme, actor=services.Actor.system("test"), id="t-1", title="Refund", agent=agent
    )
    return task


def make_tasks(org, agent, count: int, start: int = 0) -> None:
    # Test data volume only: bulk rows, not the write path under test.
    Task.objects.bulk_create(
        [Task(public_id=f"bulk-{n:05d}", organization=org, agent=agent, title=f"Bulk {n}") for n in range(start, count)]
    )


def count_queries(client, url: str) -> int:
    client.get(url)  # warm per-process caches (content types) so both counts compare like for like
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def form_data(client, url: str) -> dict:
    """The change form's current values, as a browser would post them back."""
    form = client.get(url).context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        data[name] = "" if value is None else value
    data["_save"] = "Save"
    return data


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_changelist_query_count_does_not_grow_with_rows(admin_client, acme, agent):
    url = reverse("admin:tasks_app_task_changelist")
    make_tasks(acme, agent, 10)
    few = count_queries(admin_client, url)
    make_tasks(acme, agent, 1000, start=10)
    many = count_queries(admin_client, url)
    assert many == few
    assert few <= 12
    response = admin_client.get(url)
    assert response.context["cl"].result_count == 1000
    assert b"Bulk 999" in response.content


def test_change_page_query_count_does_not_grow_with_rows(admin_client, acme, agent, task):
    url = reverse("admin:tasks_app_task_change", args=[task.pk])
    make_tasks(acme, agent, 10)
    few = count_queries(admin_client, url)
    make_tasks(acme, agent, 1000, start=10)
    many = count_queries(admin_client, url)
    assert many == few
    assert few <= 12


def test_change_page_shows_the_event_history(admin_client, task, alice):
    services.task_update(task=task, actor=services.Actor.for_user(alice), status="executing")
    response = admin_client.get(reverse("admin:tasks_app_task_change", args=[task.pk]))
    html = response.content.decode()
    assert 'id="task-event-history"' in html
    assert "task.created" in html and "task.updated" in html
    assert "alice (Staff user)" in html


def test_an_admin_edit_goes_through_the_services(admin_client, admin_user, task, django_capture_on_commit_callbacks):
    url = reverse("admin:tasks_app_task_change", args=[task.pk])
    data = form_data(admin_client, url)
    data.update(status="executing", priority="80", metadata='{"note": "checked"}')
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert len(callbacks) == 1  # published on commit like any other change
    task.refresh_from_db()
    assert (task.status, task.priority, task.metadata, task.version) == ("executing", 80, {"note": "checked"}, 2)
    assert task.started_at is not None
    event = TaskEvent.objects.filter(task=task).order_by("-id").first()
    assert set(event.changes) == {"status", "priority", "metadata", "started_at"}
    assert (event.actor_user, event.actor_label, event.face) == (admin_user, admin_user.username, Face.ADMIN)
    assert event.task_version == 2


def test_an_unchanged_save_writes_no_event(admin_client, task):
    url = reverse("admin:tasks_app_task_change", args=[task.pk])
    response = admin_client.post(url, form_data(admin_client, url))
    assert response.status_code == 302
    assert TaskEvent.objects.filter(task=task).count() == 1


def test_a_bad_edit_shows_an_error_and_changes_nothing(admin_client, task):
    url = reverse("admin:tasks_app_task_change", args=[task.pk])
    data = form_data(admin_client, url)
    data.update(priority="101", title="Changed")
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "Must be from 0 to 100 (got 101)." in response.context["adminform"].form.errors["priority"]
    task.refresh_from_db()
    assert (task.priority, task.title, task.version) == (50, "Refund", 1)
    assert TaskEvent.objects.filter(task=task).count() == 1


def test_a_refused_transition_shows_the_allowed_statuses(admin_client, task):
    services.task_update(task=task, actor=services.Actor.system("test"), status="completed")
    url = reverse("admin:tasks_app_task_change", args=[task.pk])
    data = form_data(admin_client, url)
    data["status"] = "pending"
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "retry" in " ".join(response.context["adminform"].form.errors["status"])
    task.refresh_from_db()
    assert task.status == "completed"


def test_a_stale_form_is_a_version_conflict(admin_client, task):
    url = reverse("admin:tasks_app_task_change", args=[task.pk])
    data = form_data(admin_client, url)
    services.task_update(task=task, actor=services.Actor.system("agent-7"), priority=60)
    data["title"] = "Mine"
    response = admin_client.post(url, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert "agent-7" in errors[0] and "version 2" in errors[0]
    task.refresh_from_db()
    assert (task.title, task.priority) == ("Refund", 60)


def test_adding_a_task_goes_through_task_create(admin_client, admin_user, acme, agent):
    url = reverse("admin:tasks_app_task_add")
    data = form_data(admin_client, url)
    data.update(
        public_id="admin-made", organization=str(acme.pk), agent=str(agent.pk), title="From admin", priority="90"
    )
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    task = Task.objects.get(organization=acme, public_id="admin-made")
    assert (task.title, task.priority, task.agent, task.organization) == ("From admin", 90, agent, acme)
    event = TaskEvent.objects.get(task=task)
    assert (event.type, event.actor_user, event.face) == ("task.created", admin_user, "admin")


def test_adding_with_a_taken_id_is_an_error(admin_client, acme, task):
    url = reverse("admin:tasks_app_task_add")
    data = form_data(admin_client, url)
    data.update(public_id=task.public_id, organization=str(acme.pk), title="Copy")
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert Task.objects.get(pk=task.pk).title == "Refund"
    assert Task.objects.filter(public_id=task.public_id).count() == 1


def test_stop_and_retry_actions(admin_client, admin_user, acme, task):
    done, _ = services.task_create(organization=acme, actor=services.Actor.system("t"), id="t-2", status="completed")
    url = reverse("admin:tasks_app_task_changelist")
    response = admin_client.post(url, {"action": "stop_tasks", "_selected_action": [task.pk, done.pk]}, follow=True)
    msgs = messages_of(response) or [str(m) for m in response.context["messages"]]
    assert any("Stopped 1 task." in m for m in msgs)
    assert any("1 task not changed: t-2: The task is already completed." in m for m in msgs)
    task.refresh_from_db()
    assert task.status == "stopped"
    assert TaskEvent.objects.filter(task=task).last().actor_user == admin_user

    response = admin_client.post(url, {"action": "retry_tasks", "_selected_action": [task.pk, done.pk]}, follow=True)
    msgs = [str(m) for m in response.context["messages"]]
    assert any("Retried 2 tasks." in m for m in msgs)
    assert set(Task.objects.values_list("status", flat=True)) == {"pending"}


def test_tasks_are_not_hard_deleted(admin_client, task):
    response = admin_client.get(reverse("admin:tasks_app_task_delete", args=[task.pk]))
    assert response.status_code == 403
    url = reverse("admin:tasks_app_task_changelist")
    admin_client.post(url, {"action": "soft_delete_tasks", "_selected_action": [task.pk]})
    task.refresh_from_db()
    assert task.deleted_at is not None
    assert TaskEvent.objects.filter(task=task).last().type == "task.deleted"


def test_a_script_in_a_title_is_escaped(admin_client, acme, task):
    services.task_update(task=task, actor=services.Actor.system(XSS), title=XSS)
    for url in (
        reverse("admin:tasks_app_task_changelist"),
        reverse("admin:tasks_app_task_change", args=[task.pk]),
        reverse("admin:tasks_app_taskevent_changelist"),
    ):
        html = admin_client.get(url).content.decode()
        assert XSS not in html
        assert "&lt;script&gt;alert(" in html


def test_api_token_created_in_admin_is_shown_once_and_stored_hashed(admin_client, admin_user, acme):
    response = admin_client.post(
        reverse("admin:tasks_app_apitoken_add"), {"organization": acme.pk, "name": "ci"}, follow=True
    )
    msgs = [str(m) for m in response.context["messages"]]
    raw = re.search(r"(td_[A-Za-z0-9_-]+)", " ".join(msgs)).group(1)
    token = ApiToken.objects.get()
    assert token.token_hash == hash_token(raw) and token.created_by == admin_user
    assert services.api_token_authenticate(raw) == token
    page = admin_client.get(reverse("admin:tasks_app_apitoken_change", args=[token.pk])).content.decode()
    assert raw not in page and token.token_hash not in page

    admin_client.post(
        reverse("admin:tasks_app_apitoken_changelist"), {"action": "revoke_tokens", "_selected_action": [token.pk]}
    )
    assert services.api_token_authenticate(raw) is None


@pytest.mark.parametrize("model", ["taskevent", "activityentry", "hitlrequest"])
def test_records_are_read_only(admin_client, task, model):
    assert admin_client.get(reverse(f"admin:tasks_app_{model}_changelist")).status_code == 200
    assert admin_client.get(reverse(f"admin:tasks_app_{model}_add")).status_code == 403
    event = TaskEvent.objects.get(task=task)
    if model == "taskevent":
        page = admin_client.get(reverse("admin:tasks_app_taskevent_change", args=[event.pk]))
        assert page.status_code == 200 and b'name="_save"' not in page.content


def test_records_are_found_by_their_tasks_public_id(admin_client, acme, globex, task):
    # Staff paste the id agents and URLs use; the internal row id is never shown to them.
    other, _ = services.task_create(organization=globex, actor=services.Actor.system("test"), id="t-9")
    services.append_activity(task=task, actor=services.Actor.system("test"), entries=[{"content": "hi"}])
    services.hitl_request(task=task, actor=services.Actor.system("test"), question="Go?")
    for model, expected in (("taskevent", 3), ("activityentry", 1), ("hitlrequest", 1)):
        cl = admin_client.get(reverse(f"admin:tasks_app_{model}_changelist") + "?q=t-1").context["cl"]
        assert cl.result_count == expected, model
        assert {row.task_id for row in cl.result_list} == {task.pk}, model
    cl = admin_client.get(reverse("admin:tasks_app_taskevent_changelist") + "?q=t-9").context["cl"]
    assert [row.task_id for row in cl.result_list] == [other.pk]


def test_organization_page_has_memberships_inline(admin_client, acme, alice):
    page = admin_client.get(reverse("admin:tasks_app_organization_change", args=[acme.pk]))
    assert page.status_code == 200
    assert b"memberships-TOTAL_FORMS" in page.content


def test_staff_without_superuser_cannot_reach_tasks(client, django_user_model, task):
    staff = django_user_model.objects.create_user("staffer", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("admin:tasks_app_task_changelist")).status_code == 403


def test_the_changelist_counts_at_most_a_capped_number_of_rows(admin_client, acme, agent, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tasks_app.admin import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "cap", 5)
    make_tasks(acme, agent, 12)
    with CaptureQueriesContext(connection) as ctx:
        response = admin_client.get(reverse("admin:tasks_app_task_changelist") + "?status__exact=pending")
    assert response.status_code == 200
    counts = [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper() and "tasks_app_task" in q["sql"]]
    assert counts and all("LIMIT 5" in sql for sql in counts), counts


def test_changelist_is_newest_first_and_filters_by_recent_sources(admin_client, acme, agent):
    Task.objects.bulk_create(
        [
            Task(public_id=f"src-{n}", organization=acme, agent=agent, title=f"Source {n}", source=source)
            for n, source in enumerate(["email", "chat", "email", ""])
        ]
    )
    response = admin_client.get("/admin/tasks_app/task/")
    assert response.status_code == 200
    shown = [task.public_id for task in response.context["cl"].result_list]
    assert shown[:4] == ["src-3", "src-2", "src-1", "src-0"]  # newest row first
    choices = {c["display"] for spec in response.context["cl"].filter_specs if spec.title == "source"
               for c in spec.choices(response.context["cl"])}  # fmt: skip
    assert {"email", "chat", "(none)"} <= choices
    filtered = admin_client.get("/admin/tasks_app/task/?source=chat")
    assert [t.public_id for t in filtered.context["cl"].result_list] == ["src-1"]


def test_changelist_names_each_agent_with_its_organization_and_shortens_titles(admin_client, acme, globex, agent):
    from tasks_app.models import Agent

    twin = Agent.objects.create(organization=globex, name=agent.name)
    Task.objects.create(public_id="long", organization=acme, agent=agent, title="x" * 200)
    Task.objects.create(public_id="twin", organization=globex, agent=twin, title="twin")
    response = admin_client.get("/admin/tasks_app/task/")
    cl = response.context["cl"]
    agent_spec = next(spec for spec in cl.filter_specs if spec.title == "agent")
    labels = {c["display"] for c in agent_spec.choices(cl)}
    assert {f"{agent.name} · acme", f"{agent.name} · globex"} <= labels
    body = response.content.decode()
    # One line each: the start of a long title or id, the whole on hover; the organization's slug.
    assert f'<td class="field-short_title"><span title="{"x" * 200}">{"x" * 59}…</span></td>' in body
    assert '<td class="field-org">acme</td>' in body and '<td class="field-org">globex</td>' in body
    long_id = Task.objects.create(public_id="c232cf94-cf48-4132-b531-5f40ff85b161", organization=acme, title="u")
    body = admin_client.get("/admin/tasks_app/task/").content.decode()
    assert f'<span title="{long_id.public_id}">c232cf94-cf48-413…</span>' in body


def test_the_admin_index_names_every_record_properly(admin_client):
    body = admin_client.get("/admin/").content.decode()
    for name in ("Activity entries", "API tokens", "HITL requests", "Task events", "Workers"):
        assert f">{name}</a>" in body, name
    for wrong in ("Activity entrys", "Api tokens", "Hitl requests"):
        assert wrong not in body


@pytest.mark.parametrize("url", ["taskevent", "activityentry", "hitlrequest"])
def test_records_list_newest_first_with_their_task_by_organization_and_id(admin_client, acme, task, url):
    services.task_update(task=task, actor=services.Actor.system(), status="executing")
    services.append_activity(task=task, actor=services.Actor.system(), entries=[{"content": "one"}, {"content": "two"}])
    services.hitl_request(task=task, actor=services.Actor.system(), question="First?")
    services.hitl_decide(hitl=task.hitl_requests.get(), actor=services.Actor.system(), approve=True)
    services.hitl_request(task=task, actor=services.Actor.system(), question="Second?")
    response = admin_client.get(f"/admin/tasks_app/{url}/")
    ids = [row.pk for row in response.context["cl"].result_list]
    assert len(ids) >= 2 and ids == sorted(ids, reverse=True)
    body = response.content.decode()
    link = f'<a href="/admin/tasks_app/task/{task.pk}/change/">acme / {task.public_id}</a>'
    assert link in body
    assert f'<td class="field-task_id">{task.pk}</td>' not in body  # no internal row id
