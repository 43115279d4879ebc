"""The bare Django view of bench_writes.py: the write's SQL through the ORM, nothing around it.

A sync view (Django's default), so under daphne it runs in the one thread sync views share:
what a plain Django project gets. No auth, no validation, no lifecycle, no rate limit, no bell.
"""

import json

from django.db import transaction
from django.db.models import F
from django.db.models.expressions import RawSQL
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from tasks_app.models import ActorKind, EventType, Face, Task, TaskEvent


@csrf_exempt
def write(request, pk: int):
    patch = json.loads(request.body)["metadata"]
    with transaction.atomic():
        Task.objects.filter(pk=pk).update(
            metadata=RawSQL("metadata || %s::jsonb", [json.dumps(patch)]), version=F("version") + 1
        )
        task = Task.objects.only("organization_id", "version").get(pk=pk)
        TaskEvent.objects.create(
            task_id=pk,
            organization_id=task.organization_id,
            type=EventType.UPDATED,
            changes=["metadata"],
            after={"metadata": patch},
            actor_kind=ActorKind.SYSTEM,
            actor_label="bare",
            face=Face.API,
            task_version=task.version,
        )
    return JsonResponse({"version": task.version})


urlpatterns = [path("bare/<int:pk>", write)]
