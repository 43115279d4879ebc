"""The real xpander-sdk (2.0.x) driving Taskdesk's xpander face on a real daphne server.

Each test runs the SDK's async API with asyncio.run; database checks happen outside the loop.
"""

import asyncio

import httpx
import pytest

from tasks_app.models import ActivityEntry, Agent, TaskEvent

from .clients_conftest import (  # noqa: F401
    assert_written_by,
    events_of,
    face_world_fixture,
    requires_xpander,
    task_of,
)

pytestmark = [requires_xpander, pytest.mark.django_db(transaction=True)]

LABEL = "token:agent-one"


def _config(world, token=None, org="acme"):
    from xpander_sdk import Configuration

    return Configuration(base_url=world.url + "/xpander", api_key=token or world.acme_token, organization_id=org)


def test_it_drives_a_task_through_its_life(face_world):
    from xpander_sdk import AgentExecutionStatus as S
    from xpander_sdk import Tasks
    from xpander_sdk.models.shared import Tokens
    from xpander_sdk.models.user import User

    cfg = _config(face_world)

    async def scenario():
        tasks = Tasks(configuration=cfg)
        out = {}
        task = await tasks.acreate(
            agent_id="research-bot",
            prompt="Summarise Q3",
            title="Q3 summary",
            source="sdk",
            agent_version="7",
            tool_call_payload_extension={"headers": {"X-Trace": "a"}},
            user_details=User(id="u-1", email="u1@example.com"),
            events_streaming=True,
        )
        out["created"] = task.model_copy()
        out["got"] = await tasks.aget(task_id=task.id)
        out["listed"] = await tasks.alist(agent_id="research-bot")
        out["listed_pending"] = await tasks.alist(agent_id="research-bot", filters={"status": "pending"})
        out["listed_completed"] = await tasks.alist(agent_id="research-bot", filters={"status": "completed"})
        out["listed_other_agent"] = await tasks.alist(agent_id="nobody")
        out["user_tasks"] = await tasks.alist_user_tasks(user_id="u-1")

        await task.aset_status(S.Executing)
        out["executing"] = task.model_copy()

        out["updated"] = await tasks.aupdate(
            task_id=task.id, tool_call_payload_extension={"params": {"k": 1}}, last_executed_node_id="node-3"
        )
        await task.areload()
        out["reloaded"] = task.model_copy()

        task.result = "Draft"
        task.tokens = Tokens(prompt_tokens=120, completion_tokens=30)
        task.used_tools = ["search"]
        await task.asave()
        out["saved"] = task.model_copy()

        task.tokens = Tokens(prompt_tokens=200, completion_tokens=50)
        task.used_tools = ["search", "fetch"]
        await task.areport_metrics(configuration=cfg)
        out["after_metrics"] = await tasks.aget(task_id=task.id)

        out["completed"] = await tasks.aupdate(task_id=task.id, status=S.Completed, result="Final")
        out["activity"] = await task.aget_activity_log()
        return out

    out = asyncio.run(scenario())
    created = out["created"]
    assert created.status.value == "pending"
    assert (created.agent_id, created.organization_id, created.title, created.source) == (
        "research-bot",
        "acme",
        "Q3 summary",
        "sdk",
    )
    assert created.input.text == "Summarise Q3" and created.input.user.email == "u1@example.com"
    assert created.agent_version == "7"
    assert created.payload_extension == {"headers": {"X-Trace": "a"}}
    assert out["got"].id == created.id and out["got"].events_streaming is True

    assert [i.id for i in out["listed"]] == [created.id]
    assert out["listed"][0].status.value == "pending" and out["listed"][0].user_id == "u-1"
    assert [i.id for i in out["listed_pending"]] == [created.id]
    assert out["listed_completed"] == [] and out["listed_other_agent"] == []
    assert [i.id for i in out["user_tasks"]] == [created.id]

    assert out["executing"].status.value == "executing" and out["executing"].started_at is not None
    assert out["updated"].payload_extension == {"headers": {"X-Trace": "a"}, "params": {"k": 1}}
    assert out["reloaded"].last_executed_node_id == "node-3"
    assert out["saved"].result == "Draft"
    assert (out["saved"].tokens.prompt_tokens, out["saved"].tokens.completion_tokens) == (120, 30)
    after = out["after_metrics"]
    assert (after.tokens.prompt_tokens, after.tokens.completion_tokens) == (200, 50)
    assert after.used_tools == ["search", "fetch"]
    done = out["completed"]
    assert done.status.value == "completed" and done.result == "Final" and done.finished_at is not None
    assert done.duration > 0  # derived by the lifecycle, not overwritten by asave's echo of 0
    assert out["activity"].id == created.id and out["activity"].messages == []

    row = task_of(face_world.acme, created.id)
    assert row.agent == Agent.objects.get(organization=face_world.acme, name="research-bot")
    assert (row.status, row.result, row.prompt_tokens, row.completion_tokens) == ("completed", "Final", 200, 50)
    assert row.input_user == {
        "id": "u-1",
        "email": "u1@example.com",
        "first_name": None,
        "last_name": None,
        "additional_attributes": None,
        "timezone": None,
    }
    events = events_of(face_world.acme, created.id)
    assert_written_by(events, LABEL, "xpander")
    assert [e.type for e in events] == [
        "task.created",
        "task.updated",  # executing
        "task.updated",  # payload extension + node
        "task.updated",  # asave: result, tokens, tools
        "task.metrics",
        "task.updated",  # completed
    ]
    assert events[1].after["status"] == "executing"
    assert events[-1].after["status"] == "completed"
    assert events[2].after["payload_extension"] == {"params": {"k": 1}}


