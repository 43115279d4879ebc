"""ASGI entry point: pages through Django, agent APIs through Django with their own lean
middleware, pages' websockets through an exact origin check + session auth, the agents' /ws
through its token (an Origin, when sent, checked the same)."""

import asyncio
import contextlib
import gc
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
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.urls import get_resolver, set_script_prefix  # noqa: E402

from tasks_app.live.origin import SameOriginValidator  # noqa: E402
from tasks_app.routing import AGENT_SOCKET_PATH, agent_websocket_urlpatterns, websocket_urlpatterns  # noqa: E402


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

    async def __call__(self, scope, receive, send):
        """One request without Django's per-request thread machinery.

        Django's ASGIHandler wraps each request in a ThreadSensitiveContext and sends
        request_started / request_finished through sync_to_async, so every request started a
        thread of its own and hopped to it twice: a fifth of a native PATCH's CPU (py-spy). Those
        signals' receivers close the database connections and caches *of the thread they run
        in*; the face views run in worker threads that take and return their own pooled
        connection around the call (api/threads.py), so here they have nothing to do.
        """
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        try:
            if request is None:
                await self.send_response(error_response, send)
                return
            response = await self.run_get_response(request)
            if response.streaming:
                # An event stream runs until the client leaves: stop it when it does.
                await self._stream(response, receive, send)
            else:
                await self.send_response(response, send)
            _close_without_signals(response)
        finally:
            body_file.close()

    async def _stream(self, response, receive, send):
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(self.send_response(response, send)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                await task


def _close_without_signals(response) -> None:
    """HttpResponse.close() less its request_finished signal (see AgentApiHandler.__call__)."""
    for closer in response._resource_closers:
        with contextlib.suppress(Exception):
            closer()
    response._resource_closers.clear()
    response.closed = True


agent_api_app = AgentApiHandler()


async def http_app(scope, receive, send):
    path = scope.get("path", "")
    app = agent_api_app if path.startswith(settings.API_PATH_PREFIXES) else django_asgi_app
    await app(scope, receive, send)


page_sockets = SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
# Agents authenticate with a token header (api/jsonrpc_ws.py), which a browser cannot set on a
# websocket: no session is read, and a request without an Origin is not a browser's.
agent_sockets = SameOriginValidator(URLRouter(agent_websocket_urlpatterns), origin_required=False)


async def websocket_app(scope, receive, send):
    app = agent_sockets if scope.get("path") == AGENT_SOCKET_PATH else page_sockets
    await app(scope, receive, send)


application = ProtocolTypeRouter({"http": http_app, "websocket": websocket_app})


def _freeze_start_up_objects() -> None:
    """Leave what start-up loaded (Django, the URLconf and every view module) out of the cyclic
    garbage collector: it lives as long as the process, and each full collection walked all of it.

    Measured with gc.callbacks in daphne holding 1,000 idle sockets: a full collection paused the
    event loop 110 ms, half of it start-up objects, which made an idle process cost 1.3x a bare
    Channels one; frozen (gc.freeze, Python's own means for long-lived processes), collections
    walk only what sockets and requests created since.
    """
    get_resolver().url_patterns  # noqa: B018 (imports every view module now, not at the first request)
    gc.collect()
    gc.freeze()


_freeze_start_up_objects()
