"""The task-event websocket consumer: who may connect, who hears what, replay, render once."""

import asyncio
from collections import Counter

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db.models import Max

from tasks_app import broadcast, live, services
from tasks_app.models import TaskEvent
from tests.live_sockets import communicator, event_ids, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(autouse=True)
def renders(monkeypatch):
    """Counts renders by (page, can_edit); uses the dashboard's renderer when it exists."""
    live.fragments.clear()
    calls: Counter = Counter()
    real = live.render_event_html

    def counting(event, *, page, can_edit):
        calls[(event.pk, page, can_edit)] += 1
        return real(event, page=page, can_edit=can_edit)

    monkeypatch.setattr(live, "render_event_html", counting)
    yield calls
    live.fragments.clear()


@pytest.fixture
def cookies(alice, bob, charlie):
    return {u.username: session_cookie(u) for u in (alice, bob, charlie)}


@pytest.fixture
def acme_task(acme, system_actor):
    task, _ = services.task_create(organization=acme, actor=system_actor, title="acme task", agent="bot")
    return task


@pytest.fixture
def globex_task(globex, system_actor):
    task, _ = services.task_create(organization=globex, actor=system_actor, title="globex task", agent="bot")
    return task


update = database_sync_to_async(services.task_update)
create = database_sync_to_async(services.task_create)


async def connect(path, cookie=None, origin="http://testserver"):
    comm = communicator(path, cookie, origin)
    connected, _ = await comm.connect(timeout=5)
    return comm, connected


async def test_it_refuses_anonymous_sockets(acme_task):
    for path in ("/ws/tasks/", f"/ws/tasks/{acme_task.pk}/"):
        comm, connected = await connect(path)
        assert not connected
        await comm.disconnect()


async def test_it_refuses_a_foreign_origin(cookies):
    comm, connected = await connect("/ws/tasks/", cookies["alice"], origin="http://evil.example")
    assert not connected
    await comm.disconnect()
    comm, connected = await connect("/ws/tasks/", cookies["alice"])
    assert connected
    await comm.disconnect()


async def test_it_refuses_charlie_on_an_acme_task(cookies, acme_task):
    comm, connected = await connect(f"/ws/tasks/{acme_task.pk}/", cookies["charlie"])
    assert not connected
    await comm.disconnect()
    comm, connected = await connect("/ws/tasks/no-such-task/", cookies["alice"])
    assert not connected
    await comm.disconnect()


async def test_charlie_hears_globex_and_nothing_of_acme(cookies, acme_task, globex_task, system_actor):
    charlie, connected = await connect("/ws/tasks/?after=0", cookies["charlie"])
    assert connected
    globex_created = await database_sync_to_async(lambda: globex_task.events.get().pk)()
    assert event_ids(await charlie.receive_from(timeout=5)) == [globex_created]  # replay: globex only
    await update(task=acme_task, actor=system_actor, priority=7, title="acme secret")
    assert await charlie.receive_nothing(timeout=0.5)
    await update(task=globex_task, actor=system_actor, priority=7)
    html = await charlie.receive_from(timeout=5)
    assert f'id="task-{globex_task.pk}"' in html and "acme" not in html
    await charlie.disconnect()


async def test_alice_receives_the_escaped_fragment(cookies, acme_task, alice_actor):
    alice, connected = await connect("/ws/tasks/", cookies["alice"])
    assert connected
    await update(task=acme_task, actor=alice_actor, title=XSS)
    html = await alice.receive_from(timeout=5)
    event = await database_sync_to_async(lambda: TaskEvent.objects.filter(task=acme_task).last())()
    assert f'id="task-{acme_task.pk}"' in html
    assert "hx-swap-oob" in html
    assert event.pk in event_ids(html)
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img" not in html
    await alice.disconnect()


async def test_the_detail_socket_hears_only_its_task(cookies, acme, acme_task, alice_actor):
    other, _ = await create(organization=acme, actor=alice_actor, title="other")
    alice, connected = await connect(f"/ws/tasks/{acme_task.pk}/", cookies["alice"])
    assert connected
    await update(task=other, actor=alice_actor, priority=1)
    assert await alice.receive_nothing(timeout=0.5)
    await update(task=acme_task, actor=alice_actor, priority=1)
    html = await alice.receive_from(timeout=5)
    latest = await database_sync_to_async(lambda: TaskEvent.objects.filter(task=acme_task).last().pk)()
    assert event_ids(html) == [latest]
    assert 'id="task-header"' in html and "hx-swap-oob" in html
    await alice.disconnect()


async def test_bob_the_viewer_gets_the_variant_without_edit_controls(cookies, acme_task, alice_actor, renders):
    alice, _ = await connect(f"/ws/tasks/{acme_task.pk}/", cookies["alice"])
    bob, connected = await connect(f"/ws/tasks/{acme_task.pk}/", cookies["bob"])
    assert connected
    await update(task=acme_task, actor=alice_actor, status="executing")
    alice_html = await alice.receive_from(timeout=5)
    bob_html = await bob.receive_from(timeout=5)
    assert "<form" in alice_html
    assert "<form" not in bob_html and "hx-post" not in bob_html and "hx-patch" not in bob_html
    assert {key[1:] for key in renders} == {("detail", True), ("detail", False)}
    await alice.disconnect()
    await bob.disconnect()


