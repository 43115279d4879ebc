"""Trigram indexes for the task list's free-text search (selectors.filter_tasks with q), PostgreSQL only.

Django renders `title__icontains=q` as `UPPER("title"::text) LIKE UPPER('%q%')`, so the GIN indexes
are on the same UPPER(...) expressions: the planner only uses an expression index whose expression
matches the query's. pg_trgm then answers the infix LIKE from the index instead of a sequential scan.
The id prefix match (`"id"::text LIKE 'q%'`) needs nothing new: Django already gives the CharField
primary key a `varchar_pattern_ops` btree (tasks_app_task_id_..._like), so the three arms combine
as a BitmapOr of index scans. Patterns under 3 characters have no trigram and fall back to a scan.

Not declared in Task.Meta.indexes on purpose: SQLite has no GIN/pg_trgm, and a declared index would
be created there too. This migration changes no model state (makemigrations sees nothing) and is a
no-op on other databases.
"""

from django.db import migrations

INDEXES = {
    "task_title_trgm": "UPPER(title) gin_trgm_ops",
    "task_input_text_trgm": "UPPER(input_text) gin_trgm_ops",
}


def create_indexes(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    # Trusted extension since PostgreSQL 13: the database owner may create it without superuser.
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, expression in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON tasks_app_task USING gin ({expression})")


def drop_indexes(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    # The extension stays: other objects may use it, and dropping it needs more privilege than creating.
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("tasks_app", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(create_indexes, drop_indexes, elidable=False),
    ]
