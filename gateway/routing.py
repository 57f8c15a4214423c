"""WebSocket routing: origin validation and authentication around the URL router.

The consumers of `/ws/sessions/…` join `websocket_urlpatterns` in a later step; everything that
reaches them has passed `protect()`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import OriginValidator
from django.conf import settings

websocket_urlpatterns: list = []


def allowed_origins() -> list[str]:
    """Browsers may open WebSockets from this gateway's own hosts and from the origins trusted for
    CORS and CSRF (the backend's front end, which embeds the link page)."""
    hosts = list(settings.ALLOWED_HOSTS)
    for origin in [
        *settings.CORS_ALLOWED_ORIGINS,
        *settings.CSRF_TRUSTED_ORIGINS,
        settings.PUBLIC_URL,
    ]:
        if origin:
            parts = urlsplit(origin)
            hosts.append(f"{parts.scheme}://{parts.netloc}")
    return hosts


def protect(inner):
    return OriginValidator(AuthMiddlewareStack(inner), allowed_origins())
