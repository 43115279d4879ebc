"""No input answers 5xx: NUL, lone surrogates, NaN/Infinity/1e999, deep nesting, out-of-range UTC
offsets, forged cursors and Unicode digits, over every face and the dashboard. Each is refused
with a 4xx in the face's own shape (or is a 404), and nothing changes."""

import base64
import json
import math
from datetime import UTC, datetime

import pytest
from django.db import OperationalError
from django.test import Client

from tasks_app import selectors, services
from tasks_app.api import ratelimit
from tasks_app.models import Task, TaskEvent
from tasks_app.services import Actor, InvalidInput, api_token_create, hitl_request, task_create
from tasks_app.services.validation import (
    BODY_MAX_DEPTH,
    JsonRefused,
    ascii_int,
    clean_datetime,
    json_problem_at,
    parse_json,
)

DEEP_LIST = "[" * 3000 + "]" * 3000
DEEP_OBJECT = '{"a":' * 900 + "1" + "}" * 900
# Raw JSON fragments a careless or hostile client sends (not what json.dumps would write).
BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999"]
BAD_STRINGS = ['"\\ud800"', '"a\\u0000b"']


def cursor(*parts) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


FORGED_CURSORS = [
    cursor("-created", {"t": "2024-01-01T00:00:00-17:12"}, 1),
    cursor("-created", {"t": "0001-01-01T00:00:00+05:00"}, 1),
    cursor("-created", {"t": "9999-12-31T23:59:59-05:00"}, 1),
    cursor("-created", 5, 1),
    cursor("-created", {"t": "2024-01-01T00:00:00+00:00"}, 2**70),
]
# Cursors of the text sorts whose value PostgreSQL cannot compare (a lone surrogate, a NUL).
TEXT_CURSORS = [
    (sort, cursor(sort, value, 1)) for sort in ("title", "-title", "status") for value in ("\ud800", "a\x00")
]


@pytest.fixture
def task(acme):
    created, _ = task_create(
        organization=acme, actor=Actor.system(), id="t1", agent="bot", name="n1", title="x", status="executing"
    )
    return created


@pytest.fixture
def auth(acme):
    token, raw = api_token_create(organization=acme, name="hardening")
    ratelimit.forget(token)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


@pytest.fixture
def client_500():
    return Client(raise_request_exception=False)


def _state(task):
    fresh = Task.objects.get(pk=task.pk)
    return (fresh.version, fresh.status, fresh.title, fresh.metadata, fresh.params, fresh.payload_extension,
            fresh.duration, TaskEvent.objects.count(), Task.objects.count())  # fmt: skip


def _send(client, method, url, body, **headers):
    data = "" if body is None else body
    return getattr(client, method)(url, data=data, content_type="application/json", **headers)


def _assert_refused(response, *, api=True):
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    if api:
        assert response["Content-Type"].startswith("application/json"), response.content[:200]
        body = response.json()
        # FastAPI's `detail`, JSON-RPC's `error`, or Agentex's `{message, code, data}`.
        assert "detail" in body or "error" in body or {"message", "code", "data"} <= set(body)


def _rpc(method, params):
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})


# --- NUL and Unicode digits in paths and queries --------------------------------------------

