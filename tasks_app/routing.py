"""Websocket routes; dashboard/asgi.py wraps them in origin validation and session auth."""

from django.urls import path

from .consumers import HitlInboxConsumer, TaskEventsConsumer

websocket_urlpatterns = [
    path("ws/tasks/", TaskEventsConsumer.as_asgi(), name="ws_task_list"),
    path("ws/approvals/", HitlInboxConsumer.as_asgi(), name="ws_approvals"),
    path("ws/tasks/<slug:org>/<str:task_id>/", TaskEventsConsumer.as_asgi(), name="ws_task_detail"),
]
