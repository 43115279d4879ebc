"""API token authentication shared by every agent-facing face."""

from django.http import HttpRequest

from ..models import ApiToken
from ..services import api_token_authenticate


def raw_token(request: HttpRequest) -> str | None:
    """The token from `Authorization: Bearer <token>` or `x-api-key: <token>` (xpander's header)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = request.headers.get("x-api-key", "").strip()
    return key or None


def token_for_request(request: HttpRequest) -> ApiToken | None:
    """The active token the request carries, or None (missing, unknown or revoked)."""
    token = api_token_authenticate(raw_token(request))
    request.api_token = token
    return token