GET_URLS = [
    "/api/v1/tasks/a%00b",
    "/api/v1/tasks/a%00b/activity",
    "/api/v1/tasks/a%00b/hitl",
    "/api/v1/tasks?q=%00",
    "/api/v1/tasks?source=%00",
    "/api/v1/tasks?agent=%00",
    "/api/v1/tasks?after=%00",
    "/api/v1/tasks/t1/activity?after=%C2%B2",
    "/xpander/agent-execution/a%00b/status",
    "/xpander/agent-execution/executions/history/a%00b",
    "/xpander/agent-execution/executions/history/user/a%00b",
    "/xpander/agent-execution/executions/history/bot?user_id=%00",
    "/xpander/agent-execution/executions/history/bot?parent_task_id=%00",
    "/xpander/agent-execution/executions/history/bot?internal_status=%00&triggering_agent_id=%00",
    "/xpander/agent-execution/executions/history/bot?limit=%C2%B2",
    "/xpander/activity/bot/a%00b",
    "/xpander/a%00/agent-execution/t1/status",
    "/agentex/tasks/a%00b",
    "/agentex/tasks/name/a%00b",
    "/agentex/tasks?agent_name=%00",
    "/agentex/tasks?limit=%C2%B2",
    "/agentex/tasks?agent_id=%C2%B2",
    "/agentex/tasks?page_number=%C2%B2",
]
GET_URLS += [
    "/agentex/tasks?task_metadata=" + value
    for value in ('{"a":"\\u0000"}', '{"a":NaN}', '{"a":1e999}', '{"a":Infinity}', "[" * 3000, DEEP_OBJECT)
]
GET_URLS += [
    "/api/v1/tasks?updated_after=2024-01-01T00:00:00-17:12",
    "/api/v1/tasks?updated_before=0001-01-01T00:00:00%2B01:00",
    "/api/v1/tasks?updated_after=9999-12-31T23:59:59-01:00",
]
GET_URLS += [f"/api/v1/tasks?{side}={c}" for c in FORGED_CURSORS for side in ("after", "before")]
GET_URLS += [f"/api/v1/tasks?sort={sort}&{side}={c}" for sort, c in TEXT_CURSORS for side in ("after", "before")]


@pytest.mark.parametrize("url", GET_URLS)
def test_api_reads_refuse_hostile_paths_and_queries(client_500, auth, task, url):
    _assert_refused(client_500.get(url, **auth))


WRITE_PATHS = [
    ("patch", "/api/v1/tasks/a%00b"),
    ("post", "/api/v1/tasks/a%00b/stop"),
    ("post", "/api/v1/tasks/a%00b/retry"),
    ("post", "/api/v1/tasks/a%00b/metrics"),
    ("post", "/api/v1/tasks/a%00b/hitl/decision"),
    ("patch", "/xpander/agent-execution/a%00b/update"),
    ("delete", "/xpander/agent-execution/a%00b"),
    ("post", "/xpander/agent-execution/a%00b"),
    ("post", "/xpander/agent-execution/a%00b/report_task"),
    ("post", "/xpander/agents-metrics/a%00b/execution"),
    ("put", "/agentex/tasks/a%00b"),
    ("put", "/agentex/tasks/name/a%00b"),
    ("delete", "/agentex/tasks/name/a%00b"),
    ("post", "/agentex/tasks/a%00b/cancel"),
    ("post", "/agentex/agents/name/a%00b/rpc"),
    ("post", "/agentex/agents/%C2%B2/rpc"),
]


@pytest.mark.parametrize("method,url", WRITE_PATHS)
def test_api_writes_refuse_hostile_paths(client_500, auth, task, method, url):
    before = _state(task)
    _assert_refused(_send(client_500, method, url, '{"method": "task/create", "params": {}}', **auth))
    assert _state(task) == before


def test_unicode_digits_in_if_match_are_a_422(client_500, auth, task):
    for url in ("/xpander/agent-execution/t1/update", "/api/v1/tasks/t1"):
        response = _send(client_500, "patch", url, '{"title": "y"}', HTTP_IF_MATCH='"²"', **auth)
        assert response.status_code == 422, response.content
        assert Task.objects.get(pk=task.pk).title == "x"


# --- Hostile values in bodies ---------------------------------------------------------------


