"""Hypothesis over the JSON-RPC, xpander and Agentex faces and the dashboard forms.

Each example sends one request whose body, query or header carries a hostile value (NaN,
Infinity, 1e999, NUL, lone surrogates, Unicode digits, UTC offsets beyond +-15:59, deep nesting,
odd shapes) somewhere a client may put it. Whatever happens: no 5xx; a refusal (4xx, or a JSON-RPC
error) changes nothing; and whatever was accepted can still be read by every page and API.
The examples are derandomized, so CI runs the same cases every time.
"""

import json
import math
from urllib.parse import quote, urlencode

import pytest
from django.test import Client, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks_app.models import ActivityEntry, HitlRequest, Task, TaskEvent
from tasks_app.services import Actor, api_token_create, hitl_request, task_create

EXAMPLES = 120
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# No rate limit gets in the way of the examples (JSON-RPC task.update allows 20 a minute).
UNLIMITED = override_settings(RATE_LIMITS={"*": (100_000, 60)})


class Deep:
    """A marker for JSON nested `levels` deep (written as raw text: json.dumps would recurse)."""

    def __init__(self, levels: int, kind: str):
        self.levels, self.kind = levels, kind

    def raw(self) -> str:
        if self.kind == "list":
            return "[" * self.levels + "]" * self.levels
        return '{"a":' * self.levels + "1" + "}" * self.levels


HOSTILE_STRINGS = [
    "\x00", "a\x00b", "\ud800", "x\udfffy", "²", "٣", "١٢", "", " ", "\t",
    "2024-01-01T00:00:00-17:12", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00",
    "NaN", "Infinity", "1e999", "-1", "00", "9" * 30, "<script>alert(1)</script>",
]  # fmt: skip
text = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(st.one_of(st.characters(), st.characters(categories=["Cs"]), st.just("\x00")), max_size=8),
)
numbers = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 80.0, 80.5, 2**63, -(2**63) - 1, 2**70]),
    st.floats(),
    st.integers(min_value=-(2**70), max_value=2**70),
)
deep = st.builds(Deep, st.sampled_from([33, 37, 40, 200, 900, 2500]), st.sampled_from(["list", "object"]))
shapes = st.sampled_from([True, False, None, {"tasks": 5}, {"tasks": [1, "x"]}, {"tasks": {"a": 1}}, [], [[]], {}])
leaf = st.one_of(text, numbers, shapes, deep)
# The classes the issue lists, each as likely as any other (a plain union would mostly draw
# harmless text and numbers), then anything built of them.
CLASSIC = [
    math.nan,
    math.inf,
    -math.inf,
    "a\x00b",
    "\ud800",
    "²",
    "2024-01-01T00:00:00-17:12",
    True,
    {"tasks": 5},
    {"x": math.nan},
    {"x": math.inf},
    {"x": "\x00"},
    {"x": "\udc00"},
    {"a\x00": 1},
    [math.nan],
    ["\ud800"],
    Deep(40, "list"),
    Deep(900, "object"),
    Deep(2500, "list"),
    {"x": Deep(40, "object")},
]
hostile = st.one_of(
    st.sampled_from(CLASSIC),
    st.sampled_from(CLASSIC),
    st.recursive(
        leaf,
        lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(text, children, max_size=3)),
        max_leaves=6,
    ),
)


def to_json(value) -> str:
    """JSON text as a careless client writes it: NaN and Infinity as tokens, surrogates escaped."""
    deep_parts: dict[str, str] = {}

    def swap(item):
        if isinstance(item, Deep):
            marker = f"@@deep{len(deep_parts)}@@"
            deep_parts[marker] = item.raw()
            return marker
        if isinstance(item, dict):
            return {k: swap(v) for k, v in item.items()}
        if isinstance(item, list):
            return [swap(v) for v in item]
        return item

    raw = json.dumps(swap(value), allow_nan=True)
    for marker, part in deep_parts.items():
        raw = raw.replace(json.dumps(marker), part)
    return raw


def place(template: dict, path: tuple, value):
    """A copy of template with value at path (a tuple of keys)."""
    body = json.loads(json.dumps(template))
    target = body
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return body


