from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from .views import activity, bulk, ops, saved_views, tasks

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="task_list", permanent=False)),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tasks/", tasks.task_list, name="task_list"),
    # Throughput, failures, durations, tokens, liveness and queues, from the write path's rollups.
    path("ops/", ops.ops, name="ops"),
    # Saved views of the list: a view's own URL opens it; the owner renames, shares or deletes it.
    path("views/", saved_views.saved_view_create, name="saved_view_create"),
    path("views/<int:view_id>/", saved_views.saved_view_open, name="saved_view_open"),
    path("views/<int:view_id>/<slug:action>/", saved_views.saved_view_change, name="saved_view_change"),
    # Bulk actions from the list: preview (nothing changes), start (frozen, run in the background),
    # one action's progress and summary, cancel, and the organization's recent ones.
    path("bulk/", bulk.bulk_actions_list, name="bulk_actions"),
    path("bulk/preview/", bulk.bulk_preview, name="bulk_preview"),
    path("bulk/start/", bulk.bulk_start, name="bulk_start"),
    path("bulk/<int:action_id>/", bulk.bulk_action, name="bulk_action"),
    path("bulk/<int:action_id>/cancel/", bulk.bulk_action_cancel, name="bulk_action_cancel"),
    # A task's pages live under its organization: ids are unique within an organization only.
    path("tasks/<slug:org>/<str:task_id>/", tasks.task_detail, name="task_detail"),
    path("tasks/<slug:org>/<str:task_id>/status/", tasks.task_set_status, name="task_set_status"),
    path("tasks/<slug:org>/<str:task_id>/priority/", tasks.task_set_priority, name="task_set_priority"),
    path("tasks/<slug:org>/<str:task_id>/result/", tasks.task_set_result, name="task_set_result"),
    path("tasks/<slug:org>/<str:task_id>/metadata/", tasks.task_set_metadata, name="task_set_metadata"),
    path("tasks/<slug:org>/<str:task_id>/stop/", tasks.task_stop, name="task_stop"),
    path("tasks/<slug:org>/<str:task_id>/retry/", tasks.task_retry, name="task_retry"),
    path("tasks/<slug:org>/<str:task_id>/timeline/", activity.task_timeline, name="task_timeline"),
    # A bare id pasted from a log: redirects to the task, or asks which organization's.
    path("tasks/<str:task_id>/", tasks.task_by_id, name="task_by_id"),
]
