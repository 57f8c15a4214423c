"""Engine hosts: sessions in supervised child processes (here the sandbox, which needs no network).

Killing a host never takes the worker down: its sessions reconnect on a new host from their stores,
the other hosts' sessions do not notice, and calls to the dead host fail cleanly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.core import logging as log_context
from tests.workers.engines.test_sandbox import FAST, next_event
from workers.engines.base import (
    Connected,
    Disconnected,
    EngineError,
    InboundMedia,
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


class _Records(logging.Handler):
    """The records of one logger, and an event set by each (the host's lines arrive on their own
    pipe, not in order with the call's reply)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.arrived = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()


async def test_a_hosts_log_lines_are_logged_by_the_worker_with_their_fields(
    hosted: HostedEngine, tmp_path: Path
) -> None:
    records = _Records()
    host_logger = logging.getLogger("workers.engines.host")
    host_logger.addHandler(records)
    try:
        with log_context.bind(session_id="s1", worker_id="w-7"):
            await link(hosted, tmp_path, "s1", "+15550001")
        await link(hosted, tmp_path, "s2", "+15550002")  # on the same host, started without ids
        # A download into a folder that does not exist fails inside the host, unexpectedly:
        # the host logs the error with its traceback.
        media = InboundMedia(mime_type="image/jpeg", ref={"data": "aGk="})
        with pytest.raises(EngineError):
            await hosted.download("s2", media, tmp_path / "missing" / "file")
        await asyncio.wait_for(records.arrived.wait(), 30)
    finally:
        host_logger.removeHandler(records)

    [record] = [r for r in records.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "host operation download failed"
    # The session the host was working for, not the one whose start spawned the host.
    assert record.session_id == "s2"
    assert (record.worker_id, record.engine, record.host_pid) == (
        "w-7",
        "sandbox",
        hosted.hosts[0].pid,
    )
    assert "FileNotFoundError" in record.traceback