async def test_replay_delivers_exactly_the_later_events_in_order(cookies, acme_task, alice_actor):
    for priority in range(1, 6):
        await update(task=acme_task, actor=alice_actor, priority=priority)
    ids = await database_sync_to_async(
        lambda: list(TaskEvent.objects.filter(task=acme_task).values_list("pk", flat=True))
    )()
    assert len(ids) == 6  # created + 5 updates
    for path in ("/ws/tasks/", f"/ws/tasks/{acme_task.pk}/"):
        alice, connected = await connect(f"{path}?after={ids[2]}", cookies["alice"])
        assert connected
        received = [event_ids(await alice.receive_from(timeout=5)) for _ in ids[3:]]
        assert received == [[i] for i in ids[3:]]
        assert await alice.receive_nothing(timeout=0.3)
        await alice.disconnect()


async def test_live_messages_overlapping_the_replay_are_not_sent_twice(cookies, acme_task, alice_actor):
    alice, _ = await connect("/ws/tasks/?after=0", cookies["alice"])
    created_id = event_ids(await alice.receive_from(timeout=5))[0]
    # The publish of an event already replayed (committed just before the socket joined).
    created = await database_sync_to_async(TaskEvent.objects.get)(pk=created_id)
    await get_channel_layer().group_send(broadcast.org_group(acme_task.organization_id), broadcast.message_for(created))
    assert await alice.receive_nothing(timeout=0.5)
    await update(task=acme_task, actor=alice_actor, priority=9)
    latest = await database_sync_to_async(lambda: TaskEvent.objects.filter(task=acme_task).last().pk)()
    assert event_ids(await alice.receive_from(timeout=5)) == [latest]
    assert await alice.receive_nothing(timeout=0.3)
    await alice.disconnect()


async def test_each_event_is_rendered_once_per_process_not_per_socket(cookies, acme_task, alice_actor, renders):
    sockets = [(await connect("/ws/tasks/", cookies["alice"]))[0] for _ in range(5)]
    sockets += [(await connect("/ws/tasks/", cookies["bob"]))[0] for _ in range(3)]
    sockets += [(await connect(f"/ws/tasks/{acme_task.pk}/", cookies["alice"]))[0] for _ in range(3)]
    for priority in (11, 12):
        await update(task=acme_task, actor=alice_actor, priority=priority)

    async def two_frames(socket):
        return [event_ids(await socket.receive_from(timeout=5)) for _ in range(2)]

    frames = await asyncio.gather(*(two_frames(s) for s in sockets))
    assert len({str(f) for f in frames}) == 1 and len(frames) == 11
    assert len(renders) == 6  # 2 events x (list editable, list read-only, detail editable)
    assert set(renders.values()) == {1}
    for s in sockets:
        await s.disconnect()


async def test_the_inbox_socket_adds_and_removes_cards_and_refuses_charlie(cookies, acme_task, system_actor, alice):
    charlie_inbox, _ = await connect("/ws/approvals/", cookies["charlie"])
    inbox, connected = await connect("/ws/approvals/", cookies["alice"])
    assert connected
    await update(task=acme_task, actor=system_actor, status="executing")
    assert "hitl-" not in await inbox.receive_from(timeout=5)  # only the event id moves on
    hitl = await database_sync_to_async(services.hitl_request)(
        task=acme_task, actor=system_actor, question="Refund <b>all</b>?"
    )
    added = await inbox.receive_from(timeout=5)
    assert 'hx-swap-oob="beforeend:#hitl-list"' in added and f'id="hitl-{hitl.pk}"' in added
    assert "Refund &lt;b&gt;all&lt;/b&gt;?" in added and 'id="hitl-badge"' in added
    await database_sync_to_async(services.hitl_decide)(hitl=hitl.pk, actor=services.Actor.for_user(alice), approve=True)
    removed = await inbox.receive_from(timeout=5)
    assert f'id="hitl-{hitl.pk}" class="hitl-card hitl-card--decided' in removed and "alice" in removed
    assert await charlie_inbox.receive_nothing(timeout=0.3)
    await inbox.disconnect()
    await charlie_inbox.disconnect()


async def test_each_organization_resumes_from_its_own_position(acme, globex, system_actor, django_user_model):
    """Ids commit in order within an organization only: a globex event with a higher id may be
    seen before an acme event with a lower one commits. A page showing both resumes each
    organization from its own position, so that acme event is still delivered."""

    def setup():
        from tasks_app.models import Membership, Role

        dave = django_user_model.objects.create_user("dave", password="taskdesk")
        for org in (acme, globex):
            Membership.objects.create(user=dave, organization=org, role=Role.OPERATOR)
        a, _ = services.task_create(organization=acme, actor=system_actor, title="acme one")
        services.task_update(task=a, actor=system_actor, priority=7)  # acme's "late" event
        g, _ = services.task_create(organization=globex, actor=system_actor, title="globex one")
        ids = dict(
            TaskEvent.objects.filter(task__in=[a, g])
            .values_list("task__organization_id")
            .order_by()
            .annotate(newest=Max("id"))
        )
        created = TaskEvent.objects.filter(task=a).order_by("id").first().pk
        return session_cookie(dave), created, ids[globex.pk]

    cookie, acme_seen, globex_seen = await database_sync_to_async(setup)()
    # The page had seen acme up to its task's creation and globex up to its newest event.
    sock, connected = await connect(f"/ws/tasks/?after={acme.pk}:{acme_seen},{globex.pk}:{globex_seen}", cookie)
    assert connected
    frame = await sock.receive_from(timeout=5)
    assert event_ids(frame) and event_ids(frame)[-1] > acme_seen and 'id="task-' in frame
    assert await sock.receive_nothing(timeout=0.3)  # nothing of globex replayed again
    await sock.disconnect()
    # A single global position would have skipped it (acme's event id < globex's).
    sock, _ = await connect(f"/ws/tasks/?after={globex_seen}", cookie)
    assert await sock.receive_nothing(timeout=0.3)
    await sock.disconnect()