def test_it_refuses_a_disallowed_transition_and_stale_version_with_409(face_world):
    from xpander_sdk import AgentExecutionStatus as S
    from xpander_sdk import Tasks
    from xpander_sdk.exceptions.module_exception import ModuleException

    cfg = _config(face_world)

    async def scenario():
        tasks = Tasks(configuration=cfg)
        task = await tasks.acreate(agent_id="bot", prompt="x")
        await tasks.aupdate(task_id=task.id, status=S.Completed, result="ok")
        with pytest.raises(ModuleException) as refused:
            await tasks.aupdate(task_id=task.id, status=S.Executing)
        async with httpx.AsyncClient() as client:
            stale = await client.patch(
                f"{face_world.url}/xpander/agent-execution/{task.id}/update",
                json={"result": "changed"},
                headers={"x-api-key": face_world.acme_token, "If-Match": '"1"'},
            )
        return task, refused.value, stale

    task, refused, stale = asyncio.run(scenario())
    assert refused.status_code == 409 and "completed" in refused.description
    assert stale.status_code == 409 and stale.json()["current_version"] == 2
    assert task_of(face_world.acme, task.id).result == "ok"
    assert len(events_of(face_world.acme, task.id)) == 2


def test_it_stops_a_task(face_world):
    from xpander_sdk import Tasks
    from xpander_sdk.exceptions.module_exception import ModuleException

    cfg = _config(face_world)

    async def scenario():
        tasks = Tasks(configuration=cfg)
        first = await tasks.acreate(agent_id="bot", prompt="one")
        second = await tasks.acreate(agent_id="bot", prompt="two")
        stopped = await tasks.astop(task_id=first.id)
        await second.astop()
        with pytest.raises(ModuleException) as again:
            await tasks.astop(task_id=first.id)
        with pytest.raises(ModuleException) as missing:
            await tasks.astop(task_id="no-such-task")
        return stopped, second, again.value, missing.value

    stopped, second, again, missing = asyncio.run(scenario())
    assert stopped.status.value == "stopped" and stopped.is_manually_stopped is True
    assert second.status.value == "stopped" and second.is_manually_stopped is True
    assert again.status_code == 409 and missing.status_code == 404
    for task_id in (stopped.id, second.id):
        events = events_of(face_world.acme, task_id)
        assert_written_by(events, LABEL, "xpander")
        assert events[-1].after["status"] == "stopped"


