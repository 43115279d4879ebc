"""API token authentication shared by every agent-facing face."""

from collections.abc import Mapping

from django.http import HttpRequest

from ..models import ApiToken
from ..services import api_token_authenticate


def raw_token_from(headers: Mapping[str, str]) -> str | None:
    """The token from `Authorization: Bearer <token>` or `x-api-key: <token>` (xpander's header).

    `headers` is a request's `headers` (case-insensitive) or a dict with lower-case names."""
    header = headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


def raw_token(request: HttpRequest) -> str | None:
    return raw_token_from(request.headers)


def raw_token_for_scope(scope) -> str | None:
    """The same for a websocket's ASGI scope (repeated headers joined with commas, as Django does)."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key, text = name.decode("latin1").lower(), value.decode("latin1")
        headers[key] = f"{headers[key]},{text}" if key in headers else text
    return raw_token_from(headers)


def token_for_request(request: HttpRequest) -> ApiToken | None:
    """The active token the request carries, or None (missing, unknown or revoked)."""
    token = api_token_authenticate(raw_token(request))
    request.api_token = token
    return token
