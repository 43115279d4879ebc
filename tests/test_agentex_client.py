"""The real agentex-client (0.28.x) driving Taskdesk's Agentex face on a real daphne server.

Each test runs the async client with asyncio.run; database checks happen outside the loop.
"""

import asyncio
import json

import pytest

from tasks_app.models import Agent, TaskEvent

from .clients_conftest import (  # noqa: F401
    assert_written_by,
    events_of,
    face_world_fixture,
    requires_agentex,
    task_of,
)

pytestmark = [requires_agentex, pytest.mark.django_db(transaction=True)]

LABEL = "token:agent-one"


def _client(world, token=None):
    from agentex import AsyncAgentex

    # No retries: a refusal must show up as the first answer, not after the client's backoff.
    return AsyncAgentex(base_url=world.url + "/agentex", api_key=token or world.acme_token, max_retries=0)


def test_it_creates_reads_and_updates_tasks(face_world):
    async def scenario():
        ax = _client(face_world)
        out = {}
        created = await ax.agents.rpc_by_name(
            "planner",
            method="task/create",
            params={"name": "plan-1", "params": {"a": 1, "b": {"x": 1}}, "task_metadata": {"team": "ops"}},
        )
        out["created"] = created
        task_id = created.result.id
        out["again"] = await ax.agents.rpc_by_name("planner", method="task/create", params={"name": "plan-1"})
        out["retrieved"] = await ax.tasks.retrieve(task_id, relationships=["agents"])
        agent_id = out["retrieved"].agents[0].id
        out["by_id_rpc"] = await ax.agents.rpc(agent_id, method="task/create", params={"name": "plan-2"}, id=7)
        out["by_name"] = await ax.tasks.retrieve_by_name("plan-1")
        out["listed"] = await ax.tasks.list()
        out["listed_running"] = await ax.tasks.list(status="RUNNING", agent_name="planner")
        out["listed_done"] = await ax.tasks.list(status="COMPLETED")
        out["listed_meta"] = await ax.tasks.list(task_metadata=json.dumps({"team": "ops"}))
        out["listed_page2"] = await ax.tasks.list(limit=1, page_number=2, order_by="created_at", order_direction="asc")
        out["updated"] = await ax.tasks.update_by_id(
            task_id, task_metadata={"new": True}, merge_params={"b": {"y": 2}, "c": 3}
        )
        out["updated_by_name"] = await ax.tasks.update_by_name("plan-1", merge_params={"d": 4})
        return out

    out = asyncio.run(scenario())
    created = out["created"].result
    assert out["created"].jsonrpc == "2.0"
    assert (created.name, created.status, created.params, created.task_metadata) == (
        "plan-1",
        "RUNNING",
        {"a": 1, "b": {"x": 1}},
        {"team": "ops"},
    )
    assert out["again"].result.id == created.id  # task/create is get-or-create by name
    retrieved = out["retrieved"]
    assert retrieved.id == created.id and [a.name for a in retrieved.agents] == ["planner"]
    assert out["by_id_rpc"].id == 7 and out["by_id_rpc"].result.name == "plan-2"
    assert out["by_name"].id == created.id
    assert {t.name for t in out["listed"]} == {"plan-1", "plan-2"}
    assert {t.name for t in out["listed_running"]} == {"plan-1", "plan-2"}
    assert out["listed_done"] == []
    assert [t.name for t in out["listed_meta"]] == ["plan-1"]
    assert [t.name for t in out["listed_page2"]] == ["plan-2"]
    assert out["updated"].task_metadata == {"new": True}  # replaced
    assert out["updated"].params == {"a": 1, "b": {"y": 2}, "c": 3}  # shallow-merged
    assert out["updated_by_name"].params == {"a": 1, "b": {"y": 2}, "c": 3, "d": 4}

    agent = Agent.objects.get(organization=face_world.acme, name="planner")
    row = task_of(face_world.acme, created.id)
    assert (row.agent, row.metadata, row.params) == (agent, {"new": True}, {"a": 1, "b": {"y": 2}, "c": 3, "d": 4})
    events = events_of(face_world.acme, created.id)
    assert_written_by(events, LABEL, "agentex")
    assert [e.type for e in events] == ["task.created", "task.updated", "task.updated"]
    assert events[1].after == {"metadata": {"new": True}, "params": {"b": {"y": 2}, "c": 3}}