def test_it_records_an_external_run_whole(face_world):
    from xpander_sdk import Task as XTask
    from xpander_sdk.models.shared import Tokens

    cfg = _config(face_world)

    async def scenario():
        ok = await XTask.areport_external_task(
            configuration=cfg,
            agent_id="ext-bot",
            id="ext-run-1",
            input="What is 2+2?",
            result="4",
            tokens=Tokens(prompt_tokens=11, completion_tokens=2),
            duration=1.5,
            used_tools=["calculator"],
        )
        again = await XTask.areport_external_task(
            configuration=cfg,
            agent_id="ext-bot",
            id="ext-run-1",
            input="What is 2+2?",
            result="4",
            tokens=Tokens(prompt_tokens=11, completion_tokens=2),
            duration=1.5,
            used_tools=["calculator"],
        )
        failed = await XTask.areport_external_task(
            configuration=cfg,
            agent_id="ext-bot",
            input="Book a flight",
            llm_response=[
                {"role": "user", "content": "Book a flight"},
                {"role": "assistant", "content": "No seats left."},
            ],
            is_success=False,
            result="No seats left.",
        )
        return ok, again, failed, await ok.aget_activity_log(), await failed.aget_activity_log()

    ok, again, failed, ok_log, failed_log = asyncio.run(scenario())
    assert ok.id == "ext-run-1" and ok.status.value == "completed" and ok.result == "4"
    assert (ok.tokens.prompt_tokens, ok.tokens.completion_tokens, ok.duration) == (11, 2, 1.5)
    assert ok.used_tools == ["calculator"] and ok.finished_at is not None and ok.agent_id == "ext-bot"
    assert again.id == ok.id  # same report again: the same task, nothing new recorded
    assert failed.status.value == "failed"
    assert [(m.role, m.content.text) for m in ok_log.messages] == [("user", "What is 2+2?"), ("agent", "4")]
    assert [(m.role, m.content.text) for m in failed_log.messages] == [
        ("user", "Book a flight"),
        ("agent", "No seats left."),
    ]

    events = events_of(face_world.acme, "ext-run-1")
    assert_written_by(events, LABEL, "xpander")
    assert [e.type for e in events] == ["task.created", "task.activity"]
    assert events[0].after["status"] == "completed"
    assert ActivityEntry.objects.filter(task=task_of(face_world.acme, "ext-run-1")).count() == 2
    assert Agent.objects.filter(organization=face_world.acme, name="ext-bot").count() == 1


def test_it_streams_task_events_to_aevents(face_world):
    from xpander_sdk import AgentExecutionStatus as S
    from xpander_sdk import Tasks
    from xpander_sdk.modules.tasks.sub_modules.task import Task as XTask

    cfg = _config(face_world)

    async def scenario():
        tasks = Tasks(configuration=cfg)
        task = await tasks.acreate(agent_id="stream-bot", prompt="go", events_streaming=True)
        seen = []
        first = asyncio.Event()

        async def consume():
            async for event in task.aevents():  # ends by itself after task_finished
                seen.append(event)
                first.set()

        async def produce():
            await asyncio.wait_for(first.wait(), 15)
            await tasks.aupdate(task_id=task.id, status=S.Executing)
            await tasks.aupdate(task_id=task.id, status=S.Completed, result="done")

        await asyncio.wait_for(asyncio.gather(consume(), produce()), 30)
        return task, seen

    task, seen = asyncio.run(scenario())
    assert [e.type.value for e in seen] == ["connected", "task_created", "task_updated", "task_finished"]
    assert seen[0].data is None  # the SDK's handshake comes first, before any task event
    seen = seen[1:]
    assert all(isinstance(e.data, XTask) for e in seen)
    assert {(e.task_id, e.organization_id) for e in seen} == {(task.id, "acme")}
    # Each event shows the task as it was then, not as it ended.
    assert [e.data.status.value for e in seen] == ["pending", "executing", "completed"]
    assert seen[0].data.result is None and seen[0].data.started_at is None
    assert seen[-1].data.status.value == "completed" and seen[-1].data.result == "done"


