"""Shared helpers for the dashboard view tests."""

from tasks_app import services
from tasks_app.models import Task, TaskEvent

XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '" hx-get="/x" hx-on:click="alert(1)',
]


def make_tasks(organization, actor, count, *, prefix="t", **fields) -> list[Task]:
    return [
        services.task_create(
            organization=organization, actor=actor, id=f"{prefix}-{i:04d}", title=f"Task {i}", **fields
        )[0]
        for i in range(count)
    ]


def event_count() -> int:
    return TaskEvent.objects.count()


def assert_escaped(html: str) -> None:
    """No payload appears raw: tags are escaped and quotes cannot end an attribute."""
    for payload in XSS_PAYLOADS:
        assert payload not in html, payload
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert 'hx-get="/x"' not in html
    assert 'hx-on:click="alert' not in html