def _number_bodies(n):
    return [
        ("patch", "/api/v1/tasks/t1", f'{{"metadata": {{"x": {n}}}}}'),
        ("patch", "/api/v1/tasks/t1", f'{{"duration": {n}}}'),
        ("patch", "/api/v1/tasks/t1", f'{{"params": {{"x": [{n}]}}}}'),
        ("post", "/api/v1/tasks/t1/metrics", f'{{"duration": {n}}}'),
        ("post", "/api/v1/tasks/t1/activity", f'{{"tool_arguments": {{"x": {n}}}}}'),
        ("post", "/api/v1/tasks", f'{{"payload_extension": {{"x": {n}}}}}'),
        ("post", "/api/v1/tasks/t1/hitl", f'{{"question": "q", "payload": {{"x": {n}}}}}'),
        ("patch", "/xpander/agent-execution/t1/update", f'{{"payload_extension": {{"x": {n}}}}}'),
        ("patch", "/xpander/agent-execution/t1/update", f'{{"duration": {n}}}'),
        ("patch", "/xpander/agent-execution/t1/update", f'{{"tokens": {{"prompt_tokens": {n}}}}}'),
        ("post", "/xpander/agent-execution/bot/report_task", f'{{"duration": {n}}}'),
        ("post", "/xpander/agent-execution/bot/report_task", f'{{"llm_response": {{"x": {n}}}}}'),
        ("post", "/xpander/agents-metrics/bot/execution",
         f'{{"execution_id": "t1", "llm_tokens": {{"worker": {{"prompt_tokens": {n}}}}}}}'),
        ("put", "/agentex/tasks/t1", f'{{"task_metadata": {{"x": {n}}}}}'),
        ("put", "/agentex/tasks/t1", f'{{"merge_params": {{"x": {n}}}}}'),
        ("post", "/agentex/agents/name/bot/rpc", f'{{"method": "task/create", "params": {{"params": {{"x": {n}}}}}}}'),
        ("post", "/rpc", _rpc("task.update", {"id": "t1", "updates": {"metadata": {"x": "@"}}}).replace('"@"', n)),
        ("post", "/rpc", _rpc("task.complete", {"id": "t1", "result": {"x": "@"}}).replace('"@"', n)),
        ("post", "/rpc", _rpc("task.create", {"text": "t", "priority": "@"}).replace('"@"', n)),
        ("post", "/rpc", f'{{"jsonrpc": "2.0", "id": {n}, "method": "task.list"}}'),
    ]  # fmt: skip


def _string_bodies(s):
    return [
        ("patch", "/api/v1/tasks/t1", f'{{"title": {s}}}'),
        ("patch", "/api/v1/tasks/t1", f'{{"metadata": {{{s}: 1}}}}'),
        ("post", "/api/v1/tasks", f'{{"agent": {s}}}'),
        ("post", "/api/v1/tasks/t1/activity", f'{{"content": {s}}}'),
        ("post", "/api/v1/tasks/t1/stop", f'{{"reason": {s}}}'),
        ("patch", "/xpander/agent-execution/t1/update", f'{{"title": {s}}}'),
        ("patch", "/xpander/agent-execution/t1/update", f'{{"input": {{"text": {s}}}}}'),
        ("post", "/xpander/agent-execution/bot", f'{{"input": {{"text": {s}}}}}'),
        ("post", "/xpander/agent-execution/bot", f'{{"id": {s}}}'),
        ("post", "/xpander/agent-execution/bot/report_task", f'{{"result": {s}}}'),
        ("post", "/xpander/agents-metrics/bot/execution", f'{{"execution_id": {s}}}'),
        ("put", "/agentex/tasks/t1", f'{{"task_metadata": {{"x": {s}}}}}'),
        ("post", "/agentex/tasks/t1/cancel", f'{{"reason": {s}}}'),
        ("post", "/agentex/agents/name/bot/rpc", f'{{"method": "task/create", "params": {{"name": {s}}}}}'),
        ("post", "/agentex/agents/name/bot/rpc", f'{{"method": "task/cancel", "params": {{"task_name": {s}}}}}'),
        ("post", "/agentex/agents/name/bot/rpc", f'{{"method": "task/cancel", "params": {{"task_id": {s}}}}}'),
        ("post", "/rpc", _rpc("task.create", {"text": "@"}).replace('"@"', s)),
        ("post", "/rpc", _rpc("task.update", {"id": "@", "updates": {}}).replace('"@"', s)),
        ("post", "/rpc", _rpc("task.claim", {"agent": "@"}).replace('"@"', s)),
        ("post", "/rpc", _rpc("task.list", {"cursor": "@"}).replace('"@"', s)),
        ("post", "/rpc", f'{{"jsonrpc": "2.0", "id": 1, "method": {s}}}'),
    ]  # fmt: skip


