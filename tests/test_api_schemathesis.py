"""Property-based checks of the native API against its own OpenAPI schema (schemathesis, all checks).

Every operation gets a bounded number of generated requests (valid and invalid) through the
Django WSGI app, authenticated as an acme token. Every check runs: no 5xx, documented statuses,
content types, headers and bodies, valid data accepted (positive_data_acceptance) and invalid data
refused (negative_data_rejection); so the schema states what the server checks (NUL-free text,
integral numbers such as 80.0, the sort names, a rejection's reason, UTC offsets within +-15:59).

Two things the generator is told rather than the schema: strings inside free-form JSON values
(metadata, payloads) hold no NUL (`allow_x00=False`; JSON Schema cannot say "no NUL anywhere in
this value", and tests/test_input_hardening.py sends NUL there on purpose), and the auth header is
not fuzzed (the real token is sent; refusals of bad tokens are tested in test_api_native.py).
"""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from tasks_app.models import Organization, Task
from tasks_app.services import Actor, api_token_create, task_create

MAX_EXAMPLES = 10


# Loaded at import (schemathesis' lazy fixture loader does not run under pytest 9).
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
schema.config.generation.update(allow_x00=False, with_security_parameters=False)


@schema.hook
def map_query(context, query):
    # A page cursor is opaque: only one the server issued is valid, which no schema can state, so
    # generated cursors would be "valid data refused". Forged and decodable cursors are covered by
    # tests/test_input_hardening.py; here the list is fuzzed from its first page.
    if query:
        query.pop("after", None)
        query.pop("before", None)
    return query


@schema.hook
def map_body(context, body):
    # Likewise a parent must be an existing task of the organization: point it at the target task.
    if isinstance(body, dict) and body.get("parent_id") is not None:
        body["parent_id"] = "0"
    return body


@pytest.fixture(autouse=True)
def keep_test_connection(db):
    """Like Django's test client: keep the test transaction's connection open across requests."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def token_headers(acme, globex):
    # A task whose id generated paths can hit, so not every case is a 404; and another
    # organization's, which nothing may touch.
    task_create(organization=acme, actor=Actor.system(), id="0", title="target")
    task_create(organization=globex, actor=Actor.system(), id="0", title="globex's")
    _, raw = api_token_create(organization=acme, name="fuzzer")
    return {"Authorization": f"Bearer {raw}"}


def _globex_state():
    return list(Task.objects.filter(organization__slug="globex").values_list("public_id", "version", "title"))


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI must not pass or fail by chance
    database=None,  # and no replay of examples saved by an earlier run on this machine
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_honours_its_schema(case, token_headers):
    globex = _globex_state()
    response = case.call_and_validate(headers=token_headers)
    assert response.status_code < 500
    assert _globex_state() == globex
    assert Organization.objects.count() == 2
