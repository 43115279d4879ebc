"""Django admin: a superuser tool over every organization. Task writes go through the services.

Django's admin saves a ModelForm by calling `obj.save()`; for tasks that would skip validation,
the lifecycle, the version bump, the TaskEvent and the live bell. So `TaskAdminForm` makes the
service call itself, as the last step of validation (`_post_clean`): a refusal becomes a form
error on the page, and when the form is valid the task is already saved, audited and published,
so `save_model` has nothing left to do. Task deletes are soft deletes through the services too.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from . import services
from .models import (
    ActivityEntry,
    Agent,
    ApiToken,
    BulkAction,
    Face,
    HitlRequest,
    Membership,
    Organization,
    Task,
    TaskEvent,
    Worker,
)

# The index lists every model already: without the sidebar repeating it on each page, a
# changelist has the width to show a title or a question on one line.
admin.site.enable_nav_sidebar = False

# How many events the change page shows (newest first); the rest stay in the TaskEvent admin.
HISTORY_LIMIT = 200

IDENTITY_FIELDS = ("public_id", "organization", "agent", "parent")
BOOKKEEPING_FIELDS = (
    "version",
    "is_manually_stopped",
    "created_at",
    "updated_at",
    "started_at",
    "paused_at",
    "finished_at",
    "cleaned_at",
    "deleted_at",
)


class TaskAdminForm(forms.ModelForm):
    """Validates and writes through `services.task_create` / `services.task_update`."""

    # The version the page was rendered at: a save over someone else's newer change is refused.
    loaded_version = forms.IntegerField(widget=forms.HiddenInput, required=False)
    # Set per request by TaskAdmin.get_form.
    actor: services.Actor | None = None

    class Meta:
        model = Task
        # The admin narrows this per page (fieldsets minus read-only fields).
        fields = sorted(services.UPDATE_FIELDS | set(IDENTITY_FIELDS))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            self.fields["loaded_version"].initial = self.instance.version
        self.service_done = False
        self.created = False

    def _post_clean(self) -> None:
        # Deliberately not calling ModelForm._post_clean: model validation would duplicate (and
        # word differently) the rules the services own, and construct_instance is not needed
        # because the service builds or locks the row itself.
        if self.errors or self.actor is None:
            return
        try:
            if self.instance._state.adding:
                self._create()
            else:
                self._update()
        except services.InvalidInput as exc:
            for name, msgs in exc.errors.items():
                self.add_error(name if name in self.fields else None, msgs)
        except services.ServiceError as exc:
            self.add_error("status" if isinstance(exc, services.TransitionRefused) else None, exc.message)
        else:
            self.service_done = True

    def _changed_values(self, editable: set[str]) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in self.changed_data if name in editable}

    def _create(self) -> None:
        data = self.cleaned_data
        values = self._changed_values(services.CREATE_FIELDS)
        # The status is always sent so a task created here starts where the form says.
        values["status"] = data["status"]
        task, created = services.task_create(
            organization=data["organization"],
            actor=self.actor,
            id=data.get("public_id") or None,
            agent=data.get("agent"),
            parent_id=data["parent"].public_id if data.get("parent") else None,
            **values,
        )
        if not created:
            raise services.IdTaken(f"A task with id {task.public_id!r} already exists.")
        self.instance = task

    def _update(self) -> None:
        values = self._changed_values(services.UPDATE_FIELDS)
        for name, value in values.items():
            if value is None:
                # task_update treats None as "leave untouched"; say so instead of silently ignoring.
                raise services.InvalidInput({name: ["Cannot be emptied here; enter an empty value of its type."]})
        removed = set(self.initial.get("payload_extension") or {}) - set(values.get("payload_extension") or {})
        if "payload_extension" in values and removed:
            # The payload extension only merges; keys cannot be dropped through an update.
            raise services.InvalidInput(
                {"payload_extension": [f"Keys cannot be removed: {', '.join(sorted(removed))}."]}
            )
        if not values:
            return
        self.instance = services.task_update(
            task=self.instance,
            actor=self.actor,
            expected_version=self.cleaned_data.get("loaded_version"),
            # The form shows the whole object, so an edited metadata/params replaces it.
            metadata_replace="metadata" in values,
            params_replace="params" in values,
            **values,
        )


def _shortened(text: str, limit: int) -> str:
    """One line of a changelist: the start of a long text, the whole of it on hover (escaped)."""
    if len(text) <= limit:
        return text
    return format_html('<span title="{}">{}…</span>', text, text[: limit - 1])


class TaskLink:
    """The task of a record by organization and public id, linked (never its internal row id)."""

    @admin.display(description="task", ordering="task__public_id")
    def task_link(self, obj) -> str:
        url = reverse("admin:tasks_app_task_change", args=[obj.task_id])
        return format_html('<a href="{}">{} / {}</a>', url, obj.task.organization.slug, obj.task.public_id)


class CappedCountPaginator(Paginator):
    """Counts at most `cap` rows: a filtered COUNT(*) over a million tasks costs seconds, and
    nobody pages past the first few hundred (show_full_result_count=False skips the other one)."""

    cap = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list[: self.cap].count()


class CleanedFilter(admin.SimpleListFilter):
    """Whether retention removed a task's content (manage.py clean_tasks)."""

    title = "content"
    parameter_name = "cleaned"

    def lookups(self, request: HttpRequest, model_admin):
        return [("no", "kept"), ("yes", "cleaned by retention")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> QuerySet[Task]:
        value = self.value()
        if value not in ("yes", "no"):
            return queryset
        return queryset.filter(cleaned_at__isnull=value == "no")


class AgentFilter(admin.RelatedFieldListFilter):
    """Agents by name and organization: two organizations' "support-bot" are two choices."""

    def field_choices(self, field, request, model_admin):
        agents = Agent.objects.select_related("organization").order_by("name", "organization__slug")
        return [(agent.pk, f"{agent.name} · {agent.organization.slug}") for agent in agents]


class RecentSourceFilter(admin.SimpleListFilter):
    """Filter by source, offering the sources of the newest tasks.

    Django's field filter lists them with SELECT DISTINCT over the whole table (230 ms at a
    million tasks, on every changelist view); the newest RECENT rows by primary key cost the
    same at any size, and a source no recent task used can still be filtered by URL (?source=).
    """

    title = "source"
    parameter_name = "source"
    RECENT = 10_000

    def lookups(self, request: HttpRequest, model_admin):
        recent = Task.objects.order_by("-id").values_list("pk", flat=True)[: self.RECENT]
        sources = Task.objects.filter(pk__in=recent).order_by("source").values_list("source", flat=True).distinct()
        return [(source, source or "(none)") for source in sources]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> QuerySet[Task]:
        value = self.value()
        return queryset if value is None else queryset.filter(source=value)


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    form = TaskAdminForm
    paginator = CappedCountPaginator
    list_display = ("short_id", "short_title", "org", "status", "agent", "priority", "updated_at", "cleaned")
    list_display_links = ("short_id",)
    list_filter = ("status", ("agent", AgentFilter), "organization", RecentSourceFilter, CleanedFilter)
    search_fields = ("=public_id", "title", "input_text")
    show_full_result_count = False
    list_select_related = ("agent", "organization")
    list_per_page = 50
    # Newest first by row id: the primary key's index serves it over every organization (the
    # model's -created_at order has an index per organization only: a superuser's list across
    # all of them sorted the whole table, 111 ms at 100k tasks).
    ordering = ("-id",)
    raw_id_fields = ("parent",)
    actions = ("stop_tasks", "retry_tasks", "soft_delete_tasks")
    fieldsets = (
        (None, {"fields": (*IDENTITY_FIELDS, "loaded_version", "name", "title", "source")}),
        (
            "State",
            {
                "fields": (
                    "status",
                    "status_reason",
                    "internal_status",
                    "priority",
                    "execution_attempts",
                    "queue",
                    "assigned_worker",
                )
            },
        ),
        (
            "Input",
            {
                "classes": ("collapse",),
                "fields": (
                    "input_text",
                    "input_files",
                    "input_user",
                    "additional_context",
                    "instructions_override",
                    "expected_output",
                    "output_format",
                    "output_schema",
                    "think_mode",
                    "mcp_servers",
                    "disable_attachment_injection",
                    "voice_id",
                    "agent_version",
                    "triggering_agent_id",
                    "last_executed_node_id",
                    "is_orchestration",
                    "events_streaming",
                    "return_metrics",
                ),
            },
        ),
        (
            "Output",
            {
                "fields": (
                    "result",
                    "metadata",
                    "params",
                    "payload_extension",
                    "deep_planning",
                    "prompt_tokens",
                    "completion_tokens",
                    "used_tools",
                    "duration",
                )
            },
        ),
        ("Bookkeeping", {"fields": BOOKKEEPING_FIELDS}),
        ("History", {"fields": ("event_history",)}),
    )

    def get_form(self, request: HttpRequest, obj: Task | None = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change=change, **kwargs)
        # get_form builds a fresh class per call, so this actor belongs to this request only.
        form.actor = services.Actor.for_user(request.user, face=Face.ADMIN)
        return form

    @admin.display(description="id", ordering="public_id")
    def short_id(self, task: Task) -> str:
        return _shortened(task.public_id, 18)

    @admin.display(description="title", ordering="title")
    def short_title(self, task: Task) -> str:
        return _shortened(task.title or task.name or "", 60)

    @admin.display(description="organization", ordering="organization__slug")
    def org(self, task: Task) -> str:
        return task.organization.slug

    @admin.display(description="cleaned", boolean=True, ordering="cleaned_at")
    def cleaned(self, task: Task) -> bool:
        return task.cleaned_at is not None

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        # The change page shows organization, agent and parent: fetch them with the task.
        return super().get_queryset(request).select_related("organization", "agent", "parent", "assigned_worker")

    def get_readonly_fields(self, request: HttpRequest, obj: Task | None = None) -> tuple[str, ...]:
        editable = services.CREATE_FIELDS | set(IDENTITY_FIELDS) if obj is None else services.UPDATE_FIELDS
        if obj is not None and obj.cleaned_at is not None:
            editable = set()  # retention left it read-only (services refuse TaskCleaned)
        shown = [name for _, opts in self.fieldsets for name in opts["fields"]]
        return tuple(name for name in shown if name not in editable and name != "loaded_version")

    def get_fieldsets(self, request: HttpRequest, obj: Task | None = None):
        if obj is None:
            # Nothing to show yet for a task being added.
            return [fs for fs in self.fieldsets if fs[0] not in ("History", "Bookkeeping")]
        if obj.cleaned_at is not None:
            note = f"Removed by retention on {obj.cleaned_at:%Y-%m-%d %H:%M} UTC; the task is read-only."
            return [
                (name, {**opts, "description": note}) if name in ("Input", "Output") else (name, opts)
                for name, opts in self.fieldsets
            ]
        return self.fieldsets

    @admin.display(description="Event history (newest first)")
    def event_history(self, obj: Task) -> str:
        events = list(TaskEvent.objects.filter(task_id=obj.pk).order_by("-id")[:HISTORY_LIMIT])
        return render_to_string("admin/tasks_app/task/event_history.html", {"events": events, "limit": HISTORY_LIMIT})

    def save_model(self, request: HttpRequest, obj: Task, form: TaskAdminForm, change: bool) -> None:
        # The form's validation already wrote through the services (see the module docstring).
        if not form.service_done:
            raise RuntimeError("TaskAdminForm did not go through the services")

    def has_delete_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        # A hard delete would bypass the audit; the soft-delete action goes through the services.
        return False

    def _run_per_task(self, request: HttpRequest, queryset: QuerySet[Task], verb: str, call) -> None:
        actor = services.Actor.for_user(request.user, face=Face.ADMIN)
        done, failed = 0, []
        # The changelist queryset joins organization/agent/parent (get_queryset): drop the joins,
        # the services lock and re-read each task themselves.
        for task in queryset.select_related(None).only("pk", "public_id", "organization_id"):
            try:
                call(task=task, actor=actor)
            except services.ServiceError as exc:
                failed.append(f"{task.public_id}: {exc.message}")
            else:
                done += 1
        if done:
            self.message_user(request, f"{verb} {done} task{'s' if done != 1 else ''}.", messages.SUCCESS)
        if failed:
            shown = "; ".join(failed[:5]) + (f"; and {len(failed) - 5} more" if len(failed) > 5 else "")
            self.message_user(
                request, f"{len(failed)} task{'s' if len(failed) != 1 else ''} not changed: {shown}", messages.ERROR
            )

    @admin.action(description="Stop selected tasks")
    def stop_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self._run_per_task(request, queryset, "Stopped", services.task_stop)

    @admin.action(description="Retry selected tasks (back to pending)")
    def retry_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self._run_per_task(request, queryset, "Retried", services.task_retry)

    @admin.action(description="Delete selected tasks (soft, audited)")
    def soft_delete_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self._run_per_task(request, queryset.filter(deleted_at__isnull=True), "Deleted", services.task_delete)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    raw_id_fields = ("user",)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")
    prepopulated_fields = {"slug": ("name",)}
    inlines = (MembershipInline,)


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "created_at")
    list_filter = ("organization",)
    list_select_related = ("organization",)
    search_fields = ("name",)

    def has_delete_permission(self, request: HttpRequest, obj: Agent | None = None) -> bool:
        # Deleting an agent would null the agent of its tasks without an event.
        return False


class ApiTokenAddForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ("organization", "name")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    list_filter = ("organization",)
    list_select_related = ("organization", "created_by")
    search_fields = ("name", "prefix")
    actions = ("revoke_tokens",)
    # token_hash is never shown: it is not a secret, but nobody needs it.
    readonly_fields = ("organization", "name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at")

    def get_form(self, request: HttpRequest, obj: ApiToken | None = None, change: bool = False, **kwargs: Any):
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> tuple[str, ...]:
        return () if obj is None else self.readonly_fields

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None):
        return ("organization", "name") if obj is None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ApiToken, form: forms.ModelForm, change: bool) -> None:
        if change:
            return  # every field is read-only once created
        # The form's max_length and required checks match the service's name rule, so this cannot refuse.
        token, raw = services.api_token_create(
            organization=form.cleaned_data["organization"], name=form.cleaned_data["name"], created_by=request.user
        )
        # The admin logs and redirects using `obj`: make it the row the service created.
        for field in ApiToken._meta.concrete_fields:
            setattr(obj, field.attname, getattr(token, field.attname))
        obj._state.adding = False
        self.message_user(
            request,
            f"Token created for {token.organization.slug}. Copy it now, it will not be shown again: {raw}",
            messages.WARNING,
        )

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False  # revoke instead: events keep pointing at the token that made them

    @admin.action(description="Revoke selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = 0
        for token in queryset.filter(revoked_at__isnull=True):
            services.api_token_revoke(token=token)
            count += 1
        self.message_user(request, f"Revoked {count} token{'s' if count != 1 else ''}.", messages.SUCCESS)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Append-only records: written by the services, viewed here, newest first."""

    show_full_result_count = False
    ordering = ("-id",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TaskEvent)
class TaskEventAdmin(TaskLink, ReadOnlyAdmin):
    list_display = ("id", "type", "task_link", "actor_label", "actor_kind", "face", "task_version", "created_at")
    list_select_related = ("task__organization",)
    list_filter = ("type", "face", "actor_kind", "organization")
    search_fields = ("=task__public_id", "actor_label")


@admin.register(ActivityEntry)
class ActivityEntryAdmin(TaskLink, ReadOnlyAdmin):
    list_display = ("id", "task_link", "kind", "role", "tool_name", "created_at")
    list_select_related = ("task__organization",)
    list_filter = ("kind", "organization")
    search_fields = ("=task__public_id", "tool_name")


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdmin):
    list_display = ("name", "organization", "roles", "registered_at", "last_heartbeat_at")
    list_filter = ("organization",)
    search_fields = ("=name",)


@admin.register(HitlRequest)
class HitlRequestAdmin(TaskLink, ReadOnlyAdmin):
    list_display = ("id", "task_link", "short_question", "decision", "requested_at", "decided_by", "decided_at")
    list_select_related = ("task__organization",)

    @admin.display(description="question", ordering="question")
    def short_question(self, hitl: HitlRequest) -> str:
        return _shortened(hitl.question, 70)

    @admin.display(description="decided by", ordering="decided_by_label")
    def decided_by(self, hitl: HitlRequest) -> str:
        return hitl.decided_by_label

    list_filter = ("decision", "organization")
    search_fields = ("=task__public_id", "question")


@admin.register(BulkAction)
class BulkActionAdmin(ReadOnlyAdmin):
    """Bulk actions are started from the list and run by services.bulk_actions; here they are read."""

    list_display = ("id", "act", "organization", "created_by_label", "total", "done", "refused", "state", "created_at")
    list_select_related = ("organization",)
    list_filter = ("act", "organization")
    search_fields = ("=id", "created_by_label")
