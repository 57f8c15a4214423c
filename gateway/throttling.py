"""Rate limits per API client, counted in the shared cache (Redis in production)."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from gateway.auth import ApiClient

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


class ClientRateThrottle(BaseThrottle):
    """`API_THROTTLE_RATE` per API key / JWT subject / staff user, in fixed windows.

    One atomic `incr` per request (Redis `INCR`), so concurrent requests from many web processes
    are all counted. A cache that is down lets requests through (and logs it): losing rate limiting
    for a moment is better than refusing the backend's traffic.
    """

    scope = "client"

    def _rate(self) -> tuple[int, int] | None:
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        if not rate:
            return None
        count, _, period = rate.partition("/")
        return int(count), _PERIODS[period[0]]

    def _ident(self, request: Request) -> str:
        user = request.user
        if isinstance(user, ApiClient):
            return user.throttle_id
        if user is not None and user.is_authenticated:
            return f"user:{user.pk}"
        return f"ip:{self.get_ident(request)}"

    def allow_request(self, request: Request, view: Any) -> bool:
        rate = self._rate()
        if rate is None:
            return True
        limit, period = rate
        now = time.time()
        window = int(now // period)
        self._wait = (window + 1) * period - now
        key = f"throttle:{self.scope}:{self._ident(request)}:{period}:{window}"
        try:
            count = window_count(key, timeout=period + 1)
        except Exception:
            logger.warning("rate limit cache unavailable; request allowed", exc_info=True)
            return True
        return count <= limit

    def wait(self) -> float:
        return self._wait
