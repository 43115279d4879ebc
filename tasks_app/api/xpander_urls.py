"""Routes of the xpander face (see xpander.py), served at /xpander/ and at /xpander/<org>/."""

from django.urls import include, path

from . import xpander

routes = [
    path(
        "agent-execution/executions/history/user/<str:user_id>",
        xpander.list_user_tasks,
        name="xpander_list_user_tasks",
    ),
    path("agent-execution/executions/history/<str:agent_id>", xpander.list_agent_tasks, name="xpander_list_tasks"),
    path("agent-execution/<str:task_id>/status", xpander.get_task, name="xpander_get_task"),
    path("agent-execution/<str:task_id>/update", xpander.update_task, name="xpander_update_task"),
    path("agent-execution/<str:task_id>/events", xpander.task_events, name="xpander_task_events"),
    path("agent-execution/<str:agent_id>/report_task", xpander.report_task, name="xpander_report_task"),
    path("agent-execution/<str:agent_or_task_id>", xpander.agent_execution, name="xpander_agent_execution"),
    path("agents-metrics/<str:agent_id>/execution", xpander.report_metrics, name="xpander_report_metrics"),
    path("activity/<str:agent_id>/<str:task_id>", xpander.activity_log, name="xpander_activity_log"),
]

# The SDK adds the organization to event-stream URLs (and to all URLs for agent-controller hosts).
urlpatterns = [*routes, path("<str:org>/", include((routes, "xpander_org"), namespace="xpander_org"))]
