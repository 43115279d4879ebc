"""What the write path accepts: every field's type and size, and what JSON may be stored.

Only values every reader can render are stored: finite numbers, text without NUL characters or
lone surrogates (PostgreSQL refuses both), JSON of bounded size and depth, and the shapes the
pages expect (a deep-planning object holds a list of task objects).
"""

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import lifecycle
from .errors import Errors

TASK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$")
TASK_ID_MESSAGE = "Must be 1-100 characters: letters, digits and . _ : @ - (starting with a letter or digit)."
JSON_LIMIT_BYTES = 64 * 1024
JSON_MAX_DEPTH = 32
# A whole request body may nest a few levels more than a stored value (envelope, params, batch).
BODY_MAX_DEPTH = JSON_MAX_DEPTH + 4
# PostgreSQL refuses UTC offsets beyond +-15:59 (Python accepts up to 24 h).
MAX_UTC_OFFSET = timedelta(hours=15, minutes=59)
# Durations and token counts beyond these are input errors, not measurements.
MAX_DURATION_SECONDS = 10 * 365 * 24 * 3600.0
MAX_COUNT = 2**62

TEXT_LIMITS: dict[str, int] = {
    "title": 500,
    "name": 200,
    "source": 100,
    "queue": 50,
    "agent_version": 100,
    "triggering_agent_id": 200,
    "status_reason": 2_000,
    "internal_status": 100,
    "last_executed_node_id": 200,
    "output_format": 50,
    "think_mode": 20,
    "voice_id": 100,
    "input_text": 100_000,
    "result": 100_000,
    "additional_context": 20_000,
    "instructions_override": 20_000,
    "expected_output": 20_000,
}
OBJECT_FIELDS = {"metadata", "params", "payload_extension", "deep_planning", "output_schema", "input_user"}
LIST_FIELDS = {"input_files", "used_tools", "mcp_servers"}
BOOL_FIELDS = {
    "is_orchestration",
    "events_streaming",
    "return_metrics",
    "disable_attachment_injection",
}
# Nullable fields where None is a value, not "leave untouched".
NULLABLE = {"name", "result", "output_schema", "input_user"}
MERGE_FIELDS = {"metadata", "params", "payload_extension"}

# Fields a caller may set when creating a task (a run executed elsewhere may arrive whole).
CREATE_FIELDS = set(TEXT_LIMITS) | OBJECT_FIELDS | LIST_FIELDS | BOOL_FIELDS
CREATE_FIELDS |= {"priority", "status", "execution_attempts", "prompt_tokens", "completion_tokens", "duration"}
# Fields update() patches; status goes through the lifecycle check.
UPDATE_FIELDS = CREATE_FIELDS

ACTIVITY_TEXT_LIMITS = {"role": 20, "content": 100_000, "tool_name": 200, "tool_call_id": 200}
ACTIVITY_BATCH_LIMIT = 500


def text_problem(value: str) -> str | None:
    """Why a string cannot be stored (PostgreSQL text refuses NUL; UTF-8 has no lone surrogates)."""
    if "\x00" in value:
        return "Must not contain NUL characters."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Must be valid Unicode text (no lone surrogate characters)."
    return None


def check_text(errors: Errors, name: str, value: Any, limit: int, *, empty: str | None = None) -> None:
    """A string field's checks, reported on `errors`: a string, not empty when `empty` says why it
    must not be, at most `limit` characters, storable (text_problem)."""
    if not isinstance(value, str):
        errors.add(name, "Must be a string.")
    elif empty is not None and not value.strip():
        errors.add(name, empty)
    elif len(value) > limit:
        errors.add(name, f"At most {limit:,} characters (got {len(value):,}).")
    elif problem := text_problem(value):
        errors.add(name, problem)


def lookup_text_ok(value: Any) -> bool:
    """Whether a string from a URL or body can name anything stored (else it names nothing: 404)."""
    return isinstance(value, str) and text_problem(value) is None


