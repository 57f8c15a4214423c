"""The web server and, beside it, a worker on the same event loop (manage.py serve).

uvicorn serves HTTP and WebSockets, and the worker shares its loop (so the in-memory channel
layer of the embedded mode reaches both). uvicorn streams request bodies with backpressure, so a
large body is never held in memory (daphne, used before, buffered and parsed whole bodies in
Twisted first: 60 MB without credentials grew the process by ~720 MB); `gateway.core.limits`
refuses oversized ones at the edge. On SIGTERM/SIGINT the worker stops gracefully (hands its
sessions over) while the web still answers, then the server closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from workers.runtime.config import RuntimeConfig
from workers.runtime.signals import stop_on_signals
from workers.runtime.worker import WorkerRuntime

# Frames a browser sends here are small (the consumers read none of any size).
WS_MAX_BYTES = 64 * 1024
GRACEFUL_SECONDS = 10


def web_config(application: Callable[..., Any], host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        application,
        host=host,
        port=port,
        lifespan="off",
        http="httptools",
        ws="websockets-sansio",
        ws_max_size=WS_MAX_BYTES,
        log_config=None,  # our JSON logging (gateway.settings.LOGGING)
        access_log=False,  # the request log line is gateway.core.middleware's
        server_header=False,
        proxy_headers=False,  # X-Forwarded-Proto is read by Django (SECURE_PROXY_SSL_HEADER)
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )


def bind(config: uvicorn.Config) -> socket.socket:
    """The listening socket, with Nagle's algorithm off for every connection it accepts (Linux
    copies TCP_NODELAY to them). asyncio turns it off only on sockets made with IPPROTO_TCP, and
    uvicorn's are not: each response (its headers, then its body, in two writes) then waited for
    the client's delayed ACK, about 40 ms on every keep-alive request."""
    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Server(uvicorn.Server):
    """uvicorn's server with the signals left to `serve`, which stops the worker first (uvicorn's
    own handlers would also raise the signal again once it is done)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(config: uvicorn.Config, sock: socket.socket, worker: RuntimeConfig | None) -> None:
    """Serve on `sock` (bound already, so a port in use failed before any claim), with a worker
    when `worker` is given, until SIGTERM or SIGINT."""
    stop = stop_on_signals()
    server = Server(config)
    runtime = WorkerRuntime(worker) if worker is not None else None
    tasks = [
        asyncio.create_task(server.serve(sockets=[sock])),
        asyncio.create_task(stop.wait()),
    ]
    if runtime is not None:
        tasks.append(asyncio.create_task(runtime.run()))
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    if runtime is not None:
        runtime.stop.set()
        await tasks[2]  # the worker hands its sessions over while the web still answers
    server.should_exit = True
    await tasks[0]
    tasks[1].cancel()
