"""Appending to a task's activity log (append-only; the task's version is kept).

A tool result is paired with the call it answers when it is appended (`ActivityEntry.call`):
by tool call id when it has one, else the latest open call of the same tool without one.
"""

from collections.abc import Iterable
from typing import Any

from django.db.models import Q

from ..models import ActivityEntry, ActivityKind, EventType, Task
from .actors import Actor
from .errors import Errors, InvalidInput
from .kernel import changing
from .validation import (
    ACTIVITY_BATCH_LIMIT,
    ACTIVITY_TEXT_LIMITS,
    check_text,
    clean_datetime,
    json_problem,
)

ACTIVITY_FIELDS = frozenset(
    {
        "kind",
        "role",
        "content",
        "tool_name",
        "tool_call_id",
        "tool_arguments",
        "tool_output",
        "prompt_tokens",
        "completion_tokens",
        "created_at",
    }
)


def _clean_activity(entry: Any, index: int, errors: Errors) -> dict[str, Any]:
    where = f"entries[{index}]"
    if not isinstance(entry, dict):
        errors.add(where, "Must be an object.")
        return {}
    for name in entry.keys() - ACTIVITY_FIELDS:
        errors.add(f"{where}.{name}", "Unknown field.")
    kind = entry.get("kind", ActivityKind.MESSAGE)
    if kind not in ActivityKind.values:
        errors.add(f"{where}.kind", f"Unknown kind {kind!r}; expected one of: {', '.join(ActivityKind.values)}.")
    cleaned: dict[str, Any] = {"kind": kind}
    for name, limit in ACTIVITY_TEXT_LIMITS.items():
        value = entry.get(name)
        if value is None:
            continue
        check_text(errors, f"{where}.{name}", value, limit)
        cleaned[name] = value
    for name in ("tool_arguments", "tool_output"):
        if entry.get(name) is not None:
            if problem := json_problem(entry[name]):
                errors.add(f"{where}.{name}", problem)
            cleaned[name] = entry[name]
    for name in ("prompt_tokens", "completion_tokens"):
        value = entry.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
            errors.add(f"{where}.{name}", "Must be a non-negative integer.")
        cleaned[name] = value
    created_at = entry.get("created_at")
    if created_at is not None:
        try:
            cleaned["created_at"] = clean_datetime(created_at)
        except ValueError as exc:
            errors.add(f"{where}.created_at", str(exc))
    return cleaned


def append_activity(
    *, task: Task | str, actor: Actor, entries: list[dict[str, Any]], organization_id: int | None = None
) -> list[ActivityEntry]:
    """Append entries to a task's activity log (one event per batch; the task's version is kept).

    Activity does not bump the version on purpose: an agent logging its steps must not make
    every open edit form stale.
    """
    errors = Errors()
    if not isinstance(entries, list) or not entries:
        raise InvalidInput({"entries": ["Must be a non-empty list."]})
    if len(entries) > ACTIVITY_BATCH_LIMIT:
        raise InvalidInput({"entries": [f"At most {ACTIVITY_BATCH_LIMIT} entries per call."]})
    cleaned = [_clean_activity(entry, i, errors) for i, entry in enumerate(entries)]
    errors.raise_if_any()
    with changing(task, actor=actor, organization_id=organization_id) as change:
        locked = change.task
        rows = [
            ActivityEntry(task=locked, organization_id=locked.organization_id, **{"created_at": change.now, **values})
            for values in cleaned
        ]
        created = ActivityEntry.objects.bulk_create(rows)
        _pair_new_results(locked, created)
        change.note(
            change="activity",
            after={"activity_ids": [row.pk for row in created], "kinds": sorted({row.kind for row in created})},
        )
        change.record(EventType.ACTIVITY, save=False)
    return created


# How many earlier unanswered calls a new result is matched against (the newest ones).
OPEN_CALLS_LIMIT = 200


def pair_tool_results(
    entries: Iterable[ActivityEntry], open_calls: Iterable[ActivityEntry] = ()
) -> list[tuple[ActivityEntry, ActivityEntry]]:
    """(call, result) pairs among `entries` (in log order), after the still-open `open_calls`.

    A result answers the latest open call with its tool call id; one without an id answers the
    latest open call of the same tool that has none. Each call gets one result.
    """
    calls = list(open_calls)
    pairs = []
    for entry in entries:
        if entry.kind == ActivityKind.TOOL_CALL:
            calls.append(entry)
        elif entry.kind == ActivityKind.TOOL_RESULT:
            if entry.tool_call_id:
                call = next((c for c in reversed(calls) if c.tool_call_id == entry.tool_call_id), None)
            else:
                call = next((c for c in reversed(calls) if not c.tool_call_id and c.tool_name == entry.tool_name), None)
            if call is not None:
                calls.remove(call)
                pairs.append((call, entry))
    return pairs


def _pair_new_results(task: Task, created: list[ActivityEntry]) -> None:
    results = [entry for entry in created if entry.kind == ActivityKind.TOOL_RESULT]
    if not results:
        return
    ids = {r.tool_call_id for r in results if r.tool_call_id}
    names = {r.tool_name for r in results if not r.tool_call_id}
    earlier = (
        ActivityEntry.objects.filter(task_id=task.pk, kind=ActivityKind.TOOL_CALL, pk__lt=created[0].pk)
        .filter(result__isnull=True)
        .filter(Q(tool_call_id__in=ids) | Q(tool_call_id="", tool_name__in=names))
        .only("pk", "kind", "tool_name", "tool_call_id")
        .order_by("-pk")[:OPEN_CALLS_LIMIT]
    )
    pairs = pair_tool_results(created, reversed(list(earlier)))
    for call, result in pairs:
        result.call = call
    if pairs:
        ActivityEntry.objects.bulk_update([result for _, result in pairs], ["call"])
