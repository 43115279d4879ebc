"""Per-token rate limits, counted in the cache (Redis in production), fixed one-minute windows.

Limits are configured per face and operation with RATE_LIMITS, e.g.
`RATE_LIMITS="jsonrpc.task.update=20/60,api.*=600/60,*=600/60"` (count/seconds). The most
specific key wins: `face.operation`, then `face.*`, then `*`.
"""

import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from ..models import ApiToken


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int  # seconds until the window resets (0 when allowed)


def limit_for(face: str, operation: str) -> tuple[int, int]:
    limits = settings.RATE_LIMITS
    for key in (f"{face}.{operation}", f"{face}.*", "*"):
        if key in limits:
            return limits[key]
    return (600, 60)


def hit(token: ApiToken, face: str, operation: str, *, now: float | None = None) -> RateDecision:
    """Count one request against the token's limit for this operation; atomic under concurrency."""
    count_max, period = limit_for(face, operation)
    now = time.time() if now is None else now
    window = int(now // period)
    # Keyed by the token's hash, not its row id: ids are reused when a database is recreated.
    key = f"ratelimit:{token.token_hash[:24]}:{face}:{operation}:{window}"
    # add() is a no-op when the key exists; incr() is atomic in Redis and in locmem.
    cache.add(key, 0, timeout=period + 5)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 0, timeout=period + 5)
        count = cache.incr(key)
    retry_after = max(1, math.ceil((window + 1) * period - now))
    if count > count_max:
        return RateDecision(False, count_max, 0, retry_after)
    return RateDecision(True, count_max, count_max - count, 0)
