"""Websocket routes; dashboard/asgi.py wraps them in their checks.

Pages' sockets: exact origin check and session auth. Agents' sockets (`/ws`, ClaudeBench's
transport): an API token header, an origin checked only when one is sent, no session.
"""

from django.urls import path

from .api.jsonrpc_ws import JsonRpcSocketConsumer
from .consumers import HitlInboxConsumer, OpsConsumer, TaskEventsConsumer

websocket_urlpatterns = [
    path("ws/tasks/", TaskEventsConsumer.as_asgi(), name="ws_task_list"),
    path("ws/approvals/", HitlInboxConsumer.as_asgi(), name="ws_approvals"),
    path("ws/tasks/<slug:org>/<str:task_id>/", TaskEventsConsumer.as_asgi(), name="ws_task_detail"),
    path("ws/ops/<slug:org>/", OpsConsumer.as_asgi(), name="ws_ops"),
]

AGENT_SOCKET_PATH = "/ws"
agent_websocket_urlpatterns = [
    path(AGENT_SOCKET_PATH.removeprefix("/"), JsonRpcSocketConsumer.as_asgi(), name="ws_jsonrpc"),
]
