"""The demo's work (tasks_app/scenarios.py): every text and call of a piece of work comes from its facts."""

import json
import random

import pytest

from tasks_app import scenarios
from tasks_app.scenarios import SCENARIOS, TOOLS, Work

AGENT_NAMES = [name for names in scenarios.AGENTS.values() for name in names]


def works(agent: str, count: int = 40):
    rng = random.Random(agent)
    return [Work.new(agent, rng) for _ in range(count)]


def test_every_agent_of_the_demo_has_work_and_plays_a_face():
    assert set(AGENT_NAMES) == set(SCENARIOS) == set(scenarios.AGENT_DESCRIPTIONS)
    for org, faces in scenarios.FACE_AGENTS.items():
        assert set(faces) == {"xpander", "agentex", "jsonrpc", "api"}
        assert set(faces.values()) <= set(scenarios.AGENTS[org])
    assert scenarios.face_agent("an-org-nobody-listed", "api") == "billing-agent"
    assert scenarios.worker_name("triage-agent", "3fa2") == "triage-worker-3fa2"


@pytest.mark.parametrize("agent", AGENT_NAMES)
def test_each_piece_of_work_is_written_from_its_facts(agent):
    for work in works(agent):
        texts = [work.title, work.prompt, work.result, work.failure(), work.source()]
        assert all(text and "{" not in text for text in texts), texts
        assert len(work.title) <= 160  # room for Agentex's "(request #1234)" within a 200-character name
        plan = work.checklist(1)["tasks"]
        assert [step["completed"] for step in plan] == [True] + [False] * (len(plan) - 1)
        assert work.plan_step_of(len(work.tools)) == len(plan)
        for index in range(len(work.tools)):
            call = work.call(index)
            json.dumps(call.arguments), json.dumps(call.output)
            assert call.tool == work.tools[index].name and call.prompt_tokens > 0
            assert not any("{" in str(value) for value in call.arguments.values()), call.arguments
        assert work.metadata()["run"] == work.run and work.run.startswith("r-")


def test_the_same_work_has_the_same_facts_in_every_call_and_different_work_different_ones():
    refund = next(w for w in works("billing-agent") if w.scenario.title.startswith("Refund"))
    order, amount = refund.facts["order"], refund.facts["amount"]
    calls = [refund.call(i, fail_chance=0.0) for i in range(len(refund.tools))]
    assert {c.arguments.get("order_id") for c in calls if "order_id" in c.arguments} == {order}
    assert calls[2].tool == "issue_refund" and calls[2].arguments["amount"] == amount
    assert order in refund.title and order in refund.prompt and order in refund.result
    arguments = {json.dumps(w.call(0).arguments, sort_keys=True) for w in works("billing-agent")}
    assert len(arguments) > 20  # tool calls differ from task to task


def test_a_run_id_rebuilds_the_same_work_and_its_follow_up():
    for agent in AGENT_NAMES:
        for work in works(agent, 10):
            again = Work.for_run(agent, work.run)
            assert (again.title, again.prompt, again.facts) == (work.title, work.prompt, work.facts)
            if (follow_up := work.follow_up()) is not None:
                assert follow_up.run == work.run + ".1" and follow_up.facts == work.facts
                assert Work.for_run(agent, follow_up.run).title == follow_up.title != work.title


def test_questions_are_about_their_own_work():
    asked = 0
    for agent in AGENT_NAMES:
        for work in [Work.new(agent, random.Random(n), with_question=True) for n in range(20)]:
            if not any(s.question or s.choice for s in SCENARIOS[agent]):
                assert not work.question_indexes()  # research-agent asks nobody
                continue
            assert work.question_indexes(), work.title
            for index in work.question_indexes():
                asked += 1
                body = work.hitl(index)
                assert "{" not in body["question"] + body["details"]
                if index == work.approval_index():
                    # An approval proposes exactly the call it will make, with this work's facts.
                    assert TOOLS[body["payload"]["action"]].needs_approval
                    assert body["payload"] == {"action": work.tools[index].name, **work.arguments(index)}
                    assert "options" not in body
                else:
                    assert body["options"] and "payload" not in body
                    chosen = work.answered(index, body["options"][1])
                    assert chosen[work.scenario.choice.key] == body["options"][1]
    assert asked > 50
    with pytest.raises(ValueError):
        next(w for w in works("research-agent")).hitl(0)


def test_some_calls_fail_with_the_tools_own_errors():
    work = works("ops-agent", 1)[0]
    failed = [work.call(i % len(work.tools), fail_chance=0.5) for i in range(200)]
    failures = [c for c in failed if c.failed]
    assert 50 < len(failures) < 150
    assert all(c.output["ok"] is False and c.output["error"] for c in failures)
    assert {c.output["error"] for c in failures} <= {work.text(error) for tool in work.tools for error in tool.errors}


def test_the_desk_reads_each_call_as_it_went():
    """A call that worked never looks failed to the desk's one failure rule (a payment that failed is
    the lookup's answer, not the lookup failing), and a failed one always does."""
    from tasks_app.models import failure_of

    for agent in AGENT_NAMES:
        for work in works(agent, 10):
            for index in range(len(work.tools)):
                assert failure_of(work.call(index, fail_chance=0.0).output) is None, work.tools[index].name
                assert failure_of(work.call(index, fail_chance=1.0).output)
