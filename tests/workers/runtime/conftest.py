"""Fixtures for the runtime tests: in-process workers with the sandbox engine, and worker processes
(`workers` on the sandbox, `neonize_fleet` on the neonize double)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.db import connections

from tests.gateway.test_brokers import private_nats, private_rabbit, workdir  # noqa: F401 - fixtures
from tests.neonize_double.harness import double_env
from tests.neonize_double.whatsapp import FakeWhatsApp
from tests.processes import Processes
from tests.workers.engines.test_sandbox import FAST
from tests.workers.runtime.test_faults import LEASE
from tests.workers.runtime.test_runtime import until
from workers.engines.base import Engine
from workers.engines.sandbox import SandboxEngine, SandboxWorld
from workers.runtime.db import db_close
from workers.runtime.dispatcher import Dispatcher
from workers.runtime.worker import RuntimeConfig, WorkerRuntime


@pytest_asyncio.fixture(autouse=True)
async def _close_connections():
    """The ORM ran in sync_to_async's thread: close its connection so the test database can be
    dropped at the end of the run."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def workers(tmp_path: Path, test_database_url: str):
    """Worker processes on the test database, each with a directory of its own (as if on its own
    machine), sharing the simulated WhatsApp; QR codes that last the test, leases of LEASE s."""
    fleet = Processes(
        tmp_path,
        DATABASE_URL=test_database_url,
        SANDBOX_TIMINGS=json.dumps({"qr_first": 120, "qr_next": 120}),
        WORKER_LEASE_SECONDS=str(LEASE),
    )
    yield fleet
    fleet.stop_all()


@pytest.fixture
def neonize_fleet(tmp_path: Path, test_database_url: str):
    """Worker processes for the neonize engine over the double (its WhatsApp servers, `world`):
    (the fleet, the double). QR codes live 30 s, time to scan several."""
    world = FakeWhatsApp(tmp_path / "whatsapp").start()
    fleet = Processes(
        tmp_path,
        DATABASE_URL=test_database_url,
        WORKER_LEASE_SECONDS=str(LEASE),
        **double_env(world, scale=0.5),
    )
    yield fleet, world
    fleet.stop_all()
    world.close()


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> SandboxWorld:
    return SandboxWorld(tmp_path / "world")


@pytest_asyncio.fixture
async def start_worker(tmp_path: Path, world: SandboxWorld):
    running: list[tuple[WorkerRuntime, asyncio.Task]] = []

    async def start(
        name: str = "w1",
        lease_seconds: float = 6,
        auth_root: Path | None = None,
        silence_seconds: float = 900,
        engine: Engine | None = None,
        starting: int = 50,
        delivers_webhooks: bool = True,
    ) -> WorkerRuntime:
        """A worker of the sandbox engine (in this process, unless given another `engine`)."""
        engine = engine or SandboxEngine(world, worker=name, timings=FAST)
        runtime = WorkerRuntime(
            RuntimeConfig(
                name=name,
                engines=["sandbox"],
                lease_seconds=lease_seconds,
                poll_seconds=0.2,
                silence_seconds=silence_seconds,
                starting=starting,
                auth_root=auth_root or tmp_path / "auth",
                delivers_webhooks=delivers_webhooks,
            ),
            engines={"sandbox": engine},
        )
        task = asyncio.create_task(runtime.run())
        running.append((runtime, task))
        await until(lambda: runtime.worker_id, what="the worker to register")
        return runtime

    yield start
    for runtime, task in running:
        runtime.stop.set()
        # A bound for the cleanup, not a speed check: a stop may wait for an engine's thread
        # (NEONIZE_STOP_WAIT) and a host's exit (10 s) on a loaded machine.
        await asyncio.wait_for(task, 60)


@pytest_asyncio.fixture
async def dispatch():
    stop = asyncio.Event()
    tasks = []

    async def start() -> Dispatcher:
        dispatcher = Dispatcher(poll_seconds=0.1)
        tasks.append(asyncio.create_task(dispatcher.run(stop)))
        return dispatcher

    yield start
    stop.set()
    await asyncio.gather(*tasks)
    await db_close()  # the dispatcher's database threads' connections


@pytest.fixture
def local_endpoints(settings):
    """Endpoints on this machine, no built-in backend, a breaker that opens and closes fast."""
    settings.BACKEND_URL = ""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.WEBHOOK_BREAKER_FAILURES = 3
    settings.WEBHOOK_BREAKER_COOL_DOWN_SECONDS = 3
