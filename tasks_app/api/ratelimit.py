"""Per-token rate limits: an exact sliding window per (token, face, operation).

Limits are configured per face and operation with RATE_LIMITS, e.g.
`RATE_LIMITS="jsonrpc.task.update=20/60,api.*=600/60,*=600/60"` (count/seconds). The most
specific key wins: `face.operation`, then `face.*`, then `*`. "20 per 60 s" means at most 20
calls in ANY 60 seconds (a fixed window would let 40 through around a minute boundary; seed
002 and its upstream use a sliding window).

Counting: each allowed call is a timestamped member of a Redis sorted set. One Lua script, one
round trip, trims the members older than the window, counts, and adds the call only when under
the limit, so concurrent calls from several processes are counted exactly.

Redis is an accelerator, never a dependency of a request: the script runs with a short socket
timeout and no retries; on any Redis error the limiter counts in this process instead (the same
window, per process), logs once per outage, and leaves Redis alone for RETRY_SECONDS, so a dead
or hung Redis costs at most one short wait per process every few seconds, not one per request.
`hit` never raises. Without REDIS_URL every count is per process (one process is the
embedded default).
"""

import logging
import math
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from django.conf import settings

from ..models import ApiToken

logger = logging.getLogger(__name__)

REDIS_TIMEOUT = 0.25  # seconds, connect and socket: Redis answers in well under a millisecond
RETRY_SECONDS = 5.0  # after a Redis error, count locally this long before trying Redis again
_LOCAL_KEYS_MAX = 50_000

_SCRIPT = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('PEXPIRE', key, window)
  return {1, count + 1, 0}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, count, math.ceil(tonumber(oldest[2]) + window - now)}
"""


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int  # whole seconds until one more call would be allowed (0 when allowed)


def limit_for(face: str, operation: str) -> tuple[int, int]:
    limits = settings.RATE_LIMITS
    for key in (f"{face}.{operation}", f"{face}.*", "*"):
        if key in limits:
            return limits[key]
    return (600, 60)


def _key(token: ApiToken, face: str, operation: str) -> str:
    # Keyed by the token's hash, not its row id: ids are reused when a database is recreated.
    return f"{settings.RATE_LIMIT_PREFIX}:{token.token_hash[:24]}:{face}:{operation}"


class _Local:
    """The same sliding window, in this process only (no Redis, or Redis unreachable)."""

    def __init__(self) -> None:
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now_ms: float, window_ms: float, limit: int) -> tuple[bool, int, float]:
        with self._lock:
            calls = self._calls.get(key)
            if calls is None:
                if len(self._calls) >= _LOCAL_KEYS_MAX:
                    self._forget_idle(now_ms)
                calls = self._calls[key] = deque()
            while calls and calls[0] <= now_ms - window_ms:
                calls.popleft()
            if len(calls) < limit:
                calls.append(now_ms)
                return True, len(calls), 0.0
            return False, len(calls), calls[0] + window_ms - now_ms

    def _forget_idle(self, now_ms: float) -> None:
        # Windows are at most a few minutes: a key silent for an hour holds nothing that counts.
        stale = [key for key, calls in self._calls.items() if not calls or calls[-1] < now_ms - 3_600_000]
        for key in stale:
            del self._calls[key]
        if len(self._calls) >= _LOCAL_KEYS_MAX:
            self._calls.clear()

    def forget(self, prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._calls if k.startswith(prefix)]:
                del self._calls[key]


class _Redis:
    """The shared counts, or None while Redis is unreachable (then RETRY_SECONDS of local counting)."""

    def __init__(self) -> None:
        self._client = None
        self._script = None
        self._url: str | None = None
        self._down_until = 0.0
        self._failing = False
        self._lock = threading.Lock()

    def client(self):
        url = settings.REDIS_URL
        if not url:
            return None
        if time.monotonic() < self._down_until:
            return None
        with self._lock:
            if self._client is None or self._url != url:
                import redis
                from redis.backoff import NoBackoff
                from redis.retry import Retry

                self._client = redis.Redis.from_url(
                    url,
                    socket_timeout=REDIS_TIMEOUT,
                    socket_connect_timeout=REDIS_TIMEOUT,
                    retry=Retry(NoBackoff(), 0),
                    health_check_interval=30,
                )
                self._script = self._client.register_script(_SCRIPT)
                self._url = url
        return self._client

    def hit(self, key: str, now_ms: float, window_ms: float, limit: int, member: str) -> tuple[bool, int, float] | None:
        client = self.client()
        if client is None:
            return None
        try:
            allowed, count, wait_ms = self._script(keys=[key], args=[now_ms, window_ms, limit, member], client=client)
        except Exception as exc:
            self._down_until = time.monotonic() + RETRY_SECONDS
            if not self._failing:
                self._failing = True
                logger.warning(
                    "Rate limits counted per process: Redis unreachable (%s: %s). Logged once until it answers again.",
                    type(exc).__name__,
                    exc,
                )
            return None
        if self._failing:
            self._failing = False
            logger.warning("Rate limits counted in Redis again")
        return bool(allowed), int(count), float(wait_ms)

    def forget(self, pattern: str) -> None:
        client = self.client()
        if client is None:
            return
        try:
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
        except Exception:  # noqa: S110 (best effort: the counts expire by themselves)
            pass


_local = _Local()
_redis = _Redis()


def hit(token: ApiToken, face: str, operation: str, *, now: float | None = None) -> RateDecision:
    """Count one call against the token's limit for this operation; exact under concurrency."""
    count_max, period = limit_for(face, operation)
    now = time.time() if now is None else now
    now_ms, window_ms = now * 1000.0, period * 1000.0
    key = _key(token, face, operation)
    member = f"{now_ms:.3f}-{secrets.token_hex(4)}"
    answer = _redis.hit(key, now_ms, window_ms, count_max, member)
    if answer is None:
        answer = _local.hit(key, now_ms, window_ms, count_max)
    allowed, count, wait_ms = answer
    if allowed:
        return RateDecision(True, count_max, max(count_max - count, 0), 0)
    return RateDecision(False, count_max, 0, max(1, math.ceil(wait_ms / 1000.0)))


def forget(token: ApiToken) -> None:
    """Drop every count of this token, here and in Redis (tests; a token's limits changed)."""
    prefix = f"{settings.RATE_LIMIT_PREFIX}:{token.token_hash[:24]}:"
    _local.forget(prefix)
    _redis.forget(prefix + "*")
