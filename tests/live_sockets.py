"""Helpers shared by the websocket tests: signed-in communicators and reading pushed frames."""

import re

from channels.testing import WebsocketCommunicator
from django.test import Client

from dashboard.asgi import application

EVENT_ID_RE = re.compile(r'data-event-id="(\d+)"')


def session_cookie(user) -> str:
    """A session cookie for user (call from sync code: fixtures)."""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def communicator(path: str, cookie: str | None = None, origin: str = "http://testserver") -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode())]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


def event_ids(html: str) -> list[int]:
    return [int(x) for x in EVENT_ID_RE.findall(html)]
