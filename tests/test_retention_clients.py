"""The real xpander-sdk and agentex-client read a task cleaned by retention as cleaned, and are refused a change."""

import asyncio
from io import StringIO

import pytest
from django.core.management import call_command

from tasks_app import services

from .clients_conftest import HAVE_AGENTEX, HAVE_XPANDER, face_world_fixture  # noqa: F401

pytestmark = [
    pytest.mark.skipif(not (HAVE_XPANDER and HAVE_AGENTEX), reason="needs requirements-clients.txt (see the file)"),
    pytest.mark.django_db(transaction=True),
]


def cleaned(world, task_id: str, *, name: str | None = None) -> None:
    actor = services.Actor.system("test")
    task, _ = services.task_create(
        organization=world.acme,
        actor=actor,
        id=task_id,
        name=name,
        agent="support-bot",
        input_text="Ada Lovelace's card 4242",
        metadata={"customer": "Ada"},
        params={"p": 1},
        payload_extension={"card": "4242"},
        status="executing",
    )
    services.task_update(task=task, actor=actor, status="completed", result="Refunded Ada")
    call_command("clean_tasks", "--older-than", "0m", "--no-progress", stdout=StringIO())


def test_xpander_sdk_reads_a_cleaned_task_and_is_refused_an_update(face_world):
    from xpander_sdk import Configuration, Tasks

    cleaned(face_world, "x-1")
    cfg = Configuration(base_url=face_world.url + "/xpander", api_key=face_world.acme_token, organization_id="acme")

    async def scenario():
        tasks = Tasks(configuration=cfg)
        got = await tasks.aget(task_id="x-1")
        try:
            await tasks.aupdate(task_id="x-1", result="again")
        except Exception as exc:  # the SDK wraps HTTP errors in its own exception type
            return got, exc
        return got, None

    got, refusal = asyncio.run(scenario())
    assert got.status.value == "completed"
    assert (got.input.text, got.result, got.payload_extension) == ("", None, None)
    assert refusal is not None and "409" in str(refusal) and "cleaned by retention" in str(refusal)


def test_agentex_client_reads_cleaned_at(face_world):
    from agentex import AsyncAgentex, ConflictError

    cleaned(face_world, "a-1", name="plan-1")

    async def scenario():
        ax = AsyncAgentex(base_url=face_world.url + "/agentex", api_key=face_world.acme_token, max_retries=0)
        task = await ax.tasks.retrieve("a-1")
        by_name = await ax.tasks.retrieve_by_name("plan-1")
        try:
            await ax.tasks.update_by_id("a-1", task_metadata={"again": True})
        except ConflictError as exc:
            return task, by_name, exc
        return task, by_name, None

    task, by_name, refusal = asyncio.run(scenario())
    assert task.cleaned_at is not None and by_name.cleaned_at == task.cleaned_at
    assert (task.task_metadata, task.params, task.status) == ({}, {}, "COMPLETED")
    assert refusal is not None and refusal.status_code == 409
