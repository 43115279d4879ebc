"""Websockets open only from the site's exact origin (scheme, host and port) or a CSRF trusted one."""

import pytest
from django.test import override_settings

from tasks_app.live.origin import allowed_origin, normalize_origin
from tests.live_sockets import communicator, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def hub():
    """The hub an accepted socket starts, stopped when the test ends (as tests/test_consumers.py
    does): left to the event loop's closing, its Redis listener could outlive the test's teardown."""
    from tasks_app.live import hub as live_hub

    yield live_hub.hub_for_running_loop()
    await live_hub.reset_hub_for_running_loop()


def scope(host="127.0.0.1:8000", scheme="ws", extra=()):
    headers = [(b"host", host.encode()), *extra] if host is not None else list(extra)
    return {"type": "websocket", "scheme": scheme, "headers": headers}


SAME_HOST_OTHER_APPS = [
    "http://127.0.0.1:9999",  # another port
    "https://127.0.0.1:8000",  # another scheme
    "http://127.0.0.1",  # the default port is another port
    "https://localhost:4443",
    "http://localhost:8000",  # another name for the same machine is another origin
    "http://127.0.0.1:8000.evil.example",
    "null",
    "file://",
    "",
]


@pytest.mark.parametrize("origin", SAME_HOST_OTHER_APPS)
def test_origins_other_than_the_sites_own_are_refused(origin):
    assert not allowed_origin(scope(), origin)


def test_the_sites_own_origin_is_allowed_with_its_scheme_and_port():
    assert allowed_origin(scope(), "http://127.0.0.1:8000")
    assert allowed_origin(scope(host="localhost"), "http://localhost")
    assert allowed_origin(scope(host="localhost"), "http://localhost:80")
    assert allowed_origin(scope(host="localhost:443", scheme="wss"), "https://LOCALHOST")
    assert not allowed_origin(scope(host="localhost", scheme="wss"), "http://localhost")
    assert not allowed_origin(scope(host=None), "http://127.0.0.1:8000")  # no Host: no own origin
    assert not allowed_origin(scope(), None)  # no Origin header


def test_a_host_outside_allowed_hosts_is_not_the_sites_origin():
    assert not allowed_origin(scope(host="evil.example:8000"), "http://evil.example:8000")


@override_settings(ALLOWED_HOSTS=["desk.example"], CSRF_TRUSTED_ORIGINS=["https://desk.example"])
def test_trusted_origins_match_exactly():
    behind_tls_proxy = scope(host="desk.example")  # nginx terminates TLS; daphne sees ws
    assert allowed_origin(behind_tls_proxy, "https://desk.example")
    assert allowed_origin(behind_tls_proxy, "https://desk.example:443")
    assert not allowed_origin(behind_tls_proxy, "https://desk.example:8443")
    assert not allowed_origin(behind_tls_proxy, "http://other.example")


@override_settings(ALLOWED_HOSTS=["desk.example"], SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
def test_a_tls_proxy_header_makes_the_sites_origin_https():
    proxied = scope(host="desk.example", extra=[(b"x-forwarded-proto", b"https")])
    assert allowed_origin(proxied, "https://desk.example")
    assert not allowed_origin(proxied, "http://desk.example")


def test_normalize_origin():
    assert normalize_origin("HTTPS://Desk.Example") == ("https", "desk.example", 443)
    assert normalize_origin("http://[::1]:8000") == ("http", "::1", 8000)
    for bad in ("http://desk.example/path", "ftp://desk.example", "http://desk.example:99999", "http://u@desk.example"):
        assert normalize_origin(bad) is None


@pytest.mark.parametrize(
    "origin,host,accepted",
    [
        ("http://testserver", "testserver", True),
        ("http://127.0.0.1:9999", "127.0.0.1:8000", False),
        ("https://localhost:4443", "localhost:8000", False),
        ("http://localhost:8000", "localhost:8000", True),
    ],
)
async def test_a_socket_with_alices_cookie_opens_only_from_the_exact_origin(hub, alice, origin, host, accepted):
    from asgiref.sync import sync_to_async

    cookie = await sync_to_async(session_cookie)(alice)
    comm = communicator("/ws/tasks/", cookie, origin, host=host)
    connected, _ = await comm.connect(timeout=5)
    assert connected is accepted
    await comm.disconnect()


@pytest.mark.parametrize(
    "origins,accepted",
    [
        ((), True),  # an agent: no browser, no Origin
        ((b"http://testserver",), True),
        ((b"http://testserver", b"http://testserver"), False),  # repeated: no single origin to check
        ((b"http://evil.example",), False),
        ((b"null",), False),
    ],
)
async def test_the_agent_socket_needs_no_origin_but_checks_one_that_is_sent(hub, acme, origins, accepted):
    from asgiref.sync import sync_to_async

    from dashboard.asgi import application
    from tasks_app.services import api_token_create
    from tests.live_sockets import Communicator

    _, raw = await sync_to_async(api_token_create)(organization=acme, name="agent")
    headers = [(b"host", b"testserver"), (b"x-api-key", raw.encode()), *((b"origin", o) for o in origins)]
    comm = Communicator(application, "/ws", headers=headers)
    connected, _ = await comm.connect(timeout=5)
    assert connected is accepted
    await comm.disconnect()


async def test_page_sockets_still_need_the_origin(alice):
    from asgiref.sync import sync_to_async

    from dashboard.asgi import application
    from tests.live_sockets import Communicator

    cookie = await sync_to_async(session_cookie)(alice)
    comm = Communicator(application, "/ws/tasks/", headers=[(b"host", b"testserver"), (b"cookie", cookie.encode())])
    connected, _ = await comm.connect(timeout=5)
    assert connected is False
    await comm.disconnect()