def json_problem_at(value: Any, *, max_depth: int = JSON_MAX_DEPTH) -> tuple[tuple[Any, ...], str] | None:
    """Where and why a JSON value holds something no reader can store or render, or None.

    Walks the value without recursion (a hostile body may nest thousands of levels).
    """
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if len(path) >= max_depth:
            return path, f"At most {max_depth} levels of nesting."
        if isinstance(item, str):
            if problem := text_problem(item):
                return path, problem
        elif isinstance(item, bool) or item is None or isinstance(item, int):
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path, "Numbers must be finite (no NaN or Infinity)."
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return path, "Object keys must be strings."
                if problem := text_problem(key):
                    return (*path, key), problem
                stack.append((child, (*path, key)))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, (*path, index)) for index, child in enumerate(item))
        else:
            return path, f"Not a JSON value: {type(item).__name__}."
    return None


def json_problem(value: Any, *, limit: int = JSON_LIMIT_BYTES) -> str | None:
    """Why a JSON value cannot be stored and read back by every face, or None."""
    if found := json_problem_at(value):
        return found[1]
    if len(json.dumps(value, separators=(",", ":"), allow_nan=False).encode()) > limit:
        return f"At most {limit // 1024} KB of JSON."
    return None


class JsonRefused(ValueError):
    """A request body (or JSON form field) that is not JSON Taskdesk will read."""


