"""Fixtures for the seed-client tests (xpander-sdk, agentex-client) against a real daphne.

Imported by tests/test_xpander_sdk.py and tests/test_agentex_client.py. The organizations and
tokens are committed (`transactional_db`) so the daphne process sees them.
"""

import importlib.util
from dataclasses import dataclass

import pytest

from tasks_app.models import Organization, Task, TaskEvent
from tasks_app.services import api_token_create

HAVE_XPANDER = importlib.util.find_spec("xpander_sdk") is not None and importlib.util.find_spec("agno") is not None
HAVE_AGENTEX = importlib.util.find_spec("agentex") is not None

requires_xpander = pytest.mark.skipif(
    not HAVE_XPANDER, reason="needs xpander-sdk + agno: pip install -r requirements-clients.txt (see the file)"
)
requires_agentex = pytest.mark.skipif(
    not HAVE_AGENTEX, reason="needs agentex-client: pip install -r requirements-clients.txt (see the file)"
)


@dataclass
class FaceWorld:
    url: str
    acme: Organization
    globex: Organization
    acme_token: str
    globex_token: str
    revoked_token: str


@pytest.fixture(name="face_world")
def face_world_fixture(transactional_db, daphne_server) -> FaceWorld:
    from tasks_app.services import api_token_revoke

    acme = Organization.objects.create(slug="acme", name="Acme")
    globex = Organization.objects.create(slug="globex", name="Globex")
    _, acme_raw = api_token_create(organization=acme, name="agent-one")
    _, globex_raw = api_token_create(organization=globex, name="outsider")
    revoked, revoked_raw = api_token_create(organization=acme, name="old")
    api_token_revoke(token=revoked)
    return FaceWorld(daphne_server, acme, globex, acme_raw, globex_raw, revoked_raw)


def task_of(organization: Organization, task_id: str) -> Task:
    """The row behind a public id the client saw (ids are unique per organization only)."""
    return Task.objects.get(organization=organization, public_id=task_id)


def events_of(organization: Organization, task_id: str) -> list[TaskEvent]:
    return list(TaskEvent.objects.filter(task=task_of(organization, task_id)).order_by("id"))


def assert_written_by(events: list[TaskEvent], label: str, face: str) -> None:
    assert events, "expected TaskEvents"
    for event in events:
        assert (event.actor_label, event.face, event.actor_kind) == (label, face, "token"), event
