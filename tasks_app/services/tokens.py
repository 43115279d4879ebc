"""API tokens: created once (only a hash is kept), revoked, and authenticated per request."""

import time

from django.utils import timezone

from ..models import TOKEN_PREFIX, ApiToken, Organization, hash_token
from .errors import InvalidInput

# Authenticated tokens are remembered per process for this long: a revocation takes effect
# within these seconds on every face (streams re-check on their own clock, live.credentials).
TOKEN_CACHE_SECONDS = 5.0
_cache: dict[str, tuple[float, ApiToken]] = {}
_CACHE_MAX = 10_000


def api_token_create(*, organization: Organization, name: str, created_by=None) -> tuple[ApiToken, str]:
    """Create a token; the raw value is returned once and only its hash is stored."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput({"name": ["Must be 1 to 100 characters."]})
    raw = ApiToken.generate()
    token = ApiToken.objects.create(
        organization=organization,
        name=name,
        prefix=raw[:10],
        token_hash=hash_token(raw),
        created_by=created_by,
    )
    return token, raw


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    _cache.clear()  # this process at once; others within TOKEN_CACHE_SECONDS
    return token


def api_token_authenticate(raw: str | None) -> ApiToken | None:
    """The active token for a raw value (its last-used time refreshed at most once a minute)."""
    if not raw or not raw.startswith(TOKEN_PREFIX) or len(raw) > 200 or not raw.isascii():
        return None
    digest = hash_token(raw)
    now_mono = time.monotonic()
    cached = _cache.get(digest)
    if cached is not None and now_mono - cached[0] < TOKEN_CACHE_SECONDS:
        return cached[1]
    token = ApiToken.objects.select_related("organization").filter(token_hash=digest, revoked_at__isnull=True).first()
    if token is None:
        _cache.pop(digest, None)
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[digest] = (now_mono, token)
    return token


def forget_cached_tokens() -> None:
    """Drop every remembered token (tests; a revocation in this process)."""
    _cache.clear()