def _deep_bodies(raw):
    return [
        ("patch", "/api/v1/tasks/t1", raw),
        ("post", "/api/v1/tasks/t1/activity", raw),
        ("patch", "/api/v1/tasks/t1", f'{{"metadata": {raw}}}'),
        ("post", "/rpc", raw),
        ("post", "/rpc", _rpc("task.update", {"id": "t1", "updates": {"metadata": "@"}}).replace('"@"', raw)),
        ("patch", "/xpander/agent-execution/t1/update", raw),
        ("patch", "/xpander/agent-execution/t1/update", f'{{"payload_extension": {raw}}}'),
        ("post", "/xpander/agent-execution/bot", raw),
        ("put", "/agentex/tasks/t1", f'{{"task_metadata": {raw}}}'),
        ("post", "/agentex/agents/name/bot/rpc", raw),
    ]


BODY_CASES = [
    *[(f"number {n}", *case) for n in BAD_NUMBERS for case in _number_bodies(n)],
    *[(f"string {s}", *case) for s in BAD_STRINGS for case in _string_bodies(s)],
    *[(name, *case) for name, raw in (("2,000+ levels", DEEP_LIST), ("900 objects", DEEP_OBJECT))
      for case in _deep_bodies(raw)],
    ("offset", "post", "/api/v1/tasks/t1/hitl", '{"question": "q", "deadline": "2024-01-01T00:00:00-17:12"}'),
    ("offset", "post", "/api/v1/tasks/t1/hitl", '{"question": "q", "deadline": "9999-12-31T23:59:59-10:00"}'),
    ("shape", "post", "/api/v1/tasks", '{"deep_planning": {"tasks": 5}}'),
    ("shape", "post", "/api/v1/tasks", '{"deep_planning": true}'),
    ("shape", "post", "/api/v1/tasks", '{"deep_planning": {"tasks": [1, 2]}}'),
    ("shape", "post", "/xpander/agent-execution/bot", '{"deep_planning": {"tasks": 5}}'),
    ("shape", "patch", "/xpander/agent-execution/t1/update", '{"deep_planning": true}'),
]  # fmt: skip
BODY_CASES += [("cursor", "post", "/rpc", _rpc("task.list", {"cursor": c})) for c in FORGED_CURSORS]


@pytest.mark.parametrize("case,method,url,body", BODY_CASES, ids=[f"{c[0]} {c[1]} {c[2]}" for c in BODY_CASES])
def test_hostile_bodies_are_refused_and_change_nothing(client_500, auth, task, case, method, url, body):
    before = _state(task)
    response = _send(client_500, method, url, body, **auth)
    if url == "/rpc" and response.status_code == 200:
        error = response.json()["error"]  # JSON-RPC answers method-level errors in a 200
        assert error["code"] in (-32600, -32601, -32602, -32700), error
    else:
        _assert_refused(response)
    assert _state(task) == before
    json.loads(response.content, parse_constant=lambda name: pytest.fail(f"the answer holds {name}"))


def test_refusals_name_the_field(client_500, auth, task):
    native = _send(client_500, "patch", "/api/v1/tasks/t1", '{"metadata": {"deep": {"x": NaN}}}', **auth).json()
    assert "metadata.deep.x" in json.dumps(native)
    xp = _send(client_500, "patch", "/xpander/agent-execution/t1/update", '{"duration": 1e999}', **auth).json()
    assert xp["detail"][0]["loc"] == ["body", "duration"]
    ax = _send(client_500, "post", "/agentex/agents/name/bot/rpc",
               '{"method": "task/create", "params": {"name": "a\\u0000"}}', **auth).json()  # fmt: skip
    assert ax["detail"][0]["loc"][-1] == "name"
    rpc = _send(client_500, "post", "/rpc", _rpc("task.update", {"id": "t1", "updates": {"metadata": {"k": "@"}}})
                .replace('"@"', '"\\ud800"'), **auth).json()  # fmt: skip
    assert list(rpc["error"]["data"]["errors"]) == ["updates.metadata.k"]


