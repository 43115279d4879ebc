"""Bad input over the xpander and Agentex faces: a 4xx in the face's format, no change, no event."""

import json

import pytest
from django.test import override_settings

from tasks_app.api import ratelimit
from tasks_app.models import ApiToken, Task, TaskEvent, hash_token
from tasks_app.services import Actor, api_token_create, task_create

XP = "/xpander/agent-execution"
AX = "/agentex/tasks"


@pytest.fixture
def raw_token(acme):
    return api_token_create(organization=acme, name="bad-input")[1]


@pytest.fixture
def task(acme):
    created, _ = task_create(
        organization=acme, actor=Actor.system("test"), agent="bot", status="executing", name="ax-1", title="t"
    )
    return created


def _xp(client, method, url, raw_token, body=None, raw=None, **headers):
    data = raw if raw is not None else (json.dumps(body) if body is not None else "")
    return getattr(client, method)(url, data=data, content_type="application/json", HTTP_X_API_KEY=raw_token, **headers)


def _ax(client, method, url, raw_token, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body) if body is not None else "")
    return getattr(client, method)(
        url, data=data, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw_token}"
    )


def _fresh_window(raw_token, face, operation):
    """Forget earlier counts of this token (they live in Redis, which outlives the test database)."""
    ratelimit.forget(ApiToken.objects.get(token_hash=hash_token(raw_token)))


def _unchanged(task):
    fresh = Task.objects.get(pk=task.pk)
    assert (fresh.version, fresh.status, fresh.result, fresh.metadata, fresh.params) == (
        task.version,
        task.status,
        task.result,
        task.metadata,
        task.params,
    )
    assert TaskEvent.objects.filter(task=task).count() == 1  # the create only


def _detail_list(response):
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    assert all({"loc", "msg", "type"} <= set(item) for item in detail)
    return detail


XPANDER_422 = [
    ("wrong type: status", {"status": 5}, ["body", "status"]),
    ("unknown status", {"status": "done"}, ["body", "status"]),
    ("canonical name the face does not use", {"status": "timed_out"}, ["body", "status"]),
    ("wrong type: result", {"result": ["a"]}, ["body", "result"]),
    ("wrong type: payload extension", {"tool_call_payload_extension": "x"}, ["body", "payload_extension"]),
    ("wrong type: tokens", {"tokens": {"prompt_tokens": -1}}, ["body", "prompt_tokens"]),
    ("body not an object", [1, 2], ["body"]),
]


@pytest.mark.parametrize("case,body,loc", XPANDER_422, ids=[c[0] for c in XPANDER_422])
def test_xpander_patch_rejects_bad_input_with_422(client, raw_token, task, case, body, loc):
    response = _xp(client, "patch", f"{XP}/{task.public_id}/update", raw_token, body)
    assert response.status_code == 422, response.content
    assert _detail_list(response)[0]["loc"] == loc
    _unchanged(task)


def test_xpander_refuses_invalid_json_oversized_bodies_stale_versions_and_transitions(client, raw_token, task):
    url = f"{XP}/{task.public_id}/update"
    invalid_json = _xp(client, "patch", url, raw_token, raw="{not json")
    assert invalid_json.status_code == 400 and "Invalid JSON" in invalid_json.json()["detail"]

    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024):
        too_big = _xp(client, "patch", url, raw_token, {"result": "x" * 5000})
    assert too_big.status_code == 413 and too_big.json()["code"] == "too_large"

    stale = _xp(client, "patch", url, raw_token, {"result": "late"}, HTTP_IF_MATCH='"7"')
    assert stale.status_code == 409 and stale.json()["current_version"] == task.version

    bad_if_match = _xp(client, "patch", url, raw_token, {"result": "late"}, HTTP_IF_MATCH="soon")
    assert bad_if_match.status_code == 422

    back_to_pending = _xp(client, "patch", url, raw_token, {"status": "pending"})
    assert back_to_pending.status_code == 200  # executing -> pending is allowed (a worker hands it back)
    task.refresh_from_db()
    done = _xp(client, "patch", url, raw_token, {"status": "completed"})
    assert done.status_code == 200
    refused = _xp(client, "patch", url, raw_token, {"status": "executing"})
    assert refused.status_code == 409
    body = refused.json()
    assert body["code"] == "transition" and body["current_status"] == "completed" and body["allowed"] == []
    assert Task.objects.get(pk=task.pk).status == "completed"
    assert TaskEvent.objects.filter(task=task).count() == 3


def test_xpander_create_and_report_reject_bad_input(client, raw_token, acme):
    cases = [
        (f"{XP}/bot", {"input": "text"}),  # wrong type
        (f"{XP}/bot", {"input": {"text": 5}}),
        (f"{XP}/bot", {"id": "bad id with spaces", "input": {"text": "x"}}),
        (f"{XP}/bot/report_task", {"is_success": "yes"}),
        (f"{XP}/bot/report_task", {"tokens": {"prompt_tokens": "many"}}),
        ("/xpander/agents-metrics/bot/execution", {"llm_tokens": {}}),  # no execution_id
    ]
    for url, body in cases:
        response = _xp(client, "post", url, raw_token, body)
        assert response.status_code == 422, (url, body, response.content)
        _detail_list(response)
    assert not Task.objects.exists() and not TaskEvent.objects.exists()


