"""Fields from newer clients: the xpander and Agentex faces ignore what they do not know (logged
once per field name, as upstream FastAPI models ignore extras) and still check what they know."""

import json
import logging

import pytest

from tasks_app.api import faces
from tasks_app.models import Task, TaskEvent
from tasks_app.services import Actor, api_token_create, task_create


@pytest.fixture
def raw_token(acme):
    return api_token_create(organization=acme, name="newer-sdk")[1]


@pytest.fixture
def task(acme):
    created, _ = task_create(
        organization=acme, actor=Actor.system("test"), agent="bot", status="executing", name="ax-1", title="t"
    )
    return created


@pytest.fixture(autouse=True)
def _forget_logged():
    faces._unknown_logged.clear()
    yield
    faces._unknown_logged.clear()


def _send(client, method, url, raw_token, body):
    return getattr(client, method)(
        url, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw_token}"
    )


def test_xpander_ignores_a_newer_sdks_fields_and_logs_each_once(client, raw_token, task, caplog):
    url = f"/xpander/agent-execution/{task.public_id}/update"
    caplog.set_level(logging.INFO, logger="tasks_app.api.faces")
    for n in range(2):
        body = {"result": f"r{n}", "future_field": {"x": n}, "input": {"text": "hi", "voice_note": "?"}}
        response = _send(client, "patch", url, raw_token, body)
        assert response.status_code == 200, response.content
    assert Task.objects.get(pk=task.pk).result == "r1"
    logged = [r.getMessage() for r in caplog.records if "ignoring unknown" in r.getMessage()]
    assert len(logged) == 2 and any("'future_field'" in m for m in logged) and any("'voice_note'" in m for m in logged)

    created = _send(client, "post", "/xpander/agent-execution/bot", raw_token, {"input": {"text": "x"}, "lane": 3})
    assert created.status_code == 201
    strict = _send(client, "patch", url, raw_token, {"status": "done", "future_field": 1})
    assert strict.status_code == 422 and strict.json()["detail"][0]["loc"] == ["body", "status"]


def test_agentex_ignores_unknown_fields_and_query_parameters(client, raw_token, task, caplog):
    caplog.set_level(logging.INFO, logger="tasks_app.api.faces")
    url = f"/agentex/tasks/{task.public_id}"
    response = _send(client, "put", url, raw_token, {"task_metadata": {"a": 1}, "status": "COMPLETED"})
    assert response.status_code == 200 and response.json()["task_metadata"] == {"a": 1}
    assert Task.objects.get(pk=task.pk).status == "executing"  # status is not an update field upstream
    listed = client.get("/agentex/tasks", {"colour": "red"}, HTTP_AUTHORIZATION=f"Bearer {raw_token}")
    assert listed.status_code == 200 and [t["id"] for t in listed.json()] == [task.public_id]
    rpc = {"method": "task/create", "params": {"name": "b", "owner": "me"}, "trace_id": "t"}
    assert _send(client, "post", "/agentex/agents/name/bot/rpc", raw_token, rpc).status_code == 200
    cancel = _send(client, "post", f"{url}/cancel", raw_token, {"reason": "x", "force": True})
    assert cancel.status_code == 200 and cancel.json()["status_reason"] == "x"
    strict = _send(client, "put", url, raw_token, {"merge_params": [1], "also_new": True})
    assert strict.status_code == 422 and strict.json()["detail"][0]["loc"] == ["body", "merge_params"]
    messages = [r.getMessage() for r in caplog.records if "ignoring unknown" in r.getMessage()]
    names = sorted(m.split("'")[1] for m in messages)
    assert names == ["also_new", "colour", "force", "owner", "status", "trace_id"]
    assert TaskEvent.objects.filter(task=task).count() == 3  # create, PUT, cancel


def test_random_unknown_names_are_ignored_but_their_log_is_bounded(client, raw_token, task, caplog, monkeypatch):
    monkeypatch.setattr(faces, "UNKNOWN_LOGGED_MAX", 5)
    with caplog.at_level(logging.INFO, logger="tasks_app.api.faces"):
        for n in range(4):
            body = {"status": "executing", **{f"junk_{n}_{i}": i for i in range(3)}}
            response = _send(client, "patch", f"/xpander/agent-execution/{task.public_id}/update", raw_token, body)
            assert response.status_code == 200, response.content
    assert len(faces._unknown_logged) == 5  # twelve names sent, five remembered
    assert len([r for r in caplog.records if "ignoring unknown" in r.getMessage()]) == 5
