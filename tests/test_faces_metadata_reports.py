"""Agentex and the JSON-RPC queue have no fields for a task's source or tokens: an agent reports them in
the face's metadata (`source`, `usage`), and they become the task's source and tokens on the desk."""

import json

import pytest

from tasks_app.api import ratelimit
from tasks_app.api.faces import reported_in_metadata
from tasks_app.models import Task, TaskEvent
from tasks_app.services import api_token_create


@pytest.fixture
def raw_token(acme):
    token, raw = api_token_create(organization=acme, name="agent")
    ratelimit.forget(token)  # rate counts live in Redis, which outlives the test database
    return raw


def _send(client, method, url, raw_token, body):
    return getattr(client, method)(
        url, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw_token}"
    )


def _rpc(client, raw_token, method, params):
    body = {"jsonrpc": "2.0", "id": "1", "method": method, "params": params}
    answer = _send(client, "post", "/rpc", raw_token, body).json()
    assert "error" not in answer, answer
    return answer["result"]


def _agentex_create(client, raw_token, metadata):
    params = {"name": "Compare plans", "task_metadata": metadata}
    body = {"jsonrpc": "2.0", "id": "1", "method": "task/create", "params": params}
    answer = _send(client, "post", "/agentex/agents/name/research-agent/rpc", raw_token, body).json()
    return Task.objects.get(public_id=answer["result"]["id"])


def test_agentex_task_create_takes_the_source_and_tokens_from_task_metadata(client, raw_token):
    metadata = {"run": "r-1", "source": "slack", "usage": {"prompt_tokens": 1200, "completion_tokens": 340}}
    task = _agentex_create(client, raw_token, metadata)
    assert (task.source, task.prompt_tokens, task.completion_tokens) == ("slack", 1200, 340)
    assert task.metadata == metadata  # stored as sent: a client reads back what it wrote
    created = TaskEvent.objects.get(task=task, type="task.created")
    assert created.after["source"] == "slack"


def test_agentex_put_with_task_metadata_reports_new_totals_and_without_usage_keeps_them(client, raw_token):
    task = _agentex_create(client, raw_token, {"source": "email"})
    assert (task.source, task.prompt_tokens) == ("email", 0)
    usage = {"prompt_tokens": 2500, "completion_tokens": 610}
    body = {"task_metadata": {"source": "email", "usage": usage}}
    response = _send(client, "put", f"/agentex/tasks/{task.public_id}", raw_token, body)
    assert response.status_code == 200
    assert response.json()["task_metadata"]["usage"] == usage
    task.refresh_from_db()
    assert (task.prompt_tokens, task.completion_tokens, task.total_tokens) == (2500, 610, 3110)
    # Metadata replaced by one that says nothing of tokens or source: what was reported stays.
    _send(client, "put", f"/agentex/tasks/{task.public_id}", raw_token, {"task_metadata": {"progress": 90}})
    task.refresh_from_db()
    assert (task.source, task.prompt_tokens, task.completion_tokens) == ("email", 2500, 610)
    assert task.metadata == {"progress": 90}
    metrics = TaskEvent.objects.filter(task=task, type="task.updated", changes__contains=["prompt_tokens"])
    assert metrics.count() == 1  # the token report is an audited change like any other


def test_jsonrpc_task_create_and_update_take_the_source_and_claudes_usage(client, raw_token):
    created = _rpc(client, raw_token, "task.create", {"text": "Triage ticket #4512", "metadata": {"source": "email"}})
    task = Task.objects.get(public_id=created["id"])
    assert (task.source, task.prompt_tokens) == ("email", 0)
    usage = {"input_tokens": 900, "output_tokens": 120}
    updates = {"metadata": {"usage": usage, "stage": "Read"}}
    _rpc(client, raw_token, "task.update", {"id": task.public_id, "updates": updates})
    task.refresh_from_db()
    assert (task.source, task.prompt_tokens, task.completion_tokens) == ("email", 900, 120)
    assert task.metadata == {"source": "email", "usage": usage, "stage": "Read"}  # merged, as seed 002 says
    # The face's event and answer stay ClaudeBench's: no field it has no name for.
    assert _rpc(client, raw_token, "task.list", {"limit": 1})["tasks"][0]["metadata"]["usage"] == usage


@pytest.mark.parametrize(
    "metadata",
    [
        {"usage": {"prompt_tokens": "1200", "completion_tokens": 340}},
        {"usage": {"prompt_tokens": -1, "completion_tokens": 340}},
        {"usage": {"prompt_tokens": True, "completion_tokens": 1}},
        {"usage": {"prompt_tokens": 1200}},
        {"usage": [1200, 340]},
        {"source": ""},
        {"source": 42},
        {"source": "x" * 101},
        {"source": "   "},
    ],
)
def test_metadata_of_another_shape_sets_nothing_and_is_not_refused(client, raw_token, metadata):
    """Upstream stores any metadata: a value that is not a source or token totals is the agent's own."""
    assert reported_in_metadata(metadata) == {}
    task = _agentex_create(client, raw_token, metadata)
    assert (task.source, task.prompt_tokens, task.completion_tokens) == ("", 0, 0)
    created = _rpc(client, raw_token, "task.create", {"text": "Triage", "metadata": metadata})
    task = Task.objects.get(public_id=created["id"])
    assert (task.source, task.prompt_tokens, task.completion_tokens) == ("", 0, 0)


def test_the_desk_lists_what_they_reported(client, raw_token, alice):
    _agentex_create(client, raw_token, {"source": "slack", "usage": {"prompt_tokens": 1500, "completion_tokens": 500}})
    client.force_login(alice)
    page = client.get("/tasks/").content.decode()
    assert 'title="1500 prompt + 500 completion"' in page
    assert '<td class="col-source" data-label="Source">slack</td>' in page