def test_it_moves_tasks_with_the_lifecycle_actions(face_world):
    import agentex

    async def scenario():
        ax = _client(face_world)
        ids = {}
        for name in ("interrupt", "cancel", "terminate", "timeout", "fail", "rpc-cancel"):
            ids[name] = (await ax.agents.rpc_by_name("worker", method="task/create", params={"name": name})).result.id
        out = {
            "interrupted": await ax.tasks.interrupt(ids["interrupt"], reason="waiting for input"),
            "resumed_completed": await ax.tasks.complete(ids["interrupt"], reason="done"),
            "canceled": await ax.tasks.cancel(ids["cancel"], reason="not needed"),
            "terminated": await ax.tasks.terminate(ids["terminate"]),
            "timed_out": await ax.tasks.timeout(ids["timeout"]),
            "failed": await ax.tasks.fail(ids["fail"], reason="boom"),
            "rpc_canceled": await ax.agents.rpc_by_name(
                "worker", method="task/cancel", params={"task_name": "rpc-cancel"}
            ),
        }
        with pytest.raises(agentex.BadRequestError) as conflict:  # upstream: a ClientError, 400
            await ax.tasks.fail(ids["interrupt"], reason="too late")
        out["conflict"] = conflict.value
        with pytest.raises(agentex.NotFoundError) as missing:
            await ax.tasks.retrieve("no-such-task")
        out["missing"] = missing.value
        return ids, out

    ids, out = asyncio.run(scenario())
    assert (out["interrupted"].status, out["interrupted"].status_reason) == ("INTERRUPTED", "waiting for input")
    assert (out["resumed_completed"].status, out["resumed_completed"].status_reason) == ("COMPLETED", "done")
    assert (out["canceled"].status, out["canceled"].status_reason) == ("CANCELED", "not needed")
    assert (out["terminated"].status, out["terminated"].status_reason) == ("TERMINATED", "Task terminated")
    assert (out["timed_out"].status, out["timed_out"].status_reason) == ("TIMED_OUT", "Task timed_out")
    assert (out["failed"].status, out["failed"].status_reason) == ("FAILED", "boom")
    assert out["rpc_canceled"].result.status == "CANCELED"
    assert out["conflict"].status_code == 400 and out["missing"].status_code == 404
    assert out["conflict"].body["code"] == 400 and "completed is final" in out["conflict"].body["message"]
    assert out["conflict"].body["data"]["current_status"] == "COMPLETED"
    assert out["missing"].body == {"message": "Task not found: no-such-task", "code": 404, "data": None}

    assert task_of(face_world.acme, ids["interrupt"]).status == "completed"
    assert task_of(face_world.acme, ids["timeout"]).status == "timed_out"
    for name, task_id in ids.items():
        events = events_of(face_world.acme, task_id)
        assert_written_by(events, LABEL, "agentex")
        assert len(events) == (3 if name == "interrupt" else 2), name  # the refused fail wrote nothing


def test_it_soft_deletes(face_world):
    import agentex

    async def scenario():
        ax = _client(face_world)
        keep = (await ax.agents.rpc_by_name("bot", method="task/create", params={"name": "keep"})).result
        gone = (await ax.agents.rpc_by_name("bot", method="task/create", params={"name": "gone"})).result
        by_name = (await ax.agents.rpc_by_name("bot", method="task/create", params={"name": "gone-2"})).result
        deleted = await ax.tasks.delete(gone.id)
        await ax.tasks.delete_by_name("gone-2")
        out = {
            "deleted": deleted,
            "listed": await ax.tasks.list(),
            "listed_deleted": await ax.tasks.list(status="DELETED"),
        }
        # Upstream: a deleted task is not found, by id or by name, and never listed.
        with pytest.raises(agentex.NotFoundError):
            await ax.tasks.retrieve(gone.id)
        with pytest.raises(agentex.NotFoundError):
            await ax.tasks.retrieve_by_name("gone-2")
        with pytest.raises(agentex.NotFoundError):
            await ax.tasks.complete(gone.id)
        with pytest.raises(agentex.NotFoundError):
            await ax.tasks.update_by_id(gone.id, task_metadata={"x": 1})
        with pytest.raises(agentex.NotFoundError):
            await ax.tasks.delete(gone.id)
        return keep, gone, by_name, out

    keep, gone, by_name, out = asyncio.run(scenario())
    assert (out["deleted"].id, out["deleted"].message) == (gone.id, f"Task {gone.id} deleted")
    assert [t.id for t in out["listed"]] == [keep.id]
    assert out["listed_deleted"] == []
    row = task_of(face_world.acme, gone.id)
    assert row.deleted_at is not None and row.status == "executing" and row.metadata == {}
    events = events_of(face_world.acme, gone.id)
    assert_written_by(events, LABEL, "agentex")
    assert [e.type for e in events] == ["task.created", "task.deleted"]


