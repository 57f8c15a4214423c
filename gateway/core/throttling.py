"""Rate limits per API client, counted in the shared cache (Redis in production)."""

from __future__ import annotations

import logging
import time
from typing import Any, cast

from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from gateway.core.auth import ApiClient

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def window_count(key: str, *, timeout: int) -> int:
    """Count one more in a fixed window kept under `key` (one atomic INCR on Redis); the count."""
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # the key expired between add and incr: a new window began
        cache.set(key, 1, timeout=timeout)
        return 1


def parse_rate(rate: str) -> tuple[int, int]:
    """`5/h` → (5, 3600)."""
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period[0]]


def rate_wait(key: str, rate: str | None) -> float | None:
    """Count one event under `key` against `rate` (fixed windows, shared by every process); the
    seconds until the window ends when it is over the limit, else None. A cache that is down
    lets it through (and logs it): losing a rate limit for a moment beats refusing traffic."""
    if not rate:
        return None
    limit, period = parse_rate(rate)
    now = time.time()
    window = int(now // period)
    try:
        count = window_count(f"throttle:{key}:{period}:{window}", timeout=period + 1)
    except Exception:
        logger.warning("rate limit cache unavailable; %s allowed", key, exc_info=True)
        return None
    return (window + 1) * period - now if count > limit else None


def rate_or_raise(key: str, rate: str | None, message: str) -> None:
    """Count one call against `rate` under `key`; RateLimited (429 with Retry-After) over it."""
    from gateway.core.errors import RateLimited

    wait = rate_wait(key, rate)
    if wait is not None:
        raise RateLimited(message, wait=wait)


class ClientRateThrottle(BaseThrottle):
    """`API_THROTTLE_RATE` per API key / JWT subject / staff user, in fixed windows.

    One atomic `incr` per request (Redis `INCR`), so concurrent requests from many web processes
    are all counted (`rate_wait`).
    """

    scope = "client"

    def _ident(self, request: Request) -> str:
        user = request.user
        if isinstance(user, ApiClient):
            return user.throttle_id
        if user is not None and user.is_authenticated:
            return f"user:{user.pk}"
        return f"ip:{self.get_ident(request)}"

    def allow_request(self, request: Request, view: Any) -> bool:
        rate = cast(dict[str, str | None], api_settings.DEFAULT_THROTTLE_RATES).get(self.scope)
        self._wait = rate_wait(f"{self.scope}:{self._ident(request)}", rate)
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait
