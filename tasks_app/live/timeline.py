"""Presenters of a task's timeline: what each activity entry and event shows, for the page and
the fragments pushed live alike.

- An activity entry: a tool call shows its result (paired in the log, `ActivityEntry.call`), how
  long the call took, and whether the result reports a failure; a call still waiting shows how
  long it has run while the task is active.
- An event: who did it through which face, a headline (created, status change, edit, decision…)
  and one row per changed field. Object fields (metadata, params, payloads, a JSON result) are
  diffed per key (added, removed, changed; nested objects by dotted path); times read as times.
"""

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from .. import lifecycle
from ..models import ActivityEntry, ActivityKind, EventType, HitlDecision, TaskEvent
from ..services.retention import EVENT_CONTENT_KEYS
from ..services.validation import json_or_text
from ..templatetags.taskdesk import duration

# Fields whose values are JSON objects, diffed per key.
OBJECT_FIELDS = frozenset(
    {"metadata", "params", "payload", "payload_extension", "deep_planning", "result", "input_user", "output_schema"}
)
# Bookkeeping a status change implies: shown, but after the fields someone chose to change.
IMPLIED_FIELDS = ("started_at", "paused_at", "finished_at", "duration", "is_manually_stopped", "execution_attempts")
# Facts an event carries that its headline shows (a HITL question, a decision) or nobody reads.
UNLISTED_FACTS = frozenset({"hitl_id", "question", "decision", "activity_ids", "kinds", "bulk_action"})
DIFF_DEPTH = 3
SHORT_VALUE = 160
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")


@dataclass
class Value:
    """One side of a change, ready to show: a time, a status, absent, or (short) JSON text."""

    missing: bool = False
    when: datetime | None = None
    status: str | None = None
    text: str = ""
    full: str = ""  # the whole value when `text` is cut
    empty: bool = False  # an empty text (shown as such, not as nothing)

    @classmethod
    def of(cls, value: Any, *, present: bool = True, name: str = "") -> "Value":
        if not present or value is None:
            return cls(missing=True)
        if isinstance(value, str) and _ISO_TIME.match(value):
            when = parse_datetime(value)
            if when is not None:
                return cls(when=when)
        if name == "status" and value in lifecycle.STATUS_LABELS:
            return cls(status=value)
        if name == "duration" and isinstance(value, (int, float)):
            return cls(text=duration(value))
        if value == "":
            return cls(empty=True)
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        if len(text) <= SHORT_VALUE:
            return cls(text=text)
        full = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)
        return cls(text=text[: SHORT_VALUE - 1] + "…", full=full)


@dataclass
class Row:
    """A changed field (or key): `op` is added, removed or changed."""

    name: str
    op: str
    before: Value
    after: Value
    implied: bool = False


@dataclass
class FieldChange:
    """A field of an event: a plain row, or per-key rows for an object."""

    name: str
    rows: list[Row] = field(default_factory=list)
    keyed: bool = False  # the rows are keys of an object field
    unchanged: int = 0  # keys an object kept (when the event holds the whole object)
    cleaned: bool = False  # retention removed the values (services.retention); the name stays


def _by_id(items: Any) -> dict[str, dict] | None:
    """A list of objects that each carry a distinct "id" (a plan's steps) as {id: object}."""
    if not isinstance(items, list) or not all(isinstance(item, dict) and "id" in item for item in items):
        return None
    keyed = {str(item["id"]): item for item in items}
    return keyed if len(keyed) == len(items) else None


def json_diff(before: Any, after: Any, *, path: str = "", depth: int = 0) -> list[Row]:
    """Per-key rows between two JSON values (nested objects by dotted path, up to DIFF_DEPTH);
    lists of objects with ids (a plan's steps) per id, as `steps[step-2].done`."""
    if depth < DIFF_DEPTH and (old_items := _by_id(before)) is not None and (new_items := _by_id(after)) is not None:
        return _object_diff(old_items, new_items, path=path, depth=depth, item_keys=True)
    return _object_diff(before, after, path=path, depth=depth)


def _object_diff(before: Any, after: Any, *, path: str, depth: int, item_keys: bool = False) -> list[Row]:
    if not (isinstance(before, dict) and isinstance(after, dict)) or depth >= DIFF_DEPTH:
        return [Row(path or "value", "changed", Value.of(before), Value.of(after))]
    rows = []
    # A list's items keep their order (the plan's); an object's keys are sorted.
    keys = (
        [*before, *(key for key in after if key not in before)]
        if item_keys
        else sorted(before.keys() | after.keys(), key=str)
    )
    for key in keys:
        name = f"{path}[{key}]" if item_keys else f"{path}.{key}" if path else str(key)
        if key not in before:
            rows.append(Row(name, "added", Value(missing=True), Value.of(after[key])))
        elif key not in after:
            rows.append(Row(name, "removed", Value.of(before[key]), Value(missing=True)))
        elif before[key] != after[key]:
            if isinstance(before[key], (dict, list)) and isinstance(after[key], type(before[key])):
                rows += json_diff(before[key], after[key], path=name, depth=depth + 1)
            else:
                rows.append(Row(name, "changed", Value.of(before[key]), Value.of(after[key])))
    return rows