def test_a_finished_tasks_events_replay_each_as_it_was_then(face_world):
    # The task moves on before anyone listens: the replay still shows each step as it was.
    from xpander_sdk import AgentExecutionStatus as S
    from xpander_sdk import Tasks

    cfg = _config(face_world)

    async def scenario():
        tasks = Tasks(configuration=cfg)
        task = await tasks.acreate(agent_id="replay-bot", prompt="go", events_streaming=True)
        await tasks.aupdate(task_id=task.id, status=S.Executing)
        await tasks.aupdate(task_id=task.id, status=S.Completed, result="done")
        return [event async for event in task.aevents()]  # ends by itself after task_finished

    seen = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert [e.type.value for e in seen] == ["connected", "task_created", "task_updated", "task_finished"]
    assert [e.data.status.value for e in seen[1:]] == ["pending", "executing", "completed"]
    assert [e.data.result for e in seen[1:]] == [None, None, "done"]


def test_it_keeps_organizations_apart_and_checks_the_key(face_world):
    from xpander_sdk import AgentExecutionStatus as S
    from xpander_sdk import Tasks
    from xpander_sdk.exceptions.module_exception import ModuleException

    acme_cfg = _config(face_world)
    globex_cfg = _config(face_world, token=face_world.globex_token, org="globex")
    revoked_cfg = _config(face_world, token=face_world.revoked_token)

    async def scenario():
        task = await Tasks(configuration=acme_cfg).acreate(agent_id="secret-bot", prompt="acme only")
        outsider = Tasks(configuration=globex_cfg)
        statuses = {}
        calls = {
            "get": outsider.aget(task_id=task.id),
            "update": outsider.aupdate(task_id=task.id, status=S.Completed),
            "stop": outsider.astop(task_id=task.id),
            "revoked": Tasks(configuration=revoked_cfg).aget(task_id=task.id),
        }
        for name, call in calls.items():
            try:
                await call
                statuses[name] = 200
            except ModuleException as exc:
                statuses[name] = exc.status_code
        listed = await outsider.alist(agent_id="secret-bot")
        async with httpx.AsyncClient(base_url=face_world.url) as client:
            g = {"x-api-key": face_world.globex_token}
            a = {"x-api-key": face_world.acme_token}
            raw = {
                "activity": (await client.get(f"/xpander/activity/secret-bot/{task.id}", headers=g)).status_code,
                "events": (
                    await client.get(f"/xpander/globex/agent-execution/{task.id}/events", headers=g)
                ).status_code,
                "metrics": (
                    await client.post(
                        "/xpander/agents-metrics/secret-bot/execution",
                        json={"execution_id": task.id, "llm_tokens": {"worker": {"prompt_tokens": 5}}},
                        headers=g,
                    )
                ).status_code,
                "wrong_org_in_url": (
                    await client.get(f"/xpander/globex/agent-execution/{task.id}/status", headers=a)
                ).status_code,
                "org_slug_in_url": (
                    await client.get(f"/xpander/acme/agent-execution/{task.id}/status", headers=a)
                ).status_code,
                "no_key": (await client.get(f"/xpander/agent-execution/{task.id}/status")).status_code,
            }
        return task, statuses, listed, raw

    before = TaskEvent.objects.count()
    task, statuses, listed, raw = asyncio.run(scenario())
    assert statuses == {"get": 404, "update": 404, "stop": 404, "revoked": 401}
    assert listed == []
    assert raw == {
        "activity": 404,
        "events": 404,
        "metrics": 404,
        "wrong_org_in_url": 404,
        "org_slug_in_url": 200,
        "no_key": 401,
    }
    assert TaskEvent.objects.count() == before + 1  # only acme's own create
    row = task_of(face_world.acme, task.id)
    assert (row.status, row.version, row.prompt_tokens) == ("pending", 1, 0)
    assert not Agent.objects.filter(organization=face_world.globex).exists()


