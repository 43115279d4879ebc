"""live.credentials: one fingerprint per reader identity tells the hub whether anything that
decides its access changed, however it changed; an idle hub sweeps nobody."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tasks_app import services
from tasks_app.live import hub as live_hub
from tasks_app.live.credentials import Identity, fingerprints, sweep
from tasks_app.models import ApiToken, Membership, Organization, Role
from tests.conftest import requires_postgres
from tests.live_sockets import connect_live, session_cookie, wait_for


def _identity(user) -> Identity:
    from django.contrib.auth import HASH_SESSION_KEY
    from django.test import Client

    client = Client()
    client.force_login(user)
    session = client.session
    return Identity(user_id=user.pk, session_key=session.session_key, session_hash=session[HASH_SESSION_KEY])


CHANGES = {
    "logout (session deleted)": lambda user, ident: Session.objects.filter(session_key=ident.session_key).delete(),
    "session expired": lambda user, ident: Session.objects.filter(session_key=ident.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    ),
    "password changed": lambda user, ident: (user.set_password("another one"), user.save()),
    "deactivated by QuerySet.update": lambda user, ident: type(user).objects.filter(pk=user.pk).update(is_active=False),
    "role changed by QuerySet.update": lambda user, ident: Membership.objects.filter(user=user).update(
        role=Role.VIEWER
    ),
    "membership removed": lambda user, ident: Membership.objects.filter(user=user).delete(),
    "membership added": lambda user, ident: Membership.objects.create(
        user=user, organization=Organization.objects.create(slug="initech", name="Initech"), role=Role.VIEWER
    ),
}


@requires_postgres
@pytest.mark.django_db
@pytest.mark.parametrize("change", list(CHANGES))
def test_every_change_of_access_changes_the_fingerprint_and_nothing_else_does(change, alice, bob):
    alice_id, bob_id = _identity(alice), _identity(bob)
    before = fingerprints([alice_id, bob_id])
    assert before == fingerprints([alice_id, bob_id])  # stable while nothing changes
    services.task_create(organization=alice.memberships.first().organization, actor=services.Actor.system("t"))
    assert before == fingerprints([alice_id, bob_id])  # tasks and events are not credentials
    CHANGES[change](alice, alice_id)
    after = fingerprints([alice_id, bob_id])
    assert after[alice_id.key] != before[alice_id.key]
    assert after[bob_id.key] == before[bob_id.key]


@requires_postgres
@pytest.mark.django_db
def test_a_revoked_token_and_a_new_organization_for_a_superuser_change_theirs(acme, django_user_model):
    token, _ = services.api_token_create(organization=acme, name="stream")
    root = django_user_model.objects.create_superuser("root", password="x")
    token_id, root_id = Identity.for_token(token), _identity(root)
    before = fingerprints([token_id, root_id])
    services.api_token_revoke(token=ApiToken.objects.get(pk=token.pk))
    Organization.objects.create(slug="umbrella", name="Umbrella")  # a superuser sees every organization
    after = fingerprints([token_id, root_id])
    assert after[token_id.key] != before[token_id.key] and after[root_id.key] != before[root_id.key]
    assert sweep([token_id])[token_id.key].ended


@requires_postgres
@pytest.mark.django_db
def test_the_fingerprints_of_many_identities_are_one_query(alice, bob, charlie):
    identities = [_identity(user) for user in (alice, bob, charlie) for _ in range(5)]
    with CaptureQueriesContext(connection) as queries:
        prints = fingerprints(identities)
    assert len(queries.captured_queries) == 1
    assert len(prints) == len({i.key for i in identities}) == 15


@pytest.mark.django_db(transaction=True)
async def test_an_idle_hub_checks_cheaply_and_sweeps_nobody_until_something_changes(acme, alice, settings):
    settings.LIVE_CREDENTIALS_CHECK_SECONDS = 0.2
    settings.LIVE_IDLE_CHECK_SECONDS = 0.2
    hub = live_hub.hub_for_running_loop()
    try:
        cookie = await database_sync_to_async(session_cookie)(alice)
        sockets = [(await connect_live("/ws/tasks/", cookie))[0] for _ in range(5)]
        # The first look at a new identity sweeps it once (it may have changed since its connect).
        assert await wait_for(lambda: hub.stats["sweeps"] >= 1 and hub.stats["log_checks"] >= 3, 5)
        # Five sockets of one session are one identity to check, however many sockets it has.
        assert list(hub.identities.values()) == [5] and len(hub.fingerprints) == 1
        sweeps, checks = hub.stats["sweeps"], hub.stats["log_checks"]
        assert await wait_for(lambda: hub.stats["log_checks"] >= checks + 5, 5)
        assert hub.stats["sweeps"] == sweeps  # five more checks, no sweep: nothing changed
        await database_sync_to_async(lambda: Membership.objects.filter(user=alice).update(role=Role.VIEWER))()
        assert await wait_for(lambda: hub.stats["sweeps"] == sweeps + 1, 5)
        for sock in sockets:
            assert 'id="live-notice"' in await sock.receive_from(timeout=5)  # the role change reached each
            await sock.disconnect()
        # The last socket of an identity gone, the checks forget it.
        assert await wait_for(lambda: not hub.identities and not hub.fingerprints, 5)
    finally:
        await live_hub.reset_hub_for_running_loop()


async def test_a_hub_stops_when_cancelled_just_as_it_is_woken():
    """Python 3.11's asyncio.wait_for swallows a cancellation that arrives as the awaited event
    is set; the hub's loop (and event streams) wait with live.hub.wait_for_event instead, so a
    cancelled wait always ends: the event loop's shutdown never hangs on them."""
    import asyncio

    event = asyncio.Event()

    async def loop_forever():
        while True:
            await live_hub.wait_for_event(event, 10)
            event.clear()

    for _ in range(50):
        task = asyncio.ensure_future(loop_forever())
        await asyncio.sleep(0)
        event.set()  # woken and cancelled in the same turn of the loop
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done, "the cancelled loop kept running"
