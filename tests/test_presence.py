"""Presence on a task's page (live/presence.py over consumers.py): who else has it open and who
edits which field, from the session only, within the task's organization; gone at once on close
and within seconds without one; across processes through the channel layer (Redis)."""

import asyncio
import contextlib
import json
import re
import time

import pytest
from django.test import override_settings

from tasks_app import services
from tasks_app.live import hub as live_hub
from tasks_app.live import presence as live_presence
from tests.conftest import requires_redis
from tests.live_sockets import close_code, connect_live, session_cookie, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

PERSON = re.compile(r'data-name="([^"]*)" data-editing="([^"]*)"')


@pytest.fixture(autouse=True)
async def loop_services():
    """The hub and presence of this test's event loop, stopped when the test ends."""
    yield
    await live_presence.reset_presence_for_running_loop()
    await live_hub.reset_hub_for_running_loop()


@pytest.fixture
def cookies(alice, bob, charlie):
    return {u.username: session_cookie(u) for u in (alice, bob, charlie)}


@pytest.fixture
def task(acme, system_actor):
    return services.task_create(organization=acme, actor=system_actor, id="t-1", title="acme task")[0]


@pytest.fixture
def other_task(acme, system_actor):
    return services.task_create(organization=acme, actor=system_actor, id="t-2", title="another")[0]


def path(task) -> str:
    return f"/ws/tasks/acme/{task.public_id}/?after=999999"


async def roster(comm, *, until, timeout: float = 5.0) -> list[tuple[str, str]]:
    """The people of the next #presence frames until `until(people)` holds: [(name, editing)]."""
    deadline = time.monotonic() + timeout
    people: list[tuple[str, str]] | None = None
    while time.monotonic() < deadline:
        # Wait without a receive timeout: the test communicator cancels the consumer on one.
        if comm.output_queue.empty():
            await asyncio.sleep(0.02)
            continue
        frame = await comm.receive_from()
        if 'id="presence"' not in frame:
            continue
        people = PERSON.findall(frame)
        if until(people):
            return people
    raise AssertionError(f"no #presence frame matched; last people seen: {people}")


async def open_page(task, cookie):
    """A task page's socket, as the page opens it: connected, then its first beat."""
    comm, connected = await connect_live(path(task), cookie)
    assert connected
    await beat(comm)
    return comm


async def test_a_socket_that_never_beats_is_neither_shown_nor_sent_presence(cookies, task):
    listener, _ = await connect_live(path(task), cookies["bob"])  # an API-like client: no beats
    alice = await open_page(task, cookies["alice"])
    assert await roster(alice, until=lambda people: people == []) == []
    assert await listener.receive_nothing(timeout=0.5)
    assert [p.name for p in live_presence.presence_for_running_loop().people(task.pk)] == ["alice"]
    await listener.disconnect()
    await alice.disconnect()


async def beat(comm, editing=None, **extra) -> None:
    await comm.send_to(text_data=json.dumps({"presence": {"editing": editing, **extra}}))


@contextlib.asynccontextmanager
async def beating(comm):
    """The page of `comm` beats, as an open page does, for the block's duration."""

    async def keep_beating():
        while True:
            await beat(comm)
            await asyncio.sleep(0.3)

    task = asyncio.create_task(keep_beating())
    try:
        yield
    finally:
        task.cancel()


async def test_each_sees_the_other_never_themselves_and_who_edits_what(cookies, task):
    alice = await open_page(task, cookies["alice"])
    assert await roster(alice, until=lambda people: people == []) == []
    bob = await open_page(task, cookies["bob"])
    assert await roster(alice, until=lambda people: bool(people)) == [("bob", "")]
    assert await roster(bob, until=lambda people: bool(people)) == [("alice", "")]

    # Bob types in the result; the name and the user come from his session, not from his frame.
    await beat(bob, "result", name="mallory", user_id=1)
    assert await roster(alice, until=lambda people: people and people[0][1]) == [("bob", "result")]
    await beat(bob, "password")  # not a field of the page: editing nothing
    assert await roster(alice, until=lambda people: people and not people[0][1]) == [("bob", "")]

    # Closing the page takes him off at once.
    await bob.disconnect()
    assert await roster(alice, until=lambda people: people == [], timeout=2) == []
    await alice.disconnect()


