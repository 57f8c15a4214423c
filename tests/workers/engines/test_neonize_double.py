"""The neonize adapter in real engine host processes, over the neonize double (WhatsApp's side
played by FakeWhatsApp): what a user of the real engine sees, from linking to logout."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio

from tests.neonize_double.harness import neonize_engine
from tests.neonize_double.whatsapp import FakeWhatsApp
from tests.workers.engines.test_sandbox import next_event
from workers.engines.base import Connected, OutboundMessage, QrCode

pytestmark = pytest.mark.asyncio
PHONE = "+15550123"


@pytest.fixture
def world(tmp_path: Path):
    world = FakeWhatsApp(tmp_path / "whatsapp").start()
    yield world
    world.close()


@pytest_asyncio.fixture
async def engine(world: FakeWhatsApp):
    engine = neonize_engine(world)
    yield engine
    await engine.close()


async def link(engine, world: FakeWhatsApp, auth: Path, session: str = "s1") -> Connected:
    await engine.start(session, auth)
    await next_event(engine, QrCode, timeout=30)
    world.scan(session, PHONE)
    return await next_event(engine, Connected, timeout=30)


async def test_a_qr_scan_links_the_session(engine, world, tmp_path: Path) -> None:
    await engine.start("s1", tmp_path / "s1")
    qr = await next_event(engine, QrCode, timeout=30)
    assert qr.code.startswith("2@") and qr.session_id == "s1"
    world.scan("s1", PHONE)
    connected = await next_event(engine, Connected, timeout=30)
    assert (connected.phone_number, connected.jid) == (PHONE, "15550123@s.whatsapp.net")
    assert (tmp_path / "s1" / "store.sqlite3").exists()


async def test_a_linked_session_connects_again_from_its_store(engine, world, tmp_path) -> None:
    await link(engine, world, tmp_path / "s1")
    await engine.stop("s1")
    await engine.start("s1", tmp_path / "s1")
    connected = await next_event(engine, Connected, timeout=30)
    assert connected.phone_number == PHONE
    assert [how for uuid, how, _ in world.logins if uuid == "s1"][-1] == "15550123@s.whatsapp.net"


async def test_a_text_reaches_the_phone_with_the_id_whatsapp_gave(engine, world, tmp_path) -> None:
    await link(engine, world, tmp_path / "s1")
    result = await engine.send(
        "s1", OutboundMessage(id="ours", to="15550002@s.whatsapp.net", type="text", text="hi")
    )
    [received] = world.received("15550002@s.whatsapp.net")
    assert result.wa_message_id == received["id"] and received["id"].startswith("3EB0")
