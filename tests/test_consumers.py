"""The task-event websocket consumer and the live hub behind it: who may connect, who hears
what, replay, bells that come late, out of order or never, render once, credentials re-checked.

The sockets are channels' in-process communicators served by the hub of the test's event loop.
A write rings the bell after commit (live.bell.ring: this process's hubs directly, plus the
channel layer when it is Redis); the hub reads the log and pushes each event to each socket once.
"""

import asyncio
import json
import time
from collections import Counter

import pytest
from channels.db import database_sync_to_async
from django.db.models import Max

from tasks_app import services
from tasks_app.live import bell
from tasks_app.live import cache as live_cache
from tasks_app.live import fragments as live_fragments
from tasks_app.live import hub as live_hub
from tasks_app.models import Membership, Role, TaskEvent
from tests.live_sockets import (
    close_code,
    connect_live,
    count_log_checks,
    event_ids,
    receive_ids,
    session_cookie,
    signed_in_client,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(autouse=True)
def renders(monkeypatch):
    """Counts the renders of the fragment cache by (event, page, can_edit[, list view])."""
    live_cache.fragments.clear()
    calls: Counter = Counter()
    real = live_fragments.render_event_html

    def counting(event, *, page, can_edit, view=""):
        # A list page's view joins the key only where it has one (the default view renders as before).
        calls[(event.pk, page, can_edit, *([view] if view else []))] += 1
        return real(event, page=page, can_edit=can_edit, view=view)

    monkeypatch.setattr(live_fragments, "render_event_html", counting)
    yield calls
    live_cache.fragments.clear()


@pytest.fixture(autouse=True)
async def hub():
    """The hub of this test's event loop (the sockets' hub), stopped when the test ends."""
    yield live_hub.hub_for_running_loop()
    await live_hub.reset_hub_for_running_loop()


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


def detail_path(task) -> str:
    return f"/ws/tasks/{task.organization.slug}/{task.public_id}/"


update = database_sync_to_async(services.task_update)
create = database_sync_to_async(services.task_create)


@database_sync_to_async
def event_ids_of(task) -> list[int]:
    return list(TaskEvent.objects.filter(task=task).order_by("id").values_list("pk", flat=True))


@database_sync_to_async
def newest_event_id(task) -> int:
    return TaskEvent.objects.filter(task=task).order_by("-id").values_list("pk", flat=True).first()


async def connect(path, cookie=None, origin="http://testserver"):
    return await connect_live(path, cookie, origin)


# --- who may connect -----------------------------------------------------------------------


async def test_anonymous_sockets_are_closed_with_4401(acme_task):
    for path in ("/ws/tasks/", "/ws/approvals/", detail_path(acme_task)):
        comm, connected = await connect(path)
        # Accepted and closed at once, so the page can tell "signed out" from network trouble.
        assert connected
        code, frames = await close_code(comm)
        assert code == 4401, path
        assert frames == []
        await comm.disconnect()


async def test_it_refuses_a_foreign_origin(cookies):
    comm, connected = await connect("/ws/tasks/", cookies["alice"], origin="http://evil.example")
    assert not connected
    await comm.disconnect()
    comm, connected = await connect("/ws/tasks/", cookies["alice"])
    assert connected
    assert (await close_code(comm, timeout=0.3))[0] is None  # stays open
    await comm.disconnect()


async def test_charlie_on_an_acme_task_and_an_unknown_task_are_closed_with_4404(cookies, acme_task):
    for cookie, path in (
        (cookies["charlie"], detail_path(acme_task)),
        # The same public id under charlie's own organization: globex has no such task.
        (cookies["charlie"], f"/ws/tasks/globex/{acme_task.public_id}/"),
        (cookies["alice"], "/ws/tasks/acme/no-such-task/"),
        # alice's own task id under an organization she is not a member of.
        (cookies["alice"], f"/ws/tasks/globex/{acme_task.public_id}/"),
    ):
        comm, connected = await connect(path, cookie)
        assert connected
        code, frames = await close_code(comm)
        assert code == 4404, path
        assert frames == []
        await comm.disconnect()


# --- who hears what ------------------------------------------------------------------------


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
    assert event_ids(html) == [await newest_event_id(globex_task)]
    await charlie.disconnect()


async def test_the_same_public_id_in_two_organizations_stays_apart(cookies, acme, globex, system_actor):
    """Public ids are unique per organization only: each detail socket hears its own task."""
    acme_twin, _ = await create(organization=acme, actor=system_actor, id="twin-1", title="acme twin")
    globex_twin, _ = await create(organization=globex, actor=system_actor, id="twin-1", title="globex twin")
    alice, connected = await connect("/ws/tasks/acme/twin-1/", cookies["alice"])
    assert connected
    charlie, connected = await connect("/ws/tasks/globex/twin-1/", cookies["charlie"])
    assert connected
    await update(task=acme_twin, actor=system_actor, title="acme only")
    alice_html = await alice.receive_from(timeout=5)
    assert "acme only" in alice_html and event_ids(alice_html) == [await newest_event_id(acme_twin)]
    assert await charlie.receive_nothing(timeout=0.5)
    await update(task=globex_twin, actor=system_actor, title="globex only")
    charlie_html = await charlie.receive_from(timeout=5)
    assert "globex only" in charlie_html and "acme" not in charlie_html
    assert await alice.receive_nothing(timeout=0.3)
    await alice.disconnect()
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


async def test_the_ops_socket_rings_with_each_event_id_of_its_organization_and_nothing_else(
    cookies, acme_task, globex_task, alice_actor, system_actor
):
    for cookie, path in ((cookies["charlie"], "/ws/ops/acme/"), (cookies["alice"], "/ws/ops/nowhere/")):
        comm, connected = await connect(path, cookie)
        assert connected and (await close_code(comm))[0] == 4404, path  # not a member: nothing to hear
        await comm.disconnect()
    alice, connected = await connect(f"/ws/ops/acme/?after={await newest_event_id(acme_task)}", cookies["alice"])
    assert connected
    await update(task=globex_task, actor=system_actor, title="globex secret")
    assert await alice.receive_nothing(timeout=0.5)  # another organization's bell
    await update(task=acme_task, actor=alice_actor, title=XSS)
    html = await alice.receive_from(timeout=5)
    newest = await newest_event_id(acme_task)
    org = acme_task.organization_id
    assert html == f'<meta id="last-event-id" data-event-id="{newest}" data-org-id="{org}" hx-swap-oob="true">'
    await alice.disconnect()


async def test_the_detail_socket_hears_only_its_task(cookies, acme, acme_task, alice_actor):
    other, _ = await create(organization=acme, actor=alice_actor, title="other")
    alice, connected = await connect(detail_path(acme_task), cookies["alice"])
    assert connected
    await update(task=other, actor=alice_actor, priority=1)
    assert await alice.receive_nothing(timeout=0.5)
    await update(task=acme_task, actor=alice_actor, priority=1)
    html = await alice.receive_from(timeout=5)
    latest = await newest_event_id(acme_task)
    assert event_ids(html) == [latest]
    assert 'id="task-header"' in html and "hx-swap-oob" in html
    await alice.disconnect()


async def test_the_detail_socket_pushes_timeline_items_on_top_escaped(cookies, acme_task, alice_actor):
    """The task page's timeline grows live: each event's items on top; a call answered later is
    replaced where it is; hostile text arrives as text."""
    alice, connected = await connect(detail_path(acme_task), cookies["alice"])
    assert connected
    append = database_sync_to_async(services.append_activity)
    (call,) = await append(task=acme_task, actor=alice_actor, entries=[
        {"kind": "tool_call", "tool_name": XSS, "tool_arguments": {"q": XSS}},
    ])  # fmt: skip
    html = await alice.receive_from(timeout=5)
    assert 'hx-swap-oob="afterbegin:#timeline-entries"' in html and f'<li id="tl-a-{call.pk}"' in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img" not in html
    await append(task=acme_task, actor=alice_actor, entries=[
        {"kind": "tool_result", "tool_name": XSS, "tool_output": {"ok": False, "error": XSS}},
    ])  # fmt: skip
    html = await alice.receive_from(timeout=5)
    replaced = f'<li id="tl-a-{call.pk}" class="tl-item tl-activity tl-tool_call is-failed tl-live" hx-swap-oob="true"'
    assert replaced in html
    assert "afterbegin:#timeline-entries" not in html and "<img" not in html
    await update(task=acme_task, actor=alice_actor, title=XSS)
    html = await alice.receive_from(timeout=5)
    event_id = await newest_event_id(acme_task)
    assert f'<li id="tl-e-{event_id}"' in html and "Changed title" in html and "<img" not in html
    await alice.disconnect()


async def test_bob_the_viewer_gets_the_variant_without_edit_controls(cookies, acme_task, alice_actor, renders):
    alice, _ = await connect(detail_path(acme_task), cookies["alice"])
    bob, connected = await connect(detail_path(acme_task), cookies["bob"])
    assert connected
    await update(task=acme_task, actor=alice_actor, status="executing")
    alice_html = await alice.receive_from(timeout=5)
    bob_html = await bob.receive_from(timeout=5)
    assert "<form" in alice_html
    assert "<form" not in bob_html and "hx-post" not in bob_html and "hx-patch" not in bob_html
    assert {key[1:] for key in renders} == {("detail", True), ("detail", False)}
    await alice.disconnect()
    await bob.disconnect()


# --- replay and bells ----------------------------------------------------------------------


async def test_replay_delivers_exactly_the_later_events_in_order(cookies, acme_task, alice_actor):
    for priority in range(1, 6):
        await update(task=acme_task, actor=alice_actor, priority=priority)
    ids = await event_ids_of(acme_task)
    assert len(ids) == 6  # created + 5 updates
    for path in ("/ws/tasks/", detail_path(acme_task)):
        alice, connected = await connect(f"{path}?after={ids[2]}", cookies["alice"])
        assert connected
        received = [event_ids(await alice.receive_from(timeout=5)) for _ in ids[3:]]
        assert received == [[i] for i in ids[3:]]
        assert await alice.receive_nothing(timeout=0.3)
        await alice.disconnect()


async def test_a_late_bell_for_a_replayed_event_sends_nothing_twice(cookies, acme_task, alice_actor):
    """The bell of an event the socket already replayed (committed just before it joined, its
    bell arriving after) delivers nothing again; the next event still arrives, once."""
    alice, _ = await connect("/ws/tasks/?after=0", cookies["alice"])
    created_id = event_ids(await alice.receive_from(timeout=5))[0]
    bell.ring(acme_task.organization_id, created_id)  # this process's hubs, and Redis when configured
    live_hub.ring_local_hubs(acme_task.organization_id, created_id)
    assert await alice.receive_nothing(timeout=0.5)
    await update(task=acme_task, actor=alice_actor, priority=9)
    latest = await newest_event_id(acme_task)
    assert event_ids(await alice.receive_from(timeout=5)) == [latest]
    # The same bell again (its Redis copy, a second process): still once.
    bell.ring(acme_task.organization_id, latest)
    assert await alice.receive_nothing(timeout=0.5)
    await alice.disconnect()


async def test_out_of_order_and_lost_bells_lose_nothing(cookies, acme_task, alice_actor, hub, monkeypatch, settings):
    """The bell carries no data: a bell for a later event brings every earlier one too, in id
    order; late bells for events already sent do nothing; a skipped bell costs nothing."""
    settings.LIVE_IDLE_CHECK_SECONDS = 3600  # no idle check after the first: only bells move the socket
    checks = count_log_checks(hub)
    alice, connected = await connect("/ws/tasks/", cookies["alice"])
    assert connected
    assert await wait_for(lambda: checks)  # the hub's first (and, here, last) look at the log

    real_ring = bell.ring
    rung: list[tuple[int, int]] = []
    monkeypatch.setattr(bell, "ring", lambda org, event_id: rung.append((org, event_id)))
    for priority in (1, 2, 3):
        await update(task=acme_task, actor=alice_actor, priority=priority)
    ids = (await event_ids_of(acme_task))[-3:]
    assert [event_id for _, event_id in rung] == ids  # the write path rang, we held the bells back
    assert await alice.receive_nothing(timeout=0.5)  # no bell, no idle check: nothing moves

    org = acme_task.organization_id
    real_ring(org, ids[2])  # the newest bell first
    assert await receive_ids(alice, 3) == ids
    real_ring(org, ids[0])  # the older bells, late
    real_ring(org, ids[1])
    assert await alice.receive_nothing(timeout=0.5)

    # A bell lost (never rung), then the next one: both events arrive, in order.
    await update(task=acme_task, actor=alice_actor, priority=4)
    await update(task=acme_task, actor=alice_actor, priority=5)
    lost, next_one = (await event_ids_of(acme_task))[-2:]
    assert await alice.receive_nothing(timeout=0.3)
    real_ring(org, next_one)
    assert await receive_ids(alice, 2) == [lost, next_one]
    assert await alice.receive_nothing(timeout=0.3)
    assert len(checks) == 1
    await alice.disconnect()


async def test_the_idle_check_delivers_an_event_whose_bell_never_rang(
    cookies, acme_task, alice_actor, hub, monkeypatch, settings
):
    settings.LIVE_IDLE_CHECK_SECONDS = 0.5
    monkeypatch.setattr(bell, "ring", lambda org, event_id: None)  # every bell lost (Redis down, crash)
    list_socket, _ = await connect("/ws/tasks/", cookies["alice"])
    detail_socket, connected = await connect(detail_path(acme_task), cookies["alice"])
    assert connected
    bells, catchups = hub.stats["bells"], hub.stats["idle_catchups"]
    await update(task=acme_task, actor=alice_actor, priority=42)
    await update(task=acme_task, actor=alice_actor, priority=43)
    expected = (await event_ids_of(acme_task))[-2:]
    assert await receive_ids(list_socket, 2, timeout=5) == expected
    assert await receive_ids(detail_socket, 2, timeout=5) == expected
    assert hub.stats["idle_catchups"] > catchups and hub.stats["bells"] == bells
    assert await list_socket.receive_nothing(timeout=0.3)
    await list_socket.disconnect()
    await detail_socket.disconnect()


async def test_a_page_too_far_behind_is_told_to_reload_with_4409(cookies, acme_task, alice_actor, monkeypatch):
    monkeypatch.setattr(live_hub, "REPLAY_PAGE", 2)
    monkeypatch.setattr(live_hub, "REPLAY_MAX", 3)
    for priority in range(1, 7):
        await update(task=acme_task, actor=alice_actor, priority=priority)
    alice, connected = await connect("/ws/tasks/?after=0", cookies["alice"])
    assert connected
    code, frames = await close_code(alice)
    assert code == 4409
    assert len(frames) < len(await event_ids_of(acme_task))  # it stopped replaying
    # A page that is not that far behind replays as usual.
    ids = await event_ids_of(acme_task)
    recent, connected = await connect(f"/ws/tasks/?after={ids[-2]}", cookies["alice"])
    assert connected
    assert await receive_ids(recent, 1) == [ids[-1]]
    assert (await close_code(recent, timeout=0.3))[0] is None
    await recent.disconnect()


async def test_each_event_is_rendered_once_per_process_not_per_socket(cookies, acme_task, alice_actor, renders):
    sockets = [(await connect("/ws/tasks/", cookies["alice"]))[0] for _ in range(5)]
    sockets += [(await connect("/ws/tasks/", cookies["bob"]))[0] for _ in range(3)]
    sockets += [(await connect(detail_path(acme_task), cookies["alice"]))[0] for _ in range(3)]
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
    await database_sync_to_async(services.hitl_decide)(hitl=hitl, actor=services.Actor.for_user(alice), approve=True)
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


# --- credentials re-checked while the socket is open -----------------------------------------


def _sign_out(how: str, client, user) -> None:
    if how == "logout":
        assert client.post("/logout/").status_code in (200, 302)
    elif how == "session deleted":
        from django.contrib.sessions.models import Session

        Session.objects.filter(session_key=client.session.session_key).delete()
    elif how == "password changed":
        user.set_password("a new password")
        user.save()
    elif how == "deactivated":
        user.is_active = False
        user.save()
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["logout", "session deleted", "password changed", "deactivated"])
async def test_signing_out_closes_the_open_sockets_with_4401_within_seconds(
    how, alice, acme_task, alice_actor, settings
):
    settings.LIVE_CREDENTIALS_CHECK_SECONDS = 0.3
    client, cookie = await database_sync_to_async(signed_in_client)(alice)
    sockets = [(await connect(path, cookie))[0] for path in ("/ws/tasks/", detail_path(acme_task), "/ws/approvals/")]
    for comm in sockets:
        assert (await close_code(comm, timeout=0.5))[0] is None  # open and checked at least once
    await database_sync_to_async(_sign_out)(how, client, alice)
    started = time.monotonic()
    for comm in sockets:
        code, frames = await close_code(comm, timeout=5)
        assert code == 4401
        assert frames == []
    assert time.monotonic() - started < 3
    # Nothing of later changes reaches this session any more.
    await update(task=acme_task, actor=alice_actor, priority=3)
    for comm in sockets:
        assert await comm.receive_nothing(timeout=0.2)
        await comm.disconnect()