async def test_the_initials_and_the_note_are_rendered_escaped(cookies, task, bob):
    bob.first_name, bob.last_name = "<script>Bo", "Builder"
    await asyncio.to_thread(bob.save)
    alice = await open_page(task, cookies["alice"])
    visitor = await open_page(task, cookies["bob"])
    await beat(visitor, "metadata")
    await roster(alice, until=lambda people: people == [("bob", "metadata")])
    presence = live_presence.presence_for_running_loop()
    frame = live_presence.render_to_string("live/presence.html", {"people": presence.people(task.pk)})
    assert ">SB<" in frame  # the first and last words' initials: markup is no word
    assert "<script>" not in frame
    assert 'title="bob is editing the metadata"' in frame
    assert 'hx-swap-oob="innerHTML"' in frame
    await visitor.disconnect()
    await alice.disconnect()


async def test_a_page_that_stops_beating_disappears_within_seconds(cookies, task):
    with override_settings(LIVE_PRESENCE_TTL_SECONDS=1.5):
        alice = await open_page(task, cookies["alice"])
        silent = await open_page(task, cookies["bob"])  # beats once, then never again: a dead tab
        assert await roster(alice, until=lambda people: bool(people)) == [("bob", "")]
        started = time.monotonic()
        async with beating(alice):
            assert await roster(alice, until=lambda people: people == [], timeout=6) == []
        assert time.monotonic() - started < 4
        await silent.disconnect()
        await alice.disconnect()


async def test_rooms_are_per_task_and_outsiders_never_join(cookies, task, other_task):
    alice = await open_page(task, cookies["alice"])
    elsewhere = await open_page(other_task, cookies["bob"])
    await beat(elsewhere, "status")
    # Charlie (globex) cannot open acme's task: refused before any presence.
    charlie, _ = await connect_live(path(task), cookies["charlie"])
    code, _ = await close_code(charlie)
    assert code == 4404
    with pytest.raises(AssertionError):
        await roster(alice, until=lambda people: bool(people), timeout=1.5)
    presence = live_presence.presence_for_running_loop()
    assert [p.name for p in presence.people(task.pk)] == ["alice"]
    assert [p.name for p in presence.people(other_task.pk)] == ["bob"]
    await elsewhere.disconnect()
    await alice.disconnect()


async def test_a_list_page_joins_no_room(cookies, task):
    listing, _ = await connect_live("/ws/tasks/?after=0", cookies["bob"])
    await listing.send_to(text_data=json.dumps({"presence": {"editing": "result"}}))
    alice = await open_page(task, cookies["alice"])
    assert await roster(alice, until=lambda people: people == []) == []
    assert live_presence.presence_for_running_loop().rooms.keys() == {task.pk}
    await listing.disconnect()
    await alice.disconnect()


class FakePage:
    """A task page's socket as another process's presence holds it."""

    def __init__(self, task_pk: int, user_id: int, name: str) -> None:
        self.task_pk = task_pk
        self.presence_identity = (user_id, name, name[:2].upper())
        self.frames: list[str] = []

    async def push(self, html: str) -> None:
        self.frames.append(html)


@requires_redis
async def test_two_processes_share_their_rosters_through_the_channel_layer(cookies, task, bob):
    """A second Presence on its own channel stands for another daphne: its viewers reach this
    process's sockets through Redis, and vanish when it stops saying they are there."""
    with override_settings(LIVE_PRESENCE_TTL_SECONDS=2):
        alice = await open_page(task, cookies["alice"])
        await roster(alice, until=lambda people: people == [])
        other = live_presence.Presence(asyncio.get_running_loop())
        page = FakePage(task.pk, bob.pk, "bob")
        async with beating(alice):
            try:
                other.start()
                await live_presence_listening(other)
                await other.join(page)
                assert await roster(alice, until=lambda people: bool(people)) == [("bob", "")]
                # The other process heard alice too (its hello asked for this process's roster).
                assert await wait_for(lambda: any('data-name="alice"' in frame for frame in page.frames))
                await other.beat(page, "priority")
                assert await roster(alice, until=lambda people: people and people[0][1]) == [("bob", "priority")]
                # That process dies without a word: its roster expires.
                await other.stop()
                started = time.monotonic()
                assert await roster(alice, until=lambda people: people == [], timeout=6) == []
                assert time.monotonic() - started < 4
            finally:
                await other.stop()
        await alice.disconnect()


async def live_presence_listening(presence) -> None:
    assert await wait_for(lambda: presence.channel_name is not None)


def test_initials():
    assert live_presence.initials_of("alice") == "AL"
    assert live_presence.initials_of("bob", "Bob Builder") == "BB"
    assert live_presence.initials_of("x", "<script>Bo Builder") == "SB"
    assert live_presence.initials_of("ömer") == "ÖM"
    assert live_presence.initials_of("__") == "?"
