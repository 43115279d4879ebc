"""ASGI entry point: pages through Django, agent APIs through Django with their own lean
middleware, websockets through an exact origin check + session auth."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
django_asgi_app = get_asgi_application()

from tasks_app.checks import database_problem  # noqa: E402

if problem := database_problem():
    # One line and a non-zero exit, before daphne listens: not a server answering 500s for 30 s each.
    raise SystemExit(f"Taskdesk cannot start: {problem}")

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402

from tasks_app.live.origin import SameOriginValidator  # noqa: E402
from tasks_app.routing import websocket_urlpatterns  # noqa: E402


class AgentApiHandler(ASGIHandler):
    """Django for the agent faces, with only the middleware a token-authenticated API uses.

    Agents send no cookies and every face view is csrf-exempt, so sessions, CSRF, auth, messages
    and htmx would only cost each write their CPU (a sixth of a native PATCH, measured with
    py-spy under bench/bench_writes.py). The same URLconf and views; Django's test client and
    any other handler still see the full MIDDLEWARE, so behaviour cannot differ but for cost.
    """

    def load_middleware(self, is_async=False):
        # load_middleware reads settings.MIDDLEWARE; swap it only while this handler is built
        # (at import, before anything serves).
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.API_MIDDLEWARE
        try:
            super().load_middleware(is_async=is_async)
        finally:
            settings.MIDDLEWARE = full


agent_api_app = AgentApiHandler()


async def http_app(scope, receive, send):
    path = scope.get("path", "")
    app = agent_api_app if path.startswith(settings.API_PATH_PREFIXES) else django_asgi_app
    await app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
