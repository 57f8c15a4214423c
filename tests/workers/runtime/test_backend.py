"""The backend protocol: registration, heartbeats, the circuit breaker, a backend that is down."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from asgiref.sync import sync_to_async

from gateway.outbox.breaker import CircuitBreaker
from tests.workers.runtime.test_runtime import linked, session_row, until
from workers.models import Worker


class Backend:
    """A real HTTP server standing in for the backend; records every request."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                backend.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "body": json.loads(self.rfile.read(length) or b"{}"),
                    }
                )
                payload = json.dumps({"id": "backend-7"}).encode()
                self.send_response(backend.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_PUT = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]


@pytest.fixture
def backend(settings):
    server = Backend()
    settings.BACKEND_URL = server.url
    settings.BACKEND_TOKEN = "backend-token"
    settings.BACKEND_HEARTBEAT_SECONDS = 1
    yield server
    server.server.shutdown()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_worker_registers_and_sends_heartbeats(backend: Backend, start_worker) -> None:
    runtime = await start_worker()

    await until(
        lambda: backend.paths().count("/api/admin/workers/backend-7/heartbeat") >= 2,
        what="two heartbeats",
    )

    register = backend.requests[0]
    assert (register["method"], register["path"]) == ("POST", "/api/admin/workers/register")
    assert register["authorization"] == "Bearer backend-token"
    assert register["body"]["worker_id"] == str(runtime.worker_id)
    assert {"name", "hostname", "endpoint", "capacity", "engines", "version", "started_at"} <= set(
        register["body"]
    )
    heartbeat = backend.requests[-1]
    assert heartbeat["method"] == "PUT"
    assert {"worker_id", "status", "sessions", "capacity", "memory_mib", "uptime_seconds"} <= set(
        heartbeat["body"]
    )
    worker = await sync_to_async(Worker.objects.get)(pk=runtime.worker_id)
    assert worker.backend_id == "backend-7"


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_backend_that_is_down_does_not_touch_sessions(
    backend: Backend, start_worker
) -> None:
    backend.status = 503
    runtime = await start_worker()
    await until(lambda: len(backend.requests) >= 2, what="registration attempts")

    session = await linked(runtime)  # linking works while the backend is down

    assert (await sync_to_async(session_row)(session.id)).status == "connected"
    # Never registered, so no heartbeats: only registration attempts (and the session's
    # webhooks, which the dispatcher keeps trying).
    assert not [r for r in backend.requests if "heartbeat" in r["path"]]
    assert any(r["path"] == "/api/admin/workers/register" for r in backend.requests)


@pytest.mark.django_db
def test_the_breaker_opens_after_failures_and_lets_one_probe_through() -> None:
    breaker = CircuitBreaker("http://backend.test", failure_threshold=3, cool_down=0.3)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state() == "closed"
    breaker.failure()

    assert breaker.state() == "open" and not breaker.allow()
    deadline = time.monotonic() + 5
    while breaker.state() != "half_open":  # the cool-down passes
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert [breaker.allow() for _ in range(3)] == [True, False, False]  # one probe
    breaker.failure()
    assert breaker.state() == "open"  # the probe failed
    while breaker.state() != "half_open":
        time.sleep(0.05)
    assert breaker.allow()
    breaker.success()
    assert breaker.state() == "closed" and breaker.allow()


@pytest.mark.django_db
def test_a_breaker_opened_by_a_process_whose_clock_is_wrong_stays_open_its_cool_down(
    monkeypatch,
) -> None:
    """Open is a key Redis expires, not a time one process wrote for the others to compare."""
    breaker = CircuitBreaker("http://skewed.test", failure_threshold=1, cool_down=1)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 600)  # that process: 10 minutes behind
    breaker.failure()
    monkeypatch.undo()

    assert breaker.state() == "open"
    opened = time.monotonic()
    while breaker.state() == "open":  # for the cool-down, not 10 minutes less or more
        assert time.monotonic() - opened < 5
        time.sleep(0.05)
    assert breaker.state() == "half_open" and breaker.allow()