async def test_a_removed_membership_closes_the_socket_with_4403(cookies, alice, acme_task, alice_actor, settings):
    settings.LIVE_CREDENTIALS_CHECK_SECONDS = 0.3
    list_socket, _ = await connect("/ws/tasks/", cookies["alice"])
    detail_socket, connected = await connect(detail_path(acme_task), cookies["alice"])
    assert connected
    assert (await close_code(detail_socket, timeout=0.5))[0] is None
    await database_sync_to_async(lambda: Membership.objects.filter(user=alice).delete())()
    started = time.monotonic()
    for comm in (list_socket, detail_socket):
        code, frames = await close_code(comm, timeout=5)
        assert code == 4403
        assert frames == []
    assert time.monotonic() - started < 3
    await list_socket.disconnect()
    await detail_socket.disconnect()


async def test_a_removed_membership_takes_only_that_organization_away(
    acme, globex, acme_task, globex_task, system_actor, django_user_model, settings
):
    settings.LIVE_CREDENTIALS_CHECK_SECONDS = 0.3

    def setup():
        dave = django_user_model.objects.create_user("dave", password="taskdesk")
        for org in (acme, globex):
            Membership.objects.create(user=dave, organization=org, role=Role.OPERATOR)
        return dave, session_cookie(dave)

    dave, cookie = await database_sync_to_async(setup)()
    sock, connected = await connect("/ws/tasks/", cookie)
    assert connected
    await update(task=acme_task, actor=system_actor, priority=1)
    assert event_ids(await sock.receive_from(timeout=5)) == [await newest_event_id(acme_task)]
    await database_sync_to_async(lambda: Membership.objects.filter(user=dave, organization=acme).delete())()
    notice = await sock.receive_from(timeout=5)
    assert 'id="live-notice"' in notice and "hx-swap-oob" in notice
    await update(task=acme_task, actor=system_actor, priority=2, title="acme after dave left")
    await update(task=globex_task, actor=system_actor, priority=2)
    html = await sock.receive_from(timeout=5)
    assert f'id="task-{globex_task.pk}"' in html and "acme" not in html
    assert event_ids(html) == [await newest_event_id(globex_task)]
    assert await sock.receive_nothing(timeout=0.5)
    await sock.disconnect()


