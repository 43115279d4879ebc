"""Agent-facing routes: native REST + docs (/api/), SSE (/api/v1/events), JSON-RPC (/rpc).

Other faces append their mounts to `urlpatterns` (e.g. xpander/, agentex/). Every face's view
runs in a worker thread of its own under ASGI (threads.py): agents' writes overlap.
"""

from django.urls import include, path

from . import jsonrpc, sse
from .native import api
from .threads import in_worker_threads

urlpatterns = [
    # Before the ninja mount: the stream is a plain async view (ninja's views are sync here).
    path("api/v1/events", sse.events, name="api_events"),
    path("api/", api.urls),
    path("rpc", jsonrpc.rpc, name="jsonrpc"),
]

# The seed faces: the real xpander-sdk and agentex-client packages point their base_url here.
urlpatterns += [
    path("xpander/", include("tasks_app.api.xpander_urls")),
    path("agentex/", include("tasks_app.api.agentex_urls")),
]

urlpatterns = in_worker_threads(urlpatterns)