# --- The world each example runs in ---------------------------------------------------------


@pytest.fixture
def world(acme, globex, alice):
    actor = Actor.system()
    task, _ = task_create(organization=acme, actor=actor, id="t1", name="n1", agent="bot", title="x",
                          status="executing")  # fmt: skip
    paused, _ = task_create(organization=acme, actor=actor, id="p1", agent="bot", title="p", status="executing")
    hitl = hitl_request(task=paused, actor=actor, question="Ship?", payload={"amount": 1})
    task_create(organization=globex, actor=actor, id="t1", title="globex")
    _, raw = api_token_create(organization=acme, name="fuzz")
    client = Client(raise_request_exception=False)
    staff = Client(raise_request_exception=False)
    staff.force_login(alice)
    with UNLIMITED:
        yield {"client": client, "staff": staff, "raw": raw, "hitl": hitl}


def snapshot():
    tasks = Task.objects.order_by("pk").values_list(
        "pk", "public_id", "version", "status", "title", "name", "result", "metadata", "params", "payload_extension",
        "deep_planning", "duration", "prompt_tokens", "completion_tokens", "priority", "deleted_at",
    )  # fmt: skip
    return (
        [tuple(json.dumps(v, default=str) for v in row) for row in tasks],
        TaskEvent.objects.count(),
        ActivityEntry.objects.count(),
        list(HitlRequest.objects.order_by("pk").values_list("decision", "amended_payload")),
    )


def assert_readable(world):
    """What was accepted must not break any reader: stored values finite and in shape, pages render."""
    for task in Task.objects.all():
        assert math.isfinite(task.duration), task.public_id
        assert isinstance(task.deep_planning, dict), task.deep_planning
        assert isinstance(task.deep_planning.get("tasks", []), list), task.deep_planning
        json.dumps([task.metadata, task.params, task.payload_extension], allow_nan=False)
    staff, client, raw = world["staff"], world["client"], world["raw"]
    for url in ("/tasks/", "/tasks/acme/t1/", "/approvals/"):
        assert staff.get(url).status_code == 200, url
    for url in ("/api/v1/tasks?limit=200", "/xpander/agent-execution/t1/status", "/agentex/tasks"):
        response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert response.status_code == 200, (url, response.content[:300])
        json.loads(response.content, parse_constant=lambda name: pytest.fail(f"{url} wrote {name}"))


def check(world, send, *, rpc: bool = False):
    before = snapshot()
    response = send()
    assert response.status_code < 500, response.content[:500]
    refused = response.status_code >= 400
    if rpc and response.status_code == 200:
        refused = "error" in response.json()
    if refused:
        assert snapshot() == before, response.content[:500]
    elif response.status_code < 300:
        assert_readable(world)
    return response


# --- JSON-RPC -------------------------------------------------------------------------------

RPC_CALLS = [
    ("task.create", {"text": "new", "priority": 5, "metadata": {"k": 1}}, [("text",), ("id",), ("status",),
                                                                          ("priority",), ("metadata", "k")]),
    ("task.update", {"id": "t1", "updates": {"metadata": {}}}, [("updates", "metadata"), ("updates", "metadata", "k")]),
    ("task.update", {"id": "t1", "updates": {"text": "y"}}, [("id",), ("updates", "text"), ("updates", "status"),
                                                               ("updates", "priority"), ("updates", "metadata")]),
    ("task.complete", {"id": "t1", "result": "done"}, [("id",), ("result",)]),
    ("task.list", {"limit": 5}, [("status",), ("limit",), ("cursor",)]),
    ("task.claim", {}, [("agent",)]),
]  # fmt: skip


@st.composite
def rpc_requests(draw):
    method, params, paths = draw(st.sampled_from(RPC_CALLS))
    # Mostly inside the params (where values are stored), sometimes the envelope itself.
    envelope = st.sampled_from([("@id",), ("@method",), ("@params",)])
    where = draw(st.one_of(st.sampled_from(paths), st.sampled_from(paths), st.sampled_from(paths), envelope))
    value = draw(hostile)
    message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    if where == ("@id",):
        message["id"] = value
    elif where == ("@method",):
        message["method"] = value
    elif where == ("@params",):
        message["params"] = value
    else:
        message["params"] = place(params, where, value)
    return to_json([message] if draw(st.booleans()) and where[0] != "@params" else message)


