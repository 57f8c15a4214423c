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


@pytest.mark.smoke
@pytest.mark.asyncio
async def test_a_socket_from_an_allowed_origin_is_accepted() -> None:
    communicator = WebsocketCommunicator(
        app, "/ws/whoami/", headers=[(b"origin", b"http://localhost:8000")]
    )
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_json_from() == {"user": "AnonymousUser"}
    await communicator.disconnect()


@pytest.mark.asyncio
async def test_a_socket_from_a_foreign_origin_is_refused(settings) -> None:
    communicator = WebsocketCommunicator(
        app, "/ws/whoami/", headers=[(b"origin", b"https://evil.example")]
    )
    connected, _ = await communicator.connect()
    assert not connected


@pytest.mark.asyncio
async def test_origins_trusted_for_cors_may_open_sockets(settings) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    trusted = protect(URLRouter([path("ws/whoami/", WhoAmI.as_asgi())]))
    communicator = WebsocketCommunicator(
        trusted, "/ws/whoami/", headers=[(b"origin", b"https://app.example.com")]
    )
    connected, _ = await communicator.connect()
    assert connected
    await communicator.disconnect()


@pytest.mark.django_db
@pytest.mark.asyncio
async def test_the_asgi_application_serves_http() -> None:
    communicator = HttpCommunicator(
        application, "GET", "/health", headers=[(b"host", b"localhost")]
    )
    response = await communicator.get_response()
    assert response["status"] == 200