async def test_a_changed_role_changes_the_controls_pushed_from_then_on(
    cookies, alice, acme_task, system_actor, settings
):
    settings.LIVE_CREDENTIALS_CHECK_SECONDS = 0.3
    sock, connected = await connect(detail_path(acme_task), cookies["alice"])
    assert connected
    await update(task=acme_task, actor=system_actor, priority=1)
    assert "<form" in await sock.receive_from(timeout=5)
    await database_sync_to_async(lambda: Membership.objects.filter(user=alice).update(role=Role.VIEWER))()
    notice = await sock.receive_from(timeout=5)
    assert 'id="live-notice"' in notice
    await update(task=acme_task, actor=system_actor, priority=2)
    html = await sock.receive_from(timeout=5)
    assert event_ids(html) == [await newest_event_id(acme_task)]
    assert "<form" not in html and "hx-post" not in html and "hx-patch" not in html
    await sock.disconnect()


# --- a list page's view: what is pushed is judged by the page's own filters -----------------


def _list_news(html: str) -> dict[str, str] | None:
    import re

    marker = re.search(r"<template data-list-news([^>]*)></template>", html)
    return dict(re.findall(r'data-([a-z]+)="([^"]*)"', marker.group(1))) if marker else None


async def test_a_filtered_list_is_told_a_non_matching_change_is_not_new_and_a_matching_one_is(
    cookies, acme, acme_task, system_actor
):
    other, _ = await create(organization=acme, actor=system_actor, title="not waiting", agent="bot")
    alice, connected = await connect("/ws/tasks/?view=hitl%3Dyes", cookies["alice"])
    assert connected
    await update(task=other, actor=system_actor, priority=5)
    html = await alice.receive_from(timeout=5)
    assert _list_news(html) == {"view": "hitl=yes", "task": f"task-{other.pk}", "match": "0", "moved": "0"}
    assert "task-new-" not in html
    await update(task=acme_task, actor=system_actor, status="executing")
    assert _list_news(await alice.receive_from(timeout=5))["match"] == "0"
    await database_sync_to_async(services.hitl_request)(task=acme_task, actor=system_actor, question="Refund?")
    html = await alice.receive_from(timeout=5)
    assert _list_news(html) == {"view": "hitl=yes", "task": f"task-{acme_task.pk}", "match": "1", "moved": "0"}
    # A new task that does not wait for a person is not news either; the page inserts no row.
    fresh, _ = await create(organization=acme, actor=system_actor, title="brand new")
    html = await alice.receive_from(timeout=5)
    assert _list_news(html)["match"] == "0" and "task-new-" not in html
    await alice.disconnect()


