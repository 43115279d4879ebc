"""Property-based checks of the native API against its own OpenAPI schema (schemathesis).

Every operation gets a bounded number of generated requests (valid and invalid) through the
Django WSGI app, authenticated as an acme token; the responses must never be a 5xx and must
match the documented status codes, content types and bodies.
"""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from tasks_app.models import Task
from tasks_app.services import Actor, api_token_create, task_create

MAX_EXAMPLES = 10


# Loaded at import (schemathesis' lazy fixture loader does not run under pytest 9).
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())


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
def token_headers(acme):
    # A task whose id generated paths can hit, so not every case is a 404.
    task_create(organization=acme, actor=Actor.system(), id="0", title="target")
    _, raw = api_token_create(organization=acme, name="fuzzer")
    return {"Authorization": f"Bearer {raw}"}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI must not pass or fail by chance
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_honours_its_schema(case, token_headers):
    # Schema-valid requests may still be refused by rules the schema cannot state (NUL characters,
    # 64 KB JSON values, the lifecycle): positive_data_acceptance is left out for that reason;
    # negative_data_rejection is left out too: the real token below replaces the auth headers the
    # generator mutated, so a "malformed Authorization" case is rightly accepted. Negative data is
    # covered by the explicit bad-input tables (tests/test_api_native.py, test_faces_bad_input.py).
    # Every other check (no 5xx, documented statuses, bodies, headers, content types) runs.
    response = case.call_and_validate(
        headers=token_headers, excluded_checks=[positive_data_acceptance, negative_data_rejection]
    )
    assert response.status_code < 500
    assert Task.objects.filter(organization__slug="globex").count() == 0
