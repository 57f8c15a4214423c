"""Fixtures for the tests that drive the double's `NewClient` (tests/neonize_double/driver.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.neonize_double.driver import Client
from tests.neonize_double.whatsapp import FakeWhatsApp


@pytest.fixture
def clients(world: FakeWhatsApp, tmp_path: Path) -> Iterator[Callable[..., Client]]:
    """`clients(uuid, phone)`: a Client in its own process, linked to `phone`'s account (not
    connected without a phone); all are closed at the end."""
    made: list[Client] = []

    def make(uuid: str, phone: str | None = None) -> Client:
        client = Client(world, tmp_path, uuid)
        made.append(client)
        return client.link(phone) if phone else client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[FakeWhatsApp]:
    world = FakeWhatsApp(tmp_path / "whatsapp").start()
    yield world
    world.close()