def test_it_streams_task_events(face_world):
    async def scenario():
        ax = _client(face_world)
        task = (await ax.agents.rpc_by_name("bot", method="task/create", params={"name": "streamed"})).result
        stream = await ax.tasks.stream_events(task.id)
        frames = [await asyncio.wait_for(stream.__anext__(), 10)]
        await ax.tasks.update_by_id(task.id, merge_params={"step": 1})
        frames.append(await asyncio.wait_for(stream.__anext__(), 10))
        await ax.tasks.complete(task.id)
        frames.append(await asyncio.wait_for(stream.__anext__(), 10))

        async def rest(s):
            return [frame async for frame in s]

        # Like upstream, the stream ends after the terminal task_updated: reading to the end returns.
        after_terminal = await asyncio.wait_for(rest(stream), 10)
        # A finished task's stream ends right after `connected`.
        by_name = await asyncio.wait_for(rest(await ax.tasks.stream_events_by_name("streamed")), 10)
        return task, frames, after_terminal, by_name

    task, frames, after_terminal, by_name = asyncio.run(scenario())
    assert after_terminal == [] and by_name == [{"type": "connected", "taskId": task.id}]
    first = by_name[0]
    assert frames[0] == {"type": "connected", "taskId": task.id}
    assert frames[1]["type"] == "task_updated" and frames[1]["task"]["params"] == {"step": 1}
    assert frames[1]["task"]["status"] == "RUNNING"
    assert frames[2]["task"]["status"] == "COMPLETED" and frames[2]["task"]["id"] == task.id
    assert first == {"type": "connected", "taskId": task.id}


def test_it_keeps_organizations_apart_and_checks_the_key(face_world):
    import agentex
    import httpx

    async def scenario():
        task = (
            await _client(face_world).agents.rpc_by_name("secret", method="task/create", params={"name": "acme-only"})
        ).result
        outsider = _client(face_world, token=face_world.globex_token)
        calls = {
            "retrieve": outsider.tasks.retrieve(task.id),
            "retrieve_by_name": outsider.tasks.retrieve_by_name("acme-only"),
            "update": outsider.tasks.update_by_id(task.id, task_metadata={"x": 1}),
            "update_by_name": outsider.tasks.update_by_name("acme-only", merge_params={"x": 1}),
            "delete": outsider.tasks.delete(task.id),
            "cancel": outsider.tasks.cancel(task.id),
            "complete": outsider.tasks.complete(task.id),
            "interrupt": outsider.tasks.interrupt(task.id),
            "rpc_cancel": outsider.agents.rpc_by_name("secret", method="task/cancel", params={"task_id": task.id}),
            "rpc_by_id": outsider.agents.rpc("1", method="task/create", params={"name": "x"}),
            "revoked": _client(face_world, token=face_world.revoked_token).tasks.retrieve(task.id),
            "bad_key": _client(face_world, token="td_not-a-token").tasks.list(),
        }
        statuses = {}
        for name, call in calls.items():
            try:
                await call
                statuses[name] = 200
            except agentex.APIStatusError as exc:
                statuses[name] = exc.status_code
        statuses["list"] = [t.id for t in await outsider.tasks.list()]
        async with httpx.AsyncClient() as client:
            stream = await client.get(
                f"{face_world.url}/agentex/tasks/{task.id}/stream",
                headers={"Authorization": f"Bearer {face_world.globex_token}"},
            )
            statuses["stream"] = stream.status_code
        return task, statuses

    before = TaskEvent.objects.count()
    task, statuses = asyncio.run(scenario())
    assert statuses == {
        "retrieve": 404,
        "retrieve_by_name": 404,
        "update": 404,
        "update_by_name": 404,
        "delete": 404,
        "cancel": 404,
        "complete": 404,
        "interrupt": 404,
        "rpc_cancel": 404,
        "rpc_by_id": 404,
        "revoked": 401,
        "bad_key": 401,
        "list": [],
        "stream": 404,
    }
    assert TaskEvent.objects.count() == before + 1  # acme's own create only
    row = task_of(face_world.acme, task.id)
    assert (row.status, row.version, row.metadata, row.deleted_at) == ("executing", 1, {}, None)
    # Only task/create registers an unseen agent name; a refused cancel registers nothing.
    assert not Agent.objects.filter(organization=face_world.globex).exists()


def test_it_answers_422_in_agentex_shape(face_world):
    import agentex

    async def scenario():
        ax = _client(face_world)
        task = (await ax.agents.rpc_by_name("bot", method="task/create", params={"name": "v"})).result
        errors = {}
        for name, call in {
            "metadata_not_object": ax.tasks.update_by_id(task.id, task_metadata="oops"),
            "unknown_status_filter": ax.tasks.list(extra_query={"status": "DONE"}),
            "unsupported_rpc": ax.agents.rpc_by_name("bot", method="message/send", params={"content": {}}),
        }.items():
            with pytest.raises(agentex.UnprocessableEntityError) as exc:
                await call
            errors[name] = exc.value.body
        return task, errors

    task, errors = asyncio.run(scenario())
    for name, body in errors.items():
        assert isinstance(body["detail"], list) and body["detail"], name
        assert {"loc", "msg", "type"} <= set(body["detail"][0]), name
        # What upstream's server answers beside the seed's shape.
        assert (body["status_code"], body["data"]) == (10422, None) and body["message"], name
    assert errors["metadata_not_object"]["detail"][0]["loc"] == ["body", "task_metadata"]
    assert errors["metadata_not_object"]["message"].startswith("body.task_metadata: ")
    assert errors["unknown_status_filter"]["detail"][0]["loc"] == ["query", "status"]
    assert len(events_of(face_world.acme, task.id)) == 1