def test_two_organizations_may_use_the_same_task_id(face_world):
    from xpander_sdk import Task as XTask
    from xpander_sdk import Tasks

    acme_cfg = _config(face_world)
    globex_cfg = _config(face_world, token=face_world.globex_token, org="globex")

    async def scenario():
        ours = await XTask.areport_external_task(
            configuration=acme_cfg, agent_id="bot", id="same-run", input="acme's", result="A"
        )
        theirs = await XTask.areport_external_task(
            configuration=globex_cfg, agent_id="bot", id="same-run", input="globex's", result="G"
        )
        return (
            ours,
            theirs,
            await Tasks(configuration=acme_cfg).aget(task_id="same-run"),
            await Tasks(configuration=globex_cfg).aget(task_id="same-run"),
        )

    ours, theirs, acme_read, globex_read = asyncio.run(scenario())
    assert ours.id == theirs.id == "same-run"
    assert (ours.organization_id, ours.result, acme_read.result, acme_read.input.text) == ("acme", "A", "A", "acme's")
    assert (theirs.organization_id, theirs.result, globex_read.result) == ("globex", "G", "G")
    acme_row, globex_row = task_of(face_world.acme, "same-run"), task_of(face_world.globex, "same-run")
    assert acme_row.pk != globex_row.pk
    assert_written_by(events_of(face_world.acme, "same-run"), LABEL, "xpander")
    assert_written_by(events_of(face_world.globex, "same-run"), "token:outsider", "xpander")


def test_a_paused_task_carries_its_hitl_request(face_world):
    from xpander_sdk import Tasks

    from tasks_app.services import Actor, hitl_decide, hitl_request, task_update

    cfg = _config(face_world)

    async def create():
        task = await Tasks(configuration=cfg).acreate(agent_id="hitl-bot", prompt="refund?")
        return task.id

    task_id = asyncio.run(create())
    row = task_of(face_world.acme, task_id)
    agent = Actor.system("agent")
    task_update(task=row, actor=agent, status="executing", last_executed_node_id="approve-refund")
    hitl = hitl_request(task=task_id, actor=agent, organization_id=face_world.acme.pk, question="Refund 40 EUR?")

    async def read():
        return await Tasks(configuration=cfg).aget(task_id=task_id)

    paused = asyncio.run(read())
    assert paused.status.value == "paused"
    assert paused.hitl_request is not None and paused.hitl_request.wait_node_id == "approve-refund"
    hitl_decide(hitl=hitl, actor=Actor.system("reviewer"), approve=True, organization_id=face_world.acme.pk)
    resumed = asyncio.run(read())
    assert resumed.status.value == "executing" and resumed.hitl_request is None


def test_an_answer_or_a_dismissal_reaches_the_agent_through_its_activity_thread(face_world):
    """The SDK's Task models hitl_request as {wait_node_id} alone: the person's answer reaches an
    xpander agent as a user message in its thread (Task.aget_activity_log, and `chunk` events)."""
    from xpander_sdk import AgentExecutionStatus, Tasks

    from tasks_app.services import Actor, hitl_decide, hitl_request

    cfg = _config(face_world)
    agent, reviewer = Actor.system("agent"), Actor.system("reviewer")

    async def create(prompt):
        tasks = Tasks(configuration=cfg)
        task = await tasks.acreate(agent_id="hitl-bot", prompt=prompt, events_streaming=True)
        await task.aset_status(AgentExecutionStatus.Executing)
        return task.id

    answered_id, dismissed_id = asyncio.run(create("which carrier?")), asyncio.run(create("send it?"))
    org = face_world.acme.pk
    options = ["DHL", "UPS"]
    asked = hitl_request(task=answered_id, actor=agent, organization_id=org, question="Carrier?", options=options)
    ignored = hitl_request(task=dismissed_id, actor=agent, organization_id=org, question="Send the email?")

    async def read(task_id):
        task = await Tasks(configuration=cfg).aget(task_id=task_id)
        return task, await task.aget_activity_log()

    paused, before = asyncio.run(read(answered_id))
    assert paused.status.value == "paused" and paused.hitl_request is not None and before.messages == []
    hitl_decide(hitl=asked, actor=reviewer, organization_id=org, decision="responded", option="UPS")
    hitl_decide(hitl=ignored, actor=reviewer, organization_id=org, decision="dismissed", comment="not needed")

    answered, answered_log = asyncio.run(read(answered_id))
    dismissed, dismissed_log = asyncio.run(read(dismissed_id))
    assert answered.status.value == "executing" and answered.hitl_request is None
    assert [(m.role, m.content.text) for m in answered_log.messages] == [("user", "UPS")]
    assert dismissed.status.value == "executing" and dismissed.hitl_request is None
    assert [(m.role, m.content.text) for m in dismissed_log.messages] == [
        ("user", "Dismissed without an answer: not needed")
    ]