@FUZZ_SETTINGS
@given(body=rpc_requests())
def test_jsonrpc_survives_hostile_params(world, body):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {world['raw']}"}
    response = check(world, lambda: world["client"].post("/rpc", body, content_type="application/json", **auth),
                     rpc=True)  # fmt: skip
    if response.status_code == 200 and isinstance(response.json(), list):
        # A batch of one: its single answer decides whether anything may have changed.
        assert len(response.json()) == 1


# --- xpander --------------------------------------------------------------------------------

XP_CALLS = [
    ("patch", "/xpander/agent-execution/t1/update", {"title": "y"},
     [("title",), ("result",), ("duration",), ("payload_extension",), ("tool_call_payload_extension",),
      ("deep_planning",), ("tokens", "prompt_tokens"), ("input", "text"), ("input", "files"), ("status",),
      ("used_tools",), ("execution_attempts",), ("output_schema",)]),
    ("post", "/xpander/agent-execution/bot", {"input": {"text": "hi"}},
     [("id",), ("input", "text"), ("deep_planning",), ("payload_extension",), ("title",), ("mcp_servers",)]),
    ("post", "/xpander/agent-execution/bot/report_task", {"result": "ok"},
     [("id",), ("input",), ("llm_response",), ("tokens", "completion_tokens"), ("is_success",), ("result",),
      ("duration",), ("used_tools",)]),
    ("post", "/xpander/agents-metrics/bot/execution", {"execution_id": "t1"},
     [("execution_id",), ("llm_tokens", "worker", "prompt_tokens"), ("duration",), ("api_calls_made",)]),
]  # fmt: skip
XP_QUERIES = ["limit", "user_id", "parent_task_id", "triggering_agent_id", "status", "internal_status"]


def _query_value(value) -> str:
    return value if isinstance(value, str) else to_json(value)


def _encoded(value: str) -> str:
    # What a client puts on the wire: UTF-8 percent-encoding (a lone surrogate as its raw bytes).
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def xpander_requests(draw):
    if draw(st.integers(0, 4)) == 0:
        name, value = draw(st.sampled_from(XP_QUERIES)), _query_value(draw(hostile))
        return "get", f"/xpander/agent-execution/executions/history/bot?{name}={_encoded(value)}", None, {}
    method, url, template, paths = draw(st.sampled_from(XP_CALLS))
    headers = {}
    if method == "patch" and draw(st.integers(0, 5)) == 0:
        headers["HTTP_IF_MATCH"] = draw(st.sampled_from(['"²"', "٣", '"1e9"', 'W/"-1"', '"99999999999"', ""]))
    return method, url, to_json(place(template, draw(st.sampled_from(paths)), draw(hostile))), headers


@FUZZ_SETTINGS
@given(request=xpander_requests())
def test_xpander_survives_hostile_bodies_queries_and_headers(world, request):
    method, url, body, headers = request
    client, key = world["client"], {"HTTP_X_API_KEY": world["raw"]}
    if body is None:
        check(world, lambda: client.get(url, **key))
    else:
        check(world, lambda: getattr(client, method)(url, body, content_type="application/json", **key, **headers))


# --- Agentex --------------------------------------------------------------------------------

AX_CALLS = [
    ("put", "/agentex/tasks/t1", {"task_metadata": {"k": 1}}, [("task_metadata",), ("task_metadata", "k"),
                                                              ("merge_params",), ("merge_params", "k")]),
    ("put", "/agentex/tasks/name/n1", {"merge_params": {"k": 1}}, [("task_metadata",), ("merge_params", "k")]),
    ("post", "/agentex/tasks/t1/cancel", {}, [("reason",)]),
    ("post", "/agentex/tasks/t1/interrupt", {}, [("reason",)]),
    ("post", "/agentex/agents/name/bot/rpc", {"method": "task/create", "params": {"name": "made"}},
     [("params", "name"), ("params", "params"), ("params", "task_metadata"), ("id",), ("method",), ("jsonrpc",)]),
    ("post", "/agentex/agents/name/bot/rpc", {"method": "task/cancel", "params": {"task_name": "n1"}},
     [("params", "task_name"), ("params", "task_id")]),
]  # fmt: skip
AX_QUERIES = ["task_metadata", "limit", "agent_id", "agent_name", "status", "order_by", "page_number", "relationships"]