# --- Dashboard ------------------------------------------------------------------------------

DASHBOARD_URLS = [
    "/tasks/?q=%00",
    "/tasks/?source=%00",
    "/tasks/?agent=%00",
    "/tasks/?status=%00",
    "/tasks/?sort=%00",
    "/tasks/?after=%00",
    "/tasks/?hitl=%00",
    "/tasks/?updated_after=2024-01-01T00:00:00-17:12",
    "/tasks/?updated_before=0001-01-01T00:00:00%2B05:00",
    "/tasks/?updated_after=9999-12-31T23:59:59-05:00",
    *[f"/tasks/?after={c}" for c in FORGED_CURSORS],
    *[f"/tasks/?sort={sort}&after={c}" for sort, c in TEXT_CURSORS],
    "/approvals/?x=%00",
    "/tasks/acme/t1/?x=%00",
]


@pytest.mark.parametrize("url", DASHBOARD_URLS)
def test_dashboard_filters_with_hostile_values_are_ignored_with_a_message(client_500, alice, task, url):
    client_500.force_login(alice)
    response = client_500.get(url)
    assert response.status_code == 200, (url, response.status_code)


@pytest.mark.parametrize(
    "url", ["/tasks/acme/a%00b/", "/tasks/a%00b/", "/tasks/acme/a%00b/activity/", "/tasks/a%00/t1/"]
)
def test_dashboard_paths_with_nul_are_404(client_500, alice, task, url):
    client_500.force_login(alice)
    assert client_500.get(url).status_code == 404


@pytest.mark.parametrize(
    "metadata",
    ['{"x": NaN}', '{"x": 1e999}', '{"x": Infinity}', '{"x": "\\ud800"}', '{"x": "\\u0000"}', DEEP_LIST, DEEP_OBJECT,
     '{"a":' * 40 + "1" + "}" * 40],
)  # fmt: skip
def test_dashboard_metadata_form_refuses_unstorable_json(client_500, alice, task, metadata):
    client_500.force_login(alice)
    before = _state(task)
    response = client_500.post("/tasks/acme/t1/metadata/", {"metadata": metadata, "version": task.version})
    assert response.status_code == 422, response.content[:300]
    assert "Metadata" in response.content.decode()
    assert _state(task) == before