def _as_object(value: Any) -> Any:
    """A JSON object stored as text (a task's result) as the object, anything else as it is."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        return json_or_text(value)
    return value


def field_change(name: str, before: dict, after: dict) -> FieldChange:
    has_before, has_after = name in before, name in after
    old, new = before.get(name), after.get(name)
    if name in OBJECT_FIELDS:
        old_obj, new_obj = _as_object(old), _as_object(new)
        if isinstance(new_obj, dict) and (isinstance(old_obj, dict) or old_obj is None):
            old_obj = old_obj or {}
            unchanged = sum(1 for key in old_obj if key in new_obj and old_obj[key] == new_obj[key])
            return FieldChange(name, json_diff(old_obj, new_obj), keyed=True, unchanged=unchanged)
    op = "changed" if has_before and old is not None else "added"
    if has_before and not has_after:
        op = "removed"
    row = Row(
        name,
        op,
        Value.of(old, present=has_before, name=name),
        Value.of(new, present=has_after, name=name),
        implied=name in IMPLIED_FIELDS,
    )
    return FieldChange(name, [row])


@dataclass
class EventItem:
    event: TaskEvent
    headline: str
    fields: list[FieldChange]
    status_before: str | None = None
    status_after: str | None = None
    question: str = ""

    source = "event"

    @property
    def dom_id(self) -> str:
        return f"tl-e-{self.event.pk}"

    @property
    def kind(self) -> str:
        return self.event.type.removeprefix("task.")

    @property
    def bulk_action(self) -> int | None:
        """The bulk action this change was part of (services.bulk_actions), if any."""
        value = (self.event.after or {}).get("bulk_action")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


DECISION_LABELS = dict(HitlDecision.choices)


def event_item(event: TaskEvent) -> EventItem:
    before, after = event.before or {}, event.after or {}
    names = [name for name in event.changes or [] if name in before or name in after]
    # Facts recorded beside the changed fields (a decision's reason, comment or answer).
    names += [n for n, value in after.items() if n not in names and n not in UNLISTED_FACTS and value not in ("", None)]
    if event.type == EventType.CREATED:
        # The fields the task was created with; one created empty ("" or {}) says nothing.
        names = [name for name, value in after.items() if value not in ("", {}, [])]
    moved = "status" in names and event.type != EventType.CREATED
    fields = [field_change(name, before, after) for name in names if not (moved and name == "status")]
    if (event.snapshot or {}).get("cleaned_at"):
        # A cleaned task's events keep which content fields changed, not their values.
        fields += [
            FieldChange(name, cleaned=True)
            for name in event.changes or []
            if name in EVENT_CONTENT_KEYS and name not in names
        ]
    fields.sort(key=lambda change: change.name in IMPLIED_FIELDS)
    item = EventItem(event=event, headline=_headline(event, names, moved), fields=fields)
    if moved:
        item.status_before, item.status_after = before.get("status"), after.get("status")
    if event.type == EventType.HITL_REQUESTED:
        item.question = str(after.get("question", ""))
    return item


HEADLINES = {
    EventType.CREATED: "Created the task",
    EventType.HITL_REQUESTED: "Asked a person",
    EventType.CLAIMED: "Claimed the task",
    EventType.COMPLETED: "Reported the task done",
    EventType.METRICS: "Reported usage",
    EventType.DELETED: "Deleted the task",
    EventType.CLEANED: "Removed the content (retention)",
}


def _headline(event: TaskEvent, names: list[str], moved: bool) -> str:
    if event.type == EventType.HITL_DECIDED:
        decision = str((event.after or {}).get("decision", ""))
        return DECISION_LABELS.get(decision) or decision.replace("_", " ").capitalize() or "Decided"
    if event.type in HEADLINES:
        return HEADLINES[event.type]
    if moved:
        return "Changed the status"
    chosen = [name.replace("_", " ") for name in names if name not in IMPLIED_FIELDS]
    return "Changed " + ", ".join(chosen) if chosen else "Changed the task"


INLINE_JSON = 160


@dataclass
class JsonBlock:
    """A tool's arguments or output: one line when short, else indented (and folded by the page)."""

    inline: str = ""
    pretty: str = ""

    @classmethod
    def of(cls, value: Any) -> "JsonBlock | None":
        if value is None:
            return None
        compact = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        if len(compact) <= INLINE_JSON:
            return cls(inline=compact)
        return cls(pretty=json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2, default=str))


@dataclass
class ActivityItem:
    entry: ActivityEntry
    result: ActivityEntry | None  # a call's result
    duration: float | None  # seconds from the call to its result
    failure: str | None  # what a failed result says ("" when it says nothing); None: no failure
    running: bool  # a call without a result on a task that is still active

    source = "activity"

    @property
    def dom_id(self) -> str:
        return f"tl-a-{self.entry.pk}"

    @property
    def arguments(self) -> JsonBlock | None:
        return JsonBlock.of(self.entry.tool_arguments)

    @property
    def output(self) -> JsonBlock | None:
        return JsonBlock.of((self.result or self.entry).tool_output)

    @property
    def duration_label(self) -> str:
        """How long the call took (a result logged with its call took "< 0.1 s")."""
        return duration(max(self.duration or 0.0, 0.05))


def activity_item(entry: ActivityEntry, *, task_active: bool) -> ActivityItem:
    result = getattr(entry, "result", None) if entry.kind == ActivityKind.TOOL_CALL else None
    answer = result or entry
    duration = None
    if result is not None:
        duration = max((result.created_at - entry.created_at).total_seconds(), 0.0)
    return ActivityItem(
        entry=entry,
        result=result,
        duration=duration,
        failure=answer.failure,
        running=entry.kind == ActivityKind.TOOL_CALL and result is None and task_active,
    )


def timeline_items(rows: list[ActivityEntry | TaskEvent], *, task) -> list[ActivityItem | EventItem]:
    """What the timeline shows for each of `rows` (selectors.timeline_page's items, in order)."""
    active = not lifecycle.is_terminal(task.status) and task.deleted_at is None
    return [
        activity_item(row, task_active=active) if isinstance(row, ActivityEntry) else event_item(row) for row in rows
    ]
