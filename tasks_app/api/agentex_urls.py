"""Routes of the Agentex face (see agentex.py), served at /agentex/."""

from django.urls import path

from . import agentex

urlpatterns = [
    path("tasks", agentex.list_tasks, name="agentex_list_tasks"),
    path("tasks/name/<str:task_name>", agentex.task_detail, name="agentex_task_by_name"),
    path("tasks/name/<str:task_name>/stream", agentex.task_stream, name="agentex_stream_by_name"),
    path("tasks/<str:task_id>", agentex.task_detail, name="agentex_task"),
    path("tasks/<str:task_id>/stream", agentex.task_stream, name="agentex_stream"),
    path("tasks/<str:task_id>/<str:action>", agentex.task_action, name="agentex_task_action"),
    path("agents/name/<str:agent_name>/rpc", agentex.agent_rpc_by_name, name="agentex_rpc_by_name"),
    path("agents/<str:agent_id>/rpc", agentex.agent_rpc, name="agentex_rpc"),
]