def test_dashboard_amendment_refuses_deep_json(client_500, alice, task):
    hitl = hitl_request(task=task, actor=Actor.system(), question="Ship?", payload={"a": 1})
    client_500.force_login(alice)
    response = client_500.post(
        f"/approvals/{hitl.pk}/decide/", {"action": "approve", "amended_payload": DEEP_LIST}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 422 and "Invalid JSON" in response.content.decode()
    hitl.refresh_from_db()
    assert hitl.decision is None


# --- Legacy rows stored before the checks still render ----------------------------------------


def test_pages_and_apis_render_legacy_rows_with_infinite_duration_and_odd_plans(client_500, alice, auth, task):
    Task.objects.filter(pk=task.pk).update(duration=math.inf, deep_planning={"tasks": 5})
    other, _ = task_create(organization=task.organization, actor=Actor.system(), id="t2", title="y")
    Task.objects.filter(pk=other.pk).update(duration=math.nan, deep_planning=True)
    client_500.force_login(alice)
    for url in ("/tasks/", "/tasks/acme/t1/", "/tasks/acme/t2/"):
        assert client_500.get(url).status_code == 200, url
    for url in ("/api/v1/tasks/t1", "/api/v1/tasks/t2", "/api/v1/tasks", "/xpander/agent-execution/t2/status"):
        response = client_500.get(url, **auth)
        assert response.status_code == 200, (url, response.content[:300])
        json.loads(response.content, parse_constant=lambda name: pytest.fail(f"{url} wrote {name}"))
    assert client_500.get("/api/v1/tasks/t2", **auth).json()["deep_planning"] == {}


RESULT_TEXTS = ["NaN", "-Infinity", "1e999", "[" * 1500 + "]" * 1500, '{"a":' * 1500 + "1" + "}" * 1500,
                '{"x": "\\ud800"}']  # fmt: skip


@pytest.mark.parametrize("text", RESULT_TEXTS, ids=["nan", "-inf", "1e999", "deep-list", "deep-object", "surrogate"])
def test_a_result_text_that_looks_like_hostile_json_is_stored_as_text_and_renders_everywhere(
    client_500, alice, auth, task, text
):
    # A result is text: any text is accepted, and no reader may parse it into something it cannot write.
    response = _send(client_500, "patch", "/api/v1/tasks/t1", json.dumps({"result": text}), **auth)
    assert response.status_code == 200, response.content[:300]
    assert Task.objects.get(pk=task.pk).result == text
    client_500.force_login(alice)
    for url in ("/tasks/", "/tasks/acme/t1/", "/tasks/acme/t1/timeline/"):
        assert client_500.get(url).status_code == 200, url
    answers = [
        client_500.get("/api/v1/tasks/t1", **auth),
        _send(client_500, "post", "/rpc", _rpc("task.list", {}), **auth),
    ]
    for response in answers:
        assert response.status_code == 200, response.content[:300]
        body = json.loads(response.content, parse_constant=lambda name: pytest.fail(f"wrote {name}"))
    listed = body["result"]["tasks"][0]["result"]
    assert listed == text  # not JSON any reader can write back: shown as the text it is


def test_a_result_text_holding_plain_json_reads_as_that_json_on_json_rpc(client_500, auth, task):
    _send(client_500, "patch", "/api/v1/tasks/t1", json.dumps({"result": '{"refunded": 40}'}), **auth)
    body = _send(client_500, "post", "/rpc", _rpc("task.list", {}), **auth).json()
    assert body["result"]["tasks"][0]["result"] == {"refunded": 40}


# --- Server errors on API paths are JSON; an unreachable database is a 503 -----------------


def test_an_unexpected_error_on_an_api_path_is_json(client_500, auth, task, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(selectors, "get_task_for_token", boom)
    for url in ("/api/v1/tasks/t1", "/xpander/agent-execution/t1/status"):
        response = client_500.get(url, **auth)
        assert response.status_code == 500 and response.json()["code"] == "server_error", url
    agentex = client_500.get("/agentex/tasks/t1", **auth)  # upstream's {message, code, data}
    assert agentex.status_code == 500 and agentex.json()["code"] == 500
    assert agentex.json()["data"] == {"reason": "server_error"} and agentex.json()["message"]
    monkeypatch.setattr(services, "task_update", boom)  # JSON-RPC's update reads through the kernel alone
    rpc = _send(client_500, "post", "/rpc", _rpc("task.update", {"id": "t1", "updates": {"text": "y"}}), **auth)
    assert rpc.status_code == 500 and rpc.json()["error"]["code"] == -32603


def test_a_database_outage_is_a_503_with_retry_after(client_500, alice, auth, task, monkeypatch):
    def unreachable(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(selectors, "get_task_for_token", unreachable)
    monkeypatch.setattr(selectors, "get_task_for_user", unreachable)
    api = client_500.get("/api/v1/tasks/t1", **auth)
    assert api.status_code == 503 and api["Retry-After"] and api.json()["code"] == "unavailable"
    monkeypatch.setattr(services, "task_update", unreachable)
    rpc = _send(client_500, "post", "/rpc", _rpc("task.update", {"id": "t1", "updates": {"text": "y"}}), **auth)
    assert rpc.status_code == 503 and rpc.json()["error"]["code"] == -32603
    client_500.force_login(alice)
    page = client_500.get("/tasks/acme/t1/")
    assert page.status_code == 503 and b"unreachable" in page.content and page["Content-Type"].startswith("text/html")


# --- The rules themselves ---------------------------------------------------------------------


def test_datetime_rule():
    assert clean_datetime(datetime.fromisoformat("2024-01-01T00:00:00+15:59")).tzinfo == UTC
    assert clean_datetime(datetime(2024, 1, 1)) == datetime(2024, 1, 1, tzinfo=UTC)
    for raw in ("2024-01-01T00:00:00-17:12", "2024-01-01T00:00:00+16:00", "0001-01-01T00:00:00+05:00",
                "9999-12-31T23:59:59-05:00"):  # fmt: skip
        with pytest.raises(ValueError):
            clean_datetime(datetime.fromisoformat(raw))
    with pytest.raises(InvalidInput):
        hitl_request(task="t1", organization_id=1, actor=Actor.system(), question="q",
                     deadline=datetime.fromisoformat("2024-01-01T00:00:00-17:12"))  # fmt: skip


def test_json_and_digit_rules():
    assert ascii_int("42") == 42
    assert [ascii_int(raw) for raw in ("²", "٣", "-1", "1.0", "", " 1", "1" * 19)] == [None] * 7
    for raw in (DEEP_LIST, DEEP_OBJECT, "[" * (BODY_MAX_DEPTH + 1) + "]" * (BODY_MAX_DEPTH + 1), "{nope"):
        with pytest.raises(JsonRefused):
            parse_json(raw)
    assert parse_json("[" * BODY_MAX_DEPTH + "]" * BODY_MAX_DEPTH)
    assert json_problem_at({"a": [1, {"b": math.nan}]})[0] == ("a", 1, "b")
    assert json_problem_at({"a": "\ud800"})[0] == ("a",)
    assert json_problem_at({"a\x00": 1})[0] == ("a\x00",)
    assert json_problem_at({"ok": [1.5, "text", None, True]}) is None


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_a_database_outage_is_still_a_503(acme, monkeypatch):
    """Under ASGI Django calls handler500 from another thread; asgiref re-raises the exception
    there, so the handler still tells an outage from a bug."""
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    _, raw = await sync_to_async(api_token_create)(organization=acme, name="asgi")

    def unreachable(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(selectors, "get_task_for_token", unreachable)
    client = AsyncClient(raise_request_exception=False)
    response = await client.get("/api/v1/tasks/t1", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 503 and response.json()["code"] == "unavailable"
    monkeypatch.setattr(selectors, "get_task_for_token", lambda *a, **k: 1 / 0)
    response = await client.get("/xpander/agent-execution/t1/status", headers={"x-api-key": raw})
    assert response.status_code == 500 and response.json()["code"] == "server_error"


@pytest.mark.parametrize(
    ("method", "url", "status", "body"),
    [
        ("get", "/rpc", 405, {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request",
                                                         "data": {"reason": "Send JSON-RPC requests with POST."}},
                              "id": None}),
        ("delete", "/api/v1/tasks", 405, {"detail": "Method Not Allowed", "code": "method_not_allowed"}),
        ("put", "/api/v1/tasks/t1", 405, {"detail": "Method Not Allowed", "code": "method_not_allowed"}),
        ("get", "/api/v1/no-such-route", 404, {"detail": "Not Found", "code": "not_found"}),
        ("get", "/xpander/no/such/route", 404, {"detail": "Not Found", "code": "not_found"}),
        ("get", "/agentex/no-such-route", 404, {"message": "Not Found", "code": 404, "data": {"reason": "not_found"}}),
    ],
)  # fmt: skip
def test_no_route_or_a_wrong_method_on_an_agent_path_answers_the_faces_json(client, auth, method, url, status, body):
    response = getattr(client, method)(url, **auth)
    assert (response.status_code, response["Content-Type"], response.json()) == (status, "application/json", body)
    if status == 405:
        assert response["Allow"]


def test_a_missing_desk_page_stays_a_page(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
