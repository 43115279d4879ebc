"""ASGI entry point: HTTP through Django, websockets through origin check + session auth."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from tasks_app.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# `make run` sets TASKDESK_SIMULATE=<changes per second>: the agent simulator runs inside this
# server process, because the embedded in-memory channel layer does not cross processes.
_simulate_rate = os.environ.get("TASKDESK_SIMULATE", "").strip()
if _simulate_rate:
    import sys  # noqa: E402

    from django.core.exceptions import ImproperlyConfigured  # noqa: E402

    from tasks_app.simulation import start_in_background  # noqa: E402

    try:
        _rate = float(_simulate_rate)
    except ValueError:
        raise ImproperlyConfigured(f"TASKDESK_SIMULATE must be a number of changes per second, got {_simulate_rate!r}")
    # Under daphne, steps run on the server's own event loop so broadcasts are scheduled thread-safely.
    start_in_background(_rate, loop=getattr(sys.modules.get("daphne.server"), "twisted_loop", None))