@st.composite
def agentex_requests(draw):
    if draw(st.integers(0, 3)) == 0:
        name, value = draw(st.sampled_from(AX_QUERIES)), _query_value(draw(hostile))
        return "get", f"/agentex/tasks?{name}={_encoded(value)}", None
    method, url, template, paths = draw(st.sampled_from(AX_CALLS))
    return method, url, to_json(place(template, draw(st.sampled_from(paths)), draw(hostile)))


@FUZZ_SETTINGS
@given(request=agentex_requests())
def test_agentex_survives_hostile_bodies_and_queries(world, request):
    method, url, body = request
    client, auth = world["client"], {"HTTP_AUTHORIZATION": f"Bearer {world['raw']}"}
    if body is None:
        check(world, lambda: client.get(url, **auth))
    else:
        check(world, lambda: getattr(client, method)(url, body, content_type="application/json", **auth))


# --- Dashboard forms and filters ------------------------------------------------------------

FORMS = {
    "/tasks/acme/t1/metadata/": ["metadata", "metadata_mode", "version"],
    "/tasks/acme/t1/priority/": ["priority", "version"],
    "/tasks/acme/t1/result/": ["result", "version"],
    "/tasks/acme/t1/status/": ["status", "status_reason", "version"],
    "/tasks/acme/t1/stop/": ["status_reason", "version"],
}
LIST_FILTERS = ["q", "source", "agent", "status", "hitl", "updated_after", "updated_before", "sort", "after", "before"]
form_text = st.one_of(text, hostile.map(to_json))


@st.composite
def dashboard_requests(draw):
    kind = draw(st.sampled_from(["form", "form", "list", "decide"]))
    if kind == "list":
        name = draw(st.sampled_from(LIST_FILTERS))
        return "get", f"/tasks/?{name}={_encoded(draw(form_text))}", None
    if kind == "decide":
        fields = {"action": draw(st.sampled_from(["approve", "reject", "²"])), "reason": draw(form_text)}
        fields["amended_payload"] = draw(form_text)
        return "post", "decide", fields
    url = draw(st.sampled_from(sorted(FORMS)))
    name = draw(st.sampled_from(FORMS[url]))
    fields = {"version": "current", "metadata": '{"k": 1}', "priority": "5", "result": "r", "status": "completed"}
    fields[name] = draw(form_text)
    return "post", url, fields


@FUZZ_SETTINGS
@given(request=dashboard_requests())
def test_dashboard_forms_and_filters_survive_hostile_input(world, request):
    method, url, fields = request
    staff = world["staff"]
    if method == "get":
        response = check(world, lambda: staff.get(url))
        assert response.status_code == 200  # a filter that cannot apply is ignored with a message
        return
    if url == "decide":
        url = f"/approvals/{world['hitl'].pk}/decide/"
    elif fields["version"] == "current":
        fields["version"] = str(Task.objects.get(organization__slug="acme", public_id="t1").version)
    body = "&".join(f"{k}={_encoded(v)}" for k, v in fields.items())
    check(world, lambda: staff.post(url, body, content_type="application/x-www-form-urlencoded",
                                    HTTP_HX_REQUEST="true"))  # fmt: skip


def test_hostile_values_reach_the_wire_as_a_careless_client_writes_them():
    raw = to_json([math.nan, math.inf, "\ud800", "\x00", Deep(3, "list"), {"k": Deep(2, "object")}])
    assert raw == '[NaN, Infinity, "\\ud800", "\\u0000", [[[]]], {"k": {"a":{"a":1}}}]'
    assert urlencode({"q": "\x00"}) == "q=%00" and _encoded("\ud800") == "%ED%A0%80"
