import itertools

import django.db.models.deletion
from django.db import migrations, models


def pair_existing_results(apps, schema_editor):
    """Pair the tool results already logged, task by task, with the rule new results follow."""
    from tasks_app.services.activity import pair_tool_results

    ActivityEntry = apps.get_model("tasks_app", "ActivityEntry")
    rows = (
        ActivityEntry.objects.filter(kind__in=("tool_call", "tool_result"))
        .only("pk", "task_id", "kind", "tool_name", "tool_call_id")
        .order_by("task_id", "id")
        .iterator(chunk_size=5000)
    )
    paired = []
    for _, entries in itertools.groupby(rows, key=lambda entry: entry.task_id):
        for call, result in pair_tool_results(entries):
            result.call_id = call.pk
            paired.append(result)
        if len(paired) >= 5000:
            ActivityEntry.objects.bulk_update(paired, ["call"])
            paired = []
    ActivityEntry.objects.bulk_update(paired, ["call"])


class Migration(migrations.Migration):
    dependencies = [
        ("tasks_app", "0005_activity_entries_plural"),
    ]

    operations = [
        migrations.AddField(
            model_name="activityentry",
            name="call",
            field=models.OneToOneField(
                blank=True,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="result",
                to="tasks_app.activityentry",
            ),
        ),
        migrations.RunPython(pair_existing_results, migrations.RunPython.noop),
    ]
