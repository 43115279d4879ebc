"""Which pages may open a websocket: the exact origin (scheme, host and port) of the site itself
or one listed in CSRF_TRUSTED_ORIGINS.

The site's own origin is the socket request's Host (which must be in ALLOWED_HOSTS) with the
request's scheme: `ws` reads as http, `wss` (or SECURE_PROXY_SSL_HEADER behind a TLS proxy) as
https. Channels' AllowedHostsOriginValidator compares host names only, so another app on the same
host but another port or scheme (`http://127.0.0.1:9999`, `https://localhost:4443`) could read the
live feed with the user's cookie; here it cannot.
"""

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(value: str) -> tuple[str, str, int] | None:
    """`https://Example.com` -> ("https", "example.com", 443); None for anything but an http(s) origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def _values(scope, name: bytes) -> list[bytes]:
    return [value for key, value in scope.get("headers", []) if key.lower() == name]


def _header(scope, name: bytes) -> str | None:
    values = _values(scope, name)
    if len(values) != 1:
        return None  # missing or repeated: no single origin to check
    return values[0].decode("latin1")


def _scheme(scope) -> str:
    secure = scope.get("scheme") == "wss"
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        header, expected = proxy
        name = header.removeprefix("HTTP_").replace("_", "-").lower().encode()
        secure = secure or _header(scope, name) == expected
    return "https" if secure else "http"


def site_origin(scope) -> tuple[str, str, int] | None:
    """The site's own origin as this socket request reached it, or None (no Host, or a Host not allowed)."""
    host = _header(scope, b"host")
    if not host:
        return None
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    return normalize_origin(f"{_scheme(scope)}://{host}")


def allowed_origin(scope, origin: str | None) -> bool:
    if origin is None:
        return False
    wanted = normalize_origin(origin)
    if wanted is None:
        return False
    if wanted == site_origin(scope):
        return True
    return any(wanted == normalize_origin(trusted) for trusted in settings.CSRF_TRUSTED_ORIGINS)


class SameOriginValidator:
    """ASGI middleware: a websocket whose Origin is not exactly an allowed one is denied (403).

    `origin_required=False` (agent sockets, authenticated by a token header a browser cannot set
    on a websocket): a request without any Origin header, which only a non-browser client sends,
    goes through; one with an Origin must still carry exactly one allowed origin.
    """

    def __init__(self, application, *, origin_required: bool = True):
        self.application = application
        self.origin_required = origin_required

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not self._passes(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)

    def _passes(self, scope) -> bool:
        if not self.origin_required and not _values(scope, b"origin"):
            return True
        return allowed_origin(scope, _header(scope, b"origin"))
