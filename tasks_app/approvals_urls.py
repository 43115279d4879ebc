"""URLs of the HITL inbox and the activity log (included by dashboard/urls.py)."""

from django.urls import path

from .views import activity, approvals

urlpatterns = [
    path("approvals/", approvals.inbox, name="approvals_inbox"),
    path("approvals/decided/", approvals.decided, name="approvals_decided"),
    path("approvals/<int:hitl_id>/decide/", approvals.decide, name="hitl_decide"),
    path("tasks/<slug:org>/<str:task_id>/activity/", activity.activity_log, name="task_activity"),
]
