"""Rate limits per API client, counted in the shared cache (Redis in production)."""

from __future__ import annotations

import logging
from typing import Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from gateway.auth import ApiClient

logger = logging.getLogger(__name__)


class ClientRateThrottle(SimpleRateThrottle):
    """`API_THROTTLE_RATE` per API key / JWT subject / staff user.

    A cache that is down lets requests through (and logs it): losing rate limiting for a moment is
    better than refusing the backend's traffic.
    """

    scope = "client"

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        if isinstance(user, ApiClient):
            ident = user.throttle_id
        elif user is not None and user.is_authenticated:
            ident = f"user:{user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:
            logger.warning("rate limit cache unavailable; request allowed", exc_info=True)
            return True