def test_two_organizations_may_use_the_same_task_name(face_world):
    async def scenario():
        ours = (await _client(face_world).agents.rpc_by_name("bot", method="task/create", params={"name": "n"})).result
        outsider = _client(face_world, token=face_world.globex_token)
        theirs = (await outsider.agents.rpc_by_name("bot", method="task/create", params={"name": "n"})).result
        await outsider.tasks.update_by_name("n", task_metadata={"who": "globex"})
        return ours, theirs, await _client(face_world).tasks.retrieve_by_name("n")

    ours, theirs, acme_read = asyncio.run(scenario())
    assert ours.id != theirs.id  # get-or-create by name stays within the caller's organization
    assert (acme_read.id, acme_read.task_metadata) == (ours.id, {})
    assert task_of(face_world.globex, theirs.id).metadata == {"who": "globex"}
    assert task_of(face_world.acme, ours.id).metadata == {}
    assert_written_by(events_of(face_world.globex, theirs.id), "token:outsider", "agentex")


def test_it_follows_upstreams_error_contract_and_status_reasons(face_world):
    import agentex

    async def scenario():
        ax = _client(face_world)
        ids = {}
        for name in ("complete", "cancel", "interrupt", "fail"):
            ids[name] = (await ax.agents.rpc_by_name("bot", method="task/create", params={"name": name})).result.id
        out = {name: await getattr(ax.tasks, name)(task_id) for name, task_id in ids.items()}
        refusals = {}
        for name, call in {
            "interrupt_interrupted": ax.tasks.interrupt(ids["interrupt"]),
            "interrupt_finished": ax.tasks.interrupt(ids["complete"]),
            "complete_completed": ax.tasks.complete(ids["complete"]),
            "cancel_canceled": ax.tasks.cancel(ids["cancel"]),
        }.items():
            with pytest.raises(agentex.BadRequestError) as exc:
                await call
            refusals[name] = exc.value
        return ids, out, refusals

    ids, out, refusals = asyncio.run(scenario())
    assert {name: (t.status, t.status_reason) for name, t in out.items()} == {
        "complete": ("COMPLETED", "Task completed"),
        "cancel": ("CANCELED", "Task canceled"),
        "interrupt": ("INTERRUPTED", "Task interrupted"),
        "fail": ("FAILED", "Task failed"),
    }
    for name, exc in refusals.items():
        assert exc.status_code == 400, name
        assert set(exc.body) == {"message", "code", "data"} and exc.body["code"] == 400, name
    assert refusals["interrupt_interrupted"].body["data"]["current_status"] == "INTERRUPTED"
    for name, task_id in ids.items():
        assert len(events_of(face_world.acme, task_id)) == 2, name  # the refusals wrote nothing


def test_newer_clients_unknown_fields_are_ignored_and_known_ones_still_checked(face_world):
    import agentex

    async def scenario():
        ax = _client(face_world)
        created = await ax.agents.rpc_by_name(
            "bot", method="task/create", params={"name": "fresh"}, extra_body={"trace": {"span": 1}}
        )
        task_id = created.result.id
        updated = await ax.tasks.update_by_id(
            task_id, task_metadata={"a": 1}, extra_body={"priority_hint": "high", "status": "COMPLETED"}
        )
        again = await ax.tasks.update_by_id(task_id, merge_params={"b": 2}, extra_body={"priority_hint": "low"})
        done = await ax.tasks.complete(task_id, extra_body={"cost": 3})
        listed = await ax.tasks.list(extra_query={"include_archived": "true"})
        with pytest.raises(agentex.UnprocessableEntityError):
            await ax.tasks.update_by_id(task_id, task_metadata="still strict")
        return created, updated, again, done, listed

    created, updated, again, done, listed = asyncio.run(scenario())
    assert created.result.name == "fresh"
    assert (updated.status, updated.task_metadata) == ("RUNNING", {"a": 1})  # status is not a PUT field
    assert again.params == {"b": 2} and done.status == "COMPLETED"
    assert [t.id for t in listed] == [created.result.id]
    assert [e.type for e in events_of(face_world.acme, created.result.id)] == [
        "task.created",
        "task.updated",
        "task.updated",
        "task.updated",
    ]