def parse_json(raw: str | bytes, *, max_depth: int = BODY_MAX_DEPTH) -> Any:
    """The one JSON reader at the door of every face: invalid or too deeply nested is JsonRefused.

    Depth is bounded here so nothing downstream (validators, renderers) ever recurses far; the
    values' own rules (finite numbers, valid text, sizes) are checked per field by clean_value.
    """
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JsonRefused(f"At most {max_depth} levels of nesting.") from None
    except json.JSONDecodeError as exc:
        raise JsonRefused(f"{exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonRefused(str(exc)) from None
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise JsonRefused(f"At most {max_depth} levels of nesting.")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return value


def json_or_text(raw: str) -> Any:
    """Text stored as it came (a task's result) read as the JSON it holds, when it holds JSON every
    reader can render and write back (bounded depth, finite numbers, valid text); else the text.

    A result is stored as text and never refused for what JSON it looks like, so its readers must
    not trust it: `"NaN"` parsed would be written back as the non-JSON token NaN, and a thousand
    nested brackets would raise RecursionError in every page that shows the task.
    """
    try:
        value = parse_json(raw)
    except JsonRefused:
        return raw
    return raw if json_problem_at(value) is not None else value


def finite(value: Any, default: float = 0.0) -> Any:
    """A stored number as a reader may write it: rows from before the checks may hold NaN or Infinity."""
    return value if not isinstance(value, float) or math.isfinite(value) else default


def as_object(value: Any) -> dict:
    """A stored JSON object as a reader may use it (older rows may hold another shape)."""
    return value if isinstance(value, dict) else {}


def ascii_int(raw: Any, *, max_digits: int = 18) -> int | None:
    """An integer written in ASCII digits, or None ("²" and "٣" pass str.isdigit(), not this)."""
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit() or len(raw) > max_digits:
        return None
    return int(raw)


def datetime_problem(value: datetime) -> str | None:
    """Why an aware datetime cannot be stored (PostgreSQL's offset and year range), or None."""
    offset = value.utcoffset()
    if offset is not None and abs(offset) > MAX_UTC_OFFSET:
        return "The UTC offset must be within -15:59 and +15:59."
    try:
        value.astimezone(UTC)
    except OverflowError:
        return "Out of range (years 1 to 9999 in UTC)."
    return None


def clean_datetime(value: datetime) -> datetime:
    """An aware datetime as UTC (naive means UTC); ValueError naming the problem."""
    if not isinstance(value, datetime):
        raise ValueError("Must be a date-time.")
    if value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    if problem := datetime_problem(value):
        raise ValueError(problem)
    return value.astimezone(UTC)


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return type(value).__name__


def _deep_planning_problem(value: dict) -> str | None:
    """The detail page reads `tasks` as a checklist: a list of objects (title, completed)."""
    tasks = value.get("tasks")
    if tasks is None:
        return None
    if not isinstance(tasks, list) or not all(isinstance(item, dict) for item in tasks):
        return '`tasks` must be a list of objects (e.g. {"title": "…", "completed": false}).'
    return None


def clean_value(name: str, value: Any, errors: Errors) -> Any:
    """Check one field's type and size; return the stored form."""
    if value is None:
        if name in NULLABLE:
            return None
        errors.add(name, "May not be null.")
        return None
    if name in TEXT_LIMITS:
        if not isinstance(value, str):
            errors.add(name, "Must be a string.")
        elif name == "name" and not value.strip():
            errors.add(name, "Must be 1 to 200 characters, or null for no name.")
        elif len(value) > TEXT_LIMITS[name]:
            errors.add(name, f"At most {TEXT_LIMITS[name]:,} characters (got {len(value):,}).")
        elif problem := text_problem(value):
            errors.add(name, problem)
        return value
    if name in OBJECT_FIELDS:
        if not isinstance(value, dict):
            errors.add(name, f"Must be a JSON object, not {json_type(value)}.")
        elif (problem := json_problem(value)) or name == "deep_planning" and (problem := _deep_planning_problem(value)):
            errors.add(name, problem)
        return value
    if name in LIST_FIELDS:
        if not isinstance(value, list):
            errors.add(name, f"Must be a JSON array, not {json_type(value)}.")
        elif problem := json_problem(value):
            errors.add(name, problem)
        elif name in ("input_files", "used_tools") and not all(isinstance(v, str) for v in value):
            errors.add(name, "Must be a list of strings.")
        return value
    if name in BOOL_FIELDS:
        if not isinstance(value, bool):
            errors.add(name, "Must be true or false.")
        return value
    if name == "priority":
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 80.0 from a JSON encoder that writes every number as a float
        if isinstance(value, bool) or not isinstance(value, int):
            errors.add(name, "Must be an integer from 0 to 100.")
        elif not 0 <= value <= 100:
            errors.add(name, f"Must be from 0 to 100 (got {value}).")
        return value
    if name in ("prompt_tokens", "completion_tokens", "execution_attempts"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            errors.add(name, "Must be a non-negative integer.")
        elif value > MAX_COUNT:
            errors.add(name, "Too large.")
        return value
    if name == "duration":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.add(name, "Must be a non-negative number of seconds.")
            return value
        if not math.isfinite(value) or not 0 <= value <= MAX_DURATION_SECONDS:
            errors.add(name, f"Must be a finite number of seconds from 0 to {MAX_DURATION_SECONDS:.0f}.")
            return value
        return float(value)
    if name == "status":
        if value not in lifecycle.STATUS_LABELS:
            errors.add(name, f"Unknown status {value!r}; expected one of: {', '.join(lifecycle.STATUSES)}.")
        return value
    errors.add(name, "Unknown field.")
    return value


def clean_fields(values: dict[str, Any], allowed: set[str], errors: Errors) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for name, value in values.items():
        if name not in allowed:
            errors.add(name, "Unknown field.")
            continue
        cleaned[name] = clean_value(name, value, errors)
    return cleaned


def check_task_id(task_id: Any, errors: Errors, name: str = "id") -> None:
    if not isinstance(task_id, str) or not TASK_ID_RE.fullmatch(task_id):
        errors.add(name, TASK_ID_MESSAGE)


def merge_object(current: dict | None, patch: dict) -> dict:
    """The one merge rule for metadata, params and payload extension: top-level keys overwrite."""
    merged = dict(current or {})
    merged.update(patch)
    return merged
