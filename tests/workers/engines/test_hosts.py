"""Engine hosts: sessions in supervised child processes (here the sandbox, which needs no network).

Killing a host never takes the worker down: its sessions reconnect on a new host from their stores,
the other hosts' sessions do not notice, and calls to the dead host fail cleanly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import pytest
import pytest_asyncio

from tests.workers.engines.test_sandbox import FAST, next_event
from workers.engines.base import (
    Connected,
    Disconnected,
    EngineError,
    OutboundMessage,
    QrCode,
    Receipt,
)
from workers.engines.host.client import HostedEngine
from workers.engines.sandbox import SandboxWorld

pytestmark = pytest.mark.asyncio
TO = "15550002@s.whatsapp.net"


def sandbox_hosts(world: Path, timings=FAST, **options) -> HostedEngine:
    """The sandbox engine in host processes, its simulated servers in `world`."""
    env = {"SANDBOX_DIR": str(world), "SANDBOX_TIMINGS": json.dumps(dataclasses.asdict(timings))}
    return HostedEngine("sandbox", env=env, **options)


@pytest_asyncio.fixture
async def hosted(tmp_path: Path):
    engine = sandbox_hosts(
        tmp_path / "world", sessions_per_host=2, call_timeout=3, restart_delay=0.2
    )
    yield engine
    await engine.close()


async def link(engine: HostedEngine, tmp_path: Path, session_id: str, phone: str) -> None:
    await engine.start(session_id, tmp_path / session_id)
    await next_event(engine, QrCode)
    await engine.control(session_id, "scan", phone_number=phone)
    connected = await next_event(engine, Connected)
    assert connected.session_id == session_id


async def test_sessions_run_in_hosts_of_bounded_size(hosted: HostedEngine, tmp_path: Path) -> None:
    for number, session_id in enumerate(["s1", "s2", "s3"]):
        await link(hosted, tmp_path, session_id, f"+1555000{number}1")

    assert len(hosted.host_pids()) == 2
    assert os.getpid() not in hosted.host_pids()
    result = await hosted.send("s3", OutboundMessage(id="M1", to=TO, type="text", text="hi"))
    assert result.wa_message_id == "M1"
    receipt = await next_event(hosted, Receipt)
    assert (receipt.session_id, receipt.message_ids) == ("s3", ("M1",))


async def test_a_killed_host_is_replaced_and_only_its_sessions_reconnect(
    hosted: HostedEngine, tmp_path: Path
) -> None:
    for number, session_id in enumerate(["s1", "s2", "s3"]):
        await link(hosted, tmp_path, session_id, f"+1555000{number}1")
    first, second = hosted.hosts[0], hosted.hosts[1]
    assert first.sessions == {"s1", "s2"}

    os.kill(first.pid, signal.SIGKILL)

    events = [await next_event(hosted, Disconnected | Connected | QrCode) for _ in range(4)]
    assert {(type(e).__name__, e.session_id) for e in events} == {
        ("Disconnected", "s1"),
        ("Disconnected", "s2"),
        ("Connected", "s1"),
        ("Connected", "s2"),
    }
    assert all(e.will_reconnect for e in events if isinstance(e, Disconnected))
    assert first.pid not in hosted.host_pids() and second.pid in hosted.host_pids()
    world = SandboxWorld(tmp_path / "world")
    assert [e["event"] for e in world.read_log("s3")] == ["connect"]  # untouched
    result = await hosted.send("s1", OutboundMessage(id="M2", to=TO, type="text", text="again"))
    assert result.wa_message_id == "M2"


async def test_calls_to_a_dead_host_fail_cleanly(hosted: HostedEngine, tmp_path: Path) -> None:
    await link(hosted, tmp_path, "s1", "+15550001")
    host = hosted.hosts[0]

    os.kill(host.pid, signal.SIGKILL)
    await next_event(hosted, Disconnected)

    with pytest.raises(EngineError) as error:
        await hosted.send("s1", OutboundMessage(id="M3", to=TO, type="text", text="hi"))
    assert (error.value.code, error.value.permanent) == ("host_died", False)
    await next_event(hosted, Connected)  # and then it is back


async def test_a_stuck_host_is_recycled(hosted: HostedEngine, tmp_path: Path) -> None:
    await link(hosted, tmp_path, "s1", "+15550001")
    stuck = hosted.hosts[0]
    os.kill(stuck.pid, signal.SIGSTOP)

    with pytest.raises(EngineError) as error:
        await hosted.send("s1", OutboundMessage(id="M4", to=TO, type="text", text="hi"))

    assert error.value.code == "host_timeout"
    await next_event(hosted, Connected)
    assert stuck.pid not in hosted.host_pids()


async def test_a_host_that_stops_answering_is_recycled_without_any_call(tmp_path: Path) -> None:
    """Its pings go unanswered: recycled, and its sessions come back on a new host, before any
    call would have had to time out."""
    engine = sandbox_hosts(tmp_path / "world", ping_interval=0.2, ping_timeout=1, restart_delay=0.2)
    try:
        await link(engine, tmp_path, "s1", "+15550001")
        stuck = engine.hosts[0]
        os.kill(stuck.pid, signal.SIGSTOP)
        assert (await next_event(engine, Disconnected)).will_reconnect
        await next_event(engine, Connected)
        assert stuck.pid not in engine.host_pids()
    finally:
        await engine.close()


async def test_close_stops_the_hosts_and_keeps_the_stores(tmp_path: Path) -> None:
    engine = sandbox_hosts(tmp_path / "world")
    await link(engine, tmp_path, "s1", "+15550001")
    process = engine.hosts[0].process

    await engine.close()

    assert process.returncode == 0
    assert (tmp_path / "s1" / "store.sqlite3").exists()
    world = SandboxWorld(tmp_path / "world")
    assert [e["event"] for e in world.read_log("s1")] == ["connect", "disconnect"]


async def test_commands_for_unknown_sessions_fail_permanently(hosted: HostedEngine) -> None:
    await hosted.stop("nope")  # stopping what does not run is a no-op, as on every engine
    with pytest.raises(EngineError) as error:
        await hosted.logout("nope")
    assert (error.value.code, error.value.permanent) == ("not_started", True)
    assert hosted.host_pids() == []  # and no host was started for it
