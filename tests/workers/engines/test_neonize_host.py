"""The neonize engine in real host processes, offline: each test runs in a network namespace
with only loopback, so real neonize's dial of web.whatsapp.com (and its DNS query) never leaves
the machine.

What can be shown without WhatsApp: the start path when the network is unreachable (the session
reports `connect_failed` and retries with backoff, the worker's event loop never blocks, the worker
never dies), supervision of neonize hosts, and clean failures for commands.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
import pytest_asyncio

from tests import netns
from tests.workers.engines.test_sandbox import next_event
from workers.engines.base import Disconnected, EngineError, OutboundMessage
from workers.engines.host.client import HostedEngine

pytestmark = pytest.mark.asyncio


@pytest.fixture(autouse=True)
def _offline():
    with netns.offline():  # the engine hosts started here live in it
        yield


@pytest_asyncio.fixture
async def neonize():
    engine = HostedEngine(
        "neonize",
        call_timeout=30,
        restart_delay=0.2,
        env={"NEONIZE_RETRY_FIRST": "0.5", "NEONIZE_RETRY_MAX": "2"},
    )
    yield engine
    await engine.close()


async def failed_connect(engine: HostedEngine) -> Disconnected:
    event = await next_event(engine, Disconnected, timeout=90)
    assert (event.code, event.will_reconnect) == ("connect_failed", True), event
    return event


async def test_offline_starts_retry_with_backoff_without_blocking_the_worker(
    neonize: HostedEngine, tmp_path: Path
) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    await neonize.start("s1", tmp_path / "s1")
    first = await failed_connect(neonize)
    second = await failed_connect(neonize)
    elapsed = time.monotonic() - started
    ticker.cancel()

    assert "NeonizeError" in first.reason  # the dial failed: no network to WhatsApp here
    assert second.session_id == "s1"
    # The loop kept running the whole time (a blocked loop would have ticked ~0 times).
    assert ticks >= int(elapsed / 0.05 * 0.5)
    assert (tmp_path / "s1" / "store.sqlite3").exists()
    assert os.getpid() not in neonize.host_pids()


async def test_commands_on_an_unconnected_session_fail_cleanly(
    neonize: HostedEngine, tmp_path: Path
) -> None:
    await neonize.start("s1", tmp_path / "s1")
    with pytest.raises(EngineError) as error:
        await neonize.send(
            "s1", OutboundMessage(id="x", to="15550002@s.whatsapp.net", type="text", text="hi")
        )
    assert (error.value.code, error.value.permanent) == ("not_connected", False)
    with pytest.raises(EngineError) as error:
        await neonize.check_numbers("s1", ["+15550002"])
    assert error.value.code == "not_connected"
    with pytest.raises(EngineError) as error:
        await neonize.start("s1", tmp_path / "s1")
    assert error.value.code == "already_started"


async def test_a_killed_neonize_host_is_replaced_and_its_sessions_start_again(
    neonize: HostedEngine, tmp_path: Path
) -> None:
    await neonize.start("s1", tmp_path / "s1")
    await neonize.start("s2", tmp_path / "s2")
    await failed_connect(neonize)
    host = neonize.hosts[0]

    os.kill(host.pid, signal.SIGKILL)

    restarted = set()
    while restarted != {"s1", "s2"}:
        event = await next_event(neonize, Disconnected, timeout=30)
        if event.reason == "engine host restarted":
            restarted.add(event.session_id)
    await failed_connect(neonize)  # the new host tries again
    assert host.pid not in neonize.host_pids() and len(neonize.host_pids()) == 1


async def test_stop_and_close_end_the_host_cleanly(tmp_path: Path) -> None:
    engine = HostedEngine("neonize", env={"NEONIZE_RETRY_FIRST": "0.5"})
    await engine.start("s1", tmp_path / "s1")
    await failed_connect(engine)
    await engine.stop("s1")
    process = engine.hosts[0].process
    await engine.close()
    assert process.returncode == 0
