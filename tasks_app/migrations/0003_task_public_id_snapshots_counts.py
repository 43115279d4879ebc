"""Per-organization task ids, event snapshots and status counts.

- Task ids were one global namespace (the string primary key), so an organization creating an
  id another organization used was told "taken". The task now has an internal integer key
  (`id`) and its `public_id`, unique within its organization. Existing tasks keep their id as
  their public id; every face looks tasks up by organization and public id.
- `TaskEvent.snapshot`: the task as it was at the event, for streams (NULL on older events).
- `TaskCount`: per-organization status counts kept by the write path, filled here once.

Changing a primary key's type under four tables' foreign keys is done as a rebuild on both
databases: copy the four tables aside, create them anew from the new model state (indexes,
constraints and foreign keys included), copy the rows back with the new keys, drop the copies.
Irreversible: going back would need the old ids to be unique across organizations again.
"""

import django.db.models.deletion
from django.core.management.color import no_style
from django.db import migrations, models

import tasks_app.models

TRIGRAM_INDEXES = {
    "task_title_trgm": "UPPER(title) gin_trgm_ops",
    "task_input_text_trgm": "UPPER(input_text) gin_trgm_ops",
}


def _columns(model, skip=()):
    return [f.column for f in model._meta.concrete_fields if f.name not in skip]


def rebuild(apps, schema_editor):
    connection = schema_editor.connection
    qn = schema_editor.quote_name
    Task = apps.get_model("tasks_app", "Task")
    ActivityEntry = apps.get_model("tasks_app", "ActivityEntry")
    HitlRequest = apps.get_model("tasks_app", "HitlRequest")
    TaskEvent = apps.get_model("tasks_app", "TaskEvent")
    children = [ActivityEntry, HitlRequest, TaskEvent]
    models_ = [Task, *children]

    def old(model):
        return qn("old_" + model._meta.db_table)

    for model in models_:
        schema_editor.execute(f"CREATE TABLE {old(model)} AS SELECT * FROM {qn(model._meta.db_table)}")
    schema_editor.execute(
        "CREATE TABLE old_task_keys AS SELECT id AS old_id, "
        f"ROW_NUMBER() OVER (ORDER BY created_at, id) AS new_id FROM {old(Task)}"
    )
    schema_editor.execute("CREATE UNIQUE INDEX old_task_keys_old ON old_task_keys (old_id)")
    cascade = " CASCADE" if connection.vendor == "postgresql" else ""
    for model in [*children, Task]:
        schema_editor.execute(f"DROP TABLE {qn(model._meta.db_table)}{cascade}")
    for model in models_:
        schema_editor.create_model(model)

    task_cols = _columns(Task, skip=("id", "public_id", "parent", "snapshot"))
    select = ", ".join(f"o.{qn(c)}" for c in task_cols)
    schema_editor.execute(
        f"INSERT INTO {qn(Task._meta.db_table)} (id, public_id, parent_id, {', '.join(map(qn, task_cols))}) "
        f"SELECT k.new_id, o.id, p.new_id, {select} FROM {old(Task)} o "
        "JOIN old_task_keys k ON k.old_id = o.id LEFT JOIN old_task_keys p ON p.old_id = o.parent_id"
    )
    for model in children:
        cols = _columns(model, skip=("task", "snapshot"))
        select = ", ".join(f"o.{qn(c)}" for c in cols)
        schema_editor.execute(
            f"INSERT INTO {qn(model._meta.db_table)} (task_id, {', '.join(map(qn, cols))}) "
            f"SELECT k.new_id, {select} FROM {old(model)} o JOIN old_task_keys k ON k.old_id = o.task_id"
        )
    for model in models_:
        schema_editor.execute(f"DROP TABLE {old(model)}")
    schema_editor.execute("DROP TABLE old_task_keys")
    for sql in connection.ops.sequence_reset_sql(no_style(), models_):
        schema_editor.execute(sql)
    if connection.vendor == "postgresql":
        schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, expression in TRIGRAM_INDEXES.items():
            schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON tasks_app_task USING gin ({expression})")


def fill_counts(apps, schema_editor):
    Task = apps.get_model("tasks_app", "Task")
    TaskCount = apps.get_model("tasks_app", "TaskCount")
    Organization = apps.get_model("tasks_app", "Organization")
    statuses = [choice[0] for choice in Task._meta.get_field("status").choices]
    rows = (
        Task.objects.filter(deleted_at__isnull=True)
        .order_by()
        .values_list("organization_id", "status")
        .annotate(n=models.Count("pk"))
    )
    counts = {(org, status): n for org, status, n in rows}
    TaskCount.objects.bulk_create(
        [
            TaskCount(organization_id=org, status=status, count=counts.get((org, status), 0))
            for org in Organization.objects.values_list("pk", flat=True)
            for status in statuses
        ]
    )


class Migration(migrations.Migration):
    dependencies = [
        ("tasks_app", "0002_task_search_trigram_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="task",
                    name="public_id",
                    field=models.CharField(default=tasks_app.models.new_task_id, max_length=100),
                ),
                migrations.AddField(
                    model_name="taskevent",
                    name="snapshot",
                    field=models.JSONField(blank=True, null=True),
                ),
                migrations.AlterField(
                    model_name="task",
                    name="id",
                    field=models.BigAutoField(primary_key=True, serialize=False),
                ),
                migrations.AddConstraint(
                    model_name="task",
                    constraint=models.UniqueConstraint(
                        fields=("organization", "public_id"),
                        name="task_unique_public_id",
                        opclasses=["int8_ops", "varchar_pattern_ops"],
                    ),
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(rebuild, elidable=False),
        migrations.CreateModel(
            name="TaskCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Pending"),
                            ("executing", "Executing"),
                            ("paused", "Paused"),
                            ("interrupted", "Interrupted"),
                            ("completed", "Completed"),
                            ("failed", "Failed"),
                            ("error", "Error"),
                            ("stopped", "Stopped"),
                            ("canceled", "Canceled"),
                            ("terminated", "Terminated"),
                            ("timed_out", "Timed out"),
                        ],
                        max_length=20,
                    ),
                ),
                ("count", models.BigIntegerField(default=0)),
                (
                    "organization",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="tasks_app.organization"
                    ),
                ),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("organization", "status"), name="task_count_unique")],
            },
        ),
        migrations.RunPython(fill_counts, elidable=False),
    ]
