"""Tool calls and their results: paired once when a result is appended, failures recognised."""

import importlib

import pytest

from tasks_app import services
from tasks_app.models import ActivityEntry, failure_of

CALL, RESULT = "tool_call", "tool_result"


@pytest.fixture
def task(acme, system_actor):
    return services.task_create(organization=acme, actor=system_actor, id="pairs-1")[0]


def _log(task, actor, *entries):
    return services.append_activity(task=task, actor=actor, entries=list(entries))


def _call_of(result) -> ActivityEntry | None:
    return ActivityEntry.objects.get(pk=result.pk).call


def test_a_result_answers_the_call_with_its_tool_call_id(task, system_actor):
    first, second = _log(
        task,
        system_actor,
        {"kind": CALL, "tool_name": "lookup", "tool_call_id": "a"},
        {"kind": CALL, "tool_name": "lookup", "tool_call_id": "b"},
    )
    (answer_a,) = _log(task, system_actor, {"kind": RESULT, "tool_name": "lookup", "tool_call_id": "a"})
    (answer_b,) = _log(task, system_actor, {"kind": RESULT, "tool_name": "lookup", "tool_call_id": "b"})
    assert _call_of(answer_a) == first and _call_of(answer_b) == second
    assert first.result == ActivityEntry.objects.get(pk=answer_a.pk)


def test_without_ids_a_result_answers_the_latest_open_call_of_its_tool(task, system_actor):
    search, lookup_1, lookup_2, result_1, result_2, result_3 = _log(
        task,
        system_actor,
        {"kind": CALL, "tool_name": "search"},
        {"kind": CALL, "tool_name": "lookup"},
        {"kind": CALL, "tool_name": "lookup"},
        {"kind": RESULT, "tool_name": "lookup"},
        {"kind": RESULT, "tool_name": "lookup"},
        {"kind": RESULT, "tool_name": "lookup"},  # no open lookup call is left: stands alone
    )
    assert _call_of(result_1) == lookup_2 and _call_of(result_2) == lookup_1
    assert _call_of(result_3) is None
    (late,) = _log(task, system_actor, {"kind": RESULT, "tool_name": "search"})
    assert _call_of(late) == search


def test_a_result_with_an_unknown_id_or_a_second_answer_stands_alone(task, system_actor):
    (call,) = _log(task, system_actor, {"kind": CALL, "tool_name": "lookup", "tool_call_id": "x"})
    (stray,) = _log(task, system_actor, {"kind": RESULT, "tool_name": "lookup", "tool_call_id": "y"})
    (answer,) = _log(task, system_actor, {"kind": RESULT, "tool_name": "lookup", "tool_call_id": "x"})
    (again,) = _log(task, system_actor, {"kind": RESULT, "tool_name": "lookup", "tool_call_id": "x"})
    assert _call_of(stray) is None and _call_of(answer) == call and _call_of(again) is None


def test_calls_of_another_task_are_never_answered(task, acme, system_actor):
    other, _ = services.task_create(organization=acme, actor=system_actor, id="pairs-2")
    _log(other, system_actor, {"kind": CALL, "tool_name": "lookup", "tool_call_id": "same"})
    (result,) = _log(task, system_actor, {"kind": RESULT, "tool_name": "lookup", "tool_call_id": "same"})
    assert _call_of(result) is None


def test_pairing_a_result_costs_two_queries(task, system_actor, django_assert_num_queries):
    _log(task, system_actor, *({"kind": CALL, "tool_name": "t", "tool_call_id": f"c{i}"} for i in range(300)))
    plain = _count_queries(lambda: _log(task, system_actor, {"kind": "message", "content": "hi"}))
    paired = _count_queries(lambda: _log(task, system_actor, {"kind": RESULT, "tool_name": "t", "tool_call_id": "c7"}))
    assert paired == plain + 2  # the open calls it may answer, and setting its call


def _count_queries(run) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        run()
    return len(ctx)


@pytest.mark.parametrize(
    ("output", "failure"),
    [
        ({"ok": False}, ""),
        ({"ok": False, "message": "card declined"}, "card declined"),
        ({"success": False, "reason": "no stock"}, "no stock"),
        ({"is_error": True}, ""),
        ({"error": "timeout after 30 s"}, "timeout after 30 s"),
        ({"error": {"code": 429, "message": "rate limited"}}, "rate limited"),
        ({"errors": ["bad sku"]}, ""),
        ({"status": "FAILED"}, ""),
        ({"status": "error", "detail": "boom"}, "boom"),
        ({"ok": True, "items": 3}, None),
        ({"status": "shipped"}, None),
        ({"ok": True, "status": "failed"}, None),  # a lookup that worked, of a payment that failed
        ({"success": True, "status": "error"}, None),
        ({"ok": True, "error": "partial"}, "partial"),  # an error it reports still counts
        ({"error": None, "ok": True}, None),
        ({"error": ""}, None),
        (["ok", False], None),
        ("error", None),
        (None, None),
    ],
)
def test_failure_of_a_tool_output(output, failure):
    assert failure_of(output) == failure


def test_only_results_fail(task, system_actor):
    call, result = _log(
        task,
        system_actor,
        {"kind": CALL, "tool_name": "t", "tool_output": {"ok": False}},
        {"kind": RESULT, "tool_name": "t", "tool_output": {"ok": False, "error": "nope"}},
    )
    assert not call.is_failure and call.failure is None
    assert result.is_failure and result.failure == "nope"


def test_the_migration_pairs_what_was_logged_before_it(task, acme, system_actor):
    migration = importlib.import_module("tasks_app.migrations.0006_activity_result_pairs")
    other, _ = services.task_create(organization=acme, actor=system_actor, id="pairs-3")
    a_call, a_result = _log(
        task,
        system_actor,
        {"kind": CALL, "tool_name": "lookup", "tool_call_id": "a"},
        {"kind": RESULT, "tool_name": "lookup", "tool_call_id": "a"},
    )
    b_call, b_result = _log(
        other, system_actor, {"kind": CALL, "tool_name": "lookup"}, {"kind": RESULT, "tool_name": "lookup"}
    )
    ActivityEntry.objects.update(call=None)
    from django.apps import apps

    migration.pair_existing_results(apps, None)
    assert _call_of(a_result) == a_call and _call_of(b_result) == b_call