def test_xpander_unknown_task_auth_and_rate_limit(client, raw_token, task):
    assert _xp(client, "get", f"{XP}/nope/status", raw_token).status_code == 404
    assert _xp(client, "delete", f"{XP}/nope", raw_token).status_code == 404
    no_key = client.get(f"{XP}/{task.public_id}/status")
    assert no_key.status_code == 401 and no_key.json() == {"detail": "Unauthorized"}
    _fresh_window(raw_token, "xpander", "tasks.update")
    with override_settings(RATE_LIMITS={"xpander.tasks.update": (2, 60), "*": (600, 60)}):
        codes = [_xp(client, "patch", f"{XP}/{task.public_id}/update", raw_token, {"title": f"t{i}"}) for i in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert int(codes[-1]["Retry-After"]) >= 1
    assert Task.objects.get(pk=task.pk).title == "t1"


AGENTEX_422 = [
    ("metadata not an object", {"task_metadata": "x"}, ["body", "task_metadata"]),
    ("params not an object", {"merge_params": [1]}, ["body", "merge_params"]),
    ("body not an object", "text", ["body"]),
]


@pytest.mark.parametrize("case,body,loc", AGENTEX_422, ids=[c[0] for c in AGENTEX_422])
def test_agentex_put_rejects_bad_input_with_422(client, raw_token, task, case, body, loc):
    response = _ax(client, "put", f"{AX}/{task.public_id}", raw_token, body)
    assert response.status_code == 422, response.content
    assert _detail_list(response)[0]["loc"] == loc
    _unchanged(task)


def test_agentex_refuses_invalid_json_oversized_bodies_and_transitions(client, raw_token, task):
    invalid_json = _ax(client, "put", f"{AX}/{task.public_id}", raw_token, raw="{nope")
    assert invalid_json.status_code == 400 and "Invalid JSON" in invalid_json.json()["message"]
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024):
        too_big = _ax(client, "put", f"{AX}/{task.public_id}", raw_token, {"task_metadata": {"x": "y" * 5000}})
    assert too_big.status_code == 413
    reason = _ax(client, "post", f"{AX}/{task.public_id}/cancel", raw_token, {"reason": 5})
    assert reason.status_code == 422 and _detail_list(reason)[0]["loc"] == ["body", "reason"]
    assert _ax(client, "post", f"{AX}/{task.public_id}/explode", raw_token, {}).status_code == 404
    bad_list = [
        client.get(AX, {"status": "DONE"}, HTTP_AUTHORIZATION=f"Bearer {raw_token}"),
        client.get(AX, {"limit": "0"}, HTTP_AUTHORIZATION=f"Bearer {raw_token}"),
        client.get(AX, {"order_by": "secret"}, HTTP_AUTHORIZATION=f"Bearer {raw_token}"),
        client.get(AX, {"task_metadata": "[1]"}, HTTP_AUTHORIZATION=f"Bearer {raw_token}"),
    ]
    assert [r.status_code for r in bad_list] == [422] * 4
    _unchanged(task)

    assert _ax(client, "post", f"{AX}/{task.public_id}/complete", raw_token, {}).status_code == 200
    refused = _ax(client, "post", f"{AX}/{task.public_id}/interrupt", raw_token, {})
    assert refused.status_code == 400 and refused["x-should-retry"] == "false"  # upstream's ClientError
    assert refused.json()["data"]["current_status"] == "COMPLETED"
    assert Task.objects.get(pk=task.pk).status == "completed"
    assert TaskEvent.objects.filter(task=task).count() == 2


def test_agentex_rpc_rejects_bad_envelopes(client, raw_token, acme):
    url = "/agentex/agents/name/bot/rpc"
    cases = [
        {"method": "task/explode", "params": {}},
        {"method": "task/create"},
        {"method": "task/create", "params": {"name": 5}},
        {"method": "task/create", "params": {"params": "x"}},
        {"method": "task/cancel", "params": {}},
        {"method": "task/create", "params": {}, "jsonrpc": "1.0"},
    ]
    for body in cases:
        response = _ax(client, "post", url, raw_token, body)
        assert response.status_code == 422, (body, response.content)
        _detail_list(response)
    assert (
        _ax(
            client, "post", "/agentex/agents/999999/rpc", raw_token, {"method": "task/create", "params": {}}
        ).status_code
        == 404
    )
    assert not Task.objects.exists() and not TaskEvent.objects.exists()


def test_agentex_auth_and_rate_limit(client, raw_token, task):
    assert client.get(f"{AX}/{task.public_id}").status_code == 401
    assert client.get(f"{AX}/{task.public_id}", HTTP_AUTHORIZATION="Bearer td_wrong").status_code == 401
    _fresh_window(raw_token, "agentex", "tasks.update")
    with override_settings(RATE_LIMITS={"agentex.tasks.update": (1, 60), "*": (600, 60)}):
        ok = _ax(client, "put", f"{AX}/{task.public_id}", raw_token, {"merge_params": {"a": 1}})
        limited = _ax(client, "put", f"{AX}/{task.public_id}", raw_token, {"merge_params": {"a": 2}})
    assert ok.status_code == 200 and limited.status_code == 429 and int(limited["Retry-After"]) >= 1
    assert Task.objects.get(pk=task.pk).params == {"a": 1}