def test_a_tool_call_and_its_result_are_one_entry_and_a_pair_of_events(face_world):
    from xpander_sdk import Tasks
    from xpander_sdk.models.activity import AgentActivityThreadToolCall

    from tasks_app.services import Actor, append_activity

    cfg = _config(face_world)
    agent = Actor.system("agent")

    async def scenario():
        task = await Tasks(configuration=cfg).acreate(agent_id="tool-bot", prompt="weather?", events_streaming=True)
        seen = []

        async def consume():
            async for event in task.aevents():
                seen.append(event)
                if event.type.value == "tool_call_result":
                    return

        async def produce():
            await asyncio.sleep(0.5)
            await asyncio.to_thread(
                append_activity,
                task=task.id,
                actor=agent,
                organization_id=face_world.acme.pk,
                entries=[
                    {
                        "kind": "tool_call",
                        "tool_name": "weather",
                        "tool_call_id": "c1",
                        "tool_arguments": {"q": "Oslo"},
                    },
                    {"kind": "message", "role": "agent", "content": "checking"},
                    {"kind": "tool_result", "tool_name": "weather", "tool_call_id": "c1", "tool_output": {"t": 3}},
                    {"kind": "tool_call", "tool_name": "forecast", "tool_arguments": {"q": "Oslo"}},
                    {"kind": "tool_result", "tool_name": "forecast", "tool_output": {"ok": False, "error": "down"}},
                ],
            )

        await asyncio.wait_for(asyncio.gather(consume(), produce()), 30)
        return task, seen, await task.aget_activity_log()

    task, seen, log = asyncio.run(scenario())
    calls = [m for m in log.messages if isinstance(m, AgentActivityThreadToolCall)]
    assert len(calls) == 2 and len(log.messages) == 3
    assert (calls[0].tool_name, calls[0].payload, calls[0].result) == ("weather", {"q": "Oslo"}, {"t": 3})
    assert calls[0].is_error is False
    # A failed result (no tool call id: paired with the open call of its tool) is an error.
    failed = calls[1]
    assert (failed.tool_name, failed.result, failed.is_error) == ("forecast", {"ok": False, "error": "down"}, True)
    request, result = (e for e in seen if e.type.value.startswith("tool_call"))
    assert request.type.value == "tool_call_request" and result.type.value == "tool_call_result"
    assert result.data["request_id"] == request.data["request_id"]
    assert result.data["payload"] == {"q": "Oslo"} and result.data["result"] == {"t": 3}


def test_asave_replaces_the_payload_extension_and_a_newer_sdks_fields_are_ignored(face_world):
    from xpander_sdk import Tasks
    from xpander_sdk.modules.tasks.sub_modules.task import Task as XTask

    cfg = _config(face_world)

    class NewerTask(XTask):
        """A release that added a Task field Taskdesk has never heard of."""

        review_policy: str = "two-person"

    async def scenario():
        tasks = Tasks(configuration=cfg)
        task = await tasks.acreate(
            agent_id="ext-bot", prompt="x", tool_call_payload_extension={"headers": {"A": "1"}, "params": {"k": 1}}
        )
        await tasks.aupdate(task_id=task.id, tool_call_payload_extension={"body": {"n": 2}})  # merged
        merged = (await tasks.aget(task_id=task.id)).payload_extension
        await task.areload()
        task.payload_extension = {"headers": {"A": "2"}}  # asave sends the whole object: it replaces
        await task.asave()
        replaced = (await tasks.aget(task_id=task.id)).payload_extension
        newer = NewerTask(**task.model_dump(exclude={"configuration"}), configuration=cfg)
        newer.result = "saved by a newer SDK"
        await newer.asave()
        return task, merged, replaced, await tasks.aget(task_id=task.id)

    task, merged, replaced, final = asyncio.run(scenario())
    assert merged == {"headers": {"A": "1"}, "params": {"k": 1}, "body": {"n": 2}}
    assert replaced == {"headers": {"A": "2"}}
    assert final.result == "saved by a newer SDK"
    assert task_of(face_world.acme, task.id).payload_extension == {"headers": {"A": "2"}}
