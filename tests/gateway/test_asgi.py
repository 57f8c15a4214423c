"""WebSockets pass origin validation and authentication before any consumer sees them."""

from __future__ import annotations

import pytest
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import URLRouter
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.urls import path

from gateway.asgi import application
from gateway.routing import protect


class WhoAmI(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        await self.send_json({"user": str(self.scope["user"])})


app = protect(URLRouter([path("ws/whoami/", WhoAmI.as_asgi())]))


def socket(*headers: tuple[bytes, bytes], to=None) -> WebsocketCommunicator:
    return WebsocketCommunicator(to or app, "/ws/whoami/", headers=list(headers))


HOST = (b"host", b"localhost:8000")


@pytest.mark.smoke
@pytest.mark.asyncio
async def test_a_socket_from_the_gateways_own_origin_is_accepted() -> None:
    communicator = socket((b"origin", b"http://localhost:8000"), HOST)
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_json_from() == {"user": "AnonymousUser"}
    await communicator.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers",
    [
        [(b"origin", b"https://evil.example"), HOST],
        [(b"origin", b"http://localhost:9999"), HOST],  # another port is another origin
        [(b"origin", b"https://localhost:8000"), HOST],  # another scheme too
        [(b"origin", b"http://localhost:8000"), (b"host", b"evil.example:8000")],  # not ours
        [(b"origin", b"http://evil.example"), (b"host", b"evil.example")],
        [(b"origin", b"null"), HOST],
        [HOST],  # no origin at all
    ],
)
async def test_other_origins_are_refused(headers) -> None:
    communicator = socket(*headers)
    connected, _ = await communicator.connect()
    assert not connected


@pytest.mark.asyncio
async def test_behind_a_tls_proxy_the_origin_is_https() -> None:
    """The proxy says the browser came over https (Django's SECURE_PROXY_SSL_HEADER)."""
    https = (b"origin", b"https://localhost"), (b"host", b"localhost")
    forwarded = (b"x-forwarded-proto", b"https")
    accepted = socket(*https, forwarded)
    assert (await accepted.connect())[0]
    await accepted.disconnect()
    assert not (await socket(*https).connect())[0]
    downgraded = socket((b"origin", b"http://localhost"), (b"host", b"localhost"), forwarded)
    assert not (await downgraded.connect())[0]


@pytest.mark.asyncio
async def test_origins_trusted_for_cors_may_open_sockets(settings) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    trusted = protect(URLRouter([path("ws/whoami/", WhoAmI.as_asgi())]))
    communicator = socket((b"origin", b"https://app.example.com"), HOST, to=trusted)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.disconnect()
    other_port = socket((b"origin", b"https://app.example.com:8443"), HOST, to=trusted)
    assert not (await other_port.connect())[0]


@pytest.mark.django_db
@pytest.mark.asyncio
async def test_the_asgi_application_serves_http() -> None:
    communicator = HttpCommunicator(
        application, "GET", "/health", headers=[(b"host", b"localhost")]
    )
    response = await communicator.get_response()
    assert response["status"] == 200


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("headers", "subprotocols"),
    [
        ([HOST, (b"x-api-key", b"k")], None),
        ([HOST, (b"authorization", b"Bearer t")], None),
        ([HOST], ["sessions", "api-key.k"]),
    ],
)
async def test_a_program_with_its_own_credentials_needs_no_origin(headers, subprotocols) -> None:
    # No cookie can ride along on a socket that brings its own key: the origin check is for
    # browsers (the consumer then judges the credentials).
    communicator = WebsocketCommunicator(
        app, "/ws/whoami/", headers=headers, subprotocols=subprotocols
    )
    connected, _ = await communicator.connect()
    assert connected
    await communicator.disconnect()