async def test_a_list_socket_follows_the_view_its_page_sends(cookies, acme_task, system_actor, hub, renders):
    default, _ = await connect("/ws/tasks/", cookies["alice"])
    alice, connected = await connect("/ws/tasks/", cookies["alice"])
    assert connected
    await update(task=acme_task, actor=system_actor, priority=1)
    assert _list_news(await alice.receive_from(timeout=5)) is None  # the default view: rows only
    await default.receive_from(timeout=5)

    await alice.send_to(text_data=json.dumps({"view": "sort=-updated&status=bogus"}))
    assert await wait_for(
        lambda: any(reg.reader.view == "sort=-updated" for regs in hub.registrations.values() for reg in regs)
    )
    for frame in ("not json", json.dumps(["view"]), json.dumps({"view": 7}), "x" * 5000):
        await alice.send_to(text_data=frame)  # ignored, the socket stays
    await update(task=acme_task, actor=system_actor, priority=2)
    html = await alice.receive_from(timeout=5)
    assert _list_news(html) == {"view": "sort=-updated", "task": f"task-{acme_task.pk}", "match": "1", "moved": "1"}
    assert _list_news(await default.receive_from(timeout=5)) is None
    latest = await newest_event_id(acme_task)
    # One render per (event, page, role, view): the default view's and this view's.
    assert renders[(latest, "list", True)] == 1 and renders[(latest, "list", True, "sort=-updated")] == 1
    await alice.disconnect()
    await default.disconnect()


