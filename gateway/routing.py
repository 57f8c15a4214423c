"""WebSocket routing: origin validation and authentication around the URL router.

The consumers of `/ws/sessions/…` join `websocket_urlpatterns` in a later step; everything that
reaches them has passed `protect()`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import OriginValidator
from django.conf import settings


def _patterns() -> list:
    from django.urls import path

    from sessions_app.consumers import SessionConsumer, SessionsConsumer

    return [
        path("ws/sessions/<uuid:session_id>/", SessionConsumer.as_asgi()),
        path("ws/sessions/", SessionsConsumer.as_asgi()),
    ]


websocket_urlpatterns: list = _patterns()


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
