"""The bare Channels baseline of bench_fanout.py: one group, one group_send, no auth, no rendering.

Every socket joins one channel-layer group on connect; the bench sends one group_send of a
fragment-sized text and the consumer forwards it as is: what Channels itself costs to fan out.

    PYTHONPATH=bench daphne _bare_channels:application
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

http = get_asgi_application()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

GROUP = "bench-bare"


class BareConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def bare_message(self, event):
        await self.send(text_data=event["text"])


application = ProtocolTypeRouter({"http": http, "websocket": URLRouter([path("ws/bare/", BareConsumer.as_asgi())])})