async def test_two_sockets_on_one_view_share_its_render_and_a_viewer_gets_its_own(
    cookies, acme_task, system_actor, renders
):
    path = "/ws/tasks/?view=status%3Dpending"
    sockets = [(await connect(path, cookies[name]))[0] for name in ("alice", "alice", "bob")]
    await update(task=acme_task, actor=system_actor, title="renamed")
    frames = [await comm.receive_from(timeout=5) for comm in sockets]
    latest = await newest_event_id(acme_task)
    assert frames[0] == frames[1] and "<form" in frames[0] and "<form" not in frames[2]
    assert all(_list_news(frame)["match"] == "1" for frame in frames)
    assert renders[(latest, "list", True, "status=pending")] == 1
    assert renders[(latest, "list", False, "status=pending")] == 1
    for comm in sockets:
        await comm.disconnect()


async def test_a_catch_up_that_fails_leaves_nothing_registered(hub, acme, monkeypatch):
    """The database away while a socket connects: the error goes on (the socket closes) and the
    hub keeps neither its registration nor its identity for the credentials checks."""
    from django.db import OperationalError

    from tasks_app.live.credentials import Identity

    class Reader:
        page, view, task_pk = "list", "", None
        orgs = {acme.pk: True}
        identity = Identity(user_id=1, session_key="gone")

        async def push(self, html, frame=None): ...

        async def end(self, code): ...

    async def database_away(*args, **kwargs):
        raise OperationalError("the database is away")

    monkeypatch.setattr(hub, "_catch_up", database_away)
    with pytest.raises(OperationalError):
        await hub.attach(Reader(), None)
    assert not hub.identities
    assert not hub.registrations.get(acme.pk)
