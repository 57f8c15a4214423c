"""WebSocket routing: origin validation and authentication around the URL router.

Everything that reaches a consumer has passed `protect()`; a path under `/ws/` that no consumer
serves is refused at the handshake (403), like a socket from an origin that is not allowed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from gateway.core.auth import BEARER_SUBPROTOCOL, KEY_SUBPROTOCOL

Origin = tuple[str, str, int]
DEFAULT_PORTS = {"http": 80, "https": 443}


async def refuse(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Closes before accepting: the handshake is answered 403. A plain ASGI app, not a consumer:
    a refused socket costs no channel on the channel layer (and leaves nothing waiting on it)."""
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.close"})


def _patterns() -> list:
    from django.urls import path, re_path

    from gateway.outbox.stream import EventsConsumer
    from sessions_app.consumers import SessionConsumer, SessionsConsumer

    return [
        path("ws/sessions/<uuid:session_id>/", SessionConsumer.as_asgi()),
        path("ws/sessions/", SessionsConsumer.as_asgi()),
        path("ws/events/", EventsConsumer.as_asgi()),
        # Anything else: refused, never a 500. (Channels routes ASGI apps, Django's stubs views.)
        re_path(r"", refuse),  # type: ignore[arg-type]
    ]


websocket_urlpatterns: list = _patterns()


def parse_origin(value: str) -> Origin | None:
    """(scheme, host, port) of an origin or URL, the port filled in for http and https."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def trusted_origins() -> set[Origin]:
    """Origins besides the gateway's own that may open WebSockets: the browser origins trusted
    for CORS and CSRF (the backend's front end, which embeds the link page) and PUBLIC_URL."""
    configured = [*settings.CORS_ALLOWED_ORIGINS, *settings.CSRF_TRUSTED_ORIGINS]
    return {o for o in map(parse_origin, [*configured, settings.PUBLIC_URL]) if o}


def own_origin(scope: dict[str, Any]) -> Origin | None:
    """The origin a page of this gateway has when it opens this socket: the request's own scheme
    (or the proxy's, as Django reads it from SECURE_PROXY_SSL_HEADER), its Host, which must be
    one of ALLOWED_HOSTS, and its port."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    host = headers.get("host", "")
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    proxy_header, secure_value = settings.SECURE_PROXY_SSL_HEADER or ("", "")
    forwarded = headers.get(proxy_header.removeprefix("HTTP_").replace("_", "-").lower())
    if forwarded is not None:
        scheme = "https" if forwarded.split(",")[0].strip() == secure_value else "http"
    return parse_origin(f"{scheme}://{host}")


def carries_credentials(scope: dict[str, Any]) -> bool:
    """Whether the handshake brings its own credentials (an API key or a JWT in a header or a
    subprotocol), as programs do, rather than relying on the browser's cookies."""
    headers = dict(scope["headers"])
    protocols = scope.get("subprotocols") or []
    return (
        b"x-api-key" in headers
        or b"authorization" in headers
        or any(p.startswith((KEY_SUBPROTOCOL, BEARER_SUBPROTOCOL)) for p in protocols)
    )


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Origins are compared whole: scheme, host and port (a page on another port of the same
    host is another origin). Browsers always send an Origin, and the check exists for them (a
    page elsewhere riding on a staff member's cookies): a socket without one is refused unless it
    brings its own credentials (a program with an API key or a JWT)."""
    raw = dict(scope["headers"]).get(b"origin")
    if raw is None and carries_credentials(scope):
        return True
    origin = parse_origin(raw.decode("latin-1")) if raw else None
    if origin is None:
        return False
    return origin == own_origin(scope) or origin in trusted_origins()


class OriginCheck:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await refuse(scope, receive, send)
        return await self.app(scope, receive, send)


def protect(inner: Any) -> Any:
    return OriginCheck(AuthMiddlewareStack(inner))
